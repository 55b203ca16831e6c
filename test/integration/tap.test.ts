// Real TAP devices in network namespaces: a JS bridge through the batch API
// carries ping and a 50 MB TCP transfer; ARP read/reply; link monitoring;
// documented error codes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { TapDevice, type LinkState } from '../../lib/io/tap.js';
import { EtherlinkError } from '../../lib/core/errors.js';
import { buildArp, parseArp, formatMac, parseMac, ARP_REQUEST, EtherType } from '../../lib/core/ethernet.js';
import { Netns, requireRoot, runTag, cleanup, collect, waitExit, waitFor, waitForOutput, run, ensureTools } from '../helpers/netns.js';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
const cli = join(root, 'dist', 'bin', 'etherlink.js');
const linkProbe = join(root, 'dist', 'test', 'helpers', 'link-probe.js');
const tag = runTag();
const opened: TapDevice[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'etl-tap-'));

after(() => {
  for (const t of opened) t.close();
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

function openTap(name: string): TapDevice {
  const t = TapDevice.open({ name });
  opened.push(t);
  return t;
}

function linkExists(name: string, ns?: string): boolean {
  const args = ns ? ['-n', ns, 'link', 'show', name] : ['link', 'show', name];
  return spawnSync('ip', args).status === 0;
}

test('two TAPs in two namespaces, bridged in JS: ping and a 50 MB TCP transfer', async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping' });
  const ns1 = Netns.create('a', tag);
  const ns2 = Netns.create('b', tag);
  const a = openTap(`ta${tag}`);
  const b = openTap(`tb${tag}`);
  for (const [tap, ns, ip] of [
    [a, ns1, '10.201.0.1/24'],
    [b, ns2, '10.201.0.2/24'],
  ] as const) {
    run('ip', ['link', 'set', 'dev', tap.name, 'netns', ns.name]);
    ns.ip('addr', 'add', ip, 'dev', tap.name);
    ns.ip('link', 'set', tap.name, 'up');
  }
  // The bridge: every batch read from one device is written to the other in one call.
  a.setReceiver((batch) => b.write(batch));
  b.setReceiver((batch) => a.write(batch));

  const ping = ns1.spawn('ping', ['-c', '3', '-i', '0.2', '-W', '2', '10.201.0.2']);
  const pingOut = collect(ping);
  assert.equal(await waitExit(ping, 20_000), 0, `ping failed:\n${pingOut.out()}${pingOut.err()}`);
  assert.match(pingOut.out(), /3 received/);

  const file = join(tmp, 'payload.bin');
  writeFileSync(file, randomBytes(50 * 1024 * 1024));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const out = join(tmp, 'received.bin');
  const rx = ns2.spawn(process.execPath, [cli, 'transfer', 'receive', '10.201.0.2', '5001', out]);
  const rxOut = collect(rx);
  await waitForOutput(rx, /listening/);
  const tx = ns1.spawn(process.execPath, [cli, 'transfer', 'send', '10.201.0.2', '5001', file]);
  const txOut = collect(tx);
  assert.equal(await waitExit(tx, 120_000), 0, `sender failed: ${txOut.err()}`);
  assert.equal(await waitExit(rx, 30_000), 0, `receiver failed: ${rxOut.err()}`);
  assert.match(txOut.out(), new RegExp(`sent 52428800 bytes sha256 ${want}`));
  assert.match(rxOut.out(), new RegExp(`received 52428800 bytes sha256 ${want}`));
  assert.ok(a.stats.rxFrames > 1000 && b.stats.txFrames > 1000, 'frames crossed the bridge');
  assert.ok(a.stats.rxBatches < a.stats.rxFrames, 'frames arrived in batches');
  ns1.delete();
  ns2.delete();
});

test('reads the ARP request the kernel sends and writes a reply it accepts', async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping' });
  const ns = Netns.create('arp', tag);
  const tap = openTap(`tr${tag}`);
  run('ip', ['link', 'set', 'dev', tap.name, 'netns', ns.name]);
  ns.ip('addr', 'add', '10.202.0.1/24', 'dev', tap.name);
  ns.ip('link', 'set', tap.name, 'up');
  const fakeMac = '02:00:00:aa:bb:cc';
  let request: ReturnType<typeof parseArp> = null;
  tap.setReceiver((batch) => {
    for (let i = 0; i < batch.count; i++) {
      const arp = parseArp(batch.buf, batch.offsets[i]!, batch.lengths[i]!);
      if (!arp || arp.op !== ARP_REQUEST || arp.targetIp !== '10.202.0.2') continue;
      request = arp;
      tap.writeFrames([
        buildArp({ op: 'reply', senderMac: fakeMac, senderIp: '10.202.0.2', targetMac: arp.senderMac, targetIp: arp.senderIp }),
      ]);
    }
  });
  // One ping makes the kernel resolve 10.202.0.2 first; the echo itself goes unanswered.
  const ping = ns.spawn('ping', ['-c', '1', '-W', '1', '10.202.0.2']);
  await waitExit(ping, 10_000);
  assert.ok(request, 'an ARP request for 10.202.0.2 was read from the device');
  assert.equal((request as { senderIp: string }).senderIp, '10.202.0.1');
  const neigh = ns.ip('neigh', 'show', '10.202.0.2').stdout;
  assert.match(neigh, new RegExp(fakeMac), `the kernel learned our reply: ${neigh}`);
  assert.equal(EtherType.ARP, 0x0806);
  ns.delete();
});

test('device facts, configuration and close()', (t) => {
  if (!requireRoot(t)) return;
  const tap = TapDevice.open({ name: `tc${tag}`, mtu: 1400, mac: '02:11:22:33:44:55', addresses: ['10.203.0.1/24', 'fd00:203::1/64'] });
  opened.push(tap);
  assert.equal(tap.mtu, 1400);
  assert.equal(tap.mac, '02:11:22:33:44:55');
  assert.ok(tap.ifindex > 0);
  const addrs = run('ip', ['addr', 'show', 'dev', tap.name]).stdout;
  assert.match(addrs, /10\.203\.0\.1\/24/);
  assert.match(addrs, /fd00:203::1\/64/);
  assert.throws(() => tap.addAddress('10.203.0.1/24'), { code: 'EEXIST', message: /already exists/ });
  assert.throws(() => tap.addAddress('10.203.0.9/33'), { code: 'ERR_INVALID_ARG_VALUE', message: /\/33/ });
  assert.throws(() => tap.setMtu(70000), { code: 'ERR_INVALID_ARG_VALUE', message: /mtu 70000/ });
  const pattern = TapDevice.open({ name: `tp${tag.slice(0, 6)}%d` });
  opened.push(pattern);
  assert.match(pattern.name, new RegExp(`^tp${tag.slice(0, 6)}\\d+$`));
  assert.ok(linkExists(tap.name));
  tap.close();
  tap.close();
  assert.equal(tap.write({ buf: Buffer.alloc(60), offsets: new Uint32Array([0]), lengths: new Uint32Array([60]), count: 1 }), 0);
  // The fd closes once libuv releases the handle, on the next loop turn.
  return new Promise<void>((resolve) =>
    setTimeout(() => {
      assert.equal(linkExists(tap.name), false, 'a non-persistent device disappears on close');
      resolve();
    }, 100),
  );
});

test('close() inside the batch callback is safe', async (t) => {
  if (!requireRoot(t)) return;
  const ns = Netns.create('cl', tag);
  const tap = openTap(`tx${tag}`);
  run('ip', ['link', 'set', 'dev', tap.name, 'netns', ns.name]);
  ns.ip('addr', 'add', '10.204.0.1/24', 'dev', tap.name);
  ns.ip('link', 'set', tap.name, 'up');
  let batches = 0;
  const closed = new Promise<void>((resolve) => {
    tap.setReceiver(() => {
      batches++;
      tap.close();
      resolve();
    });
  });
  const ping = ns.spawn('ping', ['-c', '2', '-i', '0.2', '-W', '1', '10.204.0.2']);
  await closed;
  await waitExit(ping, 10_000);
  assert.equal(batches, 1, 'no batch is delivered after close');
  assert.equal(tap.isClosed, true);
  ns.delete();
});

test('pause() stops delivery and resume() restarts it', async (t) => {
  if (!requireRoot(t)) return;
  const ns = Netns.create('pr', tag);
  const tap = openTap(`tq${tag}`);
  run('ip', ['link', 'set', 'dev', tap.name, 'netns', ns.name]);
  ns.ip('addr', 'add', '10.205.0.1/24', 'dev', tap.name);
  ns.ip('link', 'set', tap.name, 'up');
  let frames = 0;
  tap.setReceiver((b) => (frames += b.count));
  tap.pause();
  const ping = ns.spawn('ping', ['-c', '3', '-i', '0.2', '-W', '1', '10.205.0.2']);
  await waitExit(ping, 10_000);
  assert.equal(frames, 0, 'nothing delivered while paused');
  tap.resume();
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(frames > 0, 'the frames that waited in the kernel arrive after resume');
  ns.delete();
});

test('documented error codes', async (t) => {
  if (!requireRoot(t)) return;
  const name = `tu${tag}`;
  openTap(name);
  assert.throws(() => TapDevice.open({ name }), { code: 'EBUSY', message: /in use/ });
  assert.throws(() => TapDevice.open({ name }), (err) => err instanceof EtherlinkError && err.syscall === 'TUNSETIFF' && err.errno === -16);
  assert.throws(() => TapDevice.open({ name: 'a-name-longer-than-15' }), { code: 'EINVAL', message: /Linux allows 1\.\.15/ });
  assert.throws(() => TapDevice.open({ name: `tv${tag}`, mac: '02:00:00:00:00' }), { code: 'ERR_INVALID_MAC', message: /02:00:00:00:00/ });
  assert.equal(linkExists(`tv${tag}`), false, 'a rejected open leaves no device behind');
  // Without CAP_NET_ADMIN (root, but the capability dropped from every set).
  const probe = `import('${join(root, 'dist', 'lib', 'index.js')}').then(({ TapDevice }) => { try { TapDevice.open({ name: 'tw${tag}' }); console.log('opened') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) } })`;
  const r = run('setpriv', ['--bounding-set=-net_admin', '--inh-caps=-net_admin', process.execPath, '-e', probe]);
  const res = JSON.parse(r.stdout.trim()) as { code: string; message: string };
  assert.equal(res.code, 'EPERM');
  assert.match(res.message, /CAP_NET_ADMIN/);
  assert.equal(parseMac(formatMac(parseMac('02:AA:bb:cc:dd:ee'))), parseMac('02-aa-bb-cc-dd-ee'));
});

const UP: LinkState = { up: true, adminUp: true, carrier: true };
const ADMIN_DOWN: LinkState = { up: false, adminUp: false, carrier: false };
const NO_CARRIER: LinkState = { up: false, adminUp: true, carrier: false };

test('link monitor: admin down/up and carrier off/on arrive as link events, also after capabilities are dropped', async (t) => {
  if (!requireRoot(t)) return;
  const ns = Netns.create('lk', tag);
  const name = `tl${tag}`;
  const probe = ns.spawn(process.execPath, [linkProbe, name, '--drop-capabilities'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = collect(probe);
  const facts = (): Record<string, unknown>[] => out.out().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const events = (): LinkState[] => facts().flatMap((f) => (f.event ? [f.event as LinkState] : []));
  const nextEvent = async (want: LinkState, what: string): Promise<void> => {
    const seen = events().length;
    await waitFor(`${what}: a link event ${JSON.stringify(want)}`, () => events().length > seen, 5_000, 10);
    assert.deepEqual(events()[seen], want, `${what}: the next event; all so far: ${JSON.stringify(events())}`);
  };
  try {
    await waitForOutput(probe, /"ready"/);
    assert.deepEqual(facts()[0], { queried: UP, linkUp: true }, 'the one-shot query, before watching: up');
    assert.equal(facts().find((f) => 'capEff' in f)?.capEff, '0000000000000000', 'the probe runs with no capabilities');

    ns.ip('link', 'set', name, 'down');
    await nextEvent(ADMIN_DOWN, 'ip link set down');
    ns.ip('link', 'set', name, 'up');
    await nextEvent(UP, 'ip link set up');
    // Not a link state change: no event (the next one is the carrier's).
    ns.ip('link', 'set', name, 'mtu', '1400');
    const carrier = ns.exec('ip', ['link', 'set', name, 'carrier', 'off'], { allowFail: true });
    if (carrier.status === 0) {
      await nextEvent(NO_CARRIER, 'ip link set carrier off');
      ns.ip('link', 'set', name, 'carrier', 'on');
      await nextEvent(UP, 'ip link set carrier on');
    } else {
      t.diagnostic(`this kernel cannot set a TAP's carrier: ${carrier.stderr.trim()}`);
      ns.ip('link', 'set', name, 'down');
      await nextEvent(ADMIN_DOWN, 'ip link set down (again)');
    }
    for (const f of facts().filter((x) => x.event)) {
      assert.equal(f.linkUp, (f.event as LinkState).up, 'linkUp follows the events');
      assert.deepEqual(f.fresh, f.event, 'a fresh SIOCGIFFLAGS query (unprivileged) agrees with the event');
    }
    const count = events().length;
    probe.stdin!.end();
    assert.equal(await waitExit(probe, 10_000), 0, `the probe exits once its TAP is closed: ${out.err()}`);
    assert.deepEqual(facts().at(-1), { closed: ADMIN_DOWN }, 'a closed device reads as down');
    assert.equal(events().length, count, 'no link event after close (the device went away with it)');
  } finally {
    if (probe.exitCode === null) probe.kill('SIGKILL');
    ns.delete();
  }
});

test('link monitor: watchLink() follows a device moved out of this namespace as down', async (t) => {
  if (!requireRoot(t)) return;
  const ns = Netns.create('lm', tag);
  const tap = openTap(`tm${tag}`);
  assert.equal(tap.linkUp, true);
  const seen: LinkState[] = [];
  assert.equal(tap.watchLink(), tap);
  tap.watchLink();
  tap.on('link', (s) => seen.push(s));
  assert.deepEqual(tap.link, UP);
  run('ip', ['link', 'set', 'dev', tap.name, 'netns', ns.name]);
  await waitFor('the link event of the move', () => seen.length > 0, 5_000, 10);
  assert.deepEqual(seen, [ADMIN_DOWN]);
  assert.equal(tap.linkUp, false);
  tap.close();
  assert.deepEqual(tap.link, ADMIN_DOWN);
  ns.delete();
});
