// Unit tests for VLAN-aware switching (lib/switch/vlan.ts and the Switch's
// access/trunk ports): isolation, tagging and untagging, pvid, drops, the
// scratch slab, learning per (MAC, VLAN), reported MACs, allow-file options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Switch, SCRATCH_INITIAL_BYTES, type MacMoveEvent, type SwitchOptions, type SwitchPort } from '../../lib/switch/switch.js';
import {
  VlanPlan, egressForm, formatVlanMode, ingressVlan, parseVlanOptions, sameVlanMode, type VlanMode,
} from '../../lib/switch/vlan.js';
import { EtherlinkError } from '../../lib/core/errors.js';
import { BROADCAST_MAC, EtherType, buildFrame, parseEthernetHeader, readOuterTci, type VlanSpec } from '../../lib/core/ethernet.js';
import { FakePort } from '../helpers/fake-port.js';

const A = 0x0200_0000_000a;
const B = 0x0200_0000_000b;
const C = 0x0200_0000_000c;
const D = 0x0200_0000_000d;
const M = 0x0200_0000_00ee;

const access = (vlan: number): VlanMode => ({ kind: 'access', vlan });
const trunk = (vlans: number[], pvid?: number): VlanMode => (pvid === undefined ? { kind: 'trunk', vlans } : { kind: 'trunk', vlans, pvid });


/** Ports named by `modes`' keys, in that order (ids 1, 2, ...); undefined is transparent. */
function setup<K extends string>(modes: Record<K, VlanMode | undefined>, opts: SwitchOptions = {}) {
  const sw = new Switch({ clock: () => 0, stormLimit: 0, ...opts });
  const fakes = {} as Record<K, FakePort>;
  const handles = {} as Record<K, SwitchPort>;
  for (const name of Object.keys(modes) as K[]) {
    fakes[name] = new FakePort(name);
    const mode = modes[name];
    handles[name] = sw.addPort(fakes[name], mode === undefined ? {} : { vlan: mode });
  }
  const resetAll = () => Object.values<FakePort>(fakes).forEach((f) => f.reset());
  return { sw, fakes, handles, resetAll };
}

const frame = (dst: number, src: number, vlan?: number | VlanSpec | VlanSpec[], payload = 'payload') =>
  buildFrame({ dst, src, etherType: EtherType.IPv4, payload: Buffer.from(payload), ...(vlan === undefined ? {} : { vlan }) });

test('access ports in different VLANs are isolated, for broadcast and for unicast', () => {
  const { sw, fakes: f, handles: h, resetAll } = setup({ a10: access(10), b10: access(10), c20: access(20), d20: access(20) });
  const bcastA = frame(BROADCAST_MAC, A);
  f.a10.inject(bcastA);
  assert.deepEqual(f.b10.frames, [bcastA], 'same VLAN: delivered as sent (untagged)');
  assert.equal(f.c20.frames.length, 0);
  assert.equal(f.d20.frames.length, 0);
  f.c20.inject(frame(BROADCAST_MAC, C));
  assert.equal(f.d20.frames.length, 1);
  assert.equal(f.a10.frames.length, 0);
  assert.equal(f.b10.frames.length, 1, 'still only the broadcast from a10');
  assert.equal(sw.macTable.lookup(A, 10, 0), h.a10);
  assert.equal(sw.macTable.lookup(C, 20, 0), h.c20);
  resetAll();
  // C is known, but in VLAN 20: from VLAN 10 it is an unknown destination, flooded in VLAN 10 only.
  f.a10.inject(frame(C, A));
  assert.equal(f.b10.frames.length, 1);
  assert.equal(f.c20.frames.length, 0);
  assert.equal(f.d20.frames.length, 0);
  // A known unicast within the VLAN goes to its port only.
  f.b10.inject(frame(A, B));
  assert.equal(f.a10.frames.length, 1);
  assert.equal(f.c20.frames.length + f.d20.frames.length, 0);
});

test('a trunk gets each access VLAN tagged with its VID, and its tagged frames reach the access port untagged', () => {
  const { fakes: f, handles: h, resetAll } = setup({ a10: access(10), c20: access(20), t: trunk([10, 20]) });
  f.a10.inject(frame(BROADCAST_MAC, A, undefined, 'from-a'));
  f.c20.inject(frame(BROADCAST_MAC, C, undefined, 'from-c'));
  assert.deepEqual(f.t.frames, [frame(BROADCAST_MAC, A, 10, 'from-a'), frame(BROADCAST_MAC, C, 20, 'from-c')]);
  assert.equal(parseEthernetHeader(f.t.frames[0]!)?.tags[0]?.tpid, EtherType.VLAN);
  resetAll();
  f.t.inject(frame(A, B, 10, 'to-a'), frame(C, D, 20, 'to-c'));
  assert.deepEqual(f.a10.frames, [frame(A, B, undefined, 'to-a')], 'untagged, 4 bytes shorter');
  assert.equal(f.a10.frames[0]!.length, frame(A, B, 10, 'to-a').length - 4);
  assert.deepEqual(f.c20.frames, [frame(C, D, undefined, 'to-c')]);
  resetAll();
  f.t.inject(frame(BROADCAST_MAC, B, 20));
  assert.equal(f.a10.frames.length, 0, 'a VLAN 20 broadcast from the trunk stays out of VLAN 10');
  assert.equal(f.c20.frames.length, 1);
  assert.equal(h.t.counters.drops.vlan, 0);
});

test('pvid: untagged frames on a trunk belong to the pvid VLAN and leave it untagged; no pvid drops them', () => {
  const { sw, fakes: f, handles: h, resetAll } = setup({ t: trunk([10, 20], 30), a30: access(30), a10: access(10), u: trunk([10]) });
  const untagged = frame(BROADCAST_MAC, B, undefined, 'native');
  f.t.inject(untagged);
  assert.deepEqual(f.a30.frames, [untagged]);
  assert.equal(f.a10.frames.length, 0);
  assert.equal(f.u.frames.length, 0, 'u does not carry VLAN 30');
  assert.equal(sw.macTable.lookup(B, 30, 0), h.t);
  resetAll();
  const fromA30 = frame(BROADCAST_MAC, A, undefined, 'to-trunk');
  f.a30.inject(fromA30);
  assert.deepEqual(f.t.frames, [fromA30], 'the pvid VLAN leaves the trunk untagged');
  f.a10.inject(frame(BROADCAST_MAC, C, undefined, 'ten'));
  assert.deepEqual(f.t.frames[1], frame(BROADCAST_MAC, C, 10, 'ten'));
  resetAll();
  // A frame tagged with the pvid is accepted as that VLAN too (and leaves untagged elsewhere).
  f.t.inject(frame(A, D, 30, 'tagged-pvid'));
  assert.deepEqual(f.a30.frames, [frame(A, D, undefined, 'tagged-pvid')]);
  // A trunk without pvid drops untagged frames.
  f.u.inject(frame(BROADCAST_MAC, D));
  assert.equal(h.u.counters.drops.vlan, 1);
  assert.equal(f.t.frames.length + f.a10.frames.length, 0);
});

test('frames a port may not send are dropped, counted as vlan and not learned; a priority tag counts as untagged; an 802.1ad tag is payload', () => {
  const { sw, fakes: f, handles: h } = setup({ a10: access(10), b10: access(10), t: trunk([10, 20]) });
  f.a10.inject(frame(BROADCAST_MAC, A, 10), frame(BROADCAST_MAC, A, 20));
  assert.equal(h.a10.counters.drops.vlan, 2, 'an access port sends untagged only');
  assert.equal(f.b10.frames.length + f.t.frames.length, 0);
  assert.equal(sw.macTable.size, 0, 'dropped sources are not learned');
  // A VLAN-aware port's tags are 802.1Q: an S-tag (0x88a8) is an ethertype like any, the frame untagged (as on a C-VLAN bridge).
  const sTagged = buildFrame({ dst: BROADCAST_MAC, src: A, etherType: EtherType.IPv4, vlan: { vid: 10, tpid: EtherType.QINQ } });
  f.a10.inject(sTagged);
  assert.equal(h.a10.counters.drops.vlan, 2);
  assert.deepEqual(f.b10.frames, [sTagged], 'to an access port of 10 as it came');
  assert.equal(readOuterTci(f.t.frames[0]!, 0, f.t.frames[0]!.length) & 0x0fff, 10, 'to the trunk with an 802.1Q tag 10 outside it');
  assert.equal(f.t.frames[0]!.readUInt16BE(12), EtherType.VLAN);
  assert.equal(f.t.frames[0]!.readUInt16BE(16), EtherType.QINQ);
  f.b10.reset();
  f.t.reset();
  sw.macTable.clear();
  f.t.inject(frame(BROADCAST_MAC, B, 30), frame(BROADCAST_MAC, B), frame(BROADCAST_MAC, B, 10, 'ok'));
  assert.equal(h.t.counters.drops.vlan, 2, 'VLAN 30 is not on the trunk; untagged without pvid');
  assert.deepEqual(f.b10.frames, [frame(BROADCAST_MAC, B, undefined, 'ok')]);
  assert.equal(sw.totals.drops.vlan, 4);
  f.b10.reset();
  const prio = frame(BROADCAST_MAC, C, { vid: 0, pcp: 3 }, 'prio');
  f.a10.inject(prio);
  assert.equal(h.a10.counters.drops.vlan, 2, 'a priority-tagged frame is accepted');
  assert.deepEqual(f.b10.frames, [frame(BROADCAST_MAC, C, undefined, 'prio')], 'its tag is removed on an access egress');
  assert.equal(f.b10.frames[0]!.length, prio.length - 4);
  assert.equal(sw.macTable.lookup(C, 10, 0), h.a10);
});

test('a transparent port gets other VLANs tagged, and its tagged frames reach an access port untagged', () => {
  const { sw, fakes: f, handles: h, resetAll } = setup({ a10: access(10), x: undefined, t: trunk([10]), y: undefined });
  f.a10.inject(frame(BROADCAST_MAC, A, undefined, 'a'));
  assert.deepEqual(f.x.frames, [frame(BROADCAST_MAC, A, 10, 'a')]);
  resetAll();
  const tagged = frame(BROADCAST_MAC, B, { vid: 10, pcp: 2 }, 'x10');
  f.x.inject(tagged);
  assert.deepEqual(f.a10.frames, [frame(BROADCAST_MAC, B, undefined, 'x10')]);
  assert.deepEqual(f.t.frames, [tagged], 'stays tagged, PCP and all');
  assert.deepEqual(f.y.frames, [tagged]);
  assert.equal(sw.macTable.lookup(B, 10, 0), h.x);
  resetAll();
  const plain = frame(BROADCAST_MAC, B, undefined, 'x0');
  f.x.inject(plain);
  assert.deepEqual(f.y.frames, [plain], 'VLAN 0 goes between transparent ports');
  assert.equal(f.a10.frames.length + f.t.frames.length, 0, 'and to no VLAN port');
  // The reply to B (in VLAN 10) from the access port reaches x tagged.
  f.a10.inject(frame(B, A, undefined, 'reply'));
  assert.deepEqual(f.x.frames, [frame(B, A, 10, 'reply')]);
  assert.equal(f.y.frames.length, 1, 'known unicast: not flooded');
});

test('one flood to access, trunk and transparent ports gives each port its own bytes', () => {
  const { fakes: f } = setup({
    x: undefined, a10: access(10), a20: access(20), t1: trunk([10, 20]), t2: trunk([20], 10), y: undefined,
  });
  const spec: VlanSpec = { vid: 10, pcp: 5, dei: true };
  const sent = frame(BROADCAST_MAC, A, spec, 'mixed');
  const untagged = frame(BROADCAST_MAC, A, undefined, 'mixed');
  f.x.inject(sent);
  assert.deepEqual(f.a10.frames, [untagged]);
  assert.equal(f.a20.frames.length, 0);
  assert.deepEqual(f.t1.frames, [sent]);
  assert.deepEqual(f.t2.frames, [untagged], 'VLAN 10 is t2\'s pvid: untagged');
  assert.deepEqual(f.y.frames, [sent]);
  for (const p of [f.a10, f.t1, f.t2, f.y]) assert.equal(p.sends.length, 1, p.name);

  const { fakes: g } = setup({
    a10: access(10), b10: access(10), a20: access(20), t1: trunk([10, 20]), t2: trunk([20], 10), y: undefined,
  });
  const fromAccess = frame(BROADCAST_MAC, B, undefined, 'from-access');
  g.a10.inject(fromAccess);
  assert.deepEqual(g.b10.frames, [fromAccess]);
  assert.equal(g.a20.frames.length, 0);
  assert.deepEqual(g.t1.frames, [frame(BROADCAST_MAC, B, 10, 'from-access')], 'tagged with PCP 0');
  assert.equal(parseEthernetHeader(g.t1.frames[0]!)?.tags[0]?.pcp, 0);
  assert.deepEqual(g.t2.frames, [fromAccess]);
  assert.deepEqual(g.y.frames, [frame(BROADCAST_MAC, B, 10, 'from-access')]);
  // Each form is written once and shared: the two ports wanting the tagged form point at the same bytes.
  assert.equal(g.t1.slabs[0], g.y.slabs[0]);
  assert.deepEqual(g.t1.offsets[0], g.y.offsets[0]);
  assert.equal(g.b10.slabs[0], g.t2.slabs[0]);
  assert.deepEqual(g.b10.offsets[0], g.t2.offsets[0]);
  assert.notDeepEqual(g.t1.offsets[0], g.b10.offsets[0]);
});

test('PCP and DEI survive while a frame stays tagged; a priority tag becomes the access VLAN with its PCP', () => {
  const { fakes: f } = setup({ x: undefined, t: trunk([10]), a10: access(10), b10: access(10) });
  f.x.inject(frame(BROADCAST_MAC, A, { vid: 10, pcp: 5, dei: true }));
  assert.deepEqual(parseEthernetHeader(f.t.frames[0]!)?.tags, [{ tpid: EtherType.VLAN, pcp: 5, dei: true, vid: 10 }]);
  f.a10.inject(frame(BROADCAST_MAC, B, { vid: 0, pcp: 6 }, 'prio'));
  assert.deepEqual(f.t.frames[1], frame(BROADCAST_MAC, B, { vid: 10, pcp: 6 }, 'prio'));
  assert.deepEqual(f.x.frames[0], frame(BROADCAST_MAC, B, { vid: 10, pcp: 6 }, 'prio'));
  assert.deepEqual(f.b10.frames, [frame(BROADCAST_MAC, A), frame(BROADCAST_MAC, B, undefined, 'prio')]);
});

test('learning is keyed by (MAC, VLAN): one MAC in two VLANs is two entries, not a move', () => {
  const { sw, fakes: f, handles: h } = setup({ a10: access(10), c20: access(20), t: trunk([10, 20]) });
  const moves: MacMoveEvent[] = [];
  sw.on('mac-move', (e: MacMoveEvent) => moves.push(e));
  f.a10.inject(frame(BROADCAST_MAC, M));
  f.c20.inject(frame(BROADCAST_MAC, M));
  f.a10.inject(frame(BROADCAST_MAC, M));
  assert.deepEqual(moves, []);
  assert.equal(sw.macTable.counters.moves, 0);
  assert.equal(sw.macTable.lookup(M, 10, 0), h.a10);
  assert.equal(sw.macTable.lookup(M, 20, 0), h.c20);
  f.a10.reset();
  f.c20.reset();
  f.t.inject(frame(M, A, 10, 'ten'), frame(M, A, 20, 'twenty'));
  assert.deepEqual(f.a10.frames, [frame(M, A, undefined, 'ten')]);
  assert.deepEqual(f.c20.frames, [frame(M, A, undefined, 'twenty')]);
});

test('learnReported translates VLANs as the port sees them, and macsAsSeenBy translates back', () => {
  const { sw, handles: h } = setup({ a10: access(10), t: trunk([10, 20], 30), x: undefined });
  sw.learnReported(h.a10, [{ mac: A, vlan: 0 }, { mac: B, vlan: 5 }]);
  assert.equal(sw.macTable.lookup(A, 10, 0), h.a10);
  assert.equal(sw.macTable.get(B, 5), undefined, 'an access port has no VLAN 5');
  assert.equal(sw.macTable.learnedOn(h.a10), 1);
  sw.learnReported(h.t, [{ mac: C, vlan: 0 }, { mac: D, vlan: 20 }, { mac: M, vlan: 40 }]);
  assert.equal(sw.macTable.lookup(C, 30, 0), h.t, 'untagged is the pvid');
  assert.equal(sw.macTable.lookup(D, 20, 0), h.t);
  assert.equal(sw.macTable.get(M, 40), undefined);
  sw.learnReported(h.x, [{ mac: M, vlan: 7 }]);
  assert.equal(sw.macTable.lookup(M, 7, 0), h.x);
  assert.deepEqual(sw.macsAsSeenBy(h.a10, 0), [{ mac: A, vlan: 0 }]);
  const seen = (p: SwitchPort) => sw.macsAsSeenBy(p, 0).sort((p1, p2) => p1.mac - p2.mac);
  assert.deepEqual(seen(h.t), [{ mac: C, vlan: 0 }, { mac: D, vlan: 20 }]);
  assert.deepEqual(seen(h.x), [{ mac: M, vlan: 7 }]);
  // No pvid: an untagged report means nothing on a trunk.
  const { sw: sw2, handles: h2 } = setup({ t: trunk([10]) });
  sw2.learnReported(h2.t, [{ mac: A, vlan: 0 }, { mac: B, vlan: 10 }]);
  assert.deepEqual(sw2.macsAsSeenBy(h2.t, 0), [{ mac: B, vlan: 10 }]);
});

test('an all-transparent switch sends views into the ingress slab; VLAN ports share one reused scratch slab', () => {
  const plain = setup({ p: undefined, q: undefined, r: undefined });
  plain.fakes.q.inject(frame(BROADCAST_MAC, B)); // learn B
  const batch = plain.fakes.p.inject(frame(B, A, 7), frame(BROADCAST_MAC, A));
  assert.equal(plain.fakes.q.slabs.at(-1), batch.buf, 'zero copy');
  assert.equal(plain.fakes.r.slabs.at(-1), batch.buf);
  assert.deepEqual(plain.fakes.q.offsets.at(-1), [...batch.offsets.subarray(0, 2)]);

  const mixed = setup({ a10: access(10), t: trunk([10]), x: undefined, y: undefined });
  const first = mixed.fakes.a10.inject(frame(BROADCAST_MAC, A));
  const second = mixed.fakes.a10.inject(frame(BROADCAST_MAC, A, undefined, 'again'));
  const [s1, s2] = mixed.fakes.t.slabs;
  assert.notEqual(s1, first.buf);
  assert.equal(s1, s2, 'the same scratch slab for every batch');
  assert.notEqual(s2, second.buf);
  assert.equal(mixed.fakes.x.slabs[0], s1);
  assert.equal(s1!.length, SCRATCH_INITIAL_BYTES);
  // Between two transparent ports of a VLAN-aware switch the frames are still views of the ingress slab.
  const fromX = mixed.fakes.x.inject(frame(BROADCAST_MAC, C, 10));
  assert.equal(mixed.fakes.y.slabs.at(-1), fromX.buf);
  assert.equal(mixed.fakes.t.slabs.at(-1), s1, 'the trunk, VLAN-aware, gets the as-is copy from scratch');
  assert.deepEqual(mixed.fakes.t.frames.at(-1), frame(BROADCAST_MAC, C, 10));
});

test('a batch larger than the scratch slab grows it; frames written before and after are intact, one send each', () => {
  const { fakes: f } = setup({ a10: access(10), t: trunk([10]), x: undefined, b10: access(10) });
  const n = 64;
  const payload = (i: number) => String(i % 10).repeat(9000);
  const frames = Array.from({ length: n }, (_, i) => frame(BROADCAST_MAC, A, undefined, `${i}:${payload(i)}`));
  f.a10.inject(...frames);
  assert.ok(2 * n * 9000 > SCRATCH_INITIAL_BYTES, 'the test needs more than the first slab');
  for (const p of [f.t, f.x, f.b10]) assert.equal(p.sends.length, 1, p.name);
  assert.deepEqual(f.t.frames, frames.map((_, i) => frame(BROADCAST_MAC, A, 10, `${i}:${payload(i)}`)));
  assert.deepEqual(f.x.frames, f.t.frames);
  assert.deepEqual(f.b10.frames, frames);
  assert.ok(f.t.slabs[0]!.length > SCRATCH_INITIAL_BYTES);
});

test('addStatic refuses a VLAN the port does not carry; a static entry is reached in its form', () => {
  const { sw, fakes: f, handles: h } = setup({ a10: access(10), t: trunk([10, 20]) });
  assert.throws(() => sw.addStatic(B, 20, h.a10), (e: EtherlinkError) => e.code === 'ERR_INVALID_ARG_VALUE' && /does not carry VLAN 20/.test(e.message));
  assert.throws(() => sw.addStatic(B, 0, h.t), /does not carry VLAN 0/);
  sw.addStatic(B, 20, h.t);
  sw.addStatic(C, 10, h.a10);
  f.t.inject(frame(C, A, 10, 'to-static'));
  assert.deepEqual(f.a10.frames, [frame(C, A, undefined, 'to-static')]);
});

test('snapshot shows each port\'s VLAN mode, and mode objects are copied', () => {
  const mode = { kind: 'trunk', vlans: [10, 20], pvid: 1 } as { kind: 'trunk'; vlans: number[]; pvid: number };
  const { sw, handles: h } = setup({ x: undefined, a10: access(10), t: mode });
  mode.vlans.push(30);
  const s = JSON.parse(JSON.stringify(sw.snapshot()));
  assert.deepEqual(s.ports.map((p: { vlan: string }) => p.vlan), ['transparent', 'access 10', 'trunk 10,20 pvid 1']);
  assert.equal(s.ports[0].blocked, undefined);
  assert.deepEqual(s.totals.drops, { runt: 0, oversize: 0, badSource: 0, samePort: 0, reentrant: 0, vlan: 0, storm: 0, blocked: 0 });
  assert.equal(formatVlanMode(h.t.vlanMode), 'trunk 10,20 pvid 1');
  assert.throws(() => sw.addPort(new FakePort('bad'), { vlan: access(4095) }), /not a VLAN id/);
  assert.throws(() => sw.addPort(new FakePort('bad'), { vlan: trunk([10, 10]) }), /each VLAN once/);
});

test('parseVlanOptions: access, trunk and pvid; errors say where, what and how to fix it', () => {
  assert.deepEqual(parseVlanOptions([], 'f line 1'), { kind: 'transparent' });
  assert.deepEqual(parseVlanOptions(['vlan=10'], 'f line 1'), { kind: 'access', vlan: 10 });
  assert.deepEqual(parseVlanOptions(['trunk=10,20'], 'f line 1'), { kind: 'trunk', vlans: [10, 20] });
  assert.deepEqual(parseVlanOptions(['pvid=1', 'trunk=4094,2'], 'f line 1'), { kind: 'trunk', vlans: [4094, 2], pvid: 1 });
  const fails = (fields: string[], message: RegExp) =>
    assert.throws(() => parseVlanOptions(fields, 'allow.txt line 3'), (e: unknown) => {
      assert.ok(e instanceof EtherlinkError);
      assert.equal(e.code, 'ERR_INVALID_ALLOW_LIST');
      assert.match(e.message, message);
      return true;
    });
  fails(['vlan=5000'], /^allow\.txt line 3: vlan=5000: a VLAN id is 1\.\.4094$/);
  fails(['vlan=0'], /^allow\.txt line 3: vlan=0: a VLAN id is 1\.\.4094$/);
  fails(['vlan=ten'], /^allow\.txt line 3: vlan=ten: /);
  fails(['vlan=10', 'trunk=20'], /^allow\.txt line 3: vlan= and trunk= together: a port is an access port \(vlan=N\) or a trunk \(trunk=N,M \[pvid=P\]\), not both$/);
  fails(['pvid=5'], /^allow\.txt line 3: pvid=5: pvid= needs trunk=/);
  fails(['vlan=10', 'pvid=5'], /pvid= needs trunk=/);
  fails(['foo=1'], /^allow\.txt line 3: foo=1: expected vlan=N, trunk=N,M or pvid=P$/);
  fails(['vlan'], /^allow\.txt line 3: vlan: expected vlan=N/);
  fails(['trunk=10,20,10'], /^allow\.txt line 3: trunk=10,20,10: VLAN 10 is listed twice/);
  fails(['trunk=10,,20'], /trunk=10,,20: expected VLAN ids separated by commas/);
  fails(['trunk=10,4095'], /trunk=10,4095: 4095 is not a VLAN id; a VLAN id is 1\.\.4094/);
  fails(['trunk=10', 'pvid=0'], /pvid=0: a VLAN id is 1\.\.4094/);
  fails(['vlan=1', 'vlan=2'], /vlan=1 and vlan=2: give vlan= once/);
});

test('formatVlanMode and sameVlanMode', () => {
  assert.equal(formatVlanMode({ kind: 'transparent' }), 'transparent');
  assert.equal(formatVlanMode(access(10)), 'access 10');
  assert.equal(formatVlanMode(trunk([10, 20])), 'trunk 10,20');
  assert.equal(formatVlanMode(trunk([10, 20], 1)), 'trunk 10,20 pvid 1');
  assert.ok(sameVlanMode({ kind: 'transparent' }, { kind: 'transparent' }));
  assert.ok(sameVlanMode(access(10), access(10)));
  assert.ok(!sameVlanMode(access(10), access(20)));
  assert.ok(!sameVlanMode(access(10), { kind: 'transparent' }));
  assert.ok(!sameVlanMode({ kind: 'transparent' }, access(10)));
  assert.ok(sameVlanMode(trunk([10, 20]), trunk([20, 10])));
  assert.ok(!sameVlanMode(trunk([10, 20]), trunk([10, 20], 1)));
  assert.ok(!sameVlanMode(trunk([10, 20]), trunk([10, 30])));
  assert.ok(!sameVlanMode(trunk([10]), access(10)));
});

test('ingressVlan and egressForm: the rules, and the forwarding plan agrees for every VID', () => {
  assert.equal(ingressVlan({ kind: 'transparent' }, 0), 0);
  assert.equal(ingressVlan({ kind: 'transparent' }, 77), 77);
  assert.equal(ingressVlan(access(10), 0), 10);
  assert.equal(ingressVlan(access(10), 10), -1);
  assert.equal(ingressVlan(trunk([10, 20], 30), 0), 30);
  assert.equal(ingressVlan(trunk([10, 20], 30), 30), 30);
  assert.equal(ingressVlan(trunk([10, 20], 30), 20), 20);
  assert.equal(ingressVlan(trunk([10, 20], 30), 40), -1);
  assert.equal(ingressVlan(trunk([10, 20]), 0), -1);
  assert.equal(egressForm({ kind: 'transparent' }, 0), 'untagged');
  assert.equal(egressForm({ kind: 'transparent' }, 5), 'tagged');
  assert.equal(egressForm(access(10), 10), 'untagged');
  assert.equal(egressForm(access(10), 0), 'none');
  assert.equal(egressForm(trunk([10, 20], 10), 10), 'untagged');
  assert.equal(egressForm(trunk([10, 20], 10), 20), 'tagged');
  assert.equal(egressForm(trunk([10, 20], 30), 30), 'untagged');
  assert.equal(egressForm(trunk([10, 20]), 0), 'none');
  assert.equal(egressForm(trunk([10, 20]), 30), 'none');
  const names = ['none', 'tagged', 'untagged'];
  for (const mode of [{ kind: 'transparent' } as VlanMode, access(1), access(4094), trunk([1, 31, 32, 33, 4094]), trunk([100, 200], 4000)]) {
    const plan = new VlanPlan(mode);
    for (let v = 0; v <= 4095; v++) {
      if (plan.ingress(v) !== ingressVlan(mode, v)) assert.fail(`${formatVlanMode(mode)}: ingress ${v}`);
      if (names[plan.egress(v)] !== egressForm(mode, v)) assert.fail(`${formatVlanMode(mode)}: egress ${v}`);
    }
  }
});
