// The latency floor of a userspace hop on this machine: a UDP ping-pong
// between two Node processes on loopback, one datagram every 10 ms, so both
// sleep between rounds as vports and a vswitch do between pings. Each round
// trip is two process wake-ups; an EtherLink ping crosses six (each vport
// twice, the vswitch twice), kernel VXLAN none. Bounded: ROUNDS rounds, and
// the echo process exits with its parent.
import { fork } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { fileURLToPath } from 'node:url';

const ROUNDS = 300;
const GAP_MS = 10;
const TIMEOUT_MS = 20_000;

export interface WakeupResult {
  rounds: number;
  minUs: number;
  medianUs: number;
  avgUs: number;
}

/** Run the ping-pong; resolves with round-trip figures in microseconds. */
export function runWakeup(): Promise<WakeupResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['echo'], { stdio: 'ignore', serialization: 'json' } as never);
    const s = createSocket('udp4');
    const rtts: number[] = [];
    let sentAt = 0n;
    const done = (err?: Error): void => {
      clearTimeout(guard);
      s.close();
      child.kill();
      if (err) return reject(err);
      rtts.sort((a, b) => a - b);
      resolve({ rounds: rtts.length, minUs: rtts[0]!, medianUs: rtts[rtts.length >> 1]!, avgUs: rtts.reduce((a, b) => a + b, 0) / rtts.length });
    };
    const guard = setTimeout(() => done(new Error(`wake-up ping-pong: ${rtts.length} of ${ROUNDS} rounds in ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    child.once('error', (err) => done(err));
    child.once('message', (port) => {
      const send = (): void => {
        sentAt = process.hrtime.bigint();
        s.send(Buffer.alloc(64), Number(port), '127.0.0.1');
      };
      s.on('message', () => {
        rtts.push(Number(process.hrtime.bigint() - sentAt) / 1000);
        if (rtts.length >= ROUNDS) done();
        else setTimeout(send, GAP_MS);
      });
      s.bind(0, '127.0.0.1', send);
    });
  });
}

if (process.argv[2] === 'echo') {
  const s = createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  s.bind(0, '127.0.0.1', () => process.send!(s.address().port));
  process.on('disconnect', () => process.exit(0));
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await runWakeup();
  console.log(`two Node processes, UDP ping-pong on loopback every ${GAP_MS} ms, ${r.rounds} rounds: RTT min ${r.minUs.toFixed(0)} us, median ${r.medianUs.toFixed(0)} us, avg ${r.avgUs.toFixed(0)} us (2 wake-ups per round trip)`);
}
