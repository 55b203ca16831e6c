// What every bench result carries (machine, date, command) and how it is shown:
// markdown tables on stdout, one JSON file under results/ (gitignored).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { run } from '../lab/netns.js';
import { ENV_VARS } from './config.js';

export interface Machine {
  nproc: number;
  kernel: string;
  node: string;
  cpuModel: string;
  memoryGiB: number;
  /** 1-minute load average at start: other work on the machine skews the numbers. */
  loadAverage1m: number;
  iperf3: string;
}

export function machineInfo(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    nproc: Number(run('nproc', []).stdout.trim()),
    kernel: run('uname', ['-r']).stdout.trim(),
    node: process.version,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAverage1m: loadavg()[0]!,
    iperf3: run('iperf3', ['--version'], { allowFail: true }).stdout.split('\n')[0]?.trim() ?? 'unknown',
  };
}

/** The command line as typed, with the BENCH_* variables that were set. */
export function commandLine(): string {
  const env = ENV_VARS.filter((k) => process.env[k] !== undefined).map((k) => `${k}=${process.env[k]}`);
  const args = process.argv.slice(2);
  const npm = process.env.npm_lifecycle_event === 'bench' && args.length === 0;
  return [...env, npm ? 'npm run bench' : `node dist/bench/bench.js${args.length ? ' ' + args.join(' ') : ''}`].join(' ');
}

/** A markdown table: the first column left-aligned, the others (figures) right-aligned. */
export function markdownTable(head: readonly string[], rows: readonly string[][]): string {
  const align = head.map((_, i) => (i === 0 ? '---' : '---:'));
  return [`| ${head.join(' | ')} |`, `|${align.join('|')}|`, ...rows.map((r) => `| ${head.map((_, i) => r[i] ?? '').join(' | ')} |`)].join('\n');
}

/** A figure with fixed decimals, small values kept readable (0.012, not 0.01); '—' when missing. */
export function fmt(v: number | undefined, decimals = 2): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  if (decimals > 0 && v !== 0 && Math.abs(v) < 10 ** -decimals) return v.toPrecision(2);
  return v.toFixed(decimals);
}

/** ours/theirs, or undefined when it means nothing (missing or zero baseline). */
export function ratio(ours: number | undefined, theirs: number | undefined): number | undefined {
  if (ours === undefined || theirs === undefined || !Number.isFinite(ours) || !Number.isFinite(theirs) || theirs === 0) return undefined;
  return ours / theirs;
}

export function writeResults(root: string, name: string, data: unknown): string {
  const dir = join(root, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}
