// Unit tests for the Switch's guards: storm control (a token bucket of
// flooded frames per ingress port) and the loop guard (a MAC flapping between
// ports blocks the newest of them for a while).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Switch, DEFAULT_STORM_LIMIT, FLAP_TRACKED_MACS, type PortBlockedEvent, type PortUnblockedEvent, type StormEvent, type SwitchOptions, type SwitchPort,
} from '../../lib/switch/switch.js';
import { BROADCAST_MAC, EtherType, buildFrame } from '../../lib/core/ethernet.js';
import { FakePort } from '../helpers/fake-port.js';

const A = 0x0200_0000_000a;
const B = 0x0200_0000_000b;
const S = 0x0200_0000_0051;
const X = 0x0200_0000_0058;


function setup(names: string[], opts: SwitchOptions = {}) {
  let now = 1_000_000;
  const sw = new Switch({ clock: () => now, ...opts });
  const fakes = names.map((n) => new FakePort(n));
  const handles = fakes.map((f) => sw.addPort(f));
  return { sw, fakes, handles, advance: (ms: number) => (now += ms), now: () => now };
}

const frame = (dst: number, src: number, payload = 'x') => buildFrame({ dst, src, etherType: EtherType.IPv4, payload: Buffer.from(payload) });
const many = (n: number, dst: number, src: number) => Array.from({ length: n }, (_, i) => frame(dst, src, String(i)));

test('storm control: 5000 broadcasts in a second deliver limit + burst, the rest are counted; unicast and other ports flow', () => {
  const { sw, fakes: [p0, p1, p2], handles: [h0, h1, h2], advance } = setup(['p0', 'p1', 'p2']);
  assert.equal(sw.stormLimit, DEFAULT_STORM_LIMIT);
  const events: StormEvent[] = [];
  sw.on('storm', (e: StormEvent) => events.push(e));
  p1!.inject(frame(A, B)); // B is known behind p1
  const before = p1!.frames.length; // 0: p1 sent it
  // 50 batches of 100 over 980 ms: a full bucket (1000) plus 980 ms of refill.
  for (let k = 0; k < 50; k++) {
    p0!.inject(...many(100, BROADCAST_MAC, A));
    if (k < 49) advance(20);
  }
  const delivered = p1!.frames.length - before;
  assert.equal(delivered, DEFAULT_STORM_LIMIT + 980);
  assert.equal(p2!.frames.length - 1, delivered, 'p2 also got the first frame, from p1');
  assert.equal(h0!.counters.drops.storm, 5000 - delivered);
  assert.equal(sw.totals.drops.storm, 5000 - delivered);
  assert.equal(h1!.counters.drops.storm + h2!.counters.drops.storm, 0);
  assert.equal(events.length, 1, 'one event per 10 s');
  assert.equal(events[0]!.port, h0);
  const firstReported = events[0]!.dropped;
  assert.ok(firstReported > 0 && firstReported < 5000 - delivered);
  // Known unicast from the storming port is never limited.
  p1!.sends = [];
  p0!.inject(...many(100, B, A));
  assert.equal(p1!.frames.length, 100);
  assert.equal(p2!.frames.length - 1, delivered, 'nothing flooded');
  // Other ports' buckets are their own.
  p0!.sends = [];
  p2!.inject(...many(100, BROADCAST_MAC, X));
  assert.equal(p0!.frames.length, 100);
  // Still out of tokens (no time passed): more floods from p0 are dropped, and reported after 10 s with everything since.
  p0!.inject(frame(BROADCAST_MAC, A));
  advance(10_000);
  p0!.inject(...many(20_000, BROADCAST_MAC, A));
  assert.equal(events.length, 2);
  assert.equal(events[1]!.dropped, h0!.counters.drops.storm - firstReported);
});

test('storm control counts multicast and unknown unicast; stormBurst sizes the bucket; 0 turns it off', () => {
  const { fakes: [p0, p1], handles: [h0] } = setup(['p0', 'p1'], { stormLimit: 10, stormBurst: 5 });
  p0!.inject(...many(4, 0x0100_5e00_0001, A), ...many(4, B, A));
  assert.equal(p1!.frames.length, 5);
  assert.equal(h0!.counters.drops.storm, 3);
  const off = setup(['p0', 'p1'], { stormLimit: 0 });
  off.fakes[0]!.inject(...many(5000, BROADCAST_MAC, A));
  assert.equal(off.fakes[1]!.frames.length, 5000);
  assert.equal(off.handles[0]!.counters.drops.storm, 0);
  assert.throws(() => new Switch({ stormLimit: -1 }), /stormLimit must be a number >= 0/);
});

/**
 * h1 is the host with MAC S; h2 and h3 are two ports into one bridged LAN, so
 * each floods S's broadcast back in through the other, as a loop does. With
 * the switch server's 3 s move hold the owner stays and their claims are refused.
 */
function loop(opts: SwitchOptions = {}) {
  const t = setup(['h1', 'h2', 'h3', 'h4'], { moveHoldMs: 3_000, ...opts });
  const blocked: PortBlockedEvent[] = [];
  const unblocked: PortUnblockedEvent[] = [];
  t.sw.on('port-blocked', (e: PortBlockedEvent) => blocked.push(e));
  t.sw.on('port-unblocked', (e: PortUnblockedEvent) => unblocked.push(e));
  const [h1, h2, h3] = t.fakes;
  /** One round: S's broadcast comes back in through h2 and h3 (2 flaps). */
  const round = () => {
    h2!.inject(frame(BROADCAST_MAC, S, 'echo'));
    h3!.inject(frame(BROADCAST_MAC, S, 'echo'));
    t.advance(20);
  };
  const start = () => {
    h1!.inject(frame(BROADCAST_MAC, S, 'hello'));
    t.advance(10);
  };
  return { ...t, blocked, unblocked, round, start, h1: h1!, h2: h2!, h3: h3! };
}

test('loop guard: a MAC flapping between ports blocks the newest of them, with a reason and an event', () => {
  const { sw, handles, fakes, blocked, round, start, h1, h3, now, advance } = loop();
  const [p1, p2, p3, p4] = handles as [SwitchPort, SwitchPort, SwitchPort, SwitchPort];
  h3.inject(frame(BROADCAST_MAC, X)); // a host behind h3
  const PINNED = 0x0200_0000_0099;
  sw.addStatic(PINNED, 0, p3);
  start();
  for (let r = 0; r < 4; r++) round();
  h1.inject(frame(BROADCAST_MAC, S, 'hello')); // the owner uses S again: a refused claim after it counts
  h3.inject(frame(BROADCAST_MAC, S, 'echo')); // the 9th refused claim
  assert.equal(p3.blocked, null, 'not yet: 9 moves');
  assert.equal(sw.macTable.lookup(X, 0, now()), p3);
  fakes[1]!.inject(frame(BROADCAST_MAC, S, 'echo')); // the 10th, from h2
  assert.equal(blocked.length, 1);
  const e = blocked[0]!;
  assert.equal(e.port, p3, 'the newest port involved (h4 is newer, but not involved)');
  assert.equal(e.mac, '02:00:00:00:00:51');
  assert.equal(e.vlan, 0);
  assert.equal(e.until, now() + 60_000);
  assert.equal(e.reason, 'MAC 02:00:00:00:00:51 (VLAN 0) moved between h1, h2 and h3 10 times in 1 s: a loop? blocked for 60 s');
  assert.deepEqual(p3.blocked, { until: e.until, reason: e.reason, mac: e.mac, vlan: 0 });
  assert.equal(sw.macTable.lookup(X, 0, now()), undefined, 'its learned MACs are flushed');
  assert.equal(sw.macTable.lookup(S, 0, now()), p1, 'the owner keeps S');
  assert.equal(fakes[3]!.frames.at(-1)!.subarray(14).toString(), 'echo', 'the frame that tripped the guard (from h2) is still forwarded');
  // A blocked port: nothing from it, nothing to it.
  const toH3 = fakes[2]!.frames.length;
  const toH4 = fakes[3]!.frames.length;
  h3.inject(frame(BROADCAST_MAC, X), frame(A, X));
  assert.equal(p3.counters.drops.blocked, 2);
  assert.equal(sw.totals.drops.blocked, 2);
  assert.equal(fakes[3]!.frames.length, toH4, 'nothing from h3 reaches h4');
  h1.inject(frame(BROADCAST_MAC, A, 'after'));
  assert.equal(fakes[2]!.frames.length, toH3, 'no floods to h3');
  assert.equal(fakes[1]!.frames.at(-1)!.subarray(14).toString(), 'after', 'h2 still gets floods');
  assert.equal(fakes[3]!.frames.at(-1)!.subarray(14).toString(), 'after');
  h1.inject(frame(PINNED, A, 'to-pinned'));
  assert.equal(sw.macTable.lookup(PINNED, 0, now()), p3, 'static entries stay');
  assert.equal(fakes[2]!.frames.length, toH3, 'but no unicast reaches a blocked port either');
  assert.equal(handles[0]!.counters.drops.blocked, 1, 'counted at the ingress port');
  fakes[3]!.inject(frame(A, B, 'unicast')); // h4 -> A (behind h1)
  assert.equal(h1.frames.at(-1)!.subarray(14).toString(), 'unicast', 'other traffic is still forwarded');
  assert.equal(sw.macTable.lookup(B, 0, now()), p4);
  const snap = JSON.parse(JSON.stringify(sw.snapshot()));
  assert.deepEqual(snap.ports[2].blocked, { reason: e.reason, remainingS: 60 });
  assert.equal(snap.ports[1].blocked, undefined);
  assert.equal(snap.totals.drops.blocked, 3);
  advance(30_500);
  assert.equal(sw.snapshot().ports[2]!.blocked?.remainingS, 30);
  assert.equal(p2.blocked, null);
  sw.stop();
});

test('loop guard: the block ends after loopBlockMs (forwarding or sweep notices), doubles on a repeat, and unblock() ends it early', () => {
  const { sw, handles, fakes, blocked, unblocked, round, start, h1, advance, now } = loop({ loopBlockMs: 5_000 });
  const p3 = handles[2]!;
  start();
  for (let r = 0; r < 5; r++) round();
  assert.equal(blocked.length, 1);
  assert.equal(blocked[0]!.until - (now() - 20), 5_000);
  advance(4_900);
  h1.inject(frame(BROADCAST_MAC, A));
  assert.notEqual(p3.blocked, null, 'not yet');
  assert.equal(unblocked.length, 0);
  advance(100);
  const toH3 = fakes[2]!.frames.length;
  h1.inject(frame(BROADCAST_MAC, A, 'back'));
  assert.deepEqual(unblocked.map((u) => u.port), [p3]);
  assert.equal(p3.blocked, null);
  assert.equal(fakes[2]!.frames.length, toH3 + 1, 'floods reach it again');
  // It loops again within 10 minutes: twice as long.
  start();
  for (let r = 0; r < 5; r++) round();
  assert.equal(blocked.length, 2);
  assert.equal(blocked[1]!.port, p3);
  assert.match(blocked[1]!.reason, /blocked for 10 s$/);
  assert.equal(blocked[1]!.until, now() - 20 + 10_000);
  // The sweep timer ends it without traffic.
  advance(10_000);
  sw.sweep();
  assert.equal(unblocked.length, 2);
  assert.equal(p3.blocked, null);
  start();
  for (let r = 0; r < 5; r++) round();
  assert.match(blocked[2]!.reason, /blocked for 20 s$/);
  // An operator ends it early.
  assert.ok(sw.unblock(p3));
  assert.equal(unblocked.length, 3);
  assert.ok(!sw.unblock(p3), 'not blocked any more');
  // After 10 quiet minutes it starts over at loopBlockMs.
  advance(600_000);
  start();
  for (let r = 0; r < 5; r++) round();
  assert.match(blocked[3]!.reason, /blocked for 5 s$/);
  sw.stop();
});

test('loop guard without a move hold (a plain bridge, the entry moving each time) blocks too', () => {
  const { sw, blocked, round, start, handles } = loop({ moveHoldMs: 0 });
  start();
  for (let r = 0; r < 4; r++) round();
  assert.equal(blocked.length, 0);
  assert.equal(sw.macTable.counters.moves, 8);
  round();
  assert.equal(blocked.length, 1);
  assert.equal(blocked[0]!.port, handles[2]);
});

test('loop guard: a legitimate move, or moves slower than the window, or a guard turned off, block nothing', () => {
  const { sw, fakes: [p0, p1], handles: [h0, h1], advance, now } = setup(['p0', 'p1']);
  const blocked: PortBlockedEvent[] = [];
  sw.on('port-blocked', (e: PortBlockedEvent) => blocked.push(e));
  p0!.inject(frame(BROADCAST_MAC, A));
  p1!.inject(frame(BROADCAST_MAC, A)); // a VM migrated
  assert.equal(sw.macTable.lookup(A, 0, now()), h1);
  assert.equal(sw.macTable.counters.moves, 1);
  // 20 moves, 5 a second: never 10 within one second.
  for (let k = 0; k < 20; k++) {
    advance(200);
    (k % 2 === 0 ? p0 : p1)!.inject(frame(BROADCAST_MAC, A));
  }
  assert.equal(sw.macTable.counters.moves, 21);
  assert.deepEqual(blocked, []);
  assert.equal(h0!.blocked, null);
  // The same 20 moves within one second do block.
  for (let k = 0; k < 10; k++) {
    advance(50);
    (k % 2 === 0 ? p0 : p1)!.inject(frame(BROADCAST_MAC, A));
  }
  assert.equal(blocked.length, 1);
  const off = setup(['p0', 'p1'], { flapThreshold: 0 });
  const offBlocked: PortBlockedEvent[] = [];
  off.sw.on('port-blocked', (e: PortBlockedEvent) => offBlocked.push(e));
  for (let k = 0; k < 100; k++) off.fakes[k % 2]!.inject(frame(BROADCAST_MAC, A));
  assert.equal(off.sw.macTable.counters.moves, 99);
  assert.deepEqual(offBlocked, []);
});

test('loop guard: tracking is bounded; the least recently moved MAC is forgotten first', () => {
  const { sw, fakes: [p0, p1], advance } = setup(['p0', 'p1'], { stormLimit: 0 });
  const blocked: PortBlockedEvent[] = [];
  sw.on('port-blocked', (e: PortBlockedEvent) => blocked.push(e));
  const flap = (mac: number, times: number) => {
    for (let k = 0; k < times; k++) (k % 2 === 0 ? p1 : p0)!.inject(frame(BROADCAST_MAC, mac));
  };
  p0!.inject(frame(BROADCAST_MAC, A));
  flap(A, 9); // 9 moves
  // As many other MACs as the tracker holds, one move each: A is forgotten.
  for (let i = 1; i <= FLAP_TRACKED_MACS; i++) {
    const m = 0x0200_0100_0000 + i;
    p0!.inject(frame(BROADCAST_MAC, m));
    p1!.inject(frame(BROADCAST_MAC, m));
  }
  advance(10);
  p0!.inject(frame(BROADCAST_MAC, A)); // p1 owns A after 9 moves: a 10th move, but A's record is gone
  assert.deepEqual(blocked, []);
  flap(A, 9);
  assert.equal(blocked.length, 1, 'counting again from the start');
});

test('loop guard: a port spoofing a MAC the move hold keeps with its owner gets itself blocked, not the owner', () => {
  const { sw, fakes: [spoofer, , owner], handles: [hSpoofer, , hOwner], advance, now } = setup(['spoofer', 'other', 'owner'], { moveHoldMs: 3_000 });
  const blocked: PortBlockedEvent[] = [];
  sw.on('port-blocked', (e: PortBlockedEvent) => blocked.push(e));
  owner!.inject(frame(BROADCAST_MAC, A)); // the newest port owns A and uses it
  for (let k = 0; k < 10; k++) {
    advance(10);
    spoofer!.inject(frame(BROADCAST_MAC, A));
    owner!.inject(frame(BROADCAST_MAC, A)); // and keeps using it, between the spoofer's frames
  }
  assert.equal(sw.macTable.counters.moveDenied, 10);
  assert.equal(blocked.length, 1);
  assert.equal(blocked[0]!.port, hSpoofer);
  assert.match(blocked[0]!.reason, /moved between spoofer and owner 10 times/);
  assert.equal(hOwner!.blocked, null);
  assert.equal(sw.macTable.lookup(A, 0, now()), hOwner);
  sw.stop();
});

test('loop guard: a MAC that really moved (the old port silent, the new one refused for the hold) blocks nothing; nor do repeated claims from one port against a silent owner', () => {
  const { sw, fakes: [oldPort, newPort], handles: [, hNew], advance, now } = setup(['old', 'new'], { moveHoldMs: 3_000 });
  const blocked: PortBlockedEvent[] = [];
  sw.on('port-blocked', (e: PortBlockedEvent) => blocked.push(e));
  oldPort!.inject(frame(BROADCAST_MAC, A)); // a VM on the old host
  advance(100);
  // Migrated: the old host falls silent; the VM is busy on the new one, 100 frames a second through the hold.
  for (let k = 0; k < 290; k++) {
    newPort!.inject(frame(BROADCAST_MAC, A));
    advance(10);
  }
  assert.ok(sw.macTable.counters.moveDenied >= 250, `refused during the hold: ${sw.macTable.counters.moveDenied}`);
  assert.equal(blocked.length, 0, 'no loop');
  advance(200);
  newPort!.inject(frame(BROADCAST_MAC, A));
  assert.equal(sw.macTable.lookup(A, 0, now()), hNew, 'the MAC moved when the hold ran out');
  assert.equal(hNew!.blocked, null);
  sw.stop();
});
