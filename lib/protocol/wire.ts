// Encode and decode of every EtherLink v1 message (docs/PROTOCOL.md). Pure: no I/O.
// DATA helpers never allocate; control messages are rare and may.
import {
  ACCEPT_SIZE,
  AcceptOffset,
  DATA_HEADER_SIZE,
  DataOffset,
  JOIN_SIZE,
  JoinOffset,
  KEEPALIVE_SIZE,
  KeepaliveOffset,
  LEAVE_SIZE,
  LeaveOffset,
  MAC_SIZE,
  MALFORMED_NAMES,
  MESSAGE_TYPE_NAMES,
  MAX_DATAGRAM_SIZE,
  MAX_SUPPORTED_VERSION,
  MIN_FRAME_SIZE,
  MIN_SUPPORTED_VERSION,
  Malformed,
  MessageType,
  NAME_MAX_BYTES,
  NONCE_SIZE,
  NO_INDEX,
  PREFIX_SIZE,
  PROTOCOL_VERSION,
  PrefixOffset,
  REJECT_MAX_SIZE,
  REJECT_MIN_SIZE,
  REJECT_TEXT_MAX_BYTES,
  RejectOffset,
  TOKEN_SIZE,
  VERSION_UNSUPPORTED_SIZE,
  VersionUnsupportedOffset,
} from './constants.js';

// ---------------------------------------------------------------- decoded shapes

export interface JoinMessage {
  type: typeof MessageType.JOIN;
  /** The port's index for this session: the switch puts it in DATA/KEEPALIVE/LEAVE it sends. */
  senderIndex: number;
  /** Random per port process: tells a retransmitted JOIN from a restarted port. */
  nonce: Buffer;
  mac: Buffer;
  name: string;
}

export interface AcceptMessage {
  type: typeof MessageType.ACCEPT;
  /** The switch's index for this session: the port puts it in what it sends. */
  senderIndex: number;
  /** The port's index, echoed from JOIN. */
  receiverIndex: number;
  token: Buffer;
  keepaliveIntervalS: number;
  portTimeoutS: number;
}

export interface RejectMessage {
  type: typeof MessageType.REJECT;
  /**
   * The index the refusal is about: the JOIN's sender index for a refused JOIN;
   * for UNKNOWN_SESSION the receiver index the switch did not know.
   */
  index: number;
  reason: number;
  text: string;
}

export interface DataMessage {
  type: typeof MessageType.DATA;
  receiverIndex: number;
  counter: number;
  /** The frame is buf[frameOffset .. frameOffset + frameLength). */
  frameOffset: number;
  frameLength: number;
}

export interface KeepaliveMessage {
  type: typeof MessageType.KEEPALIVE;
  receiverIndex: number;
  token: Buffer;
  echo: number;
}

export interface LeaveMessage {
  type: typeof MessageType.LEAVE;
  receiverIndex: number;
  token: Buffer;
}

export interface VersionUnsupportedMessage {
  type: typeof MessageType.VERSION_UNSUPPORTED;
  senderVersion: number;
  lowest: number;
  highest: number;
}

export type Message =
  | JoinMessage
  | AcceptMessage
  | RejectMessage
  | DataMessage
  | KeepaliveMessage
  | LeaveMessage
  | VersionUnsupportedMessage;

export type DecodeResult =
  | { ok: true; message: Message }
  | { ok: false; error: Malformed; reason: string };

// ---------------------------------------------------------------- classify (no allocation)

/**
 * Validate the layout of a datagram buf[off .. off+len) without allocating.
 * Returns its MessageType (>= 0) or a Malformed code (< 0). Never throws.
 * The version is checked before the reserved bytes so that a future version
 * may use them. VERSION_UNSUPPORTED is recognised whatever its version byte.
 */
export function classify(buf: Uint8Array, off: number, len: number): number {
  // Written so that NaN and out-of-range bounds fail too.
  if (!(off >= 0 && len >= 0 && off + len <= buf.length)) return Malformed.TOO_SHORT;
  if (len < PREFIX_SIZE) return Malformed.TOO_SHORT;
  const version = buf[off + PrefixOffset.VERSION]!;
  const type = buf[off + PrefixOffset.TYPE]!;
  if (type === MessageType.VERSION_UNSUPPORTED) {
    if (len > VERSION_UNSUPPORTED_SIZE) return Malformed.OVERSIZED;
    const lowest = buf[off + VersionUnsupportedOffset.LOWEST]!;
    const highest = buf[off + VersionUnsupportedOffset.HIGHEST]!;
    if (lowest > highest || version === 0) return Malformed.BAD_FIELD;
    return type;
  }
  if (version < MIN_SUPPORTED_VERSION || version > MAX_SUPPORTED_VERSION) return Malformed.BAD_VERSION;
  if (buf[off + PrefixOffset.RESERVED] !== 0 || buf[off + PrefixOffset.RESERVED + 1] !== 0) {
    return Malformed.RESERVED_NONZERO;
  }
  switch (type) {
    case MessageType.DATA:
      if (len < DATA_HEADER_SIZE + MIN_FRAME_SIZE) return Malformed.TOO_SHORT;
      if (len > MAX_DATAGRAM_SIZE) return Malformed.OVERSIZED;
      if (u32(buf, off + DataOffset.RECEIVER_INDEX) === NO_INDEX) return Malformed.BAD_FIELD;
      return type;
    case MessageType.JOIN: {
      const size = sizeCheck(len, JOIN_SIZE);
      if (size !== 0) return size;
      if (u32(buf, off + JoinOffset.SENDER_INDEX) === NO_INDEX) return Malformed.BAD_FIELD;
      if (buf[off + JoinOffset.RESERVED] !== 0) return Malformed.RESERVED_NONZERO;
      const nameLength = buf[off + JoinOffset.NAME_LENGTH]!;
      if (nameLength > NAME_MAX_BYTES) return Malformed.BAD_FIELD;
      // Padding must be zero: otherwise the name field could smuggle data a v1 peer ignores.
      for (let i = off + JoinOffset.NAME + nameLength; i < off + JOIN_SIZE; i++) {
        if (buf[i] !== 0) return Malformed.RESERVED_NONZERO;
      }
      if (!isUnicastMac(buf, off + JoinOffset.MAC)) return Malformed.BAD_FIELD;
      return type;
    }
    case MessageType.ACCEPT: {
      const size = sizeCheck(len, ACCEPT_SIZE);
      if (size !== 0) return size;
      if (u32(buf, off + AcceptOffset.SENDER_INDEX) === NO_INDEX) return Malformed.BAD_FIELD;
      if (u32(buf, off + AcceptOffset.RECEIVER_INDEX) === NO_INDEX) return Malformed.BAD_FIELD;
      return type;
    }
    case MessageType.REJECT: {
      if (len < REJECT_MIN_SIZE) return Malformed.TOO_SHORT;
      if (len > REJECT_MAX_SIZE) return Malformed.OVERSIZED;
      if (u32(buf, off + RejectOffset.INDEX) === NO_INDEX) return Malformed.BAD_FIELD;
      if (buf[off + RejectOffset.RESERVED] !== 0) return Malformed.RESERVED_NONZERO;
      const textLength = buf[off + RejectOffset.TEXT_LENGTH]!;
      if (textLength > REJECT_TEXT_MAX_BYTES) return Malformed.BAD_FIELD;
      return sizeCheck(len, REJECT_MIN_SIZE + textLength) || type;
    }
    case MessageType.KEEPALIVE: {
      const size = sizeCheck(len, KEEPALIVE_SIZE);
      if (size !== 0) return size;
      if (u32(buf, off + KeepaliveOffset.RECEIVER_INDEX) === NO_INDEX) return Malformed.BAD_FIELD;
      return type;
    }
    case MessageType.LEAVE: {
      const size = sizeCheck(len, LEAVE_SIZE);
      if (size !== 0) return size;
      if (u32(buf, off + LeaveOffset.RECEIVER_INDEX) === NO_INDEX) return Malformed.BAD_FIELD;
      return type;
    }
    default:
      return Malformed.UNKNOWN_TYPE;
  }
}

/** Name of a classify() result, for logs and counters. */
export function classifyName(code: number): string {
  if (code < 0) return MALFORMED_NAMES[code] ?? `malformed(${code})`;
  return MESSAGE_TYPE_NAMES[code] ?? `type(${code})`;
}

function sizeCheck(len: number, size: number): number {
  if (len < size) return Malformed.TOO_SHORT;
  if (len > size) return Malformed.OVERSIZED;
  return 0;
}

function u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

function isUnicastMac(buf: Uint8Array, at: number): boolean {
  if ((buf[at]! & 1) !== 0) return false; // group bit: multicast or broadcast
  for (let i = 0; i < MAC_SIZE; i++) if (buf[at + i] !== 0) return true;
  return false; // all-zero
}

// ---------------------------------------------------------------- DATA hot path (no allocation)

const TWO_32 = 0x1_0000_0000;

/**
 * The 16-byte header both versions share (v1 DATA, v2 transport): version,
 * type, two zero bytes, receiver index and counter big-endian. `counter` is a
 * non-negative integer below 2^53 (a port sending 10 M frames/s takes 28 years
 * to get there), written as two u32 halves. Not validated: hot path.
 */
export function writeIndexedHeader(buf: Uint8Array, off: number, version: number, type: number, receiverIndex: number, counter: number): number {
  buf[off] = version;
  buf[off + 1] = type;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  writeU32(buf, off + DataOffset.RECEIVER_INDEX, receiverIndex);
  writeU32(buf, off + DataOffset.COUNTER, Math.floor(counter / TWO_32));
  writeU32(buf, off + DataOffset.COUNTER + 4, counter >>> 0);
  return DATA_HEADER_SIZE;
}

/** Write a v1 DATA header at buf[off .. off+16) and return its size. */
export function writeDataHeader(buf: Uint8Array, off: number, receiverIndex: number, counter: number): number {
  return writeIndexedHeader(buf, off, PROTOCOL_VERSION, MessageType.DATA, receiverIndex, counter);
}

/** Receiver index of a DATA/KEEPALIVE/LEAVE datagram, or NO_INDEX (0) if too short. */
export function readReceiverIndex(buf: Uint8Array, off: number, len: number): number {
  if (len < DataOffset.RECEIVER_INDEX + 4 || off + DataOffset.RECEIVER_INDEX + 4 > buf.length) return NO_INDEX;
  return u32(buf, off + DataOffset.RECEIVER_INDEX);
}

/** Counter of a DATA datagram as a number (exact below 2^53), or -1 if too short. */
export function readDataCounter(buf: Uint8Array, off: number, len: number): number {
  if (len < DATA_HEADER_SIZE || off + DATA_HEADER_SIZE > buf.length) return -1;
  return u32(buf, off + DataOffset.COUNTER) * TWO_32 + u32(buf, off + DataOffset.COUNTER + 4);
}

/** Length of the frame a DATA datagram of `len` bytes carries (may be negative if too short). */
export function dataFrameLength(len: number): number {
  return len - DATA_HEADER_SIZE;
}

function writeU32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = (v >>> 16) & 0xff;
  buf[at + 2] = (v >>> 8) & 0xff;
  buf[at + 3] = v & 0xff;
}

function writeU16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = (v >>> 8) & 0xff;
  buf[at + 1] = v & 0xff;
}

// ---------------------------------------------------------------- control encoders (slow path)
// Encoders take local values and throw RangeError on bad ones: that is a bug
// in the caller, not bad input from the network.

function header(size: number, type: number): Buffer {
  const buf = Buffer.alloc(size);
  buf[PrefixOffset.VERSION] = PROTOCOL_VERSION;
  buf[PrefixOffset.TYPE] = type;
  return buf;
}

function checkIndex(what: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0 || v > 0xffff_ffff) throw new RangeError(`${what} must be an integer in 1..2^32-1, got ${v}`);
}

function checkBytes(what: string, b: Uint8Array, size: number): void {
  if (b.length !== size) throw new RangeError(`${what} must be ${size} bytes, got ${b.length}`);
}

function checkU16(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${what} must be an integer in 0..65535, got ${v}`);
}

export function encodeJoin(m: { senderIndex: number; nonce: Uint8Array; mac: Uint8Array; name: string }): Buffer {
  checkIndex('senderIndex', m.senderIndex);
  checkBytes('nonce', m.nonce, NONCE_SIZE);
  checkBytes('mac', m.mac, MAC_SIZE);
  if (!isUnicastMac(m.mac, 0)) throw new RangeError('mac must be a non-zero unicast address');
  const name = Buffer.from(m.name, 'utf8');
  if (name.length > NAME_MAX_BYTES) throw new RangeError(`name must be at most ${NAME_MAX_BYTES} bytes of UTF-8`);
  if (!isPrintable(m.name)) throw new RangeError('name must not contain control characters');
  const buf = header(JOIN_SIZE, MessageType.JOIN);
  writeU32(buf, JoinOffset.SENDER_INDEX, m.senderIndex);
  buf.set(m.nonce, JoinOffset.NONCE);
  buf.set(m.mac, JoinOffset.MAC);
  buf[JoinOffset.NAME_LENGTH] = name.length;
  name.copy(buf, JoinOffset.NAME);
  return buf;
}

export function encodeAccept(m: {
  senderIndex: number;
  receiverIndex: number;
  token: Uint8Array;
  keepaliveIntervalS: number;
  portTimeoutS: number;
}): Buffer {
  checkIndex('senderIndex', m.senderIndex);
  checkIndex('receiverIndex', m.receiverIndex);
  checkBytes('token', m.token, TOKEN_SIZE);
  checkU16('keepaliveIntervalS', m.keepaliveIntervalS);
  checkU16('portTimeoutS', m.portTimeoutS);
  const buf = header(ACCEPT_SIZE, MessageType.ACCEPT);
  writeU32(buf, AcceptOffset.SENDER_INDEX, m.senderIndex);
  writeU32(buf, AcceptOffset.RECEIVER_INDEX, m.receiverIndex);
  buf.set(m.token, AcceptOffset.TOKEN);
  writeU16(buf, AcceptOffset.KEEPALIVE_INTERVAL, m.keepaliveIntervalS);
  writeU16(buf, AcceptOffset.PORT_TIMEOUT, m.portTimeoutS);
  return buf;
}

/**
 * REJECT whose text is cut (on a UTF-8 character boundary) so the datagram is
 * at most `maxSize` bytes: a reply is never larger than what triggered it.
 */
export function encodeReject(m: { index: number; reason: number; text: string }, maxSize: number = REJECT_MAX_SIZE): Buffer {
  checkIndex('index', m.index);
  checkU16('reason', m.reason);
  if (maxSize < REJECT_MIN_SIZE) throw new RangeError(`a REJECT needs at least ${REJECT_MIN_SIZE} bytes`);
  const room = Math.min(REJECT_TEXT_MAX_BYTES, maxSize - REJECT_MIN_SIZE);
  const text = truncateUtf8(m.text, room);
  const buf = header(REJECT_MIN_SIZE + text.length, MessageType.REJECT);
  writeU32(buf, RejectOffset.INDEX, m.index);
  writeU16(buf, RejectOffset.REASON, m.reason);
  buf[RejectOffset.TEXT_LENGTH] = text.length;
  text.copy(buf, RejectOffset.TEXT);
  return buf;
}

export function encodeKeepalive(m: { receiverIndex: number; token: Uint8Array; echo: number }): Buffer {
  checkIndex('receiverIndex', m.receiverIndex);
  checkBytes('token', m.token, TOKEN_SIZE);
  if (!Number.isInteger(m.echo) || m.echo < 0 || m.echo > 0xffff_ffff) throw new RangeError('echo must be a u32');
  const buf = header(KEEPALIVE_SIZE, MessageType.KEEPALIVE);
  writeU32(buf, KeepaliveOffset.RECEIVER_INDEX, m.receiverIndex);
  buf.set(m.token, KeepaliveOffset.TOKEN);
  writeU32(buf, KeepaliveOffset.ECHO, m.echo);
  return buf;
}

export function encodeLeave(m: { receiverIndex: number; token: Uint8Array }): Buffer {
  checkIndex('receiverIndex', m.receiverIndex);
  checkBytes('token', m.token, TOKEN_SIZE);
  const buf = header(LEAVE_SIZE, MessageType.LEAVE);
  writeU32(buf, LeaveOffset.RECEIVER_INDEX, m.receiverIndex);
  buf.set(m.token, LeaveOffset.TOKEN);
  return buf;
}

/** The 4-byte answer to a datagram whose version we don't speak (defaults: this build's range). */
export function encodeVersionUnsupported(
  senderVersion: number = PROTOCOL_VERSION,
  lowest: number = MIN_SUPPORTED_VERSION,
  highest: number = MAX_SUPPORTED_VERSION,
): Buffer {
  const buf = Buffer.alloc(VERSION_UNSUPPORTED_SIZE);
  buf[VersionUnsupportedOffset.SENDER_VERSION] = senderVersion;
  buf[VersionUnsupportedOffset.TYPE] = MessageType.VERSION_UNSUPPORTED;
  buf[VersionUnsupportedOffset.LOWEST] = lowest;
  buf[VersionUnsupportedOffset.HIGHEST] = highest;
  return buf;
}

/** A whole DATA datagram (tests and slow paths; the hot path uses writeDataHeader). */
export function encodeData(receiverIndex: number, counter: number, frame: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(DATA_HEADER_SIZE + frame.length);
  writeDataHeader(buf, 0, receiverIndex, counter);
  buf.set(frame, DATA_HEADER_SIZE);
  return buf;
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

// ---------------------------------------------------------------- decode (slow path; never throws)

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const lenientUtf8 = new TextDecoder('utf-8', { fatal: false });

// C0 controls, DEL and C1 controls: a name or reason text goes into logs.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/g;

function isPrintable(s: string): boolean {
  CONTROL_CHARS.lastIndex = 0;
  return !CONTROL_CHARS.test(s);
}

function fail(error: Malformed): DecodeResult {
  return { ok: false, error, reason: MALFORMED_NAMES[error] ?? 'malformed' };
}

/** Validate and decode any datagram buf[off .. off+len). Never throws on any input. */
export function decode(buf: Uint8Array, off: number = 0, len: number = buf.length - off): DecodeResult {
  const code = classify(buf, off, len);
  if (code < 0) return fail(code as Malformed);
  const b = Buffer.from(buf.buffer, buf.byteOffset + off, len);
  switch (code) {
    case MessageType.JOIN: {
      const nameLength = b[JoinOffset.NAME_LENGTH]!;
      let name: string;
      try {
        name = strictUtf8.decode(b.subarray(JoinOffset.NAME, JoinOffset.NAME + nameLength));
      } catch {
        return fail(Malformed.BAD_FIELD);
      }
      if (!isPrintable(name)) return fail(Malformed.BAD_FIELD);
      return {
        ok: true,
        message: {
          type: MessageType.JOIN,
          senderIndex: b.readUInt32BE(JoinOffset.SENDER_INDEX),
          nonce: Buffer.from(b.subarray(JoinOffset.NONCE, JoinOffset.NONCE + NONCE_SIZE)),
          mac: Buffer.from(b.subarray(JoinOffset.MAC, JoinOffset.MAC + MAC_SIZE)),
          name,
        },
      };
    }
    case MessageType.ACCEPT:
      return {
        ok: true,
        message: {
          type: MessageType.ACCEPT,
          senderIndex: b.readUInt32BE(AcceptOffset.SENDER_INDEX),
          receiverIndex: b.readUInt32BE(AcceptOffset.RECEIVER_INDEX),
          token: Buffer.from(b.subarray(AcceptOffset.TOKEN, AcceptOffset.TOKEN + TOKEN_SIZE)),
          keepaliveIntervalS: b.readUInt16BE(AcceptOffset.KEEPALIVE_INTERVAL),
          portTimeoutS: b.readUInt16BE(AcceptOffset.PORT_TIMEOUT),
        },
      };
    case MessageType.REJECT: {
      const textLength = b[RejectOffset.TEXT_LENGTH]!;
      const text = lenientUtf8
        .decode(b.subarray(RejectOffset.TEXT, RejectOffset.TEXT + textLength))
        .replace(CONTROL_CHARS, '\ufffd');
      return {
        ok: true,
        message: {
          type: MessageType.REJECT,
          index: b.readUInt32BE(RejectOffset.INDEX),
          reason: b.readUInt16BE(RejectOffset.REASON),
          text,
        },
      };
    }
    case MessageType.DATA:
      return {
        ok: true,
        message: {
          type: MessageType.DATA,
          receiverIndex: b.readUInt32BE(DataOffset.RECEIVER_INDEX),
          counter: readDataCounter(b, 0, len),
          frameOffset: off + DATA_HEADER_SIZE,
          frameLength: len - DATA_HEADER_SIZE,
        },
      };
    case MessageType.KEEPALIVE:
      return {
        ok: true,
        message: {
          type: MessageType.KEEPALIVE,
          receiverIndex: b.readUInt32BE(KeepaliveOffset.RECEIVER_INDEX),
          token: Buffer.from(b.subarray(KeepaliveOffset.TOKEN, KeepaliveOffset.TOKEN + TOKEN_SIZE)),
          echo: b.readUInt32BE(KeepaliveOffset.ECHO),
        },
      };
    case MessageType.LEAVE:
      return {
        ok: true,
        message: {
          type: MessageType.LEAVE,
          receiverIndex: b.readUInt32BE(LeaveOffset.RECEIVER_INDEX),
          token: Buffer.from(b.subarray(LeaveOffset.TOKEN, LeaveOffset.TOKEN + TOKEN_SIZE)),
        },
      };
    case MessageType.VERSION_UNSUPPORTED:
      return {
        ok: true,
        message: {
          type: MessageType.VERSION_UNSUPPORTED,
          senderVersion: b[VersionUnsupportedOffset.SENDER_VERSION]!,
          lowest: b[VersionUnsupportedOffset.LOWEST]!,
          highest: b[VersionUnsupportedOffset.HIGHEST]!,
        },
      };
    default:
      // classify only returns the types above; kept so a new type can't slip through silently.
      return fail(Malformed.UNKNOWN_TYPE);
  }
}

/** Whether a datagram that failed with BAD_VERSION may be answered with VERSION_UNSUPPORTED. */
export function mayAnswerVersion(buf: Uint8Array, off: number, len: number): boolean {
  // Never answer a VERSION_UNSUPPORTED (no ping-pong) nor anything shorter than our 4-byte answer.
  return len >= VERSION_UNSUPPORTED_SIZE && off + len <= buf.length && buf[off + PrefixOffset.TYPE] !== MessageType.VERSION_UNSUPPORTED;
}
