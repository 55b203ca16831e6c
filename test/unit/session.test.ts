// Unit tests of lib/protocol/session.ts: PortSession and SwitchSessions driven
// against each other in memory with injected time and randomness (no sockets, no timers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEAD_AFTER_MISSED_KEEPALIVES,
  KEEPALIVE_SIZE,
  MessageType,
  REJOIN_BACKOFF_MAX_MS,
  REPLY_BUDGET_BURST,
  RejectReason,
} from '../../lib/protocol/constants.js';
import {
  decode,
  encodeAccept,
  encodeData,
  encodeJoin,
  encodeKeepalive,
  encodeReject,
  encodeVersionUnsupported,
  type Message,
} from '../../lib/protocol/wire.js';
import {
  PortSession,
  ReplyBudget,
  SwitchSessions,
  formatEndpoint,
  rejoinBackoffMs,
  type PortAction,
  type PortEvent,
  type RandomFill,
  type SwitchAction,
  type SwitchEvent,
} from '../../lib/protocol/session.js';

// ---------------------------------------------------------------- helpers

/** Deterministic randomness: a seeded xorshift, so failures reproduce. */
function seeded(seed: number): RandomFill {
  let s = seed >>> 0 || 1;
  return (out) => {
    for (let i = 0; i < out.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      out[i] = s & 0xff;
    }
  };
}

/** 20-byte address slot of ::ffff:192.0.2.n, port 4000+n. */
function ep(n: number): Buffer {
  const a = Buffer.alloc(20);
  a[10] = 0xff;
  a[11] = 0xff;
  a.set([192, 0, 2, n], 12);
  a.writeUInt16BE(4000 + n, 16);
  return a;
}

const FRAME = Buffer.concat([Buffer.from('ffffffffffff020000000001', 'hex'), Buffer.from([0x08, 0x06]), Buffer.alloc(28)]);

function portSends(actions: PortAction[]): Buffer[] {
  return actions.flatMap((a) => (a.kind === 'send' ? [a.datagram] : []));
}
function portEvents(actions: PortAction[]): PortEvent[] {
  return actions.flatMap((a) => (a.kind === 'event' ? [a.event] : []));
}
function switchSends(actions: SwitchAction[]): { datagram: Buffer; to: Buffer }[] {
  return actions.flatMap((a) => (a.kind === 'send' ? [{ datagram: a.datagram, to: a.to }] : []));
}
function switchEvents(actions: SwitchAction[]): SwitchEvent[] {
  return actions.flatMap((a) => (a.kind === 'event' ? [a.event] : []));
}
function msg(buf: Buffer): Message {
  const r = decode(buf);
  if (!r.ok) throw new Error(`not a valid datagram: ${r.reason}`);
  return r.message;
}
function one<T>(xs: T[]): T {
  assert.equal(xs.length, 1, `expected exactly one, got ${xs.length}`);
  return xs[0]!;
}

function newPort(seed: number, name = `port${seed}`): PortSession {
  return new PortSession({ name, mac: Buffer.from([2, 0, 0, 0, 0, seed & 0xff]), random: seeded(seed) });
}

/** Deliver every datagram a port emitted to the switch; return the switch's actions. */
function toSwitch(sw: SwitchSessions, actions: PortAction[], from: Buffer, now: number): SwitchAction[] {
  return portSends(actions).flatMap((d) => sw.handleControl(d, 0, d.length, from, 0, now));
}
/** Deliver every datagram the switch sent to `addr` to the port. */
function toPort(port: PortSession, actions: SwitchAction[], addr: Buffer, now: number): PortAction[] {
  return switchSends(actions)
    .filter((s) => s.to.equals(addr))
    .flatMap((s) => port.onDatagram(s.datagram, 0, s.datagram.length, now));
}

/** A port joined to a switch at time `now`. */
function joined(sw: SwitchSessions, port: PortSession, addr: Buffer, now: number): PortAction[] {
  const acts = toPort(port, toSwitch(sw, port.start(now), addr, now), addr, now);
  assert.equal(port.state, 'joined');
  return acts;
}

// ---------------------------------------------------------------- join

test('join: JOIN -> ACCEPT, indices cross over, counters start at 0', () => {
  const sw = new SwitchSessions({ random: seeded(99) });
  const port = newPort(1, 'alice');
  const a = ep(1);

  const start = port.start(1000);
  assert.equal(port.state, 'joining');
  const join = msg(one(portSends(start)));
  assert.equal(join.type, MessageType.JOIN);
  assert.equal(join.type === MessageType.JOIN && join.senderIndex, port.localIndex);
  assert.equal(join.type === MessageType.JOIN && join.name, 'alice');
  assert.deepEqual(port.start(1000), [], 'start is a no-op unless idle');

  const swActs = toSwitch(sw, start, a, 1001);
  const joinedEv = one(switchEvents(swActs));
  assert.equal(joinedEv.type, 'joined');
  const session = joinedEv.type === 'joined' ? joinedEv.session : undefined;
  assert.ok(session);
  assert.equal(session.remoteIndex, port.localIndex);
  assert.equal(session.name, 'alice');
  assert.equal(formatEndpoint(session.endpoint), '192.0.2.1:4001');
  assert.equal(session.joinedAt, 1001);
  const accept = msg(one(switchSends(swActs)).datagram);
  assert.equal(accept.type, MessageType.ACCEPT);

  const portActs = toPort(port, swActs, a, 1002);
  const ev = one(portEvents(portActs));
  assert.deepEqual(ev, {
    type: 'joined',
    localIndex: port.localIndex,
    remoteIndex: session.localIndex,
    keepaliveIntervalMs: 10_000,
    portTimeoutMs: 30_000,
    attempts: 1,
  });
  assert.equal(port.remoteIndex, session.localIndex);
  assert.equal(port.nextTimeout(), 1002 + 10_000);
  assert.equal(port.nextTxCounter(), 0);
  assert.equal(port.nextTxCounter(), 1);
  assert.equal(session.nextTxCounter(), 0);

  // The hot path finds the session by the index the port writes into DATA.
  assert.equal(sw.sessionForData(port.remoteIndex), session);
  assert.equal(sw.sessionForData(port.remoteIndex + 1), undefined);
  assert.equal(sw.endpointMatches(session, a, 0), true);
  assert.equal(sw.endpointMatches(session, ep(2), 0), false);
  sw.touch(session, 5000);
  assert.equal(session.lastSeen, 5000);
});

test('lost ACCEPT: JOIN retried on the backoff schedule, switch re-ACCEPTs idempotently', () => {
  const sw = new SwitchSessions({ random: seeded(98) });
  const port = newPort(2);
  const a = ep(2);
  const first = port.start(0);
  const lost = toSwitch(sw, first, a, 0); // this ACCEPT never arrives
  assert.equal(sw.size, 1);
  const due = port.nextTimeout()!;
  assert.ok(due > 0 && due <= 500 && due >= 375, `first retry at ${due}`);
  assert.deepEqual(port.poll(due - 1), [], 'nothing before the deadline');
  const retry = port.poll(due);
  assert.ok(one(portSends(retry)).equals(one(portSends(first))), 'retransmitted JOIN is identical');

  const again = toSwitch(sw, retry, a, due);
  assert.equal(sw.size, 1, 'no second session');
  assert.equal(sw.counters.duplicateJoins, 1);
  assert.deepEqual(switchEvents(again), []);
  assert.ok(one(switchSends(again)).datagram.equals(one(switchSends(lost)).datagram), 'same ACCEPT: same index and token');
  const ev = one(portEvents(toPort(port, again, a, due + 1)));
  assert.equal(ev.type === 'joined' && ev.attempts, 2);
  // The late first ACCEPT is now a duplicate: ignored.
  assert.deepEqual(toPort(port, lost, a, due + 2), []);
  assert.equal(port.counters.ignored, 1);
});

test('backoff schedule: 500 ms doubling to 10 s, jitter only shortens', () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 50].map((s) => rejoinBackoffMs(s, 0)),
    [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000],
  );
  assert.equal(rejoinBackoffMs(0, 0.999999), 500 * (1 - 0.25 * 0.999999));
  assert.equal(rejoinBackoffMs(5, 0.5), 10_000 * 0.875);
});

// ---------------------------------------------------------------- keepalive

test('keepalive: switch echoes, port measures RTT (latest, smoothed, min)', () => {
  const sw = new SwitchSessions({ random: seeded(97) });
  const port = newPort(3);
  const a = ep(3);
  joined(sw, port, a, 0);
  assert.equal(port.rttMs, undefined);

  const ka1 = port.poll(10_000);
  const k = msg(one(portSends(ka1)));
  assert.equal(k.type === MessageType.KEEPALIVE && k.receiverIndex, port.remoteIndex);
  assert.equal(port.nextTimeout(), 20_000);
  const ans1 = toSwitch(sw, ka1, a, 10_010);
  assert.equal(one(switchSends(ans1)).datagram.length, KEEPALIVE_SIZE, 'answer no larger than the request');
  const session = sw.sessionForData(port.remoteIndex)!;
  assert.equal(session.lastSeen, 10_010);
  assert.deepEqual(toPort(port, ans1, a, 10_037), []);
  assert.equal(port.rttMs, 37);
  assert.equal(port.srttMs, 37);

  const ans2 = toSwitch(sw, port.poll(20_000), a, 20_020);
  toPort(port, ans2, a, 20_045);
  assert.equal(port.rttMs, 45);
  assert.equal(port.srttMs, 37 + (45 - 37) / 8);
  assert.equal(port.minRttMs, 37);
  // A replayed answer gives no second sample.
  toPort(port, ans2, a, 20_900);
  assert.equal(port.rttMs, 45);
  assert.equal(port.counters.keepaliveAnswers, 3);

  // An answer with the wrong token is not from our switch: ignored.
  const forged = encodeKeepalive({ receiverIndex: port.localIndex, token: Buffer.alloc(8, 1), echo: 3 });
  const before = port.counters.ignored;
  port.onDatagram(forged, 0, forged.length, 21_000);
  assert.equal(port.counters.ignored, before + 1);
});

test('dead switch: 3 unanswered keepalives -> switch-dead, rejoin with a new index on backoff', () => {
  const sw = new SwitchSessions({ random: seeded(96) });
  const port = newPort(4);
  const a = ep(4);
  joined(sw, port, a, 0);
  const oldLocal = port.localIndex;
  const nonce = Buffer.from(port.nonce);

  for (let i = 1; i <= DEAD_AFTER_MISSED_KEEPALIVES; i++) {
    const acts = port.poll(i * 10_000);
    assert.equal(msg(one(portSends(acts))).type, MessageType.KEEPALIVE, `keepalive ${i}`);
    assert.deepEqual(portEvents(acts), []);
  }
  const deadActs = port.poll(40_000);
  assert.deepEqual(portSends(deadActs), []);
  assert.deepEqual(one(portEvents(deadActs)), { type: 'switch-dead', missedKeepalives: 3, silentMs: 40_000 });
  assert.equal(port.state, 'dead');
  assert.notEqual(port.localIndex, oldLocal);
  assert.equal(port.remoteIndex, 0);

  // JOINs at growing intervals while nobody answers.
  const bases = [500, 1000, 2000, 4000, 8000, 10_000, 10_000];
  let now = 40_000;
  for (const base of bases) {
    const due = port.nextTimeout()!;
    const delay = due - now;
    assert.ok(delay <= base && delay >= base * 0.75, `delay ${delay} for base ${base}`);
    now = due;
    const j = msg(one(portSends(port.poll(now))));
    assert.equal(j.type, MessageType.JOIN);
    assert.equal(j.type === MessageType.JOIN && j.senderIndex, port.localIndex);
    assert.ok(j.type === MessageType.JOIN && j.nonce.equals(nonce), 'same port instance');
    assert.equal(port.state, 'joining');
  }
  assert.equal(port.counters.joinsSent, 1 + bases.length);
});

test('an answered keepalive resets the missed count', () => {
  const sw = new SwitchSessions({ random: seeded(95) });
  const port = newPort(5);
  const a = ep(5);
  joined(sw, port, a, 0);
  port.poll(10_000);
  port.poll(20_000);
  toPort(port, toSwitch(sw, port.poll(30_000), a, 30_001), a, 30_002); // third one answered
  for (const t of [40_000, 50_000, 60_000]) assert.equal(msg(one(portSends(port.poll(t)))).type, MessageType.KEEPALIVE);
  assert.equal(one(portEvents(port.poll(70_000))).type, 'switch-dead');
});

// ---------------------------------------------------------------- switch restart

test('switch restart: KEEPALIVE to an unknown index -> REJECT unknown-session -> immediate rejoin', () => {
  const before = new SwitchSessions({ random: seeded(94) });
  const port = newPort(6);
  const a = ep(6);
  joined(before, port, a, 0);
  const oldRemote = port.remoteIndex;

  const after = new SwitchSessions({ random: seeded(93) }); // restarted: empty table
  const swActs = toSwitch(after, port.poll(10_000), a, 10_000);
  const reply = one(switchSends(swActs));
  assert.ok(reply.datagram.length <= KEEPALIVE_SIZE, 'never larger than the trigger');
  const rej = msg(reply.datagram);
  assert.deepEqual(rej.type === MessageType.REJECT && [rej.index, rej.reason], [oldRemote, RejectReason.UNKNOWN_SESSION]);
  assert.equal(after.counters.controlUnknownIndex, 1);

  const portActs = toPort(port, swActs, a, 10_001);
  const ev = one(portEvents(portActs));
  assert.equal(ev.type === 'rejected' && ev.reasonName, 'unknown-session');
  const join = msg(one(portSends(portActs)));
  assert.equal(join.type, MessageType.JOIN, 'rejoins at once, not after dead-switch detection');
  assert.equal(port.state, 'joining');

  const acc = toSwitch(after, portActs, a, 10_002);
  assert.equal(one(portEvents(toPort(port, acc, a, 10_003))).type, 'joined');
  assert.equal(after.size, 1);
  assert.equal(port.remoteIndex, after.sessionForData(port.remoteIndex)?.localIndex);
});

test('REJECT unknown-session naming another index is ignored', () => {
  const sw = new SwitchSessions({ random: seeded(92) });
  const port = newPort(7);
  joined(sw, port, ep(7), 0);
  const wrongIndex = ((port.remoteIndex + 1) >>> 0) || 1;
  const rej = encodeReject({ index: wrongIndex, reason: RejectReason.UNKNOWN_SESSION, text: '' });
  assert.deepEqual(port.onDatagram(rej, 0, rej.length, 1), []);
  assert.equal(port.state, 'joined');
  assert.equal(port.counters.ignored, 1);
});

test('DATA to an unknown index gets a budgeted REJECT no larger than the DATA', () => {
  const sw = new SwitchSessions({ random: seeded(91) });
  const data = encodeData(12345, 0, FRAME);
  let replies = 0;
  for (let i = 0; i < 50; i++) {
    const acts = sw.handleControl(data, 0, data.length, ep(8), 0, 1000);
    for (const s of switchSends(acts)) {
      replies++;
      assert.ok(s.datagram.length <= data.length);
      const m = msg(s.datagram);
      assert.equal(m.type === MessageType.REJECT && m.index, 12345);
    }
  }
  assert.equal(replies, REPLY_BUDGET_BURST);
  assert.equal(sw.counters.dataUnknownIndex, 50);
  assert.equal(sw.counters.repliesSuppressed, 50 - REPLY_BUDGET_BURST);
  // The budget refills with time: one more reply 100 ms later (10 per second).
  assert.equal(switchSends(sw.handleControl(data, 0, data.length, ep(8), 0, 1100)).length, 1);
});

test('LEAVE from the switch (shutdown): port reports it and rejoins on backoff', () => {
  const sw = new SwitchSessions({ random: seeded(90) });
  const port = newPort(9);
  const a = ep(9);
  joined(sw, port, a, 0);
  const bye = sw.leaveAll(500);
  assert.equal(sw.size, 0);
  const left = one(switchEvents(bye));
  assert.equal(left.type === 'left' && left.reason, 'switch-shutdown');
  const acts = toPort(port, bye, a, 501);
  assert.deepEqual(portEvents(acts), [{ type: 'left', by: 'switch' }]);
  assert.equal(port.state, 'dead');
  const due = port.nextTimeout()!;
  assert.ok(due > 501 && due <= 1001);
});

// ---------------------------------------------------------------- leave, restart, rejoin

test('port LEAVE removes its session; a wrong token does not', () => {
  const sw = new SwitchSessions({ random: seeded(89) });
  const port = newPort(10);
  const a = ep(10);
  joined(sw, port, a, 0);
  const forged = Buffer.from(port.token!);
  forged[0]! ^= 1;
  const bad = sw.handleControl(
    Buffer.from([1, MessageType.LEAVE, 0, 0, ...u32(port.remoteIndex), ...forged]),
    0,
    16,
    a,
    0,
    1,
  );
  assert.deepEqual(bad, []);
  assert.equal(sw.size, 1);
  assert.equal(sw.counters.badToken, 1);

  const acts = port.leave(2);
  assert.deepEqual(portEvents(acts), [{ type: 'left', by: 'port' }]);
  assert.equal(port.state, 'idle');
  assert.equal(port.nextTimeout(), undefined);
  const ev = one(switchEvents(toSwitch(sw, acts, a, 3)));
  assert.equal(ev.type === 'left' && ev.reason, 'leave');
  assert.equal(sw.size, 0);
});

function u32(v: number): number[] {
  return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

test('a JOIN with a new nonce from a known address replaces the old session (port restarted)', () => {
  const sw = new SwitchSessions({ random: seeded(88) });
  const a = ep(11);
  const first = newPort(11);
  joined(sw, first, a, 0);
  const oldIndex = first.remoteIndex;
  const restarted = newPort(111); // same address, new process: new nonce
  const acts = toSwitch(sw, restarted.start(100), a, 100);
  const evs = switchEvents(acts);
  assert.deepEqual(
    evs.map((e) => [e.type, e.type === 'left' ? e.reason : '']),
    [
      ['left', 'port-restarted'],
      ['joined', ''],
    ],
  );
  assert.equal(sw.size, 1);
  assert.equal(sw.sessionForData(oldIndex), undefined);
});

test('the same port joining again with a new index replaces its old session (port rejoined)', () => {
  const sw = new SwitchSessions({ random: seeded(87) });
  const port = newPort(12);
  const a = ep(12);
  joined(sw, port, a, 0);
  const oldRemote = port.remoteIndex;
  // The port thinks the switch died (e.g. replies lost), while the switch still has it.
  for (const t of [10_000, 20_000, 30_000, 40_000]) port.poll(t);
  assert.equal(port.state, 'dead');
  const acts = toSwitch(sw, port.poll(port.nextTimeout()!), a, 41_000);
  const left = switchEvents(acts).find((e) => e.type === 'left');
  assert.equal(left?.type === 'left' && left.reason, 'port-rejoined');
  assert.equal(sw.size, 1);
  assert.equal(sw.sessionForData(oldRemote), undefined);
});

// ---------------------------------------------------------------- roaming

test('roaming: KEEPALIVE with the token from a new address moves the session; DATA alone does not', () => {
  const sw = new SwitchSessions({ random: seeded(86) });
  const port = newPort(13);
  const a = ep(13);
  const b = ep(113);
  joined(sw, port, a, 0);
  const session = sw.sessionForData(port.remoteIndex)!;

  // DATA from the new address: dropped and counted, no reply, no move.
  const data = encodeData(port.remoteIndex, port.nextTxCounter(), FRAME);
  assert.equal(sw.endpointMatches(session, b, 0), false);
  assert.deepEqual(sw.handleControl(data, 0, data.length, b, 0, 5000), []);
  assert.equal(sw.counters.dataWrongEndpoint, 1);
  assert.ok(session.endpoint.equals(a));

  // KEEPALIVE with a wrong token from the new address: no move.
  const forged = encodeKeepalive({ receiverIndex: port.remoteIndex, token: Buffer.alloc(8, 9), echo: 1 });
  assert.deepEqual(sw.handleControl(forged, 0, forged.length, b, 0, 6000), []);
  assert.equal(sw.counters.badToken, 1);
  assert.ok(session.endpoint.equals(a));

  // The real keepalive from the new address: moved, logged, answered there.
  const acts = toSwitch(sw, port.poll(10_000), b, 10_000);
  const ev = one(switchEvents(acts));
  assert.equal(ev.type, 'roamed');
  assert.ok(ev.type === 'roamed' && ev.from.equals(a));
  assert.ok(session.endpoint.equals(b));
  assert.ok(one(switchSends(acts)).to.equals(b));
  assert.equal(sw.endpointMatches(session, b, 0), true);
  assert.equal(sw.counters.roams, 1);
  // A restart JOIN from the old address no longer hits this session.
  const other = newPort(213);
  const evs = switchEvents(toSwitch(sw, other.start(11_000), a, 11_000));
  assert.deepEqual(evs.map((e) => e.type), ['joined']);
  assert.equal(sw.size, 2);
});

test('roaming via a retransmitted JOIN (same index and nonce) from a new address', () => {
  const sw = new SwitchSessions({ random: seeded(85) });
  const port = newPort(14);
  const a = ep(14);
  const b = ep(114);
  const join = port.start(0);
  toSwitch(sw, join, a, 0); // ACCEPT lost, and the NAT rebinds before the retry
  const acts = toSwitch(sw, port.poll(port.nextTimeout()!), b, 600);
  assert.deepEqual(switchEvents(acts).map((e) => e.type), ['roamed']);
  assert.ok(one(switchSends(acts)).to.equals(b));
  assert.equal(sw.size, 1);
});

// ---------------------------------------------------------------- expiry and limits

test('sweep expires sessions silent for longer than the port timeout', () => {
  const sw = new SwitchSessions({ random: seeded(84), keepaliveIntervalS: 5, portTimeoutS: 15 });
  const p1 = newPort(15);
  const p2 = newPort(16);
  joined(sw, p1, ep(15), 0);
  joined(sw, p2, ep(16), 0);
  assert.equal(p1.keepaliveIntervalMs, 5000, 'interval comes from ACCEPT');
  assert.equal(p1.portTimeoutMs, 15_000);
  sw.touch(sw.sessionForData(p2.remoteIndex)!, 10_000);
  assert.deepEqual(sw.sweep(15_000), [], 'exactly at the timeout: still alive');
  const evs = switchEvents(sw.sweep(15_001));
  const ev = one(evs);
  assert.equal(ev.type === 'timeout' && ev.session.remoteIndex, p1.localIndex);
  assert.equal(ev.type === 'timeout' && ev.silentMs, 15_001);
  assert.equal(sw.sessionForData(p1.remoteIndex), undefined);
  assert.notEqual(sw.sessionForData(p2.remoteIndex), undefined);
  assert.equal(sw.counters.timeouts, 1);
  assert.throws(() => new SwitchSessions({ keepaliveIntervalS: 10, portTimeoutS: 15 }), RangeError);
});

test('session table full: REJECT switch-full, port keeps retrying and gets in once there is room', () => {
  const sw = new SwitchSessions({ random: seeded(83), maxSessions: 2 });
  const p1 = newPort(17);
  joined(sw, p1, ep(17), 0);
  joined(sw, newPort(18), ep(18), 0);
  const p3 = newPort(19);
  const c = ep(19);
  const acts = toSwitch(sw, p3.start(100), c, 100);
  assert.equal(sw.size, 2);
  assert.equal(sw.counters.rejectedFull, 1);
  assert.equal(switchEvents(acts).find((e) => e.type === 'rejected')?.type, 'rejected');
  const pe = one(portEvents(toPort(p3, acts, c, 101)));
  assert.equal(pe.type === 'rejected' && pe.reason, RejectReason.SWITCH_FULL);
  assert.equal(p3.state, 'joining');

  // A restarted port at a known address still gets in: replacement happens before the limit check.
  const restarted = newPort(117);
  const r = toSwitch(sw, restarted.start(200), ep(17), 200);
  assert.deepEqual(switchEvents(r).map((e) => e.type), ['left', 'joined']);
  toPort(restarted, r, ep(17), 201);
  assert.equal(restarted.state, 'joined');

  toSwitch(sw, restarted.leave(300), ep(17), 300);
  assert.equal(sw.size, 1);
  const retry = toSwitch(sw, p3.poll(p3.nextTimeout()!), c, 700);
  assert.equal(one(portEvents(toPort(p3, retry, c, 701))).type, 'joined');
});

// ---------------------------------------------------------------- versions

test('switch answers a datagram of another version with VERSION_UNSUPPORTED, within budget', () => {
  const sw = new SwitchSessions({ random: seeded(82) });
  const port = newPort(20);
  const join = one(portSends(port.start(0)));
  join[0] = 2; // a v2 port
  const acts = sw.handleControl(join, 0, join.length, ep(20), 0, 0);
  const vu = one(switchSends(acts));
  assert.deepEqual([...vu.datagram], [1, 0xff, 1, 1]);
  const ev = one(switchEvents(acts));
  assert.deepEqual(ev.type === 'incompatible-version' && [ev.direction, ev.peerVersion], ['we-refused', 2]);
  assert.equal(sw.size, 0);

  let sent = 1;
  for (let i = 0; i < 100; i++) sent += switchSends(sw.handleControl(join, 0, join.length, ep(20), 0, 10)).length;
  assert.equal(sent, REPLY_BUDGET_BURST, 'no more than the burst at once: not an amplifier');
  assert.equal(sw.counters.badVersion, 101);
  assert.equal(sw.counters.versionUnsupportedSent, REPLY_BUDGET_BURST);

  // Never answered: a VERSION_UNSUPPORTED itself (no ping-pong).
  const theirs = encodeVersionUnsupported(2, 2, 3);
  const acts2 = sw.handleControl(theirs, 0, theirs.length, ep(21), 0, 5000);
  assert.deepEqual(switchSends(acts2), []);
  assert.equal(sw.counters.versionUnsupportedReceived, 1);
  const ev2 = one(switchEvents(acts2));
  assert.deepEqual(ev2.type === 'incompatible-version' && [ev2.direction, ev2.peerLowest, ev2.peerHighest], ['peer-refused', 2, 3]);
});

test('port told its version is unsupported: reports it and slows its JOINs to the maximum', () => {
  const port = newPort(22);
  port.start(0);
  const vu = encodeVersionUnsupported(2, 2, 3);
  const ev = one(portEvents(port.onDatagram(vu, 0, vu.length, 10)));
  assert.deepEqual(ev, { type: 'incompatible-version', direction: 'peer-refused', peerVersion: 2, peerLowest: 2, peerHighest: 3 });
  assert.ok(port.nextTimeout()! >= 10 + REJOIN_BACKOFF_MAX_MS);
  const due = port.nextTimeout()!;
  port.poll(due);
  assert.ok(port.nextTimeout()! - due >= REJOIN_BACKOFF_MAX_MS * 0.75, 'stays slow');
  // A VERSION_UNSUPPORTED that lists our version is nonsense: ignored.
  const bogus = encodeVersionUnsupported(1, 1, 2);
  assert.deepEqual(port.onDatagram(bogus, 0, bogus.length, 20), []);
  assert.equal(port.counters.ignored, 1);
});

test('port receiving another version answers VERSION_UNSUPPORTED and reports it', () => {
  const port = newPort(23);
  port.start(0);
  const accept = encodeAccept({ senderIndex: 5, receiverIndex: port.localIndex, token: Buffer.alloc(8), keepaliveIntervalS: 10, portTimeoutS: 30 });
  accept[0] = 3;
  const acts = port.onDatagram(accept, 0, accept.length, 1);
  assert.deepEqual([...one(portSends(acts))], [1, 0xff, 1, 1]);
  assert.deepEqual(one(portEvents(acts)), { type: 'incompatible-version', direction: 'we-refused', peerVersion: 3 });
  assert.equal(port.state, 'joining');
  assert.equal(port.counters.badVersion, 1);
});

// ---------------------------------------------------------------- hostile input

test('malformed input is counted, reported within budget, and never throws', () => {
  const sw = new SwitchSessions({ random: seeded(81) });
  const port = newPort(24);
  let s = 7;
  const buf = Buffer.alloc(80);
  let events = 0;
  for (let i = 0; i < 3000; i++) {
    const len = (s = (s * 1103515245 + 12345) >>> 0) % 80;
    for (let j = 0; j < len; j++) buf[j] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
    if (i % 3 === 0 && len >= 4) [buf[0], buf[2], buf[3]] = [1, 0, 0];
    events += switchEvents(sw.handleControl(buf, 0, len, ep(25), 0, 0)).length;
    port.onDatagram(buf, 0, len, 0);
  }
  assert.ok(sw.counters.malformed > 0);
  assert.ok(events <= 5 + sw.size, `events at one instant are budgeted: ${events}`);
  const short = Buffer.from([1, 5]);
  const acts = sw.handleControl(short, 0, 2, ep(26), 0, 60_000);
  assert.equal(sw.counters.malformedBy['too-short']! >= 1, true);
  const ev = one(switchEvents(acts));
  assert.equal(ev.type === 'malformed' && ev.reason, 'too-short');
  // ACCEPT sent to a switch is valid but the wrong direction.
  const accept = encodeAccept({ senderIndex: 1, receiverIndex: 2, token: Buffer.alloc(8), keepaliveIntervalS: 10, portTimeoutS: 30 });
  const before = sw.counters.unexpectedType;
  sw.handleControl(accept, 0, accept.length, ep(26), 0, 60_000);
  assert.equal(sw.counters.unexpectedType, before + 1);
  // JOIN to a port is the wrong direction too.
  const join = encodeJoin({ senderIndex: 1, nonce: Buffer.alloc(8), mac: Buffer.from([2, 0, 0, 0, 0, 1]), name: 'x' });
  const ignored = port.counters.ignored;
  port.onDatagram(join, 0, join.length, 1);
  assert.equal(port.counters.ignored, ignored + 1);
});

test('ReplyBudget: burst, then refill at the configured rate', () => {
  const b = new ReplyBudget(10, 3);
  assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false]);
  assert.equal(b.take(50), false, 'half a token');
  assert.equal(b.take(100), true, 'one token after 100 ms');
  assert.equal(b.take(10_000), true);
  assert.deepEqual([b.take(10_000), b.take(10_000), b.take(10_000)], [true, true, false], 'capped at burst');
});

test('PortSession refuses a bad local configuration up front', () => {
  assert.throws(() => new PortSession({ name: 'x'.repeat(33), mac: Buffer.from([2, 0, 0, 0, 0, 1]) }), RangeError);
  assert.throws(() => new PortSession({ name: 'ok', mac: Buffer.from([1, 0, 0, 0, 0, 1]) }), RangeError);
  assert.equal(formatEndpoint(Buffer.from('20010db8000000000000000000000001' + '1f90' + '0000', 'hex')), '[2001:db8:0:0:0:0:0:1]:8080');
});
