#!/usr/bin/env node
// Load generator for the relay-workers section: N members, each a real PortSession
// (cipher none, pairs on) on its own UDP socket, joined to one --insecure vswitch
// over loopback; then every member sends made-up pair data (the right header,
// random "ciphertext": the switch relays it unopened) to other members' ids from
// its own socket, and every member counts what reaches it and checks it was for it.
// Prints progress lines and one final line `RESULT {json}`, then keeps the members
// joined until SIGUSR2 (or two minutes), so the bench can read the switch's status.
import { parseArgs } from 'node:util';
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { BATCH_SIZE, MutableFrameBatch, type FrameBatch } from '../lib/core/frames.js';
import { UdpSocket } from '../lib/io/udp.js';
import { TxQueue } from '../lib/io/tx-queue.js';
import { encodeAddress } from '../lib/io/address.js';
import { ADDR_SLOT } from '../lib/io/native.js';
import { generateKeyPair } from '../lib/crypto/keys.js';
import { insecureSwitchKey } from '../lib/protocol/noise.js';
import { LongControl, MessageType, PeerFlags, PROTOCOL_VERSION } from '../lib/protocol/constants.js';
import { PortSession } from '../lib/protocol/port-session.js';
import { cpuTimes, machineCpu, ticksPerSecond } from './proc.js';

/** Pair data around a frame: prefix 4 (version, type, destination id), receiver index 4, counter 8, tag 16. */
const PAIR_OVERHEAD = 32;
/** Where our made-up pair data carries its sender's member id: the receiver index field (a real one is random). */
const SRC_ID_OFFSET = 4;
/** Destinations each member cycles through (each member is then the destination of as many senders). */
const DESTS_PER_MEMBER = 8;
/** Members per source address: the switch rate-limits handshakes per host (5 at once, 20/s). */
const MEMBERS_PER_ADDRESS = 4;
const JOIN_TIMEOUT_MS = 60_000;
/** How often the sessions' timers run (retries, keepalives). */
const POLL_MS = 50;
/** No delivery for this long with datagrams in flight: they are lost; forget them and go on. */
const STALL_MS = 100;
const STALL_CHECK_MS = 20;
/** After a size's measurement: how long to wait for what is still in flight before calling it lost. */
const DRAIN_MS = 500;
/** After RESULT: how long the members stay joined at most, waiting for SIGUSR2. */
const HOLD_AFTER_RESULT_MS = 120_000;
/** A phase never runs longer than warm-up + measurement + this, whatever the loop does. */
const PHASE_SLACK_MS = 5_000;

const { values: opt } = parseArgs({
  options: {
    'switch-port': { type: 'string', default: '9999' },
    'switch-pid': { type: 'string' },
    members: { type: 'string', default: '32' },
    /** Frame sizes carried (the ciphertext); each datagram is PAIR_OVERHEAD bytes more. */
    sizes: { type: 'string', default: '1400,60' },
    seconds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    burst: { type: 'string', default: '16' },
    window: { type: 'string', default: '4096' },
    offload: { type: 'boolean', default: false },
  },
  strict: true,
});

const N = Number(opt.members);
const SIZES = opt.sizes.split(',').map(Number);
const BURST = Number(opt.burst);
const WINDOW = Number(opt.window);
const OFFLOAD = opt.offload;
const SECONDS = Number(opt.seconds);
const WARMUP = Number(opt.warmup);
const SWITCH_PID = opt['switch-pid'] !== undefined ? Number(opt['switch-pid']) : undefined;
if (!(N >= 2 && N <= 1000 && BURST >= 1 && BURST <= 64 && WINDOW >= BURST && SIZES.every((s) => s >= 0 && s + PAIR_OVERHEAD <= 8000))) {
  throw new Error(`bad arguments: members ${N}, burst ${BURST} (1..64), window ${WINDOW}, sizes ${opt.sizes}`);
}

const switchAddr = encodeAddress('127.0.0.1', Number(opt['switch-port']));
const switchKey = insecureSwitchKey().publicKey;
/** Every datagram of a burst goes to the switch: one address slot per datagram. */
const burstAddrs = Buffer.alloc(BURST * ADDR_SLOT);
for (let i = 0; i < BURST; i++) switchAddr.copy(burstAddrs, i * ADDR_SLOT);

interface Member {
  index: number;
  socket: UdpSocket;
  session: PortSession;
  joined: boolean;
  /** Our member id, from the switch's PEER entry about ourselves. */
  id: number;
  /** Bursts of the current size, each to one destination (as a pair session sends a batch to one peer). */
  bursts: FrameBatch[];
  /** The member id each burst is for. */
  burstDst: number[];
  next: number;
  received: number;
}

let phaseLength = 0;
let delivered = 0;
let deliveredBytes = 0;
/** Pair data addressed to another id than the receiver's: the relay or the steering sent it astray. */
let misrouted = 0;
/** Pair data whose sender id is no member, or the receiver itself. */
let badSource = 0;
/** Pair data of another size than the phase's: a straggler of the previous phase. */
let late = 0;
let sent = 0;
/** Datagrams sent to each member id over the whole run: what the switch's workers should each have relayed (steering by id mod workers). */
const sentTo = new Float64Array(65536);
let refused = 0;
let writtenOff = 0;
let stalls = 0;
let leaves = 0;
let problems = 0;
let lastProblem = '';
let joinedCount = 0;
let idsKnown = 0;

const members: Member[] = [];
const byId = new Map<number, Member>();

for (let index = 0; index < N; index++) {
  const a = Math.floor(index / MEMBERS_PER_ADDRESS);
  const socket = UdpSocket.bind({
    address: `127.0.${1 + Math.floor(a / 250)}.${1 + (a % 250)}`, port: 0, socketBuffer: 4 * 1024 * 1024,
    // As a vport binds (UDP GSO and GRO): a burst leaves as one message, and arrives as one.
    ...(OFFLOAD ? { offload: true, batchSize: 8 } : { batchSize: 64, slotSize: 8192 }),
  });
  const queue = new TxQueue(socket, { slabBytes: 64 * 1024, slots: 64 });
  const slots = new Uint16Array(socket.capacity);
  const frames = new MutableFrameBatch(Buffer.alloc(0), socket.capacity);
  const m: Member = { index, socket, session: undefined as unknown as PortSession, joined: false, id: 0, bursts: [], burstDst: [], next: 0, received: 0 };
  m.session = new PortSession(
    {
      send: (d) => socket.sendTo(d, switchAddr),
      event: (e) => {
        if (e.type === 'joined' && !m.joined) {
          m.joined = true;
          joinedCount++;
        } else if (e.type === 'left-by-switch') {
          leaves++;
        } else if (e.type === 'problem') {
          problems++;
          lastProblem = e.message;
        }
      },
      debug: () => {},
      // A pair-capable member hears its own directory entry first: that is its member id.
      longControl: (msg) => {
        if (msg.kind === LongControl.PEER && (msg.flags & PeerFlags.SELF) !== 0 && m.id === 0) {
          m.id = msg.id;
          idsKnown++;
        }
      },
    },
    queue,
    switchAddr,
    { privateKey: generateKeyPair().privateKey, switchPublicKey: switchKey, cipher: 'none', name: `relay${index}`, pairs: true },
  );
  members.push(m);
  socket.onDatagrams((batch) => {
    const { buf, offsets, lengths } = batch;
    let rest = 0;
    for (let i = 0; i < batch.count; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (len >= PAIR_OVERHEAD && buf[off] === PROTOCOL_VERSION && buf[off + 1] === MessageType.PAIR_DATA) {
        if (len !== phaseLength) {
          late++;
          continue;
        }
        if (buf.readUInt16BE(off + 2) !== m.id) misrouted++;
        else {
          const src = byId.get(buf.readUInt16BE(off + SRC_ID_OFFSET));
          if (src === undefined || src === m) badSource++;
        }
        delivered++;
        deliveredBytes += len;
        m.received++;
      } else {
        slots[rest++] = i;
      }
    }
    if (rest > 0) {
      frames.clear();
      const now = Date.now();
      for (let from = 0; from < rest; from += BATCH_SIZE) m.session.receive(batch, slots, from, Math.min(rest, from + BATCH_SIZE), now, frames);
    }
    pump();
  });
}

/** The sessions' timers: handshake retries (with cookies under load), keepalives. */
const poller = setInterval(() => {
  const now = Date.now();
  for (const m of members) {
    const t = m.session.nextTimeout();
    if (t !== undefined && t <= now) m.session.poll(now);
  }
}, POLL_MS);

// ---------------------------------------------------------------- traffic pump

let pumping = false;
let rr = 0;

/** Keep up to WINDOW datagrams in flight, round-robin over the members, one burst per member and turn. */
function pump(): void {
  if (!pumping) return;
  let refusedInRow = 0;
  while (sent - delivered - writtenOff < WINDOW && refusedInRow < N) {
    const m = members[rr]!;
    rr = rr + 1 === N ? 0 : rr + 1;
    const b = m.bursts[m.next]!;
    const n = m.socket.send(b, burstAddrs);
    sent += n;
    const dst = m.burstDst[m.next]!;
    sentTo[dst] = sentTo[dst]! + n;
    if (n < b.count) {
      // The socket's send queue is full: try the next member; after a full round, wait for deliveries.
      refused += b.count - n;
      refusedInRow++;
    } else {
      refusedInRow = 0;
    }
    m.next = m.next + 1 === m.bursts.length ? 0 : m.next + 1;
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

function progress(text: string): void {
  process.stdout.write(`gen: ${text}\n`);
}

/** Udp counters of /proc/net/snmp: this process runs in the switch's namespace, so they are that namespace's. */
function udpSnmp(): { rcvbufErrors: number; sndbufErrors: number } {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const head = lines[0]!.split(/\s+/);
  const vals = lines[1]!.split(/\s+/);
  return { rcvbufErrors: Number(vals[head.indexOf('RcvbufErrors')] ?? NaN), sndbufErrors: Number(vals[head.indexOf('SndbufErrors')] ?? NaN) };
}

/** Datagrams the kernel dropped from its per-CPU input queues (loopback's backlog; machine-wide): /proc/net/softnet_stat column 2. */
function softnetDrops(): number {
  return readFileSync('/proc/net/softnet_stat', 'utf8').trim().split('\n').reduce((a, l) => a + parseInt(l.trim().split(/\s+/)[1] ?? '0', 16), 0);
}

/** CPU seconds of the switch's main thread (its tid is its pid); the rest of the process is its other threads. */
function switchMainThreadCpu(): number {
  if (SWITCH_PID === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${SWITCH_PID}/task/${SWITCH_PID}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / ticksPerSecond();
  } catch {
    return NaN;
  }
}

async function join(): Promise<number> {
  const t0 = Date.now();
  for (const m of members) m.session.start(Date.now());
  while (joinedCount < N || idsKnown < N) {
    if (Date.now() - t0 > JOIN_TIMEOUT_MS) {
      throw new Error(`only ${joinedCount}/${N} members joined and ${idsKnown} learned their id in ${JOIN_TIMEOUT_MS} ms${lastProblem ? `; last problem: ${lastProblem}` : ''}`);
    }
    await sleep(5);
  }
  return Date.now() - t0;
}

/** Each member's bursts for frames of `size`: DESTS_PER_MEMBER destinations, BURST datagrams to each. */
function buildBursts(size: number): void {
  const len = size + PAIR_OVERHEAD;
  const dests = Math.min(DESTS_PER_MEMBER, N - 1);
  for (const m of members) {
    const buf = Buffer.alloc(dests * BURST * len);
    randomFillSync(buf);
    const offsets = new Uint32Array(dests * BURST);
    const lengths = new Uint32Array(dests * BURST).fill(len);
    m.bursts = [];
    m.burstDst = [];
    for (let d = 0; d < dests; d++) {
      const dst = members[(m.index + 1 + d) % N]!;
      for (let k = 0; k < BURST; k++) {
        const i = d * BURST + k;
        const off = i * len;
        offsets[i] = off;
        buf[off] = PROTOCOL_VERSION;
        buf[off + 1] = MessageType.PAIR_DATA;
        buf.writeUInt16BE(dst.id, off + 2);
        buf.writeUInt16BE(m.id, off + SRC_ID_OFFSET);
      }
      m.burstDst.push(dst.id);
      m.bursts.push({ buf, offsets: offsets.subarray(d * BURST, (d + 1) * BURST), lengths: lengths.subarray(d * BURST, (d + 1) * BURST), count: BURST });
    }
    // Members start at different destinations, so no id is everyone's first.
    m.next = m.index % dests;
  }
}

function snap() {
  const u = udpSnmp();
  const cpu = process.cpuUsage();
  const sw = SWITCH_PID === undefined ? undefined : cpuTimes(SWITCH_PID);
  return {
    t: performance.now(),
    delivered,
    deliveredBytes,
    sent,
    switchCpu: sw === undefined ? NaN : sw.user + sw.sys,
    switchSys: sw?.sys ?? NaN,
    softnetDrops: softnetDrops(),
    switchMainCpu: switchMainThreadCpu(),
    genCpu: (cpu.user + cpu.system) / 1e6,
    machineBusy: machineCpu().busy,
    ...u,
  };
}

async function measure(size: number) {
  buildBursts(size);
  const len = size + PAIR_OVERHEAD;
  phaseLength = len;
  const c0 = { delivered, sent, writtenOff, stalls, misrouted, badSource, late, refused, snmp: udpSnmp(), softnet: softnetDrops() };
  const t0 = Date.now();
  pumping = true;
  pump();
  await sleep(WARMUP * 1000);
  const a = snap();
  await sleep(SECONDS * 1000);
  const b = snap();
  pumping = false;
  // What is still in flight arrives (or is lost) before the next size starts.
  const drainUntil = Date.now() + DRAIN_MS;
  while (sent - delivered - writtenOff > 0 && Date.now() < drainUntil) await sleep(10);
  if (Date.now() - t0 > (WARMUP + SECONDS) * 1000 + PHASE_SLACK_MS) throw new Error(`the ${size}-byte phase overran its time`);
  const s = (b.t - a.t) / 1000;
  const snmpEnd = udpSnmp();
  const phaseSent = sent - c0.sent;
  const phaseDelivered = delivered - c0.delivered;
  const perMember = members.map((m) => m.received);
  for (const m of members) m.received = 0;
  const switchCpuS = b.switchCpu - a.switchCpu;
  return {
    frameBytes: size,
    datagramBytes: len,
    seconds: s,
    deliveredPerS: (b.delivered - a.delivered) / s,
    /** UDP payload bits delivered per second (the pair data as the switch relays it). */
    deliveredGbps: ((b.deliveredBytes - a.deliveredBytes) * 8) / s / 1e9,
    sentPerS: (b.sent - a.sent) / s,
    /** The whole phase (warm-up, measurement, drain): sent and never delivered. */
    phaseSent,
    phaseDelivered,
    lost: phaseSent - phaseDelivered,
    lossPct: phaseSent > 0 ? ((phaseSent - phaseDelivered) / phaseSent) * 100 : NaN,
    stalls: stalls - c0.stalls,
    /** Datagrams the generator's own send queues refused (they never left: not loss). */
    refused: refused - c0.refused,
    misrouted: misrouted - c0.misrouted,
    badSource: badSource - c0.badSource,
    late: late - c0.late,
    /** Fewest and most datagrams one member received in the phase: a member the relay forgot shows as 0. */
    minPerMember: Math.min(...perMember),
    maxPerMember: Math.max(...perMember),
    switchCpuPct: (switchCpuS / s) * 100,
    /** Of switchCpuPct, the kernel's share (system time: the syscalls, and on loopback the receiving side's work done in the sender's context). */
    switchSysPct: ((b.switchSys - a.switchSys) / s) * 100,
    switchMainThreadCpuPct: ((b.switchMainCpu - a.switchMainCpu) / s) * 100,
    generatorCpuPct: ((b.genCpu - a.genCpu) / s) * 100,
    /** Busy CPU of the whole machine in % of one core (2 cores = 200): includes the kernel's softirq work and other processes. */
    machineBusyPct: ((b.machineBusy - a.machineBusy) / s) * 100,
    deliveredPerSwitchCpuS: (b.delivered - a.delivered) / switchCpuS,
    udpRcvbufErrors: b.rcvbufErrors - a.rcvbufErrors,
    udpSndbufErrors: b.sndbufErrors - a.sndbufErrors,
    /** Over the whole phase, where the lost datagrams went: full receive buffers (this namespace), full input backlogs (the machine). */
    phaseRcvbufErrors: snmpEnd.rcvbufErrors - c0.snmp.rcvbufErrors,
    phaseSoftnetDrops: softnetDrops() - c0.softnet,
  };
}

async function main(): Promise<void> {
  progress(`${N} sockets bound${OFFLOAD ? ` (offload ${members[0]!.socket.offloads})` : ''}; joining`);
  const joinMs = await join();
  for (const m of members) byId.set(m.id, m);
  if (byId.size !== N) throw new Error(`${N} members but ${byId.size} distinct ids`);
  const ids = [...byId.keys()].sort((x, y) => x - y);
  progress(`${N} members joined in ${joinMs} ms, ids ${ids[0]}..${ids[ids.length - 1]}`);
  await sleep(200); // the switch's join bookkeeping (routes on every socket) is done
  const results = [];
  for (const size of SIZES) {
    const r = await measure(size);
    progress(
      `${size}-byte frames: ${Math.round(r.deliveredPerS)} datagrams/s (${r.deliveredGbps.toFixed(2)} Gbit/s), lost ${r.lost} of ${r.phaseSent}, misrouted ${r.misrouted}, ` +
        `vswitch ${r.switchCpuPct.toFixed(0)}% CPU (main thread ${r.switchMainThreadCpuPct.toFixed(0)}%), generator ${r.generatorCpuPct.toFixed(0)}%`,
    );
    results.push(r);
  }
  clearInterval(stallTimer);
  const result = { members: N, ids, burst: BURST, window: WINDOW, offload: OFFLOAD ? members[0]!.socket.offloads : 'off', joinMs, leaves, rejects: problems, sizes: results,
    sentTo: Object.fromEntries(ids.map((id) => [id, sentTo[id]!])) };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  // Stay joined until the bench has read the switch's status (SIGUSR2).
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, HOLD_AFTER_RESULT_MS);
    process.once('SIGUSR2', () => {
      clearTimeout(t);
      resolve();
    });
  });
  clearInterval(poller);
  for (const m of members) {
    m.session.leave();
    m.socket.close();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`gen: ${err.message}\n`);
  process.exit(1);
});
