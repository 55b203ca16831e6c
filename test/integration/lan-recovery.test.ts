// End to end, failures: a vswitch that crashes or stops and comes back on the
// same port gets its vports back; a vport that dies silently times out on the
// switch (its MACs go with it); a vport told to stop says goodbye and removes its device.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { buildStar, cleanup, collect, ensureTools, requireRoot, runTag, waitExit, waitFor, waitForOutput, type Netns, type StarHost } from '../helpers/netns.js';
import { count, linkMac, pingOnce, startPort, startSwitch, switchStatus, waitForCount } from '../helpers/lan.js';

const ip4 = (i: number): string => `10.99.0.${i}`;
/** How soon the LAN must work again after the switch is back. */
const RECOVERY_MS = 10_000;
const JOINED = /vport etl0 joined /;

after(() => cleanup());

interface Lan {
  sw: Netns;
  hosts: StarHost[];
  vswitch: ChildProcess;
  vports: ChildProcess[];
}

async function startLan(tag: string, hosts: number, switchArgs: string[] = []): Promise<Lan> {
  ensureTools({ ping: 'iputils-ping' });
  const star = buildStar(tag, hosts);
  const vswitch = await startSwitch(star.sw, switchArgs);
  const vports: ChildProcess[] = [];
  for (let i = 1; i <= hosts; i++) vports.push(await startPort(star.hosts[i - 1]!, i));
  return { sw: star.sw, hosts: star.hosts, vswitch, vports };
}

/** h1 -> h2 and h2 -> h1, each one ping: both must be answered. Both run, so both ports send DATA. */
async function pingBothWays(l: Lan): Promise<boolean> {
  const [a, b] = await Promise.all([pingOnce(l.hosts[0]!.ns, ip4(2)), pingOnce(l.hosts[1]!.ns, ip4(1))]);
  return a && b;
}

/** The MAC TABLE section of a status block. */
function macTable(status: string): string {
  return /MAC TABLE \(\d+\)\n([\s\S]*?)\n\n/.exec(status)?.[1] ?? '';
}

/** The PORTS section of a status block. */
function portsTable(status: string): string {
  return /PORTS \(\d+\)\n([\s\S]*?)\n\n/.exec(status)?.[1] ?? '';
}

let restartLan: Promise<Lan> | undefined;

for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
  test(`vswitch stopped with ${signal} and started again on the same port: both vports rejoin and ping works within 10 s`, async (t) => {
    if (!requireRoot(t)) return;
    restartLan ??= startLan(runTag(), 2);
    const l = await restartLan;
    await waitFor('ping both ways before the restart', () => pingBothWays(l), 5_000, 100);
    const joinedBefore = l.vports.map((v) => count(collect(v).out(), JOINED));

    const old = l.vswitch;
    old.kill(signal);
    const code = await waitExit(old, 5_000);
    if (signal === 'SIGTERM') {
      assert.equal(code, 0, collect(old).err());
      assert.match(collect(old).err(), /SIGTERM: telling ports goodbye ports=2/);
      // The LEAVE reached both ports: they know before any timeout.
      for (const v of l.vports) await waitForOutput(v, /switch closed the session/, 2_000);
    }
    const restartedAt = Date.now();
    l.vswitch = await startSwitch(l.sw);
    await waitFor('ping both ways after the restart', () => pingBothWays(l), RECOVERY_MS, 100);
    for (const [i, v] of l.vports.entries()) {
      await waitForCount(v, JOINED, joinedBefore[i]! + 1, Math.max(1, RECOVERY_MS - (Date.now() - restartedAt)));
    }
    const elapsed = Date.now() - restartedAt;
    t.diagnostic(`LAN back ${elapsed} ms after the new vswitch was started`);
    assert.ok(elapsed <= RECOVERY_MS, `recovery took ${elapsed} ms`);
    for (const name of ['h1', 'h2']) await waitForOutput(l.vswitch, new RegExp(`port joined port=${name} `), 1_000);
  });
}

let dropLan: Promise<Lan> | undefined;
const PORT_TIMEOUT_S = 3;

test('a vport killed with SIGKILL times out on the switch, and its port and MAC leave the tables', async (t) => {
  if (!requireRoot(t)) return;
  dropLan ??= startLan(runTag(), 3, ['--port-timeout', String(PORT_TIMEOUT_S)]);
  const l = await dropLan;
  const victim = l.hosts[1]!.ns;
  const mac = linkMac(victim, 'etl0');
  // Traffic from h2 so that the switch learns its MAC.
  assert.ok(await pingOnce(l.hosts[0]!.ns, ip4(2)), 'h1 -> h2 before the kill');
  const before = await switchStatus(l.vswitch);
  assert.match(macTable(before), new RegExp(`^${mac}\\s.*\\bh2\\b`, 'm'), `h2's MAC is learned:\n${before}`);
  assert.match(portsTable(before), /^\d+\s+h2\s/m);

  l.vports[1]!.kill('SIGKILL');
  const killedAt = Date.now();
  await waitForOutput(l.vswitch, /port left port=h2 [^\n]*reason="timeout after [\d.]+ s of silence"/, 6_000);
  const elapsed = Date.now() - killedAt;
  t.diagnostic(`timeout logged ${elapsed} ms after SIGKILL (port timeout ${PORT_TIMEOUT_S} s)`);
  assert.ok(elapsed <= 6_000);

  const now = await switchStatus(l.vswitch);
  assert.doesNotMatch(portsTable(now), /^\d+\s+h2\s/m, `port h2 gone:\n${now}`);
  assert.ok(!macTable(now).includes(mac), `MAC ${mac} gone:\n${now}`);
  assert.match(portsTable(now), /^\d+\s+h1\s/m, 'the other ports stay');
  assert.ok(await pingOnce(l.hosts[0]!.ns, ip4(3)), 'h1 -> h3 still works');
});

test('a vport stopped with SIGTERM says goodbye: the switch drops it at once and the device is gone', async (t) => {
  if (!requireRoot(t)) return;
  dropLan ??= startLan(runTag(), 3, ['--port-timeout', String(PORT_TIMEOUT_S)]);
  const l = await dropLan;
  const host = l.hosts[2]!.ns;
  assert.equal(host.ip('link', 'show', 'etl0').status, 0);
  const vport = l.vports[2]!;
  vport.kill('SIGTERM');
  const stoppedAt = Date.now();
  // Well inside one keepalive interval (1 s here): this is the LEAVE, not a timeout.
  await waitForOutput(l.vswitch, /port left port=h3 [^\n]*reason=leave\b/, 1_000);
  t.diagnostic(`leave logged ${Date.now() - stoppedAt} ms after SIGTERM`);
  assert.equal(await waitExit(vport, 5_000), 0, collect(vport).err());
  assert.match(collect(vport).err(), /SIGTERM: leaving the switch and removing etl0/);
  await waitFor('etl0 removed from h3', () => host.ip('-o', 'link', 'show').stdout.split('\n').every((line) => !/^\d+: etl0[:@]/.test(line)), 2_000);
  const now = await switchStatus(l.vswitch);
  assert.doesNotMatch(portsTable(now), /^\d+\s+h3\s/m, `port h3 gone:\n${now}`);
});
