// The VXLAN VTEP's pure parts (header, addresses, the inner flow hash) and its
// sockets over loopback: encapsulation as RFC 7348 lays it out, the MTU rule
// (50 bytes of overhead on IPv4: a 1464-byte frame fits 1500, 1465 does not),
// one source port per flow, and configure() adding and removing VTEP ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buffersToBatch, type FrameBatch } from '../../lib/core/frames.js';
import { UdpSocket } from '../../lib/io/udp.js';
import { ADDR_SLOT } from '../../lib/io/native.js';
import { addressPort, encodeAddress } from '../../lib/io/address.js';
import {
  checkVni,
  formatVtepAddress,
  innerFlowHash,
  parseVtepAddress,
  readVxlanVni,
  VXLAN_OVERHEAD_IPV4,
  VXLAN_OVERHEAD_IPV6,
  VXLAN_PORT,
  VXLAN_SOURCE_PORTS,
  VxlanEndpoint,
  writeVxlanHeader,
} from '../../lib/daemon/vxlan.js';

/** An untagged IPv4 UDP frame from sport to dport. */
function udpFrame(sport: number, dport: number, size = 60): Buffer {
  const f = Buffer.alloc(size);
  Buffer.from('020000000002020000000001', 'hex').copy(f, 0);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f[23] = 17;
  Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]).copy(f, 26);
  f.writeUInt16BE(sport, 34);
  f.writeUInt16BE(dport, 36);
  return f;
}

test('VTEP addresses: IP, IP:PORT, [v6]:PORT and bare v6; port 4789 unless given; anything else names the form', () => {
  assert.deepEqual(parseVtepAddress('192.0.2.7'), { address: '192.0.2.7', port: VXLAN_PORT });
  assert.deepEqual(parseVtepAddress('192.0.2.7:8472'), { address: '192.0.2.7', port: 8472 });
  assert.deepEqual(parseVtepAddress('[2001:db8::7]:4790'), { address: '2001:db8::7', port: 4790 });
  assert.deepEqual(parseVtepAddress('2001:db8::7'), { address: '2001:db8::7', port: VXLAN_PORT });
  assert.equal(formatVtepAddress(parseVtepAddress('2001:db8::7')), '[2001:db8::7]:4789');
  assert.deepEqual(parseVtepAddress('[::1]'), { address: '::1', port: VXLAN_PORT });
  for (const bad of ['vtep.example', '192.0.2.7:0', '192.0.2.7:70000', '']) {
    assert.throws(() => parseVtepAddress(bad), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ADDRESS' && /IP\[:PORT\]/.test(e.message), bad);
  }
  assert.equal(checkVni(1), 1);
  assert.equal(checkVni(0xffffff), 0xffffff);
  for (const bad of [0, -1, 0x1000000, 1.5]) assert.throws(() => checkVni(bad), /from 1 to 16777215/);
});

test('the header: I flag, reserved bits zero, 24-bit VNI; a datagram without the I flag or too short is no VXLAN frame', () => {
  const d = Buffer.alloc(8 + 14, 0xee);
  writeVxlanHeader(d, 0, 0xabcdef);
  assert.deepEqual([...d.subarray(0, 8)], [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
  assert.equal(readVxlanVni(d, 0, d.length), 0xabcdef);
  assert.equal(readVxlanVni(d, 0, 8 + 13), -1, 'shorter than an Ethernet header inside');
  d[0] = 0x00;
  assert.equal(readVxlanVni(d, 0, d.length), -1, 'I flag clear');
  d[0] = 0x0c;
  d[1] = 0xff;
  assert.equal(readVxlanVni(d, 0, d.length), 0xabcdef, 'other flag and reserved bits are ignored on receipt (RFC 7348)');
  assert.equal(VXLAN_OVERHEAD_IPV4, 50);
  assert.equal(VXLAN_OVERHEAD_IPV6, 70);
});

test('the inner flow hash: one flow one value (payload and TTL aside); flows spread over the source ports', () => {
  const a = udpFrame(40000, 53);
  const b = udpFrame(40000, 53, 200);
  b[22] = 7; // another TTL
  b.fill(0x5a, 42);
  assert.equal(innerFlowHash(a, 0, a.length), innerFlowHash(b, 0, b.length), 'same 5-tuple, same hash');
  const buckets = new Set<number>();
  for (let p = 0; p < 64; p++) {
    const f = udpFrame(40000 + p, 53);
    buckets.add(innerFlowHash(f, 0, f.length) % VXLAN_SOURCE_PORTS);
  }
  assert.ok(buckets.size >= VXLAN_SOURCE_PORTS - 1, `64 flows use ${buckets.size} of ${VXLAN_SOURCE_PORTS} source ports`);
  // Not IP: the MACs and EtherType decide.
  const arp = Buffer.alloc(42);
  arp.writeUInt16BE(0x0806, 12);
  assert.equal(typeof innerFlowHash(arp, 0, arp.length), 'number');
  assert.equal(innerFlowHash(Buffer.alloc(3), 0, 3) >= 0, true, 'a runt does not throw');
});

test('over loopback: a frame is sent as 8 header bytes + the frame to the VTEP; one that would exceed the underlay MTU is dropped and counted; a flow keeps its source port', async () => {
  const peer = UdpSocket.bind({ address: '127.0.0.1', port: 0 });
  const got: { data: Buffer; sport: number }[] = [];
  peer.onDatagrams((batch: FrameBatch, addrs: Buffer) => {
    for (let i = 0; i < batch.count; i++) {
      const off = batch.offsets[i]!;
      got.push({ data: Buffer.from(batch.buf.subarray(off, off + batch.lengths[i]!)), sport: addressPort(addrs, i * ADDR_SLOT) });
    }
  });
  const vx = new VxlanEndpoint({ listen: { address: '127.0.0.1', port: 0 }, mtu: 1500 });
  try {
    const ch = vx.configure([{ network: 'default', vni: 77, vteps: [{ address: '127.0.0.1', port: peer.port }] }]);
    assert.equal(ch.added.length, 1);
    const port = ch.added[0]!;
    const fits = udpFrame(40001, 80, 1500 - VXLAN_OVERHEAD_IPV4 + 14);
    const tooBig = udpFrame(40001, 80, 1500 - VXLAN_OVERHEAD_IPV4 + 15);
    const again = udpFrame(40001, 80, 100);
    port.send(buffersToBatch([fits, tooBig, again]));
    const deadline = Date.now() + 2_000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, 2, 'two datagrams arrive');
    assert.equal(got[0]!.data.length, 1500 - 28, 'a full one fills the MTU: 1500 - IPv4 - UDP');
    assert.equal(readVxlanVni(got[0]!.data, 0, got[0]!.data.length), 77);
    assert.ok(got[0]!.data.subarray(8).equals(fits), 'the frame follows the header unchanged');
    assert.ok(got[1]!.data.subarray(8).equals(again));
    assert.equal(port.txTooBig, 1);
    assert.equal(port.txDatagrams, 2);
    assert.equal(got[0]!.sport, got[1]!.sport, 'one flow, one source port');
    assert.ok(vx.sourcePorts.includes(got[0]!.sport), `from the pool ${vx.sourcePorts.join(',')}`);
    // The VTEP answers from the peer's socket: delivered to the port's receiver, minus the header.
    const delivered: Buffer[] = [];
    port.setReceiver((b) => {
      for (let i = 0; i < b.count; i++) delivered.push(Buffer.from(b.buf.subarray(b.offsets[i]!, b.offsets[i]! + b.lengths[i]!)));
    });
    const reply = Buffer.alloc(8 + again.length);
    writeVxlanHeader(reply, 0, 77);
    again.copy(reply, 8);
    peer.sendTo(reply, encodeAddress('127.0.0.1', vx.port));
    const until = Date.now() + 2_000;
    while (delivered.length < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(delivered.length, 1);
    assert.ok(delivered[0]!.equals(again));
    assert.equal(vx.counters.rxDelivered, 1);
    // Reconfigured without it: the port is removed; the same VTEP again is a new port.
    const gone = vx.configure([{ network: 'default', vni: 77, vteps: [] }]);
    assert.deepEqual(gone.removed, [port]);
    assert.throws(() => vx.configure([{ network: 'a', vni: 5, vteps: [] }, { network: 'b', vni: 5, vteps: [] }]), /VNI 5 is given to network 'a' and to network 'b'/);
  } finally {
    vx.close();
    peer.close();
  }
});


test('SwitchServer: a reload with bad VXLAN settings throws and changes nothing; a good one adds the new VTEPs; the flags stay with the network they were given to', async () => {
  const { SwitchServer } = await import('../../lib/daemon/switch-server.js');
  const { generateKeyPair } = await import('../../lib/crypto/keys.js');
  const vtep = (a: string): { address: string; port: number } => ({ address: a, port: VXLAN_PORT });
  const server = new SwitchServer({
    privateKey: generateKeyPair().privateKey,
    networks: [{ name: 'red', allow: [] }],
    listen: [{ address: '127.0.0.1', port: 0 }],
    tcp: false,
    reflectorPort: false,
    vxlan: { listen: { address: '127.0.0.1', port: 0 }, vni: 10, vteps: [vtep('127.0.0.9')] },
  });
  try {
    await server.listening;
    const vteps = (): string[] => server.snapshot().vteps.map((v) => `${v.network}/${v.vni}/${v.address}`).sort();
    assert.deepEqual(vteps(), ['red/10/127.0.0.9:4789']);
    assert.throws(() => server.setNetworks([{ name: 'red', allow: [] }, { name: 'blue', allow: [], vteps: [vtep('127.0.0.5')] }]), /network 'blue' has VTEPs but no VNI/);
    assert.throws(() => server.setNetworks([{ name: 'red', allow: [] }, { name: 'blue', allow: [], vni: 20, vteps: [vtep('2001:db8::5')] }]), /is IPv6, but the VXLAN socket listens on IPv4/);
    assert.deepEqual(server.networkNames, ['red'], 'nothing changed');
    assert.deepEqual(vteps(), ['red/10/127.0.0.9:4789']);
    // blue first now: the flags' VNI and VTEPs stay with red.
    server.setNetworks([{ name: 'blue', allow: [], vni: 20, vteps: [vtep('127.0.0.5')] }, { name: 'red', allow: [] }]);
    assert.deepEqual(vteps(), ['blue/20/127.0.0.5:4789', 'red/10/127.0.0.9:4789']);
    assert.equal(server.networkSwitch('blue')!.portList.length, 1, "blue's VTEP is a port of blue");
    // red gone: its VTEP goes with it, and blue does not inherit the flags.
    server.setNetworks([{ name: 'blue', allow: [], vni: 20, vteps: [vtep('127.0.0.5')] }]);
    assert.deepEqual(vteps(), ['blue/20/127.0.0.5:4789']);
  } finally {
    server.close();
  }
});
