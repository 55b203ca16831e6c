// Unit tests for lib/mac-table.ts: learning, aging with an injected clock,
// moves, limits, static entries, flush.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MacTable, LearnResult, DEFAULT_AGEING_MS, type LimitReason, type MacEntry } from '../../lib/switch/mac-table.js';
import { CLOCK, MacIndex, SLOT_CLOCKS, SLOT_WORDS, WORD_A } from '../../lib/switch/mac-index.js';

const M1 = 0x0200_0000_0001;
const M2 = 0x0200_0000_0002;
const M3 = 0x0200_0000_0003;
type P = { name: string };
const p1: P = { name: 'p1' };
const p2: P = { name: 'p2' };

test('learn then lookup; unknown MAC and other VLAN miss', () => {
  const t = new MacTable<P>();
  assert.equal(t.learn(M1, 0, p1, 0), LearnResult.Learned);
  assert.equal(t.lookup(M1, 0, 1), p1);
  assert.equal(t.lookup(M2, 0, 1), undefined);
  assert.equal(t.lookup(M1, 10, 1), undefined, 'keyed by VLAN too');
  assert.equal(t.size, 1);
  assert.equal(t.counters.learned, 1);
});

test('the same MAC on two VLANs is two independent entries', () => {
  const t = new MacTable<P>();
  t.learn(M1, 10, p1, 0);
  assert.equal(t.learn(M1, 20, p2, 0), LearnResult.Learned);
  assert.equal(t.lookup(M1, 10, 0), p1);
  assert.equal(t.lookup(M1, 20, 0), p2);
  assert.equal(t.counters.moves, 0);
  assert.equal(t.size, 2);
});

test('aging: default 300 s; expired entries miss before sweep, sweep removes them', () => {
  const t = new MacTable<P>();
  assert.equal(t.ageingMs, DEFAULT_AGEING_MS);
  t.learn(M1, 0, p1, 1_000);
  assert.equal(t.lookup(M1, 0, 1_000 + 299_999), p1);
  assert.equal(t.lookup(M1, 0, 1_000 + 300_000), undefined);
  assert.equal(t.size, 1, 'not swept yet');
  assert.equal(t.sweep(1_000 + 299_999), 0);
  assert.equal(t.sweep(1_000 + 300_000), 1);
  assert.equal(t.size, 0);
  assert.equal(t.counters.aged, 1);
  assert.equal(t.learnedOn(p1), 0);
});

test('refresh keeps an entry alive and returns Refreshed', () => {
  const t = new MacTable<P>({ ageingMs: 1_000 });
  t.learn(M1, 0, p1, 0);
  assert.equal(t.learn(M1, 0, p1, 900), LearnResult.Refreshed);
  assert.equal(t.sweep(1_500), 0);
  assert.equal(t.lookup(M1, 0, 1_500), p1);
  assert.equal(t.get(M1, 0)?.updated, 900);
  assert.equal(t.sweep(1_900), 1);
});

test('move: entry follows the source, counter and callback fire with the old port', () => {
  const moves: [number, P, P][] = [];
  const t = new MacTable<P>({ onMove: (e, from) => moves.push([e.mac, from, e.port]) });
  t.learn(M1, 0, p1, 0);
  assert.equal(t.learn(M1, 0, p2, 5), LearnResult.Moved);
  assert.equal(t.lookup(M1, 0, 5), p2);
  assert.equal(t.counters.moves, 1);
  assert.deepEqual(moves, [[M1, p1, p2]]);
  assert.equal(t.learnedOn(p1), 0);
  assert.equal(t.learnedOn(p2), 1);
});

test('re-learning an expired (unswept) entry on another port is not a move', () => {
  const moves: unknown[] = [];
  const t = new MacTable<P>({ ageingMs: 100, onMove: (e) => moves.push(e), moveHoldMs: 1_000 });
  t.learn(M1, 0, p1, 0);
  assert.equal(t.learn(M1, 0, p2, 100), LearnResult.Learned);
  assert.equal(t.lookup(M1, 0, 100), p2);
  assert.equal(moves.length, 0);
  assert.equal(t.counters.moveDenied, 0);
});

test('the hold: no takeover while the owner used the MAC within moveHoldMs; after it, a move', () => {
  const t = new MacTable<P>({ moveHoldMs: 1_000 });
  t.learn(M1, 0, p1, 0);
  assert.equal(t.learn(M1, 0, p2, 500), LearnResult.MoveDenied);
  assert.equal(t.lookup(M1, 0, 500), p1);
  assert.equal(t.counters.moveDenied, 1);
  assert.equal(t.counters.moves, 0);
  assert.equal(t.learn(M1, 0, p1, 900), LearnResult.Refreshed, 'the owner keeps using it');
  assert.equal(t.learn(M1, 0, p2, 1_800), LearnResult.MoveDenied, 'measured from the owner\'s last frame, not its first');
  assert.equal(t.learn(M1, 0, p2, 1_900), LearnResult.Moved);
  assert.equal(t.lookup(M1, 0, 1_900), p2);
});

test('a claim refused by the hold is granted when the hold runs out, with no second frame', () => {
  const moves: [P, P][] = [];
  const t = new MacTable<P>({ moveHoldMs: 3_000, onMove: (e, from) => moves.push([from, e.port]) });
  t.learn(M1, 0, p1, 10_000);
  assert.equal(t.learn(M1, 0, p2, 11_000), LearnResult.MoveDenied);
  assert.equal(t.pendingClaims, 1);
  assert.equal(t.nextClaimAt(), 13_000, 'the hold ends 3 s after the owner\'s last frame');
  assert.equal(t.grantClaims(12_999), 0);
  assert.equal(t.lookup(M1, 0, 12_999), p1);
  assert.equal(t.grantClaims(13_000), 1);
  assert.equal(t.lookup(M1, 0, 13_000), p2);
  assert.deepEqual(moves, [[p1, p2]]);
  assert.equal(t.pendingClaims, 0);
  assert.equal(t.learnedOn(p1), 0);
  assert.equal(t.learnedOn(p2), 1);
});

test('an owner that keeps sending keeps its MAC; a stale claim is forgotten after claimTtlMs', () => {
  const t = new MacTable<P>({ moveHoldMs: 1_000, claimTtlMs: 5_000 });
  t.learn(M1, 0, p1, 0);
  t.learn(M1, 0, p2, 100);
  for (let now = 500; now <= 4_500; now += 500) {
    t.learn(M1, 0, p1, now);
    assert.equal(t.grantClaims(now), 0);
  }
  assert.equal(t.lookup(M1, 0, 4_500), p1);
  assert.equal(t.pendingClaims, 1);
  assert.equal(t.grantClaims(5_100), 0, 'the claim is 5 s old: forgotten, not granted');
  assert.equal(t.pendingClaims, 0);
  assert.equal(t.grantClaims(10_000), 0);
  assert.equal(t.lookup(M1, 0, 5_600), p1);
});

test('flushing the owner grants a pending claim at once; flushing the claimant drops its claim', () => {
  const t = new MacTable<P>({ moveHoldMs: 3_000 });
  t.learn(M1, 0, p1, 0);
  t.learn(M2, 0, p1, 0);
  t.learn(M1, 0, p2, 100);
  assert.equal(t.flushPort(p1, false, 200), 2);
  assert.equal(t.lookup(M1, 0, 200), p2, 'claimed during the hold: it goes to the claimant');
  assert.equal(t.lookup(M2, 0, 200), undefined, 'unclaimed: forgotten');
  assert.equal(t.counters.moves, 1);
  t.learn(M3, 0, p1, 300);
  t.learn(M3, 0, p2, 400);
  assert.equal(t.pendingClaims, 1);
  t.flushPort(p2, false, 500);
  assert.equal(t.pendingClaims, 0, 'a claimant that left claims nothing');
  assert.equal(t.grantClaims(10_000), 0);
  assert.equal(t.lookup(M3, 0, 500), p1);
});

test('per-port cap: refused with port-limit, other ports still learn', () => {
  const limits: [LimitReason, number, P][] = [];
  const t = new MacTable<P>({ maxPerPort: 2, onLimit: (r, mac, _v, port) => limits.push([r, mac, port]) });
  t.learn(M1, 0, p1, 0);
  t.learn(M2, 0, p1, 0);
  assert.equal(t.learn(M3, 0, p1, 0), LearnResult.PortLimit);
  assert.equal(t.lookup(M3, 0, 0), undefined);
  assert.equal(t.counters.portLimit, 1);
  assert.deepEqual(limits, [['port-limit', M3, p1]]);
  assert.equal(t.learn(M3, 0, p2, 0), LearnResult.Learned);
  // A move into a full port is refused too, so moves can't bypass the cap.
  t.learn(M1 + 100, 0, p2, 0);
  assert.equal(t.learn(M3, 0, p1, 1), LearnResult.PortLimit);
  assert.equal(t.lookup(M3, 0, 1), p2);
  assert.equal(t.learnedOn(p1), 2);
});

test('total cap: refused with table-full; space returns after aging', () => {
  const t = new MacTable<P>({ maxEntries: 2, ageingMs: 10 });
  t.learn(M1, 0, p1, 0);
  t.learn(M2, 0, p2, 5);
  assert.equal(t.learn(M3, 0, p2, 5), LearnResult.TableFull);
  assert.equal(t.counters.tableFull, 1);
  assert.equal(t.counters.portLimit, 0);
  assert.equal(t.size, 2);
  t.sweep(10);
  assert.equal(t.learn(M3, 0, p2, 10), LearnResult.Learned);
  assert.equal(t.size, 2);
});

test('static entries never age, are not moved by learning, and skip the caps', () => {
  const moves: unknown[] = [];
  const t = new MacTable<P>({ ageingMs: 10, maxEntries: 1, maxPerPort: 1, onMove: (e) => moves.push(e) });
  t.addStatic(M1, 0, p1);
  t.addStatic(M2, 0, p1);
  assert.equal(t.learn(M3, 0, p1, 0), LearnResult.Learned, 'statics do not count against limits');
  assert.equal(t.learn(M1, 0, p2, 1), LearnResult.Static);
  assert.equal(t.counters.staticConflicts, 1);
  assert.equal(t.learn(M1, 0, p1, 1), LearnResult.Static);
  assert.equal(t.counters.staticConflicts, 1, 'same port is not a conflict');
  assert.equal(t.sweep(1_000_000), 1, 'only the learned entry ages');
  assert.equal(t.lookup(M1, 0, 1_000_000), p1);
  assert.equal(t.get(M1, 0)?.isStatic, true);
  assert.equal(moves.length, 0);
});

test('addStatic replaces a learned entry and frees its learned slot', () => {
  const t = new MacTable<P>({ maxPerPort: 1 });
  t.learn(M1, 0, p2, 0);
  assert.equal(t.learnedOn(p2), 1);
  t.addStatic(M1, 0, p1);
  assert.equal(t.lookup(M1, 0, 0), p1);
  assert.equal(t.learnedOn(p2), 0);
  assert.equal(t.size, 1);
  assert.ok(t.remove(M1, 0));
  assert.ok(!t.remove(M1, 0));
  assert.equal(t.size, 0);
});

test('flushPort removes only that port, static included by default', () => {
  const t = new MacTable<P>();
  t.learn(M1, 0, p1, 0);
  t.learn(M2, 7, p1, 0);
  t.addStatic(M3, 0, p1);
  t.learn(M3 + 1, 0, p2, 0);
  assert.equal(t.flushPort(p1, false), 2);
  assert.equal(t.lookup(M3, 0, 0), p1, 'static kept when asked');
  assert.equal(t.flushPort(p1), 1);
  assert.equal(t.size, 1);
  assert.equal(t.learnedOn(p1), 0);
  assert.deepEqual(t.entries().map((e) => [e.mac, e.port]), [[M3 + 1, p2]]);
});

test('entries() returns copies that do not alias table state', () => {
  const t = new MacTable<P>();
  t.learn(M1, 0, p1, 0);
  const [e] = t.entries();
  assert.ok(e);
  e.updated = 999;
  assert.equal(t.get(M1, 0)?.updated, 0);
});

test('invalid options are rejected', () => {
  assert.throws(() => new MacTable({ ageingMs: 0 }), { name: 'EtherlinkError' });
  assert.throws(() => new MacTable({ maxEntries: -1 }), { name: 'EtherlinkError' });
});

test('MacIndex agrees with a Map through growth, collisions and backward-shift deletes', () => {
  const index = new MacIndex<number>();
  const ref = new Map<string, number>();
  // A small deterministic generator; MACs that differ only in the high bits, or only in the VLAN, must stay apart.
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const macs = [0, 1, 0xffff_ffff, 0x1_0000_0000, 0xffff_ffff_ffff, 0x0242_0000_0001, 0x0342_0000_0001];
  for (let i = 0; i < 3000; i++) macs.push(0x0242_0000_0000 + rnd(0x10000) * 0x10000 + rnd(64));
  for (let step = 0; step < 40_000; step++) {
    const mac = macs[rnd(macs.length)]!;
    const vlan = [0, 1, 4095][rnd(3)]!;
    const key = `${mac}/${vlan}`;
    if (rnd(3) === 0) {
      assert.equal(index.delete(mac, vlan), ref.delete(key));
    } else {
      index.set(mac, vlan, step, step * 2, -step);
      ref.set(key, step);
    }
    if (step % 997 === 0) for (const m of macs.slice(0, 200)) assert.equal(index.get(m, vlan), ref.get(`${m}/${vlan}`));
  }
  assert.equal(index.size, ref.size);
  for (const [key, v] of ref) {
    const [mac, vlan] = key.split('/').map(Number) as [number, number];
    assert.equal(index.get(mac, vlan), v);
    // The owner's words moved with the key through every shift and resize.
    const s = index.find(mac, vlan);
    assert.deepEqual([index.words[s * SLOT_WORDS + WORD_A], index.clocks[s * SLOT_CLOCKS + CLOCK]], [v * 2, -v]);
  }
  assert.equal(index.list().length, ref.size);
  assert.equal(index.get(1, 4096), undefined, 'a VLAN outside 0..4095 is never found');
  assert.throws(() => index.set(1, 4096, 0, 0, 0), { code: 'ERR_INVALID_ARG_VALUE' });
  index.clear();
  assert.equal(index.size, 0);
  assert.equal(index.get(macs[5]!, 0), undefined);
});

test('entries() lists by VLAN, then MAC', () => {
  const t = new MacTable<P>();
  t.learn(M3, 0, p1, 0);
  t.learn(M1, 5, p1, 0);
  t.learn(M2, 0, p2, 0);
  t.learn(M1, 0, p2, 0);
  assert.deepEqual(t.entries().map((e) => [e.vlan, e.mac]), [[0, M1], [0, M2], [0, M3], [5, M1]]);
});

test('an entry a listener kept still tells its port and clock after it left; clocks are exact over long times', () => {
  let moved: Readonly<MacEntry<P>> | undefined;
  const t = new MacTable<P>({ onMove: (e) => (moved = e), ageingMs: 40 * 86_400_000 });
  t.learn(M1, 0, p1, 1000);
  t.learn(M1, 0, p2, 2000);
  assert.equal(moved?.port, p2);
  assert.equal(moved?.updated, 2000);
  t.remove(M1, 0);
  assert.equal(moved?.port, p2, 'kept after removal');
  assert.equal(moved?.updated, 2000);
  // Ageing of 40 days: an entry from day 0 is live on day 30, and gone on day 41.
  const day = 86_400_000;
  t.learn(M2, 0, p1, 5000);
  t.learn(M3, 0, p1, 30 * day);
  assert.equal(t.get(M2, 0)?.updated, 5000);
  assert.equal(t.lookup(M2, 0, 30 * day), p1, 'ageing of 40 days: still live');
  assert.equal(t.get(M3, 0)?.updated, 30 * day);
  assert.equal(t.sweep(41 * day), 1, 'M2 aged out');
  assert.equal(t.lookup(M3, 0, 41 * day), p1);
});

test('a port with a limit of its own (a VXLAN VTEP) holds more than maxPerPort; the others keep the default; clearing it restores the default', () => {
  const t = new MacTable<P>({ maxPerPort: 2 });
  t.setPortLimit(p1, 5);
  for (let k = 0; k < 5; k++) assert.equal(t.learn(0x0200_0000_1000 + k, 0, p1, 0), LearnResult.Learned, `MAC ${k} on p1`);
  assert.equal(t.learn(0x0200_0000_1005, 0, p1, 0), LearnResult.PortLimit, 'p1 stops at its own limit');
  assert.equal(t.learn(M1, 0, p2, 0), LearnResult.Learned);
  assert.equal(t.learn(M2, 0, p2, 0), LearnResult.Learned);
  assert.equal(t.learn(M3, 0, p2, 0), LearnResult.PortLimit, 'p2 keeps maxPerPort');
  assert.equal(t.limitOf(p1), 5);
  t.setPortLimit(p1, undefined);
  assert.equal(t.limitOf(p1), 2);
  assert.throws(() => t.setPortLimit(p1, 0));
});
