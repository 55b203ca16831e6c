// Packet capture to pcapng (interfaces and direction, what Wireshark writes)
// or classic libpcap files (what tcpdump -w writes): frame batches copied into
// a few preallocated chunks, written asynchronously one chunk per write,
// bounded in memory (drop and count) and on disk (rotation).
import { EventEmitter } from 'node:events';
import { close, open, openSync, rename, write } from 'node:fs';
import type { FrameBatch } from '../core/frames.js';
import { EtherlinkError } from '../core/errors.js';
import type { Logger } from '../core/log.js';

/** Magic of microsecond timestamps, written in host (little-endian) order like libpcap does. */
export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
/** Magic of nanosecond timestamps. */
export const PCAP_MAGIC_NSEC = 0xa1b23c4d;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
/** LINKTYPE_ETHERNET: every record is one Ethernet frame from its destination MAC on. */
export const LINKTYPE_ETHERNET = 1;
export const PCAP_FILE_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;

// pcapng (draft-ietf-opsawg-pcapng): a file is one section, blocks of
// [type][total length][body, 32-bit aligned][total length]. Written
// little-endian like the classic files; the byte-order magic tells readers.
export const PCAPNG_BLOCK_SHB = 0x0a0d0d0a;
export const PCAPNG_BLOCK_IDB = 0x00000001;
export const PCAPNG_BLOCK_EPB = 0x00000006;
export const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
export const PCAPNG_VERSION_MAJOR = 1;
export const PCAPNG_VERSION_MINOR = 0;
/** shb_userappl: the application that wrote the section. */
export const PCAPNG_USER_APPL = 'EtherLink';
export const PCAPNG_OPT_ENDOFOPT = 0;
export const PCAPNG_OPT_SHB_USERAPPL = 4;
export const PCAPNG_OPT_IF_NAME = 2;
export const PCAPNG_OPT_IF_TSRESOL = 9;
export const PCAPNG_OPT_EPB_FLAGS = 2;
/** epb_flags bits 0-1: the direction. */
export const PCAPNG_EPB_INBOUND = 0b01;
export const PCAPNG_EPB_OUTBOUND = 0b10;
/** An EPB without its data and options: type, length, interface, timestamp (2), lengths (2), trailing length. */
export const PCAPNG_EPB_FIXED_LEN = 32;
/** epb_flags (4-byte header + 4-byte value) and opt_endofopt, when a direction is recorded. */
export const PCAPNG_EPB_FLAGS_LEN = 12;

/** 'pcapng' (interfaces and direction; the default) or 'pcap' (classic libpcap, as tcpdump -w). */
export type PcapFormat = 'pcapng' | 'pcap';
export const DEFAULT_PCAP_FORMAT: PcapFormat = 'pcapng';
/** Name of interface 0, the one every writer starts with. */
export const DEFAULT_PCAP_INTERFACE_NAME = 'etherlink';
/** Longest interface name (UTF-8 bytes), so one interface's header stays small. */
export const MAX_PCAP_INTERFACE_NAME_BYTES = 256;

/** Bytes kept of each frame; longer frames are cut, their original length recorded. */
export const DEFAULT_PCAP_SNAPLEN = 65535;
/** libpcap's MAXIMUM_SNAPLEN. */
export const MAX_PCAP_SNAPLEN = 262144;
/** Bytes per file before rotation (100 MB, tcpdump -C style decimal megabytes). */
export const DEFAULT_PCAP_MAX_BYTES = 100_000_000;
/** Files kept: FILE and FILE.1, so a capture takes at most 2 x maxBytes of disk. */
export const DEFAULT_PCAP_FILES = 2;
export const MAX_PCAP_FILES = 1000;
/** Memory a capture may hold while the disk catches up; beyond it frames are dropped and counted. */
export const DEFAULT_PCAP_BUFFER_BYTES = 4 * 1024 * 1024;
/** The buffer is split into this many chunks: one filling while the others are written. */
export const PCAP_CHUNKS = 4;
/** A partly filled chunk goes to disk after this long, so a quiet capture is still readable live. */
export const PCAP_FLUSH_INTERVAL_MS = 1000;
/** How long a daemon waits on exit for the last chunks to reach the file. */
export const PCAP_CLOSE_TIMEOUT_MS = 5000;
/** Captures hold the LAN's traffic in clear: only the owner may read them. */
const FILE_MODE = 0o600;

/** Options of a capture: format, size bounds, rotation, snaplen, timestamps. */
export interface PcapOptions {
  /**
   * 'pcapng' (default): interfaces by name and each frame's direction, as
   * Wireshark shows them. 'pcap': classic libpcap, which has nowhere to
   * record either (interfaces and directions are accepted and ignored).
   */
  format?: PcapFormat;
  /** Name of interface 0 (default 'etherlink'), in its IDB's if_name. */
  interfaceName?: string;
  /** Largest size of one file in bytes, headers included (default 100 MB). No file ever exceeds it. */
  maxBytes?: number;
  /**
   * Files kept (default 2): when FILE is full it becomes FILE.1, FILE.1 becomes
   * FILE.2 ... and the oldest, FILE.(files-1), is deleted. With 1 the capture
   * stops recording once FILE is full (frames counted in `overflow`).
   */
  files?: number;
  /** Bytes kept of each frame (default 65535). */
  snaplen?: number;
  /** Nanosecond timestamps instead of microseconds: if_tsresol 9 in pcapng, magic 0xa1b23c4d in pcap. */
  nanosecond?: boolean;
  /** Memory for frames not yet written (default 4 MiB). */
  bufferBytes?: number;
  /** Milliseconds before a partly filled chunk is written; 0: only full chunks and close(). Default 1000. */
  flushIntervalMs?: number;
  /** Wall clock in nanoseconds since the epoch; injected by tests. */
  clock?: () => bigint;
}

/** What a capture recorded and what it dropped. */
export interface PcapCounters {
  /** Frames recorded. */
  frames: number;
  /** Frame bytes recorded (after snaplen). */
  bytes: number;
  /** Frames not recorded because the disk was behind and the buffer full. */
  dropped: number;
  /** Frames not recorded because the only file (files = 1) is full. */
  overflow: number;
  /** Frames not recorded because write() named an interface id addInterface() never returned (a caller's bug). */
  unknownInterface: number;
  /** Files rotated (FILE renamed to FILE.1). */
  rotations: number;
  /** Bytes written to disk, file headers included. */
  written: number;
}

/** Where a capture is: recording, writing out its last chunks, done, or stopped by an error. */
export type PcapState = 'open' | 'closing' | 'closed' | 'failed';

/** A capture as status reports show it. */
export interface CaptureStatus {
  file: string;
  format: PcapFormat;
  state: PcapState;
  maxBytes: number;
  files: number;
  snaplen: number;
  startedAt: string;
  counters: PcapCounters;
  /** Why the capture stopped by itself (disk full, file removed...). */
  error?: string;
}

/** Which interface a batch belongs to and which way it went; a constant object per call site is enough. */
export interface PcapWriteOptions {
  /** An id from addInterface(), or 0 (the first interface) when absent. */
  interface?: number;
  /**
   * As tcpdump or Wireshark on that interface would label the frames:
   * 'in' = received by the interface, 'out' = sent by it. Absent: not recorded.
   */
  direction?: 'in' | 'out';
}

export interface PcapWriterEvents {
  rotate: [info: { file: string; rotations: number }];
  /** Writing failed (ENOSPC, EIO...): the capture stopped; frames are no longer recorded. */
  failed: [error: Error & { code?: string }];
}

/** Write chunk[start..end); `release`: the chunk's last write, after which it is free again. */
type Op = { kind: 'write'; chunk: Buffer; start: number; end: number; release: boolean } | { kind: 'rotate' };

function invalid(message: string): EtherlinkError {
  return new EtherlinkError('ERR_INVALID_ARG_VALUE', message);
}

/** The UTF-8 bytes of an interface name; throws unless 1 to MAX_PCAP_INTERFACE_NAME_BYTES bytes. */
function checkName(name: unknown, what: string): Buffer {
  const bytes = typeof name === 'string' ? Buffer.from(name, 'utf8') : Buffer.alloc(0);
  if (typeof name !== 'string' || bytes.length === 0 || bytes.length > MAX_PCAP_INTERFACE_NAME_BYTES) {
    throw invalid(`pcap ${what} ${JSON.stringify(name)} must be a non-empty string of at most ${MAX_PCAP_INTERFACE_NAME_BYTES} bytes`);
  }
  return bytes;
}

function checkInt(value: number, name: string, min: number, max: number, hint = ''): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(`pcap ${name} ${value} must be an integer from ${min} to ${max}${hint}`);
  }
  return value;
}

const fsWrite = (fd: number, buf: Buffer, off: number, len: number): Promise<number> =>
  new Promise((resolve, reject) => write(fd, buf, off, len, null, (err, n) => (err ? reject(err) : resolve(n))));
const fsClose = (fd: number): Promise<void> => new Promise((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve())));
const fsOpen = (file: string): Promise<number> =>
  new Promise((resolve, reject) => open(file, 'w', FILE_MODE, (err, fd) => (err ? reject(err) : resolve(fd))));
const fsRename = (from: string, to: string): Promise<void> =>
  new Promise((resolve, reject) => rename(from, to, (err) => (err && err.code !== 'ENOENT' ? reject(err) : resolve())));

/** The 24-byte file header of classic pcap. */
function pcapFileHeader(nanosecond: boolean, snaplen: number): Buffer {
  const b = Buffer.alloc(PCAP_FILE_HEADER_LEN);
  b.writeUInt32LE(nanosecond ? PCAP_MAGIC_NSEC : PCAP_MAGIC_USEC, 0);
  b.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
  b.writeUInt16LE(PCAP_VERSION_MINOR, 6);
  b.writeInt32LE(0, 8); // thiszone: timestamps are UTC
  b.writeUInt32LE(0, 12); // sigfigs
  b.writeUInt32LE(snaplen, 16);
  b.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return b;
}

const pad4 = (n: number): number => (n + 3) & ~3;

/** One pcapng option: code, length, value zero-padded to 32 bits. */
function pcapngOption(code: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + pad4(value.length));
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(value.length, 2);
  value.copy(b, 4);
  return b;
}

/** A pcapng block around `body` (already 32-bit aligned): type and total length at both ends. */
function pcapngBlock(type: number, body: Buffer): Buffer {
  const b = Buffer.alloc(12 + body.length);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(b.length, 4);
  body.copy(b, 8);
  b.writeUInt32LE(b.length, b.length - 4);
  return b;
}

const END_OF_OPTIONS = Buffer.alloc(4); // opt_endofopt: code 0, length 0

/** Section Header Block: byte-order magic, version 1.0, section length -1 (not given), shb_userappl. */
function pcapngSectionHeader(): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(PCAPNG_BYTE_ORDER_MAGIC, 0);
  fixed.writeUInt16LE(PCAPNG_VERSION_MAJOR, 4);
  fixed.writeUInt16LE(PCAPNG_VERSION_MINOR, 6);
  fixed.writeBigInt64LE(-1n, 8);
  const appl = pcapngOption(PCAPNG_OPT_SHB_USERAPPL, Buffer.from(PCAPNG_USER_APPL, 'utf8'));
  return pcapngBlock(PCAPNG_BLOCK_SHB, Buffer.concat([fixed, appl, END_OF_OPTIONS]));
}

/** Interface Description Block: Ethernet, the snaplen, if_name and if_tsresol (6: microseconds, 9: nanoseconds). */
function pcapngInterface(name: Buffer, snaplen: number, nanosecond: boolean): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(LINKTYPE_ETHERNET, 0);
  fixed.writeUInt16LE(0, 2); // reserved
  fixed.writeUInt32LE(snaplen, 4);
  const ifName = pcapngOption(PCAPNG_OPT_IF_NAME, name);
  const tsresol = pcapngOption(PCAPNG_OPT_IF_TSRESOL, Buffer.from([nanosecond ? 9 : 6]));
  return pcapngBlock(PCAPNG_BLOCK_IDB, Buffer.concat([fixed, ifName, tsresol, END_OF_OPTIONS]));
}

/** Results of putPendingInterfaces(). */
const PUT_OK = 0;
const PUT_DROPPED = 1;
const PUT_OVERFLOW = 2;

/** Wall clock in ns: Date.now() anchors it, hrtime orders frames within a millisecond. */
function defaultClock(): () => bigint {
  const base = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  return () => base + process.hrtime.bigint();
}

/**
 * Writes frame batches to FILE as a pcapng (default) or pcap capture. write()
 * never blocks and never throws: it copies the frames into the current chunk;
 * full chunks are written in order by one async loop. close() writes what is
 * left.
 *
 * A pcapng file is: a Section Header Block, an Interface Description Block per
 * interface added so far, then Enhanced Packet Blocks, with the IDB of an
 * interface added later written into the stream before its first packet.
 * Every rotated file starts with the SHB and every IDB, so it opens alone.
 */
export class PcapWriter extends EventEmitter<PcapWriterEvents> {
  readonly file: string;
  readonly maxBytes: number;
  readonly files: number;
  readonly snaplen: number;
  readonly nanosecond: boolean;
  readonly format: PcapFormat;
  readonly counters: PcapCounters = { frames: 0, bytes: 0, dropped: 0, overflow: 0, unknownInterface: 0, rotations: 0, written: 0 };
  private readonly startedAt = new Date();
  private readonly clock: () => bigint;
  /** The bytes every file starts with: the pcap file header, or the SHB and every IDB. */
  private header: Buffer;
  /** Largest record: what a file and a chunk must hold after the headers. */
  private readonly maxRecord: number;
  private readonly chunkBytes: number;
  /** Interfaces added; ids 0 .. interfaces-1 are valid. */
  private interfaces = 1;
  /** Interfaces whose IDB is in the current file (pcapng), the rest still to write; = interfaces in pcap. */
  private fileInterfaces = 1;
  /** Where interface i's IDB starts in `header` (pcapng). */
  private readonly idbStart: number[] = [];
  private readonly free: Buffer[] = [];
  private readonly queue: Op[] = [];
  private current: Buffer;
  /** A DataView over `current`: record fields cost a fraction of Buffer.writeUInt32LE's checks. */
  private view: DataView;
  private readonly views = new Map<Buffer, DataView>();
  /** Next byte to fill in `current`; bytes before `queued` are already queued for writing. */
  private pos = 0;
  private queued = 0;
  /** Bytes of the current file: written, queued and in the current chunk. */
  private fileBytes = 0;
  private fd: number;
  private state: PcapState = 'open';
  private error: (Error & { code?: string }) | undefined;
  private draining: Promise<void> | null = null;
  private closing: Promise<PcapCounters> | null = null;
  private timer: NodeJS.Timeout | null = null;

  /** Opens (truncates) FILE at once, so a bad path throws here with the errno as `.code`. */
  constructor(file: string, opts: PcapOptions = {}) {
    super();
    this.file = file;
    this.snaplen = checkInt(opts.snaplen ?? DEFAULT_PCAP_SNAPLEN, 'snaplen', 1, MAX_PCAP_SNAPLEN);
    this.nanosecond = opts.nanosecond ?? false;
    const format: unknown = opts.format ?? DEFAULT_PCAP_FORMAT;
    if (format !== 'pcapng' && format !== 'pcap') throw invalid(`pcap format ${JSON.stringify(format)} must be 'pcapng' or 'pcap'`);
    this.format = format;
    const name = checkName(opts.interfaceName ?? DEFAULT_PCAP_INTERFACE_NAME, 'interfaceName');
    if (format === 'pcapng') {
      const shb = pcapngSectionHeader();
      this.idbStart.push(shb.length);
      this.header = Buffer.concat([shb, pcapngInterface(name, this.snaplen, this.nanosecond)]);
      this.maxRecord = PCAPNG_EPB_FIXED_LEN + pad4(this.snaplen) + PCAPNG_EPB_FLAGS_LEN;
    } else {
      this.header = pcapFileHeader(this.nanosecond, this.snaplen);
      this.maxRecord = PCAP_RECORD_HEADER_LEN + this.snaplen;
    }
    const minBytes = this.header.length + this.maxRecord;
    this.maxBytes = checkInt(opts.maxBytes ?? DEFAULT_PCAP_MAX_BYTES, 'maxBytes', minBytes, Number.MAX_SAFE_INTEGER, ` (one file must hold its ${this.header.length} bytes of headers and a ${this.snaplen}-byte frame; or lower snaplen)`);
    this.files = checkInt(opts.files ?? DEFAULT_PCAP_FILES, 'files', 1, MAX_PCAP_FILES);
    const bufferBytes = checkInt(opts.bufferBytes ?? DEFAULT_PCAP_BUFFER_BYTES, 'bufferBytes', 1, 1 << 30);
    const flushMs = checkInt(opts.flushIntervalMs ?? PCAP_FLUSH_INTERVAL_MS, 'flushIntervalMs', 0, 3_600_000);
    this.clock = opts.clock ?? defaultClock();
    // Every chunk holds the largest record plus the file headers (addInterface keeps it so),
    // so a new file's headers and a record always fit an empty chunk.
    this.chunkBytes = Math.max(Math.floor(bufferBytes / PCAP_CHUNKS), minBytes);
    for (let i = 0; i < PCAP_CHUNKS; i++) {
      const chunk = Buffer.allocUnsafeSlow(this.chunkBytes);
      this.views.set(chunk, new DataView(chunk.buffer, chunk.byteOffset, chunk.length));
      this.free.push(chunk);
    }
    this.current = this.free.pop()!;
    this.view = this.views.get(this.current)!;
    try {
      this.fd = openSync(file, 'w', FILE_MODE);
    } catch (err) {
      const e = err as Error & { code?: string };
      throw new EtherlinkError(e.code ?? 'EIO', `cannot open capture file '${file}': ${e.code ?? e.message} (check that the directory exists and is writable)`, { cause: err });
    }
    this.putFileHeader();
    if (flushMs > 0) {
      this.timer = setInterval(() => this.flushPartial(), flushMs);
      this.timer.unref();
    }
  }

  /**
   * Add an interface: pcapng writes its IDB into the stream now (or, if the
   * disk is behind, before its first packet) and into every later file's
   * headers. Returns its id for write(). Classic pcap only counts the ids.
   * Throws ERR_INVALID_ARG_VALUE for a bad name, and ERR_CAPTURE_HEADERS_FULL
   * (the writer unchanged, other interfaces still recorded) when the headers
   * with this IDB and one largest frame would no longer fit a file (maxBytes)
   * or a buffer chunk (bufferBytes / 4).
   */
  addInterface(name: string): number {
    const bytes = checkName(name, 'interface name');
    const id = this.interfaces;
    if (this.format === 'pcap') {
      this.interfaces = this.fileInterfaces = id + 1;
      return id;
    }
    const idb = pcapngInterface(bytes, this.snaplen, this.nanosecond);
    const headerBytes = this.header.length + idb.length;
    const room = Math.min(this.maxBytes, this.chunkBytes);
    if (headerBytes + this.maxRecord > room) {
      const bound = this.maxBytes <= this.chunkBytes ? `maxBytes ${this.maxBytes}` : `a ${this.chunkBytes}-byte buffer chunk (bufferBytes / ${PCAP_CHUNKS})`;
      throw new EtherlinkError(
        'ERR_CAPTURE_HEADERS_FULL',
        `cannot add capture interface ${JSON.stringify(name)}: ${id + 1} interfaces take ${headerBytes} bytes of file headers, and with a ${this.snaplen}-byte frame that exceeds ${bound}; raise maxBytes or bufferBytes, or lower snaplen`,
      );
    }
    this.idbStart.push(this.header.length);
    this.header = Buffer.concat([this.header, idb]);
    this.interfaces = id + 1;
    if (this.state === 'open') this.putPendingInterfaces();
    return id;
  }

  /**
   * Record every frame of `batch` (views valid only during this call: they
   * are copied) as seen on `opts.interface` (default 0), with `opts.direction`
   * if given ('in' = received by that interface, 'out' = sent by it, as
   * tcpdump or Wireshark on it would label them). An interface id that
   * addInterface() never returned records nothing and counts the frames in
   * `unknownInterface`. Classic pcap records neither interface nor direction.
   */
  write(batch: FrameBatch, opts?: PcapWriteOptions): void {
    const n = batch.count;
    if (this.state !== 'open' || n === 0) return;
    const c = this.counters;
    const iface = opts?.interface ?? 0;
    if (iface >>> 0 !== iface || iface >= this.interfaces) {
      c.unknownInterface += n;
      return;
    }
    if (iface >= this.fileInterfaces) {
      // Its IDB could not be written when added: it must precede the first packet.
      const put = this.putPendingInterfaces();
      if (put !== PUT_OK) {
        if (put === PUT_OVERFLOW) c.overflow += n;
        else c.dropped += n;
        return;
      }
    }
    const dir = opts?.direction;
    const flags = dir === 'in' ? PCAPNG_EPB_INBOUND : dir === 'out' ? PCAPNG_EPB_OUTBOUND : 0;
    const optLen = flags === 0 ? 0 : PCAPNG_EPB_FLAGS_LEN;
    const ng = this.format === 'pcapng';
    // One timestamp per batch: its frames arrived in one wake-up.
    const now = this.clock();
    const sec = Number(now / 1_000_000_000n);
    const ns = Number(now % 1_000_000_000n);
    const frac = this.nanosecond ? ns : Math.floor(ns / 1000);
    const units = this.nanosecond ? now : now / 1000n; // pcapng: one 64-bit count of if_tsresol units
    const tsHigh = Number(units >> 32n);
    const tsLow = Number(units & 0xffffffffn);
    const { buf, offsets, lengths } = batch;
    const snaplen = this.snaplen;
    for (let i = 0; i < n; i++) {
      const len = lengths[i]!;
      const incl = len < snaplen ? len : snaplen;
      const rec = ng ? PCAPNG_EPB_FIXED_LEN + pad4(incl) + optLen : PCAP_RECORD_HEADER_LEN + incl;
      if (this.fileBytes + rec > this.maxBytes) {
        if (this.files === 1) {
          c.overflow++;
          continue;
        }
        if (!this.startNextFile(rec)) {
          c.dropped++;
          continue;
        }
      }
      // A chunk always holds one record after the file headers, so a fresh chunk always fits.
      if (this.pos + rec > this.current.length && !this.seal()) {
        c.dropped++;
        continue;
      }
      const chunk = this.current;
      const v = this.view;
      let p = this.pos;
      const off = offsets[i]!;
      if (ng) {
        v.setUint32(p, PCAPNG_BLOCK_EPB, true);
        v.setUint32(p + 4, rec, true);
        v.setUint32(p + 8, iface, true);
        v.setUint32(p + 12, tsHigh, true);
        v.setUint32(p + 16, tsLow, true);
        v.setUint32(p + 20, incl, true);
        v.setUint32(p + 24, len, true);
        p += PCAPNG_EPB_FIXED_LEN - 4; // the data follows the fixed fields; the trailing length comes last
        buf.copy(chunk, p, off, off + incl);
        p += incl;
        for (const end = p + pad4(incl) - incl; p < end; p++) chunk[p] = 0;
        if (flags !== 0) {
          v.setUint16(p, PCAPNG_OPT_EPB_FLAGS, true);
          v.setUint16(p + 2, 4, true);
          v.setUint32(p + 4, flags, true);
          v.setUint32(p + 8, PCAPNG_OPT_ENDOFOPT, true);
          p += PCAPNG_EPB_FLAGS_LEN;
        }
        v.setUint32(p, rec, true);
        p += 4;
      } else {
        v.setUint32(p, sec, true);
        v.setUint32(p + 4, frac, true);
        v.setUint32(p + 8, incl, true);
        v.setUint32(p + 12, len, true);
        p += PCAP_RECORD_HEADER_LEN;
        buf.copy(chunk, p, off, off + incl);
        p += incl;
      }
      this.pos = p;
      this.fileBytes += rec;
      c.frames++;
      c.bytes += incl;
    }
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** The capture now: file, state, bounds and counters. */
  status(): CaptureStatus {
    return {
      file: this.file,
      format: this.format,
      state: this.state,
      maxBytes: this.maxBytes,
      files: this.files,
      snaplen: this.snaplen,
      startedAt: this.startedAt.toISOString(),
      counters: { ...this.counters },
      ...(this.error ? { error: `${this.error.message}` } : {}),
    };
  }

  /** Write what is buffered and close the file. Idempotent; resolves with the final counters. */
  close(): Promise<PcapCounters> {
    this.closing ??= (async () => {
      if (this.state === 'open') this.state = 'closing';
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
      if (this.state === 'closing') this.queueCurrent(true);
      this.kick();
      while (this.draining !== null) await this.draining;
      if (this.state === 'closing') {
        this.state = 'closed';
        await fsClose(this.fd).catch((err: Error) => this.fail(err));
      }
      return { ...this.counters };
    })();
    return this.closing;
  }

  /** Start a file in the current chunk: its headers, as every file begins. */
  private putFileHeader(): void {
    this.header.copy(this.current, this.pos);
    this.pos += this.header.length;
    this.fileBytes = this.header.length;
    this.fileInterfaces = this.interfaces;
  }

  /**
   * Append to the current file the IDBs of interfaces added since it started,
   * or start the next file (whose headers hold them all) when they don't fit.
   */
  private putPendingInterfaces(): number {
    while (this.fileInterfaces < this.interfaces) {
      const i = this.fileInterfaces;
      const start = this.idbStart[i]!;
      const end = i + 1 < this.interfaces ? this.idbStart[i + 1]! : this.header.length;
      const len = end - start;
      if (this.fileBytes + len > this.maxBytes) {
        if (this.files === 1) return PUT_OVERFLOW;
        return this.startNextFile(0) ? PUT_OK : PUT_DROPPED;
      }
      if (this.pos + len > this.current.length && !this.seal()) return PUT_DROPPED;
      this.header.copy(this.current, this.pos, start, end);
      this.pos += len;
      this.fileBytes += len;
      this.fileInterfaces = i + 1;
    }
    return PUT_OK;
  }

  /** Queue the filled, not yet queued part of the current chunk. The chunk stays current unless `release`. */
  private queueCurrent(release: boolean): void {
    if (this.pos > this.queued || release) {
      this.queue.push({ kind: 'write', chunk: this.current, start: this.queued, end: this.pos, release });
      this.queued = this.pos;
      this.kick();
    }
  }

  /** Hand the full current chunk to the writer and take an empty one; false when none is free (disk behind). */
  private seal(): boolean {
    const next = this.free.pop();
    if (next === undefined) return false;
    this.queueCurrent(true);
    this.current = next;
    this.view = this.views.get(next)!;
    this.pos = 0;
    this.queued = 0;
    return true;
  }

  /**
   * Close this file in order behind its queued bytes; the next file's headers
   * follow in the same chunk, or a fresh one if the headers and a `rec`-byte
   * record don't fit. False when no chunk is free (disk behind).
   */
  private startNextFile(rec: number): boolean {
    if (this.pos + this.header.length + rec > this.current.length && !this.seal()) return false;
    this.queueCurrent(false);
    this.queue.push({ kind: 'rotate' });
    this.kick();
    this.putFileHeader();
    return true;
  }

  private flushPartial(): void {
    if (this.state === 'open' && this.queue.length === 0 && this.draining === null) this.queueCurrent(false);
  }

  private kick(): void {
    if (this.draining !== null || this.queue.length === 0 || this.state === 'failed') return;
    this.draining = this.drain().finally(() => (this.draining = null));
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.state !== 'failed') {
        const op = this.queue[0]!;
        if (op.kind === 'write') {
          for (let off = op.start; off < op.end; ) off += await fsWrite(this.fd, op.chunk, off, op.end - off);
          this.counters.written += op.end - op.start;
          if (op.release) this.free.push(op.chunk);
        } else {
          await this.rotateFiles();
        }
        this.queue.shift();
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** FILE.(n-2) -> FILE.(n-1) (replacing the oldest) ... FILE -> FILE.1, then a new FILE. */
  private async rotateFiles(): Promise<void> {
    await fsClose(this.fd);
    this.fd = -1;
    for (let i = this.files - 1; i >= 1; i--) await fsRename(i === 1 ? this.file : `${this.file}.${i - 1}`, `${this.file}.${i}`);
    this.fd = await fsOpen(this.file);
    this.counters.rotations++;
    this.emit('rotate', { file: this.file, rotations: this.counters.rotations });
  }

  private fail(err: Error & { code?: string }): void {
    if (this.state === 'failed') return;
    this.state = 'failed';
    this.error = new EtherlinkError(err.code ?? 'EIO', `capture to '${this.file}' stopped: ${err.message}`, { cause: err });
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.queue.length = 0;
    if (this.fd >= 0) close(this.fd, () => {});
    this.fd = -1;
    this.emit('failed', this.error);
  }
}

/** Log a capture's life: one line when it rotates or fails, never per frame. */
/**
 * The one capture a daemon runs at a time (internal): start refuses a second
 * while one is open, stop writes out what is buffered; start, stop, rotation
 * and failure are logged with the daemon's own fields.
 */
export class CaptureSlot {
  /** The running capture (or a failed one, until stopped), or null. */
  writer: PcapWriter | null = null;
  private onStop: (() => void) | undefined;

  constructor(
    private readonly log: Logger,
    private readonly fields: Record<string, string> = {},
  ) {}

  /** Open FILE; `onStop` runs when this capture stops or fails (unhook the frame source there). */
  start(file: string, opts: PcapOptions, onStop?: () => void): PcapWriter {
    if (this.writer?.isOpen) {
      throw new EtherlinkError('ERR_CAPTURE_RUNNING', `a capture to '${this.writer.file}' is already running: stop it first`);
    }
    const writer = new PcapWriter(file, opts);
    writer.on('rotate', (r) => this.log.info('capture rotated', { file: r.file, rotations: r.rotations, frames: writer.counters.frames, dropped: writer.counters.dropped }));
    writer.on('failed', (err) => {
      this.log.error(err.message, { file: writer.file, code: err.code });
      if (this.writer === writer) this.unhook();
    });
    this.writer = writer;
    this.onStop = onStop;
    this.log.info('capture started', { ...this.fields, ...captureFields(writer.status()) });
    return writer;
  }

  /** Stop and write out what is buffered; resolves with the final status, or null if none ran. */
  async stop(): Promise<CaptureStatus | null> {
    const writer = this.writer;
    if (writer === null) return null;
    this.writer = null;
    this.unhook();
    await writer.close();
    const status = writer.status();
    this.log.info('capture stopped', { ...this.fields, ...captureFields(status) });
    return status;
  }

  status(): CaptureStatus | null {
    return this.writer?.status() ?? null;
  }

  private unhook(): void {
    const f = this.onStop;
    this.onStop = undefined;
    f?.();
  }
}

/** The fields of a 'capture started' / 'capture stopped' log line. */
function captureFields(s: CaptureStatus): Record<string, string | number> {
  const c = s.counters;
  return { file: s.file, format: s.format, maxBytes: s.maxBytes, files: s.files, snaplen: s.snaplen, frames: c.frames, bytes: c.bytes, dropped: c.dropped, overflow: c.overflow, rotations: c.rotations, unknownInterface: c.unknownInterface };
}

/** Resolves when `p` settles or after `ms`, whichever is first (a stuck disk must not block exit). */
export function settleWithin(p: Promise<unknown>, ms = PCAP_CLOSE_TIMEOUT_MS): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    p.then(
      () => resolve(),
      () => resolve(),
    ).finally(() => clearTimeout(t));
  });
}
