// The plaintext v1 engine of a port (vport --insecure): PortSession for
// JOIN/ACCEPT/KEEPALIVE/LEAVE, DATA carried in the clear.
import type { FrameBatch } from './core/frames.js';
import { classify, readReceiverIndex, writeDataHeader } from './protocol/wire.js';
import { PortSession, type PortAction } from './protocol/session.js';
import { DATA_HEADER_SIZE, MAX_DATAGRAM_SIZE, MessageType, PROTOCOL_VERSION } from './protocol/constants.js';
import type { PortEngine, PortEngineHost, PortEngineStatus } from './port-engine.js';

export class PlainPortEngine implements PortEngine {
  readonly mode = 'insecure' as const;
  readonly session: PortSession;
  private readonly counters = { txNotJoined: 0, txOversize: 0, rxWrongIndex: 0, dataIn: 0, dataOut: 0 };

  constructor(
    private readonly host: PortEngineHost,
    name: string,
    mac: Buffer,
  ) {
    this.session = new PortSession({ name, mac });
  }

  get isJoined(): boolean {
    return this.session.isJoined;
  }

  start(now: number): void {
    this.act(this.session.start(now));
  }

  receive(batch: FrameBatch, slots: Uint16Array, n: number, now: number): void {
    const { buf, offsets, lengths } = batch;
    const local = this.session.localIndex;
    const joined = this.session.isJoined;
    for (let k = 0; k < n; k++) {
      const i = slots[k]!;
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (classify(buf, off, len) === MessageType.DATA) {
        if (joined && readReceiverIndex(buf, off, len) === local) {
          this.counters.dataIn++;
          this.host.deliver(buf, off + DATA_HEADER_SIZE, len - DATA_HEADER_SIZE);
          continue;
        }
        this.counters.rxWrongIndex++;
      }
      this.act(this.session.onDatagram(buf, off, len, now));
    }
  }

  transmit(batch: FrameBatch): void {
    const s = this.session;
    if (!s.isJoined) {
      this.counters.txNotJoined += batch.count;
      return;
    }
    const q = this.host.queue;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.lengths[i]!;
      const size = DATA_HEADER_SIZE + len;
      if (size > MAX_DATAGRAM_SIZE) {
        this.counters.txOversize++;
        continue;
      }
      q.ensure(size);
      const at = q.used;
      const off = batch.offsets[i]!;
      writeDataHeader(q.batch.buf, at, s.remoteIndex, s.nextTxCounter());
      batch.buf.copy(q.batch.buf, at + DATA_HEADER_SIZE, off, off + len);
      q.commit(at, size, this.host.switchAddr);
      this.counters.dataOut++;
    }
  }

  poll(now: number): void {
    this.act(this.session.poll(now));
  }

  nextTimeout(): number | undefined {
    return this.session.nextTimeout();
  }

  leave(now: number): void {
    this.act(this.session.leave(now));
  }

  status(): PortEngineStatus {
    const s = this.session;
    return {
      state: s.state,
      session: `${hex(s.localIndex)}/${hex(s.remoteIndex)}`,
      rttMs: s.srttMs,
      counters: { ...this.counters },
    };
  }

  private act(actions: PortAction[]): void {
    for (const a of actions) {
      if (a.kind === 'send') {
        this.host.send(a.datagram);
        continue;
      }
      const e = a.event;
      switch (e.type) {
        case 'joined':
          this.host.event({ type: 'joined', session: hex(e.localIndex), attempts: e.attempts, keepaliveMs: e.keepaliveIntervalMs });
          break;
        case 'rejected':
          this.host.event({ type: 'rejected', reason: `${e.reasonName}${e.text ? `: ${e.text}` : ''}` });
          break;
        case 'incompatible-version':
          this.host.event({
            type: 'incompatible-version',
            message:
              e.direction === 'peer-refused'
                ? `incompatible version: the switch speaks protocol ${e.peerLowest ?? e.peerVersion}..${e.peerHighest ?? e.peerVersion}, this vport runs --insecure (protocol ${PROTOCOL_VERSION}): give both ends keys, or both --insecure`
                : `incompatible version: the switch sent protocol ${e.peerVersion}, this vport speaks ${PROTOCOL_VERSION}: upgrade one side`,
          });
          break;
        case 'switch-dead':
          this.host.event({ type: 'switch-dead', silentMs: e.silentMs });
          break;
        case 'left':
          if (e.by === 'switch') this.host.event({ type: 'left-by-switch' });
          break;
      }
    }
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
