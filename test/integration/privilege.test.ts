// Least privilege on a real LAN: vswitch as an unprivileged user with no
// capability at all, vports as that user with only CAP_NET_ADMIN, which they
// drop once the device is configured; without it a vport exits 4 naming it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { EXIT } from '../../cli/args.js';
import { parseCapabilities } from '../../lib/daemon/privilege.js';
import { buildStar, cleanup, collect, requireRoot, run, runTag, waitExit, waitForOutput, type Netns } from '../helpers/netns.js';
import { bin, lanKeys, pingOnce, START_TIMEOUT_MS, SWITCH_PORT } from '../helpers/lan.js';

const tag = runTag();
// useradd allows 32 characters.
const user = `etl-test-${tag}`.slice(0, 32);
let userCreated = false;
let keyDir: string | undefined;
let installDir: string | undefined;

after(() => {
  cleanup();
  if (keyDir !== undefined) rmSync(keyDir, { recursive: true, force: true });
  if (installDir !== undefined) rmSync(installDir, { recursive: true, force: true });
  if (userCreated) run('userdel', [user], { allowFail: true });
});

interface TestUser {
  uid: number;
  gid: number;
  /** The test keys, copied into a directory this user owns (0700), each 0600. */
  keys: { switchKey: string; allow: string; portKey: (i: number) => string; switchPub: string };
}

function createUser(): TestUser {
  run('useradd', ['--system', '--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin', user]);
  userCreated = true;
  const uid = Number(run('id', ['-u', user]).stdout.trim());
  const gid = Number(run('id', ['-g', user]).stdout.trim());
  const k = lanKeys();
  keyDir = mkdtempSync(join(tmpdir(), 'etl-userkeys-'));
  chownSync(keyDir, uid, gid);
  chmodSync(keyDir, 0o700);
  const copy = (from: string, name: string): string => {
    const to = join(keyDir!, name);
    copyFileSync(from, to);
    chownSync(to, uid, gid);
    chmodSync(to, 0o600);
    return to;
  };
  const switchKey = copy(k.switchKey, 'switch.key');
  const allow = copy(k.allow, 'allow');
  const ports = [1, 2].map((i) => copy(k.portKey(i), `h${i}.key`));
  return { uid, gid, keys: { switchKey, allow, portKey: (i) => ports[i - 1]!, switchPub: k.switchPub } };
}

/**
 * The unprivileged user must be able to read the program. A checkout may sit
 * in a directory only root can enter (mktemp -d is 0700), so the built
 * package — what `npm install` would put on a server — is copied into a
 * world-readable directory and run from there.
 */
function userBin(name: 'vswitch' | 'vport'): string {
  if (installDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'etl-install-'));
    chmodSync(dir, 0o755);
    installDir = dir;
    const root = join(bin('vswitch'), '..', '..', '..');
    mkdirSync(join(dir, 'build'), { recursive: true });
    // The addon is wherever node-gyp-build finds it: build/Release, or prebuilds/ (the packaging test's prebuildify may leave only those).
    for (const part of ['package.json', 'dist', 'node_modules', join('build', 'Release'), 'prebuilds']) {
      if (existsSync(join(root, part))) cpSync(join(root, part), join(dir, part), { recursive: true });
    }
    run('chmod', ['-R', 'a+rX', dir]);
  }
  return join(installDir, 'dist', 'bin', `${name}.js`);
}

/** True when any user may open /dev/net/tun (udev's usual 0666). */
function tunOpenToAll(): boolean {
  return (statSync('/dev/net/tun').mode & 0o006) === 0o006;
}

/**
 * Start `cmd` in `ns` as the test user through setpriv, holding CAP_NET_ADMIN
 * (inheritable + ambient, bounding set reduced to it) or nothing at all.
 * Where /dev/net/tun is 0600 root (no udev, as on this VM), the user gets its
 * own node of the same device in a private mount namespace: nothing on the
 * host changes, and the kernel still demands CAP_NET_ADMIN for TUNSETIFF.
 */
function spawnAsUser(ns: Netns, u: { uid: number; gid: number }, caps: 'net_admin' | 'none', cmd: readonly string[]): ChildProcess {
  const capArgs = caps === 'net_admin' ? ['--inh-caps=-all,+net_admin', '--ambient-caps=-all,+net_admin', '--bounding-set=-all,+net_admin'] : ['--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all'];
  const setpriv = ['setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', ...capArgs, ...cmd];
  if (tunOpenToAll()) return ns.spawn(setpriv[0]!, setpriv.slice(1));
  const rdev = statSync('/dev/net/tun').rdev;
  const node = `${rdev >> 8} ${rdev & 0xff}`;
  const script = `mount -t tmpfs -o mode=0755,size=64k etl-tun /dev/net && mknod -m 0600 /dev/net/tun c ${node} && chown ${u.uid}:${u.gid} /dev/net/tun && exec "$@"`;
  return ns.spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ...setpriv]);
}

function procStatus(pid: number): string {
  return readFileSync(`/proc/${pid}/status`, 'utf8');
}

function realUid(status: string): number {
  return Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
}

/** Threads of `pid` that still hold an effective or permitted capability. */
function threadsWithCapabilities(pid: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const c = parseCapabilities(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
      if (c.effective !== 0n || c.permitted !== 0n) n++;
    } catch {
      /* the thread exited */
    }
  }
  return n;
}

test('an unprivileged switch and two ports holding only CAP_NET_ADMIN build a LAN, and the ports drop it', async (t) => {
  if (!requireRoot(t)) return;
  t.diagnostic(`/dev/net/tun mode ${(statSync('/dev/net/tun').mode & 0o777).toString(8)}${tunOpenToAll() ? '' : ': a private node per vport (see docs/deploy.md)'}`);
  const u = createUser();
  const { sw, hosts } = buildStar(`p${tag}`, 2);

  // The switch on 9999 needs no capability at all (ports >= net.ipv4.ip_unprivileged_port_start, 1024 by default).
  const vswitch = spawnAsUser(sw, u, 'none', [process.execPath, userBin('vswitch'), String(SWITCH_PORT), '--key', u.keys.switchKey, '--allow', u.keys.allow, '--control', 'none']);
  await waitForOutput(vswitch, new RegExp(`vswitch ready on UDP ${SWITCH_PORT}\\n`), START_TIMEOUT_MS);

  const ports = hosts.map((h, idx) => {
    const i = idx + 1;
    return spawnAsUser(h.ns, u, 'net_admin', [
      process.execPath, userBin('vport'), h.switchAddress, String(SWITCH_PORT),
      '--key', u.keys.portKey(i), '--switch-key', u.keys.switchPub,
      '--name', 'etl0', '--ip', `10.99.0.${i}/24`, '--port-name', `h${i}`, '--control', 'none',
    ]);
  });
  await Promise.all(ports.map((p) => waitForOutput(p, /vport etl0 joined \S+\n/, START_TIMEOUT_MS)));
  assert.ok(await pingOnce(hosts[0]!.ns, '10.99.0.2'), 'h1 reaches h2');
  assert.ok(await pingOnce(hosts[1]!.ns, '10.99.0.1'), 'h2 reaches h1');

  const sws = procStatus(vswitch.pid!);
  assert.match(readFileSync(`/proc/${vswitch.pid}/cmdline`, 'utf8'), /vswitch\.js/, 'the PID is the switch itself (setpriv and sh exec)');
  assert.equal(realUid(sws), u.uid);
  assert.deepEqual([parseCapabilities(sws).effective, parseCapabilities(sws).permitted], [0n, 0n], 'the switch never held a capability');

  for (const p of ports) {
    assert.match(readFileSync(`/proc/${p.pid}/cmdline`, 'utf8'), /vport\.js/);
    const status = procStatus(p.pid!);
    const c = parseCapabilities(status);
    assert.equal(realUid(status), u.uid, 'runs as the test user');
    assert.deepEqual({ eff: c.effective, prm: c.permitted, inh: c.inheritable, amb: c.ambient }, { eff: 0n, prm: 0n, inh: 0n, amb: 0n }, `no capabilities after startup:\n${status}`);
    assert.match(collect(p).err(), /INFO {2}vport: capabilities dropped threads=\d+ unreachable=\d+ boundingSet=kept\n/);
    // Credentials are per thread: every thread dropped its own, except Node's inspector
    // signal thread, which blocks every signal (and never runs our code).
    const held = threadsWithCapabilities(p.pid!);
    t.diagnostic(`vport ${p.pid}: ${held} thread(s) still holding capabilities`);
    assert.ok(held <= 1, `at most Node's signal-watcher thread keeps its set (got ${held})`);
  }

  // After the drop: re-resolving works, and the LAN keeps working.
  ports[0]!.kill('SIGHUP');
  await waitForOutput(ports[0]!, /SIGHUP: re-resolving the switch/, 5_000);
  assert.ok(await pingOnce(hosts[0]!.ns, '10.99.0.2'), 'the LAN works after SIGHUP');

  // The link watcher's netlink socket outlives the drop: the port still sees its device go down and up.
  hosts[0]!.ns.ip('link', 'set', 'etl0', 'down');
  await waitForOutput(ports[0]!, /device down: the switch withdraws its MACs/, 5_000);
  hosts[0]!.ns.ip('link', 'set', 'etl0', 'up');
  await waitForOutput(ports[0]!, /device up: telling the switch/, 5_000);
  assert.ok(await pingOnce(hosts[0]!.ns, '10.99.0.2'), 'the LAN works after the link came back');

  // Removing the device at exit needs no capability: closing the TAP's fd deletes it.
  for (const c of [...ports, vswitch]) c.kill('SIGTERM');
  for (const c of [...ports, vswitch]) assert.equal(await waitExit(c, 5_000), 0, collect(c).err());
  for (const h of hosts) assert.doesNotMatch(h.ns.ip('-o', 'link', 'show').stdout, /etl0/, 'the device is gone');
});

test('without CAP_NET_ADMIN an unprivileged vport exits 4 naming CAP_NET_ADMIN, and leaves no device', async (t) => {
  if (!requireRoot(t)) return;
  const u = userCreated ? { uid: Number(run('id', ['-u', user]).stdout.trim()), gid: Number(run('id', ['-g', user]).stdout.trim()) } : createUser();
  const { hosts } = buildStar(`q${tag}`, 1);
  const h = hosts[0]!;
  const vport = spawnAsUser(h.ns, u, 'none', [process.execPath, userBin('vport'), h.switchAddress, String(SWITCH_PORT), '--insecure', '--name', 'etl0', '--control', 'none']);
  const status = await waitExit(vport, 15_000);
  const err = collect(vport).err();
  assert.equal(status, EXIT.privilege, `exit ${status}: ${err}`);
  assert.match(err, /^vport: .*CAP_NET_ADMIN.*\[EPERM\]$/m);
  assert.doesNotMatch(h.ns.ip('-o', 'link', 'show').stdout, /etl0/);
});
