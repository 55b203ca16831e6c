// The transport policy (lib/protocol/transport.ts) driven by hand with a fake
// host and a hand-set session view: UDP first, the fallback to TCP and then
// WebSocket, UDP probes while on a stream and the hysteresis of the return,
// reconnects, the single-kind modes, and status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TransportPolicy,
  type SessionView,
  type StreamKind,
  type TransportHost,
  type TransportKind,
  type TransportPolicyOptions,
} from '../../lib/protocol/transport.js';
import {
  STREAM_CONNECT_TIMEOUT_MS,
  STREAM_LINGER_MS,
  STREAM_RETRY_INITIAL_MS,
  TRANSPORT_MISSED_PINGS,
  UDP_HANDSHAKE_FALLBACK_MS,
  UDP_PROBE_INTERVAL_MS,
  UDP_PROBE_TIMEOUT_MS,
  UDP_STABLE_MS,
  UDP_STABLE_PROBES,
} from '../../lib/protocol/constants.js';

/** Tick period of the simulations (the client ticks every few hundred ms; finer here, so times are exact). */
const STEP = 50;
const START = 1_000_000;

type Call =
  | { op: 'connect'; at: number; kind: StreamKind }
  | { op: 'closeStream'; at: number; reason: string }
  | { op: 'probeUdp'; at: number; seq: number }
  | { op: 'switched'; at: number; from: TransportKind; to: TransportKind; reason: string };

function setup(opts: Partial<TransportPolicyOptions> = {}) {
  let now = START;
  const calls: Call[] = [];
  const view: SessionView = { joined: false, missedPings: 0 };
  const host: TransportHost = {
    connect: (kind) => void calls.push({ op: 'connect', at: now, kind }),
    closeStream: (reason) => void calls.push({ op: 'closeStream', at: now, reason }),
    probeUdp: (seq) => void calls.push({ op: 'probeUdp', at: now, seq }),
    switched: (from, to, reason) => {
      calls.push({ op: 'switched', at: now, from, to, reason });
      // As the client does: the session pings on the new transport, and pings lost on the old one stop counting.
      view.missedPings = 0;
    },
  };
  const policy = new TransportPolicy(host, { mode: 'auto', udp: true, tcp: true, ws: true, ...opts });
  /** Which probes the switch answers (at once, at the time they are sent); none by default. */
  let answers: (seq: number, n: number) => boolean = () => false;
  let probesSeen = 0;
  const of = <O extends Call['op']>(op: O) => calls.filter((c): c is Extract<Call, { op: O }> => c.op === op);
  const t = {
    policy,
    calls,
    view,
    get now() {
      return now;
    },
    connects: () => of('connect'),
    closes: () => of('closeStream'),
    probes: () => of('probeUdp'),
    switches: () => of('switched'),
    answer(fn: (seq: number, n: number) => boolean) {
      answers = fn;
    },
    /** Whether the switch is being heard (over whatever carries the session now): lastHeardAt follows the clock. */
    hearing: false,
    tick() {
      if (t.hearing) view.lastHeardAt = now;
      policy.tick(now, view);
      const probes = of('probeUdp');
      for (; probesSeen < probes.length; probesSeen++) {
        const p = probes[probesSeen]!;
        if (answers(p.seq, probesSeen)) policy.probeAck(p.seq, now);
      }
    },
    /** Tick every STEP for `ms`; stops early (and returns true) once `until` holds after a tick. */
    run(ms: number, until?: () => boolean): boolean {
      const end = now + ms;
      while (now < end) {
        now += STEP;
        t.tick();
        if (until?.()) return true;
      }
      return false;
    },
    /** UDP silent from the start: the fallback connects TCP, it comes up, the session joins over it (the next tick probes). */
    onTcp() {
      t.tick();
      t.run(UDP_HANDSHAKE_FALLBACK_MS, () => t.connects().length > 0);
      assert.deepEqual(t.connects().map((c) => c.kind), ['tcp']);
      policy.streamUp('tcp', now);
      view.joined = true;
      view.missedPings = 0;
      t.hearing = true;
      assert.equal(policy.kind, 'tcp');
    },
  };
  return t;
}

test('auto starts on UDP: nothing is opened or probed while the handshake has time to be answered', () => {
  const t = setup();
  t.tick();
  assert.equal(t.policy.kind, 'udp');
  assert.equal(t.policy.onStream, false);
  assert.deepEqual(t.policy.status(t.now), { mode: 'auto', current: 'udp', reason: 'udp: tried first', since: START, switches: 0 });
  t.run(UDP_HANDSHAKE_FALLBACK_MS - STEP);
  assert.deepEqual(t.calls, []);
  // Joined over UDP: it stays there however long it runs.
  t.view.joined = true;
  t.run(10 * UDP_HANDSHAKE_FALLBACK_MS);
  assert.deepEqual(t.calls, []);
  assert.equal(t.policy.kind, 'udp');
});

test('no UDP answer for UDP_HANDSHAKE_FALLBACK_MS: connect tcp; once up, switched udp -> tcp because of it', () => {
  const t = setup();
  t.tick();
  assert.ok(t.run(UDP_HANDSHAKE_FALLBACK_MS, () => t.connects().length > 0));
  assert.deepEqual(t.connects(), [{ op: 'connect', at: START + UDP_HANDSHAKE_FALLBACK_MS, kind: 'tcp' }]);
  assert.equal(t.policy.kind, 'udp', 'still on UDP while tcp connects');
  assert.deepEqual(t.policy.status(t.now).stream, { kind: 'tcp', state: 'connecting' });
  assert.deepEqual(t.switches(), []);

  t.run(200);
  t.policy.streamUp('tcp', t.now);
  const sw = t.switches();
  assert.equal(sw.length, 1);
  assert.equal(sw[0]!.from, 'udp');
  assert.equal(sw[0]!.to, 'tcp');
  assert.ok(sw[0]!.reason.startsWith('tcp: no UDP answer'), sw[0]!.reason);
  assert.equal(t.policy.kind, 'tcp');
  assert.equal(t.policy.onStream, true);
  const st = t.policy.status(t.now);
  assert.equal(st.current, 'tcp');
  assert.equal(st.reason, sw[0]!.reason);
  assert.equal(st.since, t.now);
  assert.deepEqual(st.stream, { kind: 'tcp', state: 'up' });
  assert.equal(st.switches, 1);
  assert.equal(t.connects().length, 1, 'one connect');
});

test('joined on UDP, then TRANSPORT_MISSED_PINGS pings unanswered: connect tcp', () => {
  const t = setup();
  t.view.joined = true;
  t.tick();
  t.run(5 * UDP_HANDSHAKE_FALLBACK_MS);
  t.view.missedPings = TRANSPORT_MISSED_PINGS - 1;
  t.run(1000);
  assert.deepEqual(t.connects(), [], 'one fewer is not enough');
  t.view.missedPings = TRANSPORT_MISSED_PINGS;
  t.tick();
  assert.deepEqual(t.connects().map((c) => [c.kind, c.at]), [['tcp', t.now]]);
  // The session pings again on the stream (kick): nothing unanswered there yet.
  t.view.missedPings = 0;
  t.policy.streamUp('tcp', t.now);
  assert.match(t.switches()[0]!.reason, new RegExp(`^tcp: ${TRANSPORT_MISSED_PINGS} pings unanswered over UDP`));
});

test('on tcp and joined: UDP is probed every UDP_PROBE_INTERVAL_MS, not before the session joined over it', () => {
  const t = setup();
  t.tick();
  t.run(UDP_HANDSHAKE_FALLBACK_MS, () => t.connects().length > 0);
  t.policy.streamUp('tcp', t.now);
  t.run(1000);
  assert.deepEqual(t.probes(), [], 'not joined on the stream yet: no probe');
  t.view.joined = true;
  const joinedAt = t.now + STEP;
  t.run(5 * UDP_PROBE_INTERVAL_MS);
  const probes = t.probes();
  assert.equal(probes.length, 5);
  assert.equal(probes[0]!.at, joinedAt, 'the first at once');
  for (let i = 1; i < probes.length; i++) assert.equal(probes[i]!.at - probes[i - 1]!.at, UDP_PROBE_INTERVAL_MS);
  assert.equal(new Set(probes.map((p) => p.seq)).size, probes.length, 'each probe its own sequence');
  assert.equal(t.policy.kind, 'tcp', 'unanswered probes do not move anything');
  assert.equal(t.policy.status(t.now).udpStableMs, undefined);
});

/** When every probe answered from `firstAck` on (one every interval) first meets both UDP_STABLE_MS and UDP_STABLE_PROBES. */
function stableAt(firstAck: number): number {
  // At a tick, the probes counted are those answered before it (one sent at that tick is answered after).
  return Math.max(firstAck + UDP_STABLE_MS, firstAck + (UDP_STABLE_PROBES - 1) * UDP_PROBE_INTERVAL_MS + STEP);
}

test('every probe answered for UDP_STABLE_MS (and UDP_STABLE_PROBES): back to udp; the stream closes STREAM_LINGER_MS later', () => {
  const t = setup();
  t.onTcp();
  t.answer(() => true);
  t.run(UDP_PROBE_INTERVAL_MS, () => t.probes().length > 0);
  const firstAck = t.probes()[0]!.at;
  const expected = stableAt(firstAck);
  t.run(UDP_STABLE_MS + 2 * UDP_PROBE_INTERVAL_MS, () => t.switches().length > 1);
  const back = t.switches()[1]!;
  assert.equal(back.at, expected, `back on UDP ${back.at - firstAck} ms after the first answer`);
  assert.equal(back.from, 'tcp');
  assert.equal(back.to, 'udp');
  assert.ok(back.reason.startsWith('udp: answered every probe'), back.reason);
  assert.ok(t.probes().filter((p) => p.at < back.at).length >= UDP_STABLE_PROBES);
  assert.equal(t.policy.kind, 'udp');
  assert.deepEqual(t.closes(), [], 'the stream lingers for what is in flight');
  assert.deepEqual(t.policy.status(t.now).stream, { kind: 'tcp', state: 'up' });

  const probesAtSwitch = t.probes().length;
  t.run(STREAM_LINGER_MS - STEP);
  assert.deepEqual(t.closes(), [], 'not before STREAM_LINGER_MS');
  t.run(STEP);
  assert.equal(t.closes().length, 1);
  assert.equal(t.closes()[0]!.at, back.at + STREAM_LINGER_MS);
  assert.equal(t.policy.status(t.now).stream, undefined);
  t.run(3 * UDP_PROBE_INTERVAL_MS);
  assert.equal(t.probes().length, probesAtSwitch, 'no probes once on UDP');
  assert.equal(t.connects().length, 1, 'nothing reopened');
  assert.equal(t.policy.status(t.now).switches, 2);
});

test('a probe unanswered for UDP_PROBE_TIMEOUT_MS restarts the stability count', () => {
  const t = setup();
  t.onTcp();
  // The second probe is lost; every other one is answered.
  t.answer((_seq, n) => n !== 1);
  t.run(UDP_PROBE_INTERVAL_MS, () => t.probes().length > 0);
  const firstAck = t.probes()[0]!.at;
  const lostAt = firstAck + UDP_PROBE_INTERVAL_MS;
  t.run(lostAt + UDP_PROBE_TIMEOUT_MS - STEP - t.now);
  assert.ok(t.policy.status(t.now).udpStableMs! > 0, 'counting before the loss shows');
  t.run(STEP);
  assert.equal(t.policy.status(t.now).udpStableMs, undefined, 'the count restarts when the probe times out');

  const wouldHave = stableAt(firstAck);
  assert.equal(t.run(wouldHave - t.now, () => t.switches().length > 1), false, 'no switch at the time it would have happened without the loss');
  assert.equal(t.policy.kind, 'tcp');
  // Counting again from the first answer after the loss.
  const restartAck = lostAt + UDP_PROBE_INTERVAL_MS;
  t.run(UDP_STABLE_MS + 2 * UDP_PROBE_INTERVAL_MS, () => t.switches().length > 1);
  const back = t.switches()[1];
  assert.ok(back, 'back on UDP in the end');
  assert.equal(back.at, stableAt(restartAck));
  assert.ok(back.reason.startsWith('udp: answered every probe'), back.reason);
});

test('tcp refused before it came up, a WebSocket URL known: connect ws at once', () => {
  const t = setup();
  t.tick();
  t.run(UDP_HANDSHAKE_FALLBACK_MS, () => t.connects().length > 0);
  t.run(100);
  t.policy.streamDown('tcp', 'ECONNREFUSED', t.now);
  assert.deepEqual(t.connects().map((c) => [c.kind, c.at]), [['tcp', START + UDP_HANDSHAKE_FALLBACK_MS], ['ws', t.now]]);
  assert.deepEqual(t.switches(), [], 'still on UDP: nothing was ever up');
  assert.deepEqual(t.closes(), [], 'the failed stream is the host\'s to forget');
  t.policy.streamUp('ws', t.now + 20);
  const sw = t.switches();
  assert.equal(sw.length, 1);
  assert.equal(sw[0]!.to, 'ws');
  assert.match(sw[0]!.reason, /^ws: tcp: ECONNREFUSED/);
});

test('tcp that does not connect within STREAM_CONNECT_TIMEOUT_MS is closed and ws is tried', () => {
  const t = setup();
  t.tick();
  t.run(UDP_HANDSHAKE_FALLBACK_MS, () => t.connects().length > 0);
  const connectAt = t.now;
  t.run(STREAM_CONNECT_TIMEOUT_MS, () => t.connects().length > 1);
  assert.equal(t.now, connectAt + STREAM_CONNECT_TIMEOUT_MS);
  assert.deepEqual(t.connects().map((c) => c.kind), ['tcp', 'ws']);
  assert.equal(t.closes().length, 1);
  assert.match(t.closes()[0]!.reason, /did not connect/);
});

test('tcp refused and no WebSocket URL: back to udp ("udp: tried again"), tcp again once UDP stays silent', () => {
  const t = setup({ ws: false });
  t.tick();
  t.run(UDP_HANDSHAKE_FALLBACK_MS, () => t.connects().length > 0);
  t.policy.streamDown('tcp', 'ECONNREFUSED', t.now);
  const failedAt = t.now;
  assert.equal(t.connects().length, 1, 'nothing else to connect');
  assert.equal(t.policy.kind, 'udp');
  assert.equal(t.policy.target, 'udp');
  assert.match(t.policy.status(t.now).reason, /^udp: tried again \(tcp: ECONNREFUSED\)/);
  assert.deepEqual(t.switches(), [], 'it was on UDP all along');
  t.run(UDP_HANDSHAKE_FALLBACK_MS, () => t.connects().length > 1);
  assert.deepEqual(t.connects().map((c) => c.kind), ['tcp', 'tcp']);
  assert.equal(t.connects()[1]!.at, failedAt + UDP_HANDSHAKE_FALLBACK_MS);
});

/** On tcp and joined; then the stream closes. `stillJoined`: what the session says right after. */
function closedAfterWorking(stillJoined: boolean) {
  const t = setup();
  t.onTcp();
  t.run(3 * UDP_PROBE_INTERVAL_MS);
  t.policy.streamDown('tcp', 'ECONNRESET', t.now);
  // Nothing is heard once the stream is gone (UDP is still blocked).
  t.hearing = false;
  const closedAt = t.now;
  const sw = t.switches();
  assert.equal(sw.length, 2);
  assert.equal(sw[1]!.from, 'tcp');
  assert.equal(sw[1]!.to, 'udp', 'UDP meanwhile');
  assert.match(sw[1]!.reason, /^udp: the tcp stream closed \(ECONNRESET\)/);
  t.view.joined = stillJoined;
  t.run(STREAM_RETRY_INITIAL_MS - STEP);
  assert.equal(t.connects().length, 1, 'not before STREAM_RETRY_INITIAL_MS');
  t.run(STEP);
  assert.deepEqual(t.connects().map((c) => [c.kind, c.at]), [['tcp', START + UDP_HANDSHAKE_FALLBACK_MS], ['tcp', closedAt + STREAM_RETRY_INITIAL_MS]], 'the same kind again');
  t.policy.streamUp('tcp', t.now);
  assert.match(t.switches()[2]!.reason, /^tcp: reconnected after the stream closed \(ECONNRESET\)/);
}

test('a tcp stream that worked and closed is reconnected after STREAM_RETRY_INITIAL_MS (session handshaking again)', () => {
  closedAfterWorking(false);
});

test(
  'a tcp stream that worked and closed is reconnected after STREAM_RETRY_INITIAL_MS (session still joined, as PortSession reports it)',
  () => {
    closedAfterWorking(true);
  },
);

test(
  'UDP failing while the old stream still lingers moves datagrams back onto that stream',
  () => {
    const t = setup();
    t.onTcp();
    t.answer(() => true);
    t.run(UDP_STABLE_MS + 3 * UDP_PROBE_INTERVAL_MS, () => t.switches().length > 1);
    assert.equal(t.policy.kind, 'udp');
    t.run(STREAM_LINGER_MS / 2);
    t.view.missedPings = TRANSPORT_MISSED_PINGS;
    t.tick();
    t.tick();
    assert.equal(t.policy.kind, 'tcp', 'the open stream carries the datagrams again');
    assert.deepEqual(t.switches().map((s) => [s.from, s.to]), [['udp', 'tcp'], ['tcp', 'udp'], ['udp', 'tcp']]);
    assert.deepEqual(t.closes(), [], 'the working stream is not closed');
  },
);

test('mode tcp: connects tcp at once, retries on its backoff, never probes UDP', () => {
  const t = setup({ mode: 'tcp' });
  t.tick();
  assert.deepEqual(t.connects(), [{ op: 'connect', at: START, kind: 'tcp' }]);
  assert.equal(t.policy.status(t.now).reason, 'tcp: --transport tcp');
  t.policy.streamDown('tcp', 'ECONNREFUSED', t.now);
  t.run(STREAM_RETRY_INITIAL_MS - STEP);
  assert.equal(t.connects().length, 1, 'waits out the backoff');
  t.run(STEP);
  assert.deepEqual(t.connects().map((c) => c.kind), ['tcp', 'tcp'], 'the same kind only');
  t.policy.streamUp('tcp', t.now);
  assert.equal(t.policy.kind, 'tcp');
  t.view.joined = true;
  t.answer(() => true);
  t.run(3 * (UDP_STABLE_MS + STREAM_LINGER_MS));
  assert.deepEqual(t.probes(), [], 'never probes UDP');
  assert.equal(t.policy.kind, 'tcp');
  assert.equal(t.connects().length, 2);
  assert.deepEqual(t.closes(), []);
});

test('mode udp: never connects anything, even after long silence and unanswered pings', () => {
  const t = setup({ mode: 'udp' });
  t.tick();
  t.run(10 * UDP_HANDSHAKE_FALLBACK_MS);
  t.view.joined = true;
  t.view.missedPings = 10 * TRANSPORT_MISSED_PINGS;
  t.run(10 * UDP_HANDSHAKE_FALLBACK_MS);
  assert.deepEqual(t.calls, []);
  assert.deepEqual(t.policy.status(t.now), { mode: 'udp', current: 'udp', reason: 'udp: --transport udp', since: START, switches: 0 });
});

test('a mode without an address for it is refused; auto without UDP starts with tcp', () => {
  assert.throws(() => setup({ mode: 'ws', ws: false }), /no address for transport ws/);
  const t = setup({ udp: false, tcp: false, ws: true });
  t.tick();
  assert.deepEqual(t.connects().map((c) => c.kind), ['ws']);
});

test('status: mode, current, reason, since, stream, udpStableMs and switches through a round trip', () => {
  const t = setup();
  t.onTcp();
  const up = t.switches()[0]!;
  let st = t.policy.status(t.now);
  assert.equal(st.mode, 'auto');
  assert.equal(st.current, 'tcp');
  assert.equal(st.since, up.at);
  assert.equal(st.reason, up.reason);
  assert.deepEqual(st.stream, { kind: 'tcp', state: 'up' });
  assert.equal(st.udpStableMs, undefined);
  assert.equal(st.switches, 1);

  t.answer(() => true);
  t.run(UDP_PROBE_INTERVAL_MS, () => t.probes().length > 0);
  const firstAck = t.now;
  t.run(3000);
  assert.equal(t.policy.status(t.now).udpStableMs, t.now - firstAck);
  t.run(UDP_STABLE_MS + UDP_PROBE_INTERVAL_MS, () => t.switches().length > 1);
  st = t.policy.status(t.now);
  assert.equal(st.current, 'udp');
  assert.equal(st.since, t.now);
  assert.equal(st.switches, 2);
  assert.equal(st.udpStableMs, undefined, 'no probe count once back on UDP');
  assert.deepEqual(st.stream, { kind: 'tcp', state: 'up' }, 'lingering');
  t.run(STREAM_LINGER_MS);
  assert.equal(t.policy.status(t.now).stream, undefined);
});
