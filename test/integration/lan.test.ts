// End to end: the real vswitch and three vports in network namespaces (a star
// underlay) form one LAN: IPv4 and IPv6 link-local reachability, a 50 MB file
// intact, broadcast flooded but learned unicast not — encrypted, the default.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanup, collect, requireRoot, runTag, waitExit, waitFor, waitForOutput, type Netns } from '../helpers/netns.js';
import { bin, execIn, protocolCounters, switchStatus, SWITCH_PORT, sharedLan, type Lan } from '../helpers/lan.js';

const HOSTS = 3;
const ip4 = (i: number): string => `10.99.0.${i}`;
const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-lan-'));

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const lan = sharedLan(tag, HOSTS);

/** Host i's (1-based) namespace. */
function host(l: Lan, i: number): Netns {
  return l.hosts[i - 1]!.ns;
}

/** etl0's IPv6 link-local address in `ns`, once DAD has finished (no longer tentative). */
async function linkLocal(ns: Netns): Promise<string> {
  let address = '';
  await waitFor(
    `a non-tentative fe80:: address on etl0 in ${ns.name}`,
    () => {
      const line = ns
        .ip('-6', 'addr', 'show', 'dev', 'etl0')
        .stdout.split('\n')
        .find((l) => /inet6 fe80::/.test(l));
      if (line === undefined || /tentative/.test(line)) return false;
      address = /inet6 (fe80::[0-9a-f:]+)\//.exec(line)![1]!;
      return true;
    },
    10_000,
    100,
  );
  return address;
}

/** A tcpdump on etl0 in `ns`, line-buffered text output, resolved once it is capturing. */
async function capture(ns: Netns, filter: string[]): Promise<ChildProcess> {
  const child = ns.spawn('tcpdump', ['-i', 'etl0', '-nn', '-l', ...filter]);
  await waitForOutput(child, /listening on etl0/, 10_000);
  return child;
}

async function stopCapture(child: ChildProcess): Promise<string> {
  child.kill('SIGINT');
  await waitExit(child, 5_000);
  return collect(child).out();
}

test('every host reaches every other over IPv4 and IPv6 link-local', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  const linkLocals = await Promise.all(l.hosts.map((h) => linkLocal(h.ns)));
  for (let i = 1; i <= HOSTS; i++) {
    for (let j = 1; j <= HOSTS; j++) {
      if (i === j) continue;
      const v4 = await execIn(host(l, i), 'ping', ['-c', '2', '-i', '0.2', '-W', '2', ip4(j)]);
      assert.equal(v4.status, 0, `h${i} -> ${ip4(j)}:\n${v4.out}${v4.err}`);
      assert.match(v4.out, /2 received/);
      const target = `${linkLocals[j - 1]}%etl0`;
      const v6 = await execIn(host(l, i), 'ping', ['-6', '-c', '2', '-i', '0.2', '-W', '2', target]);
      assert.equal(v6.status, 0, `h${i} -> ${target}:\n${v6.out}${v6.err}`);
      assert.match(v6.out, /2 received/);
    }
  }
});

test('a 50 MB file crosses h1 -> h3 with the same SHA-256 on both ends', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  const size = 50 * 1024 * 1024;
  const file = join(tmp, 'payload.bin');
  writeFileSync(file, randomBytes(size));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const rx = host(l, 3).spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', ip4(3), '5001', join(tmp, 'received.bin')]);
  await waitForOutput(rx, /listening on/);
  const tx = host(l, 1).spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', ip4(3), '5001', file]);
  const txOut = collect(tx);
  const rxOut = collect(rx);
  assert.equal(await waitExit(tx, 40_000), 0, `sender failed: ${txOut.err()}`);
  assert.equal(await waitExit(rx, 10_000), 0, `receiver failed: ${rxOut.err()}`);
  assert.match(txOut.out(), new RegExp(`^sent ${size} bytes sha256 ${want} `, 'm'));
  assert.match(rxOut.out(), new RegExp(`^received ${size} bytes sha256 ${want} `, 'm'));
  const got = createHash('sha256').update(readFileSync(join(tmp, 'received.bin'))).digest('hex');
  assert.equal(got, want, 'the file written on h3 is the file sent');
});

test('TCP over IPv6 crosses intact, split from TSO super-frames and coalesced again on the far TAP', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  for (const i of [2, 3]) host(l, i).ip('addr', 'add', `fd99::${i}/64`, 'dev', 'etl0', 'nodad');
  const size = 20 * 1024 * 1024;
  const file = join(tmp, 'payload6.bin');
  writeFileSync(file, randomBytes(size));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const rx = host(l, 3).spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', 'fd99::3', '5002', join(tmp, 'received6.bin')]);
  await waitForOutput(rx, /listening on/);
  const tx = host(l, 2).spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', 'fd99::3', '5002', file]);
  assert.equal(await waitExit(tx, 40_000), 0, `sender failed: ${collect(tx).err()}`);
  assert.equal(await waitExit(rx, 10_000), 0, `receiver failed: ${collect(rx).err()}`);
  assert.match(collect(rx).out(), new RegExp(`^received ${size} bytes sha256 ${want} `, 'm'));
  // The offload path did the work: h2's TAP handed over super-frames, h3's took merged ones.
  const statusOf = async (i: number): Promise<{ tap: { rxSuperFrames: number; txSuperFrames: number } }> => {
    const args = l.vports[i - 1]!.spawnargs;
    const control = args[args.indexOf('--control') + 1]!;
    const r = await execIn(host(l, i), process.execPath, [bin('vport'), 'status', '--control', control, '--json']);
    assert.equal(r.status, 0, r.err);
    return JSON.parse(r.out) as { tap: { rxSuperFrames: number; txSuperFrames: number } };
  };
  const h2 = await statusOf(2);
  const h3 = await statusOf(3);
  assert.ok(h2.tap.rxSuperFrames > 0, `h2 read TSO super-frames: ${JSON.stringify(h2.tap)}`);
  assert.ok(h3.tap.txSuperFrames > 0, `h3 wrote coalesced super-frames: ${JSON.stringify(h3.tap)}`);
});

test('broadcast reaches every host; learned unicast between h1 and h2 never reaches h3', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  for (let i = 1; i <= HOSTS; i++) host(l, i).ip('neigh', 'flush', 'dev', 'etl0');

  // An ARP request for an address nobody has is a broadcast: the switch floods it.
  const arpCaptures = [await capture(host(l, 2), ['arp']), await capture(host(l, 3), ['arp'])];
  const who = /Request who-has 10\.99\.0\.99 tell 10\.99\.0\.1\b/;
  const probe = host(l, 1).spawn('ping', ['-c', '1', '-W', '1', ip4(99)]);
  for (const c of arpCaptures) await waitForOutput(c, who, 5_000);
  await waitExit(probe, 5_000);
  for (const c of arpCaptures) assert.match(await stopCapture(c), who);

  // The switch learns h1 and h2 from this exchange.
  const learn = await execIn(host(l, 1), 'ping', ['-c', '1', '-W', '2', ip4(2)]);
  assert.equal(learn.status, 0, learn.out + learn.err);

  const icmp = await capture(host(l, 3), ['icmp']);
  const unicast = await execIn(host(l, 1), 'ping', ['-c', '20', '-i', '0.02', '-s', '1000', '-W', '2', ip4(2)]);
  assert.match(unicast.out, /20 received/, unicast.out + unicast.err);
  // Proof the capture sees ICMP on h3 at all, after the unicast burst on the same wire.
  const marker = await execIn(host(l, 1), 'ping', ['-c', '1', '-W', '2', ip4(3)]);
  assert.equal(marker.status, 0, marker.out + marker.err);
  await waitForOutput(icmp, /10\.99\.0\.1 > 10\.99\.0\.3: ICMP echo request/, 5_000);
  const seen = await stopCapture(icmp);
  const leaked = seen.split('\n').filter((line) => /10\.99\.0\.[12] > 10\.99\.0\.[12]:/.test(line));
  assert.deepEqual(leaked, [], `h3 saw unicast between h1 and h2:\n${seen}`);
});
