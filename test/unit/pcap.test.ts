// Unit tests for lib/daemon/pcap.ts: both file formats read back by tiny
// readers (pcapng also byte for byte), interfaces and direction, snaplen,
// rotation at the size bound, the memory bound, and the switch hook.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureOptionsFromFlags } from '../../cli/args.js';
import { buffersToBatch } from '../../lib/core/frames.js';
import {
  PcapWriter,
  PCAP_MAGIC_NSEC,
  PCAP_MAGIC_USEC,
  PCAP_FILE_HEADER_LEN,
  PCAP_RECORD_HEADER_LEN,
  LINKTYPE_ETHERNET,
} from '../../lib/daemon/pcap.js';
import { SwitchServer } from '../../lib/daemon/switch-server.js';
import { createMemoryPortPair, settle } from '../../lib/io/memory-port.js';
import { createLogger } from '../../lib/core/log.js';

const dir = mkdtempSync(join(tmpdir(), 'etl-pcap-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const tmpFile = (): string => join(dir, `t${n++}.pcap`);

interface PcapRecord {
  sec: number;
  frac: number;
  incl: number;
  orig: number;
  data: Buffer;
}

interface PcapFile {
  magic: number;
  major: number;
  minor: number;
  thiszone: number;
  sigfigs: number;
  snaplen: number;
  linktype: number;
  records: PcapRecord[];
}

/** The smallest pcap reader: little-endian files only, every length checked against the file. */
function readPcap(file: string): PcapFile {
  const b = readFileSync(file);
  assert.ok(b.length >= PCAP_FILE_HEADER_LEN, `${file}: ${b.length} bytes, shorter than a file header`);
  const out: PcapFile = {
    magic: b.readUInt32LE(0),
    major: b.readUInt16LE(4),
    minor: b.readUInt16LE(6),
    thiszone: b.readInt32LE(8),
    sigfigs: b.readUInt32LE(12),
    snaplen: b.readUInt32LE(16),
    linktype: b.readUInt32LE(20),
    records: [],
  };
  let p = PCAP_FILE_HEADER_LEN;
  while (p < b.length) {
    assert.ok(p + PCAP_RECORD_HEADER_LEN <= b.length, `${file}: truncated record header at ${p}`);
    const rec = { sec: b.readUInt32LE(p), frac: b.readUInt32LE(p + 4), incl: b.readUInt32LE(p + 8), orig: b.readUInt32LE(p + 12) };
    p += PCAP_RECORD_HEADER_LEN;
    assert.ok(rec.incl <= out.snaplen && rec.incl <= rec.orig, `${file}: bad lengths ${JSON.stringify(rec)}`);
    assert.ok(p + rec.incl <= b.length, `${file}: truncated record data at ${p}`);
    out.records.push({ ...rec, data: Buffer.from(b.subarray(p, p + rec.incl)) });
    p += rec.incl;
  }
  return out;
}

interface PcapngInterface {
  linktype: number;
  snaplen: number;
  name: string;
  tsresol: number;
}

interface PcapngPacket {
  iface: number;
  /** In the interface's if_tsresol units since the epoch. */
  ts: bigint;
  incl: number;
  orig: number;
  data: Buffer;
  /** epb_flags, when present. */
  flags: number | undefined;
}

interface PcapngFile {
  /** Block types in file order: 'SHB', 'IDB', 'EPB'. */
  blocks: string[];
  magic: number;
  major: number;
  minor: number;
  sectionLength: bigint;
  userappl: string;
  interfaces: PcapngInterface[];
  packets: PcapngPacket[];
}

/** Options from `p` to `end`: [code, value] pairs; padding must be zero and opt_endofopt, if any, last. */
function readOptions(b: Buffer, p: number, end: number, where: string): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  while (p < end) {
    assert.ok(p + 4 <= end, `${where}: truncated option header at ${p}`);
    const code = b.readUInt16LE(p);
    const len = b.readUInt16LE(p + 2);
    p += 4;
    if (code === 0) {
      assert.equal(len, 0, `${where}: opt_endofopt has no value`);
      assert.equal(p, end, `${where}: opt_endofopt is the last option`);
      return out;
    }
    const padded = (len + 3) & ~3;
    assert.ok(p + padded <= end, `${where}: option ${code} runs past the block`);
    assert.ok(b.subarray(p + len, p + padded).every((x) => x === 0), `${where}: option ${code} padding is zero`);
    out.push([code, Buffer.from(b.subarray(p, p + len))]);
    p += padded;
  }
  assert.equal(out.length, 0, `${where}: a non-empty option list ends with opt_endofopt`);
  return out;
}

/**
 * The smallest pcapng reader: one little-endian section, every block length
 * checked at both ends and against the file, an IDB before any packet that
 * names it, each packet within its interface's snaplen.
 */
function readPcapng(file: string): PcapngFile {
  const b = readFileSync(file);
  const out: PcapngFile = { blocks: [], magic: 0, major: 0, minor: 0, sectionLength: 0n, userappl: '', interfaces: [], packets: [] };
  let p = 0;
  while (p < b.length) {
    const where = `${file} block ${out.blocks.length} at ${p}`;
    assert.ok(p + 12 <= b.length, `${where}: truncated block header`);
    const type = b.readUInt32LE(p);
    const len = b.readUInt32LE(p + 4);
    assert.ok(len >= 12 && len % 4 === 0, `${where}: length ${len} is not a multiple of 4 from 12`);
    assert.ok(p + len <= b.length, `${where}: length ${len} runs past the file`);
    assert.equal(b.readUInt32LE(p + len - 4), len, `${where}: trailing length equals leading length`);
    const body = p + 8;
    const end = p + len - 4;
    if (p === 0) assert.equal(type, 0x0a0d0d0a, `${file}: starts with a Section Header Block`);
    if (type === 0x0a0d0d0a) {
      assert.equal(p, 0, `${where}: one section per file`);
      out.blocks.push('SHB');
      out.magic = b.readUInt32LE(body);
      out.major = b.readUInt16LE(body + 4);
      out.minor = b.readUInt16LE(body + 6);
      out.sectionLength = b.readBigInt64LE(body + 8);
      for (const [code, v] of readOptions(b, body + 16, end, where)) if (code === 4) out.userappl = v.toString('utf8');
    } else if (type === 1) {
      out.blocks.push('IDB');
      assert.equal(b.readUInt16LE(body + 2), 0, `${where}: reserved is zero`);
      const idb: PcapngInterface = { linktype: b.readUInt16LE(body), snaplen: b.readUInt32LE(body + 4), name: '', tsresol: 6 };
      for (const [code, v] of readOptions(b, body + 8, end, where)) {
        if (code === 2) idb.name = v.toString('utf8');
        if (code === 9) idb.tsresol = v[0]!;
      }
      out.interfaces.push(idb);
    } else if (type === 6) {
      out.blocks.push('EPB');
      const iface = b.readUInt32LE(body);
      assert.ok(iface < out.interfaces.length, `${where}: interface ${iface} has no IDB before it`);
      const incl = b.readUInt32LE(body + 12);
      const orig = b.readUInt32LE(body + 16);
      assert.ok(incl <= orig && incl <= out.interfaces[iface]!.snaplen, `${where}: bad lengths ${incl}/${orig}`);
      const data = body + 20;
      const padded = (incl + 3) & ~3;
      assert.ok(data + padded <= end, `${where}: packet data runs past the block`);
      assert.ok(b.subarray(data + incl, data + padded).every((x) => x === 0), `${where}: data padding is zero`);
      let flags: number | undefined;
      for (const [code, v] of readOptions(b, data + padded, end, where)) {
        if (code === 2) {
          assert.equal(v.length, 4, `${where}: epb_flags is 32 bits`);
          flags = v.readUInt32LE(0);
        }
      }
      const ts = (BigInt(b.readUInt32LE(body + 4)) << 32n) | BigInt(b.readUInt32LE(body + 8));
      out.packets.push({ iface, ts, incl, orig, data: Buffer.from(b.subarray(data, data + incl)), flags });
    } else {
      assert.fail(`${where}: unexpected block type 0x${type.toString(16)}`);
    }
    p += len;
  }
  return out;
}

/** 'in', 'out' or undefined, from epb_flags bits 0-1. */
const direction = (flags: number | undefined): string | undefined => (flags === undefined ? undefined : ['none', 'in', 'out', 'invalid'][flags & 3]);

/** A frame of `len` bytes whose first 4 bytes carry `seq` and the rest a pattern. */
function frame(seq: number, len: number): Buffer {
  const f = Buffer.alloc(len);
  for (let i = 0; i < len; i++) f[i] = (seq + i) & 0xff;
  f.writeUInt32BE(seq, 0);
  return f;
}

const T0 = 1_700_000_000_123_456_789n; // ns since the epoch

test('a classic capture is a pcap file: header, timestamps, lengths and bytes as written', async () => {
  const file = tmpFile();
  let now = T0;
  const w = new PcapWriter(file, { format: 'pcap', clock: () => now });
  const first = [frame(1, 60), frame(2, 1514), frame(3, 14)];
  const second = [frame(4, 9000)];
  w.write(buffersToBatch(first));
  now += 2_500_000_000n;
  w.write(buffersToBatch(second));
  w.write(buffersToBatch([])); // nothing
  const c = await w.close();
  assert.deepEqual(c, { frames: 4, bytes: 60 + 1514 + 14 + 9000, dropped: 0, overflow: 0, unknownInterface: 0, rotations: 0, written: statSync(file).size });

  const p = readPcap(file);
  assert.equal(p.magic, PCAP_MAGIC_USEC);
  assert.equal(readFileSync(file).subarray(0, 4).toString('hex'), 'd4c3b2a1', 'magic in little-endian host order');
  assert.deepEqual([p.major, p.minor, p.thiszone, p.sigfigs, p.snaplen, p.linktype], [2, 4, 0, 0, 65535, LINKTYPE_ETHERNET]);
  assert.equal(p.records.length, 4);
  const all = [...first, ...second];
  p.records.forEach((r, i) => {
    assert.equal(r.incl, all[i]!.length);
    assert.equal(r.orig, all[i]!.length);
    assert.ok(r.data.equals(all[i]!), `record ${i} bytes`);
  });
  assert.deepEqual([p.records[0]!.sec, p.records[0]!.frac], [1_700_000_000, 123_456]);
  assert.deepEqual([p.records[3]!.sec, p.records[3]!.frac], [1_700_000_002, 623_456]);
  assert.equal(statSync(file).mode & 0o777, 0o600, 'captures hold clear traffic: owner only');
});

test('nanosecond variant and snaplen: long frames are cut, their original length kept', async () => {
  const file = tmpFile();
  const w = new PcapWriter(file, { format: 'pcap', clock: () => T0, nanosecond: true, snaplen: 100 });
  w.write(buffersToBatch([frame(1, 64), frame(2, 1500)]));
  await w.close();
  const p = readPcap(file);
  assert.equal(p.magic, PCAP_MAGIC_NSEC);
  assert.equal(p.snaplen, 100);
  assert.deepEqual(p.records.map((r) => [r.incl, r.orig]), [[64, 64], [100, 1500]]);
  assert.ok(p.records[1]!.data.equals(frame(2, 1500).subarray(0, 100)));
  assert.equal(p.records[0]!.frac, 123_456_789);
  assert.equal(w.counters.bytes, 164);
});

test('rotation: FILE, FILE.1, FILE.2 hold the newest frames in order, no file above maxBytes, the oldest deleted', async () => {
  const file = tmpFile();
  const maxBytes = 1000;
  const w = new PcapWriter(file, { format: 'pcap', maxBytes, files: 3, snaplen: 200, clock: () => T0 });
  const rotated: number[] = [];
  w.on('rotate', (r) => rotated.push(r.rotations));
  const total = 50;
  // Batches of 7, 100-byte frames (116-byte records): 8 records fill a file.
  for (let seq = 0; seq < total; seq += 7) {
    const frames: Buffer[] = [];
    for (let s = seq; s < Math.min(seq + 7, total); s++) frames.push(frame(s, 100));
    w.write(buffersToBatch(frames));
    await settle(); // let the writer run between batches, as the event loop would
  }
  const c = await w.close();
  assert.equal(c.frames, total);
  assert.equal(c.dropped, 0);
  assert.equal(c.rotations, Math.ceil(total / 8) - 1);
  assert.deepEqual(rotated, [1, 2, 3, 4, 5, 6]);
  assert.equal(existsSync(`${file}.3`), false, 'only 3 files are kept');
  const kept = [`${file}.2`, `${file}.1`, file];
  const seqs: number[] = [];
  for (const f of kept) {
    const size = statSync(f).size;
    assert.ok(size <= maxBytes, `${f} is ${size} bytes, above ${maxBytes}`);
    const p = readPcap(f);
    assert.equal(p.magic, PCAP_MAGIC_USEC, `${f} starts with its own file header`);
    for (const r of p.records) {
      const seq = r.data.readUInt32BE(0);
      assert.ok(r.data.equals(frame(seq, 100)));
      seqs.push(seq);
    }
  }
  // 50 frames, 8 per file: 7 files; the 3 kept hold frames 32..49.
  assert.deepEqual(seqs, Array.from({ length: total - 32 }, (_, i) => 32 + i));
  assert.equal(statSync(`${file}.1`).size, PCAP_FILE_HEADER_LEN + 8 * 116);
});

test('files: 1 stops recording at the bound and counts the rest', async () => {
  const file = tmpFile();
  const w = new PcapWriter(file, { format: 'pcap', maxBytes: 1000, files: 1, snaplen: 200 });
  w.write(buffersToBatch(Array.from({ length: 20 }, (_, i) => frame(i, 100))));
  const c = await w.close();
  assert.deepEqual([c.frames, c.overflow, c.rotations], [8, 12, 0]);
  assert.ok(statSync(file).size <= 1000);
  assert.equal(existsSync(`${file}.1`), false);
  assert.equal(readPcap(file).records.length, 8);
});

test('a disk that falls behind costs dropped frames, never memory', async () => {
  const file = tmpFile();
  // Four 256-byte chunks: two records each. Writes complete only when the loop turns,
  // so a long synchronous burst must fill the buffer and drop the rest.
  const w = new PcapWriter(file, { format: 'pcap', snaplen: 100, maxBytes: 1_000_000, bufferBytes: 1024 });
  const burst = 100;
  for (let i = 0; i < burst; i++) w.write(buffersToBatch([frame(i, 100)]));
  assert.ok(w.counters.dropped > 0, 'some frames dropped');
  assert.ok(w.counters.frames <= 8, `at most the buffer's worth recorded (got ${w.counters.frames})`);
  assert.equal(w.counters.frames + w.counters.dropped, burst);
  // Once the queued chunks are on disk, frames are recorded again.
  const recorded = PCAP_FILE_HEADER_LEN + w.counters.frames * 116;
  const deadline = Date.now() + 5000;
  while (w.counters.written + 256 < recorded && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const dropped = w.counters.dropped;
  w.write(buffersToBatch([frame(burst, 100)]));
  assert.equal(w.counters.dropped, dropped);
  const c = await w.close();
  const p = readPcap(file);
  assert.equal(p.records.length, c.frames);
  assert.equal(p.records.at(-1)!.data.readUInt32BE(0), burst);
});

test('a quiet capture reaches the file without close(); writes after close are ignored', async () => {
  const file = tmpFile();
  const w = new PcapWriter(file, { format: 'pcap', flushIntervalMs: 10 });
  w.write(buffersToBatch([frame(1, 60)]));
  const deadline = Date.now() + 2000;
  while (statSync(file).size < PCAP_FILE_HEADER_LEN + PCAP_RECORD_HEADER_LEN + 60 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(readPcap(file).records.length, 1);
  await w.close();
  await w.close(); // idempotent
  w.write(buffersToBatch([frame(2, 60)]));
  assert.equal(readPcap(file).records.length, 1);
  assert.equal(w.status().state, 'closed');
});

test('a pcapng capture byte for byte: SHB, an IDB per interface (one added mid-stream), EPBs with interface, timestamp, lengths, snaplen cut and direction', async () => {
  const file = tmpFile();
  let now = T0;
  const w = new PcapWriter(file, { clock: () => now, snaplen: 6, interfaceName: 'eth-a' });
  w.write(buffersToBatch([Buffer.from('aabbcc', 'hex')]), { direction: 'in' });
  const b = w.addInterface('b');
  assert.equal(b, 1);
  now += 2_500_000_000n;
  w.write(buffersToBatch([Buffer.from('0001020304050607', 'hex')]), { interface: b, direction: 'out' });
  w.write(buffersToBatch([Buffer.from('deadbeef', 'hex')]));
  const c = await w.close();
  assert.deepEqual(c, { frames: 3, bytes: 3 + 6 + 4, dropped: 0, overflow: 0, unknownInterface: 0, rotations: 0, written: statSync(file).size });
  const words = (hex: string): string => hex.replace(/\s+/g, '');
  const expected = words(`
    0a0d0d0a 30000000 4d3c2b1a 01000000 ffffffff ffffffff
      04000900 45746865 724c696e 6b000000 00000000
    30000000
    01000000 2c000000 01000000 06000000
      02000500 6574682d 61000000 09000100 06000000 00000000
    2c000000
    06000000 30000000 00000000 240a0600 40222018 03000000 03000000 aabbcc00
      02000400 01000000 00000000
    30000000
    01000000 28000000 01000000 06000000
      02000100 62000000 09000100 06000000 00000000
    28000000
    06000000 34000000 01000000 240a0600 e0474618 06000000 08000000 00010203 04050000
      02000400 02000000 00000000
    34000000
    06000000 24000000 00000000 240a0600 e0474618 04000000 04000000 deadbeef
    24000000`);
  // SHB: magic 1a2b3c4d, version 1.0, section length -1, shb_userappl "EtherLink".
  // IDB: LINKTYPE_ETHERNET, snaplen 6, if_name, if_tsresol 6. EPB: interface, microseconds
  // since the epoch as two 32-bit halves, captured and original length, data padded
  // to 32 bits, epb_flags 1 (inbound) or 2 (outbound) when a direction is given.
  assert.equal(readFileSync(file).toString('hex'), expected);

  const p = readPcapng(file);
  assert.deepEqual(p.blocks, ['SHB', 'IDB', 'EPB', 'IDB', 'EPB', 'EPB']);
  assert.deepEqual([p.magic, p.major, p.minor, p.sectionLength, p.userappl], [0x1a2b3c4d, 1, 0, -1n, 'EtherLink']);
  assert.deepEqual(p.interfaces, [
    { linktype: LINKTYPE_ETHERNET, snaplen: 6, name: 'eth-a', tsresol: 6 },
    { linktype: LINKTYPE_ETHERNET, snaplen: 6, name: 'b', tsresol: 6 },
  ]);
  assert.deepEqual(p.packets.map((r) => [r.iface, r.ts, r.incl, r.orig, r.data.toString('hex'), direction(r.flags)]), [
    [0, 1_700_000_000_123_456n, 3, 3, 'aabbcc', 'in'],
    [1, 1_700_000_002_623_456n, 6, 8, '000102030405', 'out'],
    [0, 1_700_000_002_623_456n, 4, 4, 'deadbeef', undefined],
  ]);
  assert.equal(w.status().format, 'pcapng');
  assert.equal(statSync(file).mode & 0o777, 0o600, 'captures hold clear traffic: owner only');
});

test('pcapng by default: interface "etherlink", microseconds (if_tsresol 6); nanosecond: if_tsresol 9 on every interface', async () => {
  const usFile = tmpFile();
  const us = new PcapWriter(usFile, { clock: () => T0 });
  us.write(buffersToBatch([frame(1, 60), frame(2, 1514)]));
  await us.close();
  const u = readPcapng(usFile);
  assert.deepEqual(u.interfaces, [{ linktype: LINKTYPE_ETHERNET, snaplen: 65535, name: 'etherlink', tsresol: 6 }]);
  assert.deepEqual(u.packets.map((r) => [r.ts, r.incl, r.flags]), [[T0 / 1000n, 60, undefined], [T0 / 1000n, 1514, undefined]]);
  assert.ok(u.packets[1]!.data.equals(frame(2, 1514)));

  const nsFile = tmpFile();
  const ns = new PcapWriter(nsFile, { clock: () => T0, nanosecond: true, snaplen: 100, interfaceName: 'tap0' });
  const wan = ns.addInterface('vport wan ✓');
  ns.write(buffersToBatch([frame(1, 64), frame(2, 1500)]), { interface: wan, direction: 'in' });
  await ns.close();
  const n = readPcapng(nsFile);
  assert.deepEqual(n.interfaces.map((i) => [i.name, i.tsresol, i.snaplen]), [['tap0', 9, 100], ['vport wan ✓', 9, 100]]);
  assert.deepEqual(n.packets.map((r) => [r.iface, r.ts, r.incl, r.orig, direction(r.flags)]), [[1, T0, 64, 64, 'in'], [1, T0, 100, 1500, 'in']]);
  assert.ok(n.packets[1]!.data.equals(frame(2, 1500).subarray(0, 100)));
});

test('classic pcap accepts interfaces and directions and records neither', async () => {
  const plain = tmpFile();
  const tagged = tmpFile();
  const a = new PcapWriter(plain, { format: 'pcap', clock: () => T0 });
  const b = new PcapWriter(tagged, { format: 'pcap', clock: () => T0, interfaceName: 'x' });
  assert.equal(b.addInterface('y'), 1);
  a.write(buffersToBatch([frame(1, 60)]));
  a.write(buffersToBatch([frame(2, 61)]));
  b.write(buffersToBatch([frame(1, 60)]), { direction: 'in' });
  b.write(buffersToBatch([frame(2, 61)]), { interface: 1, direction: 'out' });
  b.write(buffersToBatch([frame(3, 62)]), { interface: 2 }); // never added: not recorded
  await Promise.all([a.close(), b.close()]);
  assert.ok(readFileSync(plain).equals(readFileSync(tagged)));
  assert.equal(readPcap(tagged).records.length, 2);
  assert.equal(b.counters.unknownInterface, 1);
  assert.equal(b.status().format, 'pcap');
});

test('an interface id addInterface never returned records nothing and is counted, never thrown', async () => {
  const file = tmpFile();
  const w = new PcapWriter(file, { clock: () => T0 });
  const batch = buffersToBatch([frame(1, 60), frame(2, 60)]);
  for (const id of [1, -1, 0.5, Number.NaN, 2 ** 32, '0' as unknown as number]) w.write(batch, { interface: id });
  assert.equal(w.counters.unknownInterface, 12);
  assert.equal(w.counters.frames, 0);
  assert.equal(w.addInterface('late'), 1);
  w.write(batch, { interface: 1, direction: 'out' });
  w.write(batch, { interface: 0, direction: 'bogus' as 'in' }); // not a direction: none recorded
  await w.close();
  const p = readPcapng(file);
  assert.deepEqual(p.packets.map((r) => [r.iface, direction(r.flags)]), [[1, 'out'], [1, 'out'], [0, undefined], [0, undefined]]);
  assert.equal(w.counters.unknownInterface, 12);
});

test('pcapng rotation: every file opens alone with the SHB and the IDBs of all interfaces added so far, none above maxBytes', async () => {
  const file = tmpFile();
  const maxBytes = 1000;
  const w = new PcapWriter(file, { maxBytes, files: 10, snaplen: 200, clock: () => T0 });
  // Headers: SHB 48 + IDB "etherlink" 48 (+ IDB "port-b" 44); 100-byte frames with a direction: 144-byte EPBs.
  const total = 40;
  let portB = -1;
  for (let seq = 0; seq < total; seq += 5) {
    if (seq === 10) portB = w.addInterface('port-b'); // mid-file: its IDB goes into the stream
    const frames: Buffer[] = [];
    for (let s = seq; s < seq + 5; s++) frames.push(frame(s, 100));
    const onB = portB >= 0 && (seq / 5) % 2 === 1;
    w.write(buffersToBatch(frames), onB ? { interface: portB, direction: 'out' } : { direction: 'in' });
    await settle();
  }
  const c = await w.close();
  assert.equal(c.frames, total);
  assert.equal(c.dropped, 0);
  const kept = [];
  for (let i = c.rotations; i >= 1; i--) kept.push(`${file}.${i}`);
  kept.push(file);
  assert.ok(c.rotations >= 6, `40 frames at 5-6 per file rotate at least 6 times (got ${c.rotations})`);
  const seqs: number[] = [];
  let sawMidStreamIdb = false;
  for (const f of kept) {
    const size = statSync(f).size;
    assert.ok(size <= maxBytes, `${f} is ${size} bytes, above ${maxBytes}`);
    if (f !== file) assert.ok(size + 144 > maxBytes, `${f} rotated only when the next packet would not fit (${size} bytes)`);
    const p = readPcapng(f); // alone: its own SHB, and an IDB before every packet's interface
    assert.deepEqual(p.blocks.slice(0, 2), ['SHB', 'IDB'], `${f} starts with the SHB and the first IDB`);
    assert.equal(p.userappl, 'EtherLink');
    const firstPacket = p.packets[0]!;
    const before = p.blocks.indexOf('EPB');
    if (before === 2 && p.interfaces.length === 2) sawMidStreamIdb = true;
    else assert.deepEqual(p.blocks.slice(0, before), ['SHB', ...p.interfaces.map(() => 'IDB')], `${f}: headers, then packets`);
    assert.ok(firstPacket, `${f} holds packets`);
    for (const r of p.packets) {
      const seq = r.data.readUInt32BE(0);
      assert.ok(r.data.equals(frame(seq, 100)));
      const onB = seq >= 10 && Math.floor(seq / 5) % 2 === 1;
      assert.deepEqual([r.iface, direction(r.flags)], onB ? [1, 'out'] : [0, 'in'], `${f}: frame ${seq}`);
      seqs.push(seq);
    }
    const names = p.interfaces.map((i) => i.name);
    assert.deepEqual(names, seqs.at(-1)! < 10 ? ['etherlink'] : ['etherlink', 'port-b'], `${f}: interfaces added so far`);
  }
  assert.ok(sawMidStreamIdb, 'the file open when port-b was added has its IDB after the first packets');
  assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => i));
});

test('the size bound counts the pcapng headers: maxBytes holds SHB + IDBs + one largest packet, addInterface refuses more', async () => {
  // snaplen 100: the largest EPB is 32 + 100 + 12 (direction) = 144; SHB 48 + IDB "etherlink" 48.
  const min = 48 + 48 + 144;
  assert.throws(
    () => new PcapWriter(tmpFile(), { snaplen: 100, maxBytes: min - 1 }),
    (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARG_VALUE' && new RegExp(`maxBytes ${min - 1} .*96 bytes of headers and a 100-byte frame`).test(e.message),
  );
  const file = tmpFile();
  const w = new PcapWriter(file, { snaplen: 100, maxBytes: min, files: 3, clock: () => T0 });
  assert.throws(() => w.addInterface('x'), (e: Error & { code?: string }) => e.code === 'ERR_CAPTURE_HEADERS_FULL' && /2 interfaces take 136 bytes .*maxBytes 240; raise maxBytes/.test(e.message));
  for (let i = 0; i < 5; i++) w.write(buffersToBatch([frame(i, 1500)]), { direction: 'out' });
  w.write(buffersToBatch([frame(9, 60)]), { interface: 1 }); // the refused interface has no id
  const c = await w.close();
  assert.deepEqual([c.frames, c.rotations, c.dropped, c.unknownInterface], [5, 4, 0, 1]);
  for (const f of [file, `${file}.1`, `${file}.2`]) {
    assert.equal(statSync(f).size, min, `${f}: headers and one cut frame, exactly the bound`);
    assert.deepEqual(readPcapng(f).interfaces.map((i) => i.name), ['etherlink']);
  }

  // The headers must also fit a buffer chunk (bufferBytes / 4) beside one packet.
  const small = new PcapWriter(tmpFile(), { snaplen: 100, bufferBytes: 1024 });
  assert.throws(() => small.addInterface('x'), (e: Error & { code?: string }) => e.code === 'ERR_CAPTURE_HEADERS_FULL' && /256-byte buffer chunk \(bufferBytes \/ 4\)/.test(e.message));
  await small.close();
  const roomy = new PcapWriter(tmpFile(), { snaplen: 100, maxBytes: 48 + 48 + 44 + 144, bufferBytes: 4096 });
  assert.equal(roomy.addInterface('x'), 1, 'SHB + 2 IDBs + one packet fit exactly');
  await roomy.close();

  for (const bad of ['', 'x'.repeat(257), 7 as unknown as string]) {
    assert.throws(() => w.addInterface(bad), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARG_VALUE' && /interface name .*non-empty string of at most 256 bytes/.test(e.message));
  }
  assert.throws(() => new PcapWriter(tmpFile(), { interfaceName: '' }), /interfaceName "" must be a non-empty string/);
  assert.throws(() => new PcapWriter(tmpFile(), { format: 'pcapx' as 'pcap' }), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARG_VALUE' && /format "pcapx" must be 'pcapng' or 'pcap'/.test(e.message));
});

test('pcapng, disk behind: frames dropped and counted, an interface added meanwhile gets its IDB before its first packet', async () => {
  const file = tmpFile();
  // snaplen 200: 244-byte EPBs with a direction, 96 bytes of headers. 500-byte chunks:
  // the first holds the headers and one packet, the others two packets each (12 bytes left).
  const w = new PcapWriter(file, { snaplen: 200, bufferBytes: 2000, flushIntervalMs: 0, clock: () => T0 });
  const burst = 100;
  for (let i = 0; i < burst; i++) w.write(buffersToBatch([frame(i, 200)]), { direction: 'in' });
  assert.deepEqual([w.counters.frames, w.counters.dropped], [7, burst - 7], 'the buffer holds 7 packets; the rest is dropped');
  const late = w.addInterface('late'); // no room for its IDB in the last chunk, none free: deferred
  w.write(buffersToBatch([frame(burst, 200)]), { interface: late, direction: 'out' });
  assert.equal(w.counters.dropped, burst - 7 + 1, 'still behind: dropped too');
  const sealed = 96 + 244 + 2 * 2 * 244;
  const deadline = Date.now() + 5000;
  while (w.counters.written < sealed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  w.write(buffersToBatch([frame(burst + 1, 200)]), { interface: late, direction: 'out' });
  assert.equal(w.counters.dropped, burst - 7 + 1, 'caught up: recorded again');
  const c = await w.close();
  const p = readPcapng(file);
  assert.deepEqual(p.blocks, ['SHB', 'IDB', ...Array<string>(7).fill('EPB'), 'IDB', 'EPB']);
  assert.deepEqual(p.interfaces.map((i) => i.name), ['etherlink', 'late']);
  assert.equal(p.packets.length, c.frames);
  assert.deepEqual([p.packets.at(-1)!.iface, p.packets.at(-1)!.data.readUInt32BE(0), direction(p.packets.at(-1)!.flags)], [1, burst + 1, 'out']);
  assert.equal(c.written, statSync(file).size);
});

test('bad options and paths are errors with a code that say what to do', () => {
  assert.throws(() => new PcapWriter(join(dir, 'no-such-dir', 'x.pcap')), (e: Error & { code?: string }) => e.code === 'ENOENT' && /cannot open capture file .*directory exists/.test(e.message));
  assert.throws(() => new PcapWriter(tmpFile(), { maxBytes: 1000 }), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARG_VALUE' && /maxBytes 1000 .*65535-byte frame/.test(e.message));
  assert.throws(() => new PcapWriter(tmpFile(), { files: 0 }), /files 0 must be an integer from 1/);
  assert.throws(() => new PcapWriter(tmpFile(), { snaplen: 0 }), /snaplen 0/);
  assert.deepEqual(captureOptionsFromFlags({ 'pcap-max-mb': 100, 'pcap-files': 2 }), { maxBytes: 100_000_000, files: 2 });
  assert.throws(() => captureOptionsFromFlags({ 'pcap-max-mb': 0, 'pcap-files': 2 }), /--pcap-max-mb must be/);
  assert.throws(() => captureOptionsFromFlags({ 'pcap-max-mb': 1, 'pcap-files': 1.5 }), /--pcap-files must be a whole number/);
});

test('SwitchServer captures every frame entering the switch, from every port, once', async () => {
  const lines: string[] = [];
  const server = new SwitchServer({ insecure: true, listen: [{ address: '127.0.0.1', port: 0 }], logger: createLogger({ out: (l) => lines.push(l) }) });
  try {
    const [aSw, aHost] = createMemoryPortPair(['a-sw', 'a-host']);
    const [bSw, bHost] = createMemoryPortPair(['b-sw', 'b-host']);
    server.addLocalPort(aSw, 'a');
    server.addLocalPort(bSw, 'b');
    const got: number[] = [];
    bHost.setReceiver((batch) => (got.length += batch.count));
    aHost.setReceiver(() => {});
    const file = tmpFile();
    const status = server.startCapture(file, { maxBytes: 200_000 });
    assert.equal(status.state, 'open');
    assert.throws(() => server.startCapture(tmpFile()), (e: Error & { code?: string }) => e.code === 'ERR_CAPTURE_RUNNING');
    // Broadcast from a (flooded to b), then unicast b -> a.
    const A = Buffer.from('020000000001', 'hex');
    const B = Buffer.from('020000000002', 'hex');
    const eth = (dst: Buffer, src: Buffer, seq: number): Buffer => Buffer.concat([dst, src, Buffer.from([0x88, 0xb5]), frame(seq, 46)]);
    aHost.send(buffersToBatch([eth(Buffer.alloc(6, 0xff), A, 1), eth(Buffer.alloc(6, 0xff), A, 2)]));
    await settle();
    bHost.send(buffersToBatch([eth(A, B, 3)]));
    await settle();
    assert.equal(got.length, 2);
    assert.equal(server.captureStatus()?.counters.frames, 3);
    const final = await server.stopCapture();
    assert.equal(final?.state, 'closed');
    assert.equal(server.captureStatus(), null);
    assert.equal(await server.stopCapture(), null);
    const p = readPcapng(file);
    assert.deepEqual(p.packets.map((r) => r.data.readUInt32BE(14)), [1, 2, 3]);
    // Not captured once stopped.
    aHost.send(buffersToBatch([eth(B, A, 4)]));
    await settle();
    assert.equal(readPcapng(file).packets.length, 3);
    assert.equal(lines.filter((l) => /capture started/.test(l)).length, 1);
    assert.equal(lines.filter((l) => /capture stopped .*frames=3/.test(l)).length, 1);
  } finally {
    server.close();
  }
});
