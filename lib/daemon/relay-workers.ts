// The vswitch's relay on every core (`vswitch --workers N`): N worker threads
// (lib/daemon/relay-worker.ts), each with a socket in the SO_REUSEPORT group
// of every UDP port the switch listens on. The port's classic-BPF program
// (UdpSocket.steerPairData) sends pair data for member D to worker D mod N, so
// one destination's traffic is relayed by one thread, in order, and all else
// (handshakes, hop-by-hop frames, control) to the main thread's socket, as
// before. The main thread stays the only source of truth: it owns membership
// and programs every route into its own socket's relay table and, through
// messages, into each worker's copy. Relay counters and socket counters are
// SharedArrayBuffers the main thread adds up for status, so they stay exact.
// With UDP GRO the kernel steers a train of one sender's datagrams by its
// first one: the rest follows it to that socket. Every table is complete, so
// it is relayed all the same (what a worker cannot relay it passes up), but a
// destination's datagrams may then be relayed by two threads, and reordered
// between trains, within the receivers' replay window.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { EtherlinkError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { RELAY_COUNTERS_PER_MEMBER, RelayCounter, UdpStat } from '../io/native.js';
import type { UdpStats } from '../io/udp.js';

/** Most relay workers (the BPF program's modulus has no real limit; threads do). */
export const MAX_RELAY_WORKERS = 64;
/**
 * Batches a worker may have on its way to the main thread (pair data it could
 * not relay: for a member on a stream or another socket, from no member, to
 * one that is gone). A bounded queue: beyond it batches are dropped and
 * counted, as a full socket buffer would drop them.
 */
export const RELAY_PASS_UP_QUEUE = 256;
/** @internal Slots of RelayWorkerData.queue. */
export const QUEUE_DROPPED = 0;
/** @internal */
export const QUEUE_IN_FLIGHT = 1;
/** How long workers may take to bind before the switch gives up. */
export const RELAY_WORKER_START_MS = 10_000;
/** Member ids the relay counters cover (u16 ids). */
const MEMBER_IDS = 65_536;

/** The default worker count: one per core (the main thread then only switches and handshakes), none on a one-core machine. */
export function defaultRelayWorkers(): number {
  const n = availableParallelism();
  return n > 1 ? n : 0;
}

/** @internal What a worker is started with. */
export interface RelayWorkerData {
  /** The switch's UDP sockets, in order: address and bound port. */
  listen: { address: string; port: number }[];
  /** Per socket: the relay counters' SharedArrayBuffer (RELAY_COUNTERS_PER_MEMBER doubles per member id). */
  relayCounters: SharedArrayBuffer[];
  /** [QUEUE_DROPPED]: datagrams dropped with the queue full; [QUEUE_IN_FLIGHT]: batches posted and not yet handled. */
  queue: Int32Array;
  queueLimit: number;
}

/** @internal Main thread -> worker. */
export type RelayWorkerMessage = { kind: 'route'; link: number; id: number; addr: Uint8Array | null; group: number } | { kind: 'close' };

/** @internal Worker -> main thread. */
export type RelayWorkerReport =
  | { kind: 'ready'; stats: Float64Array[]; ports: number[] }
  | { kind: 'failed'; message: string; code?: string }
  | { kind: 'datagrams'; link: number; datagrams: Uint8Array[]; addrs: Uint8Array };

/** One worker as status shows it: its sockets' counters (one per listen address) and what it passed up or dropped. */
export interface RelayWorkerStatus {
  index: number;
  sockets: UdpStats[];
  /** Datagrams it could not relay and could not pass up either (the queue to the main thread was full). */
  passUpDropped: number;
  /** False once it exited (or never started). */
  live: boolean;
}

interface WorkerSlot {
  worker: Worker;
  relayCounters: Float64Array[];
  stats: Float64Array[] | null;
  queue: Int32Array;
  /** It exited: its socket is out of the group. */
  gone: boolean;
}

const STAT_NAMES = Object.keys(UdpStat) as (keyof typeof UdpStat)[];

/** The relay workers of one SwitchServer. */
export class RelayWorkers {
  private readonly slots: WorkerSlot[] = [];
  /** Every route as the main thread last set it, per link: replayed to a worker that is not ready yet. */
  private readonly routes: Map<number, { addr: Uint8Array | null; group: number }>[];
  private closed = false;
  /** Resolves once every worker has bound its sockets; rejects with the first failure. */
  readonly ready: Promise<void>;

  /**
   * Start `count` workers on the switch's sockets (`listen`: their addresses
   * and bound ports, in link order). `passUp` gets the datagrams a worker
   * could not relay, to be handled as if the main thread's socket of `link`
   * had received them; `steer` (re)programs the ports' BPF program for that
   * many workers, once all are bound and whenever one exits.
   */
  constructor(
    count: number,
    listen: readonly { address: string; port: number }[],
    private readonly passUp: (link: number, datagrams: Uint8Array[], addrs: Uint8Array) => void,
    private readonly steer: (workers: number) => void,
    private readonly log: Logger,
  ) {
    if (!Number.isInteger(count) || count < 1 || count > MAX_RELAY_WORKERS) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `relay workers: ${count}; give an integer from 1 to ${MAX_RELAY_WORKERS} (0 for none)`);
    this.routes = listen.map(() => new Map());
    // One after another: the kernel numbers a SO_REUSEPORT group in bind order, so worker i holds socket 1 + i.
    this.ready = (async () => {
      for (let i = 0; i < count; i++) {
        if (this.closed) return;
        await this.start(i, listen);
      }
      if (!this.closed) this.steer(this.live);
    })();
    this.ready.catch(() => {});
  }

  /** Workers alive (started and not exited). */
  private get live(): number {
    return this.slots.filter((s) => s.stats !== null && !s.gone).length;
  }

  private start(i: number, listen: readonly { address: string; port: number }[]): Promise<void> {
    const relayCounters = listen.map(() => new SharedArrayBuffer(MEMBER_IDS * RELAY_COUNTERS_PER_MEMBER * 8));
    const queue = new Int32Array(new SharedArrayBuffer(8));
    const data: RelayWorkerData = { listen: listen.map((l) => ({ address: l.address, port: l.port })), relayCounters, queue, queueLimit: RELAY_PASS_UP_QUEUE };
    const worker = new Worker(new URL('./relay-worker.js', import.meta.url), { workerData: data, name: `etherlink relay ${i + 1}` });
    const slot: WorkerSlot = { worker, relayCounters: relayCounters.map((b) => new Float64Array(b)), stats: null, queue, gone: false };
    this.slots.push(slot);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error): void => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        // A worker that failed to start is no use: it goes (and its sockets with it).
        void worker.terminate();
        reject(err);
      };
      const timer = setTimeout(() => fail(new EtherlinkError('ETIMEDOUT', `relay worker ${i + 1} did not bind within ${RELAY_WORKER_START_MS} ms`)), RELAY_WORKER_START_MS);
      worker.on('message', (msg: RelayWorkerReport) => {
        if (msg.kind === 'ready') {
          clearTimeout(timer);
          settled = true;
          if (this.closed) {
            void worker.terminate();
            resolve();
            return;
          }
          slot.stats = msg.stats;
          // Routes set while it started.
          this.routes.forEach((table, link) => table.forEach((r, id) => this.post(slot, { kind: 'route', link, id, addr: r.addr, group: r.group })));
          resolve();
        } else if (msg.kind === 'failed') {
          fail(new EtherlinkError(msg.code ?? 'ERR_WORKER_INIT_FAILED', `relay worker ${i + 1}: ${msg.message}`));
        } else if (msg.kind === 'datagrams') {
          try {
            this.passUp(msg.link, msg.datagrams, msg.addrs);
          } finally {
            Atomics.sub(queue, QUEUE_IN_FLIGHT, 1);
          }
        }
      });
      worker.on('error', (err) => {
        if (!this.closed) this.log.error(`relay worker ${i + 1} failed: ${err.message}`);
        fail(err);
      });
      worker.on('exit', (code) => {
        slot.gone = true;
        // Gone before it was ready (process.exit, terminate): startup must not wait for it for ever.
        fail(new EtherlinkError('ERR_WORKER_EXITED', `relay worker ${i + 1} exited (code ${code}) before it was ready`));
        if (this.closed) return;
        // Its socket left the group and the kernel moved the last one into its place: steer over those left
        // (every worker has the whole relay table, so whichever holds a slot relays correctly).
        const left = this.live;
        this.log.error(`relay worker ${i + 1} exited (code ${code}); pair data is steered over the ${left} left${left === 0 ? ' (the main thread relays alone)' : ''}`);
        this.steer(left);
      });
    });
  }

  get count(): number {
    return this.slots.length;
  }

  /** Mirror UdpSocket.setRelayRoute of link `link` into every worker. */
  setRoute(link: number, id: number, addr: Buffer | null, group = 0): void {
    if (this.closed) return;
    const copy = addr === null ? null : new Uint8Array(addr);
    if (copy === null) this.routes[link]?.delete(id);
    else this.routes[link]?.set(id, { addr: copy, group });
    for (const s of this.slots) if (s.stats !== null) this.post(s, { kind: 'route', link, id, addr: copy, group });
  }

  /** Relayed-traffic counters of member `id` on link `link`, over every worker (RelayCounter order). */
  addRelayed(link: number, id: number, into: { toFrames: number; toBytes: number; fromFrames: number; fromBytes: number }): void {
    const at = id * RELAY_COUNTERS_PER_MEMBER;
    for (const s of this.slots) {
      const c = s.relayCounters[link];
      if (c === undefined) continue;
      into.toFrames += c[at + RelayCounter.toDatagrams]!;
      into.toBytes += c[at + RelayCounter.toBytes]!;
      into.fromFrames += c[at + RelayCounter.fromDatagrams]!;
      into.fromBytes += c[at + RelayCounter.fromBytes]!;
    }
  }

  /** Each worker's socket counters, read from shared memory. */
  status(): RelayWorkerStatus[] {
    return this.slots.map((s, index) => ({
      index,
      sockets: (s.stats ?? []).map((a) => {
        const out = {} as UdpStats;
        for (const name of STAT_NAMES) out[name] = a[UdpStat[name]]!;
        return out;
      }),
      passUpDropped: Atomics.load(s.queue, QUEUE_DROPPED),
      live: s.stats !== null && !s.gone,
    }));
  }

  /** Stop every worker (their sockets leave the port's group; the main thread's socket relays alone again). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.slots) {
      this.post(s, { kind: 'close' });
      void s.worker.terminate();
    }
  }

  private post(slot: WorkerSlot, msg: RelayWorkerMessage): void {
    try {
      slot.worker.postMessage(msg);
    } catch {
      // A worker that is gone gets nothing; the main thread's socket relays its share.
    }
  }
}
