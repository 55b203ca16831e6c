// `vswitch status` and `vport status` against a real 3-host LAN (encrypted, the
// default): the control socket reports the right ports, keys, MACs and counters
// that grow with traffic; it is private (0600) and gone when the daemon exits.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, ensureTools, requireRoot, runTag, waitExit, waitFor, waitForOutput, type Netns, type StarHost } from '../helpers/netns.js';
import { bin, execIn, lanKeys, linkMac, startPort, startSwitch, switchKeyArgs, type ExecResult, sharedLan, type Lan } from '../helpers/lan.js';
import type { PortStatusReport, SwitchStatusReport } from '../../lib/daemon/status.js';

const HOSTS = 3;
const ip4 = (i: number): string => `10.99.0.${i}`;
const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-status-'));
const swSock = join(tmp, 'vswitch.sock');
const portSock = (i: number): string => join(tmp, `vport-h${i}.sock`);

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const lan = sharedLan(tag, HOSTS, { vswitch: ['--control', swSock], vport: (i) => ['--control', portSock(i)] });

const host = (l: Lan, i: number): Netns => l.hosts[i - 1]!.ns;

async function cli(ns: Netns, prog: 'vswitch' | 'vport', args: string[]): Promise<ExecResult> {
  return execIn(ns, process.execPath, [bin(prog), ...args], 15_000);
}

async function switchJson(l: Lan): Promise<SwitchStatusReport> {
  const r = await cli(l.sw, 'vswitch', ['status', '--control', swSock, '--json']);
  assert.equal(r.status, 0, r.err);
  return JSON.parse(r.out) as SwitchStatusReport;
}

const byName = (s: SwitchStatusReport, name: string): SwitchStatusReport['ports'][number] => {
  const p = s.ports.find((x) => x.name === name);
  assert.ok(p, `port ${name} in ${s.ports.map((x) => x.name).join(',')}`);
  return p;
};

async function pings(from: Netns, to: string, count: number, size = 56): Promise<void> {
  const r = await execIn(from, 'ping', ['-c', String(count), '-i', '0.01', '-s', String(size), '-W', '2', to], 20_000);
  assert.match(r.out, new RegExp(`${count} received`), r.out + r.err);
}

test('vswitch status --json: the ports by name and key, their MACs, counters that grow with traffic', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  // Every host talks once, so the switch has learned every etl0.
  for (const [a, b] of [[1, 2], [2, 3], [3, 1]] as const) await pings(host(l, a), ip4(b), 1);

  const before = await switchJson(l);
  assert.equal(before.kind, 'vswitch');
  assert.equal(before.mode, 'secure');
  assert.deepEqual(before.ports.map((p) => p.name).sort(), ['h1', 'h2', 'h3']);
  const keys = lanKeys();
  for (let i = 1; i <= HOSTS; i++) {
    const p = byName(before, `h${i}`);
    assert.equal(p.publicKey, keys.portPub(i), `h${i}'s key is the allow file's`);
    assert.match(p.address, new RegExp(`^10\\.250\\.${i}\\.2:\\d+$`), `h${i}'s underlay address`);
    assert.ok(p.joinedAt !== undefined && Date.parse(p.joinedAt) <= Date.parse(before.time), `joinedAt ${p.joinedAt}`);
    assert.equal(typeof p.lastSeenS, 'number');
    assert.equal(typeof p.lastHandshakeS, 'number');
    assert.deepEqual(p.macs.map((m) => m.mac), [linkMac(host(l, i), 'etl0')], `h${i}'s learned MACs are its etl0`);
    assert.ok(before.macTable.some((m) => m.mac === linkMac(host(l, i), 'etl0') && m.portName === `h${i}`));
  }

  const N = 50;
  const SIZE = 1000;
  await pings(host(l, 1), ip4(2), N, SIZE);
  const now = await switchJson(l);
  const [h1a, h1b, h2a, h2b, h3a, h3b] = [byName(before, 'h1'), byName(now, 'h1'), byName(before, 'h2'), byName(now, 'h2'), byName(before, 'h3'), byName(now, 'h3')];
  // Each echo request and reply is one frame of SIZE + 8 (ICMP) + 20 (IP) + 14 (Ethernet) bytes;
  // end to end it crosses the switch as one datagram of 32 bytes more, relayed unopened.
  const frame = SIZE + 42;
  const datagram = frame + 32;
  const relayed = (a: typeof h1a, b: typeof h1a, k: 'fromFrames' | 'fromBytes' | 'toFrames' | 'toBytes'): number => b.relayed![k] - a.relayed![k];
  assert.ok(relayed(h1a, h1b, 'fromFrames') >= N - 2, `relayed from h1 ${JSON.stringify(h1a.relayed)} -> ${JSON.stringify(h1b.relayed)}`);
  assert.ok(relayed(h1a, h1b, 'fromBytes') >= (N - 2) * datagram, `relayed bytes from h1 ${h1a.relayed!.fromBytes} -> ${h1b.relayed!.fromBytes}`);
  assert.ok(relayed(h1a, h1b, 'toBytes') >= (N - 2) * datagram, `relayed bytes to h1 ${h1a.relayed!.toBytes} -> ${h1b.relayed!.toBytes}`);
  assert.ok(relayed(h2a, h2b, 'toBytes') >= (N - 2) * datagram, `relayed bytes to h2 ${h2a.relayed!.toBytes} -> ${h2b.relayed!.toBytes}`);
  assert.ok(relayed(h2a, h2b, 'fromFrames') >= N - 2, `relayed from h2 ${JSON.stringify(h2a.relayed)} -> ${JSON.stringify(h2b.relayed)}`);
  // Learned unicast: h3 gets none of it, neither switched nor relayed.
  assert.ok(h3b.counters.txBytes - h3a.counters.txBytes < N * frame, `h3 tx bytes ${h3a.counters.txBytes} -> ${h3b.counters.txBytes}`);
  assert.ok(relayed(h3a, h3b, 'toBytes') < N * frame, `relayed to h3 ${h3a.relayed!.toBytes} -> ${h3b.relayed!.toBytes}`);
  // What the switch itself switched (not relayed) plus what it relayed covers both directions.
  const switched = now.totals.rxBytes - before.totals.rxBytes;
  t.diagnostic(`switched ${switched} B, relayed from h1 ${relayed(h1a, h1b, 'fromBytes')} B, from h2 ${relayed(h2a, h2b, 'fromBytes')} B`);
});

test('vswitch status for humans names every port with its key, address and MACs', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  const r = await cli(l.sw, 'vswitch', ['status', '--control', swSock]);
  assert.equal(r.status, 0, r.err);
  t.diagnostic(`vswitch status:\n${r.out}`);
  assert.match(r.out, /^vswitch \(pid \d+\): secure \(chacha20-poly1305\), UDP 9999, 3 ports/);
  assert.match(r.out, /^ {2}switch key {6}[A-Za-z0-9+/]{43}=$/m);
  for (let i = 1; i <= HOSTS; i++) {
    assert.match(r.out, new RegExp(`^ {2}\\d+ {2}h${i}$`, 'm'), `a block for h${i}`);
    assert.ok(r.out.includes(lanKeys().portPub(i)), `h${i}'s public key`);
    assert.match(r.out, new RegExp(`address +10\\.250\\.${i}\\.2:\\d+`));
    assert.ok(r.out.includes(linkMac(host(l, i), 'etl0')), `h${i}'s MAC`);
  }
  for (const label of ['joined', 'last seen', 'last handshake', 'in', 'out', 'drops']) assert.match(r.out, new RegExp(`^ {6}${label} +\\S`, 'm'));
  assert.match(r.out, /^MAC TABLE \(\d+\)$/m);
  assert.match(r.out, /^ {2}protocol: handshakes \d+/m);
});

test('vport status --json on h1: joined, an RTT, its switch; the human form says the same', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  let s: PortStatusReport | undefined;
  await waitFor(
    'an RTT in vport status',
    async () => {
      const r = await cli(host(l, 1), 'vport', ['status', '--control', portSock(1), '--json']);
      assert.equal(r.status, 0, r.err);
      s = JSON.parse(r.out) as PortStatusReport;
      return s.rttMs !== undefined;
    },
    15_000,
    500,
  );
  assert.equal(s!.kind, 'vport');
  assert.equal(s!.state, 'joined');
  assert.equal(s!.mode, 'secure');
  assert.equal(s!.device, 'etl0');
  assert.equal(s!.switch, `${l.hosts[0]!.switchAddress}:9999`);
  assert.equal(s!.mac, linkMac(host(l, 1), 'etl0'));
  assert.equal(s!.publicKey, lanKeys().portPub(1));
  assert.ok(s!.rttMs! > 0 && s!.rttMs! < 1000, `rtt ${s!.rttMs} ms`);
  assert.ok(s!.tap.rxFrames > 0 && s!.tap.txFrames > 0);

  const human = await cli(host(l, 1), 'vport', ['status', '--control', portSock(1)]);
  assert.equal(human.status, 0, human.err);
  assert.match(human.out, /^device etl0: joined \(chacha20-poly1305\), switch 10\.250\.1\.1:9999, session [0-9a-f]+\/[0-9a-f]+, rtt [\d.]+ ms/);
});

test('status with nothing listening: exit 1 and a message naming the path', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  const nowhere = join(tmp, 'nobody.sock');
  const [sw, port] = await Promise.all([cli(l.sw, 'vswitch', ['status', '--control', nowhere]), cli(host(l, 1), 'vport', ['status', '--control', nowhere, '--json'])]);
  assert.equal(sw.status, 1, sw.out + sw.err);
  assert.equal(sw.err, `vswitch: no vswitch is listening on ${nowhere} (is it running? is --control the same?)\n`);
  assert.equal(port.status, 1, port.out + port.err);
  assert.match(port.err, new RegExp(`^vport: no vport is listening on ${nowhere} \\(is it running\\?`));
  assert.equal(sw.out + port.out, '');
  // 'status' is a command, not HOST=status; its flags are its own.
  const bad = await cli(host(l, 1), 'vport', ['status', '--control', nowhere, '--mtu', '1400']);
  assert.equal(bad.status, 2, bad.err);
  assert.match(bad.err, /Unknown argument: mtu/);
});

test('the control socket is 0600 in a 0700 directory, replaces a stale one, refuses a live one, and goes with its daemon', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  for (const p of [swSock, portSock(1), portSock(2), portSock(3)]) {
    const st = statSync(p);
    assert.ok(st.isSocket(), p);
    assert.equal(st.mode & 0o777, 0o600, `${p} mode ${(st.mode & 0o777).toString(8)}`);
  }
  const dir = join(tmp, 'run', 'etherlink');
  const sock = join(dir, 'vswitch.sock');
  const start = async (port: number): Promise<ChildProcess> => {
    const child = l.sw.spawn(process.execPath, [bin('vswitch'), String(port), ...switchKeyArgs([]), '--control', sock]);
    await waitForOutput(child, new RegExp(`vswitch ready on UDP ${port}\\n`), 10_000);
    return child;
  };
  let sw = await start(9901);
  assert.equal(statSync(dir).mode & 0o777, 0o700, 'a missing directory is created 0700');
  assert.equal(statSync(sock).mode & 0o777, 0o600);

  // A second daemon on the same socket: refused, the flag to change named.
  const second = l.sw.spawn(process.execPath, [bin('vswitch'), '9902', ...switchKeyArgs([]), '--control', sock]);
  assert.equal(await waitExit(second, 10_000), 1);
  assert.match(await waitForOutput(second, /^vswitch: control socket .*$/m), new RegExp(`control socket ${sock}: another vswitch is using it: choose another with --control PATH`));
  assert.ok(existsSync(sock), "the refused daemon left the live one's socket alone");

  // Killed without cleanup: the socket stays; the next daemon replaces it.
  sw.kill('SIGKILL');
  await waitExit(sw, 5_000);
  assert.ok(existsSync(sock), 'SIGKILL leaves the socket behind');
  sw = await start(9901);
  const r = await cli(l.sw, 'vswitch', ['status', '--control', sock, '--json']);
  assert.equal(r.status, 0, r.err);
  assert.equal((JSON.parse(r.out) as SwitchStatusReport).pid, sw.pid, 'the new daemon answers (ip netns exec execs it: same pid)');

  sw.kill('SIGTERM');
  assert.equal(await waitExit(sw, 5_000), 0);
  assert.ok(!existsSync(sock), 'SIGTERM removes the socket');
});

test('two vports named etl0 in two namespaces each get their own default control socket, and status in each finds its own', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  // A second switch (on another port) with two more hosts, all on the default control paths.
  const { sw, hosts } = buildStar(runTag(), 2);
  const vswitch = sw.spawn(process.execPath, [bin('vswitch'), '9911', ...switchKeyArgs([])]);
  await waitForOutput(vswitch, /vswitch ready on UDP 9911\n/, 10_000);
  const k = lanKeys();
  const ports = hosts.map((h, i) =>
    h.ns.spawn(process.execPath, [bin('vport'), h.switchAddress, '9911', '--key', k.portKey(i + 1), '--switch-key', k.switchPub, '--name', 'etl0', '--ip', `${ip4(i + 1)}/24`]),
  );
  for (const p of ports) await waitForOutput(p, /vport etl0 joined /, 10_000);
  const expected = hosts.map((h) => `/run/etherlink/vport-etl0@${h.ns.name}.sock`);
  for (const [i, p] of ports.entries()) assert.match((await waitForOutput(p, /serving control=\S+/)).replace('serving control=', ''), new RegExp(`^${expected[i]!.replace(/[.]/g, '\\.')}$`));
  assert.match(await waitForOutput(vswitch, /serving control=\S+/), new RegExp(`vswitch@${sw.name}\\.sock$`));
  for (const [i, h] of hosts.entries()) {
    const r = await cli(h.ns, 'vport', ['status', '--json']);
    assert.equal(r.status, 0, r.err);
    const s = JSON.parse(r.out) as PortStatusReport;
    assert.equal(s.pid, ports[i]!.pid, `vport status in ${h.ns.name} reached its own vport`);
  }
  const r = await cli(sw, 'vswitch', ['status', '--json']);
  assert.equal((JSON.parse(r.out) as SwitchStatusReport).pid, vswitch.pid);
  assert.equal(l.vports.length, HOSTS);
  for (const p of [...ports, vswitch]) p.kill('SIGTERM');
  for (const p of [...ports, vswitch]) assert.equal(await waitExit(p, 10_000), 0);
  for (const f of expected) assert.ok(!existsSync(f), `${f} removed at exit`);
});
