// Unit tests of csrc/aead.cc through lib/crypto/aead.ts: RFC 8439 vector, batch seal/open
// cross-checked with node:crypto, failures per frame, bounds (speed is measured by npm run bench).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes, randomInt } from 'node:crypto';
import { TransportCipher, type AeadAlgorithm } from '../../lib/crypto/aead.js';
import { openedLength, sealedLength, writeTransportHeader } from '../../lib/protocol/wire.js';
import { counterNonce } from '../../lib/crypto/primitives.js';
import { TRANSPORT_HEADER_SIZE } from '../../lib/protocol/constants.js';
import { native } from '../../lib/io/native.js';

const ALGORITHMS: AeadAlgorithm[] = ['chacha20-poly1305', 'aes-256-gcm'];
const TAG = 16;

function nodeSeal(alg: AeadAlgorithm, key: Buffer, counter: number, ad: Buffer, pt: Buffer): Buffer {
  const c = createCipheriv(alg as 'chacha20-poly1305', key, counterNonce(counter), { authTagLength: TAG });
  c.setAAD(ad, { plaintextLength: pt.length });
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

test('RFC 8439 section 2.8.2 AEAD test vector (sealOne/openOne)', () => {
  const key = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x80 + i));
  const nonce = Buffer.from('070000004041424344454647', 'hex');
  const aad = Buffer.from('50515253c0c1c2c3c4c5c6c7', 'hex');
  const pt = Buffer.from(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  );
  const expected =
    'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b' +
    '1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc' +
    '3ff4def08e4b7a9de576d26586cec64b6116' +
    '1ae10b594f09e26a7e902ecbd0600691';
  const k = new TransportCipher(key);
  const sealed = k.sealOne(nonce, aad, pt);
  assert.equal(sealed.toString('hex'), expected);
  assert.deepEqual(k.openOne(nonce, aad, sealed), pt);
  sealed[sealed.length - 1]! ^= 1;
  assert.equal(k.openOne(nonce, aad, sealed), null);
  assert.equal(k.openOne(nonce, aad, Buffer.alloc(5)), null, 'shorter than a tag');
  k.close();
});

/** A batch of random frames in one slab, headers written into an output slab. */
function makeBatch(count: number, receiverIndex: number, firstCounter: number) {
  const lengths = new Uint32Array(count);
  const offsets = new Uint32Array(count);
  const dstOffsets = new Uint32Array(count);
  const frames: Buffer[] = [];
  let off = 3; // deliberately unaligned
  let dstOff = 5;
  for (let i = 0; i < count; i++) {
    const len = i === 0 ? 0 : randomInt(1, 1500); // frame 0 is empty: a keepalive
    frames.push(randomBytes(len));
    lengths[i] = len;
    offsets[i] = off;
    dstOffsets[i] = dstOff;
    off += len + 7;
    dstOff += sealedLength(len) + 11;
  }
  const src = Buffer.alloc(off);
  frames.forEach((f, i) => f.copy(src, offsets[i]!));
  const dst = Buffer.alloc(dstOff);
  for (let i = 0; i < count; i++) writeTransportHeader(dst, dstOffsets[i]!, receiverIndex, firstCounter + i);
  return { src, offsets, lengths, dst, dstOffsets, frames };
}

for (const alg of ALGORITHMS) {
  test(`${alg}: sealBatch equals node:crypto per frame (header as AD, counter as nonce), openBatch restores`, () => {
    const key = randomBytes(32);
    const k = new TransportCipher(key, alg);
    const counter0 = 2 ** 40 + 12345; // exercises both halves of the counter
    const b = makeBatch(40, 0xdeadbeef, counter0);
    assert.equal(k.sealBatch(b.src, b.offsets, b.lengths, 40, b.dst, b.dstOffsets), 40);
    const datagramLengths = new Uint32Array(40);
    for (let i = 0; i < 40; i++) {
      const d = b.dstOffsets[i]!;
      const len = b.lengths[i]!;
      datagramLengths[i] = sealedLength(len);
      const header = b.dst.subarray(d, d + TRANSPORT_HEADER_SIZE);
      assert.equal(header[1], 0x24);
      const expected = nodeSeal(alg, key, counter0 + i, Buffer.from(header), b.frames[i]!);
      assert.deepEqual(b.dst.subarray(d + TRANSPORT_HEADER_SIZE, d + sealedLength(len)), expected, `frame ${i}`);
    }
    const out = Buffer.alloc(65536);
    const outOffsets = new Uint32Array(40);
    let o = 1;
    for (let i = 0; i < 40; i++) {
      outOffsets[i] = o;
      o += openedLength(datagramLengths[i]!) + 3;
    }
    const results = new Uint8Array(40);
    const rx = new TransportCipher(key, alg);
    assert.equal(rx.openBatch(b.dst, b.dstOffsets, datagramLengths, 40, out, outOffsets, results), 40);
    for (let i = 0; i < 40; i++) {
      assert.equal(results[i], 1);
      assert.deepEqual(out.subarray(outOffsets[i]!, outOffsets[i]! + b.lengths[i]!), b.frames[i]);
    }
    // Decrypt with node:crypto too, so the two directions are each checked independently.
    const d = b.dstOffsets[7]!;
    const len = b.lengths[7]!;
    const dec = createDecipheriv(alg as 'chacha20-poly1305', key, counterNonce(counter0 + 7), { authTagLength: TAG });
    dec.setAAD(b.dst.subarray(d, d + TRANSPORT_HEADER_SIZE), { plaintextLength: len });
    dec.setAuthTag(b.dst.subarray(d + TRANSPORT_HEADER_SIZE + len, d + sealedLength(len)));
    assert.deepEqual(Buffer.concat([dec.update(b.dst.subarray(d + TRANSPORT_HEADER_SIZE, d + TRANSPORT_HEADER_SIZE + len)), dec.final()]), b.frames[7]);
    k.close();
    rx.close();
  });
}

test('openBatch: a bad frame fails alone, is zeroed, and never throws; header bytes are authenticated', () => {
  const key = randomBytes(32);
  const k = new TransportCipher(key);
  const b = makeBatch(8, 7, 0);
  k.sealBatch(b.src, b.offsets, b.lengths, 8, b.dst, b.dstOffsets);
  const lengths = Uint32Array.from(b.lengths, (l) => sealedLength(l));
  const at = (i: number): number => b.dstOffsets[i]!;
  b.dst[at(2) + TRANSPORT_HEADER_SIZE + 1]! ^= 0x01; // ciphertext
  b.dst[at(3) + 2]! ^= 0x01; // reserved byte of the header (AD)
  b.dst[at(4) + 11]! ^= 0x01; // counter -> wrong nonce
  b.dst[at(5) + sealedLength(b.lengths[5]!) - 1]! ^= 0x80; // tag
  lengths[6] = 31; // shorter than header + tag
  const out = Buffer.alloc(20_000, 0xaa);
  const outOffsets = Uint32Array.from({ length: 8 }, (_, i) => i * 2000);
  const results = new Uint8Array(8);
  assert.equal(k.openBatch(b.dst, b.dstOffsets, lengths, 8, out, outOffsets, results), 3);
  assert.deepEqual([...results], [1, 1, 0, 0, 0, 0, 0, 1]);
  assert.ok(out.subarray(outOffsets[2]!, outOffsets[2]! + b.lengths[2]!).every((x) => x === 0), 'failed plaintext zeroed');
  assert.deepEqual(out.subarray(outOffsets[7]!, outOffsets[7]! + b.lengths[7]!), b.frames[7]);
  // A different key fails everything.
  const other = new TransportCipher(randomBytes(32));
  assert.equal(other.openBatch(b.dst, b.dstOffsets, lengths, 2, out, outOffsets, results), 0);
  assert.deepEqual([...results.subarray(0, 2)], [0, 0]);
});

test("'none' (--insecure): the same layout, the frame in clear, a zero tag, and no integrity", () => {
  const k = new TransportCipher(randomBytes(32), 'none');
  const b = makeBatch(6, 9, 100);
  assert.equal(k.sealBatch(b.src, b.offsets, b.lengths, 6, b.dst, b.dstOffsets), 6);
  for (let i = 0; i < 6; i++) {
    const d = b.dstOffsets[i]!;
    const len = b.lengths[i]!;
    assert.equal(b.dst.readUInt32BE(d + 4), 9, 'the header the caller wrote stays');
    assert.deepEqual(b.dst.subarray(d + TRANSPORT_HEADER_SIZE, d + TRANSPORT_HEADER_SIZE + len), b.frames[i], 'the frame follows in clear');
    assert.ok(b.dst.subarray(d + TRANSPORT_HEADER_SIZE + len, d + sealedLength(len)).every((x) => x === 0), 'the tag slot is zero');
  }
  b.dst[b.dstOffsets[3]! + TRANSPORT_HEADER_SIZE]! ^= 0x01;
  const lengths = Uint32Array.from(b.lengths, (l) => sealedLength(l));
  const out = Buffer.alloc(20_000);
  const outOffsets = Uint32Array.from({ length: 6 }, (_, i) => i * 2000);
  const results = new Uint8Array(6);
  assert.equal(k.openBatch(b.dst, b.dstOffsets, lengths, 6, out, outOffsets, results), 6, 'nothing is checked: every datagram opens');
  assert.deepEqual(out.subarray(outOffsets[5]!, outOffsets[5]! + b.lengths[5]!), b.frames[5]);
  assert.notDeepEqual(out.subarray(outOffsets[3]!, outOffsets[3]! + b.lengths[3]!), b.frames[3], 'a flipped bit arrives flipped');
  k.close();
  assert.throws(() => k.sealBatch(b.src, b.offsets, b.lengths, 1, b.dst, b.dstOffsets), { code: 'ERR_AEAD_CLOSED' });
});

test('in place: seal over the frame itself (16 bytes of headroom) and open back over it', () => {
  const key = randomBytes(32);
  const k = new TransportCipher(key);
  const frame = randomBytes(1400);
  const slab = Buffer.alloc(16 + 1400 + 16);
  frame.copy(slab, 16);
  writeTransportHeader(slab, 0, 1, 99);
  k.sealBatch(slab, Uint32Array.of(16), Uint32Array.of(1400), 1, slab, Uint32Array.of(0));
  assert.deepEqual(slab.subarray(16), nodeSeal('chacha20-poly1305', key, 99, slab.subarray(0, 16), frame));
  const results = new Uint8Array(1);
  assert.equal(k.openBatch(slab, Uint32Array.of(0), Uint32Array.of(slab.length), 1, slab, Uint32Array.of(16), results), 1);
  assert.deepEqual(slab.subarray(16, 16 + 1400), frame);
});

test('bad bounds, partial overlap, bad keys and use after close throw coded errors', () => {
  const k = new TransportCipher(randomBytes(32));
  const buf = Buffer.alloc(100);
  assert.throws(() => k.sealBatch(buf, Uint32Array.of(0), Uint32Array.of(90), 1, Buffer.alloc(100), Uint32Array.of(0)), {
    code: 'ERR_OUT_OF_RANGE',
  });
  assert.throws(() => k.sealBatch(buf, Uint32Array.of(0), Uint32Array.of(10), 2, buf, Uint32Array.of(50)), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => k.sealBatch(buf, Uint32Array.of(8), Uint32Array.of(10), 1, buf, Uint32Array.of(0)), {
    code: 'ERR_OUT_OF_RANGE',
    message: /overlaps/,
  });
  assert.throws(() => k.openBatch(buf, Uint32Array.of(0), Uint32Array.of(101), 1, buf, Uint32Array.of(0), new Uint8Array(1)), {
    code: 'ERR_OUT_OF_RANGE',
  });
  assert.throws(() => new TransportCipher(Buffer.alloc(31)), { code: 'ERR_INVALID_KEY' });
  k.close();
  k.close();
  assert.throws(() => k.sealOne(Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(1)), { code: 'ERR_AEAD_CLOSED' });
});


test("'none' in JavaScript (lib/crypto/clear.ts) does what the addon's 'none' does: bytes, results, bounds, overlap", () => {
  const key = randomBytes(32);
  const js = new TransportCipher(key, 'none');
  const addon = new (native().AeadKey)('none', key);
  // Short and long frames (the loop and TypedArray#set), into two copies of one destination.
  const sizes = [0, 14, 60, 128, 129, 1400, 60, 9000];
  const b = { offsets: new Uint32Array(8), lengths: Uint32Array.from(sizes), dstOffsets: new Uint32Array(8), src: randomBytes(20_000), dst: Buffer.alloc(20_000) };
  for (let i = 0, o = 1, d = 3; i < 8; o += sizes[i]! + 5, d += sealedLength(sizes[i]!) + 7, i++) {
    b.offsets[i] = o;
    b.dstOffsets[i] = d;
    writeTransportHeader(b.dst, d, 3, 300 + i);
  }
  const dstJs = Buffer.from(b.dst);
  const dstAddon = Buffer.from(b.dst);
  assert.equal(js.sealBatch(b.src, b.offsets, b.lengths, 8, dstJs, b.dstOffsets), 8);
  assert.equal(addon.sealBatch(b.src, b.offsets, b.lengths, 8, dstAddon, b.dstOffsets), 8);
  assert.deepEqual(dstJs, dstAddon);
  const lengths = Uint32Array.from(b.lengths, (l) => sealedLength(l));
  lengths[6] = 20; // shorter than header and tag: fails in both
  const out = [Buffer.alloc(100_000), Buffer.alloc(100_000)];
  const results = [new Uint8Array(8), new Uint8Array(8)];
  const outOffsets = Uint32Array.from({ length: 8 }, (_, i) => i * 10_000);
  assert.equal(js.openBatch(dstJs, b.dstOffsets, lengths, 8, out[0]!, outOffsets, results[0]!), 7);
  assert.equal(addon.openBatch(dstAddon, b.dstOffsets, lengths, 8, out[1]!, outOffsets, results[1]!), 7);
  assert.deepEqual(out[0], out[1]);
  assert.deepEqual(results[0], results[1]);
  // In place, as the switch opens: the plaintext stays where it is.
  const slab = Buffer.alloc(16 + 60 + 16);
  randomBytes(60).copy(slab, 16);
  const frame = Buffer.from(slab.subarray(16, 76));
  js.sealBatch(slab, Uint32Array.of(16), Uint32Array.of(60), 1, slab, Uint32Array.of(0));
  assert.equal(js.openBatch(slab, Uint32Array.of(0), Uint32Array.of(slab.length), 1, slab, Uint32Array.of(16), new Uint8Array(1)), 1);
  assert.deepEqual(slab.subarray(16, 76), frame);
  // The same refusals, with the same codes and words.
  const buf = Buffer.alloc(100);
  for (const k of [js, addon]) {
    assert.throws(() => k.sealBatch(buf, Uint32Array.of(0), Uint32Array.of(90), 1, Buffer.alloc(100), Uint32Array.of(0)), { code: 'ERR_OUT_OF_RANGE', message: /outside/ });
    assert.throws(() => k.sealBatch(buf, Uint32Array.of(0), Uint32Array.of(10), 2, buf, Uint32Array.of(50)), { code: 'ERR_OUT_OF_RANGE', message: /fewer than count 2/ });
    assert.throws(() => k.sealBatch(buf, Uint32Array.of(8), Uint32Array.of(10), 1, buf, Uint32Array.of(0)), { code: 'ERR_OUT_OF_RANGE', message: /overlaps/ });
    // Another view of the same memory overlaps too.
    assert.throws(() => k.sealBatch(buf.subarray(8), Uint32Array.of(0), Uint32Array.of(10), 1, buf, Uint32Array.of(0)), { code: 'ERR_OUT_OF_RANGE', message: /overlaps/ });
    assert.throws(() => k.openBatch(buf, Uint32Array.of(0), Uint32Array.of(101), 1, buf, Uint32Array.of(0), new Uint8Array(1)), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => k.openBatch(buf, Uint32Array.of(0), Uint32Array.of(100), 1, Buffer.alloc(10), Uint32Array.of(0), new Uint8Array(1)), { code: 'ERR_OUT_OF_RANGE', message: /does not fit/ });
    k.close();
    assert.throws(() => k.sealBatch(buf, Uint32Array.of(0), Uint32Array.of(1), 1, Buffer.alloc(100), Uint32Array.of(0)), { code: 'ERR_AEAD_CLOSED' });
    assert.throws(() => k.openBatch(buf, Uint32Array.of(0), Uint32Array.of(40), 1, Buffer.alloc(100), Uint32Array.of(0), new Uint8Array(1)), { code: 'ERR_AEAD_CLOSED' });
  }
});
