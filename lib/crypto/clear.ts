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

function checkCount(count: number, name: string, length: number): void {
  if (!(count >= 0) || count !== count >>> 0) throw new EtherlinkError('ERR_OUT_OF_RANGE', `count must be an integer >= 0, got ${count}`);
  if (count > length) throw new EtherlinkError('ERR_OUT_OF_RANGE', `${name} holds ${length} entries, fewer than count ${count}`);
}

/** Whether [a, a + alen) and [b, b + blen) overlap (both non-empty), in one buffer's coordinates. */
function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return alen > 0 && blen > 0 && a < b + blen && b < a + alen;
}

/** Copy len bytes; `same`: src and dst are one view (then TypedArray#set, which moves as memmove does). */
function move(src: Uint8Array, from: number, len: number, dst: Uint8Array, to: number, same: boolean): void {
  if (same && from === to) return;
  if (len <= LOOP_COPY_MAX && !same) {
    for (let k = 0; k < len; k++) dst[to + k] = src[from + k]!;
  } else {
    dst.set(src.subarray(from, from + len), to);
  }
}

/** sealBatch for 'none': frame i copied after the header the caller wrote at dst[dstOffsets[i]], then 16 zero bytes. */
export function sealClear(src: Uint8Array, srcOffsets: Uint32Array, srcLengths: Uint32Array, count: number, dst: Uint8Array, dstOffsets: Uint32Array): number {
  checkCount(count, 'srcOffsets', srcOffsets.length);
  checkCount(count, 'srcLengths', srcLengths.length);
  checkCount(count, 'dstOffsets', dstOffsets.length);
  // Memory shared by src and dst (one slab, or views of one): where src sits in dst's coordinates.
  const shared = src.buffer === dst.buffer;
  const shift = shared ? src.byteOffset - dst.byteOffset : 0;
  // Validate the whole batch first, so a bad entry never leaves a half-sealed batch.
  for (let i = 0; i < count; i++) {
    const so = srcOffsets[i]!, sl = srcLengths[i]!, d = dstOffsets[i]!;
    if (sl > MAX_MESSAGE || so + sl > src.length || d + HEADER_SIZE + sl + AEAD_TAG_SIZE > dst.length) {
      throw new EtherlinkError('ERR_OUT_OF_RANGE', `sealBatch: frame ${i} lies outside its buffer`);
    }
    const out = d + HEADER_SIZE;
    if (shared && so + shift !== out && overlaps(so + shift, sl, out, sl + AEAD_TAG_SIZE)) {
      throw new EtherlinkError('ERR_OUT_OF_RANGE', `sealBatch: frame ${i} partly overlaps its output`);
    }
  }
  const same = shared && shift === 0;
  for (let i = 0; i < count; i++) {
    const sl = srcLengths[i]!;
    const out = dstOffsets[i]! + HEADER_SIZE;
    move(src, srcOffsets[i]!, sl, dst, out, same);
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
  checkCount(count, 'srcOffsets', srcOffsets.length);
  checkCount(count, 'srcLengths', srcLengths.length);
  checkCount(count, 'dstOffsets', dstOffsets.length);
  checkCount(count, 'results', results.length);
  const shared = src.buffer === dst.buffer;
  const shift = shared ? src.byteOffset - dst.byteOffset : 0;
  for (let i = 0; i < count; i++) {
    const so = srcOffsets[i]!, sl = srcLengths[i]!, d = dstOffsets[i]!;
    if (sl > MAX_MESSAGE || so + sl > src.length) throw new EtherlinkError('ERR_OUT_OF_RANGE', `openBatch: datagram ${i} lies outside src`);
    if (sl < HEADER_SIZE + AEAD_TAG_SIZE) continue;
    const pl = sl - HEADER_SIZE - AEAD_TAG_SIZE;
    if (d + pl > dst.length) throw new EtherlinkError('ERR_OUT_OF_RANGE', `openBatch: plaintext ${i} does not fit in dst`);
    if (shared && so + HEADER_SIZE + shift !== d && overlaps(so + shift, sl, d, pl)) throw new EtherlinkError('ERR_OUT_OF_RANGE', `openBatch: datagram ${i} partly overlaps its output`);
  }
  const same = shared && shift === 0;
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const sl = srcLengths[i]!;
    if (sl < HEADER_SIZE + AEAD_TAG_SIZE) {
      results[i] = 0;
      continue;
    }
    move(src, srcOffsets[i]! + HEADER_SIZE, sl - HEADER_SIZE - AEAD_TAG_SIZE, dst, dstOffsets[i]!, same);
    results[i] = 1;
    ok++;
  }
  return ok;
}
