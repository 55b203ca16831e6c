// Integration tests of the native relay table (csrc/relay_table.h, csrc/udp_linux.cc
// via lib/io/udp.ts) over loopback: members A and B, the relay S, a stranger D.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { UdpSocket } from '../../lib/io/udp.js';
import { ADDR_SLOT, RELAY_COUNTERS_PER_MEMBER, RelayCounter } from '../../lib/io/native.js';
import { addressPort, encodeAddress } from '../../lib/io/address.js';
import { buffersToBatch } from '../../lib/core/frames.js';

const HOST = '127.0.0.1';
/** How long a test waits for datagrams that loopback delivers in microseconds. */
const RECEIVE_TIMEOUT_MS = 3000;
/** How often a waiting test looks again. */
const POLL_INTERVAL_MS = 2;

// The wire as the addon reads it (docs/PROTOCOL.md): version 2, type 0x27, u16 BE destination id.
const PROTOCOL_VERSION = 2;
const PAIR_DATA = 0x27;
const TRANSPORT_DATA = 0x24;
const PAIR_DATA_MIN_SIZE = 32;
/** Where the test keeps its sequence number: the counter field. */
const SEQ_OFFSET = 8;

const ID_A = 1;
const ID_B = 2;
/** Never programmed. */
const ID_NOWHERE = 7;
/** Members the counters array has room for; ids from here on are relayed uncounted. */
const COUNTED_MEMBERS = 8;
const ID_UNCOUNTED = COUNTED_MEMBERS + 1;

const BURST = 200;
const BURST_SIZE = 1200;

let seq = 0;

/** A pair-data datagram for `dst` carrying the next sequence number. */
function pairData(dst: number, size = 64, type = PAIR_DATA): Buffer {
  const b = Buffer.alloc(size);
  for (let j = 0; j < size; j++) b[j] = (j * 13 + seq) & 0xff;
  b[0] = PROTOCOL_VERSION;
  b[1] = type;
  b.writeUInt16BE(dst, 2);
  if (size >= SEQ_OFFSET + 8) b.writeBigUInt64BE(BigInt(seq), SEQ_OFFSET);
  seq++;
  return b;
}

function slotOf(sock: UdpSocket): Buffer {
  return encodeAddress(HOST, sock.port);
}

/** Copies of everything a socket's JS receive callback got, with the sender's port. */
interface Inbox {
  data: Buffer[];
  fromPort: number[];
}

function listen(sock: UdpSocket): Inbox {
  const inbox: Inbox = { data: [], fromPort: [] };
  sock.onDatagrams((batch, addrs) => {
    for (let i = 0; i < batch.count; i++) {
      const off = batch.offsets[i]!;
      inbox.data.push(Buffer.from(batch.buf.subarray(off, off + batch.lengths[i]!)));
      inbox.fromPort.push(addressPort(addrs, i * ADDR_SLOT));
    }
  });
  return inbox;
}

async function until(cond: () => boolean, what: () => string): Promise<void> {
  const deadline = Date.now() + RECEIVE_TIMEOUT_MS;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await sleep(POLL_INTERVAL_MS);
  }
}

function includes(inbox: Inbox, d: Buffer): boolean {
  return inbox.data.some((x) => x.equals(d));
}

describe('the native relay table', () => {
  let a: UdpSocket;
  let b: UdpSocket;
  let s: UdpSocket;
  let d: UdpSocket;
  let atS: Inbox;
  let atB: Inbox;
  const counters = new Float64Array(COUNTED_MEMBERS * RELAY_COUNTERS_PER_MEMBER);
  const counter = (id: number, which: number): number => counters[id * RELAY_COUNTERS_PER_MEMBER + which]!;

  /** Send from `from` to S. */
  const toS = (from: UdpSocket, data: Buffer): void => {
    assert.equal(from.sendTo(data, slotOf(s)), 1);
  };

  /**
   * Wait until S's JS has seen a fresh non-pair datagram from A, and B a fresh
   * relayed one: S reads in order and loopback keeps it, so whatever was sent
   * before has been delivered or relayed by then.
   */
  const settle = async (): Promise<void> => {
    const toJs = pairData(ID_B, 40, TRANSPORT_DATA);
    const relayed = pairData(ID_B, 40);
    toS(a, toJs);
    toS(a, relayed);
    await until(
      () => includes(atS, toJs) && includes(atB, relayed),
      () => 'the settle markers',
    );
  };

  before(() => {
    a = UdpSocket.bind({ address: HOST, offload: true });
    b = UdpSocket.bind({ address: HOST });
    s = UdpSocket.bind({ address: HOST, offload: true });
    d = UdpSocket.bind({ address: HOST });
    atS = listen(s);
    atB = listen(b);
    s.setRelayCounters(counters);
    s.setRelayRoute(ID_A, slotOf(a));
    s.setRelayRoute(ID_B, slotOf(b));
  });

  after(() => {
    for (const sock of [a, b, s, d]) sock?.close();
  });

  test('rejects ids outside 1..65535 and slots of the wrong size', () => {
    for (const id of [0, 65536, 1.5, -1, NaN]) {
      assert.throws(() => s.setRelayRoute(id, slotOf(a)), { code: 'ERR_OUT_OF_RANGE' }, `id ${id}`);
    }
    assert.throws(() => s.setRelayRoute(3, Buffer.alloc(ADDR_SLOT - 1)), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => s.setRelayRoute(3, encodeAddress('::1', 4242)), { code: 'ERR_INVALID_ADDRESS' });
  });

  test('pair data from one member to another goes to it without reaching JS', async () => {
    const frames = [PAIR_DATA_MIN_SIZE, 33, 100, 1400, 64].map((size) => pairData(ID_B, size));
    const bytes = frames.reduce((n, f) => n + f.length, 0);
    const before = s.stats;
    const fromA = counter(ID_A, RelayCounter.fromDatagrams);
    const fromABytes = counter(ID_A, RelayCounter.fromBytes);
    const toB = counter(ID_B, RelayCounter.toDatagrams);
    const toBBytes = counter(ID_B, RelayCounter.toBytes);
    const jsBefore = atS.data.length;
    const bBefore = atB.data.length;
    for (const f of frames) toS(a, f);
    await until(
      () => atB.data.length >= bBefore + frames.length,
      () => `B got ${atB.data.length - bBefore} of ${frames.length}`,
    );
    assert.deepEqual(atB.data.slice(bBefore), frames, 'the same bytes, in order');
    assert.ok(atB.fromPort.slice(bBefore).every((p) => p === s.port), 'sent by the relay');

    const after = s.stats;
    assert.equal(after.relayDatagrams - before.relayDatagrams, frames.length);
    assert.equal(after.relayBytes - before.relayBytes, bytes);
    assert.equal(after.rxDatagrams - before.rxDatagrams, frames.length, 'relayed datagrams were received');
    assert.equal(after.txDatagrams - before.txDatagrams, frames.length, 'and sent');
    assert.equal(counter(ID_A, RelayCounter.fromDatagrams) - fromA, frames.length);
    assert.equal(counter(ID_A, RelayCounter.fromBytes) - fromABytes, bytes);
    assert.equal(counter(ID_B, RelayCounter.toDatagrams) - toB, frames.length);
    assert.equal(counter(ID_B, RelayCounter.toBytes) - toBBytes, bytes);
    assert.equal(counter(ID_A, RelayCounter.toDatagrams), 0);

    await settle();
    for (const f of frames) assert.ok(!includes(atS, f), 'JS saw a relayed datagram');
    assert.equal(atS.data.length - jsBefore, 1, 'only the settle marker reached JS');
  });

  test('what the table cannot route reaches JS, not the member', async () => {
    const stranger = pairData(ID_B); // from D, who is no member
    const nowhere = pairData(ID_NOWHERE);
    const toSelf = pairData(ID_A);
    const transport = pairData(ID_B, 64, TRANSPORT_DATA);
    const short = pairData(ID_B, PAIR_DATA_MIN_SIZE - 1);
    const oldVersion = pairData(ID_B);
    oldVersion[0] = PROTOCOL_VERSION - 1;
    const zero = pairData(0);
    const relayBefore = s.stats.relayDatagrams;
    toS(d, stranger);
    for (const f of [nowhere, toSelf, transport, short, oldVersion, zero]) toS(a, f);
    await settle();
    for (const f of [stranger, nowhere, toSelf, transport, short, oldVersion, zero]) {
      assert.ok(includes(atS, f), `JS got the datagram of type ${f[1]} for ${f.readUInt16BE(2)}`);
      assert.ok(!includes(atB, f), 'B got a datagram the table must not route');
    }
    assert.equal(atS.fromPort[atS.data.findIndex((x) => x.equals(stranger))], d.port);
    assert.equal(s.stats.relayDatagrams - relayBefore, 1, 'only the settle marker was relayed');
  });

  test('a removed route sends later pair data to JS', async () => {
    s.setRelayRoute(ID_B, null);
    try {
      const f = pairData(ID_B);
      toS(a, f);
      await until(() => includes(atS, f), () => 'JS to get pair data for a removed member');
    } finally {
      s.setRelayRoute(ID_B, slotOf(b));
    }
    await settle();
  });

  test('members of different groups (networks) are not relayed to each other: their data reaches JS', async () => {
    assert.throws(() => s.setRelayRoute(ID_B, slotOf(b), 65536), { code: 'ERR_OUT_OF_RANGE' }, 'group beyond u16');
    assert.throws(() => s.setRelayRoute(ID_B, slotOf(b), -1), { code: 'ERR_OUT_OF_RANGE' });
    s.setRelayRoute(ID_B, slotOf(b), 7);
    try {
      const across = pairData(ID_B, 80);
      const relayBefore = s.stats.relayDatagrams;
      toS(a, across);
      await until(() => includes(atS, across), () => 'JS to get pair data for a member of another group');
      assert.ok(!includes(atB, across), 'B got a datagram from another group');
      assert.equal(s.stats.relayDatagrams, relayBefore, 'nothing relayed');
      // Both in group 7: relayed again (the check can fail).
      s.setRelayRoute(ID_A, slotOf(a), 7);
      const within = pairData(ID_B, 81);
      toS(a, within);
      await until(() => includes(atB, within), () => 'B to get pair data within its group');
      assert.ok(!includes(atS, within));
    } finally {
      s.setRelayRoute(ID_A, slotOf(a));
      s.setRelayRoute(ID_B, slotOf(b));
    }
    await settle();
  });

  test('a member that roams is relayed from its new address only', async () => {
    s.setRelayRoute(ID_A, slotOf(d));
    try {
      const fromD = pairData(ID_B);
      const fromA = pairData(ID_B);
      toS(d, fromD);
      toS(a, fromA);
      await until(
        () => includes(atB, fromD) && includes(atS, fromA),
        () => 'D relayed and A to JS',
      );
      assert.ok(!includes(atS, fromD));
      assert.ok(!includes(atB, fromA));
    } finally {
      s.setRelayRoute(ID_A, slotOf(a));
    }
    await settle();
  });

  test("an address another member had takes that member's route away", async () => {
    const relayed = s.stats.relayDatagrams;
    s.setRelayRoute(ID_UNCOUNTED, slotOf(a));
    try {
      // A now speaks as ID_UNCOUNTED (beyond the counters: relayed, not counted), and ID_A has no route.
      const asNewId = pairData(ID_B);
      const toOldId = pairData(ID_A);
      toS(a, asNewId);
      toS(b, toOldId);
      await until(
        () => includes(atB, asNewId) && includes(atS, toOldId),
        () => 'relayed as the new id, and the old id unroutable',
      );
      assert.equal(s.stats.relayDatagrams - relayed, 1);
    } finally {
      s.setRelayRoute(ID_UNCOUNTED, null);
      s.setRelayRoute(ID_A, slotOf(a));
    }
    await settle();
  });

  test(`a burst of ${BURST} equal datagrams arrives whole and in order, GSO-batched where the kernel can`, async () => {
    const frames = Array.from({ length: BURST }, () => pairData(ID_B, BURST_SIZE));
    const first = frames[0]!.readBigUInt64BE(SEQ_OFFSET);
    const before = s.stats;
    const bBefore = atB.data.length;
    // One send: with GSO, A's datagrams leave as a few large messages that S receives with GRO.
    const addrs = Buffer.alloc(BURST * ADDR_SLOT);
    for (let i = 0; i < BURST; i++) slotOf(s).copy(addrs, i * ADDR_SLOT);
    assert.equal(a.send(buffersToBatch(frames), addrs), BURST);
    await until(
      () => atB.data.length >= bBefore + BURST,
      () => `B got ${atB.data.length - bBefore} of ${BURST}`,
    );
    const got = atB.data.slice(bBefore);
    for (let i = 0; i < BURST; i++) {
      assert.equal(got[i]!.readBigUInt64BE(SEQ_OFFSET), first + BigInt(i), `datagram ${i} in order`);
      assert.ok(got[i]!.equals(frames[i]!), `datagram ${i} intact`);
    }
    const after = s.stats;
    assert.equal(after.relayDatagrams - before.relayDatagrams, BURST);
    assert.equal(after.relayBytes - before.relayBytes, BURST * BURST_SIZE);
    if (a.offloads.includes('gso') && s.offloads === 'gso,gro') {
      assert.ok(after.rxGroMessages > before.rxGroMessages, 'S received coalesced messages');
      assert.ok(after.txGsoSends > before.txGsoSends, 'S relayed them as GSO sends');
    }
    await settle();
  });
});
