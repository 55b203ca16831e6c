// Unit tests of the end-to-end wire in lib/protocol/wire.ts: the long control
// messages of a port's session with its switch (PAIR_SEND, PAIR_RECV,
// MAC_CLAIM, PEER), the short pair control (NOT_HERE, LEAVE), the PAIR_DATA
// and CONTROL_DATA headers, and that malformed input decodes to null, never throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../helpers/session-harness.js';
import {
  LongControl,
  MAC_RECORD_SIZE,
  MACS_PER_MESSAGE,
  MessageType,
  NAME_MAX_BYTES,
  NOT_HERE_SIZE,
  PairControl,
  PeerFlags,
  PROTOCOL_VERSION,
  TRANSPORT_OVERHEAD,
} from '../../lib/protocol/constants.js';
import {
  PAIR_LEAVE_PAYLOAD,
  decodeExtensions,
  decodeLongControl,
  decodePairControl,
  encodeExtensions,
  encodeMacClaims,
  encodeNotHere,
  encodePairRecv,
  encodePairSend,
  encodePeer,
  encodeTrafficReport,
  encodePeerGone,
  isPairData,
  isTransport,
  readCounter,
  readReceiverIndex,
  readRoute,
  writeTransportHeader,
  type LongControlMessage,
  type MacRecord,
  type PeerMessage,
} from '../../lib/protocol/wire.js';

/** Deterministic bytes (so a failure replays). */
function bytes(n: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

const KEY = bytes(32, 1);

/** `n` distinct records over several VLANs, the extremes of both fields included. */
function records(n: number): MacRecord[] {
  const edges: MacRecord[] = [
    { mac: 0x02_00_00_00_00_01, vlan: 0 },
    { mac: 0xff_ff_ff_ff_ff_fe, vlan: 4095 },
    { mac: 0x00_00_00_00_00_01, vlan: 1 },
    { mac: 0x7e_dc_ba_98_76_54, vlan: 4094 },
  ];
  const out = edges.slice(0, n);
  for (let i = out.length; i < n; i++) out.push({ mac: 0x02_45_4c_00_00_00 + i * 0x1_0001, vlan: (i * 37) % 4096 });
  return out;
}

/** Decode every message of one encoding; each must be a PEER. */
function decodePeers(msgs: readonly Buffer[]): PeerMessage[] {
  return msgs.map((m, i) => {
    const d = decodeLongControl(m, 0, m.length);
    assert.ok(d !== null && d.kind === LongControl.PEER, `message ${i} decodes as PEER`);
    return d;
  });
}

/** `m` copied into a larger buffer at offset 5 with junk either side: decoders must respect (off, len). */
function embedded(m: Buffer): { buf: Buffer; off: number; len: number } {
  const buf = Buffer.concat([bytes(5, 7), m, bytes(9, 8)]);
  return { buf, off: 5, len: m.length };
}

test('PEER: 0, 1, 128 and 300 MACs round-trip in messages of at most 128, only the first with RESET', () => {
  for (const [n, messages] of [
    [0, 1],
    [1, 1],
    [MACS_PER_MESSAGE, 1],
    [300, 3],
  ] as const) {
    const macs = records(n);
    const msgs = encodePeer(0x1234, KEY, 'host-a', macs);
    assert.equal(msgs.length, messages, `${n} MACs: ${messages} message(s)`);
    const decoded = decodePeers(msgs);
    decoded.forEach((d, i) => {
      assert.equal(d.id, 0x1234);
      assert.equal(d.flags, i === 0 ? PeerFlags.RESET : 0, `message ${i} flags`);
      assert.deepEqual(d.publicKey, KEY);
      assert.equal(d.name, 'host-a');
      assert.ok(d.macs.length <= MACS_PER_MESSAGE);
      assert.equal(msgs[i]!.length, 4 + 32 + 1 + 'host-a'.length + 2 + d.macs.length * MAC_RECORD_SIZE);
    });
    assert.deepEqual(
      decoded.flatMap((d) => d.macs),
      macs,
      'every MAC, once, in order',
    );
  }
  const split = decodePeers(encodePeer(1, KEY, 'x', records(300)));
  assert.deepEqual(
    split.map((d) => d.macs.length),
    [128, 128, 44],
  );
});

test('PEER: SELF is set on every message of the own entry; VLAN ids 0..4095 and 48-bit MACs survive', () => {
  const macs = records(130);
  const decoded = decodePeers(encodePeer(7, KEY, 'me', macs, true));
  assert.equal(decoded.length, 2);
  assert.equal(decoded[0]!.flags, PeerFlags.RESET | PeerFlags.SELF);
  assert.equal(decoded[1]!.flags, PeerFlags.SELF);
  assert.deepEqual(
    decoded.flatMap((d) => d.macs),
    macs,
  );
  const vlans: MacRecord[] = [0, 1, 100, 4094, 4095].map((vlan, i) => ({ mac: 0xff_ff_ff_ff_ff_ff - i, vlan }));
  assert.deepEqual(decodePeers(encodePeer(7, KEY, '', vlans))[0]!.macs, vlans);
  assert.equal(decodePeers(encodePeer(0xffff, KEY, '', []))[0]!.id, 0xffff, 'the largest member id');
});

test('PEER: names are cut at NAME_MAX_BYTES between characters and control characters never reach a log', () => {
  for (const [name, expected] of [
    ['é'.repeat(40), 'é'.repeat(16)], // 2 bytes each: 32
    ['€'.repeat(20), '€'.repeat(10)], // 3 bytes each: 30, the 11th would make 33
    ['🦊'.repeat(10), '🦊'.repeat(8)], // 4 bytes each: 32
    ['a' + '🦊'.repeat(8), 'a' + '🦊'.repeat(7)], // 1 + 28; the 8th fox would end at 33
    ['x'.repeat(NAME_MAX_BYTES), 'x'.repeat(NAME_MAX_BYTES)],
    ['', ''],
    ['a\u0000b\nc\u009f', 'a?b?c?'],
  ] as const) {
    const [d] = decodePeers(encodePeer(3, KEY, name, records(1)));
    assert.equal(d!.name, expected, JSON.stringify(name));
    assert.ok(Buffer.byteLength(d!.name) <= NAME_MAX_BYTES);
  }
});

test('PEER GONE: four bytes, id and flags only', () => {
  const gone = encodePeerGone(0xbeef);
  assert.deepEqual([...gone], [LongControl.PEER, 0xbe, 0xef, PeerFlags.GONE]);
  assert.deepEqual(decodeLongControl(gone, 0, gone.length), { kind: LongControl.PEER, id: 0xbeef, flags: PeerFlags.GONE, publicKey: Buffer.alloc(0), name: '', macs: [] });
});

test('PAIR_SEND, PAIR_RECV and MAC_CLAIM round-trip; decoders honour the offset and length they are given', () => {
  const message = bytes(148, 2);
  const send = encodePairSend(0x0203, message);
  assert.deepEqual(decodeLongControl(send, 0, send.length), { kind: LongControl.PAIR_SEND, dst: 0x0203, message });
  const recv = encodePairRecv(0xfffe, KEY, message);
  assert.deepEqual(decodeLongControl(recv, 0, recv.length), { kind: LongControl.PAIR_RECV, src: 0xfffe, publicKey: KEY, message });

  const claims = encodeMacClaims(records(300));
  assert.equal(claims.length, 3);
  const claimed: MacRecord[] = [];
  for (const c of claims) {
    const d = decodeLongControl(c, 0, c.length);
    assert.ok(d !== null && d.kind === LongControl.MAC_CLAIM);
    assert.ok(d.macs.length <= MACS_PER_MESSAGE);
    claimed.push(...d.macs);
  }
  assert.deepEqual(claimed, records(300));
  assert.deepEqual(encodeMacClaims([]), [], 'nothing to claim: no message');

  // The same messages inside a larger buffer, junk either side.
  const all: [Buffer, LongControlMessage | null][] = [send, recv, claims[2]!, ...encodePeer(9, KEY, 'n', records(3), true), encodePeerGone(9)].map((m) => [m, decodeLongControl(m, 0, m.length)]);
  for (const [m, expected] of all) {
    const e = embedded(m);
    assert.deepEqual(decodeLongControl(e.buf, e.off, e.len), expected);
  }
});

test('pair control: NOT_HERE carries a MAC and VLAN; LEAVE is one byte', () => {
  for (const { mac, vlan } of records(4)) {
    const n = encodeNotHere(mac, vlan);
    assert.equal(n.length, NOT_HERE_SIZE);
    assert.deepEqual(decodePairControl(n, 0, n.length), { kind: PairControl.NOT_HERE, mac, vlan });
    const e = embedded(n);
    assert.deepEqual(decodePairControl(e.buf, e.off, e.len), { kind: PairControl.NOT_HERE, mac, vlan });
  }
  assert.deepEqual(decodePairControl(PAIR_LEAVE_PAYLOAD, 0, 1), { kind: PairControl.LEAVE });
  assert.equal(decodePairControl(Buffer.from([PairControl.LEAVE, 0]), 0, 2), null, 'LEAVE with an extra byte');
  const n = encodeNotHere(0x02_00_00_00_00_01, 5);
  assert.equal(decodePairControl(n, 0, n.length - 1), null, 'NOT_HERE truncated');
  assert.equal(decodePairControl(Buffer.concat([n, Buffer.alloc(1)]), 0, n.length + 1), null, 'NOT_HERE with an extra byte');
  assert.equal(decodePairControl(Buffer.from([9, 0, 0]), 0, 3), null, 'unknown kind');
  assert.equal(decodePairControl(Buffer.alloc(1), 0, 0), null, 'empty');
});

/** A PEER message with the given fields, built by hand (count may disagree with the records). */
function rawPeer(o: { id?: number; flags?: number; name?: Buffer; count?: number; records?: number }): Buffer {
  const name = o.name ?? Buffer.from('n');
  const n = o.records ?? 1;
  const b = Buffer.alloc(4 + 32 + 1 + name.length + 2 + n * MAC_RECORD_SIZE);
  b[0] = LongControl.PEER;
  b.writeUInt16BE(o.id ?? 1, 1);
  b[3] = o.flags ?? PeerFlags.RESET;
  KEY.copy(b, 4);
  b[36] = name.length;
  name.copy(b, 37);
  b.writeUInt16BE(o.count ?? n, 37 + name.length);
  return b;
}

test('malformed long control decodes to null: truncated, an extra byte, id 0, count mismatch, bad names', () => {
  const cases: [string, Buffer][] = [];
  const valid = [
    ...encodePeer(5, KEY, 'ok', []),
    ...encodePeer(5, KEY, 'ok', records(3)),
    ...encodePeer(5, KEY, 'é', records(MACS_PER_MESSAGE), true),
    encodePeerGone(5),
    ...encodeMacClaims(records(2)),
    ...encodeMacClaims([]),
  ];
  assert.ok(rawPeer({}).length > 0 && decodeLongControl(rawPeer({}), 0, rawPeer({}).length) !== null, 'the hand-built PEER is valid as it stands');
  for (const m of valid) {
    const kind = `${m[0]!.toString(16)} (${m.length} B)`;
    cases.push([`${kind} truncated by one byte`, m.subarray(0, m.length - 1)]);
    cases.push([`${kind} with an extra byte`, Buffer.concat([m, Buffer.from([0])])]);
  }
  cases.push(['MAC_CLAIM without records', Buffer.from([LongControl.MAC_CLAIM, 1])]);
  cases.push(['PEER id 0', rawPeer({ id: 0 })]);
  cases.push(['PEER GONE id 0', Buffer.from([LongControl.PEER, 0, 0, PeerFlags.GONE])]);
  cases.push(['PAIR_SEND dst 0', encodePairSend(0, bytes(148, 3))]);
  cases.push(['PAIR_RECV src 0', encodePairRecv(0, KEY, bytes(92, 4))]);
  cases.push(['PAIR_SEND without a message', encodePairSend(2, Buffer.alloc(0))]);
  cases.push(['PAIR_RECV without a message', encodePairRecv(2, KEY, Buffer.alloc(0))]);
  cases.push(['PAIR_RECV cut inside the key', encodePairRecv(2, KEY, Buffer.alloc(0)).subarray(0, 20)]);
  cases.push(['PEER count 2, one record', rawPeer({ count: 2, records: 1 })]);
  cases.push(['PEER count 1, two records', rawPeer({ count: 1, records: 2 })]);
  cases.push(['PEER count above MACS_PER_MESSAGE', rawPeer({ count: MACS_PER_MESSAGE + 1, records: MACS_PER_MESSAGE + 1 })]);
  cases.push(['MAC_CLAIM count 3, two records', Buffer.concat([Buffer.from([LongControl.MAC_CLAIM, 3]), Buffer.alloc(2 * MAC_RECORD_SIZE)])]);
  cases.push(['PEER name length above NAME_MAX_BYTES', rawPeer({ name: Buffer.alloc(NAME_MAX_BYTES + 1, 0x61) })]);
  cases.push(['PEER name: a lone continuation byte', rawPeer({ name: Buffer.from([0x61, 0x80]) })]);
  cases.push(['PEER name: an overlong encoding', rawPeer({ name: Buffer.from([0xc0, 0xaf]) })]);
  cases.push(['PEER name: a character cut in two', rawPeer({ name: Buffer.from('é').subarray(0, 1) })]);
  cases.push(['PEER name: a UTF-16 surrogate', rawPeer({ name: Buffer.from([0xed, 0xa0, 0x80]) })]);
  cases.push(['PEER name length past the end', rawPeer({ records: 0 }).subarray(0, 37)]);
  cases.push(['unknown kind', Buffer.from([0x7f, 0, 1, 0])]);
  cases.push(['empty', Buffer.alloc(0)]);
  for (const [what, m] of cases) assert.equal(decodeLongControl(m, 0, m.length), null, what);
});

test('PAIR_DATA and CONTROL_DATA headers: the route is bytes 2..3 of a PAIR_DATA datagram, which is not hop-by-hop transport', () => {
  const buf = Buffer.alloc(64);
  writeTransportHeader(buf, 4, 0xcafef00d, 2 ** 40 + 7, MessageType.PAIR_DATA, 0x1234);
  assert.deepEqual([...buf.subarray(4, 8)], [PROTOCOL_VERSION, MessageType.PAIR_DATA, 0x12, 0x34]);
  assert.equal(isPairData(buf, 4, TRANSPORT_OVERHEAD), true);
  assert.equal(isPairData(buf, 4, TRANSPORT_OVERHEAD - 1), false, 'shorter than header + tag');
  assert.equal(readRoute(buf, 4), 0x1234);
  assert.equal(readReceiverIndex(buf, 4), 0xcafef00d);
  assert.equal(readCounter(buf, 4), 2 ** 40 + 7);
  assert.equal(isTransport(buf, 4, TRANSPORT_OVERHEAD), false, 'never opened with the switch session keys');
  writeTransportHeader(buf, 4, 1, 0, MessageType.PAIR_DATA, 0xffff);
  assert.equal(readRoute(buf, 4), 0xffff);
  writeTransportHeader(buf, 4, 1, 0, MessageType.PAIR_DATA);
  assert.equal(isTransport(buf, 4, TRANSPORT_OVERHEAD), false, 'not even with route 0');

  writeTransportHeader(buf, 4, 0xcafef00d, 9, MessageType.CONTROL_DATA);
  assert.deepEqual([...buf.subarray(4, 8)], [PROTOCOL_VERSION, MessageType.CONTROL_DATA, 0, 0]);
  assert.equal(isTransport(buf, 4, TRANSPORT_OVERHEAD), true);
  assert.equal(isPairData(buf, 4, TRANSPORT_OVERHEAD), false);
  writeTransportHeader(buf, 4, 1, 0, MessageType.CONTROL_DATA, 1);
  assert.equal(isTransport(buf, 4, TRANSPORT_OVERHEAD), false, 'a route on hop-by-hop transport: reserved bytes not zero');
});

test('TRAFFIC_REPORT: two byte counts up to 2^53 round-trip in 17 bytes; a wrong length or a count past 2^53 is malformed', () => {
  for (const [tx, rx] of [[0, 0], [21_997_298, 1], [Number.MAX_SAFE_INTEGER, 2 ** 32 + 5]] as const) {
    const m = encodeTrafficReport(tx, rx);
    assert.equal(m.length, 17);
    const e = embedded(m);
    assert.deepEqual(decodeLongControl(e.buf, e.off, e.len), { kind: LongControl.TRAFFIC_REPORT, txDirectBytes: tx, rxDirectBytes: rx });
  }
  const m = encodeTrafficReport(1, 2);
  assert.equal(decodeLongControl(m, 0, 16), null, 'one byte short');
  assert.equal(decodeLongControl(Buffer.concat([m, Buffer.alloc(1)]), 0, 18), null, 'one byte extra');
  const huge = Buffer.from(m);
  huge.writeBigUInt64BE(2n ** 53n, 1);
  assert.equal(decodeLongControl(huge, 0, huge.length), null, 'a count no JavaScript number holds exactly');
});

test('random and mutated input never makes the pair decoders throw', () => {
  const rnd = prng(0x5eed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const seeds = [
    ...encodePeer(5, KEY, 'seed', records(3), true),
    encodePeerGone(5),
    ...encodeMacClaims(records(4)),
    encodePairSend(2, bytes(148, 5)),
    encodePairRecv(2, KEY, bytes(92, 6)),
    encodeNotHere(1, 2),
    PAIR_LEAVE_PAYLOAD,
    encodeTrafficReport(123_456_789, 2 ** 40),
  ];
  const kinds = [LongControl.PAIR_SEND, LongControl.MAC_CLAIM, LongControl.PAIR_RECV, LongControl.PEER, PairControl.LEAVE, PairControl.NOT_HERE, LongControl.TRAFFIC_REPORT];
  for (let i = 0; i < 20_000; i++) {
    let m: Buffer;
    if (i % 2 === 0) {
      m = bytes(int(80), i);
      if (m.length > 0) m[0] = kinds[int(kinds.length)]!;
    } else {
      m = Buffer.from(seeds[int(seeds.length)]!);
      for (let k = int(4); k >= 0 && m.length > 0; k--) {
        const at = int(m.length);
        m[at] = m[at]! ^ (1 << int(8));
      }
      if (int(3) === 0) m = m.subarray(0, int(m.length + 1));
    }
    const e = embedded(m);
    const d = decodeLongControl(e.buf, e.off, e.len);
    assert.deepEqual(decodeLongControl(m, 0, m.length), d, 'the same answer wherever the message sits');
    decodePairControl(e.buf, e.off, e.len);
  }
});

test('the PAIRS initiation extension: announced, decoded, refused with a value, absent by default', () => {
  const both = encodeExtensions({ name: 'h1', pairs: true });
  assert.deepEqual(decodeExtensions(both), { name: 'h1', pairs: true });
  assert.deepEqual(decodeExtensions(encodeExtensions({ name: 'h1' })), { name: 'h1' });
  assert.deepEqual(decodeExtensions(encodeExtensions({ pairs: true })), { pairs: true });
  // PAIRS carries no value: one with a value is malformed, not a flag.
  assert.equal(decodeExtensions(Buffer.from([2, 1, 0])), null);
});
