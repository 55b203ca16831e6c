// The live view's pure parts: --web addresses, loopback, the token check and
// its cookie, the token file, the event ring; and the HTTP surface of a
// WebServer on loopback (GET/HEAD only, CSP, the page's and uPlot's files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { checkWebAccess, cookieValue, isLoopback, parseWebAddress, parseWebToken, rawQueryValue, WEB_COOKIE, WebServer, webTokenProblem } from '../../lib/daemon/web.js';
import { EventLog } from '../../lib/daemon/events.js';
import { MacTable } from '../../lib/switch/mac-table.js';

test('--web: a bare port is 127.0.0.1; ADDR:PORT and [v6]:PORT as given; anything else names the flag', () => {
  assert.deepEqual(parseWebAddress('8080'), { address: '127.0.0.1', port: 8080 });
  assert.deepEqual(parseWebAddress('0.0.0.0:8080'), { address: '0.0.0.0', port: 8080 });
  assert.deepEqual(parseWebAddress('[::1]:9000'), { address: '::1', port: 9000 });
  assert.deepEqual(parseWebAddress('localhost:1'), { address: 'localhost', port: 1 });
  for (const bad of ['', 'x', ':80', '1.2.3.4', '1.2.3.4:70000', 'example.com:80', '[::1]']) {
    assert.throws(() => parseWebAddress(bad), /--web '.*' must be PORT/, bad);
  }
});

test('loopback: 127/8, ::1, localhost; nothing else', () => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopback(a), true, a);
  for (const a of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::2', '1.127.0.0']) assert.equal(isLoopback(a), false, a);
});

test('beyond loopback without a token: refused, naming --web-token and how to make one', () => {
  assert.equal(webTokenProblem({ address: '127.0.0.1', port: 8080 }, undefined), undefined);
  assert.equal(webTokenProblem({ address: '0.0.0.0', port: 8080 }, 'x'.repeat(20)), undefined);
  assert.match(webTokenProblem({ address: '0.0.0.0', port: 8080 }, undefined)!, /--web 0\.0\.0\.0:8080 serves beyond this host, so it needs --web-token FILE.*etherlink genpsk --out web\.token/);
});

test('a token file: its first line, long enough, no spaces', () => {
  assert.equal(parseWebToken('abcdefghijklmnopqrstuvwxyz+/AB==\n', 'f'), 'abcdefghijklmnopqrstuvwxyz+/AB==');
  assert.throws(() => parseWebToken('short\n', 't.token'), /--web-token t\.token must hold one token of at least 16 characters.*etherlink genpsk --out t\.token/);
  assert.throws(() => parseWebToken('', 'f'), /at least 16/);
  assert.throws(() => parseWebToken('a token with spaces in it\n', 'f'), /no spaces/);
});

test('the token check: ?token= once (a cookie, a redirect without it), then the cookie; wrong or none refused', () => {
  const token = 'q83Lw+vZ/0aabbccddeeff==';
  const ask = (url: string, cookie?: string) => checkWebAccess({ url, host: 'h:1', cookie }, token);
  const none = ask('/');
  assert.ok(!none.ok && none.status === 401 && /\?token=TOKEN/.test(none.reason), JSON.stringify(none));
  assert.equal((ask('/?token=nope') as { status: number }).status, 403);
  const given = ask(`/?token=${encodeURIComponent(token)}&x=1`);
  assert.ok(given.ok);
  assert.equal(given.redirect, '/?x=1');
  assert.match(given.setCookie!, new RegExp(`^${WEB_COOKIE}=[^;]+; HttpOnly; SameSite=Strict; Path=/$`));
  // Pasted raw, base64's '+' is not a space.
  assert.ok(ask(`/?token=${token}`).ok);
  const cookie = given.setCookie!.split(';')[0]!;
  assert.deepEqual(ask('/events', `other=1; ${cookie}`), { ok: true });
  assert.equal((ask('/', `${WEB_COOKIE}=wrong`) as { status: number }).status, 401);
  assert.equal(cookieValue(`a=1; ${cookie}`, WEB_COOKIE), token);
  assert.equal(rawQueryValue('?a=1&token=x+y%2F', 'token'), 'x+y/');
  assert.equal(rawQueryValue('?a=1', 'token'), undefined);
});

test('without a token (loopback only), a Host that is not a loopback name is refused: no DNS rebinding', () => {
  const ask = (host: string | undefined) => checkWebAccess({ url: '/', host, cookie: undefined }, undefined).ok;
  assert.equal(ask('127.0.0.1:8080'), true);
  assert.equal(ask('localhost:8080'), true);
  assert.equal(ask('[::1]:8080'), true);
  assert.equal(ask('evil.example:8080'), false);
  assert.equal(ask(undefined), false);
});

test('the event ring keeps the newest 200 (or its capacity), oldest first, and reads after a sequence number', () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const log = new EventLog(3, () => now++);
  for (let i = 1; i <= 5; i++) log.add('join', `p${i} joined`, { port: `p${i}`, network: 'default' });
  assert.equal(log.total, 5);
  assert.deepEqual(log.list().map((e) => [e.seq, e.text]), [[3, 'p3 joined'], [4, 'p4 joined'], [5, 'p5 joined']]);
  assert.deepEqual(log.list(4).map((e) => e.seq), [5]);
  assert.equal(log.list()[0]!.time, '2026-01-01T00:00:00.002Z');
  assert.deepEqual(Object.keys(log.add('rekey', 'x')), ['seq', 'time', 'kind', 'text']);
  assert.equal(new EventLog().capacity, 200);
  assert.throws(() => new EventLog(0), RangeError);
});

test('a refused MAC claim is reported once per claimant, not once per frame (the events feed it)', () => {
  const refused: [number, string, string][] = [];
  const t = new MacTable<string>({ moveHoldMs: 3000, onMoveDenied: (e, claimant) => refused.push([e.mac, e.port, claimant]) });
  t.learn(0x0a, 0, 'h1', 0);
  for (let now = 10; now < 100; now += 10) t.learn(0x0a, 0, 'h2', now);
  t.learn(0x0a, 0, 'h3', 100);
  assert.deepEqual(refused, [[0x0a, 'h1', 'h2'], [0x0a, 'h1', 'h3']]);
  assert.equal(t.counters.moveDenied, 10, 'the counter still counts every refused frame');
});

function get(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
        if (res.headers['content-type']?.startsWith('text/event-stream') && body.includes('event: report')) res.destroy();
      });
      const done = (): void => resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      res.on('end', done);
      res.on('close', done);
    });
    req.on('error', reject);
    req.end();
  });
}

test('WebServer on loopback: the page, app, styles and uPlot with a strict CSP; the stream sends the report; writes are 405', async () => {
  let reads = 0;
  const web = await WebServer.listen({ address: '127.0.0.1', port: 0 }, () => ({ kind: 'vswitch', n: ++reads }), { intervalMs: 50 });
  try {
    const page = await get(web.port, 'GET', '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-security-policy']), /^default-src 'self';/);
    assert.doesNotMatch(page.body, /<script>|<script [^>]*>[^<]/, 'no inline script');
    assert.doesNotMatch(page.body, /https?:\/\//, 'nothing from elsewhere');
    for (const [path, type] of [['/app.js', 'text/javascript'], ['/style.css', 'text/css'], ['/uplot.js', 'text/javascript'], ['/uplot.css', 'text/css']] as const) {
      const r = await get(web.port, 'GET', path);
      assert.equal(r.status, 200, path);
      assert.ok(String(r.headers['content-type']).startsWith(type), `${path}: ${r.headers['content-type']}`);
      assert.ok(r.body.length > 100, path);
    }
    assert.equal((await get(web.port, 'GET', '/nope')).status, 404);
    const stream = await get(web.port, 'GET', '/events');
    assert.match(stream.body, /event: report\ndata: \{"kind":"vswitch","n":\d+\}/);
    for (const m of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      for (const path of ['/', '/events']) {
        const r = await get(web.port, m, path);
        assert.equal(r.status, 405, `${m} ${path}`);
        assert.equal(r.headers['allow'], 'GET, HEAD');
      }
    }
    assert.equal((await get(web.port, 'HEAD', '/')).status, 200);
  } finally {
    web.close();
  }
});

test('WebServer refuses to listen beyond loopback without a token', async () => {
  await assert.rejects(WebServer.listen({ address: '0.0.0.0', port: 0 }, () => ({})), /needs --web-token FILE/);
});
