// What a switch port is: anything that sends and receives frame batches —
// a local TAP device, a remote peer over UDP, an in-memory pair.
import type { FrameBatch } from './frames.js';

/** Receives one batch; its views are valid only during the call. */
export type BatchReceiver = (batch: FrameBatch) => void;

/** What the Switch forwards between: anything that sends and receives frame batches. */
export interface Port {
  /** Human name for logs and status (e.g. "tap0", "alice@192.0.2.1:4242"). */
  readonly name: string;
  /**
   * Emit frames out of this port. The batch's views are valid only during
   * the call: an implementation that sends later must copy.
   */
  send(batch: FrameBatch): void;
  /** The switch installs its ingress handler here; null detaches. */
  setReceiver(receiver: BatchReceiver | null): void;
}
