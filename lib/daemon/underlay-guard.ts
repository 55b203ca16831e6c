// UnderlayGuard: a vport refuses to carry its own underlay. A route that sends
// the switch's address over the vport's own TAP brings our datagrams to the
// switch back out of the device; sealed and sent again they would loop. Such
// frames are dropped, counted and explained instead (at most every 30 s).
import { lookup } from 'node:dns/promises';
import { MutableFrameBatch, type FrameBatch } from '../core/frames.js';
import { ETHERNET, EtherType } from '../core/ethernet.js';
import type { Logger } from '../core/log.js';
import { ADDR_SLOT } from '../io/native.js';
import { addressEquals, addressPort, decodeAddress, encodeAddress, isMappedIPv4 } from '../io/address.js';
import { proxyFor } from '../io/stream-connect.js';

/** Most endpoints one guard watches: the switch, and the addresses of its WebSocket host and proxy. */
export const UNDERLAY_ENDPOINTS_MAX = 8;
/** At most one warning per this long while our own traffic keeps coming back out of the device. */
export const UNDERLAY_WARN_INTERVAL_MS = 30_000;
/** Status shows the problem until this long after the last such frame: longer than the longest rejoin or stream retry (10 s + jitter). */
export const UNDERLAY_PROBLEM_HOLD_MS = 30_000;

/** What a match was, in the low two bits of UnderlayEndpoints.match's answer. */
export const UnderlayMatch = {
  /** An IPv4 or IPv6 packet to a switch endpoint (its address, and its port for UDP and TCP). */
  IP: 1,
  /** An ARP request for a switch IPv4 address (a route `dev TAP` without a gateway). */
  ARP: 2,
  /** An IPv6 neighbour solicitation for a switch IPv6 address. */
  NEIGHBOUR: 3,
} as const;

/** The kind of a match (an UnderlayMatch value), 0 for none. */
export const matchKind = (match: number): number => match & 3;
/** The index of the endpoint a match is for (UnderlayEndpoints.address). */
export const matchEndpoint = (match: number): number => match >>> 2;

const MATCH_NAMES = ['', 'ip', 'arp', 'neighbour solicitation'] as const;

const KIND_IPV4 = 1;
const KIND_IPV6 = 2;
const KIND_ARP = 3;
const KIND_TAG = 4;
/** EtherType -> what to look at: one load and one compare reject everything else. */
const KIND_BY_ETHERTYPE = new Uint8Array(65536);
KIND_BY_ETHERTYPE[EtherType.IPv4] = KIND_IPV4;
KIND_BY_ETHERTYPE[EtherType.IPv6] = KIND_IPV6;
KIND_BY_ETHERTYPE[EtherType.ARP] = KIND_ARP;
KIND_BY_ETHERTYPE[EtherType.VLAN] = KIND_TAG;
KIND_BY_ETHERTYPE[EtherType.QINQ] = KIND_TAG;

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_FRAGMENT = 44;
const IPPROTO_ICMPV6 = 58;
const ICMPV6_NEIGHBOUR_SOLICITATION = 135;
const IPV4_MIN_HEADER = 20;
const IPV6_HEADER = 40;
const IPV6_FRAGMENT_HEADER = 8;
const ARP_LEN = 28;
const ARP_REQUEST = 1;
/** Neighbour solicitation: ICMPv6 type, code, checksum, reserved (8 bytes), then the 16-byte target. */
const NS_TARGET = 8;

// Byte reads without Buffer.readUInt*BE's argument checks, which cost more than the rest of the check (the callers checked the length).
const u16 = (b: Buffer, at: number): number => (b[at]! << 8) | b[at + 1]!;
const u32 = (b: Buffer, at: number): number => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;

/**
 * The switch's underlay endpoints (address and port; port 0 for any port), as
 * the per-frame classifier reads them: IPv4 as numbers, IPv6 as four words.
 */
export class UnderlayEndpoints {
  private readonly slots = Buffer.alloc(UNDERLAY_ENDPOINTS_MAX * ADDR_SLOT);
  private n = 0;
  private readonly v4 = new Uint32Array(UNDERLAY_ENDPOINTS_MAX);
  private readonly v4Port = new Uint16Array(UNDERLAY_ENDPOINTS_MAX);
  private readonly v4Index = new Uint8Array(UNDERLAY_ENDPOINTS_MAX);
  private v4Count = 0;
  private readonly v6 = new Uint32Array(UNDERLAY_ENDPOINTS_MAX * 4);
  private readonly v6Port = new Uint16Array(UNDERLAY_ENDPOINTS_MAX);
  private readonly v6Index = new Uint8Array(UNDERLAY_ENDPOINTS_MAX);
  private v6Count = 0;

  /** How many endpoints there are. */
  get size(): number {
    return this.n;
  }

  /** Forget them all. */
  clear(): void {
    this.n = this.v4Count = this.v6Count = 0;
  }

  /** Add the endpoint in an address slot (encodeAddress); false when it is there already or the set is full. */
  add(slot: Buffer, offset = 0): boolean {
    for (let i = 0; i < this.n; i++) if (addressEquals(this.slots, i * ADDR_SLOT, slot, offset)) return false;
    if (this.n >= UNDERLAY_ENDPOINTS_MAX) return false;
    const index = this.n++;
    slot.copy(this.slots, index * ADDR_SLOT, offset, offset + ADDR_SLOT);
    const port = addressPort(slot, offset);
    if (isMappedIPv4(slot, offset)) {
      this.v4[this.v4Count] = slot.readUInt32BE(offset + 12);
      this.v4Port[this.v4Count] = port;
      this.v4Index[this.v4Count++] = index;
    } else {
      for (let w = 0; w < 4; w++) this.v6[this.v6Count * 4 + w] = slot.readUInt32BE(offset + w * 4);
      this.v6Port[this.v6Count] = port;
      this.v6Index[this.v6Count++] = index;
    }
    return true;
  }

  /** Endpoint `index`'s address as text (no port): what the warning names. */
  address(index: number): string {
    return decodeAddress(this.slots, index * ADDR_SLOT).address;
  }

  /**
   * Whether frame buf[off, off + len) is our own underlay traffic: an IPv4 or
   * IPv6 packet (untagged or behind one VLAN tag) to an endpoint — to its
   * port too for UDP and TCP, so other traffic to that host may still cross
   * the LAN; a fragment after the first carries no port and is let through
   * (once sealed it is caught as a datagram to the switch) — or an ARP
   * request or IPv6 neighbour solicitation for an endpoint's address. 0 when
   * not; otherwise an UnderlayMatch kind in the low two bits and the
   * endpoint's index above them (matchKind, matchEndpoint). Pure, no
   * allocation; never throws, whatever the bytes.
   */
  match(buf: Buffer, off: number, len: number): number {
    if (len < ETHERNET.HEADER_LEN || off + len > buf.length) return 0;
    let kind = KIND_BY_ETHERTYPE[(buf[off + 12]! << 8) | buf[off + 13]!]!;
    if (kind === 0) return 0;
    let l3 = off + ETHERNET.HEADER_LEN;
    if (kind === KIND_TAG) {
      if (len < ETHERNET.HEADER_LEN + ETHERNET.VLAN_TAG_LEN) return 0;
      kind = KIND_BY_ETHERTYPE[(buf[off + 16]! << 8) | buf[off + 17]!]!;
      if (kind === 0 || kind === KIND_TAG) return 0;
      l3 += ETHERNET.VLAN_TAG_LEN;
    }
    const end = off + len;
    if (kind === KIND_IPV4) return this.v4Count === 0 ? 0 : this.matchIpv4(buf, l3, end);
    if (kind === KIND_IPV6) return this.v6Count === 0 ? 0 : this.matchIpv6(buf, l3, end);
    return this.v4Count === 0 ? 0 : this.matchArp(buf, l3, end);
  }

  private matchIpv4(buf: Buffer, ip: number, end: number): number {
    if (end - ip < IPV4_MIN_HEADER || buf[ip]! >>> 4 !== 4) return 0;
    const dst = u32(buf, ip + 16);
    for (let i = 0; i < this.v4Count; i++) {
      if (this.v4[i] !== dst) continue;
      const port = this.v4Port[i]!;
      if (port === 0 || ipv4DstPort(buf, ip, end) === port) return (this.v4Index[i]! << 2) | UnderlayMatch.IP;
    }
    return 0;
  }

  private matchIpv6(buf: Buffer, ip: number, end: number): number {
    if (end - ip < IPV6_HEADER || buf[ip]! >>> 4 !== 6) return 0;
    if (buf[ip + 6] === IPPROTO_ICMPV6 && end - ip >= IPV6_HEADER + NS_TARGET + 16 && buf[ip + IPV6_HEADER] === ICMPV6_NEIGHBOUR_SOLICITATION) {
      const i = this.findV6(buf, ip + IPV6_HEADER + NS_TARGET);
      if (i >= 0) return (this.v6Index[i]! << 2) | UnderlayMatch.NEIGHBOUR;
    }
    const d = ip + 24;
    const w0 = u32(buf, d), w1 = u32(buf, d + 4), w2 = u32(buf, d + 8), w3 = u32(buf, d + 12);
    for (let i = 0; i < this.v6Count; i++) {
      const k = i * 4;
      if (this.v6[k] !== w0 || this.v6[k + 1] !== w1 || this.v6[k + 2] !== w2 || this.v6[k + 3] !== w3) continue;
      const port = this.v6Port[i]!;
      if (port === 0 || ipv6DstPort(buf, ip, end) === port) return (this.v6Index[i]! << 2) | UnderlayMatch.IP;
    }
    return 0;
  }

  private matchArp(buf: Buffer, a: number, end: number): number {
    if (end - a < ARP_LEN) return 0;
    if (u16(buf, a) !== 1 || u16(buf, a + 2) !== EtherType.IPv4 || buf[a + 4] !== 6 || buf[a + 5] !== 4 || u16(buf, a + 6) !== ARP_REQUEST) return 0;
    const target = u32(buf, a + 24);
    // A gratuitous ARP (sender = target: a host announcing its own address) is nobody asking for the switch.
    if (u32(buf, a + 14) === target) return 0;
    for (let i = 0; i < this.v4Count; i++) if (this.v4[i] === target) return (this.v4Index[i]! << 2) | UnderlayMatch.ARP;
    return 0;
  }

  /** The IPv6 endpoint whose address is at buf[at, at + 16), or -1 (the caller checked the length). */
  private findV6(buf: Buffer, at: number): number {
    const w0 = u32(buf, at), w1 = u32(buf, at + 4), w2 = u32(buf, at + 8), w3 = u32(buf, at + 12);
    for (let i = 0; i < this.v6Count; i++) {
      const k = i * 4;
      if (this.v6[k] === w0 && this.v6[k + 1] === w1 && this.v6[k + 2] === w2 && this.v6[k + 3] === w3) return i;
    }
    return -1;
  }
}

/** The UDP or TCP destination port of an IPv4 packet, -1 for other protocols, later fragments and truncated headers. */
function ipv4DstPort(buf: Buffer, ip: number, end: number): number {
  const ihl = (buf[ip]! & 0x0f) * 4;
  if (ihl < IPV4_MIN_HEADER || (u16(buf, ip + 6) & 0x1fff) !== 0) return -1;
  const proto = buf[ip + 9];
  if (proto !== IPPROTO_UDP && proto !== IPPROTO_TCP) return -1;
  const t = ip + ihl;
  return end - t < 4 ? -1 : u16(buf, t + 2);
}

/** The UDP or TCP destination port of an IPv6 packet (behind a fragment header too, first fragment only), else -1. */
function ipv6DstPort(buf: Buffer, ip: number, end: number): number {
  let next = buf[ip + 6];
  let t = ip + IPV6_HEADER;
  if (next === IPPROTO_FRAGMENT) {
    if (end - t < IPV6_FRAGMENT_HEADER || (u16(buf, t + 2) & 0xfff8) !== 0) return -1;
    next = buf[t];
    t += IPV6_FRAGMENT_HEADER;
  }
  if (next !== IPPROTO_UDP && next !== IPPROTO_TCP) return -1;
  return end - t < 4 ? -1 : u16(buf, t + 2);
}

/** The warning and the status reason: what is wrong and what to do about it. */
export function underlayLoopMessage(address: string, device: string): string {
  return `refusing to carry traffic to the switch (${address}) over ${device}: the route to the switch goes through this TAP; add a route for ${address} via your real gateway (ip route get ${address} shows the culprit)`;
}

/** While the guard drops our own traffic: the endpoint, how much, how recently, and why (PortClientStatus.underlayLoop). */
export interface UnderlayLoopStatus {
  /** The switch address the last dropped frame was for. */
  address: string;
  /** Frames dropped so far (the port's underlayLoops counter). */
  frames: number;
  /** Seconds since the last one. */
  lastS: number;
  /** What is wrong and what to do (the warning's text). */
  reason: string;
}

/** Options of an UnderlayGuard. */
export interface UnderlayGuardOptions {
  /** The device's name, for the warning. */
  device: string;
  log: Logger;
  /** The port's switch address slot (UDP, and TCP on the same port): watched, not copied, as re-resolving rewrites it in place. */
  switchSlot: Buffer;
  /** The switch's WebSocket URL, if any: its host's addresses (and a proxy's the environment names) are endpoints too. */
  ws?: URL | null;
  /** Where the dropped frames are counted. */
  counters: { underlayLoops: number };
}

/**
 * The guard on a vport's device-to-switch path: filter() drops our own
 * underlay traffic from each batch read from the TAP, counts it, warns at most
 * every UNDERLAY_WARN_INTERVAL_MS and reports it in status().
 */
export class UnderlayGuard {
  readonly endpoints = new UnderlayEndpoints();
  private readonly seenSwitch = Buffer.alloc(ADDR_SLOT);
  private hostSlots: Buffer[] = [];
  /** The frames that stay, when some did not (made at the first drop; grown for a larger batch). */
  private kept: MutableFrameBatch | null = null;
  private lastAt = -Infinity;
  private nextWarnAt = -Infinity;
  private sinceWarn = 0;
  private lastMatch = 0;
  private lastAddress = '';
  /** Bumped when the endpoints are reloaded (a match's index may then name another). */
  private generation = 0;
  private lastGeneration = -1;
  private refreshing: Promise<void> | null = null;

  constructor(private readonly opts: UnderlayGuardOptions) {
    this.reload();
    if (opts.ws) void this.refresh();
  }

  /**
   * The batch without our own underlay traffic: `batch` itself when none of it
   * is (the common case costs one classification per frame), else a batch of
   * the guard's own over the same slab, valid until the next call.
   */
  filter(batch: FrameBatch, now: number): FrameBatch {
    if (!addressEquals(this.opts.switchSlot, 0, this.seenSwitch, 0)) this.reload();
    const eps = this.endpoints;
    const { buf, offsets, lengths, count } = batch;
    let first = 0;
    let m = 0;
    for (; first < count; first++) if ((m = eps.match(buf, offsets[first]!, lengths[first]!)) !== 0) break;
    if (first === count) return batch;
    if (this.kept === null || this.kept.capacity < count) this.kept = new MutableFrameBatch(buf, count);
    const kept = this.kept;
    kept.buf = buf;
    kept.clear();
    for (let i = 0; i < first; i++) kept.push(offsets[i]!, lengths[i]!);
    let dropped = 1;
    for (let i = first + 1; i < count; i++) {
      const r = eps.match(buf, offsets[i]!, lengths[i]!);
      if (r === 0) kept.push(offsets[i]!, lengths[i]!);
      else {
        dropped++;
        m = r;
      }
    }
    this.dropped(dropped, m, now);
    return kept;
  }

  private dropped(frames: number, match: number, now: number): void {
    this.opts.counters.underlayLoops += frames;
    this.sinceWarn += frames;
    this.lastAt = now;
    if (match !== this.lastMatch || this.generation !== this.lastGeneration) {
      this.lastMatch = match;
      this.lastGeneration = this.generation;
      this.lastAddress = this.endpoints.address(matchEndpoint(match));
    }
    if (now < this.nextWarnAt) return;
    this.nextWarnAt = now + UNDERLAY_WARN_INTERVAL_MS;
    this.opts.log.warn(underlayLoopMessage(this.lastAddress, this.opts.device), { frames: this.sinceWarn, via: MATCH_NAMES[matchKind(match)] });
    this.sinceWarn = 0;
  }

  /** The problem while it lasts (until UNDERLAY_PROBLEM_HOLD_MS after the last dropped frame), else undefined. */
  status(now: number): UnderlayLoopStatus | undefined {
    if (now - this.lastAt > UNDERLAY_PROBLEM_HOLD_MS) return undefined;
    return {
      address: this.lastAddress,
      frames: this.opts.counters.underlayLoops,
      lastS: Math.round((now - this.lastAt) / 100) / 10,
      reason: underlayLoopMessage(this.lastAddress, this.opts.device),
    };
  }

  /** status() as part of the port's status: `underlayLoop` while the problem lasts, nothing otherwise. */
  statusField(now: number): { underlayLoop?: UnderlayLoopStatus } {
    const s = this.status(now);
    return s === undefined ? {} : { underlayLoop: s };
  }

  /** Look up the WebSocket host (and proxy) again, as the port does the switch's name; resolves once done (the lookup under way, if one is); never rejects. */
  refresh(): Promise<void> {
    this.refreshing ??= this.resolveHosts()
      .catch((err: Error) => this.opts.log.debug(`underlay guard: ${err.message}`))
      .finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  private async resolveHosts(): Promise<void> {
    const slots: Buffer[] = [];
    for (const { host, port } of streamHosts(this.opts.ws ?? null, this.opts.log)) {
      try {
        for (const a of await lookup(host, { all: true, verbatim: true })) {
          if (!a.address.includes('%')) slots.push(encodeAddress(a.address, port));
        }
      } catch (err) {
        this.opts.log.debug('cannot resolve a host of the switch for the underlay guard', { host, error: (err as Error).message });
      }
    }
    this.hostSlots = slots;
    this.reload();
  }

  private reload(): void {
    this.opts.switchSlot.copy(this.seenSwitch, 0, 0, ADDR_SLOT);
    this.endpoints.clear();
    this.endpoints.add(this.seenSwitch);
    for (const s of this.hostSlots) this.endpoints.add(s);
    this.generation++;
  }
}

/** The hosts a WebSocket to the switch goes to: the URL's, and the HTTP proxy's when the environment names one for it. */
function streamHosts(ws: URL | null, log: Logger): { host: string; port: number }[] {
  if (ws === null) return [];
  const bare = (h: string): string => (h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h);
  const out = [{ host: bare(ws.hostname), port: Number(ws.port || (ws.protocol === 'wss:' ? 443 : 80)) }];
  try {
    const proxy = proxyFor(ws);
    if (proxy !== null) out.push({ host: bare(proxy.hostname), port: Number(proxy.port || 80) });
  } catch (err) {
    log.debug((err as Error).message);
  }
  return out;
}
