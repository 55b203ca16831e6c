// In-memory wire for the protocol-2 engines: one SecureSwitchEngine and
// SecurePortEngines on fake sockets, a fake clock, and a queue of datagrams in
// flight that tests may drop, duplicate, reorder, corrupt or redirect (STYLE rule 11).
import type { FrameBatch } from '../../lib/core/frames.js';
import { BATCH_SIZE, MutableFrameBatch, buffersToBatch } from '../../lib/core/frames.js';
import { ADDR_SLOT } from '../../lib/io/native.js';
import { silentLogger, type Logger } from '../../lib/core/log.js';
import { TxQueue } from '../../lib/io/tx-queue.js';
import type { UdpSocket } from '../../lib/io/udp.js';
import { addressEquals, encodeAddress, formatAddress } from '../../lib/io/address.js';
import type { EnginePeer, SwitchEngineHost } from '../../lib/switch-engine.js';
import type { PortEngineEvent, PortEngineHost } from '../../lib/port-engine.js';
import { SecureSwitchEngine, type SecureSwitchOptions } from '../../lib/secure/switch-engine.js';
import { SecurePortEngine, type SecurePortOptions } from '../../lib/secure/port-engine.js';
import { generateKeyPair, type KeyPair } from '../../lib/crypto/keys.js';
import { SWITCH_SWEEP_INTERVAL_MS } from '../../lib/protocol/constants.js';
import { V2MessageType } from '../../lib/crypto/constants.js';

/** A datagram on the fake wire. `to` is 'switch' or a port's index. */
export interface Datagram {
  data: Buffer;
  /** Source address slot (20 bytes) as the receiver will see it. */
  from: Buffer;
  /** Destination address slot. */
  dst: Buffer;
  /** 'up' = port -> switch, 'down' = switch -> port. */
  dir: 'up' | 'down';
}

export type Kind = 'initiation' | 'response' | 'cookie' | 'transport' | 'session-unknown' | 'other';

/** What kind of v2 datagram this is, by its prefix. */
export function kindOf(d: Buffer): Kind {
  if (d.length < 2 || d[0] !== 2) return 'other';
  switch (d[1]) {
    case V2MessageType.HANDSHAKE_INITIATION:
      return 'initiation';
    case V2MessageType.HANDSHAKE_RESPONSE:
      return 'response';
    case V2MessageType.COOKIE_REPLY:
      return 'cookie';
    case V2MessageType.TRANSPORT_DATA:
      return 'transport';
    case 0x25:
      return 'session-unknown';
    default:
      return 'other';
  }
}

/** A UdpSocket stand-in: whatever is sent is handed to `sink` as copies. */
export class FakeSocket {
  closed = false;
  readonly port: number;
  constructor(
    port: number,
    private readonly sink: (data: Buffer, dst: Buffer) => void,
  ) {
    this.port = port;
  }
  send(batch: FrameBatch, addrs: Buffer): number {
    for (let i = 0; i < batch.count; i++) {
      const off = batch.offsets[i]!;
      this.sink(Buffer.from(batch.buf.subarray(off, off + batch.lengths[i]!)), Buffer.from(addrs.subarray(i * ADDR_SLOT, (i + 1) * ADDR_SLOT)));
    }
    return batch.count;
  }
  sendTo(buf: Buffer, addr: Buffer, addrOffset = 0): number {
    this.sink(Buffer.from(buf), Buffer.from(addr.subarray(addrOffset, addrOffset + ADDR_SLOT)));
    return 1;
  }
  asUdp(): UdpSocket {
    return this as unknown as UdpSocket;
  }
}

export const SWITCH_IP = '10.0.0.1';
export const SWITCH_UDP_PORT = 9999;

/** The address slot of port i (0-based) at start: 10.0.0.(10+i):(40000+i). */
export function portAddress(i: number): Buffer {
  return encodeAddress(`10.0.0.${10 + i}`, 40000 + i);
}

export interface SwitchSide {
  engine: SecureSwitchEngine;
  socket: FakeSocket;
  queue: TxQueue;
  joined: EnginePeer[];
  left: { peer: EnginePeer; reason: string }[];
  /** Frames delivered to the switch, copied, with the sending peer's id. */
  delivered: { peerId: number; frame: Buffer }[];
  /** Peers by public key (base64), as last seen by joined(). */
  peers: Map<string, EnginePeer>;
}

export interface PortSide {
  index: number;
  engine: SecurePortEngine;
  keys: KeyPair;
  socket: FakeSocket;
  queue: TxQueue;
  /** This port's current underlay address (tests may change it to roam). */
  address: Buffer;
  events: PortEngineEvent[];
  delivered: Buffer[];
}

export interface HarnessOptions {
  ports?: number;
  /** Keys of ports the switch does not list (they still try to join). */
  unlistedPorts?: number;
  switchOptions?: Partial<Omit<SecureSwitchOptions, 'privateKey' | 'allow'>>;
  portOptions?: Partial<Omit<SecurePortOptions, 'privateKey' | 'switchPublicKey'>>;
  /** Start of the fake clock (Unix ms: the handshake timestamps derive from it). */
  start?: number;
  /** Keep datagrams received by nobody (default true); the fuzz run turns this off. */
  keepStray?: boolean;
  /** Copy delivered frames (default true); off in the fuzz run. */
  recordFrames?: boolean;
  log?: Logger;
}

/** Bound on delivery rounds of settle(): an exchange that never ends is a bug. */
const SETTLE_MAX_ROUNDS = 1000;

export class EngineHarness {
  now: number;
  readonly switchKeys: KeyPair = generateKeyPair();
  readonly switchAddress = encodeAddress(SWITCH_IP, SWITCH_UDP_PORT);
  sw!: SwitchSide;
  readonly ports: PortSide[] = [];
  /** Datagrams sent and not yet delivered, in send order. */
  inflight: Datagram[] = [];
  /** Datagrams addressed to nobody (an address no port has). */
  readonly stray: Datagram[] = [];
  readonly log: Logger;
  private nextTickAt: number;
  private readonly keepStray: boolean;
  private readonly recordFrames: boolean;

  /** Keys of the ports the switch lists (the first `ports` ports). */
  readonly allowKeys: KeyPair[];

  constructor(readonly opts: HarnessOptions = {}) {
    this.now = opts.start ?? 1_700_000_000_000;
    this.nextTickAt = this.now + SWITCH_SWEEP_INTERVAL_MS;
    this.keepStray = opts.keepStray ?? true;
    this.recordFrames = opts.recordFrames ?? true;
    this.log = opts.log ?? silentLogger;
    const listed = opts.ports ?? 1;
    const total = listed + (opts.unlistedPorts ?? 0);
    const portKeys: KeyPair[] = [];
    for (let i = 0; i < total; i++) portKeys.push(generateKeyPair());
    this.allowKeys = portKeys.slice(0, listed);
    this.sw = this.makeSwitch();
    for (let i = 0; i < total; i++) this.ports.push(this.makePort(i, portKeys[i]!));
  }

  /** The allow entries the switch starts with: ports 0..ports-1 named p0, p1... */
  allowEntries(keys: readonly KeyPair[] = this.allowKeys): { publicKey: Buffer; name: string; line: number }[] {
    return keys.map((k, i) => ({ publicKey: k.publicKey, name: `p${this.allowKeys.indexOf(k)}`, line: i + 1 }));
  }

  private makeSwitch(): SwitchSide {
    const socket = new FakeSocket(SWITCH_UDP_PORT, (data, dst) => this.put({ data, from: Buffer.from(this.switchAddress), dst, dir: 'down' }));
    const queue = new TxQueue(socket.asUdp());
    const side: SwitchSide = {
      engine: undefined as unknown as SecureSwitchEngine,
      socket,
      queue,
      joined: [],
      left: [],
      delivered: [],
      peers: new Map(),
    };
    const host: SwitchEngineHost = {
      log: this.log,
      joined: (peer) => {
        side.joined.push(peer);
        if (peer.publicKey !== undefined) side.peers.set(peer.publicKey, peer);
      },
      left: (peer, reason) => side.left.push({ peer, reason }),
      deliver: (peer, buf, off, len) => {
        if (this.recordFrames) side.delivered.push({ peerId: peer.id, frame: Buffer.from(buf.subarray(off, off + len)) });
      },
      sendTo: (s, datagram, addr) => (s as unknown as FakeSocket).sendTo(datagram, addr),
      queueFor: () => queue,
    };
    side.engine = new SecureSwitchEngine(host, () => socket.asUdp(), {
      privateKey: this.switchKeys.privateKey,
      allow: this.allowEntries(),
      keepaliveS: 10,
      portTimeoutS: 30,
      ...this.opts.switchOptions,
    });
    return side;
  }

  private makePort(i: number, keys: KeyPair): PortSide {
    const address = portAddress(i);
    const socket = new FakeSocket(40000 + i, (data, dst) => this.put({ data, from: Buffer.from(side.address), dst, dir: 'up' }));
    const queue = new TxQueue(socket.asUdp());
    const side: PortSide = {
      index: i,
      engine: undefined as unknown as SecurePortEngine,
      keys,
      socket,
      queue,
      address,
      events: [],
      delivered: [],
    };
    const switchAddr = Buffer.from(this.switchAddress);
    const host: PortEngineHost = {
      log: this.log,
      switchAddr,
      queue,
      send: (datagram) => socket.sendTo(datagram, switchAddr),
      deliver: (buf, off, len) => {
        if (this.recordFrames) side.delivered.push(Buffer.from(buf.subarray(off, off + len)));
      },
      event: (e) => side.events.push(e),
    };
    side.engine = new SecurePortEngine(host, {
      privateKey: keys.privateKey,
      switchPublicKey: this.switchKeys.publicKey,
      ...this.opts.portOptions,
    });
    return side;
  }

  /** Replace the switch engine with a fresh one (same key and allow list): a vswitch restart. */
  restartSwitch(): SwitchSide {
    this.sw = this.makeSwitch();
    return this.sw;
  }

  /** The switch's view of port i (after it joined). */
  peer(i: number): EnginePeer {
    const p = this.sw.peers.get(this.ports[i]!.keys.publicKey.toString('base64'));
    if (p === undefined) throw new Error(`port ${i} has not joined the switch`);
    return p;
  }

  private put(d: Datagram): void {
    this.inflight.push(d);
  }

  /** Send everything the engines queued (TxQueues are flushed explicitly, not by microtask). */
  flushQueues(): void {
    this.sw.queue.flush();
    for (const p of this.ports) p.queue.flush();
  }

  /** Take every datagram in flight (after flushing queues); the caller decides what arrives. */
  take(filter: (d: Datagram) => boolean = () => true): Datagram[] {
    this.flushQueues();
    const taken: Datagram[] = [];
    const kept: Datagram[] = [];
    for (const d of this.inflight) (filter(d) ? taken : kept).push(d);
    this.inflight = kept;
    return taken;
  }

  /**
   * Deliver datagrams in order, grouped into receive batches of up to 64 per
   * destination (consecutive datagrams to the same receiver share a batch).
   * Each batch is copied into a fresh slab: the engines decrypt in place.
   */
  deliver(list: readonly Datagram[]): void {
    let i = 0;
    while (i < list.length) {
      const target = this.route(list[i]!);
      let n = 1;
      while (i + n < list.length && n < BATCH_SIZE && this.route(list[i + n]!) === target) n++;
      this.deliverBatch(target, list.slice(i, i + n));
      i += n;
    }
  }

  private route(d: Datagram): 'switch' | PortSide | null {
    if (d.dir === 'up') return addressEquals(d.dst, 0, this.switchAddress, 0) ? 'switch' : null;
    for (const p of this.ports) if (addressEquals(d.dst, 0, p.address, 0)) return p;
    return null;
  }

  private deliverBatch(target: 'switch' | PortSide | null, list: readonly Datagram[]): void {
    if (target === null) {
      if (this.keepStray) this.stray.push(...list);
      return;
    }
    const total = list.reduce((n, d) => n + d.data.length, 0);
    const batch = new MutableFrameBatch(Buffer.alloc(Math.max(total, 1)), BATCH_SIZE);
    const addrs = Buffer.alloc(BATCH_SIZE * ADDR_SLOT);
    let off = 0;
    for (let k = 0; k < list.length; k++) {
      const d = list[k]!;
      d.data.copy(batch.buf, off);
      batch.push(off, d.data.length);
      d.from.copy(addrs, k * ADDR_SLOT);
      off += d.data.length;
    }
    if (target === 'switch') {
      this.sw.engine.receive(this.sw.socket.asUdp(), batch, addrs, this.now);
    } else {
      const slots = new Uint16Array(list.length);
      for (let k = 0; k < list.length; k++) slots[k] = k;
      target.engine.receive(batch, slots, list.length, this.now);
    }
  }

  /** Deliver everything in flight, and whatever that provokes, until the wire is quiet. */
  settle(tamper?: (list: Datagram[]) => Datagram[]): void {
    for (let round = 0; round < SETTLE_MAX_ROUNDS; round++) {
      const list = this.take();
      if (list.length === 0) return;
      this.deliver(tamper ? tamper(list) : list);
    }
    throw new Error(`the wire did not go quiet in ${SETTLE_MAX_ROUNDS} rounds`);
  }

  /**
   * Move the clock forward by `ms`, stopping at every port deadline and switch
   * tick on the way (each followed by settle()). `tick: false` holds the switch's
   * timers (e.g. to keep it "under load" across a port retry).
   */
  advance(ms: number, o: { tick?: boolean; tamper?: (list: Datagram[]) => Datagram[] } = {}): void {
    const target = this.now + ms;
    const tick = o.tick ?? true;
    for (let step = 0; step < 100_000; step++) {
      let next = target;
      if (tick) next = Math.min(next, this.nextTickAt);
      for (const p of this.ports) {
        const t = p.engine.nextTimeout();
        if (t !== undefined) next = Math.min(next, Math.max(t, this.now));
      }
      this.now = Math.max(this.now, next);
      for (const p of this.ports) {
        const t = p.engine.nextTimeout();
        if (t !== undefined && t <= this.now) p.engine.poll(this.now);
      }
      if (tick && this.now >= this.nextTickAt) {
        this.sw.engine.tick(this.now);
        this.nextTickAt = this.now + SWITCH_SWEEP_INTERVAL_MS;
      }
      this.settle(o.tamper);
      if (this.now >= target) return;
    }
    throw new Error('advance() did not reach its target: a timer fires without moving forward');
  }

  /** Start ports (all by default) and let the handshakes run. */
  join(which: readonly number[] = this.allowKeys.map((_, i) => i)): void {
    for (const i of which) this.ports[i]!.engine.start(this.now);
    this.settle();
  }

  /** Port i sends frames toward the switch (they sit in its TxQueue until take/settle). */
  portSend(i: number, frames: readonly Buffer[]): void {
    for (let k = 0; k < frames.length; k += BATCH_SIZE) this.ports[i]!.engine.transmit(buffersToBatch(frames.slice(k, k + BATCH_SIZE)));
  }

  /** The switch sends frames out of port i's switch port. */
  switchSend(i: number, frames: readonly Buffer[]): void {
    const peer = this.peer(i);
    for (let k = 0; k < frames.length; k += BATCH_SIZE) this.sw.engine.transmit(peer, buffersToBatch(frames.slice(k, k + BATCH_SIZE)));
  }

  /** Counters of port i. */
  portCounters(i: number): Record<string, number> {
    return this.ports[i]!.engine.status(this.now).counters;
  }

  describe(d: Datagram): string {
    return `${d.dir} ${kindOf(d.data)} ${d.data.length} B from ${formatAddress(d.from)} to ${formatAddress(d.dst)}`;
  }
}

/** A test Ethernet frame: broadcast destination, a locally administered source, ethertype 0x88b5 and `id` in the payload. */
export function testFrame(id: number, size = 64): Buffer {
  const f = Buffer.alloc(Math.max(size, 18));
  f.fill(0xff, 0, 6);
  f[6] = 0x02;
  f.writeUInt32BE(0x00454c00, 7);
  f[11] = 1;
  f.writeUInt16BE(0x88b5, 12);
  f.writeUInt32BE(id >>> 0, 14);
  for (let i = 18; i < f.length; i++) f[i] = (id * 31 + i) & 0xff;
  return f;
}

/** The id testFrame() wrote. */
export function frameId(f: Buffer): number {
  return f.readUInt32BE(14);
}

/** Transport counter of a transport datagram. */
export function counterOf(d: Buffer): number {
  return d.readUInt32BE(8) * 0x1_0000_0000 + d.readUInt32BE(12);
}

/** Deterministic PRNG (mulberry32) so failures replay with the same seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates with the given random source. */
export function shuffle<T>(list: T[], rnd: () => number): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}
