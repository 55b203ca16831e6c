// Lab hosts as network namespaces on this machine: unique names per run,
// commands inside them, child processes tracked by PID, cleanup that always runs.
// Used by the demo, the bench and the tests; never sends beyond this machine.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';

/** True when this process may create namespaces and TAP devices. */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** A short per-run tag so that parallel runs never collide on names. */
export function runTag(): string {
  return `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Run a command synchronously; throws with its stderr unless allowFail. */
export function run(cmd: string, args: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, input: opts.input, ...(opts.env ? { env: opts.env } : {}) });
  const res = { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (!opts.allowFail && res.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${res.status}: ${res.stderr.trim() || r.error?.message || ''}`);
  }
  return res;
}

/** Processes this test run started, so cleanup ends exactly those (by PID). */
const children = new Set<ChildProcess>();
const namespaces = new Set<string>();
let hooked = false;

function cleanupAll(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  children.clear();
  for (const ns of namespaces) spawnSync('ip', ['netns', 'del', ns]);
  namespaces.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanupAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanupAll();
      process.exit(130);
    });
  }
}

export class Netns {
  private constructor(public readonly name: string) {}

  /** Create a namespace named `${prefix}-${tag}` with loopback up. */
  static create(prefix: string, tag: string): Netns {
    hookExit();
    const name = `etl-${prefix}-${tag}`;
    run('ip', ['netns', 'add', name]);
    namespaces.add(name);
    const ns = new Netns(name);
    ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** `ip -n NS ...` */
  ip(...args: string[]): RunResult {
    return run('ip', ['-n', this.name, ...args]);
  }

  /** Run a command inside the namespace and wait for it. */
  exec(cmd: string, args: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): RunResult {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** Start a long-running command inside the namespace; it is killed at cleanup if still running. */
  spawn(cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    track(child);
    return child;
  }

  delete(): void {
    if (!namespaces.has(this.name)) return;
    spawnSync('ip', ['netns', 'del', this.name]);
    namespaces.delete(this.name);
  }
}

/** Track a child we started so cleanup can end it by PID. */
export function track(child: ChildProcess): ChildProcess {
  hookExit();
  children.add(child);
  record(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Start a process in the current namespace, tracked for cleanup. */
export function spawnTracked(cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
  return track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }));
}

/** Kill every tracked child and delete every namespace this process made. */
export function cleanup(): void {
  cleanupAll();
}

/** Everything a tracked child printed so far, so a wait never misses a line printed earlier. */
const outputs = new WeakMap<ChildProcess, { out: string; err: string }>();

function record(child: ChildProcess): { out: string; err: string } {
  let rec = outputs.get(child);
  if (rec === undefined) {
    const r = { out: '', err: '' };
    rec = r;
    outputs.set(child, r);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (r.out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (r.err += d));
  }
  return rec;
}

/** A child's output so far (stdout, stderr). */
export function collect(child: ChildProcess): { out: () => string; err: () => string } {
  const rec = record(child);
  return { out: () => rec.out, err: () => rec.err };
}

/** Wait for a child to exit and its output to be read to the end; rejects after timeoutMs (and kills it). */
export function waitExit(child: ChildProcess, timeoutMs = 60_000): Promise<number> {
  const status = (): number => child.exitCode ?? (child.signalCode !== null ? 128 : -1);
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const drained = (): boolean => [child.stdout, child.stderr].every((s) => s === null || s.closed);
  return new Promise((resolve, reject) => {
    if (exited() && drained()) return resolve(status());
    let grace: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(timer);
      clearTimeout(grace);
      resolve(status());
    };
    const timer = setTimeout(() => {
      if (child.pid !== undefined) child.kill('SIGKILL');
      reject(new Error(`process ${child.pid} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    // 'close' comes after 'exit' once stdout and stderr are read to the end: the last lines
    // a process prints before exiting often arrive after 'exit'. A grandchild holding the
    // pipes open must not hold us, hence the bounded grace after 'exit'.
    child.once('close', done);
    const onExit = (): void => void (grace = setTimeout(done, EXIT_DRAIN_GRACE_MS));
    if (exited()) onExit();
    else child.once('exit', onExit);
  });
}

/** How long waitExit waits, after a child exited, for the rest of its output. */
const EXIT_DRAIN_GRACE_MS = 2_000;

/** Poll `check` until it returns true, instead of sleeping a fixed time. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000, stepMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Wait until the child has printed something matching `re` (stdout or stderr), earlier output included. */
export async function waitForOutput(child: ChildProcess, re: RegExp, timeoutMs = 10_000): Promise<string> {
  const rec = record(child);
  let found: string | undefined;
  let exited = false;
  child.once('exit', () => (exited = true));
  await waitFor(
    `output ${re}`,
    () => {
      const m = re.exec(rec.out + rec.err);
      if (m) found = m[0];
      return found !== undefined || exited || child.exitCode !== null;
    },
    timeoutMs,
    20,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; output so far:\n${rec.out}${rec.err}`);
  });
  if (found === undefined) throw new Error(`process exited (${child.exitCode}) before printing ${re}; output:\n${rec.out}${rec.err}`);
  return found;
}

/**
 * Debian's way of telling a package's maintainer scripts not to start its
 * service (invoke-rc.d and deb-systemd-invoke ask it; 101: action forbidden).
 */
const POLICY_RC_D = '/usr/sbin/policy-rc.d';
/** What we write there: recognisable, so that one left by a run that was killed mid-install is ours to remove. */
const OUR_POLICY = "#!/bin/sh\n# written by EtherLink's test tool install for its duration: start no services\nexit 101\n";
/** apt-get install of the test tools (chromium is large): generous, but bounded. */
const INSTALL_TIMEOUT_MS = 30 * 60_000;

/**
 * Ensure Debian tools the tests need are present, installing them when missing
 * (root only). Returns the packages it installed. Their services (nginx,
 * Open vSwitch's daemons...) are not started: the tests start their own
 * instances, and installing a tool must not leave a system daemon running.
 */
export function ensureTools(tools: Record<string, string>, log?: (line: string) => void): string[] {
  const missing = Object.entries(tools).filter(([bin]) => spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0);
  if (missing.length === 0) return [];
  const pkgs = [...new Set(missing.map(([, pkg]) => pkg))];
  log?.(`installing test tools with apt-get (can take minutes): ${pkgs.join(' ')}`);
  // Some packages ask debconf questions (tshark: may non-root users capture?); with no
  // terminal they must take the defaults instead of waiting for an answer.
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let ours = false;
  try {
    writeFileSync(POLICY_RC_D, OUR_POLICY, { mode: 0o755, flag: 'wx' });
    ours = true;
  } catch {
    // The system's own (a container image's), or ours from a run killed mid-install.
    ours = readFileSync(POLICY_RC_D, 'utf8') === OUR_POLICY;
  }
  try {
    run('apt-get', ['update', '-qq'], { allowFail: true, timeoutMs: 300_000, env });
    run('apt-get', ['install', '-y', '-qq', ...pkgs], { timeoutMs: INSTALL_TIMEOUT_MS, env });
  } finally {
    if (ours) rmSync(POLICY_RC_D, { force: true });
  }
  return pkgs;
}

export interface StarHost {
  ns: Netns;
  /** This host's underlay address on its veth. */
  underlay: string;
  /** The switch namespace's address on this host's veth: where vport connects. */
  switchAddress: string;
}

/**
 * The underlay of a star: a switch namespace and `count` host namespaces, each
 * host joined to the switch namespace by its own veth (MTU 1500 by default).
 * Host i (from 1) has 10.250.i.2/24, the switch side 10.250.i.1/24.
 */
export function buildStar(tag: string, count: number, opts: { mtu?: number } = {}): { sw: Netns; hosts: StarHost[] } {
  const sw = Netns.create('sw', tag);
  const hosts: StarHost[] = [];
  for (let i = 1; i <= count; i++) {
    const ns = Netns.create(`h${i}`, tag);
    const hostIf = `u${i}`;
    const swIf = `s${i}`;
    run('ip', ['link', 'add', hostIf, 'netns', ns.name, 'mtu', String(opts.mtu ?? 1500), 'type', 'veth', 'peer', 'name', swIf, 'netns', sw.name, 'mtu', String(opts.mtu ?? 1500)]);
    ns.ip('addr', 'add', `10.250.${i}.2/24`, 'dev', hostIf);
    sw.ip('addr', 'add', `10.250.${i}.1/24`, 'dev', swIf);
    ns.ip('link', 'set', hostIf, 'up');
    sw.ip('link', 'set', swIf, 'up');
    hosts.push({ ns, underlay: `10.250.${i}.2`, switchAddress: `10.250.${i}.1` });
  }
  return { sw, hosts };
}
