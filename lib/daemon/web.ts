// The live web view of a vswitch or vport: a read-only page and a Server-Sent
// Events stream of the same status report the control socket serves. GET and
// HEAD only; beyond loopback, a token the browser presents once, then a cookie.
import { listenHttp } from './metrics.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { isIP } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EtherlinkError } from '../core/errors.js';

/** How often the event stream sends a report. */
export const WEB_UPDATE_INTERVAL_MS = 1000;
/** Event streams open at once; more are refused (503) rather than queued. */
export const WEB_MAX_STREAMS = 32;
/** The shortest token a --web-token file may hold. */
export const WEB_TOKEN_MIN_LENGTH = 16;
/** The cookie the browser keeps once it presented the token. */
export const WEB_COOKIE = 'etherlink_web';
/** What `--web PORT` alone binds to. */
export const WEB_DEFAULT_ADDRESS = '127.0.0.1';

/** The page's own files (shipped in the package's web/ folder) and uPlot's, by URL path. */
const STATIC: Readonly<Record<string, { file: () => string; type: string }>> = {
  '/': { file: () => join(webDir(), 'index.html'), type: 'text/html; charset=utf-8' },
  '/app.js': { file: () => join(webDir(), 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: () => join(webDir(), 'style.css'), type: 'text/css; charset=utf-8' },
  '/uplot.js': { file: () => uplotFile('uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/uplot.css': { file: () => uplotFile('uPlot.min.css'), type: 'text/css; charset=utf-8' },
};
export const WEB_EVENTS_PATH = '/events';

/** Everything from this origin, nothing inline, no framing, no form posts. */
export const WEB_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The package's web/ folder: two levels above dist/lib/daemon, or lib/daemon when run from source. */
function webDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const up = here.includes(`${join('dist', 'lib')}`) ? ['..', '..', '..'] : ['..', '..'];
  return join(here, ...up, 'web');
}

/** A file of the uplot package, wherever npm put it. */
function uplotFile(name: string): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('uplot')), name);
}

/** "PORT", "ADDR:PORT" or "[v6]:PORT" for --web; a bare port is 127.0.0.1. */
export function parseWebAddress(text: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text) ?? /^()(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  const address = m ? m[1] || WEB_DEFAULT_ADDRESS : '';
  if (!m || !Number.isInteger(port) || port > 65535 || (isIP(address) === 0 && address !== 'localhost')) {
    throw new EtherlinkError('ERR_USAGE', `--web '${text}' must be PORT (on 127.0.0.1) or ADDR:PORT, e.g. 8080, 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080`);
  }
  return { address, port };
}

/** True for an address only this host reaches (127/8, ::1, localhost). */
export function isLoopback(address: string): boolean {
  const a = address.toLowerCase();
  if (a === 'localhost' || a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  const v4 = /^(?:::ffff:)?(\d+)\.\d+\.\d+\.\d+$/.exec(a);
  return v4 !== null && v4[1] === '127';
}

/**
 * The token a --web-token file holds: its first line, trimmed. Throws naming
 * the flag when it is missing or too short, with how to make one.
 */
export function parseWebToken(text: string, file: string): string {
  const token = (text.split(/\r?\n/)[0] ?? '').trim();
  if (token.length < WEB_TOKEN_MIN_LENGTH || /\s/.test(token)) {
    throw new EtherlinkError('ERR_USAGE', `--web-token ${file} must hold one token of at least ${WEB_TOKEN_MIN_LENGTH} characters and no spaces on its first line: make one with 'etherlink genpsk --out ${file}' (or 'openssl rand -base64 32 > ${file}')`);
  }
  return token;
}

/** parseWebToken on a file's contents; a missing or unreadable file is a usage error that says how to make one. */
export function loadWebToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new EtherlinkError('ERR_USAGE', `--web-token ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}: make one with 'etherlink genpsk --out ${file}'`, { cause: err });
  }
  return parseWebToken(text, file);
}

/** The refusal `--web` beyond loopback without `--web-token` gets, or undefined when the combination is fine. */
export function webTokenProblem(at: { address: string; port: number }, token: string | undefined): string | undefined {
  if (token !== undefined || isLoopback(at.address)) return undefined;
  return `--web ${at.address}:${at.port} serves beyond this host, so it needs --web-token FILE (the browser presents it once, as http://HOST:${at.port}/?token=TOKEN): make one with 'etherlink genpsk --out web.token' and add --web-token web.token, or serve on loopback (--web 127.0.0.1:${at.port}) and reach it through ssh -L`;
}

function sameSecret(a: string, b: string): boolean {
  // Equal-length digests: the comparison takes the same time whatever the guess.
  const h = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

/** A cookie's value from a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}

/**
 * A query parameter decoded without turning '+' into a space: tokens from
 * 'etherlink genpsk' are base64, and a pasted ?token=a+b/c= must still match.
 */
export function rawQueryValue(search: string, name: string): string | undefined {
  for (const part of search.replace(/^\?/, '').split('&')) {
    const i = part.indexOf('=');
    if ((i < 0 ? part : part.slice(0, i)) !== name) continue;
    try {
      return decodeURIComponent(i < 0 ? '' : part.slice(i + 1));
    } catch {
      return part.slice(i + 1);
    }
  }
  return undefined;
}

/** What the access check decided for one request. */
export type WebAccess = { ok: true; setCookie?: string; redirect?: string } | { ok: false; status: 401 | 403; reason: string };

/**
 * Who may read: with a token, only a request that presents it (?token= once,
 * then the cookie); without one (loopback only), any request whose Host is a
 * loopback name, so that a web page rebinding its DNS to 127.0.0.1 cannot read it.
 */
export function checkWebAccess(req: { url: string; host: string | undefined; cookie: string | undefined }, token: string | undefined): WebAccess {
  const url = new URL(req.url, 'http://x');
  if (token === undefined) {
    const host = (req.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    return isLoopback(host) ? { ok: true } : { ok: false, status: 403, reason: `Host '${req.host ?? ''}' is not a loopback name: open http://127.0.0.1:PORT/` };
  }
  const given = rawQueryValue(url.search, 'token');
  if (given !== undefined) {
    if (!sameSecret(given, token)) return { ok: false, status: 403, reason: 'wrong token' };
    url.searchParams.delete('token');
    const cookie = `${WEB_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`;
    // The token leaves the address bar (and the history) at once.
    return { ok: true, setCookie: cookie, redirect: url.pathname + url.search };
  }
  const cookie = cookieValue(req.cookie, WEB_COOKIE);
  if (cookie !== undefined && sameSecret(cookie, token)) return { ok: true };
  return { ok: false, status: 401, reason: 'this view needs its token: open http://HOST:PORT/?token=TOKEN (the contents of the --web-token file) once' };
}

const SECURITY_HEADERS = {
  'content-security-policy': WEB_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** How a WebServer serves: its token (required beyond loopback) and how often it sends the report. */
export interface WebServerOptions {
  /** Required beyond loopback (WebServer.listen refuses otherwise). */
  token?: string | undefined;
  intervalMs?: number;
}

/** The live view's HTTP server. It reads `report()` and never changes anything. */
export class WebServer {
  private readonly streams = new Set<ServerResponse>();
  private readonly sockets = new Set<Socket>();
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly server: Server,
    private readonly report: () => unknown,
    intervalMs: number,
  ) {
    this.timer = setInterval(() => this.push(), intervalMs);
    this.timer.unref();
  }

  /** Listen at `at` and serve `report()`; rejects (ERR_USAGE) beyond loopback without a token, or with the bind error. */
  static listen(at: { address: string; port: number }, report: () => unknown, opts: WebServerOptions = {}): Promise<WebServer> {
    const problem = webTokenProblem(at, opts.token);
    if (problem !== undefined) return Promise.reject(new EtherlinkError('ERR_USAGE', problem));
    let web: WebServer | undefined;
    const server = createServer((req, res) => web?.handle(req, res, opts.token));
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    return listenHttp(server, at).then(() => {
      const w = new WebServer(server, report, opts.intervalMs ?? WEB_UPDATE_INTERVAL_MS);
      web = w;
      server.on('connection', (s: Socket) => {
        w.sockets.add(s);
        s.once('close', () => w.sockets.delete(s));
      });
      return w;
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  private handle(req: IncomingMessage, res: ServerResponse, token: string | undefined): void {
    const text = (status: number, body: string, extra: Record<string, string> = {}): void => {
      res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', ...extra }).end(req.method === 'HEAD' ? undefined : `${body}\n`);
    };
    // Read-only: nothing here acts on a request, so nothing but reads is accepted.
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // Read and discard what the client sends, so it hears the refusal instead of a reset; then close.
      req.resume();
      req.once('end', () => text(405, 'read-only: use GET', { allow: 'GET, HEAD', connection: 'close' }));
      return;
    }
    const access = checkWebAccess({ url: req.url ?? '/', host: req.headers.host, cookie: req.headers.cookie }, token);
    if (!access.ok) return text(access.status, access.reason);
    if (access.redirect !== undefined) return text(303, 'token accepted', { location: access.redirect, 'set-cookie': access.setCookie! });
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === WEB_EVENTS_PATH) return this.openStream(req, res);
    const entry = STATIC[path === '/index.html' ? '/' : path];
    if (entry === undefined) return text(404, `not found: the live view is at /`);
    let body: Buffer;
    try {
      body = readFileSync(entry.file());
    } catch (err) {
      return text(500, `the live view's file is missing from this install: ${(err as Error).message}`);
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': entry.type, 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private openStream(req: IncomingMessage, res: ServerResponse): void {
    if (this.streams.size >= WEB_MAX_STREAMS) {
      res.writeHead(503, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'retry-after': '5' }).end(`${WEB_MAX_STREAMS} views are open already\n`);
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    if (req.method === 'HEAD') return void res.end();
    req.socket.setTimeout(0);
    this.streams.add(res);
    res.once('close', () => this.streams.delete(res));
    res.write(`retry: 2000\n\n`);
    this.send(res, this.render());
  }

  private render(): string {
    try {
      return `event: report\ndata: ${JSON.stringify(this.report())}\n\n`;
    } catch (err) {
      return `event: problem\ndata: ${JSON.stringify((err as Error).message)}\n\n`;
    }
  }

  private send(res: ServerResponse, chunk: string): void {
    // A reader that does not keep up is dropped, not buffered for.
    if (res.writableLength > 4 * 1024 * 1024) res.destroy();
    else res.write(chunk);
  }

  private push(): void {
    if (this.streams.size === 0) return;
    const chunk = this.render();
    for (const res of this.streams) this.send(res, chunk);
  }

  /** Views open now. */
  get viewers(): number {
    return this.streams.size;
  }

  /** End every stream and stop listening. */
  close(): void {
    clearInterval(this.timer);
    for (const res of this.streams) res.end();
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }
}

/** A --web listen failure as a message that names the flag. */
export function webListenError(flag: string, err: unknown): EtherlinkError {
  const code = (err as { code?: string }).code;
  if (code === 'ERR_USAGE') return err as EtherlinkError;
  const why = code === 'EADDRINUSE' ? 'the port is in use: choose another' : code === 'EADDRNOTAVAIL' ? 'no interface here has that address' : (err as Error).message;
  return new EtherlinkError(code ?? 'EIO', `--web ${flag}: ${why}`, { cause: err });
}
