// Datagrams over a stream (lib/io/stream.ts): the decoder against every way a
// run of datagrams can be cut into chunks, its bounds (zero length, oversize,
// batches of at most STREAM_BATCH), and StreamLink over an in-memory carrier;
// the proxy the environment picks for a WebSocket (lib/io/stream-connect.ts);
// the UDP_PROBE and PROBE_ACK layouts (lib/protocol/wire.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batchToBuffers, buffersToBatch, type FrameBatch } from '../../lib/core/frames.js';
import { encodeAddress } from '../../lib/io/address.js';
import { ADDR_SLOT } from '../../lib/io/native.js';
import { STREAM_BATCH, StreamDecoder, StreamLink, type StreamCarrier } from '../../lib/io/stream.js';
import { proxyFor } from '../../lib/io/stream-connect.js';
import {
  Control,
  MessageType,
  PROBE_ACK_SIZE,
  STREAM_LENGTH_SIZE,
  STREAM_SEND_QUEUE_BYTES,
  UDP_PROBE_SIZE,
} from '../../lib/protocol/constants.js';
import { decodeControl, decodeUdpProbe, encodeProbeAck, encodeUdpProbe } from '../../lib/protocol/wire.js';

/** `n` bytes that tell datagrams apart: datagram `id`'s byte i. */
function datagram(id: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (id * 31 + i) & 0xff;
  return b;
}

/** Datagrams as they go on a stream: u16 big-endian length, then the bytes. */
function frame(datagrams: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const d of datagrams) {
    const len = Buffer.alloc(STREAM_LENGTH_SIZE);
    len.writeUInt16BE(d.length, 0);
    parts.push(len, d);
  }
  return Buffer.concat(parts);
}

/** A decoder that copies out what it delivers (the views are valid only in the callback), batch by batch. */
function collector(max?: number) {
  const batches: Buffer[][] = [];
  const decoder = new StreamDecoder((batch) => {
    assert.ok(batch.count > 0, 'no empty batch is delivered');
    assert.ok(batch.count <= STREAM_BATCH, `a batch holds at most ${STREAM_BATCH} datagrams`);
    batches.push(batchToBuffers(batch));
  }, max);
  return {
    decoder,
    batches,
    get datagrams(): Buffer[] {
      return batches.flat();
    },
  };
}

// Lengths that exercise both prefix bytes, a 1-byte datagram and a 0x100 boundary.
const RUN = [datagram(1, 1), datagram(2, 300), datagram(3, 2), datagram(4, 255), datagram(5, 256), datagram(6, 40)];

test('StreamDecoder: a run of datagrams cut at every byte boundary into two chunks gives the same datagrams, in order', () => {
  const stream = frame(RUN);
  for (let cut = 0; cut <= stream.length; cut++) {
    const c = collector();
    assert.equal(c.decoder.push(stream.subarray(0, cut)), null, `cut at ${cut}: first chunk`);
    assert.equal(c.decoder.push(stream.subarray(cut)), null, `cut at ${cut}: second chunk`);
    assert.deepEqual(c.datagrams, RUN, `cut at ${cut}`);
    assert.equal(c.decoder.partialBytes, 0, `cut at ${cut}: nothing held at the end`);
  }
});

test('StreamDecoder: the same run fed one byte at a time gives the same datagrams, in order', () => {
  const stream = frame(RUN);
  const c = collector();
  for (let i = 0; i < stream.length; i++) assert.equal(c.decoder.push(stream.subarray(i, i + 1)), null, `byte ${i}`);
  assert.deepEqual(c.datagrams, RUN);
  assert.equal(c.decoder.partialBytes, 0);
});

test('StreamDecoder: whole datagrams in one chunk are delivered as views of it, not copies', () => {
  const stream = frame(RUN);
  const seen: Buffer[] = [];
  const d = new StreamDecoder((batch) => seen.push(batch.buf));
  assert.equal(d.push(stream), null);
  assert.equal(seen.length, 1, 'one batch');
  assert.equal(seen[0], stream, 'the batch is over the chunk itself');
});

test(`StreamDecoder: more than ${STREAM_BATCH} datagrams in one chunk come in several batches, all of them, in order`, () => {
  const count = 2 * STREAM_BATCH + 77;
  const run = Array.from({ length: count }, (_, i) => datagram(i, 1 + (i % 9)));
  const c = collector();
  assert.equal(c.decoder.push(frame(run)), null);
  assert.equal(c.batches.length, Math.ceil(count / STREAM_BATCH));
  assert.deepEqual(c.batches.map((b) => b.length), [STREAM_BATCH, STREAM_BATCH, 77]);
  assert.deepEqual(c.datagrams, run);
});

test('StreamDecoder: datagrams before one cut across chunks are delivered before it, so order holds', () => {
  const run = [datagram(1, 10), datagram(2, 10), datagram(3, 500), datagram(4, 10)];
  const stream = frame(run);
  const c = collector();
  // The cut is in the middle of the 500-byte datagram.
  const cut = 2 * (STREAM_LENGTH_SIZE + 10) + STREAM_LENGTH_SIZE + 200;
  assert.equal(c.decoder.push(stream.subarray(0, cut)), null);
  assert.deepEqual(c.datagrams, run.slice(0, 2), 'the two whole ones are out already');
  assert.equal(c.decoder.push(stream.subarray(cut)), null);
  assert.deepEqual(c.datagrams, run);
});

test('StreamDecoder: a zero length prefix is an error (the stream is not datagrams), also when the prefix is cut', () => {
  const whole = collector();
  const err = whole.decoder.push(Buffer.concat([frame([datagram(1, 5)]), Buffer.from([0, 0])]));
  assert.equal(typeof err, 'string');
  assert.match(err!, /zero length/);

  const cut = collector();
  assert.equal(cut.decoder.push(Buffer.from([0])), null, 'one byte of a prefix is not yet an error');
  assert.equal(cut.decoder.partialBytes, 1);
  assert.match(cut.decoder.push(Buffer.from([0, 1, 2])) ?? '', /zero length/);
});

test('StreamDecoder: a datagram longer than max is skipped unbuffered and counted; the ones after it still arrive', () => {
  const max = 100;
  const run = [datagram(1, 20), datagram(2, max + 1), datagram(3, max), datagram(4, 3 * max), datagram(5, 7)];
  const wanted = [run[0]!, run[2]!, run[4]!];
  const c = collector(max);
  assert.equal(c.decoder.push(frame(run)), null);
  assert.deepEqual(c.datagrams, wanted, 'max itself is taken, longer ones are not');
  assert.equal(c.decoder.skipped, 2);
});

test('StreamDecoder: an oversize datagram cut at every byte boundary is skipped without being held, and what follows arrives', () => {
  const max = 64;
  const run = [datagram(1, 10), datagram(2, 1000), datagram(3, 30)];
  const stream = frame(run);
  const oversizeStart = STREAM_LENGTH_SIZE + 10;
  const oversizeEnd = oversizeStart + STREAM_LENGTH_SIZE + 1000;
  for (let cut = 0; cut <= stream.length; cut++) {
    const c = collector(max);
    assert.equal(c.decoder.push(stream.subarray(0, cut)), null);
    if (cut >= oversizeStart + STREAM_LENGTH_SIZE && cut < oversizeEnd) {
      assert.equal(c.decoder.partialBytes, 0, `cut at ${cut}: the oversize datagram is not buffered`);
      assert.equal(c.decoder.skipped, 1, `cut at ${cut}: counted as soon as its length is read`);
    }
    assert.equal(c.decoder.push(stream.subarray(cut)), null);
    assert.deepEqual(c.datagrams, [run[0], run[2]], `cut at ${cut}`);
    assert.equal(c.decoder.skipped, 1, `cut at ${cut}`);
  }
});

test('StreamDecoder: max can be raised on a live decoder (after a handshake) and applies to the next length read', () => {
  const c = collector(16);
  assert.equal(c.decoder.push(frame([datagram(1, 40)])), null);
  assert.equal(c.decoder.skipped, 1);
  c.decoder.max = 64;
  assert.equal(c.decoder.push(frame([datagram(2, 40)])), null);
  assert.deepEqual(c.datagrams, [datagram(2, 40)]);
});

test('StreamDecoder: partialBytes is what is held of an incomplete datagram: a half prefix, then its bytes so far, then 0', () => {
  const d = datagram(9, 10);
  const stream = frame([d]);
  const c = collector();
  assert.equal(c.decoder.partialBytes, 0);
  c.decoder.push(stream.subarray(0, 1));
  assert.equal(c.decoder.partialBytes, 1, 'one byte of the prefix');
  c.decoder.push(stream.subarray(1, 2));
  assert.equal(c.decoder.partialBytes, 0, 'the prefix is read, no datagram byte yet');
  c.decoder.push(stream.subarray(2, 5));
  assert.equal(c.decoder.partialBytes, 3);
  c.decoder.push(stream.subarray(5, 11));
  assert.equal(c.decoder.partialBytes, 9);
  assert.deepEqual(c.datagrams, []);
  c.decoder.push(stream.subarray(11));
  assert.equal(c.decoder.partialBytes, 0);
  assert.deepEqual(c.datagrams, [d]);
});

// ---------------------------------------------------------------- StreamLink

/** An in-memory carrier: records writes, lets the test set queuedBytes, feed chunks and close it. */
class FakeCarrier implements StreamCarrier {
  readonly kind = 'tcp' as const;
  readonly remote = '192.0.2.1:4000';
  readonly writes: Buffer[] = [];
  queuedBytes = 0;
  destroyed: string | null = null;
  ended: string | null = null;
  private data: ((chunk: Buffer) => void)[] = [];
  private close: ((reason: string) => void)[] = [];

  write(chunk: Buffer): void {
    this.writes.push(Buffer.from(chunk));
  }
  onData(fn: (chunk: Buffer) => void): void {
    this.data.push(fn);
  }
  onClose(fn: (reason: string) => void): void {
    this.close.push(fn);
  }
  destroy(reason: string): void {
    this.destroyed = reason;
    this.closed(reason);
  }
  end(reason: string): void {
    this.ended = reason;
    this.closed(reason);
  }
  /** The other end sent `chunk`. */
  receive(chunk: Buffer): void {
    for (const fn of this.data) fn(chunk);
  }
  /** The stream closed (the carrier's 'close'). */
  closed(reason: string): void {
    for (const fn of this.close) fn(reason);
  }
}

/** The datagrams in what was written to a carrier. */
function decodeWritten(chunks: readonly Buffer[]): Buffer[] {
  const c = collector();
  for (const chunk of chunks) assert.equal(c.decoder.push(chunk), null);
  assert.equal(c.decoder.partialBytes, 0, 'writes end on a datagram boundary');
  return c.datagrams;
}

const PEER = encodeAddress('192.0.2.1', 4000);

/** Sends are gathered and written when the current callback ends (a microtask). */
const written = (): Promise<void> => new Promise((r) => setImmediate(r));

test('StreamLink: send() of a batch writes one chunk, whose decoding gives back the datagrams', async () => {
  const carrier = new FakeCarrier();
  const link = new StreamLink(carrier, Buffer.from(PEER));
  const sent = [datagram(1, 60), datagram(2, 1), datagram(3, 1400)];
  const batch = buffersToBatch(sent);
  assert.equal(link.send(batch, Buffer.alloc(0)), sent.length);
  assert.equal(carrier.writes.length, 0, 'gathered until the callback ends');
  await written();
  assert.equal(carrier.writes.length, 1, 'one write for the whole batch');
  assert.equal(carrier.writes[0]!.length, sent.reduce((n, d) => n + STREAM_LENGTH_SIZE + d.length, 0));
  assert.deepEqual(decodeWritten(carrier.writes), sent);
  assert.equal(link.stats.txDatagrams, 3);
  assert.equal(link.stats.txBytes, 60 + 1 + 1400);
  assert.equal(link.stats.txDropped, 0);
});

test('StreamLink: with the carrier queue near STREAM_SEND_QUEUE_BYTES, the datagrams that do not fit are dropped and counted', async () => {
  const carrier = new FakeCarrier();
  const link = new StreamLink(carrier, Buffer.from(PEER));
  const sent = Array.from({ length: 5 }, (_, i) => datagram(i, 100));
  // Room for two datagrams and their prefixes, and half of a third.
  carrier.queuedBytes = STREAM_SEND_QUEUE_BYTES - 2 * (STREAM_LENGTH_SIZE + 100) - 50;
  assert.equal(link.send(buffersToBatch(sent), Buffer.alloc(0)), 2);
  assert.equal(link.stats.txDropped, 3);
  assert.equal(link.stats.txDatagrams, 2);
  await written();
  assert.deepEqual(decodeWritten(carrier.writes), sent.slice(0, 2), 'the first ones go, in order');

  // A full queue: nothing is written at all.
  carrier.queuedBytes = STREAM_SEND_QUEUE_BYTES;
  assert.equal(link.send(buffersToBatch(sent), Buffer.alloc(0)), 0);
  await written();
  assert.equal(carrier.writes.length, 1, 'no empty write');
  assert.equal(link.stats.txDropped, 3 + 5);
  assert.equal(link.sendTo(datagram(9, 10)), 0, 'a control datagram is dropped too');
  assert.equal(link.stats.txDropped, 3 + 5 + 1);

  // Exactly enough room for one.
  carrier.queuedBytes = STREAM_SEND_QUEUE_BYTES - (STREAM_LENGTH_SIZE + 100);
  assert.equal(link.send(buffersToBatch(sent), Buffer.alloc(0)), 1);
  await written();
  assert.deepEqual(decodeWritten(carrier.writes.slice(1)), sent.slice(0, 1));
});

test('StreamLink: sendTo() writes one length-prefixed datagram', async () => {
  const carrier = new FakeCarrier();
  const link = new StreamLink(carrier, Buffer.from(PEER));
  const d = datagram(7, 33);
  assert.equal(link.sendTo(d), 1);
  await written();
  assert.deepEqual(decodeWritten(carrier.writes), [d]);
  assert.equal(link.stats.txDatagrams, 1);
  assert.equal(link.stats.txBytes, 33);
});

test('StreamLink: received chunks reach onDatagrams with every address slot set to the peer', () => {
  const carrier = new FakeCarrier();
  const link = new StreamLink(carrier, Buffer.from(PEER));
  const got: Buffer[] = [];
  let batches = 0;
  link.onDatagrams((batch: FrameBatch, addrs: Buffer) => {
    batches++;
    for (let i = 0; i < batch.count; i++) {
      assert.deepEqual(addrs.subarray(i * ADDR_SLOT, (i + 1) * ADDR_SLOT), PEER, `address slot ${i}`);
    }
    got.push(...batchToBuffers(batch));
  });
  const run = Array.from({ length: STREAM_BATCH + 3 }, (_, i) => datagram(i, 8));
  const stream = frame(run);
  carrier.receive(stream.subarray(0, 101));
  carrier.receive(stream.subarray(101));
  assert.deepEqual(got, run);
  assert.ok(batches >= 2);
  assert.equal(link.stats.rxDatagrams, run.length);
  assert.equal(link.stats.rxBytes, run.length * 8);
  assert.equal(link.closed, false);

  // A new peer slot (the switch re-resolved): later datagrams are reported from it.
  const moved = encodeAddress('2001:db8::7', 4001);
  link.setPeer(moved);
  let from: Buffer | null = null;
  link.onDatagrams((_batch, addrs) => (from = Buffer.from(addrs.subarray(0, ADDR_SLOT))));
  carrier.receive(frame([datagram(1, 4)]));
  assert.deepEqual(from, moved);
});

test('StreamLink: a garbage chunk (zero length prefix) closes the link, destroys the carrier and calls onClose once with why', () => {
  const carrier = new FakeCarrier();
  const link = new StreamLink(carrier, Buffer.from(PEER));
  const reasons: string[] = [];
  let delivered = 0;
  link.onDatagrams(() => delivered++);
  link.onClose((reason) => reasons.push(reason));
  carrier.receive(Buffer.from([0, 0, 1, 2, 3]));
  assert.equal(link.closed, true);
  assert.equal(reasons.length, 1);
  assert.match(reasons[0]!, /zero length/);
  assert.equal(link.closeReason, reasons[0]);
  assert.equal(carrier.destroyed, reasons[0], 'the carrier is destroyed with the same reason');
  // Nothing more is taken or sent once closed.
  carrier.receive(frame([datagram(1, 5)]));
  assert.equal(delivered, 0);
  assert.equal(link.send(buffersToBatch([datagram(1, 5)]), Buffer.alloc(0)), 0);
  assert.equal(link.stats.txDropped, 1);
  assert.equal(carrier.writes.length, 0);
  link.close('again');
  assert.equal(reasons.length, 1, 'onClose is called once');
});

test('StreamLink: the carrier closing reports its reason through onClose', () => {
  const carrier = new FakeCarrier();
  const link = new StreamLink(carrier, Buffer.from(PEER));
  const reasons: string[] = [];
  link.onClose((reason) => reasons.push(reason));
  carrier.closed('ECONNRESET');
  assert.deepEqual(reasons, ['ECONNRESET']);
  assert.equal(link.closed, true);
  assert.equal(link.closeReason, 'ECONNRESET');
});

// ---------------------------------------------------------------- proxyFor

const WSS = new URL('wss://switch.example.com/etherlink');
const WS = new URL('ws://switch.example.com/etherlink');

test('proxyFor: HTTPS_PROXY for wss:, HTTP_PROXY for ws:, none when neither is set', () => {
  const env = { HTTPS_PROXY: 'http://secure-proxy.test:3128', HTTP_PROXY: 'http://plain-proxy.test:8080' };
  assert.equal(proxyFor(WSS, env)?.href, 'http://secure-proxy.test:3128/');
  assert.equal(proxyFor(WS, env)?.href, 'http://plain-proxy.test:8080/');
  assert.equal(proxyFor(WS, { HTTPS_PROXY: 'http://secure-proxy.test:3128' }), null, 'HTTPS_PROXY is not for ws:');
  assert.equal(proxyFor(WSS, {}), null);
  assert.equal(proxyFor(WS, { HTTP_PROXY: '' }), null, 'an empty value is no proxy');
});

test('proxyFor: the lower-case variables work too', () => {
  const env = { https_proxy: 'http://secure-proxy.test:3128', http_proxy: 'http://plain-proxy.test:8080' };
  assert.equal(proxyFor(WSS, env)?.host, 'secure-proxy.test:3128');
  assert.equal(proxyFor(WS, env)?.host, 'plain-proxy.test:8080');
  assert.equal(proxyFor(WS, { http_proxy: 'plain-proxy.test:8080' })?.href, 'http://plain-proxy.test:8080/', 'no scheme means http://');
});

test('proxyFor: NO_PROXY by exact host, by suffix (.example.com and example.com), and *', () => {
  const proxy = { HTTPS_PROXY: 'http://proxy.test:3128' };
  assert.equal(proxyFor(WSS, { ...proxy, NO_PROXY: 'switch.example.com' }), null, 'exact host');
  assert.equal(proxyFor(WSS, { ...proxy, NO_PROXY: 'other.test, switch.example.com' }), null, 'one of a list');
  assert.equal(proxyFor(WSS, { ...proxy, NO_PROXY: '.example.com' }), null, 'suffix with a dot');
  assert.equal(proxyFor(WSS, { ...proxy, NO_PROXY: 'example.com' }), null, 'suffix without a dot');
  assert.equal(proxyFor(new URL('wss://example.com/'), { ...proxy, NO_PROXY: '.example.com' }), null, 'the domain itself');
  assert.equal(proxyFor(WSS, { ...proxy, no_proxy: 'EXAMPLE.com' }), null, 'lower-case variable, any case');
  assert.equal(proxyFor(WSS, { ...proxy, NO_PROXY: '*' }), null, '*');
  assert.equal(proxyFor(new URL('wss://switch.notexample.com/'), { ...proxy, NO_PROXY: 'example.com' })?.host, 'proxy.test:3128', 'a suffix matches at a dot only');
  assert.equal(proxyFor(WSS, { ...proxy, NO_PROXY: 'other.test' })?.host, 'proxy.test:3128', 'a host not listed goes through the proxy');
});

test("proxyFor: a proxy URL that is not http:// throws an error with code 'ERR_INVALID_URL'", () => {
  assert.throws(() => proxyFor(WSS, { HTTPS_PROXY: 'socks5://proxy.test:1080' }), { code: 'ERR_INVALID_URL', message: /only http:\/\// });
  assert.throws(() => proxyFor(WS, { HTTP_PROXY: 'https://proxy.test:3128' }), { code: 'ERR_INVALID_URL' });
});

// ---------------------------------------------------------------- UDP_PROBE, PROBE_ACK

test('wire: UDP_PROBE round-trips its index and sequence, at an offset too', () => {
  const probe = encodeUdpProbe(0xdeadbeef, 0xffffffff);
  assert.equal(probe.length, UDP_PROBE_SIZE);
  assert.deepEqual(decodeUdpProbe(probe, 0, probe.length), { index: 0xdeadbeef, seq: 0xffffffff });
  const inside = Buffer.concat([Buffer.alloc(3, 0xaa), encodeUdpProbe(7, 42), Buffer.alloc(5, 0xbb)]);
  assert.deepEqual(decodeUdpProbe(inside, 3, UDP_PROBE_SIZE), { index: 7, seq: 42 });
});

test('wire: a UDP_PROBE of the wrong size or type decodes to null', () => {
  const probe = encodeUdpProbe(1, 2);
  assert.equal(decodeUdpProbe(probe, 0, UDP_PROBE_SIZE - 1), null, 'short');
  const long = Buffer.concat([probe, Buffer.alloc(1)]);
  assert.equal(decodeUdpProbe(long, 0, long.length), null, 'long');
  const other = Buffer.from(probe);
  other[1] = MessageType.TRANSPORT_DATA;
  assert.equal(decodeUdpProbe(other, 0, other.length), null, 'another type');
  const reserved = Buffer.from(probe);
  reserved[2] = 1;
  assert.equal(decodeUdpProbe(reserved, 0, reserved.length), null, 'reserved bytes not zero');
});

test('wire: PROBE_ACK decodes as a control message of kind PROBE_ACK with the sequence', () => {
  for (const seq of [1, 0x12345678, 0xffffffff]) {
    const ack = encodeProbeAck(seq);
    assert.equal(ack.length, PROBE_ACK_SIZE);
    assert.deepEqual(decodeControl(ack, 0, ack.length), { kind: Control.PROBE_ACK, seq });
  }
  const ack = encodeProbeAck(5);
  assert.equal(decodeControl(ack, 0, ack.length - 1), null, 'short');
  assert.equal(decodeControl(Buffer.concat([ack, Buffer.alloc(1)]), 0, ack.length + 1), null, 'long');
});

test('StreamDecoder: what may be passed on framed has its own prefix right before it; a cut datagram gets a buffer never reused', () => {
  const whole = frame(RUN);
  for (let cut = 1; cut < whole.length; cut++) {
    const seen: { buf: Buffer; off: number; len: number }[] = [];
    const d = new StreamDecoder((b) => {
      for (let i = 0; i < b.count; i++) seen.push({ buf: b.buf, off: b.offsets[i]!, len: b.lengths[i]! });
    });
    const a = whole.subarray(0, cut);
    const rest = whole.subarray(cut);
    assert.equal(d.push(Buffer.from(a)), null);
    assert.equal(d.push(Buffer.from(rest)), null);
    assert.equal(seen.length, RUN.length, `cut at ${cut}`);
    const assembled = new Set<Buffer>();
    for (const s of seen) {
      // The relay's rule: framed only where the 2 bytes before it are its own length.
      if (s.off >= 2) assert.equal(s.buf.readUInt16BE(s.off - 2), s.len, `cut at ${cut}: the bytes before a datagram at ${s.off} are its prefix`);
      else assert.equal(s.off, 1, 'only a datagram whose prefix was cut sits before offset 2');
      if (s.buf.length !== a.length && s.buf.length !== rest.length) {
        assert.ok(!assembled.has(s.buf), 'each assembled datagram in its own buffer');
        assembled.add(s.buf);
      }
    }
  }
});
