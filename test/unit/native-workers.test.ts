// The addon in worker_threads (issue 15's groundwork): several workers load it at
// once and really use it — UDP batches with the main thread, the batched AEAD —
// then end with native handles open, inside and outside a receive callback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { buffersToBatch } from '../../lib/core/frames.js';
import { encodeAddress } from '../../lib/io/address.js';
import { UdpSocket } from '../../lib/io/udp.js';
import { sealedBatch } from '../helpers/aead-batch.js';
import type { NativeWorkerData, NativeWorkerMessage } from '../helpers/native-worker.js';

const WORKER = new URL('../helpers/native-worker.js', import.meta.url);
const WORKERS = 3;
const COUNT = 64;
const FLOOD_BATCH = 32;
const FLOOD_EVERY_MS = 1;
const MESSAGE_TIMEOUT_MS = 20_000;

/** A worker with a queue of its messages; `next(kind)` waits for the next of that kind. */
class TestWorker {
  readonly worker: Worker;
  private readonly seen: NativeWorkerMessage[] = [];
  private wake: (() => void) | null = null;
  exitCode: number | undefined;
  error: Error | undefined;

  constructor(data: NativeWorkerData) {
    this.worker = new Worker(WORKER, { workerData: data });
    this.worker.on('message', (m: NativeWorkerMessage) => {
      this.seen.push(m);
      this.wake?.();
    });
    this.worker.on('error', (err) => {
      this.error = err;
      this.wake?.();
    });
    this.worker.on('exit', (code) => {
      this.exitCode = code;
      this.wake?.();
    });
  }

  async next<K extends NativeWorkerMessage['kind']>(kind: K): Promise<Extract<NativeWorkerMessage, { kind: K }>> {
    const deadline = Date.now() + MESSAGE_TIMEOUT_MS;
    for (;;) {
      const failed = this.seen.find((m) => m.kind === 'failed');
      if (failed) assert.fail(`worker: ${(failed as { message: string }).message}`);
      const i = this.seen.findIndex((m) => m.kind === kind);
      if (i >= 0) return this.seen.splice(i, 1)[0] as Extract<NativeWorkerMessage, { kind: K }>;
      if (this.error) throw this.error;
      if (this.exitCode !== undefined) assert.fail(`worker exited (${this.exitCode}) before '${kind}'`);
      if (Date.now() > deadline) assert.fail(`no '${kind}' from the worker within ${MESSAGE_TIMEOUT_MS} ms`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
      this.wake = null;
    }
  }

  /** Resolves with the exit code, whichever way the worker ends. */
  exited(): Promise<number> {
    if (this.exitCode !== undefined) return Promise.resolve(this.exitCode);
    return new Promise((resolve) => this.worker.once('exit', resolve));
  }
}

/** The main thread's socket: echoes every datagram back to where it came from. */
function echoHub(): UdpSocket {
  const hub = UdpSocket.bind({ address: '127.0.0.1' });
  hub.onDatagrams((batch, addrs) => hub.send(batch, addrs));
  return hub;
}

/** Keep sending batches to the workers' open sockets from the main thread until stopped. */
function flood(sock: UdpSocket, ports: number[]): () => void {
  const frames = Array.from({ length: FLOOD_BATCH }, (_, i) => Buffer.alloc(i % 2 ? 60 : 1400, i));
  const batch = buffersToBatch(frames);
  const addrs = ports.map((p) => Buffer.concat(frames.map(() => encodeAddress('127.0.0.1', p))));
  const timer = setInterval(() => {
    for (const a of addrs) sock.send(batch, a);
  }, FLOOD_EVERY_MS);
  return () => clearInterval(timer);
}

/** The main thread still has a working addon: a datagram round trip through the hub, and the same seal. */
async function mainThreadStillWorks(hub: UdpSocket): Promise<void> {
  const probe = UdpSocket.bind({ address: '127.0.0.1' });
  try {
    const back = new Promise<Buffer>((resolve) =>
      probe.onDatagrams((b) => resolve(Buffer.from(b.buf.subarray(b.offsets[0]!, b.offsets[0]! + b.lengths[0]!)))),
    );
    probe.sendTo(Buffer.from('still here'), encodeAddress('127.0.0.1', hub.port));
    assert.equal((await back).toString(), 'still here');
    assert.ok(sealedBatch(7, COUNT).equals(sealedBatch(7, COUNT)));
  } finally {
    probe.close();
  }
}

test('workers load the addon at once and each trades UDP batches with the main thread and seals what it does', async () => {
  const hub = echoHub();
  const workers = Array.from({ length: WORKERS }, (_, id) => new TestWorker({ mode: 'exchange', id: id + 1, hubPort: hub.port, count: COUNT, end: 'wait' }));
  let stopFlood: (() => void) | undefined;
  try {
    for (const w of workers) {
      const m = await w.next('exchanged');
      assert.ok(m.errorIsEtherlink, `worker ${m.id}: native errors are EtherlinkErrors in the worker too`);
      assert.equal(m.echoed, COUNT, `worker ${m.id}: every datagram came back from the main thread's socket`);
      assert.ok(Buffer.from(m.sealed).equals(sealedBatch(m.id, COUNT)), `worker ${m.id}: sealed exactly what the main thread seals`);
      assert.equal(m.reopened, COUNT, `worker ${m.id}: opened all it sealed`);
      assert.ok(m.plaintextMatches, `worker ${m.id}: and got the frames back`);
      assert.ok(m.forgedRejected, `worker ${m.id}: a forged tag fails`);
    }
    // Terminate all of them at once while their sockets are being flooded and their callbacks run.
    const ports = await Promise.all(workers.map(async (w) => (await w.next('open')).port));
    stopFlood = flood(hub, ports);
    await Promise.all(workers.map((w) => w.next('flooded')));
    await Promise.all(workers.map((w) => w.worker.terminate()));
    stopFlood();
    for (const w of workers) assert.equal(w.error, undefined, `worker error: ${String(w.error)}`);
    await mainThreadStillWorks(hub);
  } finally {
    stopFlood?.();
    for (const w of workers) await w.worker.terminate();
    hub.close();
  }
});

test('workers ended with open sockets, a link watcher and a key, inside and outside a receive callback, round after round', async () => {
  const hub = echoHub();
  try {
    for (let round = 0; round < 8; round++) {
      const workers = [
        new TestWorker({ mode: 'exchange', id: 1, hubPort: hub.port, count: 8, end: 'wait' }),
        new TestWorker({ mode: 'exchange', id: 2, hubPort: hub.port, count: 8, end: 'exit' }),
      ];
      for (const w of workers) assert.equal((await w.next('exchanged')).echoed, 8);
      const ports = await Promise.all(workers.map(async (w) => (await w.next('open')).port));
      const stop = flood(hub, ports);
      try {
        await Promise.all(workers.map((w) => w.next('flooded')));
        await workers[0]!.worker.terminate();
        assert.equal(await workers[1]!.exited(), 0, 'process.exit(0) inside the callback ends the worker cleanly');
      } finally {
        stop();
      }
      for (const w of workers) assert.equal(w.error, undefined, `round ${round}: ${String(w.error)}`);
    }
    await mainThreadStillWorks(hub);
  } finally {
    hub.close();
  }
});

test('a worker that dropped capabilities may exit: the addon stays mapped under its signal handler', () => {
  // In a child, whose main thread never loads the addon: when the worker goes, so
  // would the library, were it not pinned — and the signal would jump into nothing.
  const script = `
    import { Worker } from 'node:worker_threads';
    import { readFileSync } from 'node:fs';
    const w = new Worker(new URL(${JSON.stringify(WORKER.href)}), { execArgv: [], workerData: { mode: 'drop', id: 0, hubPort: 0, count: 0, end: 'wait' } });
    w.on('message', (m) => console.log(JSON.stringify(m)));
    w.on('exit', () => {
      const caught = BigInt('0x' + /SigCgt:\\s*(\\w+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      let sig = 0;
      for (let s = 64; s > 34 && sig === 0; s--) if (caught & (1n << BigInt(s - 1))) sig = s;
      console.log('mapped', readFileSync('/proc/self/maps', 'utf8').includes('etherlink.node'), 'signal', sig);
      process.kill(process.pid, sig);
      setTimeout(() => console.log('survived'), 200);
    });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: fileURLToPath(new URL('../../..', import.meta.url)) });
  assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.stdout}${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /"kind":"dropped"/);
  assert.match(r.stdout, /mapped true signal (3[5-9]|[4-6]\d)\b/);
  assert.match(r.stdout, /survived/);
});
