// The send half of the data path (as wireguard-go's device/send.go): seal a
// batch of frames for one keypair straight into a transmit queue's slab — the
// headers first (the counter is the nonce), then one AEAD call per run of the
// batch. No allocation per frame.
import type { FrameBatch } from '../core/frames.js';
import { MAX_DATAGRAM_SIZE, TRANSPORT_OVERHEAD } from './constants.js';
import type { Keypair } from './keypair.js';
import { writeTransportHeader } from './wire.js';

/**
 * Where sealed datagrams go: a slab, its fill level and free slots, and a way
 * to record a datagram for an address and to send what is queued.
 * lib/io/tx-queue.ts implements it over a UDP socket.
 */
export interface DatagramQueue {
  readonly batch: { readonly buf: Buffer };
  readonly used: number;
  readonly slotsFree: number;
  /** Scratch for the destination offsets of datagrams being built. */
  readonly scratchOffsets: Uint32Array;
  /** Record the datagram at batch.buf[offset .. +size) for the 20-byte address slot `addr`. */
  commit(offset: number, size: number, addr: Buffer, addrOffset?: number): void;
  /** Send what is queued now (makes room). */
  flush(): void;
}

export interface SealCounters {
  /** Frames too large for one datagram, dropped. */
  txOversize: number;
}

/**
 * Seal every frame of `batch` for the holder of `kp` at `endpoint` into `q`,
 * in runs that fit the queue. With `also`, each datagram is sent to that
 * address too (the same bytes: the receiver's replay window takes one).
 */
export function sealInto(kp: Keypair, batch: FrameBatch, q: DatagramQueue, endpoint: Buffer, counters: SealCounters, also?: Buffer): void {
  const { offsets, lengths, count } = batch;
  const dst = q.batch.buf;
  const scratch = q.scratchOffsets;
  let i = 0;
  while (i < count) {
    let n = 0;
    let pos = q.used;
    const slots = also === undefined ? q.slotsFree : q.slotsFree >> 1;
    while (i + n < count && n < slots) {
      const size = lengths[i + n]! + TRANSPORT_OVERHEAD;
      if (size > MAX_DATAGRAM_SIZE || pos + size > dst.length) break;
      writeTransportHeader(dst, pos, kp.remoteIndex, kp.nextCounter(), kp.wireType, kp.route);
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
    const whole = i === 0 && n === count;
    kp.send.sealBatch(batch.buf, whole ? offsets : offsets.subarray(i, i + n), whole ? lengths : lengths.subarray(i, i + n), n, dst, scratch);
    for (let k = 0; k < n; k++) q.commit(scratch[k]!, lengths[i + k]! + TRANSPORT_OVERHEAD, endpoint);
    if (also !== undefined) for (let k = 0; k < n; k++) q.commit(scratch[k]!, lengths[i + k]! + TRANSPORT_OVERHEAD, also);
    i += n;
  }
}

const ONE_OFFSET = new Uint32Array(1);
const ONE_LENGTH = new Uint32Array(1);

/**
 * One sealed datagram (control messages; slow path, allocates the datagram).
 * `type` CONTROL_DATA marks a long control message of a port-switch session.
 */
export function sealOne(kp: Keypair, payload: Buffer, type: number = kp.wireType): Buffer {
  const out = Buffer.alloc(payload.length + TRANSPORT_OVERHEAD);
  writeTransportHeader(out, 0, kp.remoteIndex, kp.nextCounter(), type, kp.route);
  ONE_LENGTH[0] = payload.length;
  kp.send.sealBatch(payload, ONE_OFFSET, ONE_LENGTH, 1, out, ONE_OFFSET);
  return out;
}
