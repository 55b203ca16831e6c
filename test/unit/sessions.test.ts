// The protocol's sessions end to end over an in-memory wire: handshake, data
// both ways, rekey under traffic, replay, tampering, reordering, roaming, DoS
// defences (mac1, cookies, rate limits), switch restart, allow-list removal,
// the link state, --insecure (cipher 'none', open membership) and its refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { SessionHarness, counterOf, frameId, kindOf, prng, shuffle, testFrame, type Datagram } from '../helpers/session-harness.js';
import { encodeAddress, formatAddress } from '../../lib/io/address.js';
import { InitiatorHandshake } from '../../lib/protocol/noise.js';
import { generateKeyPair } from '../../lib/crypto/keys.js';
import { HANDSHAKE_SOURCE_BURST, REPLAY_WINDOW_SIZE, UNDER_LOAD_HANDSHAKES_PER_S } from '../../lib/protocol/constants.js';

const ids = (frames: readonly Buffer[]): number[] => frames.map(frameId);
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
const frames = (from: number, n: number, size = 100): Buffer[] => range(from, n).map((id) => testFrame(id, size));

/** A 148-byte initiation-shaped datagram of random bytes (so its mac1 is wrong) from `from`. */
function junkInitiation(h: SessionHarness, from: Buffer): Datagram {
  const data = randomBytes(148);
  data[0] = 2;
  data[1] = 0x21;
  data[2] = 0;
  data[3] = 0;
  return { data, from, dst: Buffer.from(h.switchAddress), dir: 'up' };
}

/** Counters of the switch that differ between two snapshots. */
function changed(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(after)) if (after[k] !== before[k]) out[k] = after[k]! - (before[k] ?? 0);
  return out;
}

test('handshake completes and frames cross both ways intact; joined is reported once', () => {
  const h = new SessionHarness();
  h.join();
  const port = h.ports[0]!;
  assert.equal(port.session.isJoined, true);
  assert.deepEqual(port.events.map((e) => e.type), ['joined']);
  assert.equal(h.sw.joined.length, 1);
  assert.equal(h.sw.sessions.size, 1);
  assert.equal(h.switchCounters()['handshakes'], 1);

  const up = range(0, 100).map((i) => testFrame(i, 14 + ((i * 137) % 1400)));
  h.portSend(0, up);
  h.settle();
  assert.deepEqual(
    h.sw.delivered.map((d) => d.frame),
    up,
  );
  assert.ok(h.sw.delivered.every((d) => d.memberId === h.member(0).id));

  const down = range(1000, 100).map((i) => testFrame(i, 14 + ((i * 71) % 1400)));
  h.switchSend(0, down);
  h.settle();
  assert.deepEqual(port.delivered, down);
  assert.equal(h.sw.joined.length, 1, 'joined once');
  assert.equal(h.switchCounters()['authFailed'], 0);
  assert.equal(h.portCounters(0)['authFailed'], 0);
});

test('rekeys under continuous traffic lose no frame and do not rejoin', () => {
  const h = new SessionHarness({ portOptions: { rekeyAfterMs: 2000, rejectAfterMs: 3000 }, switchOptions: { rejectAfterMs: 3000 } });
  h.join();
  let next = 0;
  const sentUp: number[] = [];
  const sentDown: number[] = [];
  // 12 s of traffic, 5 frames each way every 40 ms: about 5 rekeys.
  for (let step = 0; step < 300; step++) {
    const up = frames(next, 5);
    const down = frames(next + 1_000_000, 5);
    next += 5;
    h.portSend(0, up);
    h.switchSend(0, down);
    sentUp.push(...ids(up));
    sentDown.push(...ids(down));
    h.advance(40);
  }
  h.settle();
  const port = h.ports[0]!;
  assert.deepEqual(ids(h.sw.delivered.map((d) => d.frame)), sentUp, 'every frame up, once, in order');
  assert.deepEqual(ids(port.delivered), sentDown, 'every frame down, once, in order');
  const rekeys = port.events.filter((e) => e.type === 'rekeyed').length;
  assert.ok(rekeys >= 4, `rekeyed ${rekeys} times in 12 s with rekeyAfter 2 s`);
  assert.equal(h.switchCounters()['rekeys'], rekeys);
  assert.deepEqual(
    port.events.filter((e) => e.type !== 'rekeyed').map((e) => e.type),
    ['joined'],
  );
  assert.equal(h.sw.joined.length, 1, 'the switch reported the port joined once');
  assert.equal(h.sw.left.length, 0);
  assert.equal(h.switchCounters()['noSession'], 0);
  assert.equal(port.session.status(h.now).counters['txNotJoined'], 0);
});

test('replayed transport datagrams are dropped and counted, both directions', () => {
  const h = new SessionHarness();
  h.join();
  h.portSend(0, frames(0, 10));
  const up = h.take((d) => kindOf(d.data) === 'transport');
  assert.equal(up.length, 10);
  h.deliver(up);
  const r0 = h.switchCounters()['replayed']!;
  h.deliver(up);
  assert.equal(h.switchCounters()['replayed'], r0 + 10);
  assert.equal(h.sw.delivered.length, 10, 'replays are not delivered');
  // Twice in one receive batch: the second copy fails the window after decryption.
  h.portSend(0, frames(10, 1));
  const [once] = h.take((d) => kindOf(d.data) === 'transport');
  h.deliver([once!, { ...once! }]);
  assert.equal(h.sw.delivered.length, 11);
  assert.equal(h.switchCounters()['replayed'], r0 + 11);

  h.switchSend(0, frames(100, 10));
  const down = h.take((d) => kindOf(d.data) === 'transport' && d.dir === 'down');
  assert.equal(down.length, 10);
  h.deliver(down);
  const p0 = h.portCounters(0)['replayed']!;
  h.deliver(down);
  h.deliver(down.slice(0, 3));
  assert.equal(h.portCounters(0)['replayed'], p0 + 13);
  assert.deepEqual(ids(h.ports[0]!.delivered), range(100, 10));
});

interface FlipCase {
  name: string;
  at: (len: number) => number;
  mask: number;
  switchCounter: string;
  portCounter: string;
}

const FLIPS: FlipCase[] = [
  { name: 'header: version', at: () => 0, mask: 0x01, switchCounter: 'badVersion', portCounter: 'malformed' },
  { name: 'header: type', at: () => 1, mask: 0x08, switchCounter: 'malformed', portCounter: 'malformed' },
  { name: 'header: reserved', at: () => 3, mask: 0x40, switchCounter: 'malformed', portCounter: 'malformed' },
  { name: 'header: receiver index', at: () => 6, mask: 0x10, switchCounter: 'unknownIndex', portCounter: 'unknownIndex' },
  { name: 'header: counter (high)', at: () => 9, mask: 0x01, switchCounter: 'authFailed', portCounter: 'authFailed' },
  { name: 'header: counter (+2^16)', at: () => 13, mask: 0x01, switchCounter: 'authFailed', portCounter: 'authFailed' },
  { name: 'ciphertext: first byte', at: () => 16, mask: 0x01, switchCounter: 'authFailed', portCounter: 'authFailed' },
  { name: 'ciphertext: middle', at: (len) => 16 + ((len - 32) >> 1), mask: 0x80, switchCounter: 'authFailed', portCounter: 'authFailed' },
  { name: 'tag: first byte', at: (len) => len - 16, mask: 0x02, switchCounter: 'authFailed', portCounter: 'authFailed' },
  { name: 'tag: last byte', at: (len) => len - 1, mask: 0x80, switchCounter: 'authFailed', portCounter: 'authFailed' },
];

test('bit-flipped transport datagrams are dropped and counted where they fail', async (t) => {
  const h = new SessionHarness();
  h.join();
  let id = 0;
  for (const c of FLIPS) {
    await t.test(`switch side: ${c.name} -> ${c.switchCounter}`, () => {
      h.portSend(0, [testFrame(id++, 200)]);
      const [d] = h.take((x) => kindOf(x.data) === 'transport');
      const bad = { ...d!, data: Buffer.from(d!.data) };
      bad.data[c.at(bad.data.length)]! ^= c.mask;
      const before = h.switchCounters();
      const delivered = h.sw.delivered.length;
      h.deliver([bad]);
      assert.deepEqual(changed(before, h.switchCounters()), { [c.switchCounter]: 1 });
      assert.equal(h.sw.delivered.length, delivered, 'nothing delivered');
      // The forgery moved no window: the genuine datagram still gets through.
      h.deliver([d!]);
      assert.equal(h.sw.delivered.length, delivered + 1);
      assert.equal(frameId(h.sw.delivered.at(-1)!.frame), id - 1);
      h.settle();
    });
    await t.test(`port side: ${c.name} -> ${c.portCounter}`, () => {
      h.switchSend(0, [testFrame(id++, 200)]);
      const [d] = h.take((x) => x.dir === 'down' && kindOf(x.data) === 'transport');
      const bad = { ...d!, data: Buffer.from(d!.data) };
      bad.data[c.at(bad.data.length)]! ^= c.mask;
      const before = h.portCounters(0);
      const port = h.ports[0]!;
      const delivered = port.delivered.length;
      h.deliver([bad]);
      assert.deepEqual(changed(before, h.portCounters(0)), { [c.portCounter]: 1 });
      assert.equal(port.delivered.length, delivered);
      h.deliver([d!]);
      assert.equal(port.delivered.length, delivered + 1);
      assert.equal(port.session.isJoined, true);
      h.settle();
    });
  }
  assert.equal(h.sw.joined.length, 1);
});

test('reordering inside the window delivers everything once; older than the window is dropped', () => {
  const h = new SessionHarness();
  h.join();
  const rnd = prng(0x5eed);

  // A batch of 500 in random order.
  h.portSend(0, frames(0, 500));
  const shuffled = shuffle(h.take((d) => kindOf(d.data) === 'transport'), rnd);
  assert.equal(shuffled.length, 500);
  h.deliver(shuffled);
  assert.deepEqual(
    ids(h.sw.delivered.map((d) => d.frame)).sort((a, b) => a - b),
    range(0, 500),
  );

  // One datagram delayed by 1000 positions.
  h.sw.delivered.length = 0;
  h.portSend(0, frames(1000, 1001));
  const late = h.take((d) => kindOf(d.data) === 'transport');
  h.deliver(late.slice(1));
  h.deliver([late[0]!]);
  const got = ids(h.sw.delivered.map((d) => d.frame));
  assert.equal(got.length, 1001);
  assert.equal(got.at(-1), 1000, 'the late one arrives last, and arrives');
  assert.equal(new Set(got).size, 1001);

  // Exactly REPLAY_WINDOW_SIZE behind the highest: still accepted once.
  h.sw.delivered.length = 0;
  h.portSend(0, frames(10_000, REPLAY_WINDOW_SIZE + 1));
  const edge = h.take((d) => kindOf(d.data) === 'transport');
  h.deliver(edge.slice(1));
  assert.equal(counterOf(edge.at(-1)!.data) - counterOf(edge[0]!.data), REPLAY_WINDOW_SIZE);
  const replayed = h.switchCounters()['replayed']!;
  h.deliver([edge[0]!]);
  assert.equal(h.sw.delivered.length, REPLAY_WINDOW_SIZE + 1, 'at the window edge: accepted');
  assert.equal(h.switchCounters()['replayed'], replayed);

  // One more behind: dropped, counted as a replay, not delivered.
  h.sw.delivered.length = 0;
  h.portSend(0, frames(20_000, REPLAY_WINDOW_SIZE + 2));
  const old = h.take((d) => kindOf(d.data) === 'transport');
  h.deliver(old.slice(1));
  assert.equal(counterOf(old.at(-1)!.data) - counterOf(old[0]!.data), REPLAY_WINDOW_SIZE + 1);
  h.deliver([old[0]!]);
  assert.equal(h.sw.delivered.length, REPLAY_WINDOW_SIZE + 1, 'the too-old datagram is not delivered');
  assert.ok(!h.sw.delivered.some((d) => frameId(d.frame) === 20_000));
  assert.equal(h.switchCounters()['replayed'], replayed + 1);
  assert.equal(h.switchCounters()['authFailed'], 0);
});

test('roaming: only an authentic, fresh datagram moves the endpoint', () => {
  const h = new SessionHarness();
  h.join();
  const port = h.ports[0]!;
  const original = formatAddress(h.member(0).endpoint);
  assert.equal(original, '10.0.0.10:40000');

  port.address = encodeAddress('10.0.0.99', 5555);
  h.portSend(0, frames(0, 1));
  h.settle();
  assert.equal(formatAddress(h.member(0).endpoint), '10.0.0.99:5555');
  assert.equal(h.switchCounters()['roams'], 1);
  h.switchSend(0, frames(1, 3));
  h.settle();
  assert.deepEqual(ids(port.delivered), [1, 2, 3], 'replies follow the port');
  assert.equal(h.stray.length, 0);

  // Bad tag from a new address: dropped, endpoint unchanged.
  h.portSend(0, frames(10, 1));
  const [d] = h.take((x) => kindOf(x.data) === 'transport');
  const forged: Datagram = { ...d!, data: Buffer.from(d!.data), from: encodeAddress('10.0.0.66', 6666) };
  forged.data[forged.data.length - 1]! ^= 1;
  h.deliver([forged]);
  assert.equal(formatAddress(h.member(0).endpoint), '10.0.0.99:5555');
  assert.equal(h.switchCounters()['authFailed'], 1);
  // The genuine one, replayed from another new address: a replay does not roam either.
  h.deliver([d!]);
  h.deliver([{ ...d!, from: encodeAddress('10.0.0.77', 7777) }]);
  assert.equal(formatAddress(h.member(0).endpoint), '10.0.0.99:5555');
  assert.equal(h.switchCounters()['roams'], 1);
  assert.equal(h.switchCounters()['replayed'], 1);
});

test('an initiation from an unlisted key creates no peer and gets no answer', () => {
  const h = new SessionHarness({ ports: 1, unlistedPorts: 1 });
  h.join([0]);
  const stranger = h.ports[1]!;
  stranger.session.start(h.now);
  const init = h.take();
  assert.deepEqual(init.map((d) => kindOf(d.data)), ['initiation']);
  h.deliver(init);
  assert.deepEqual(h.take(), [], 'no response, no cookie');
  assert.equal(h.switchCounters()['unlisted'], 1);
  h.advance(3000);
  assert.ok(h.switchCounters()['unlisted']! >= 2, 'retries are refused too');
  assert.equal(h.sw.sessions.size, 1);
  assert.equal(h.switchCounters()['pendingHandshakes'], 0);
  assert.equal(h.sw.joined.length, 1);
  assert.equal(stranger.session.isJoined, false);
  assert.equal(h.sw.members.has(stranger.keys.publicKey.toString('base64')), false);
});

test('mac1 junk is dropped before any state or answer (badMac1)', () => {
  const h = new SessionHarness();
  h.join();
  const before = h.switchCounters();
  const one = encodeAddress('192.0.2.1', 1000);
  const list: Datagram[] = [];
  for (let i = 0; i < HANDSHAKE_SOURCE_BURST; i++) list.push(junkInitiation(h, one));
  for (let i = 0; i < 50; i++) list.push(junkInitiation(h, encodeAddress(`192.0.2.${10 + i}`, 2000 + i)));
  // A genuine initiation, but for another switch key.
  const { message } = InitiatorHandshake.createInitiation({
    staticPrivateKey: h.ports[0]!.keys.privateKey,
    responderPublicKey: generateKeyPair().publicKey,
    senderIndex: 7,
    now: h.now,
  });
  list.push({ data: message, from: encodeAddress('192.0.2.200', 3000), dst: Buffer.from(h.switchAddress), dir: 'up' });
  h.deliver(list);
  assert.deepEqual(changed(before, h.switchCounters()), { badMac1: list.length });
  assert.deepEqual(h.take(), [], 'junk gets no reply');
  assert.equal(h.switchCounters()['pendingHandshakes'], 0);
  assert.equal(h.sw.sessions.size, 1);
});

test('under load an initiation without mac2 gets a cookie, and the retry with the cookie joins', () => {
  const h = new SessionHarness();
  // More than UNDER_LOAD_HANDSHAKES_PER_S initiations in one tick interval, each from its own source.
  const junk: Datagram[] = [];
  for (let i = 0; i <= UNDER_LOAD_HANDSHAKES_PER_S; i++) junk.push(junkInitiation(h, encodeAddress(`198.51.100.${i + 1}`, 1000)));
  h.deliver(junk);
  assert.equal(h.switchCounters()['badMac1'], UNDER_LOAD_HANDSHAKES_PER_S + 1);

  const port = h.ports[0]!;
  port.session.start(h.now);
  const [first] = h.take();
  assert.equal(kindOf(first!.data), 'initiation');
  assert.ok(first!.data.subarray(132).equals(Buffer.alloc(16)), 'the first attempt has no mac2');
  h.deliver([first!]);
  assert.equal(h.switchCounters()['cookiesSent'], 1);
  assert.equal(h.switchCounters()['handshakes'], 0, 'no DH under load without a cookie');
  const reply = h.take();
  assert.deepEqual(reply.map((d) => kindOf(d.data)), ['cookie']);
  assert.equal(reply[0]!.data.length, 64, 'no amplification: 64 < 148');
  h.deliver(reply);
  assert.equal(port.session.isJoined, false, 'a cookie reply does not resend at once');

  // The retransmission (REKEY_TIMEOUT backoff), with the switch still under load: the switch timers are held.
  const retries: Buffer[] = [];
  h.advance(1000, {
    tick: false,
    tamper: (list) => {
      for (const d of list) if (kindOf(d.data) === 'initiation') retries.push(d.data);
      return list;
    },
  });
  assert.ok(retries.length >= 1);
  assert.ok(!retries[0]!.subarray(132).equals(Buffer.alloc(16)), 'the retry carries mac2');
  assert.equal(port.session.isJoined, true);
  assert.deepEqual(port.events.map((e) => e.type), ['joined']);
  assert.equal(h.switchCounters()['cookiesSent'], 1, 'mac2 was accepted: no second cookie');
  assert.equal(h.switchCounters()['handshakes'], 1);
  assert.equal(h.sw.joined.length, 1);
});

test('per-source handshake rate limit: a burst, then refill over time (rateLimited)', () => {
  const h = new SessionHarness();
  const list: Datagram[] = [];
  // Same host, different UDP ports: the limiter keys by host.
  for (let i = 0; i < 12; i++) list.push(junkInitiation(h, encodeAddress('203.0.113.5', 1000 + i)));
  h.deliver(list);
  let c = h.switchCounters();
  assert.equal(c['badMac1'], HANDSHAKE_SOURCE_BURST);
  assert.equal(c['rateLimited'], 12 - HANDSHAKE_SOURCE_BURST);
  // Another host is not affected.
  h.deliver([junkInitiation(h, encodeAddress('203.0.113.6', 1000))]);
  assert.equal(h.switchCounters()['badMac1'], HANDSHAKE_SOURCE_BURST + 1);
  h.now += 1000;
  h.deliver(list);
  c = h.switchCounters();
  assert.equal(c['badMac1'], 2 * HANDSHAKE_SOURCE_BURST + 1, 'a second later the bucket is full again (burst)');
  assert.equal(c['rateLimited'], 2 * (12 - HANDSHAKE_SOURCE_BURST));
});

test('after a switch restart the port learns SESSION_UNKNOWN and rejoins at once', () => {
  const h = new SessionHarness();
  h.join();
  const port = h.ports[0]!;
  h.portSend(0, frames(0, 3));
  h.settle();
  assert.equal(h.sw.delivered.length, 3);

  const fresh = h.restartSwitch();
  h.portSend(0, frames(3, 1));
  const [lost] = h.take((d) => kindOf(d.data) === 'transport');
  h.deliver([lost!]);
  assert.equal(h.switchCounters()['unknownIndex'], 1);
  const hint = h.take();
  assert.deepEqual(hint.map((d) => `${d.dir} ${kindOf(d.data)} ${d.data.length}`), ['down session-unknown 8']);
  assert.equal(hint[0]!.data.readUInt32BE(4), lost!.data.readUInt32BE(4), 'the hint names the unknown index');
  const t0 = h.now;
  h.deliver(hint);
  h.settle();
  assert.equal(h.now, t0, 'no timer needed: the port handshakes on the hint');
  assert.deepEqual(port.events.map((e) => e.type), ['joined', 'joined'], 'a rejoin, reported as joined');
  assert.equal(port.session.isJoined, true);
  assert.equal(fresh.joined.length, 1);
  h.portSend(0, frames(4, 5));
  h.switchSend(0, frames(100, 2));
  h.settle();
  assert.deepEqual(ids(fresh.delivered.map((d) => d.frame)), range(4, 5));
  assert.deepEqual(ids(port.delivered), [100, 101]);
});

test('setAllowList without a key closes that session: host left (allow file) and the port gets LEAVE', () => {
  const h = new SessionHarness({ ports: 2 });
  h.join();
  assert.equal(h.sw.sessions.size, 2);
  const removed = h.sw.sessions.setAllowList(h.allowEntries([h.allowKeys[0]!]));
  assert.deepEqual(removed, ['p1']);
  assert.equal(h.sw.left.length, 1);
  assert.equal(h.sw.left[0]!.member.name, 'p1');
  assert.match(h.sw.left[0]!.reason, /allow file/);
  const bye = h.take();
  assert.deepEqual(bye.map((d) => `${d.dir} ${kindOf(d.data)} ${formatAddress(d.dst)}`), ['down transport 10.0.0.11:40001']);
  h.deliver(bye);
  const p1 = h.ports[1]!;
  assert.ok(p1.events.some((e) => e.type === 'left-by-switch'), 'the port heard the LEAVE');
  assert.equal(p1.session.isJoined, false);
  h.settle();
  assert.equal(h.switchCounters()['unlisted'], 1, 'its rejoin is refused');
  assert.equal(h.sw.sessions.size, 1);
  // The other port is untouched.
  h.portSend(0, frames(0, 2));
  h.settle();
  assert.deepEqual(ids(h.sw.delivered.map((d) => d.frame)), [0, 1]);
  assert.equal(h.ports[0]!.session.isJoined, true);
});

test('aes-256-gcm on both ends carries frames; a cipher mismatch fails the handshake itself, never the data', () => {
  const h = new SessionHarness({ switchOptions: { cipher: 'aes-256-gcm' }, portOptions: { cipher: 'aes-256-gcm' } });
  h.join();
  assert.equal(h.ports[0]!.session.isJoined, true);
  const up = frames(0, 50, 1400);
  h.portSend(0, up);
  h.settle();
  assert.deepEqual(h.sw.delivered.map((d) => d.frame), up);
  assert.equal(h.switchCounters()['authFailed'], 0);

  // The switch on AES, the port on the default: the prologue differs, so the
  // initiation does not decrypt at the switch and no session ever forms.
  const m = new SessionHarness({ switchOptions: { cipher: 'aes-256-gcm' } });
  m.join();
  m.advance(5_000);
  assert.equal(m.ports[0]!.session.isJoined, false, 'no session with mismatched ciphers');
  assert.equal(m.sw.joined.length, 0);
  assert.ok(m.switchCounters()['handshakeFailures']! >= 1, 'the switch counted the failed handshakes');
  assert.equal(m.switchCounters()['authFailed'], 0, 'no data was ever exchanged to fail');
});

test('--insecure: cipher none and open membership: any key joins, frames cross in clear, the port names itself', () => {
  const h = new SessionHarness({ insecure: true, ports: 2, portOptions: { name: 'lab-1' } });
  h.join();
  assert.equal(h.sw.sessions.size, 2, 'keys nobody listed are admitted');
  assert.equal(h.sw.sessions.open, true);
  assert.equal(h.member(0).name, 'lab-1', 'the name the port announced in its initiation');
  const up = frames(0, 20, 300);
  h.portSend(0, up);
  const wire = h.take((d) => kindOf(d.data) === 'transport' && d.dir === 'up');
  assert.equal(wire.length, 20);
  // The same layout as encrypted transport: 16-byte header, the frame, a (zero) 16-byte tag.
  assert.deepEqual(wire[0]!.data.subarray(16, 16 + 300), up[0], 'the frame travels in clear');
  assert.ok(wire[0]!.data.subarray(16 + 300).equals(Buffer.alloc(16)));
  h.deliver(wire);
  assert.deepEqual(h.sw.delivered.map((d) => d.frame), up);
  h.switchSend(1, frames(100, 3));
  h.settle();
  assert.deepEqual(ids(h.ports[1]!.delivered), [100, 101, 102]);
});

test('--insecure on one side only: the switch refuses with a reason, and both sides say how to fix it', () => {
  // An insecure port (published switch key, cipher none) at a keyed switch.
  const keyed = new SessionHarness();
  const insecurePort = new SessionHarness({ insecure: true });
  const p = insecurePort.ports[0]!;
  p.session.start(keyed.now);
  const [init] = insecurePort.take();
  keyed.deliver([{ ...init!, dst: Buffer.from(keyed.switchAddress) }]);
  assert.equal(keyed.switchCounters()['insecurePorts'], 1);
  const [refusal, ...rest] = keyed.take();
  assert.equal(rest.length, 0);
  assert.equal(kindOf(refusal!.data), 'refused');
  assert.ok(refusal!.data.length < init!.data.length, 'never larger than what it answers');
  insecurePort.deliver([{ ...refusal!, dst: Buffer.from(p.address) }]);
  const problem = p.events.find((e) => e.type === 'problem');
  assert.ok(problem && problem.type === 'problem' && /requires keys/.test(problem.message), JSON.stringify(p.events));
  assert.equal(p.session.isJoined, false);
  assert.equal(keyed.sw.sessions.size, 0);

  // A keyed port, told some switch key, at an insecure switch.
  const open = new SessionHarness({ insecure: true });
  const keyedPort = new SessionHarness();
  const k = keyedPort.ports[0]!;
  k.session.start(open.now);
  const [kinit] = keyedPort.take();
  open.deliver([{ ...kinit!, dst: Buffer.from(open.switchAddress) }]);
  const [answer] = open.take();
  assert.equal(kindOf(answer!.data), 'refused');
  keyedPort.deliver([{ ...answer!, dst: Buffer.from(k.address) }]);
  const p2 = k.events.find((e) => e.type === 'problem');
  assert.ok(p2 && p2.type === 'problem' && /runs --insecure/.test(p2.message), JSON.stringify(k.events));
  assert.equal(open.sw.sessions.size, 0);
});

test('a HANDSHAKE_REFUSED for another attempt is ignored; one for ours changes nothing but a message', () => {
  const h = new SessionHarness({ switchOptions: { cipher: 'aes-256-gcm' } });
  const port = h.ports[0]!;
  port.session.start(h.now);
  const [init] = h.take();
  const index = init!.data.readUInt32BE(4);
  const forged = (i: number): Datagram => {
    const data = Buffer.alloc(12);
    data.set([2, 0x26, 0, 0]);
    data.writeUInt32BE(i, 4);
    data[8] = 1;
    return { data, from: Buffer.from(h.switchAddress), dst: Buffer.from(port.address), dir: 'down' };
  };
  h.deliver([forged((index ^ 1) >>> 0)]);
  assert.equal(port.events.length, 0);
  assert.ok(h.portCounters(0)['ignored']! >= 1);
  // The real exchange: the cipher differs, the switch says so.
  h.deliver([init!]);
  h.settle();
  const problem = port.events.find((e) => e.type === 'problem');
  assert.ok(problem && problem.type === 'problem' && /another --cipher/.test(problem.message), JSON.stringify(port.events));
  assert.equal(h.switchCounters()['refusalsSent'], 1);
  // Retries keep trying and report the same problem once.
  h.advance(5_000);
  assert.equal(port.events.filter((e) => e.type === 'problem').length, 1);
  assert.ok(h.switchCounters()['refusalsSent']! > 1);
});

test('the link state rides in pings: down is told at once and retried until answered; the switch hears it once', () => {
  const h = new SessionHarness({ ports: 2 });
  h.join();
  const port = h.ports[0]!;
  port.session.setLinkUp(false, h.now);
  // The first ping is lost; the retry follows within LINK_STATE_RETRY_MS.
  const lost = h.take((d) => d.dir === 'up' && kindOf(d.data) === 'transport');
  assert.equal(lost.length, 1);
  assert.equal(h.sw.links.length, 0);
  h.advance(300);
  assert.deepEqual(h.sw.links.map((l) => [l.member.name, l.up]), [['p0', false]]);
  assert.equal(h.member(0).linkUp, false);
  assert.equal(port.session.status(h.now).linkUp, false);
  // Answered: no more fast pings (only keepalives every 10 s).
  const before = h.portCounters(0);
  let pings = 0;
  h.advance(5_000, { tamper: (list) => ((pings += list.filter((d) => d.dir === 'up').length), list) });
  assert.equal(pings, 0, 'no ping between keepalives once the switch knows');
  port.session.setLinkUp(true, h.now);
  h.settle();
  assert.deepEqual(h.sw.links.map((l) => l.up), [false, true]);
  assert.equal(h.portCounters(0)['authFailed'], before['authFailed']);
});

test('an allow-file name wins over the announced one; without one, the announced name is used', () => {
  const h = new SessionHarness({ ports: 2, portOptions: { name: 'announced' } });
  h.sw.sessions.setAllowList([{ publicKey: h.allowKeys[0]!.publicKey, name: 'listed', line: 1 }, { publicKey: h.allowKeys[1]!.publicKey, line: 2 }]);
  h.join();
  assert.equal(h.member(0).name, 'listed');
  assert.equal(h.member(1).name, 'announced');
});

test('UDP_PROBE: a live index gets an authenticated PROBE_ACK, no larger, back where the probe came from; nothing moves; a guessed index or a bad size gets nothing', () => {
  const h = new SessionHarness();
  h.join();
  const port = h.ports[0]!;
  const endpoint = formatAddress(h.member(0).endpoint);
  // The port's session runs elsewhere (a stream); its UDP mapping is another address.
  const mapping = encodeAddress('10.0.0.55', 4444);
  const probe = port.session.udpProbe(77)!;
  const before = h.switchCounters();
  h.deliver([{ data: probe, from: mapping, dst: Buffer.from(h.switchAddress), dir: 'up' }]);
  const acks = h.take((d) => d.dir === 'down');
  assert.equal(acks.length, 1, 'one answer');
  assert.equal(formatAddress(acks[0]!.dst), '10.0.0.55:4444', 'to where the probe came from');
  assert.ok(acks[0]!.data.length <= probe.length, `no amplification: ${acks[0]!.data.length} <= ${probe.length}`);
  assert.equal(kindOf(acks[0]!.data), 'transport', 'sealed in the session');
  assert.equal(formatAddress(h.member(0).endpoint), endpoint, 'the endpoint did not move');
  assert.deepEqual(changed(before, h.switchCounters()), { udpProbeAcks: 1 });
  // At the port the answer authenticates and names the probe.
  port.address = mapping;
  h.deliver(acks);
  assert.deepEqual(port.events.filter((e) => e.type === 'probe-ack'), [{ type: 'probe-ack', seq: 77 }]);

  // A forged probe: a guessed index is no session; a tampered answer would not authenticate.
  const forged = Buffer.from(probe);
  forged.writeUInt32BE((forged.readUInt32BE(4) ^ 0x5a5a5a5a) >>> 0, 4);
  const short = probe.subarray(0, probe.length - 1);
  const mid = h.switchCounters();
  h.deliver([
    { data: forged, from: encodeAddress('10.0.0.66', 6666), dst: Buffer.from(h.switchAddress), dir: 'up' },
    { data: Buffer.from(short), from: encodeAddress('10.0.0.66', 6666), dst: Buffer.from(h.switchAddress), dir: 'up' },
  ]);
  assert.equal(h.take((d) => d.dir === 'down').length, 0, 'no answer to either');
  assert.deepEqual(changed(mid, h.switchCounters()), { udpProbesDropped: 1, malformed: 1 });
  const tampered = Buffer.from(acks[0]!.data);
  tampered[tampered.length - 1]! ^= 1;
  h.deliver([{ ...acks[0]!, data: tampered }]);
  assert.equal(port.events.filter((e) => e.type === 'probe-ack').length, 1, 'a tampered ack is no ack');
  assert.equal(formatAddress(h.member(0).endpoint), endpoint);
});
