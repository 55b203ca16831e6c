// The key handling of the CLIs as processes: keygen writes private keys safely
// and never over an existing one, loose permissions are warned about everywhere
// a key is read, and a missing or malformed key, switch key or allow file stops
// a daemon before it starts, naming the flag or the line and the fix.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { EXIT } from '../../cli/args.js';
import { cleanup, collect, isRoot, Netns, requireRoot, runTag, spawnTracked, waitExit, waitForOutput } from '../helpers/netns.js';
import { bin, controlArgs, lanKeys, SWITCH_PORT } from '../helpers/lan.js';

const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-seccli-'));
let scratch: Netns | undefined;

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

/** A namespace with only loopback: nothing a daemon does there can leave it. */
function sandbox(): Netns {
  scratch ??= Netns.create('seccli', tag);
  return scratch;
}

type Prog = 'vswitch' | 'vport' | 'etherlink';

/** Start a CLI: as root inside the scratch namespace, otherwise directly. */
function spawnCli(prog: Prog, args: readonly string[]): ChildProcess {
  const cmd = [process.execPath, bin(prog), ...args];
  return isRoot() ? sandbox().spawn(cmd[0]!, cmd.slice(1)) : spawnTracked(cmd[0]!, cmd.slice(1));
}

interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

async function cli(prog: Prog, args: readonly string[]): Promise<RunResult> {
  const child = spawnCli(prog, args);
  const status = await waitExit(child, 15_000);
  return { status, stdout: collect(child).out(), stderr: collect(child).err() };
}

const BASE64_KEY_LINE = /^[A-Za-z0-9+/]{43}=\n$/;

test('etherlink keygen --out: a 0600 key file, its 44-character public key printed, the same as pubkey prints; never overwrites', async () => {
  const file = join(tmp, 'k1.key');
  const made = await cli('etherlink', ['keygen', '--out', file]);
  assert.equal(made.status, EXIT.ok, made.stderr);
  assert.match(made.stdout, BASE64_KEY_LINE);
  assert.equal(statSync(file).mode & 0o777, 0o600, `mode ${(statSync(file).mode & 0o777).toString(8)}`);
  const content = readFileSync(file, 'utf8');
  assert.match(content, BASE64_KEY_LINE, 'the file holds the base64 private key');
  assert.notEqual(content, made.stdout, 'what is printed is the public key, not the private one');

  const pub = await cli('etherlink', ['pubkey', file]);
  assert.equal(pub.status, EXIT.ok, pub.stderr);
  assert.equal(pub.stdout, made.stdout);
  assert.equal(pub.stderr, '', 'a 0600 key gets no warning');

  const again = await cli('etherlink', ['keygen', '--out', file]);
  assert.notEqual(again.status, EXIT.ok, 'keygen over an existing file fails');
  assert.match(again.stderr, new RegExp(`key file ${file} already exists: remove it, or replace it with 'etherlink keygen --force'`));
  assert.equal(readFileSync(file, 'utf8'), content, 'the existing key is untouched');
});

test('a key file readable by others: pubkey, vswitch and vport each warn', async (t) => {
  const k = lanKeys();
  const loose = (from: string, name: string): string => {
    const file = join(tmp, name);
    copyFileSync(from, file);
    chmodSync(file, 0o644);
    return file;
  };
  const warning = (file: string): RegExp => new RegExp(`key file ${file} is readable by others \\(mode 0644\\): chmod 600 ${file}`);
  const switchKey = loose(k.switchKey, 'switch-loose.key');
  const portKey = loose(k.portKey(1), 'h1-loose.key');

  const pub = await cli('etherlink', ['pubkey', switchKey]);
  assert.equal(pub.status, EXIT.ok, pub.stderr);
  assert.equal(pub.stdout.trim(), k.switchPub);
  assert.match(pub.stderr, warning(switchKey));

  if (!requireRoot(t)) return;
  const vswitch = spawnCli('vswitch', [String(SWITCH_PORT), '--key', switchKey, '--allow', k.allow, ...controlArgs('vswitch', [])]);
  await waitForOutput(vswitch, /vswitch ready on UDP/, 10_000);
  assert.match(collect(vswitch).err(), warning(switchKey));
  const vport = spawnCli('vport', ['127.0.0.1', String(SWITCH_PORT), '--key', portKey, '--switch-key', k.switchPub, '--name', 'etls0', ...controlArgs('vport', [])]);
  // A warning, not a refusal: the loose keys still work.
  await waitForOutput(vport, /vport etls0 joined /, 10_000);
  assert.match(collect(vport).err(), warning(portKey));
  for (const c of [vport, vswitch]) {
    c.kill('SIGTERM');
    assert.equal(await waitExit(c, 5_000), 0, collect(c).err());
  }
});

/** A usage failure: exit 2, a message matching `culprit`, and the --help pointer. */
async function assertUsage(pending: Promise<RunResult>, culprit: RegExp, prog: string): Promise<void> {
  const r = await pending;
  assert.equal(r.status, EXIT.usage, `exit ${r.status}, stderr:\n${r.stderr}`);
  assert.match(r.stderr, culprit);
  assert.match(r.stderr, new RegExp(`Run '${prog} --help'`));
}

test('no key, no switch key, a malformed switch key: usage exit code, the flag and the fix named', async () => {
  const k = lanKeys();
  const to = ['127.0.0.1', String(SWITCH_PORT), '--name', 'etls1'];
  await Promise.all([
    assertUsage(cli('vswitch', []), /^vswitch: no --key: a switch needs a private key; make one with 'etherlink keygen --out FILE'/m, 'vswitch'),
    assertUsage(cli('vswitch', ['--key', k.switchKey]), /^vswitch: no --allow: /m, 'vswitch'),
    assertUsage(cli('vport', [...to, '--switch-key', k.switchPub]), /^vport: no --key: a port needs a private key; make one with 'etherlink keygen --out FILE'/m, 'vport'),
    assertUsage(cli('vport', [...to, '--key', k.portKey(1)]), /^vport: no --switch-key: give the switch's public key/m, 'vport'),
    assertUsage(cli('vport', [...to, '--key', k.portKey(1), '--switch-key', 'not-a-key']), /^vport: --switch-key: invalid --switch-key: expected 44 base64 characters/m, 'vport'),
    // Right length, wrong alphabet; and 44 characters whose last one has stray bits.
    assertUsage(cli('vport', [...to, '--key', k.portKey(1), '--switch-key', '!'.repeat(43) + '=']), /^vport: --switch-key: invalid --switch-key: not base64/m, 'vport'),
    assertUsage(cli('vport', [...to, '--key', k.portKey(1), '--switch-key', k.switchPub.slice(0, 42) + (k.switchPub[42] === 'B' ? 'C' : 'B') + '=']), /^vport: --switch-key: invalid --switch-key: not a canonical base64 encoding of 32 bytes/m, 'vport'),
  ]);
});

test('an allow file with a bad line: vswitch exits non-zero and names the line', async () => {
  const k = lanKeys();
  const lines = readFileSync(k.allow, 'utf8').split('\n');
  const cases: [string, string, RegExp][] = [
    ['bad-key', `${lines[0]}\n# a comment\nnot-a-key h2\n`, /line 3: expected 44 base64 characters/],
    ['extra-field', `${lines[0]}\n\n${lines[1]} extra\n${lines[2]}\n`, /line 3: expected '<base64 public key> \[name\] \[vlan=N \| trunk=N,M \[pvid=P\]\]', got '\S+ h2 extra'/],
    ['duplicate', `${lines[0]}\n${lines[1]}\n${lines[0]}\n`, /line 3: public key already listed on line 1/],
  ];
  await Promise.all(
    cases.map(async ([name, text, why]) => {
      const file = join(tmp, `allow-${name}`);
      writeFileSync(file, text);
      const r = await cli('vswitch', [String(SWITCH_PORT), '--key', k.switchKey, '--allow', file]);
      assert.notEqual(r.status, EXIT.ok, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^vswitch: .*${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} ${why.source}`, 'm'));
      assert.doesNotMatch(r.stdout, /vswitch ready/, `${name}: the switch must not start`);
    }),
  );
});
