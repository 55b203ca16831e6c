// Stream transports (issue 12): where UDP is blocked a port reaches its switch
// over TCP (or a WebSocket), by itself, and goes back to UDP once it works
// again. Real nftables routers (test/helpers/nat.ts) drop a host's UDP.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { cleanup, collect, requireRoot, runTag, waitExit, waitFor } from '../helpers/netns.js';
import { count, waitForCount } from '../helpers/lan.js';
import {
  buildNatLab,
  JOINED,
  ping,
  pingReplies,
  portReport,
  restartNatSwitch,
  startNatPort,
  startNatSwitch,
  startStream,
  switchReport,
  withDiagnosis,
  type NatDaemon,
  type NatHost,
  type NatLab,
} from '../helpers/nat.js';

const tag = runTag();
after(() => cleanup());

/** Two masquerade routers with a host each; the lab and the daemons the test starts end with the test. */
function twoRouters(t: TestContext, suffix: string): { lab: NatLab; h1: NatHost; h2: NatHost; daemons: NatDaemon[] } {
  const lab = buildNatLab(`${tag}${suffix}`, [{ mode: 'masquerade' }, { mode: 'masquerade' }]);
  t.after(() => lab.destroy());
  const daemons: NatDaemon[] = [];
  t.after(async () => {
    for (const d of daemons) await d.stop();
  });
  const [h1, h2] = lab.hosts as [NatHost, NatHost];
  return { lab, h1, h2, daemons };
}

/** The transport a port reports, and the switch's view of it. */
async function transports(sw: NatDaemon, port: NatDaemon, name: string): Promise<{ port: string; reason: string; atSwitch: string | undefined }> {
  const [p, s] = await Promise.all([portReport(port), switchReport(sw)]);
  return { port: p.transport.current, reason: p.transport.reason, atSwitch: s.ports.find((x) => x.name === name)?.transport };
}

/** Wait until `port` (and the switch, for it) say `kind`; resolves with how long it took. */
async function waitForTransport(sw: NatDaemon, port: NatDaemon, name: string, kind: string, timeoutMs: number): Promise<number> {
  const started = Date.now();
  await waitFor(`${name} on ${kind}`, async () => {
    const t = await transports(sw, port, name);
    return t.port === kind && t.atSwitch === kind;
  }, timeoutMs, 250);
  return Date.now() - started;
}

test('UDP blocked: the port is on the LAN over TCP within 10 s, moves 20 MB intact, returns to UDP within 30 s of the unblock, and falls back again mid-ping', { timeout: 150_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const { lab, h1, h2, daemons } = twoRouters(t, 'u');
  await withDiagnosis(lab, () => daemons, async () => {
    const sw = await startNatSwitch(lab);
    daemons.push(sw);
    daemons.push(await startNatPort(lab, h2));
    lab.blockUdp(h1);
    // The check that the block is real: h1's UDP to the switch is dropped, its ping still passes.
    const started = Date.now();
    const p1 = await startNatPort(lab, h1);
    daemons.push(p1);
    const joinedMs = Date.now() - started;
    const first = await transports(sw, p1, 'h1');
    t.diagnostic(`joined over ${first.port} ${joinedMs} ms after start (${first.reason}); ${lab.udpBlockedDrops(h1)} UDP packets dropped by the block`);
    assert.ok(joinedMs <= 10_000, `joined after ${joinedMs} ms`);
    assert.equal(first.port, 'tcp', first.reason);
    assert.equal(first.atSwitch, 'tcp', 'the switch sees h1 on TCP');
    assert.match(first.reason, /^tcp: no UDP answer/);
    assert.ok(lab.udpBlockedDrops(h1) > 0, 'the router dropped h1 UDP');
    assert.ok(await ping(h1, h2.overlay, 2), 'h1 pings h2 over the LAN');

    const stream = await startStream(h1, h2, { bytes: 20 * 1024 * 1024, timeoutMs: 60_000 });
    const { sent, received } = await stream.done();
    t.diagnostic(`20 MB over TCP in ${received.seconds.toFixed(2)} s (${((sent.bytes * 8) / received.seconds / 1e6).toFixed(0)} Mbit/s), longest gap ${received.maxGapMs} ms`);
    assert.equal(received.bytes, sent.bytes);
    assert.equal(received.sha256, sent.sha256, 'SHA-256 equal at both ends');
    assert.equal((await transports(sw, p1, 'h1')).port, 'tcp', 'still on TCP after the transfer');

    lab.unblockUdp(h1);
    const backMs = await waitForTransport(sw, p1, 'h1', 'udp', 30_000);
    const back = await transports(sw, p1, 'h1');
    t.diagnostic(`back on UDP ${backMs} ms after the unblock (${back.reason})`);
    assert.match(back.reason, /^udp: answered every probe/);
    // Its traffic to the switch is UDP again: the stream idles and closes.
    await waitFor('the stream to close', async () => (await portReport(p1)).transport.stream === undefined, 15_000, 250);
    assert.ok(await ping(h1, h2.overlay, 2), 'h1 pings h2 on UDP');

    // Mid-session: a ping runs while UDP is blocked again; the port moves to TCP and the pings come back.
    const pinger = h1.ns.spawn('ping', ['-D', '-i', '0.2', '-c', '150', '-W', '1', h2.overlay]);
    await new Promise((r) => setTimeout(r, 2_000));
    const blockedAt = Date.now();
    lab.blockUdp(h1);
    const fallbackMs = await waitForTransport(sw, p1, 'h1', 'tcp', 20_000);
    const reason = (await transports(sw, p1, 'h1')).reason;
    await waitFor('pings answered over TCP', () => pingReplies(collect(pinger).out()).some((r) => r.at > blockedAt + fallbackMs), 10_000, 100);
    pinger.kill('SIGINT');
    await waitExit(pinger, 5_000);
    const replies = pingReplies(collect(pinger).out());
    const after = replies.filter((r) => r.at > blockedAt);
    let gap = 0;
    let last = blockedAt;
    for (const r of after) {
      gap = Math.max(gap, r.at - last);
      last = r.at;
    }
    t.diagnostic(`blocked mid-ping: on TCP after ${fallbackMs} ms (${reason}); ${after.length} replies after the block, longest gap ${Math.round(gap)} ms`);
    assert.match(reason, /^tcp: \d+ pings unanswered over UDP/);
    assert.ok(fallbackMs <= 10_000, `fell back after ${fallbackMs} ms`);
    assert.ok(after.length > 0, 'pings answered after the fallback');
    const logged = count(p1.output(), /transport changed/g);
    assert.ok(logged >= 3, `a log line per change of transport (saw ${logged})`);
  });
});

test('a port on TCP and a port on UDP talk through the switch; both come back after the switch restarts', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const { lab, h1, h2, daemons } = twoRouters(t, 'r');
  await withDiagnosis(lab, () => daemons, async () => {
    const sw = await startNatSwitch(lab);
    daemons.push(sw);
    const p1 = await startNatPort(lab, h1, ['--transport', 'tcp']);
    const p2 = await startNatPort(lab, h2);
    daemons.push(p1, p2);
    const t1 = await transports(sw, p1, 'h1');
    const t2 = await transports(sw, p2, 'h2');
    assert.deepEqual([t1.port, t1.atSwitch, t2.port, t2.atSwitch], ['tcp', 'tcp', 'udp', 'udp']);
    assert.ok(await ping(h1, h2.overlay, 2), 'h1 (TCP) pings h2 (UDP)');
    assert.ok(await ping(h2, h1.overlay, 2), 'h2 (UDP) pings h1 (TCP)');
    // Direct paths still run over UDP between the ports, whatever their way to the switch.
    await waitFor('h1 direct to h2', async () => {
      await ping(h1, h2.overlay, 1);
      return (await portReport(p1)).peers.find((p) => p.name === 'h2')?.path === 'direct';
    }, 15_000, 300);

    const joined = [count(p1.output(), JOINED), count(p2.output(), JOINED)];
    await sw.stop();
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 1_000));
    await restartNatSwitch(lab, sw);
    await waitForCount(p1.child, JOINED, joined[0]! + 1, 20_000);
    await waitForCount(p2.child, JOINED, joined[1]! + 1, 20_000);
    const rejoinMs = Date.now() - killedAt;
    const after1 = await transports(sw, p1, 'h1');
    t.diagnostic(`both rejoined ${rejoinMs} ms after the kill; h1 on ${after1.port} (${after1.reason})`);
    assert.equal(after1.port, 'tcp');
    assert.equal(after1.atSwitch, 'tcp');
    await waitFor('h1 reaching h2 again', () => ping(h1, h2.overlay, 1), 10_000, 200);
    const s = await switchReport(sw);
    assert.equal(s.streams['open'], 1, `one stream open at the switch: ${JSON.stringify(s.streams)}`);
  });
});
