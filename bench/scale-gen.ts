#!/usr/bin/env node
// Load generator for the scale section: N ports, each a real PortSession on its
// own UDP socket (as many vports would be), joined to one --insecure vswitch
// over loopback — cipher 'none', so the switch's cost is switching, not crypto —
// teaching it M MACs, then measuring its forwarding rate.
// Prints progress lines and one final line `RESULT {json}`, then keeps the ports
// joined until SIGUSR2 (or two minutes), and leaves.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { BATCH_SIZE, MutableFrameBatch, type FrameBatch } from '../lib/core/frames.js';
import { UdpSocket } from '../lib/io/udp.js';
import { TxQueue } from '../lib/io/tx-queue.js';
import { encodeAddress } from '../lib/io/address.js';
import { generateKeyPair } from '../lib/crypto/keys.js';
import { insecureSwitchKey } from '../lib/protocol/noise.js';
import { PortSession } from '../lib/protocol/port-session.js';
import { cpuSeconds, machineCpu, statusBytes } from './proc.js';

/** 60-byte frames: the minimum Ethernet frame without FCS, so the rate is per-frame cost. */
const FRAME_SIZE = 60;
/** Distinct precomputed measurement frames per port (random destinations), cycled. */
const RING = 64;
/** Second MAC byte marking our frames; bytes 2-3 carry the port, 4-5 the MAC number. */
const MAC_MARK = 0x42;
const ETHERTYPE_EXPERIMENTAL = 0x88b5;
/**
 * Ports per source address: the switch rate-limits handshakes per host (5 at
 * once, 20/s), so the ports are spread over 127.0.x.y as many hosts would be.
 */
const PORTS_PER_ADDRESS = 4;
const JOIN_TIMEOUT_MS = 120_000;
/** How often the generator runs the sessions' timers (retries, keepalives). */
const POLL_MS = 50;
/** Each port's transmit queue: small, since a port sends at most a burst before it is flushed. */
const PORT_QUEUE = { slabBytes: 64 * 1024, slots: 64 } as const;
/**
 * Frames a port sends per turn of the pump: one queue's worth, one sendmmsg,
 * whether 2 ports share the window or 1,000 do (one burst per turn made the
 * generator's syscalls 4x as many per frame at 1,000 ports as at 2).
 */
const TURN_FRAMES = PORT_QUEUE.slots;
/** No delivery for this long with datagrams in flight: they are lost; forget them and go on. */
const STALL_MS = 100;
const STALL_CHECK_MS = 20;
/** Wait after the sink MACs are taught, with no feedback, before traffic that needs them. */
const SINK_SETTLE_MS = 300;
const LEARN_TIMEOUT_MS = 120_000;
/** After RESULT: how long the ports stay joined at most, waiting for SIGUSR2. */
const HOLD_AFTER_RESULT_MS = 120_000;

/**
 * With --offload, as a vport binds (UDP GSO and GRO): a port's burst leaves as one
 * message and a run to one port arrives as one. A receive slot then holds a whole
 * GRO message: up to 64 of our datagrams.
 */
const GRO_SLOT = 64 * (FRAME_SIZE + 32);

const { values: opt } = parseArgs({
  options: {
    'switch-port': { type: 'string', default: '9999' },
    'switch-pid': { type: 'string' },
    ports: { type: 'string', default: '2' },
    macs: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    burst: { type: 'string', default: '16' },
    window: { type: 'string', default: '2048' },
    offload: { type: 'boolean', default: false },
    pattern: { type: 'string', default: 'frames' },
  },
  strict: true,
});

const N = Number(opt.ports);
const M = Number(opt.macs);
const K = Math.max(1, Math.floor(M / N)); // MACs per port
const BURST = Math.min(RING, Number(opt.burst));
const WINDOW = Number(opt.window);
const OFFLOAD = opt.offload;
/**
 * Where the measurement frames go. 'frames': every frame to a port chosen at
 * random on its own (two in a row share one 1 time in N-1: the worst case,
 * next to nothing for GSO to merge). 'bursts':
 * each burst to one random port, as a TCP sender's window goes to one peer,
 * its frames to random MACs of that port (the MAC table is still hit at random).
 */
const PATTERN = opt.pattern;
const SWITCH_PID = opt['switch-pid'] !== undefined ? Number(opt['switch-pid']) : undefined;
if (!(N >= 2 && N <= 65535 && K <= 0xffff && RING % BURST === 0 && WINDOW >= BURST && (PATTERN === 'frames' || PATTERN === 'bursts'))) {
  throw new Error(`bad arguments: ports ${N}, macs ${M} (${K}/port), burst ${BURST} (must divide ${RING}), window ${WINDOW}, pattern ${PATTERN} (frames or bursts)`);
}

const switchAddr = encodeAddress('127.0.0.1', Number(opt['switch-port']));
const switchKey = insecureSwitchKey().publicKey;

function writeMac(buf: Buffer, off: number, port: number, n: number): void {
  buf[off] = 0x02; // locally administered, unicast
  buf[off + 1] = MAC_MARK;
  buf.writeUInt16BE(port, off + 2);
  buf.writeUInt16BE(n, off + 4);
}

/** A frame at buf[off]: src -> dst, experimental ethertype, zero payload. */
function writeFrame(buf: Buffer, off: number, dstPort: number, dstN: number, srcPort: number, srcN: number): void {
  buf.fill(0, off, off + FRAME_SIZE);
  writeMac(buf, off, dstPort, dstN);
  writeMac(buf, off + 6, srcPort, srcN);
  buf.writeUInt16BE(ETHERTYPE_EXPERIMENTAL, off + 12);
}

/** `count` frames in one slab, sent as views of at most BURST. */
function slab(count: number): { buf: Buffer; views: FrameBatch[] } {
  const buf = Buffer.alloc(count * FRAME_SIZE);
  const offsets = new Uint32Array(count);
  const lengths = new Uint32Array(count).fill(FRAME_SIZE);
  for (let i = 0; i < count; i++) offsets[i] = i * FRAME_SIZE;
  const views: FrameBatch[] = [];
  for (let i = 0; i < count; i += BURST) {
    const n = Math.min(BURST, count - i);
    views.push({ buf, offsets: offsets.subarray(i, i + n), lengths: lengths.subarray(i, i + n), count: n });
  }
  return { buf, views };
}

interface GenPort {
  id: number;
  socket: UdpSocket;
  session: PortSession;
  joined: boolean;
  /** What the pump sends from this port, and where it is. */
  views: FrameBatch[];
  next: number;
}

let delivered = 0;
let misdelivered = 0;
let sent = 0;
/** Frames given up as lost by the stall check (they no longer count as in flight). */
let writtenOff = 0;
let stalls = 0;
let leaves = 0;
let problems = 0;
let lastProblem = '';
let joinedCount = 0;

const ports: GenPort[] = [];

for (let id = 0; id < N; id++) {
  const a = Math.floor(id / PORTS_PER_ADDRESS);
  const socket = UdpSocket.bind({
    address: `127.0.${1 + Math.floor(a / 250)}.${1 + (a % 250)}`, port: 0, socketBuffer: 512 * 1024,
    ...(OFFLOAD ? { offload: true, batchSize: 8, slotSize: GRO_SLOT } : { batchSize: 64, slotSize: 512 }),
  });
  const queue = new TxQueue(socket, PORT_QUEUE);
  const slots = Uint16Array.from({ length: socket.capacity }, (_, i) => i);
  const frames = new MutableFrameBatch(Buffer.alloc(0), socket.capacity);
  const p: GenPort = { id, socket, session: undefined as unknown as PortSession, joined: false, views: [], next: 0 };
  p.session = new PortSession(
    {
      send: (d) => socket.sendTo(d, switchAddr),
      event: (e) => {
        if (e.type === 'joined' && !p.joined) {
          p.joined = true;
          joinedCount++;
        } else if (e.type === 'left-by-switch') {
          leaves++;
        } else if (e.type === 'problem') {
          problems++;
          lastProblem = e.message;
        }
      },
      debug: () => {},
    },
    queue,
    switchAddr,
    { privateKey: generateKeyPair().privateKey, switchPublicKey: switchKey, cipher: 'none', name: `gen${id}` },
  );
  ports.push(p);
  socket.onDatagrams((batch) => {
    frames.clear();
    // A session opens at most one window (BATCH_SIZE) a call; with GRO a batch holds more.
    const now = Date.now();
    for (let from = 0; from < batch.count; from += BATCH_SIZE) p.session.receive(batch, slots, from, Math.min(batch.count, from + BATCH_SIZE), now, frames);
    const { buf, offsets } = frames;
    for (let i = 0; i < frames.count; i++) {
      const f = offsets[i]!;
      // Delivered to the port that owns the destination MAC, or a flooded copy.
      if (buf[f + 1] === MAC_MARK && buf.readUInt16BE(f + 2) === id) delivered++;
      else misdelivered++;
    }
    pump();
  });
}

/** The sessions' timers: handshake retries (with cookies under load), keepalives. */
const poller = setInterval(() => {
  const now = Date.now();
  for (const p of ports) {
    const t = p.session.nextTimeout();
    if (t !== undefined && t <= now) p.session.poll(now);
  }
}, POLL_MS);

// ---------------------------------------------------------------- traffic pump

let pumping = false;
/** Measurement traffic cycles forever; learning traffic is sent once. */
let cycle = false;
let remaining = 0;
let rr = 0;

/**
 * Keep up to WINDOW frames in flight, round-robin over the ports, up to a
 * queue's worth (TURN_FRAMES, one sendmmsg) per port and turn, in bursts.
 */
function pump(): void {
  if (!pumping) return;
  let idle = 0;
  while (sent - delivered - writtenOff < WINDOW && idle < N) {
    const p = ports[rr]!;
    rr = rr + 1 === N ? 0 : rr + 1;
    let turn = 0;
    while (turn < TURN_FRAMES && sent - delivered - writtenOff < WINDOW) {
      if (p.next >= p.views.length) {
        if (!cycle || p.views.length === 0) break;
        p.next = 0;
      }
      const v = p.views[p.next++]!;
      // As a vport does: the session seals (cipher none: a copy) into the port's queue, sent after this turn.
      p.session.transmit(v);
      sent += v.count;
      turn += v.count;
      if (!cycle) remaining -= v.count;
    }
    idle = turn === 0 ? idle + 1 : 0;
  }
}

let lastDelivered = -1;
let stalledFor = 0;
const stallTimer = setInterval(() => {
  const inflight = sent - delivered - writtenOff;
  if (delivered === lastDelivered && inflight > 0) {
    stalledFor += STALL_CHECK_MS;
    if (stalledFor >= STALL_MS) {
      writtenOff += inflight;
      stalls++;
      stalledFor = 0;
      pump();
    }
  } else {
    stalledFor = 0;
  }
  lastDelivered = delivered;
}, STALL_CHECK_MS);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rss(): { rss: number | undefined; hwm: number | undefined } {
  return SWITCH_PID === undefined ? { rss: undefined, hwm: undefined } : { rss: statusBytes(SWITCH_PID, 'VmRSS'), hwm: statusBytes(SWITCH_PID, 'VmHWM') };
}

function udpRcvbufErrors(): number {
  // This process runs in the switch's namespace, so /proc/net/snmp is that namespace's.
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const head = lines[0]!.split(/\s+/);
  const vals = lines[1]!.split(/\s+/);
  return Number(vals[head.indexOf('RcvbufErrors')] ?? NaN);
}

function progress(text: string): void {
  process.stdout.write(`gen: ${text}\n`);
}

async function join(): Promise<number> {
  const t0 = Date.now();
  for (const p of ports) p.session.start(Date.now());
  while (joinedCount < N) {
    if (Date.now() - t0 > JOIN_TIMEOUT_MS) throw new Error(`only ${joinedCount}/${N} ports joined in ${JOIN_TIMEOUT_MS} ms${lastProblem ? `; last problem: ${lastProblem}` : ''}`);
    await sleep(5);
  }
  return Date.now() - t0;
}

/** Send each port's views once through the pump; resolves when delivered or given up. */
async function sendOnce(timeoutMs: number): Promise<void> {
  cycle = false;
  remaining = ports.reduce((s, p) => s + p.views.reduce((a, v) => a + v.count, 0), 0);
  pumping = true;
  pump();
  const deadline = Date.now() + timeoutMs;
  while (remaining > 0 || sent - delivered - writtenOff > 0) {
    if (Date.now() > deadline) throw new Error(`learning did not finish in ${timeoutMs} ms: ${remaining} unsent, ${sent - delivered - writtenOff} in flight`);
    await sleep(10);
  }
  pumping = false;
}

async function main(): Promise<void> {
  const rssBase = rss();
  progress(`${N} sockets bound; joining`);
  const joinMs = await join();
  await sleep(200); // let the switch finish its join bookkeeping before sampling memory
  const rssJoined = rss();
  progress(`${N} ports joined in ${joinMs} ms`);

  // Sinks: MAC 0 of each port, taught with src = dst (the switch learns it, then
  // drops the frame as same-port), so later frames to it are unicast, not flooded.
  const t0 = Date.now();
  for (const p of ports) {
    const s = slab(1);
    writeFrame(s.buf, 0, p.id, 0, p.id, 0);
    p.session.transmit(s.views[0]!);
    if (p.id % 256 === 255) await sleep(1);
  }
  await sleep(SINK_SETTLE_MS);
  // The other K-1 MACs of each port, each as the source of one frame to the next port's sink.
  for (const p of ports) {
    const s = slab(K - 1);
    for (let k = 1; k < K; k++) writeFrame(s.buf, (k - 1) * FRAME_SIZE, (p.id + 1) % N, 0, p.id, k);
    p.views = s.views;
    p.next = 0;
  }
  const learnFlooded0 = misdelivered;
  await sendOnce(LEARN_TIMEOUT_MS);
  const learnMs = Date.now() - t0;
  const learnFlooded = misdelivered - learnFlooded0;
  const learnLost = writtenOff;
  await sleep(200);
  const rssLearned = rss();
  progress(`${N * K} MACs taught in ${learnMs} ms (${learnFlooded} flooded copies, ${learnLost} lost)`);

  // Measurement: each port sends to random learned MACs on other ports.
  const otherPort = (id: number): number => {
    const q = Math.floor(Math.random() * (N - 1));
    return q >= id ? q + 1 : q;
  };
  for (const p of ports) {
    const s = slab(RING);
    let q = 0;
    for (let i = 0; i < RING; i++) {
      if (PATTERN === 'frames' || i % BURST === 0) q = otherPort(p.id);
      writeFrame(s.buf, i * FRAME_SIZE, q, Math.floor(Math.random() * K), p.id, Math.floor(Math.random() * K));
    }
    p.views = s.views;
    p.next = 0;
  }
  cycle = true;
  pumping = true;
  pump();
  await sleep(Number(opt.warmup) * 1000);
  const snap = () => ({
    t: performance.now(),
    delivered,
    misdelivered,
    sent,
    writtenOff,
    stalls,
    switchCpu: SWITCH_PID === undefined ? NaN : cpuSeconds(SWITCH_PID) ?? NaN,
    genCpu: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    rcvbufErrors: udpRcvbufErrors(),
    machineBusy: machineCpu().busy,
  });
  const a = snap();
  await sleep(Number(opt.seconds) * 1000);
  const b = snap();
  pumping = false;
  clearInterval(poller);
  clearInterval(stallTimer);
  const rssEnd = rss();
  const s = (b.t - a.t) / 1000;
  const result = {
    ports: N,
    macs: N * K,
    macsPerPort: K,
    burst: BURST,
    window: WINDOW,
    frameBytes: FRAME_SIZE,
    joinMs,
    learnMs,
    learnFlooded,
    learnLost,
    seconds: s,
    deliveredPerS: (b.delivered - a.delivered) / s,
    sentPerS: (b.sent - a.sent) / s,
    floodedPerS: (b.misdelivered - a.misdelivered) / s,
    lostInWindow: b.writtenOff - a.writtenOff,
    stallsInWindow: b.stalls - a.stalls,
    switchCpuPct: ((b.switchCpu - a.switchCpu) / s) * 100,
    generatorCpuPct: ((b.genCpu - a.genCpu) / s) * 100,
    /** Busy CPU of the whole machine in % of one core (2 cores = 200): the rest is the kernel's softirq work and other processes. */
    machineBusyPct: ((b.machineBusy - a.machineBusy) / s) * 100,
    deliveredPerSwitchCpuS: (b.delivered - a.delivered) / (b.switchCpu - a.switchCpu),
    udpRcvbufErrorsInWindow: b.rcvbufErrors - a.rcvbufErrors,
    leaves,
    rejects: problems,
    switchRss: { base: rssBase.rss, joined: rssJoined.rss, learned: rssLearned.rss, end: rssEnd.rss, peak: rssEnd.hwm },
  };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  // Stay joined until the bench has looked at the switch (SIGUSR2), so its MAC
  // table and its shutdown are measured with every member still there.
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, HOLD_AFTER_RESULT_MS);
    process.once('SIGUSR2', () => {
      clearTimeout(t);
      resolve();
    });
  });
  for (const p of ports) {
    p.session.leave();
    p.socket.close();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`gen: ${err.message}\n`);
  process.exit(1);
});
