// A route that sends the switch's own address over the vport's TAP (ZeroTierOne#779,
// n2n#766): the vport refuses to carry its own datagrams to the switch instead of
// sealing them and sending them again, says why in its log and status, stays calm,
// and is back on the LAN once the route is gone. Real namespaces and CLIs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, collect, ensureTools, requireRoot, run, runTag, waitFor, waitForOutput, type Netns } from '../helpers/netns.js';
import { bin, execIn, linkMac, pingOnce, startPort, startSwitch } from '../helpers/lan.js';
import type { PortStatusReport } from '../../lib/daemon/status.js';

const tmp = mkdtempSync(join(tmpdir(), 'etl-underlay-'));
after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

/** How long the vport is watched while the route is in place: long enough for it to try TCP to the switch too (after ~12 s). */
const WATCH_MS = 20_000;
/**
 * Frames it may drop a second. What it sends the switch while cut off (pings,
 * TCP connection attempts, pair handshakes and MAC claims through the switch)
 * is a few a second; a loop would put each datagram back through the device,
 * larger each time, until it outgrew the MTU (and fragments went round again).
 */
const MAX_LOOPS_PER_S = 20;
/** CPU the vport may use in that window (fraction of one core). */
const MAX_CPU = 0.3;
/** The LAN must work again this soon after the route is gone: the longest rejoin backoff (10 s + jitter), with margin. */
const RECOVERY_MS = 30_000;
const WARNING = /refusing to carry traffic to the switch \(10\.250\.1\.1\) over etl0: the route to the switch goes through this TAP; add a route for 10\.250\.1\.1 via your real gateway \(ip route get 10\.250\.1\.1 shows the culprit\)/;

async function status(ns: Netns, control: string, json: boolean): Promise<string> {
  const r = await execIn(ns, process.execPath, [bin('vport'), 'status', '--control', control, ...(json ? ['--json'] : [])], 15_000);
  assert.equal(r.status, 0, r.err);
  return r.out;
}

const report = async (ns: Netns, control: string): Promise<PortStatusReport> => JSON.parse(await status(ns, control, true)) as PortStatusReport;

/** User plus system CPU time of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(run('getconf', ['CLK_TCK']).stdout.trim()) || 100;
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

test('a route sending the switch over the TAP: the vport drops its own traffic, warns naming the switch, reports it, stays calm, and is back once the route is gone', { timeout: 150_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping' });
  const { sw, hosts } = buildStar(runTag(), 2);
  const [h1, h2] = [hosts[0]!, hosts[1]!];
  const control = join(tmp, 'vport-h1.sock');
  await startSwitch(sw);
  const vport = await startPort(h1, 1, ['--control', control]);
  await startPort(h2, 2);
  await waitFor('h1 pings h2 over the LAN', () => pingOnce(h1.ns, '10.99.0.2'), 10_000, 100);
  const before = await report(h1.ns, control);
  assert.equal(before.counters['underlayLoops'], 0, 'nothing dropped while the routes are right');
  assert.equal(before.underlayLoop, undefined);

  // The mistake: the switch's address routed over the overlay (to h2's MAC at once: no ARP first).
  assert.equal(h1.switchAddress, '10.250.1.1');
  h1.ns.ip('neigh', 'replace', h1.switchAddress, 'lladdr', linkMac(h2.ns, 'etl0'), 'dev', 'etl0', 'nud', 'permanent');
  h1.ns.ip('route', 'add', `${h1.switchAddress}/32`, 'dev', 'etl0');
  assert.match(h1.ns.ip('route', 'get', h1.switchAddress).stdout, /dev etl0/);
  assert.equal(await pingOnce(h1.ns, '10.99.0.2'), false, "the LAN is down while the route takes the switch's traffic");

  const warned = await waitForOutput(vport, WARNING, 10_000);
  const line = collect(vport).err().split('\n').find((l) => WARNING.test(l)) ?? warned;
  t.diagnostic(line);
  assert.match(line, /\bWARN\b/);
  assert.match(line, /frames=\d+ via=ip/);

  const during = await report(h1.ns, control);
  const loops0 = during.counters['underlayLoops'] ?? 0;
  assert.ok(loops0 > 0, `underlayLoops ${loops0}`);
  assert.ok(during.underlayLoop !== undefined, 'status reports the problem');
  assert.equal(during.underlayLoop.address, h1.switchAddress);
  assert.match(during.underlayLoop.reason, WARNING);
  assert.ok(during.underlayLoop.frames >= loops0);
  const human = await status(h1.ns, control, false);
  assert.match(human, /^ {2}problem: refusing to carry traffic to the switch \(10\.250\.1\.1\) over etl0: .* \(\d+ frames dropped, the last [\d.]+s ago\)$/m);
  assert.match(human, /underlayLoops \d+/);

  // Calm: a bounded trickle of drops, little CPU, still running, one warning.
  const cpu0 = cpuSeconds(during.pid);
  const at0 = Date.now();
  await new Promise((r) => setTimeout(r, WATCH_MS));
  const later = await report(h1.ns, control);
  const cpu = (cpuSeconds(during.pid) - cpu0) / ((Date.now() - at0) / 1000);
  const loops = (later.counters['underlayLoops'] ?? 0) - loops0;
  t.diagnostic(`in ${WATCH_MS} ms with the route: ${loops} frames dropped, CPU ${(cpu * 100).toFixed(1)} % of a core, state ${later.state}, transport ${later.transport.current}, TCP attempts failed ${later.counters['streamFailures']}`);
  assert.equal(vport.exitCode, null, 'the vport is still running');
  assert.equal(vport.signalCode, null);
  assert.ok(loops > 0, 'its own traffic is still dropped while the route is there');
  assert.ok(loops <= (MAX_LOOPS_PER_S * WATCH_MS) / 1000, `${loops} frames dropped in ${WATCH_MS} ms`);
  assert.ok(cpu < MAX_CPU, `CPU ${(cpu * 100).toFixed(1)} %`);
  assert.equal(collect(vport).err().split('\n').filter((l) => WARNING.test(l)).length, 1, 'one warning per 30 s');

  // The fix: the route goes, and the port is back on the LAN by itself.
  h1.ns.ip('route', 'del', `${h1.switchAddress}/32`, 'dev', 'etl0');
  h1.ns.ip('neigh', 'del', h1.switchAddress, 'dev', 'etl0');
  const fixedAt = Date.now();
  await waitFor('h1 pings h2 again', () => pingOnce(h1.ns, '10.99.0.2'), RECOVERY_MS, 100);
  t.diagnostic(`on the LAN again ${Date.now() - fixedAt} ms after the route was deleted`);
  const back = await report(h1.ns, control);
  assert.equal(back.state, 'joined');
  const r = await execIn(h1.ns, 'ping', ['-c', '5', '-i', '0.2', '-W', '2', '10.99.0.2'], 15_000);
  assert.match(r.out, /5 received/, r.out + r.err);
  const settled = await report(h1.ns, control);
  assert.equal(settled.counters['underlayLoops'], back.counters['underlayLoops'], 'nothing of the LAN traffic is dropped once the route is gone');
  assert.equal(vport.exitCode, null);
});
