// Unit tests for lib/daemon/underlay-guard.ts: which frames from the TAP are our
// own traffic to the switch (hand-built IPv4, IPv6, tagged, ARP, neighbour
// solicitations, junk), and the guard that drops, counts, warns and reports them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildArp, buildFrame, EtherType, type FrameSpec } from '../../lib/core/ethernet.js';
import { batchToBuffers, buffersToBatch, type FrameBatch } from '../../lib/core/frames.js';
import type { Logger, LogFields } from '../../lib/core/log.js';
import { encodeAddress } from '../../lib/io/address.js';
import {
  matchEndpoint,
  matchKind,
  UNDERLAY_ENDPOINTS_MAX,
  UNDERLAY_PROBLEM_HOLD_MS,
  UNDERLAY_WARN_INTERVAL_MS,
  UnderlayEndpoints,
  UnderlayGuard,
  UnderlayMatch,
} from '../../lib/daemon/underlay-guard.js';

const SWITCH4 = '192.0.2.1';
const SWITCH6 = '2001:db8::1';
const PORT = 9999;
const HOST_MAC = '02:00:00:00:00:01';
const GW_MAC = '02:00:00:00:00:fe';
const UDP = 17;
const TCP = 6;
const ICMP = 1;

function ipv4Bytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

function ipv6Bytes(ip: string): number[] {
  return [...encodeAddress(ip, 0).subarray(0, 16)];
}

/** UDP/TCP: the first four bytes (ports) and some payload; anything else: just payload. */
function transport(proto: number, dport: number): Buffer {
  const t = Buffer.alloc(proto === TCP ? 20 : 8 + 16);
  t.writeUInt16BE(40000, 0);
  t.writeUInt16BE(dport, 2);
  return t;
}

interface Ipv4Spec {
  dst: string;
  proto?: number;
  dport?: number;
  /** Fragment offset in 8-byte units; `more` sets MF. */
  fragOffset?: number;
  more?: boolean;
  options?: number;
}

function ipv4(spec: Ipv4Spec): Buffer {
  const ihl = 5 + (spec.options ?? 0);
  const proto = spec.proto ?? UDP;
  const payload = transport(proto, spec.dport ?? PORT);
  const h = Buffer.alloc(ihl * 4);
  h[0] = 0x40 | ihl;
  h.writeUInt16BE(h.length + payload.length, 2);
  h.writeUInt16BE(((spec.more ? 1 : 0) << 13) | (spec.fragOffset ?? 0), 6);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(ipv4Bytes('10.99.0.1')).copy(h, 12);
  Buffer.from(ipv4Bytes(spec.dst)).copy(h, 16);
  return Buffer.concat([h, payload]);
}

function ipv6(dst: string, next: number, body: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(body.length, 4);
  h[6] = next;
  h[7] = 64;
  Buffer.from(ipv6Bytes('fd00::1')).copy(h, 8);
  Buffer.from(ipv6Bytes(dst)).copy(h, 24);
  return Buffer.concat([h, body]);
}

function fragmentHeader(next: number, offset: number, more: boolean): Buffer {
  const f = Buffer.alloc(8);
  f[0] = next;
  f.writeUInt16BE((offset << 3) | (more ? 1 : 0), 2);
  f.writeUInt32BE(0x1234, 4);
  return f;
}

/** An ICMPv6 neighbour solicitation for `target`, to its solicited-node group. */
function neighbourSolicitation(target: string): Buffer {
  const icmp = Buffer.alloc(8 + 16);
  icmp[0] = 135;
  Buffer.from(ipv6Bytes(target)).copy(icmp, 8);
  const t = ipv6Bytes(target);
  return ipv6(`ff02::1:ff${t[13]!.toString(16).padStart(2, '0')}:${((t[14]! << 8) | t[15]!).toString(16)}`, 58, icmp);
}

function frame(etherType: number, payload: Buffer, vlan?: FrameSpec['vlan']): Buffer {
  return buildFrame({ dst: GW_MAC, src: HOST_MAC, etherType, payload, ...(vlan !== undefined ? { vlan } : {}) });
}

const v4Frame = (spec: Ipv4Spec, vlan?: FrameSpec['vlan']): Buffer => frame(EtherType.IPv4, ipv4(spec), vlan);
const arpRequest = (targetIp: string): Buffer => buildArp({ op: 'request', senderMac: HOST_MAC, senderIp: '10.99.0.1', targetIp });

function endpoints(...list: [string, number][]): UnderlayEndpoints {
  const e = new UnderlayEndpoints();
  for (const [ip, port] of list) assert.ok(e.add(encodeAddress(ip, port)), `added ${ip}`);
  return e;
}

const matchOf = (e: UnderlayEndpoints, f: Buffer): number => e.match(f, 0, f.length);

test('IPv4 UDP and TCP to the switch address and port are ours; the kind says IP and the index names the endpoint', () => {
  const e = endpoints(['198.51.100.7', 443], [SWITCH4, PORT]);
  for (const proto of [UDP, TCP]) {
    const m = matchOf(e, v4Frame({ dst: SWITCH4, proto }));
    assert.equal(matchKind(m), UnderlayMatch.IP, `proto ${proto}`);
    assert.equal(matchEndpoint(m), 1);
    assert.equal(e.address(matchEndpoint(m)), SWITCH4);
  }
  const ws = matchOf(e, v4Frame({ dst: '198.51.100.7', proto: TCP, dport: 443 }));
  assert.equal(matchKind(ws), UnderlayMatch.IP);
  assert.equal(e.address(matchEndpoint(ws)), '198.51.100.7');
  // With IP options the ports sit further on.
  assert.equal(matchKind(matchOf(e, v4Frame({ dst: SWITCH4, options: 3 }))), UnderlayMatch.IP);
});

test('IPv4 elsewhere, to another port of the switch host, or not UDP/TCP is not ours; port 0 means any traffic to the address', () => {
  const e = endpoints([SWITCH4, PORT]);
  assert.equal(matchOf(e, v4Frame({ dst: '192.0.2.2' })), 0, 'another host');
  assert.equal(matchOf(e, v4Frame({ dst: '10.99.0.2' })), 0, 'an overlay host');
  assert.equal(matchOf(e, v4Frame({ dst: SWITCH4, dport: 22, proto: TCP })), 0, 'ssh to the switch host');
  assert.equal(matchOf(e, v4Frame({ dst: SWITCH4, proto: ICMP })), 0, 'a ping to the switch host');
  const any = endpoints([SWITCH4, 0]);
  assert.equal(matchKind(matchOf(any, v4Frame({ dst: SWITCH4, proto: ICMP }))), UnderlayMatch.IP);
  assert.equal(matchKind(matchOf(any, v4Frame({ dst: SWITCH4, dport: 22 }))), UnderlayMatch.IP);
  assert.equal(matchOf(any, v4Frame({ dst: '192.0.2.2' })), 0);
});

test('IPv4 fragments: the first (it has the ports) is ours, later ones are let through', () => {
  const e = endpoints([SWITCH4, PORT]);
  assert.equal(matchKind(matchOf(e, v4Frame({ dst: SWITCH4, more: true }))), UnderlayMatch.IP);
  assert.equal(matchOf(e, v4Frame({ dst: SWITCH4, fragOffset: 185 })), 0);
  assert.equal(matchOf(e, v4Frame({ dst: SWITCH4, fragOffset: 185, more: true })), 0);
});

test('behind one 802.1Q or 802.1ad tag the same; behind two tags, not looked at', () => {
  const e = endpoints([SWITCH4, PORT]);
  assert.equal(matchKind(matchOf(e, v4Frame({ dst: SWITCH4 }, 5))), UnderlayMatch.IP);
  assert.equal(matchKind(matchOf(e, v4Frame({ dst: SWITCH4 }, { vid: 7, tpid: EtherType.QINQ }))), UnderlayMatch.IP);
  assert.equal(matchOf(e, v4Frame({ dst: '192.0.2.2' }, 5)), 0);
  assert.equal(matchOf(e, v4Frame({ dst: SWITCH4 }, [{ vid: 7, tpid: EtherType.QINQ }, { vid: 5 }])), 0);
  const tagged = buildArp({ op: 'request', senderMac: HOST_MAC, senderIp: '10.99.0.1', targetIp: SWITCH4, vlan: 5 });
  assert.equal(matchKind(matchOf(e, tagged)), UnderlayMatch.ARP);
});

test('IPv6 UDP/TCP to the switch (also as the first fragment) is ours; elsewhere, later fragments and other protocols are not', () => {
  const e = endpoints([SWITCH4, PORT], [SWITCH6, PORT]);
  const m = matchOf(e, frame(EtherType.IPv6, ipv6(SWITCH6, UDP, transport(UDP, PORT))));
  assert.equal(matchKind(m), UnderlayMatch.IP);
  assert.equal(e.address(matchEndpoint(m)), SWITCH6);
  assert.equal(matchKind(matchOf(e, frame(EtherType.IPv6, ipv6(SWITCH6, TCP, transport(TCP, PORT))))), UnderlayMatch.IP);
  assert.equal(matchKind(matchOf(e, frame(EtherType.IPv6, ipv6(SWITCH6, 44, Buffer.concat([fragmentHeader(UDP, 0, true), transport(UDP, PORT)]))))), UnderlayMatch.IP);
  assert.equal(matchOf(e, frame(EtherType.IPv6, ipv6(SWITCH6, 44, Buffer.concat([fragmentHeader(UDP, 181, false), transport(UDP, PORT)])))), 0);
  assert.equal(matchOf(e, frame(EtherType.IPv6, ipv6('2001:db8::2', UDP, transport(UDP, PORT)))), 0);
  assert.equal(matchOf(e, frame(EtherType.IPv6, ipv6(SWITCH6, UDP, transport(UDP, 53)))), 0);
  assert.equal(matchOf(e, frame(EtherType.IPv6, ipv6(SWITCH6, 58, Buffer.alloc(8)))), 0, 'an echo request to the switch host');
  assert.equal(matchKind(matchOf(e, frame(EtherType.IPv6, ipv6(SWITCH6, UDP, transport(UDP, PORT)), 9))), UnderlayMatch.IP, 'tagged');
  // An IPv4 switch does not make IPv6 frames ours, and the other way round.
  assert.equal(matchOf(endpoints([SWITCH4, PORT]), frame(EtherType.IPv6, ipv6(SWITCH6, UDP, transport(UDP, PORT)))), 0);
  assert.equal(matchOf(endpoints([SWITCH6, PORT]), v4Frame({ dst: SWITCH4 })), 0);
  assert.equal(matchOf(endpoints([SWITCH6, PORT]), arpRequest(SWITCH4)), 0);
});

test('an ARP request for a switch address is ours; for another address, or a reply, it is not', () => {
  const e = endpoints(['198.51.100.7', 443], [SWITCH4, PORT]);
  const m = matchOf(e, arpRequest(SWITCH4));
  assert.equal(matchKind(m), UnderlayMatch.ARP);
  assert.equal(e.address(matchEndpoint(m)), SWITCH4);
  assert.equal(matchKind(matchOf(e, arpRequest('198.51.100.7'))), UnderlayMatch.ARP);
  assert.equal(matchOf(e, arpRequest('10.99.0.2')), 0);
  assert.equal(matchOf(e, buildArp({ op: 'reply', senderMac: HOST_MAC, senderIp: '10.99.0.1', targetMac: GW_MAC, targetIp: SWITCH4 })), 0);
  assert.equal(matchOf(e, buildArp({ op: 'reply', senderMac: HOST_MAC, senderIp: SWITCH4, targetMac: GW_MAC, targetIp: '10.99.0.2' })), 0);
  // A gratuitous ARP from the switch's host (bridged onto this LAN) announces it; nobody is asking for it.
  assert.equal(matchOf(e, buildArp({ op: 'request', senderMac: GW_MAC, senderIp: SWITCH4, targetIp: SWITCH4 })), 0);
  const rarp = arpRequest(SWITCH4);
  rarp.writeUInt16BE(0x0800 + 1, 14 + 2);
  assert.equal(matchOf(e, rarp), 0, 'not Ethernet/IPv4 ARP');
});

test('an IPv6 neighbour solicitation for a switch address is ours; for another, not', () => {
  const e = endpoints([SWITCH6, PORT]);
  const m = matchOf(e, frame(EtherType.IPv6, neighbourSolicitation(SWITCH6)));
  assert.equal(matchKind(m), UnderlayMatch.NEIGHBOUR);
  assert.equal(e.address(matchEndpoint(m)), SWITCH6);
  assert.equal(matchOf(e, frame(EtherType.IPv6, neighbourSolicitation('2001:db8::2'))), 0);
  const advert = frame(EtherType.IPv6, neighbourSolicitation(SWITCH6));
  advert[14 + 40] = 136;
  assert.equal(matchOf(e, advert), 0, 'a neighbour advertisement');
});

test('no endpoints: nothing is ours; a full set refuses more, and a duplicate is added once', () => {
  const none = new UnderlayEndpoints();
  for (const f of [v4Frame({ dst: SWITCH4 }), arpRequest(SWITCH4), frame(EtherType.IPv6, neighbourSolicitation(SWITCH6))]) assert.equal(matchOf(none, f), 0);
  const e = new UnderlayEndpoints();
  assert.ok(e.add(encodeAddress(SWITCH4, PORT)));
  assert.equal(e.add(encodeAddress(SWITCH4, PORT)), false, 'duplicate');
  for (let i = 1; i < UNDERLAY_ENDPOINTS_MAX; i++) assert.ok(e.add(encodeAddress(`192.0.2.${100 + i}`, PORT)));
  assert.equal(e.size, UNDERLAY_ENDPOINTS_MAX);
  assert.equal(e.add(encodeAddress('192.0.2.200', PORT)), false, 'full');
  assert.equal(matchOf(e, v4Frame({ dst: '192.0.2.200' })), 0);
  assert.equal(e.address(matchEndpoint(matchOf(e, v4Frame({ dst: `192.0.2.${100 + UNDERLAY_ENDPOINTS_MAX - 1}` })))), `192.0.2.${100 + UNDERLAY_ENDPOINTS_MAX - 1}`);
  e.clear();
  assert.equal(e.size, 0);
  assert.equal(matchOf(e, v4Frame({ dst: SWITCH4 })), 0);
});

test('short, truncated and random frames never throw, and a truncated header is never ours', () => {
  const e = endpoints([SWITCH4, PORT], [SWITCH6, PORT]);
  // Each frame whole, and how many bytes the decision needs (headers up to the destination port, or the ARP/NS target).
  const whole: [Buffer, number][] = [
    [v4Frame({ dst: SWITCH4 }), 14 + 20 + 4],
    [v4Frame({ dst: SWITCH4 }, 5), 18 + 20 + 4],
    [arpRequest(SWITCH4), 14 + 28],
    [frame(EtherType.IPv6, ipv6(SWITCH6, UDP, transport(UDP, PORT))), 14 + 40 + 4],
    [frame(EtherType.IPv6, ipv6(SWITCH6, 44, Buffer.concat([fragmentHeader(UDP, 0, true), transport(UDP, PORT)]))), 14 + 40 + 8 + 4],
    [frame(EtherType.IPv6, neighbourSolicitation(SWITCH6)), 14 + 40 + 24],
  ];
  for (const [f, needed] of whole) {
    assert.notEqual(matchOf(e, f), 0);
    assert.notEqual(e.match(f, 0, needed), 0, `${needed} bytes are enough`);
    // Cut anywhere before that: not ours (and no throw), even where the slab goes on with the rest of the frame.
    const slab = Buffer.concat([f, Buffer.alloc(64, 0xff)]);
    for (let len = 0; len < needed; len++) {
      assert.equal(e.match(f.subarray(0, len), 0, len), 0, `cut at ${len} of ${f.length}`);
      assert.equal(e.match(slab, 0, len), 0, `cut at ${len} in a longer slab`);
    }
  }
  // A frame that claims more than the buffer holds, or sits past its end.
  const f = v4Frame({ dst: SWITCH4 });
  assert.equal(e.match(f, 0, f.length + 1), 0);
  assert.equal(e.match(f, f.length, 20), 0);
  assert.equal(e.match(f, 0xffff_ffff, 60), 0);
  // Random bytes, and random bytes behind each EtherType we look at.
  let seed = 0x9e3779b9;
  const rand = (): number => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) & 0xff);
  for (let n = 0; n < 20_000; n++) {
    const len = rand() % 120;
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = rand();
    const types = [EtherType.IPv4, EtherType.IPv6, EtherType.ARP, EtherType.VLAN];
    if (len >= 14 && n % 2 === 0) b.writeUInt16BE(types[n % 4]!, 12);
    if (len >= 18 && n % 8 === 6) b.writeUInt16BE(types[(n >> 3) % 3]!, 16);
    const r = e.match(b, 0, len);
    assert.ok(r === 0 || (matchKind(r) >= 1 && matchEndpoint(r) < e.size));
  }
});

/** A logger that keeps what it was told. */
function recordingLogger(): Logger & { lines: { level: string; msg: string; fields?: LogFields }[] } {
  const lines: { level: string; msg: string; fields?: LogFields }[] = [];
  const rec = (level: string) => (msg: string, fields?: LogFields) => void lines.push({ level, msg, ...(fields !== undefined ? { fields } : {}) });
  return { lines, error: rec('error'), warn: rec('warn'), info: rec('info'), debug: rec('debug'), enabled: () => true };
}

function guard(opts: { ws?: URL } = {}): { g: UnderlayGuard; log: ReturnType<typeof recordingLogger>; counters: { underlayLoops: number }; slot: Buffer } {
  const log = recordingLogger();
  const counters = { underlayLoops: 0 };
  const slot = encodeAddress(SWITCH4, PORT);
  const g = new UnderlayGuard({ device: 'etl0', log, switchSlot: slot, counters, ...(opts.ws !== undefined ? { ws: opts.ws } : {}) });
  return { g, log, counters, slot };
}

const dsts = (b: FrameBatch): string[] => batchToBuffers(b).map((f) => (f.readUInt16BE(12) === EtherType.IPv4 ? `${f[30]}.${f[31]}.${f[32]}.${f[33]}` : f.readUInt16BE(12).toString(16)));

test('filter: a batch with none of ours is handed on as it is, nothing counted or logged', () => {
  const { g, log, counters } = guard();
  const batch = buffersToBatch([v4Frame({ dst: '10.99.0.2' }), arpRequest('10.99.0.2'), frame(0x88cc, Buffer.alloc(30))]);
  assert.equal(g.filter(batch, 1000), batch);
  assert.equal(counters.underlayLoops, 0);
  assert.equal(log.lines.length, 0);
  assert.equal(g.status(1000), undefined);
  assert.deepEqual(g.statusField(1000), {});
});

test('filter: ours are dropped in place of a copy (same slab, order kept), counted, warned about once per 30 s, and reported while they last', () => {
  const { g, log, counters } = guard();
  const frames = [v4Frame({ dst: '10.99.0.2' }), v4Frame({ dst: SWITCH4 }), v4Frame({ dst: '10.99.0.3' }), arpRequest(SWITCH4), v4Frame({ dst: '10.99.0.4' }, 5), v4Frame({ dst: SWITCH4, proto: TCP })];
  const batch = buffersToBatch(frames);
  const out = g.filter(batch, 1000);
  assert.notEqual(out, batch);
  assert.equal(out.buf, batch.buf, 'views into the same slab: nothing copied');
  assert.deepEqual(dsts(out), ['10.99.0.2', '10.99.0.3', '8100']);
  assert.deepEqual(batchToBuffers(out), [frames[0], frames[2], frames[4]]);
  assert.equal(batch.count, frames.length, "the device's batch is left as it was");
  assert.equal(counters.underlayLoops, 3);
  assert.equal(log.lines.length, 1);
  const w = log.lines[0]!;
  assert.equal(w.level, 'warn');
  assert.equal(
    w.msg,
    'refusing to carry traffic to the switch (192.0.2.1) over etl0: the route to the switch goes through this TAP; add a route for 192.0.2.1 via your real gateway (ip route get 192.0.2.1 shows the culprit)',
  );
  assert.equal(w.fields?.['frames'], 3);

  // More within 30 s: counted, not logged; then one line with what was dropped meanwhile.
  const again = buffersToBatch([v4Frame({ dst: SWITCH4 }), v4Frame({ dst: SWITCH4 })]);
  assert.equal(g.filter(again, 2000).count, 0);
  assert.equal(g.filter(again, 1000 + UNDERLAY_WARN_INTERVAL_MS - 1).count, 0);
  assert.equal(counters.underlayLoops, 7);
  assert.equal(log.lines.length, 1);
  const late = 1000 + UNDERLAY_WARN_INTERVAL_MS;
  g.filter(again, late);
  assert.equal(log.lines.length, 2);
  assert.equal(log.lines[1]!.fields?.['frames'], 6);

  const s = g.status(late + 1500);
  assert.ok(s !== undefined);
  assert.equal(s.address, SWITCH4);
  assert.equal(s.frames, 9);
  assert.equal(s.lastS, 1.5);
  assert.equal(s.reason, w.msg);
  assert.deepEqual(g.statusField(late + 1500), { underlayLoop: s });
  assert.ok(g.status(late + UNDERLAY_PROBLEM_HOLD_MS) !== undefined);
  assert.equal(g.status(late + UNDERLAY_PROBLEM_HOLD_MS + 1), undefined, 'gone once it stopped');
});

test('filter: the kept batch holds a batch larger than any before (an offload batch of 1024)', () => {
  const { g, counters } = guard();
  const small = buffersToBatch([v4Frame({ dst: SWITCH4 }), v4Frame({ dst: '10.99.0.2' })]);
  assert.equal(g.filter(small, 0).count, 1);
  const many: Buffer[] = [];
  for (let i = 0; i < 1024; i++) many.push(i % 3 === 0 ? v4Frame({ dst: SWITCH4 }) : v4Frame({ dst: '10.99.0.2' }));
  const out = g.filter(buffersToBatch(many), 1);
  assert.equal(out.count, 1024 - Math.ceil(1024 / 3));
  assert.equal(counters.underlayLoops, 1 + Math.ceil(1024 / 3));
  assert.ok(dsts(out).every((d) => d === '10.99.0.2'));
});

test('the guard follows the switch slot when re-resolving rewrites it in place', () => {
  const { g, slot, counters, log } = guard();
  encodeAddress('203.0.113.9', PORT, slot, 0);
  assert.equal(g.filter(buffersToBatch([v4Frame({ dst: SWITCH4 })]), 0).count, 1, 'the old address is not the switch any more');
  assert.equal(g.filter(buffersToBatch([v4Frame({ dst: '203.0.113.9' })]), 0).count, 0);
  assert.equal(counters.underlayLoops, 1);
  assert.match(log.lines[0]!.msg, /switch \(203\.0\.113\.9\) over etl0/);
  assert.equal(g.status(0)?.address, '203.0.113.9');
});

test('a WebSocket URL adds its host (and its port) after refresh(); an IPv6 host too', async () => {
  const { g } = guard({ ws: new URL('wss://198.51.100.7/etherlink') });
  await g.refresh();
  assert.equal(g.endpoints.size, 2);
  assert.equal(g.filter(buffersToBatch([v4Frame({ dst: '198.51.100.7', proto: TCP, dport: 443 })]), 0).count, 0);
  assert.equal(g.filter(buffersToBatch([v4Frame({ dst: '198.51.100.7', proto: TCP, dport: 80 })]), 0).count, 1);
  const six = guard({ ws: new URL('ws://[2001:db8::7]:8080/x') });
  await six.g.refresh();
  assert.equal(six.g.filter(buffersToBatch([frame(EtherType.IPv6, ipv6('2001:db8::7', TCP, transport(TCP, 8080)))]), 0).count, 0);
  assert.equal(six.counters.underlayLoops, 1);
  assert.match(six.log.lines[0]!.msg, /switch \(2001:db8::7\)/);
});
