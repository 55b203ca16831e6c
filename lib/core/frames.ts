// The unit every layer speaks: a batch of Ethernet frames inside one slab.
// Views are valid only for the duration of the callback that hands them over.

/** A batch of frames: frame i is buf[offsets[i] .. offsets[i] + lengths[i]). */
export interface FrameBatch {
  readonly buf: Buffer;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly count: number;
}

/** Largest number of frames the native layer moves in one call. */
export const BATCH_SIZE = 64;

/** Room for one frame in a receive slab: the largest TAP MTU plus Ethernet and 802.1Q headers. */
export const FRAME_SLOT = 65536 + 32;

/** A fresh, empty batch whose arrays can hold `capacity` frames over `buf`. */
export class MutableFrameBatch implements FrameBatch {
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  count = 0;
  constructor(public buf: Buffer, capacity: number = BATCH_SIZE) {
    // One store for both: a typed array over 64 bytes gets an off-heap store of its own (~600 B of RSS).
    const store = new ArrayBuffer(8 * capacity);
    this.offsets = new Uint32Array(store, 0, capacity);
    this.lengths = new Uint32Array(store, 4 * capacity, capacity);
  }
  get capacity(): number {
    return this.offsets.length;
  }
  /** Append a frame that lives in `this.buf`; returns false when the batch is full. */
  push(offset: number, length: number): boolean {
    if (this.count >= this.offsets.length) return false;
    this.offsets[this.count] = offset;
    this.lengths[this.count] = length;
    this.count++;
    return true;
  }
  /** Empty the batch (the slab stays). */
  clear(): void {
    this.count = 0;
  }
}

/** Copy the frames of a batch out into standalone Buffers (tests and slow paths only). */
export function batchToBuffers(batch: FrameBatch): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < batch.count; i++) {
    const off = batch.offsets[i]!;
    out.push(Buffer.from(batch.buf.subarray(off, off + batch.lengths[i]!)));
  }
  return out;
}

/** Pack standalone frames into one batch (tests and slow paths only). */
export function buffersToBatch(frames: readonly Buffer[]): FrameBatch {
  const total = frames.reduce((n, f) => n + f.length, 0);
  const batch = new MutableFrameBatch(Buffer.allocUnsafe(Math.max(total, 1)), Math.max(frames.length, 1));
  let off = 0;
  for (const f of frames) {
    f.copy(batch.buf, off);
    batch.push(off, f.length);
    off += f.length;
  }
  return batch;
}
