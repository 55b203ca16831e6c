// One thread of the relay-crypto section (bench/relay-crypto.ts): what a hop-by-hop
// relay does to each batch between its socket read and its socket write — open 64
// datagrams under the sender's key, write 64 headers, seal them under the receiver's.
// Runs where it is loaded: in a Worker (workerData) or, through relayCryptoLoop, on the main thread.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { TransportCipher } from '../lib/crypto/aead.js';
import { sealedLength, writeTransportHeader } from '../lib/protocol/wire.js';

export interface RelayCryptoJob {
  frameSize: number;
  batch: number;
  seconds: number;
  /** Int32Array over a SharedArrayBuffer: [0] ready count, [1] go flag. */
  gate: SharedArrayBuffer;
}

export interface RelayCryptoThreadResult {
  frames: number;
  seconds: number;
  /** CPU-seconds this thread used while measuring. */
  cpuSeconds: number;
}

// Distinct inputs so the cache sees a relay's working set, not one hot batch.
const INPUT_BATCHES = 16;

/** This thread's time on a CPU, in seconds (ns precision: /proc/thread-self/schedstat, first field). */
function threadCpuSeconds(): number {
  return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e9;
}

/** Open + re-seal batches for job.seconds after the gate opens; frames relayed and time taken. */
export function relayCryptoLoop(job: RelayCryptoJob): RelayCryptoThreadResult {
  const { frameSize, batch } = job;
  const sealed = sealedLength(frameSize);
  const fromSender = new TransportCipher(randomBytes(32));
  const toReceiver = new TransportCipher(randomBytes(32));
  const offsets = Uint32Array.from({ length: batch }, (_, i) => i * frameSize);
  const lengths = new Uint32Array(batch).fill(frameSize);
  const dgOffsets = Uint32Array.from({ length: batch }, (_, i) => i * sealed);
  const dgLengths = new Uint32Array(batch).fill(sealed);
  const results = new Uint8Array(batch);
  // What arrives: INPUT_BATCHES batches sealed by the sender (openBatch checks tags, not replay).
  const inputs = Array.from({ length: INPUT_BATCHES }, (_, b) => {
    const dg = Buffer.alloc(sealed * batch);
    for (let i = 0; i < batch; i++) writeTransportHeader(dg, dgOffsets[i]!, 1, b * batch + i);
    fromSender.sealBatch(randomBytes(frameSize * batch), offsets, lengths, batch, dg, dgOffsets);
    return dg;
  });
  const plain = Buffer.alloc(frameSize * batch);
  const out = Buffer.alloc(sealed * batch);
  let counter = 0;
  const relayOne = (input: Buffer): void => {
    if (fromSender.openBatch(input, dgOffsets, dgLengths, batch, plain, offsets, results) !== batch) throw new Error('relay-crypto: a datagram failed to open');
    for (let i = 0; i < batch; i++) writeTransportHeader(out, dgOffsets[i]!, 2, counter++);
    toReceiver.sealBatch(plain, offsets, lengths, batch, out, dgOffsets);
  };
  for (let r = 0; r < 50; r++) relayOne(inputs[r % INPUT_BATCHES]!); // warm up

  const gate = new Int32Array(job.gate);
  Atomics.add(gate, 0, 1);
  Atomics.notify(gate, 0);
  Atomics.wait(gate, 1, 0);

  const cpu0 = threadCpuSeconds();
  const t0 = process.hrtime.bigint();
  const until = t0 + BigInt(Math.round(job.seconds * 1e9));
  let frames = 0;
  let now = t0;
  for (let r = 0; now < until; r++) {
    relayOne(inputs[r % INPUT_BATCHES]!);
    frames += batch;
    if ((r & 7) === 7) now = process.hrtime.bigint();
  }
  now = process.hrtime.bigint();
  const cpuSeconds = threadCpuSeconds() - cpu0;
  fromSender.close();
  toReceiver.close();
  return { frames, seconds: Number(now - t0) / 1e9, cpuSeconds };
}

if (!isMainThread && (workerData as { relayCrypto?: RelayCryptoJob } | null)?.relayCrypto) {
  parentPort!.postMessage(relayCryptoLoop((workerData as { relayCrypto: RelayCryptoJob }).relayCrypto));
}
