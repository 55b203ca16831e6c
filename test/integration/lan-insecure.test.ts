// End to end in plaintext (--insecure on both ends: protocol 2 with cipher
// 'none' and open membership): the LAN works, both ends warn, and the switch
// shrugs off a burst of malformed and forged datagrams while traffic keeps flowing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanup, collect, requireRoot, runTag, waitExit, waitFor, waitForOutput, type Netns } from '../helpers/netns.js';
import { bin, execIn, portStatus, protocolCounters, switchStatus, SWITCH_PORT, sharedLan, type Lan } from '../helpers/lan.js';

const HOSTS = 3;
const ip4 = (i: number): string => `10.99.0.${i}`;
const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-lan-plain-'));

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const lan = sharedLan(tag, HOSTS, ['--insecure']);

/** Host i's (1-based) namespace. */
function host(l: Lan, i: number): Netns {
  return l.hosts[i - 1]!.ns;
}

test('plaintext is opt-in and loud: both ends warn, and ping works', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  assert.match(collect(l.vswitch).err(), /INSECURE: plaintext, and any port that reaches this switch may join/);
  for (const p of l.vports) assert.match(collect(p).err(), /INSECURE: plaintext/);
  const r = await execIn(host(l, 1), 'ping', ['-c', '2', '-i', '0.2', '-W', '2', ip4(2)]);
  assert.equal(r.status, 0, r.out);
});

/** Sends a bounded burst of bad datagrams at the switch; prints what it sent as JSON. */
const FUZZER = `
import dgram from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';
const [host, port, total, knownHex] = process.argv.slice(2);
const known = Number.parseInt(knownHex, 16);
const DEADLINE_MS = 4000;
const sock = dgram.createSocket('udp4');
sock.on('message', () => {});
const sent = { random: 0, truncated: 0, badVersion: 0, oversized: 0, unknownData: 0, forged: 0, errors: 0 };
function prefix(len, version, type) {
  const b = randomBytes(len);
  if (len > 0) b[0] = version;
  if (len > 1) b[1] = type;
  if (len > 3) b.writeUInt16BE(0, 2);
  return b;
}
function transport(index, len) {
  const b = prefix(len, 2, 0x24);
  b.writeUInt32BE(index, 4);
  b.writeUInt32BE(0, 8);
  b.writeUInt32BE(randomInt(0, 2 ** 32), 12);
  return b;
}
function datagram(i) {
  switch (i % 6) {
    case 0: sent.random++; return randomBytes(randomInt(0, 1500));
    case 1: {
      // An initiation of the wrong size, or a transport datagram shorter than header + tag.
      sent.truncated++;
      return randomInt(0, 2) === 0 ? prefix(randomInt(4, 148), 2, 0x21) : prefix(randomInt(4, 32), 2, 0x24);
    }
    case 2: sent.badVersion++; return prefix(20, randomInt(3, 255), 0x24);
    case 3: if (i % 60 === 3) { sent.oversized++; return prefix(65000, 2, 0x21); } sent.random++; return randomBytes(randomInt(1, 100));
    case 4: {
      sent.unknownData++;
      let index;
      do index = randomInt(1, 2 ** 32); while (index === known);
      return transport(index, 32 + 60);
    }
    default:
      // h1's session index, from another host: nothing authenticates it, so it must not count as h1's.
      sent.forged++;
      return transport(known, 32 + 60);
  }
}
const start = Date.now();
let i = 0;
let pending = 0;
while (i < Number(total) && Date.now() - start < DEADLINE_MS) {
  for (let k = 0; k < 50 && i < Number(total); k++, i++) {
    pending++;
    sock.send(datagram(i), Number(port), host, (err) => { pending--; if (err) sent.errors++; });
  }
  await new Promise((r) => setTimeout(r, 8));
}
while (pending > 0) await new Promise((r) => setTimeout(r, 5));
sock.close();
console.log(JSON.stringify({ total: i, ms: Date.now() - start, ...sent }));
`;

test('malformed datagrams from another host: ping h1 <-> h3 loses nothing, the switch counts them', async (t) => {
  if (!requireRoot(t)) return;
  const l = await lan();
  const fuzzer = join(tmp, 'fuzz.mjs');
  writeFileSync(fuzzer, FUZZER);
  // The index h1 writes to the switch: on the wire in clear, and in h1's status (session LOCAL/REMOTE).
  const h1Index = /session [0-9a-f]{8}\/([0-9a-f]{8})/.exec(await portStatus(l.vports[0]!))?.[1];
  assert.ok(h1Index, 'h1 shows its session');
  const before = protocolCounters(await switchStatus(l.vswitch));

  const ping = host(l, 1).spawn('ping', ['-c', '100', '-i', '0.05', '-W', '1', ip4(3)]);
  const pingOut = collect(ping);
  await waitForOutput(ping, /bytes from 10\.99\.0\.3/, 5_000);
  const fuzz = await execIn(l.hosts[1]!.ns, process.execPath, [fuzzer, l.hosts[1]!.switchAddress, String(SWITCH_PORT), '5000', h1Index], 15_000);
  assert.equal(fuzz.status, 0, fuzz.err);
  assert.equal(ping.exitCode, null, 'the ping ran for the whole burst');
  const sent = JSON.parse(fuzz.out) as Record<string, number>;
  assert.equal(sent.errors, 0);
  assert.ok(sent.total! >= 1000, `burst too small: ${fuzz.out}`);
  assert.equal(await waitExit(ping, 15_000), 0, pingOut.out());
  const stats = /(\d+) packets transmitted, (\d+) received/.exec(pingOut.out());
  assert.ok(stats, pingOut.out());
  assert.ok(Number(stats[1]) - Number(stats[2]) <= 1, `ping lost packets during the burst:\n${pingOut.out()}`);

  assert.equal(l.vswitch.exitCode, null, 'vswitch still running');
  const after = protocolCounters(await switchStatus(l.vswitch));
  assert.ok(after.malformed! - before.malformed! >= sent.truncated! + sent.oversized!, `malformed ${before.malformed} -> ${after.malformed}; sent ${fuzz.out}`);
  // Random bytes mostly carry a bad version byte too, so that counter grows by at least what was sent on purpose.
  assert.ok(after['bad version']! - before['bad version']! >= sent.badVersion!, `bad version ${before['bad version']} -> ${after['bad version']}`);
  assert.ok(after['unknown session']! - before['unknown session']! >= sent.unknownData!, `unknown session ${before['unknown session']} -> ${after['unknown session']}`);
  assert.equal(after['wrong endpoint']! - before['wrong endpoint']!, sent.forged, `wrong endpoint ${before['wrong endpoint']} -> ${after['wrong endpoint']}`);
  t.diagnostic(`burst ${fuzz.out.trim()}; ping ${stats[0]}; counters before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
  assert.equal(after.handshakes, before.handshakes, 'no port had to rejoin');
  // Every port is still joined and h1 kept its session (the forged datagrams moved nothing).
  const pong = await execIn(host(l, 3), 'ping', ['-c', '1', '-W', '2', ip4(1)]);
  assert.equal(pong.status, 0, pong.out);
  assert.equal(after.roams, before.roams, 'no session roamed to the attacker');
});
