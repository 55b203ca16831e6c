// The switch's stream listeners: plain TCP (the same port number as its UDP
// socket), and WebSocket over HTTP or HTTPS (--ws), so it can sit behind a
// reverse proxy on 443. Each accepted connection becomes a StreamCarrier; what
// it carries, and the limits on how many, are the SwitchServer's business.
import { createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { socketCarrier, webSocketCarrier, type StreamCarrier } from '../io/stream.js';
import { STREAM_AUTH_TIMEOUT_MS, STREAM_CONNECTIONS_MAX, WS_DEFAULT_PATH, WS_MESSAGE_MAX, WS_SUBPROTOCOL } from '../protocol/constants.js';

/** Who connected: the TCP peer, or for a WebSocket from a local reverse proxy, the client it names (X-Forwarded-For). */
export interface StreamOrigin {
  address: string;
  port: number;
  /** The TCP peer was a local proxy; `address` came from its X-Forwarded-For. */
  forwarded: boolean;
}

/** Hands over a new connection; return false to refuse it (it is closed). */
export type StreamAcceptor = (carrier: StreamCarrier, origin: StreamOrigin) => boolean;

/** The WebSocket listener's settings. */
export interface WebSocketListenOptions {
  address: string;
  port: number;
  /** The path served (default /etherlink); others get 404. */
  path?: string;
  /** PEM certificate chain and key: serve wss:// (HTTPS) instead of ws://. */
  tlsCert?: string | Buffer;
  tlsKey?: string | Buffer;
}

/** Counters of the listeners. */
export interface ListenerCounters {
  /** HTTP requests that were not a WebSocket upgrade to our path and subprotocol. */
  wsRejected: number;
}

/** Listen for TCP streams on address:port. Resolves once bound; rejects with the bind error (EADDRINUSE...). */
export function listenTcp(address: string, port: number, accept: StreamAcceptor): Promise<NetServer> {
  const server = createNetServer({ noDelay: true, pauseOnConnect: false }, (sock: Socket) => {
    const origin = { address: unmap(sock.remoteAddress ?? ''), port: sock.remotePort ?? 0, forwarded: false };
    sock.on('error', () => undefined);
    if (!accept(socketCarrier(sock), origin)) sock.destroy();
  });
  // Connections are bounded before anything is known of them, too.
  server.maxConnections = STREAM_CONNECTIONS_MAX;
  return bind(server, address, port);
}

/** Listen for WebSocket streams. Resolves once bound. */
export function listenWebSocket(opts: WebSocketListenOptions, accept: StreamAcceptor, counters: ListenerCounters): Promise<HttpServer> {
  const path = opts.path ?? WS_DEFAULT_PATH;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: WS_MESSAGE_MAX,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  const tls = opts.tlsCert !== undefined && opts.tlsKey !== undefined;
  const server: HttpServer = tls ? createHttpsServer({ cert: opts.tlsCert, key: opts.tlsKey, handshakeTimeout: STREAM_AUTH_TIMEOUT_MS }) : createHttpServer();
  server.maxConnections = STREAM_CONNECTIONS_MAX;
  // Slow or idle HTTP clients cannot hold sockets: headers within the stream auth timeout.
  server.headersTimeout = STREAM_AUTH_TIMEOUT_MS;
  server.requestTimeout = STREAM_AUTH_TIMEOUT_MS;
  server.on('request', (req, res) => {
    counters.wsRejected++;
    const ours = new URL(req.url ?? '/', 'http://x').pathname === path;
    res.writeHead(ours ? 426 : 404, { 'content-type': 'text/plain', connection: 'close', ...(ours ? { upgrade: 'websocket' } : {}) });
    res.end(ours ? 'EtherLink switch: connect with vport (a WebSocket client)\n' : 'not found\n');
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (new URL(req.url ?? '/', 'http://x').pathname !== path || !offered.includes(WS_SUBPROTOCOL)) {
      counters.wsRejected++;
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const origin = originOf(req);
      ws.on('error', () => undefined);
      if (!accept(webSocketCarrier(ws, `${origin.address}:${origin.port}`), origin)) ws.terminate();
    });
  });
  server.on('clientError', (_err, socket) => {
    counters.wsRejected++;
    socket.destroy();
  });
  return bind(server, opts.address, opts.port);
}

/** The TCP peer, or the client a proxy on this host forwarded (the last X-Forwarded-For entry, which that proxy added). */
function originOf(req: IncomingMessage): StreamOrigin {
  const peer = unmap(req.socket.remoteAddress ?? '');
  const port = req.socket.remotePort ?? 0;
  const xff = req.headers['x-forwarded-for'];
  if (isLoopback(peer) && typeof xff === 'string') {
    const last = xff.split(',').pop()!.trim();
    if (isIP(last) !== 0) return { address: unmap(last), port, forwarded: true };
  }
  return { address: peer, port, forwarded: false };
}

function isLoopback(a: string): boolean {
  return a === '::1' || a.startsWith('127.');
}

function unmap(a: string): string {
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

function bind<S extends NetServer | HttpServer>(server: S, address: string, port: number): Promise<S> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host: address === '' ? '::' : address, port, ipv6Only: false }, () => {
      server.removeListener('error', onError);
      server.on('error', () => undefined);
      resolve(server);
    });
  });
}
