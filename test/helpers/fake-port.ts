// A Port for Switch unit tests: records what the switch sends it (copied, since
// the views die after send; and which slab and offsets they were), and lets a
// test inject frames as if the port had received them.
import assert from 'node:assert/strict';
import { batchToBuffers, buffersToBatch, type FrameBatch } from '../../lib/core/frames.js';
import type { BatchReceiver, Port } from '../../lib/core/port.js';

export class FakePort implements Port {
  /** The frames of each send() call. */
  sends: Buffer[][] = [];
  /** The slab each send() call's views pointed into, and their offsets there. */
  slabs: Buffer[] = [];
  offsets: number[][] = [];
  receiver: BatchReceiver | null = null;
  constructor(readonly name: string) {}
  send(batch: FrameBatch): void {
    this.sends.push(batchToBuffers(batch));
    this.slabs.push(batch.buf);
    this.offsets.push([...batch.offsets.subarray(0, batch.count)]);
  }
  setReceiver(r: BatchReceiver | null): void {
    this.receiver = r;
  }
  /** The frames, as one batch into the switch; returns that batch. */
  inject(...frames: Buffer[]): FrameBatch {
    const batch = buffersToBatch(frames);
    this.injectBatch(batch);
    return batch;
  }
  injectBatch(batch: FrameBatch): void {
    assert.ok(this.receiver, `${this.name} has no receiver`);
    this.receiver(batch);
  }
  /** Every frame sent to this port, in order. */
  get frames(): Buffer[] {
    return this.sends.flat();
  }
  reset(): void {
    this.sends = [];
    this.slabs = [];
    this.offsets = [];
  }
}
