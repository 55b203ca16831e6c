// The real readers on PcapWriter's files: tshark and capinfos see the
// interfaces by name, each frame's direction, lengths and timestamps, and
// every rotated file opens alone. No namespaces: root only to install tshark.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffersToBatch } from '../../lib/core/frames.js';
import { PcapWriter } from '../../lib/daemon/pcap.js';
import { settle } from '../../lib/io/memory-port.js';
import { ensureTools, isRoot, run } from '../helpers/netns.js';

const tmp = mkdtempSync(join(tmpdir(), 'etl-pcapng-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** True when tshark and capinfos are here (installed first if root); skips otherwise, fails under CI=true. */
function readers(t: TestContext): boolean {
  // tshark's package asks whether non-root users may capture; ensureTools answers with the default.
  if (isRoot()) ensureTools({ tshark: 'tshark', capinfos: 'wireshark-common' });
  if (spawnSync('sh', ['-c', 'command -v tshark && command -v capinfos']).status === 0) return true;
  const why = 'needs tshark and capinfos (run as root to install them)';
  if (process.env.CI === 'true') throw new Error(`CI=true but this test ${why}`);
  t.skip(why);
  return false;
}

/** tshark's field lines for `file`; tshark exits non-zero on a file it can't read, and must not call it damaged. */
function tshark(file: string, fields: string[]): string[][] {
  const r = run('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], { timeoutMs: 30_000 });
  assert.doesNotMatch(r.stderr, /damaged|corrupt|cut short|appears to/i, `${file}: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('|'));
}

/** capinfos' summary of `file`: file type and the names of its interfaces. */
function capinfos(file: string): { type: string; interfaces: string[] } {
  const out = run('capinfos', [file], { timeoutMs: 30_000 }).stdout;
  return {
    type: /^File type:\s+(.*)$/m.exec(out)?.[1]?.trim() ?? '',
    interfaces: [...out.matchAll(/^\s+Name = (.*)$/gm)].map((m) => m[1]!.trim()),
  };
}

/** A 60-byte broadcast Ethernet frame (EtherType 0x88b5, local experimental) carrying `seq`. */
function eth(seq: number, len = 60): Buffer {
  const f = Buffer.alloc(len, 0x5a);
  Buffer.from('ffffffffffff020000000001', 'hex').copy(f);
  f.writeUInt16BE(0x88b5, 12);
  f.writeUInt32BE(seq, 14);
  return f;
}

const T0 = 1_700_000_000_123_456_789n; // ns since the epoch

test('tshark reads the interface names, directions, lengths and nanosecond timestamps of a pcapng capture', async (t) => {
  if (!readers(t)) return;
  const file = join(tmp, 'dir.pcapng');
  let now = T0;
  const w = new PcapWriter(file, { interfaceName: 'tap0', nanosecond: true, snaplen: 50, clock: () => now });
  const udp = w.addInterface('udp 10.0.0.2:4789');
  w.write(buffersToBatch([eth(1)]), { direction: 'in' });
  now += 1_000_000_001n;
  w.write(buffersToBatch([eth(2, 1514)]), { direction: 'out' });
  w.write(buffersToBatch([eth(3)]), { interface: udp, direction: 'out' });
  w.write(buffersToBatch([eth(4)]), { interface: udp, direction: 'in' });
  w.write(buffersToBatch([eth(5)]), { interface: udp });
  await w.close();

  const rows = tshark(file, ['frame.interface_id', 'frame.interface_name', 'frame.packet_flags_direction', 'frame.len', 'frame.cap_len', 'frame.time_epoch', 'eth.type']);
  // Direction as tshark prints epb_flags bits 0-1: 1 inbound, 2 outbound, absent when not recorded.
  assert.deepEqual(rows, [
    ['0', 'tap0', '0x00000001', '60', '50', '1700000000.123456789', '0x88b5'],
    ['0', 'tap0', '0x00000002', '1514', '50', '1700000001.123456790', '0x88b5'],
    ['1', 'udp 10.0.0.2:4789', '0x00000002', '60', '50', '1700000001.123456790', '0x88b5'],
    ['1', 'udp 10.0.0.2:4789', '0x00000001', '60', '50', '1700000001.123456790', '0x88b5'],
    ['1', 'udp 10.0.0.2:4789', '', '60', '50', '1700000001.123456790', '0x88b5'],
  ]);
  // A display filter on the direction, as one would use in Wireshark.
  const inbound = run('tshark', ['-r', file, '-Y', 'frame.packet_flags_direction == 1', '-T', 'fields', '-e', 'frame.number'], { timeoutMs: 30_000 });
  assert.deepEqual(inbound.stdout.trim().split('\n'), ['1', '4']);
  const info = capinfos(file);
  assert.match(info.type, /pcapng/);
  assert.deepEqual(info.interfaces, ['tap0', 'udp 10.0.0.2:4789']);
});

test('tshark and capinfos read every rotated pcapng file alone, with every interface added so far', async (t) => {
  if (!readers(t)) return;
  const file = join(tmp, 'rot.pcapng');
  const w = new PcapWriter(file, { maxBytes: 4000, files: 20, snaplen: 1514, clock: () => T0 });
  let port = -1;
  for (let seq = 0; seq < 24; seq++) {
    if (seq === 5) port = w.addInterface('port-b');
    w.write(buffersToBatch([eth(seq, 1000)]), port >= 0 && seq % 2 === 1 ? { interface: port, direction: 'out' } : { direction: 'in' });
    await settle();
  }
  const c = await w.close();
  assert.ok(c.rotations >= 5, `24 frames of 1 kB in 4 kB files rotate (got ${c.rotations})`);
  const files = [...Array.from({ length: c.rotations }, (_, i) => `${file}.${c.rotations - i}`), file];
  assert.equal(existsSync(`${file}.${c.rotations + 1}`), false);
  const seqs: number[] = [];
  for (const [i, f] of files.entries()) {
    const info = capinfos(f);
    assert.match(info.type, /pcapng/, f);
    assert.deepEqual(info.interfaces, i === 0 ? ['etherlink'] : ['etherlink', 'port-b'], `${f}: the interfaces added so far`);
    for (const [name, dir, data] of tshark(f, ['frame.interface_name', 'frame.packet_flags_direction', 'data.data'])) {
      const seq = Number.parseInt(data!.slice(0, 8), 16); // the payload after the EtherType starts with seq
      seqs.push(seq);
      const onPort = seq >= 5 && seq % 2 === 1;
      assert.deepEqual([name, dir], onPort ? ['port-b', '0x00000002'] : ['etherlink', '0x00000001'], `${f}: frame ${seq}`);
    }
  }
  assert.deepEqual(seqs, Array.from({ length: 24 }, (_, i) => i), 'every frame once, in order, across the files');
});

test("format 'pcap' is a classic pcap tshark reads, without interfaces or direction", async (t) => {
  if (!readers(t)) return;
  const file = join(tmp, 'classic.pcap');
  const w = new PcapWriter(file, { format: 'pcap', clock: () => T0 });
  const other = w.addInterface('ignored');
  w.write(buffersToBatch([eth(1)]), { direction: 'in' });
  w.write(buffersToBatch([eth(2)]), { interface: other, direction: 'out' });
  await w.close();
  assert.match(capinfos(file).type, /pcap$/);
  assert.deepEqual(tshark(file, ['frame.len', 'frame.time_epoch', 'frame.packet_flags_direction']), [
    ['60', '1700000000.123456000', ''],
    ['60', '1700000000.123456000', ''],
  ]);
});
