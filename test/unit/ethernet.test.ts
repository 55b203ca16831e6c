// Unit tests for lib/ethernet.ts: MAC keys, tag parsing, builders, ARP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ETHERNET, EtherType, BROADCAST_MAC, readMac, readDstMac, readSrcMac, readVlanId, readEtherType,
  parseEthernetHeader, parseMac, formatMac, macToBuffer, macFromBuffer, isBroadcast, isMulticast, isZero,
  randomMac, toMac, buildFrame, buildArp, parseArp, ARP_REQUEST, ARP_REPLY,
} from '../../lib/core/ethernet.js';

const A = 0x0200_0000_000a;
const B = 0x0200_0000_000b;

test('parseMac accepts colon and dash forms, any case', () => {
  assert.equal(parseMac('aa:bb:cc:dd:ee:ff'), 0xaabbccddeeff);
  assert.equal(parseMac('AA-BB-CC-DD-EE-01'), 0xaabbccddee01);
  assert.equal(parseMac('00:00:00:00:00:00'), 0);
});

test('parseMac rejects malformed input with ERR_INVALID_MAC naming the value', () => {
  for (const bad of ['aa:bb:cc:dd:ee', 'aa:bb-cc:dd:ee:ff', 'aabbccddeeff', 'gg:bb:cc:dd:ee:ff', 'aa:bb:cc:dd:ee:ff:00', ' aa:bb:cc:dd:ee:ff', '']) {
    assert.throws(() => parseMac(bad), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_INVALID_MAC');
      assert.ok(err.message.includes(JSON.stringify(bad)), err.message);
      return true;
    });
  }
  assert.throws(() => toMac(2 ** 48), { code: 'ERR_INVALID_MAC' });
  assert.throws(() => toMac(-1), { code: 'ERR_INVALID_MAC' });
});

test('formatMac round-trips and zero-pads', () => {
  assert.equal(formatMac(0x0000_0000_0001), '00:00:00:00:00:01');
  assert.equal(formatMac(0xaabbccddeeff), 'aa:bb:cc:dd:ee:ff');
  assert.equal(parseMac(formatMac(A)), A);
});

test('macToBuffer / macFromBuffer / readMac agree, including the top bytes', () => {
  const mac = 0xfedcba987654;
  const b = macToBuffer(mac);
  assert.deepEqual([...b], [0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54]);
  assert.equal(macFromBuffer(b), mac);
  const big = Buffer.alloc(10);
  macToBuffer(mac, big, 3);
  assert.equal(readMac(big, 3), mac);
});

test('broadcast, multicast (group bit) and zero classification', () => {
  assert.ok(isBroadcast(BROADCAST_MAC));
  assert.ok(isMulticast(BROADCAST_MAC));
  assert.ok(isMulticast(parseMac('01:00:5e:00:00:01')));
  assert.ok(isMulticast(parseMac('33:33:00:00:00:01')));
  assert.ok(!isMulticast(parseMac('02:00:00:00:00:01')));
  assert.ok(!isMulticast(parseMac('fe:ff:ff:ff:ff:ff')));
  assert.ok(!isBroadcast(parseMac('ff:ff:ff:ff:ff:fe')));
  assert.ok(isZero(0));
  assert.ok(!isZero(A));
});

test('randomMac is locally administered unicast and varies', () => {
  const seen = new Set<number>();
  for (let i = 0; i < 50; i++) {
    const m = randomMac();
    const first = Math.floor(m / 2 ** 40);
    assert.equal(first & 1, 0, 'unicast');
    assert.equal(first & 2, 2, 'locally administered');
    assert.ok(m <= BROADCAST_MAC);
    seen.add(m);
  }
  assert.ok(seen.size > 45);
});

test('buildFrame untagged: header fields readable at an offset', () => {
  const f = buildFrame({ dst: B, src: '02:00:00:00:00:0a', etherType: EtherType.IPv4, payload: Buffer.from('hi') });
  assert.equal(f.length, ETHERNET.HEADER_LEN + 2);
  const slab = Buffer.concat([Buffer.alloc(7), f]);
  assert.equal(readDstMac(slab, 7), B);
  assert.equal(readSrcMac(slab, 7), A);
  assert.equal(readVlanId(slab, 7, f.length), 0);
  assert.equal(readEtherType(slab, 7, f.length), EtherType.IPv4);
  assert.equal(slab.subarray(7 + 14).toString(), 'hi');
});

test('802.1Q tag: VID, PCP, DEI and inner EtherType', () => {
  const f = buildFrame({ dst: B, src: A, etherType: EtherType.IPv6, vlan: { vid: 100, pcp: 5, dei: true } });
  assert.equal(f.length, 18);
  assert.equal(f.readUInt16BE(12), EtherType.VLAN);
  assert.equal(readVlanId(f, 0, f.length), 100);
  assert.equal(readEtherType(f, 0, f.length), EtherType.IPv6);
  const h = parseEthernetHeader(f);
  assert.ok(h);
  assert.deepEqual(h.tags, [{ tpid: EtherType.VLAN, pcp: 5, dei: true, vid: 100 }]);
  assert.equal(h.etherType, EtherType.IPv6);
  assert.equal(h.headerLength, 18);
});

test('802.1ad + 802.1Q stack: outer VID is the key, inner EtherType after both tags', () => {
  const f = buildFrame({
    dst: B, src: A, etherType: EtherType.ARP,
    vlan: [{ vid: 300, tpid: EtherType.QINQ }, { vid: 42, pcp: 1 }],
  });
  assert.equal(readVlanId(f, 0, f.length), 300);
  assert.equal(readEtherType(f, 0, f.length), EtherType.ARP);
  const h = parseEthernetHeader(f);
  assert.ok(h);
  assert.equal(h.tags.length, 2);
  assert.equal(h.tags[0]!.tpid, EtherType.QINQ);
  assert.equal(h.tags[1]!.vid, 42);
  assert.equal(h.tags[1]!.pcp, 1);
  assert.equal(h.headerLength, 22);
});

test('truncated frames: parsers refuse instead of reading past the end', () => {
  const f = buildFrame({ dst: B, src: A, etherType: EtherType.IPv4, vlan: 7 });
  assert.equal(parseEthernetHeader(f, 0, 13), null);
  assert.equal(parseEthernetHeader(f, 0, 16), null, 'tag present but cut short');
  assert.equal(readVlanId(f, 0, 16), 0);
  assert.equal(readEtherType(f, 0, 16), -1);
  assert.throws(() => buildFrame({ dst: B, src: A, etherType: 0, vlan: 4096 }), { name: 'EtherlinkError' });
});

test('ARP request: broadcast destination, zero target MAC, parses back', () => {
  const f = buildArp({ op: 'request', senderMac: A, senderIp: '10.0.0.1', targetIp: '10.0.0.2', targetMac: B });
  assert.equal(readDstMac(f, 0), BROADCAST_MAC);
  assert.equal(readSrcMac(f, 0), A);
  assert.equal(readEtherType(f, 0, f.length), EtherType.ARP);
  assert.deepEqual(parseArp(f), { op: ARP_REQUEST, senderMac: A, senderIp: '10.0.0.1', targetMac: 0, targetIp: '10.0.0.2' });
});

test('ARP reply: unicast to the target, works tagged', () => {
  const f = buildArp({ op: 'reply', senderMac: B, senderIp: '10.0.0.2', targetMac: A, targetIp: '10.0.0.1', vlan: 9 });
  assert.equal(readDstMac(f, 0), A);
  assert.equal(readVlanId(f, 0, f.length), 9);
  assert.deepEqual(parseArp(f), { op: ARP_REPLY, senderMac: B, senderIp: '10.0.0.2', targetMac: A, targetIp: '10.0.0.1' });
});

test('parseArp rejects non-ARP and truncated frames; buildArp rejects bad IPs', () => {
  assert.equal(parseArp(buildFrame({ dst: B, src: A, etherType: EtherType.IPv4, payload: Buffer.alloc(28) })), null);
  const f = buildArp({ op: 'request', senderMac: A, senderIp: '1.2.3.4', targetIp: '5.6.7.8' });
  assert.equal(parseArp(f, 0, f.length - 1), null);
  assert.throws(() => buildArp({ op: 'request', senderMac: A, senderIp: '1.2.3.256', targetIp: '5.6.7.8' }), { name: 'EtherlinkError' });
  assert.throws(() => buildArp({ op: 'request', senderMac: A, senderIp: '1.2.3', targetIp: '5.6.7.8' }), { name: 'EtherlinkError' });
});
