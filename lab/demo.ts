#!/usr/bin/env node
// npm run demo: a working virtual LAN on this one machine. Three hosts as
// network namespaces, a vswitch, a vport in each; ping, a 50 MB transfer,
// the switch's MAC table; then everything it made is removed.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeKey, generateKeyPair, writeKeyFile } from '../lib/crypto/keys.js';
import { buildStar, cleanup, collect, ensureTools, isRoot, runTag, waitExit, waitForOutput, type StarHost } from './netns.js';

const HOSTS = 3;
const TRANSFER_BYTES = 50 * 1024 * 1024;
const SWITCH_PORT = 9999;
const bins = join(fileURLToPath(import.meta.url), '..', '..', 'bin');
const cli = (name: string): string => join(bins, `${name}.js`);
const overlayIp = (i: number): string => `10.99.0.${i}`;

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

async function main(): Promise<number> {
  if (!isRoot()) {
    process.stderr.write(
      'npm run demo needs root: it creates network namespaces, veth links and TAP devices (CAP_NET_ADMIN and CAP_SYS_ADMIN).\nRun it as root, e.g. sudo npm run demo\n',
    );
    return 4;
  }
  ensureTools({ ping: 'iputils-ping', ip: 'iproute2' });
  const tag = runTag();
  const tmp = mkdtempSync(join(tmpdir(), 'etherlink-demo-'));
  try {
    step(`underlay: a switch namespace and ${HOSTS} hosts, each on its own veth (MTU 1500); the switch namespace also routes between the hosts, as the internet would`);
    const { sw, hosts } = buildStar(tag, HOSTS);
    sw.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    for (const h of hosts) h.ns.ip('route', 'add', 'default', 'via', h.switchAddress);
    for (const [i, h] of hosts.entries()) console.log(`  host h${i + 1}: namespace ${h.ns.name}, underlay ${h.underlay} -> switch ${h.switchAddress}:${SWITCH_PORT}`);

    step('keys: one X25519 key pair for the switch and one per host; the switch admits the hosts\' public keys');
    const switchPair = generateKeyPair();
    writeKeyFile(join(tmp, 'switch.key'), switchPair.privateKey);
    const hostPairs = hosts.map((_, i) => {
      const pair = generateKeyPair();
      writeKeyFile(join(tmp, `h${i + 1}.key`), pair.privateKey);
      return pair;
    });
    writeFileSync(join(tmp, 'allow'), hostPairs.map((p, i) => `${encodeKey(p.publicKey)} h${i + 1}`).join('\n') + '\n');
    console.log(`  switch ${encodeKey(switchPair.publicKey)}`);
    for (const [i, p] of hostPairs.entries()) console.log(`  h${i + 1}     ${encodeKey(p.publicKey)}`);

    step(`vswitch in ${sw.name}, listening on UDP ${SWITCH_PORT}, encrypted (Noise IKpsk2 + ChaCha20-Poly1305)`);
    // Control sockets in the demo's own directory: the three vports share the name etl0.
    const swControl = join(tmp, 'vswitch.sock');
    const vswitch = sw.spawn(process.execPath, [cli('vswitch'), String(SWITCH_PORT), '--key', join(tmp, 'switch.key'), '--allow', join(tmp, 'allow'), '--control', swControl]);
    await waitForOutput(vswitch, /vswitch ready/);
    console.log('  ready');

    step('a vport in each host: TAP etl0 with an address on the virtual LAN 10.99.0.0/24');
    const vports = hosts.map((h, i) =>
      h.ns.spawn(process.execPath, [
        cli('vport'),
        h.switchAddress,
        String(SWITCH_PORT),
        '--key',
        join(tmp, `h${i + 1}.key`),
        '--switch-key',
        encodeKey(switchPair.publicKey),
        '--name',
        'etl0',
        '--ip',
        `${overlayIp(i + 1)}/24`,
        '--control',
        join(tmp, `vport-h${i + 1}.sock`),
      ]),
    );
    for (const [i, p] of vports.entries()) {
      await waitForOutput(p, /joined/, 15_000);
      console.log(`  h${i + 1}: etl0 ${overlayIp(i + 1)}/24 joined`);
    }

    step('ping between every pair of hosts: the first frames through the switch, then end to end, on a direct path where the hosts reach each other');
    let failures = 0;
    for (let a = 1; a <= HOSTS; a++) {
      for (let b = 1; b <= HOSTS; b++) {
        if (a === b) continue;
        const ping = hosts[a - 1]!.ns.spawn('ping', ['-c', '3', '-i', '0.2', '-W', '2', overlayIp(b)]);
        const out = collect(ping);
        const code = await waitExit(ping, 20_000);
        const rtt = /= [\d.]+\/([\d.]+)\//.exec(out.out())?.[1];
        const loss = /(\d+)% packet loss/.exec(out.out())?.[1];
        console.log(`  h${a} -> h${b} (${overlayIp(b)}): ${code === 0 ? 'ok' : 'FAILED'}, loss ${loss ?? '?'}%, avg rtt ${rtt ?? '?'} ms`);
        if (code !== 0) failures++;
      }
    }

    step(`h1's peers: how it reaches each (vport status --control ${join(tmp, 'vport-h1.sock')})`);
    const peers = hosts[0]!.ns.spawn(process.execPath, [cli('vport'), 'status', '--control', join(tmp, 'vport-h1.sock')]);
    const peersCode = await waitExit(peers, 10_000);
    console.log((collect(peers).out() + collect(peers).err()).trimEnd());
    if (peersCode !== 0) failures++;

    step(`transfer ${TRANSFER_BYTES / 1024 / 1024} MB from h1 to h${HOSTS} over TCP across the virtual LAN`);
    const file = join(tmp, 'payload.bin');
    const payload = randomBytes(TRANSFER_BYTES);
    writeFileSync(file, payload);
    console.log(`  file sha256 ${createHash('sha256').update(payload).digest('hex')}`);
    const target = hosts[HOSTS - 1] as StarHost;
    const rx = target.ns.spawn(process.execPath, [cli('etherlink'), 'transfer', 'receive', overlayIp(HOSTS), '5001', join(tmp, 'received.bin')]);
    await waitForOutput(rx, /listening/);
    const tx = hosts[0]!.ns.spawn(process.execPath, [cli('etherlink'), 'transfer', 'send', overlayIp(HOSTS), '5001', file]);
    const txCode = await waitExit(tx, 180_000);
    const rxCode = await waitExit(rx, 30_000);
    const sent = /sent .*/.exec(collect(tx).out())?.[0] ?? collect(tx).err();
    const received = /received .*/.exec(collect(rx).out())?.[0] ?? collect(rx).err();
    console.log(`  h1:  ${sent}`);
    console.log(`  h${HOSTS}:  ${received}`);
    const hashOf = (s: string): string | undefined => /sha256 ([0-9a-f]{64})/.exec(s)?.[1];
    const intact = txCode === 0 && rxCode === 0 && hashOf(sent) !== undefined && hashOf(sent) === hashOf(received);
    console.log(`  ${intact ? 'intact: same byte count and SHA-256 on both ends' : 'MISMATCH'}`);
    if (!intact) failures++;

    step(`the switch's ports, MAC table and counters: vswitch status --control ${swControl}`);
    const status = sw.spawn(process.execPath, [cli('vswitch'), 'status', '--control', swControl]);
    const statusCode = await waitExit(status, 10_000);
    console.log((collect(status).out() + collect(status).err()).trimEnd());
    if (statusCode !== 0) failures++;

    step('cleaning up: vports say goodbye and remove their devices, the switch stops, namespaces go');
    for (const p of vports) p.kill('SIGTERM');
    for (const p of vports) await waitExit(p, 10_000);
    vswitch.kill('SIGTERM');
    await waitExit(vswitch, 10_000);
    console.log(failures === 0 ? '\nThe virtual LAN worked: every ping answered and the file arrived intact.' : `\n${failures} check(s) FAILED`);
    return failures === 0 ? 0 : 1;
  } finally {
    cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();
