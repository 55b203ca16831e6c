// The live web view (vswitch --web, vport --web) in a real headless Chromium
// against a real 3-host LAN: every port by name, rates that move during a ping
// flood, a port that leaves disappears, the MAC table, no console errors, a
// phone viewport without horizontal overflow; and the HTTP surface: a token
// beyond loopback (then a cookie), GET/HEAD only, no command in the stream.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { cleanup, collect, ensureTools, requireRoot, runTag, waitExit, waitForOutput, type Netns } from '../helpers/netns.js';
import { bin, execIn, linkMac, pingOnce, root, sharedLan, type Lan } from '../helpers/lan.js';

// The callbacks given to page.waitForFunction and $$eval run in the browser; this
// project compiles without the DOM lib, so the little of it they touch is declared here.
interface HTMLElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
}
declare const document: {
  querySelector(selector: string): HTMLElement | null;
  querySelectorAll(selector: string): Iterable<HTMLElement>;
  body: HTMLElement;
  documentElement: { scrollWidth: number; clientWidth: number };
};

const HOSTS = 3;
const SWITCH_WEB = 8088;
const PORT_WEB = 8089;
const TOKEN_WEB = 8090;
const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-web-'));
const artifacts = join(root, 'test-artifacts');
const browsers: Browser[] = [];

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

// --no-direct: the ports' traffic crosses the switch, so the switch's view sees it move.
const lan = sharedLan(tag, HOSTS, { vswitch: ['--web', `127.0.0.1:${SWITCH_WEB}`], vport: (i) => ['--no-direct', ...(i === 1 ? ['--web', String(PORT_WEB)] : [])] });

/** Headless Debian Chromium inside a namespace (a wrapper that enters it), never a downloaded browser. */
async function browserIn(ns: Netns): Promise<Browser> {
  ensureTools({ chromium: 'chromium' });
  const wrapper = join(tmp, `chromium-${ns.name}`);
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns.name} /usr/bin/chromium "$@"\n`);
  chmodSync(wrapper, 0o755);
  const b = await chromium.launch({
    executablePath: wrapper,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  browsers.push(b);
  return b;
}

/** A page that records console errors and uncaught exceptions. */
async function openPage(b: Browser, url: string, viewport = { width: 1280, height: 900 }): Promise<{ page: Page; errors: string[] }> {
  const ctx = await b.newContext({ viewport });
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  return { page, errors };
}

const portNames = (page: Page): Promise<string[]> => page.$$eval('#ports tbody tr', (rows) => rows.map((r) => (r as HTMLElement).dataset['port'] ?? ''));

async function waitPorts(page: Page, names: string[], timeoutMs = 10_000): Promise<void> {
  await page.waitForFunction((want) => {
    const have = [...document.querySelectorAll('#ports tbody tr')].map((r) => (r as HTMLElement).dataset['port']).sort();
    return JSON.stringify(have) === JSON.stringify([...want].sort());
  }, names, { timeout: timeoutMs });
}

function screenshotPath(name: string): string {
  mkdirSync(artifacts, { recursive: true });
  return join(artifacts, name);
}

test('vswitch --web: every port, moving rates, the MAC table, a port that leaves disappears; no console errors; phone viewport', async (t) => {
  if (!requireRoot(t)) return;
  const l: Lan = await lan();
  for (const [a, b] of [[1, 2], [2, 3], [3, 1]] as const) assert.ok(await pingOnce(l.hosts[a - 1]!.ns, `10.99.0.${b}`), `h${a} reaches h${b}`);
  const b = await browserIn(l.sw);
  const { page, errors } = await openPage(b, `http://127.0.0.1:${SWITCH_WEB}/`);
  await waitPorts(page, ['h1', 'h2', 'h3']);
  for (const name of ['h1', 'h2', 'h3']) assert.equal(await page.textContent(`#ports tbody tr[data-port="${name}"] td.name`), name, `${name} shown by name`);

  // The MAC table lists each host's etl0.
  const macs = l.hosts.map((h) => linkMac(h.ns, 'etl0'));
  await page.waitForFunction((want) => want.every((m) => document.querySelector(`#macs tbody tr[data-mac="${m}"]`) !== null), macs, { timeout: 10_000 });
  // The filter box narrows it.
  await page.fill('#mac-filter', macs[1]!);
  await page.waitForFunction((m) => [...document.querySelectorAll('#macs tbody tr')].every((r) => (r as HTMLElement).dataset['mac'] === m), macs[1]!, { timeout: 5_000 });
  await page.fill('#mac-filter', '');

  // A bounded ping flood from h1 to h2: h1's rx rate (what the switch took from it) and h2's tx rate move.
  const flood = l.hosts[0]!.ns.spawn('ping', ['-f', '-c', '20000', '-w', '15', '-s', '1000', '10.99.0.2']);
  try {
    await page.waitForFunction(() => {
      const bps = (p: string, k: string): number => Number((document.querySelector(`#ports tbody tr[data-port="${p}"]`) as HTMLElement | null)?.dataset[k] ?? 0);
      return bps('h1', 'rxBps') > 50_000 && bps('h2', 'txBps') > 50_000;
    }, undefined, { timeout: 12_000 });
    const chartCount = await page.$$eval('#charts .chart canvas', (c) => c.length);
    assert.ok(chartCount >= 3, `a chart per port (${chartCount} canvases)`);
    // A few seconds of history in the charts before the picture.
    await page.waitForFunction(() => Number(document.querySelector('#charts .chart[data-port="h1"]')?.dataset['points'] ?? 0) >= 6, undefined, { timeout: 10_000 });
    const shot = screenshotPath('web-switch.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
  } finally {
    if (flood.exitCode === null) flood.kill('SIGINT');
    await waitExit(flood, 20_000).catch(() => {});
  }
  // The recent events list the joins.
  const events = await page.$$eval('#events li', (li) => li.map((x) => x.textContent ?? ''));
  for (const name of ['h1', 'h2', 'h3']) assert.ok(events.some((e) => e.includes(`${name} joined`)), `a join event for ${name} in ${events.join(' | ')}`);

  // Phone-sized: no horizontal overflow of the page itself.
  const phone = await openPage(b, `http://127.0.0.1:${SWITCH_WEB}/`, { width: 390, height: 844 });
  await waitPorts(phone.page, ['h1', 'h2', 'h3']);
  await phone.page.waitForSelector('#charts .chart canvas');
  const overflow = await phone.page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  assert.ok(overflow.scroll <= overflow.client, `no horizontal overflow at 390 px: scrollWidth ${overflow.scroll} > ${overflow.client}`);
  const phoneShot = screenshotPath('web-switch-phone.png');
  await phone.page.screenshot({ path: phoneShot, fullPage: true });
  console.log(`screenshot: ${phoneShot}`);

  // h3's vport leaves (SIGTERM by its PID: it says goodbye): its row goes within a few seconds.
  const h3 = l.vports[2]!;
  process.kill(h3.pid!, 'SIGTERM');
  await waitExit(h3, 10_000);
  await waitPorts(page, ['h1', 'h2'], 5_000);
  await page.waitForFunction(() => [...document.querySelectorAll('#events li')].some((li) => /h3 left/.test(li.textContent ?? '')), undefined, { timeout: 5_000 });
  assert.deepEqual(errors, [], 'no console errors on the switch page');
  assert.deepEqual(phone.errors, [], 'no console errors on the phone page');
});

test('vport --web: the port, its peers and their paths', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  assert.ok(await pingOnce(l.hosts[0]!.ns, '10.99.0.2'));
  const b = await browserIn(l.hosts[0]!.ns);
  const { page, errors } = await openPage(b, `http://127.0.0.1:${PORT_WEB}/`);
  await page.waitForFunction(() => document.querySelector('#ports tbody tr[data-port="h2"]') !== null, undefined, { timeout: 10_000 });
  assert.match(await page.textContent('#ports tbody tr[data-port="h2"]') ?? '', /relayed/, '--no-direct: the peer is relayed');
  assert.match(await page.textContent('#title') ?? '', /vport etl0/);
  // The port's own events: its join, and the pair session with h2 (relayed: --no-direct).
  await page.waitForFunction(() => document.querySelector('#events li[data-kind="pair"]') !== null, undefined, { timeout: 10_000 });
  assert.match(await page.textContent('#events li[data-kind="join"]') ?? '', /joined the switch at \S+ \(session /);
  const pairs = await page.$$eval('#events li[data-kind="pair"]', (items) => items.map((li) => li.textContent ?? ''));
  assert.ok(pairs.some((text) => /pair session with h2 up \(relayed\)/.test(text)), `the pair session with h2 in the events: ${JSON.stringify(pairs)}`);
  // The rate chart's time axis ends now, also while it holds a single point (uPlot's own range put that one
  // 1000 days ahead, in 2029): a fresh page, read at its first point.
  const fresh = await openPage(b, `http://127.0.0.1:${PORT_WEB}/`);
  const handle = await fresh.page.waitForFunction(() => {
    const c = document.querySelector('#charts .chart[data-port="etl0"]');
    return c?.dataset['points'] === '1' && c.dataset['until'] !== undefined ? c.dataset['until'] : undefined;
  }, undefined, { timeout: 10_000, polling: 20 });
  const until = Number(await handle.jsonValue());
  assert.ok(Math.abs(until * 1000 - Date.now()) < 60_000, `with one point, the chart's time axis ends now, not at ${until} (unix s)`);
  assert.deepEqual(fresh.errors, []);
  const shot = screenshotPath('web-port.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  assert.deepEqual(errors, []);
});

/** Raw HTTP requests made from inside a namespace (no redirects followed): status, headers, the start of the body. */
async function requestsFrom(ns: Netns, reqs: { method: string; url: string; headers?: Record<string, string> }[]): Promise<{ status: number; headers: Record<string, string>; body: string }[]> {
  const script = `
const http = require('node:http');
const reqs = ${JSON.stringify(reqs)};
(async () => {
  const out = [];
  for (const r of reqs) out.push(await new Promise((resolve) => {
    const body = r.method === 'GET' || r.method === 'HEAD' ? undefined : 'shutdown';
    const q = http.request(r.url, { method: r.method, headers: { ...(r.headers ?? {}), ...(body ? { 'content-length': body.length } : {}) } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      const done = () => resolve({ status: res.statusCode, headers: res.headers, body: body.slice(0, 400) });
      res.on('data', (d) => { body += d; const at = body.indexOf('event: report'); if (at >= 0 && body.indexOf('\\n\\n', at) > 0) { res.destroy(); done(); } });
      res.on('end', done);
    });
    q.on('error', (e) => resolve({ status: 0, headers: {}, body: e.message }));
    q.end(body);
  }));
  console.log(JSON.stringify(out));
})();`;
  const r = await execIn(ns, process.execPath, ['-e', script], 20_000);
  assert.equal(r.status, 0, r.err);
  return JSON.parse(r.out) as { status: number; headers: Record<string, string>; body: string }[];
}

test('beyond loopback: refused without the token (and without --web-token at all), the token once then a cookie; GET/HEAD only', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  // Refused at start: a non-loopback --web without --web-token (exit 2, naming the flag and the fix).
  const refused = execFileSyncStatus(process.execPath, [bin('vswitch'), '--insecure', '--control', 'none', '--web', `0.0.0.0:${TOKEN_WEB}`]);
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /--web 0\.0\.0\.0:8090 serves beyond this host, so it needs --web-token FILE/);
  assert.match(refused.stderr, /etherlink genpsk --out web\.token/);
  const tokenFile = join(tmp, 'web.token');
  execFileSync(process.execPath, [bin('etherlink'), 'genpsk', '--out', tokenFile]);
  const token = readFileSync(tokenFile, 'utf8').trim();

  // A second switch in the switch namespace, its view on an underlay address the hosts reach.
  const sw = l.sw.spawn(process.execPath, [bin('vswitch'), '9998', '--insecure', '--no-tcp', '--no-reflector', '--control', 'none', '--web', `10.250.1.1:${TOKEN_WEB}`, '--web-token', tokenFile]);
  await waitForOutput(sw, /vswitch ready on UDP 9998\n/, 10_000);
  assert.match(collect(sw).err() + collect(sw).out(), /web="?http:\/\/10\.250\.1\.1:8090\//);
  const base = `http://10.250.1.1:${TOKEN_WEB}`;
  const enc = encodeURIComponent(token);
  const [none, wrong, given, raw] = await requestsFrom(l.hosts[0]!.ns, [
    { method: 'GET', url: `${base}/` },
    { method: 'GET', url: `${base}/?token=not-the-token-at-all` },
    { method: 'GET', url: `${base}/?token=${enc}` },
    // Pasted unencoded: base64's '+' must not read as a space.
    { method: 'GET', url: `${base}/?token=${token}` },
  ]);
  assert.equal(none!.status, 401, 'no token: 401');
  assert.equal(wrong!.status, 403, 'a wrong token: 403');
  assert.equal(given!.status, 303, 'the token: accepted, redirected to drop it from the URL');
  assert.equal(given!.headers['location'], '/');
  assert.equal(raw!.status, 303, `the token pasted raw: ${raw!.body}`);
  const setCookie = String(given!.headers['set-cookie']);
  assert.match(setCookie, /HttpOnly/);
  assert.match(setCookie, /SameSite=Strict/);
  const cookie = setCookie.split(';')[0]!;

  const withCookie = { cookie };
  const res = await requestsFrom(l.hosts[0]!.ns, [
    { method: 'GET', url: `${base}/`, headers: withCookie },
    { method: 'GET', url: `${base}/events`, headers: withCookie },
    { method: 'GET', url: `${base}/uplot.js`, headers: withCookie },
    { method: 'HEAD', url: `${base}/`, headers: withCookie },
    { method: 'GET', url: `${base}/events` },
    ...['POST', 'PUT', 'DELETE', 'PATCH'].flatMap((m) => [
      { method: m, url: `${base}/`, headers: withCookie },
      { method: m, url: `${base}/events`, headers: withCookie },
    ]),
    // The stream takes no command: a query is ignored, the daemon runs on.
    { method: 'GET', url: `${base}/events?command=shutdown&port=h1`, headers: withCookie },
  ]);
  const [page, stream, uplot, head, streamNoAuth, ...rest] = res;
  assert.equal(page!.status, 200, 'the cookie works');
  assert.match(page!.body, /<title>EtherLink live view<\/title>/);
  assert.match(String(page!.headers['content-security-policy']), /default-src 'self'/);
  assert.doesNotMatch(page!.body, /<script>(?!<)/, 'no inline script');
  assert.equal(stream!.status, 200);
  assert.match(String(stream!.headers['content-type']), /text\/event-stream/);
  assert.match(stream!.body, /event: report\ndata: \{"kind":"vswitch"/);
  assert.equal(uplot!.status, 200, 'uPlot served from the package');
  assert.equal(head!.status, 200);
  assert.equal(streamNoAuth!.status, 401, 'the stream needs the token too');
  const commands = rest.slice(0, -1);
  assert.deepEqual(commands.map((r) => r.status), commands.map(() => 405), `every write refused: ${JSON.stringify(commands.map((r) => [r.status, r.body]))}`);
  assert.equal(commands[0]!.headers['allow'], 'GET, HEAD');
  assert.equal(rest.at(-1)!.status, 200);
  assert.equal(sw.exitCode, null, 'the switch is still running');

  // A loopback view without a token refuses a Host that is not a loopback name (DNS rebinding).
  const [rebound, local] = await requestsFrom(l.sw, [
    { method: 'GET', url: `http://127.0.0.1:${SWITCH_WEB}/`, headers: { host: `attacker.example:${SWITCH_WEB}` } },
    { method: 'GET', url: `http://127.0.0.1:${SWITCH_WEB}/` },
  ]);
  assert.equal(rebound!.status, 403);
  assert.equal(local!.status, 200);

  // A real browser: the token once, then the page works from its cookie.
  const b = await browserIn(l.hosts[0]!.ns);
  const { page: p, errors } = await openPage(b, `${base}/?token=${enc}`);
  assert.equal(new URL(p.url()).search, '', 'the token left the address bar');
  await p.waitForFunction(() => document.body.dataset['updated'] !== undefined, undefined, { timeout: 10_000 });
  await p.reload();
  await p.waitForFunction(() => document.body.dataset['updated'] !== undefined, undefined, { timeout: 10_000 });
  assert.deepEqual(errors, []);
  sw.kill('SIGTERM');
  await waitExit(sw, 10_000);
});

function execFileSyncStatus(cmd: string, args: string[]): { status: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 });
    return { status: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number | null; stdout: string; stderr: string };
    return { status: e.status ?? -1, stdout: e.stdout, stderr: e.stderr };
  }
}
