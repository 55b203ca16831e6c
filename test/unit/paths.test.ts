// The direct path of one pair (lib/protocol/paths.ts), driven by hand: which
// candidates get probed when, what a pong proves, how a silent path falls back
// to the relay within the no-blackout bound and comes back, hysteresis between
// candidates, idle, and the reasons status gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeAddress, formatAddress } from '../../lib/io/address.js';
import { PeerPaths, Route, type PathContext } from '../../lib/protocol/paths.js';
import {
  EndpointFlags,
  NatMapping,
  PATH_DOUBT_GRACE_MS,
  PATH_HEARTBEAT_MS,
  PATH_IDLE_MS,
  PATH_RETRY_MS,
  PATH_TRUST_MS,
} from '../../lib/protocol/constants.js';

const PUBLIC = encodeAddress('198.51.100.12', 40000);
const LOCAL = encodeAddress('10.2.0.2', 51000);
const OTHER = encodeAddress('203.0.113.9', 7000);

interface Probe {
  addr: string;
  id: number;
  at: number;
}

function setup(ctx: Partial<PathContext> = {}) {
  const probes: Probe[] = [];
  let rendezvous = 0;
  let changes = 0;
  let now = 1_000_000;
  const c: PathContext = { disabled: false, nat: NatMapping.ENDPOINT_INDEPENDENT, ...ctx };
  const paths = new PeerPaths(
    {
      probe: (addr, id) => {
        probes.push({ addr: formatAddress(addr), id, at: now });
        return true;
      },
      rendezvous: () => void rendezvous++,
      changed: () => void changes++,
    },
    c,
    now,
  );
  return {
    paths,
    probes,
    ctx: c,
    get rendezvous() {
      return rendezvous;
    },
    get changes() {
      return changes;
    },
    get now() {
      return now;
    },
    advance(ms: number) {
      now += ms;
    },
    /** The peer answers the last probe sent to `addr`. */
    answer(addr: Buffer, after = 1) {
      now += after;
      const p = [...probes].reverse().find((x) => x.addr === formatAddress(addr));
      assert.ok(p, `a probe went to ${formatAddress(addr)}`);
      paths.pong(addr, 0, p.id, now);
    },
  };
}

test('an introduction probes every candidate at once; the first pong makes the path direct, on that address', () => {
  const t = setup();
  t.paths.activity(t.now);
  assert.equal(t.rendezvous, 1, 'the first traffic asks the switch for an introduction');
  t.paths.introduce(0, NatMapping.ENDPOINT_INDEPENDENT, PUBLIC, [LOCAL], t.now);
  assert.deepEqual(t.probes.map((p) => p.addr).sort(), [formatAddress(LOCAL), formatAddress(PUBLIC)].sort());
  assert.equal(t.paths.route(t.now), Route.RELAY, 'no pong yet: relayed');
  assert.match(t.paths.reason(t.now) ?? '', /probes unanswered since/);
  t.answer(PUBLIC, 3);
  assert.equal(t.paths.route(t.now), Route.DIRECT);
  assert.equal(formatAddress(t.paths.endpoint!), formatAddress(PUBLIC));
  assert.equal(t.paths.rttMs, 3);
  assert.equal(t.changes, 1);
  assert.equal(t.paths.reason(t.now), undefined);
});

test('a heartbeat that leaves late (a busy event loop) raises no doubt; a probe unanswered past the grace does', () => {
  const t = setup();
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [], t.now);
  t.answer(PUBLIC, 2);
  // The loop was blocked for 900 ms: no poll, so no heartbeat went out. The path is as good as it was.
  t.advance(900);
  assert.equal(t.paths.route(t.now), Route.DIRECT, 'no probe outstanding: no doubt, however long since the last pong');
  t.paths.activity(t.now);
  t.paths.poll(t.now);
  assert.equal(t.probes.at(-1)!.at, t.now, 'the late poll sends the heartbeat');
  t.advance(150);
  assert.equal(t.paths.route(t.now), Route.DIRECT, 'the heartbeat is within its grace');
  t.answer(PUBLIC, 5);
  assert.equal(t.paths.route(t.now), Route.DIRECT);
  // The next heartbeat goes unanswered: past the grace, frames go both ways.
  t.advance(PATH_HEARTBEAT_MS);
  t.paths.poll(t.now);
  t.advance(PATH_DOUBT_GRACE_MS + 10);
  assert.equal(t.paths.route(t.now), Route.BOTH);
});

test('a pong with an id never sent, or from an address that is no candidate, proves nothing', () => {
  const t = setup();
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [], t.now);
  t.paths.pong(PUBLIC, 0, 0xdeadbeef, t.now + 1);
  t.paths.pong(OTHER, 0, t.probes[0]!.id, t.now + 1);
  assert.equal(t.paths.route(t.now + 1), Route.RELAY);
  assert.equal(t.changes, 0);
});

test('a direct path that stops answering: frames go both ways within a second, relay only after the trust time; a later pong takes it back', () => {
  const t = setup();
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [], t.now);
  t.answer(PUBLIC);
  const lastPong = t.now;
  // Heartbeats while frames flow; the path died right after the last pong.
  let firstBoth = -1;
  for (let ms = 0; ms <= PATH_TRUST_MS + 300; ms += 50) {
    t.advance(50);
    t.paths.activity(t.now);
    t.paths.poll(t.now);
    const r = t.paths.route(t.now);
    if (r === Route.BOTH && firstBoth < 0) firstBoth = t.now - lastPong;
    if (r === Route.RELAY) break;
  }
  assert.ok(firstBoth > 0 && firstBoth <= 1000, `frames also on the relay ${firstBoth} ms after the last pong`);
  assert.equal(t.paths.route(t.now), Route.RELAY);
  assert.ok(t.now - lastPong > PATH_TRUST_MS && t.now - lastPong <= PATH_TRUST_MS + 100);
  assert.match(t.paths.reason(t.now) ?? '', /stopped answering: probes unanswered since/);
  const hb = t.probes.filter((p) => p.at > lastPong && p.at <= lastPong + PATH_TRUST_MS).length;
  assert.ok(hb >= Math.floor(PATH_TRUST_MS / PATH_HEARTBEAT_MS) - 1, `heartbeats while in doubt (${hb})`);
  assert.ok(t.rendezvous >= 2, 'losing the path asks for a new introduction');
  // The path answers again: the retry probes find it.
  const before = t.probes.length;
  for (let ms = 0; ms < PATH_RETRY_MS + 500 && t.probes.length === before; ms += 250) {
    t.advance(250);
    t.paths.activity(t.now);
    t.paths.poll(t.now);
  }
  assert.ok(t.probes.length > before, 'retries probe the lost candidate');
  t.answer(PUBLIC);
  assert.equal(t.paths.route(t.now), Route.DIRECT);
  assert.equal(t.changes, 3, 'direct, relayed, direct');
});

test('hysteresis: a slightly faster candidate does not take over, a much faster one does', () => {
  const t = setup();
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [LOCAL], t.now);
  t.answer(PUBLIC, 10);
  assert.equal(formatAddress(t.paths.endpoint!), formatAddress(PUBLIC));
  // LOCAL was probed at the same time: it answers in 9 ms total (barely faster).
  const local = t.probes.find((p) => p.addr === formatAddress(LOCAL))!;
  t.paths.pong(LOCAL, 0, local.id, local.at + 9);
  assert.equal(formatAddress(t.paths.endpoint!), formatAddress(PUBLIC), '9 ms is not enough better than 10 ms');
  // A new round: LOCAL at 1 ms.
  t.advance(PATH_RETRY_MS);
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [LOCAL], t.now);
  t.answer(PUBLIC, 0);
  for (let i = 0; i < 8; i++) {
    t.paths.introduce(0, 0, PUBLIC, [LOCAL], t.now);
    const p = [...t.probes].reverse().find((x) => x.addr === formatAddress(LOCAL))!;
    t.paths.pong(LOCAL, 0, p.id, p.at + 1);
  }
  assert.equal(formatAddress(t.paths.endpoint!), formatAddress(LOCAL));
});

test('--no-direct and a peer with --no-direct: no probes, and the reason says so', () => {
  const off = setup({ disabled: true });
  off.paths.activity(off.now);
  off.paths.introduce(0, 0, PUBLIC, [LOCAL], off.now);
  off.paths.poll(off.now + 1000);
  assert.equal(off.probes.length, 0);
  assert.equal(off.rendezvous, 0);
  assert.equal(off.paths.reason(off.now), 'direct disabled (--no-direct)');
  const peerOff = setup();
  peerOff.paths.activity(peerOff.now);
  peerOff.paths.introduce(EndpointFlags.NO_DIRECT, 0, PUBLIC, [], peerOff.now);
  assert.equal(peerOff.probes.length, 0);
  assert.match(peerOff.paths.reason(peerOff.now) ?? '', /peer has direct paths disabled/);
});

test('the reason names symmetric NAT on both sides, or on one', () => {
  const both = setup({ nat: NatMapping.ENDPOINT_DEPENDENT });
  both.paths.activity(both.now);
  both.paths.introduce(0, NatMapping.ENDPOINT_DEPENDENT, PUBLIC, [], both.now);
  assert.match(both.paths.reason(both.now) ?? '', /^symmetric NAT on both sides: probes unanswered since \d\d:\d\d:\d\dZ$/);
  const here = setup({ nat: NatMapping.ENDPOINT_DEPENDENT });
  here.paths.activity(here.now);
  here.paths.introduce(0, NatMapping.ENDPOINT_INDEPENDENT, PUBLIC, [], here.now);
  assert.match(here.paths.reason(here.now) ?? '', /^symmetric NAT here/);
  const none = setup();
  assert.match(none.paths.reason(none.now) ?? '', /not introduced yet/);
});

test('an authenticated datagram from a new source makes it a candidate and probes it; the current path is not re-probed per datagram', () => {
  const t = setup();
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [], t.now);
  t.answer(PUBLIC);
  const n = t.probes.length;
  for (let i = 0; i < 100; i++) t.paths.heard(PUBLIC, 0, t.now);
  assert.equal(t.probes.length, n, 'the current path: no probe per datagram');
  t.paths.heard(OTHER, 0, t.now);
  assert.equal(t.probes.length, n + 1);
  assert.equal(t.probes.at(-1)!.addr, formatAddress(OTHER));
  assert.ok(t.paths.candidates(t.now).some((c) => c.kind === 'observed' && c.address === formatAddress(OTHER)));
});

test('idle: heartbeats stop after PATH_IDLE_MS; the first frame after probes everything and asks for an introduction at once', () => {
  const t = setup();
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [], t.now);
  t.answer(PUBLIC);
  t.advance(PATH_IDLE_MS + 1);
  const n = t.probes.length;
  for (let i = 0; i < 20; i++) {
    t.advance(1000);
    t.paths.poll(t.now);
  }
  assert.equal(t.probes.length, n, 'nothing is sent while idle');
  assert.equal(t.paths.route(t.now), Route.RELAY, 'an unproven path is not used after idle');
  const r = t.rendezvous;
  t.paths.activity(t.now);
  assert.equal(t.probes.length, n + 1, 'the first frame probes');
  assert.equal(t.rendezvous, r + 1, 'and asks the switch to introduce the pair again');
  t.answer(PUBLIC);
  assert.equal(t.paths.route(t.now), Route.DIRECT);
});

test('idle: a path whose trust runs out while idle goes quietly — no probes, no introduction, no flapping — and says so', () => {
  const t = setup();
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [], t.now);
  t.answer(PUBLIC);
  const start = t.now;
  const probes = t.probes.length;
  const rendezvous = t.rendezvous;
  const changes = t.changes;
  for (let i = 0; i < 240; i++) {
    t.advance(250);
    const n = t.probes.length;
    t.paths.poll(t.now);
    // The peer answers every heartbeat; they stop once the pair is idle.
    if (t.probes.length > n) t.answer(PUBLIC, 0);
    assert.ok(t.now - start < PATH_IDLE_MS + 1000 || t.probes.length === n, 'no probe while idle');
  }
  assert.equal(t.paths.route(t.now), Route.RELAY);
  assert.equal(t.changes, changes + 1, 'one change: direct -> relayed, once');
  assert.ok(t.probes.length - probes <= Math.ceil(PATH_IDLE_MS / PATH_HEARTBEAT_MS) + 1, `heartbeats only while active (${t.probes.length - probes})`);
  assert.equal(t.rendezvous, rendezvous, 'no introduction asked while idle');
  assert.match(t.paths.reason(t.now) ?? '', /^idle since \d\d:\d\d:\d\dZ: the next frame probes 198\.51\.100\.12:40000 again$/);
});

test('the peer moved: once its new public address answers, the old one is forgotten (it shows no longer as working)', () => {
  const t = setup();
  t.paths.activity(t.now);
  t.paths.introduce(0, 0, PUBLIC, [], t.now);
  t.answer(PUBLIC);
  const moved = encodeAddress('198.51.100.12', 20444);
  t.advance(100);
  t.paths.introduce(0, 0, moved, [], t.now);
  assert.equal(t.paths.candidates(t.now).length, 2, 'the current path stays while the new address is unproven');
  t.advance(PATH_HEARTBEAT_MS * 2);
  t.answer(moved);
  assert.equal(formatAddress(t.paths.endpoint!), formatAddress(moved));
  assert.deepEqual(t.paths.candidates(t.now).map((c) => c.address), [formatAddress(moved)]);
});
