// The encrypted data path shared by switch and port: seal a batch of frames
// into a transmit queue, and open the transport datagrams of a receive batch
// per keypair — one native call each way, no allocation per frame.
import type { FrameBatch } from '../core/frames.js';
import type { TxQueue } from '../io/tx-queue.js';
import { writeTransportHeader } from '../crypto/aead.js';
import { PROTOCOL_VERSION_2, TRANSPORT_HEADER_SIZE, TRANSPORT_OVERHEAD, TransportOffset, V2MessageType } from '../crypto/constants.js';
import { MAX_DATAGRAM_SIZE } from '../protocol/constants.js';
import type { Keypair } from './keypair.js';

const TWO_32 = 0x1_0000_0000;

/** Smallest valid transport datagram: header + tag (a keepalive). */
export const MIN_TRANSPORT_SIZE = TRANSPORT_OVERHEAD;

export function readU32(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off);
}

export function readCounter(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off + TransportOffset.COUNTER) * TWO_32 + buf.readUInt32BE(off + TransportOffset.COUNTER + 4);
}

/** Version 2, type transport, reserved zero, long enough: worth a key lookup. */
export function isTransport(buf: Buffer, off: number, len: number): boolean {
  return (
    len >= MIN_TRANSPORT_SIZE &&
    buf[off] === PROTOCOL_VERSION_2 &&
    buf[off + 1] === V2MessageType.TRANSPORT_DATA &&
    buf[off + 2] === 0 &&
    buf[off + 3] === 0
  );
}

export interface SealCounters {
  txOversize: number;
}

/**
 * Seal every frame of `batch` for the holder of `kp` at `endpoint` into `q`,
 * in chunks that fit the queue: headers first (the counter is the nonce), then
 * one sealBatch over the chunk.
 */
export function sealInto(kp: Keypair, batch: FrameBatch, q: TxQueue, endpoint: Buffer, counters: SealCounters): void {
  const { offsets, lengths, count } = batch;
  const dst = q.batch.buf;
  const scratch = q.scratchOffsets;
  let i = 0;
  while (i < count) {
    let n = 0;
    let pos = q.used;
    const slots = q.slotsFree;
    while (i + n < count && n < slots) {
      const size = lengths[i + n]! + TRANSPORT_OVERHEAD;
      if (size > MAX_DATAGRAM_SIZE) break;
      if (pos + size > dst.length) break;
      writeTransportHeader(dst, pos, kp.remoteIndex, kp.nextCounter());
      scratch[n] = pos;
      pos += size;
      n++;
    }
    if (n === 0) {
      if (lengths[i]! + TRANSPORT_OVERHEAD > MAX_DATAGRAM_SIZE) {
        counters.txOversize++;
        i++;
      } else {
        q.flush();
      }
      continue;
    }
    const srcOffsets = i === 0 && n === count ? offsets : offsets.subarray(i, i + n);
    const srcLengths = i === 0 && n === count ? lengths : lengths.subarray(i, i + n);
    kp.send.sealBatch(batch.buf, srcOffsets, srcLengths, n, dst, scratch);
    for (let k = 0; k < n; k++) q.commit(scratch[k]!, lengths[i + k]! + TRANSPORT_OVERHEAD, endpoint);
    i += n;
  }
}

/** One sealed datagram (control messages; slow path, allocates). */
export function sealOne(kp: Keypair, payload: Buffer): Buffer {
  const out = Buffer.alloc(payload.length + TRANSPORT_OVERHEAD);
  writeTransportHeader(out, 0, kp.remoteIndex, kp.nextCounter());
  kp.send.sealBatch(payload, new Uint32Array([0]), new Uint32Array([payload.length]), 1, out, new Uint32Array([0]));
  return out;
}

/** Queue datagram `slot` of the current receive batch (at off, len) for opening with `kp`. Returns false if it is a replay. */
export function queueOpen(kp: Keypair, buf: Buffer, off: number, len: number, slot: number): boolean {
  if (!kp.replay.wouldAccept(readCounter(buf, off))) return false;
  const j = kp.rxCount++;
  kp.rxOffsets[j] = off;
  kp.rxLengths[j] = len;
  kp.rxPlainOffsets[j] = off + TRANSPORT_HEADER_SIZE;
  kp.rxSlots[j] = slot;
  return true;
}

export interface OpenSink {
  /** An authentic, fresh datagram: plaintext at buf[off..+len), from receive slot `slot`. */
  plain(kp: Keypair, slot: number, buf: Buffer, off: number, len: number): void;
  /** Failed authentication, or authentic but replayed. */
  rejected(kp: Keypair, reason: 'auth' | 'replay'): void;
}

/** Open (in place) everything queued on `kp` and hand each result to `sink`. */
export function openQueued(kp: Keypair, buf: Buffer, sink: OpenSink): void {
  const n = kp.rxCount;
  kp.rxCount = 0;
  if (n === 0) return;
  kp.recv.openBatch(buf, kp.rxOffsets, kp.rxLengths, n, buf, kp.rxPlainOffsets, kp.rxResults);
  for (let j = 0; j < n; j++) {
    if (kp.rxResults[j] !== 1) {
      sink.rejected(kp, 'auth');
      continue;
    }
    const off = kp.rxOffsets[j]!;
    // Replay is decided only for authentic datagrams, so forgeries cannot move the window.
    if (!kp.replay.checkAndUpdate(readCounter(buf, off))) {
      sink.rejected(kp, 'replay');
      continue;
    }
    sink.plain(kp, kp.rxSlots[j]!, buf, off + TRANSPORT_HEADER_SIZE, kp.rxLengths[j]! - TRANSPORT_OVERHEAD);
  }
}
