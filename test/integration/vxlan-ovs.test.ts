// The vswitch as a VXLAN VTEP (issue 15), against Open vSwitch: a private OVS
// (its own database and daemons, in a namespace of this test) on the userspace
// datapath with native tunneling, so no openvswitch kernel module is needed. A
// host behind OVS and a vport host resolve each other by ARP, ping and move
// 20 MB each way with equal SHA-256; the switch shows OVS as a VTEP port and
// OVS's datapath shows the frames pushed into and popped out of its VXLAN
// port. A kernel VXLAN host and the OVS host see each other's broadcasts.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, collect, ensureTools, Netns, requireRoot, run, runTag, spawnTracked, waitExit, waitFor, type StarHost } from '../helpers/netns.js';
import type { SwitchStatusReport } from '../../lib/daemon/status.js';
import { bin, capture, execIn, lanKeys, linkMac, neighbour, startPort, startSwitch, transferFile } from '../helpers/lan.js';

const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-vxovs-'));
const VNI = 4242;
const ip4 = (i: number): string => `10.99.0.${i}`;
const TRANSFER_BYTES = 20 * 1024 * 1024;
/** Debian's openvswitch-common puts the schema here; `ovsdb-tool create` makes the private database from it. */
const OVS_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const OVS_TOOLS = ['ovsdb-tool', 'ovsdb-server', 'ovs-vswitchd', 'ovs-vsctl', 'ovs-appctl', 'ovs-ofctl'];
/** VXLAN over IPv4 adds 50 bytes: the OVS host's MTU that fits the 1500-byte underlay, as a kernel vxlan device sets its own. */
const INNER_MTU = 1450;
/** Waits for OVS's own replies (ovs-vsctl waits for ovs-vswitchd to apply a change). */
const OVS_TIMEOUT_S = 10;

/** A private Open vSwitch: database, sockets, pidfiles and logs under `dir`; nothing of a system-wide OVS is touched. */
interface Ovs {
  dir: string;
  vsctl: (...args: string[]) => string;
  appctl: (...args: string[]) => string;
  ofctl: (...args: string[]) => string;
  /** The end of ovs-vswitchd's log, for a failure message. */
  log: () => string;
}

interface OvsLan {
  sw: Netns;
  hosts: StarHost[];
  /** h1: runs OVS; its veth to the switch is a port of br-phy, and its underlay address lives on br-phy. */
  ovsHost: StarHost;
  /** The host behind OVS, as a VM on a tap would be: its only link, eth0, is a veth into br-int. */
  vm: Netns;
  ovs: Ovs;
  vswitch: ChildProcess;
  control: string;
}

/** The OVS daemons this file started, stopped gently before cleanup() kills the rest. */
const ovsDaemons: ChildProcess[] = [];
after(async () => {
  // SIGTERM first: ovs-vswitchd and ovsdb-server remove their sockets and pidfiles; cleanup() SIGKILLs what is left.
  for (const d of [...ovsDaemons].reverse()) {
    if (d.exitCode === null && d.signalCode === null) {
      d.kill('SIGTERM');
      await waitExit(d, 5_000).catch(() => {});
    }
  }
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

let ovsMissing: string | undefined | null = null;
/** Why OVS cannot run here (after installing openvswitch-switch if missing), or undefined when it can. */
function ovsUnavailable(): string | undefined {
  if (ovsMissing !== null) return ovsMissing;
  try {
    ensureTools({ 'ovs-vsctl': 'openvswitch-switch' });
  } catch (err) {
    return (ovsMissing = `needs Open vSwitch, and installing it failed: ${(err as Error).message.split('\n')[0]}`);
  }
  const absent = OVS_TOOLS.filter((b) => run('sh', ['-c', `command -v ${b}`], { allowFail: true }).status !== 0);
  if (absent.length > 0) return (ovsMissing = `needs Open vSwitch: ${absent.join(', ')} missing after installing openvswitch-switch`);
  if (!existsSync(OVS_SCHEMA)) return (ovsMissing = `needs Open vSwitch's database schema at ${OVS_SCHEMA}`);
  // The userspace datapath makes each bridge's own port a TAP device.
  if (!existsSync('/dev/net/tun')) return (ovsMissing = "needs /dev/net/tun for OVS's userspace datapath");
  return (ovsMissing = undefined);
}

/** Skip (with the reason) when OVS cannot run here — except under CI=true, where a skip would hide a failure. */
function requireOvs(t: TestContext): boolean {
  const why = ovsUnavailable();
  if (why === undefined) return true;
  if (process.env.CI === 'true') throw new Error(`CI=true but this test ${why}`);
  t.skip(why);
  return false;
}

/**
 * Start ovsdb-server and ovs-vswitchd in `ns`, in the foreground and tracked
 * by PID. OVS_RUNDIR and friends point every default path (the bridges'
 * OpenFlow sockets too) at `dir`; --disable-system keeps ovs-vswitchd off any
 * kernel datapath, so only the userspace one (datapath_type=netdev) exists.
 */
async function startOvs(ns: Netns, dir: string): Promise<Ovs> {
  const env = { ...process.env, OVS_RUNDIR: dir, OVS_DBDIR: dir, OVS_LOGDIR: dir, OVS_SYSCONFDIR: dir };
  const db = join(dir, 'conf.db');
  const sock = join(dir, 'db.sock');
  const ctl = join(dir, 'vswitchd.ctl');
  const logFile = join(dir, 'vswitchd.log');
  const quiet = ['-vconsole:warn', '-vsyslog:off', '-vfile:info'];
  const log = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n') : '(no log)');
  const tool = (cmd: string, args: readonly string[]): string => {
    const r = run(cmd, args, { env, allowFail: true, timeoutMs: (OVS_TIMEOUT_S + 5) * 1000 });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}\novs-vswitchd log:\n${log()}`);
    return r.stdout;
  };
  run('ovsdb-tool', ['create', db, OVS_SCHEMA], { env });
  const ovsdb = ns.spawn('ovsdb-server', [db, `--remote=punix:${sock}`, `--unixctl=${join(dir, 'ovsdb.ctl')}`, `--pidfile=${join(dir, 'ovsdb.pid')}`, `--log-file=${join(dir, 'ovsdb.log')}`, ...quiet], { env });
  ovsDaemons.push(ovsdb);
  await waitFor('ovsdb-server to listen', () => existsSync(sock) || ovsdb.exitCode !== null, 10_000);
  assert.ok(existsSync(sock), `ovsdb-server exited (${ovsdb.exitCode}): ${collect(ovsdb).err()}`);
  const vsctl = (...args: string[]): string => tool('ovs-vsctl', [`--db=unix:${sock}`, `--timeout=${OVS_TIMEOUT_S}`, ...args]);
  vsctl('--no-wait', 'init');
  ovsDaemons.push(ns.spawn('ovs-vswitchd', [`unix:${sock}`, `--unixctl=${ctl}`, `--pidfile=${join(dir, 'vswitchd.pid')}`, `--log-file=${logFile}`, '--disable-system', ...quiet], { env }));
  return {
    dir,
    vsctl,
    appctl: (...args) => tool('ovs-appctl', ['-t', ctl, `--timeout=${OVS_TIMEOUT_S}`, ...args]),
    ofctl: (...args) => tool('ovs-ofctl', [`--timeout=${OVS_TIMEOUT_S}`, ...args]),
    log,
  };
}

/**
 * The counters of port `name` of `bridge` as OpenFlow reports them (the
 * database's statistics column is refreshed only every few seconds).
 */
function portCounters(o: Ovs, bridge: string, name: string): { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number } {
  const out = o.ofctl('dump-ports', `unix:${join(o.dir, `${bridge}.mgmt`)}`, name);
  const rx = /rx pkts=(\d+), bytes=(\d+)/.exec(out);
  const tx = /tx pkts=(\d+), bytes=(\d+)/.exec(out);
  assert.ok(rx && tx, `counters of ${bridge} ${name}:\n${out}`);
  return { rxPackets: Number(rx[1]), rxBytes: Number(rx[2]), txPackets: Number(tx[1]), txBytes: Number(tx[2]) };
}

/** The bytes of the datapath flows (`dpctl/dump-flows`) whose actions hold `action`. */
function flowBytes(flows: string, action: string): number {
  let sum = 0;
  for (const line of flows.split('\n')) {
    const m = /, bytes:(\d+),.*actions:(.*)$/.exec(line);
    if (m && m[2]!.includes(action)) sum += Number(m[1]);
  }
  return sum;
}

let shared: Promise<OvsLan> | undefined;
/**
 * h1 runs OVS; the VM namespace hangs off its br-int; h2 is a kernel VXLAN
 * host (vx0, VNI 4242, the switch its only remote); h3 is a vport. The
 * switch is a secure vswitch with --vxlan and both VTEPs.
 */
function ovsLan(): Promise<OvsLan> {
  shared ??= buildOvsLan();
  shared.catch(() => {});
  return shared;
}

async function buildOvsLan(): Promise<OvsLan> {
  ensureTools({ ping: 'iputils-ping', tcpdump: 'tcpdump', ethtool: 'ethtool' });
  const k = lanKeys();
  const allow = join(tmp, 'allow');
  writeFileSync(allow, `${k.portPub(3)} h3\n`);
  const { sw, hosts } = buildStar(tag, 3);
  const ovsHost = hosts[0]!;
  const h = ovsHost.ns;
  const vm = Netns.create('vm', tag);
  run('ip', ['link', 'add', 'eth0', 'netns', vm.name, 'mtu', String(INNER_MTU), 'type', 'veth', 'peer', 'name', 'vm0', 'netns', h.name, 'mtu', String(INNER_MTU)]);
  vm.ip('addr', 'add', `${ip4(1)}/24`, 'dev', 'eth0');
  vm.ip('link', 'set', 'eth0', 'up');
  // As with a kernel VTEP over veth: the VM's TCP checksums would be left for a NIC that never comes (OVS reads
  // vm0 with a packet socket and forwards the frame as it is), so the VM computes them itself.
  vm.exec('ethtool', ['-K', 'eth0', 'tx', 'off']);
  h.ip('link', 'set', 'vm0', 'up');

  const dir = mkdtempSync(join(tmp, 'ovs-'));
  const ovs = await startOvs(h, dir);
  // Native tunneling (Documentation/howto/userspace-tunneling.rst): the underlay address on br-phy, whose route
  // and neighbour OVS looks up to build the outer headers; the tunnel port and the VM's port on br-int.
  // Each ovs-vsctl below returns once ovs-vswitchd has applied it: the first is also the wait for the daemon.
  h.ip('addr', 'del', `${ovsHost.underlay}/24`, 'dev', 'u1');
  ovs.vsctl('add-br', 'br-phy', '--', 'set', 'bridge', 'br-phy', 'datapath_type=netdev', 'fail-mode=standalone', '--', 'add-port', 'br-phy', 'u1');
  h.ip('addr', 'add', `${ovsHost.underlay}/24`, 'dev', 'br-phy');
  h.ip('link', 'set', 'br-phy', 'up');
  ovs.vsctl(
    'add-br', 'br-int', '--', 'set', 'bridge', 'br-int', 'datapath_type=netdev', 'fail-mode=standalone',
    '--', 'add-port', 'br-int', 'vm0',
    '--', 'add-port', 'br-int', 'vx0', '--', 'set', 'interface', 'vx0', 'type=vxlan', `options:remote_ip=${ovsHost.switchAddress}`, `options:key=${VNI}`, 'options:dst_port=4789',
  );
  // OVS learns the route from the kernel's table of its namespace, asynchronously.
  await waitFor('OVS to route the switch address via br-phy', () => /dev br-phy/.test(ovs.appctl('ovs/route/lookup', ovsHost.switchAddress)), 10_000, 100).catch((err: Error) => {
    throw new Error(`${err.message}:\n${ovs.appctl('ovs/route/show')}\n${ovs.log()}`);
  });
  assert.match(ovs.appctl('tnl/ports/show'), /vxlan_sys_4789/, 'OVS listens for VXLAN on 4789');

  const kernel = hosts[1]!;
  kernel.ns.ip('link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'remote', kernel.switchAddress, 'local', kernel.underlay, 'dstport', '4789', 'dev', 'u2');
  kernel.ns.ip('addr', 'add', `${ip4(2)}/24`, 'dev', 'vx0');
  kernel.ns.ip('link', 'set', 'vx0', 'up');
  kernel.ns.exec('ethtool', ['-K', 'vx0', 'tx', 'off']);

  const control = join(tmp, 'vswitch.sock');
  const vswitch = await startSwitch(sw, ['--key', k.switchKey, '--allow', allow, '--control', control, '--vxlan', '4789', '--vni', String(VNI), '--vtep', ovsHost.underlay, '--vtep', kernel.underlay]);
  await startPort(hosts[2]!, 3);
  return { sw, hosts, ovsHost, vm, ovs, vswitch, control };
}

async function statusJson(l: OvsLan): Promise<SwitchStatusReport> {
  const child = spawnTracked(process.execPath, [bin('vswitch'), 'status', '--control', l.control, '--json']);
  const o = collect(child);
  assert.equal(await waitExit(child, 10_000), 0, `vswitch status failed: ${o.err()}`);
  return JSON.parse(o.out()) as SwitchStatusReport;
}

async function pings(n: Netns, address: string, count = 3, extra: readonly string[] = []): Promise<number> {
  const r = await execIn(n, 'ping', ['-c', String(count), '-i', '0.2', '-W', '2', ...extra, address], 15_000);
  const m = /(\d+) received/.exec(r.out);
  return m ? Number(m[1]) : 0;
}

const re = (s: string): string => s.replace(/[.()]/g, '\\$&');

test('an Open vSwitch host and a vport host: ARP both ways, ping, and 20 MB each way with equal SHA-256, over OVS\'s VXLAN port', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t) || !requireOvs(t)) return;
  const l = await ovsLan();
  const h3 = l.hosts[2]!.ns;
  const vmMac = linkMac(l.vm, 'eth0');
  const tapMac3 = linkMac(h3, 'etl0');
  assert.equal(await pings(l.vm, ip4(3)), 3, 'OVS host -> h3 (vport)');
  // h3 learned the OVS host from its ARP request: forget it, so that h3's own request has to cross OVS too.
  h3.ip('neigh', 'flush', 'dev', 'etl0');
  assert.equal(await pings(h3, ip4(1)), 3, 'h3 (vport) -> OVS host');
  assert.equal(neighbour(l.vm, 'eth0', ip4(3)), tapMac3, "the OVS host resolved h3's address to h3's TAP MAC");
  assert.equal(neighbour(h3, 'etl0', ip4(1)), vmMac, "h3 resolved the OVS host's address to its eth0 MAC");

  const before = portCounters(l.ovs, 'br-int', 'vx0');
  const file = join(tmp, 'payload.bin');
  writeFileSync(file, randomBytes(TRANSFER_BYTES));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const x = await transferFile(l.vm, h3, ip4(3), 5001, file, join(tmp, 'received.bin'));
  assert.match(x.sent, new RegExp(`^sent ${TRANSFER_BYTES} bytes sha256 ${want} `, 'm'));
  assert.match(x.received, new RegExp(`^received ${TRANSFER_BYTES} bytes sha256 ${want} `, 'm'));
  const y = await transferFile(h3, l.vm, ip4(1), 5002, file, join(tmp, 'received-back.bin'));
  assert.match(y.received, new RegExp(`^received ${TRANSFER_BYTES} bytes sha256 ${want} `, 'm'));
  t.diagnostic(`OVS host -> h3: ${/^received .*$/m.exec(x.received)?.[0]}; h3 -> OVS host: ${/^received .*$/m.exec(y.received)?.[0]}`);

  // OVS's side: the datapath pushed VXLAN headers (VNI 4242, to the switch) and popped them; vx0 counted both ways.
  const flows = l.ovs.appctl('dpctl/dump-flows');
  const { underlay, switchAddress } = l.ovsHost;
  const push = new RegExp(`tnl_push\\(tnl_port\\(\\d+\\),header\\(size=50,type=4,eth\\([^)]*\\),ipv4\\(src=${re(underlay)},dst=${re(switchAddress)},proto=17[^)]*\\),udp\\([^)]*dst=4789[^)]*\\),vxlan\\(flags=0x8000000,vni=0x${VNI.toString(16)}\\)\\)`);
  assert.match(flows, push, `a datapath flow encapsulates toward the switch:\n${flows}`);
  assert.match(flows, new RegExp(`ipv4\\(dst=${re(underlay)},proto=17,frag=no\\),udp\\(dst=4789\\), packets:[1-9]\\d*,.*actions:tnl_pop\\(\\d+\\)`), `a datapath flow decapsulates what the switch sends:\n${flows}`);
  assert.match(flows, new RegExp(`tunnel\\(tun_id=0x${VNI.toString(16)},src=${re(switchAddress)},dst=${re(underlay)}`), `frames came out of the tunnel from the switch with VNI ${VNI}:\n${flows}`);
  const neigh = l.ovs.appctl('tnl/neigh/show');
  assert.match(neigh, new RegExp(`^${re(switchAddress)}\\s+${linkMac(l.sw, 's1')}\\s+br-phy`, 'm'), `OVS resolved the switch's underlay address on br-phy by ARP:\n${neigh}`);
  const pushed = flowBytes(flows, 'tnl_push(');
  const popped = flowBytes(flows, 'tnl_pop(');
  // A datapath flow may be replaced (revalidation) and start counting afresh: its bytes show traffic, the port's counters the volume.
  assert.ok(pushed > 0 && popped > 0, `traffic crossed OVS's tunnel both ways: ${pushed} bytes pushed, ${popped} popped:\n${flows}`);
  // The port's own counters are credited from those flows by OVS's revalidators, a moment later.
  let vx = before;
  await waitFor("OVS's vx0 counters to take the transfers", () => {
    vx = portCounters(l.ovs, 'br-int', 'vx0');
    return vx.txBytes - before.txBytes > TRANSFER_BYTES && vx.rxBytes - before.rxBytes > TRANSFER_BYTES;
  }, 5_000, 200).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(before)} -> ${JSON.stringify(vx)}`);
  });
  // The switch's side: OVS is a VTEP port holding the OVS host's MAC; both transfers crossed it.
  const s = await statusJson(l);
  const vtep = s.ports.find((p) => p.name === `vtep:${underlay}:4789`);
  assert.ok(vtep, `a port for OVS's VTEP: ${JSON.stringify(s.ports.map((p) => p.name))}`);
  assert.equal(vtep.transport, 'vxlan');
  assert.equal(vtep.vni, VNI);
  assert.ok(vtep.macs.some((m) => m.mac === vmMac), `the OVS host's MAC on OVS's VTEP port: ${JSON.stringify(vtep.macs)}`);
  assert.ok(vtep.counters.rxBytes > TRANSFER_BYTES, `the transfer came in on OVS's VTEP port: ${JSON.stringify(vtep.counters)}`);
  assert.ok(vtep.counters.txBytes > TRANSFER_BYTES, `the transfer back went out on OVS's VTEP port: ${JSON.stringify(vtep.counters)}`);
  assert.equal(s.vxlan?.malformed, 0);
  assert.equal(s.vxlan?.unknownSource, 0, 'OVS sent from the address the switch knows it by');
  t.diagnostic(`OVS datapath: ${pushed} bytes pushed into VXLAN, ${popped} popped; vx0: rx ${vx.rxPackets} packets ${vx.rxBytes} bytes, tx ${vx.txPackets} packets ${vx.txBytes} bytes; switch port ${vtep.name}: rx ${vtep.counters.rxBytes}, tx ${vtep.counters.txBytes} bytes`);
});

test("a kernel VXLAN host and the OVS host see each other's broadcasts through the switch; none comes back; full-size frames fit", { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t) || !requireOvs(t)) return;
  const l = await ovsLan();
  const kernel = l.hosts[1]!.ns;
  const vmMac = linkMac(l.vm, 'eth0');
  const vxMac = linkMac(kernel, 'vx0');
  // Each has the switch as its only remote: a broadcast from one reaches the other only if the switch replicates it.
  for (const [n, dev] of [[l.vm, 'eth0'], [kernel, 'vx0']] as const) n.ip('neigh', 'flush', 'dev', dev);
  const atKernel = await capture(kernel, 'vx0', ['arp', 'and', 'ether', 'src', vmMac]);
  const backAtVm = await capture(l.vm, 'eth0', ['arp', 'and', 'ether', 'src', vmMac]);
  assert.equal(await pings(l.vm, ip4(2)), 3, 'OVS host -> h2 (kernel VXLAN), VTEP to VTEP through the switch');
  const seenKernel = await atKernel.stop();
  const back = await backAtVm.stop();
  assert.match(seenKernel, new RegExp(`${vmMac} > ff:ff:ff:ff:ff:ff.*Request who-has ${re(ip4(2))}`), `h2 saw the OVS host's broadcast ARP request:\n${seenKernel}`);
  assert.doesNotMatch(back, /Request/, `the OVS host's own broadcast came back to it:\n${back}`);

  for (const [n, dev] of [[l.vm, 'eth0'], [kernel, 'vx0']] as const) n.ip('neigh', 'flush', 'dev', dev);
  const atVm = await capture(l.vm, 'eth0', ['arp', 'and', 'ether', 'src', vxMac]);
  assert.equal(await pings(kernel, ip4(1)), 3, 'h2 (kernel VXLAN) -> OVS host');
  const seenVm = await atVm.stop();
  assert.match(seenVm, new RegExp(`${vxMac} > ff:ff:ff:ff:ff:ff.*Request who-has ${re(ip4(1))}`), `the OVS host saw h2's broadcast ARP request:\n${seenVm}`);
  assert.equal(neighbour(l.vm, 'eth0', ip4(2)), vxMac, "the OVS host resolved h2 to h2's vx0 MAC");
  assert.equal(neighbour(kernel, 'vx0', ip4(1)), vmMac, "h2 resolved the OVS host to its eth0 MAC");

  // A frame that fills the OVS host's MTU, with DF: 1450 inside, 1500 on the underlay both at OVS and at the switch.
  assert.equal(await pings(l.vm, ip4(2), 2, ['-M', 'do', '-s', String(INNER_MTU - 28)]), 2, `full-size (${INNER_MTU}-byte) packets OVS host <-> h2`);
  const s = await statusJson(l);
  for (const p of s.ports.filter((x) => x.transport === 'vxlan')) assert.equal(p.txTooBig ?? 0, 0, `${p.name}: nothing too big for the underlay`);
  t.diagnostic(`h2 saw: ${seenKernel.split('\n').find((x) => /Request/.test(x)) ?? ''}`);
  t.diagnostic(`OVS host saw: ${seenVm.split('\n').find((x) => /Request/.test(x)) ?? ''}`);
});
