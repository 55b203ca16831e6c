// Section "scale": one vswitch process (--insecure), driven over loopback by bench/scale-gen
// (a separate process of real port sessions, cipher none), with 2 ports and then with many
// ports and learned MACs. Forwarding rate, its ratio, and memory per port. The many-port
// case runs twice: with each burst of a port to one random port (the scale run: traffic
// comes in runs to a peer, as a TCP window does; MACs still random over the table) and
// with every frame to a port chosen at random on its own (the worst case: next to no runs for UDP GSO).
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collect, Netns, waitExit, waitForOutput } from '../lab/netns.js';
import { config } from './config.js';
import { verifyNodePid } from './proc.js';
import { fmt, markdownTable, ratio } from './report.js';

const here = join(fileURLToPath(import.meta.url), '..');
const VSWITCH = join(here, '..', 'bin', 'vswitch.js');
const GENERATOR = join(here, 'scale-gen.js');
/** The forwarding rate at scale should stay at least this fraction of the 2-port rate. */
export const SCALE_TARGET_RATIO = 0.8;
/** Whole-case bound: joins, learning, warm-up and measurement. */
const CASE_TIMEOUT_MS = 240_000;
const SHUTDOWN_TIMEOUT_MS = 60_000;

export interface GeneratorResult {
  ports: number;
  macs: number;
  macsPerPort: number;
  burst: number;
  window: number;
  frameBytes: number;
  joinMs: number;
  learnMs: number;
  learnFlooded: number;
  learnLost: number;
  seconds: number;
  deliveredPerS: number;
  sentPerS: number;
  floodedPerS: number;
  lostInWindow: number;
  stallsInWindow: number;
  switchCpuPct: number;
  generatorCpuPct: number;
  machineBusyPct: number;
  deliveredPerSwitchCpuS: number;
  udpRcvbufErrorsInWindow: number;
  leaves: number;
  rejects: number;
  switchRss: { base?: number; joined?: number; learned?: number; end?: number; peak?: number };
}

export type ScaleCase =
  | (GeneratorResult & {
      ok: true;
      name: string;
      macTableSize?: number;
      switchCounters?: string;
      /** SIGTERM to exit: LEAVE to every port, every port's MACs dropped. */
      shutdownMs?: number;
      runsDeliveredPerS?: number[];
      runsPerSwitchCpuS?: number[];
      failedRuns?: number;
    })
  | { ok: false; name: string; ports: number; macs: number; error: string };

export interface ScaleResult {
  small: ScaleCase;
  /** The scale run: each burst of a port to one random port, its frames to random MACs there. */
  large: ScaleCase;
  /** The worst case: every frame to a random port (nothing for UDP GSO to merge). */
  largeFrames: ScaleCase;
  /** large / small forwarding rate (frames/s delivered). */
  rateRatio?: number;
  /** The same per switch CPU-second: independent of whether the switch or the generator saturated. */
  efficiencyRatio?: number;
  /** largeFrames / small, by rate and per switch CPU-second. */
  framesRateRatio?: number;
  framesEfficiencyRatio?: number;
  bytesPerPort?: number;
  bytesPerMac?: number;
  target: number;
}

/** Where the generator's measurement frames go (bench/scale-gen.ts --pattern). */
export type ScalePattern = 'bursts' | 'frames';

async function runCase(ns: Netns, name: string, ports: number, macs: number, pattern: ScalePattern, inspect: boolean): Promise<ScaleCase> {
  // BENCH_SCALE_CPU_PROF=DIR: a .cpuprofile of the vswitch and of the generator per run, named after the case (written at exit).
  const prof = (who: string): string[] =>
    config.scaleCpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', config.scaleCpuProfDir, '--cpu-prof-name', `${who}-${ports}-ports-${Date.now()}.cpuprofile`];
  const vswitch = ns.spawn(process.execPath, [
    ...prof('vswitch'),
    // The generator's sessions use cipher none: this measures switching, not crypto.
    VSWITCH, '--insecure', '--listen', `127.0.0.1:${config.switchPort}`, '--log-level', 'warn',
    // Room for the case: the defaults (1024 ports, 65536 MACs, 64 per port) are below 100k MACs on 1,000 ports.
    '--max-ports', String(Math.max(1024, ports + 16)), '--max-macs', String(Math.max(65_536, macs * 2)),
    '--max-macs-per-port', String(Math.max(64, Math.ceil(macs / ports) * 2)),
  ]);
  let gen: ReturnType<Netns['spawn']> | undefined;
  try {
    await waitForOutput(vswitch, /vswitch ready on UDP/, 10_000);
    verifyNodePid(vswitch.pid!, 'vswitch.js');
    gen = ns.spawn(process.execPath, [
      ...prof('generator'),
      GENERATOR, '--switch-port', String(config.switchPort), '--switch-pid', String(vswitch.pid),
      '--ports', String(ports), '--macs', String(macs), '--seconds', String(config.scaleSeconds),
      '--warmup', String(config.scaleWarmupSeconds), '--burst', String(config.scaleBurst), '--window', String(config.scaleWindow),
      ...(config.scaleOffload ? ['--offload'] : []),
      '--pattern', pattern,
    ]);
    const out = collect(gen);
    gen.stdout?.on('data', (d: string) => {
      for (const line of d.split('\n')) if (line.startsWith('gen: ')) console.log(`  ${name}: ${line.slice(5)}`);
    });
    await waitForOutput(gen, /^RESULT .*\n/m, CASE_TIMEOUT_MS).catch((err: Error) => {
      throw new Error(`generator: ${out.err().trim() || err.message}`);
    });
    const line = /^RESULT (.*)$/m.exec(out.out())?.[1]!;
    const r = JSON.parse(line) as GeneratorResult;
    const res: ScaleCase = { ok: true, name, ...r };
    console.log(
      `  ${name}: ${fmt(r.deliveredPerS, 0)} frames/s delivered, vswitch ${fmt(r.switchCpuPct, 0)}% CPU, generator ${fmt(r.generatorCpuPct, 0)}%, machine ${fmt(r.machineBusyPct, 0)}%`,
    );
    const sw = collect(vswitch);
    if (inspect) {
      // The switch's own view: MAC table size and counters (SIGUSR1 prints them).
      const before = sw.out().length;
      vswitch.kill('SIGUSR1');
      await waitForOutput(vswitch, /COUNTERS[\s\S]*protocol:.*\n/, 60_000);
      const status = sw.out().slice(before);
      res.macTableSize = Number(/MAC TABLE \((\d+)\)/.exec(status)?.[1] ?? NaN);
      const counters = /COUNTERS\n([\s\S]*)$/.exec(status)?.[1]?.trim();
      if (counters !== undefined) res.switchCounters = counters;
    }
    // Shutdown says goodbye to every port and drops its MACs: its time grows with ports x MACs if that is a scan.
    const t0 = Date.now();
    vswitch.kill('SIGTERM');
    await waitExit(vswitch, SHUTDOWN_TIMEOUT_MS);
    res.shutdownMs = Date.now() - t0;
    // Only now may the generator's ports leave (the switch has gone: their goodbyes go nowhere).
    gen.kill('SIGUSR2');
    const code = await waitExit(gen, SHUTDOWN_TIMEOUT_MS);
    if (code !== 0) throw new Error(`generator exited ${code}: ${out.err().trim()}`);
    return res;
  } catch (err) {
    return { ok: false, name, ports, macs, error: `${(err as Error).message}\n${collect(vswitch).err().slice(-500)}`.trim() };
  } finally {
    if (gen && gen.exitCode === null) gen.kill('SIGKILL');
    if (vswitch.exitCode === null && vswitch.signalCode === null) vswitch.kill('SIGKILL');
    await waitExit(vswitch, 10_000).catch(() => undefined);
  }
}

/** The run with the median delivered rate stands for the case; all rates are kept. */
function medianCase(runs: ScaleCase[]): ScaleCase {
  const ok = runs.filter((r): r is Extract<ScaleCase, { ok: true }> => r.ok).sort((a, b) => a.deliveredPerS - b.deliveredPerS);
  if (ok.length === 0) return runs[0]!;
  const m = ok[Math.floor((ok.length - 1) / 2)]!;
  const inspected = ok.find((r) => r.macTableSize !== undefined);
  return {
    ...m,
    ...(inspected?.macTableSize !== undefined ? { macTableSize: inspected.macTableSize } : {}),
    ...(inspected?.switchCounters !== undefined ? { switchCounters: inspected.switchCounters } : {}),
    runsDeliveredPerS: ok.map((r) => r.deliveredPerS),
    runsPerSwitchCpuS: ok.map((r) => r.deliveredPerSwitchCpuS),
    failedRuns: runs.length - ok.length,
  };
}

export async function runScale(tag: string): Promise<ScaleResult> {
  console.log(
    `\n== scale: one vswitch on loopback, load generator in another process; ${config.scaleSeconds} s measured after ${config.scaleWarmupSeconds} s warm-up; ` +
      `${config.scaleBurst} datagrams per sendmmsg, ${config.scaleWindow} in flight${config.scaleOffload ? ', generator with UDP GSO/GRO' : ''}; ${config.runs} run(s) per case, interleaved, median`,
  );
  const ns = Netns.create('sc', tag);
  try {
    const smallRuns: ScaleCase[] = [];
    const largeRuns: ScaleCase[] = [];
    const framesRuns: ScaleCase[] = [];
    // With 2 ports both patterns are one: every burst goes to the other port.
    const cases = [
      { runs: smallRuns, name: '2 ports', ports: 2, macs: 2, pattern: 'bursts' },
      { runs: largeRuns, name: `${config.scalePorts} ports, bursts`, ports: config.scalePorts, macs: config.scaleMacs, pattern: 'bursts' },
      { runs: framesRuns, name: `${config.scalePorts} ports, frames`, ports: config.scalePorts, macs: config.scaleMacs, pattern: 'frames' },
    ] as const;
    for (let r = 0; r < config.runs; r++) {
      for (const k of cases) {
        const c = await runCase(ns, k.name, k.ports, k.macs, k.pattern, r === 0);
        k.runs.push(c);
        if (!c.ok) console.log(`  ${c.name}: run ${r + 1} failed: ${c.error}`);
      }
    }
    const small = medianCase(smallRuns);
    const large = medianCase(largeRuns);
    const largeFrames = medianCase(framesRuns);
    const res: ScaleResult = { small, large, largeFrames, target: SCALE_TARGET_RATIO };
    if (small.ok && largeFrames.ok) {
      res.framesRateRatio = largeFrames.deliveredPerS / small.deliveredPerS;
      res.framesEfficiencyRatio = largeFrames.deliveredPerSwitchCpuS / small.deliveredPerSwitchCpuS;
    }
    if (small.ok && large.ok) {
      res.rateRatio = large.deliveredPerS / small.deliveredPerS;
      res.efficiencyRatio = large.deliveredPerSwitchCpuS / small.deliveredPerSwitchCpuS;
      const m = large.switchRss;
      if (m.base !== undefined && m.joined !== undefined) res.bytesPerPort = (m.joined - m.base) / large.ports;
      if (m.joined !== undefined && m.learned !== undefined) res.bytesPerMac = (m.learned - m.joined) / large.macs;
    }
    return res;
  } finally {
    ns.delete();
  }
}

export function scaleTable(r: ScaleResult): string {
  const cases = [r.small, r.large, r.largeFrames];
  const head = ['figure', ...cases.map((c) => `${c.name}, ${c.macs} MACs`), 'bursts / 2 ports', 'frames / 2 ports'];
  const mb = (v: number | undefined): number | undefined => (v === undefined ? undefined : v / 2 ** 20);
  type Ok = Extract<ScaleCase, { ok: true }>;
  const row = (label: string, pick: (c: Ok) => number | undefined, decimals: number, withRatio = false): string[] => {
    const vals = cases.map((c) => (c.ok ? pick(c) : undefined));
    return [label, ...vals.map((v, i) => (cases[i]!.ok ? fmt(v, decimals) : 'failed')), withRatio ? fmt(ratio(vals[1], vals[0]), 3) : '', withRatio ? fmt(ratio(vals[2], vals[0]), 3) : ''];
  };
  const rows = [
    row('forwarded, delivered to the right port (frames/s)', (c) => c.deliveredPerS, 0, true),
    ['  each run (frames/s)', ...cases.map((c) => (c.ok ? (c.runsDeliveredPerS ?? [c.deliveredPerS]).map((v) => fmt(v, 0)).join(', ') : 'failed')), '', ''],
    row('offered by the generator (frames/s)', (c) => c.sentPerS, 0, true),
    row('flooded copies (frames/s)', (c) => c.floodedPerS, 0),
    row('vswitch CPU %', (c) => c.switchCpuPct, 0),
    row('generator CPU %', (c) => c.generatorCpuPct, 0),
    row('machine busy CPU % (all cores; includes other work)', (c) => c.machineBusyPct, 0),
    row('  of which not vswitch or generator', (c) => c.machineBusyPct - c.switchCpuPct - c.generatorCpuPct, 0),
    row('delivered per vswitch CPU-second', (c) => c.deliveredPerSwitchCpuS, 0, true),
    row('lost in window (stall write-offs)', (c) => c.lostInWindow, 0),
    row('UDP receive-buffer drops in window (netns)', (c) => c.udpRcvbufErrorsInWindow, 0),
    row('MAC table size (vswitch SIGUSR1)', (c) => c.macTableSize, 0),
    row('join time (ms)', (c) => c.joinMs, 0),
    row('teach MACs time (ms)', (c) => c.learnMs, 0),
    row('vswitch shutdown, SIGTERM to exit (ms)', (c) => c.shutdownMs, 0),
    row('vswitch RSS at start (MB)', (c) => mb(c.switchRss.base), 1),
    row('vswitch RSS after joins (MB)', (c) => mb(c.switchRss.joined), 1),
    row('vswitch RSS after MACs (MB)', (c) => mb(c.switchRss.learned), 1),
    row('vswitch RSS after traffic (MB)', (c) => mb(c.switchRss.end), 1),
    row('vswitch peak RSS (MB)', (c) => mb(c.switchRss.peak), 1),
  ];
  const lines = [markdownTable(head, rows), ''];
  const verdict = r.rateRatio === undefined ? 'n/a' : r.rateRatio >= r.target ? 'meets' : 'MISSES';
  lines.push(`rate ratio (${r.large.name} / 2 ports): ${fmt(r.rateRatio, 3)} — ${verdict} the target >= ${r.target}`);
  lines.push(`per vswitch CPU-second: ${fmt(r.efficiencyRatio, 3)}`);
  const framesVerdict = r.framesRateRatio === undefined ? 'n/a' : r.framesRateRatio >= r.target ? 'meets' : 'misses';
  lines.push(`worst case, every frame to a random port (${r.largeFrames.name} / 2 ports): rate ${fmt(r.framesRateRatio, 3)} (${framesVerdict} ${r.target}), per vswitch CPU-second ${fmt(r.framesEfficiencyRatio, 3)}`);
  lines.push(`memory: ${fmt(r.bytesPerPort === undefined ? undefined : r.bytesPerPort / 1024, 1)} KiB per port (RSS after joins - at start, / ports), ${fmt(r.bytesPerMac, 0)} B per learned MAC`);
  for (const c of cases) if (!c.ok) lines.push(`${c.name} failed: ${c.error}`);
  return lines.join('\n');
}
