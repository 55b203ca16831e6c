// End to end, the trust model of pair sessions (docs/SECURITY.md) held against
// real CLIs in namespaces: the switch relays what it cannot read (its own
// capture and the underlay carry none of a transfer's text), a relay that flips
// a bit or re-addresses datagrams gets nothing delivered, a revoked member
// reaches nobody within a second, and a member sending from a MAC it does not
// own has those frames dropped and counted by the receiver.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, collect, ensureTools, requireRoot, runTag, waitExit, waitFor, waitForOutput, type Netns, type StarHost } from '../helpers/netns.js';
import { bin, execIn, lanKeys, linkMac, root, startPort, startSwitch, SWITCH_PORT } from '../helpers/lan.js';
import type { PortStatusReport, SwitchStatusReport } from '../../lib/daemon/status.js';

const ip4 = (i: number): string => `10.99.0.${i}`;
const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-e2e-'));
let seq = 0;
after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const sock = (name: string): string => join(tmp, `${name}-${++seq}.sock`);

async function portReport(ns: Netns, control: string): Promise<PortStatusReport> {
  const r = await execIn(ns, process.execPath, [bin('vport'), 'status', '--control', control, '--json']);
  assert.equal(r.status, 0, r.err);
  return JSON.parse(r.out) as PortStatusReport;
}

async function switchReport(ns: Netns, control: string): Promise<SwitchStatusReport> {
  const r = await execIn(ns, process.execPath, [bin('vswitch'), 'status', '--control', control, '--json']);
  assert.equal(r.status, 0, r.err);
  return JSON.parse(r.out) as SwitchStatusReport;
}

/** Ping until the pair session between the two vports carries the traffic. */
async function warmUp(from: Netns, to: string, control: string, peerName: string): Promise<void> {
  await waitFor(
    `a pair session with ${peerName} carrying pings`,
    async () => {
      await execIn(from, 'ping', ['-c', '2', '-i', '0.2', '-W', '1', to], 5_000);
      const r = await portReport(from, control);
      const p = r.peers.find((x) => x.name === peerName);
      return p !== undefined && p.state === 'up' && p.txFrames > 0 && p.rxFrames > 0;
    },
    15_000,
    200,
  );
}

/** A text that cannot occur by chance, repeated: what the switch must never see. */
const SECRET = 'EtherLink-e2e-secret-7f3a9c1b-the-switch-must-not-read-this|';

test('the switch is blind: a TCP transfer of a known text between members leaves no trace of it in the switch capture or on the underlay', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping', tcpdump: 'tcpdump' });
  const { sw, hosts } = buildStar(`${tag}b`, 2);
  const swPcap = join(tmp, 'switch.pcapng');
  const underlay = join(tmp, 'underlay.pcap');
  const swCtl = sock('sw');
  const ctl = [sock('p1'), sock('p2')];
  const vswitch = await startSwitch(sw, ['--pcap', swPcap, '--control', swCtl]);
  await startPort(hosts[0]!, 1, ['--control', ctl[0]!]);
  await startPort(hosts[1]!, 2, ['--control', ctl[1]!]);
  await warmUp(hosts[0]!.ns, ip4(2), ctl[0]!, 'h2');

  // The underlay as the switch's host sees it: every datagram on both veths, whole.
  const dump = sw.spawn('tcpdump', ['-i', 'any', '-nn', '-s', '0', '-U', '-w', underlay, 'udp port ' + SWITCH_PORT]);
  await waitForOutput(dump, /listening on/, 10_000);

  const file = join(tmp, 'secret.txt');
  writeFileSync(file, SECRET.repeat(Math.ceil((2 * 1024 * 1024) / SECRET.length)));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const out = join(tmp, 'secret.out');
  const rx = hosts[1]!.ns.spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', ip4(2), '5001', out]);
  await waitForOutput(rx, /listening on/);
  const rxOut = collect(rx);
  const tx = hosts[0]!.ns.spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', ip4(2), '5001', file]);
  const txOut = collect(tx);
  assert.equal(await waitExit(tx, 30_000), 0, txOut.err());
  assert.equal(await waitExit(rx, 10_000), 0, rxOut.err());
  assert.match(rxOut.out(), new RegExp(`^received \\d+ bytes sha256 ${want} `, 'm'));
  await new Promise((r) => setTimeout(r, 300));
  dump.kill('SIGINT');
  await waitExit(dump, 5_000);

  // The transfer went end to end (the switch relayed it) ...
  const s = await switchReport(sw, swCtl);
  const h1 = s.ports.find((p) => p.name === 'h1')!;
  assert.ok(h1.relayed!.fromBytes > 2 * 1024 * 1024, `relayed from h1: ${JSON.stringify(h1.relayed)}`);
  const p1 = await portReport(hosts[0]!.ns, ctl[0]!);
  assert.ok(p1.pairs.txPair > 1000, `h1 sealed end to end: ${JSON.stringify(p1.pairs)}`);
  // For humans: h1's peer table has h2 up on the relayed path, and the switch names what it relayed.
  const human = await execIn(hosts[0]!.ns, process.execPath, [bin('vport'), 'status', '--control', ctl[0]!]);
  assert.match(human.out, /^ {2}ID\s+PEER\s+KEY\s+PATH\s+RTT\s+FOR\s+STATE\s+HANDSHAKE\s+TX DIRECT\/RELAY\s+RX DIRECT\/RELAY\s+AUTH FAIL\s+BAD SRC\s+MACS$/m, human.out);
  assert.match(human.out, /^ {2}\d+\s+h2\s+\S+\s+relayed\s+-\s+[\d.]+s\s+up\s/m, human.out);
  // The hosts of this star reach only the switch: the probes of h2's address go unanswered, and status says so.
  assert.match(human.out, /^ {2}h2: relayed: probes unanswered since \d\d:\d\d:\d\dZ$/m, human.out);
  const swHuman = await execIn(sw, process.execPath, [bin('vswitch'), 'status', '--control', swCtl]);
  assert.match(swHuman.out, /end to end\s+member \d+, known by 1 member\(s\) \(h2\); relayed from it \d+ \([\d.]+ MB\)/, swHuman.out);
  assert.deepEqual(h1.knownByNames, ['h2'], 'the directory: h2 holds h1\'s entry');
  // ... and neither what the switch recorded nor what crossed the underlay holds the text.
  vswitch.kill('SIGTERM'); // the capture is written out on the way down
  await waitExit(vswitch, 10_000);
  const needle = Buffer.from(SECRET.slice(0, 24));
  const captured = readFileSync(swPcap);
  const wire = readFileSync(underlay);
  assert.ok(wire.length > 2 * 1024 * 1024, `the underlay capture holds the transfer (${wire.length} bytes)`);
  assert.equal(captured.indexOf(needle), -1, 'the switch capture contains the text');
  assert.equal(wire.indexOf(needle), -1, 'the underlay contains the text');
  // The check can fail: the same capture of the plaintext file does hold it.
  assert.notEqual(readFileSync(file).indexOf(needle), -1);
  t.diagnostic(`switch capture ${captured.length} B, underlay ${wire.length} B, relayed from h1 ${h1.relayed!.fromBytes} B`);
});

interface AttackLan {
  sw: Netns;
  hosts: StarHost[];
  vswitch: ChildProcess;
  relay: ChildProcess;
  ctl: string[];
  swCtl: string;
}

/** h1 reaches the switch through a relay in its namespace that starts `attack` on SIGUSR2; h2 and h3 directly. */
async function attackLan(name: string, attack: 'flip' | 'redirect' | 'rebind', redirectTo = 0): Promise<AttackLan> {
  ensureTools({ ping: 'iputils-ping' });
  const { sw, hosts } = buildStar(`${tag}${name}`, 3);
  const swCtl = sock('sw');
  const vswitch = await startSwitch(sw, ['--control', swCtl]);
  const relay = hosts[0]!.ns.spawn(process.execPath, [
    join(root, 'dist', 'test', 'helpers', 'udp-relay.js'),
    '127.0.0.1',
    String(SWITCH_PORT),
    hosts[0]!.switchAddress,
    String(SWITCH_PORT),
    JSON.stringify({ group: 1, flushMs: 0, dupUp: 0, dupDown: 0, replayEveryUp: 0, replayEveryDown: 0, maxMs: 80_000, attack, redirectTo }),
  ]);
  await waitForOutput(relay, /relay ready\n/);
  const ctl = [sock('p1'), sock('p2'), sock('p3')];
  await startPort({ ...hosts[0]!, switchAddress: '127.0.0.1' }, 1, ['--control', ctl[0]!]);
  await startPort(hosts[1]!, 2, ['--control', ctl[1]!]);
  await startPort(hosts[2]!, 3, ['--control', ctl[2]!]);
  return { sw, hosts, vswitch, relay, ctl, swCtl };
}

test('a relay that flips a bit in end-to-end datagrams: the receiver counts authentication failures and delivers nothing', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await attackLan('f', 'flip');
  await warmUp(l.hosts[0]!.ns, ip4(2), l.ctl[0]!, 'h2');
  const before = await portReport(l.hosts[1]!.ns, l.ctl[1]!);
  const peerBefore = before.peers.find((p) => p.name === 'h1')!;
  l.relay.kill('SIGUSR2');
  await waitForOutput(l.relay, /attack on\n/);
  // Frames h1 sends on its pair session: nothing of them may reach h2's device.
  const ping = await execIn(l.hosts[0]!.ns, 'ping', ['-c', '10', '-i', '0.1', '-W', '1', ip4(2)], 15_000);
  const after = await portReport(l.hosts[1]!.ns, l.ctl[1]!);
  const peerAfter = after.peers.find((p) => p.name === 'h1')!;
  t.diagnostic(`ping: ${/\d+ received/.exec(ping.out)?.[0]}; h2 auth failures from h1 ${peerBefore.authFailed} -> ${peerAfter.authFailed}, rx ${peerBefore.rxFrames} -> ${peerAfter.rxFrames}`);
  assert.ok(peerAfter.authFailed - peerBefore.authFailed >= 10, `h2 counted the altered datagrams: ${JSON.stringify(after.pairs)}`);
  assert.equal(peerAfter.rxFrames, peerBefore.rxFrames, 'h2 delivered frames from altered datagrams');
  assert.match(ping.out, / 0 received/, 'an echo came back through altered datagrams');
});

test('a relay that re-addresses h1 -> h2 datagrams to h3: h3 delivers nothing of them', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  // Member ids follow the join order (h1 1, h2 2, h3 3); checked below before the attack.
  const l = await attackLan('r', 'redirect', 3);
  await warmUp(l.hosts[0]!.ns, ip4(2), l.ctl[0]!, 'h2');
  const h3 = await portReport(l.hosts[2]!.ns, l.ctl[2]!);
  assert.equal(h3.memberId, 3, 'h3 is member 3');
  const dump = l.hosts[2]!.ns.spawn('tcpdump', ['-i', 'etl0', '-nn', '-l', 'icmp']);
  await waitForOutput(dump, /listening on etl0/, 10_000);
  l.relay.kill('SIGUSR2');
  await waitForOutput(l.relay, /attack on\n/);
  const ping = await execIn(l.hosts[0]!.ns, 'ping', ['-c', '10', '-i', '0.1', '-W', '1', ip4(2)], 15_000);
  await new Promise((r) => setTimeout(r, 300));
  dump.kill('SIGINT');
  await waitExit(dump, 5_000);
  const after = await portReport(l.hosts[2]!.ns, l.ctl[2]!);
  const s = await switchReport(l.sw, l.swCtl);
  const relayedToH3 = s.ports.find((p) => p.name === 'h3')!.relayed!.toFrames;
  t.diagnostic(`ping: ${/\d+ received/.exec(ping.out)?.[0]}; relayed to h3 ${relayedToH3}; h3 pair counters ${JSON.stringify(after.pairs)}`);
  assert.ok(relayedToH3 >= 10, 'the switch relayed the re-addressed datagrams to h3');
  assert.ok(after.pairs.unknownIndex + after.pairs.authFailed >= 10, 'h3 counted them as not its sessions');
  assert.equal(after.pairs.rxPair, h3.pairs.rxPair, 'h3 delivered frames that were not sealed for it');
  assert.doesNotMatch(collect(dump).out(), /ICMP echo request/, "h1's echo requests appeared on h3's device");
  assert.match(ping.out, / 0 received/);
});

test('a NAT rebinding under h1 (its relay moves to a new source port): the switch hints, the port pings, end-to-end pings resume within a second', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await attackLan('n', 'rebind');
  await warmUp(l.hosts[0]!.ns, ip4(2), l.ctl[0]!, 'h2');
  const ping = l.hosts[0]!.ns.spawn('ping', ['-D', '-i', '0.05', '-W', '1', '-w', '5', ip4(2)]);
  const out = collect(ping);
  await waitFor('pings answered before the rebinding', () => / time=/.test(out.out()), 5_000, 20);
  l.relay.kill('SIGUSR2');
  const rebound = Date.now();
  await waitForOutput(l.relay, /attack on\n/);
  await waitExit(ping, 10_000);
  const replies = [...out.out().matchAll(/^\[(\d+\.\d+)\] .* time=/gm)].map((m) => Number(m[1]) * 1000);
  const firstAfter = replies.find((at) => at > rebound + 20);
  const p1 = await portReport(l.hosts[0]!.ns, l.ctl[0]!);
  const s = await switchReport(l.sw, l.swCtl);
  t.diagnostic(`first reply ${firstAfter === undefined ? 'never' : `${Math.round(firstAfter - rebound)} ms`} after the rebinding; h1 endpoint hints ${p1.counters['endpointHints']}, switch roams ${s.protocol['roams']}`);
  assert.ok(firstAfter !== undefined && firstAfter - rebound < 1_000, `end-to-end traffic resumed ${firstAfter === undefined ? 'never' : `${Math.round(firstAfter - rebound)} ms`} after the rebinding`);
  assert.ok((s.protocol['roams'] ?? 0) >= 1, 'the switch saw h1 roam');
  // With relay workers (the default on a multi-core host) h1's end-to-end datagrams from the new address go
  // through a worker, which passes them up to the main thread; h1's own next datagram to the switch may get
  // there first and move it. Then no hint is needed: traffic resumes at once, and that is what counts.
  assert.ok((p1.counters['endpointHints'] ?? 0) >= 1 || (firstAfter !== undefined && firstAfter - rebound < 200), 'h1 acted on the hint (or had already moved by itself)');
});

test('SIGHUP after removing h3 from the allow file: within a second h3 reaches nobody and its peers drop their sessions with it', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping' });
  const keys = lanKeys();
  const allow = join(tmp, 'allow');
  copyFileSync(keys.allow, allow);
  const { sw, hosts } = buildStar(`${tag}v`, 3);
  const swCtl = sock('sw');
  const vswitch = await startSwitch(sw, ['--key', keys.switchKey, '--allow', allow, '--control', swCtl]);
  const ctl = [sock('p1'), sock('p2'), sock('p3')];
  for (let i = 1; i <= 3; i++) await startPort(hosts[i - 1]!, i, ['--control', ctl[i - 1]!]);
  await warmUp(hosts[2]!.ns, ip4(1), ctl[2]!, 'h1');
  await warmUp(hosts[2]!.ns, ip4(2), ctl[2]!, 'h2');

  // h3 pings h1 every 20 ms with timestamps while it is revoked.
  const ping = hosts[2]!.ns.spawn('ping', ['-D', '-i', '0.02', '-W', '1', '-w', '6', ip4(1)]);
  const pingOut = collect(ping);
  await waitFor('pings answered before the revocation', () => / time=/.test(pingOut.out()), 5_000, 20);
  writeFileSync(
    allow,
    readFileSync(allow, 'utf8')
      .split('\n')
      .filter((line) => !/ h3$/.test(line))
      .join('\n'),
  );
  const revokedAt = Date.now();
  vswitch.kill('SIGHUP');
  // h1 and h2 drop their pair sessions with h3: it is gone from their peer tables.
  for (const i of [0, 1]) {
    await waitFor(
      `h${i + 1} forgets h3`,
      async () => !(await portReport(hosts[i]!.ns, ctl[i]!)).peers.some((p) => p.name === 'h3'),
      3_000,
      50,
    );
  }
  const forgotMs = Date.now() - revokedAt;
  await waitExit(ping, 10_000);
  // The last echo reply h3 got came less than a second after the SIGHUP.
  const replies = [...pingOut.out().matchAll(/^\[(\d+\.\d+)\] .* time=/gm)].map((m) => Number(m[1]) * 1000);
  const last = Math.max(...replies);
  t.diagnostic(`peers forgot h3 ${forgotMs} ms after SIGHUP (includes status calls); last reply to h3 ${Math.round(last - revokedAt)} ms after`);
  assert.ok(last - revokedAt < 1_000, `h3 was answered ${Math.round(last - revokedAt)} ms after the revocation`);
  const peerH1 = (await portReport(hosts[0]!.ns, ctl[0]!)).pairs;
  assert.ok(peerH1.peersGone >= 1, `h1 heard that h3 is gone: ${JSON.stringify(peerH1)}`);
  // And h3 cannot talk to h2 either, relayed or otherwise.
  const h2 = await execIn(hosts[2]!.ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '1', ip4(2)], 10_000);
  assert.match(h2.out, / 0 received/, h2.out);
});

test('a member sending end to end from a MAC it does not own: the receiver drops and counts every such frame', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping', tcpdump: 'tcpdump' });
  const keys = lanKeys();
  const { sw, hosts } = buildStar(`${tag}s`, 2);
  await startSwitch(sw);
  const ctl2 = sock('p2');
  await startPort(hosts[1]!, 2, ['--control', ctl2]);
  const h2mac = linkMac(hosts[1]!.ns, 'etl0');
  // h1 is a hostile member: the library with its own-source check turned off.
  const hostile = hosts[0]!.ns.spawn(process.execPath, [
    join(root, 'dist', 'test', 'helpers', 'forging-port.js'),
    hosts[0]!.switchAddress,
    String(SWITCH_PORT),
    keys.portKey(1),
    keys.switchPub,
    ip4(1) + '/24',
    ip4(2),
    h2mac,
  ]);
  const hostileOut = collect(hostile);
  await waitForOutput(hostile, /forging port ready\n/, 20_000);
  const dump = hosts[1]!.ns.spawn('tcpdump', ['-i', 'etl0', '-nn', '-l', '-e', 'ether proto 0x88b5']);
  await waitForOutput(dump, /listening on etl0/, 10_000);
  hostile.kill('SIGUSR2');
  const line = await waitForOutput(hostile, /forged (\d+) frames end to end\n/, 20_000);
  const forged = Number(/forged (\d+)/.exec(line)![1]);
  await new Promise((r) => setTimeout(r, 300));
  dump.kill('SIGINT');
  await waitExit(dump, 5_000);
  const r = await portReport(hosts[1]!.ns, ctl2);
  const peer = r.peers.find((p) => p.name === 'h1')!;
  assert.ok(peer, `h2 knows h1: ${JSON.stringify(r.peers)}`);
  t.diagnostic(`forged ${forged}; h2 counted srcNotOwned ${r.pairs.srcNotOwned} (from h1: ${peer.srcNotOwned})`);
  assert.ok(forged >= 50, hostileOut.err());
  assert.ok(peer.srcNotOwned >= forged, `h2 dropped and counted the forged frames: ${JSON.stringify(r.pairs)}`);
  assert.doesNotMatch(collect(dump).out(), /0x88b5/, 'a forged frame reached h2');
  hostile.kill('SIGTERM');
  await waitExit(hostile, 5_000);
});
