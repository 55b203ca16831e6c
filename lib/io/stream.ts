// Datagrams over a stream (TCP, TLS, WebSocket): each one is a u16 big-endian
// length and that many bytes (docs/PROTOCOL.md, "Streams"). A StreamLink is a
// DatagramSocket like a UdpSocket, so the protocol above cannot tell them
// apart: received datagrams come as zero-copy batches, sends are bounded and
// drop rather than queue (a stream is one ordered queue: a backlog only adds
// delay, and the inner TCP retransmits what is lost).
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { FrameBatch } from '../core/frames.js';
import { ADDR_SLOT } from './native.js';
import type { DatagramSocket } from './udp.js';
import { STREAM_DATAGRAM_MAX, STREAM_LENGTH_SIZE, STREAM_SEND_QUEUE_BYTES } from '../protocol/constants.js';

/** Datagrams handed over per receive callback at most. */
export const STREAM_BATCH = 256;
/** Outgoing datagrams are gathered in buffers of this size, one write each, reused once written. */
const OUT_CHUNK = 256 * 1024;
/** Spare outgoing buffers kept per link. */
const OUT_POOL = 4;

/** Counters of one stream link. */
export interface StreamStats {
  rxDatagrams: number;
  rxBytes: number;
  txDatagrams: number;
  txBytes: number;
  /** Not sent: the send queue was full (STREAM_SEND_QUEUE_BYTES), or the stream closed. */
  txDropped: number;
  /** Longer than the link takes now (before a handshake: STREAM_UNBOUND_DATAGRAM_MAX): skipped, unread. */
  rxSkipped: number;
}

const EMPTY = Buffer.alloc(0);

/** Reusable receive batch over whichever buffer the datagrams are in. */
class StreamBatch implements FrameBatch {
  count = 0;
  buf: Buffer = Buffer.alloc(0);
  readonly offsets = new Uint32Array(STREAM_BATCH);
  readonly lengths = new Uint32Array(STREAM_BATCH);
}

/**
 * Splits a byte stream into datagrams. A datagram at offset 2 or later in its
 * buffer is preceded there by its own length prefix (buf[offset - 2 ..
 * offset)), so a run of them can be passed on framed as it came
 * (StreamLink.writeFramed); one whose prefix was cut across chunks sits at
 * offset 1 and is not. A datagram cut across chunks is assembled, prefix
 * included, in a buffer of its own that is never reused.
 * Whole datagrams inside a chunk are
 * handed over as views of it; one cut across chunks is assembled in a buffer
 * kept for the next (at most the largest datagram allowed). A zero length
 * ends the stream (push returns an error); a datagram longer than `max` is
 * skipped without being buffered and counted.
 */
export class StreamDecoder {
  private readonly batch = new StreamBatch();
  private readonly one = new StreamBatch();
  /** A datagram cut across chunks: its bytes so far. */
  private assembly: Buffer = Buffer.alloc(0);
  private want = 0;
  private have = 0;
  /** Bytes of an oversize datagram still to skip. */
  private skip = 0;
  /** A length prefix cut after its first byte: that byte + 1, or 0. */
  private half = 0;
  /** Longest datagram taken (the switch raises it once the stream carried a handshake). */
  max: number;
  skipped = 0;

  constructor(
    private readonly deliver: (batch: FrameBatch) => void,
    max = STREAM_DATAGRAM_MAX,
  ) {
    this.max = max;
  }

  /** Bytes held for an incomplete datagram. */
  get partialBytes(): number {
    return this.have + (this.half > 0 ? 1 : 0);
  }

  /** Take one chunk; returns an error message when the stream is not datagrams (it must be closed). */
  push(chunk: Buffer): string | null {
    const b = this.batch;
    b.buf = chunk;
    b.count = 0;
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, end - off);
        this.skip -= n;
        off += n;
        continue;
      }
      if (this.want > 0) {
        const n = Math.min(this.want - this.have, end - off);
        chunk.copy(this.assembly, STREAM_LENGTH_SIZE + this.have, off, off + n);
        this.have += n;
        off += n;
        if (this.have === this.want) {
          const one = this.one;
          one.buf = this.assembly;
          one.offsets[0] = STREAM_LENGTH_SIZE;
          one.lengths[0] = this.want;
          one.count = 1;
          this.want = this.have = 0;
          // Handed over by reference (a relay may write it out later): the next cut datagram gets a buffer of its own.
          this.assembly = EMPTY;
          this.deliver(one);
        }
        continue;
      }
      let len: number;
      if (this.half > 0) {
        len = ((this.half - 1) << 8) | chunk[off]!;
        this.half = 0;
        off += 1;
      } else if (end - off < STREAM_LENGTH_SIZE) {
        this.half = chunk[off]! + 1;
        off += 1;
        break;
      } else {
        len = (chunk[off]! << 8) | chunk[off + 1]!;
        off += STREAM_LENGTH_SIZE;
      }
      if (len === 0) return 'a zero length prefix: not an EtherLink stream';
      if (len > this.max) {
        this.skipped++;
        this.skip = len;
        continue;
      }
      if (end - off >= len) {
        if (b.count === STREAM_BATCH) {
          this.deliver(b);
          b.count = 0;
        }
        b.offsets[b.count] = off;
        b.lengths[b.count] = len;
        b.count++;
        off += len;
        continue;
      }
      // Cut across chunks: deliver what came before it first, so order holds.
      if (b.count > 0) {
        this.deliver(b);
        b.count = 0;
      }
      // The assembly keeps the prefix too: every datagram handed over has its length in the 2 bytes before it.
      if (this.assembly.length < STREAM_LENGTH_SIZE + len) this.assembly = Buffer.allocUnsafe(STREAM_LENGTH_SIZE + len);
      this.assembly[0] = len >>> 8;
      this.assembly[1] = len & 0xff;
      this.want = len;
      const n = end - off;
      chunk.copy(this.assembly, STREAM_LENGTH_SIZE, off, end);
      this.have = n;
      off = end;
    }
    if (b.count > 0) this.deliver(b);
    b.count = 0;
    return null;
  }
}

/** What carries the bytes: a TCP or TLS socket, or a WebSocket (one message per write). */
export interface StreamCarrier {
  /** 'tcp' or 'ws', for status and metrics. */
  readonly kind: 'tcp' | 'ws';
  /** Send these bytes (a WebSocket: as one binary message); `done` once they are handed to the kernel (or failed). */
  write(chunk: Buffer, done?: () => void): void;
  /** Bytes written but not yet taken by the kernel. */
  readonly queuedBytes: number;
  /** Where the other end is, as text (for logs). */
  readonly remote: string;
  /** Bytes received, in order. */
  onData(fn: (chunk: Buffer) => void): void;
  /** Called once when the stream has ended, with why. */
  onClose(fn: (reason: string) => void): void;
  /** End the stream now; onClose follows. */
  destroy(reason: string): void;
  /** End it after what is written has gone out (a goodbye); onClose follows. */
  end(reason: string): void;
}

/** A TCP (or TLS) socket as a carrier. Nagle is off: datagrams go out as they are written. */
export function socketCarrier(sock: Socket): StreamCarrier {
  sock.setNoDelay(true);
  let closeReason = '';
  return {
    kind: 'tcp',
    write: (chunk, done) => void sock.write(chunk, done),
    get queuedBytes() {
      return sock.writableLength;
    },
    remote: `${sock.remoteAddress ?? '?'}:${sock.remotePort ?? 0}`,
    onData: (fn) => void sock.on('data', fn),
    onClose: (fn) => {
      sock.on('error', (err: NodeJS.ErrnoException) => (closeReason ||= err.code ?? err.message));
      sock.on('close', () => fn(closeReason || 'closed by the other end'));
    },
    destroy: (reason) => {
      closeReason ||= reason;
      sock.destroy();
    },
    end: (reason) => {
      closeReason ||= reason;
      sock.end();
      // A peer that never closes its side cannot hold the socket open.
      setTimeout(() => sock.destroy(), 2000).unref();
    },
  };
}

/** A WebSocket as a carrier: binary messages, each a run of length-prefixed datagrams. */
export function webSocketCarrier(ws: WebSocket, remote: string): StreamCarrier {
  let closeReason = '';
  return {
    kind: 'ws',
    write: (chunk, done) => ws.send(chunk, { binary: true }, done),
    get queuedBytes() {
      return ws.bufferedAmount;
    },
    remote,
    onData: (fn) =>
      void ws.on('message', (data, isBinary) => {
        // A text message is not ours; an empty chunk ends nothing, so it is passed on as a zero length (an error).
        if (!isBinary || !Buffer.isBuffer(data)) fn(Buffer.alloc(STREAM_LENGTH_SIZE));
        else fn(data);
      }),
    onClose: (fn) => {
      ws.on('error', (err: NodeJS.ErrnoException) => (closeReason ||= err.code ?? err.message));
      ws.on('close', (code, why) => fn(closeReason || `closed by the other end (${code}${why.length > 0 ? ` ${why.toString()}` : ''})`));
    },
    destroy: (reason) => {
      closeReason ||= reason;
      ws.terminate();
    },
    end: (reason) => {
      closeReason ||= reason;
      ws.close(1000, reason.slice(0, 120));
      setTimeout(() => ws.terminate(), 2000).unref();
    },
  };
}

/**
 * Datagrams over a carrier, as a DatagramSocket: sends ignore the address (a
 * stream has one other end); received ones are reported from `peer`, the
 * 20-byte address slot the owner chose for it.
 */
export class StreamLink implements DatagramSocket {
  readonly stats: StreamStats = { rxDatagrams: 0, rxBytes: 0, txDatagrams: 0, txBytes: 0, txDropped: 0, rxSkipped: 0 };
  readonly decoder: StreamDecoder;
  private readonly addrs = Buffer.alloc(STREAM_BATCH * ADDR_SLOT);
  private receiver: ((batch: FrameBatch, addrs: Buffer) => void) | null = null;
  private closeHandler: ((reason: string) => void) | null = null;
  private isClosed = false;
  /** Why it closed, once it has. */
  closeReason = '';
  readonly openedAt = Date.now();
  lastReceiveAt = this.openedAt;
  /** Bytes that may wait for the kernel before datagrams are dropped. */
  readonly maxQueueBytes: number;
  /** The buffer being filled, and how much of it; written at the end of the current callback (a microtask). */
  private out: Buffer | null = null;
  private outUsed = 0;
  /** Datagrams in `out`. */
  private outCount = 0;
  private flushScheduled = false;
  private readonly pool: Buffer[] = [];
  private readonly flush = (): void => this.flushOut();

  constructor(
    readonly carrier: StreamCarrier,
    /** The address slot its datagrams are reported from. */
    readonly peer: Buffer,
    opts: { maxDatagram?: number; maxQueueBytes?: number } = {},
  ) {
    this.maxQueueBytes = opts.maxQueueBytes ?? STREAM_SEND_QUEUE_BYTES;
    for (let i = 0; i < STREAM_BATCH; i++) peer.copy(this.addrs, i * ADDR_SLOT, 0, ADDR_SLOT);
    this.decoder = new StreamDecoder((batch) => {
      this.stats.rxDatagrams += batch.count;
      for (let i = 0; i < batch.count; i++) this.stats.rxBytes += batch.lengths[i]!;
      this.receiver?.(batch, this.addrs);
    }, opts.maxDatagram);
    carrier.onData((chunk) => {
      if (this.isClosed) return;
      this.lastReceiveAt = Date.now();
      const err = this.decoder.push(chunk);
      this.stats.rxSkipped = this.decoder.skipped;
      if (err !== null) this.close(err);
    });
    carrier.onClose((reason) => this.closed_(reason));
  }

  get kind(): 'tcp' | 'ws' {
    return this.carrier.kind;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** The peer slot may change (the switch's address re-resolved): received datagrams are reported from the new one. */
  setPeer(slot: Buffer): void {
    slot.copy(this.peer, 0, 0, ADDR_SLOT);
    for (let i = 0; i < STREAM_BATCH; i++) slot.copy(this.addrs, i * ADDR_SLOT, 0, ADDR_SLOT);
  }

  /** Install (or with null, detach) the receive handler: datagram i of each batch came from addrs[i * ADDR_SLOT ..], the peer slot. */
  onDatagrams(fn: ((batch: FrameBatch, addrs: Buffer) => void) | null): void {
    this.receiver = fn;
  }

  /** Called once when the stream has closed, with why. */
  onClose(fn: (reason: string) => void): void {
    this.closeHandler = fn;
  }

  /** Send datagrams i of `batch` (the addresses are the stream's one other end); returns how many were taken. */
  send(batch: FrameBatch, _addrs: Buffer): number {
    return this.sendRange(batch, 0, batch.count);
  }

  /** Datagrams [from, to) of `batch`: gathered, and written with what else goes out in this callback. */
  sendRange(batch: FrameBatch, from: number, to: number): number {
    const { buf, offsets, lengths } = batch;
    let n = 0;
    for (let i = from; i < to; i++) n += this.append(buf, offsets[i]!, lengths[i]!);
    return n;
  }

  /** One datagram (control messages, relayed end-to-end data). */
  sendTo(datagram: Buffer, _addr?: Buffer, _addrOffset?: number): number {
    return this.append(datagram, 0, datagram.length);
  }

  /**
   * Pass on `count` datagrams (`bytes` in all) that sit framed, back to back,
   * at buf[start .. end): one write, no copy (a relay from one stream to
   * another). What is gathered goes first, so order holds. Dropped and
   * counted as a whole when the queue bound is reached.
   */
  writeFramed(buf: Buffer, start: number, end: number, count: number, bytes: number): number {
    if (this.isClosed || this.carrier.queuedBytes + this.outUsed + (end - start) > this.maxQueueBytes) {
      this.stats.txDropped += count;
      return 0;
    }
    this.flushOut();
    this.carrier.write(buf.subarray(start, end));
    this.stats.txDatagrams += count;
    this.stats.txBytes += bytes;
    return count;
  }

  /** Bytes waiting: in the process (gathered, or written and not yet taken by the kernel). */
  get queuedBytes(): number {
    return this.carrier.queuedBytes + this.outUsed;
  }

  /** Add one length-prefixed datagram to the outgoing buffer; 0 (counted) when the queue bound is reached or the link is closed. */
  append(buf: Buffer, off: number, len: number): number {
    const size = STREAM_LENGTH_SIZE + len;
    if (this.isClosed || this.carrier.queuedBytes + this.outUsed + size > this.maxQueueBytes) {
      this.stats.txDropped++;
      return 0;
    }
    let out = this.out;
    if (out === null || this.outUsed + size > out.length) {
      if (out !== null) this.flushOut();
      out = this.out = size > OUT_CHUNK ? Buffer.allocUnsafeSlow(size) : (this.pool.pop() ?? Buffer.allocUnsafeSlow(OUT_CHUNK));
    }
    const at = this.outUsed;
    out[at] = len >>> 8;
    out[at + 1] = len & 0xff;
    buf.copy(out, at + STREAM_LENGTH_SIZE, off, off + len);
    this.outUsed = at + size;
    this.outCount++;
    this.stats.txDatagrams++;
    this.stats.txBytes += len;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flush);
    }
    return 1;
  }

  /** Write the gathered datagrams; the buffer goes back to the pool once the kernel has them. */
  private flushOut(): void {
    this.flushScheduled = false;
    const out = this.out;
    if (out === null || this.outUsed === 0) return;
    const used = this.outUsed;
    const n = this.outCount;
    this.out = null;
    this.outUsed = 0;
    this.outCount = 0;
    if (this.isClosed) {
      // Closed before they went out: not sent after all.
      this.stats.txDropped += n;
      this.stats.txDatagrams -= n;
      return;
    }
    const pool = this.pool;
    this.carrier.write(out.subarray(0, used), () => {
      if (out.length === OUT_CHUNK && pool.length < OUT_POOL) pool.push(out);
    });
  }

  /** End the stream now (idempotent); what is queued is lost. */
  close(reason = 'closed'): void {
    if (this.isClosed) return;
    this.carrier.destroy(reason);
    this.closed_(reason);
  }

  /** End it once what is queued has gone out (a LEAVE). No more is received. */
  end(reason = 'closed'): void {
    if (this.isClosed) return;
    this.flushOut();
    this.carrier.end(reason);
    this.closed_(reason);
  }

  private closed_(reason: string): void {
    if (this.isClosed && this.closeReason !== '') return;
    this.isClosed = true;
    this.closeReason = reason;
    this.receiver = null;
    const h = this.closeHandler;
    this.closeHandler = null;
    h?.(reason);
  }
}
