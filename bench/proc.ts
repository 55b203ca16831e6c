// What the bench reads from /proc: a process's CPU ticks and memory, the
// machine's busy time, and which PID is really the node process we started.
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { run } from '../lab/netns.js';

let clkTck: number | undefined;

/** Kernel clock ticks per second (`getconf CLK_TCK`), for /proc/PID/stat times. */
export function ticksPerSecond(): number {
  clkTck ??= Number(run('getconf', ['CLK_TCK']).stdout.trim()) || 100;
  return clkTck;
}

/** utime and stime of a process in seconds, or undefined once it is gone. */
export function cpuTimes(pid: number): { user: number; sys: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; fields after ')' are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    return { user: Number(fields[11]) / ticksPerSecond(), sys: Number(fields[12]) / ticksPerSecond() };
  } catch {
    return undefined;
  }
}

/** utime + stime of a process in seconds, or undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  const t = cpuTimes(pid);
  return t === undefined ? undefined : t.user + t.sys;
}

/** A field of /proc/PID/status in bytes (VmRSS, VmHWM...), or undefined. */
export function statusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Busy and total CPU time of the whole machine in seconds (all cores), from /proc/stat. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: (total - idle) / ticksPerSecond(), total: total / ticksPerSecond() };
}

/**
 * Check that `pid` is the node process running `script`. `ip netns exec NS node ...`
 * execs node in place, so the PID of the spawned `ip` becomes node's once the
 * child has printed anything; this proves it instead of trusting it.
 */
export function verifyNodePid(pid: number, script: string): void {
  const exe = realpathSync(readlinkSync(`/proc/${pid}/exe`));
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  if (exe !== realpathSync(process.execPath) || !cmdline.some((a) => a.endsWith(script))) {
    throw new Error(`PID ${pid} is ${exe} ${cmdline.join(' ')}, not node ${script}: cannot measure it`);
  }
}
