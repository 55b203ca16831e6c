// The README's library code blocks and the files in examples/ run as written:
// each block is taken from README.md, compiled under the project's strict
// TypeScript settings against the package itself ('etherlink'), and run — the
// switch and port in namespaces with keys made by the real CLI — so that the
// documentation cannot rot.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { buildStar, cleanup, collect, ensureTools, Netns, requireRoot, runTag, spawnTracked, waitExit, waitForOutput } from '../helpers/netns.js';
import { bin, execIn, pingOnce, root } from '../helpers/lan.js';

const tmp = mkdtempSync(join(tmpdir(), 'etl-readme-'));
// Inside the package, so that `import ... from 'etherlink'` resolves to it (a self-reference).
const out = join(root, 'dist', 'readme-check');
after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
});

/** The ```ts blocks of the README's "## Library" sections, by the file name their first line gives ("// switch.ts: ..."). */
function readmeBlocks(): Map<string, string> {
  const text = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = new Map<string, string>();
  for (const section of text.split(/^## /m).filter((s) => s.startsWith('Library'))) {
    for (const m of section.matchAll(/^```ts\n([\s\S]*?)^```$/gm)) {
      const code = m[1]!;
      const name = /^\/\/ ([\w-]+\.ts):/.exec(code)?.[1];
      assert.ok(name, `a README block must start with '// NAME.ts: what it is':\n${code.slice(0, 200)}`);
      blocks.set(name, code);
    }
  }
  return blocks;
}

let compiled: Map<string, string> | undefined;

/** Compile the README blocks with the project's compiler options; returns name -> path of the .js. */
function compileBlocks(): Map<string, string> {
  if (compiled !== undefined) return compiled;
  mkdirSync(out, { recursive: true });
  const files = new Map<string, string>();
  for (const [name, code] of readmeBlocks()) {
    const file = join(out, name);
    writeFileSync(file, code);
    files.set(name, file);
  }
  const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  assert.ok(config, 'tsconfig.json parses');
  const program = ts.createProgram([...files.values()], { ...config.options, rootDir: out, outDir: out, declaration: false, sourceMap: false });
  const result = program.emit();
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics];
  const text = ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' });
  assert.equal(diagnostics.length, 0, `README blocks do not compile:\n${text}`);
  compiled = new Map([...files].map(([name, file]) => [name, file.replace(/\.ts$/, '.js')]));
  return compiled;
}

/** A directory with switch.key, switch.pub, port.key and an allow file admitting port.key, made as the README says. */
function keyDir(): string {
  const dir = mkdtempSync(join(tmp, 'keys-'));
  const keygen = (file: string): string => execFileSync(process.execPath, [bin('etherlink'), 'keygen', '--out', join(dir, file)], { encoding: 'utf8' });
  writeFileSync(join(dir, 'switch.pub'), keygen('switch.key'));
  appendFileSync(join(dir, 'allow'), keygen('port.key'));
  return dir;
}

test('the README has the library blocks it promises, and they compile under strict TypeScript', () => {
  assert.deepEqual([...readmeBlocks().keys()].sort(), ['pieces.ts', 'port.ts', 'switch.ts', 'tap.ts']);
  assert.equal(compileBlocks().size, 4);
});

test('README pieces.ts: two in-memory ports through a Switch', async () => {
  const js = compileBlocks().get('pieces.ts')!;
  const child = spawnTracked(process.execPath, [js]);
  assert.equal(await waitExit(child, 10_000), 0, collect(child).err());
  assert.match(collect(child).out(), /^host-b got 1 frame\(s\) from 02:00:00:00:00:0a$/m);
  assert.match(collect(child).out(), /02:00:00:00:00:0a on switch-a/);
});

/** Run `js` in `ns` with cwd `dir`; resolves once it printed `ready`. */
async function start(ns: Netns, js: string, args: readonly string[], dir: string, ready: RegExp) {
  const child = ns.spawn(process.execPath, [js, ...args], { cwd: dir });
  await waitForOutput(child, ready, 15_000);
  return child;
}

test('README switch.ts and port.ts: a port joins the embedded switch and pings its local TAP; SIGINT ends both cleanly', async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping' });
  const blocks = compileBlocks();
  const dir = keyDir();
  const { sw, hosts } = buildStar(runTag(), 1);
  const h = hosts[0]!;
  const swPub = readFileSync(join(dir, 'switch.pub'), 'utf8').trim();
  const server = await start(sw, blocks.get('switch.ts')!, [], dir, new RegExp(`switch ${swPub.replace(/[+/]/g, '\\$&')} listening on UDP 9999`));
  const port = await start(h.ns, blocks.get('port.ts')!, [h.switchAddress], dir, /joined 10\.250\.1\.1:9999 as /);
  await waitForOutput(server, /joined from 10\.250\.1\.2:\d+/);
  assert.ok(await pingOnce(h.ns, '10.99.0.254'), 'the port reaches the switch host over the LAN');
  port.kill('SIGINT');
  assert.equal(await waitExit(port, 10_000), 0, collect(port).err());
  await waitForOutput(server, /left: leave/, 5_000);
  server.kill('SIGINT');
  assert.equal(await waitExit(server, 10_000), 0, collect(server).err());
  assert.doesNotMatch(sw.ip('-o', 'link').stdout, /etl-sw/, 'the local TAP went with the switch');
});

test('README tap.ts: frames in batches, an ARP answered, the link state, the device gone on SIGINT', async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping' });
  const js = compileBlocks().get('tap.ts')!;
  const ns = Netns.create('tap', runTag());
  const child = ns.spawn(process.execPath, [js]);
  const first = await waitForOutput(child, /^etl\d+ \d+ [0-9a-f:]{17} up$/m, 10_000);
  const name = first.split(' ')[0]!;
  // The kernel asks who has 10.99.0.2, the program answers, and the echo requests follow.
  await execIn(ns, 'ping', ['-c', '2', '-W', '1', '10.99.0.2'], 10_000);
  await waitForOutput(child, /ethertype 806/);
  await waitForOutput(child, /ethertype 800/, 5_000);
  assert.match(ns.exec('ip', ['neigh', 'show', '10.99.0.2']).stdout, /02:00:00:00:99:02/, 'the kernel took the ARP reply');
  ns.ip('link', 'set', name, 'down');
  await waitForOutput(child, /^link down$/m, 5_000);
  child.kill('SIGINT');
  assert.equal(await waitExit(child, 10_000), 0, collect(child).err());
  assert.doesNotMatch(ns.ip('-o', 'link').stdout, new RegExp(`${name}:`), 'closing removed the device');
});

test('examples/embedded-switch.js and embedded-port.js: a LAN, a status print, a tally on exit', async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping' });
  const example = (name: string): string => join(root, 'dist', 'examples', `${name}.js`);
  assert.ok(existsSync(example('embedded-switch')) && existsSync(example('embedded-port')), 'the examples are compiled with the project');
  const dir = keyDir();
  const { sw, hosts } = buildStar(runTag(), 1);
  const h = hosts[0]!;
  const server = await start(sw, example('embedded-switch'), ['switch.key', 'allow', '9999'], dir, /switch \S+ on UDP 9999, local port etl-sw/);
  const port = await start(h.ns, example('embedded-port'), [h.switchAddress], dir, /joined 10\.250\.1\.1:9999 as \S+ on etl0/);
  assert.ok(await pingOnce(h.ns, '10.99.0.254'));
  server.kill('SIGUSR1');
  await waitForOutput(server, /port 2 \S+ 10\.250\.1\.2:\d+: \d+ frames in, MACs [0-9a-f:]{17}/, 5_000);
  port.kill('SIGTERM');
  assert.equal(await waitExit(port, 10_000), 0, collect(port).err());
  assert.match(collect(port).out(), /frames sent by this host, by EtherType: .*0x0800 [1-9]/);
  server.kill('SIGTERM');
  assert.equal(await waitExit(server, 10_000), 0, collect(server).err());
  assert.match(collect(server).out(), /switch closed/);
});
