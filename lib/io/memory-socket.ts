// An in-memory stand-in for a UDP socket (as wireguard-go's conn/bindtest):
// every datagram sent is handed, copied, to a callback, so the protocol can be
// driven and its wire tampered with in tests, without the kernel.
import type { FrameBatch } from '../core/frames.js';
import { ADDR_SLOT } from './native.js';
import type { DatagramSocket } from './udp.js';

/** Receives each datagram sent: its bytes and its 20-byte destination slot (both copies). */
export type DatagramSink = (data: Buffer, destination: Buffer) => void;

export class MemorySocket implements DatagramSocket {
  closed = false;

  constructor(private readonly sink: DatagramSink) {}

  send(batch: FrameBatch, addrs: Buffer): number {
    if (this.closed) return 0;
    for (let i = 0; i < batch.count; i++) {
      const off = batch.offsets[i]!;
      this.sink(Buffer.from(batch.buf.subarray(off, off + batch.lengths[i]!)), Buffer.from(addrs.subarray(i * ADDR_SLOT, (i + 1) * ADDR_SLOT)));
    }
    return batch.count;
  }

  sendTo(buf: Buffer, addr: Buffer, addrOffset = 0): number {
    if (this.closed) return 0;
    this.sink(Buffer.from(buf), Buffer.from(addr.subarray(addrOffset, addrOffset + ADDR_SLOT)));
    return 1;
  }

  /** Sends nothing from now on. */
  close(): void {
    this.closed = true;
  }
}
