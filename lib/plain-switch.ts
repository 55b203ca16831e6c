// The plaintext v1 engine of the switch (vswitch --insecure): SwitchSessions
// for JOIN/ACCEPT/KEEPALIVE/LEAVE, DATA carried in the clear.
import type { FrameBatch } from './core/frames.js';
import { ADDR_SLOT } from './io/native.js';
import { formatAddress } from './io/address.js';
import type { UdpSocket } from './io/udp.js';
import { classify, readReceiverIndex, writeDataHeader } from './protocol/wire.js';
import { SwitchSessions, type SwitchAction, type SwitchSession } from './protocol/session.js';
import { DATA_HEADER_SIZE, MAX_DATAGRAM_SIZE, MessageType, PROTOCOL_VERSION } from './protocol/constants.js';
import type { EnginePeer, SessionStatus, SwitchEngine, SwitchEngineHost } from './switch-engine.js';

class PlainPeer implements EnginePeer {
  readonly endpoint: Buffer;
  readonly joinedAt: number;
  constructor(
    readonly id: number,
    readonly session: SwitchSession,
    public socket: UdpSocket,
  ) {
    // Shares the session's buffer, so roaming updates both.
    this.endpoint = session.endpoint;
    this.joinedAt = session.joinedAt;
  }
  get name(): string {
    return this.session.name !== '' ? this.session.name : `port-${hex(this.session.localIndex)}`;
  }
  get lastSeen(): number {
    return this.session.lastSeen;
  }
  set lastSeen(v: number) {
    this.session.lastSeen = v;
  }
}

export interface PlainSwitchOptions {
  keepaliveS: number;
  portTimeoutS: number;
  maxPorts?: number;
}

export class PlainSwitchEngine implements SwitchEngine {
  readonly mode = 'insecure' as const;
  readonly sessionTable: SwitchSessions;
  private readonly peers = new Map<number, PlainPeer>();
  private nextId = 1;
  private dataIn = 0;
  private txOversize = 0;

  constructor(
    private readonly host: SwitchEngineHost,
    private readonly defaultSocket: () => UdpSocket,
    opts: PlainSwitchOptions,
  ) {
    this.sessionTable = new SwitchSessions({
      keepaliveIntervalS: opts.keepaliveS,
      portTimeoutS: opts.portTimeoutS,
      ...(opts.maxPorts !== undefined ? { maxSessions: opts.maxPorts } : {}),
    });
  }

  get size(): number {
    return this.sessionTable.size;
  }

  receive(socket: UdpSocket, batch: FrameBatch, addrs: Buffer, now: number): void {
    const { buf, offsets, lengths, count } = batch;
    const sessions = this.sessionTable;
    for (let i = 0; i < count; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      const addrOff = i * ADDR_SLOT;
      if (classify(buf, off, len) === MessageType.DATA) {
        const s = sessions.sessionForData(readReceiverIndex(buf, off, len));
        if (s !== undefined && sessions.endpointMatches(s, addrs, addrOff)) {
          sessions.touch(s, now);
          const peer = this.peers.get(s.localIndex);
          if (peer !== undefined) {
            this.dataIn++;
            this.host.deliver(peer, buf, off + DATA_HEADER_SIZE, len - DATA_HEADER_SIZE);
            continue;
          }
        }
      }
      this.act(sessions.handleControl(buf, off, len, addrs, addrOff, now), socket);
    }
  }

  transmit(peer: EnginePeer, batch: FrameBatch): void {
    const p = peer as PlainPeer;
    const q = this.host.queueFor(p.socket);
    const s = p.session;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.lengths[i]!;
      const size = DATA_HEADER_SIZE + len;
      if (size > MAX_DATAGRAM_SIZE) {
        this.txOversize++;
        continue;
      }
      q.ensure(size);
      const at = q.used;
      const off = batch.offsets[i]!;
      writeDataHeader(q.batch.buf, at, s.remoteIndex, s.nextTxCounter());
      batch.buf.copy(q.batch.buf, at + DATA_HEADER_SIZE, off, off + len);
      q.commit(at, size, s.endpoint);
    }
  }

  tick(now: number): void {
    this.act(this.sessionTable.sweep(now), null);
  }

  close(now: number): void {
    this.act(this.sessionTable.leaveAll(now), null);
  }

  sessions(now: number): SessionStatus[] {
    return [...this.peers.values()].map((p) => ({
      name: p.name,
      index: hex(p.session.localIndex),
      address: formatAddress(p.endpoint),
      joinedAt: new Date(p.joinedAt).toISOString(),
      lastSeenS: Math.round((now - p.lastSeen) / 100) / 10,
      id: p.id,
    }));
  }

  counters(): Record<string, number> {
    const { malformedBy: _by, ...c } = this.sessionTable.counters;
    return { ...c, dataIn: this.dataIn, txOversize: this.txOversize };
  }

  private act(actions: SwitchAction[], socket: UdpSocket | null): void {
    for (const a of actions) {
      if (a.kind === 'send') {
        this.host.sendTo(socket ?? this.socketFor(a.to), a.datagram, a.to);
        continue;
      }
      const e = a.event;
      const log = this.host.log;
      switch (e.type) {
        case 'joined': {
          const peer = new PlainPeer(this.nextId++, e.session, socket ?? this.defaultSocket());
          this.peers.set(e.session.localIndex, peer);
          const mac = [...e.session.mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
          this.host.joined(peer, { index: hex(e.session.localIndex), mac });
          break;
        }
        case 'left':
        case 'timeout': {
          const peer = this.peers.get(e.session.localIndex);
          if (peer === undefined) break;
          this.peers.delete(e.session.localIndex);
          this.host.left(peer, e.type === 'timeout' ? `timeout after ${(e.silentMs / 1000).toFixed(1)} s of silence` : e.reason);
          break;
        }
        case 'roamed': {
          const peer = this.peers.get(e.session.localIndex);
          if (peer && socket) peer.socket = socket;
          log.info('port roamed', { port: peer?.name ?? '?', from: formatAddress(e.from), to: formatAddress(e.session.endpoint) });
          break;
        }
        case 'rejected':
          log.warn('join rejected', { address: formatAddress(e.to), reason: e.reasonName });
          break;
        case 'incompatible-version':
          log.warn('incompatible version', {
            address: formatAddress(e.from),
            theirs: e.peerVersion,
            ours: PROTOCOL_VERSION,
            hint:
              e.direction === 'we-refused'
                ? 'this switch runs --insecure (protocol 1); the port speaks another version: both ends need --insecure, or both need keys'
                : 'the peer refused our version',
          });
          break;
        case 'malformed':
          log.debug('malformed datagram dropped', { address: formatAddress(e.from), reason: e.reason });
          break;
      }
    }
  }

  /** Replies without a socket (timers) go out where the port is. */
  private socketFor(addr: Buffer): UdpSocket {
    for (const p of this.peers.values()) if (p.endpoint.equals(addr)) return p.socket;
    return this.defaultSocket();
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
