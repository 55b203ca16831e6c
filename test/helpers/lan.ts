// End-to-end LAN helpers: the real vswitch/vport CLIs started in lab namespaces,
// readiness read from their output, status read through SIGUSR1.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collect, waitExit, waitFor, waitForOutput, type Netns, type StarHost } from './netns.js';

export const root = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
/** Path of a built CLI: bin('vswitch') -> dist/bin/vswitch.js. */
export const bin = (name: 'vswitch' | 'vport' | 'etherlink'): string => join(root, 'dist', 'bin', `${name}.js`);

export const SWITCH_PORT = 9999;
/** Startup of a Node CLI on a busy 2-core VM, with margin. */
export const START_TIMEOUT_MS = 10_000;

/** Start vswitch in `ns` and wait for its readiness line. */
export async function startSwitch(ns: Netns, args: readonly string[] = []): Promise<ChildProcess> {
  const child = ns.spawn(process.execPath, [bin('vswitch'), String(SWITCH_PORT), ...args]);
  await waitForOutput(child, new RegExp(`vswitch ready on UDP ${SWITCH_PORT}\\n`), START_TIMEOUT_MS);
  return child;
}

/** Start a vport (etl0, 10.99.0.i/24, port name hI) on host i and wait until it joined. */
export async function startPort(host: StarHost, i: number, args: readonly string[] = []): Promise<ChildProcess> {
  const child = host.ns.spawn(process.execPath, [
    bin('vport'),
    host.switchAddress,
    String(SWITCH_PORT),
    '--name',
    'etl0',
    '--ip',
    `10.99.0.${i}/24`,
    '--port-name',
    `h${i}`,
    ...args,
  ]);
  await waitForOutput(child, /vport etl0 joined \S+\n/, START_TIMEOUT_MS);
  return child;
}

/** How many times `re` (global) occurs in `text`. */
export function count(text: string, re: RegExp): number {
  return [...text.matchAll(new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g'))].length;
}

/** Wait until the child's stdout+stderr holds at least `n` matches of `re`. */
export async function waitForCount(child: ChildProcess, re: RegExp, n: number, timeoutMs: number): Promise<void> {
  const o = collect(child);
  await waitFor(`${n} x ${re}`, () => count(o.out() + o.err(), re) >= n, timeoutMs, 20).catch((err: Error) => {
    throw new Error(`${err.message}; output so far:\n${o.out()}${o.err()}`);
  });
}

export interface ExecResult {
  status: number;
  out: string;
  err: string;
}

/** Run a command inside `ns` without blocking the event loop (children's output keeps flowing). */
export async function execIn(ns: Netns, cmd: string, args: readonly string[], timeoutMs = 10_000): Promise<ExecResult> {
  const child = ns.spawn(cmd, args);
  const o = collect(child);
  const status = await waitExit(child, timeoutMs);
  return { status, out: o.out(), err: o.err() };
}

/** One ping with a one-second wait: true when answered. */
export async function pingOnce(ns: Netns, address: string): Promise<boolean> {
  const args = address.includes(':') ? ['-6', '-c', '1', '-W', '1', address] : ['-c', '1', '-W', '1', address];
  return (await execIn(ns, 'ping', args, 5_000)).status === 0;
}

/** SIGUSR1 to a vswitch, then the status block it printed (up to its last COUNTERS line). */
export async function switchStatus(child: ChildProcess): Promise<string> {
  const o = collect(child);
  const from = o.out().length;
  child.kill('SIGUSR1');
  let block = '';
  await waitFor(
    'vswitch status after SIGUSR1',
    () => {
      const m = /PORTS \(\d+\)[\s\S]*?\n {2}protocol: [^\n]*\n/.exec(o.out().slice(from));
      if (m) block = m[0];
      return m !== null;
    },
    5_000,
    20,
  );
  return block;
}

/** The "protocol:" counters of a vswitch status block, by name ("joins", "bad version", ...). */
export function protocolCounters(status: string): Record<string, number> {
  const line = /^ {2}protocol: (.*)$/m.exec(status)?.[1];
  if (line === undefined) throw new Error(`no protocol counters in status:\n${status}`);
  const out: Record<string, number> = {};
  for (const part of line.split(', ')) {
    const m = /^(.*\S) (\d+)$/.exec(part);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** The MAC of `ifname` in `ns`, lower case. */
export function linkMac(ns: Netns, ifname: string): string {
  const m = /link\/ether ([0-9a-f:]{17})/.exec(ns.ip('link', 'show', ifname).stdout);
  if (!m) throw new Error(`no MAC for ${ifname} in ${ns.name}`);
  return m[1]!;
}
