// End to end in plaintext (--insecure on both ends, protocol 1): the LAN works,
// both ends warn, and the switch shrugs off a burst of malformed datagrams
// while traffic keeps flowing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanup, collect, requireRoot, runTag, waitExit, waitFor, waitForOutput, type Netns } from '../helpers/netns.js';
import { bin, execIn, protocolCounters, switchStatus, SWITCH_PORT, sharedLan, type Lan } from '../helpers/lan.js';

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
  assert.match(collect(l.vswitch).err(), /INSECURE: plaintext protocol 1/);
  for (const p of l.vports) assert.match(collect(p).err(), /INSECURE: plaintext protocol 1/);
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
const sent = { random: 0, truncated: 0, badVersion: 0, oversized: 0, unknownData: 0, badToken: 0, errors: 0 };
function prefix(len, version, type) {
  const b = randomBytes(len);
  if (len > 0) b[0] = version;
  if (len > 1) b[1] = type;
  if (len > 3) b.writeUInt16BE(0, 2);
  return b;
}
function datagram(i) {
  switch (i % 6) {
    case 0: sent.random++; return randomBytes(randomInt(0, 1500));
    case 1: { sent.truncated++; const t = [1, 2, 4, 5, 6][randomInt(0, 5)]; return prefix(randomInt(0, 16), 1, t); }
    case 2: sent.badVersion++; return prefix(20, randomInt(2, 255), 5);
    case 3: if (i % 60 === 3) { sent.oversized++; return prefix(65000, 1, 5); } sent.random++; return randomBytes(randomInt(1, 100));
    case 4: {
      sent.unknownData++;
      const b = prefix(16 + 60, 1, 4);
      let index;
      do index = randomInt(1, 2 ** 32); while (index === known);
      b.writeUInt32BE(index, 4);
      return b;
    }
    default: {
      sent.badToken++;
      const b = prefix(20, 1, 5);
      b.writeUInt32BE(known, 4);
      return b;
    }
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
  const h1Index = /port joined port=h1 .*?index=([0-9a-f]{8})/.exec(collect(l.vswitch).err())?.[1];
  assert.ok(h1Index, 'the switch logged h1 index');
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
  assert.equal(after['bad token']! - before['bad token']!, sent.badToken, `bad token ${before['bad token']} -> ${after['bad token']}`);
  t.diagnostic(`burst ${fuzz.out.trim()}; ping ${stats[0]}; counters before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
  assert.equal(after.joins, before.joins, 'no port had to rejoin');
  // Every port is still joined and h1 kept its session (the wrong-token keepalives moved nothing).
  const pong = await execIn(host(l, 3), 'ping', ['-c', '1', '-W', '2', ip4(1)]);
  assert.equal(pong.status, 0, pong.out);
  assert.equal(after.roams, before.roams, 'no session roamed to the attacker');
});
