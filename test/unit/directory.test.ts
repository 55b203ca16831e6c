// Unit tests of lib/daemon/directory.ts: who is told about which member, when
// (after the current batch, once), in what order (the others before the
// member itself), and the GONE notices when a member leaves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Directory } from '../../lib/daemon/directory.js';

interface Member {
  name: string;
  /** Bumped by the test when its MACs change: what describe() reports. */
  version: number;
}

/** A directory whose host renders messages as text: "<viewer> <- <target>[ self] v<version> <part>/2" and "<viewer> <- gone <target>". */
function setup(): { dir: Directory<Member>; sent: string[]; m: (name: string) => Member } {
  const sent: string[] = [];
  const members = new Map<string, Member>();
  const dir = new Directory<Member>({
    // Two messages per entry, as a member with more than 128 MACs has.
    describe: (target, self) => [1, 2].map((part) => Buffer.from(`${target.name}${self ? ' self' : ''} v${target.version} ${part}/2`)),
    gone: (target) => Buffer.from(`gone ${target.name}`),
    send: (viewer, payload) => sent.push(`${viewer.name} <- ${payload.toString()}`),
  });
  const m = (name: string): Member => {
    let x = members.get(name);
    if (x === undefined) {
      x = { name, version: 1 };
      members.set(name, x);
    }
    return x;
  };
  return { dir, sent, m };
}

test('subscribe: the viewer gets the target entry once, after the current task, SELF when it is itself', async () => {
  const { dir, sent, m } = setup();
  const [a, b] = [m('a'), m('b')];
  assert.equal(dir.subscribe(a, b), true);
  assert.equal(dir.subscribe(a, b), false, 'already subscribed');
  assert.equal(dir.subscribe(a, a), true);
  assert.deepEqual(sent, [], 'nothing is sent inside the batch');
  assert.equal(dir.knows(a, b), true);
  assert.equal(dir.knows(b, a), false, 'subscriptions have a direction');
  await Promise.resolve();
  assert.deepEqual(sent, ['a <- b v1 1/2', 'a <- b v1 2/2', 'a <- a self v1 1/2', 'a <- a self v1 2/2']);
  assert.equal(dir.sent, 4);
  await Promise.resolve();
  dir.flush();
  assert.equal(sent.length, 4, 'sent once');
  assert.equal(dir.subscribe(a, b), false, 'still subscribed after the flush');
  assert.equal(dir.viewerCount(b), 1);
  assert.equal(dir.viewerCount(a), 1);
});

test('subscribe then changed in one batch: the entry goes out once, in its new version', () => {
  const { dir, sent, m } = setup();
  const [a, b] = [m('a'), m('b')];
  dir.subscribe(a, b);
  b.version = 2;
  dir.changed(b);
  dir.flush();
  assert.deepEqual(sent, ['a <- b v2 1/2', 'a <- b v2 2/2']);
});

test('changed: every viewer gets the new entry, the others first and the target itself last with SELF', () => {
  const { dir, sent, m } = setup();
  const [a, b, c, d] = [m('a'), m('b'), m('c'), m('d')];
  // b is watched by a, itself and c (subscribed around its own subscription); d watches only a.
  dir.subscribe(a, b);
  dir.subscribe(b, b);
  dir.subscribe(c, b);
  dir.subscribe(d, a);
  dir.flush();
  sent.length = 0;

  b.version = 2;
  dir.changed(b);
  dir.changed(b);
  assert.deepEqual(sent, [], 'after the current batch');
  dir.flush();
  assert.deepEqual(sent, ['a <- b v2 1/2', 'a <- b v2 2/2', 'c <- b v2 1/2', 'c <- b v2 2/2', 'b <- b self v2 1/2', 'b <- b self v2 2/2']);
  sent.length = 0;

  dir.changed(m('e'));
  dir.flush();
  assert.deepEqual(sent, [], 'nobody watches e: nothing to send');
});

test('changed runs by itself after the current task', async () => {
  const { dir, sent, m } = setup();
  const [a, b] = [m('a'), m('b')];
  dir.subscribe(a, b);
  dir.flush();
  sent.length = 0;
  b.version = 3;
  dir.changed(b);
  await Promise.resolve();
  assert.deepEqual(sent, ['a <- b v3 1/2', 'a <- b v3 2/2']);
});

test('remove: GONE to every viewer but the target, and the target forgets what it watched', () => {
  const { dir, sent, m } = setup();
  const [a, b, c] = [m('a'), m('b'), m('c')];
  for (const [viewer, target] of [
    [a, b],
    [b, a],
    [b, b],
    [c, b],
    [b, c],
  ] as const) {
    dir.subscribe(viewer, target);
  }
  dir.flush();
  const before = dir.sent;
  sent.length = 0;

  dir.remove(b);
  assert.deepEqual(sent, ['a <- gone b', 'c <- gone b'], 'now, not after the batch; not to b itself');
  assert.equal(dir.sent, before + 2);
  assert.equal(dir.knows(a, b), false);
  assert.equal(dir.knows(b, a), false, "b's own subscriptions are forgotten");
  assert.equal(dir.knows(b, c), false);
  assert.equal(dir.viewerCount(b), 0);
  assert.equal(dir.viewerCount(a), 0);
  sent.length = 0;

  // Changes of what b watched reach nobody through b any more.
  a.version = 2;
  c.version = 2;
  dir.changed(a);
  dir.changed(c);
  dir.changed(b);
  dir.flush();
  assert.deepEqual(sent, [], 'a and c are watched by nobody now, b is gone');
  dir.remove(b);
  assert.deepEqual(sent, [], 'a second remove sends nothing');
});

test('remove drops the entries still waiting for the flush, to and about the target', () => {
  const { dir, sent, m } = setup();
  const [a, b, c] = [m('a'), m('b'), m('c')];
  dir.subscribe(a, b);
  dir.subscribe(b, c);
  dir.subscribe(c, a);
  b.version = 2;
  dir.changed(b);
  dir.remove(b);
  assert.deepEqual(sent, ['a <- gone b']);
  dir.flush();
  assert.deepEqual(sent, ['a <- gone b', 'c <- a v1 1/2', 'c <- a v1 2/2'], 'only the entry that involves neither side of b');
  // A member that comes back under the same identity starts over.
  assert.equal(dir.subscribe(a, b), true);
  dir.flush();
  assert.deepEqual(sent.slice(3), ['a <- b v2 1/2', 'a <- b v2 2/2']);
});
