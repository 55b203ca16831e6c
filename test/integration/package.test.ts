// Packaging: the packed tarball carries an N-API prebuild, so it installs and
// opens a TAP on a machine with no compiler on PATH, and a global install puts
// vswitch, vport and etherlink on PATH.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { requireRoot, runTag } from '../helpers/netns.js';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
const tmp = mkdtempSync(join(tmpdir(), 'etl-pkg-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function sh(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeout ?? 300_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('npm pack ships a prebuild that installs and runs without a compiler', (t) => {
  if (!requireRoot(t)) return;
  sh('npm', ['run', 'prebuild'], { cwd: root });
  assert.ok(readdirSync(join(root, 'prebuilds', 'linux-x64')).some((f) => f.endsWith('.node')), 'prebuild written');
  sh('npm', ['pack', '--pack-destination', tmp], { cwd: root });
  const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
  assert.ok(tarball, 'npm pack wrote a tarball');
  const listing = sh('tar', ['tzf', join(tmp, tarball)], { cwd: tmp });
  assert.match(listing, /package\/prebuilds\/linux-x64\/.*\.node/);
  assert.match(listing, /package\/dist\/lib\/index\.d\.ts/);
  assert.match(listing, /package\/dist\/cli\/daemon\.js/);
  assert.doesNotMatch(listing, /package\/dist\/(test|bench|lab)\//, 'tests, benches and lab tooling stay out of the package');

  // A PATH with node and npm but no cc, c++, make or python.
  const bin = join(tmp, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  const npmCli = spawnSync('sh', ['-c', 'readlink -f "$(command -v npm)"'], { encoding: 'utf8' }).stdout.trim();
  symlinkSync(npmCli, join(bin, 'npm'));
  symlinkSync('/bin/sh', join(bin, 'sh')); // npm runs lifecycle scripts through sh
  const env = { ...process.env, PATH: bin };
  for (const tool of ['cc', 'gcc', 'g++', 'c++', 'make', 'python3']) {
    assert.equal(spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { env }).status !== 0, true, `${tool} must not be on the test PATH`);
  }
  const app = join(tmp, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  sh(join(bin, 'npm'), ['install', '--no-audit', '--no-fund', join(tmp, tarball)], { cwd: app, env });
  assert.equal(existsSync(join(app, 'node_modules', 'etherlink', 'build')), false, 'nothing was compiled');

  const name = `tk${runTag()}`;
  const probe = `import { TapDevice } from 'etherlink'; const t = TapDevice.open({ name: '${name}' }); console.log('opened ' + t.name + ' ' + t.mac); t.close();`;
  const cjs = `const { TapDevice } = require('etherlink');`;
  const out = sh(join(bin, 'node'), ['--input-type=module', '-e', probe], { cwd: app, env });
  assert.match(out, new RegExp(`opened ${name} [0-9a-f:]{17}`));
  // Node >= 20.19 loads an ESM package from require() too, so CommonJS apps can use it.
  const r = spawnSync(join(bin, 'node'), ['-e', `${cjs} console.log(typeof TapDevice.open)`], { cwd: app, env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /function/);

  // npm install -g into a prefix of its own: the three commands on that PATH, each answering --help.
  const prefix = join(tmp, 'global');
  sh(join(bin, 'npm'), ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', join(tmp, tarball)], { cwd: tmp, env });
  const globalEnv = { ...env, PATH: `${join(prefix, 'bin')}:${bin}` };
  for (const cmd of ['vswitch', 'vport', 'etherlink']) {
    const help = spawnSync(cmd, ['--help'], { cwd: tmp, env: globalEnv, encoding: 'utf8' });
    assert.equal(help.status, 0, `${cmd} --help from the global install: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`^${cmd} `, 'm'), `${cmd} --help shows its usage`);
    assert.match(help.stdout, /Examples:/, `${cmd} --help shows examples`);
  }
});
