// The vswitch as a VXLAN tunnel endpoint (RFC 7348): each configured remote
// VTEP is a port of its network's Switch. One socket (UDP 4789 by default)
// receives for every VNI and demultiplexes by (source address, VNI); anything
// else is dropped and counted. Frames leave from a small pool of sockets
// whose source port is picked by a hash of the inner flow, as the kernel's
// vxlan driver picks its source port, so ECMP in the fabric can spread flows.
// VXLAN carries no authentication: this leg is as trusted as the underlay
// (docs/SECURITY.md, "VXLAN").
import { isIP } from 'node:net';
import type { FrameBatch } from '../core/frames.js';
import type { BatchReceiver, Port } from '../core/port.js';
import { EtherlinkError } from '../core/errors.js';
import { encodeAddress, formatAddress } from '../io/address.js';
import { ADDR_SLOT } from '../io/native.js';
import { UdpSocket } from '../io/udp.js';

/** The IANA VXLAN port (RFC 7348 section 5). */
export const VXLAN_PORT = 4789;
/** The VXLAN header: flags, 24 reserved bits, the 24-bit VNI, 8 reserved bits. */
export const VXLAN_HEADER_BYTES = 8;
/** The I flag: the VNI is valid. The other flag bits and reserved fields are sent as 0 and ignored on receipt (RFC 7348). */
export const VXLAN_FLAG_VNI = 0x08;
/** Largest VNI (24 bits). */
export const VNI_MAX = 0xffffff;
/** Bytes VXLAN adds around an Ethernet payload: outer IPv4 + UDP + VXLAN + inner Ethernet (the kernel's VXLAN_HEADROOM). */
export const VXLAN_OVERHEAD_IPV4 = 20 + 8 + VXLAN_HEADER_BYTES + 14;
/** The same over IPv6 (VXLAN6_HEADROOM). */
export const VXLAN_OVERHEAD_IPV6 = 40 + 8 + VXLAN_HEADER_BYTES + 14;
/** The underlay MTU assumed unless told (an Ethernet underlay). */
export const DEFAULT_UNDERLAY_MTU = 1500;
/** Sockets frames leave from: the inner flow's hash picks one, so a flow keeps its source port and flows spread over this many. */
export const VXLAN_SOURCE_PORTS = 8;
/** Inner frames shorter than an Ethernet header are malformed. */
const ETH_HEADER = 14;
/** Datagrams encapsulated per send call. */
const TX_CHUNK = 64;

/** A remote VTEP: its address and the UDP port it listens on (4789 unless told). */
export interface VtepAddress {
  address: string;
  port: number;
}

/** Where the VTEP listens, and the underlay it crosses. */
export interface VxlanOptions {
  /** Default { address: '::', port: 4789 }. */
  listen?: { address: string; port: number };
  /** The underlay MTU (default 1500): a frame that would not fit once encapsulated is dropped and counted, never fragmented. */
  mtu?: number;
}

/** The VTEPs of one network: its VNI and remote VTEPs. */
export interface VxlanNetwork {
  network: string;
  vni: number;
  vteps: readonly VtepAddress[];
}

/** What the VTEP counts for datagrams that reach no port. */
export interface VxlanCounters {
  /** Datagrams received on the VXLAN socket, and those handed to a VTEP port. */
  rxDatagrams: number;
  rxDelivered: number;
  /** Dropped: from an address that is no configured VTEP. */
  unknownSource: number;
  /** Dropped: from a configured VTEP, but with a VNI it is not configured for. */
  wrongVni: number;
  /** Dropped: shorter than a VXLAN header and an Ethernet header, or the I flag clear. */
  malformed: number;
}

/** One VTEP port as status shows it. */
export interface VtepStatus {
  /** The switch port it is, in its network. */
  switchPort: number;
  name: string;
  network: string;
  vni: number;
  address: string;
  /** Seconds since its last datagram; undefined if none came yet. */
  lastSeenS?: number;
  rxDatagrams: number;
  txDatagrams: number;
  /** Frames too large for the underlay MTU once encapsulated: dropped. */
  txTooBig: number;
}

/** "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 literal -> a VtepAddress (port 4789 unless given). Throws ERR_INVALID_ADDRESS. */
export function parseVtepAddress(text: string): VtepAddress {
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const v4 = /^([0-9.]+)(?::(\d+))?$/.exec(text);
  const m = bracket ?? v4;
  const address = m ? m[1]! : text;
  const portText = m ? m[2] : undefined;
  const port = portText === undefined ? VXLAN_PORT : Number(portText);
  if (isIP(address) === 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new EtherlinkError('ERR_INVALID_ADDRESS', `VTEP '${text}' must be IP[:PORT] with a literal address (192.0.2.7, 192.0.2.7:4789, [2001:db8::7]:4789); the port defaults to ${VXLAN_PORT}`);
  }
  return { address, port };
}

/** VTEP text as parseVtepAddress reads it. */
export function formatVtepAddress(v: VtepAddress): string {
  return isIP(v.address) === 6 ? `[${v.address}]:${v.port}` : `${v.address}:${v.port}`;
}

/** Check a VNI (1..2^24-1; 0 is legal on the wire but kernels and fabrics reserve it). Throws ERR_INVALID_ARG_VALUE naming `what`. */
export function checkVni(vni: number, what = 'vni'): number {
  if (!Number.isInteger(vni) || vni < 1 || vni > VNI_MAX) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `${what} ${vni}: a VNI is an integer from 1 to ${VNI_MAX}`);
  return vni;
}

/** Write a VXLAN header for `vni` at buf[off]. */
export function writeVxlanHeader(buf: Buffer, off: number, vni: number): void {
  buf[off] = VXLAN_FLAG_VNI;
  buf[off + 1] = 0;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf[off + 4] = (vni >>> 16) & 0xff;
  buf[off + 5] = (vni >>> 8) & 0xff;
  buf[off + 6] = vni & 0xff;
  buf[off + 7] = 0;
}

/** The VNI of a datagram buf[off, off + len), or -1 if it is no VXLAN frame (too short, I flag clear). */
export function readVxlanVni(buf: Buffer, off: number, len: number): number {
  if (len < VXLAN_HEADER_BYTES + ETH_HEADER || (buf[off]! & VXLAN_FLAG_VNI) === 0) return -1;
  return (buf[off + 4]! << 16) | (buf[off + 5]! << 8) | buf[off + 6]!;
}

/**
 * A 32-bit hash of an Ethernet frame's flow: addresses, protocol and ports of
 * IPv4/IPv6 TCP, UDP, SCTP and UDP-Lite (behind up to two VLAN tags), else the
 * MACs and EtherType. What the kernel's skb_get_hash feeds udp_flow_src_port:
 * one flow keeps one source port; different flows spread.
 */
export function innerFlowHash(buf: Buffer, off: number, len: number): number {
  const end = off + len;
  let p = off + 12;
  let type = len >= 14 ? buf.readUInt16BE(p) : 0;
  for (let tags = 0; tags < 2 && (type === 0x8100 || type === 0x88a8) && p + 6 <= end; tags++) {
    p += 4;
    type = buf.readUInt16BE(p);
  }
  const l3 = p + 2;
  // FNV-1a over the fields that name the flow; no closure, no allocation (once per frame sent).
  let from: number;
  let to: number;
  let proto: number;
  let l4 = -1;
  if (type === 0x0800 && l3 + 20 <= end) {
    from = l3 + 12;
    to = l3 + 20;
    proto = buf[l3 + 9]!;
    // Ports only in an unfragmented datagram (fragment offset 0, MF clear), as the flow dissector does.
    if ((buf.readUInt16BE(l3 + 6) & 0x3fff) === 0) l4 = l3 + (buf[l3]! & 0x0f) * 4;
  } else if (type === 0x86dd && l3 + 40 <= end) {
    from = l3 + 8;
    to = l3 + 40;
    proto = buf[l3 + 6]!;
    l4 = l3 + 40;
  } else {
    let h = 0x811c9dc5;
    for (let i = off, stop = Math.min(off + 12, end); i < stop; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
    return Math.imul(h ^ type, 0x01000193) >>> 0;
  }
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  h = Math.imul(h ^ proto, 0x01000193);
  if ((proto === 6 || proto === 17 || proto === 132 || proto === 136) && l4 >= 0 && l4 + 4 <= end) {
    for (let i = l4; i < l4 + 4; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  }
  return h >>> 0;
}

/** A remote VTEP as a port of its network's Switch. */
export class VtepPort implements Port {
  readonly name: string;
  /** The VTEP's address slot (where frames go). */
  readonly slot: Buffer;
  /** The slot repeated, one per datagram of a send call. */
  readonly addrs: Buffer;
  receiver: BatchReceiver | null = null;
  rxDatagrams = 0;
  txDatagrams = 0;
  txTooBig = 0;
  lastSeen = 0;
  /** The switch port it was given (set by its owner). */
  switchPort = 0;
  /** @internal this receive pass's frames for it. */
  readonly rx: { buf: Buffer; offsets: Uint32Array; lengths: Uint32Array; count: number };

  constructor(
    private readonly endpoint: VxlanEndpoint,
    readonly network: string,
    readonly vni: number,
    readonly address: VtepAddress,
    rxCapacity: number,
  ) {
    this.slot = encodeAddress(address.address, address.port);
    this.name = `vtep:${formatAddress(this.slot)}`;
    this.addrs = Buffer.alloc(TX_CHUNK * ADDR_SLOT);
    for (let i = 0; i < TX_CHUNK; i++) this.slot.copy(this.addrs, i * ADDR_SLOT);
    this.rx = { buf: Buffer.alloc(0), offsets: new Uint32Array(rxCapacity), lengths: new Uint32Array(rxCapacity), count: 0 };
  }

  send(batch: FrameBatch): void {
    this.endpoint.transmit(this, batch);
  }

  setReceiver(receiver: BatchReceiver | null): void {
    this.receiver = receiver;
  }

  /** The address as configured (IP:PORT). */
  get text(): string {
    return formatVtepAddress(this.address);
  }
}

/** What VxlanEndpoint.configure changed: VTEP ports to attach to a switch and ports to detach. */
export interface VtepChanges {
  added: VtepPort[];
  removed: VtepPort[];
}

/** The VTEP: the receive socket, the source-port pool, and every network's remote VTEPs. */
export class VxlanEndpoint {
  readonly counters: VxlanCounters = { rxDatagrams: 0, rxDelivered: 0, unknownSource: 0, wrongVni: 0, malformed: 0 };
  /** Most bytes of a datagram's UDP payload the underlay carries (MTU - IP - UDP headers). */
  readonly maxPayload: { v4: number; v6: number };
  private readonly rxSocket: UdpSocket;
  private readonly pool: UdpSocket[] = [];
  /** VNI -> the VTEP ports that use it. */
  private readonly byVni = new Map<number, VtepPort[]>();
  private readonly touched: VtepPort[] = [];
  private readonly txSlab: Buffer;
  private readonly txOffsets = new Uint32Array(TX_CHUNK);
  private readonly txLengths = new Uint32Array(TX_CHUNK);
  private readonly txSocket = new Uint8Array(TX_CHUNK);
  private readonly sendOffsets = new Uint32Array(TX_CHUNK);
  private readonly sendLengths = new Uint32Array(TX_CHUNK);
  private readonly sendBatch: { buf: Buffer; offsets: Uint32Array; lengths: Uint32Array; count: number };
  private closed = false;

  /** Bind the VXLAN socket and the pool. Throws the bind error (EADDRINUSE, EACCES...) with its code. */
  constructor(opts: VxlanOptions = {}) {
    const listen = opts.listen ?? { address: '::', port: VXLAN_PORT };
    const mtu = opts.mtu ?? DEFAULT_UNDERLAY_MTU;
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `VXLAN underlay MTU ${mtu}: give an integer from 576 to 65535`);
    this.maxPayload = { v4: mtu - 20 - 8, v6: mtu - 40 - 8 };
    try {
      // A VTEP MUST accept a zero UDP checksum (RFC 7348 5): over IPv6 the kernel drops it unless told.
      this.rxSocket = UdpSocket.bind({ address: listen.address, port: listen.port, slotSize: Math.max(mtu, 2048), zeroChecksumV6Rx: true });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'EADDRINUSE') throw new EtherlinkError('EADDRINUSE', `VXLAN UDP ${formatVtepAddress(listen)} is already in use (a kernel vxlan device on this host takes 4789 too): give another port with --vxlan PORT`, { cause: err });
      throw err;
    }
    this.rxSocket.onDatagrams((batch, addrs) => this.receive(batch, addrs));
    try {
      for (let i = 0; i < VXLAN_SOURCE_PORTS; i++) {
        // Send-only: a VTEP answers to our listen port, so these receive nothing worth a large slab.
        const s = UdpSocket.bind({ address: listen.address, port: 0, batchSize: 1, slotSize: 2048, zeroChecksumV4: true });
        s.onDatagrams(null);
        this.pool.push(s);
      }
    } catch (err) {
      this.close();
      throw err;
    }
    this.txSlab = Buffer.alloc(TX_CHUNK * Math.max(this.maxPayload.v4, 64));
    this.sendBatch = { buf: this.txSlab, offsets: this.sendOffsets, lengths: this.sendLengths, count: 0 };
  }

  /** The UDP port it receives on. */
  get port(): number {
    return this.rxSocket.port;
  }

  /** The pool's source ports. */
  get sourcePorts(): number[] {
    return this.pool.map((s) => s.port);
  }

  /** Receive-socket counters (the addon's). */
  get socketStats(): UdpSocket['stats'] {
    return this.rxSocket.stats;
  }

  /** The source-port pool's send counters, added up: datagrams and bytes sent, errors, and drops with the send queue full. */
  get sendStats(): { txDatagrams: number; txBytes: number; txErrors: number; txDropped: number } {
    const out = { txDatagrams: 0, txBytes: 0, txErrors: 0, txDropped: 0 };
    for (const s of this.pool) {
      const st = s.stats;
      out.txDatagrams += st.txDatagrams;
      out.txBytes += st.txBytes;
      out.txErrors += st.txErrors;
      out.txDropped += st.txDropped;
    }
    return out;
  }

  /** Every VTEP port, network by network. */
  get ports(): VtepPort[] {
    return [...this.byVni.values()].flat();
  }

  /**
   * Set the VTEPs of the networks: ports for new (network, VNI, address)
   * triples, and the old ones no longer listed to detach. A VNI belongs to
   * one network. Throws ERR_INVALID_ARG_VALUE for a VNI given twice or a bad one.
   */
  configure(networks: readonly VxlanNetwork[]): VtepChanges {
    this.check(networks);
    const changes: VtepChanges = { added: [], removed: [] };
    const next = new Map<number, VtepPort[]>();
    for (const n of networks) {
      const old = this.byVni.get(n.vni) ?? [];
      const list: VtepPort[] = [];
      for (const v of n.vteps) {
        const slot = encodeAddress(v.address, v.port);
        if (list.some((p) => p.slot.equals(slot))) continue;
        const kept = old.find((p) => p.network === n.network && p.slot.equals(slot));
        if (kept !== undefined) {
          list.push(kept);
          continue;
        }
        const p = new VtepPort(this, n.network, n.vni, v, this.rxSocket.capacity);
        list.push(p);
        changes.added.push(p);
      }
      next.set(n.vni, list);
    }
    for (const [vni, old] of this.byVni) for (const p of old) if (!(next.get(vni) ?? []).includes(p)) changes.removed.push(p);
    this.byVni.clear();
    for (const [vni, list] of next) if (list.length > 0) this.byVni.set(vni, list);
    return changes;
  }

  /** What configure() would refuse, without changing anything: a bad or shared VNI, an IPv6 VTEP on an IPv4 socket. */
  check(networks: readonly VxlanNetwork[]): void {
    const seen = new Map<number, string>();
    for (const n of networks) {
      checkVni(n.vni, `network '${n.network}': vni`);
      const had = seen.get(n.vni);
      if (had !== undefined) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `VNI ${n.vni} is given to network '${had}' and to network '${n.network}': a VNI names one network`);
      seen.set(n.vni, n.network);
      for (const v of n.vteps) {
        if (this.rxSocket.family === 4 && isIP(v.address) === 6) {
          throw new EtherlinkError('ERR_INVALID_ADDRESS', `VTEP ${formatVtepAddress(v)} of network '${n.network}' is IPv6, but the VXLAN socket listens on IPv4: listen on [::]:PORT (--vxlan PORT) to reach both`);
        }
      }
    }
  }

  /** Status of every VTEP port. */
  status(now = Date.now()): VtepStatus[] {
    return this.ports.map((p) => ({
      switchPort: p.switchPort,
      name: p.name,
      network: p.network,
      vni: p.vni,
      address: p.text,
      ...(p.lastSeen > 0 ? { lastSeenS: Math.round((now - p.lastSeen) / 100) / 10 } : {}),
      rxDatagrams: p.rxDatagrams,
      txDatagrams: p.txDatagrams,
      txTooBig: p.txTooBig,
    }));
  }

  /** Encapsulate and send a batch to one VTEP (VtepPort.send). Oversized frames are dropped and counted. */
  transmit(vtep: VtepPort, batch: FrameBatch): void {
    if (this.closed) return;
    const max = (isIPv4Slot(vtep.slot) ? this.maxPayload.v4 : this.maxPayload.v6) - VXLAN_HEADER_BYTES;
    const slab = this.txSlab;
    let n = 0;
    let at = 0;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.lengths[i]!;
      if (len > max) {
        vtep.txTooBig++;
        continue;
      }
      if (n === TX_CHUNK || at + VXLAN_HEADER_BYTES + len > slab.length) {
        this.flush(vtep, n);
        n = 0;
        at = 0;
      }
      const off = batch.offsets[i]!;
      writeVxlanHeader(slab, at, vtep.vni);
      batch.buf.copy(slab, at + VXLAN_HEADER_BYTES, off, off + len);
      this.txOffsets[n] = at;
      this.txLengths[n] = VXLAN_HEADER_BYTES + len;
      this.txSocket[n] = innerFlowHash(batch.buf, off, len) % VXLAN_SOURCE_PORTS;
      at += VXLAN_HEADER_BYTES + len;
      n++;
    }
    if (n > 0) this.flush(vtep, n);
  }

  /** Send the n datagrams in the slab, each from the pool socket its flow hashed to (order within a flow kept). */
  private flush(vtep: VtepPort, n: number): void {
    for (let k = 0; k < this.pool.length; k++) {
      let m = 0;
      for (let i = 0; i < n; i++) {
        if (this.txSocket[i] !== k) continue;
        this.sendOffsets[m] = this.txOffsets[i]!;
        this.sendLengths[m] = this.txLengths[i]!;
        m++;
      }
      if (m === 0) continue;
      this.sendBatch.count = m;
      vtep.txDatagrams += this.pool[k]!.send(this.sendBatch, vtep.addrs);
    }
  }

  /** Datagrams from the socket: each to the VTEP port of its (source, VNI), in order; the rest dropped and counted. */
  private receive(batch: FrameBatch, addrs: Buffer): void {
    const now = Date.now();
    const c = this.counters;
    c.rxDatagrams += batch.count;
    let last: VtepPort | null = null;
    for (let i = 0; i < batch.count; i++) {
      const off = batch.offsets[i]!;
      const len = batch.lengths[i]!;
      const vni = readVxlanVni(batch.buf, off, len);
      if (vni < 0) {
        c.malformed++;
        continue;
      }
      const at = i * ADDR_SLOT;
      let p: VtepPort | null = last !== null && last.vni === vni && sameIp(last.slot, addrs, at) ? last : null;
      if (p === null) {
        for (const q of this.byVni.get(vni) ?? []) {
          if (sameIp(q.slot, addrs, at)) {
            p = q;
            break;
          }
        }
      }
      if (p === null) {
        if (this.knownSource(addrs, at)) c.wrongVni++;
        else c.unknownSource++;
        continue;
      }
      last = p;
      if (p.rx.count === 0) {
        p.rx.buf = batch.buf;
        this.touched.push(p);
      }
      p.rx.offsets[p.rx.count] = off + VXLAN_HEADER_BYTES;
      p.rx.lengths[p.rx.count] = len - VXLAN_HEADER_BYTES;
      p.rx.count++;
    }
    for (const p of this.touched) {
      p.rxDatagrams += p.rx.count;
      c.rxDelivered += p.rx.count;
      p.lastSeen = now;
      p.receiver?.(p.rx);
      p.rx.count = 0;
    }
    this.touched.length = 0;
  }

  private knownSource(addrs: Buffer, at: number): boolean {
    for (const list of this.byVni.values()) for (const q of list) if (sameIp(q.slot, addrs, at)) return true;
    return false;
  }

  /** Close the VXLAN socket and the pool; idempotent. The VTEP ports stay attached until their switch drops them. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rxSocket?.close();
    for (const s of this.pool) s.close();
  }
}

/** Same IP address (not port: a VTEP sends from a port of its flow hash). */
function sameIp(slot: Buffer, addrs: Buffer, at: number): boolean {
  for (let i = 15; i >= 0; i--) if (slot[i] !== addrs[at + i]) return false;
  return true;
}

/** An IPv4 (mapped) address slot. */
function isIPv4Slot(slot: Buffer): boolean {
  return slot.readUInt32BE(8) === 0xffff && slot.readUInt32BE(0) === 0 && slot.readUInt32BE(4) === 0;
}

