// In-memory wire for the protocol: one SwitchSessions and PortSessions on
// MemorySockets, a fake clock, and a queue of datagrams in flight that tests
// may drop, duplicate, reorder, corrupt or redirect (STYLE rule 11).
import { BATCH_SIZE, MutableFrameBatch, buffersToBatch } from '../../lib/core/frames.js';
import { silentLogger, type Logger } from '../../lib/core/log.js';
import { ADDR_SLOT } from '../../lib/io/native.js';
import { TxQueue } from '../../lib/io/tx-queue.js';
import { MemorySocket } from '../../lib/io/memory-socket.js';
import { addressEquals, encodeAddress, formatAddress } from '../../lib/io/address.js';
import { generateKeyPair, type KeyPair } from '../../lib/crypto/keys.js';
import { MessageType, SWITCH_TICK_INTERVAL_MS } from '../../lib/protocol/constants.js';
import { insecureSwitchKey } from '../../lib/protocol/noise.js';
import { PortSession, type PortSessionEvent, type PortSessionOptions } from '../../lib/protocol/port-session.js';
import { RECEIVE_WINDOW, SwitchSessions, type Member, type SwitchSessionsOptions } from '../../lib/protocol/switch-sessions.js';

/** A datagram on the fake wire. */
export interface Datagram {
  data: Buffer;
  /** Source address slot (20 bytes) as the receiver will see it. */
  from: Buffer;
  /** Destination address slot. */
  dst: Buffer;
  /** 'up' = port -> switch, 'down' = switch -> port. */
  dir: 'up' | 'down';
}

export type Kind = 'initiation' | 'response' | 'cookie' | 'transport' | 'session-unknown' | 'refused' | 'other';

/** What kind of datagram this is, by its prefix. */
export function kindOf(d: Buffer): Kind {
  if (d.length < 2 || d[0] !== 2) return 'other';
  switch (d[1]) {
    case MessageType.HANDSHAKE_INITIATION:
      return 'initiation';
    case MessageType.HANDSHAKE_RESPONSE:
      return 'response';
    case MessageType.COOKIE_REPLY:
      return 'cookie';
    case MessageType.TRANSPORT_DATA:
      return 'transport';
    case MessageType.SESSION_UNKNOWN:
      return 'session-unknown';
    case MessageType.HANDSHAKE_REFUSED:
      return 'refused';
    default:
      return 'other';
  }
}

export const SWITCH_IP = '10.0.0.1';
export const SWITCH_UDP_PORT = 9999;

/** The address slot of port i (0-based) at start: 10.0.0.(10+i):(40000+i). */
export function portAddress(i: number): Buffer {
  return encodeAddress(`10.0.0.${10 + i}`, 40000 + i);
}

interface Link {
  socket: MemorySocket;
  queue: TxQueue;
}

export interface SwitchSide {
  sessions: SwitchSessions<Link>;
  link: Link;
  joined: Member<Link>[];
  left: { member: Member<Link>; reason: string }[];
  links: { member: Member<Link>; up: boolean }[];
  /** Frames the switch received (copied), with the sending member's id. */
  delivered: { memberId: number; frame: Buffer }[];
  /** Members by public key (base64), as last seen by joined(). */
  members: Map<string, Member<Link>>;
}

export interface PortSide {
  index: number;
  session: PortSession;
  keys: KeyPair;
  socket: MemorySocket;
  queue: TxQueue;
  /** This port's current underlay address (tests may change it to roam). */
  address: Buffer;
  events: PortSessionEvent[];
  delivered: Buffer[];
}

export interface HarnessOptions {
  ports?: number;
  /** Keys of ports the switch does not list (they still try to join). */
  unlistedPorts?: number;
  /** Open membership and cipher 'none' on both sides, with the published switch key: --insecure. */
  insecure?: boolean;
  switchOptions?: Partial<Omit<SwitchSessionsOptions, 'privateKey' | 'allow' | 'logger'>>;
  portOptions?: Partial<Omit<PortSessionOptions, 'privateKey' | 'switchPublicKey'>>;
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

export class SessionHarness {
  now: number;
  readonly switchKeys: KeyPair;
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
    this.nextTickAt = this.now + SWITCH_TICK_INTERVAL_MS;
    this.keepStray = opts.keepStray ?? true;
    this.recordFrames = opts.recordFrames ?? true;
    this.log = opts.log ?? silentLogger;
    this.switchKeys = opts.insecure ? insecureSwitchKey() : generateKeyPair();
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
    const socket = new MemorySocket((data, dst) => this.put({ data, from: Buffer.from(this.switchAddress), dst, dir: 'down' }));
    const link: Link = { socket, queue: new TxQueue(socket) };
    const side: SwitchSide = {
      sessions: undefined as unknown as SwitchSessions<Link>,
      link,
      joined: [],
      left: [],
      links: [],
      delivered: [],
      members: new Map(),
    };
    side.sessions = new SwitchSessions<Link>(
      {
        joined: (m) => {
          side.joined.push(m);
          side.members.set(m.publicKey, m);
          m.setReceiver((batch) => {
            if (!this.recordFrames) return;
            for (let i = 0; i < batch.count; i++) {
              const off = batch.offsets[i]!;
              side.delivered.push({ memberId: m.id, frame: Buffer.from(batch.buf.subarray(off, off + batch.lengths[i]!)) });
            }
          });
        },
        left: (m, reason) => side.left.push({ member: m, reason }),
        linkChanged: (m, up) => side.links.push({ member: m, up }),
        send: (l, datagram, to) => l.socket.sendTo(datagram, to),
      },
      {
        privateKey: this.switchKeys.privateKey,
        allow: this.opts.insecure ? 'open' : this.allowEntries(),
        ...(this.opts.insecure ? { cipher: 'none' as const } : {}),
        keepaliveS: 10,
        portTimeoutS: 30,
        logger: this.log,
        ...this.opts.switchOptions,
      },
    );
    return side;
  }

  private makePort(i: number, keys: KeyPair): PortSide {
    const address = portAddress(i);
    const socket = new MemorySocket((data, dst) => this.put({ data, from: Buffer.from(side.address), dst, dir: 'up' }));
    const queue = new TxQueue(socket);
    const side: PortSide = {
      index: i,
      session: undefined as unknown as PortSession,
      keys,
      socket,
      queue,
      address,
      events: [],
      delivered: [],
    };
    const switchAddr = Buffer.from(this.switchAddress);
    side.session = new PortSession(
      {
        send: (datagram) => socket.sendTo(datagram, switchAddr),
        event: (e) => side.events.push(e),
        debug: () => {},
      },
      queue,
      switchAddr,
      {
        privateKey: keys.privateKey,
        switchPublicKey: this.switchKeys.publicKey,
        ...(this.opts.insecure ? { cipher: 'none' as const } : {}),
        ...this.opts.portOptions,
      },
    );
    return side;
  }

  /** Replace the switch sessions with fresh ones (same key and allow list): a vswitch restart. */
  restartSwitch(): SwitchSide {
    this.sw = this.makeSwitch();
    return this.sw;
  }

  /** The switch's member for port i (after it joined). */
  member(i: number): Member<Link> {
    const m = this.sw.members.get(this.ports[i]!.keys.publicKey.toString('base64'));
    if (m === undefined) throw new Error(`port ${i} has not joined the switch`);
    return m;
  }

  private put(d: Datagram): void {
    this.inflight.push(d);
  }

  /** Send everything queued (TxQueues are flushed explicitly here, not by microtask). */
  flushQueues(): void {
    this.sw.link.queue.flush();
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
   * Each batch is copied into a fresh slab: the sessions decrypt in place.
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
      for (let from = 0; from < batch.count; from += RECEIVE_WINDOW) {
        for (const m of this.sw.sessions.receive(this.sw.link, batch, addrs, from, Math.min(batch.count, from + RECEIVE_WINDOW), this.now)) m.deliver();
      }
      return;
    }
    const slots = new Uint16Array(list.length);
    for (let k = 0; k < list.length; k++) slots[k] = k;
    const frames = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
    target.session.receive(batch, slots, 0, list.length, this.now, frames);
    if (this.recordFrames) {
      for (let k = 0; k < frames.count; k++) target.delivered.push(Buffer.from(frames.buf.subarray(frames.offsets[k]!, frames.offsets[k]! + frames.lengths[k]!)));
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
        const t = p.session.nextTimeout();
        if (t !== undefined) next = Math.min(next, Math.max(t, this.now));
      }
      this.now = Math.max(this.now, next);
      for (const p of this.ports) {
        const t = p.session.nextTimeout();
        if (t !== undefined && t <= this.now) p.session.poll(this.now);
      }
      if (tick && this.now >= this.nextTickAt) {
        this.sw.sessions.tick(this.now);
        this.nextTickAt = this.now + SWITCH_TICK_INTERVAL_MS;
      }
      this.settle(o.tamper);
      if (this.now >= target) return;
    }
    throw new Error('advance() did not reach its target: a timer fires without moving forward');
  }

  /** Start ports (all listed ones by default) and let the handshakes run. */
  join(which: readonly number[] = this.allowKeys.map((_, i) => i)): void {
    for (const i of which) this.ports[i]!.session.start(this.now);
    this.settle();
  }

  /** Port i sends frames toward the switch (they sit in its TxQueue until take/settle). */
  portSend(i: number, frames: readonly Buffer[]): void {
    for (let k = 0; k < frames.length; k += BATCH_SIZE) this.ports[i]!.session.transmit(buffersToBatch(frames.slice(k, k + BATCH_SIZE)));
  }

  /** The switch sends frames out of port i's member. */
  switchSend(i: number, frames: readonly Buffer[]): void {
    const m = this.member(i);
    for (let k = 0; k < frames.length; k += BATCH_SIZE) m.send(buffersToBatch(frames.slice(k, k + BATCH_SIZE)));
  }

  /** Counters of port i. */
  portCounters(i: number): Record<string, number> {
    return this.ports[i]!.session.status(this.now).counters;
  }

  /** Counters of the switch. */
  switchCounters(): Record<string, number> {
    return { ...this.sw.sessions.counters, ports: this.sw.sessions.size, pendingHandshakes: this.sw.sessions.pendingHandshakes };
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
