// The crypto stage of a hop-by-hop relay on 1, 2 and N worker threads at once
// (issue 15): aggregate frames/s of open + re-seal, against 1 worker in the same
// run. Not end-to-end relay throughput: no sockets, no Switch, no hand-off.
import { availableParallelism, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { config } from './config.js';
import { relayCryptoLoop, type RelayCryptoJob, type RelayCryptoThreadResult } from './relay-crypto-worker.js';
import { fmt, markdownTable, ratio } from './report.js';

const FRAME_SIZES = [1400, 60] as const;
const BATCH = 64;
const WORKER = new URL('./relay-crypto-worker.js', import.meta.url);

export interface RelayCryptoRow {
  frameSize: number;
  /** 0: on the main thread, no worker. */
  workers: number;
  /** Median over the runs of the aggregate (sum over threads). */
  framesPerSecond: number;
  /** Mean CPU use per thread while measuring (1 = a whole core). */
  cpuPerThread: number;
  /** Median of frames per CPU-second of all threads: the figure a shared machine's load moves least. */
  framesPerCpuSecond: number;
  runs: number[];
}

export interface RelayCryptoResult {
  cores: number;
  seconds: number;
  batch: number;
  loadAverage1m: number;
  rows: RelayCryptoRow[];
}

function gate(): SharedArrayBuffer {
  return new SharedArrayBuffer(8);
}

async function onWorkers(count: number, frameSize: number, seconds: number): Promise<RelayCryptoThreadResult[]> {
  const shared = gate();
  const job: RelayCryptoJob = { frameSize, batch: BATCH, seconds, gate: shared };
  const workers = Array.from({ length: count }, () => new Worker(WORKER, { workerData: { relayCrypto: job } }));
  const results = workers.map(
    (w) =>
      new Promise<RelayCryptoThreadResult>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
        w.once('exit', (code) => reject(new Error(`relay-crypto worker exited (${code}) without a result`)));
      }),
  );
  // Open the gate once every worker has built its keys and batches, so they measure the same seconds.
  const g = new Int32Array(shared);
  while (Atomics.load(g, 0) < count) await new Promise((r) => setTimeout(r, 5));
  Atomics.store(g, 1, 1);
  Atomics.notify(g, 1);
  try {
    return await Promise.all(results);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

function onMainThread(frameSize: number, seconds: number): RelayCryptoThreadResult[] {
  const shared = gate();
  Atomics.store(new Int32Array(shared), 1, 1);
  return [relayCryptoLoop({ frameSize, batch: BATCH, seconds, gate: shared })];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

export async function runRelayCrypto(): Promise<RelayCryptoResult> {
  const cores = availableParallelism();
  const seconds = config.relayCryptoSeconds;
  // 1, 2 and N as the issue asks, and 2N: what more threads than cores give.
  const counts = [...new Set([1, 2, cores, 2 * cores])].sort((a, b) => a - b);
  const loadAverage1m = loadavg()[0]!;
  const rows: RelayCryptoRow[] = [];
  for (const frameSize of FRAME_SIZES) {
    for (const workers of [0, ...counts]) {
      const runs: number[] = [];
      const cpu: number[] = [];
      const perCpu: number[] = [];
      for (let r = 0; r < config.runs; r++) {
        const threads = workers === 0 ? onMainThread(frameSize, seconds) : await onWorkers(workers, frameSize, seconds);
        runs.push(threads.reduce((n, t) => n + t.frames / t.seconds, 0));
        cpu.push(threads.reduce((n, t) => n + t.cpuSeconds / t.seconds, 0) / threads.length);
        perCpu.push(threads.reduce((n, t) => n + t.frames, 0) / threads.reduce((n, t) => n + t.cpuSeconds, 0));
      }
      rows.push({ frameSize, workers, framesPerSecond: median(runs), cpuPerThread: median(cpu), framesPerCpuSecond: median(perCpu), runs });
    }
  }
  return { cores, seconds, batch: BATCH, loadAverage1m, rows };
}

export function relayCryptoTable(r: RelayCryptoResult): string {
  const body = r.rows.map((x) => {
    const one = r.rows.find((y) => y.frameSize === x.frameSize && y.workers === 1)!;
    const gbit = (x.framesPerSecond * x.frameSize * 8) / 1e9;
    const who = x.workers === 0 ? 'main thread, no worker' : `${x.workers} worker${x.workers > 1 ? 's' : ''}${x.workers > r.cores ? ' (more than cores)' : ''}`;
    return [
      `${x.frameSize} B, ${who}`,
      fmt(x.framesPerSecond / 1000, 1),
      fmt(gbit, 2),
      fmt(1e6 / (x.framesPerSecond / Math.max(x.workers, 1)), 2),
      fmt(x.cpuPerThread, 2),
      fmt(x.framesPerCpuSecond / 1000, 1),
      fmt(ratio(x.framesPerSecond, one.framesPerSecond), 2),
    ];
  });
  return (
    markdownTable(
      ['frames, threads (chacha20-poly1305, open + seal, batches of ' + r.batch + ')', 'aggregate k frames/s', 'plaintext Gbit/s', 'µs per frame per thread', 'CPU per thread (1 = a core)', 'k frames per CPU-second', 'x 1 worker'],
      body,
    ) +
    `\n${r.cores} cores (os.availableParallelism()); ${r.seconds} s per run, median of ${config.runs}; load average ${r.loadAverage1m.toFixed(2)} at the start. ` +
    'The crypto stage only (no sockets, no Switch, no hand-off between threads): an upper bound on what workers add to a hop-by-hop relay. ' +
    'Aggregate throughput is what the threads got of the cores; frames per CPU-second is what each core they got did.'
  );
}
