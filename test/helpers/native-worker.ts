// A worker thread that really uses the addon (test/unit/native-workers.test.ts):
// its own UDP socket trading batches with the main thread's, the batched AEAD,
// then native handles left open for the test to terminate it over.
import { parentPort, workerData } from 'node:worker_threads';
import { EtherlinkError } from '../../lib/core/errors.js';
import { buffersToBatch } from '../../lib/core/frames.js';
import { TransportCipher } from '../../lib/crypto/aead.js';
import { encodeAddress } from '../../lib/io/address.js';
import { native } from '../../lib/io/native.js';
import { UdpSocket } from '../../lib/io/udp.js';
import { frameBatch, sealedBatch, sealedLayout, testKey } from './aead-batch.js';

export interface NativeWorkerData {
  /** 'exchange': the UDP and AEAD round, then handles left open; 'drop': dropCapabilities() and exit. */
  mode: 'exchange' | 'drop';
  id: number;
  /** The main thread's echoing socket on 127.0.0.1. */
  hubPort: number;
  /** Datagrams to trade with the hub, and frames to seal. */
  count: number;
  /** Once flooded: 'wait' to be terminated, 'exit' to call process.exit() inside the receive callback. */
  end: 'wait' | 'exit';
}

export type NativeWorkerMessage =
  | { kind: 'exchanged'; id: number; echoed: number; sealed: Uint8Array; reopened: number; plaintextMatches: boolean; forgedRejected: boolean; errorIsEtherlink: boolean }
  | { kind: 'open'; id: number; port: number }
  | { kind: 'flooded'; id: number }
  | { kind: 'dropped'; threads: number }
  | { kind: 'failed'; id: number; message: string };

const RESEND_MS = 100;
const EXCHANGE_TIMEOUT_MS = 10_000;
// How long each flooded receive callback keeps the worker busy, so a terminate lands inside one.
const BUSY_PER_BATCH_MS = 2;

const data = workerData as NativeWorkerData;
const post = (m: NativeWorkerMessage): void => parentPort!.postMessage(m);

/** Datagram i carries the worker id and i, then a pattern the echo must keep. */
function datagram(id: number, i: number): Buffer {
  const d = Buffer.alloc(i % 2 === 0 ? 1400 : 60);
  d[0] = id;
  d.writeUInt16BE(i, 1);
  for (let j = 3; j < d.length; j++) d[j] = (id + i + j) & 0xff;
  return d;
}

async function exchange(): Promise<number> {
  const sock = UdpSocket.bind({ address: '127.0.0.1' });
  const hub = encodeAddress('127.0.0.1', data.hubPort);
  const missing = new Set(Array.from({ length: data.count }, (_, i) => i));
  sock.onDatagrams((batch) => {
    for (let k = 0; k < batch.count; k++) {
      const got = batch.buf.subarray(batch.offsets[k]!, batch.offsets[k]! + batch.lengths[k]!);
      const i = got.readUInt16BE(1);
      if (got[0] === data.id && got.equals(datagram(data.id, i))) missing.delete(i);
    }
  });
  const sendMissing = (): void => {
    const frames = [...missing].map((i) => datagram(data.id, i));
    sock.send(buffersToBatch(frames), Buffer.concat(frames.map(() => hub)));
  };
  const started = Date.now();
  while (missing.size > 0 && Date.now() - started < EXCHANGE_TIMEOUT_MS) {
    sendMissing();
    await new Promise((r) => setTimeout(r, RESEND_MS));
  }
  sock.close();
  return data.count - missing.size;
}

/** Seal in this thread; open it again; a forged tag must fail. */
function aead(): { sealed: Buffer; reopened: number; plaintextMatches: boolean; forgedRejected: boolean } {
  const sealed = sealedBatch(data.id, data.count);
  const { src, offsets, lengths } = frameBatch(data.id, data.count);
  const { dstOffsets, dstLengths } = sealedLayout(lengths);
  const key = new TransportCipher(testKey(data.id));
  const plain = Buffer.alloc(src.length);
  const results = new Uint8Array(data.count);
  const reopened = key.openBatch(sealed, dstOffsets, dstLengths, data.count, plain, offsets, results);
  const plaintextMatches = plain.equals(src);
  const forged = Buffer.from(sealed);
  forged[dstOffsets[0]! + dstLengths[0]! - 1]! ^= 1;
  key.openBatch(forged, dstOffsets, dstLengths, 1, plain, offsets, results);
  const forgedRejected = results[0] === 0;
  key.close();
  return { sealed, reopened, plaintextMatches, forgedRejected };
}

/** Handles of each kind that needs no privilege, left open: the test ends this thread over them. */
function leaveOpen(): void {
  const sock = UdpSocket.bind({ address: '127.0.0.1' });
  new (native().LinkWatcher)(() => {}, new Uint32Array(3 * 64));
  const key = new TransportCipher(testKey(data.id));
  const { src, offsets, lengths } = frameBatch(data.id, 8);
  const { dst, dstOffsets } = sealedLayout(lengths);
  let flooded = false;
  sock.onDatagrams(() => {
    if (!flooded) {
      flooded = true;
      post({ kind: 'flooded', id: data.id });
      if (data.end === 'exit') process.exit(0);
    }
    // Busy inside the native callback, with the addon's memory in use.
    const until = Date.now() + BUSY_PER_BATCH_MS;
    while (Date.now() < until) key.sealBatch(src, offsets, lengths, 8, dst, dstOffsets);
  });
  post({ kind: 'open', id: data.id, port: sock.port });
}

async function main(): Promise<void> {
  if (data.mode === 'drop') {
    post({ kind: 'dropped', threads: native().dropCapabilities().threads });
    return;
  }
  let errorIsEtherlink = false;
  try {
    UdpSocket.bind({ address: 'localhost' });
  } catch (err) {
    errorIsEtherlink = err instanceof EtherlinkError && err.code === 'ERR_INVALID_ADDRESS';
  }
  const echoed = await exchange();
  post({ kind: 'exchanged', id: data.id, echoed, ...aead(), errorIsEtherlink });
  leaveOpen();
}

main().catch((err: unknown) => post({ kind: 'failed', id: data.id, message: (err as Error).stack ?? String(err) }));
