// Unit tests of the 20-byte underlay address slot (lib/udp-address.ts): pure, no sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressEquals,
  addressKey,
  addressPort,
  decodeAddress,
  encodeAddress,
  formatAddress,
  isMappedIPv4,
} from '../../lib/io/address.js';
import { ADDR_SLOT } from '../../lib/io/native.js';

test('IPv4 encodes as ::ffff:a.b.c.d with a big-endian port and zero reserved bytes', () => {
  const b = encodeAddress('192.0.2.33', 0x1234);
  assert.equal(b.length, ADDR_SLOT);
  assert.equal(b.toString('hex'), '00000000000000000000ffffc0000221' + '1234' + '0000');
  assert.ok(isMappedIPv4(b));
  assert.equal(addressPort(b), 0x1234);
  assert.deepEqual(decodeAddress(b), { address: '192.0.2.33', port: 0x1234, family: 4 });
  assert.equal(formatAddress(b), '192.0.2.33:4660');
});

test('IPv6 literals round-trip to RFC 5952 text', () => {
  const cases: [string, string][] = [
    ['::1', '::1'],
    ['::', '::'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:1:0:0:0:0', '2001:db8:0:1::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:db8:1:2:3:4:0:5', '2001:db8:1:2:3:4:0:5'], // a single zero word is not compressed
    ['fe80::a:b:c:d', 'fe80::a:b:c:d'],
    ['[2001:db8::7]', '2001:db8::7'],
    ['::1.2.3.4', '::102:304'],
  ];
  for (const [input, text] of cases) {
    const b = encodeAddress(input, 443);
    assert.deepEqual(decodeAddress(b), { address: text, port: 443, family: 6 }, input);
  }
  assert.equal(formatAddress(encodeAddress('::1', 5)), '[::1]:5');
  assert.equal(encodeAddress('1:2:3:4:5:6:7:8', 0).subarray(0, 16).toString('hex'), '00010002000300040005000600070008');
});

test('an IPv6-mapped IPv4 literal is the same slot as the IPv4 literal', () => {
  const a = encodeAddress('::ffff:10.1.2.3', 9);
  const b = encodeAddress('10.1.2.3', 9);
  assert.ok(a.equals(b));
  assert.equal(decodeAddress(a).family, 4);
});

test('encode writes in place at an offset', () => {
  const slab = Buffer.alloc(ADDR_SLOT * 3, 0xaa);
  const r = encodeAddress('127.0.0.1', 1, slab, ADDR_SLOT);
  assert.equal(r, slab);
  assert.equal(slab[ADDR_SLOT - 1], 0xaa);
  assert.equal(slab[2 * ADDR_SLOT], 0xaa);
  assert.deepEqual(decodeAddress(slab, ADDR_SLOT), { address: '127.0.0.1', port: 1, family: 4 });
  assert.throws(() => encodeAddress('127.0.0.1', 1, slab, 2 * ADDR_SLOT + 1), { code: 'ERR_INVALID_ADDRESS' });
});

test('invalid input throws with code ERR_INVALID_ADDRESS', () => {
  for (const bad of ['', 'localhost', '1.2.3', '256.1.1.1', '01.2.3.4', ':::', 'fe80::1%eth0', '1.2.3.4:5']) {
    assert.throws(() => encodeAddress(bad, 1), { code: 'ERR_INVALID_ADDRESS' }, bad);
  }
  for (const port of [-1, 65536, 1.5, Number.NaN]) {
    assert.throws(() => encodeAddress('::1', port), { code: 'ERR_INVALID_ADDRESS' }, String(port));
  }
  assert.throws(() => decodeAddress(Buffer.alloc(10)), { code: 'ERR_INVALID_ADDRESS' });
});

test('addressEquals compares address and port across buffers and offsets', () => {
  const slab = Buffer.alloc(ADDR_SLOT * 2);
  encodeAddress('10.0.0.1', 4000, slab, 0);
  encodeAddress('10.0.0.1', 4000, slab, ADDR_SLOT);
  const other = encodeAddress('10.0.0.1', 4000);
  assert.ok(addressEquals(slab, 0, slab, ADDR_SLOT));
  assert.ok(addressEquals(slab, ADDR_SLOT, other, 0));
  assert.ok(!addressEquals(other, 0, encodeAddress('10.0.0.1', 4001), 0));
  assert.ok(!addressEquals(other, 0, encodeAddress('10.0.0.2', 4000), 0));
  assert.ok(!addressEquals(other, 0, encodeAddress('::a00:1', 4000), 0));
});

test('addressKey is equal exactly for equal peers', () => {
  const k1 = addressKey(encodeAddress('10.0.0.1', 4000));
  assert.equal(k1, addressKey(encodeAddress('::ffff:10.0.0.1', 4000)));
  assert.notEqual(k1, addressKey(encodeAddress('10.0.0.1', 4001)));
  assert.notEqual(k1, addressKey(encodeAddress('2001:db8::1', 4000)));
  const slab = Buffer.alloc(ADDR_SLOT * 2);
  encodeAddress('10.0.0.1', 4000, slab, ADDR_SLOT);
  assert.equal(addressKey(slab, ADDR_SLOT), k1);
});
