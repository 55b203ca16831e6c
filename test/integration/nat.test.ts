// Direct paths between ports through NAT, the switch as rendezvous (issue 11),
// against real nftables NAT in namespaces (test/helpers/nat.ts): first the lab
// itself (each router's mapping is measured before anything is asserted on
// EtherLink, so a wrong emulation fails loudly), then the scenarios.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cleanup, collect, requireRoot, runTag, waitExit, waitFor, type Netns } from '../helpers/netns.js';
import { count, SWITCH_PORT, waitForCount } from '../helpers/lan.js';
import {
  ATTACKER_ADDRESS,
  buildNatLab,
  counterDelta,
  hostOf,
  JOINED,
  linkCounters,
  peerReport,
  ping,
  pingReplies,
  portReport,
  punch,
  restartNatSwitch,
  sendUdp,
  startNatPort,
  startNatSwitch,
  startStream,
  startUdpCapture,
  switchReport,
  SWITCH_ADDRESS,
  waitForPath,
  withDiagnosis,
  type NatDaemon,
  type NatHost,
  type NatLab,
  type NatPeerReport,
  type NatRouter,
  type NatSwitchReport,
  type RouterSpec,
} from '../helpers/nat.js';

const tag = runTag();
after(() => cleanup());

test('the NAT lab: masquerade maps endpoint-independently, masquerade random per destination; hosts reach the switch and not each other; block/unblock; conntrack timeouts', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const started = Date.now();
  const lab = buildNatLab(`${tag}l`, [{ mode: 'masquerade' }, { mode: 'masquerade', udpTimeoutS: 5 }, { mode: 'masquerade random' }]);
  const builtMs = Date.now() - started;
  t.after(() => lab.destroy());
  const [r1, r2, r3] = lab.routers as [NatRouter, NatRouter, NatRouter];
  const [h1, h2, h3] = lab.hosts as [NatHost, NatHost, NatHost];

  const m1 = await lab.checkMapping(r1);
  const m3 = await lab.checkMapping(r3);
  t.diagnostic(`built in ${builtMs} ms; r1 ${m1.mapping} ${JSON.stringify(m1.observed)} (local ${m1.localPort}); r3 ${m3.mapping} ${JSON.stringify(m3.observed)} (local ${m3.localPort})`);
  assert.equal(m1.mapping, 'endpoint-independent', JSON.stringify(m1));
  for (const seen of Object.values(m1.observed)) assert.equal(seen, `${r1.wan}:${m1.localPort}`, 'masquerade keeps the source port');
  assert.equal(m3.mapping, 'endpoint-dependent', JSON.stringify(m3));
  for (const seen of Object.values(m3.observed)) assert.match(seen, new RegExp(`^${r3.wan.replace(/\./g, '\\.')}:\\d+$`), 'masqueraded to r3');

  for (const h of lab.hosts) assert.ok(await ping(h, SWITCH_ADDRESS), `${h.name} pings the switch`);
  // A hole punch between the two masquerade routers works (the lab allows direct
  // paths), and through the symmetric one it does not. What must fail runs side by side.
  const open = await punch(h1, h2);
  assert.deepEqual(open, { port: open.port, aFrom: `${r2.wan}:${open.port}`, bFrom: `${r1.wan}:${open.port}` }, 'h1 and h2 punch through r1 and r2');
  const [across12, across23, sym] = await Promise.all([ping(h1, h2.lan), ping(h2, h3.lan), punch(h1, h3, 1_000)]);
  assert.equal(across12, false, 'h1 reaches h2 on its LAN address across routers');
  assert.equal(across23, false, 'h2 reaches h3 on its LAN address across routers');
  assert.equal(sym.aFrom, undefined, `h1 heard h3 through the symmetric r3: ${JSON.stringify(sym)}`);

  lab.block(r1, r2);
  const dropsBefore = lab.blockedDrops();
  const [blocked, sw1, sw2] = await Promise.all([punch(h1, h2, 1_000), ping(h1, SWITCH_ADDRESS), ping(h2, SWITCH_ADDRESS)]);
  assert.deepEqual(blocked, { port: blocked.port }, 'UDP between r1 and r2 still passes while blocked');
  assert.ok(lab.blockedDrops() > dropsBefore, 'the block counted its drops');
  assert.ok(sw1 && sw2, 'h1 and h2 reach the switch while blocked');
  lab.unblock(r1, r2);
  const reopened = await punch(h1, h2);
  assert.ok(reopened.aFrom !== undefined && reopened.bFrom !== undefined, `unblocked: ${JSON.stringify(reopened)}`);

  // Timeouts are per namespace: r2's are 5 s, r1's and the machine's untouched;
  // and they are what the punched flow's conntrack entries count down from.
  const read = (r: NatRouter, key: string): string => r.ns.exec('sysctl', ['-n', `net.netfilter.${key}`]).stdout.trim();
  assert.equal(read(r2, 'nf_conntrack_udp_timeout'), '5');
  assert.equal(read(r2, 'nf_conntrack_udp_timeout_stream'), '5');
  assert.notEqual(read(r1, 'nf_conntrack_udp_timeout'), '5', 'the timeout leaked into r1');
  assert.notEqual(readFileSync('/proc/sys/net/netfilter/nf_conntrack_udp_timeout', 'utf8').trim(), '5', "the timeout leaked into this machine's namespace");
  const flow = (r: NatRouter) => lab.conntrackEntries(r).find((e) => e.original.sport === reopened.port && e.original.dport === reopened.port);
  const f1 = flow(r1);
  const f2 = flow(r2);
  t.diagnostic(`punched flow: r1 ${JSON.stringify(f1)}; r2 ${JSON.stringify(f2)}`);
  assert.ok(f2 !== undefined && f2.timeoutS <= 5, `r2's entry expires in ${f2?.timeoutS} s`);
  assert.ok(f1 !== undefined && f1.timeoutS > 5, `r1's entry expires in ${f1?.timeoutS} s`);
  assert.equal(f1.reply.dst, r1.wan, 'r1 masqueraded the flow to its public address');
  t.diagnostic(`lab self-test ${Date.now() - started} ms`);
});

// ---------------------------------------------------------------------------
// The scenarios. Each builds its own lab, checks the routers' mapping first,
// and on failure reports every daemon's status JSON, log tail and the routers'
// conntrack entries (withDiagnosis).

const MB = 1024 * 1024;
/** The transfer of scenarios 1 and 2. */
const TRANSFER_BYTES = 20 * MB;
/** How long a pair may take to find its direct path after first contact. */
const DIRECT_WITHIN_MS = 20_000;
/** At most this share of a direct transfer's bytes may cross the switch's underlay (keepalives, probes, the TCP handshake's first frames). */
const SWITCH_SHARE_MAX = 0.05;
/** A log line saying a peer's path changed (lib/core/log.ts: "msg key=value ..."). */
const pathChanged = (peer: string, path: 'direct' | 'relayed'): RegExp => new RegExp(`path changed\\b.*\\bpeer=${peer}\\b.*\\bpath=${path}\\b`);

interface NatLan {
  lab: NatLab;
  sw: NatDaemon;
  /** One vport per host, by host index - 1. */
  ports: NatDaemon[];
  all: () => NatDaemon[];
}

/**
 * A lab, its switch and a vport on every host (started together), all ended when
 * the test ends: on a 2-core machine one test's daemons must not run under the next.
 */
async function natLan(t: TestContext, name: string, specs: readonly RouterSpec[], opts: { switchArgs?: readonly string[]; portArgs?: (h: NatHost) => readonly string[] } = {}): Promise<NatLan> {
  const lab = buildNatLab(`${tag}${name}`, specs);
  const started: NatDaemon[] = [];
  t.after(async () => {
    await Promise.all(started.map((d) => d.stop()));
    lab.destroy();
  });
  const sw = await startNatSwitch(lab, opts.switchArgs ?? []);
  started.push(sw);
  const ports = await Promise.all(
    lab.hosts.map(async (h) => {
      const p = await startNatPort(lab, h, opts.portArgs?.(h) ?? []);
      started.push(p);
      return p;
    }),
  );
  const l: NatLan = { lab, sw, ports, all: () => [l.sw, ...l.ports] };
  return l;
}

/** Measure every router's mapping and insist it is what the scenario needs. */
async function expectMapping(lab: NatLab, routers: readonly NatRouter[], want: 'endpoint-independent' | 'endpoint-dependent', t: { diagnostic(m: string): void }): Promise<void> {
  for (const r of routers) {
    const m = await lab.checkMapping(r);
    t.diagnostic(`${r.name} (${r.mode}): ${m.mapping}, local port ${m.localPort} seen as ${JSON.stringify(m.observed)}`);
    assert.equal(m.mapping, want, `the lab's ${r.name} (${r.mode}) does not map ${want}: ${JSON.stringify(m)}`);
  }
}

/** Ping until the pair session carries traffic both ways (first contact). */
/** First contact h1 -> h2, then both sides on a direct path: each one's view of the other. */
async function goDirect(h1: NatHost, p1: NatDaemon, h2: NatHost, p2: NatDaemon): Promise<[NatPeerReport, NatPeerReport]> {
  await firstContact(h1, p1, h2);
  const d1 = await waitForPath(p1, h2.name, 'direct', DIRECT_WITHIN_MS, () => ping(h1, h2.overlay));
  const d2 = await waitForPath(p2, h1.name, 'direct', 5_000, () => ping(h2, h1.overlay));
  return [d1, d2];
}

async function firstContact(from: NatHost, port: NatDaemon, to: NatHost): Promise<void> {
  let last: unknown;
  await waitFor(
    `first contact ${from.name} -> ${to.name}`,
    async () => {
      await ping(from, to.overlay);
      const p = (await portReport(port)).peers.find((x) => x.name === to.name);
      last = p;
      return p !== undefined && p.state === 'up' && p.rxFrames > 0;
    },
    15_000,
    100,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last seen: ${JSON.stringify(last)}`);
  });
}

/** A TCP transfer `from` -> `to` with the switch's and the sender's underlay counters around it. */
async function measuredTransfer(lab: NatLab, from: NatHost, to: NatHost, bytes: number): Promise<{ sha: [string, string]; bytes: number; seconds: number; switchBytes: number; switchPackets: number; senderBytes: number; senderPackets: number }> {
  const sw0 = lab.switchCounters();
  const tx0 = linkCounters(from.ns, 'eth0');
  const s = await startStream(from, to, { bytes, timeoutMs: 60_000 });
  const { sent, received } = await s.done();
  const sw = counterDelta(lab.switchCounters(), sw0);
  const tx = counterDelta(linkCounters(from.ns, 'eth0'), tx0);
  return {
    sha: [sent.sha256, received.sha256],
    bytes: received.bytes,
    seconds: received.seconds,
    switchBytes: sw.rxBytes + sw.txBytes,
    switchPackets: sw.rxPackets + sw.txPackets,
    senderBytes: tx.txBytes,
    senderPackets: tx.txPackets,
  };
}

const pct = (part: number, whole: number): string => `${((100 * part) / Math.max(1, whole)).toFixed(2)}%`;

test('endpoint-independent NAT on both sides: after first contact a 20 MB transfer goes direct, the switch sees under 5% of it', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const started = Date.now();
  const l = await natLan(t, 'a', [{ mode: 'masquerade' }, { mode: 'masquerade' }]);
  const [r1, r2] = l.lab.routers as [NatRouter, NatRouter];
  const [h1, h2] = l.lab.hosts as [NatHost, NatHost];
  const [p1, p2] = l.ports as [NatDaemon, NatDaemon];
  await expectMapping(l.lab, [r1, r2], 'endpoint-independent', t);
  await withDiagnosis(l.lab, l.all, async () => {
    const [d1, d2] = await goDirect(h1, p1, h2, p2);
    assert.equal(hostOf(d1.endpoint), r2.wan, `h1 reaches h2 at r2's public address: ${JSON.stringify(d1)}`);
    assert.equal(hostOf(d2.endpoint), r1.wan, `h2 reaches h1 at r1's public address: ${JSON.stringify(d2)}`);
    assert.ok(d1.candidates.some((c) => hostOf(c.address) === r2.wan && c.working), `a working candidate at r2's address: ${JSON.stringify(d1.candidates)}`);
    assert.equal(typeof d1.rttMs, 'number', 'the direct path has an RTT');
    assert.ok(d1.pathSince !== undefined && Date.parse(d1.pathSince) >= started - 1_000, `pathSince is when the path went direct: ${d1.pathSince}`);
    assert.match(p1.output(), pathChanged('h2', 'direct'), 'h1 logged the path change');

    const before = (await portReport(p1)).peers.find((p) => p.name === 'h2')!;
    const x = await measuredTransfer(l.lab, h1, h2, TRANSFER_BYTES);
    const after = (await portReport(p1)).peers.find((p) => p.name === 'h2')!;
    t.diagnostic(
      `20 MB in ${x.seconds.toFixed(2)} s; switch underlay ${x.switchBytes} B / ${x.switchPackets} pkts = ${pct(x.switchBytes, x.bytes)} of the bytes ` +
        `(h1 underlay sent ${x.senderBytes} B / ${x.senderPackets} pkts); h1 -> h2 direct +${after.txDirectBytes - before.txDirectBytes} B, relayed +${after.txRelayBytes - before.txRelayBytes} B`,
    );
    assert.equal(x.sha[1], x.sha[0], 'SHA-256 differs between the ends');
    assert.equal(x.bytes, TRANSFER_BYTES);
    // Bytes, not packets: UDP GSO can put many datagrams in one counted packet on a veth.
    assert.ok(x.switchBytes < SWITCH_SHARE_MAX * x.bytes, `the switch's underlay carried ${pct(x.switchBytes, x.bytes)} of the transfer (${x.switchBytes} B)`);
    assert.ok(x.senderBytes > x.bytes, `the measure can fail: h1's underlay sent ${x.senderBytes} B`);
    assert.ok(after.txDirectBytes - before.txDirectBytes >= x.bytes, `h1 counted the transfer as direct: ${JSON.stringify(after)}`);
    assert.ok(after.txRelayBytes - before.txRelayBytes < SWITCH_SHARE_MAX * x.bytes, `h1 relayed part of the transfer: ${JSON.stringify(after)}`);
    assert.equal(after.path, 'direct');

    const r = await portReport(p1);
    assert.equal(r.nat, 'endpoint-independent', `h1's own NAT as measured against the switch: ${r.nat}`);
    const s = await switchReport(l.sw);
    const pair = s.pairs?.find((p) => [p.a, p.b].sort().join() === 'h1,h2');
    assert.equal(pair?.path, 'direct', `the switch's view of the pair: ${JSON.stringify(s.pairs)}`);
    // What went direct, the switch hears from the ports (TRAFFIC_REPORT, each second): its status and charts show it.
    let seen: Record<string, { txBytes: number; rxBytes: number } | undefined> = {};
    await waitFor("the ports' reports of their direct traffic at the switch", async () => {
      const ports = (await switchReport(l.sw)).ports;
      seen = Object.fromEntries(['h1', 'h2'].map((n) => [n, ports.find((p) => p.name === n)?.directTraffic]));
      return (seen['h1']?.txBytes ?? 0) >= after.txDirectBytes && (seen['h2']?.rxBytes ?? 0) >= TRANSFER_BYTES;
    }, 10_000, 200).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(seen)}; h1 counted ${after.txDirectBytes} B direct`);
    });
    t.diagnostic(`the switch's status: h1 sent ${seen['h1']!.txBytes} B direct, h2 received ${seen['h2']!.rxBytes} B direct`);
  });
});

test('symmetric NAT on both sides: the 20 MB transfer completes intact through the relay, status says why', { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const started = Date.now();
  const l = await natLan(t, 's', [{ mode: 'masquerade random' }, { mode: 'masquerade random' }]);
  const [r1, r2] = l.lab.routers as [NatRouter, NatRouter];
  const [h1, h2] = l.lab.hosts as [NatHost, NatHost];
  const [p1] = l.ports as [NatDaemon, NatDaemon];
  await expectMapping(l.lab, [r1, r2], 'endpoint-dependent', t);
  await withDiagnosis(l.lab, l.all, async () => {
    await firstContact(h1, p1, h2);
    let peer = (await portReport(p1)).peers.find((p) => p.name === 'h2');
    await waitFor(
      'h1 to say why h2 is relayed',
      async () => {
        await ping(h1, h2.overlay);
        peer = (await portReport(p1)).peers.find((p) => p.name === 'h2');
        return peer?.path === 'relayed' && /symmetric/i.test(peer.reason ?? '');
      },
      DIRECT_WITHIN_MS,
      200,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${JSON.stringify(peer)}`);
    });
    const x = await measuredTransfer(l.lab, h1, h2, TRANSFER_BYTES);
    t.diagnostic(`20 MB relayed in ${x.seconds.toFixed(2)} s; switch underlay ${x.switchBytes} B (${pct(x.switchBytes, x.bytes)}); reason "${peer?.reason}"`);
    assert.equal(x.sha[1], x.sha[0], 'SHA-256 differs between the ends');
    assert.equal(x.bytes, TRANSFER_BYTES);
    // In to the switch and out again: twice the transfer, less nothing.
    assert.ok(x.switchBytes >= 2 * x.bytes, `the relay carried the transfer: ${x.switchBytes} B on the switch's underlay`);
    const after = (await portReport(p1)).peers.find((p) => p.name === 'h2')!;
    assert.equal(after.path, 'relayed');
    assert.ok(after.txRelayBytes >= x.bytes, `h1 counted the transfer as relayed: ${JSON.stringify(after)}`);
    assert.equal(after.endpoint, undefined, 'a relayed peer has no direct endpoint');
    assert.ok(after.pathSince === undefined || Date.parse(after.pathSince) >= started - 1_000, `pathSince is when the session went relayed: ${after.pathSince}`);
    const r = await portReport(p1);
    assert.equal(r.nat, 'endpoint-dependent', `h1's own NAT as measured against the switch: ${r.nat}`);
    const s = await switchReport(l.sw);
    const pair = s.pairs?.find((p) => [p.a, p.b].sort().join() === 'h1,h2');
    assert.equal(pair?.path, 'relayed', `the switch's view of the pair: ${JSON.stringify(s.pairs)}`);
    assert.match(pair?.reason ?? '', /symmetric/i);
  });
});

test('two hosts behind one router go direct over their LAN addresses, not the router\'s public one', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await natLan(t, 'o', [{ mode: 'masquerade', hosts: 2 }]);
  const [r1] = l.lab.routers as [NatRouter];
  const [h1, h2] = l.lab.hosts as [NatHost, NatHost];
  const [p1, p2] = l.ports as [NatDaemon, NatDaemon];
  await expectMapping(l.lab, [r1], 'endpoint-independent', t);
  await withDiagnosis(l.lab, l.all, async () => {
    const [d1, d2] = await goDirect(h1, p1, h2, p2);
    t.diagnostic(`h1 -> h2 at ${d1.endpoint}, h2 -> h1 at ${d2.endpoint}; h1's candidates for h2 ${JSON.stringify(d1.candidates)}`);
    assert.equal(hostOf(d1.endpoint), h2.lan, `h1 reaches h2 on its LAN address: ${JSON.stringify(d1)}`);
    assert.equal(hostOf(d2.endpoint), h1.lan, `h2 reaches h1 on its LAN address: ${JSON.stringify(d2)}`);
    assert.ok(d1.candidates.some((c) => c.kind === 'local' && hostOf(c.address) === h2.lan && c.working), `a working local candidate: ${JSON.stringify(d1.candidates)}`);
    // And the traffic stays on the LAN: neither the switch nor the router's WAN carries it.
    const wan0 = linkCounters(r1.ns, 'wan');
    const x = await measuredTransfer(l.lab, h1, h2, 5 * MB);
    const wan = counterDelta(linkCounters(r1.ns, 'wan'), wan0);
    t.diagnostic(`5 MB in ${x.seconds.toFixed(2)} s; switch underlay ${pct(x.switchBytes, x.bytes)}, r1 WAN ${pct(wan.txBytes + wan.rxBytes, x.bytes)}`);
    assert.equal(x.sha[1], x.sha[0]);
    assert.ok(wan.txBytes + wan.rxBytes < SWITCH_SHARE_MAX * x.bytes, `r1's WAN carried ${wan.txBytes + wan.rxBytes} B of a LAN transfer`);
  });
});

test('the direct path dies mid-transfer: the transfer completes intact without a 2 s stall over the relay, and goes direct again once unblocked', { timeout: 150_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await natLan(t, 'd', [{ mode: 'masquerade' }, { mode: 'masquerade' }]);
  const [r1, r2] = l.lab.routers as [NatRouter, NatRouter];
  const [h1, h2] = l.lab.hosts as [NatHost, NatHost];
  const [p1] = l.ports as [NatDaemon, NatDaemon];
  await expectMapping(l.lab, [r1, r2], 'endpoint-independent', t);
  await withDiagnosis(l.lab, l.all, async () => {
    await firstContact(h1, p1, h2);
    await waitForPath(p1, 'h2', 'direct', DIRECT_WITHIN_MS, () => ping(h1, h2.overlay));
    // Rate-bounded so that it runs long enough to be cut: 24 MB at 3 MB/s, about 8 s.
    const bytes = 24 * MB;
    const stream = await startStream(h1, h2, { bytes, rateBytesPerS: 3 * MB, timeoutMs: 60_000 });
    await waitFor('a third of the transfer', () => stream.received() >= bytes / 3, 20_000, 20);
    const mid = (await portReport(p1)).peers.find((p) => p.name === 'h2')!;
    assert.equal(mid.path, 'direct', `the transfer went direct before the cut: ${JSON.stringify(mid)}`);
    const dropsBefore = l.lab.blockedDrops();
    l.lab.block(r1, r2);
    const blockedAt = Date.now();
    const cutAt = stream.received();
    const { sent, received } = await stream.done();
    const relayed = (await portReport(p1)).peers.find((p) => p.name === 'h2')!;
    t.diagnostic(
      `cut at ${(cutAt / MB).toFixed(1)} MB; longest gap ${received.maxGapMs} ms at ${(received.maxGapAtBytes / MB).toFixed(1)} MB; ` +
        `done ${Date.now() - blockedAt} ms after the cut; block dropped ${l.lab.blockedDrops() - dropsBefore}; then ${relayed.path} (${relayed.reason})`,
    );
    assert.equal(received.sha256, sent.sha256, 'SHA-256 differs between the ends');
    assert.equal(received.bytes, bytes);
    assert.ok(l.lab.blockedDrops() > dropsBefore, 'the block dropped nothing: the transfer was not on the direct path');
    assert.ok(received.maxGapMs < 2_000, `the transfer stalled ${received.maxGapMs} ms`);
    assert.equal(relayed.path, 'relayed', `relayed after the cut: ${JSON.stringify(relayed)}`);
    assert.ok(relayed.reason !== undefined && relayed.reason.length > 0, 'a relayed path says why');
    assert.match(p1.output(), pathChanged('h2', 'relayed'), 'h1 logged the fall back to the relay');

    l.lab.unblock(r1, r2);
    const unblockedAt = Date.now();
    const back = await waitForPath(p1, 'h2', 'direct', 60_000, () => ping(h1, h2.overlay), 1_000);
    t.diagnostic(`direct again ${Date.now() - unblockedAt} ms after the unblock, at ${back.endpoint}`);
    assert.equal(hostOf(back.endpoint), r2.wan);
  });
});

test('the switch dies while two members talk directly: their pings go on, both rejoin the restarted switch, a relayed pair resumes within seconds', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  // h3 runs --no-direct: h1 <-> h3 is a relayed pair whatever the NATs allow.
  const l = await natLan(t, 'k', [{ mode: 'masquerade' }, { mode: 'masquerade' }, { mode: 'masquerade' }], { portArgs: (h) => (h.index === 3 ? ['--no-direct'] : []) });
  const [r1, r2, r3] = l.lab.routers as [NatRouter, NatRouter, NatRouter];
  const [h1, h2, h3] = l.lab.hosts as [NatHost, NatHost, NatHost];
  const [p1, p2, p3] = l.ports as [NatDaemon, NatDaemon, NatDaemon];
  await expectMapping(l.lab, [r1, r2, r3], 'endpoint-independent', t);
  await withDiagnosis(l.lab, l.all, async () => {
    await firstContact(h1, p1, h2);
    const direct = await waitForPath(p1, 'h2', 'direct', DIRECT_WITHIN_MS, () => ping(h1, h2.overlay));
    await firstContact(h1, p1, h3);
    const relayed = await waitForPath(p1, 'h3', 'relayed', 5_000, () => ping(h1, h3.overlay));
    assert.match(relayed.reason ?? '', /direct paths disabled/, `why h3 is relayed: ${JSON.stringify(relayed)}`);
    const own = (await portReport(p3)).peers.find((p) => p.name === 'h1');
    assert.match(own?.reason ?? '', /--no-direct/, `h3 says why: ${JSON.stringify(own)}`);

    const SWITCH_DOWN_MS = 2_000;
    // 240 pings 50 ms apart (12 s) on the direct pair, 10 a second on the relayed one.
    const COUNT = 240;
    const directPing = h1.ns.spawn('ping', ['-D', '-i', '0.05', '-c', String(COUNT), '-W', '1', h2.overlay]);
    const relayPing = h1.ns.spawn('ping', ['-D', '-i', '0.1', '-W', '1', '-w', '30', h3.overlay]);
    await waitFor('both pairs answering', () => / time=/.test(collect(directPing).out()) && / time=/.test(collect(relayPing).out()), 5_000, 20);
    await new Promise((r) => setTimeout(r, 1_000));
    const joinedBefore = l.ports.map((p) => count(p.output(), JOINED));

    l.sw.child.kill('SIGKILL');
    await waitExit(l.sw.child, 5_000);
    const killedAt = Date.now();
    // Down long enough to matter: 40 direct pings, and every relayed one lost.
    await new Promise((r) => setTimeout(r, SWITCH_DOWN_MS));
    await restartNatSwitch(l.lab, l.sw);
    const readyAt = Date.now();
    for (const [i, p] of l.ports.entries()) await waitForCount(p.child, JOINED, joinedBefore[i]! + 1, 15_000);
    const rejoinedMs = Date.now() - readyAt;
    await waitFor('the relayed pair answering again', () => pingReplies(collect(relayPing).out()).some((r) => r.at > readyAt), 10_000, 50);
    const relayBack = pingReplies(collect(relayPing).out()).find((r) => r.at > killedAt + 100)!;
    relayPing.kill('SIGINT');
    await waitExit(relayPing, 5_000);
    await waitExit(directPing, 30_000);

    const replies = pingReplies(collect(directPing).out());
    const seqs = replies.map((r) => r.seq);
    let longestSeqGap = 0;
    for (let i = 1; i < seqs.length; i++) longestSeqGap = Math.max(longestSeqGap, seqs[i]! - seqs[i - 1]! - 1);
    const during = replies.filter((r) => r.at > killedAt && r.at < readyAt).length;
    const still = (await portReport(p1)).peers.find((p) => p.name === 'h2')!;
    t.diagnostic(
      `switch down ${readyAt - killedAt} ms; ports rejoined ${rejoinedMs} ms after it was ready; direct pair: ${replies.length}/${COUNT} answered, ${during} while the switch was down, longest run lost ${longestSeqGap}; ` +
        `relayed pair back ${Math.round(relayBack.at - readyAt)} ms after the switch was ready; h1->h2 path since ${direct.pathSince} -> ${still.pathSince}`,
    );
    assert.ok(COUNT - replies.length <= 2, `the direct pair lost ${COUNT - replies.length} of ${COUNT} pings`);
    assert.ok(longestSeqGap <= 2, `the direct pair had a gap of ${longestSeqGap} pings`);
    assert.ok(during > 0, 'no direct pings were answered while the switch was down');
    assert.ok(relayBack.at - readyAt < 5_000, `the relayed pair resumed ${Math.round(relayBack.at - readyAt)} ms after the switch was back`);
    assert.equal(still.path, 'direct', `h1 -> h2 after the restart: ${JSON.stringify(still)}`);
    assert.doesNotMatch(p1.output(), pathChanged('h2', 'relayed'), 'the direct pair fell back to the relay at some point');
    for (const p of [p1, p2, p3]) assert.match(p.output(), /joined switch/, `${p.name} logged its join`);
  });
});

test('fast-expiring NAT mappings (conntrack UDP 5 s, --port-timeout 9): after an idle minute a ping gets through within 1 s and the path is direct again within 1 s', { timeout: 150_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await natLan(t, 'e', [{ mode: 'masquerade', udpTimeoutS: 5 }, { mode: 'masquerade', udpTimeoutS: 5 }], { switchArgs: ['--port-timeout', '9'] });
  const [r1, r2] = l.lab.routers as [NatRouter, NatRouter];
  const [h1, h2] = l.lab.hosts as [NatHost, NatHost];
  const [p1] = l.ports as [NatDaemon, NatDaemon];
  await expectMapping(l.lab, [r1, r2], 'endpoint-independent', t);
  await withDiagnosis(l.lab, l.all, async () => {
    await firstContact(h1, p1, h2);
    const before = await waitForPath(p1, 'h2', 'direct', DIRECT_WITHIN_MS, () => ping(h1, h2.overlay));
    const joined = l.ports.map((p) => count(p.output(), JOINED));
    const idleFrom = Date.now();
    // The idle minute is the condition under test: nothing to poll instead.
    await new Promise((r) => setTimeout(r, 60_000));
    const conntrack = l.lab.conntrack(r1);

    const started = Date.now();
    const pinger = h1.ns.spawn('ping', ['-D', '-i', '0.1', '-c', '30', '-W', '1', h2.overlay]);
    await waitFor('a reply after the idle minute', () => pingReplies(collect(pinger).out()).length > 0, 5_000, 10);
    const first = pingReplies(collect(pinger).out())[0]!;
    let now: Awaited<ReturnType<typeof waitForPath>> | undefined;
    await waitFor(
      'h1 to report h2 direct',
      async () => {
        now = (await portReport(p1)).peers.find((p) => p.name === 'h2');
        return now?.path === 'direct';
      },
      3_000,
      50,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${JSON.stringify(now)}`);
    });
    pinger.kill('SIGINT');
    await waitExit(pinger, 5_000);
    const since = Date.parse(now!.pathSince ?? '');
    const survived = since < idleFrom;
    const changes = p1.output().split('\n').filter((line) => /path changed/.test(line));
    t.diagnostic(
      `first reply ${Math.round(first.at - started)} ms after the first attempt (icmp_seq ${first.seq}); path ${survived ? 'survived the idle minute' : `direct since ${Math.round(since - first.at)} ms from that reply`} ` +
        `(since ${before.pathSince} -> ${now!.pathSince}); r1's conntrack after the idle minute: ${conntrack.split('\n').length} UDP entries; h1's path changes: ${changes.join(' | ')}`,
    );
    assert.ok(first.at - started < 1_000, `the first reply came ${Math.round(first.at - started)} ms after the first attempt`);
    assert.ok(!Number.isNaN(since), `pathSince is a time: ${now!.pathSince}`);
    assert.ok(survived || since - first.at < 1_000, `direct again ${Math.round(since - first.at)} ms after the first reply`);
    // The keepalives held the switch's mappings open: nobody timed out or rejoined.
    assert.doesNotMatch(l.sw.output(), /port left/, 'a port timed out at the switch while idle');
    assert.deepEqual(l.ports.map((p) => count(p.output(), JOINED)), joined, 'a port rejoined during the idle minute');
  });
});

// ---------------------------------------------------------------------------
// A NAT that rebinds, and the trust boundaries direct paths opened: datagrams
// from anywhere reach a port now, and the reflector answers anyone.

/** The port part of "ip:port". */
const portOf = (endpoint: string | undefined): number => Number(/:(\d+)$/.exec(endpoint ?? '')?.[1] ?? NaN);
/** Member `name`'s address as the switch sees it (its public side). */
const publicOf = (s: NatSwitchReport, name: string): string | undefined => s.ports.find((p) => p.name === name)?.address;
/** Where r1's masquerade maps after the rebinding: below the kernel's ephemeral ports (32768-60999), which the vports' sockets use. */
const REMAP_PORTS = { from: 20_000, to: 30_000 };
/** When a daemon logged `re` last (its lines start with an ISO time), in ms since the epoch; NaN if never. */
function loggedAt(output: string, re: RegExp): number {
  const line = output.split('\n').filter((l) => re.test(l)).pop();
  return Date.parse(line?.split(' ')[0] ?? '');
}

test("a NAT rebinding: r1 restarts its NAT on other ports mid-ping; the ping loses under 2 s, and h1 <-> h2 is direct again within 5 s at h1's new public port", { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await natLan(t, 'm', [{ mode: 'masquerade' }, { mode: 'masquerade' }]);
  const [r1, r2] = l.lab.routers as [NatRouter, NatRouter];
  const [h1, h2] = l.lab.hosts as [NatHost, NatHost];
  const [p1, p2] = l.ports as [NatDaemon, NatDaemon];
  await expectMapping(l.lab, [r1, r2], 'endpoint-independent', t);
  await withDiagnosis(l.lab, l.all, async () => {
    const [before1, before2] = await goDirect(h1, p1, h2, p2);
    const oldPublic = publicOf(await switchReport(l.sw), 'h1');
    assert.equal(before2.endpoint, oldPublic, `h2 reaches h1 where the switch sees it: ${JSON.stringify(before2)}`);
    assert.ok(portOf(oldPublic) > REMAP_PORTS.to, `h1's public port ${oldPublic} is not outside the range it will move to`);

    // 140 pings 50 ms apart (7 s): 1 s before the rebinding, 6 s after.
    const COUNT = 140;
    const INTERVAL_MS = 50;
    const pinger = h1.ns.spawn('ping', ['-D', '-i', String(INTERVAL_MS / 1000), '-c', String(COUNT), '-W', '1', h2.overlay]);
    await waitFor('20 pings answered before the rebinding', () => pingReplies(collect(pinger).out()).length >= 20, 5_000, 20);
    const remapAt = Date.now();
    const flushed = l.lab.remap(r1, REMAP_PORTS);
    const remapMs = Date.now() - remapAt;

    let now: NatPeerReport | undefined;
    await waitFor(
      'h2 to reach h1 directly at another address',
      async () => {
        now = await peerReport(p2, 'h1');
        return now?.path === 'direct' && now.state === 'up' && now.endpoint !== before2.endpoint;
      },
      15_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${JSON.stringify(now)}`);
    });
    const after1 = await waitForPath(p1, 'h2', 'direct', 5_000);
    await waitExit(pinger, 20_000);
    const out = collect(pinger).out();
    const s = await switchReport(l.sw);
    const newPublic = publicOf(s, 'h1');
    const self = await portReport(p1);
    const m1 = await l.lab.checkMapping(r1);

    const replies = pingReplies(out);
    const answered = new Set(replies.map((r) => r.seq)).size;
    const lost = COUNT - answered;
    let longestGapMs = 0;
    let gapFrom = 0;
    for (let i = 1; i < replies.length; i++) {
      const gap = replies[i]!.at - replies[i - 1]!.at;
      if (gap > longestGapMs) [longestGapMs, gapFrom] = [gap, replies[i - 1]!.at];
    }
    const dups = count(out, /DUP!/);
    const directAgainMs = Date.parse(now!.pathSince ?? '') - remapAt;
    const roamedMs = loggedAt(l.sw.output(), /port roamed port=h1 /) - remapAt;
    const h1Relayed = count(p1.output(), pathChanged('h2', 'relayed'));
    const h2Relayed = count(p2.output(), pathChanged('h1', 'relayed'));
    t.diagnostic(
      `rebinding (nft + conntrack -F of ${flushed} flows) took ${remapMs} ms; h1 ${oldPublic} -> ${newPublic}; the switch roamed h1 ${roamedMs} ms after it; ` +
        `h2 direct to ${now!.endpoint} ${directAgainMs} ms after it (rtt ${now!.rttMs} ms); ping: ${answered}/${COUNT} answered, ${lost} lost (${lost * INTERVAL_MS} ms worth), ` +
        `longest gap ${Math.round(longestGapMs)} ms from ${Math.round(gapFrom - remapAt)} ms after the rebinding, ${dups} DUP!; ` +
        `h1 -> h2 path since ${before1.pathSince} -> ${after1.pathSince}, relayed meanwhile: h1 ${h1Relayed > 0}, h2 ${h2Relayed > 0}; r1 maps a new socket as ${JSON.stringify(m1.observed)}; ` +
        `h2's candidates for h1 ${JSON.stringify(now!.candidates)}`,
    );
    assert.ok(flushed > 0, `the flush removed no flow from r1's conntrack`);
    assert.equal(hostOf(newPublic), r1.wan, `the switch sees h1 behind r1: ${newPublic}`);
    assert.ok(portOf(newPublic) >= REMAP_PORTS.from && portOf(newPublic) <= REMAP_PORTS.to, `h1's public port did not move into ${REMAP_PORTS.from}-${REMAP_PORTS.to}: ${oldPublic} -> ${newPublic}`);
    assert.equal(m1.mapping, 'endpoint-independent', `r1 after the rebinding: ${JSON.stringify(m1)}`);
    assert.equal(now!.endpoint, newPublic, `h2 reaches h1 at its new public address: ${JSON.stringify(now)}`);
    assert.equal(self.publicAddress, newPublic, 'h1 was not told its new public address (REFLECTED after the roam)');
    assert.equal(after1.endpoint, before1.endpoint, `h1 reaches h2 where it did: ${JSON.stringify(after1)}`);
    assert.ok(directAgainMs <= 5_000, `h2 went direct to h1's new address ${directAgainMs} ms after the rebinding`);
    assert.ok(lost * INTERVAL_MS <= 2_000, `the ping lost ${lost} of ${COUNT} (${lost * INTERVAL_MS} ms worth; longest gap ${Math.round(longestGapMs)} ms)`);
    assert.equal(dups, 0, 'a ping was answered twice: a datagram sent both ways while in doubt was delivered twice');
  });
});

/** A PAIR_DATA datagram (docs/PROTOCOL.md): prefix 0x02 0x27, destination member id, receiver index, counter (u64, big-endian), then `body` random bytes of ciphertext and tag. */
function pairData(dst: Buffer, index: Buffer, counter: bigint | Buffer, body: number): Buffer {
  const c = Buffer.alloc(8);
  if (Buffer.isBuffer(counter)) counter.copy(c);
  else c.writeBigUInt64BE(counter);
  return Buffer.concat([Buffer.from([0x02, 0x27]), dst, index, c, randomBytes(body)]);
}

/** `list` in random order (Fisher-Yates). */
function shuffled<T>(list: T[]): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

/** The AEAD tag that ends every transport datagram. */
const TAG_BYTES = 16;
/** A PROBE's plaintext: kind 6, u32 id. */
const PROBE_PLAINTEXT_BYTES = 5;

test("an attacker on the internet at h2's forwarded port: forgeries fail authentication, replays of captured datagrams are counted as replays; no candidate at its address, h2's path stays, nothing arrives twice", { timeout: 90_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await natLan(t, 'x', [{ mode: 'masquerade' }, { mode: 'masquerade' }]);
  const [r1, r2] = l.lab.routers as [NatRouter, NatRouter];
  const [h1, h2] = l.lab.hosts as [NatHost, NatHost];
  const [p1, p2] = l.ports as [NatDaemon, NatDaemon];
  await expectMapping(l.lab, [r1, r2], 'endpoint-independent', t);
  await withDiagnosis(l.lab, l.all, async () => {
    const [, before] = await goDirect(h1, p1, h2, p2);
    // Behind r2 alone nothing unsolicited reaches h2; with its port forwarded, as users do for a VPN, anyone does.
    const h2Port = portOf((await portReport(p2)).localAddresses.find((a) => hostOf(a) === h2.lan));
    assert.equal(publicOf(await switchReport(l.sw), 'h2'), `${r2.wan}:${h2Port}`, "r2 maps h2's socket to its own port (the forward uses that port)");
    l.lab.forward(r2, h2, h2Port);

    // An observer on the internet's link to r2 records h1's direct datagrams to h2 while h1 pings h2.
    const COUNT = 60;
    const pinger = h1.ns.spawn('ping', ['-D', '-i', '0.1', '-c', String(COUNT), '-W', '1', h2.overlay]);
    const capture = await startUdpCapture(l.lab.internet, `r${r2.index}`, ['udp', 'and', 'src', 'host', r1.wan, 'and', 'dst', 'host', r2.wan]);
    const repliesAtCapture = pingReplies(collect(pinger).out()).length;
    await waitFor('10 pings answered during the capture', () => pingReplies(collect(pinger).out()).length >= repliesAtCapture + 10, 5_000, 20);
    const captured = (await capture.stop()).filter((d) => d.dport === h2Port && d.payload.length >= 32 && d.payload[0] === 0x02 && d.payload[1] === 0x27);
    assert.ok(captured.length >= 10, `the capture holds ${captured.length} PAIR_DATA datagrams from h1 to h2`);
    // The session's receiver index (h2's) and the highest counter seen: forgeries use both.
    const dst = captured[0]!.payload.subarray(2, 4);
    const index = captured[0]!.payload.subarray(4, 8);
    const highest = captured.filter((d) => d.payload.subarray(4, 8).equals(index)).reduce((m, d) => (d.payload.readBigUInt64BE(8) > m ? d.payload.readBigUInt64BE(8) : m), 0n);

    const randomIndex = Array.from({ length: 200 }, () => pairData(dst, randomBytes(4), randomBytes(8), randomInt(TAG_BYTES, 160)));
    // Fresh counters with the real index: past the replay check, into the AEAD, which refuses them.
    const copiedIndex = Array.from({ length: 200 }, (_, i) => pairData(dst, index, highest + 100_000n + BigInt(i), randomInt(TAG_BYTES, 160)));
    const probeLike = Array.from({ length: 100 }, (_, i) => pairData(dst, index, highest + 200_000n + BigInt(i), PROBE_PLAINTEXT_BYTES + TAG_BYTES));
    // Not PAIR_DATA (handshake initiation, transport data, reflect reply) from an address that is not the switch.
    const foreign = Array.from({ length: 50 }, (_, i) => Buffer.concat([Buffer.from([0x02, [0x21, 0x24, 0x2b][i % 3]!, 0, 0]), randomBytes(60)]));
    const forged = shuffled([...randomIndex, ...copiedIndex, ...probeLike, ...foreign]);
    // Authentic datagrams h2 already took, each twice, from the attacker's own address.
    const replays = [...captured, ...captured].map((d) => d.payload);

    const c0 = await portReport(p2);
    const peer0 = c0.peers.find((p) => p.name === 'h1')!;
    const attack = await sendUdp(l.lab.internet, r2.wan, h2Port, [...forged, ...replays], { bind: ATTACKER_ADDRESS, burst: 25, gapMs: 10, listenMs: 500 });
    const want = { unknownIndex: randomIndex.length, authFailed: copiedIndex.length + probeLike.length, replayed: replays.length, rxForeign: foreign.length };
    let c1 = c0;
    const delta = (): Record<keyof typeof want, number> => ({
      unknownIndex: c1.pairs.unknownIndex - c0.pairs.unknownIndex,
      authFailed: c1.pairs.authFailed - c0.pairs.authFailed,
      replayed: c1.pairs.replayed - c0.pairs.replayed,
      rxForeign: (c1.counters['rxForeign'] ?? 0) - (c0.counters['rxForeign'] ?? 0),
    });
    await waitFor(
      'h2 to count the attack',
      async () => {
        c1 = await portReport(p2);
        const d = delta();
        return (Object.keys(want) as (keyof typeof want)[]).every((k) => d[k] >= want[k]);
      },
      5_000,
      200,
    ).catch(() => {}); // the assertions below say which count falls short
    await waitExit(pinger, 15_000);
    const out = collect(pinger).out();
    c1 = await portReport(p2);
    const d = delta();
    const after = c1.peers.find((p) => p.name === 'h1')!;
    const atAttacker = c1.peers.flatMap((p) => p.candidates.filter((c) => hostOf(c.address) === ATTACKER_ADDRESS).map((c) => `${p.name}: ${JSON.stringify(c)}`));
    const h2ToAttacker = l.lab.conntrackEntries(r2).filter((e) => e.original.src === h2.lan && e.original.dst === ATTACKER_ADDRESS);
    const forwarded = l.lab.conntrackEntries(r2).filter((e) => e.original.src === ATTACKER_ADDRESS);
    const answered = new Set(pingReplies(out).map((r) => r.seq)).size;
    t.diagnostic(
      `captured ${captured.length} datagrams (index ${index.toString('hex')}, counters up to ${highest}); sent ${attack.sent}/${forged.length + replays.length} from ${attack.local} in ${attack.sentAt - attack.startedAt} ms, ${attack.replies.length} answers; ` +
        `h2 counted ${JSON.stringify(d)} (want at least ${JSON.stringify(want)}), h1's peer entry authFailed +${after.authFailed - peer0.authFailed}; ` +
        `r2's flows from the attacker: ${forwarded.length}; ping ${answered}/${COUNT}, ${count(out, /DUP!/)} DUP!`,
    );
    assert.ok(attack.errors === 0 && attack.sent === forged.length + replays.length, `the attacker sent ${attack.sent} of ${forged.length + replays.length} (${attack.errors} errors)`);
    for (const k of Object.keys(want) as (keyof typeof want)[]) assert.ok(d[k] >= want[k], `h2 counted ${d[k]} ${k} of the attack, want at least ${want[k]}: ${JSON.stringify(d)}`);
    assert.ok(after.authFailed - peer0.authFailed >= want.authFailed, `h2 did not put the forgeries on h1's session: authFailed +${after.authFailed - peer0.authFailed}`);
    assert.deepEqual(atAttacker, [], "a candidate at the attacker's address");
    assert.equal(after.path, 'direct', `h2's path for h1 after the attack: ${JSON.stringify(after)}`);
    assert.equal(after.endpoint, before.endpoint, "h2's path for h1 moved");
    assert.equal(after.pathSince, before.pathSince, "h2's path for h1 changed and came back");
    assert.equal(c1.pairs.pathChanges, c0.pairs.pathChanges, 'h2 counted a path change during the attack');
    assert.deepEqual(attack.replies.map((r) => `${r.from} ${r.data.length} B`), [], 'h2 answered the attacker');
    assert.deepEqual(h2ToAttacker, [], 'h2 sent to the attacker on its own (a probe?)');
    assert.equal(count(out, /DUP!/), 0, `a ping was answered twice (a replay delivered):\n${out}`);
    assert.ok(answered >= COUNT - 1, `the ping lost ${COUNT - answered} of ${COUNT} during the attack`);
  });
});

/** UDP datagrams the kernel dropped in `ns` for full receive buffers (IPv4 and IPv6 counters). */
function udpReceiveBufferDrops(ns: Netns): number {
  const snmp = ns.exec('cat', ['/proc/net/snmp']).stdout.split('\n').filter((line) => line.startsWith('Udp: '));
  const [head, values] = snmp.map((line) => line.trim().split(/\s+/));
  const v4 = Number(values?.[head?.indexOf('RcvbufErrors') ?? -1] ?? 0);
  const v6 = Number(/^Udp6RcvbufErrors\s+(\d+)/m.exec(ns.exec('cat', ['/proc/net/snmp6'], { allowFail: true }).stdout)?.[1] ?? 0);
  return v4 + v6;
}

test('the reflector does not amplify: malformed requests get nothing; a 32-byte REFLECT_REQUEST gets one 32-byte answer naming its source; a burst gets at most the budget', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const l = await natLan(t, 'f', [{ mode: 'masquerade' }]);
  const [r1] = l.lab.routers as [NatRouter];
  const [h1] = l.lab.hosts as [NatHost];
  const [p1] = l.ports as [NatDaemon];
  await withDiagnosis(l.lab, l.all, async () => {
    const s0 = await switchReport(l.sw);
    const port = s0.reflectorPort;
    assert.ok(Number.isInteger(port) && port > 0 && port !== SWITCH_PORT, `vswitch status --json: reflectorPort ${port}`);
    // The port measured its NAT against it (and is done with it).
    await waitFor("h1's NAT measured against the reflector", async () => (await portReport(p1)).nat === 'endpoint-independent', 5_000, 100);

    const request = (txid: Buffer): Buffer => Buffer.concat([Buffer.from([0x02, 0x2a, 0, 0]), txid, Buffer.alloc(20)]);
    const txid = randomBytes(8);
    const good = request(txid);
    const withByte = (at: number, byte: number): Buffer => Buffer.from(good.map((b, i) => (i === at ? byte : b)));
    const malformed: [string, Buffer][] = [
      ['12 bytes', good.subarray(0, 12)],
      ['1 byte', good.subarray(0, 1)],
      ['31 bytes', good.subarray(0, 31)],
      ['33 bytes', Buffer.concat([good, Buffer.alloc(1)])],
      ['64 bytes', Buffer.concat([good, good])],
      ['1400 bytes', Buffer.concat([good, Buffer.alloc(1400 - 32)])],
      ['32 bytes typed REFLECT_REPLY', withByte(1, 0x2b)],
      ['32 bytes of version 1', withByte(0, 0x01)],
      ['32 bytes, reserved byte set', withByte(2, 0x01)],
    ];
    const p0 = s0.protocol;
    const bad = await sendUdp(l.lab.internet, SWITCH_ADDRESS, port, malformed.map(([, b]) => b), { bind: ATTACKER_ADDRESS, listenMs: 1_000 });
    assert.deepEqual(bad.replies.map((r) => `${r.data.length} B: ${r.data.toString('hex')}`), [], `the reflector answered malformed requests (${malformed.map(([n]) => n).join(', ')})`);

    const one = await sendUdp(l.lab.internet, SWITCH_ADDRESS, port, [good], { bind: ATTACKER_ADDRESS, listenMs: 1_000 });
    assert.equal(one.replies.length, 1, `answers to one request: ${JSON.stringify(one.replies.map((r) => r.data.toString('hex')))}`);
    const reply = one.replies[0]!;
    // Prefix 0x02 0x2b, the request's transaction id, its source as an address slot (::ffff:a.b.c.d, port), 2 zero bytes.
    const slot = (ip: string, p: number): Buffer => Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff, ...ip.split('.').map(Number)]), Buffer.from([p >> 8, p & 0xff])]);
    const answerFor = (id: Buffer, from: string): string => Buffer.concat([Buffer.from([0x02, 0x2b, 0, 0]), id, slot(hostOf(from)!, portOf(from)), Buffer.alloc(2)]).toString('hex');
    assert.equal(reply.from, `${SWITCH_ADDRESS}:${port}`, 'the answer comes from the reflector port');
    assert.equal(reply.data.length, 32);
    assert.equal(reply.data.toString('hex'), answerFor(txid, one.local), `the answer to ${one.local}`);

    // From behind r1: the answer names r1's public mapping of that socket (masquerade keeps its port).
    const txid1 = randomBytes(8);
    const behind = await sendUdp(h1.ns, SWITCH_ADDRESS, port, [request(txid1)], { listenMs: 1_000 });
    assert.equal(behind.replies.length, 1, `answers to h1's request: ${behind.replies.length}`);
    assert.equal(behind.replies[0]!.data.toString('hex'), answerFor(txid1, `${r1.wan}:${portOf(behind.local)}`), `the answer to ${behind.local} behind r1`);

    // A burst from one address: the budget (REFLECT_REPLIES_PER_SECOND, 200, in total) bounds what goes back.
    const BURST = 300;
    const rcvbuf0 = udpReceiveBufferDrops(l.lab.sw);
    const burst = await sendUdp(l.lab.internet, SWITCH_ADDRESS, port, Array.from({ length: BURST }, () => request(randomBytes(8))), { bind: ATTACKER_ADDRESS, burst: BURST, gapMs: 0, listenMs: 1_000 });
    // Every answer was granted between the first send and the last answer's arrival: the bucket's 200 and what it refilled meanwhile.
    const grantedWithinMs = Math.max(burst.sentAt, ...burst.replies.map((r) => r.at)) - burst.startedAt;
    const budget = 200 + Math.ceil((200 * grantedWithinMs) / 1000) + 1;
    const p1c = (await switchReport(l.sw)).protocol;
    const replies = (p1c['reflectReplies'] ?? 0) - (p0['reflectReplies'] ?? 0);
    const dropped = (p1c['reflectDropped'] ?? 0) - (p0['reflectDropped'] ?? 0);
    // What the switch's socket buffers overflowed with never reached the reflector's counters.
    const overflowed = udpReceiveBufferDrops(l.lab.sw) - rcvbuf0;
    t.diagnostic(
      `reflector on ${port}; ${malformed.length} malformed: ${bad.replies.length} answers; one request from ${one.local}: ${one.replies.length} answer of ${reply.data.length} B; ` +
        `a burst of ${BURST} sent in ${burst.sentAt - burst.startedAt} ms: ${burst.replies.length} answers within ${grantedWithinMs} ms (budget ${budget}); switch counted ${replies} replies, ${dropped} dropped; ${overflowed} overflowed the switch's socket buffers`,
    );
    assert.ok(burst.replies.length <= budget, `a burst of ${BURST} got ${burst.replies.length} answers, over the budget ${budget}`);
    assert.ok(burst.replies.length > 0, 'the burst got no answer at all: the budget is not what is measured');
    assert.ok(burst.replies.every((r) => r.data.length === 32), 'an answer of another size than 32 bytes');
    assert.equal(replies, 2 + burst.replies.length, `the switch counted ${replies} reflector answers`);
    assert.ok(dropped >= malformed.length, `the switch counted ${dropped} dropped reflector requests, ${malformed.length} were malformed`);
    assert.ok(dropped + burst.replies.length <= malformed.length + BURST, `the switch counted ${dropped} dropped and ${burst.replies.length} answered of ${malformed.length + BURST}`);
  });
});
