// RelayWorkers when a worker goes (issue 15): a switch socket on loopback with
// two real relay workers in its SO_REUSEPORT group and the pair-data steering
// program; members are plain UDP sockets. One worker is terminated mid-run (as
// a crash would end it): its socket must leave the group and the program must
// be re-steered over the worker left, so that pair data for every destination,
// also those the gone worker relayed, keeps arriving — none steered to a dead
// socket. Needs no privilege: loopback, SO_REUSEPORT and a cBPF program only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { UdpSocket } from '../../lib/io/udp.js';
import { encodeAddress } from '../../lib/io/address.js';
import { MessageType, PAIR_ROUTE_OFFSET, PROTOCOL_VERSION } from '../../lib/protocol/constants.js';
import { RelayWorkers } from '../../lib/daemon/relay-workers.js';
import type { Logger } from '../../lib/core/log.js';

/** Datagrams per destination and round: few enough for any socket buffer. */
const PER_DEST = 50;
const DATAGRAM_BYTES = 64;
const WAIT_MS = 5_000;
/** Warm-up probes per destination at most, WARMUP_GAP_MS apart, until each worker has the routes. */
const WARMUP_PROBES = 100;
const WARMUP_GAP_MS = 20;

function pairData(dst: number, seq: number): Buffer {
  const d = Buffer.alloc(DATAGRAM_BYTES);
  d[0] = PROTOCOL_VERSION;
  d[1] = MessageType.PAIR_DATA;
  d.writeUInt16BE(dst, PAIR_ROUTE_OFFSET);
  d.writeUInt32BE(seq, 8);
  return d;
}

async function waitUntil(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a relay worker that exits: its socket leaves the group, the steering moves to the worker left, and pair data for every destination still arrives', { timeout: 30_000 }, async (t) => {
  const main = UdpSocket.bind({ address: '127.0.0.1', port: 0, reusePort: true, exclusive: true });
  let byMain = 0;
  main.onDatagrams((batch) => {
    byMain += batch.count;
  });
  const errors: string[] = [];
  const log: Logger = { error: (m) => errors.push(m), warn: () => {}, info: () => {}, debug: () => {}, enabled: () => true };
  let steeredOver = -1;
  let passedUp = 0;
  const rw = new RelayWorkers(2, [{ address: '127.0.0.1', port: main.port }], (_link, datagrams) => {
    passedUp += datagrams.length;
  }, (n) => {
    steeredOver = n;
    main.steerPairData(n);
  }, log);
  const members: Socket[] = [];
  t.after(() => {
    rw.close();
    main.close();
    for (const s of members) s.close();
  });
  await rw.ready;
  assert.equal(steeredOver, 2, 'steered over both workers once both were bound');

  // Member 1 sends; members 2..5 receive (destinations 2 and 4 steered to one worker, 3 and 5 to the other).
  const got = new Map<number, number>();
  for (let id = 1; id <= 5; id++) {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    s.on('message', () => got.set(id, (got.get(id) ?? 0) + 1));
    members.push(s);
    const slot = encodeAddress('127.0.0.1', s.address().port);
    main.setRelayRoute(id, slot);
    rw.setRoute(0, id, slot);
  }
  const relayedBy = (): number[] => rw.status().map((w) => w.sockets[0]?.relayDatagrams ?? 0);
  const dests = [2, 3, 4, 5];
  // Routes reach the workers by postMessage, unacknowledged: probe each destination until one is relayed
  // (a probe that comes before its route is passed up and lost), then count from there.
  for (let k = 0; k < WARMUP_PROBES && !dests.every((id) => (got.get(id) ?? 0) > 0); k++) {
    for (const dst of dests) if ((got.get(dst) ?? 0) === 0) members[0]!.send(pairData(dst, 0), main.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, WARMUP_GAP_MS));
  }
  await waitUntil('a warm-up probe relayed to every destination', () => dests.every((id) => (got.get(id) ?? 0) > 0));
  await new Promise((r) => setTimeout(r, WARMUP_GAP_MS)); // the last probes in flight land
  const base = new Map(got);
  const received = (id: number): number => (got.get(id) ?? 0) - (base.get(id) ?? 0);
  const start = relayedBy();
  const mainAtStart = byMain + passedUp;
  const round = async (expectEach: number): Promise<void> => {
    for (let seq = 1; seq <= PER_DEST; seq++) for (const dst of dests) members[0]!.send(pairData(dst, seq), main.port, '127.0.0.1');
    await waitUntil(`${expectEach} datagrams at each of members 2..5 (got ${JSON.stringify([...got])})`, () => dests.every((id) => received(id) >= expectEach));
  };

  await round(PER_DEST);
  const before = relayedBy();
  const first = [before[0]! - start[0]!, before[1]! - start[1]!];
  assert.ok(first[0]! > 0 && first[1]! > 0, `both workers relayed (${first.join(', ')})`);
  assert.equal(first[0]! + first[1]!, 4 * PER_DEST, 'the workers relayed every datagram');
  assert.equal(byMain + passedUp, mainAtStart, 'nothing reached the main thread');

  // The first worker goes, as a crash would end it.
  const slots = (rw as unknown as { slots: { worker: Worker }[] }).slots;
  const exited = once(slots[0]!.worker, 'exit');
  await slots[0]!.worker.terminate();
  await exited;
  await waitUntil('the re-steer over the worker left', () => steeredOver === 1);
  assert.match(errors.join('\n'), /relay worker 1 exited.*steered over the 1 left/);
  assert.deepEqual(rw.status().map((w) => w.live), [false, true]);

  await round(2 * PER_DEST);
  const afterExit = relayedBy();
  assert.equal(afterExit[1]! - before[1]!, 4 * PER_DEST, 'the worker left relayed all of the second round, the gone one\'s destinations too');
  assert.equal(afterExit[0], before[0], 'the gone worker relayed nothing more');
  assert.equal(byMain + passedUp, mainAtStart, 'nothing fell back to the main thread');
  for (const id of dests) assert.equal(received(id), 2 * PER_DEST, `member ${id}: every datagram once`);
  assert.equal(got.get(1) ?? 0, 0, 'nothing back to the sender');
});
