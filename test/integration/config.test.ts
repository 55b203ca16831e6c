// --config FILE on the real CLIs: bad files are refused naming the line, the
// field and the fix; a good file starts a switch and a port, the command line
// overrides it, and SIGHUP applies what it can and names what it cannot.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '../../cli/args.js';
import { buildStar, cleanup, collect, isRoot, Netns, requireRoot, runTag, spawnTracked, waitExit, waitForOutput } from '../helpers/netns.js';
import { bin, lanKeys, pingOnce, START_TIMEOUT_MS, SWITCH_PORT } from '../helpers/lan.js';

const tag = runTag();
const dir = mkdtempSync(join(tmpdir(), 'etl-config-'));
let scratch: Netns | undefined;

after(() => {
  cleanup();
  rmSync(dir, { recursive: true, force: true });
});

function configFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Run a CLI to completion: in a loopback-only namespace as root, directly otherwise. */
async function cli(prog: 'vswitch' | 'vport', args: readonly string[]): Promise<{ status: number; stderr: string }> {
  const cmd = [process.execPath, bin(prog), ...args];
  if (isRoot()) scratch ??= Netns.create('cfg', tag);
  const child = scratch !== undefined ? spawnTracked('ip', ['netns', 'exec', scratch.name, ...cmd]) : spawnTracked(cmd[0]!, cmd.slice(1));
  const o = collect(child);
  const status = await waitExit(child, 15_000);
  return { status, stderr: o.err() };
}

async function assertRefused(prog: 'vswitch' | 'vport', args: readonly string[], culprit: RegExp): Promise<void> {
  const r = await cli(prog, args);
  assert.equal(r.status, EXIT.usage, `exit ${r.status}, stderr:\n${r.stderr}`);
  assert.match(r.stderr, culprit);
  assert.match(r.stderr, new RegExp(`Run '${prog} --help'`));
}

test('a config file with an unknown field, a bad value or bad JSON is refused, naming the line and field', async () => {
  const unknown = configFile('unknown.json', '{\n  "insecure": true,\n  "port-timout": 30\n}\n');
  const badValue = configFile('bad-value.json', '{\n  "insecure": true,\n  "log-level": "loud"\n}\n');
  const badPort = configFile('bad-port.json', '{\n  "host": "127.0.0.1",\n  "port": 9999,\n  "insecure": true,\n  "mtu": 20\n}\n');
  const syntax = configFile('syntax.json', '{\n  "insecure": true\n  "listen": ["[::]:9999"]\n}\n');
  await Promise.all([
    assertRefused('vswitch', ['--config', unknown], new RegExp(`^vswitch: config ${unknown}: line 3: unknown field "port-timout": did you mean "port-timeout"\\? Valid fields: .*\\bmac-age\\b`, 'm')),
    assertRefused('vport', ['--config', unknown], /^vport: config .*: line 3: unknown field "port-timout" Valid fields: .*\bswitch-key\b/m),
    assertRefused('vswitch', ['--config', badValue], /^vswitch: config .*: line 3: field "log-level" must be one of "error", "warn", "info", "debug"; got the string "loud"$/m),
    assertRefused('vport', ['--config', badPort], /^vport: config .*: line 5: field "mtu" must be an integer from 68 to 65535; got number 20$/m),
    assertRefused('vswitch', ['--config', syntax], /^vswitch: config .*: line 3, column 3: unexpected '"', expected ',' or '}' after a value/m),
    assertRefused('vswitch', ['--config', join(dir, 'missing.json')], /missing\.json does not exist: check the --config path/),
    // The file is checked before anything starts: an unknown field fails even with every flag fine.
    assertRefused('vport', ['127.0.0.1', String(SWITCH_PORT), '--insecure', '--config', unknown], /unknown field "port-timout"/),
    assertRefused('vport', ['--config', configFile('no-host.json', '{"insecure": true}')], /Not enough non-option arguments: got 0, need at least 2 \(HOST PORT, a wss:\/\/ URL, or "host" and "port" in --config FILE\)/),
  ]);
});

test('a good config starts a switch and a port; command-line flags override the file', async (t) => {
  if (!requireRoot(t)) return;
  const { sw, hosts } = buildStar(`c${tag}`, 2);
  const k = lanKeys();
  const swConfig = configFile(
    'vswitch.json',
    JSON.stringify({ port: 4789, key: k.switchKey, allow: k.allow, 'port-timeout': 99, 'mac-age': 77, 'log-level': 'info', control: 'none' }, null, 2),
  );
  // PORT and --port-timeout on the command line beat the file's 4789 and 99; mac-age comes from the file.
  const vswitch = sw.spawn(process.execPath, [bin('vswitch'), String(SWITCH_PORT), '--config', swConfig, '--port-timeout', '12']);
  await waitForOutput(vswitch, new RegExp(`vswitch ready on UDP ${SWITCH_PORT}\\n`), START_TIMEOUT_MS);
  assert.match(collect(vswitch).err(), /INFO {2}vswitch: listening udp=\[::\]:9999 tcp=9999 portTimeout=12s macAge=77s/);

  const ports = hosts.map((h, i) => {
    const n = i + 1;
    const config = configFile(
      `vport${n}.json`,
      JSON.stringify({ host: h.switchAddress, port: SWITCH_PORT, key: k.portKey(n), 'switch-key': k.switchPub, name: 'etl0', ip: [`10.99.0.${n}/24`], 'port-name': `h${n}`, control: 'none' }, null, 2),
    );
    return { config, child: h.ns.spawn(process.execPath, [bin('vport'), '--config', config]) };
  });
  await Promise.all(ports.map((p) => waitForOutput(p.child, /vport etl0 joined \S+\n/, START_TIMEOUT_MS)));
  assert.ok(await pingOnce(hosts[0]!.ns, '10.99.0.2'), 'h1 reaches h2 over a LAN set up from config files');

  // SIGHUP: log-level applies, listen and mac-age need a restart, port and port-timeout stay as the command line says.
  writeFileSync(swConfig, JSON.stringify({ port: 5000, listen: ['127.0.0.1:1'], key: k.switchKey, allow: k.allow, 'port-timeout': 20, 'mac-age': 78, 'log-level': 'debug', control: 'none' }));
  vswitch.kill('SIGHUP');
  await waitForOutput(vswitch, /INFO {2}vswitch: SIGHUP: config re-read file=\S+ applied=log-level\n/, 5_000);
  await waitForOutput(vswitch, /WARN {2}vswitch: SIGHUP: listen, mac-age changed: restart to apply; port, port-timeout changed in the file but set on the command line, which wins\n/, 5_000);
  await waitForOutput(vswitch, /SIGHUP: allow file reloaded admitted=9 disconnected=none\n/, 5_000);
  // A broken file on SIGHUP keeps the running settings.
  writeFileSync(swConfig, '{"log-level": "debug",}');
  vswitch.kill('SIGHUP');
  await waitForOutput(vswitch, /ERROR vswitch: SIGHUP: config not reloaded, keeping the running settings: config \S+: line 1, column 22: a trailing comma/, 5_000);

  // vport SIGHUP: log level and re-resolving apply; the device's fields need a restart.
  const p1 = ports[0]!;
  writeFileSync(p1.config, JSON.stringify({ host: hosts[0]!.switchAddress, port: SWITCH_PORT, key: k.portKey(1), 'switch-key': k.switchPub, name: 'etl0', ip: ['10.99.0.1/24'], mtu: 1300, 'port-name': 'h1', control: 'none', 'log-level': 'debug' }));
  p1.child.kill('SIGHUP');
  await waitForOutput(p1.child, /SIGHUP: config re-read file=\S+ applied=log-level\n/, 5_000);
  await waitForOutput(p1.child, /WARN {2}vport: SIGHUP: mtu changed: restart to apply\n/, 5_000);
  await waitForOutput(p1.child, /SIGHUP: re-resolving the switch host=10\.250\.1\.1\n/, 5_000);
  assert.ok(await pingOnce(hosts[0]!.ns, '10.99.0.2'), 'the LAN still works after the reloads');

  for (const c of [...ports.map((p) => p.child), vswitch]) c.kill('SIGTERM');
  for (const c of [...ports.map((p) => p.child), vswitch]) assert.equal(await waitExit(c, 5_000), 0, collect(c).err());
});
