// Direct paths between ports through NAT, the switch as rendezvous (issue 11),
// against real nftables NAT in namespaces (test/helpers/nat.ts): first the lab
// itself (each router's mapping is measured before anything is asserted on
// EtherLink, so a wrong emulation fails loudly), then the scenarios.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cleanup, collect, requireRoot, runTag, waitExit, waitFor } from '../helpers/netns.js';
import { count, waitForCount } from '../helpers/lan.js';
import {
  buildNatLab,
  counterDelta,
  hostOf,
  JOINED,
  linkCounters,
  ping,
  pingReplies,
  portReport,
  punch,
  restartNatSwitch,
  startNatPort,
  startNatSwitch,
  startStream,
  switchReport,
  SWITCH_ADDRESS,
  waitForPath,
  withDiagnosis,
  type NatDaemon,
  type NatHost,
  type NatLab,
  type NatRouter,
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
    await firstContact(h1, p1, h2);
    const d1 = await waitForPath(p1, 'h2', 'direct', DIRECT_WITHIN_MS, () => ping(h1, h2.overlay));
    const d2 = await waitForPath(p2, 'h1', 'direct', 5_000, () => ping(h2, h1.overlay));
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
    await firstContact(h1, p1, h2);
    const d1 = await waitForPath(p1, 'h2', 'direct', DIRECT_WITHIN_MS, () => ping(h1, h2.overlay));
    const d2 = await waitForPath(p2, 'h1', 'direct', 5_000, () => ping(h2, h1.overlay));
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
