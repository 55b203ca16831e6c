// Ethernet II framing as pure functions over Buffers: MAC addresses as 48-bit
// numbers, 802.1Q/802.1ad tags, and builders/parsers for test frames and ARP.
import { randomBytes } from 'node:crypto';
import { EtherlinkError } from './errors.js';

/**
 * Sizes and offsets of the Ethernet header. We call a frame a runt when it
 * is shorter than the 14-byte header, not the 60-byte wire minimum: TAP
 * devices hand us unpadded frames, and the switch only needs the header.
 */
export const ETHERNET = {
  ADDR_LEN: 6,
  DST_OFFSET: 0,
  SRC_OFFSET: 6,
  TYPE_OFFSET: 12,
  HEADER_LEN: 14,
  VLAN_TAG_LEN: 4,
  MIN_FRAME_LEN: 14,
  /** 12-bit VID; 0 means "priority tag only" and 4095 is reserved. */
  MAX_VLAN_ID: 4094,
  /** How many stacked tags the parsers follow (802.1ad S-tag + 802.1Q C-tag). */
  MAX_TAGS: 2,
} as const;

/** EtherTypes the switch and the helpers know by name. */
export const EtherType = {
  IPv4: 0x0800,
  ARP: 0x0806,
  VLAN: 0x8100, // 802.1Q C-tag
  QINQ: 0x88a8, // 802.1ad S-tag
  IPv6: 0x86dd,
} as const;

/** ff:ff:ff:ff:ff:ff as a number. */
export const BROADCAST_MAC = 0xffff_ffff_ffff;
/** 00:00:00:00:00:00 as a number: never learned. */
export const ZERO_MAC = 0;

const TWO_32 = 2 ** 32;
const TWO_40 = 2 ** 40;
const MAC_RE = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/i;

// ---------------------------------------------------------------- addresses

/** The MAC at `off` as a number key; no allocation, so the forwarding path can call it per frame. */
export function readMac(buf: Buffer, off: number): number {
  return buf.readUInt16BE(off) * TWO_32 + buf.readUInt32BE(off + 2);
}

/** A frame's destination MAC as a number; no allocation. */
export function readDstMac(buf: Buffer, frameOff: number): number {
  return readMac(buf, frameOff + ETHERNET.DST_OFFSET);
}

/** A frame's source MAC as a number; no allocation. */
export function readSrcMac(buf: Buffer, frameOff: number): number {
  return readMac(buf, frameOff + ETHERNET.SRC_OFFSET);
}

/** The MAC at buf[off] as a number (readMac under another name). */
export const macFromBuffer = (buf: Buffer, off = 0): number => readMac(buf, off);

/** Write `mac` into `buf` at `off` (a fresh 6-byte Buffer when none is given). */
export function macToBuffer(mac: number, buf: Buffer = Buffer.alloc(ETHERNET.ADDR_LEN), off = 0): Buffer {
  buf.writeUInt16BE(Math.floor(mac / TWO_32), off);
  buf.writeUInt32BE(mac % TWO_32, off + 2);
  return buf;
}

/** The broadcast address? */
export function isBroadcast(mac: number): boolean {
  return mac === BROADCAST_MAC;
}

/** The I/G bit (least significant bit of the first octet); true for broadcast too. */
export function isMulticast(mac: number): boolean {
  return ((mac / TWO_40) & 1) === 1;
}

/** The all-zero address? */
export function isZero(mac: number): boolean {
  return mac === ZERO_MAC;
}

/** A 48-bit unsigned integer? */
export function isValidMac(mac: number): boolean {
  return Number.isInteger(mac) && mac >= 0 && mac <= BROADCAST_MAC;
}

/** Parse `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (one separator throughout). */
export function parseMac(text: string): number {
  if (typeof text !== 'string' || !MAC_RE.test(text)) throw invalidMac(text);
  return parseInt(text.replace(/[:-]/g, ''), 16);
}

function invalidMac(value: unknown): EtherlinkError {
  const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return new EtherlinkError('ERR_INVALID_MAC', `invalid MAC address ${shown}: expected six hex octets like aa:bb:cc:dd:ee:ff`);
}

/** Lower-case, colon-separated. */
export function formatMac(mac: number): string {
  const hex = mac.toString(16).padStart(12, '0');
  return hex.replace(/(..)(?!$)/g, '$1:');
}

/** Accept either form at API edges. */
export function toMac(mac: number | string): number {
  if (typeof mac === 'string') return parseMac(mac);
  if (!isValidMac(mac)) throw invalidMac(mac);
  return mac;
}

/** A random locally-administered unicast MAC (U/L bit set, I/G bit clear). */
export function randomMac(): number {
  const b = randomBytes(ETHERNET.ADDR_LEN);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return readMac(b, 0);
}

// ---------------------------------------------------------------- headers

/** One decoded VLAN tag. */
export interface VlanTag {
  /** 0x8100 (802.1Q) or 0x88a8 (802.1ad). */
  tpid: number;
  pcp: number;
  dei: boolean;
  vid: number;
}

/** A decoded Ethernet header (parseEthernetHeader). */
export interface EthernetHeader {
  dst: number;
  src: number;
  /** The EtherType after all tags (the payload's protocol). */
  etherType: number;
  /** Outermost first. */
  tags: VlanTag[];
  /** Bytes from frame start to payload: 14 + 4 per tag. */
  headerLength: number;
}

function isTagType(type: number): boolean {
  return type === EtherType.VLAN || type === EtherType.QINQ;
}

/**
 * VID of the outermost 802.1Q/802.1ad tag, 0 when untagged or truncated.
 * The forwarding path's VLAN key; no allocation.
 */
export function readVlanId(buf: Buffer, frameOff: number, frameLen: number): number {
  if (frameLen < ETHERNET.HEADER_LEN + ETHERNET.VLAN_TAG_LEN) return 0;
  if (!isTagType(buf.readUInt16BE(frameOff + ETHERNET.TYPE_OFFSET))) return 0;
  return buf.readUInt16BE(frameOff + ETHERNET.HEADER_LEN) & 0x0fff;
}

/** The EtherType after up to MAX_TAGS tags; -1 when the frame is too short to say. */
export function readEtherType(buf: Buffer, frameOff: number, frameLen: number): number {
  let pos = ETHERNET.TYPE_OFFSET;
  for (let i = 0; i <= ETHERNET.MAX_TAGS; i++) {
    if (frameLen < pos + 2) return -1;
    const type = buf.readUInt16BE(frameOff + pos);
    if (!isTagType(type) || i === ETHERNET.MAX_TAGS) return type;
    pos += ETHERNET.VLAN_TAG_LEN;
  }
  return -1;
}

/**
 * The outermost 802.1Q/802.1ad tag's TCI (PCP, DEI and VID), or -1 when the
 * frame is untagged or too short to hold a tag (as readVlanId, which then says
 * 0). No allocation.
 */
export function readOuterTci(buf: Buffer, frameOff: number, frameLen: number): number {
  if (frameLen < ETHERNET.HEADER_LEN + ETHERNET.VLAN_TAG_LEN) return -1;
  if (!isTagType(buf.readUInt16BE(frameOff + ETHERNET.TYPE_OFFSET))) return -1;
  return buf.readUInt16BE(frameOff + ETHERNET.HEADER_LEN);
}

/**
 * Copy the frame at src[srcOff, +srcLen) to dst[dstOff] with a tag (`tpid`,
 * `tci`) inserted after the MAC addresses, outside any tags it has. Returns
 * the new length, srcLen + 4. `dst` must have room and not overlap the
 * frame; no allocation.
 */
export function copyFrameTagged(src: Buffer, srcOff: number, srcLen: number, dst: Buffer, dstOff: number, tpid: number, tci: number): number {
  // One copy of the whole frame 4 bytes on, then the MACs and the tag in front:
  // Buffer#copy costs far more per call than per byte at these sizes.
  src.copy(dst, dstOff + ETHERNET.VLAN_TAG_LEN, srcOff, srcOff + srcLen);
  copyMacs(src, srcOff, dst, dstOff);
  dst.writeUInt16BE(tpid, dstOff + ETHERNET.TYPE_OFFSET);
  dst.writeUInt16BE(tci, dstOff + ETHERNET.TYPE_OFFSET + 2);
  return srcLen + ETHERNET.VLAN_TAG_LEN;
}

/**
 * Copy the frame at src[srcOff, +srcLen) to dst[dstOff] without its outermost
 * tag (the caller knows it has one: readOuterTci >= 0). Returns the new
 * length, srcLen - 4. `dst` must not overlap the frame; no allocation.
 */
export function copyFrameUntagged(src: Buffer, srcOff: number, srcLen: number, dst: Buffer, dstOff: number): number {
  src.copy(dst, dstOff, srcOff + ETHERNET.VLAN_TAG_LEN, srcOff + srcLen);
  copyMacs(src, srcOff, dst, dstOff);
  return srcLen - ETHERNET.VLAN_TAG_LEN;
}

function copyMacs(src: Buffer, srcOff: number, dst: Buffer, dstOff: number): void {
  for (let k = 0; k < ETHERNET.TYPE_OFFSET; k++) dst[dstOff + k] = src[srcOff + k]!;
}

/** Full header decode for slow paths and tests; null when truncated. */
export function parseEthernetHeader(buf: Buffer, frameOff = 0, frameLen = buf.length - frameOff): EthernetHeader | null {
  if (frameLen < ETHERNET.HEADER_LEN) return null;
  const tags: VlanTag[] = [];
  let pos = ETHERNET.TYPE_OFFSET;
  let type = buf.readUInt16BE(frameOff + pos);
  while (isTagType(type) && tags.length < ETHERNET.MAX_TAGS) {
    if (frameLen < pos + 2 + ETHERNET.VLAN_TAG_LEN) return null;
    const tci = buf.readUInt16BE(frameOff + pos + 2);
    tags.push({ tpid: type, pcp: tci >>> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0x0fff });
    pos += ETHERNET.VLAN_TAG_LEN;
    type = buf.readUInt16BE(frameOff + pos);
  }
  return {
    dst: readDstMac(buf, frameOff),
    src: readSrcMac(buf, frameOff),
    etherType: type,
    tags,
    headerLength: pos + 2,
  };
}

// ---------------------------------------------------------------- builders

/** One 802.1Q / 802.1ad tag for buildFrame. */
export interface VlanSpec {
  vid: number;
  pcp?: number;
  dei?: boolean;
  tpid?: number;
}

/** What buildFrame needs: MACs (numbers or text), EtherType, tags, payload. */
export interface FrameSpec {
  dst: number | string;
  src: number | string;
  etherType: number;
  /** One tag, or outermost-first tags; a bare number is an 802.1Q VID. */
  vlan?: number | VlanSpec | readonly VlanSpec[];
  payload?: Buffer;
}

function normaliseTags(vlan: FrameSpec['vlan']): VlanSpec[] {
  if (vlan === undefined) return [];
  if (typeof vlan === 'number') return [{ vid: vlan }];
  return Array.isArray(vlan) ? [...(vlan as readonly VlanSpec[])] : [vlan as VlanSpec];
}

/** Build one Ethernet frame (tests, ARP replies, slow paths). No padding to 60 bytes. */
export function buildFrame(spec: FrameSpec): Buffer {
  const tags = normaliseTags(spec.vlan);
  const payload = spec.payload ?? Buffer.alloc(0);
  const header = ETHERNET.HEADER_LEN + tags.length * ETHERNET.VLAN_TAG_LEN;
  const frame = Buffer.alloc(header + payload.length);
  macToBuffer(toMac(spec.dst), frame, ETHERNET.DST_OFFSET);
  macToBuffer(toMac(spec.src), frame, ETHERNET.SRC_OFFSET);
  let pos = ETHERNET.TYPE_OFFSET;
  for (const t of tags) {
    if (!Number.isInteger(t.vid) || t.vid < 0 || t.vid > 0x0fff) throw new EtherlinkError('ERR_OUT_OF_RANGE', `VLAN id out of range: ${t.vid} (0..4095)`);
    frame.writeUInt16BE(t.tpid ?? EtherType.VLAN, pos);
    frame.writeUInt16BE((((t.pcp ?? 0) & 7) << 13) | (t.dei ? 0x1000 : 0) | t.vid, pos + 2);
    pos += ETHERNET.VLAN_TAG_LEN;
  }
  frame.writeUInt16BE(spec.etherType, pos);
  payload.copy(frame, header);
  return frame;
}

// ---------------------------------------------------------------- ARP (RFC 826, Ethernet/IPv4 only)

/** ARP operation code of a request (who has this IPv4 address?). */
export const ARP_REQUEST = 1;
/** ARP operation code of a reply (that address is at this MAC). */
export const ARP_REPLY = 2;
const ARP_LEN = 28;
const ARP_HTYPE_ETHERNET = 1;

/** An ARP packet as parseArp reads it (MACs as 48-bit numbers). */
export interface ArpPacket {
  op: number;
  senderMac: number;
  senderIp: string;
  targetMac: number;
  targetIp: string;
}

/** What buildArp needs: the operation, the sender and the target. */
export interface ArpSpec {
  op: 'request' | 'reply';
  senderMac: number | string;
  senderIp: string;
  /** Ignored for requests (target hardware address is zero, destination broadcast). */
  targetMac?: number | string;
  targetIp: string;
  vlan?: FrameSpec['vlan'];
}

function writeIpv4(ip: string, buf: Buffer, off: number): void {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `invalid IPv4 address ${JSON.stringify(ip)}`);
  parts.forEach((p, i) => {
    const n = Number(p);
    if (!/^\d{1,3}$/.test(p) || n > 255) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `invalid IPv4 address ${JSON.stringify(ip)}`);
    buf[off + i] = n;
  });
}

const readIpv4 = (buf: Buffer, off: number): string => `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;

/** A complete Ethernet frame carrying an ARP request or reply. */
export function buildArp(spec: ArpSpec): Buffer {
  const isRequest = spec.op === 'request';
  const senderMac = toMac(spec.senderMac);
  const targetMac = isRequest ? ZERO_MAC : toMac(spec.targetMac ?? ZERO_MAC);
  const p = Buffer.alloc(ARP_LEN);
  p.writeUInt16BE(ARP_HTYPE_ETHERNET, 0);
  p.writeUInt16BE(EtherType.IPv4, 2);
  p[4] = ETHERNET.ADDR_LEN;
  p[5] = 4;
  p.writeUInt16BE(isRequest ? ARP_REQUEST : ARP_REPLY, 6);
  macToBuffer(senderMac, p, 8);
  writeIpv4(spec.senderIp, p, 14);
  macToBuffer(targetMac, p, 18);
  writeIpv4(spec.targetIp, p, 24);
  const frame: FrameSpec = { dst: isRequest ? BROADCAST_MAC : targetMac, src: senderMac, etherType: EtherType.ARP, payload: p };
  if (spec.vlan !== undefined) frame.vlan = spec.vlan;
  return buildFrame(frame);
}

/** Decode an Ethernet/IPv4 ARP frame (tags allowed); null for anything else. */
export function parseArp(buf: Buffer, frameOff = 0, frameLen = buf.length - frameOff): ArpPacket | null {
  const h = parseEthernetHeader(buf, frameOff, frameLen);
  if (h === null || h.etherType !== EtherType.ARP || frameLen < h.headerLength + ARP_LEN) return null;
  const o = frameOff + h.headerLength;
  if (buf.readUInt16BE(o) !== ARP_HTYPE_ETHERNET || buf.readUInt16BE(o + 2) !== EtherType.IPv4) return null;
  if (buf[o + 4] !== ETHERNET.ADDR_LEN || buf[o + 5] !== 4) return null;
  return {
    op: buf.readUInt16BE(o + 6),
    senderMac: readMac(buf, o + 8),
    senderIp: readIpv4(buf, o + 14),
    targetMac: readMac(buf, o + 18),
    targetIp: readIpv4(buf, o + 24),
  };
}
