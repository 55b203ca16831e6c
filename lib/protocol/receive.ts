// The receive half of the data path (as wireguard-go's device/receive.go):
// transport datagrams of one receive window are queued per keypair, opened in
// place with one AEAD call per keypair, checked against the replay window, and
// the frames appended to the receiver's ingress batch as views into the slab.
// No allocation and no callback per frame; control payloads (rare) go to a callback.
import type { MutableFrameBatch } from '../core/frames.js';
import { ETHERNET_HEADER_SIZE, MessageType, TRANSPORT_HEADER_SIZE, TRANSPORT_OVERHEAD } from './constants.js';
import type { Keypair } from './keypair.js';
import { isProbeFrame, readCounter } from './wire.js';

export interface OpenCounters {
  /** Did not authenticate: forged, corrupted, or for other keys. */
  authFailed: number;
  /**
   * Seen before, or too old for the window. A counter the window obviously
   * refuses is counted here before the AEAD runs (it is not worth opening), so
   * a forgery that reuses a seen counter counts here too, not as authFailed.
   */
  replayed: number;
}

/** A control payload (1..13 bytes) from an authentic, fresh datagram of receive slot `slot`. */
export type ControlHandler = (kp: Keypair, buf: Buffer, off: number, len: number, slot: number) => void;

/**
 * Queue transport datagram `slot` of the current window (buf[off .. +len)) for
 * opening with `kp`. False when it is an obvious replay (it is not queued).
 */
export function queueOpen(kp: Keypair, buf: Buffer, off: number, len: number, slot: number): boolean {
  if (!kp.replay.wouldAccept(readCounter(buf, off))) return false;
  const j = kp.rxCount++;
  kp.rxOffsets[j] = off;
  kp.rxLengths[j] = len;
  kp.rxPlainOffsets[j] = off + TRANSPORT_HEADER_SIZE;
  kp.rxSlots[j] = slot;
  return true;
}

/**
 * Open everything queued on `kp`, in place. Frames (>= 14 bytes of plaintext)
 * are appended to `frames`, which must be empty or over the same slab; control
 * payloads go to `control`, CONTROL_DATA plaintexts to `longControl` (absent:
 * ignored); bare keepalives only count as heard. Returns the
 * receive slot of the newest authentic, fresh datagram, or -1 if none was.
 */
export function openQueued(
  kp: Keypair,
  buf: Buffer,
  frames: MutableFrameBatch,
  counters: OpenCounters,
  control: ControlHandler,
  longControl?: ControlHandler,
  /** Pair sessions: frame-sized probes (wire.ts isProbeFrame) go to `control`, not to `frames`. */
  probeFrames = false,
): number {
  const n = kp.rxCount;
  kp.rxCount = 0;
  if (n === 0) return -1;
  kp.recv.openBatch(buf, kp.rxOffsets, kp.rxLengths, n, buf, kp.rxPlainOffsets, kp.rxResults);
  if (frames.count === 0) frames.buf = buf;
  let newest = -1;
  for (let j = 0; j < n; j++) {
    if (kp.rxResults[j] !== 1) {
      counters.authFailed++;
      continue;
    }
    const off = kp.rxOffsets[j]!;
    // Replay is decided only for authentic datagrams, so forgeries cannot move the window.
    if (!kp.replay.checkAndUpdate(readCounter(buf, off))) {
      // Marked, so a caller that walks the results after this sees only fresh datagrams as 1.
      kp.rxResults[j] = 0;
      counters.replayed++;
      continue;
    }
    const slot = kp.rxSlots[j]!;
    if (slot > newest) newest = slot;
    const plain = off + TRANSPORT_HEADER_SIZE;
    const len = kp.rxLengths[j]! - TRANSPORT_OVERHEAD;
    if (buf[off + 1] === MessageType.CONTROL_DATA) {
      // A long control message (port-switch sessions only; a pair session's caller rejects it).
      if (longControl !== undefined && len > 0) longControl(kp, buf, plain, len, slot);
      continue;
    }
    if (len >= ETHERNET_HEADER_SIZE) {
      // One byte decides for nearly every frame (a probe's destination MAC is all zeros).
      if (probeFrames && buf[plain] === 0 && isProbeFrame(buf, plain, len)) control(kp, buf, plain, len, slot);
      else frames.push(plain, len);
    }
    else if (len > 0) control(kp, buf, plain, len, slot);
  }
  return newest;
}
