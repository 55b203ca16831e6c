// Two Ports joined by an in-memory wire, for tests and embedding: what one
// end sends, the other end's receiver gets, copied into one fresh slab.
import { MutableFrameBatch, type FrameBatch } from '../core/frames.js';
import type { BatchReceiver, Port } from '../core/port.js';

/** Batches in flight per direction; beyond this, send() drops and counts, like a full NIC queue. */
export const MAX_PENDING_BATCHES = 1024;

/** What a memory port sent, delivered and dropped. */
export interface MemoryPortCounters {
  sentBatches: number;
  sentFrames: number;
  deliveredFrames: number;
  /** Dropped: queue full, or no receiver at delivery time. */
  droppedFrames: number;
}

/**
 * One end of the pair. Delivery happens on a microtask, not inside send():
 * a real wire is asynchronous, and a synchronous hand-off would re-enter a
 * switch from its own send() and grow the stack across chained switches.
 * Order is preserved. `await settle()` (or any later macrotask) sees it done.
 */
export class MemoryPort implements Port {
  readonly counters: MemoryPortCounters = { sentBatches: 0, sentFrames: 0, deliveredFrames: 0, droppedFrames: 0 };
  /** @internal */
  peer!: MemoryPort;
  private receiver: BatchReceiver | null = null;
  private pending = 0;
  private closed = false;

  constructor(readonly name: string) {}

  setReceiver(receiver: BatchReceiver | null): void {
    this.receiver = receiver;
  }

  send(batch: FrameBatch): void {
    if (batch.count === 0) return;
    if (this.closed || this.pending >= MAX_PENDING_BATCHES) {
      this.counters.droppedFrames += batch.count;
      return;
    }
    // The caller's views die when send() returns, so copy now.
    const copy = compact(batch);
    this.counters.sentBatches++;
    this.counters.sentFrames += copy.count;
    this.pending++;
    queueMicrotask(() => {
      this.pending--;
      this.peer.deliver(copy);
    });
  }

  /** Stop both directions; frames already in flight are dropped on arrival. */
  close(): void {
    this.closed = true;
    this.peer.closed = true;
  }

  private deliver(batch: FrameBatch): void {
    const receiver = this.receiver;
    if (receiver === null || this.closed) {
      this.counters.droppedFrames += batch.count;
      return;
    }
    this.counters.deliveredFrames += batch.count;
    receiver(batch);
  }
}

/** Two ports joined by an in-memory wire: what one sends, the other receives (asynchronously, in order). */
export function createMemoryPortPair(names: readonly [string, string] = ['mem-a', 'mem-b']): [MemoryPort, MemoryPort] {
  const a = new MemoryPort(names[0]);
  const b = new MemoryPort(names[1]);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** Resolves after every microtask already queued, including memory-port deliveries they trigger. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The batch's frames packed back to back in one new slab. */
function compact(batch: FrameBatch): MutableFrameBatch {
  let total = 0;
  for (let i = 0; i < batch.count; i++) total += batch.lengths[i]!;
  const out = new MutableFrameBatch(Buffer.allocUnsafe(Math.max(total, 1)), batch.count);
  let pos = 0;
  for (let i = 0; i < batch.count; i++) {
    const off = batch.offsets[i]!;
    const len = batch.lengths[i]!;
    batch.buf.copy(out.buf, pos, off, off + len);
    out.push(pos, len);
    pos += len;
  }
  return out;
}
