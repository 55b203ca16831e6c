// WebSocket transport (issue 12) where only HTTPS gets out: a port reaches its
// switch over wss:// through Debian's nginx terminating TLS on 443, and through
// an HTTP CONNECT proxy when its router lets no TCP to the switch pass. A
// throw-away CA made with openssl signs the switch's certificate.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanup, collect, ensureTools, requireRoot, run, runTag, waitExit, waitFor, waitForOutput, type Netns } from '../helpers/netns.js';
import { count, execIn, root, START_TIMEOUT_MS } from '../helpers/lan.js';
import {
  buildNatLab,
  hostOf,
  JOINED,
  ping,
  portReport,
  spawnNatPort,
  startNatPort,
  startNatPortAt,
  startNatSwitch,
  startStream,
  switchReport,
  SWITCH_ADDRESS,
  withDiagnosis,
  type NatDaemon,
  type NatHost,
  type NatRouter,
} from '../helpers/nat.js';

const tag = runTag();
after(() => cleanup());

/** Where the switch's WebSocket listener sits behind nginx (loopback: nginx is the only client). */
const WS_BACKEND = '127.0.0.1:8080';
/** The built-in wss:// listener of the proxy test. */
const WSS_PORT = 8443;
/** The CONNECT proxy on h1's router, on its LAN address. */
const PROXY = { address: '10.1.0.1', port: 3128 };
/** How long a port with the wrong CA is given to (not) join. */
const WRONG_CA_WAIT_MS = 6_000;

/** No proxy from the environment this test runs in may stand between a port and the lab. */
const NO_ENV_PROXY = { HTTPS_PROXY: '', https_proxy: '', HTTP_PROXY: '', http_proxy: '', NO_PROXY: '', no_proxy: '' };

function openssl(args: readonly string[]): void {
  run('openssl', args, { timeoutMs: 20_000 });
}

/** A throw-away CA in `dir`: NAME.pem (certificate), NAME.key. */
function makeCa(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=EtherLink test ${name}`]);
  return { cert, key };
}

/** A server certificate for IP `ip` signed by `ca`, in `dir`: server.pem, server.key. */
function issueServerCert(dir: string, ca: { cert: string; key: string }, ip: string): { cert: string; key: string } {
  const cert = join(dir, 'server.pem');
  const key = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const ext = join(dir, 'server.ext');
  writeFileSync(ext, `subjectAltName=IP:${ip}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${ip}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { cert, key };
}

/** A private temp dir for one test, removed after it. */
function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'etl-ws-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The README's nginx block ("When UDP is blocked"), as written, with its
 * backend address put where this test's switch listens: what users copy is
 * what runs here.
 */
function readmeLocation(backend: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /^```nginx\n([\s\S]*?)^```$/m.exec(readme)?.[1];
  assert.ok(block !== undefined && block.includes('location /etherlink'), 'README.md has the nginx location block');
  assert.ok(block.includes('proxy_pass http://127.0.0.1:8080;'), 'the README block proxies to 127.0.0.1:8080');
  return block.replace('http://127.0.0.1:8080;', `http://${backend};`);
}

/** nginx as a TLS-terminating reverse proxy for WebSockets (the README's location block), every path of its own in `dir`. */
function nginxConfig(dir: string, listen: string, backend: string, cert: { cert: string; key: string }): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen ${listen} ssl;
    ssl_certificate ${cert.cert};
    ssl_certificate_key ${cert.key};
${readmeLocation(backend)}
  }
}
`;
}

/** Something in `ns` listens on TCP `port`. */
function listening(ns: Netns, port: number): boolean {
  return ns.exec('ss', ['-Hltn', `sport = :${port}`], { allowFail: true }).stdout.trim() !== '';
}

/** Start nginx in `ns` with `conf`; resolves once it listens on `port`. */
async function startNginx(ns: Netns, dir: string, conf: string, port: number): Promise<ChildProcess> {
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  const child = ns.spawn('nginx', ['-p', dir, '-e', join(dir, 'error.log'), '-c', file]);
  await waitFor('nginx to listen', () => child.exitCode !== null || listening(ns, port), START_TIMEOUT_MS, 100).catch((err: Error) => {
    throw new Error(`${err.message}: ${nginxLog(dir)}`);
  });
  if (child.exitCode !== null) throw new Error(`nginx exited ${child.exitCode}: ${collect(child).err()} ${nginxLog(dir)}`);
  return child;
}

function nginxLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'error.log'), 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no nginx error log)';
  }
}

/** An HTTP proxy that only does CONNECT, to any host:port, and logs "CONNECT host:port" for each. */
const CONNECT_PROXY = `
const net = require('node:net');
const { address, port } = JSON.parse(process.argv[1]);
const server = net.createServer((client) => {
  client.on('error', () => {});
  let head = Buffer.alloc(0);
  const onData = (d) => {
    head = Buffer.concat([head, d]);
    const end = head.indexOf('\\r\\n\\r\\n');
    if (end < 0) {
      if (head.length > 16384) client.destroy();
      return;
    }
    client.off('data', onData);
    const m = /^CONNECT (\\S+):(\\d+) HTTP\\/1\\.[01]\\r\\n/.exec(head.subarray(0, end).toString('latin1'));
    if (m === null) {
      console.log('refused ' + JSON.stringify(head.subarray(0, Math.min(end, 80)).toString('latin1')));
      client.end('HTTP/1.1 405 Method Not Allowed\\r\\nconnection: close\\r\\ncontent-length: 0\\r\\n\\r\\n');
      return;
    }
    const host = m[1].replace(/^\\[(.*)\\]$/, '$1');
    console.log('CONNECT ' + m[1] + ':' + m[2]);
    const rest = head.subarray(end + 4);
    const upstream = net.connect({ host, port: Number(m[2]) }, () => {
      client.write('HTTP/1.1 200 Connection Established\\r\\n\\r\\n');
      if (rest.length > 0) upstream.write(rest);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    upstream.on('error', (e) => {
      console.log('upstream ' + m[1] + ':' + m[2] + ' ' + e.message);
      if (!client.writableEnded) client.end('HTTP/1.1 502 Bad Gateway\\r\\nconnection: close\\r\\ncontent-length: 0\\r\\n\\r\\n');
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  };
  client.on('data', onData);
});
server.listen(port, address, () => console.log('listening'));
`;

/** A TCP connection from `host` to address:port is accepted within `timeoutMs`. */
async function tcpReaches(host: NatHost, address: string, port: number, timeoutMs = 1_500): Promise<boolean> {
  const probe = `const s = require('node:net').connect(${port}, '${address}', () => { console.log('ok'); process.exit(0); });
s.on('error', () => process.exit(1)); setTimeout(() => process.exit(2), ${timeoutMs});`;
  return (await execIn(host.ns, process.execPath, ['-e', probe], timeoutMs + START_TIMEOUT_MS)).status === 0;
}

/** SIGKILL the daemons, then the helpers (nginx, the proxy), each by its PID, and wait until they are gone. */
async function stopAll(daemons: readonly NatDaemon[], helpers: readonly ChildProcess[]): Promise<void> {
  for (const d of daemons) await d.stop();
  for (const c of helpers) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await waitExit(c, 5_000);
  }
}

/** The port's transport, and the switch's view of it (its transport and the address it sees). */
async function transports(sw: NatDaemon, port: NatDaemon, name: string): Promise<{ port: string; reason: string; atSwitch?: string; address?: string }> {
  const [p, s] = await Promise.all([portReport(port), switchReport(sw)]);
  const at = s.ports.find((x) => x.name === name);
  return { port: p.transport.current, reason: p.transport.reason, ...(at?.transport !== undefined ? { atSwitch: at.transport } : {}), ...(at !== undefined ? { address: at.address } : {}) };
}

test('WebSocket through nginx terminating TLS: a port whose router passes only HTTPS joins over wss://, the switch sees its public address, pings and 5 MB pass; a wrong CA is refused', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ nginx: 'nginx', openssl: 'openssl', ss: 'iproute2' });
  // after hooks run in the order added: processes first, then their files and namespaces.
  const daemons: NatDaemon[] = [];
  const helpers: ChildProcess[] = [];
  t.after(() => stopAll(daemons, helpers));
  const dir = tempDir(t);
  const ca = makeCa(dir, 'ca');
  const wrongCa = makeCa(dir, 'wrong-ca');
  const cert = issueServerCert(dir, ca, SWITCH_ADDRESS);

  const lab = buildNatLab(`${tag}n`, [{ mode: 'masquerade' }, { mode: 'masquerade' }, { mode: 'masquerade' }]);
  t.after(() => lab.destroy());
  const [h1, h2, h3] = lab.hosts as [NatHost, NatHost, NatHost];
  const r1 = lab.routers[0] as NatRouter;
  helpers.push(await startNginx(lab.sw, dir, nginxConfig(dir, `${SWITCH_ADDRESS}:443`, WS_BACKEND, cert), 443));

  await withDiagnosis(lab, () => daemons, async () => {
    const sw = await startNatSwitch(lab, ['--ws', WS_BACKEND]);
    daemons.push(sw);
    daemons.push(await startNatPort(lab, h2));
    lab.blockUdp(h1, { tcpToSwitch: { except: [443] } });
    // The block is real: h1 reaches the switch on 443 only.
    const [to443, to9999] = await Promise.all([tcpReaches(h1, SWITCH_ADDRESS, 443), tcpReaches(h1, SWITCH_ADDRESS, 9999)]);
    assert.deepEqual({ to443, to9999 }, { to443: true, to9999: false }, 'h1 reaches the switch over TCP on 443 and not on 9999');

    const started = Date.now();
    const p1 = await startNatPortAt(lab, h1, [`wss://${SWITCH_ADDRESS}/etherlink`], ['--ca', ca.cert], { env: NO_ENV_PROXY });
    daemons.push(p1);
    const joinedMs = Date.now() - started;
    const seen = await transports(sw, p1, 'h1');
    t.diagnostic(`h1 joined over ${seen.port} in ${joinedMs} ms (${seen.reason}); the switch sees it at ${seen.address} over ${seen.atSwitch}`);
    assert.equal(seen.port, 'ws', seen.reason);
    assert.equal(seen.atSwitch, 'ws', 'the switch sees h1 on a WebSocket');
    assert.equal(hostOf(seen.address), r1.wan, `the switch names h1 by its router's public address (from nginx's X-Forwarded-For), not nginx's: ${seen.address}`);

    assert.ok(await ping(h1, h2.overlay, 2), 'h1 (WebSocket) pings h2 (UDP)');
    assert.ok(await ping(h2, h1.overlay, 2), 'h2 (UDP) pings h1 (WebSocket)');

    const stream = await startStream(h1, h2, { bytes: 5 * 1024 * 1024, timeoutMs: 40_000 });
    const { sent, received } = await stream.done();
    t.diagnostic(`5 MB over wss:// through nginx in ${received.seconds.toFixed(2)} s (${((sent.bytes * 8) / received.seconds / 1e6).toFixed(0)} Mbit/s), longest gap ${received.maxGapMs} ms`);
    assert.equal(received.bytes, sent.bytes);
    assert.equal(received.sha256, sent.sha256, 'SHA-256 equal at both ends');
    assert.equal((await transports(sw, p1, 'h1')).port, 'ws', 'still on the WebSocket after the transfer');

    // A port that trusts another CA must not take nginx's certificate.
    const p3Started = Date.now();
    const p3 = spawnNatPort(h3, [`wss://${SWITCH_ADDRESS}/etherlink`], ['--ca', wrongCa.cert], { env: NO_ENV_PROXY });
    daemons.push(p3);
    const refused = await waitForOutput(p3.child, /stream to the switch failed.*/, WRONG_CA_WAIT_MS);
    const refusedMs = Date.now() - p3Started;
    await new Promise((r) => setTimeout(r, Math.max(0, p3Started + WRONG_CA_WAIT_MS - Date.now())));
    t.diagnostic(`h3 with the wrong CA, ${refusedMs} ms after start: ${refused}; ${count(p3.output(), /stream to the switch failed/)} failures in ${WRONG_CA_WAIT_MS} ms`);
    assert.match(refused, /certificate|CERT|TLS|SSL/i, 'the failure names the certificate');
    assert.equal(count(p3.output(), JOINED), 0, `h3 joined with the wrong CA:\n${p3.output()}`);
    const after = await switchReport(sw);
    assert.equal(after.ports.find((p) => p.name === 'h3'), undefined, 'the switch has no h3');
    // nginx refused h3 in the TLS handshake: only h1's stream ever reached the switch.
    assert.deepEqual([after.streams['open'], after.streams['accepted']], [1, 1], `stream counters: ${JSON.stringify(after.streams)}`);
  });
});

test('wss:// through an HTTPS_PROXY (CONNECT) when nothing else gets out: the port joins over ws via the proxy and pings', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ openssl: 'openssl' });
  const daemons: NatDaemon[] = [];
  const helpers: ChildProcess[] = [];
  t.after(() => stopAll(daemons, helpers));
  const dir = tempDir(t);
  const ca = makeCa(dir, 'ca');
  const cert = issueServerCert(dir, ca, SWITCH_ADDRESS);

  const lab = buildNatLab(`${tag}p`, [{ mode: 'masquerade' }, { mode: 'masquerade' }]);
  t.after(() => lab.destroy());
  const [h1, h2] = lab.hosts as [NatHost, NatHost];
  const r1 = lab.routers[0] as NatRouter;
  // The router's own process: its connections to the switch are not forwarded, so the block does not see them.
  const proxy = r1.ns.spawn(process.execPath, ['-e', CONNECT_PROXY, JSON.stringify(PROXY)]);
  helpers.push(proxy);
  await waitForOutput(proxy, /^listening$/m, START_TIMEOUT_MS);

  await withDiagnosis(lab, () => daemons, async () => {
    const sw = await startNatSwitch(lab, ['--ws', `${SWITCH_ADDRESS}:${WSS_PORT}`, '--tls-cert', cert.cert, '--tls-key', cert.key]);
    daemons.push(sw);
    daemons.push(await startNatPort(lab, h2));
    lab.blockUdp(h1, { tcpToSwitch: true });
    assert.equal(await tcpReaches(h1, SWITCH_ADDRESS, WSS_PORT), false, 'h1 must not reach the switch over TCP but through the proxy');

    const p1 = await startNatPortAt(lab, h1, [`wss://${SWITCH_ADDRESS}:${WSS_PORT}/etherlink`], ['--ca', ca.cert], {
      env: { ...NO_ENV_PROXY, HTTPS_PROXY: `http://${PROXY.address}:${PROXY.port}` },
    });
    daemons.push(p1);
    const seen = await transports(sw, p1, 'h1');
    const proxyLog = collect(proxy).out();
    t.diagnostic(`h1 joined over ${seen.port} (${seen.reason}); the switch sees it at ${seen.address}; proxy log: ${proxyLog.trim().split('\n').join(' | ')}`);
    assert.equal(seen.port, 'ws', seen.reason);
    assert.equal(seen.atSwitch, 'ws', 'the switch sees h1 on a WebSocket');
    assert.equal(hostOf(seen.address), r1.wan, 'the proxy connects from its router: the switch sees that address');
    assert.match(proxyLog, new RegExp(`^CONNECT ${SWITCH_ADDRESS.replace(/\./g, '\\.')}:${WSS_PORT}$`, 'm'), 'the proxy tunnelled to the switch');
    assert.ok(await ping(h1, h2.overlay, 2), 'h1 pings h2 through the proxy');
    assert.ok(await ping(h2, h1.overlay, 2), 'h2 pings h1 through the proxy');
    const streams = (await switchReport(sw)).streams;
    assert.equal(streams['open'], 1, `stream counters: ${JSON.stringify(streams)}`);
  });
});
