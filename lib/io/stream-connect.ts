// Opening a port's stream to its switch: plain TCP, or a WebSocket (ws://,
// wss://), through an HTTP CONNECT proxy when HTTPS_PROXY / HTTP_PROXY say so.
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates, type ConnectionOptions } from 'node:tls';
import { request as httpRequest } from 'node:http';
import { WebSocket } from 'ws';
import { EtherlinkError } from '../core/errors.js';
import { socketCarrier, webSocketCarrier, type StreamCarrier } from './stream.js';
import { WS_MESSAGE_MAX, WS_SUBPROTOCOL } from '../protocol/constants.js';

/** Open a TCP stream to host:port within `timeoutMs`. Errors carry the socket's code (ECONNREFUSED, ETIMEDOUT...). */
export function connectTcp(host: string, port: number, timeoutMs: number): Promise<StreamCarrier> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host: bare(host), port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new EtherlinkError('ETIMEDOUT', `TCP ${host}:${port} did not connect within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(socketCarrier(sock));
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new EtherlinkError(err.code ?? 'ECONNREFUSED', `TCP ${host}:${port}: ${err.message}`, { cause: err }));
    });
  });
}

/** Options of connectWebSocket. */
export interface WebSocketConnectOptions {
  timeoutMs: number;
  /** Extra trusted CA certificates (PEM) for wss:// (a private CA); the system's are trusted too. */
  ca?: string | Buffer;
  /** Proxy settings; default process.env (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, in either case). */
  env?: NodeJS.ProcessEnv;
}

/** The proxy URL that applies to `target` per the environment, or null (none set, or NO_PROXY lists the host). */
export function proxyFor(target: URL, env: NodeJS.ProcessEnv = process.env): URL | null {
  const secure = target.protocol === 'wss:';
  const raw = (secure ? (env['HTTPS_PROXY'] ?? env['https_proxy']) : undefined) ?? env['HTTP_PROXY'] ?? env['http_proxy'];
  if (raw === undefined || raw === '') return null;
  const host = bare(target.hostname).toLowerCase();
  const noProxy = (env['NO_PROXY'] ?? env['no_proxy'] ?? '').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
  for (const entry of noProxy) {
    if (entry === '*') return null;
    const name = entry.replace(/:\d+$/, '').replace(/^\*?\./, '');
    if (host === name || host.endsWith(`.${name}`)) return null;
  }
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new EtherlinkError('ERR_INVALID_URL', `${secure ? 'HTTPS_PROXY' : 'HTTP_PROXY'}='${raw}' is not a URL: use http://HOST:PORT`);
  }
  if (url.protocol !== 'http:') throw new EtherlinkError('ERR_INVALID_URL', `proxy '${raw}': only http:// proxies (HTTP CONNECT) are supported`);
  return url;
}

/** A tunnel to host:port through an HTTP proxy (CONNECT). */
function connectThroughProxy(proxy: URL, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const authority = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const headers: Record<string, string> = { host: authority };
  if (proxy.username !== '') headers['proxy-authorization'] = `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`;
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: bare(proxy.hostname), port: Number(proxy.port || 80), method: 'CONNECT', path: authority, headers, timeout: timeoutMs });
    req.once('connect', (res, socket, head) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new EtherlinkError('ERR_PROXY', `proxy ${proxy.host} refused CONNECT ${authority}: ${res.statusCode} ${res.statusMessage ?? ''}`.trim()));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('timeout', () => req.destroy(new EtherlinkError('ETIMEDOUT', `proxy ${proxy.host} did not answer CONNECT within ${timeoutMs} ms`)));
    req.once('error', (err: NodeJS.ErrnoException) => reject(new EtherlinkError(err.code ?? 'ERR_PROXY', `proxy ${proxy.host}: ${err.message}`, { cause: err })));
    req.end();
  });
}

/** Open a WebSocket to the switch at `url` (ws:// or wss://), through the environment's proxy if one applies. */
export async function connectWebSocket(url: URL, opts: WebSocketConnectOptions): Promise<StreamCarrier> {
  const secure = url.protocol === 'wss:';
  const port = Number(url.port || (secure ? 443 : 80));
  const host = bare(url.hostname);
  const proxy = proxyFor(url, opts.env);
  const tunnel = proxy !== null ? await connectThroughProxy(proxy, host, port, opts.timeoutMs) : null;
  // The CA is added to, not put in place of, the system's roots.
  const ca = opts.ca !== undefined ? { ca: [...rootCertificates, opts.ca.toString()] } : {};
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, WS_SUBPROTOCOL, {
      perMessageDeflate: false,
      maxPayload: WS_MESSAGE_MAX,
      handshakeTimeout: opts.timeoutMs,
      ...ca,
      ...(tunnel !== null
        ? {
            createConnection: ((o: ConnectionOptions) =>
              secure ? tlsConnect({ ...o, ...ca, socket: tunnel, servername: isIP(host) ? '' : host }) : tunnel) as unknown as typeof netConnect,
          }
        : {}),
    });
    const fail = (err: Error & { code?: string }): void => {
      ws.removeAllListeners();
      ws.on('error', () => undefined);
      ws.terminate();
      tunnel?.destroy();
      reject(new EtherlinkError(err.code ?? 'ERR_WEBSOCKET', `WebSocket ${url.href}: ${err.message}`, { cause: err }));
    };
    ws.once('error', fail);
    ws.once('unexpected-response', (_req, res) => fail(Object.assign(new Error(`the server answered ${res.statusCode} ${res.statusMessage ?? ''} instead of upgrading (is this the switch's --ws path?)`), { code: 'ERR_WEBSOCKET' })));
    ws.once('open', () => {
      ws.removeListener('error', fail);
      resolve(webSocketCarrier(ws, url.host));
    });
  });
}

function bare(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
