// TapDevice: a Linux TAP interface as a typed, batch-oriented Port.
// Owns the receive slab the addon reads into; configuration goes through the addon too.
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { BATCH_SIZE, FRAME_SLOT, type FrameBatch, buffersToBatch } from '../core/frames.js';
import {
  IfFlag,
  LINK_EVENT_FIELDS,
  LinkEventKind,
  native,
  type NativeLinkWatcher,
  type NativeTap,
  TAP_STAT_COUNT,
  TapStat,
} from './native.js';
import type { BatchReceiver, Port } from '../core/port.js';
import { formatMac, isMulticast, macFromBuffer, macToBuffer, parseMac } from '../core/ethernet.js';
import { EtherlinkError, errorCode } from '../core/errors.js';

/** Linux IFNAMSIZ less the terminating NUL. */
export const MAX_IFNAME = 15;
/** Smallest MTU a TAP accepts here. */
export const MIN_MTU = 68;
/** Largest MTU a TAP accepts. */
export const MAX_MTU = 65535;
export const DEFAULT_TAP_NAME = 'etl%d';
/** Frames that may wait for writability before new ones are dropped. */
export const DEFAULT_WRITE_QUEUE = 1024;

/** Options of TapDevice.open. */
export interface TapOptions {
  /** Exact interface name, or a pattern containing %d for a kernel-chosen one. Default "etl%d". */
  name?: string;
  mtu?: number;
  /** "aa:bb:cc:dd:ee:ff"; default: the kernel's random one. */
  mac?: string;
  /** Addresses in CIDR notation, IPv4 or IPv6 ("10.0.0.1/24", "fd00::1/64"). */
  addresses?: readonly string[];
  /** Bring the link up after configuring it. Default true. */
  up?: boolean;
  /** Frames read per batch. Default 64. */
  batchSize?: number;
  /** Frames queued when the device is not writable before drops. Default 1024. */
  writeQueue?: number;
  /**
   * TCP segmentation offload: the kernel hands over 64 KiB super-frames, which
   * the addon splits into wire-sized frames, and consecutive TCP segments are
   * merged before they are written back. Frames seen by JS are always
   * ordinary Ethernet frames. Default false.
   */
  offload?: boolean;
}

/** Frames one offload batch may hold (a super-frame splits into up to ~46). */
export const OFFLOAD_BATCH_FRAMES = 1024;
/** Receive slab of an offload device: several super-frames and their segments. */
export const OFFLOAD_SLAB_BYTES = 2 * 1024 * 1024;

/** Counters of a TAP device, kept by the addon. */
export interface TapStats {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  txDropped: number;
  rxErrors: number;
  txErrors: number;
  txQueued: number;
  rxBatches: number;
  queueDepth: number;
  rxSuperFrames: number;
  txSuperFrames: number;
}

/** An address in CIDR form, parsed (parseCidr). */
export interface ParsedCidr {
  family: 4 | 6;
  address: string;
  bytes: Buffer;
  prefix: number;
}

/** A TAP's link as the kernel reports it: the 'link' event and `TapDevice.link`. */
export interface LinkState {
  /** adminUp && carrier: frames can flow. */
  up: boolean;
  /** IFF_UP: `ip link set DEV up` / `down` (or TapOptions.up). */
  adminUp: boolean;
  /**
   * The lower layer is up: IFF_LOWER_UP (IFF_RUNNING when queried); off after
   * `ip link set DEV carrier off`. Linux reports it only while adminUp.
   */
  carrier: boolean;
}

/** Link events read per native callback (they are rare; more just take another call). */
const LINK_EVENT_BATCH = 16;
const LINK_DOWN: Readonly<LinkState> = Object.freeze({ up: false, adminUp: false, carrier: false });

/** The LinkState that interface flags (ifi_flags, or SIOCGIFFLAGS) describe. */
export function linkStateFromFlags(flags: number): LinkState {
  const adminUp = (flags & IfFlag.up) !== 0;
  const carrier = adminUp && (flags & (IfFlag.lowerUp | IfFlag.running)) !== 0;
  return { up: adminUp && carrier, adminUp, carrier };
}

function sameLink(a: LinkState, b: LinkState): boolean {
  return a.up === b.up && a.adminUp === b.adminUp && a.carrier === b.carrier;
}

function invalid(message: string): EtherlinkError {
  return new EtherlinkError('ERR_INVALID_ARG_VALUE', message);
}

/** Parse "addr/prefix"; throws ERR_INVALID_ARG_VALUE naming the bad part. */
export function parseCidr(cidr: string): ParsedCidr {
  const slash = cidr.lastIndexOf('/');
  if (slash < 0) throw invalid(`address '${cidr}' needs a prefix length, e.g. ${cidr}/24 or ${cidr}/64`);
  const address = cidr.slice(0, slash);
  const prefixText = cidr.slice(slash + 1);
  const family = isIP(address);
  if (family === 0) throw invalid(`'${address}' in '${cidr}' is not an IPv4 or IPv6 address`);
  const max = family === 4 ? 32 : 128;
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > max) {
    throw invalid(`prefix length '/${prefixText}' in '${cidr}' is out of range: IPv${family} takes /0../${max}`);
  }
  return { family: family as 4 | 6, address, bytes: ipToBytes(address, family as 4 | 6), prefix };
}

function ipToBytes(address: string, family: 4 | 6): Buffer {
  if (family === 4) return Buffer.from(address.split('.').map(Number));
  // Expand "::" and an embedded dotted quad into 8 groups.
  let text = address.split('%')[0]!;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Validate options before touching the kernel; throws with a code naming the option. */
export function validateTapOptions(opts: TapOptions): void {
  const name = opts.name ?? DEFAULT_TAP_NAME;
  if (Buffer.byteLength(name) === 0 || Buffer.byteLength(name) > MAX_IFNAME) {
    throw new EtherlinkError(
      'EINVAL',
      `interface name '${name}' is ${Buffer.byteLength(name)} bytes; Linux allows 1..${MAX_IFNAME}`,
    );
  }
  if (/[\s/:]/.test(name) || name === '.' || name === '..') {
    throw new EtherlinkError('EINVAL', `interface name '${name}' may not contain spaces, '/' or ':'`);
  }
  if (opts.mtu !== undefined && (!Number.isInteger(opts.mtu) || opts.mtu < MIN_MTU || opts.mtu > MAX_MTU)) {
    throw invalid(`mtu ${opts.mtu} is out of range: use an integer from ${MIN_MTU} to ${MAX_MTU}`);
  }
  if (opts.mac !== undefined) {
    if (isMulticast(parseMac(opts.mac))) throw invalid(`mac ${opts.mac} is a multicast address: use a unicast one`);
  }
  for (const a of opts.addresses ?? []) parseCidr(a);
  const batch = opts.batchSize ?? BATCH_SIZE;
  if (!Number.isInteger(batch) || batch < 1 || batch > 1024) throw invalid(`batchSize ${batch} must be 1..1024`);
  const queue = opts.writeQueue ?? DEFAULT_WRITE_QUEUE;
  if (!Number.isInteger(queue) || queue < 1 || queue > 65536) throw invalid(`writeQueue ${queue} must be 1..65536`);
}

/** The events of a TapDevice: 'frames' (batches read), 'link' (state changes), 'close'. */
export interface TapDeviceEvents {
  frames: [batch: FrameBatch];
  /** The link state changed (see TapDevice.watchLink). */
  link: [state: LinkState];
  close: [];
}

/**
 * A TAP device. Frames arrive as 'frames' events (and through the Port
 * receiver) in batches whose views are valid only during the callback.
 *
 * Link state: `link` / `linkUp` say whether the device is up (admin up and
 * carrier), and a 'link' event fires on every change, at once — e.g. on
 * `ip link set DEV down` or `ip link set DEV carrier off` — so that a switch
 * can withdraw the port's MACs as a bridge flushes a port's FDB entries.
 * Both see the device in this process's network namespace, where it is created;
 * a device moved to another namespace reads as down.
 */
export class TapDevice extends EventEmitter<TapDeviceEvents> implements Port {
  readonly name: string;
  readonly ifindex: number;
  /** What the kernel agreed to with `offload: true`: "csum,tso4,tso6", "csum" or "none". */
  readonly offloads: string;
  private readonly handle: NativeTap;
  private readonly stat: Float64Array;
  private readonly rx: { buf: Buffer; offsets: Uint32Array; lengths: Uint32Array; count: number };
  private receiver: BatchReceiver | null = null;
  private closed = false;
  private watcher: NativeLinkWatcher | null = null;
  /** The last state seen while watching; null when not watching. */
  private linkState: LinkState | null = null;
  private readonly linkEvents = new Uint32Array(LINK_EVENT_FIELDS * LINK_EVENT_BATCH);

  private constructor(opts: TapOptions) {
    super();
    const offload = opts.offload ?? false;
    const batchSize = offload ? OFFLOAD_BATCH_FRAMES : (opts.batchSize ?? BATCH_SIZE);
    this.rx = {
      buf: Buffer.allocUnsafeSlow(offload ? OFFLOAD_SLAB_BYTES : batchSize * FRAME_SLOT),
      offsets: new Uint32Array(batchSize),
      lengths: new Uint32Array(batchSize),
      count: 0,
    };
    this.stat = new Float64Array(TAP_STAT_COUNT);
    this.handle = new (native().Tap)(
      {
        name: opts.name ?? DEFAULT_TAP_NAME,
        batchSize,
        slotSize: FRAME_SLOT,
        writeQueue: opts.writeQueue ?? DEFAULT_WRITE_QUEUE,
        vnetHdr: offload,
      },
      (count) => this.onBatch(count),
      this.rx.buf,
      this.rx.offsets,
      this.rx.lengths,
      this.stat,
    );
    this.name = this.handle.name;
    this.ifindex = this.handle.ifindex;
    this.offloads = this.handle.offloads;
    // The first 'link' listener starts the watcher ('newListener' is not in TapDeviceEvents).
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'link') this.watchLink();
    });
  }

  /** Create and configure a TAP device. Throws an Error with `.code` on failure, leaving nothing behind. */
  static open(opts: TapOptions = {}): TapDevice {
    validateTapOptions(opts);
    const tap = new TapDevice(opts);
    try {
      if (opts.mac !== undefined) tap.setMac(opts.mac);
      if (opts.mtu !== undefined) tap.setMtu(opts.mtu);
      for (const a of opts.addresses ?? []) tap.addAddress(a);
      if (opts.up ?? true) tap.setUp(true);
    } catch (err) {
      tap.close();
      throw err;
    }
    return tap;
  }

  private onBatch(count: number): void {
    this.rx.count = count;
    this.receiver?.(this.rx);
    if (this.listenerCount('frames') > 0) this.emit('frames', this.rx);
  }

  /** Port: frames out of this port are written to the device. */
  send(batch: FrameBatch): void {
    this.write(batch);
  }

  setReceiver(receiver: BatchReceiver | null): void {
    this.receiver = receiver;
  }

  /** Write a batch; returns the frames written or queued (the rest were dropped and counted). */
  write(batch: FrameBatch): number {
    if (this.closed || batch.count === 0) return 0;
    return this.handle.write(batch.buf, batch.offsets, batch.lengths, batch.count);
  }

  /**
   * With offload, writes merge runs of TCP segments into one super-frame and
   * first check each segment's checksum, so a corrupted one is never laundered
   * into a good merged frame. Frames that arrived under an AEAD (an encrypted
   * EtherLink session) cannot have been altered on the way: trusting them
   * skips that check, about 8 % of an encrypted receiver's CPU.
   */
  trustChecksums(trust: boolean): void {
    if (!this.closed) this.handle.setTrustChecksums(trust);
  }

  /** Convenience for tests and slow paths: copies the frames into one batch. */
  writeFrames(frames: readonly Buffer[]): number {
    return this.write(buffersToBatch(frames));
  }

  /** Stop reading the device (backpressure); the kernel queues, then drops. */
  pause(): void {
    if (!this.closed) this.handle.pause();
  }

  /** Read again after pause(). */
  resume(): void {
    if (!this.closed) this.handle.resume();
  }

  /** Let the process exit while the device is open (like socket.unref()). */
  unref(): this {
    if (!this.closed) this.handle.unref();
    return this;
  }

  /** Keep the process alive while open (the default). */
  ref(): this {
    if (!this.closed) this.handle.ref();
    return this;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Counters, read from memory the addon writes: no native call. */
  get stats(): TapStats {
    const s = this.stat;
    return {
      rxFrames: s[TapStat.rxFrames]!,
      rxBytes: s[TapStat.rxBytes]!,
      txFrames: s[TapStat.txFrames]!,
      txBytes: s[TapStat.txBytes]!,
      txDropped: s[TapStat.txDropped]!,
      rxErrors: s[TapStat.rxErrors]!,
      txErrors: s[TapStat.txErrors]!,
      txQueued: s[TapStat.txQueued]!,
      rxBatches: s[TapStat.rxBatches]!,
      queueDepth: s[TapStat.queueDepth]!,
      rxSuperFrames: s[TapStat.rxSuperFrames]!,
      txSuperFrames: s[TapStat.txSuperFrames]!,
    };
  }

  get mac(): string {
    return formatMac(macFromBuffer(native().getMac(this.name)));
  }

  get mtu(): number {
    return native().getMtu(this.name);
  }

  /** Set the MTU (68..65535). */
  setMtu(mtu: number): void {
    if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) {
      throw invalid(`mtu ${mtu} is out of range: use an integer from ${MIN_MTU} to ${MAX_MTU}`);
    }
    native().setMtu(this.name, mtu);
  }

  /** Set the hardware address. */
  setMac(mac: string): void {
    native().setMac(this.name, macToBuffer(parseMac(mac)));
  }

  /** Bring the link up or down. */
  setUp(up: boolean): void {
    native().setUp(this.name, up);
  }

  /** Add an IPv4 or IPv6 address in CIDR form. `noDad` skips IPv6 duplicate detection (tests). */
  addAddress(cidr: string, opts: { noDad?: boolean } = {}): void {
    const c = parseCidr(cidr);
    native().addAddress(this.ifindex, c.family, c.bytes, c.prefix, opts.noDad ?? false);
  }

  /**
   * Follow the link state (idempotent; returns this): a netlink socket on
   * RTMGRP_LINK, polled on Node's loop, after which `link` answers from memory
   * and 'link' events fire on each change. Adding a 'link' listener calls it.
   * Subscribing needs no privilege, so it works after dropCapabilities() too;
   * calling it before dropping them merely opens the socket early. Closed with
   * the device; never keeps the process alive by itself.
   */
  watchLink(): this {
    if (this.closed || this.watcher !== null) return this;
    this.watcher = new (native().LinkWatcher)((count) => this.onLinkEvents(count), this.linkEvents);
    this.watcher.unref();
    // Subscribed first, queried second: any change after the query arrives as an event.
    this.linkState = this.queryLink();
    return this;
  }

  /** The link now: from the watcher while watching, else one SIOCGIFFLAGS query. Down once closed. */
  get link(): LinkState {
    if (this.closed) return { ...LINK_DOWN };
    return { ...(this.linkState ?? this.queryLink()) };
  }

  /** Admin up and carrier on (IFF_UP and IFF_LOWER_UP/IFF_RUNNING). */
  get linkUp(): boolean {
    return this.link.up;
  }

  private queryLink(): LinkState {
    try {
      return linkStateFromFlags(native().getFlags(this.name));
    } catch (err) {
      // Not in this namespace (moved away, or gone): no link here.
      if (errorCode(err) === 'ENODEV') return { ...LINK_DOWN };
      throw err;
    }
  }

  private onLinkEvents(count: number): void {
    const ev = this.linkEvents;
    // Each change in order: a flap (down, then up) in one batch is still two events.
    for (let i = 0; i < count && this.linkState !== null; i++) {
      const at = i * LINK_EVENT_FIELDS;
      const kind = ev[at + 2];
      let next: LinkState;
      if (kind === LinkEventKind.overrun) next = this.queryLink();
      else if (ev[at] !== this.ifindex) continue;
      else if (kind === LinkEventKind.removed) next = { ...LINK_DOWN };
      else next = linkStateFromFlags(ev[at + 1]!);
      if (sameLink(next, this.linkState)) continue;
      this.linkState = next;
      this.emit('link', { ...next });
    }
  }

  /** Idempotent. The device disappears with its last fd (it is not persistent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.receiver = null;
    this.handle.close();
    this.watcher?.close();
    this.watcher = null;
    this.linkState = null;
    this.emit('close');
  }
}
