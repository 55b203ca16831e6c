// Unit tests of lib/protocol/wire.ts: round trips of every v1 message and
// classify/decode on hostile input (truncated, oversized, wrong version, random bytes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ACCEPT_SIZE,
  DATA_HEADER_SIZE,
  DEFAULT_TAP_MTU,
  JOIN_SIZE,
  JoinOffset,
  KEEPALIVE_SIZE,
  LEAVE_SIZE,
  Malformed,
  MAX_DATAGRAM_SIZE,
  MessageType,
  PROTOCOL_VERSION,
  REJECT_MAX_SIZE,
  REJECT_MIN_SIZE,
  RejectOffset,
  RejectReason,
} from '../../lib/protocol/constants.js';
import {
  classify,
  classifyName,
  decode,
  encodeAccept,
  encodeData,
  encodeJoin,
  encodeKeepalive,
  encodeLeave,
  encodeReject,
  encodeVersionUnsupported,
  mayAnswerVersion,
  readDataCounter,
  readReceiverIndex,
  truncateUtf8,
  writeDataHeader,
  type Message,
} from '../../lib/protocol/wire.js';

const NONCE = Buffer.from('0102030405060708', 'hex');
const TOKEN = Buffer.from('a1a2a3a4a5a6a7a8', 'hex');
const MAC = Buffer.from('020000000001', 'hex');
const FRAME = Buffer.concat([Buffer.from('ffffffffffff020000000001', 'hex'), Buffer.from([0x08, 0x06]), Buffer.alloc(28, 7)]);

function decoded(buf: Buffer): Message {
  const r = decode(buf, 0, buf.length);
  assert.equal(r.ok, true, `decode failed: ${r.ok ? '' : r.reason}`);
  if (!r.ok) throw new Error('unreachable');
  return r.message;
}

function allEncoded(): Buffer[] {
  return [
    encodeJoin({ senderIndex: 0xdeadbeef, nonce: NONCE, mac: MAC, name: 'alice' }),
    encodeAccept({ senderIndex: 7, receiverIndex: 0xdeadbeef, token: TOKEN, keepaliveIntervalS: 10, portTimeoutS: 30 }),
    encodeReject({ index: 0xdeadbeef, reason: RejectReason.SWITCH_FULL, text: 'full' }),
    encodeData(7, 2 ** 40 + 5, FRAME),
    encodeKeepalive({ receiverIndex: 7, token: TOKEN, echo: 0xfffffffe }),
    encodeLeave({ receiverIndex: 7, token: TOKEN }),
    encodeVersionUnsupported(),
  ];
}

test('MTU: 1500 - 40 - 8 - 16 - 16 - 14 - 4', () => {
  assert.equal(DEFAULT_TAP_MTU, 1402);
  // A full frame with a VLAN tag, our header and a future tag fills a 1500-byte IPv6 packet exactly.
  assert.equal(40 + 8 + DATA_HEADER_SIZE + 16 + 14 + 4 + DEFAULT_TAP_MTU, 1500);
});

test('JOIN round trip, fixed size, zero padding', () => {
  const buf = encodeJoin({ senderIndex: 0xdeadbeef, nonce: NONCE, mac: MAC, name: 'zoë-port' });
  assert.equal(buf.length, JOIN_SIZE);
  assert.equal(buf[0], PROTOCOL_VERSION);
  assert.equal(buf[1], MessageType.JOIN);
  assert.equal(classify(buf, 0, buf.length), MessageType.JOIN);
  assert.deepEqual(decoded(buf), { type: MessageType.JOIN, senderIndex: 0xdeadbeef, nonce: NONCE, mac: MAC, name: 'zoë-port' });
  // JOIN can never be smaller than the ACCEPT it triggers: no amplification.
  assert.ok(JOIN_SIZE >= ACCEPT_SIZE);
});

test('JOIN with a 32-byte name and with an empty one', () => {
  const long = 'x'.repeat(32);
  assert.equal((decoded(encodeJoin({ senderIndex: 1, nonce: NONCE, mac: MAC, name: long })) as { name: string }).name, long);
  assert.equal((decoded(encodeJoin({ senderIndex: 1, nonce: NONCE, mac: MAC, name: '' })) as { name: string }).name, '');
  assert.throws(() => encodeJoin({ senderIndex: 1, nonce: NONCE, mac: MAC, name: 'x'.repeat(33) }), RangeError);
  assert.throws(() => encodeJoin({ senderIndex: 1, nonce: NONCE, mac: MAC, name: 'a\nb' }), RangeError);
  assert.throws(() => encodeJoin({ senderIndex: 0, nonce: NONCE, mac: MAC, name: 'a' }), RangeError);
  assert.throws(() => encodeJoin({ senderIndex: 1, nonce: NONCE, mac: Buffer.from('ffffffffffff', 'hex'), name: 'a' }), RangeError);
});

test('JOIN field validation on receive', () => {
  const good = encodeJoin({ senderIndex: 5, nonce: NONCE, mac: MAC, name: 'ab' });
  const padded = Buffer.from(good);
  padded[JoinOffset.NAME + 5] = 1; // garbage in the padding
  assert.equal(classify(padded, 0, padded.length), Malformed.RESERVED_NONZERO);
  const longName = Buffer.from(good);
  longName[JoinOffset.NAME_LENGTH] = 33;
  assert.equal(classify(longName, 0, longName.length), Malformed.BAD_FIELD);
  const multicast = Buffer.from(good);
  multicast[JoinOffset.MAC] = 0x01;
  assert.equal(classify(multicast, 0, multicast.length), Malformed.BAD_FIELD);
  const badUtf8 = Buffer.from(good);
  badUtf8[JoinOffset.NAME] = 0xc3; // lead byte followed by 'b' (not a continuation)
  assert.equal(classify(badUtf8, 0, badUtf8.length), MessageType.JOIN); // layout is fine...
  const r = decode(badUtf8);
  assert.equal(r.ok, false); // ...but the name is not UTF-8
  if (!r.ok) assert.equal(r.error, Malformed.BAD_FIELD);
  const control = Buffer.from(good);
  control[JoinOffset.NAME] = 0x1b; // ESC: would let a port inject terminal codes into logs
  assert.equal(decode(control).ok, false);
});

test('ACCEPT round trip', () => {
  const buf = encodeAccept({ senderIndex: 7, receiverIndex: 0xdeadbeef, token: TOKEN, keepaliveIntervalS: 10, portTimeoutS: 65535 });
  assert.equal(buf.length, ACCEPT_SIZE);
  assert.deepEqual(decoded(buf), {
    type: MessageType.ACCEPT,
    senderIndex: 7,
    receiverIndex: 0xdeadbeef,
    token: TOKEN,
    keepaliveIntervalS: 10,
    portTimeoutS: 65535,
  });
});

test('REJECT round trip and truncation to the trigger size', () => {
  const buf = encodeReject({ index: 9, reason: RejectReason.UNKNOWN_SESSION, text: 'unknown session' });
  assert.equal(buf.length, REJECT_MIN_SIZE + 15);
  assert.deepEqual(decoded(buf), { type: MessageType.REJECT, index: 9, reason: RejectReason.UNKNOWN_SESSION, text: 'unknown session' });
  // Answering a 20-byte KEEPALIVE: 8 bytes of text left.
  const small = encodeReject({ index: 9, reason: 2, text: 'unknown session' }, KEEPALIVE_SIZE);
  assert.equal(small.length, KEEPALIVE_SIZE);
  assert.equal((decoded(small) as { text: string }).text, 'unknown ');
  // Never more than 128 bytes of text.
  assert.equal(encodeReject({ index: 9, reason: 0, text: 'y'.repeat(500) }).length, REJECT_MAX_SIZE);
  // Cut on a character boundary: 'é' is 2 bytes.
  const cut = encodeReject({ index: 9, reason: 0, text: 'ééé' }, REJECT_MIN_SIZE + 5);
  assert.equal((decoded(cut) as { text: string }).text, 'éé');
  assert.throws(() => encodeReject({ index: 9, reason: 0, text: '' }, REJECT_MIN_SIZE - 1), RangeError);
});

test('REJECT with a text length that disagrees with the datagram', () => {
  const buf = encodeReject({ index: 9, reason: 1, text: 'abc' });
  const lying = Buffer.from(buf);
  lying[RejectOffset.TEXT_LENGTH] = 10;
  assert.equal(classify(lying, 0, lying.length), Malformed.TOO_SHORT);
  assert.equal(classify(Buffer.concat([buf, Buffer.alloc(1)]), 0, buf.length + 1), Malformed.OVERSIZED);
  const control = encodeReject({ index: 9, reason: 1, text: 'a\u001b[31mb' });
  assert.equal((decoded(control) as { text: string }).text, 'a\ufffd[31mb');
});

test('KEEPALIVE, LEAVE and VERSION_UNSUPPORTED round trips', () => {
  const ka = encodeKeepalive({ receiverIndex: 0xffffffff, token: TOKEN, echo: 0xfffffffe });
  assert.equal(ka.length, KEEPALIVE_SIZE);
  assert.deepEqual(decoded(ka), { type: MessageType.KEEPALIVE, receiverIndex: 0xffffffff, token: TOKEN, echo: 0xfffffffe });
  const leave = encodeLeave({ receiverIndex: 3, token: TOKEN });
  assert.equal(leave.length, LEAVE_SIZE);
  assert.deepEqual(decoded(leave), { type: MessageType.LEAVE, receiverIndex: 3, token: TOKEN });
  const vu = encodeVersionUnsupported(3, 2, 4);
  assert.deepEqual([...vu], [3, 0xff, 2, 4]);
  assert.deepEqual(decoded(vu), { type: MessageType.VERSION_UNSUPPORTED, senderVersion: 3, lowest: 2, highest: 4 });
  // Understood whatever the version byte, because its layout is fixed forever.
  assert.equal(classify(Buffer.from([200, 0xff, 150, 200]), 0, 4), MessageType.VERSION_UNSUPPORTED);
  assert.equal(classify(Buffer.from([1, 0xff, 3, 2]), 0, 4), Malformed.BAD_FIELD); // lowest > highest
  assert.equal(classify(Buffer.from([1, 0xff, 1, 1, 0]), 0, 5), Malformed.OVERSIZED);
});

test('DATA header: write/read without allocation helpers, counters up to 2^53', () => {
  const slab = Buffer.alloc(200, 0xaa);
  const off = 37;
  for (const counter of [0, 1, 0xffffffff, 2 ** 32, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
    assert.equal(writeDataHeader(slab, off, 0x80000001, counter), DATA_HEADER_SIZE);
    FRAME.copy(slab, off + DATA_HEADER_SIZE);
    const len = DATA_HEADER_SIZE + FRAME.length;
    assert.equal(classify(slab, off, len), MessageType.DATA);
    assert.equal(readReceiverIndex(slab, off, len), 0x80000001);
    assert.equal(readDataCounter(slab, off, len), counter);
  }
  assert.equal(slab[off - 1], 0xaa, 'wrote before its offset');
  assert.equal(readReceiverIndex(slab, off, 7), 0);
  assert.equal(readDataCounter(slab, off, 15), -1);
  const m = decoded(encodeData(7, 2 ** 40 + 5, FRAME));
  assert.deepEqual(m, { type: MessageType.DATA, receiverIndex: 7, counter: 2 ** 40 + 5, frameOffset: 16, frameLength: FRAME.length });
});

test('DATA limits: runt frame, largest datagram, index 0', () => {
  const header = Buffer.alloc(DATA_HEADER_SIZE);
  writeDataHeader(header, 0, 7, 0);
  const runt = Buffer.concat([header, Buffer.alloc(13)]);
  assert.equal(classify(runt, 0, runt.length), Malformed.TOO_SHORT);
  const max = Buffer.alloc(MAX_DATAGRAM_SIZE + 1);
  header.copy(max);
  assert.equal(classify(max, 0, MAX_DATAGRAM_SIZE), MessageType.DATA);
  assert.equal(classify(max, 0, MAX_DATAGRAM_SIZE + 1), Malformed.OVERSIZED);
  const zero = encodeData(7, 0, FRAME);
  zero.writeUInt32BE(0, 4);
  assert.equal(classify(zero, 0, zero.length), Malformed.BAD_FIELD);
});

test('classify: every truncation of every message is too short, one extra byte is oversized', () => {
  for (const buf of allEncoded()) {
    const type = classify(buf, 0, buf.length);
    assert.ok(type >= 0, `valid ${classifyName(type)}`);
    for (let len = 0; len < buf.length; len++) {
      const code = classify(buf, 0, len);
      // A shorter DATA is still DATA while it holds a header and an Ethernet header.
      const expected = type === MessageType.DATA && len >= DATA_HEADER_SIZE + 14 ? MessageType.DATA : Malformed.TOO_SHORT;
      assert.equal(code, expected, `${classifyName(type)} cut to ${len}: ${classifyName(code)}`);
      assert.equal(decode(buf, 0, len).ok, expected === MessageType.DATA);
    }
    if (type !== MessageType.DATA) {
      const longer = Buffer.concat([buf, Buffer.alloc(1)]);
      assert.equal(classify(longer, 0, longer.length), Malformed.OVERSIZED, classifyName(type));
    }
  }
});

test('classify: bad version, reserved bytes, unknown type, bad bounds', () => {
  for (const buf of allEncoded()) {
    if (buf[1] === MessageType.VERSION_UNSUPPORTED) continue;
    const v2 = Buffer.from(buf);
    v2[0] = 2;
    assert.equal(classify(v2, 0, v2.length), Malformed.BAD_VERSION);
    assert.equal(mayAnswerVersion(v2, 0, v2.length), true);
    const v0 = Buffer.from(buf);
    v0[0] = 0;
    assert.equal(classify(v0, 0, v0.length), Malformed.BAD_VERSION);
    const reserved = Buffer.from(buf);
    reserved[3] = 1;
    assert.equal(classify(reserved, 0, reserved.length), Malformed.RESERVED_NONZERO);
    // A future version may use the reserved bytes: the version decides first.
    v2[2] = 9;
    assert.equal(classify(v2, 0, v2.length), Malformed.BAD_VERSION);
  }
  assert.equal(classify(Buffer.from([1, 7, 0, 0, 1, 2, 3, 4]), 0, 8), Malformed.UNKNOWN_TYPE);
  assert.equal(classify(Buffer.from([1, 0, 0, 0]), 0, 4), Malformed.UNKNOWN_TYPE);
  const ka = encodeKeepalive({ receiverIndex: 7, token: TOKEN, echo: 1 });
  assert.equal(classify(ka, 1, ka.length), Malformed.TOO_SHORT, 'len past the end of the buffer');
  assert.equal(classify(ka, -1, 4), Malformed.TOO_SHORT);
  assert.equal(classify(ka, Number.NaN, 4), Malformed.TOO_SHORT);
  // Offsets inside a larger slab work.
  const slab = Buffer.concat([Buffer.alloc(5, 0xee), ka, Buffer.alloc(3, 0xee)]);
  assert.equal(classify(slab, 5, ka.length), MessageType.KEEPALIVE);
  assert.deepEqual(decoded(Buffer.from(slab.subarray(5, 5 + ka.length))), decoded(ka));
  const r = decode(slab, 5, ka.length);
  assert.equal(r.ok && r.message.type === MessageType.KEEPALIVE && r.message.echo, 1);
  // Never answer a VERSION_UNSUPPORTED, nor something smaller than the answer.
  assert.equal(mayAnswerVersion(Buffer.from([9, 0xff, 9, 9]), 0, 4), false);
  assert.equal(mayAnswerVersion(Buffer.from([9, 1, 0]), 0, 3), false);
});

test('random bytes never throw and never decode to a message classify refused', () => {
  // Deterministic xorshift so a failure reproduces.
  let s = 0x12345678;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const buf = Buffer.alloc(200);
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    const len = next() % 200;
    for (let j = 0; j < len; j++) buf[j] = next() & 0xff;
    // Bias towards plausible prefixes so the type-specific checks get exercised.
    if (i % 2 === 0 && len >= 2) {
      buf[0] = 1;
      buf[1] = (next() % 7) + 1;
      if (len >= 4) buf[2] = buf[3] = 0;
    }
    const code = classify(buf, 0, len);
    const r = decode(buf, 0, len);
    if (code < 0) assert.equal(r.ok, false);
    if (r.ok) {
      accepted++;
      assert.equal(r.message.type, code);
    }
  }
  // Some random inputs must have been valid DATA (any payload is a frame), or the fuzz tested nothing.
  assert.ok(accepted > 0, `accepted ${accepted}`);
});

test('truncateUtf8 cuts between characters', () => {
  assert.equal(truncateUtf8('a€b', 3).toString(), 'a');
  assert.equal(truncateUtf8('a€b', 4).toString(), 'a€');
  assert.equal(truncateUtf8('abc', 10).toString(), 'abc');
  assert.equal(truncateUtf8('abc', 0).length, 0);
});
