// Encode and decode of the datagrams and control payloads that are not the
// handshake (lib/protocol/noise.ts): the transport header, control messages,
// the unauthenticated hints, initiation extensions. Pure: no I/O. The transport
// helpers never allocate; everything else is rare and may.
import {
  CONTROL_MAX_SIZE,
  Control,
  ENDPOINT_RECORD_SIZE,
  LOCAL_ENDPOINTS_MAX,
  PATH_REASON_MAX_BYTES,
  PROBE_ETHERTYPE,
  PROBE_FRAME_MIN_SIZE,
  REFLECT_ADDR_OFFSET,
  REFLECT_SIZE,
  PROBE_ACK_SIZE,
  UDP_PROBE_SIZE,
  REFLECT_TXID_OFFSET,
  ENDPOINT_UNKNOWN_SIZE,
  EXTENSIONS_MAX_SIZE,
  INVITE_ID_SIZE,
  INVITE_PROOF_SIZE,
  ETHERNET_HEADER_SIZE,
  Extension,
  HANDSHAKE_REFUSED_SIZE,
  LongControl,
  MAC_RECORD_SIZE,
  MACS_PER_MESSAGE,
  MessageType,
  NAME_MAX_BYTES,
  ASSIGNMENT_MODE_MAX_BYTES,
  NOT_HERE_SIZE,
  PairControl,
  PeerFlags,
  PAIR_ROUTE_OFFSET,
  PARAMS_SIZE,
  PING_SIZE,
  PREFIX_SIZE,
  PROTOCOL_VERSION,
  RefusedOffset,
  SESSION_UNKNOWN_SIZE,
  TRANSPORT_HEADER_SIZE,
  TRANSPORT_OVERHEAD,
  TransportOffset,
  VERSION_UNSUPPORTED_SIZE,
  VersionUnsupportedOffset,
} from './constants.js';
import { EtherlinkError } from '../core/errors.js';
import { ADDR_SLOT } from '../io/native.js';
import { KEY_SIZE } from '../crypto/constants.js';

const TWO_32 = 0x1_0000_0000;

// ---------------------------------------------------------------- prefix

/** Version, type and two zero bytes at buf[off]. */
export function writePrefix(buf: Uint8Array, off: number, type: number): void {
  buf[off] = PROTOCOL_VERSION;
  buf[off + 1] = type;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
}

/** Whether buf[off .. off+len) starts with our version, `type` and zero reserved bytes. */
export function hasPrefix(buf: Uint8Array, off: number, len: number, type: number): boolean {
  return len >= PREFIX_SIZE && buf[off] === PROTOCOL_VERSION && buf[off + 1] === type && buf[off + 2] === 0 && buf[off + 3] === 0;
}

// ---------------------------------------------------------------- transport data (hot path)

/**
 * The 16-byte transport header at buf[off]: prefix, receiver index and counter
 * big-endian. `counter` is below 2^53, written as two u32 halves. Not validated: hot path.
 */
export function writeTransportHeader(buf: Uint8Array, off: number, receiverIndex: number, counter: number, type: number = MessageType.TRANSPORT_DATA, route = 0): number {
  buf[off] = PROTOCOL_VERSION;
  buf[off + 1] = type;
  buf[off + 2] = route >>> 8;
  buf[off + 3] = route & 0xff;
  writeU32(buf, off + TransportOffset.RECEIVER_INDEX, receiverIndex);
  writeU32(buf, off + TransportOffset.COUNTER, Math.floor(counter / TWO_32));
  writeU32(buf, off + TransportOffset.COUNTER + 4, counter >>> 0);
  return TRANSPORT_HEADER_SIZE;
}

/** Our version, type transport (frames or control), reserved zero, long enough to hold a tag: worth a key lookup. */
export function isTransport(buf: Uint8Array, off: number, len: number): boolean {
  return (
    len >= TRANSPORT_OVERHEAD &&
    buf[off] === PROTOCOL_VERSION &&
    (buf[off + 1] === MessageType.TRANSPORT_DATA || buf[off + 1] === MessageType.CONTROL_DATA) &&
    buf[off + 2] === 0 &&
    buf[off + 3] === 0
  );
}

/** Our version, type PAIR_DATA, long enough to hold a tag (the route is not checked here). */
export function isPairData(buf: Uint8Array, off: number, len: number): boolean {
  return len >= TRANSPORT_OVERHEAD && buf[off] === PROTOCOL_VERSION && buf[off + 1] === MessageType.PAIR_DATA;
}

/** The destination member id of a PAIR_DATA datagram. */
export function readRoute(buf: Uint8Array, off: number): number {
  return (buf[off + PAIR_ROUTE_OFFSET]! << 8) | buf[off + PAIR_ROUTE_OFFSET + 1]!;
}

/** Receiver index of a transport datagram (or of any message with an index at byte 4). */
export function readReceiverIndex(buf: Uint8Array, off: number): number {
  return readU32(buf, off + TransportOffset.RECEIVER_INDEX);
}

/** Counter of a transport datagram, exact below 2^53. */
export function readCounter(buf: Uint8Array, off: number): number {
  return readU32(buf, off + TransportOffset.COUNTER) * TWO_32 + readU32(buf, off + TransportOffset.COUNTER + 4);
}

/** Datagram length of a sealed frame of `frameLength` bytes: header + frame + tag. */
export function sealedLength(frameLength: number): number {
  return frameLength + TRANSPORT_OVERHEAD;
}

/** Plaintext length inside a datagram of `datagramLength` bytes (negative = too short to be one). */
export function openedLength(datagramLength: number): number {
  return datagramLength - TRANSPORT_OVERHEAD;
}

/** A plaintext of this length is a frame (>= 14), a control message (1..13) or a bare keepalive (0). */
export function isFrameLength(plaintextLength: number): boolean {
  return plaintextLength >= ETHERNET_HEADER_SIZE;
}

// ---------------------------------------------------------------- control payloads (inside transport data)

export interface PingMessage {
  kind: typeof Control.PING | typeof Control.PONG;
  seq: number;
  flags: number;
}

export function encodePing(kind: typeof Control.PING | typeof Control.PONG, seq: number, flags = 0): Buffer {
  const b = Buffer.alloc(PING_SIZE);
  b[0] = kind;
  writeU32(b, 1, seq >>> 0);
  b[5] = flags & 0xff;
  return b;
}

export function encodeParams(keepaliveS: number, portTimeoutS: number): Buffer {
  const b = Buffer.alloc(PARAMS_SIZE);
  b[0] = Control.PARAMS;
  b.writeUInt16BE(keepaliveS, 1);
  b.writeUInt16BE(portTimeoutS, 3);
  return b;
}

export const LEAVE_PAYLOAD: Buffer = Buffer.from([Control.LEAVE]);

/** A decoded control payload, or null when it is none we know (counted as malformed by the caller). */
export type ControlMessage =
  | PingMessage
  | { kind: typeof Control.PARAMS; keepaliveS: number; portTimeoutS: number }
  | { kind: typeof Control.LEAVE }
  | { kind: typeof Control.PROBE_ACK; seq: number };

export function decodeControl(buf: Uint8Array, off: number, len: number): ControlMessage | null {
  if (len < 1 || len > CONTROL_MAX_SIZE) return null;
  const kind = buf[off]!;
  if ((kind === Control.PING || kind === Control.PONG) && len === PING_SIZE) {
    return { kind, seq: readU32(buf, off + 1), flags: buf[off + 5]! };
  }
  if (kind === Control.PARAMS && len === PARAMS_SIZE) {
    return { kind, keepaliveS: (buf[off + 1]! << 8) | buf[off + 2]!, portTimeoutS: (buf[off + 3]! << 8) | buf[off + 4]! };
  }
  if (kind === Control.LEAVE && len === 1) return { kind };
  if (kind === Control.PROBE_ACK && len === PROBE_ACK_SIZE) return { kind, seq: readU32(buf, off + 1) };
  return null;
}

/** PROBE_ACK: the answer to UDP_PROBE `seq` (sealed by the switch, sent over UDP). */
export function encodeProbeAck(seq: number): Buffer {
  const b = Buffer.alloc(PROBE_ACK_SIZE);
  b[0] = Control.PROBE_ACK;
  writeU32(b, 1, seq >>> 0);
  return b;
}

/** UDP_PROBE for the switch's receiver index `index`, sequence `seq`, padded to UDP_PROBE_SIZE. */
export function encodeUdpProbe(index: number, seq: number): Buffer {
  const b = Buffer.alloc(UDP_PROBE_SIZE);
  writePrefix(b, 0, MessageType.UDP_PROBE);
  writeU32(b, 4, index >>> 0);
  writeU32(b, 8, seq >>> 0);
  return b;
}

/** A UDP_PROBE's receiver index and sequence, or null if buf[off .. +len) is not exactly one. */
export function decodeUdpProbe(buf: Uint8Array, off: number, len: number): { index: number; seq: number } | null {
  if (len !== UDP_PROBE_SIZE || !hasPrefix(buf, off, len, MessageType.UDP_PROBE)) return null;
  return { index: readU32(buf, off + 4), seq: readU32(buf, off + 8) };
}

// ---------------------------------------------------------------- unauthenticated hints

/** SESSION_UNKNOWN: the receiver index the switch did not know. */
export function encodeSessionUnknown(index: number): Buffer {
  return indexHint(MessageType.SESSION_UNKNOWN, SESSION_UNKNOWN_SIZE, index);
}

/** An 8-byte unauthenticated hint: the prefix of `type`, then a receiver index. */
function indexHint(type: number, size: number, index: number): Buffer {
  const b = Buffer.alloc(size);
  writePrefix(b, 0, type);
  writeU32(b, 4, index >>> 0);
  return b;
}

/** The index a SESSION_UNKNOWN names, or undefined if `msg` is not one. */
export function decodeSessionUnknown(msg: Uint8Array): number | undefined {
  return msg.length === SESSION_UNKNOWN_SIZE && hasPrefix(msg, 0, msg.length, MessageType.SESSION_UNKNOWN) ? readU32(msg, 4) : undefined;
}

/** ENDPOINT_UNKNOWN, answering a PAIR_DATA datagram with receiver index `index` from an unknown address. */
export function encodeEndpointUnknown(index: number): Buffer {
  return indexHint(MessageType.ENDPOINT_UNKNOWN, ENDPOINT_UNKNOWN_SIZE, index);
}

/** Whether `msg` is an ENDPOINT_UNKNOWN. */
export function isEndpointUnknown(msg: Uint8Array): boolean {
  return msg.length === ENDPOINT_UNKNOWN_SIZE && hasPrefix(msg, 0, msg.length, MessageType.ENDPOINT_UNKNOWN);
}

/** HANDSHAKE_REFUSED for the initiation whose sender index was `receiverIndex`. */
export function encodeHandshakeRefused(receiverIndex: number, reason: number): Buffer {
  const b = Buffer.alloc(HANDSHAKE_REFUSED_SIZE);
  writePrefix(b, 0, MessageType.HANDSHAKE_REFUSED);
  writeU32(b, RefusedOffset.RECEIVER_INDEX, receiverIndex >>> 0);
  b[RefusedOffset.REASON] = reason;
  return b;
}

export function decodeHandshakeRefused(msg: Uint8Array): { receiverIndex: number; reason: number } | undefined {
  if (msg.length !== HANDSHAKE_REFUSED_SIZE || !hasPrefix(msg, 0, msg.length, MessageType.HANDSHAKE_REFUSED)) return undefined;
  return { receiverIndex: readU32(msg, RefusedOffset.RECEIVER_INDEX), reason: msg[RefusedOffset.REASON]! };
}

/** The 4-byte answer to a datagram of another version: "I speak PROTOCOL_VERSION only". */
export function encodeVersionUnsupported(): Buffer {
  const b = Buffer.alloc(VERSION_UNSUPPORTED_SIZE);
  b[VersionUnsupportedOffset.SENDER_VERSION] = PROTOCOL_VERSION;
  b[VersionUnsupportedOffset.TYPE] = MessageType.VERSION_UNSUPPORTED;
  b[VersionUnsupportedOffset.LOWEST] = PROTOCOL_VERSION;
  b[VersionUnsupportedOffset.HIGHEST] = PROTOCOL_VERSION;
  return b;
}

/** The version range a VERSION_UNSUPPORTED announces, whatever its version byte, or undefined. */
export function decodeVersionUnsupported(msg: Uint8Array): { lowest: number; highest: number } | undefined {
  if (msg.length !== VERSION_UNSUPPORTED_SIZE || msg[VersionUnsupportedOffset.TYPE] !== MessageType.VERSION_UNSUPPORTED) return undefined;
  const lowest = msg[VersionUnsupportedOffset.LOWEST]!;
  const highest = msg[VersionUnsupportedOffset.HIGHEST]!;
  return lowest <= highest ? { lowest, highest } : undefined;
}

/** Never answer a VERSION_UNSUPPORTED (no ping-pong), nor anything shorter than our 4-byte answer. */
export function mayAnswerVersion(buf: Uint8Array, off: number, len: number): boolean {
  return len >= VERSION_UNSUPPORTED_SIZE && buf[off + 1] !== MessageType.VERSION_UNSUPPORTED;
}

// ---------------------------------------------------------------- initiation extensions

export interface Extensions {
  /** How the port calls itself (logs and status). */
  name?: string;
  /** The port runs pair sessions (end to end). */
  pairs?: boolean;
  /** An invite this key redeems to be added to the allow file: its id and the proof of its secret. */
  invite?: { id: Buffer; proof: Buffer };
}

/** The extension bytes of an initiation's payload (after the timestamp). Throws ERR_OUT_OF_RANGE when they would not fit. */
export function encodeExtensions(ext: Extensions): Buffer {
  const parts: Buffer[] = [];
  if (ext.name !== undefined && ext.name !== '') {
    const name = truncateUtf8(printable(ext.name), NAME_MAX_BYTES);
    parts.push(Buffer.from([Extension.NAME, name.length]), name);
  }
  if (ext.pairs === true) parts.push(Buffer.from([Extension.PAIRS, 0]));
  if (ext.invite !== undefined) {
    const { id, proof } = ext.invite;
    if (id.length !== INVITE_ID_SIZE || proof.length !== INVITE_PROOF_SIZE) {
      throw new EtherlinkError('ERR_OUT_OF_RANGE', `an invite extension takes a ${INVITE_ID_SIZE}-byte id and a ${INVITE_PROOF_SIZE}-byte proof`);
    }
    parts.push(Buffer.from([Extension.INVITE, INVITE_ID_SIZE + INVITE_PROOF_SIZE]), id, proof);
  }
  const out = Buffer.concat(parts);
  if (out.length > EXTENSIONS_MAX_SIZE) throw new EtherlinkError('ERR_OUT_OF_RANGE', `initiation extensions take ${out.length} bytes; at most ${EXTENSIONS_MAX_SIZE}`);
  return out;
}

/** Parse extension bytes (from an authenticated initiation). Unknown types are skipped; null if malformed. */
export function decodeExtensions(bytes: Uint8Array): Extensions | null {
  const out: Extensions = {};
  let at = 0;
  while (at < bytes.length) {
    if (at + 2 > bytes.length) return null;
    const type = bytes[at]!;
    const len = bytes[at + 1]!;
    const value = bytes.subarray(at + 2, at + 2 + len);
    if (value.length !== len) return null;
    if (type === Extension.NAME) {
      let name: string;
      try {
        name = strictUtf8.decode(value);
      } catch {
        return null;
      }
      if (len > NAME_MAX_BYTES || printable(name) !== name) return null;
      out.name = name;
    } else if (type === Extension.PAIRS) {
      if (len !== 0) return null;
      out.pairs = true;
    } else if (type === Extension.INVITE) {
      if (len !== INVITE_ID_SIZE + INVITE_PROOF_SIZE) return null;
      out.invite = { id: Buffer.from(value.subarray(0, INVITE_ID_SIZE)), proof: Buffer.from(value.subarray(INVITE_ID_SIZE)) };
    }
    at += 2 + len;
  }
  return out;
}

// ---------------------------------------------------------------- small helpers

/** A session index as logs and status show it: 8 hex digits. */
export function formatIndex(index: number): string {
  return (index >>> 0).toString(16).padStart(8, '0');
}

/** UTF-8 bytes of `text`, cut to at most `maxBytes` without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return bytes;
  let end = Math.max(0, maxBytes);
  // Back up over continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
// C0 controls, DEL and C1 controls: a name goes into logs.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/g;

/** `text` with control characters replaced by '?'. */
export function printable(text: string): string {
  return text.replace(CONTROL_CHARS, '?');
}

function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

function writeU32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = (v >>> 16) & 0xff;
  buf[at + 2] = (v >>> 8) & 0xff;
  buf[at + 3] = v & 0xff;
}

// ---------------------------------------------------------------- end to end: long control (port <-> switch) and pair control

/** A MAC and its VLAN as the directory carries them. */
export interface MacRecord {
  mac: number;
  vlan: number;
}

/** A member's directory entry (PEER), or its withdrawal (flags GONE). */
export interface PeerMessage {
  kind: typeof LongControl.PEER;
  id: number;
  flags: number;
  /** 32 bytes; empty when GONE. */
  publicKey: Buffer;
  name: string;
  macs: MacRecord[];
}

export type LongControlMessage =
  | { kind: typeof LongControl.PAIR_SEND; dst: number; message: Buffer }
  | { kind: typeof LongControl.MAC_CLAIM; macs: MacRecord[] }
  | { kind: typeof LongControl.PAIR_RECV; src: number; publicKey: Buffer; message: Buffer }
  | PeerMessage
  | EndpointsMessage
  | { kind: typeof LongControl.RENDEZVOUS; id: number }
  | PathReportMessage
  | { kind: typeof LongControl.PEER_QUERY; publicKey: Buffer }
  | TrafficReportMessage
  | CandidatesMessage
  | ReflectedMessage
  | AssignmentMessage;

/** ASSIGNMENT: the network and VLAN mode the switch gave this port. */
export interface AssignmentMessage {
  kind: typeof LongControl.ASSIGNMENT;
  network: string;
  vlan: string;
}

/** ENDPOINTS: a port's own addresses (address slots, 20 bytes each, port included). */
export interface EndpointsMessage {
  kind: typeof LongControl.ENDPOINTS;
  flags: number;
  nat: number;
  addrs: Buffer[];
}

/** CANDIDATES: where member `id` may be reached directly. */
export interface CandidatesMessage {
  kind: typeof LongControl.CANDIDATES;
  id: number;
  flags: number;
  nat: number;
  /** Its address as the switch sees it (a slot). */
  observed: Buffer;
  /** Its own addresses (slots). */
  local: Buffer[];
}

/** PATH_REPORT: how the reporting port reaches member `id`. */
export interface PathReportMessage {
  kind: typeof LongControl.PATH_REPORT;
  id: number;
  path: number;
  reason: string;
}

/** TRAFFIC_REPORT: what the reporting port sent and received on direct paths since it started. */
export interface TrafficReportMessage {
  kind: typeof LongControl.TRAFFIC_REPORT;
  txDirectBytes: number;
  rxDirectBytes: number;
}

/** REFLECTED: the port's address as the switch sees it, and where its reflector listens. */
export interface ReflectedMessage {
  kind: typeof LongControl.REFLECTED;
  observed: Buffer;
  reflectorPort: number;
}

/** PAIR_SEND: relay handshake `message` to member `dst`. */
export function encodePairSend(dst: number, message: Uint8Array): Buffer {
  const b = Buffer.alloc(3 + message.length);
  b[0] = LongControl.PAIR_SEND;
  b.writeUInt16BE(dst, 1);
  b.set(message, 3);
  return b;
}

/** PAIR_RECV: handshake `message` from member `src`, whose key the switch vouches for. */
export function encodePairRecv(src: number, publicKey: Uint8Array, message: Uint8Array): Buffer {
  const b = Buffer.alloc(3 + KEY_SIZE + message.length);
  b[0] = LongControl.PAIR_RECV;
  b.writeUInt16BE(src, 1);
  b.set(publicKey, 3);
  b.set(message, 3 + KEY_SIZE);
  return b;
}

/** MAC_CLAIM messages for `macs`, MACS_PER_MESSAGE each. */
export function encodeMacClaims(macs: readonly MacRecord[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < macs.length; at += MACS_PER_MESSAGE) {
    const part = macs.slice(at, at + MACS_PER_MESSAGE);
    const b = Buffer.alloc(2 + part.length * MAC_RECORD_SIZE);
    b[0] = LongControl.MAC_CLAIM;
    b[1] = part.length;
    writeMacRecords(b, 2, part);
    out.push(b);
  }
  return out;
}

/** PEER messages for one member: its key, name and MACs (the first message has RESET; none are sent for no MACs but one). */
export function encodePeer(id: number, publicKey: Uint8Array, name: string, macs: readonly MacRecord[], self = false): Buffer[] {
  const nameBytes = truncateUtf8(printable(name), NAME_MAX_BYTES);
  const out: Buffer[] = [];
  let at = 0;
  do {
    const part = macs.slice(at, at + MACS_PER_MESSAGE);
    const b = Buffer.alloc(4 + KEY_SIZE + 1 + nameBytes.length + 2 + part.length * MAC_RECORD_SIZE);
    b[0] = LongControl.PEER;
    b.writeUInt16BE(id, 1);
    b[3] = (at === 0 ? PeerFlags.RESET : 0) | (self ? PeerFlags.SELF : 0);
    b.set(publicKey, 4);
    let p = 4 + KEY_SIZE;
    b[p++] = nameBytes.length;
    b.set(nameBytes, p);
    p += nameBytes.length;
    b.writeUInt16BE(part.length, p);
    writeMacRecords(b, p + 2, part);
    out.push(b);
    at += MACS_PER_MESSAGE;
  } while (at < macs.length);
  return out;
}

/** PEER with GONE: member `id` left or was revoked. */
export function encodePeerGone(id: number): Buffer {
  const b = Buffer.alloc(4);
  b[0] = LongControl.PEER;
  b.writeUInt16BE(id, 1);
  b[3] = PeerFlags.GONE;
  return b;
}

/** REFLECT_REQUEST with transaction id `txid` (8 bytes), padded to the size of its answer. */
export function encodeReflectRequest(txid: Uint8Array): Buffer {
  const b = Buffer.alloc(REFLECT_SIZE);
  writePrefix(b, 0, MessageType.REFLECT_REQUEST);
  b.set(txid.subarray(0, 8), REFLECT_TXID_OFFSET);
  return b;
}

/** Whether `msg` is a well-formed REFLECT_REQUEST (its whole size, so a short one is not answered with more bytes). */
export function isReflectRequest(msg: Uint8Array): boolean {
  return msg.length === REFLECT_SIZE && hasPrefix(msg, 0, msg.length, MessageType.REFLECT_REQUEST);
}

/** The reflector's answer to `request`: its transaction id and the address slot it came from. */
export function encodeReflectReply(request: Uint8Array, from: Buffer): Buffer {
  const b = Buffer.alloc(REFLECT_SIZE);
  writePrefix(b, 0, MessageType.REFLECT_REPLY);
  b.set(request.subarray(REFLECT_TXID_OFFSET, REFLECT_TXID_OFFSET + 8), REFLECT_TXID_OFFSET);
  from.copy(b, REFLECT_ADDR_OFFSET, 0, ENDPOINT_RECORD_SIZE);
  return b;
}

/** A REFLECT_REPLY's transaction id (hex) and the address slot it reports, or null. */
export function decodeReflectReply(msg: Uint8Array, off: number, len: number): { txid: string; observed: Buffer } | null {
  if (len !== REFLECT_SIZE || !hasPrefix(msg, off, len, MessageType.REFLECT_REPLY)) return null;
  const observed = Buffer.alloc(ADDR_SLOT);
  observed.set(msg.subarray(off + REFLECT_ADDR_OFFSET, off + REFLECT_ADDR_OFFSET + ENDPOINT_RECORD_SIZE));
  return { txid: Buffer.from(msg.subarray(off + REFLECT_TXID_OFFSET, off + REFLECT_TXID_OFFSET + 8)).toString('hex'), observed };
}

/** ENDPOINTS: at most LOCAL_ENDPOINTS_MAX of `addrs` (address slots) are sent. */
export function encodeEndpoints(flags: number, nat: number, addrs: readonly Buffer[]): Buffer {
  const list = addrs.slice(0, LOCAL_ENDPOINTS_MAX);
  const b = Buffer.alloc(4 + list.length * ENDPOINT_RECORD_SIZE);
  b[0] = LongControl.ENDPOINTS;
  b[1] = flags;
  b[2] = nat;
  b[3] = list.length;
  writeSlots(b, 4, list);
  return b;
}

/** RENDEZVOUS: ask the switch to introduce this port and member `id` to each other. */
export function encodeRendezvous(id: number): Buffer {
  const b = Buffer.alloc(3);
  b[0] = LongControl.RENDEZVOUS;
  b.writeUInt16BE(id, 1);
  return b;
}

/** PATH_REPORT: how this port reaches member `id` (the reason is cut to PATH_REASON_MAX_BYTES). */
export function encodePathReport(id: number, path: number, reason: string): Buffer {
  const r = truncateUtf8(printable(reason), PATH_REASON_MAX_BYTES);
  const b = Buffer.alloc(5 + r.length);
  b[0] = LongControl.PATH_REPORT;
  b.writeUInt16BE(id, 1);
  b[3] = path;
  b[4] = r.length;
  b.set(r, 5);
  return b;
}

/** TRAFFIC_REPORT: the type byte and two u64. */
const TRAFFIC_REPORT_SIZE = 17;

/** TRAFFIC_REPORT: bytes this port sent and received on direct paths (whole numbers below 2^53). */
export function encodeTrafficReport(txDirectBytes: number, rxDirectBytes: number): Buffer {
  const b = Buffer.alloc(TRAFFIC_REPORT_SIZE);
  b[0] = LongControl.TRAFFIC_REPORT;
  b.writeBigUInt64BE(BigInt(txDirectBytes), 1);
  b.writeBigUInt64BE(BigInt(rxDirectBytes), 9);
  return b;
}

/** PEER_QUERY: which member has `publicKey` now. */
export function encodePeerQuery(publicKey: Uint8Array): Buffer {
  const b = Buffer.alloc(1 + KEY_SIZE);
  b[0] = LongControl.PEER_QUERY;
  b.set(publicKey, 1);
  return b;
}

/** CANDIDATES for member `id`: its observed address slot and its own ones. */
export function encodeCandidates(id: number, flags: number, nat: number, observed: Buffer, local: readonly Buffer[]): Buffer {
  const list = local.slice(0, LOCAL_ENDPOINTS_MAX);
  const b = Buffer.alloc(5 + ENDPOINT_RECORD_SIZE + 1 + list.length * ENDPOINT_RECORD_SIZE);
  b[0] = LongControl.CANDIDATES;
  b.writeUInt16BE(id, 1);
  b[3] = flags;
  b[4] = nat;
  writeSlots(b, 5, [observed]);
  b[5 + ENDPOINT_RECORD_SIZE] = list.length;
  writeSlots(b, 6 + ENDPOINT_RECORD_SIZE, list);
  return b;
}

/** REFLECTED: the port's address slot as the switch sees it, and the reflector's port (0: none). */
export function encodeReflected(observed: Buffer, reflectorPort: number): Buffer {
  const b = Buffer.alloc(1 + ENDPOINT_RECORD_SIZE + 2);
  b[0] = LongControl.REFLECTED;
  writeSlots(b, 1, [observed]);
  b.writeUInt16BE(reflectorPort, 1 + ENDPOINT_RECORD_SIZE);
  return b;
}

/** ASSIGNMENT: the port's network and VLAN mode, each cut to its bound (between characters). */
export function encodeAssignment(network: string, vlan: string): Buffer {
  const n = truncateUtf8(network, NAME_MAX_BYTES);
  const v = Buffer.from(vlan.replace(/[^\x20-\x7e]/g, '?').slice(0, ASSIGNMENT_MODE_MAX_BYTES), 'latin1');
  const b = Buffer.alloc(3 + n.length + v.length);
  b[0] = LongControl.ASSIGNMENT;
  b[1] = n.length;
  n.copy(b, 2);
  b[2 + n.length] = v.length;
  v.copy(b, 3 + n.length);
  return b;
}

function writeSlots(b: Buffer, at: number, slots: readonly Buffer[]): void {
  for (const s of slots) {
    s.copy(b, at, 0, ENDPOINT_RECORD_SIZE);
    at += ENDPOINT_RECORD_SIZE;
  }
}

/** `n` address records at b[at] as 20-byte slots; null if one is not an address (port 0, or an unspecified address). */
function readSlots(b: Buffer, at: number, n: number): Buffer[] | null {
  const out: Buffer[] = [];
  for (let k = 0; k < n; k++, at += ENDPOINT_RECORD_SIZE) {
    const slot = Buffer.alloc(ADDR_SLOT);
    b.copy(slot, 0, at, at + ENDPOINT_RECORD_SIZE);
    if (!isUsableSlot(slot)) return null;
    out.push(slot);
  }
  return out;
}


/** A slot one can send to: a port, and an address that is not all zeros. */
function isUsableSlot(slot: Buffer): boolean {
  if (slot.readUInt16BE(16) === 0) return false;
  for (let i = 0; i < 16; i++) if (slot[i] !== 0) return true;
  return false;
}

/** A long control plaintext (from an authenticated CONTROL_DATA datagram), or null if malformed. */
export function decodeLongControl(buf: Buffer, off: number, len: number): LongControlMessage | null {
  if (len < 1) return null;
  const end = off + len;
  const kind = buf[off]!;
  if (kind === LongControl.PAIR_SEND && len > 3) {
    const dst = buf.readUInt16BE(off + 1);
    return dst === 0 ? null : { kind, dst, message: Buffer.from(buf.subarray(off + 3, end)) };
  }
  if (kind === LongControl.PAIR_RECV && len > 3 + KEY_SIZE) {
    const src = buf.readUInt16BE(off + 1);
    if (src === 0) return null;
    return { kind, src, publicKey: Buffer.from(buf.subarray(off + 3, off + 3 + KEY_SIZE)), message: Buffer.from(buf.subarray(off + 3 + KEY_SIZE, end)) };
  }
  if (kind === LongControl.MAC_CLAIM && len >= 2) {
    const n = buf[off + 1]!;
    if (n > MACS_PER_MESSAGE || len !== 2 + n * MAC_RECORD_SIZE) return null;
    return { kind, macs: readMacRecords(buf, off + 2, n) };
  }
  if (kind === LongControl.ENDPOINTS && len >= 4) {
    const n = buf[off + 3]!;
    if (n > LOCAL_ENDPOINTS_MAX || len !== 4 + n * ENDPOINT_RECORD_SIZE) return null;
    const addrs = readSlots(buf, off + 4, n);
    return addrs === null ? null : { kind, flags: buf[off + 1]!, nat: buf[off + 2]!, addrs };
  }
  if ((kind === LongControl.RENDEZVOUS) && len === 3) {
    const id = buf.readUInt16BE(off + 1);
    return id === 0 ? null : { kind, id };
  }
  if (kind === LongControl.PATH_REPORT && len >= 5) {
    const id = buf.readUInt16BE(off + 1);
    const n = buf[off + 4]!;
    if (id === 0 || n > PATH_REASON_MAX_BYTES || len !== 5 + n) return null;
    let reason: string;
    try {
      reason = strictUtf8.decode(buf.subarray(off + 5, end));
    } catch {
      return null;
    }
    return { kind, id, path: buf[off + 3]!, reason: printable(reason) };
  }
  if (kind === LongControl.TRAFFIC_REPORT && len === TRAFFIC_REPORT_SIZE) {
    const tx = buf.readBigUInt64BE(off + 1);
    const rx = buf.readBigUInt64BE(off + 9);
    if (tx > BigInt(Number.MAX_SAFE_INTEGER) || rx > BigInt(Number.MAX_SAFE_INTEGER)) return null;
    return { kind, txDirectBytes: Number(tx), rxDirectBytes: Number(rx) };
  }
  if (kind === LongControl.PEER_QUERY && len === 1 + KEY_SIZE) {
    return { kind, publicKey: Buffer.from(buf.subarray(off + 1, end)) };
  }
  if (kind === LongControl.CANDIDATES && len >= 6 + ENDPOINT_RECORD_SIZE) {
    const id = buf.readUInt16BE(off + 1);
    const n = buf[off + 5 + ENDPOINT_RECORD_SIZE]!;
    if (id === 0 || n > LOCAL_ENDPOINTS_MAX || len !== 6 + ENDPOINT_RECORD_SIZE + n * ENDPOINT_RECORD_SIZE) return null;
    const observed = readSlots(buf, off + 5, 1);
    const local = readSlots(buf, off + 6 + ENDPOINT_RECORD_SIZE, n);
    if (observed === null || local === null) return null;
    return { kind, id, flags: buf[off + 3]!, nat: buf[off + 4]!, observed: observed[0]!, local };
  }
  if (kind === LongControl.REFLECTED && len === 3 + ENDPOINT_RECORD_SIZE) {
    const observed = readSlots(buf, off + 1, 1);
    return observed === null ? null : { kind, observed: observed[0]!, reflectorPort: buf.readUInt16BE(off + 1 + ENDPOINT_RECORD_SIZE) };
  }
  if (kind === LongControl.ASSIGNMENT && len >= 3) {
    const n = buf[off + 1]!;
    if (n > NAME_MAX_BYTES || 2 + n + 1 > len) return null;
    const v = buf[off + 2 + n]!;
    if (v > ASSIGNMENT_MODE_MAX_BYTES || len !== 3 + n + v) return null;
    try {
      const network = strictUtf8.decode(buf.subarray(off + 2, off + 2 + n));
      return { kind, network: printable(network), vlan: printable(buf.toString('latin1', off + 3 + n, end)) };
    } catch {
      return null;
    }
  }
  if (kind === LongControl.PEER && len >= 4) {
    const id = buf.readUInt16BE(off + 1);
    const flags = buf[off + 3]!;
    if (id === 0) return null;
    if (flags & PeerFlags.GONE) return len === 4 ? { kind, id, flags, publicKey: Buffer.alloc(0), name: '', macs: [] } : null;
    let p = off + 4 + KEY_SIZE;
    if (p + 1 > end) return null;
    const nameLen = buf[p++]!;
    if (nameLen > NAME_MAX_BYTES || p + nameLen + 2 > end) return null;
    let name: string;
    try {
      name = strictUtf8.decode(buf.subarray(p, p + nameLen));
    } catch {
      return null;
    }
    p += nameLen;
    const n = buf.readUInt16BE(p);
    p += 2;
    if (n > MACS_PER_MESSAGE || p + n * MAC_RECORD_SIZE !== end) return null;
    return { kind, id, flags, publicKey: Buffer.from(buf.subarray(off + 4, off + 4 + KEY_SIZE)), name: printable(name), macs: readMacRecords(buf, p, n) };
  }
  return null;
}

/** NOT_HERE: "`mac` on `vlan` is not behind me". */
export function encodeNotHere(mac: number, vlan: number): Buffer {
  const b = Buffer.alloc(NOT_HERE_SIZE);
  b[0] = PairControl.NOT_HERE;
  writeMacRecords(b, 1, [{ mac, vlan }]);
  return b;
}

export const PAIR_LEAVE_PAYLOAD: Buffer = Buffer.from([PairControl.LEAVE]);

/**
 * A probe padded to the size of the largest frame: the plaintext of a frame
 * from and to 00:00:00:00:00:00 with EtherType PROBE_ETHERTYPE, then the kind
 * (PROBE or PROBE_REPLY), the id (u32) and zeros. A path that cannot carry
 * full-size datagrams (a smaller MTU, a tunnel) then never answers, so it is
 * never chosen; a 5-byte probe would pass where the frames cannot.
 */
export function encodeProbeFrame(kind: typeof PairControl.PROBE | typeof PairControl.PROBE_REPLY, id: number, size: number): Buffer {
  const b = Buffer.alloc(Math.max(size, PROBE_FRAME_MIN_SIZE));
  b.writeUInt16BE(PROBE_ETHERTYPE, 12);
  b[14] = kind;
  b.writeUInt32BE(id >>> 0, 15);
  return b;
}

/** Whether buf[off..+len) is a probe frame (zero MACs, PROBE_ETHERTYPE, a probe kind). Allocation-free. */
export function isProbeFrame(buf: Uint8Array, off: number, len: number): boolean {
  if (len < PROBE_FRAME_MIN_SIZE) return false;
  for (let i = 0; i < 12; i++) if (buf[off + i] !== 0) return false;
  if (buf[off + 12] !== PROBE_ETHERTYPE >> 8 || buf[off + 13] !== (PROBE_ETHERTYPE & 0xff)) return false;
  const kind = buf[off + 14];
  return kind === PairControl.PROBE || kind === PairControl.PROBE_REPLY;
}

/** A short pair control payload. */
export type PairControlMessage =
  | { kind: typeof PairControl.LEAVE }
  | ({ kind: typeof PairControl.NOT_HERE } & MacRecord)
  | { kind: typeof PairControl.PROBE | typeof PairControl.PROBE_REPLY; id: number };

/** A short pair control payload, or null. */
export function decodePairControl(buf: Buffer, off: number, len: number): PairControlMessage | null {
  const kind = buf[off];
  if (kind === PairControl.LEAVE && len === 1) return { kind };
  if (isProbeFrame(buf, off, len)) return { kind: buf[off + 14] as typeof PairControl.PROBE, id: buf.readUInt32BE(off + 15) };
  if (kind === PairControl.NOT_HERE && len === NOT_HERE_SIZE) return { kind, ...readMacRecords(buf, off + 1, 1)[0]! };
  return null;
}

function writeMacRecords(b: Buffer, at: number, macs: readonly MacRecord[]): void {
  for (const { mac, vlan } of macs) {
    b.writeUInt16BE(Math.floor(mac / TWO_32), at);
    b.writeUInt32BE(mac >>> 0, at + 2);
    b.writeUInt16BE(vlan & 0xfff, at + 6);
    at += MAC_RECORD_SIZE;
  }
}

function readMacRecords(b: Buffer, at: number, n: number): MacRecord[] {
  const out: MacRecord[] = [];
  for (let k = 0; k < n; k++, at += MAC_RECORD_SIZE) out.push({ mac: b.readUInt16BE(at) * TWO_32 + b.readUInt32BE(at + 2), vlan: b.readUInt16BE(at + 6) & 0xfff });
  return out;
}
