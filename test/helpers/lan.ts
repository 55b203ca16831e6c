// End-to-end LAN helpers: the real vswitch/vport CLIs started in lab namespaces,
// readiness read from their output, status read through SIGUSR1.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildStar, collect, ensureTools, waitExit, waitFor, waitForOutput, type Netns, type StarHost } from './netns.js';

export const root = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
/** Path of a built CLI: bin('vswitch') -> dist/bin/vswitch.js. */
export const bin = (name: 'vswitch' | 'vport' | 'etherlink'): string => join(root, 'dist', 'bin', `${name}.js`);

export const SWITCH_PORT = 9999;
/** Startup of a Node CLI on a busy 2-core VM, with margin. */
export const START_TIMEOUT_MS = 10_000;

/** Keys for a test LAN: a switch key, one key per host (h1..h9), and an allow file naming them. */
export interface LanKeys {
  dir: string;
  switchKey: string;
  switchPub: string;
  allow: string;
  portKey: (i: number) => string;
  portPub: (i: number) => string;
}

export const MAX_LAN_HOSTS = 9;
let keys: LanKeys | undefined;

/** One set of keys per test process, made with the real `etherlink keygen`, removed at exit. */
export function lanKeys(): LanKeys {
  if (keys !== undefined) return keys;
  const dir = mkdtempSync(join(tmpdir(), 'etl-keys-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const keygen = (file: string): string =>
    execFileSync(process.execPath, [bin('etherlink'), 'keygen', '--out', join(dir, file)], { encoding: 'utf8' }).trim();
  const switchPub = keygen('switch.key');
  const pubs: string[] = [];
  for (let i = 1; i <= MAX_LAN_HOSTS; i++) pubs.push(keygen(`h${i}.key`));
  writeFileSync(join(dir, 'allow'), pubs.map((p, i) => `${p} h${i + 1}`).join('\n') + '\n');
  keys = {
    dir,
    switchKey: join(dir, 'switch.key'),
    switchPub,
    allow: join(dir, 'allow'),
    portKey: (i) => join(dir, `h${i}.key`),
    portPub: (i) => pubs[i - 1]!,
  };
  return keys;
}

/** The key flags of a vswitch, unless it runs --insecure. */
export function switchKeyArgs(args: readonly string[]): string[] {
  if (args.includes('--insecure') || args.includes('--key')) return [];
  const k = lanKeys();
  return ['--key', k.switchKey, '--allow', k.allow];
}

/** The key flags of the vport on host i, unless it runs --insecure. */
export function portKeyArgs(i: number, args: readonly string[]): string[] {
  if (args.includes('--insecure') || args.includes('--key')) return [];
  const k = lanKeys();
  return ['--key', k.portKey(i), '--switch-key', k.switchPub];
}

let controlDir: string | undefined;
let controlSeq = 0;

/**
 * A fresh control socket path under a per-process temp dir, unless `args` name
 * one: tests never use the shared default under /run (and cleanup's SIGKILL
 * would leave stale sockets there).
 */
export function controlArgs(prog: 'vswitch' | 'vport', args: readonly string[]): string[] {
  if (args.includes('--control')) return [];
  if (controlDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'etl-ctl-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    controlDir = dir;
  }
  return ['--control', join(controlDir, `${prog}-${++controlSeq}.sock`)];
}

/** Start vswitch in `ns` (with the test keys unless `--insecure`) and wait for its readiness line. */
export async function startSwitch(ns: Netns, args: readonly string[] = []): Promise<ChildProcess> {
  const child = ns.spawn(process.execPath, [bin('vswitch'), String(SWITCH_PORT), ...switchKeyArgs(args), ...controlArgs('vswitch', args), ...args]);
  await waitForOutput(child, new RegExp(`vswitch ready on UDP ${SWITCH_PORT}\\n`), START_TIMEOUT_MS);
  return child;
}

/** Start a vport (etl0, 10.99.0.i/24 unless `opts.ip`, port name hI) on host i and wait until it joined. */
export async function startPort(host: StarHost, i: number, args: readonly string[] = [], opts: { ip?: string } = {}): Promise<ChildProcess> {
  const child = host.ns.spawn(process.execPath, [
    bin('vport'),
    host.switchAddress,
    String(SWITCH_PORT),
    '--name',
    'etl0',
    '--ip',
    opts.ip ?? `10.99.0.${i}/24`,
    '--port-name',
    `h${i}`,
    ...portKeyArgs(i, args),
    ...controlArgs('vport', args),
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

/**
 * `etherlink transfer` of `file` from `from` to `to`: the receiver listens on
 * `address`:`port` in `to` and writes `out`. Fails when either end does;
 * resolves with both ends' stdout ("sent N bytes sha256 H ...", "received ...").
 */
export async function transferFile(from: Netns, to: Netns, address: string, port: number, file: string, out: string, timeoutMs = 60_000): Promise<{ sent: string; received: string }> {
  const rx = to.spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', address, String(port), out]);
  await waitForOutput(rx, /listening on/);
  const tx = from.spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', address, String(port), file]);
  const txOut = collect(tx);
  const rxOut = collect(rx);
  if ((await waitExit(tx, timeoutMs)) !== 0) throw new Error(`transfer to ${address}:${port}: the sender failed: ${txOut.err()}`);
  if ((await waitExit(rx, 10_000)) !== 0) throw new Error(`transfer to ${address}:${port}: the receiver failed: ${rxOut.err()}`);
  return { sent: txOut.out(), received: rxOut.out() };
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

/** SIGUSR1 to a vport, then the status block it printed (its first line: "device ..."). */
export async function portStatus(child: ChildProcess): Promise<string> {
  const o = collect(child);
  const from = o.out().length;
  child.kill('SIGUSR1');
  let block = '';
  await waitFor(
    'vport status after SIGUSR1',
    () => {
      const m = /device \S+: [^\n]*\n(?: {2}[^\n]*\n)*/.exec(o.out().slice(from));
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

/** The MAC `ns`'s neighbour table holds for `address` on `dev`, if any. */
export function neighbour(ns: Netns, dev: string, address: string): string | undefined {
  return /lladdr ([0-9a-f:]{17})/.exec(ns.ip('neigh', 'show', 'dev', dev, address).stdout)?.[1];
}

/** tcpdump on `dev` in `ns` (only what it receives, -Q in), resolved once it captures; stop() gives its output. */
export async function capture(ns: Netns, dev: string, filter: readonly string[]): Promise<{ stop: () => Promise<string> }> {
  const child = ns.spawn('tcpdump', ['-i', dev, '-Q', 'in', '-nn', '-e', '-l', '--immediate-mode', ...filter]);
  const o = collect(child);
  await waitForOutput(child, /listening on/, 10_000);
  return {
    stop: async () => {
      // Let what is in flight land before the capture ends.
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGINT');
      await waitExit(child, 5_000);
      return o.out();
    },
  };
}

/** A star LAN of `count` hosts with a vswitch and a vport each, all joined. */
export interface Lan {
  sw: Netns;
  hosts: StarHost[];
  vswitch: ChildProcess;
  vports: ChildProcess[];
}

/** Extra flags for a shared LAN: the same for every daemon, or per daemon (host i from 1). */
export interface LanArgs {
  all?: readonly string[];
  vswitch?: readonly string[];
  vport?: (i: number) => readonly string[];
}

/**
 * A LAN built once, by the first test that asks, and shared by the file's
 * later tests. `args` go to the vswitch and every vport (e.g. ['--insecure']),
 * or per daemon.
 */
export function sharedLan(tag: string, count: number, args: readonly string[] | LanArgs = []): () => Promise<Lan> {
  const a: LanArgs = Array.isArray(args) ? { all: args as readonly string[] } : (args as LanArgs);
  let built: Promise<Lan> | undefined;
  return () => {
    built ??= (async () => {
      ensureTools({ ping: 'iputils-ping', tcpdump: 'tcpdump' });
      const { sw, hosts } = buildStar(tag, count);
      const vswitch = await startSwitch(sw, [...(a.all ?? []), ...(a.vswitch ?? [])]);
      const vports: ChildProcess[] = [];
      for (let i = 1; i <= count; i++) vports.push(await startPort(hosts[i - 1]!, i, [...(a.all ?? []), ...(a.vport?.(i) ?? [])]));
      for (let i = 1; i <= count; i++) await waitForOutput(vswitch, new RegExp(`port joined port=h${i} `));
      return { sw, hosts, vswitch, vports };
    })();
    return built;
  };
}
