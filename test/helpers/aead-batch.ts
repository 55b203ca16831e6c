// Deterministic transport batches for checking the addon's AEAD across threads:
// the same key, seed and count give the same sealed datagrams in any thread.
import { TransportCipher, type AeadAlgorithm } from '../../lib/crypto/aead.js';
import { sealedLength, writeTransportHeader } from '../../lib/protocol/wire.js';

/** What a relaying switch mostly moves: full-size frames and bare TCP ACKs. */
export const RELAY_FRAME_SIZES = [1400, 60] as const;

/** A 32-byte key every thread can derive from the same seed. */
export function testKey(seed: number): Uint8Array {
  return Uint8Array.from({ length: 32 }, (_, i) => (seed * 73 + i * 151 + 7) & 0xff);
}

/** `count` frames packed one after the other, alternating RELAY_FRAME_SIZES. */
export function frameBatch(seed: number, count: number): { src: Buffer; offsets: Uint32Array; lengths: Uint32Array } {
  const lengths = Uint32Array.from({ length: count }, (_, i) => RELAY_FRAME_SIZES[i % RELAY_FRAME_SIZES.length]!);
  const offsets = new Uint32Array(count);
  for (let i = 1; i < count; i++) offsets[i] = offsets[i - 1]! + lengths[i - 1]!;
  const total = count === 0 ? 0 : offsets[count - 1]! + lengths[count - 1]!;
  const src = Buffer.alloc(total);
  for (let i = 0; i < total; i++) src[i] = (seed * 31 + i * 17 + (i >>> 8)) & 0xff;
  return { src, offsets, lengths };
}

/** Where each sealed datagram of a frameBatch lands, and the slab that holds them. */
export function sealedLayout(lengths: Uint32Array): { dst: Buffer; dstOffsets: Uint32Array; dstLengths: Uint32Array } {
  const dstLengths = lengths.map((l) => sealedLength(l));
  const dstOffsets = new Uint32Array(lengths.length);
  for (let i = 1; i < lengths.length; i++) dstOffsets[i] = dstOffsets[i - 1]! + dstLengths[i - 1]!;
  const total = lengths.length === 0 ? 0 : dstOffsets[lengths.length - 1]! + dstLengths[lengths.length - 1]!;
  return { dst: Buffer.alloc(total), dstOffsets, dstLengths };
}

/** frameBatch(seed, count) sealed under testKey(seed), counters from `seed * 1000`: the datagrams, back to back. */
export function sealedBatch(seed: number, count: number, algorithm: AeadAlgorithm = 'chacha20-poly1305'): Buffer {
  const { src, offsets, lengths } = frameBatch(seed, count);
  const { dst, dstOffsets } = sealedLayout(lengths);
  for (let i = 0; i < count; i++) writeTransportHeader(dst, dstOffsets[i]!, 0x1000 + seed, seed * 1000 + i);
  const key = new TransportCipher(testKey(seed), algorithm);
  try {
    key.sealBatch(src, offsets, lengths, count, dst, dstOffsets);
  } finally {
    key.close();
  }
  return dst;
}
