// The 'none' transport cipher (--insecure) over a batch, in JavaScript: a copy
// and a zero tag, with the bounds and overlap checks of csrc/aead.cc. A call
// into the addon costs ~1 µs before it copies a byte, and a switch with 1,000
// ports seals about one frame per destination per batch: for a copy, the call
// was the cost (10% of the vswitch at 1,000 ports). The ciphers stay native.
import { EtherlinkError } from '../core/errors.js';
import { AEAD_TAG_SIZE } from './constants.js';

/** The transport header before each frame: the associated data (kHeaderSize in csrc/aead.cc). */
const HEADER_SIZE = 16;
/** As kMaxMessage in csrc/aead.cc. */
const MAX_MESSAGE = 1 << 17;
/** Up to this many bytes a loop beats Buffer#copy's argument handling. */
const LOOP_COPY_MAX = 128;

function checkCount(count: number, arrays: readonly [string, { length: number }][]): void {
  if (!(count >= 0) || count !== count >>> 0) throw new EtherlinkError('ERR_OUT_OF_RANGE', `count must be an integer >= 0, got ${count}`);
  for (const [name, a] of arrays) {
    if (count > a.length) throw new EtherlinkError('ERR_OUT_OF_RANGE', `${name} holds ${a.length} entries, fewer than count ${count}`);
  }
}

/** Whether [a, a + alen) of `x` and [b, b + blen) of `y` share memory (both non-empty). */
function overlaps(x: Uint8Array, a: number, alen: number, y: Uint8Array, b: number, blen: number): boolean {
  if (x.buffer !== y.buffer || alen === 0 || blen === 0) return false;
  const pa = x.byteOffset + a;
  const pb = y.byteOffset + b;
  return pa < pb + blen && pb < pa + alen;
}

function move(src: Uint8Array, from: number, len: number, dst: Uint8Array, to: number): void {
  if (src === dst && from === to) return;
  if (len <= LOOP_COPY_MAX && src !== dst) {
    for (let k = 0; k < len; k++) dst[to + k] = src[from + k]!;
  } else {
    // TypedArray#set handles overlap as memmove does.
    dst.set(src.subarray(from, from + len), to);
  }
}

/** sealBatch for 'none': frame i copied after the header the caller wrote at dst[dstOffsets[i]], then 16 zero bytes. */
export function sealClear(src: Uint8Array, srcOffsets: Uint32Array, srcLengths: Uint32Array, count: number, dst: Uint8Array, dstOffsets: Uint32Array): number {
  checkCount(count, [['srcOffsets', srcOffsets], ['srcLengths', srcLengths], ['dstOffsets', dstOffsets]]);
  // Validate the whole batch first, so a bad entry never leaves a half-sealed batch.
  for (let i = 0; i < count; i++) {
    const so = srcOffsets[i]!, sl = srcLengths[i]!, d = dstOffsets[i]!;
    if (sl > MAX_MESSAGE || so + sl > src.length || d + HEADER_SIZE + sl + AEAD_TAG_SIZE > dst.length) {
      throw new EtherlinkError('ERR_OUT_OF_RANGE', `sealBatch: frame ${i} lies outside its buffer`);
    }
    const out = d + HEADER_SIZE;
    const inPlace = src.buffer === dst.buffer && src.byteOffset + so === dst.byteOffset + out;
    if (!inPlace && overlaps(src, so, sl, dst, out, sl + AEAD_TAG_SIZE)) {
      throw new EtherlinkError('ERR_OUT_OF_RANGE', `sealBatch: frame ${i} partly overlaps its output`);
    }
  }
  for (let i = 0; i < count; i++) {
    const sl = srcLengths[i]!;
    const out = dstOffsets[i]! + HEADER_SIZE;
    move(src, srcOffsets[i]!, sl, dst, out);
    for (let k = 0; k < AEAD_TAG_SIZE; k++) dst[out + sl + k] = 0;
  }
  return count;
}

/** openBatch for 'none': every datagram of 32 bytes or more "authenticates"; its payload is copied to dst[dstOffsets[i]]. */
export function openClear(
  src: Uint8Array,
  srcOffsets: Uint32Array,
  srcLengths: Uint32Array,
  count: number,
  dst: Uint8Array,
  dstOffsets: Uint32Array,
  results: Uint8Array,
): number {
  checkCount(count, [['srcOffsets', srcOffsets], ['srcLengths', srcLengths], ['dstOffsets', dstOffsets], ['results', results]]);
  for (let i = 0; i < count; i++) {
    const so = srcOffsets[i]!, sl = srcLengths[i]!, d = dstOffsets[i]!;
    if (sl > MAX_MESSAGE || so + sl > src.length) throw new EtherlinkError('ERR_OUT_OF_RANGE', `openBatch: datagram ${i} lies outside src`);
    if (sl < HEADER_SIZE + AEAD_TAG_SIZE) continue;
    const pl = sl - HEADER_SIZE - AEAD_TAG_SIZE;
    if (d + pl > dst.length) throw new EtherlinkError('ERR_OUT_OF_RANGE', `openBatch: plaintext ${i} does not fit in dst`);
    const inPlace = src.buffer === dst.buffer && src.byteOffset + so + HEADER_SIZE === dst.byteOffset + d;
    if (!inPlace && overlaps(src, so, sl, dst, d, pl)) throw new EtherlinkError('ERR_OUT_OF_RANGE', `openBatch: datagram ${i} partly overlaps its output`);
  }
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const sl = srcLengths[i]!;
    if (sl < HEADER_SIZE + AEAD_TAG_SIZE) {
      results[i] = 0;
      continue;
    }
    move(src, srcOffsets[i]! + HEADER_SIZE, sl - HEADER_SIZE - AEAD_TAG_SIZE, dst, dstOffsets[i]!);
    results[i] = 1;
    ok++;
  }
  return ok;
}
