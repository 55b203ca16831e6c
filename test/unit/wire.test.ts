// Unit tests of lib/protocol/wire.ts and the layouts in lib/protocol/constants.ts:
// the MTU budget, the transport header, control payloads, the unauthenticated
// hints, initiation extensions, and that no input makes a decoder throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import {
  Control,
  DEFAULT_TAP_MTU,
  EXTENSIONS_MAX_SIZE,
  HANDSHAKE_REFUSED_SIZE,
  INITIATION_MAX_SIZE,
  INITIATION_SIZE,
  MessageType,
  NAME_MAX_BYTES,
  PING_SIZE,
  PingFlags,
  PROTOCOL_VERSION,
  SESSION_UNKNOWN_SIZE,
  TRANSPORT_OVERHEAD,
  handshakePrologue,
} from '../../lib/protocol/constants.js';
import {
  LEAVE_PAYLOAD,
  decodeControl,
  decodeExtensions,
  decodeHandshakeRefused,
  decodeSessionUnknown,
  decodeVersionUnsupported,
  encodeExtensions,
  encodeHandshakeRefused,
  encodeParams,
  encodePing,
  encodeSessionUnknown,
  encodeVersionUnsupported,
  formatIndex,
  isTransport,
  mayAnswerVersion,
  openedLength,
  readCounter,
  readReceiverIndex,
  sealedLength,
  truncateUtf8,
  writeTransportHeader,
} from '../../lib/protocol/wire.js';
import { insecureSwitchKey } from '../../lib/protocol/noise.js';

test('MTU: a full tagged frame, the transport header and tag fit a 1500-byte IPv6 packet: 1500 - 40 - 8 - 16 - 16 - 14 - 4', () => {
  assert.equal(DEFAULT_TAP_MTU, 1402);
  assert.equal(40 + 8 + sealedLength(DEFAULT_TAP_MTU + 14 + 4), 1500);
  assert.equal(TRANSPORT_OVERHEAD, 32);
  assert.equal(openedLength(sealedLength(100)), 100);
});

test('transport header: written without allocation, read back, counters up to 2^53', () => {
  const buf = Buffer.alloc(64, 0xee);
  for (const counter of [0, 1, 0xffff_ffff, 0x1_0000_0000, 2 ** 53 - 1]) {
    writeTransportHeader(buf, 8, 0xdeadbeef, counter);
    assert.deepEqual([...buf.subarray(8, 12)], [PROTOCOL_VERSION, MessageType.TRANSPORT_DATA, 0, 0]);
    assert.equal(readReceiverIndex(buf, 8), 0xdeadbeef);
    assert.equal(readCounter(buf, 8), counter);
  }
  assert.equal(isTransport(buf, 8, TRANSPORT_OVERHEAD), true, 'an empty message (keepalive) is 32 bytes');
  assert.equal(isTransport(buf, 8, TRANSPORT_OVERHEAD - 1), false, 'shorter than header + tag');
  buf[10] = 1;
  assert.equal(isTransport(buf, 8, 40), false, 'reserved bytes must be zero');
});

test('control payloads: ping/pong with flags, params, leave; anything else is not control', () => {
  const ping = encodePing(Control.PING, 0xfffffffe, PingFlags.LINK_DOWN);
  assert.equal(ping.length, PING_SIZE);
  assert.deepEqual(decodeControl(ping, 0, ping.length), { kind: Control.PING, seq: 0xfffffffe, flags: PingFlags.LINK_DOWN });
  assert.deepEqual(decodeControl(encodePing(Control.PONG, 7), 0, PING_SIZE), { kind: Control.PONG, seq: 7, flags: 0 });
  const params = encodeParams(10, 30);
  assert.deepEqual(decodeControl(params, 0, params.length), { kind: Control.PARAMS, keepaliveS: 10, portTimeoutS: 30 });
  assert.deepEqual(decodeControl(LEAVE_PAYLOAD, 0, 1), { kind: Control.LEAVE });
  assert.equal(decodeControl(ping, 0, PING_SIZE - 1), null, 'wrong length');
  assert.equal(decodeControl(Buffer.from([9, 0, 0]), 0, 3), null, 'unknown kind');
  assert.equal(decodeControl(Buffer.alloc(14), 0, 14), null, '14 bytes is a frame, never control');
});

test('hints: SESSION_UNKNOWN and HANDSHAKE_REFUSED are smaller than what they answer; VERSION_UNSUPPORTED is 4 bytes', () => {
  const unknown = encodeSessionUnknown(0x01020304);
  assert.equal(unknown.length, SESSION_UNKNOWN_SIZE);
  assert.ok(unknown.length < TRANSPORT_OVERHEAD);
  assert.equal(decodeSessionUnknown(unknown), 0x01020304);
  assert.equal(decodeSessionUnknown(unknown.subarray(0, 7)), undefined);
  const refused = encodeHandshakeRefused(0xaabbccdd, 2);
  assert.equal(refused.length, HANDSHAKE_REFUSED_SIZE);
  assert.ok(refused.length < INITIATION_SIZE);
  assert.deepEqual(decodeHandshakeRefused(refused), { receiverIndex: 0xaabbccdd, reason: 2 });
  assert.equal(decodeHandshakeRefused(unknown), undefined);
  const v = encodeVersionUnsupported();
  assert.deepEqual([...v], [PROTOCOL_VERSION, 0xff, PROTOCOL_VERSION, PROTOCOL_VERSION]);
  assert.deepEqual(decodeVersionUnsupported(Buffer.from([7, 0xff, 3, 5])), { lowest: 3, highest: 5 }, 'read whatever its version byte');
  assert.equal(decodeVersionUnsupported(Buffer.from([7, 0xff, 5, 3])), undefined, 'lowest above highest');
  assert.equal(mayAnswerVersion(v, 0, 4), false, 'never answer an answer');
  assert.equal(mayAnswerVersion(Buffer.from([1, 2, 0]), 0, 3), false, 'nor anything smaller than the answer');
  assert.equal(mayAnswerVersion(Buffer.from([1, 2, 0, 0]), 0, 4), true);
});

test('initiation extensions: a name round-trips, is cut to 32 bytes between characters, and fits the size bound', () => {
  assert.deepEqual(decodeExtensions(encodeExtensions({ name: 'h1' })), { name: 'h1' });
  assert.deepEqual(decodeExtensions(encodeExtensions({})), {});
  const long = encodeExtensions({ name: 'é'.repeat(40) });
  const name = decodeExtensions(long)!.name!;
  assert.ok(Buffer.byteLength(name) <= NAME_MAX_BYTES && name === 'é'.repeat(16));
  assert.ok(INITIATION_SIZE + long.length <= INITIATION_MAX_SIZE);
  assert.deepEqual(decodeExtensions(encodeExtensions({ name: 'a\u0000b\nc' })), { name: 'a?b?c' }, 'control characters never reach a log');
  // Unknown types are skipped; truncated ones and bad UTF-8 are malformed.
  assert.deepEqual(decodeExtensions(Buffer.from([9, 2, 0xaa, 0xbb, 1, 1, 0x41])), { name: 'A' });
  assert.equal(decodeExtensions(Buffer.from([1, 5, 0x41])), null);
  assert.equal(decodeExtensions(Buffer.from([1, 2, 0xc3, 0x28])), null);
  assert.equal(decodeExtensions(Buffer.from([1])), null);
  assert.ok(EXTENSIONS_MAX_SIZE >= 2 + NAME_MAX_BYTES);
});

test('random bytes never make a decoder throw', () => {
  for (let i = 0; i < 20_000; i++) {
    const b = randomBytes(randomInt(0, 80));
    decodeControl(b, 0, b.length);
    decodeSessionUnknown(b);
    decodeHandshakeRefused(b);
    decodeVersionUnsupported(b);
    decodeExtensions(b);
    if (b.length >= 16) isTransport(b, 0, b.length);
  }
});

test('the cipher is bound into the handshake prologue; the insecure switch key is fixed and published', () => {
  assert.equal(handshakePrologue().toString(), 'EtherLink v2 etherlink.dev');
  assert.equal(handshakePrologue('none').toString(), 'EtherLink v2 etherlink.dev none');
  assert.notDeepEqual(handshakePrologue('aes-256-gcm'), handshakePrologue('chacha20-poly1305'));
  const a = insecureSwitchKey();
  assert.deepEqual(insecureSwitchKey(), a, 'the same key every time, everywhere');
  assert.equal(a.publicKey.toString('base64'), INSECURE_PUBLIC_KEY, 'docs/PROTOCOL.md publishes it');
});

test('formatIndex and truncateUtf8', () => {
  assert.equal(formatIndex(0x1a), '0000001a');
  assert.equal(formatIndex(0xffffffff), 'ffffffff');
  assert.equal(truncateUtf8('aé', 2).toString(), 'a');
  assert.equal(truncateUtf8('aé', 3).toString(), 'aé');
});

/** The published key of --insecure switches (docs/PROTOCOL.md); a change here is a protocol change. */
const INSECURE_PUBLIC_KEY = 'VNjS68LcBKMcqvoEbNF2/dbgV+YLKhFxwMesqY4OBU4=';
