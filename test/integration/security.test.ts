// End to end, the security model (docs/SECURITY.md) held against real CLIs in
// namespaces: rekeying under load without a gap, joins refused for the right
// reason on both ends, an underlay that carries no plaintext, a member's MAC
// flood contained to its own quota, and SIGHUP removing a member.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildStar, cleanup, collect, ensureTools, requireRoot, runTag, spawnTracked, waitExit, waitFor, waitForOutput, type Netns, type StarHost } from '../helpers/netns.js';
import { bin, controlArgs, count, execIn, lanKeys, pingOnce, portStatus, protocolCounters, root, startPort, startSwitch, switchStatus, SWITCH_PORT } from '../helpers/lan.js';

const ip4 = (i: number): string => `10.99.0.${i}`;
const tmp = mkdtempSync(join(tmpdir(), 'etl-sec-'));
/** Seconds between rekeys on the main LAN: several happen during every test. */
const REKEY_AFTER_S = 2;
/** CONFIRM_TIMEOUT_MS (15 s) plus a tick and a loaded VM's margin. */
const UNCONFIRMED_LOG_MS = 25_000;
/** The port's hint comes after 4 silent attempts (backoff 0.5 + 1 + 2 s), with margin. */
const HINT_MS = 10_000;
const JOINED = /vport etl0 joined /;

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

/** `etherlink keygen --out FILE`: a new key the allow file does not know; returns its public key. */
async function keygen(file: string): Promise<string> {
  const child = spawnTracked(process.execPath, [bin('etherlink'), 'keygen', '--out', file]);
  const status = await waitExit(child, 10_000);
  assert.equal(status, 0, collect(child).err());
  return collect(child).out().trim();
}

/** A vport on `host` that is not expected to join: spawned, not awaited. */
function spawnPort(host: StarHost, i: number, args: readonly string[]): ChildProcess {
  return host.ns.spawn(process.execPath, [
    bin('vport'),
    host.switchAddress,
    String(SWITCH_PORT),
    '--name',
    'etl0',
    '--ip',
    `${ip4(i)}/24`,
    '--port-name',
    `h${i}`,
    ...controlArgs('vport', args),
    ...args,
  ]);
}

interface MainLan {
  sw: Netns;
  hosts: StarHost[];
  vswitch: ChildProcess;
  /** vports of h1..h3, the members that ping and transfer. */
  vports: ChildProcess[];
  /** The allow file this test owns (SIGHUP edits it). */
  allow: string;
}

const MAIN_HOSTS = 7;
const MEMBERS = 3;
let mainPromise: Promise<MainLan> | undefined;
/**
 * The main LAN, encrypted, rekeying every 2 s: h1..h3 members, h4 a member that
 * floods (test 4), h5..h7 hosts whose vports are refused (test 2).
 */
function mainLan(): Promise<MainLan> {
  mainPromise ??= (async () => {
    ensureTools({ ping: 'iputils-ping', tcpdump: 'tcpdump', tc: 'iproute2' });
    const k = lanKeys();
    const allow = join(tmp, 'allow');
    copyFileSync(k.allow, allow);
    const { sw, hosts } = buildStar(runTag(), MAIN_HOSTS);
    const vswitch = await startSwitch(sw, ['--key', k.switchKey, '--allow', allow, '--rekey-after', String(REKEY_AFTER_S)]);
    const vports = await Promise.all(Array.from({ length: MEMBERS }, (_, i) => i + 1).map((i) => startPort(hosts[i - 1]!, i, ['--rekey-after', String(REKEY_AFTER_S)])));
    for (let i = 1; i <= MEMBERS; i++) await waitForOutput(vswitch, new RegExp(`port joined port=h${i} `));
    return { sw, hosts, vswitch, vports, allow };
  })();
  return mainPromise;
}

interface Refusals {
  unlisted: { vport: ChildProcess; pub: string };
  wrongSwitchKey: { vport: ChildProcess; pub: string };
  insecurePort: ChildProcess;
  psk: { vswitch: ChildProcess; good: ChildProcess; bad: ChildProcess; badStartedAt: number };
  /** An --insecure LAN: h1, h2 plaintext members; h3 a keyed vport that can't join it. */
  plain: { sw: Netns; hosts: StarHost[]; vswitch: ChildProcess; securePort: ChildProcess };
}

let refusalsPromise: Promise<Refusals> | undefined;
/**
 * Every refused join starts at once and in the background: the PSK case needs
 * the switch's 15 s confirm timeout, which the other tests' time covers.
 */
function refusals(): Promise<Refusals> {
  refusalsPromise ??= (async () => {
    const l = await mainLan();
    const k = lanKeys();
    // The PSK LAN first: its clock is the longest.
    const pskA = join(tmp, 'psk-a');
    const pskB = join(tmp, 'psk-b');
    for (const f of [pskA, pskB]) {
      const c = spawnTracked(process.execPath, [bin('etherlink'), 'genpsk', '--out', f]);
      assert.equal(await waitExit(c, 10_000), 0, collect(c).err());
    }
    const pskStar = buildStar(runTag(), 2);
    const pskSwitch = await startSwitch(pskStar.sw, ['--psk', pskA]);
    const bad = spawnPort(pskStar.hosts[1]!, 2, ['--key', k.portKey(2), '--switch-key', k.switchPub, '--psk', pskB]);
    const badStartedAt = Date.now();
    const good = await startPort(pskStar.hosts[0]!, 1, ['--psk', pskA]);

    // (a) a key the allow file does not list.
    const strangerPub = await keygen(join(tmp, 'stranger.key'));
    const unlisted = spawnPort(l.hosts[4]!, 5, ['--key', join(tmp, 'stranger.key'), '--switch-key', k.switchPub]);
    // (b) an admitted key, but told another switch's public key (h9's: valid, not the switch's).
    const wrong = spawnPort(l.hosts[5]!, 6, ['--key', k.portKey(6), '--switch-key', k.portPub(9)]);
    // (d) plaintext port, encrypted switch.
    const insecurePort = spawnPort(l.hosts[6]!, 7, ['--insecure']);

    // (d) the other way round, and the plaintext LAN of the capture test.
    const plainStar = buildStar(runTag(), 3);
    const plainSwitch = await startSwitch(plainStar.sw, ['--insecure']);
    const securePort = spawnPort(plainStar.hosts[2]!, 3, ['--key', k.portKey(3), '--switch-key', k.switchPub]);
    await Promise.all([1, 2].map((i) => startPort(plainStar.hosts[i - 1]!, i, ['--insecure'])));
    return {
      unlisted: { vport: unlisted, pub: strangerPub },
      wrongSwitchKey: { vport: wrong, pub: k.portPub(6) },
      insecurePort,
      psk: { vswitch: pskSwitch, good, bad, badStartedAt },
      plain: { sw: plainStar.sw, hosts: plainStar.hosts, vswitch: plainSwitch, securePort },
    };
  })();
  // Handled here so that a failure surfaces in the test that awaits it, not as an unhandled rejection.
  refusalsPromise.catch(() => {});
  return refusalsPromise;
}

/** The ping summary: transmitted and received. */
function pingStats(out: string): { sent: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  if (!m) throw new Error(`no ping summary in:\n${out}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}

/** Escape a string for a RegExp. */
const re = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** A vswitch's counter of completed rekeys (all ports). */
async function rekeys(vswitch: ChildProcess): Promise<number> {
  return protocolCounters(await switchStatus(vswitch))['rekeys']!;
}

/** Move a file between two hosts with `etherlink transfer`; returns both ends' output and the time taken. */
async function transfer(from: Netns, to: Netns, toAddress: string, file: string, out: string, timeoutMs: number): Promise<{ tx: string; rx: string; ms: number }> {
  const rx = to.spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', toAddress, '5001', out]);
  await waitForOutput(rx, /listening on/);
  const started = Date.now();
  const tx = from.spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', toAddress, '5001', file]);
  assert.equal(await waitExit(tx, timeoutMs), 0, `sender failed: ${collect(tx).err()}`);
  assert.equal(await waitExit(rx, 10_000), 0, `receiver failed: ${collect(rx).err()}`);
  return { tx: collect(tx).out(), rx: collect(rx).out(), ms: Date.now() - started };
}

test('encrypted LAN rekeying every 2 s: all pairs ping, 50 MB arrives intact across rekeys, a ping loses at most 1 packet', async (t) => {
  if (!requireRoot(t)) return;
  const l = await mainLan();
  void refusals();

  await Promise.all(
    [1, 2, 3].flatMap((i) =>
      [1, 2, 3]
        .filter((j) => j !== i)
        .map(async (j) => {
          const r = await execIn(l.hosts[i - 1]!.ns, 'ping', ['-c', '2', '-i', '0.2', '-W', '2', ip4(j)]);
          assert.match(r.out, /2 received/, `h${i} -> h${j}:\n${r.out}${r.err}`);
        }),
    ),
  );

  // The file is sent while keys change under it.
  const size = 50 * 1024 * 1024;
  const file = join(tmp, 'payload.bin');
  writeFileSync(file, randomBytes(size));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  // At most 160 Mbit/s on h1's underlay: however fast the machine, 50 MB takes over 2.6 s, longer than a rekey period.
  l.hosts[0]!.ns.exec('tc', ['qdisc', 'add', 'dev', 'u1', 'root', 'tbf', 'rate', '160mbit', 'burst', '256kb', 'latency', '100ms']);
  const rekeysBefore = await rekeys(l.vswitch);
  const r = await transfer(l.hosts[0]!.ns, l.hosts[2]!.ns, ip4(3), file, join(tmp, 'received.bin'), 60_000);
  const rekeysDuring = (await rekeys(l.vswitch)) - rekeysBefore;
  l.hosts[0]!.ns.exec('tc', ['qdisc', 'del', 'dev', 'u1', 'root']);
  t.diagnostic(`50 MB in ${r.ms} ms; switch rekeys during the transfer: ${rekeysDuring}`);
  assert.match(r.tx, new RegExp(`^sent ${size} bytes sha256 ${want} `, 'm'));
  assert.match(r.rx, new RegExp(`^received ${size} bytes sha256 ${want} `, 'm'));
  assert.equal(createHash('sha256').update(readFileSync(join(tmp, 'received.bin'))).digest('hex'), want);
  rmSync(join(tmp, 'received.bin'));
  // Each port rekeys every 2 s, so both ends of the transfer did at least once while it ran.
  assert.ok(r.ms > REKEY_AFTER_S * 1000, `the transfer took ${r.ms} ms, less than a rekey period`);
  assert.ok(rekeysDuring >= 2, `only ${rekeysDuring} rekeys completed during a ${r.ms} ms transfer`);

  // 40 pings over 4 s: both ports rekey at least once while it runs.
  const before = await rekeys(l.vswitch);
  const ping = await execIn(l.hosts[0]!.ns, 'ping', ['-c', '40', '-i', '0.1', '-W', '1', ip4(2)], 15_000);
  const during = (await rekeys(l.vswitch)) - before;
  const s = pingStats(ping.out);
  t.diagnostic(`ping across rekeys: ${s.received}/${s.sent} answered, ${during} rekeys meanwhile`);
  assert.ok(during >= 2, `only ${during} rekeys during 4 s of ping`);
  assert.ok(s.sent - s.received <= 1, `lost ${s.sent - s.received} of ${s.sent} pings across rekeys:\n${ping.out}`);
  for (const v of l.vports) assert.doesNotMatch(collect(v).err(), /session keys expired|switch not answering/, 'no port fell out of its session');
});

test('refused joins: each side logs why (unlisted key, wrong switch key, wrong PSK, --insecure on one side)', async (t) => {
  if (!requireRoot(t)) return;
  const l = await mainLan();
  const r = await refusals();
  const switchErr = (): string => collect(l.vswitch).err();

  // (a) Unlisted key: the switch names the key and where it came from; the port names its own key.
  const hint = /no handshake response from the switch after 4 attempts: check that --switch-key/;
  await waitForOutput(r.unlisted.vport, hint, HINT_MS);
  assert.match(collect(r.unlisted.vport).err(), new RegExp(`${hint.source}[^\\n]*this port's key ${re(r.unlisted.pub)} is in the switch's allow file`));
  assert.match(switchErr(), new RegExp(`handshake from a key not in the allow file[^\\n]* key=${re(r.unlisted.pub)} address=10\\.250\\.5\\.2:\\d+`));

  // (b) Wrong --switch-key: mac1 fails before any DH; the port's hint is the same advice.
  await waitForOutput(r.wrongSwitchKey.vport, hint, HINT_MS);
  assert.match(collect(r.wrongSwitchKey.vport).err(), new RegExp(re(r.wrongSwitchKey.pub)));
  assert.match(switchErr(), /dropped a handshake not meant for this switch key \(bad mac1\)[^\n]*address=10\.250\.6\.2:\d+/);

  // (d) Plaintext port, encrypted switch: the handshake is refused, and both say why and what to do.
  await waitForOutput(r.insecurePort, /the switch requires keys and refuses --insecure ports: give this port --key and --switch-key/, HINT_MS);
  assert.match(switchErr(), /a port running --insecure tried to join: this switch requires keys[^\n]*address=10\.250\.7\.2:\d+/);
  // Keyed port, plaintext switch.
  await waitForOutput(r.plain.securePort, /the switch runs --insecure \(plaintext\) and refuses keyed ports: run this port with --insecure too/, HINT_MS);
  await waitForOutput(r.plain.vswitch, /a keyed port tried to join this --insecure switch[^\n]*address=10\.250\.3\.2:\d+/, HINT_MS);

  // (c) Wrong PSK: the initiation is fine (the PSK enters at the response), so the switch answers,
  // the port can't authenticate the answer and says so; the switch sees its keys never used.
  await waitForOutput(r.psk.bad, /the switch answered but its handshake response does not authenticate: the PSK differs/, HINT_MS);
  await waitForOutput(r.psk.vswitch, /handshake not confirmed: the port never used the new keys \(a PSK mismatch\?\) port=h2 /, Math.max(1, UNCONFIRMED_LOG_MS - (Date.now() - r.psk.badStartedAt)));
  t.diagnostic(`wrong PSK: 'handshake not confirmed' within ${Date.now() - r.psk.badStartedAt} ms of the port's start`);
  assert.match(collect(r.psk.good).out(), JOINED, 'the port with the right PSK joined');
  assert.match(collect(r.psk.vswitch).err(), /port joined port=h1 /);
  assert.doesNotMatch(collect(r.psk.vswitch).err(), /port joined port=h2 /);
  assert.equal(protocolCounters(await switchStatus(r.psk.vswitch))['unconfirmed']! >= 1, true);

  // None of them ever joined, and the switch counted each kind.
  for (const v of [r.unlisted.vport, r.wrongSwitchKey.vport, r.insecurePort, r.psk.bad, r.plain.securePort]) {
    assert.doesNotMatch(collect(v).out(), /joined/, collect(v).out());
    assert.equal(v.exitCode, null, 'a refused vport keeps trying; it does not exit');
  }
  assert.doesNotMatch(switchErr(), /port joined port=(h5|h6|h7|stranger)/);
  const c = protocolCounters(await switchStatus(l.vswitch));
  assert.ok(c['unlisted keys']! >= 1 && c['bad mac1']! >= 1 && c['insecure ports']! >= 1 && c['refusals sent']! >= 1, JSON.stringify(c));
});

/** tcpdump -w on `ifname` in `ns`, resolved once capturing. */
async function startPcap(ns: Netns, ifname: string, file: string): Promise<ChildProcess> {
  // A large buffer: a loaded VM must not drop the packets the assertion is about.
  const child = ns.spawn('tcpdump', ['-i', ifname, '-nn', '-U', '-s', '0', '-B', '32768', '-w', file, 'udp', 'port', String(SWITCH_PORT)]);
  await waitForOutput(child, new RegExp(`listening on ${ifname}`), 10_000);
  return child;
}

/** Stop a capture; returns tcpdump's summary ("N packets captured ... M dropped by kernel"). */
async function stopPcap(child: ChildProcess): Promise<string> {
  child.kill('SIGINT');
  await waitExit(child, 5_000);
  return collect(child).err().split('\n').filter((line) => /packets/.test(line)).join(', ');
}

test('a capture of the underlay during a transfer holds no plaintext (and does on an --insecure LAN)', async (t) => {
  if (!requireRoot(t)) return;
  const l = await mainLan();
  const r = await refusals();
  const phrase = `EtherLink plaintext marker ${randomBytes(6).toString('hex')}: the quick brown fox jumps over the lazy dog.\n`;
  const text = join(tmp, 'text.txt');
  writeFileSync(text, phrase.repeat(Math.ceil((2 * 1024 * 1024) / phrase.length)));
  const needle = Buffer.from(phrase.slice(0, 40));
  const size = statSync(text).size;

  const run = async (sw: Netns, hosts: StarHost[], name: string): Promise<Buffer> => {
    const pcap = join(tmp, `${name}.pcap`);
    const cap = await startPcap(sw, 's1', pcap);
    const x = await transfer(hosts[0]!.ns, hosts[1]!.ns, ip4(2), text, join(tmp, `${name}.out`), 30_000);
    assert.match(x.rx, new RegExp(`^received ${size} bytes `, 'm'));
    const summary = await stopPcap(cap);
    const bytes = readFileSync(pcap);
    t.diagnostic(`${name}: ${size} bytes sent, capture ${bytes.length} bytes (${summary})`);
    // The capture really saw the transfer. Not all of it: packets still in the kernel's
    // buffer when tcpdump is stopped are counted "received by filter" but never written.
    assert.ok(bytes.length >= 0.5 * size, `${name} capture holds ${bytes.length} bytes for a ${size}-byte file (${summary})`);
    return bytes;
  };
  const sealed = await run(l.sw, l.hosts, 'encrypted');
  assert.equal(sealed.indexOf(needle), -1, 'the encrypted underlay carries the file in clear');
  // The same method finds it when nothing is encrypted: the check above can fail.
  const clear = await run(r.plain.sw, r.plain.hosts, 'insecure');
  assert.ok(count(clear.toString('latin1'), new RegExp(re(needle.toString('latin1')))) > 100, 'the --insecure capture shows the file in clear');
});

/** The flooder: a member that joins with the library and sends frames from random source MACs. */
const FLOODER = `
import { readFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
const { PortClient, MutableFrameBatch } = await import(process.argv[2]);
const [host, port, keyFile, switchPub, total, gapMs, rekeyS] = process.argv.slice(3);
const client = await PortClient.start({
  host, port: Number(port), tap: { name: 'etlf0' },
  privateKey: readFileSync(keyFile, 'utf8').trim(),
  switchPublicKey: switchPub,
  rekeyAfterS: Number(rekeyS),
});
process.on('SIGTERM', () => { client.close(); setImmediate(() => process.exit(0)); });
await new Promise((resolve, reject) => {
  client.once('joined', resolve);
  setTimeout(() => reject(new Error('flooder: not joined within 10 s')), 10_000).unref();
});
console.log('flooder joined');
const FRAME = 60, PER_BATCH = 64;
const buf = Buffer.alloc(FRAME * PER_BATCH);
const batch = new MutableFrameBatch(buf, PER_BATCH);
const deadline = Date.now() + 20_000;
let sent = 0;
while (sent < Number(total) && Date.now() < deadline) {
  batch.clear();
  for (let i = 0; i < PER_BATCH && sent < Number(total); i++, sent++) {
    const off = i * FRAME;
    buf.writeUIntBE(0x020000000001, off, 6);          // unknown unicast: flooded
    randomFillSync(buf, off + 6, 6);
    buf[off + 6] = (buf[off + 6] & 0xfc) | 0x02;      // unicast, locally administered
    buf.writeUInt16BE(0x88b5, off + 12);              // local experimental ethertype
    batch.push(off, FRAME);
  }
  client.send(batch);
  await new Promise((r) => setTimeout(r, Number(gapMs)));
}
console.log('flooded ' + sent + ' frames');
`;

/** VmRSS of a process in bytes. */
function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** The "not learned (limits)" counter of a status block. */
function notLearned(status: string): number {
  const m = /not learned \(limits\) (\d+)/.exec(status);
  if (!m) throw new Error(`no 'not learned' counter in:\n${status}`);
  return Number(m[1]);
}

test('a member flooding 10,000 random source MACs fills only its own 64-MAC quota; the others keep talking', async (t) => {
  if (!requireRoot(t)) return;
  const l = await mainLan();
  const pid = l.vswitch.pid!;
  // ip netns exec execs in place: the PID we hold is the vswitch's node process.
  assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /vswitch\.js/);
  const before = await switchStatus(l.vswitch);
  const rssBefore = rss(pid);
  const k = lanKeys();
  const script = join(tmp, 'flood.mjs');
  writeFileSync(script, FLOODER);
  const total = 10_000;
  const flooder = l.hosts[3]!.ns.spawn(process.execPath, [
    script,
    pathToFileURL(join(root, 'dist', 'lib', 'index.js')).href,
    l.hosts[3]!.switchAddress,
    String(SWITCH_PORT),
    k.portKey(4),
    k.switchPub,
    String(total),
    '10',
    String(REKEY_AFTER_S),
  ]);
  await waitForOutput(flooder, /flooder joined/, 15_000);
  // Pings between the others run while the flood does (~157 batches, 10 ms apart).
  const [p13, p21] = await Promise.all([
    execIn(l.hosts[0]!.ns, 'ping', ['-c', '40', '-i', '0.05', '-W', '1', ip4(3)], 15_000),
    execIn(l.hosts[1]!.ns, 'ping', ['-c', '40', '-i', '0.05', '-W', '1', ip4(1)], 15_000),
    waitForOutput(flooder, new RegExp(`flooded ${total} frames`), 25_000),
  ]);
  const status = await switchStatus(l.vswitch);
  const rssAfter = rss(pid);
  for (const i of [0, 2]) t.diagnostic(`h${i + 1}: ${(/ {2}end to end: [^\n]*/.exec(await portStatus(l.vports[i]!)) ?? [''])[0].trim()}`);
  for (const [name, p] of [['h1 -> h3', p13], ['h2 -> h1', p21]] as const) {
    const s = pingStats(p.out);
    t.diagnostic(`${name} during the flood: ${s.received}/${s.sent}`);
    assert.ok(s.received >= s.sent - 2, `${name} lost ${s.sent - s.received} of ${s.sent} pings during the flood`);
  }

  const refused = notLearned(status) - notLearned(before);
  // The MACS column, before RELAYED FROM/TO.
  const row = /^\d+\s+h4\s.*\s(\d+)\s+\S+$/m.exec(/PORTS \(\d+\)\n([\s\S]*?)\n\n/.exec(status)?.[1] ?? '');
  assert.ok(row, `h4 in the PORTS table:\n${status}`);
  const macsColumn = Number(row[1]);
  const macRows = count(/MAC TABLE \(\d+\)\n([\s\S]*?)\n\n/.exec(status)?.[1] ?? '', /^\S+\s+\d+\s+\d+ h4\s/m);
  t.diagnostic(`h4: MACS ${macsColumn}, MAC table rows ${macRows}; not learned (limits) +${refused}; vswitch RSS ${(rssBefore / 1e6).toFixed(1)} -> ${(rssAfter / 1e6).toFixed(1)} MB`);
  assert.ok(macsColumn <= 64 && macsColumn > 0, `h4 holds ${macsColumn} MACs`);
  assert.ok(macRows <= 64 && macRows > 0, `${macRows} MAC table rows for h4`);
  assert.ok(refused >= 9_000, `only ${refused} MACs refused by the limits`);
  assert.ok(rssAfter - rssBefore < 50 * 1024 * 1024, `vswitch RSS grew ${(rssAfter - rssBefore) / 1e6} MB`);

  // After the flood: everyone else still reaches everyone.
  for (const [i, j] of [[1, 2], [2, 3], [3, 1]] as const) {
    await waitFor(`h${i} -> h${j} after the flood`, () => pingOnce(l.hosts[i - 1]!.ns, ip4(j)), 5_000, 100);
  }
  flooder.kill('SIGTERM');
  assert.equal(await waitExit(flooder, 5_000), 0, collect(flooder).err());
});

test('SIGHUP after removing h2 from the allow file: h2 is disconnected within seconds, h1 and h3 keep talking', async (t) => {
  if (!requireRoot(t)) return;
  const l = await mainLan();
  assert.ok(await pingOnce(l.hosts[1]!.ns, ip4(1)), 'h2 -> h1 before the reload');
  writeFileSync(
    l.allow,
    readFileSync(l.allow, 'utf8')
      .split('\n')
      .filter((line) => !/ h2$/.test(line))
      .join('\n'),
  );
  l.vswitch.kill('SIGHUP');
  const sent = Date.now();
  await waitForOutput(l.vswitch, /port left port=h2 [^\n]*reason="removed from the allow file"/, 5_000);
  await waitForOutput(l.vswitch, /SIGHUP: allow file reloaded admitted=8 disconnected=h2\n/, 1_000);
  t.diagnostic(`h2 left ${Date.now() - sent} ms after SIGHUP`);
  // The port was told (LEAVE) and its rejoin is refused as an unlisted key.
  await waitForOutput(l.vports[1]!, /switch closed the session/, 3_000);
  const unlisted = new RegExp(`handshake from a key not in the allow file[^\\n]* key=${re(lanKeys().portPub(2))} `);
  await waitForOutput(l.vswitch, unlisted, 5_000);

  const h2 = await execIn(l.hosts[1]!.ns, 'ping', ['-c', '3', '-i', '0.3', '-W', '1', ip4(1)]);
  assert.match(h2.out, / 0 received/, `h2 still reaches h1:\n${h2.out}`);
  assert.ok(await pingOnce(l.hosts[0]!.ns, ip4(3)), 'h1 -> h3 after the reload');
  assert.ok(await pingOnce(l.hosts[2]!.ns, ip4(1)), 'h3 -> h1 after the reload');
  assert.equal(count(collect(l.vports[0]!).out(), JOINED), 1, 'h1 never left');
  assert.equal(count(collect(l.vports[2]!).out(), JOINED), 1, 'h3 never left');
});
