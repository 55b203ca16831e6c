// --metrics on a real LAN: /metrics is valid Prometheus text exposition 0.0.4,
// and during a 20 MB transfer h1 -> h2 the byte counters grow by about 20 MB.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, collect, requireRoot, runTag, waitExit, waitForOutput, type Netns, type StarHost } from '../helpers/netns.js';
import { bin, execIn, startPort, startSwitch, switchKeyArgs, sharedLan, type Lan } from '../helpers/lan.js';

const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-metrics-'));
const SWITCH_METRICS = '127.0.0.1:9810';
const PORT_METRICS = '127.0.0.1:9811';
const TRANSFER_BYTES = 20 * 1024 * 1024;

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const lan = sharedLan(tag, 2, { vswitch: ['--metrics', SWITCH_METRICS], vport: (i) => (i === 1 ? ['--metrics', PORT_METRICS] : []) });

interface Scrape {
  status: number;
  type: string;
  body: string;
}

/** GET a URL from inside `ns` with node:http (no curl needed). */
async function get(ns: Netns, url: string): Promise<Scrape> {
  const script = `require('node:http').get(process.argv[1], (r) => { let b = ''; r.setEncoding('utf8'); r.on('data', (d) => (b += d)); r.on('end', () => process.stdout.write(JSON.stringify({ status: r.statusCode, type: r.headers['content-type'] ?? '', body: b }))); }).on('error', (e) => { console.error(e.message); process.exit(1); });`;
  const r = await execIn(ns, process.execPath, ['-e', script, url], 10_000);
  assert.equal(r.status, 0, `GET ${url}: ${r.err}`);
  return JSON.parse(r.out) as Scrape;
}

interface Family {
  type: string;
  help: boolean;
  samples: { labels: Record<string, string>; value: number }[];
}

/**
 * A strict reader of text exposition 0.0.4: every sample belongs to a family
 * whose TYPE came first, each family's lines are contiguous and declared once,
 * counters end in _total, label values unescape, no label set repeats.
 */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  let current: string | undefined;
  const enter = (name: string, lineNo: number): void => {
    if (current !== name && families.has(name)) throw new Error(`line ${lineNo}: family ${name} is not contiguous`);
    current = name;
  };
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, i) => {
    const n = i + 1;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line))) {
      enter(m[1]!, n);
      if (families.has(m[1]!)) throw new Error(`line ${n}: HELP for ${m[1]} after its TYPE or twice`);
      if (/\\[^\\n]/.test(m[2]!.replace(/\\\\/g, ''))) throw new Error(`line ${n}: bad escape in HELP`);
      families.set(m[1]!, { type: '', help: true, samples: [] });
      return;
    }
    if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      enter(m[1]!, n);
      const f = families.get(m[1]!) ?? { type: '', help: false, samples: [] };
      if (f.type !== '') throw new Error(`line ${n}: second TYPE for ${m[1]}`);
      f.type = m[2]!;
      families.set(m[1]!, f);
      return;
    }
    if (line.startsWith('#')) return; // a comment
    m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`).exec(line);
    if (!m) throw new Error(`line ${n}: not a sample: ${line}`);
    const name = m[1]!;
    const f = families.get(name);
    if (f === undefined || f.type === '') throw new Error(`line ${n}: sample of ${name} before its TYPE`);
    enter(name, n);
    if (f.type === 'counter' && !name.endsWith('_total')) throw new Error(`line ${n}: counter ${name} without _total`);
    const labels: Record<string, string> = {};
    let rest = m[2] ?? '';
    while (rest !== '') {
      const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!l) throw new Error(`line ${n}: bad labels: {${m[2]}}`);
      if (l[1]! in labels) throw new Error(`line ${n}: label ${l[1]} twice`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(l[0].length);
    }
    const value = /^[+-]?Inf$/.test(m[3]!) ? (m[3]!.startsWith('-') ? -Infinity : Infinity) : m[3] === 'NaN' ? NaN : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`line ${n}: bad value ${m[3]}`);
    const key = JSON.stringify(Object.entries(labels).sort());
    if (f.samples.some((s) => JSON.stringify(Object.entries(s.labels).sort()) === key)) throw new Error(`line ${n}: repeated sample ${line}`);
    f.samples.push({ labels, value });
  });
  return families;
}

/** The value of `name` with exactly these labels (among others). */
function value(fams: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const f = fams.get(name);
  assert.ok(f, `metric ${name} is exposed`);
  const s = f.samples.find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  assert.ok(s, `a sample of ${name} with ${JSON.stringify(labels)}; have ${JSON.stringify(f.samples.map((x) => x.labels))}`);
  return s.value;
}

async function scrape(ns: Netns, at: string): Promise<Map<string, Family>> {
  const r = await get(ns, `http://${at}/metrics`);
  assert.equal(r.status, 200);
  assert.equal(r.type, 'text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(r.body);
}

test('the exposition parses: HELP and TYPE before samples, one family each, counters _total; 404 elsewhere', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  const sw = await scrape(l.sw, SWITCH_METRICS);
  for (const [name, f] of sw) {
    assert.ok(name.startsWith('etherlink_switch_'), name);
    assert.ok(f.help, `${name} has HELP`);
  }
  assert.equal(value(sw, 'etherlink_switch_ports'), 2);
  assert.equal(value(sw, 'etherlink_switch_sessions'), 2);
  assert.equal(value(sw, 'etherlink_switch_info', { mode: 'secure' }), 1);
  assert.equal(value(sw, 'etherlink_switch_handshakes_total') >= 2, true);
  for (const name of ['port_frames_total', 'port_bytes_total', 'port_drops_total', 'drops_total', 'mac_table_entries', 'handshake_failures_total', 'rekeys_total', 'datagrams_dropped_total']) {
    assert.equal(sw.get(`etherlink_switch_${name}`)?.samples.length !== undefined, true, name);
  }
  assert.equal(sw.get('etherlink_switch_port_drops_total')!.type, 'counter');
  value(sw, 'etherlink_switch_port_drops_total', { port: 'h1', reason: 'runt' });
  value(sw, 'etherlink_switch_datagrams_dropped_total', { reason: 'auth_failed' });
  value(sw, 'etherlink_switch_handshake_failures_total', { reason: 'unlisted_key' });

  const port = await scrape(l.hosts[0]!.ns, PORT_METRICS);
  assert.equal(value(port, 'etherlink_port_joined'), 1);
  assert.equal(value(port, 'etherlink_port_info', { device: 'etl0', mode: 'secure' }), 1);

  const notFound = await get(l.sw, `http://${SWITCH_METRICS}/`);
  assert.equal(notFound.status, 404);
});

test('during a 20 MB transfer h1 -> h2, the bytes the switch relays from h1 grow by about 20 MB', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  const [h1, h2] = [l.hosts[0]!.ns, l.hosts[1]!.ns];
  const file = join(tmp, 'payload.bin');
  writeFileSync(file, randomBytes(TRANSFER_BYTES));
  // The transfer goes end to end: the switch relays it unopened (datagram bytes: 32 per frame above Ethernet's).
  const h1rx = (f: Map<string, Family>): number => value(f, 'etherlink_switch_port_relayed_bytes_total', { port: 'h1', direction: 'from' });
  const h2tx = (f: Map<string, Family>): number => value(f, 'etherlink_switch_port_relayed_bytes_total', { port: 'h2', direction: 'to' });
  const devRx = (f: Map<string, Family>): number => value(f, 'etherlink_port_bytes_total', { direction: 'rx' });

  const rx = h2.spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', '10.99.0.2', '5001', join(tmp, 'received.bin')]);
  await waitForOutput(rx, /listening on/);
  const [sw0, port0] = await Promise.all([scrape(l.sw, SWITCH_METRICS), scrape(h1, PORT_METRICS)]);
  const tx = h1.spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', '10.99.0.2', '5001', file]);
  // Scrape while it runs: the counter only ever grows.
  const during: number[] = [h1rx(sw0)];
  let done = false;
  const txExit = waitExit(tx, 40_000).finally(() => (done = true));
  while (!done) during.push(h1rx(await scrape(l.sw, SWITCH_METRICS)));
  assert.equal(await txExit, 0, `sender: ${collect(tx).err()}`);
  assert.equal(await waitExit(rx, 10_000), 0, `receiver: ${collect(rx).err()}`);
  assert.match(collect(rx).out(), new RegExp(`^received ${TRANSFER_BYTES} bytes`, 'm'));
  const [sw1, port1] = await Promise.all([scrape(l.sw, SWITCH_METRICS), scrape(h1, PORT_METRICS)]);
  during.push(h1rx(sw1));
  for (let i = 1; i < during.length; i++) assert.ok(during[i]! >= during[i - 1]!, `monotonic: ${during.join(' ')}`);

  const ratio = (d: number): number => d / TRANSFER_BYTES;
  const growth = { switchH1Rx: ratio(h1rx(sw1) - h1rx(sw0)), switchH2Tx: ratio(h2tx(sw1) - h2tx(sw0)), vportH1DeviceRx: ratio(devRx(port1) - devRx(port0)) };
  t.diagnostic(`growth / transfer size: ${JSON.stringify(growth)}; ${during.length} scrapes, ${new Set(during).size} distinct values`);
  for (const [what, r] of Object.entries(growth)) assert.ok(r >= 0.85 && r <= 1.15, `${what} grew ${r.toFixed(3)} x the transfer size`);
  assert.equal(value(port1, 'etherlink_port_joined'), 1);
  const rtt = value(port1, 'etherlink_port_rtt_seconds');
  assert.ok(rtt > 0 && rtt < 1, `rtt ${rtt} s`);
  assert.ok(value(sw1, 'etherlink_switch_port_relayed_datagrams_total', { port: 'h1', direction: 'from' }) > value(sw0, 'etherlink_switch_port_relayed_datagrams_total', { port: 'h1', direction: 'from' }));
  assert.ok(value(port1, 'etherlink_port_path_frames_total', { path: 'pair' }) - value(port0, 'etherlink_port_path_frames_total', { path: 'pair' }) > 1000, 'h1 sealed the transfer end to end');
});

test('--metrics on a port in use: exit 1 naming --metrics', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  const child = l.sw.spawn(process.execPath, [bin('vswitch'), '9903', ...switchKeyArgs([]), '--control', 'none', '--metrics', SWITCH_METRICS]);
  assert.equal(await waitExit(child, 10_000), 1);
  assert.match(collect(child).err(), new RegExp(`^vswitch: --metrics ${SWITCH_METRICS}: cannot listen: the port is in use: choose another \\[EADDRINUSE\\]$`, 'm'));
  const bad = l.sw.spawn(process.execPath, [bin('vswitch'), '9903', ...switchKeyArgs([]), '--metrics', '9810']);
  assert.equal(await waitExit(bad, 10_000), 2);
  assert.match(collect(bad).err(), /--metrics '9810' must be ADDR:PORT/);
});
