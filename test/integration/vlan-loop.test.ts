// VLANs, the loop guard and storm control with the real vswitch and vports in
// namespaces: access ports of one VLAN meet and of two never do, a trunk carries
// both tagged (frames built by hand, sent with tcpreplay: this kernel has no
// 802.1Q links), a bridge closing a loop gets the newer of its ports blocked,
// and a broadcast flood is cut to the storm limit while unicast flows.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, collect, ensureTools, requireRoot, runTag, waitExit, waitFor, waitForOutput, type Netns, type StarHost } from '../helpers/netns.js';
import { bin, count, execIn, lanKeys, linkMac, startSwitch, START_TIMEOUT_MS, SWITCH_PORT } from '../helpers/lan.js';
import { buildArp, buildFrame, EtherType } from '../../lib/core/ethernet.js';
import { buffersToBatch } from '../../lib/core/frames.js';
import { PcapWriter } from '../../lib/daemon/pcap.js';
import { DEFAULT_SWEEP_INTERVAL_MS } from '../../lib/switch/switch.js';
import type { PortStatusReport, SwitchStatusReport } from '../../lib/daemon/status.js';

const tmp = mkdtempSync(join(tmpdir(), 'etl-vlan-loop-'));
const TOOLS = { ping: 'iputils-ping', tcpdump: 'tcpdump', tcpreplay: 'tcpreplay' };
/** How long the loop guard blocks a port here (the default 60 s would make the unblock slow to see). */
const LOOP_BLOCK_S = 10;
/** The switch sweeps (and ends due blocks) this often even when no frame arrives. */
const SWEEP_S = DEFAULT_SWEEP_INTERVAL_MS / 1000;
/** Storm limit of the flood test: flooded frames per second per ingress port, and the burst (the switch's default burst is the limit). */
const STORM_LIMIT = 200;
const STORM_BURST = STORM_LIMIT;
/**
 * The flood: this long, at most this many datagrams, offered at about 5,000/s:
 * 25 times the limit, yet what h6's vport carries without its TAP queue
 * overflowing (at 20,000/s half was lost before the switch, echo replies too).
 */
const FLOOD_MS = 3_000;
const FLOOD_MAX = 20_000;
const FLOOD_PER_10MS = 50;

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

type SwitchPortReport = SwitchStatusReport['ports'][number];

/** A daemon we started and its control socket. */
interface Daemon {
  child: ChildProcess;
  control: string;
}

let seq = 0;
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** No IPv6 in `ns`: no ND or MLD frames of its own, so every frame a test counts is one it caused. */
function noIpv6(ns: Netns): void {
  ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
  ns.exec('sysctl', ['-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
}

/**
 * A vswitch whose allow file lists `members` (the LAN's test key of host
 * `key`, the port's name, its VLAN options), started with `args`.
 */
async function vswitch(sw: Netns, members: readonly (readonly [key: number, name: string, options: string])[], args: readonly string[] = []): Promise<Daemon> {
  const k = lanKeys();
  const allow = join(tmp, `allow-${++seq}`);
  writeFileSync(allow, members.map(([key, name, options]) => `${k.portPub(key)} ${name} ${options}`.trim()).join('\n') + '\n');
  const control = join(tmp, `vswitch-${seq}.sock`);
  const child = await startSwitch(sw, ['--key', k.switchKey, '--allow', allow, '--control', control, ...args]);
  return { child, control };
}

/** A vport on `host` with test key `key`, device `ifname` and `ips`; resolves once the switch says port `name` joined. */
async function vport(sw: Daemon, host: StarHost, key: number, name: string, ifname: string, ips: readonly string[]): Promise<Daemon> {
  const k = lanKeys();
  const control = join(tmp, `vport-${++seq}.sock`);
  const child = host.ns.spawn(process.execPath, [
    bin('vport'),
    host.switchAddress,
    String(SWITCH_PORT),
    '--name',
    ifname,
    ...ips.flatMap((ip) => ['--ip', ip]),
    '--key',
    k.portKey(key),
    '--switch-key',
    k.switchPub,
    '--control',
    control,
  ]);
  await waitForOutput(child, new RegExp(`vport ${ifname} joined \\S+\\n`), START_TIMEOUT_MS);
  await waitForOutput(sw.child, new RegExp(`port joined port=${name} `), START_TIMEOUT_MS);
  return { child, control };
}

async function switchJson(sw: Netns, d: Daemon): Promise<SwitchStatusReport> {
  const r = await execIn(sw, process.execPath, [bin('vswitch'), 'status', '--control', d.control, '--json'], 15_000);
  assert.equal(r.status, 0, r.out + r.err);
  return JSON.parse(r.out) as SwitchStatusReport;
}

async function portJson(ns: Netns, d: Daemon): Promise<PortStatusReport> {
  const r = await execIn(ns, process.execPath, [bin('vport'), 'status', '--control', d.control, '--json'], 15_000);
  assert.equal(r.status, 0, r.out + r.err);
  return JSON.parse(r.out) as PortStatusReport;
}

function portOf(s: SwitchStatusReport, name: string): SwitchPortReport {
  const p = s.ports.find((x) => x.name === name);
  assert.ok(p, `port ${name} in the switch status: ${s.ports.map((x) => x.name).join(', ')}`);
  return p;
}

/** tcpdump -e on `ifname` of what arrives from the vport (-Q in: not what the host sends), resolved once it captures. */
async function capture(ns: Netns, ifname: string, filter: readonly string[] = []): Promise<ChildProcess> {
  const child = ns.spawn('tcpdump', ['-i', ifname, '-e', '-nn', '-l', '-Q', 'in', ...filter]);
  await waitForOutput(child, new RegExp(`listening on ${ifname}`), 10_000);
  return child;
}

async function stopCapture(child: ChildProcess): Promise<string> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  await waitExit(child, 5_000);
  return collect(child).out();
}

// ---------------------------------------------------------------- frames by hand

function ipv4Bytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

/** The Internet checksum (RFC 1071). */
function inetChecksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) + (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An IPv4 ICMP echo request, `id` and `seq` chosen so tcpdump lines name it. */
function icmpEcho(src: string, dst: string, id: number, seqNo: number): Buffer {
  const icmp = Buffer.alloc(8 + 32, 0x5a);
  icmp.writeUInt8(8, 0);
  icmp.writeUInt8(0, 1);
  icmp.writeUInt16BE(0, 2);
  icmp.writeUInt16BE(id, 4);
  icmp.writeUInt16BE(seqNo, 6);
  icmp.writeUInt16BE(inetChecksum(icmp), 2);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(ip.length + icmp.length, 2);
  ip.writeUInt16BE(id, 4);
  ip[8] = 64; // TTL
  ip[9] = 1; // ICMP
  Buffer.from(ipv4Bytes(src)).copy(ip, 12);
  Buffer.from(ipv4Bytes(dst)).copy(ip, 16);
  ip.writeUInt16BE(inetChecksum(ip), 10);
  return Buffer.concat([ip, icmp]);
}

/** Send `frames` out of `ifname` in `ns`, in order, with tcpreplay from a classic pcap written by our PcapWriter. */
async function replay(ns: Netns, ifname: string, frames: readonly Buffer[]): Promise<void> {
  const file = join(tmp, `replay-${++seq}.pcap`);
  const w = new PcapWriter(file, { format: 'pcap', flushIntervalMs: 0 });
  w.write(buffersToBatch(frames));
  const written = await w.close();
  assert.equal(written.frames, frames.length, 'every frame in the pcap file');
  const r = await execIn(ns, 'tcpreplay', ['-i', ifname, file], 15_000);
  assert.equal(r.status, 0, `tcpreplay: ${r.out}${r.err}`);
  assert.match(r.out, new RegExp(`Successful packets:\\s+${frames.length}\\b`), r.out);
}

// ---------------------------------------------------------------- 1. VLANs

test('VLANs: access ports meet only in their VLAN; a trunk carries 10 and 20 tagged, both ways; VLAN 30 reaches nobody', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools(TOOLS);
  t.after(() => cleanup());
  const { sw, hosts } = buildStar(`${runTag()}v`, 4);
  const [h1, h2, h3, h4] = hosts as [StarHost, StarHost, StarHost, StarHost];
  for (const h of hosts) noIpv6(h.ns);
  const s = await vswitch(sw, [
    [1, 'h1', 'vlan=10'],
    [2, 'h2', 'vlan=20'],
    [3, 'h3', 'trunk=10,20'],
    [4, 'h4', 'vlan=10'],
  ]);
  // h1 and h2 share 10.77.0.0/24 too: the ping between them would work if they shared a VLAN.
  const p1 = await vport(s, h1, 1, 'h1', 'etl0', ['10.77.10.1/24', '10.77.0.1/24']);
  await vport(s, h2, 2, 'h2', 'etl0', ['10.77.20.2/24', '10.77.0.2/24']);
  const p3 = await vport(s, h3, 3, 'h3', 'etl0', []);
  await vport(s, h4, 4, 'h4', 'etl0', ['10.77.10.4/24', '10.77.0.4/24']);
  const mac = (h: StarHost): string => linkMac(h.ns, 'etl0');
  const [m1, m2, m3] = [mac(h1), mac(h2), mac(h3)];

  const status = await switchJson(sw, s);
  assert.deepEqual(
    ['h1', 'h2', 'h3', 'h4'].map((n) => portOf(status, n).vlan),
    ['access 10', 'access 20', 'trunk 10,20', 'access 10'],
  );
  const st1 = await portJson(h1.ns, p1);
  const st3 = await portJson(h3.ns, p3);
  assert.deepEqual([st1.vlan, st1.network, st3.vlan, st3.network], ['access 10', 'default', 'trunk 10,20', 'default']);

  const [c1, c2, c3, c4] = (await Promise.all(hosts.map((h) => capture(h.ns, 'etl0')))) as [ChildProcess, ChildProcess, ChildProcess, ChildProcess];

  // Positive control: h1 reaches h4 (VLAN 10) in both subnets, by ARP broadcast first.
  for (const dst of ['10.77.10.4', '10.77.0.4']) {
    const r = await execIn(h1.ns, 'ping', ['-c', '2', '-i', '0.2', '-W', '2', dst]);
    assert.equal(r.status, 0, `h1 -> ${dst} (same VLAN):\n${r.out}${r.err}`);
  }
  // h1 and h2 do not meet, in either direction.
  const to2 = await execIn(h1.ns, 'ping', ['-c', '2', '-i', '0.5', '-W', '1', '10.77.0.2']);
  assert.notEqual(to2.status, 0, `h1 -> h2 (VLAN 10 -> 20) must fail:\n${to2.out}`);
  const to1 = await execIn(h2.ns, 'ping', ['-c', '2', '-i', '0.5', '-W', '1', '10.77.0.1']);
  assert.notEqual(to1.status, 0, `h2 -> h1 (VLAN 20 -> 10) must fail:\n${to1.out}`);

  // Their ARP broadcasts: h4 gets h1's untagged; the trunk gets h1's tagged 10 and h2's tagged 20.
  const arp = (m: string, tagged: number | null, who: string, tell: string): RegExp =>
    new RegExp(
      `${m} > ff:ff:ff:ff:ff:ff, ${tagged === null ? '' : `ethertype 802\\.1Q \\(0x8100\\), length \\d+: vlan ${tagged}, p 0, `}ethertype ARP \\(0x0806\\)(?:, length \\d+:)?,? Request who-has ${esc(who)} tell ${esc(tell)}`,
    );
  await waitForOutput(c4, arp(m1, null, '10.77.0.2', '10.77.0.1'), 5_000);
  await waitForOutput(c3, arp(m1, 10, '10.77.0.2', '10.77.0.1'), 5_000);
  await waitForOutput(c3, arp(m2, 20, '10.77.0.1', '10.77.0.2'), 5_000);

  // From the trunk, by hand: echo requests tagged 10 to h1 and 20 to h2, and a VLAN 10 broadcast.
  h1.ns.ip('neigh', 'replace', '10.77.10.3', 'lladdr', m3, 'dev', 'etl0', 'nud', 'permanent');
  h2.ns.ip('neigh', 'replace', '10.77.20.3', 'lladdr', m3, 'dev', 'etl0', 'nud', 'permanent');
  const before = portOf(await switchJson(sw, s), 'h3').counters.drops.vlan;
  await replay(h3.ns, 'etl0', [
    buildFrame({ dst: m1, src: m3, etherType: EtherType.IPv4, vlan: 10, payload: icmpEcho('10.77.10.3', '10.77.10.1', 0x1010, 1) }),
    buildFrame({ dst: m2, src: m3, etherType: EtherType.IPv4, vlan: 20, payload: icmpEcho('10.77.20.3', '10.77.20.2', 0x2020, 1) }),
    buildArp({ op: 'request', senderMac: m3, senderIp: '10.77.10.3', targetIp: '10.77.10.99', vlan: 10 }),
  ]);
  const echo = (from: string, to: string, m: string, kind: 'request' | 'reply', id: number, tagged: number | null): RegExp =>
    new RegExp(
      `${m}, ethertype ${tagged === null ? 'IPv4 \\(0x0800\\), length \\d+:' : `802\\.1Q \\(0x8100\\), length \\d+: vlan ${tagged}, p 0, ethertype IPv4 \\(0x0800\\),`} ${esc(from)} > ${esc(to)}: ICMP echo ${kind}, id ${id}, seq 1`,
    );
  // Requests arrive untagged on the access ports; replies come back to the trunk tagged.
  await waitForOutput(c1, echo('10.77.10.3', '10.77.10.1', `${m3} > ${m1}`, 'request', 0x1010, null), 5_000);
  await waitForOutput(c2, echo('10.77.20.3', '10.77.20.2', `${m3} > ${m2}`, 'request', 0x2020, null), 5_000);
  await waitForOutput(c3, echo('10.77.10.1', '10.77.10.3', `${m1} > ${m3}`, 'reply', 0x1010, 10), 5_000);
  await waitForOutput(c3, echo('10.77.20.2', '10.77.20.3', `${m2} > ${m3}`, 'reply', 0x2020, 20), 5_000);
  const bcast10 = arp(m3, null, '10.77.10.99', '10.77.10.3');
  await waitForOutput(c1, bcast10, 5_000);
  await waitForOutput(c4, bcast10, 5_000);
  const carried = portOf(await switchJson(sw, s), 'h3').counters.drops.vlan;
  assert.equal(carried, before, 'frames of VLANs the trunk carries are not VLAN drops');

  // VLAN 30 is not on the trunk: its broadcast and its unicast to h1 reach nobody, and are counted.
  const v30 = [
    buildArp({ op: 'request', senderMac: m3, senderIp: '10.77.30.3', targetIp: '10.77.0.1', vlan: 30 }),
    buildFrame({ dst: m1, src: m3, etherType: EtherType.IPv4, vlan: 30, payload: icmpEcho('10.77.30.3', '10.77.10.1', 0x3030, 1) }),
  ];
  // Markers after them, on the same path: once these arrived, VLAN 30 frames would have too.
  await replay(h3.ns, 'etl0', [
    ...v30,
    ...v30,
    ...v30,
    buildArp({ op: 'request', senderMac: m3, senderIp: '10.77.10.3', targetIp: '10.77.10.98', vlan: 10 }),
    buildArp({ op: 'request', senderMac: m3, senderIp: '10.77.20.3', targetIp: '10.77.20.98', vlan: 20 }),
  ]);
  await waitForOutput(c1, arp(m3, null, '10.77.10.98', '10.77.10.3'), 5_000);
  await waitForOutput(c4, arp(m3, null, '10.77.10.98', '10.77.10.3'), 5_000);
  await waitForOutput(c2, arp(m3, null, '10.77.20.98', '10.77.20.3'), 5_000);
  let dropped = 0;
  await waitFor('h3 drops.vlan counts the VLAN 30 frames', async () => {
    dropped = portOf(await switchJson(sw, s), 'h3').counters.drops.vlan - carried;
    return dropped >= 6;
  }, 5_000, 200);
  t.diagnostic(`h3 drops.vlan: +${carried - before} for VLANs 10/20, +${dropped} for the 6 VLAN 30 frames`);
  assert.equal(dropped, 6, 'each VLAN 30 frame counted once (h3 sends nothing else: no IPv6, no address)');

  const [o1, o2, o3, o4] = (await Promise.all([c1, c2, c3, c4].map(stopCapture))) as [string, string, string, string];
  for (const [name, o] of [['h1', o1], ['h2', o2], ['h4', o4]] as const) {
    assert.doesNotMatch(o, /10\.77\.30\.3|0x3030|id 12336/, `${name} got a VLAN 30 frame:\n${o}`);
    assert.doesNotMatch(o, /802\.1Q/, `${name} (access) got a tagged frame:\n${o}`);
  }
  assert.doesNotMatch(o3, /vlan 30|10\.77\.30\.3/, `the trunk got VLAN 30 back:\n${o3}`);
  // h2 (VLAN 20) saw none of h1's frames and h1 none of h2's, though both captures saw h3's frames.
  assert.ok(!o2.includes(m1), `h2 saw frames from h1:\n${o2}`);
  assert.doesNotMatch(o2, /tell 10\.77\.0\.1\b|10\.77\.10\.99/, `h2 saw VLAN 10 broadcasts:\n${o2}`);
  assert.ok(!o1.includes(m2), `h1 saw frames from h2:\n${o1}`);
  assert.doesNotMatch(o1, /tell 10\.77\.0\.2\b|10\.77\.20\.98/, `h1 saw VLAN 20 broadcasts:\n${o1}`);
  assert.ok(!o4.includes(m2), `h4 saw frames from h2:\n${o4}`);
  assert.ok(!o3.includes(`${m1} > ff:ff:ff:ff:ff:ff, ethertype ARP`), 'the trunk never gets VLAN 10 untagged (it has no pvid)');
});

// ---------------------------------------------------------------- 2. loop guard

test('a loop through a Linux bridge joining two ports of one host: the newer port is blocked, the LAN keeps working, the block ends', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools(TOOLS);
  t.after(() => cleanup());
  const { sw, hosts } = buildStar(`${runTag()}l`, 3);
  const [h5, h6, h7] = hosts as [StarHost, StarHost, StarHost];
  for (const h of hosts) noIpv6(h.ns);
  // Ports get ids in the order they join: h6, h7, then h5's two (h5b newest).
  const s = await vswitch(sw, [[6, 'h6', ''], [7, 'h7', ''], [5, 'h5a', ''], [9, 'h5b', '']], ['--loop-block', String(LOOP_BLOCK_S)]);
  await vport(s, h6, 6, 'h6', 'etl0', ['10.78.0.6/24']);
  await vport(s, h7, 7, 'h7', 'etl0', ['10.78.0.7/24']);
  await vport(s, h5, 5, 'h5a', 'etl0', []);
  await vport(s, h5, 9, 'h5b', 'etl1', []);
  const m6 = linkMac(h6.ns, 'etl0');
  const warm = await execIn(h7.ns, 'ping', ['-c', '2', '-i', '0.2', '-W', '2', '10.78.0.6']);
  assert.equal(warm.status, 0, `h7 -> h6 before the loop:\n${warm.out}${warm.err}`);
  const quiet = await switchJson(sw, s);
  assert.deepEqual(quiet.ports.filter((p) => p.blocked !== undefined).map((p) => p.name), [], 'nothing blocked before the loop');

  // h5 bridges its two TAPs: every frame the switch floods to one comes back on the other.
  // No multicast snooping: br0 would send IGMP reports of its own, which loop too
  // and would start the loop before h6 does.
  h5.ns.ip('link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0');
  h5.ns.ip('link', 'set', 'etl0', 'master', 'br0');
  h5.ns.ip('link', 'set', 'etl1', 'master', 'br0');
  h5.ns.ip('link', 'set', 'br0', 'up');
  // What the switch sends h5b (not what br0 sends out of etl1).
  const onEtl1 = await capture(h5.ns, 'etl1', ['ether', 'src', m6]);
  const total = 8 + LOOP_BLOCK_S + SWEEP_S + 4;
  const pings = h7.ns.spawn('ping', ['-D', '-i', '0.2', '-W', '1', '-w', String(total), '10.78.0.6']);
  const replies = (): number => [...collect(pings).out().matchAll(/^\[\d+\.\d+\] \d+ bytes from/gm)].length;
  await waitFor('pings answered', () => replies() >= 2, 5_000);
  const loopAt = Date.now();
  const bcast = h6.ns.spawn('ping', ['-b', '-i', '0.2', '-w', String(total), '10.78.0.255']);

  let blocked: SwitchPortReport[] = [];
  let st = quiet;
  await waitFor('a port blocked by the loop guard', async () => {
    st = await switchJson(sw, s);
    blocked = st.ports.filter((p) => p.blocked !== undefined);
    return blocked.length > 0;
  }, 10_000, 200);
  const blockedAfter = Date.now() - loopAt;
  t.diagnostic(`seen blocked ${blockedAfter} ms after h6's first broadcast: ${JSON.stringify(blocked.map((p) => [p.name, p.blocked]))}`);
  assert.deepEqual(blocked.map((p) => p.name), ['h5b'], 'exactly one port blocked: the one that joined last');
  const reason = blocked[0]!.blocked!.reason;
  // h6's broadcasts are the only frames that loop: its claims from h5a and h5b are refused (h6 is active) and counted.
  assert.match(reason, new RegExp(`^MAC ${m6} `), 'the reason names the looping MAC: h6\'s');
  assert.match(reason, /\bh6\b/, "the reason names the MAC's owner");
  assert.match(reason, /\bh5b\b/, 'and the port blocked');
  assert.ok(blocked[0]!.blocked!.remainingS > 0 && blocked[0]!.blocked!.remainingS <= LOOP_BLOCK_S, `remainingS ${blocked[0]!.blocked!.remainingS}`);
  assert.equal(portOf(st, 'h5a').blocked, undefined, 'the older port of the loop stays up');
  assert.deepEqual(st.networks.map((n) => n.blocked), [['h5b']]);
  await waitForOutput(s.child, /loop guard: port blocked .*port=h5b .*reason="MAC /, 2_000);
  // The owner kept its MAC: the loop's claims on it were refused.
  assert.equal(st.macTable.find((m) => m.mac === m6)?.portName, 'h6', `h6's MAC stays on h6: ${JSON.stringify(st.macTable)}`);
  // h6's broadcasts still cross br0 into h5b, which the switch now drops and counts.
  let drops = 0;
  await waitFor('h5b drops.blocked grows', async () => {
    st = await switchJson(sw, s);
    drops = portOf(st, 'h5b').counters.drops.blocked;
    return drops > 0;
  }, 5_000, 200);
  assert.ok(portOf(st, 'h5b').blocked !== undefined, 'still blocked');
  // The switch sends a blocked port nothing: h6's broadcasts reach etl1 no more.
  const seenAtBlock = collect(onEtl1).out().split('\n').filter((l) => l.includes(m6)).length;
  await new Promise((r) => setTimeout(r, 1_500));
  const seenBlocked = collect(onEtl1).out().split('\n').filter((l) => l.includes(m6)).length;
  assert.equal(seenBlocked, seenAtBlock, `nothing from h6 reached etl1 while blocked:\n${collect(onEtl1).out()}`);

  // The loop is undone; the block runs out (a frame or the next sweep ends it) and stays off.
  h5.ns.ip('link', 'set', 'etl1', 'nomaster');
  const unblockLine = await waitForOutput(s.child, /^\S+ INFO  vswitch: loop guard: port unblocked .*port=h5b.*$/m, (LOOP_BLOCK_S + SWEEP_S + 2) * 1_000);
  const blockLine = await waitForOutput(s.child, /^\S+ WARN  vswitch: loop guard: port blocked .*port=h5b.*$/m, 1_000);
  const logTime = (line: string): number => Date.parse(line.split(' ')[0]!);
  const heldMs = logTime(unblockLine) - logTime(blockLine);
  t.diagnostic(`the vswitch log: blocked, then unblocked ${heldMs} ms later (--loop-block ${LOOP_BLOCK_S}); ${blockLine}`);
  // h6's broadcasts reach the switch every 200 ms, and the first frame after the end lifts the block.
  assert.ok(heldMs >= LOOP_BLOCK_S * 1_000 - 50 && heldMs <= LOOP_BLOCK_S * 1_000 + 2_000, `blocked for ${heldMs} ms: --loop-block ${LOOP_BLOCK_S}`);
  await waitFor('h6 broadcasts reach etl1 again', () => collect(onEtl1).out().split('\n').filter((l) => l.includes(m6)).length > seenBlocked, 3_000);
  st = await switchJson(sw, s);
  assert.deepEqual(st.ports.filter((p) => p.blocked !== undefined).map((p) => p.name), []);
  assert.deepEqual(st.networks.map((n) => n.blocked), [[]]);
  t.diagnostic(`h5b drops.blocked: ${drops} when first seen, ${portOf(st, 'h5b').counters.drops.blocked} after the block (br0 fed it h6's broadcasts until etl1 left br0)`);
  assert.equal(count(collect(s.child).out() + collect(s.child).err(), /loop guard: port blocked/), 1, 'blocked once: the loop is gone');

  bcast.kill('SIGINT');
  pings.kill('SIGINT');
  await waitExit(bcast, 5_000);
  await waitExit(pings, 5_000);
  await stopCapture(onEtl1);
  const sent = Number(/(\d+) packets transmitted/.exec(collect(pings).out())?.[1] ?? 0);
  t.diagnostic(`h7 -> h6 during the loop, the block and after: ${replies()} of ${sent} answered`);
  assert.ok(sent >= 20, `pings were sent throughout: ${sent}`);
  assert.ok(replies() >= sent * 0.9, `the rest of the LAN kept working: ${replies()} of ${sent} pings answered`);
});

// ---------------------------------------------------------------- 3. storm control

/** Sends UDP to a broadcast address for at most `durationMs` and `max` datagrams; prints what it sent and when. */
const FLOODER = `
import { createSocket } from 'node:dgram';
const { dst, port, perTick, tickMs, durationMs, max } = JSON.parse(process.argv[2]);
const s = createSocket('udp4');
s.bind(0, () => {
  s.setBroadcast(true);
  const msg = Buffer.from('etherlink storm test');
  let queued = 0, sent = 0, errors = 0, last = 0;
  const start = Date.now();
  const done = () => {
    const wait = setInterval(() => {
      if (sent + errors < queued) return;
      clearInterval(wait);
      console.log(JSON.stringify({ queued, sent, errors, durationMs: last - start }));
      s.close();
    }, 10);
  };
  const tick = () => {
    if (Date.now() - start >= durationMs || queued >= max) return done();
    for (let i = 0; i < perTick && queued < max; i++) {
      queued++;
      s.send(msg, port, dst, (err) => { if (err) errors++; else { sent++; last = Date.now(); } });
    }
    setTimeout(tick, tickMs);
  };
  tick();
});
`;

test('storm control: a broadcast flood is cut to --storm-limit at its ingress port, counted, and unicast through the switch keeps flowing', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  ensureTools(TOOLS);
  t.after(() => cleanup());
  const { sw, hosts } = buildStar(`${runTag()}s`, 2);
  const [h6, h7] = hosts as [StarHost, StarHost];
  for (const h of hosts) noIpv6(h.ns);
  // h7 is a trunk whose pvid is h6's VLAN: on the wire the same as an access port
  // of VLAN 10, but another VLAN mode, so the two never meet end to end: every
  // frame between them crosses the switch, and h6's unicast meets its storm control.
  const s = await vswitch(sw, [[6, 'h6', 'vlan=10'], [7, 'h7', 'trunk=10 pvid=10']], ['--storm-limit', String(STORM_LIMIT)]);
  await vport(s, h6, 6, 'h6', 'etl0', ['10.78.0.6/24']);
  await vport(s, h7, 7, 'h7', 'etl0', ['10.78.0.7/24']);
  const m6 = linkMac(h6.ns, 'etl0');
  const warm = await execIn(h7.ns, 'ping', ['-c', '2', '-i', '0.2', '-W', '2', '10.78.0.6']);
  assert.equal(warm.status, 0, `h7 -> h6 before the flood:\n${warm.out}${warm.err}`);
  const before = await switchJson(sw, s);
  assert.equal(before.networks[0]!.limits.stormLimit, STORM_LIMIT);
  assert.equal(portOf(before, 'h6').counters.drops.storm, 0, 'no storm drops before the flood');

  const seen = await capture(h7.ns, 'etl0', ['ether', 'src', m6, 'and', 'udp', 'dst', 'port', '9']);
  const pings = h7.ns.spawn('ping', ['-D', '-i', '0.1', '-W', '1', '-w', String(FLOOD_MS / 1000 + 2), '10.78.0.6']);
  const script = join(tmp, 'flood.mjs');
  writeFileSync(script, FLOODER);
  const spec = { dst: '10.78.0.255', port: 9, perTick: FLOOD_PER_10MS, tickMs: 10, durationMs: FLOOD_MS, max: FLOOD_MAX };
  const flood = await execIn(h6.ns, process.execPath, [script, JSON.stringify(spec)], FLOOD_MS + 10_000);
  assert.equal(flood.status, 0, flood.err);
  const sent = JSON.parse(flood.out) as { queued: number; sent: number; errors: number; durationMs: number };
  await waitExit(pings, 10_000);
  // The last allowed frames may still be on their way.
  await new Promise((r) => setTimeout(r, 1_000));
  const lines = (await stopCapture(seen)).split('\n').filter((l) => /> 10\.78\.0\.255\.9: UDP/.test(l));
  const after = await switchJson(sw, s);
  const tapDropped = h6.ns.exec('cat', ['/sys/class/net/etl0/statistics/tx_dropped'], { allowFail: true }).stdout.trim();
  const h6rx = portOf(after, 'h6').counters.rxFrames - portOf(before, 'h6').counters.rxFrames;
  const storm = portOf(after, 'h6').counters.drops.storm;
  const seconds = sent.durationMs / 1000;
  // The bucket holds a burst and refills at the limit; the switch may see the
  // flood up to a TAP queue (~50 ms) later than the sender, hence +0.5 s.
  const bound = Math.ceil((STORM_LIMIT * (seconds + 0.5) + STORM_BURST) * 1.1);
  const replies = [...collect(pings).out().matchAll(/^\[\d+\.\d+\] \d+ bytes from/gm)].length;
  const transmitted = Number(/(\d+) packets transmitted/.exec(collect(pings).out())?.[1] ?? 0);
  t.diagnostic(
    `flood: ${sent.sent} sent in ${sent.durationMs} ms, ${h6rx} reached the switch from h6, ${lines.length} reached h7 (bound ${bound}), drops.storm ${storm}, h6 etl0 tx_dropped ${tapDropped}; h7 -> h6 pings ${replies}/${transmitted}`,
  );
  // Positive controls: the flood far exceeded the limit, and what the limit allows did flow.
  assert.ok(h6rx > 4 * bound, `the switch got far more than the limit from h6: ${h6rx}`);
  assert.ok(lines.length >= STORM_LIMIT * seconds * 0.5, `h7 got the flood up to the limit: ${lines.length} in ${seconds} s`);
  assert.ok(lines.length <= bound, `h7 got ${lines.length} flooded frames in ${seconds} s: at most ${bound} (${STORM_LIMIT}/s + burst ${STORM_BURST})`);
  assert.ok(storm > 0 && storm >= h6rx - bound, `h6's drops.storm counts the excess: ${storm} of ${h6rx}`);
  assert.equal(portOf(after, 'h7').counters.drops.storm, 0, 'storm control is per ingress port: h7 was not limited');
  assert.deepEqual(after.pairs, [], 'h6 and h7 never met end to end: their unicast crossed the switch');
  await waitForOutput(s.child, /storm control: flooded frames over the limit dropped .*port=h6/, 2_000);
  // Known unicast is never limited: h6's echo replies went through the switch during its own flood.
  assert.ok(transmitted >= 20, `pings sent during the flood: ${transmitted}`);
  assert.ok(replies >= transmitted * 0.9, `h7 -> h6 answered during the flood: ${replies} of ${transmitted}`);
});
