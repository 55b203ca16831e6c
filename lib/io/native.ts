// The one typed loader of the C++ addon (csrc/). Nothing else imports the
// untyped module: every native entry point is declared here.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { EtherlinkError } from '../core/errors.js';

/** Indices into a device's Float64Array of counters, written by native code. */
export const TapStat = {
  rxFrames: 0,
  rxBytes: 1,
  txFrames: 2,
  txBytes: 3,
  txDropped: 4, // write queue full
  rxErrors: 5,
  txErrors: 6,
  txQueued: 7, // frames that waited in the queue because of EAGAIN
  rxBatches: 8,
  queueDepth: 9, // current frames waiting in the write queue
  rxSuperFrames: 10, // TSO super-frames read and split (offload mode)
  txSuperFrames: 11, // coalesced super-frames written (offload mode)
} as const;
export const TAP_STAT_COUNT = 12;

/** Indices into a UDP socket's Float64Array of counters. */
export const UdpStat = {
  rxDatagrams: 0,
  rxBytes: 1,
  txDatagrams: 2,
  txBytes: 3,
  txDropped: 4, // send queue full
  rxErrors: 5,
  txErrors: 6,
  txQueued: 7,
  rxBatches: 8,
  queueDepth: 9,
  rxTruncated: 10, // datagram larger than a receive slot
  txGsoSends: 11, // messages that carried several datagrams (UDP_SEGMENT)
  rxGroMessages: 12, // messages received holding several datagrams (UDP_GRO)
  relayDatagrams: 13, // pair data forwarded by the relay table (counted in rx and tx too)
  relayBytes: 14,
} as const;
export const UDP_STAT_COUNT = 15;
/** With offload, one received message may hold this many datagrams (UDP_GRO's limit). */
export const UDP_GRO_MAX_SEGMENTS = 64;

/** Doubles per member id in a UDP socket's relay counters (setRelayCounters). */
export const RELAY_COUNTERS_PER_MEMBER = 4;
/** Offsets inside one member's relay counters. */
export const RelayCounter = {
  toDatagrams: 0, // relayed to this member
  toBytes: 1,
  fromDatagrams: 2, // relayed from this member
  fromBytes: 3,
} as const;

/**
 * Size of one encoded underlay address: 16 bytes of IPv6 address (IPv4 as
 * ::ffff:a.b.c.d), 2 bytes of port in network order, 2 bytes reserved (0).
 */
export const ADDR_SLOT = 20;

export interface NativeTapOptions {
  /** Exact name, or a pattern with %d for a kernel-chosen name. */
  name: string;
  batchSize: number;
  slotSize: number;
  writeQueue: number;
  /**
   * IFF_VNET_HDR with TSO/checksum offloads: reads split super-frames into
   * wire-sized frames packed in the slab (offsets vary; slab >= ~140 KiB,
   * batchSize >= 64), writes coalesce TCP segment runs into super-frames.
   */
  vnetHdr?: boolean;
}

export interface NativeTapConstructor {
  /**
   * Opens /dev/net/tun, creates the TAP (IFF_TAP|IFF_NO_PI), non-blocking and
   * close-on-exec, and starts polling it on Node's own loop.
   * `onBatch(count)` is called with frames in rxSlab at rxOffsets/rxLengths.
   */
  new (
    opts: NativeTapOptions,
    onBatch: (count: number) => void,
    rxSlab: Buffer,
    rxOffsets: Uint32Array,
    rxLengths: Uint32Array,
    stats: Float64Array,
  ): NativeTap;
}

export interface NativeTap {
  readonly name: string;
  readonly ifindex: number;
  readonly fd: number;
  /** Offloads the kernel accepted: "csum,tso4,tso6", "csum" or "none". */
  readonly offloads: string;
  /** Write frames buf[offsets[i]..+lengths[i]] for i < count; returns how many were written or queued. */
  write(buf: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  /** Coalescing skips the per-segment TCP checksum check (frames that arrived authenticated). */
  setTrustChecksums(trust: boolean): void;
  pause(): void;
  resume(): void;
  ref(): void;
  unref(): void;
  /** Idempotent; safe to call from inside onBatch. */
  close(): void;
}

export interface NativeUdpOptions {
  /** Bind address: '::' (dual-stack), '0.0.0.0', or a literal. */
  address: string;
  port: number;
  batchSize: number;
  slotSize: number;
  sendQueue: number;
  /** Requested SO_RCVBUF/SO_SNDBUF in bytes (best effort). */
  socketBuffer: number;
  /**
   * UDP GSO/GRO where the kernel has them: sends merge runs of contiguous,
   * equal-sized datagrams to one address into one message; receives may
   * split one message into up to UDP_GRO_MAX_SEGMENTS datagrams, so the
   * offsets/lengths/addrs arrays hold batchSize x UDP_GRO_MAX_SEGMENTS.
   */
  offload?: boolean;
  /** SO_NO_CHECK: IPv4 datagrams leave with a zero UDP checksum (IPv6 ones keep theirs); not with offload. */
  zeroChecksumV4?: boolean;
  /** UDP_NO_CHECK6_RX on an IPv6 socket: accept IPv6 datagrams with a zero UDP checksum (ignored on IPv4). */
  zeroChecksumV6Rx?: boolean;
  /** SO_REUSEPORT, so relay workers can bind the same port; with `exclusive`, first check that nobody holds it (EADDRINUSE). */
  reusePort?: boolean;
  exclusive?: boolean;
}

export interface NativeUdpConstructor {
  new (
    opts: NativeUdpOptions,
    onBatch: (count: number) => void,
    rxSlab: Buffer,
    rxOffsets: Uint32Array,
    rxLengths: Uint32Array,
    rxAddrs: Buffer,
    stats: Float64Array,
  ): NativeUdp;
}

export interface NativeUdp {
  /** The bound port (useful after binding port 0). */
  readonly port: number;
  readonly family: 4 | 6;
  /** "gso,gro", "gso", "gro" or "none". */
  readonly offloads: string;
  /** sendmmsg datagram i = buf[offsets[i]..+lengths[i]] to addrs[i*ADDR_SLOT..]. Returns how many were sent or queued. */
  send(buf: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Buffer, count: number): number;
  /**
   * Relay table: member `id` (1..65535, else ERR_OUT_OF_RANGE) lives at, and
   * only sends from, the ADDR_SLOT `addr`; null removes it. Another member at
   * that address loses its route. Received pair data (version 2, type 0x27,
   * u16 BE destination id at byte 2, >= 32 bytes) from one member to another
   * is then sent on by the addon and never reaches onBatch.
   */
  setRelayRoute(id: number, addr: Uint8Array | null, group?: number): void;
  /** RELAY_COUNTERS_PER_MEMBER doubles per id (RelayCounter), written as datagrams are relayed; kept alive until close or the next call. */
  setRelayCounters(counters: Float64Array): void;
  steerPairData(workers: number): void;
  pause(): void;
  resume(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

/** One link event in a LinkWatcher's Uint32Array: ifindex, flags, kind. */
export const LINK_EVENT_FIELDS = 3;

/** The kind field of a link event. */
export const LinkEventKind = {
  /** RTM_NEWLINK: the link was created or changed; flags are its ifi_flags. */
  changed: 0,
  /** RTM_DELLINK: the link was deleted or moved to another network namespace. */
  removed: 1,
  /** The netlink socket overflowed and events were lost (ifindex 0): query each link again. */
  overrun: 2,
} as const;

/** Interface flags as the kernel reports them (linux/if.h). */
export const IfFlag = {
  up: 0x1, // IFF_UP: administratively up
  running: 0x40, // IFF_RUNNING: operationally up (the only carrier bit getFlags can show)
  lowerUp: 0x10000, // IFF_LOWER_UP: carrier (netlink events only: SIOCGIFFLAGS is 16 bits)
} as const;

export interface NativeLinkWatcherConstructor {
  /**
   * A NETLINK_ROUTE socket subscribed to RTMGRP_LINK (needs no privilege), polled on
   * Node's own loop. `onBatch(count)` finds count events in `events`, LINK_EVENT_FIELDS
   * u32 each, for every link of this network namespace.
   */
  new (onBatch: (count: number) => void, events: Uint32Array): NativeLinkWatcher;
}

export interface NativeLinkWatcher {
  pause(): void;
  resume(): void;
  ref(): void;
  unref(): void;
  /** Idempotent; safe to call from inside onBatch. */
  close(): void;
}

/** AEAD algorithms the addon's AeadKey accepts. */
export type NativeAeadAlgorithm = 'chacha20-poly1305' | 'aes-256-gcm' | 'none';

export interface NativeAeadKeyConstructor {
  /** One initialised OpenSSL EVP context per direction for a 32-byte key; freed by close() or GC. */
  new (algorithm: NativeAeadAlgorithm, key: Uint8Array): NativeAeadKey;
}

export interface NativeAeadKey {
  /**
   * For i < count: dst[dstOffsets[i]..+16] holds a transport header written by the
   * caller (its big-endian counter at byte 8 is the nonce, the 16 bytes are the AD);
   * seals src[srcOffsets[i]..+srcLengths[i]] right after it, tag last. Returns count.
   */
  sealBatch(
    src: Uint8Array,
    srcOffsets: Uint32Array,
    srcLengths: Uint32Array,
    count: number,
    dst: Uint8Array,
    dstOffsets: Uint32Array,
  ): number;
  /**
   * For i < count: opens datagram src[srcOffsets[i]..+srcLengths[i]] (header,
   * ciphertext, tag) into dst[dstOffsets[i]..] (srcLengths[i] - 32 bytes);
   * results[i] = 1 if authentic else 0 (plaintext zeroed). Returns how many were authentic.
   */
  openBatch(
    src: Uint8Array,
    srcOffsets: Uint32Array,
    srcLengths: Uint32Array,
    count: number,
    dst: Uint8Array,
    dstOffsets: Uint32Array,
    results: Uint8Array,
  ): number;
  /** One message with an explicit 12-byte nonce: ciphertext || tag (test vectors, slow paths). */
  sealOne(nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Buffer;
  /** null when the tag does not verify. */
  openOne(nonce: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Buffer | null;
  /** Frees the contexts (and key schedule); later calls throw ERR_AEAD_CLOSED. Idempotent. */
  close(): void;
}

export interface NativeBinding {
  /**
   * Native errors become `new ctor(code, message, { syscall, errno })` from now on
   * (per thread: each worker's addon instance has its own); before, a plain Error with .code.
   */
  setErrorClass(ctor: new (code: string, message: string, details: { syscall?: string; errno?: number }) => Error): void;
  /** Batched transport AEAD (csrc/aead.cc). */
  AeadKey: NativeAeadKeyConstructor;
  Tap: NativeTapConstructor;
  UdpSocket: NativeUdpConstructor;
  /** Set the MTU of an interface in this network namespace. */
  setMtu(ifname: string, mtu: number): void;
  /** Set the hardware address (6 bytes). */
  setMac(ifname: string, mac: Buffer): void;
  getMac(ifname: string): Buffer;
  getMtu(ifname: string): number;
  setUp(ifname: string, up: boolean): void;
  /** SIOCGIFFLAGS: the interface's flags (16 bits: IfFlag.up, IfFlag.running; never IfFlag.lowerUp). */
  getFlags(ifname: string): number;
  /** Link events of this network namespace (csrc/link_watch_linux.cc). */
  LinkWatcher: NativeLinkWatcherConstructor;
  /** Add an address via netlink (RTM_NEWADDR, NLM_F_EXCL). family 4 or 6; addr is 4 or 16 bytes. */
  addAddress(ifindex: number, family: 4 | 6, addr: Buffer, prefix: number, noDad: boolean): void;
  ifIndex(ifname: string): number;
  /**
   * Clear the effective, permitted, inheritable and ambient capability sets of
   * every thread (csrc/privilege_linux.cc), and the bounding set when
   * CAP_SETPCAP allows. Throws an EtherlinkError with .code when this thread cannot.
   */
  dropCapabilities(): NativeCapabilityDrop;
}

/** What dropCapabilities() did. A thread that blocks every signal is unreachable and keeps its set. */
export interface NativeCapabilityDrop {
  threads: number;
  dropped: number;
  unreachable: number;
  boundingSet: 'cleared' | 'kept';
}

function load(): NativeBinding {
  const require = createRequire(import.meta.url);
  const gypBuild = require('node-gyp-build') as (dir: string) => unknown;
  // dist/lib/io/native.js -> the package root is three levels up.
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const binding = gypBuild(root) as NativeBinding;
  binding.setErrorClass(EtherlinkError);
  return binding;
}

let cached: NativeBinding | undefined;

/**
 * The addon, loaded on first use so that pure-logic modules never need it.
 * Per thread: a Worker that imports this gets its own instance of the addon
 * (its own classes and error class; handles never cross threads).
 */
export function native(): NativeBinding {
  cached ??= load();
  return cached;
}
