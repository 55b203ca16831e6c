// Messages that ride inside authenticated transport data: a plaintext shorter
// than an Ethernet header can never be a frame, so lengths 1..13 carry control.
// Also SESSION_UNKNOWN, the one unauthenticated hint v2 sends (see PROTOCOL.md).
import { PROTOCOL_VERSION_2 } from '../crypto/constants.js';

export const Control = {
  /** Goodbye: the sender closes the session (port leaving, switch shutting down or revoking). */
  LEAVE: 1,
  /** u32 sequence; answered by PONG with the same sequence. Keeps NAT mappings open and measures RTT. */
  PING: 2,
  PONG: 3,
  /** Switch -> port after key confirmation: keepalive interval (u16 s) and port timeout (u16 s). */
  PARAMS: 4,
} as const;

export const CONTROL_MAX_SIZE = 13;
export const PING_SIZE = 5;
export const PARAMS_SIZE = 5;

/** v2 type of the unauthenticated "I don't know that receiver index" hint. */
export const SESSION_UNKNOWN_TYPE = 0x25;
export const SESSION_UNKNOWN_SIZE = 8;

export function encodePing(kind: 2 | 3, seq: number): Buffer {
  const b = Buffer.alloc(PING_SIZE);
  b[0] = kind;
  b.writeUInt32BE(seq >>> 0, 1);
  return b;
}

export function encodeParams(keepaliveS: number, portTimeoutS: number): Buffer {
  const b = Buffer.alloc(PARAMS_SIZE);
  b[0] = Control.PARAMS;
  b.writeUInt16BE(keepaliveS, 1);
  b.writeUInt16BE(portTimeoutS, 3);
  return b;
}

export const LEAVE_PAYLOAD = Buffer.from([Control.LEAVE]);

/** SESSION_UNKNOWN: prefix + the receiver index the switch did not know. Smaller than any transport message. */
export function encodeSessionUnknown(index: number): Buffer {
  const b = Buffer.alloc(SESSION_UNKNOWN_SIZE);
  b[0] = PROTOCOL_VERSION_2;
  b[1] = SESSION_UNKNOWN_TYPE;
  b.writeUInt32BE(index >>> 0, 4);
  return b;
}
