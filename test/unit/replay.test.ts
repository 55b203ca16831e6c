// Unit tests of lib/crypto/replay.ts: the sliding replay window accepts each counter
// once, in or out of order within the window, and refuses old, duplicate and over-limit counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayWindow } from '../../lib/protocol/replay.js';
import { REJECT_AFTER_MESSAGES, REPLAY_WINDOW_SIZE } from '../../lib/protocol/constants.js';

test('window size is at least 2048 (8160 with 256 x 32-bit blocks)', () => {
  assert.ok(REPLAY_WINDOW_SIZE >= 2048);
  assert.equal(REPLAY_WINDOW_SIZE, 8160);
});

test('in-order counters are accepted once each', () => {
  const w = new ReplayWindow();
  for (let c = 0; c < 20_000; c++) assert.equal(w.checkAndUpdate(c), true, `counter ${c}`);
  assert.equal(w.highest, 19_999);
  for (let c = 19_990; c < 20_000; c++) assert.equal(w.checkAndUpdate(c), false, `duplicate ${c}`);
});

test('counter 0 is accepted once, then is a duplicate', () => {
  const w = new ReplayWindow();
  assert.equal(w.checkAndUpdate(0), true);
  assert.equal(w.checkAndUpdate(0), false);
});

test('reordered counters within the window are accepted exactly once', () => {
  const w = new ReplayWindow();
  const order = [5, 3, 9, 0, 1, 2, 8, 4, 7, 6];
  for (const c of order) assert.equal(w.checkAndUpdate(c), true, `first ${c}`);
  for (const c of order) assert.equal(w.checkAndUpdate(c), false, `again ${c}`);
  // A random permutation of a block larger than one bitmap word, with duplicates mixed in.
  const w2 = new ReplayWindow();
  const counters = Array.from({ length: 4000 }, (_, i) => i);
  for (let i = counters.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [counters[i], counters[j]] = [counters[j]!, counters[i]!];
  }
  const seen = new Set<number>();
  for (const c of [...counters, ...counters.slice(0, 500)]) {
    assert.equal(w2.checkAndUpdate(c), !seen.has(c), `counter ${c}`);
    seen.add(c);
  }
});

test('counters further back than the window are rejected, the window edge is accepted', () => {
  const w = new ReplayWindow();
  assert.equal(w.checkAndUpdate(10_000), true);
  assert.equal(w.checkAndUpdate(10_000 - REPLAY_WINDOW_SIZE), true, 'exactly at the edge');
  assert.equal(w.checkAndUpdate(10_000 - REPLAY_WINDOW_SIZE - 1), false, 'one past the edge');
  assert.equal(w.checkAndUpdate(0), false);
});

test('big jumps clear the bitmap: old bits do not alias new counters', () => {
  const w = new ReplayWindow();
  for (let c = 0; c < 100; c++) w.checkAndUpdate(c);
  // 8192 ahead maps to the same ring slots as 0..99; they must read as unseen.
  assert.equal(w.checkAndUpdate(8192 + 50), true);
  for (let c = 8192; c < 8192 + 50; c++) assert.equal(w.checkAndUpdate(c), true, `after jump ${c}`);
  assert.equal(w.checkAndUpdate(8192 + 50), false);
  // A jump of millions, then the window behind it works.
  assert.equal(w.checkAndUpdate(5_000_000), true);
  assert.equal(w.checkAndUpdate(4_999_999), true);
  assert.equal(w.checkAndUpdate(4_999_999), false);
  assert.equal(w.checkAndUpdate(8192 + 51), false, 'now far too old');
});

test('counters near 2^53 work; the limit and invalid numbers are rejected', () => {
  const w = new ReplayWindow();
  const top = REJECT_AFTER_MESSAGES - 1;
  assert.equal(w.checkAndUpdate(top - 100), true);
  assert.equal(w.checkAndUpdate(top), true);
  assert.equal(w.checkAndUpdate(top - 50), true);
  assert.equal(w.checkAndUpdate(top - 50), false);
  assert.equal(w.checkAndUpdate(REJECT_AFTER_MESSAGES), false, 'at the limit');
  assert.equal(w.checkAndUpdate(2 ** 53), false);
  assert.equal(w.checkAndUpdate(-1), false);
  assert.equal(w.checkAndUpdate(1.5), false);
  assert.equal(w.checkAndUpdate(Number.NaN), false);
  const small = new ReplayWindow(10);
  assert.equal(small.checkAndUpdate(9), true);
  assert.equal(small.checkAndUpdate(10), false, 'custom limit');
});

test('wouldAccept predicts checkAndUpdate without changing state', () => {
  const w = new ReplayWindow();
  w.checkAndUpdate(100);
  assert.equal(w.wouldAccept(100), false);
  assert.equal(w.wouldAccept(99), true);
  assert.equal(w.wouldAccept(99), true, 'still, since nothing was recorded');
  assert.equal(w.wouldAccept(100 + 1_000_000), true);
  assert.equal(w.highest, 100);
  assert.equal(w.checkAndUpdate(99), true);
  assert.equal(w.wouldAccept(99), false);
});
