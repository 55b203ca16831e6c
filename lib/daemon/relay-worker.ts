// One relay worker thread of a vswitch (lib/daemon/relay-workers.ts): a UDP
// socket per listen address, bound with SO_REUSEPORT to the switch's own port,
// that receives the pair data the port's BPF program steers to it and relays
// it in the addon, from the copy of the relay table the main thread keeps
// current. What it cannot relay goes to the main thread, which handles it as
// if its own socket had received it; the counters live in SharedArrayBuffers
// the main thread reads.
import { parentPort, workerData } from 'node:worker_threads';
import { UdpSocket } from '../io/udp.js';
import { ADDR_SLOT } from '../io/native.js';
import { QUEUE_DROPPED, QUEUE_IN_FLIGHT, type RelayWorkerData, type RelayWorkerMessage, type RelayWorkerReport } from './relay-workers.js';

const data = workerData as RelayWorkerData;
const port = parentPort!;
const sockets: UdpSocket[] = [];

try {
  for (let link = 0; link < data.listen.length; link++) {
    const l = data.listen[link]!;
    const s = UdpSocket.bind({ address: l.address, port: l.port, offload: true, reusePort: true, sharedStats: true });
    s.setRelayCounters(new Float64Array(data.relayCounters[link]!));
    s.onDatagrams((batch, addrs) => {
      // Pair data this table could not relay (a member on a stream or another socket, a source that is no
      // member, a destination that is gone; with GRO, whatever shared a train with it): copied to the main
      // thread through a bounded queue. When the main thread is that far behind, the batch is dropped and counted.
      if (Atomics.load(data.queue, QUEUE_IN_FLIGHT) >= data.queueLimit) {
        Atomics.add(data.queue, QUEUE_DROPPED, batch.count);
        return;
      }
      Atomics.add(data.queue, QUEUE_IN_FLIGHT, 1);
      const n = batch.count;
      const datagrams: Buffer[] = [];
      for (let i = 0; i < n; i++) datagrams.push(Buffer.from(batch.buf.subarray(batch.offsets[i]!, batch.offsets[i]! + batch.lengths[i]!)));
      const msg: RelayWorkerReport = { kind: 'datagrams', link, datagrams, addrs: Buffer.from(addrs.subarray(0, n * ADDR_SLOT)) };
      port.postMessage(msg);
    });
    sockets.push(s);
  }
  const ready: RelayWorkerReport = { kind: 'ready', stats: sockets.map((s) => s.statsArray), ports: sockets.map((s) => s.port) };
  port.postMessage(ready);
} catch (err) {
  for (const s of sockets) s.close();
  const e = err as Error & { code?: string };
  const failed: RelayWorkerReport = { kind: 'failed', message: e.message, ...(e.code !== undefined ? { code: e.code } : {}) };
  port.postMessage(failed);
}

port.on('message', (msg: RelayWorkerMessage) => {
  if (msg.kind === 'route') {
    sockets[msg.link]?.setRelayRoute(msg.id, msg.addr === null ? null : Buffer.from(msg.addr), msg.group);
  } else if (msg.kind === 'close') {
    for (const s of sockets) s.close();
    port.close();
  }
});
