// Section "relay-workers": end-to-end pair data relayed by one vswitch (--insecure) on
// loopback, with --workers 0, 1, 2 and N (os.availableParallelism()), driven by
// bench/relay-gen (a separate process of real member sessions, cipher none, sending
// made-up pair data the switch forwards unopened). Delivered datagrams/s and Gbit/s,
// loss, misrouting, the vswitch's CPU, and each as a ratio to --workers 0 in the same run.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collect, Netns, run, waitExit, waitForOutput } from '../lab/netns.js';
import { config } from './config.js';
import { verifyNodePid } from './proc.js';
import { fmt, markdownTable, ratio } from './report.js';

const here = join(fileURLToPath(import.meta.url), '..');
const VSWITCH = join(here, '..', 'bin', 'vswitch.js');
const GENERATOR = join(here, 'relay-gen.js');
/** Frame sizes carried end to end; each datagram is 32 bytes more (prefix, index, counter, tag). */
const FRAME_SIZES = [1400, 60] as const;
/** Whole-case bound: joins, every size's warm-up, measurement and drain. */
const CASE_TIMEOUT_MS = 120_000;
const SHUTDOWN_TIMEOUT_MS = 30_000;
const STATUS_TIMEOUT_MS = 15_000;

/** One frame size of one generator run (bench/relay-gen.ts measure()). */
export interface RelaySizeResult {
  frameBytes: number;
  datagramBytes: number;
  seconds: number;
  deliveredPerS: number;
  deliveredGbps: number;
  sentPerS: number;
  phaseSent: number;
  phaseDelivered: number;
  lost: number;
  lossPct: number;
  stalls: number;
  refused: number;
  misrouted: number;
  badSource: number;
  late: number;
  minPerMember: number;
  maxPerMember: number;
  switchCpuPct: number;
  switchSysPct: number;
  switchMainThreadCpuPct: number;
  generatorCpuPct: number;
  machineBusyPct: number;
  deliveredPerSwitchCpuS: number;
  udpRcvbufErrors: number;
  udpSndbufErrors: number;
  phaseRcvbufErrors: number;
  phaseSoftnetDrops: number;
}

interface GeneratorResult {
  members: number;
  ids: number[];
  burst: number;
  window: number;
  offload: string;
  joinMs: number;
  leaves: number;
  rejects: number;
  sizes: RelaySizeResult[];
  /** Datagrams sent to each member id over the run (all sizes). */
  sentTo: Record<string, number>;
}

/** What the switch itself says it relayed (vswitch status --json), over the whole run. */
export interface SwitchRelayCounts {
  /** relayDatagrams of the main thread's sockets. */
  mainRelayed: number;
  /** relayDatagrams of each worker (summed over its sockets); absent without workers in the report. */
  workerRelayed?: number[];
  /** What the switch's sockets (main and workers) could not send: send queue full, or an error. */
  txDropped: number;
  txErrors: number;
  /** Pair data JS relayed or dropped (the slow path): should stay 0 here. */
  slowRelayed?: number;
  dropped?: number;
}

/**
 * Steering: the socket 1 + i of the port's SO_REUSEPORT group must relay exactly the
 * pair data sent to ids with id mod workers = i (`expected`, from the generator's own
 * counts). Which worker holds socket 1 + i is bind order, so a worker's count is
 * matched to its class: `order` is the class each worker relayed (-1: none fits).
 */
export interface SteeringCheck {
  expected: number[];
  relayed: number[];
  order: number[];
  /** 'exact': worker i relayed class i; 'exact-reordered': each worker one whole class, not in index order; 'lossy': each worker within one class, short by at most what was lost; 'MISMATCH'. */
  verdict: 'exact' | 'exact-reordered' | 'lossy' | 'MISMATCH';
}

export type RelayCase =
  | { ok: true; offload: boolean; workers: number; run: number; gen: GeneratorResult; switchCounts?: SwitchRelayCounts; statusError?: string; steering?: SteeringCheck }
  | { ok: false; offload: boolean; workers: number; run: number; error: string };

export interface RelayWorkersRow {
  offload: boolean;
  workers: number;
  frameBytes: number;
  /** The median run (by delivered datagrams/s) of this worker count and size. */
  median: RelaySizeResult;
  runsDeliveredPerS: number[];
  /** Median over runs of delivered / the same run's --workers 0. */
  ratioToZero?: number;
  /** The same per vswitch CPU-second. */
  perCpuRatioToZero?: number;
  failedRuns: number;
}

export interface RelayWorkersResult {
  cores: number;
  members: number;
  seconds: number;
  warmupSeconds: number;
  burst: number;
  window: number;
  offloadModes: boolean[];
  /** Worker counts measured; missing ones the vswitch could not run (no --workers yet). */
  workerCounts: number[];
  /** Worker counts asked for but not run, and why. */
  skipped: string[];
  rows: RelayWorkersRow[];
  cases: RelayCase[];
}

/** Whether this build's vswitch has --workers (the option came with the relay workers). */
function hasWorkersOption(): boolean {
  return /--workers\b/.test(run(process.execPath, [VSWITCH, '--help'], { allowFail: true }).stdout);
}

type SocketShape = { relayDatagrams?: number; txDropped?: number; txErrors?: number };
interface StatusShape {
  udp?: SocketShape[];
  workers?: { sockets?: SocketShape[] }[];
  protocol?: Record<string, number>;
}

/** The switch's relay counts, or why they could not be read. */
function switchCounts(ns: Netns, control: string): SwitchRelayCounts | string {
  const r = ns.exec(process.execPath, [VSWITCH, 'status', '--json', '--control', control], { allowFail: true, timeoutMs: STATUS_TIMEOUT_MS });
  let s: StatusShape;
  try {
    s = JSON.parse(r.stdout) as StatusShape;
  } catch {
    return `vswitch status --json: exit ${r.status}, ${(r.stderr || r.stdout).trim().slice(0, 300) || 'no output'}`;
  }
  const sum = (xs: SocketShape[] | undefined, k: keyof SocketShape = 'relayDatagrams'): number => (xs ?? []).reduce((a, x) => a + (x[k] ?? 0), 0);
  const all = [...(s.udp ?? []), ...(s.workers ?? []).flatMap((w) => w.sockets ?? [])];
  return {
    mainRelayed: sum(s.udp),
    txDropped: sum(all, 'txDropped'),
    txErrors: sum(all, 'txErrors'),
    ...(s.workers !== undefined ? { workerRelayed: s.workers.map((w) => sum(w.sockets)) } : {}),
    ...(s.protocol?.pairRelayedSlow !== undefined ? { slowRelayed: s.protocol.pairRelayedSlow } : {}),
    ...(s.protocol?.pairDropped !== undefined ? { dropped: s.protocol.pairDropped } : {}),
  };
}

function steering(gen: GeneratorResult, counts: SwitchRelayCounts, workers: number): SteeringCheck | undefined {
  if (workers === 0 || counts.workerRelayed === undefined || counts.workerRelayed.length !== workers) return undefined;
  const relayed = counts.workerRelayed;
  const expected = new Array<number>(workers).fill(0);
  for (const [id, n] of Object.entries(gen.sentTo)) expected[Number(id) % workers]! += n;
  const lost = gen.sizes.reduce((a, s) => a + s.lost, 0);
  // A worker that relayed exactly one class's count takes it first (its own index first); the
  // rest take the unclaimed class they fall short of least (never one they exceed).
  const taken = new Set<number>();
  const order = relayed.map(() => -1);
  relayed.forEach((n, i) => {
    const c = expected[i] === n ? i : expected.findIndex((e, k) => e === n && !taken.has(k) && relayed[k] !== e);
    if (c >= 0 && !taken.has(c)) {
      order[i] = c;
      taken.add(c);
    }
  });
  relayed.forEach((n, i) => {
    if (order[i]! >= 0) return;
    let best = -1;
    for (let c = 0; c < workers; c++) if (!taken.has(c) && expected[c]! >= n && (best < 0 || expected[c]! < expected[best]!)) best = c;
    if (best >= 0) taken.add(best);
    order[i] = best;
  });
  const shortBy = order.reduce((a, c, i) => a + (c < 0 ? Infinity : expected[c]! - relayed[i]!), 0);
  const verdict = shortBy === Infinity || shortBy > lost ? 'MISMATCH' : shortBy > 0 ? 'lossy' : order.every((c, i) => c === i) ? 'exact' : 'exact-reordered';
  return { expected, relayed, order, verdict };
}

async function runCase(ns: Netns, offload: boolean, workers: number, runIndex: number, workersFlag: boolean): Promise<RelayCase> {
  const control = `/tmp/etl-relay-workers-${ns.name}.sock`;
  const vswitch = ns.spawn(process.execPath, [
    // The generator's sessions use cipher none, and the relay never opens pair data anyway.
    VSWITCH, '--insecure', '--listen', `127.0.0.1:${config.switchPort}`, '--log-level', 'warn', '--control', control,
    ...(workersFlag ? ['--workers', String(workers)] : []),
  ]);
  let gen: ReturnType<Netns['spawn']> | undefined;
  const label = `--workers ${workers}${offload ? ', GSO/GRO' : ''}`;
  try {
    await waitForOutput(vswitch, /vswitch ready on UDP/, 10_000);
    verifyNodePid(vswitch.pid!, 'vswitch.js');
    gen = ns.spawn(process.execPath, [
      GENERATOR, '--switch-port', String(config.switchPort), '--switch-pid', String(vswitch.pid),
      '--members', String(config.relayMembers), '--sizes', FRAME_SIZES.join(','), '--seconds', String(config.relaySeconds),
      '--warmup', String(config.relayWarmupSeconds), '--burst', String(config.relayBurst), '--window', String(config.relayWindow),
      ...(offload ? ['--offload'] : []),
    ]);
    const out = collect(gen);
    gen.stdout?.on('data', (d: string) => {
      for (const line of d.split('\n')) if (line.startsWith('gen: ')) console.log(`  ${label}: ${line.slice(5)}`);
    });
    await waitForOutput(gen, /^RESULT .*\n/m, CASE_TIMEOUT_MS).catch((err: Error) => {
      throw new Error(`generator: ${out.err().trim() || err.message}`);
    });
    const r = JSON.parse(/^RESULT (.*)$/m.exec(out.out())![1]!) as GeneratorResult;
    // Read while every member is still joined: the workers' counters go with the switch.
    const counts = switchCounts(ns, control);
    vswitch.kill('SIGTERM');
    await waitExit(vswitch, SHUTDOWN_TIMEOUT_MS);
    gen.kill('SIGUSR2');
    const code = await waitExit(gen, SHUTDOWN_TIMEOUT_MS);
    if (code !== 0) throw new Error(`generator exited ${code}: ${out.err().trim()}`);
    if (typeof counts === 'string') console.log(`  ${label}: no switch counts: ${counts}`);
    const steer = typeof counts === 'string' ? undefined : steering(r, counts, workers);
    if (steer !== undefined && steer.verdict !== 'exact') {
      console.log(`  ${label}: steering ${steer.verdict}: workers relayed ${steer.relayed.join(' / ')}, sent to ids mod ${workers} = 0.. ${steer.expected.join(' / ')}`);
    }
    return { ok: true, offload, workers, run: runIndex, gen: r, ...(typeof counts === 'string' ? { statusError: counts } : { switchCounts: counts }), ...(steer !== undefined ? { steering: steer } : {}) };
  } catch (err) {
    return { ok: false, offload, workers, run: runIndex, error: `${(err as Error).message}\n${collect(vswitch).err().slice(-500)}`.trim() };
  } finally {
    if (gen && gen.exitCode === null) gen.kill('SIGKILL');
    if (vswitch.exitCode === null && vswitch.signalCode === null) vswitch.kill('SIGKILL');
    await waitExit(vswitch, 10_000).catch(() => undefined);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function runRelayWorkers(tag: string): Promise<RelayWorkersResult> {
  const cores = availableParallelism();
  const asked = [...new Set([0, 1, 2, cores])];
  const workersFlag = hasWorkersOption();
  const workerCounts = workersFlag ? asked : [0];
  const skipped = workersFlag ? [] : asked.filter((w) => w !== 0).map((w) => `--workers ${w}: this vswitch has no --workers option`);
  console.log(
    `\n== relay-workers: one vswitch on loopback relaying pair data between ${config.relayMembers} members of a generator process; ` +
      `--workers ${workerCounts.join(', ')} (N = ${cores} cores); ${config.relaySeconds} s per size after ${config.relayWarmupSeconds} s warm-up; ` +
      `${config.relayBurst} datagrams per burst, ${config.relayWindow} in flight; ${config.relayOffload.map((o) => (o ? 'with UDP GSO/GRO as a vport binds' : 'without GSO/GRO')).join(', then ')}; ` +
      `${config.runs} run(s), worker counts interleaved, median`,
  );
  for (const s of skipped) console.log(`  skipped ${s}`);
  const ns = Netns.create('rw', tag);
  const cases: RelayCase[] = [];
  try {
    for (const offload of config.relayOffload) {
      for (let r = 0; r < config.runs; r++) {
        for (const w of workerCounts) {
          const c = await runCase(ns, offload, w, r, workersFlag);
          cases.push(c);
          if (!c.ok) console.log(`  --workers ${w}: run ${r + 1} failed: ${c.error}`);
        }
      }
    }
  } finally {
    ns.delete();
  }
  type Ok = Extract<RelayCase, { ok: true }>;
  const ok = cases.filter((c): c is Ok => c.ok);
  const sizeOf = (c: Ok, frameBytes: number): RelaySizeResult | undefined => c.gen.sizes.find((s) => s.frameBytes === frameBytes);
  const rows: RelayWorkersRow[] = [];
  for (const offload of config.relayOffload) for (const w of workerCounts) {
    for (const size of FRAME_SIZES) {
      const mine = ok.filter((c) => c.workers === w && c.offload === offload);
      const results = mine.map((c) => sizeOf(c, size)).filter((s): s is RelaySizeResult => s !== undefined).sort((a, b) => a.deliveredPerS - b.deliveredPerS);
      if (results.length === 0) continue;
      // Ratios within a run: the machine's other load moves both sides of it alike.
      const ratios: number[] = [];
      const perCpu: number[] = [];
      for (const c of mine) {
        const base = ok.find((b) => b.workers === 0 && b.run === c.run && b.offload === offload);
        const x = sizeOf(c, size);
        const y = base === undefined ? undefined : sizeOf(base, size);
        const q = ratio(x?.deliveredPerS, y?.deliveredPerS);
        const p = ratio(x?.deliveredPerSwitchCpuS, y?.deliveredPerSwitchCpuS);
        if (q !== undefined) ratios.push(q);
        if (p !== undefined) perCpu.push(p);
      }
      rows.push({
        offload,
        workers: w,
        frameBytes: size,
        median: results[Math.floor((results.length - 1) / 2)]!,
        runsDeliveredPerS: results.map((s) => s.deliveredPerS),
        ...(ratios.length > 0 ? { ratioToZero: median(ratios) } : {}),
        ...(perCpu.length > 0 ? { perCpuRatioToZero: median(perCpu) } : {}),
        failedRuns: cases.filter((c) => c.workers === w && c.offload === offload).length - results.length,
      });
    }
  }
  return {
    cores,
    members: config.relayMembers,
    seconds: config.relaySeconds,
    warmupSeconds: config.relayWarmupSeconds,
    burst: config.relayBurst,
    window: config.relayWindow,
    offloadModes: config.relayOffload,
    workerCounts,
    skipped,
    rows,
    cases,
  };
}

export function relayWorkersTable(r: RelayWorkersResult): string {
  const head = [
    'sockets', 'vswitch', 'frame (datagram) B', 'delivered datagrams/s', 'Gbit/s (UDP payload)', 'x --workers 0',
    'delivered per vswitch CPU-s', 'x --workers 0 per CPU-s', 'lost %', 'misrouted', 'vswitch CPU % (main thread; kernel)', 'generator CPU %', 'machine busy %', 'each run (datagrams/s)',
  ];
  const rows = r.rows.map((row) => {
    const m = row.median;
    return [
      row.offload ? 'GSO/GRO' : 'plain',
      `--workers ${row.workers}`,
      `${row.frameBytes} (${m.datagramBytes})`,
      fmt(m.deliveredPerS, 0),
      fmt(m.deliveredGbps, 2),
      row.workers === 0 ? '1' : fmt(row.ratioToZero, 2),
      fmt(m.deliveredPerSwitchCpuS, 0),
      row.workers === 0 ? '1' : fmt(row.perCpuRatioToZero, 2),
      fmt(m.lossPct, 3),
      fmt(m.misrouted + m.badSource, 0),
      `${fmt(m.switchCpuPct, 0)} (${fmt(m.switchMainThreadCpuPct, 0)}; ${fmt(m.switchSysPct, 0)})`,
      fmt(m.generatorCpuPct, 0),
      fmt(m.machineBusyPct, 0),
      row.runsDeliveredPerS.map((v) => fmt(v, 0)).join(', ') + (row.failedRuns > 0 ? ` (${row.failedRuns} failed)` : ''),
    ];
  });
  const lines = [markdownTable(head, rows), ''];
  lines.push(
    `${r.members} members, each sending ${r.burst}-datagram bursts (each burst to one destination) to 8 others, ${r.window} datagrams in flight; ` +
      `${r.seconds} s per size after ${r.warmupSeconds} s warm-up. Ratios are medians of each run over the same run's --workers 0. ` +
      `CPU % is of one core (${r.cores} cores = ${r.cores * 100} %), from /proc (all threads); "main thread" is the vswitch's JS thread.`,
  );
  lines.push(
    `On ${r.cores} cores the generator (one JS thread that sends and receives every datagram) and the loopback's kernel work share the cores with the vswitch: ` +
      "the absolute rate is what this machine allows for all of them at once; delivered per vswitch CPU-second is the relay's own cost.",
  );
  for (const s of r.skipped) lines.push(`not run: ${s}`);
  type Ok = Extract<RelayCase, { ok: true }>;
  const ok = r.cases.filter((c): c is Ok => c.ok);
  for (const offload of r.offloadModes) {
    for (const w of r.workerCounts) {
      const cs = ok.filter((c) => c.offload === offload && c.workers === w);
      const first = cs.find((c) => c.switchCounts !== undefined);
      if (first === undefined) continue;
      const c = first.switchCounts!;
      const sent = first.gen.sizes.reduce((a, x) => a + x.phaseSent, 0);
      const workersPart = c.workerRelayed === undefined ? '' : `, by the workers ${c.workerRelayed.map((x) => fmt(x, 0)).join(' / ')}`;
      const steered = cs.filter((x) => x.steering !== undefined);
      const verdicts = steered.map((x) => x.steering!.verdict);
      const tally = [...new Set(verdicts)].map((v) => `${v} ${verdicts.filter((x) => x === v).length}`).join(', ');
      const steerPart = w === 0 ? '' : steered.length === 0 ? '; steering not checked (no per-worker counts)' : `; steering by id mod ${w} over ${steered.length} runs: ${tally}`;
      lines.push(
        `${offload ? 'GSO/GRO' : 'plain'} --workers ${w}, first run, the switch's own counts: generator sent ${fmt(sent, 0)}; relayed in C++ by the main thread ${fmt(c.mainRelayed, 0)}${workersPart}; ` +
          `not sent (queue full, errors) ${fmt(c.txDropped, 0)}, ${fmt(c.txErrors, 0)}; JS slow path ${fmt(c.slowRelayed, 0)}, dropped ${fmt(c.dropped, 0)}${steerPart}`,
      );
    }
  }
  const lossy = ok.flatMap((c) => c.gen.sizes.filter((x) => x.lost > 0).map((x) => ({ c, x })));
  if (lossy.length > 0) {
    const sumOf = (f: (x: RelaySizeResult) => number): number => lossy.reduce((t, { x }) => t + f(x), 0);
    lines.push(
      `loss: ${lossy.length} of ${ok.length * FRAME_SIZES.length} phases lost datagrams, ${fmt(sumOf((x) => x.lost), 0)} in all, in ${fmt(sumOf((x) => x.stalls), 0)} stall(s); ` +
        `in those phases full receive buffers dropped ${fmt(sumOf((x) => x.phaseRcvbufErrors), 0)} and full input backlogs ${fmt(sumOf((x) => x.phaseSoftnetDrops), 0)} (machine-wide)`,
    );
  }
  for (const c of r.cases) if (!c.ok) lines.push(`${c.offload ? 'GSO/GRO' : 'plain'} --workers ${c.workers} run ${c.run + 1} failed: ${c.error.split('\n')[0]}`);
  return lines.join('\n');
}
