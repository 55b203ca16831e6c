// The local control socket of a vswitch or vport: a unix socket only its owner
// can use, speaking newline-delimited JSON, one response per request, in order.
//
//   -> {"cmd":"status"}                                   <- {"ok":true,"status":{...}}
//   -> {"cmd":"capture-start","file":"/abs.pcap","maxBytes":1e8,"files":3}   <- {"ok":true,"capture":...}
//   -> {"cmd":"capture-stop"}                             <- {"ok":true,"capture":...}
//   -> anything else                                      <- {"ok":false,"error":"...","code":"..."}
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname, isAbsolute } from 'node:path';
import { silentLogger, type Logger } from '../core/log.js';
import { EtherlinkError } from '../core/errors.js';

/** Where the daemons put their sockets unless told otherwise (systemd: RuntimeDirectory=etherlink). */
export const CONTROL_DIR = '/run/etherlink';
/** A request line longer than this is refused and the connection closed. */
export const CONTROL_MAX_REQUEST_BYTES = 64 * 1024;
/** Connections served at once; more are told so and closed. */
export const CONTROL_MAX_CONNECTIONS = 16;
/** A connection silent this long is closed. */
export const CONTROL_IDLE_TIMEOUT_MS = 30_000;
/** How long a client waits for the answer. */
export const CONTROL_CLIENT_TIMEOUT_MS = 5_000;
/** How long binding waits to learn whether an existing socket has a live owner. */
const PROBE_TIMEOUT_MS = 1_000;

/** Where `ip netns` keeps its named namespaces. */
const NETNS_DIR = '/run/netns';

let nsSuffix: string | undefined;

/**
 * What tells this network namespace's daemons apart in CONTROL_DIR (which
 * `ip netns exec` shares between namespaces): '' in the initial namespace,
 * '@NAME' in one `ip netns` named, '@ns<inode>' in any other.
 */
export function netnsSuffix(): string {
  if (nsSuffix !== undefined) return nsSuffix;
  let self: number;
  try {
    self = statSync('/proc/self/ns/net').ino;
  } catch {
    return (nsSuffix = '');
  }
  try {
    if (statSync('/proc/1/ns/net').ino === self) return (nsSuffix = '');
  } catch {
    // Not ours to look at (an unprivileged daemon): the named namespaces still tell.
  }
  try {
    for (const name of readdirSync(NETNS_DIR)) if (statSync(`${NETNS_DIR}/${name}`).ino === self) return (nsSuffix = `@${name}`);
  } catch {
    // No named namespaces on this host.
  }
  return (nsSuffix = `@ns${self}`);
}

/** The default control socket of a vswitch in this network namespace. */
export const defaultSwitchControlPath = (): string => `${CONTROL_DIR}/vswitch${netnsSuffix()}.sock`;
/** The default control socket of the vport of `ifname` in this network namespace. */
export const defaultPortControlPath = (ifname: string): string => `${CONTROL_DIR}/vport-${ifname}${netnsSuffix()}.sock`;

/** The interface names of the vports that have a default socket in this network namespace. */
export function portsWithDefaultSockets(): string[] {
  const suffix = `${netnsSuffix()}.sock`;
  let files: string[];
  try {
    files = readdirSync(CONTROL_DIR);
  } catch {
    return [];
  }
  return files
    .filter((f) => f.startsWith('vport-') && f.endsWith(suffix))
    .map((f) => f.slice('vport-'.length, -suffix.length))
    .filter((ifname) => ifname !== '' && (suffix !== '.sock' || !ifname.includes('@')));
}

export interface ControlRequest {
  cmd: string;
  [arg: string]: unknown;
}

export type ControlResponse = ({ ok: true } & Record<string, unknown>) | { ok: false; error: string; code?: string };

/** A command's result fields (merged into `{ ok: true, ... }`); throw to answer `{ ok: false }`. */
export type ControlCommand = (req: ControlRequest) => Record<string, unknown> | Promise<Record<string, unknown>>;

function codedError(message: string, code: string): EtherlinkError {
  return new EtherlinkError(code, message);
}

export class ControlServer {
  private readonly connections = new Set<Socket>();
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly inode: number,
    private readonly commands: Readonly<Record<string, ControlCommand>>,
    private readonly log: Logger,
  ) {
    server.on('connection', (socket) => this.accept(socket));
  }

  /**
   * Listen on `path` (mode 0600; its directory is created 0700 if missing).
   * A socket left by a dead process is replaced; one with a live owner is not:
   * that fails with code EADDRINUSE.
   */
  static async listen(path: string, commands: Readonly<Record<string, ControlCommand>>, opts: { logger?: Logger } = {}): Promise<ControlServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    let server: Server;
    try {
      server = await bind(path);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (st !== undefined && !st.isSocket()) throw codedError(`${path} exists and is not a socket: remove it or choose another path`, 'EEXIST');
      if (await answers(path)) throw codedError(`${path} is in use by another running instance`, 'EADDRINUSE');
      // Left behind by a process that died without cleaning up.
      unlinkSync(path);
      server = await bind(path);
    }
    chmodSync(path, 0o600);
    return new ControlServer(path, server, lstatSync(path).ino, commands, opts.logger ?? silentLogger);
  }

  private accept(socket: Socket): void {
    if (this.connections.size >= CONTROL_MAX_CONNECTIONS) {
      socket.end(JSON.stringify({ ok: false, error: `busy: ${CONTROL_MAX_CONNECTIONS} control connections already open`, code: 'EBUSY' }) + '\n');
      return;
    }
    this.connections.add(socket);
    socket.once('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(CONTROL_IDLE_TIMEOUT_MS, () => socket.destroy());
    let pending: Buffer = Buffer.alloc(0);
    // Requests of one connection are answered in order; connections are independent.
    let chain: Promise<void> = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      for (let nl = pending.indexOf(10); nl >= 0; nl = pending.indexOf(10)) {
        const line = pending.subarray(0, nl).toString('utf8');
        pending = pending.subarray(nl + 1);
        if (line.trim() === '') continue;
        chain = chain.then(async () => {
          const res = await this.handle(line);
          if (!socket.destroyed) socket.write(JSON.stringify(res) + '\n');
        });
      }
      if (pending.length > CONTROL_MAX_REQUEST_BYTES) {
        socket.removeAllListeners('data');
        void chain.then(() => socket.end(JSON.stringify({ ok: false, error: `request longer than ${CONTROL_MAX_REQUEST_BYTES} bytes`, code: 'E2BIG' }) + '\n'));
      }
    });
  }

  private async handle(line: string): Promise<ControlResponse> {
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      return { ok: false, error: 'not a JSON request: send one JSON object per line, e.g. {"cmd":"status"}', code: 'EINVAL' };
    }
    if (typeof req !== 'object' || req === null || typeof (req as { cmd?: unknown }).cmd !== 'string') {
      return { ok: false, error: 'a request is a JSON object with a string "cmd", e.g. {"cmd":"status"}', code: 'EINVAL' };
    }
    const r = req as ControlRequest;
    const command = Object.hasOwn(this.commands, r.cmd) ? this.commands[r.cmd] : undefined;
    if (command === undefined) {
      return { ok: false, error: `unknown command '${r.cmd}': known commands are ${Object.keys(this.commands).join(', ')}`, code: 'ENOTSUP' };
    }
    try {
      return { ok: true, ...(await command(r)) };
    } catch (err) {
      const e = err as { message?: string; code?: unknown };
      this.log.debug('control command failed', { cmd: r.cmd, error: e.message });
      return { ok: false, error: e.message ?? String(err), ...(typeof e.code === 'string' ? { code: e.code } : {}) };
    }
  }

  /** Stop listening, drop connections, remove the socket file (if it is still ours). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    for (const s of this.connections) s.destroy();
    try {
      if (lstatSync(this.path, { throwIfNoEntry: false })?.ino === this.inode) unlinkSync(this.path);
    } catch {
      // Already gone.
    }
  }
}

/** Bind with a umask that keeps the socket private from the first instant (chmod follows). */
function bind(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ allowHalfOpen: false });
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    const old = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', onError);
        resolve(server);
      });
    } finally {
      process.umask(old);
    }
  });
}

/** Does a live process accept connections on `path`? */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const done = (live: boolean): void => {
      s.destroy();
      resolve(live);
    };
    s.setTimeout(PROBE_TIMEOUT_MS, () => done(true)); // accepted but slow: someone is there
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Send one request and wait for its response. Errors keep the errno code:
 * ENOENT / ECONNREFUSED mean nothing listens there, EACCES another user's socket.
 */
export function controlRequest(path: string, req: ControlRequest, timeoutMs = CONTROL_CLIENT_TIMEOUT_MS): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (err: Error | null, res?: ControlResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(res!);
    };
    const timer = setTimeout(() => finish(codedError(`no answer on ${path} within ${timeoutMs} ms`, 'ETIMEDOUT')), timeoutMs);
    s.once('connect', () => s.write(JSON.stringify(req) + '\n'));
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(10);
      if (nl < 0) return;
      try {
        finish(null, JSON.parse(buf.subarray(0, nl).toString('utf8')) as ControlResponse);
      } catch {
        finish(codedError(`${path} answered something that is not JSON`, 'EPROTO'));
      }
    });
    s.once('error', (err) => finish(err));
    s.once('close', () => finish(codedError(`${path} closed the connection without answering`, 'ECONNRESET')));
  });
}

/** What can be captured: a SwitchServer or PortClient, once packet capture exists there. */
interface Capturable {
  startCapture?: (file: string, opts: { maxBytes?: number; files?: number }) => unknown;
  stopCapture?: () => unknown;
}

function positiveInt(req: ControlRequest, key: string): number | undefined {
  const v = req[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw codedError(`"${key}" must be a positive integer (got ${JSON.stringify(v)})`, 'EINVAL');
  return v;
}

/** The commands every daemon serves: status, and capture on/off where the target supports it. */
export function daemonCommands(target: object, status: () => unknown): Record<string, ControlCommand> {
  const t = target as Capturable;
  const notYet = (): never => {
    throw codedError('packet capture is not available in this build', 'ENOTSUP');
  };
  return {
    status: () => ({ status: status() }),
    'capture-start': async (req) => {
      if (typeof t.startCapture !== 'function') notYet();
      const file = req['file'];
      if (typeof file !== 'string' || !isAbsolute(file)) throw codedError('"file" must be an absolute path (the daemon may run in another directory)', 'EINVAL');
      const maxBytes = positiveInt(req, 'maxBytes');
      const files = positiveInt(req, 'files');
      const result = await t.startCapture!.call(target, file, { ...(maxBytes !== undefined ? { maxBytes } : {}), ...(files !== undefined ? { files } : {}) });
      return { capture: result ?? null };
    },
    'capture-stop': async () => {
      if (typeof t.stopCapture !== 'function') notYet();
      return { capture: (await t.stopCapture!.call(target)) ?? null };
    },
  };
}
