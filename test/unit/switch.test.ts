// Unit tests for lib/switch.ts and lib/memory-port.ts: flooding, learning,
// drops, VLANs, port removal, events, status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batchToBuffers, buffersToBatch } from '../../lib/core/frames.js';
import { Switch, type MacMoveEvent, type MacLimitEvent, type SwitchPort } from '../../lib/switch/switch.js';
import { createMemoryPortPair, settle } from '../../lib/io/memory-port.js';
import { buildFrame, buildArp, parseArp, BROADCAST_MAC, EtherType, readSrcMac, readDstMac, readVlanId, ARP_REPLY } from '../../lib/core/ethernet.js';
import { FakePort } from '../helpers/fake-port.js';

const A = 0x0200_0000_000a;
const B = 0x0200_0000_000b;
const C = 0x0200_0000_000c;


function setup(n: number, opts: ConstructorParameters<typeof Switch>[0] = {}) {
  let now = 0;
  const sw = new Switch({ clock: () => now, ...opts });
  const fakes = Array.from({ length: n }, (_, i) => new FakePort(`p${i}`));
  const handles = fakes.map((f) => sw.addPort(f));
  return { sw, fakes, handles, advance: (ms: number) => (now += ms) };
}

const frame = (dst: number, src: number, vlan?: number, payload = 'x') =>
  buildFrame({ dst, src, etherType: EtherType.IPv4, payload: Buffer.from(payload), ...(vlan === undefined ? {} : { vlan }) });

test('unknown unicast floods to every port except ingress', () => {
  const { fakes: [p0, p1, p2] } = setup(3);
  p0!.inject(frame(B, A));
  assert.equal(p0!.frames.length, 0);
  assert.equal(p1!.frames.length, 1);
  assert.equal(p2!.frames.length, 1);
  assert.equal(readSrcMac(p1!.frames[0]!, 0), A);
});

test('after learning, unicast goes only to its port; the third port sees nothing', () => {
  const { sw, fakes: [p0, p1, p2], handles } = setup(3);
  p1!.inject(frame(A, B)); // learn B on p1 (floods)
  p2!.sends = [];
  p0!.sends = [];
  p0!.inject(frame(B, A, undefined, 'to-b'));
  assert.equal(p1!.frames.length, 1, 'ingress never gets its own frame back');
  assert.equal(p1!.frames[0]!.subarray(14).toString(), 'to-b');
  assert.equal(p2!.frames.length, 0);
  assert.equal(p0!.frames.length, 0);
  // and the reply direction is known too
  p1!.inject(frame(A, B));
  assert.equal(p0!.frames.length, 1);
  assert.equal(p2!.frames.length, 0);
  assert.equal(sw.macTable.lookup(A, 0, 0), handles[0]);
  assert.equal(handles[0]!.counters.txFrames, 2);
  assert.equal(handles[0]!.counters.flooded, 1, 'the first frame was flooded, the reply was unicast');
  assert.equal(handles[2]!.counters.flooded, 1, 'p2 got the first, unknown frame');
});

test('broadcast and multicast reach all other ports even when the dst is "learned"', () => {
  const { fakes: [p0, p1, p2, p3] } = setup(4);
  const arp = buildArp({ op: 'request', senderMac: A, senderIp: '10.0.0.1', targetIp: '10.0.0.2' });
  p0!.inject(arp, frame(0x0100_5e00_0001, A));
  for (const p of [p1!, p2!, p3!]) {
    assert.equal(p.frames.length, 2, p.name);
    assert.equal(readDstMac(p.frames[0]!, 0), BROADCAST_MAC);
    assert.equal(parseArp(p.frames[0]!)?.senderIp, '10.0.0.1');
  }
  assert.equal(p0!.frames.length, 0);
});

test('one send() per egress port per ingress batch, preserving order', () => {
  const { fakes: [p0, p1, p2] } = setup(3);
  p1!.inject(frame(A, B));
  p2!.inject(frame(A, C));
  p1!.sends = []; p2!.sends = [];
  p0!.inject(frame(B, A, undefined, '1'), frame(C, A, undefined, '2'), frame(B, A, undefined, '3'), frame(BROADCAST_MAC, A, undefined, '4'));
  assert.equal(p1!.sends.length, 1);
  assert.equal(p2!.sends.length, 1);
  assert.deepEqual(p1!.frames.map((f) => f.subarray(14).toString()), ['1', '3', '4']);
  assert.deepEqual(p2!.frames.map((f) => f.subarray(14).toString()), ['2', '4']);
});

test('ingress batches larger than BATCH_SIZE still go out in one send', () => {
  const { fakes: [p0, p1], handles } = setup(2);
  const many = Array.from({ length: 200 }, (_, i) => frame(B, A, undefined, String(i)));
  p0!.inject(...many);
  assert.equal(p1!.sends.length, 1);
  assert.equal(p1!.frames.length, 200);
  assert.equal(p1!.frames[199]!.subarray(14).toString(), '199');
  assert.equal(handles[1]!.counters.txFrames, 200);
});

test('destination on the ingress port is dropped as same-port', () => {
  const { sw, fakes: [p0, p1], handles } = setup(2);
  p0!.inject(frame(BROADCAST_MAC, B)); // B lives behind p0
  p1!.sends = [];
  p0!.inject(frame(B, A));
  assert.equal(p1!.frames.length, 0);
  assert.equal(p0!.frames.length, 0, 'never hairpinned back');
  assert.equal(handles[0]!.counters.drops.samePort, 1);
  assert.equal(sw.totals.drops.samePort, 1);
});

test('runts and oversized frames are dropped and counted; good frames in the same batch pass', () => {
  const { sw, fakes: [p0, p1], handles } = setup(2, { maxFrameSize: 100 });
  const good = frame(B, A);
  p0!.inject(Buffer.alloc(13), good, frame(B, A, undefined, 'y'.repeat(200)), Buffer.alloc(0));
  assert.equal(p1!.frames.length, 1);
  assert.deepEqual(p1!.frames[0], good);
  const c = handles[0]!.counters;
  assert.equal(c.drops.runt, 2);
  assert.equal(c.drops.oversize, 1);
  assert.equal(c.rxFrames, 4);
  assert.equal(sw.totals.drops.runt, 2);
  assert.equal(sw.totals.drops.oversize, 1);
});

test('multicast source is dropped as bad-source and never learned', () => {
  const { sw, fakes: [p0, p1], handles } = setup(2);
  p0!.inject(frame(B, 0x0100_5e00_0001), frame(B, BROADCAST_MAC));
  assert.equal(p1!.frames.length, 0);
  assert.equal(handles[0]!.counters.drops.badSource, 2);
  assert.equal(sw.macTable.size, 0);
});

test('zero source is forwarded but not learned', () => {
  const { sw, fakes: [p0, p1] } = setup(2);
  p0!.inject(frame(B, 0));
  assert.equal(p1!.frames.length, 1);
  assert.equal(sw.macTable.size, 0);
});

test('VLAN-tagged frames pass untouched and learning is per VLAN', () => {
  const { sw, fakes: [p0, p1, p2], handles } = setup(3);
  const tagged = frame(BROADCAST_MAC, B, 100);
  p1!.inject(tagged);
  assert.deepEqual(p0!.frames[0], tagged, 'tag preserved');
  assert.equal(readVlanId(p0!.frames[0]!, 0, tagged.length), 100);
  assert.equal(sw.macTable.lookup(B, 100, 0), handles[1]);
  assert.equal(sw.macTable.lookup(B, 0, 0), undefined);
  p0!.sends = []; p2!.sends = [];
  p0!.inject(frame(B, A, 100));
  assert.equal(p1!.frames.length, 1, 'known on VLAN 100 -> unicast');
  assert.equal(p2!.frames.length, 0);
  p0!.inject(frame(B, A)); // untagged: B unknown on VLAN 0 -> flood
  assert.equal(p1!.frames.length, 2);
  assert.equal(p2!.frames.length, 1);
  // Frames of any EtherType pass, including QinQ.
  const qinq = buildFrame({ dst: B, src: A, etherType: 0x88cc, vlan: [{ vid: 100, tpid: EtherType.QINQ }, { vid: 5 }] });
  p0!.inject(qinq);
  assert.deepEqual(p1!.frames[2], qinq);
});

test('removePort flushes its MACs, detaches, and stops sending to it', () => {
  const { sw, fakes: [p0, p1, p2], handles } = setup(3);
  const removed: SwitchPort[] = [];
  sw.on('port-removed', (h: SwitchPort) => removed.push(h));
  p1!.inject(frame(BROADCAST_MAC, B));
  sw.addStatic(C, 0, handles[1]!);
  assert.equal(sw.macTable.size, 2);
  assert.ok(sw.removePort(handles[1]!));
  assert.equal(p1!.receiver, null);
  assert.equal(sw.macTable.size, 0);
  assert.deepEqual(removed, [handles[1]]);
  assert.ok(!sw.removePort(handles[1]!), 'second removal is a no-op');
  p1!.sends = [];
  p0!.inject(frame(B, A));
  assert.equal(p1!.frames.length, 0);
  assert.equal(p2!.frames.length, 2, 'B is unknown again, so it floods to the rest');
  assert.throws(() => sw.addStatic(C, 0, handles[1]!));
});

test('MAC move emits mac-move with string MAC and both handles', () => {
  const { sw, fakes: [p0, p1, p2], handles } = setup(3);
  const events: MacMoveEvent[] = [];
  sw.on('mac-move', (e: MacMoveEvent) => events.push(e));
  p0!.inject(frame(BROADCAST_MAC, A, 5));
  p1!.inject(frame(BROADCAST_MAC, A, 5));
  assert.equal(events.length, 1);
  assert.deepEqual(events[0], { mac: '02:00:00:00:00:0a', vlan: 5, from: handles[0], to: handles[1] });
  p2!.sends = [];
  p2!.inject(frame(A, C, 5));
  assert.equal(p1!.frames.length, 2, 'the broadcast from p0, then the unicast to A');
  assert.equal(p0!.frames.length, 1, 'only the earlier broadcast from p1');
  assert.equal(sw.macTable.counters.moves, 1);
});

test('static entries are not moved by traffic', () => {
  const { sw, fakes: [p0, p1, p2], handles } = setup(3);
  sw.addStatic('02:00:00:00:00:0b', 0, handles[1]!);
  p0!.inject(frame(BROADCAST_MAC, B)); // spoofed B on p0
  p2!.inject(frame(B, C));
  assert.equal(p1!.frames.at(-1)?.subarray(0, 12).toString('hex'), frame(B, C).subarray(0, 12).toString('hex'));
  assert.equal(p0!.frames.length, 0);
  assert.equal(sw.macTable.counters.staticConflicts, 1);
  assert.ok(sw.removeStatic(B, 0));
  assert.ok(!sw.removeStatic(B, 0));
});

test('aging through the injected clock and sweep()', () => {
  const { sw, fakes: [p0, p1, p2], advance } = setup(3, { ageingMs: 1_000 });
  p1!.inject(frame(BROADCAST_MAC, B));
  p2!.sends = [];
  advance(999);
  p0!.inject(frame(B, A));
  assert.equal(p2!.frames.length, 0, 'still known');
  advance(1);
  p0!.inject(frame(B, A));
  assert.equal(p2!.frames.length, 1, 'expired -> flood');
  assert.equal(sw.sweep(), 1);
  assert.equal(sw.macTable.lookup(B, 0, 1_000), undefined);
});

test('mac-limit events are rate limited per port; drops are not, frames still forward', () => {
  const { sw, fakes: [p0, p1], handles, advance } = setup(2, { maxPerPort: 1 });
  const events: MacLimitEvent[] = [];
  sw.on('mac-limit', (e: MacLimitEvent) => events.push(e));
  p0!.inject(frame(BROADCAST_MAC, A), frame(BROADCAST_MAC, B), frame(BROADCAST_MAC, C));
  assert.equal(p1!.frames.length, 3);
  assert.equal(sw.macTable.counters.portLimit, 2);
  assert.equal(events.length, 1);
  assert.equal(events[0]!.reason, 'port-limit');
  assert.equal(events[0]!.port, handles[0]);
  advance(10_000);
  p0!.inject(frame(BROADCAST_MAC, C));
  assert.equal(events.length, 2);
  assert.equal(events[1]!.suppressed, 1);
});

test('moveHoldMs: a claim during the hold is refused and granted by the switch\'s timer, with no second frame', async () => {
  let now = 1_000;
  const sw = new Switch({ clock: () => now, moveHoldMs: 30 });
  const fakes = [new FakePort('p0'), new FakePort('p1'), new FakePort('p2')];
  const [h0, h1] = fakes.map((f) => sw.addPort(f));
  const events: MacMoveEvent[] = [];
  sw.on('mac-move', (e: MacMoveEvent) => events.push(e));
  fakes[0]!.inject(frame(BROADCAST_MAC, A));
  now += 10;
  fakes[1]!.inject(frame(BROADCAST_MAC, A)); // one gratuitous frame from the claimant
  assert.equal(sw.macTable.counters.moveDenied, 1);
  assert.equal(sw.macTable.lookup(A, 0, now), h0);
  now += 25; // the hold ends 30 ms after p0's frame
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(sw.macTable.lookup(A, 0, now), h1, 'granted once the hold ran out');
  assert.equal(events.length, 1);
  assert.equal(events[0]!.to, h1);
  sw.stop();
});

test('a port whose link goes down loses its learned MACs at once and gets no flooded frames', () => {
  const { sw, fakes: [p0, p1, p2], handles } = setup(3);
  const links: { port: SwitchPort; up: boolean }[] = [];
  sw.on('link', (e: { port: SwitchPort; up: boolean }) => links.push(e));
  p1!.inject(frame(BROADCAST_MAC, B));
  sw.addStatic(C, 0, handles[1]!);
  sw.setLinkUp(handles[1]!, false);
  assert.equal(sw.macTable.lookup(B, 0, 0), undefined, 'learned MAC withdrawn');
  assert.equal(sw.macTable.lookup(C, 0, 0), handles[1], 'static entries stay');
  p1!.sends = [];
  p2!.sends = [];
  p0!.inject(frame(BROADCAST_MAC, A), frame(B, A));
  assert.equal(p1!.frames.length, 0, 'nothing floods to a down link');
  assert.equal(p2!.frames.length, 2);
  p2!.inject(frame(BROADCAST_MAC, B)); // B taken over by p2: learned at its first frame
  assert.equal(sw.macTable.lookup(B, 0, 0), handles[2]);
  sw.setLinkUp(handles[1]!, true);
  p0!.inject(frame(BROADCAST_MAC, A));
  assert.equal(p1!.frames.length, 1, 'up again: floods reach it');
  assert.deepEqual(links.map((l) => [l.port.id, l.up]), [[handles[1]!.id, false], [handles[1]!.id, true]]);
});

test('counters per port and totals; snapshot is plain JSON with ages in seconds', () => {
  const { sw, fakes: [p0, p1], handles, advance } = setup(2);
  const f = frame(BROADCAST_MAC, A, undefined, 'abcd'); // 18 bytes
  p0!.inject(f, f);
  advance(2_500);
  const s = JSON.parse(JSON.stringify(sw.snapshot()));
  assert.equal(s.ports.length, 2);
  assert.deepEqual(s.ports[0].counters.rxFrames, 2);
  assert.equal(s.ports[0].counters.rxBytes, 36);
  assert.equal(s.ports[1].counters.txFrames, 2);
  assert.equal(s.ports[1].counters.txBytes, 36);
  assert.equal(s.totals.rxFrames, 2);
  assert.equal(s.totals.txBytes, 36);
  assert.deepEqual(s.macTable, [{ mac: '02:00:00:00:00:0a', vlan: 0, port: handles[0]!.id, portName: 'p0', static: false, ageSeconds: 2 }]);
  assert.equal(s.ports[0].macs.length, 1);
  assert.equal(s.ports[1].macs.length, 0);
  assert.equal(p1!.frames.length, 2);
});

test('a throwing port is counted and reported, other ports still get frames', () => {
  const { sw, fakes: [p0, p1, p2], handles } = setup(3);
  p1!.send = () => { throw new Error('boom'); };
  const errors: unknown[] = [];
  sw.on('port-error', (e) => errors.push(e));
  p0!.inject(frame(BROADCAST_MAC, A));
  assert.equal(p2!.frames.length, 1);
  assert.equal(handles[1]!.counters.txErrors, 1);
  assert.equal(errors.length, 1);
});

test('a port whose send() re-enters the switch synchronously has the nested batch dropped and counted', () => {
  const { sw, fakes: [p0, p1, p2], handles } = setup(3);
  const original = p1!.send.bind(p1!);
  p1!.send = (batch) => {
    original(batch);
    p2!.inject(frame(BROADCAST_MAC, C)); // a buggy port looping straight back in
  };
  p0!.inject(frame(BROADCAST_MAC, A));
  assert.equal(handles[2]!.counters.drops.reentrant, 1);
  assert.equal(sw.totals.drops.reentrant, 1);
  assert.equal(p2!.frames.length, 1, 'the outer batch still completes');
  assert.equal(sw.macTable.lookup(C, 0, 0), undefined);
});

test('removing the ingress port from a mac-move listener leaves no entries behind', () => {
  const { sw, fakes: [p0, p1] } = setup(2);
  sw.on('mac-move', (e: MacMoveEvent) => sw.removePort(e.to));
  p0!.inject(frame(BROADCAST_MAC, A));
  p1!.inject(frame(BROADCAST_MAC, A), frame(BROADCAST_MAC, B)); // A moves; B comes after the removal
  assert.equal(sw.portList.length, 1);
  assert.deepEqual(sw.macTable.entries().map((e) => e.port.name), []);
});

test('start() runs an unref\'d sweep timer; stop() clears it', async () => {
  let now = 0;
  const sw = new Switch({ clock: () => now, ageingMs: 100, sweepIntervalMs: 5 });
  const p = new FakePort('p');
  sw.addPort(p);
  p.inject(frame(BROADCAST_MAC, A));
  assert.equal(sw.macTable.size, 1);
  now = 200;
  sw.start();
  sw.start();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(sw.macTable.size, 0);
  sw.stop();
});

test('memory ports: two switches joined by a memory pair forward end to end', async () => {
  const s1 = new Switch();
  const s2 = new Switch();
  const [trunkA, trunkB] = createMemoryPortPair(['s1-trunk', 's2-trunk']);
  s1.addPort(trunkA);
  s2.addPort(trunkB);
  const h1 = new FakePort('h1');
  const h2 = new FakePort('h2');
  s1.addPort(h1);
  s2.addPort(h2);
  h1.inject(buildArp({ op: 'request', senderMac: A, senderIp: '10.0.0.1', targetIp: '10.0.0.2' }));
  assert.equal(h2.frames.length, 0, 'delivery is asynchronous');
  await settle();
  assert.equal(h2.frames.length, 1);
  h2.inject(buildArp({ op: 'reply', senderMac: B, senderIp: '10.0.0.2', targetMac: A, targetIp: '10.0.0.1' }));
  await settle();
  assert.equal(h1.frames.length, 1);
  assert.equal(parseArp(h1.frames[0]!)?.op, ARP_REPLY);
  assert.equal(trunkA.counters.deliveredFrames, 1);
  assert.equal(trunkB.counters.deliveredFrames, 1);
  assert.equal(s2.snapshot().macTable.length, 2);
});

test('memory port copies frames: mutating the sender slab after send does not leak', async () => {
  const [a, b] = createMemoryPortPair();
  const got: Buffer[] = [];
  b.setReceiver((batch) => got.push(...batchToBuffers(batch)));
  const batch = buffersToBatch([frame(B, A, undefined, 'orig')]);
  a.send(batch);
  batch.buf.fill(0);
  await settle();
  assert.equal(got.length, 1);
  assert.equal(got[0]!.subarray(14).toString(), 'orig');
  a.close();
  a.send(batch);
  await settle();
  assert.equal(got.length, 1);
  assert.equal(a.counters.droppedFrames, 1);
});
