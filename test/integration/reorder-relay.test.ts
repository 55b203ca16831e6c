// A hostile path, for real: host 1's vport reaches the switch through a UDP
// relay (in host 1's namespace) that reorders datagrams in shuffled groups,
// duplicates some and replays old ones. Pings and a TCP transfer must work
// intact, and the switch must drop and count every injected copy as a replay.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash, randomBytes } from 'node:crypto';
import { buildStar, cleanup, collect, ensureTools, requireRoot, runTag, waitExit, waitForOutput } from '../helpers/netns.js';
import { bin, execIn, protocolCounters, root, startPort, startSwitch, switchStatus, SWITCH_PORT } from '../helpers/lan.js';

const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-relay-'));
after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

/** Injected copies the switch may never see (a loss on loopback/veth under load; one of 311 was seen lost). */
const slack = (injected: number): number => Math.max(5, Math.ceil(injected * 0.02));
const TRANSFER_BYTES = 5 * 1024 * 1024;

interface LaneStats {
  forwarded: number;
  duplicated: number;
  replayed: number;
}

test('reordered, duplicated and replayed datagrams: traffic intact, every injected copy counted as replayed', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping' });
  const { sw, hosts } = buildStar(tag, 2);
  const h1 = hosts[0]!;
  const h2 = hosts[1]!;
  const vswitch = await startSwitch(sw);
  // The relay listens where h1's vport thinks the switch is (127.0.0.1:9999 in h1's namespace).
  const relay = h1.ns.spawn(process.execPath, [
    join(root, 'dist', 'test', 'helpers', 'udp-relay.js'),
    '127.0.0.1',
    String(SWITCH_PORT),
    h1.switchAddress,
    String(SWITCH_PORT),
    JSON.stringify({ group: 8, flushMs: 2, dupUp: 0.05, dupDown: 0.05, replayEveryUp: 40, replayEveryDown: 40, maxMs: 80_000 }),
  ]);
  await waitForOutput(relay, /relay ready\n/);
  await startPort({ ...h1, switchAddress: '127.0.0.1' }, 1);
  const h2Control = join(tmp, 'h2.sock');
  await startPort(h2, 2, ['--control', h2Control]);
  await waitForOutput(vswitch, /port joined port=h1 /);
  await waitForOutput(vswitch, /port joined port=h2 /);
  const before = protocolCounters(await switchStatus(vswitch));
  // Copies of end-to-end datagrams are relayed unopened: h2's pair session is what drops them.
  const pairReplayed = async (): Promise<number> => {
    const r = await execIn(h2.ns, process.execPath, [bin('vport'), 'status', '--control', h2Control, '--json']);
    return (JSON.parse(r.out) as { pairs: { replayed: number } }).pairs.replayed;
  };
  const pairBefore = await pairReplayed();

  // Pings: all answered, none duplicated (the switch drops the relay's copies).
  const ping = await execIn(h1.ns, 'ping', ['-c', '30', '-i', '0.05', '-W', '2', '-s', '1200', '10.99.0.2'], 20_000);
  assert.match(ping.out, /30 received/, ping.out + ping.err);
  assert.doesNotMatch(ping.out, /DUP!/, 'no duplicate reached the LAN');

  // A TCP transfer both ways through the relay's reordering: sent from h1, received on h2.
  const file = join(tmp, 'payload.bin');
  writeFileSync(file, randomBytes(TRANSFER_BYTES));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const out = join(tmp, 'received.bin');
  const rx = h2.ns.spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', '10.99.0.2', '5001', out]);
  await waitForOutput(rx, /listening on/);
  const tx = h1.ns.spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', '10.99.0.2', '5001', file]);
  const txOut = collect(tx);
  const rxOut = collect(rx);
  assert.equal(await waitExit(tx, 40_000), 0, `sender failed: ${txOut.err()}`);
  assert.equal(await waitExit(rx, 10_000), 0, `receiver failed: ${rxOut.err()}`);
  assert.match(rxOut.out(), new RegExp(`^received ${TRANSFER_BYTES} bytes sha256 ${want} `, 'm'));
  assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), want);

  // Stop injecting, read what was injected, let the last held groups drain, then ask the switch.
  relay.kill('SIGUSR1');
  const line = await waitForOutput(relay, /relay stats (\{.*\})\n/);
  const stats = JSON.parse(/relay stats (\{.*\})/.exec(line)![1]!) as { up: LaneStats; down: LaneStats };
  await new Promise((r) => setTimeout(r, 500));
  const after = protocolCounters(await switchStatus(vswitch));
  const injected = stats.up.duplicated + stats.up.replayed;
  const atSwitch = after['replayed']! - before['replayed']!;
  const atH2 = (await pairReplayed()) - pairBefore;
  const counted = atSwitch + atH2;
  t.diagnostic(`relay ${JSON.stringify(stats)}; replayed +${atSwitch} at the switch, +${atH2} at h2 end to end (injected toward the switch ${injected})`);
  assert.ok(stats.up.duplicated >= 20 && stats.up.replayed >= 20, `the relay injected enough: ${JSON.stringify(stats.up)}`);
  assert.ok(stats.down.duplicated >= 20, `and toward the port: ${JSON.stringify(stats.down)}`);
  assert.ok(counted >= injected - slack(injected), `switch and h2 counted ${counted} replays of ${injected} injected`);
  assert.ok(counted <= injected, `switch and h2 counted ${counted} replays but only ${injected} were injected`);
  assert.equal(after['auth failed'], before['auth failed'], 'reordering and copies never fail authentication');
  assert.equal(after['handshakes'], before['handshakes'], 'no rejoin (rekey is 120 s away)');

  // Still working after the abuse.
  const again = await execIn(h1.ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', '10.99.0.2'], 10_000);
  assert.match(again.out, /3 received/, again.out + again.err);
});
