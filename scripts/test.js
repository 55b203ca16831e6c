#!/usr/bin/env node
// Runs the suite: unit tests in parallel, then the integration tests (real
// namespaces and TAPs) one file at a time so throughput tests don't fight for 2 cores.
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const list = (dir) =>
  existsSync(join(root, dir))
    ? readdirSync(join(root, dir)).filter((f) => f.endsWith('.test.js')).sort().map((f) => join(dir, f))
    : [];

// Tools the integration tests drive, from Debian's packages, installed when missing.
const TOOLS = { ping: 'iputils-ping', tcpdump: 'tcpdump', setpriv: 'util-linux', ip: 'iproute2', nft: 'nftables', sysctl: 'procps', nginx: 'nginx', openssl: 'openssl', tcpreplay: 'tcpreplay', chromium: 'chromium', ethtool: 'ethtool', 'ovs-vsctl': 'openvswitch-switch' };
const isRoot = process.getuid?.() === 0;
if (isRoot) {
  // The same install the tests' ensureTools does (built by `npm run build:ts` first): no service of a package started.
  try {
    const { ensureTools } = await import('../dist/lab/netns.js');
    const installed = ensureTools(TOOLS, (line) => console.log(line));
    if (installed.length > 0) console.log(`installed test tools: ${installed.join(' ')}`);
  } catch (err) {
    console.error(`installing the test tools failed: ${err.message}`);
    process.exit(1);
  }
} else if (process.env.CI === 'true') {
  console.error('CI=true but not root: the integration tests need root (namespaces, TAP devices). Run as root.');
  process.exit(1);
} else {
  console.log('not root: privileged integration tests will be skipped (run as root to execute them)');
}

const only = process.argv.slice(2);
const unit = list('dist/test/unit');
const integration = list('dist/test/integration');
const files = only.length > 0 ? only : [...unit, ...integration];
const r = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=1', '--test-timeout=300000', ...files],
  { cwd: root, stdio: 'inherit', env: process.env },
);
process.exit(r.status ?? 1);
