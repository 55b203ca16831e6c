// The way from a port to its switch: datagrams addressed to the switch go over
// UDP or, when the transport policy says so, over the open stream; everything
// else (direct paths to other ports, the reflector, UDP probes) always goes
// over UDP. A DatagramSocket, so the TxQueue and the sessions above do not know.
import type { FrameBatch } from '../core/frames.js';
import { addressEquals } from '../io/address.js';
import { ADDR_SLOT } from '../io/native.js';
import type { StreamLink } from '../io/stream.js';
import type { DatagramSocket, UdpSocket } from '../io/udp.js';

/** A window of a batch (a run of datagrams to one kind of destination), reused: no allocation per frame. */
class RunBatch implements FrameBatch {
  buf: Buffer = Buffer.alloc(0);
  offsets: Uint32Array = new Uint32Array(0);
  lengths: Uint32Array = new Uint32Array(0);
  count = 0;
}

export class SwitchRoute implements DatagramSocket {
  /** The stream datagrams to the switch go over, or null: UDP. */
  stream: StreamLink | null = null;
  /** When something last went to the switch (ms). */
  lastToSwitchAt = 0;
  /** Datagrams for the switch dropped: no way to it (a ws:// switch before its stream is up). */
  dropped = 0;
  private readonly run = new RunBatch();

  constructor(
    readonly udp: UdpSocket,
    /** The switch's address slot (updated in place when it moves). */
    private readonly switchAddr: Buffer,
    /** Whether the switch may be reached over UDP at all (not for a ws:// address alone). */
    private readonly udpAllowed: boolean,
  ) {}

  get closed(): boolean {
    return this.udp.closed;
  }

  private toSwitch(addrs: Buffer, i: number): boolean {
    return addressEquals(addrs, i * ADDR_SLOT, this.switchAddr, 0);
  }

  send(batch: FrameBatch, addrs: Buffer): number {
    const stream = this.stream;
    if (stream === null && this.udpAllowed) {
      this.lastToSwitchAt = Date.now();
      return this.udp.send(batch, addrs);
    }
    // Runs of one destination kind each go in one call.
    let sent = 0;
    let sawSwitch = false;
    for (let i = 0; i < batch.count; ) {
      const sw = this.toSwitch(addrs, i);
      let j = i + 1;
      while (j < batch.count && this.toSwitch(addrs, j) === sw) j++;
      if (sw) {
        sawSwitch = true;
        if (stream !== null) sent += stream.sendRange(batch, i, j);
        else if (this.udpAllowed) sent += this.udp.send(this.slice(batch, i, j), addrs.subarray(i * ADDR_SLOT, j * ADDR_SLOT));
        else this.dropped += j - i;
      } else {
        sent += this.udp.send(this.slice(batch, i, j), addrs.subarray(i * ADDR_SLOT, j * ADDR_SLOT));
      }
      i = j;
    }
    if (sawSwitch) this.lastToSwitchAt = Date.now();
    return sent;
  }

  sendTo(datagram: Buffer, addr: Buffer, addrOffset = 0): number {
    if (!addressEquals(addr, addrOffset, this.switchAddr, 0)) return this.udp.sendTo(datagram, addr, addrOffset);
    this.lastToSwitchAt = Date.now();
    if (this.stream !== null) return this.stream.sendTo(datagram);
    if (this.udpAllowed) return this.udp.sendTo(datagram, addr, addrOffset);
    this.dropped++;
    return 0;
  }

  private slice(batch: FrameBatch, from: number, to: number): FrameBatch {
    const r = this.run;
    r.buf = batch.buf;
    r.offsets = from === 0 ? batch.offsets : batch.offsets.subarray(from, to);
    r.lengths = from === 0 ? batch.lengths : batch.lengths.subarray(from, to);
    r.count = to - from;
    return r;
  }
}
