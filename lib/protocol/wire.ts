// Encode and decode of the datagrams and control payloads that are not the
// handshake (lib/protocol/noise.ts): the transport header, control messages,
// the unauthenticated hints, initiation extensions. Pure: no I/O. The transport
// helpers never allocate; everything else is rare and may.
import {
  CONTROL_MAX_SIZE,
  Control,
  EXTENSIONS_MAX_SIZE,
  ETHERNET_HEADER_SIZE,
  Extension,
  HANDSHAKE_REFUSED_SIZE,
  MessageType,
  NAME_MAX_BYTES,
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
export function writeTransportHeader(buf: Uint8Array, off: number, receiverIndex: number, counter: number): number {
  writePrefix(buf, off, MessageType.TRANSPORT_DATA);
  writeU32(buf, off + TransportOffset.RECEIVER_INDEX, receiverIndex);
  writeU32(buf, off + TransportOffset.COUNTER, Math.floor(counter / TWO_32));
  writeU32(buf, off + TransportOffset.COUNTER + 4, counter >>> 0);
  return TRANSPORT_HEADER_SIZE;
}

/** Our version, type transport, reserved zero, long enough to hold a tag: worth a key lookup. */
export function isTransport(buf: Uint8Array, off: number, len: number): boolean {
  return len >= TRANSPORT_OVERHEAD && hasPrefix(buf, off, len, MessageType.TRANSPORT_DATA);
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
  | { kind: typeof Control.LEAVE };

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
  return null;
}

// ---------------------------------------------------------------- unauthenticated hints

/** SESSION_UNKNOWN: the receiver index the switch did not know. */
export function encodeSessionUnknown(index: number): Buffer {
  const b = Buffer.alloc(SESSION_UNKNOWN_SIZE);
  writePrefix(b, 0, MessageType.SESSION_UNKNOWN);
  writeU32(b, 4, index >>> 0);
  return b;
}

/** The index a SESSION_UNKNOWN names, or undefined if `msg` is not one. */
export function decodeSessionUnknown(msg: Uint8Array): number | undefined {
  return msg.length === SESSION_UNKNOWN_SIZE && hasPrefix(msg, 0, msg.length, MessageType.SESSION_UNKNOWN) ? readU32(msg, 4) : undefined;
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
}

/** The extension bytes of an initiation's payload (after the timestamp). Throws ERR_OUT_OF_RANGE when they would not fit. */
export function encodeExtensions(ext: Extensions): Buffer {
  const parts: Buffer[] = [];
  if (ext.name !== undefined && ext.name !== '') {
    const name = truncateUtf8(printable(ext.name), NAME_MAX_BYTES);
    parts.push(Buffer.from([Extension.NAME, name.length]), name);
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
