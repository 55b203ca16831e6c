// End to end, packet capture: vswitch --pcap and vport --pcap write files that
// tshark reads (the pings are in both), and a capture bounded by --pcap-max-mb
// rotates over --pcap-files files, none above the bound.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, collect, ensureTools, requireRoot, run, runTag, waitExit, waitForOutput, type Netns, type StarHost } from '../helpers/netns.js';
import { bin, count, execIn, startPort, startSwitch } from '../helpers/lan.js';

const tmp = mkdtempSync(join(tmpdir(), 'etl-pcap-'));
after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

let starPromise: { sw: Netns; hosts: StarHost[] } | undefined;
function star(): { sw: Netns; hosts: StarHost[] } {
  // tshark's package asks whether non-root users may capture; ensureTools answers with the default.
  ensureTools({ ping: 'iputils-ping', tshark: 'tshark' });
  starPromise ??= buildStar(runTag(), 2);
  return starPromise;
}

/** SIGTERM (the capture is flushed on the way out) and expect a clean exit; returns its log. */
async function stop(child: ChildProcess): Promise<string> {
  child.kill('SIGTERM');
  assert.equal(await waitExit(child, 10_000), 0, `exit status; output:\n${collect(child).out()}${collect(child).err()}`);
  return collect(child).out() + collect(child).err();
}

/** tshark's output lines for `file` read with `args` (exits non-zero on a file it can't read). */
function tshark(file: string, args: string[]): string[] {
  const r = run('tshark', ['-r', file, ...args], { timeoutMs: 30_000 });
  return r.stdout.split('\n').filter((l) => l !== '');
}

test('tshark finds the 5 echo requests and 5 replies of a ping in the vport capture, and the ARP exchange that preceded them in the vswitch capture', async (t) => {
  if (!requireRoot(t)) return;
  const { sw, hosts } = star();
  const swFile = join(tmp, 'sw.pcap');
  const h1File = join(tmp, 'h1.pcap');
  const vswitch = await startSwitch(sw, ['--pcap', swFile]);
  const h1 = await startPort(hosts[0]!, 1, ['--pcap', h1File]);
  const h2 = await startPort(hosts[1]!, 2);
  const ping = await execIn(hosts[0]!.ns, 'ping', ['-c', '5', '-i', '0.2', '-W', '2', '10.99.0.2']);
  assert.match(ping.out, /5 received/, ping.out + ping.err);

  const logs = [await stop(h1), await stop(h2), await stop(vswitch)];
  for (const [name, log] of [['vport h1', logs[0]!], ['vswitch', logs[2]!]] as const) {
    assert.equal(count(log, /capture started /), 1, `${name}: one start line:\n${log}`);
    assert.equal(count(log, /capture stopped .* dropped=0 /), 1, `${name}: one stop line, nothing dropped:\n${log}`);
    assert.ok(log.split('\n').length < 20, `${name}: a few log lines, none per frame:\n${log}`);
  }
  // One line per ICMP packet: type, source, destination — both directions, addressed as on the LAN.
  const lines = tshark(h1File, ['-Y', 'icmp', '-T', 'fields', '-e', 'icmp.type', '-e', 'ip.src', '-e', 'ip.dst']);
  assert.equal(lines.filter((l) => l === '8\t10.99.0.1\t10.99.0.2').length, 5, `${h1File}: 5 echo requests h1 -> h2 in:\n${lines.join('\n')}`);
  assert.equal(lines.filter((l) => l === '0\t10.99.0.2\t10.99.0.1').length, 5, `${h1File}: 5 echo replies h2 -> h1 in:\n${lines.join('\n')}`);
  assert.equal(lines.length, 10, `${h1File}: each frame recorded once`);
  // The switch records what it switches: the flooded ARP request and the reply
  // that introduced h1 and h2 to each other. Once their end-to-end session is
  // up the pings cross it sealed, and it cannot record them.
  const arp = tshark(swFile, ['-Y', 'arp', '-T', 'fields', '-e', 'arp.opcode', '-e', 'arp.src.proto_ipv4', '-e', 'arp.dst.proto_ipv4']);
  assert.ok(arp.includes('1\t10.99.0.1\t10.99.0.2'), `${swFile}: h1's ARP request in:\n${arp.join('\n')}`);
  assert.ok(arp.includes('2\t10.99.0.2\t10.99.0.1'), `${swFile}: h2's ARP reply in:\n${arp.join('\n')}`);
  const icmp = tshark(swFile, ['-Y', 'icmp', '-T', 'fields', '-e', 'icmp.type']);
  assert.ok(icmp.length < 10, `${swFile}: the switch recorded pings that went end to end:\n${icmp.join('\n')}`);
  t.diagnostic(`vswitch capture: ${arp.length} ARP, ${icmp.length} ICMP (the rest went end to end)`);
});

test('vport --pcap-max-mb 1 --pcap-files 3 during a 5 MB transfer: rotates, keeps 3 files, none above 1 MB', async (t) => {
  if (!requireRoot(t)) return;
  const { sw, hosts } = star();
  const file = join(tmp, 'rot.pcap');
  const maxBytes = 1_000_000;
  const vswitch = await startSwitch(sw);
  const h1 = await startPort(hosts[0]!, 1, ['--pcap', file, '--pcap-max-mb', '1', '--pcap-files', '3']);
  const h2 = await startPort(hosts[1]!, 2);

  const payload = join(tmp, 'payload.bin');
  writeFileSync(payload, randomBytes(5 * 1024 * 1024));
  const rx = hosts[1]!.ns.spawn(process.execPath, [bin('etherlink'), 'transfer', 'receive', '10.99.0.2', '5001', join(tmp, 'received.bin')]);
  await waitForOutput(rx, /listening on/);
  const tx = hosts[0]!.ns.spawn(process.execPath, [bin('etherlink'), 'transfer', 'send', '10.99.0.2', '5001', payload]);
  assert.equal(await waitExit(tx, 30_000), 0, `sender: ${collect(tx).err()}`);
  assert.equal(await waitExit(rx, 10_000), 0, `receiver: ${collect(rx).err()}`);

  const log = await stop(h1);
  await stop(h2);
  await stop(vswitch);
  const stopped = /capture stopped .* frames=(\d+) .* dropped=(\d+) overflow=0 rotations=(\d+)/.exec(log);
  assert.ok(stopped, `a stop line with counters:\n${log}`);
  const rotations = Number(stopped[3]);
  assert.equal(Number(stopped[2]), 0, 'nothing dropped');
  assert.ok(rotations >= 4, `5 MB in 1 MB files rotates at least 4 times (got ${rotations})`);
  assert.equal(count(log, /capture rotated /), rotations, `one log line per rotation:\n${log}`);

  assert.equal(existsSync(`${file}.3`), false, 'the oldest file was deleted');
  let records = 0;
  for (const f of [file, `${file}.1`, `${file}.2`]) {
    const size = statSync(f).size;
    assert.ok(size <= maxBytes, `${f}: ${size} bytes, above ${maxBytes}`);
    const frames = tshark(f, ['-T', 'fields', '-e', 'frame.len']);
    assert.ok(frames.length > 0, `${f} is a capture tshark reads`);
    records += frames.length;
    // A full file is within one largest frame of the bound (the MTU is 1402).
    if (f !== file) assert.ok(size > maxBytes - 1500, `${f}: ${size} bytes, rotated early`);
  }
  assert.ok(records < Number(stopped[1]), 'older frames went with the deleted files');
});
