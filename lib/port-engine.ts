// The seam between a port (vport) and a protocol: plaintext v1 (lib/plain-port.ts)
// or authenticated and encrypted v2 (lib/secure/port-engine.ts).
import type { FrameBatch } from './core/frames.js';
import type { Logger } from './core/log.js';
import type { TxQueue } from './io/tx-queue.js';

export type PortEngineEvent =
  | { type: 'joined'; session: string; attempts: number; keepaliveMs: number }
  | { type: 'rekeyed'; session: string }
  | { type: 'switch-dead'; silentMs: number }
  | { type: 'left-by-switch' }
  | { type: 'rejected'; reason: string }
  | { type: 'incompatible-version'; message: string }
  | { type: 'handshake-failed'; message: string };

export interface PortEngineHost {
  readonly log: Logger;
  /** The switch's 20-byte address slot (updated in place when the name resolves elsewhere). */
  readonly switchAddr: Buffer;
  readonly queue: TxQueue;
  /** A control datagram to the switch (slow path). */
  send(datagram: Buffer): void;
  /** A frame from the switch for the TAP: a view into the receive slab, valid for this batch. */
  deliver(buf: Buffer, off: number, len: number): void;
  event(e: PortEngineEvent): void;
}

export interface PortEngineStatus {
  state: string;
  session: string;
  rttMs: number | undefined;
  lastHandshakeS?: number;
  counters: Record<string, number>;
}

export interface PortEngine {
  readonly mode: 'insecure' | 'secure';
  readonly isJoined: boolean;
  start(now: number): void;
  /** Datagrams from the switch's address only (the caller filters the rest). */
  receive(batch: FrameBatch, slots: Uint16Array, n: number, now: number): void;
  /** TAP frames to the switch. */
  transmit(batch: FrameBatch): void;
  poll(now: number): void;
  /** Absolute ms of the next poll(), or undefined. */
  nextTimeout(): number | undefined;
  leave(now: number): void;
  status(now: number): PortEngineStatus;
}
