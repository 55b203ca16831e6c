// Test hosts as network namespaces: unique names per run, commands inside
// them, child processes tracked by PID, and cleanup that runs even when a test fails.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';

/** True when this process may create namespaces and TAP devices. */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Skip a privileged test with a clear message when not root — except under
 * CI=true, where a skip would hide a failure: there it fails instead.
 */
export function requireRoot(t: TestContext): boolean {
  if (isRoot()) return true;
  const why = 'needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces and TAP devices';
  if (process.env.CI === 'true') throw new Error(`CI=true but this test ${why}: run the suite as root`);
  t.skip(why);
  return false;
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
export function run(cmd: string, args: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number; input?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, input: opts.input });
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

/** Collect a child's output as it runs. */
export function collect(child: ChildProcess): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  return { out: () => out, err: () => err };
}

/** Wait for a child to exit; rejects after timeoutMs (and kills it). */
export function waitExit(child: ChildProcess, timeoutMs = 60_000): Promise<number> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => {
      if (child.pid !== undefined) child.kill('SIGKILL');
      reject(new Error(`process ${child.pid} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal ? 128 : -1));
    });
  });
}

/** Poll `check` until it returns true, instead of sleeping a fixed time. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000, stepMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Wait until the child prints a line matching `re` on stdout or stderr. */
export function waitForOutput(child: ChildProcess, re: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (d: Buffer | string): void => {
      seen += d.toString();
      const m = re.exec(seen);
      if (m) {
        done();
        resolve(m[0]);
      }
    };
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`process exited (${code}) before printing ${re}; output:\n${seen}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}; output:\n${seen}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Ensure Debian tools the tests need are present, installing them when missing (root only). */
export function ensureTools(tools: Record<string, string>): void {
  const missing = Object.entries(tools).filter(([bin]) => spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0);
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map(([, pkg]) => pkg))];
  run('apt-get', ['update', '-qq'], { allowFail: true, timeoutMs: 300_000 });
  run('apt-get', ['install', '-y', '-qq', ...pkgs], { timeoutMs: 600_000 });
}
