// The CLIs as processes, fed bad input: each failure exits with its documented
// code (lib/cli.ts EXIT) and a message that names the culprit and the fix.
// Anything that could get as far as a socket or a TAP runs in a scratch namespace.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { EXIT } from '../../cli/args.js';
import { cleanup, collect, isRoot, Netns, requireRoot, runTag, spawnTracked, waitExit } from '../helpers/netns.js';
import { bin, startSwitch, SWITCH_PORT } from '../helpers/lan.js';

const tag = runTag();
let scratch: Netns | undefined;

after(() => cleanup());

/** A namespace with only loopback: nothing a CLI does there can leave it. */
function sandbox(): Netns {
  scratch ??= Netns.create('cli', tag);
  return scratch;
}

interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Run a CLI to completion. As root, inside the scratch namespace (so a parser
 * bug that let it run on could not touch this machine's network); otherwise
 * directly, where it lacks the privileges to do harm anyway. Asynchronous, so
 * that independent checks run side by side.
 */
async function cli(prog: 'vswitch' | 'vport' | 'etherlink', args: readonly string[], prefix: readonly string[] = []): Promise<RunResult> {
  const cmd = [...prefix, process.execPath, bin(prog), ...args];
  const child = isRoot() ? spawnTracked('ip', ['netns', 'exec', sandbox().name, ...cmd]) : spawnTracked(cmd[0]!, cmd.slice(1));
  const o = collect(child);
  const status = await waitExit(child, 15_000);
  return { status, stdout: o.out(), stderr: o.err() };
}

async function assertUsage(pending: Promise<RunResult>, culprit: RegExp, prog: string): Promise<void> {
  const r = await pending;
  assert.equal(r.status, EXIT.usage, `exit ${r.status}, stderr:\n${r.stderr}`);
  assert.match(r.stderr, culprit);
  assert.match(r.stderr, new RegExp(`Run '${prog} --help'`));
}

test('an unknown flag: usage exit code, the flag named, --help suggested', async () => {
  await Promise.all([
    assertUsage(cli('vswitch', ['--frobnicate']), /Unknown argument: frobnicate/, 'vswitch'),
    assertUsage(cli('vport', ['127.0.0.1', String(SWITCH_PORT), '--bogus', '1']), /Unknown argument: bogus/, 'vport'),
    assertUsage(cli('etherlink', ['transfer', 'send', '127.0.0.1', '5001', '/dev/null', '--wat']), /Unknown argument: wat/, 'etherlink'),
  ]);
});

test('bad values: --ip, --mac, --mtu, PORT, --port-timeout, --listen, --vni, --vtep, --vxlan are each named', async () => {
  const port = ['127.0.0.1', String(SWITCH_PORT)];
  await Promise.all([
    assertUsage(cli('vport', [...port, '--ip', '10.0.0.300/24']), /--ip .*10\.0\.0\.300/, 'vport'),
    assertUsage(cli('vport', [...port, '--ip', '10.0.0.1']), /--ip .*needs a prefix length/, 'vport'),
    assertUsage(cli('vport', [...port, '--ip', '10.0.0.1/33']), /--ip .*\/33/, 'vport'),
    assertUsage(cli('vport', [...port, '--mac', '02:00:00:00:00']), /--mac .*02:00:00:00:00/, 'vport'),
    assertUsage(cli('vport', [...port, '--mac', '01:00:5e:00:00:01']), /--mac .*multicast/, 'vport'),
    assertUsage(cli('vport', [...port, '--mtu', '20']), /--mtu 20 is out of range/, 'vport'),
    assertUsage(cli('vport', ['127.0.0.1', '0']), /PORT must be the switch port/, 'vport'),
    assertUsage(cli('vport', ['127.0.0.1', 'http']), /PORT must be a port number/, 'vport'),
    assertUsage(cli('vport', []), /Not enough non-option arguments/, 'vport'),
    assertUsage(cli('vswitch', ['70000']), /PORT must be a port number/, 'vswitch'),
    assertUsage(cli('vswitch', ['--port-timeout', '1']), /--port-timeout must be a number from 2/, 'vswitch'),
    assertUsage(cli('vswitch', ['--listen', 'nonsense']), /--listen 'nonsense' must be ADDR:PORT/, 'vswitch'),
    assertUsage(cli('vswitch', ['--log-level', 'loud']), /log-level/, 'vswitch'),
    assertUsage(cli('vswitch', ['--insecure', '--vxlan', '4789', '--vni', '0']), /--vni must be an integer from 1 to 16777215/, 'vswitch'),
    assertUsage(cli('vswitch', ['--insecure', '--vxlan', '4789', '--vni', '7', '--vtep', 'vtep.example']), /--vtep: VTEP 'vtep\.example' must be IP\[:PORT\]/, 'vswitch'),
    assertUsage(cli('vswitch', ['--insecure', '--vtep', '192.0.2.7']), /--vtep is for a VXLAN VTEP: add --vxlan/, 'vswitch'),
    assertUsage(cli('vswitch', ['--insecure', '--vxlan', 'x:y']), /--vxlan 'x:y' must be ADDR:PORT/, 'vswitch'),
    assertUsage(cli('vswitch', ['--insecure', '--vxlan', '4789', '--vxlan-mtu', '100']), /--vxlan-mtu must be a number from 576/, 'vswitch'),
  ]);
});

test('--help of each CLI exits 0 and shows examples', async () => {
  const progs = ['vswitch', 'vport', 'etherlink'] as const;
  const [sub, ...helps] = await Promise.all([cli('etherlink', ['transfer', '--help']), ...progs.map((prog) => cli(prog, ['--help']))]);
  for (const [i, prog] of progs.entries()) {
    const r = helps[i]!;
    assert.equal(r.status, EXIT.ok, `${prog} --help: ${r.stderr}`);
    assert.match(r.stdout, /Examples:\n {2}\S/, `${prog} --help shows examples:\n${r.stdout}`);
    assert.match(r.stdout, new RegExp(`^${prog} `, 'm'), `${prog} --help names the program`);
  }
  assert.equal(sub!.status, EXIT.ok);
  assert.match(sub!.stdout, /Examples:[\s\S]*transfer receive[\s\S]*transfer send/);
});

test('vswitch on a UDP port already in use: failure exit code, says "in use"', async (t) => {
  if (!requireRoot(t)) return;
  const first = await startSwitch(sandbox());
  const r = await cli('vswitch', [String(SWITCH_PORT), '--insecure']);
  assert.equal(r.status, EXIT.failure, `exit ${r.status}: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`^vswitch: UDP .*:${SWITCH_PORT} is already in use: .*\\[EADDRINUSE\\]$`, 'm'));
  assert.equal(first.exitCode, null, 'the first switch is untouched');
  first.kill('SIGTERM');
  assert.equal(await waitExit(first, 5_000), 0, collect(first).err());
});

test('vport to a switch name that does not resolve: failure exit code, "cannot resolve", no device left', async (t) => {
  if (!requireRoot(t)) return;
  // .invalid never resolves (RFC 6761); the scratch namespace has no route, so no query leaves it.
  const started = Date.now();
  const r = await cli('vport', ['no-such-switch.invalid', String(SWITCH_PORT), '--insecure', '--name', 'etl0']);
  assert.equal(r.status, EXIT.failure, `exit ${r.status}: ${r.stderr}`);
  assert.match(r.stderr, /^vport: cannot resolve switch host 'no-such-switch\.invalid'/m);
  assert.ok(Date.now() - started < 10_000, 'fails fast');
  assert.doesNotMatch(sandbox().ip('-o', 'link', 'show').stdout, /etl0/);
});

test('vport without CAP_NET_ADMIN: privilege exit code, names CAP_NET_ADMIN, no device left', async (t) => {
  if (!requireRoot(t)) return;
  const r = await cli('vport', ['127.0.0.1', String(SWITCH_PORT), '--insecure', '--name', 'etl0'], ['setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin']);
  assert.equal(r.status, EXIT.privilege, `exit ${r.status}: ${r.stderr}`);
  assert.match(r.stderr, /^vport: .*CAP_NET_ADMIN/m);
  assert.doesNotMatch(sandbox().ip('-o', 'link', 'show').stdout, /etl0/);
});
