// The AEAD in the addon over whole batches vs a node:crypto cipher object per
// packet: microseconds per 1400-byte packet, same process, same run.
import { createCipheriv, randomBytes } from 'node:crypto';
import { TransportCipher } from '../lib/crypto/aead.js';
import { native } from '../lib/io/native.js';
import { sealedLength, writeTransportHeader } from '../lib/protocol/wire.js';
import { markdownTable, fmt } from './report.js';

const SIZE = 1400;
const BATCH = 64;
const TAG = 16;

export interface AeadResult {
  rounds: number;
  rows: { algorithm: string; sealUs: number; openUs: number; perPacketNodeCryptoUs: number }[];
  /** What one crossing into the addon costs, with cipher none and 60-byte frames (ns); and TransportCipher's 'none', which copies in JS (lib/crypto/clear.ts). */
  calls: { emptyCallNs: number; oneFrameNs: number; perFrameIn64Ns: number; jsOneFrameNs: number; jsPerFrameIn64Ns: number };
}

/** A switch with many members seals about one frame per member and window: the call's own cost matters there. */
function callCost(rounds: number): AeadResult['calls'] {
  // The addon's AeadKey itself: TransportCipher does 'none' in JavaScript.
  const key = randomBytes(32);
  const k = new (native().AeadKey)('none', key);
  const js = new TransportCipher(key, 'none');
  const FRAME = 60;
  const src = Buffer.alloc(FRAME * BATCH);
  const dst = Buffer.alloc(sealedLength(FRAME) * BATCH);
  const offsets = new Uint32Array(BATCH).map((_, i) => i * FRAME);
  const lengths = new Uint32Array(BATCH).fill(FRAME);
  const dstOffsets = new Uint32Array(BATCH).map((_, i) => i * sealedLength(FRAME));
  const perCallNs = (c: { sealBatch: TransportCipher['sealBatch'] }, count: number, calls: number): number => {
    for (let r = 0; r < 1000; r++) c.sealBatch(src, offsets, lengths, count, dst, dstOffsets);
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < calls; r++) c.sealBatch(src, offsets, lengths, count, dst, dstOffsets);
    return Number(process.hrtime.bigint() - t0) / calls;
  };
  const calls = rounds * BATCH;
  const res = {
    emptyCallNs: perCallNs(k, 0, calls),
    oneFrameNs: perCallNs(k, 1, calls),
    perFrameIn64Ns: perCallNs(k, BATCH, rounds) / BATCH,
    jsOneFrameNs: perCallNs(js, 1, calls),
    jsPerFrameIn64Ns: perCallNs(js, BATCH, rounds) / BATCH,
  };
  k.close();
  js.close();
  return res;
}

function nonceOf(counter: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32LE(counter >>> 0, 4);
  n.writeUInt32LE(Math.floor(counter / 2 ** 32), 8);
  return n;
}

export function runAead(rounds: number): AeadResult {
  const rows: AeadResult['rows'] = [];
  for (const alg of ['chacha20-poly1305', 'aes-256-gcm'] as const) {
    const key = randomBytes(32);
    const k = new TransportCipher(key, alg);
    const src = randomBytes(SIZE * BATCH);
    const offsets = new Uint32Array(BATCH).map((_, i) => i * SIZE);
    const lengths = new Uint32Array(BATCH).fill(SIZE);
    const dst = Buffer.alloc(sealedLength(SIZE) * BATCH);
    const dstOffsets = new Uint32Array(BATCH).map((_, i) => i * sealedLength(SIZE));
    const datagramLengths = new Uint32Array(BATCH).fill(sealedLength(SIZE));
    const plain = Buffer.alloc(SIZE * BATCH);
    const results = new Uint8Array(BATCH);
    let counter = 0;
    const timeIt = (fn: () => void): number => {
      for (let r = 0; r < Math.min(200, rounds); r++) fn(); // warm up
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < rounds; r++) fn();
      return Number(process.hrtime.bigint() - t0) / 1000 / (rounds * BATCH);
    };
    const sealUs = timeIt(() => {
      for (let i = 0; i < BATCH; i++) writeTransportHeader(dst, dstOffsets[i]!, 1, counter++);
      k.sealBatch(src, offsets, lengths, BATCH, dst, dstOffsets);
    });
    const openUs = timeIt(() => {
      if (k.openBatch(dst, dstOffsets, datagramLengths, BATCH, plain, offsets, results) !== BATCH) throw new Error('open failed');
    });
    const header = dst.subarray(0, 16);
    const perPacketNodeCryptoUs = timeIt(() => {
      for (let i = 0; i < BATCH; i++) {
        const c = createCipheriv(alg as 'chacha20-poly1305', key, nonceOf(counter++), { authTagLength: TAG });
        c.setAAD(header, { plaintextLength: SIZE });
        c.update(src.subarray(i * SIZE, (i + 1) * SIZE));
        c.final();
        c.getAuthTag();
      }
    });
    k.close();
    rows.push({ algorithm: alg, sealUs, openUs, perPacketNodeCryptoUs });
  }
  return { rounds, rows, calls: callCost(rounds) };
}

export function aeadTable(r: AeadResult): string {
  return markdownTable(
    ['AEAD, 1400-byte packets', 'batch seal (µs/pkt)', 'batch open (µs/pkt)', 'node:crypto cipher per packet (µs/pkt)', 'per-packet / batch seal'],
    r.rows.map((x) => [x.algorithm, fmt(x.sealUs), fmt(x.openUs), fmt(x.perPacketNodeCryptoUs), fmt(x.perPacketNodeCryptoUs / x.sealUs, 1)]),
  ) +
    `\nseal call, cipher none, 60-byte frames: ${fmt(r.calls.emptyCallNs, 0)} ns for a call with no frame, ${fmt(r.calls.oneFrameNs, 0)} ns with one, ` +
    `${fmt(r.calls.perFrameIn64Ns, 0)} ns per frame with 64 (the call's own cost is what a many-member switch pays per frame); ` +
    `in JavaScript, as TransportCipher does 'none': ${fmt(r.calls.jsOneFrameNs, 0)} ns for one, ${fmt(r.calls.jsPerFrameIn64Ns, 0)} ns per frame with 64`;
}
