// File transfer over TCP across the virtual LAN: proves application traffic
// arrives intact by printing byte count and SHA-256 on both ends.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Transform, type TransformCallback } from 'node:stream';

export interface TransferResult {
  bytes: number;
  sha256: string;
  seconds: number;
}

/** Progress every PROGRESS_INTERVAL_MS: a bar on a TTY, otherwise nothing until the end. */
const PROGRESS_INTERVAL_MS = 200;

class Meter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

export type ProgressFn = (bytes: number, total: number | undefined) => void;

function progressTimer(meter: Meter, total: number | undefined, onProgress: ProgressFn | undefined): () => void {
  if (!onProgress) return () => {};
  const t = setInterval(() => onProgress(meter.bytes, total), PROGRESS_INTERVAL_MS);
  return () => {
    clearInterval(t);
    onProgress(meter.bytes, total);
  };
}

/** Accept one connection on host:port and write what arrives to `outFile`. `onListening` fires once bound. */
export async function receiveFile(
  host: string,
  port: number,
  outFile: string,
  opts: { onListening?: () => void; onProgress?: ProgressFn; timeoutMs?: number } = {},
): Promise<TransferResult> {
  const server = createServer();
  const socket = await new Promise<Socket>((resolve, reject) => {
    server.once('error', reject);
    server.once('connection', resolve);
    server.listen({ host, port }, () => opts.onListening?.());
  });
  server.close();
  const started = Date.now();
  const meter = new Meter();
  const stop = progressTimer(meter, undefined, opts.onProgress);
  const idle = opts.timeoutMs ?? 60_000;
  socket.setTimeout(idle, () => socket.destroy(new Error(`no data for ${idle} ms`)));
  try {
    await pipeline(socket, meter, createWriteStream(outFile));
  } finally {
    stop();
  }
  return { bytes: meter.bytes, sha256: meter.hash.digest('hex'), seconds: (Date.now() - started) / 1000 };
}

/** Connect to host:port and send `file`; resolves once the receiver has everything (half-close then close). */
export async function sendFile(
  host: string,
  port: number,
  file: string,
  opts: { onProgress?: ProgressFn; connectTimeoutMs?: number } = {},
): Promise<TransferResult> {
  const total = statSync(file).size;
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => s.destroy(new Error(`could not connect to ${host}:${port} within ${opts.connectTimeoutMs ?? 10_000} ms`)), opts.connectTimeoutMs ?? 10_000);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  const started = Date.now();
  const meter = new Meter();
  const stop = progressTimer(meter, total, opts.onProgress);
  const closed = new Promise<void>((resolve, reject) => {
    socket.once('close', (hadError) => (hadError ? reject(new Error('connection closed with an error')) : resolve()));
  });
  socket.resume(); // the receiver sends nothing; drain so 'close' can come
  try {
    await pipeline(createReadStream(file), meter, socket);
    await closed;
  } finally {
    stop();
  }
  return { bytes: meter.bytes, sha256: meter.hash.digest('hex'), seconds: (Date.now() - started) / 1000 };
}

/** A one-line bar for terminals. */
export function formatProgress(bytes: number, total: number | undefined, width = 30): string {
  const mb = (bytes / 1e6).toFixed(1);
  if (total === undefined || total === 0) return `${mb} MB`;
  const frac = Math.min(1, bytes / total);
  const filled = Math.round(frac * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${mb}/${(total / 1e6).toFixed(1)} MB`;
}
