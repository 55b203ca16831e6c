// The switch's stream side under bad input (issue 12): garbage, length
// prefixes too long to take, slowloris partial frames, thousands of idle
// connections, junk over WebSocket. Each is bounded and counted; the switch
// keeps serving. An in-process SwitchServer on loopback: no root needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request } from 'node:http';
import { WebSocket } from 'ws';
import { SwitchServer } from '../../lib/daemon/switch-server.js';
import { STREAM_CONNECTIONS_PER_ADDRESS, STREAM_UNBOUND_DATAGRAM_MAX, WS_SUBPROTOCOL } from '../../lib/protocol/constants.js';
import { waitFor } from '../helpers/netns.js';

const AUTH_TIMEOUT_MS = 1_500;

async function startSwitch(authTimeoutMs = AUTH_TIMEOUT_MS): Promise<{ server: SwitchServer; tcp: number; ws: number }> {
  const server = new SwitchServer({ insecure: true, listen: [{ address: '127.0.0.1', port: 0 }], reflectorPort: false, ws: { address: '127.0.0.1', port: 0 }, streamAuthTimeoutMs: authTimeoutMs });
  await server.listening;
  const snap = server.snapshot();
  return { server, tcp: snap.tcpPorts[0]!, ws: Number(/:(\d+)\//.exec(snap.ws ?? '')?.[1]) };
}

function open(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** A well-framed datagram of junk: 40 bytes of 'A' behind their length. */
function framedJunk(): Buffer {
  const junk = Buffer.alloc(2 + 40, 0x41);
  junk.writeUInt16BE(40, 0);
  return junk;
}

/** Until the protocol has dropped and counted one junk datagram. */
const junkCounted = (server: SwitchServer): Promise<void> =>
  waitFor('the junk datagram counted', () => server.snapshot().protocol.badVersion + server.snapshot().protocol.malformed >= 1, 5_000, 20);

const closed = (s: Socket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));

test('garbage on a TCP stream closes it and is counted; the switch goes on accepting', { timeout: 20_000 }, async (t) => {
  const { server, tcp } = await startSwitch();
  t.after(() => server.close());
  const s = await open(tcp);
  s.on('error', () => undefined);
  // A zero length prefix can never start a datagram.
  s.write(Buffer.from([0, 0, 0xde, 0xad, 0xbe, 0xef]));
  await closed(s);
  assert.equal(server.snapshot().streams.malformed, 1);
  // Plausible framing around junk: dropped by the protocol and counted, the stream stays.
  const s2 = await open(tcp);
  s2.on('error', () => undefined);
  s2.write(framedJunk());
  await junkCounted(server);
  assert.equal(s2.destroyed, false, 'a well-framed junk datagram does not end the stream');
  assert.equal(server.snapshot().streams.open, 1);
  s2.destroy();
});

test('a length prefix too long to take before a handshake is skipped unbuffered, and the datagrams after it still count', { timeout: 20_000 }, async (t) => {
  const { server, tcp } = await startSwitch();
  t.after(() => server.close());
  const s = await open(tcp);
  s.on('error', () => undefined);
  const big = 60_000;
  assert.ok(big > STREAM_UNBOUND_DATAGRAM_MAX);
  const rssBefore = process.memoryUsage().rss;
  const head = Buffer.alloc(2);
  head.writeUInt16BE(big, 0);
  s.write(head);
  // The oversize body arrives in pieces: nothing of it is held.
  for (let i = 0; i < 6; i++) s.write(Buffer.alloc(10_000, i));
  s.write(framedJunk());
  await waitFor('the skip counted', () => server.snapshot().streams.skipped === 1, 5_000, 20);
  await junkCounted(server);
  assert.equal(s.destroyed, false);
  assert.ok(process.memoryUsage().rss - rssBefore < 16 * 1024 * 1024, 'no buffer for the oversize datagram');
  s.destroy();
});

test('slowloris: a stream that trickles a partial datagram and never handshakes is closed after the auth timeout', { timeout: 20_000 }, async (t) => {
  const { server, tcp } = await startSwitch();
  t.after(() => server.close());
  const s = await open(tcp);
  s.on('error', () => undefined);
  const started = Date.now();
  const trickle = setInterval(() => {
    if (!s.destroyed) s.write(Buffer.from([0x01]));
  }, 100);
  t.after(() => clearInterval(trickle));
  s.write(Buffer.from([0x03, 0xe8])); // a 1000-byte datagram that never completes
  await closed(s);
  const ms = Date.now() - started;
  clearInterval(trickle);
  assert.ok(ms >= AUTH_TIMEOUT_MS - 100 && ms < AUTH_TIMEOUT_MS + 3_000, `closed after ${ms} ms`);
  assert.equal(server.snapshot().streams.authTimeouts, 1);
});

test('thousands of idle connections: bounded per address and in memory, counted, and all closed after the auth timeout', { timeout: 60_000 }, async (t) => {
  // Long enough to open them all before the first ones time out.
  const authMs = 10_000;
  const started = Date.now();
  const { server, tcp } = await startSwitch(authMs);
  t.after(() => server.close());
  const socks: Socket[] = [];
  t.after(() => {
    for (const s of socks) s.destroy();
  });
  const rssBefore = process.memoryUsage().rss;
  // 2000 from one address, 200 at a time (the listen backlog): only STREAM_CONNECTIONS_PER_ADDRESS are kept.
  for (let k = 0; k < 10; k++) {
    const batch = await Promise.all(Array.from({ length: 200 }, () => open(tcp)));
    for (const s of batch) s.on('error', () => undefined);
    socks.push(...batch);
    await waitFor(`batch ${k} handled`, () => server.snapshot().streams.accepted + server.snapshot().streams.refused === 200 * (k + 1), 10_000, 20).catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(server.snapshot().streams)}`); });
  }
  const a = server.snapshot().streams;
  assert.equal(a.accepted, STREAM_CONNECTIONS_PER_ADDRESS);
  assert.equal(a.refused, 2000 - STREAM_CONNECTIONS_PER_ADDRESS);
  // 2000 more from 40 addresses (127.0.0.2..41), 50 each: all held, each with a partial datagram pending.
  const many: Socket[] = [];
  for (let k = 2; k < 42; k++) {
    many.push(...(await Promise.all(Array.from({ length: 50 }, () => open(tcp, `127.0.0.${k}`)))));
    if (k % 4 === 0) await waitFor('accepted', () => server.snapshot().streams.accepted === STREAM_CONNECTIONS_PER_ADDRESS + 50 * (k - 1), 10_000, 20);
  }
  socks.push(...many);
  for (const s of many) {
    s.on('error', () => undefined);
    s.write(Buffer.from([0x03, 0xff, 1, 2, 3]));
  }
  await waitFor('2064 streams open', () => server.snapshot().streams.open === STREAM_CONNECTIONS_PER_ADDRESS + 2000, 10_000, 50);
  const grown = process.memoryUsage().rss - rssBefore;
  t.diagnostic(`4000 connections (2064 held): RSS +${(grown / 1048576).toFixed(1)} MiB (client and server sides in this one process)`);
  assert.ok(grown < 256 * 1024 * 1024, `RSS grew by ${grown} bytes`);
  t.diagnostic(`opened in ${Date.now() - started} ms`);
  await waitFor('every idle stream closed', () => server.snapshot().streams.open === 0, authMs + 10_000, 100);
  assert.equal(server.snapshot().streams.authTimeouts, STREAM_CONNECTIONS_PER_ADDRESS + 2000);
});

test('WebSocket: a wrong path or subprotocol is refused, a text message or garbage ends the stream; all counted', { timeout: 20_000 }, async (t) => {
  const { server, ws } = await startSwitch();
  t.after(() => server.close());
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: ws, path: '/etherlink' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 426, 'a plain GET on the path says Upgrade Required');
  const refused = await new Promise<string>((resolve) => {
    const c = new WebSocket(`ws://127.0.0.1:${ws}/other`, WS_SUBPROTOCOL);
    c.on('unexpected-response', (_q, res) => resolve(String(res.statusCode)));
    c.on('error', (e) => resolve(e.message));
  });
  assert.match(refused, /404/);
  const noProto = await new Promise<string>((resolve) => {
    const c = new WebSocket(`ws://127.0.0.1:${ws}/etherlink`);
    c.on('unexpected-response', (_q, res) => resolve(String(res.statusCode)));
    c.on('error', (e) => resolve(e.message));
    c.on('open', () => resolve('opened'));
  });
  assert.notEqual(noProto, 'opened', 'no subprotocol, no stream');
  const c = new WebSocket(`ws://127.0.0.1:${ws}/etherlink`, WS_SUBPROTOCOL);
  await new Promise((r, j) => (c.once('open', r), c.once('error', j)));
  const gone = new Promise((r) => c.once('close', r));
  c.send('hello');
  await gone;
  await waitFor('counted', () => server.snapshot().streams.malformed === 1, 5_000, 20);
  const snap = server.snapshot().streams;
  assert.ok(snap.wsRejected >= 3, JSON.stringify(snap));
});
