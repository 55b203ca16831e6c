// The vswitch as a VXLAN VTEP (issue 15), against the kernel's own vxlan
// driver: two hosts behind kernel VXLAN devices (each with the switch as its
// only remote) and a vport host share one LAN. ARP resolves both ways, pings
// and a 20 MB transfer cross with equal SHA-256, one kernel VTEP's broadcasts
// reach the other through the switch and never come back to the sender, and
// datagrams from an unconfigured address, with another VNI or malformed are
// dropped and counted while nothing of them reaches the LAN. Status, metrics
// and the capture show the VTEPs as ports.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, collect, ensureTools, requireRoot, runTag, spawnTracked, waitExit, waitFor, waitForOutput, type Netns, type StarHost } from '../helpers/netns.js';
import type { SwitchStatusReport } from '../../lib/daemon/status.js';
import { bin, capture, execIn, lanKeys, linkMac, neighbour, startPort, startSwitch, transferFile } from '../helpers/lan.js';

const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-vxlan-'));
const VNI = 4242;
const OTHER_VNI = 999;
const ip4 = (i: number): string => `10.99.0.${i}`;
const TRANSFER_BYTES = 20 * 1024 * 1024;
const V6_HOST = 'fd00:250:5::2';
const V6_SWITCH = 'fd00:250:5::1';
/** h6: a VTEP over IPv6 that sends zero UDP checksums (udp6zerocsumtx), which RFC 7348 says a VTEP MUST accept. */
const V6_ZERO_HOST = 'fd00:250:6::2';
const V6_ZERO_SWITCH = 'fd00:250:6::1';

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

interface VxLan {
  sw: Netns;
  hosts: StarHost[];
  vswitch: ChildProcess;
  control: string;
  metrics: string;
  pcap: string;
  vport: ChildProcess;
}

let shared: Promise<VxLan> | undefined;
/**
 * h1 and h2: kernel VXLAN devices vx0 (VNI 4242, remote = the switch, dstport
 * 4789, MTU 1450 from the 1500-byte veth); h3: a vport; h4: an address the
 * switch was not told about. The switch is a secure vswitch with --vxlan.
 */
function vxlanLan(): Promise<VxLan> {
  shared ??= (async () => {
    ensureTools({ ping: 'iputils-ping', tcpdump: 'tcpdump', ethtool: 'ethtool' });
    const k = lanKeys();
    const allow = join(tmp, 'allow');
    writeFileSync(allow, `${k.portPub(3)} h3\n`);
    const { sw, hosts } = buildStar(tag, 6);
    // h5 reaches the switch over IPv6 only: its VTEP runs over the v6 underlay (70 bytes of overhead, checksums on).
    const h5 = hosts[4]!;
    h5.ns.ip('addr', 'add', `${V6_HOST}/64`, 'dev', 'u5', 'nodad');
    sw.ip('addr', 'add', `${V6_SWITCH}/64`, 'dev', 's5', 'nodad');
    h5.ns.ip('link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'remote', V6_SWITCH, 'local', V6_HOST, 'dstport', '4789', 'dev', 'u5');
    h5.ns.ip('addr', 'add', `${ip4(5)}/24`, 'dev', 'vx0');
    h5.ns.ip('link', 'set', 'vx0', 'up');
    h5.ns.exec('ethtool', ['-K', 'vx0', 'tx', 'off']);
    const h6 = hosts[5]!;
    h6.ns.ip('addr', 'add', `${V6_ZERO_HOST}/64`, 'dev', 'u6', 'nodad');
    sw.ip('addr', 'add', `${V6_ZERO_SWITCH}/64`, 'dev', 's6', 'nodad');
    h6.ns.ip('link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'remote', V6_ZERO_SWITCH, 'local', V6_ZERO_HOST, 'dstport', '4789', 'dev', 'u6', 'udp6zerocsumtx', 'udp6zerocsumrx');
    h6.ns.ip('addr', 'add', `${ip4(6)}/24`, 'dev', 'vx0');
    h6.ns.ip('link', 'set', 'vx0', 'up');
    h6.ns.exec('ethtool', ['-K', 'vx0', 'tx', 'off']);
    for (const i of [1, 2]) {
      const h = hosts[i - 1]!;
      h.ns.ip('link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'remote', h.switchAddress, 'local', h.underlay, 'dstport', '4789', 'dev', `u${i}`);
      h.ns.ip('addr', 'add', `${ip4(i)}/24`, 'dev', 'vx0');
      h.ns.ip('link', 'set', 'vx0', 'up');
      // Over veth the inner TCP/UDP checksum is left to a NIC that never comes (CHECKSUM_PARTIAL crosses
      // the veth, and a userspace socket cannot see it): compute it in software, as over a real NIC it is.
      h.ns.exec('ethtool', ['-K', 'vx0', 'tx', 'off']);
    }
    const control = join(tmp, 'vswitch.sock');
    const pcap = join(tmp, 'switch.pcapng');
    const metrics = '127.0.0.1:9815';
    const vswitch = await startSwitch(sw, [
      '--key', k.switchKey,
      '--allow', allow,
      '--control', control,
      '--vxlan', '4789',
      '--vni', String(VNI),
      '--vtep', hosts[0]!.underlay,
      '--vtep', `${hosts[1]!.underlay}:4789`,
      '--vtep', `[${V6_HOST}]`,
      '--vtep', `[${V6_ZERO_HOST}]`,
      '--pcap', pcap,
      '--pcap-format', 'pcapng',
      '--metrics', metrics,
    ]);
    const vport = await startPort(hosts[2]!, 3);
    return { sw, hosts, vswitch, control, metrics: `http://${metrics}/metrics`, pcap, vport };
  })();
  shared.catch(() => {});
  return shared;
}

async function statusJson(l: VxLan): Promise<SwitchStatusReport> {
  const child = spawnTracked(process.execPath, [bin('vswitch'), 'status', '--control', l.control, '--json']);
  const o = collect(child);
  assert.equal(await waitExit(child, 10_000), 0, `vswitch status failed: ${o.err()}`);
  return JSON.parse(o.out()) as SwitchStatusReport;
}

function ns(l: VxLan, i: number): Netns {
  return l.hosts[i - 1]!.ns;
}

/** `text` as a literal inside a RegExp. */
const re = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function pings(n: Netns, address: string, count = 3): Promise<number> {
  const r = await execIn(n, 'ping', ['-c', String(count), '-i', '0.2', '-W', '2', address], 15_000);
  const m = /(\d+) received/.exec(r.out);
  return m ? Number(m[1]) : 0;
}

/** Send raw UDP datagrams from `n` (bound to `from`) to `to`:4789: each a VXLAN packet (or junk) built by the test. */
async function sendRaw(n: Netns, from: string, to: string, datagrams: readonly Buffer[]): Promise<void> {
  const script = `
const s = require('node:dgram').createSocket('udp4');
const list = ${JSON.stringify(datagrams.map((d) => d.toString('hex')))};
s.bind(0, ${JSON.stringify(from)}, async () => {
  for (const h of list) await new Promise((r) => s.send(Buffer.from(h, 'hex'), 4789, ${JSON.stringify(to)}, r));
  s.close();
});`;
  const r = await execIn(n, process.execPath, ['-e', script], 10_000);
  assert.equal(r.status, 0, `raw sender failed: ${r.err}`);
}

/** A VXLAN datagram: header for `vni` (I flag set unless `flags` says otherwise) around an Ethernet frame. */
function vxlanDatagram(vni: number, frame: Buffer, flags = 0x08): Buffer {
  const h = Buffer.alloc(8);
  h[0] = flags;
  h.writeUIntBE(vni, 4, 3);
  return Buffer.concat([h, frame]);
}

/** A broadcast Ethernet frame from `src` carrying `payload` (an experimental EtherType). */
function broadcastFrame(src: string, payload: Buffer): Buffer {
  const f = Buffer.alloc(14 + Math.max(46, payload.length));
  Buffer.from('ffffffffffff', 'hex').copy(f, 0);
  Buffer.from(src.replace(/:/g, ''), 'hex').copy(f, 6);
  f.writeUInt16BE(0x88b5, 12);
  payload.copy(f, 14);
  return f;
}

test('a kernel VXLAN host and a vport host: ARP both ways, ping, and 20 MB with equal SHA-256 through the vswitch', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await vxlanLan();
  const vxMac1 = linkMac(ns(l, 1), 'vx0');
  const tapMac3 = linkMac(ns(l, 3), 'etl0');
  assert.equal(await pings(ns(l, 1), ip4(3)), 3, 'h1 (kernel VXLAN) -> h3 (vport)');
  assert.equal(await pings(ns(l, 3), ip4(1)), 3, 'h3 (vport) -> h1 (kernel VXLAN)');
  assert.equal(neighbour(ns(l, 1), 'vx0', ip4(3)), tapMac3, "h1 resolved h3's address to h3's TAP MAC");
  assert.equal(neighbour(ns(l, 3), 'etl0', ip4(1)), vxMac1, "h3 resolved h1's address to h1's vx0 MAC");

  const file = join(tmp, 'payload.bin');
  writeFileSync(file, randomBytes(TRANSFER_BYTES));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const x = await transferFile(ns(l, 1), ns(l, 3), ip4(3), 5001, file, join(tmp, 'received.bin'));
  assert.match(x.sent, new RegExp(`^sent ${TRANSFER_BYTES} bytes sha256 ${want} `, 'm'));
  assert.match(x.received, new RegExp(`^received ${TRANSFER_BYTES} bytes sha256 ${want} `, 'm'));
  t.diagnostic(`h1 -> h3: ${x.sent.trim()}`);

  // The switch learned h1's MAC on h1's VTEP port and h3's on its member port; the transfer went through the VTEP port.
  const s = await statusJson(l);
  const vtep1 = s.ports.find((p) => p.name === `vtep:${l.hosts[0]!.underlay}:4789`);
  assert.ok(vtep1, `a port for h1's VTEP: ${JSON.stringify(s.ports.map((p) => p.name))}`);
  assert.equal(vtep1.transport, 'vxlan');
  assert.equal(vtep1.vni, VNI);
  assert.equal(vtep1.address, `${l.hosts[0]!.underlay}:4789`);
  assert.ok(vtep1.macs.some((m) => m.mac === vxMac1), `h1's MAC on its VTEP port: ${JSON.stringify(vtep1.macs)}`);
  assert.ok(vtep1.counters.rxBytes > TRANSFER_BYTES, `the transfer came in on h1's VTEP port: ${JSON.stringify(vtep1.counters)}`);
  const h3 = s.ports.find((p) => p.name === 'h3');
  assert.ok(h3?.macs.some((m) => m.mac === tapMac3), `h3's MAC on h3: ${JSON.stringify(h3)}`);
  assert.equal(s.vxlan?.port, 4789);
  assert.equal(s.vxlan?.malformed, 0);
});

test("a second kernel VTEP sees the first one's broadcasts through the switch; none comes back to the sender", { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await vxlanLan();
  const vxMac1 = linkMac(ns(l, 1), 'vx0');
  // h1's only remote is the switch: an ARP request from h1 reaches h2 only if the switch replicates it to h2's VTEP.
  for (const i of [1, 2]) ns(l, i).ip('neigh', 'flush', 'dev', 'vx0');
  const at2 = await capture(ns(l, 2), 'vx0', ['arp']);
  const at1 = await capture(ns(l, 1), 'vx0', ['arp', 'and', 'ether', 'src', vxMac1]);
  const at3 = await capture(ns(l, 3), 'etl0', ['arp', 'and', 'ether', 'src', vxMac1]);
  assert.equal(await pings(ns(l, 1), ip4(2)), 3, 'h1 -> h2, both kernel VTEPs, through the switch');
  const seen2 = await at2.stop();
  const back1 = await at1.stop();
  const seen3 = await at3.stop();
  assert.match(seen2, new RegExp(`${vxMac1} > ff:ff:ff:ff:ff:ff.*Request who-has ${ip4(2).replace(/\./g, '\\.')}`), `h2 saw h1's broadcast ARP request:\n${seen2}`);
  assert.match(seen3, /Request who-has/, `the vport host saw it too:\n${seen3}`);
  assert.doesNotMatch(back1, /Request/, `h1's own broadcast came back to it:\n${back1}`);
  t.diagnostic(`h2 saw: ${seen2.split('\n').find((x) => /Request/.test(x)) ?? ''}`);
});

test('VXLAN from an unconfigured address, with another VNI or malformed is dropped and counted; nothing of it reaches the LAN', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await vxlanLan();
  const before = (await statusJson(l)).vxlan!;
  const forged = '02:66:66:66:66:01';
  const marker = randomBytes(16);
  const frame = broadcastFrame(forged, Buffer.concat([marker, marker]));
  const watch = await capture(ns(l, 3), 'etl0', ['ether', 'src', forged]);
  const watch2 = await capture(ns(l, 2), 'vx0', ['ether', 'src', forged]);
  // h4 was never configured as a VTEP: right VNI, wrong source.
  await sendRaw(ns(l, 4), l.hosts[3]!.underlay, l.hosts[3]!.switchAddress, Array.from({ length: 5 }, () => vxlanDatagram(VNI, frame)));
  // h1 is a VTEP of VNI 4242 only: another VNI is refused; a short datagram and one without the I flag are malformed.
  await sendRaw(ns(l, 1), l.hosts[0]!.underlay, l.hosts[0]!.switchAddress, [
    ...Array.from({ length: 4 }, () => vxlanDatagram(OTHER_VNI, frame)),
    Buffer.from('0800000000109200', 'hex'),
    vxlanDatagram(VNI, frame, 0x00),
  ]);
  let after = before;
  await waitFor('the drops counted', async () => {
    after = (await statusJson(l)).vxlan!;
    return after.unknownSource - before.unknownSource >= 5 && after.wrongVni - before.wrongVni >= 4 && after.malformed - before.malformed >= 2;
  }, 5_000, 100).catch((err: Error) => {
    throw new Error(`${err.message}: before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`);
  });
  assert.equal(after.unknownSource - before.unknownSource, 5);
  assert.equal(after.wrongVni - before.wrongVni, 4);
  assert.equal(after.malformed - before.malformed, 2);
  const leaked3 = await watch.stop();
  const leaked2 = await watch2.stop();
  assert.doesNotMatch(leaked3, new RegExp(forged), `a dropped frame reached the vport host:\n${leaked3}`);
  assert.doesNotMatch(leaked2, new RegExp(forged), `a dropped frame reached the other VTEP:\n${leaked2}`);
  const s = await statusJson(l);
  assert.ok(!s.macTable.some((m) => m.mac === forged), 'the forged source MAC was not learned');
  // The same frame from a configured VTEP with its VNI is delivered: the drops above were for the reasons counted, not by accident.
  const ok = await capture(ns(l, 3), 'etl0', ['ether', 'src', forged]);
  await sendRaw(ns(l, 1), l.hosts[0]!.underlay, l.hosts[0]!.switchAddress, [vxlanDatagram(VNI, frame)]);
  const got = await ok.stop();
  assert.match(got, new RegExp(forged), `the control frame from h1's VTEP with VNI ${VNI} was not delivered:\n${got}`);
  t.diagnostic(`dropped: unknown source +${after.unknownSource - before.unknownSource}, wrong VNI +${after.wrongVni - before.wrongVni}, malformed +${after.malformed - before.malformed}`);
});

test('a VTEP port learns a whole segment: more MACs than --max-macs-per-port allows a member', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await vxlanLan();
  const HOSTS = 100; // the switch's --max-macs-per-port is 64
  const macs = Array.from({ length: HOSTS }, (_, k) => `02:77:00:00:${(k >> 8).toString(16).padStart(2, '0')}:${(k & 0xff).toString(16).padStart(2, '0')}`);
  await sendRaw(ns(l, 1), l.hosts[0]!.underlay, l.hosts[0]!.switchAddress, macs.map((m) => vxlanDatagram(VNI, broadcastFrame(m, Buffer.from('segment')))));
  let learned = 0;
  await waitFor('the MACs behind h1\'s VTEP learned', async () => {
    const s = await statusJson(l);
    learned = s.ports.find((p) => p.name === `vtep:${l.hosts[0]!.underlay}:4789`)!.macs.filter((m) => m.mac.startsWith('02:77:')).length;
    return learned === HOSTS;
  }, 5_000, 200).catch((err: Error) => {
    throw new Error(`${err.message}: ${learned} of ${HOSTS} learned`);
  });
  t.diagnostic(`${learned} MACs learned on one VTEP port (a member may hold 64)`);
});

test('a kernel VTEP over an IPv6 underlay: MTU 70 below its lower device, pings and a transfer cross with checksums on', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await vxlanLan();
  const mtu = Number(/mtu (\d+)/.exec(ns(l, 5).ip('link', 'show', 'vx0').stdout)?.[1]);
  assert.equal(mtu, 1500 - 70, 'the kernel gives a VXLAN device over IPv6 an MTU 70 below its lower device');
  assert.equal(await pings(ns(l, 5), ip4(3)), 3, 'h5 (VXLAN over IPv6) -> h3 (vport)');
  assert.equal(await pings(ns(l, 5), ip4(1)), 3, 'h5 (over IPv6) -> h1 (over IPv4), VTEP to VTEP through the switch');
  // Full-size frames: a 1430-byte ping fills h5's VXLAN MTU exactly, and the switch's IPv6 datagrams (with the checksum the kernel requires) arrive.
  const big = await execIn(ns(l, 5), 'ping', ['-c', '2', '-W', '2', '-M', 'do', '-s', String(1430 - 28), ip4(3)], 10_000);
  assert.match(big.out, /2 received/, `full-size frames over IPv6:\n${big.out}${big.err}`);
  const size = 2 * 1024 * 1024;
  const file = join(tmp, 'v6.bin');
  writeFileSync(file, randomBytes(size));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const x = await transferFile(ns(l, 5), ns(l, 3), ip4(3), 5003, file, join(tmp, 'v6-received.bin'), 30_000);
  assert.match(x.received, new RegExp(`^received ${size} bytes sha256 ${want} `, 'm'));
  const s = await statusJson(l);
  const v6 = s.ports.find((p) => p.name === `vtep:[${V6_HOST}]:4789`);
  assert.ok(v6 && v6.counters.rxBytes > size, `the IPv6 VTEP's port carried it: ${JSON.stringify(v6?.counters)}`);
  assert.equal(v6.txTooBig ?? 0, 0, 'nothing was too big for the IPv6 underlay');
  t.diagnostic(`IPv6 VTEP: MTU ${mtu}, ${size} bytes intact`);
});

test('a kernel VTEP over IPv6 that sends zero UDP checksums (udp6zerocsumtx) is accepted, as RFC 7348 asks; the switch still sends it checksums', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await vxlanLan();
  const h6 = ns(l, 6);
  const onWire = l.sw.spawn('tcpdump', ['-i', 's6', '-nn', '-vv', '-l', '--immediate-mode', 'udp', 'port', '4789']);
  const wire = collect(onWire);
  await waitForOutput(onWire, /listening on/, 10_000);
  assert.equal(await pings(h6, ip4(3)), 3, 'h6 (zero checksums over IPv6) -> h3 (vport)');
  await new Promise((r) => setTimeout(r, 300));
  onWire.kill('SIGINT');
  await waitExit(onWire, 5_000);
  const out = wire.out();
  // tcpdump calls a zero IPv6 checksum bad ("bad udp cksum 0x0000 -> ..."); the switch's own show the value its
  // send left for the veth's checksum offload to finish (bad on this side of the veth, but never 0).
  const sums = (src: string, dst: string): string[] =>
    [...out.matchAll(new RegExp(`${re(src)}\\.\\d+ > ${re(dst)}\\.4789: \\[(?:udp sum ok|bad udp cksum (0x[0-9a-f]+))`, 'g'))].map((m) => m[1] ?? 'ok');
  const from = sums(V6_ZERO_HOST, V6_ZERO_SWITCH);
  const to = sums(V6_ZERO_SWITCH, V6_ZERO_HOST);
  assert.ok(from.length >= 3 && from.every((c) => c === '0x0000'), `h6 sent zero checksums over IPv6:\n${out}`);
  assert.ok(to.length >= 3 && to.every((c) => c !== '0x0000'), `the switch answered with checksums over IPv6:\n${out}`);
  const s = await statusJson(l);
  const port = s.ports.find((p) => p.name === `vtep:[${V6_ZERO_HOST}]:4789`);
  assert.ok(port && port.counters.rxFrames >= 3, `the zero-checksum VTEP's frames were delivered: ${JSON.stringify(port?.counters)}`);
  t.diagnostic(`h6: ${from.length} zero-checksum datagrams in, ${to.length} checksummed out`);
});

test('status, metrics and the capture show VTEP ports like member ports', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await vxlanLan();
  // What the switch sends h2's VTEP: to port 4789, from a pool source port, with a zero UDP checksum over IPv4 (RFC 7348, the kernel's default).
  const wire = l.hosts[1]!;
  const onWire = wire.ns.spawn('tcpdump', ['-i', 'u2', '-Q', 'in', '-nn', '-vv', '-l', '--immediate-mode', 'udp', 'and', 'dst', 'port', '4789', 'and', 'src', 'host', wire.switchAddress]);
  const wireOut = collect(onWire);
  await waitForOutput(onWire, /listening on/, 10_000);
  assert.equal(await pings(ns(l, 2), ip4(3), 1), 1, 'h2 -> h3');
  await new Promise((r) => setTimeout(r, 300));
  onWire.kill('SIGINT');
  await waitExit(onWire, 5_000);
  const sent = [...wireOut.out().matchAll(new RegExp(`${wire.switchAddress.replace(/\./g, '\\.')}\\.(\\d+) > ${wire.underlay.replace(/\./g, '\\.')}\\.4789: \\[(no cksum|bad udp cksum[^\\]]*|udp sum ok)\\]`, 'g'))];
  assert.ok(sent.length > 0, `the switch sent h2's VTEP VXLAN datagrams:\n${wireOut.out()}`);
  assert.ok(sent.every((m) => m[2] === 'no cksum'), `zero UDP checksums over IPv4:\n${wireOut.out()}`);
  const pool = (await statusJson(l)).vxlan!.sourcePorts;
  assert.ok(sent.every((m) => pool.includes(Number(m[1]))), `from the pool's source ports ${pool.join(',')}:\n${wireOut.out()}`);
  const human = spawnTracked(process.execPath, [bin('vswitch'), 'status', '--control', l.control]);
  const o = collect(human);
  assert.equal(await waitExit(human, 10_000), 0, o.err());
  assert.match(o.out(), new RegExp(`vtep:${l.hosts[1]!.underlay.replace(/\./g, '\\.')}:4789[\\s\\S]*address\\s+${l.hosts[1]!.underlay.replace(/\./g, '\\.')}:4789 over VXLAN, VNI ${VNI}`), o.out());
  assert.match(o.out(), /VXLAN: UDP 4789 \(source ports [\d,]+\)/);
  // The metrics listen on loopback inside the switch's namespace: scrape from there.
  const scrape = l.sw.spawn(process.execPath, ['-e', `fetch(${JSON.stringify(l.metrics)}).then(r => r.text()).then(t => process.stdout.write(t))`]);
  const mo = collect(scrape);
  assert.equal(await waitExit(scrape, 10_000), 0, mo.err());
  assert.match(mo.out(), /^etherlink_switch_vteps 4$/m, 'four VTEP ports in the metrics');
  assert.match(mo.out(), new RegExp(`^etherlink_switch_port_frames_total\\{network="default",port="vtep:${l.hosts[1]!.underlay.replace(/\./g, '\\.')}:4789",direction="rx"\\} [1-9]`, 'm'), 'VTEP port counters in the metrics');
  assert.match(mo.out(), /^etherlink_switch_vxlan_datagrams_total\{result="delivered"\} [1-9]/m);
  // The capture names each VTEP port as an interface, like a member port.
  await waitFor('the capture to name the VTEP interfaces', () => {
    const text = readFileSync(l.pcap).toString('latin1');
    return text.includes(`vtep:${l.hosts[0]!.underlay}:4789`) && text.includes(`vtep:${l.hosts[1]!.underlay}:4789`);
  }, 5_000, 200);
  t.diagnostic('status, metrics and capture list the VTEP ports');
});
