// End to end, one vswitch serving isolated networks (issue 13): two networks
// with the same addresses and a shared MAC stay apart (MAC tables, floods,
// end-to-end sessions), a hostile member can't reach another network's
// members through the relay, a key in two networks stops the switch, and
// SIGHUP removing a network disconnects only its members.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildStar, cleanup, collect, ensureTools, isRoot, Netns, requireRoot, runTag, spawnTracked, waitExit, waitFor, waitForOutput, type StarHost } from '../helpers/netns.js';
import type { SwitchPortReport, SwitchStatusReport } from '../../lib/daemon/status.js';
import { bin, controlArgs, count, execIn, lanKeys, pingOnce, root, START_TIMEOUT_MS, startPort, startSwitch, SWITCH_PORT } from '../helpers/lan.js';

const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-nets-'));
/** Both networks use the same overlay addresses: host 1 of a network is .1, host 2 is .2. */
const overlay = (n: 1 | 2): string => `10.88.0.${n}`;
/** The TAP MAC of h1 (red) and of h3 (blue). */
const SHARED_MAC = '02:00:00:88:00:01';
const JOINED = /vport etl0 joined \S+\n/;
/** The hostile red member of test 2 runs on h5 with h5's key. */
const HOSTILE = 5;

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

/** Escape a string for a RegExp. */
const re = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** An allow file of hosts `members` (h-numbers of lanKeys), each named hN. */
function allowFile(name: string, members: readonly number[]): string {
  const k = lanKeys();
  const path = join(tmp, name);
  writeFileSync(path, members.map((i) => `${k.portPub(i)} h${i}`).join('\n') + '\n');
  return path;
}

/** The value after `flag` in a child's command line (its --control path). */
function argOf(child: ChildProcess, flag: string): string {
  const i = child.spawnargs.indexOf(flag);
  assert.ok(i >= 0 && i + 1 < child.spawnargs.length, `no ${flag} in ${child.spawnargs.join(' ')}`);
  return child.spawnargs[i + 1]!;
}

interface Member {
  i: number;
  host: StarHost;
  vport: ChildProcess;
  control: string;
}

/** A vport on `host` with host i's key, overlay address `ip`, and (optionally) a fixed TAP MAC; resolved once joined. */
async function startMember(host: StarHost, i: number, ip: string, mac?: string): Promise<Member> {
  const vport = await startPort(host, i, mac !== undefined ? ['--mac', mac] : [], { ip: `${ip}/24` });
  return { i, host, vport, control: argOf(vport, '--control') };
}

// What `vswitch status --json` prints: the package's own report types.
type SwitchJson = SwitchStatusReport;
type PortJson = SwitchPortReport;
interface PeerJson {
  id: number;
  name: string;
  publicKey: string;
  state: string;
}
interface VportJson {
  network: string;
  vlan: string;
  memberId: number;
  peers: PeerJson[];
  pairs: Record<string, number>;
}

/** `vswitch status --json [more]` against a running switch's control socket. */
async function vswitchStatusCli(control: string, more: readonly string[] = []): Promise<{ status: number; out: string; err: string }> {
  const child = spawnTracked(process.execPath, [bin('vswitch'), 'status', '--control', control, ...more]);
  const o = collect(child);
  const status = await waitExit(child, 10_000);
  return { status, out: o.out(), err: o.err() };
}

async function switchJson(vswitch: ChildProcess, more: readonly string[] = []): Promise<SwitchJson> {
  const r = await vswitchStatusCli(argOf(vswitch, '--control'), ['--json', ...more]);
  assert.equal(r.status, 0, `vswitch status failed: ${r.err}`);
  return JSON.parse(r.out) as SwitchJson;
}

async function vportJson(m: Member): Promise<VportJson> {
  const child = spawnTracked(process.execPath, [bin('vport'), 'status', '--control', m.control, '--json']);
  const o = collect(child);
  assert.equal(await waitExit(child, 10_000), 0, `vport status of h${m.i} failed: ${o.err()}`);
  return JSON.parse(o.out()) as VportJson;
}

/** tcpdump -w of everything on etl0 in `ns`, resolved once it captures. */
async function startPcap(ns: Netns, file: string): Promise<ChildProcess> {
  const child = ns.spawn('tcpdump', ['-i', 'etl0', '-nn', '-U', '-s', '0', '-B', '4096', '-w', file]);
  await waitForOutput(child, /listening on etl0/, 10_000);
  return child;
}

/** Stop a capture and return the bytes it wrote. */
async function stopPcap(child: ChildProcess, file: string): Promise<Buffer> {
  child.kill('SIGINT');
  await waitExit(child, 5_000);
  return readFileSync(file);
}

/** The ping summary: transmitted and received. */
function received(out: string): number {
  const m = /\d+ packets transmitted, (\d+) received/.exec(out);
  if (!m) throw new Error(`no ping summary in:\n${out}`);
  return Number(m[1]);
}

/** A ping of `n` packets answered in full. */
async function assertPings(ns: Netns, address: string, what: string, n = 3): Promise<void> {
  const r = await execIn(ns, 'ping', ['-c', String(n), '-i', '0.2', '-W', '2', address], 15_000);
  assert.equal(received(r.out), n, `${what}:\n${r.out}${r.err}`);
}

interface TwoNets {
  sw: Netns;
  hosts: StarHost[];
  vswitch: ChildProcess;
  /** h1, h2 in red; h3, h4 in blue (index 0..3). */
  members: Member[];
  redAllow: string;
  blueAllow: string;
}

let twoNets: Promise<TwoNets> | undefined;
/**
 * The LAN of tests 1 and 2, networks from --network flags: red = h1, h2 (and
 * h5's key, the hostile member of test 2), blue = h3, h4; h1 and h3 share a
 * TAP MAC, h1/h3 and h2/h4 their overlay addresses.
 */
function twoNetworks(): Promise<TwoNets> {
  twoNets ??= (async () => {
    ensureTools({ ping: 'iputils-ping', tcpdump: 'tcpdump', tc: 'iproute2' });
    const k = lanKeys();
    const redAllow = allowFile('red.allow', [1, 2, HOSTILE]);
    const blueAllow = allowFile('blue.allow', [3, 4]);
    const { sw, hosts } = buildStar(tag, 5);
    const vswitch = await startSwitch(sw, ['--key', k.switchKey, '--network', `red=${redAllow}`, '--network', `blue=${blueAllow}`]);
    const members = await Promise.all([
      startMember(hosts[0]!, 1, overlay(1), SHARED_MAC),
      startMember(hosts[1]!, 2, overlay(2)),
      startMember(hosts[2]!, 3, overlay(1), SHARED_MAC),
      startMember(hosts[3]!, 4, overlay(2)),
    ]);
    for (let i = 1; i <= 4; i++) await waitForOutput(vswitch, new RegExp(`port joined port=h${i} `));
    return { sw, hosts, vswitch, members, redAllow, blueAllow };
  })();
  twoNets.catch(() => {});
  return twoNets;
}

/** A 16-byte ping pattern (ping -p) and the bytes it puts in every packet. */
function marker(): { hex: string; bytes: Buffer } {
  const bytes = randomBytes(16);
  return { hex: bytes.toString('hex'), bytes };
}

test('two networks with the same addresses and a shared MAC: each pings inside itself, learns the MAC on its own port, and floods only to its own members', async (t) => {
  if (!requireRoot(t)) return;
  const l = await twoNetworks();
  const [h1, h2, h3, h4] = l.members as [Member, Member, Member, Member];

  await assertPings(h1.host.ns, overlay(2), 'red: h1 -> h2');
  await assertPings(h2.host.ns, overlay(1), 'red: h2 -> h1');
  await assertPings(h3.host.ns, overlay(2), 'blue: h3 -> h4');
  await assertPings(h4.host.ns, overlay(1), 'blue: h4 -> h3');

  // The switch: two networks, each port in its own, the shared MAC learned once per network on the right port.
  const s = await switchJson(l.vswitch);
  assert.deepEqual(
    s.networks.map((n) => [n.name, n.allowFile, n.admitted, n.members]),
    [
      ['red', l.redAllow, 3, 2],
      ['blue', l.blueAllow, 2, 2],
    ],
    JSON.stringify(s.networks),
  );
  const port = (name: string): PortJson => {
    const p = s.ports.find((x) => x.name === name);
    assert.ok(p, `port ${name} in ${JSON.stringify(s.ports.map((x) => x.name))}`);
    return p;
  };
  for (const [name, network] of [['h1', 'red'], ['h2', 'red'], ['h3', 'blue'], ['h4', 'blue']] as const) {
    assert.equal(port(name).network, network, `${name}'s network`);
    assert.equal(port(name).vlan, 'transparent', `${name}'s VLAN mode`);
  }
  for (const [network, owner] of [['red', 'h1'], ['blue', 'h3']] as const) {
    const rows = s.macTable.filter((m) => m.mac === SHARED_MAC && m.network === network);
    assert.equal(rows.length, 1, `${SHARED_MAC} in ${network}'s MAC table once: ${JSON.stringify(s.macTable)}`);
    assert.equal(rows[0]!.portName, owner, `${SHARED_MAC} in ${network} is behind ${owner}`);
    assert.equal(rows[0]!.port, port(owner).id, `${SHARED_MAC} in ${network} is on ${owner}'s port id`);
  }
  assert.equal(s.macTable.filter((m) => m.mac === SHARED_MAC).length, 2, 'the shared MAC twice in all, once per network');

  // `status --network red` shows red alone; an unknown network names the ones that exist.
  const red = await switchJson(l.vswitch, ['--network', 'red']);
  assert.deepEqual(red.networks.map((n) => n.name), ['red']);
  assert.deepEqual(red.ports.map((p) => p.name).sort(), ['h1', 'h2']);
  assert.ok(red.macTable.length > 0 && red.macTable.every((m) => m.network === 'red'), JSON.stringify(red.macTable));
  const unknown = await vswitchStatusCli(argOf(l.vswitch, '--control'), ['--network', 'green', '--json']);
  assert.notEqual(unknown.status, 0, 'status --network green exits non-zero');
  assert.match(unknown.err, /green/);
  assert.match(unknown.err, /\bred\b[\s\S]*\bblue\b|\bblue\b[\s\S]*\bred\b/, `the error names the networks that exist: ${unknown.err}`);

  // Each port hears its network from the switch.
  for (const [m, network] of [[h1, 'red'], [h2, 'red'], [h3, 'blue'], [h4, 'blue']] as const) {
    let st: VportJson | undefined;
    await waitFor(`h${m.i} told its network`, async () => (st = await vportJson(m)).network !== '', 5_000, 100);
    assert.equal(st!.network, network, `h${m.i}'s vport status network`);
    assert.equal(st!.vlan, 'transparent', `h${m.i}'s vport status vlan`);
  }

  // Floods: a broadcast and an unknown unicast from h1 (red), and a broadcast each way in blue as the captures' controls.
  const bcastRed = marker();
  const unknownRed = marker();
  const bcastFromH4 = marker();
  const bcastFromH3 = marker();
  const files = [2, 3, 4].map((i) => join(tmp, `flood-h${i}.pcap`));
  const caps = await Promise.all([h2, h3, h4].map((m, k) => startPcap(m.host.ns, files[k]!)));
  await execIn(h1.host.ns, 'ping', ['-b', '-c', '3', '-i', '0.2', '-W', '1', '-p', bcastRed.hex, '10.88.0.255'], 10_000);
  h1.host.ns.ip('neigh', 'replace', '10.88.0.77', 'lladdr', '02:00:00:00:77:77', 'dev', 'etl0');
  await execIn(h1.host.ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '1', '-p', unknownRed.hex, '10.88.0.77'], 10_000);
  await execIn(h4.host.ns, 'ping', ['-b', '-c', '3', '-i', '0.2', '-W', '1', '-p', bcastFromH4.hex, '10.88.0.255'], 10_000);
  await execIn(h3.host.ns, 'ping', ['-b', '-c', '3', '-i', '0.2', '-W', '1', '-p', bcastFromH3.hex, '10.88.0.255'], 10_000);
  const has = (pcap: Buffer, m: { bytes: Buffer }): boolean => pcap.indexOf(m.bytes) >= 0;
  // Each capture has its last expected frame (tcpdump -U writes each as it comes): whatever the
  // switch sent that host before it, red's floods included, has been written too.
  const last = [unknownRed, bcastFromH4, bcastFromH3];
  await Promise.all(files.map((f, k) => waitFor(`${last[k]!.hex} in ${f}`, () => has(readFileSync(f), last[k]!), 5_000, 50).catch(() => {})));
  const [p2, p3, p4] = await Promise.all(caps.map((c, k) => stopPcap(c, files[k]!)));

  // Positive controls: each capture sees what its own network flooded to it.
  assert.ok(has(p2!, bcastRed), "h2 (red) sees red's broadcast");
  assert.ok(has(p2!, unknownRed), "h2 (red) sees red's unknown unicast");
  assert.ok(has(p3!, bcastFromH4), "h3 (blue) sees h4's broadcast");
  assert.ok(has(p4!, bcastFromH3), "h4 (blue) sees h3's broadcast");
  // Isolation: nothing of the other network's floods.
  for (const [name, pcap] of [['h3', p3!], ['h4', p4!]] as const) {
    assert.ok(!has(pcap, bcastRed), `${name} (blue) saw red's broadcast`);
    assert.ok(!has(pcap, unknownRed), `${name} (blue) saw red's unknown unicast`);
  }
  assert.ok(!has(p2!, bcastFromH4) && !has(p2!, bcastFromH3), "h2 (red) saw blue's broadcasts");
  h1.host.ns.ip('neigh', 'del', '10.88.0.77', 'dev', 'etl0');
});

/** The hostile member: a PortClient (the library) that joins red with a real key and, on command, sends PAIR_SEND and PAIR_DATA to any member id. */
const HOSTILE_SCRIPT = `
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
const [libUrl, wireUrl, host, port, keyFile, switchPub] = process.argv.slice(2);
const { PortClient, readKeyFile } = await import(libUrl);
const { encodePairSend } = await import(wireUrl);
setTimeout(() => process.exit(3), 90_000).unref();
const client = await PortClient.start({
  host, port: Number(port), tap: { name: 'etlx0' },
  privateKey: readKeyFile(keyFile).privateKey,
  switchPublicKey: switchPub,
});
await new Promise((resolve, reject) => {
  client.once('joined', resolve);
  setTimeout(() => reject(new Error('hostile: not joined within 10 s')), 10_000).unref();
});
const deadline = Date.now() + 5_000;
while (client.status().network === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
console.log('hostile joined network=' + client.status().network + ' memberId=' + client.status().memberId);
// Reached through casts, as a hostile member would patch its own copy of the code.
const session = client.session;
const switchAddr = client.switchAddr;
process.on('SIGTERM', () => { client.close(); setImmediate(() => process.exit(0)); });
for await (const line of createInterface({ input: process.stdin })) {
  const [op, dstText, nText] = line.trim().split(' ');
  const dst = Number(dstText), n = Number(nText);
  let sent = 0;
  for (let i = 0; i < n; i++) {
    if (op === 'pair-send') {
      // A handshake initiation's size and type, nonsense inside.
      const msg = randomBytes(148);
      msg[0] = 0x02; msg[1] = 0x21; msg[2] = 0; msg[3] = 0;
      if (session.sendLong(encodePairSend(dst, msg))) sent++;
    } else if (op === 'pair-data') {
      // PAIR_DATA: version, type 0x27, destination member id, a receiver index nobody has, counter, 64 bytes "sealed".
      const d = randomBytes(16 + 64 + 16);
      d[0] = 0x02; d[1] = 0x27; d.writeUInt16BE(dst, 2);
      d.writeBigUInt64LE(BigInt(i), 8);
      if (client.socket.sendTo(d, switchAddr) > 0) sent++;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  console.log(op + ' ' + dst + ' sent ' + sent);
}
`;

/** Counters of a port's end-to-end receive side that only a stranger's datagrams move. */
const RX_SUSPECT = ['rxPair', 'unknownIndex', 'authFailed', 'replayed', 'malformed', 'handshakeRejected', 'handshakeFailures', 'srcNotOwned', 'dstNotHere'] as const;
function rxSuspect(v: VportJson): Record<string, number | undefined> {
  return Object.fromEntries(RX_SUSPECT.map((k) => [k, v.pairs[k]]));
}

test("a red member can't reach blue end to end: no blue peers, PAIR_SEND and PAIR_DATA to blue ids refused and counted, the same to a red id relayed", async (t) => {
  if (!requireRoot(t)) return;
  const l = await twoNetworks();
  const [h1, h2, h3, h4] = l.members as [Member, Member, Member, Member];
  const k = lanKeys();

  // Pings inside each network bring their pair sessions up.
  const sessionUp = async (a: Member, b: Member): Promise<void> =>
    waitFor(
      `h${a.i} -> h${b.i} pair session up`,
      async () => {
        await pingOnce(a.host.ns, b.i % 2 === 0 ? overlay(2) : overlay(1));
        return (await vportJson(a)).peers.some((p) => p.publicKey === k.portPub(b.i) && p.state === 'up');
      },
      15_000,
      100,
    );
  await sessionUp(h1, h2);
  await sessionUp(h3, h4);
  const keysOf = (v: VportJson): string[] => v.peers.map((p) => p.publicKey);
  const v1 = await vportJson(h1);
  const v3 = await vportJson(h3);
  assert.ok(keysOf(v1).includes(k.portPub(2)), 'h1 knows h2 (the check below can fail)');
  for (const b of [3, 4]) {
    assert.ok(!keysOf(v1).includes(k.portPub(b)), `h1 (red) has a peer with blue h${b}'s key: ${JSON.stringify(v1.peers)}`);
    assert.ok(!v1.peers.some((p) => p.name === `h${b}`), `h1 (red) has a peer named h${b}`);
  }
  for (const r of [1, 2]) assert.ok(!keysOf(v3).includes(k.portPub(r)), `h3 (blue) has a peer with red h${r}'s key: ${JSON.stringify(v3.peers)}`);

  // The hostile member joins red.
  const script = join(tmp, 'hostile.mjs');
  writeFileSync(script, HOSTILE_SCRIPT);
  const hostHost = l.hosts[HOSTILE - 1]!;
  const hostile = hostHost.ns.spawn(
    process.execPath,
    [script, pathToFileURL(join(root, 'dist', 'lib', 'index.js')).href, pathToFileURL(join(root, 'dist', 'lib', 'protocol', 'wire.js')).href, hostHost.switchAddress, String(SWITCH_PORT), k.portKey(HOSTILE), k.switchPub],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  await waitForOutput(hostile, /hostile joined network=red memberId=\d+/, 15_000);
  const command = async (op: 'pair-send' | 'pair-data', dst: number, n: number): Promise<number> => {
    const done = new RegExp(`^${op} ${dst} sent (\\d+)$`, 'm');
    const before = count(collect(hostile).out(), done);
    hostile.stdin!.write(`${op} ${dst} ${n}\n`);
    await waitFor(`hostile: ${op} to ${dst}`, () => count(collect(hostile).out(), done) > before, 10_000, 20);
    const all = [...collect(hostile).out().matchAll(new RegExp(done.source, 'gm'))];
    return Number(all[all.length - 1]![1]);
  };

  const s0 = await switchJson(l.vswitch);
  const idOf = (s: SwitchJson, name: string): number => {
    const p = s.ports.find((x) => x.name === name);
    assert.ok(p?.memberId !== undefined, `member id of ${name}: ${JSON.stringify(s.ports)}`);
    return p.memberId;
  };
  const blueIds = [idOf(s0, 'h3'), idOf(s0, 'h4')];
  const redId = idOf(s0, 'h2');
  const blueBefore = await Promise.all([h3, h4].map(vportJson));

  // Across networks: handshakes and datagrams to each blue member.
  const N = 10;
  let sent = 0;
  for (const id of blueIds) sent += (await command('pair-send', id, N)) + (await command('pair-data', id, N));
  assert.equal(sent, 4 * N, 'the hostile member sent everything');
  let s1 = s0;
  await waitFor('pairCrossNetwork to count what was sent', async () => (s1 = await switchJson(l.vswitch)).protocol['pairCrossNetwork']! - s0.protocol['pairCrossNetwork']! >= sent, 5_000, 100).catch(() => {});
  const cross = s1.protocol['pairCrossNetwork']! - s0.protocol['pairCrossNetwork']!;
  t.diagnostic(`pairCrossNetwork +${cross} for ${sent} sent; pairDropped +${s1.protocol['pairDropped']! - s0.protocol['pairDropped']!}`);
  assert.equal(cross, sent, `protocol.pairCrossNetwork grew by ${cross}, ${sent} were sent across: ${JSON.stringify(s1.protocol)}`);
  const blueAfter = await Promise.all([h3, h4].map(vportJson));
  for (const [j, name] of [[0, 'h3'], [1, 'h4']] as const) {
    assert.deepEqual(rxSuspect(blueAfter[j]!), rxSuspect(blueBefore[j]!), `${name} (blue): end-to-end receive counters changed`);
    assert.deepEqual(keysOf(blueAfter[j]!).sort(), keysOf(blueBefore[j]!).sort(), `${name} (blue): its peers changed`);
    assert.ok(!keysOf(blueAfter[j]!).includes(k.portPub(HOSTILE)), `${name} (blue) has the hostile red member as a peer`);
  }
  for (const name of ['h3', 'h4']) {
    const before = s0.ports.find((p) => p.name === name)!.relayed!.toFrames;
    const after = s1.ports.find((p) => p.name === name)!.relayed!.toFrames;
    assert.equal(after, before, `the switch relayed ${after - before} datagrams to ${name} (blue)`);
  }

  // Positive control: the same to a red member is relayed, and that member sees it fail.
  const h2Before = await vportJson(h2);
  assert.equal(await command('pair-data', redId, N), N);
  assert.equal(await command('pair-send', redId, N), N);
  let h2After = h2Before;
  await waitFor(
    "h2 to count the hostile member's datagrams",
    async () => {
      h2After = await vportJson(h2);
      return h2After.pairs['unknownIndex']! - h2Before.pairs['unknownIndex']! >= N && h2After.pairs['handshakeRejected']! - h2Before.pairs['handshakeRejected']! >= N;
    },
    5_000,
    100,
  ).catch(() => {});
  const s2 = await switchJson(l.vswitch);
  t.diagnostic(
    `to red h2: unknownIndex +${h2After.pairs['unknownIndex']! - h2Before.pairs['unknownIndex']!}, handshakeRejected +${h2After.pairs['handshakeRejected']! - h2Before.pairs['handshakeRejected']!}, switch relayed to h2 +${s2.ports.find((p) => p.name === 'h2')!.relayed!.toFrames - s1.ports.find((p) => p.name === 'h2')!.relayed!.toFrames}`,
  );
  assert.equal(h2After.pairs['unknownIndex']! - h2Before.pairs['unknownIndex']!, N, 'PAIR_DATA to a red member id reached it');
  assert.equal(h2After.pairs['handshakeRejected']! - h2Before.pairs['handshakeRejected']!, N, 'PAIR_SEND to a red member id reached it');
  assert.ok(keysOf(h2After).includes(k.portPub(HOSTILE)), 'h2 heard of the hostile member through PAIR_RECV');
  assert.ok(s2.ports.find((p) => p.name === 'h2')!.relayed!.toFrames - s1.ports.find((p) => p.name === 'h2')!.relayed!.toFrames >= N, 'the switch relayed the PAIR_DATA to h2');
  assert.equal(s2.protocol['pairCrossNetwork'], s1.protocol['pairCrossNetwork'], 'nothing within red was counted as cross-network');

  hostile.kill('SIGTERM');
  assert.equal(await waitExit(hostile, 5_000), 0, collect(hostile).err());
});

/** Run vswitch to completion: in a loopback-only namespace as root, directly otherwise. */
let scratch: Netns | undefined;
async function vswitchOnce(args: readonly string[]): Promise<{ status: number; err: string }> {
  const cmd = [process.execPath, bin('vswitch'), ...args];
  if (isRoot()) scratch ??= Netns.create('nx', tag);
  const child = scratch !== undefined ? spawnTracked('ip', ['netns', 'exec', scratch.name, ...cmd]) : spawnTracked(cmd[0]!, cmd.slice(1));
  const o = collect(child);
  const status = await waitExit(child, 15_000);
  return { status, err: o.err() };
}

test('a key listed in two networks stops the switch at start, naming the key, both networks and both files', async () => {
  const k = lanKeys();
  const dup = k.portPub(6);
  const a = join(tmp, 'dup-red.allow');
  const b = join(tmp, 'dup-blue.allow');
  writeFileSync(a, `${k.portPub(7)} h7\n${dup} h6\n`);
  writeFileSync(b, `${dup} h6\n`);
  const cfg = join(tmp, 'dup.json');
  writeFileSync(cfg, JSON.stringify({ key: k.switchKey, networks: { red: a, blue: { allow: b, 'max-macs': 100 } } }));
  const control = controlArgs('vswitch', []);
  const [flags, config] = await Promise.all([
    vswitchOnce([String(SWITCH_PORT), '--key', k.switchKey, '--network', `red=${a}`, '--network', `blue=${b}`, ...control]),
    vswitchOnce([String(SWITCH_PORT + 1), '--config', cfg, ...controlArgs('vswitch', [])]),
  ]);
  for (const [how, r] of [['--network flags', flags], ['--config networks', config]] as const) {
    assert.notEqual(r.status, 0, `${how}: exit ${r.status}, stderr:\n${r.err}`);
    assert.doesNotMatch(r.err, /vswitch ready/, `${how}: the switch started`);
    for (const [what, text] of [['the key', dup], ['network red', "'red'"], ['network blue', "'blue'"], ['red file', a], ['blue file', b], ['the code', 'ERR_KEY_IN_TWO_NETWORKS']] as const) {
      assert.match(r.err, new RegExp(re(text)), `${how}: the error names ${what}:\n${r.err}`);
    }
    // Where in each file.
    assert.match(r.err, new RegExp(`${re(a)} line 2`), `${how}: the red file's line`);
    assert.match(r.err, new RegExp(`${re(b)} line 1`), `${how}: the blue file's line`);
  }
});

test('SIGHUP removing red from --config: red members are told goodbye and disconnected while a 20 MB blue transfer goes on intact', async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping', tc: 'iproute2' });
  const k = lanKeys();
  const redAllow = allowFile('hup-red.allow', [1, 2]);
  const blueAllow = allowFile('hup-blue.allow', [3, 4]);
  const cfg = join(tmp, 'hup.json');
  const config = (networks: Record<string, unknown>): void => writeFileSync(cfg, JSON.stringify({ key: k.switchKey, networks }, null, 2));
  config({ red: redAllow, blue: { allow: blueAllow, 'max-macs': 100 } });
  const { sw, hosts } = buildStar(`s${tag}`, 4);
  const vswitch = sw.spawn(process.execPath, [bin('vswitch'), String(SWITCH_PORT), '--config', cfg, ...controlArgs('vswitch', [])]);
  await waitForOutput(vswitch, new RegExp(`vswitch ready on UDP ${SWITCH_PORT}\\n`), START_TIMEOUT_MS);
  const [h1, h2, h3, h4] = (await Promise.all([
    startMember(hosts[0]!, 1, overlay(1)),
    startMember(hosts[1]!, 2, overlay(2)),
    startMember(hosts[2]!, 3, overlay(1)),
    startMember(hosts[3]!, 4, overlay(2)),
  ])) as [Member, Member, Member, Member];
  const s0 = await switchJson(vswitch);
  assert.deepEqual(s0.networks.map((n) => [n.name, n.members]), [['red', 2], ['blue', 2]]);
  assert.equal(s0.networks.find((n) => n.name === 'blue')!.limits.maxMacs, 100, "blue's max-macs from the config");
  await assertPings(h1.host.ns, overlay(2), 'red: h1 -> h2 before the reload');
  await assertPings(h3.host.ns, overlay(2), 'blue: h3 -> h4 before the reload');

  // 20 MB h3 -> h4, slowed on h3's underlay so the reload lands in the middle (~4 s at 40 Mbit/s).
  const size = 20 * 1024 * 1024;
  const file = join(tmp, 'payload.bin');
  const out = join(tmp, 'received.bin');
  writeFileSync(file, randomBytes(size));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  h3.host.ns.exec('tc', ['qdisc', 'add', 'dev', 'u3', 'root', 'tbf', 'rate', '40mbit', 'burst', '64kb', 'latency', '200ms']);
  const rx = h4.host.ns.spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', '0.0.0.0', '5001', out]);
  await waitForOutput(rx, /listening on/);
  const tx = h3.host.ns.spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', overlay(2), '5001', file]);
  const outSize = (): number => {
    try {
      return statSync(out).size;
    } catch {
      return 0;
    }
  };
  await waitFor('2 MB of the transfer on h4', () => outSize() >= 2 * 1024 * 1024, 20_000, 20);

  config({ blue: { allow: blueAllow, 'max-macs': 100 } });
  vswitch.kill('SIGHUP');
  const hupAt = outSize();
  const sentAt = Date.now();
  assert.ok(hupAt < size && tx.exitCode === null, `SIGHUP after ${hupAt} of ${size} bytes: not mid-transfer`);
  const reloaded = await waitForOutput(vswitch, /SIGHUP: networks reloaded [^\n]*removed=red\b[^\n]*/, 5_000);
  t.diagnostic(reloaded);
  assert.match(reloaded, /networks=blue\(2\) /, 'blue alone remains, with its 2 keys');
  assert.match(reloaded, / disconnected=(h1,h2|h2,h1)\b/, "red's members are the ones disconnected");
  for (const name of ['h1', 'h2']) await waitForOutput(vswitch, new RegExp(`port left port=${name} [^\\n]*reason="removed from network red"`), 5_000);
  t.diagnostic(`SIGHUP at ${(hupAt / 1e6).toFixed(1)} MB of ${(size / 1e6).toFixed(1)}; red's members left within ${Date.now() - sentAt} ms`);
  // The switch said goodbye to each, and refuses their rejoins.
  for (const m of [h1, h2]) await waitForOutput(m.vport, /switch closed the session/, 5_000);
  for (const m of [h1, h2]) await waitForOutput(vswitch, new RegExp(`handshake from a key not in the allow file[^\\n]* key=${re(k.portPub(m.i))} `), 10_000);

  const s1 = await switchJson(vswitch);
  assert.deepEqual(s1.networks.map((n) => [n.name, n.members]), [['blue', 2]], JSON.stringify(s1.networks));
  assert.deepEqual(s1.ports.map((p) => [p.name, p.network]).sort(), [['h3', 'blue'], ['h4', 'blue']], JSON.stringify(s1.ports));
  assert.ok(s1.macTable.every((m) => m.network === 'blue'), `MACs of a removed network remain: ${JSON.stringify(s1.macTable)}`);
  const red = await execIn(h1.host.ns, 'ping', ['-c', '3', '-i', '0.3', '-W', '1', overlay(2)], 10_000);
  assert.equal(received(red.out), 0, `red h1 still reaches h2:\n${red.out}`);

  // Blue never noticed.
  assert.equal(await waitExit(tx, 60_000), 0, `sender failed: ${collect(tx).err()}`);
  assert.equal(await waitExit(rx, 10_000), 0, `receiver failed: ${collect(rx).err()}`);
  h3.host.ns.exec('tc', ['qdisc', 'del', 'dev', 'u3', 'root']);
  assert.match(collect(tx).out(), new RegExp(`^sent ${size} bytes sha256 ${want} `, 'm'));
  assert.match(collect(rx).out(), new RegExp(`^received ${size} bytes sha256 ${want} `, 'm'));
  assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), want, 'the file on h4 is the file sent');
  await assertPings(h3.host.ns, overlay(2), 'blue: h3 -> h4 after the reload');
  await assertPings(h4.host.ns, overlay(1), 'blue: h4 -> h3 after the reload');
  for (const m of [h3, h4]) {
    assert.equal(count(collect(m.vport).out(), JOINED), 1, `h${m.i} (blue) joined once`);
    assert.doesNotMatch(collect(m.vport).err(), /switch closed the session/, `h${m.i} (blue) was told goodbye`);
  }
  assert.doesNotMatch(collect(vswitch).err(), /port left port=h[34] /, 'a blue member left');
});
