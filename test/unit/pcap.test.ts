// Unit tests for lib/pcap.ts: the file format read back by a tiny reader,
// snaplen, rotation at the size bound, the memory bound, and the switch hook.
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

/** A frame of `len` bytes whose first 4 bytes carry `seq` and the rest a pattern. */
function frame(seq: number, len: number): Buffer {
  const f = Buffer.alloc(len);
  for (let i = 0; i < len; i++) f[i] = (seq + i) & 0xff;
  f.writeUInt32BE(seq, 0);
  return f;
}

const T0 = 1_700_000_000_123_456_789n; // ns since the epoch

test('a capture is a pcap file: header, timestamps, lengths and bytes as written', async () => {
  const file = tmpFile();
  let now = T0;
  const w = new PcapWriter(file, { clock: () => now });
  const first = [frame(1, 60), frame(2, 1514), frame(3, 14)];
  const second = [frame(4, 9000)];
  w.write(buffersToBatch(first));
  now += 2_500_000_000n;
  w.write(buffersToBatch(second));
  w.write(buffersToBatch([])); // nothing
  const c = await w.close();
  assert.deepEqual(c, { frames: 4, bytes: 60 + 1514 + 14 + 9000, dropped: 0, overflow: 0, rotations: 0, written: statSync(file).size });

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
  const w = new PcapWriter(file, { clock: () => T0, nanosecond: true, snaplen: 100 });
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
  const w = new PcapWriter(file, { maxBytes, files: 3, snaplen: 200, clock: () => T0 });
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
  const w = new PcapWriter(file, { maxBytes: 1000, files: 1, snaplen: 200 });
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
  const w = new PcapWriter(file, { snaplen: 100, maxBytes: 1_000_000, bufferBytes: 1024 });
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
  const w = new PcapWriter(file, { flushIntervalMs: 10 });
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
    const p = readPcap(file);
    assert.deepEqual(p.records.map((r) => r.data.readUInt32BE(14)), [1, 2, 3]);
    // Not captured once stopped.
    aHost.send(buffersToBatch([eth(B, A, 4)]));
    await settle();
    assert.equal(readPcap(file).records.length, 3);
    assert.equal(lines.filter((l) => /capture started/.test(l)).length, 1);
    assert.equal(lines.filter((l) => /capture stopped .*frames=3/.test(l)).length, 1);
  } finally {
    server.close();
  }
});
