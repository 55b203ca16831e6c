// The UDP underlay socket: a typed wrapper over the addon's batched socket that
// owns the receive slabs and counters the native side fills (csrc/udp_linux.cc).
import type { FrameBatch } from '../core/frames.js';
import { ADDR_SLOT, native, UDP_GRO_MAX_SEGMENTS, UDP_STAT_COUNT, UdpStat, type NativeUdp } from './native.js';

/** Options of UdpSocket.bind. */
export interface UdpBindOptions {
  /** Bind address: '::' (dual stack, the default), '0.0.0.0', or a literal. */
  address?: string;
  /** 0 (the default) lets the kernel pick; read it back from `port`. */
  port?: number;
  /** Most datagrams handed over per receive callback. */
  batchSize?: number;
  /** Bytes per receive slot; larger datagrams are dropped and counted as rxTruncated. */
  slotSize?: number;
  /** Datagrams held while the kernel says EAGAIN/ENOBUFS; beyond that they are dropped. */
  sendQueue?: number;
  /** Requested SO_RCVBUF/SO_SNDBUF in bytes (best effort). */
  socketBuffer?: number;
  /** UDP GSO on send and GRO on receive where the kernel has them (default false). */
  offload?: boolean;
  /**
   * Send IPv4 datagrams with a zero UDP checksum (SO_NO_CHECK), as RFC 7348
   * asks of VXLAN and the kernel's vxlan driver does by default; IPv6 keeps
   * its checksum, which it needs. Not with `offload` (the kernel refuses GSO
   * without a checksum). Default false.
   */
  zeroChecksumV4?: boolean;
  /**
   * Accept IPv6 datagrams whose UDP checksum is zero (UDP_NO_CHECK6_RX, the
   * kernel vxlan's udp6zerocsumrx), which the kernel otherwise drops: RFC 7348
   * says a VTEP MUST accept them, and RFC 6935 allows them for tunnels. An
   * IPv4 socket accepts them anyway. Default false.
   */
  zeroChecksumV6Rx?: boolean;
  /**
   * SO_REUSEPORT: other sockets (relay workers' threads, lib/daemon/relay-workers.ts)
   * may bind the same address and port; the kernel then spreads datagrams over
   * them unless steerPairData() says otherwise. With `exclusive`, bind still
   * fails with EADDRINUSE if anything held the port before. Default false.
   */
  reusePort?: boolean;
  exclusive?: boolean;
  /** Keep the counters in a SharedArrayBuffer, so another thread can read `statsArray` as it changes. Default false. */
  sharedStats?: boolean;
}

export const UDP_DEFAULTS = {
  address: '::',
  port: 0,
  batchSize: 64,
  // A whole UDP payload always fits, so nothing is truncated by default.
  slotSize: 65536,
  sendQueue: 1024,
  // Room for bursts of a few thousand full-size frames between loop turns.
  socketBuffer: 4 * 1024 * 1024,
  offload: false,
  zeroChecksumV4: false,
  zeroChecksumV6Rx: false,
  reusePort: false,
  exclusive: false,
  sharedStats: false,
} as const;

/** Counters of a UDP socket, kept by the addon. */
export type UdpStats = { -readonly [K in keyof typeof UdpStat]: number };

/**
 * Receives datagram i as batch.buf[batch.offsets[i] .. + batch.lengths[i]) from
 * the peer in addrs[i * ADDR_SLOT ..] (see lib/udp-address.ts). All views are
 * valid only during the call: the next batch overwrites them.
 */
export type DatagramReceiver = (batch: FrameBatch, addrs: Buffer) => void;

/** What sends datagrams: a UdpSocket, or a MemorySocket in tests (lib/io/memory-socket.ts). */
export interface DatagramSocket {
  readonly closed: boolean;
  /** Send datagram i = batch.buf[offsets[i] .. + lengths[i]) to addrs[i * ADDR_SLOT ..]; returns how many were sent or queued. */
  send(batch: FrameBatch, addrs: Buffer): number;
  /** Send one datagram to the encoded address at addr[addrOffset ..]. */
  sendTo(buf: Buffer, addr: Buffer, addrOffset?: number): number;
}

/** The receive batch, reused for every callback so receiving never allocates. */
class ReceiveBatch implements FrameBatch {
  count = 0;
  constructor(
    readonly buf: Buffer,
    readonly offsets: Uint32Array,
    readonly lengths: Uint32Array,
  ) {}
}

const STAT_NAMES = Object.keys(UdpStat) as (keyof typeof UdpStat)[];

export class UdpSocket implements DatagramSocket {
  private readonly handle: NativeUdp;
  private readonly stat: Float64Array;
  private readonly rxBatch: ReceiveBatch;
  private readonly rxAddrs: Buffer;
  private receiver: DatagramReceiver | null = null;
  private isClosed = false;
  /** Most datagrams one receive callback can hand over. */
  readonly capacity: number;
  // One-datagram scratch for sendTo.
  private readonly oneOffset = new Uint32Array(1);
  private readonly oneLength = new Uint32Array(1);

  /** Open, bind and start receiving. Throws an Error with .code (e.g. 'EADDRINUSE', 'ERR_INVALID_ADDRESS'). */
  static bind(opts: UdpBindOptions = {}): UdpSocket {
    return new UdpSocket({ ...UDP_DEFAULTS, ...stripUndefined(opts) });
  }

  private constructor(opts: Required<UdpBindOptions>) {
    const slab = Buffer.allocUnsafeSlow(opts.batchSize * opts.slotSize);
    // With GRO one message can become up to UDP_GRO_MAX_SEGMENTS datagrams.
    const capacity = opts.batchSize * (opts.offload ? UDP_GRO_MAX_SEGMENTS : 1);
    const offsets = new Uint32Array(capacity);
    const lengths = new Uint32Array(capacity);
    this.rxAddrs = Buffer.allocUnsafeSlow(capacity * ADDR_SLOT);
    this.capacity = capacity;
    this.stat = opts.sharedStats ? new Float64Array(new SharedArrayBuffer(UDP_STAT_COUNT * 8)) : new Float64Array(UDP_STAT_COUNT);
    this.rxBatch = new ReceiveBatch(slab, offsets, lengths);
    this.handle = new (native().UdpSocket)(
      opts,
      (count) => this.deliver(count),
      slab,
      offsets,
      lengths,
      this.rxAddrs,
      this.stat,
    );
  }

  private deliver(count: number): void {
    this.rxBatch.count = count;
    // Without a receiver the datagrams are counted (rxDatagrams) and dropped.
    this.receiver?.(this.rxBatch, this.rxAddrs);
  }

  /** Install (or with null, detach) the receive handler. */
  onDatagrams(fn: DatagramReceiver | null): void {
    this.receiver = fn;
  }

  /**
   * Send datagram i = batch.buf[offsets[i] .. + lengths[i]) to addrs[i * ADDR_SLOT ..].
   * Never blocks and never throws for network errors (they are counted);
   * returns how many datagrams were sent or queued.
   */
  send(batch: FrameBatch, addrs: Buffer): number {
    if (this.isClosed || batch.count === 0) return 0;
    return this.handle.send(batch.buf, batch.offsets, batch.lengths, addrs, batch.count);
  }

  /** Send one datagram to the encoded address at addr[addrOffset ..] (control messages). */
  sendTo(buf: Buffer, addr: Buffer, addrOffset = 0): number {
    if (this.isClosed) return 0;
    this.oneLength[0] = buf.length;
    const slot = addrOffset === 0 ? addr : addr.subarray(addrOffset, addrOffset + ADDR_SLOT);
    return this.handle.send(buf, this.oneOffset, this.oneLength, slot, 1);
  }

  /**
   * Program the relay table (a switch's socket): member `id` (1..65535) lives
   * at, and only sends from, the 20-byte address slot `addr`; null removes the
   * route. Reprogramming an id moves it (the old address no longer counts as
   * that member); an address another member had becomes this one's, and that
   * member loses its route. From then on pair data from one programmed member
   * to another is forwarded by the addon, unchanged and GSO-batched, without
   * reaching the receiver; the rest of the pair data (unknown source, no route,
   * addressed to its sender, or to a member of another `group`: its network)
   * still does. Throws ERR_OUT_OF_RANGE for a bad id, group (0..65535) or slot
   * size, ERR_INVALID_ADDRESS for an IPv6 member on an IPv4 socket.
   */
  setRelayRoute(id: number, addr: Buffer | null, group = 0): void {
    if (!this.isClosed) this.handle.setRelayRoute(id, addr, group);
  }

  /**
   * Where relayed datagrams are counted per member: RELAY_COUNTERS_PER_MEMBER
   * doubles per id, at id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.*. Ids at
   * or beyond length / RELAY_COUNTERS_PER_MEMBER are relayed uncounted; hand
   * over a larger array to count them (it replaces this one).
   */
  setRelayCounters(counters: Float64Array): void {
    if (!this.isClosed) this.handle.setRelayCounters(counters);
  }

  /**
   * Steer the port's SO_REUSEPORT group (a socket bound first with
   * `reusePort`): pair data for member id D goes to the group's socket
   * 1 + (D mod workers), everything else to this one (socket 0). 0 detaches.
   */
  steerPairData(workers: number): void {
    if (!this.isClosed) this.handle.steerPairData(workers);
  }

  /** A snapshot of the counters (allocates; for status and tests). */
  get stats(): UdpStats {
    const out = {} as UdpStats;
    for (const name of STAT_NAMES) out[name] = this.stat[UdpStat[name]]!;
    return out;
  }

  /** The live counter array, indexed by UdpStat (no allocation per read). */
  get statsArray(): Float64Array {
    return this.stat;
  }

  get port(): number {
    return this.handle.port;
  }

  get family(): 4 | 6 {
    return this.handle.family;
  }

  /** What the kernel agreed to with `offload: true`: "gso,gro", "gso", "gro" or "none". */
  get offloads(): string {
    return this.handle.offloads;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Stop reading: the kernel buffers, then drops, further datagrams. */
  pause(): void {
    if (!this.isClosed) this.handle.pause();
  }

  /** Read again after pause(). */
  resume(): void {
    if (!this.isClosed) this.handle.resume();
  }

  /** Keep the process alive while open (the default). */
  ref(): void {
    if (!this.isClosed) this.handle.ref();
  }

  /** Let the process exit while open. */
  unref(): void {
    if (!this.isClosed) this.handle.unref();
  }

  /** Idempotent; safe inside the receive callback. Queued datagrams are discarded. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.receiver = null;
    this.handle.close();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
