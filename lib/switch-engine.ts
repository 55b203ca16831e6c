// The seam between the switch server and a protocol: plaintext v1
// (lib/plain-switch.ts) or authenticated and encrypted v2 (lib/secure/switch-engine.ts).
import type { FrameBatch } from './core/frames.js';
import type { Logger } from './core/log.js';
import type { TxQueue } from './io/tx-queue.js';
import type { UdpSocket } from './io/udp.js';

/** A port as the protocol knows it; `id` is stable for the port's lifetime (across rekeys and roaming). */
export interface EnginePeer {
  readonly id: number;
  readonly name: string;
  /** 20-byte underlay address slot; updated in place when the port roams. */
  readonly endpoint: Buffer;
  /** Base64 static public key (secure mode). */
  readonly publicKey?: string;
  readonly joinedAt: number;
  lastSeen: number;
  /** The socket the port talks to. */
  socket: UdpSocket;
}

/** What the engine asks of the server. */
export interface SwitchEngineHost {
  readonly log: Logger;
  /** A port is in: attach it to the switch. */
  joined(peer: EnginePeer, detail: Record<string, string | number>): void;
  left(peer: EnginePeer, reason: string): void;
  /** A frame for the switch, from `peer`: a view into the receive slab of the current batch. */
  deliver(peer: EnginePeer, buf: Buffer, off: number, len: number): void;
  /** A control datagram (slow path). */
  sendTo(socket: UdpSocket, datagram: Buffer, addr: Buffer): void;
  queueFor(socket: UdpSocket): TxQueue;
}

export interface SessionStatus {
  name: string;
  publicKey?: string;
  address: string;
  joinedAt: string;
  lastSeenS: number;
  switchPort?: number;
  [k: string]: unknown;
}

export interface SwitchEngine {
  readonly mode: 'insecure' | 'secure';
  /** Handle one receive batch of one socket: data goes to host.deliver, control to replies. */
  receive(socket: UdpSocket, batch: FrameBatch, addrs: Buffer, now: number): void;
  /** Frames the switch sends out of `peer`'s port: into datagrams on its socket's queue. */
  transmit(peer: EnginePeer, batch: FrameBatch): void;
  /** Timers: expire silent ports, stale keys, pending handshakes. */
  tick(now: number): void;
  /** Say goodbye to every port. */
  close(now: number): void;
  sessions(now: number): SessionStatus[];
  counters(): Record<string, number>;
  readonly size: number;
}
