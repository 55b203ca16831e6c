// SwitchServer: the vswitch. UDP sockets + protocol sessions + the learning
// Switch; each joined session becomes a RemotePort on the switch.
import { EventEmitter } from 'node:events';
import { MutableFrameBatch, BATCH_SIZE, type FrameBatch } from './frames.js';
import { ADDR_SLOT } from './native.js';
import type { BatchReceiver, Port } from './port.js';
import { Switch, type SwitchPort, type SwitchSnapshot } from './switch.js';
import type { MacEntry } from './mac-table.js';
import { UdpSocket, type UdpStats } from './udp.js';
import { formatAddress } from './udp-address.js';
import { silentLogger, type Logger } from './log.js';
import { classify, readReceiverIndex, writeDataHeader } from './protocol/wire.js';
import { SwitchSessions, type SwitchAction, type SwitchSession, type SwitchCounters } from './protocol/session.js';
import {
  DATA_HEADER_SIZE,
  KEEPALIVE_INTERVAL_DEFAULT_S,
  MAX_DATAGRAM_SIZE,
  MessageType,
  PORT_TIMEOUT_DEFAULT_S,
  PORT_TIMEOUT_MIN_INTERVALS,
  SWITCH_SWEEP_INTERVAL_MS,
} from './protocol/constants.js';

export const DEFAULT_SWITCH_PORT = 9999;
/** A learned MAC stays with its port while that port used it this recently (docs/SECURITY.md). */
export const DEFAULT_MAC_MOVE_HOLD_S = 10;
/** Learned MACs per port: a member flooding random sources fills only its own quota. */
export const DEFAULT_MAX_MACS_PER_PORT = 64;
/** Transmit slab: enough for a full batch of 1500-byte frames several times over; flushed when full. */
const TX_SLAB_BYTES = 512 * 1024;

export interface ListenAddress {
  address: string;
  port: number;
}

export interface SwitchServerOptions {
  /** Default: [{ address: '::', port: 9999 }] (IPv4 and IPv6). */
  listen?: readonly ListenAddress[];
  /** MAC ageing in seconds (default 300). */
  macAgeS?: number;
  /** Cap on learned MACs in total. */
  maxMacs?: number;
  /** Cap on learned MACs per port (default 64). */
  maxMacsPerPort?: number;
  /** Seconds a MAC stays with an active owner before another port may take it (default 10). */
  macMoveHoldS?: number;
  /** Seconds of silence before a port is dropped (default 30). */
  portTimeoutS?: number;
  /** Keepalive interval told to ports; default min(10, portTimeout / 3). */
  keepaliveS?: number;
  maxPorts?: number;
  logger?: Logger;
}

/** Default keepalive for a port timeout: three keepalives fit in one timeout. */
export function keepaliveFor(portTimeoutS: number): number {
  return Math.max(1, Math.min(KEEPALIVE_INTERVAL_DEFAULT_S, Math.floor(portTimeoutS / 3)));
}

export interface DatagramCounters {
  /** Data datagrams forwarded into the switch. */
  dataIn: number;
  /** Data datagrams sent to ports. */
  dataOut: number;
  /** Frames too large for one datagram. */
  txOversize: number;
}

/** A joined remote port as the switch sees it: frames out become DATA datagrams. */
class RemotePort implements Port {
  receiver: BatchReceiver | null = null;
  handle: SwitchPort | null = null;
  /** Ingress frames of the current receive batch: views into the socket's slab. */
  readonly ingress = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  queued = false;
  constructor(
    readonly server: SwitchServer,
    readonly session: SwitchSession,
    public socket: UdpSocket,
    readonly name: string,
  ) {}
  send(batch: FrameBatch): void {
    this.server.enqueueData(this, batch);
  }
  setReceiver(receiver: BatchReceiver | null): void {
    this.receiver = receiver;
  }
}

/** Outgoing datagrams of one socket, gathered across a receive batch and sent with one sendmmsg. */
class TxQueue {
  readonly batch = new MutableFrameBatch(Buffer.allocUnsafeSlow(TX_SLAB_BYTES), BATCH_SIZE);
  readonly addrs = Buffer.alloc(BATCH_SIZE * ADDR_SLOT);
  used = 0;
  scheduled = false;
  constructor(readonly socket: UdpSocket) {}
}

export interface SessionStatus {
  name: string;
  index: string;
  address: string;
  joinedAt: string;
  lastSeenS: number;
  switchPort: number | undefined;
}

export interface SwitchServerSnapshot extends SwitchSnapshot {
  sessions: SessionStatus[];
  protocol: SwitchCounters;
  datagrams: DatagramCounters;
  udp: UdpStats[];
}

export interface SwitchServerEvents {
  'port-joined': [info: { name: string; index: number; address: string; mac: string }];
  'port-left': [info: { name: string; index: number; address: string; reason: string }];
}

export class SwitchServer extends EventEmitter<SwitchServerEvents> {
  readonly switch: Switch;
  readonly sessions: SwitchSessions;
  readonly sockets: UdpSocket[] = [];
  readonly counters: DatagramCounters = { dataIn: 0, dataOut: 0, txOversize: 0 };
  private readonly log: Logger;
  private readonly remotes = new Map<number, RemotePort>();
  private readonly txQueues = new Map<UdpSocket, TxQueue>();
  private readonly touched: RemotePort[] = [];
  private sweepTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: SwitchServerOptions = {}) {
    super();
    this.log = opts.logger ?? silentLogger;
    const portTimeoutS = opts.portTimeoutS ?? PORT_TIMEOUT_DEFAULT_S;
    const keepaliveS = opts.keepaliveS ?? keepaliveFor(portTimeoutS);
    if (portTimeoutS < keepaliveS * PORT_TIMEOUT_MIN_INTERVALS) {
      throw Object.assign(new Error(`port timeout ${portTimeoutS} s must be at least ${PORT_TIMEOUT_MIN_INTERVALS} keepalive intervals (${keepaliveS} s)`), {
        code: 'ERR_INVALID_ARG_VALUE',
      });
    }
    this.sessions = new SwitchSessions({ keepaliveIntervalS: keepaliveS, portTimeoutS, ...(opts.maxPorts ? { maxSessions: opts.maxPorts } : {}) });
    this.switch = new Switch({
      ...(opts.macAgeS !== undefined ? { ageingMs: opts.macAgeS * 1000 } : {}),
      ...(opts.maxMacs !== undefined ? { maxEntries: opts.maxMacs } : {}),
      maxPerPort: opts.maxMacsPerPort ?? DEFAULT_MAX_MACS_PER_PORT,
      allowMove: moveRule((opts.macMoveHoldS ?? DEFAULT_MAC_MOVE_HOLD_S) * 1000),
    });
    this.switch.on('mac-move', (e: { mac: string; vlan: number; from: SwitchPort; to: SwitchPort }) =>
      this.log.info('MAC moved', { mac: e.mac, vlan: e.vlan, from: e.from.name, to: e.to.name }),
    );
    this.switch.on('mac-limit', (e: { reason: string; mac: string; port: SwitchPort; suppressed: number }) =>
      this.log.warn('MAC not learned: limit reached', { reason: e.reason, mac: e.mac, port: e.port.name, suppressed: e.suppressed }),
    );
    for (const l of opts.listen ?? [{ address: '::', port: DEFAULT_SWITCH_PORT }]) {
      let socket: UdpSocket;
      try {
        socket = UdpSocket.bind({ address: l.address, port: l.port });
      } catch (err) {
        this.close();
        throw err;
      }
      this.sockets.push(socket);
      this.txQueues.set(socket, new TxQueue(socket));
      socket.onDatagrams((batch, addrs) => this.onDatagrams(socket, batch, addrs));
    }
    this.switch.start();
    this.sweepTimer = setInterval(() => this.act(this.sessions.sweep(Date.now()), null), SWITCH_SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  /** Attach a local port (a TAP in this process, a memory port...) to the switch. */
  addLocalPort(port: Port, name?: string): SwitchPort {
    return this.switch.addPort(port, name !== undefined ? { name } : {});
  }

  /** The ports bound, e.g. after listening on port 0. */
  get ports(): number[] {
    return this.sockets.map((s) => s.port);
  }

  private onDatagrams(socket: UdpSocket, batch: FrameBatch, addrs: Buffer): void {
    const now = Date.now();
    const { buf, offsets, lengths, count } = batch;
    const sessions = this.sessions;
    for (let i = 0; i < count; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      const addrOff = i * ADDR_SLOT;
      if (classify(buf, off, len) === MessageType.DATA) {
        const s = sessions.sessionForData(readReceiverIndex(buf, off, len));
        if (s !== undefined && sessions.endpointMatches(s, addrs, addrOff)) {
          sessions.touch(s, now);
          const rp = this.remotes.get(s.localIndex);
          if (rp !== undefined) {
            if (rp.ingress.count === 0) {
              rp.ingress.buf = buf;
              this.touched.push(rp);
            }
            rp.ingress.push(off + DATA_HEADER_SIZE, len - DATA_HEADER_SIZE);
            this.counters.dataIn++;
            continue;
          }
        }
      }
      this.act(sessions.handleControl(buf, off, len, addrs, addrOff, now), socket);
    }
    // One switch decision pass per port per receive batch.
    for (const rp of this.touched) {
      if (rp.receiver !== null) rp.receiver(rp.ingress);
      rp.ingress.clear();
    }
    this.touched.length = 0;
  }

  /** Called by RemotePort.send: DATA datagrams into the socket's transmit queue. */
  enqueueData(rp: RemotePort, batch: FrameBatch): void {
    const q = this.txQueues.get(rp.socket);
    if (q === undefined) return;
    const s = rp.session;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.lengths[i]!;
      const size = DATA_HEADER_SIZE + len;
      if (size > MAX_DATAGRAM_SIZE) {
        this.counters.txOversize++;
        continue;
      }
      if (q.batch.count === q.batch.capacity || q.used + size > q.batch.buf.length) this.flush(q);
      const off = batch.offsets[i]!;
      writeDataHeader(q.batch.buf, q.used, s.remoteIndex, s.nextTxCounter());
      batch.buf.copy(q.batch.buf, q.used + DATA_HEADER_SIZE, off, off + len);
      s.endpoint.copy(q.addrs, q.batch.count * ADDR_SLOT);
      q.batch.push(q.used, size);
      q.used += size;
    }
    if (!q.scheduled && q.batch.count > 0) {
      q.scheduled = true;
      // Runs when the current native callback returns: one sendmmsg per receive batch.
      queueMicrotask(() => this.flush(q));
    }
  }

  private flush(q: TxQueue): void {
    q.scheduled = false;
    if (q.batch.count === 0) return;
    if (!q.socket.closed) {
      q.socket.send(q.batch, q.addrs);
      this.counters.dataOut += q.batch.count;
    }
    q.batch.clear();
    q.used = 0;
  }

  private act(actions: SwitchAction[], socket: UdpSocket | null): void {
    for (const a of actions) {
      if (a.kind === 'send') {
        const s = socket ?? this.sockets[0];
        if (s && !s.closed) s.sendTo(a.datagram, a.to);
        continue;
      }
      const e = a.event;
      switch (e.type) {
        case 'joined': {
          const address = formatAddress(e.session.endpoint);
          const name = portName(e.session);
          const rp = new RemotePort(this, e.session, socket ?? this.sockets[0]!, name);
          this.remotes.set(e.session.localIndex, rp);
          rp.handle = this.switch.addPort(rp, { name });
          const mac = [...e.session.mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
          this.log.info('port joined', { port: name, index: hex(e.session.localIndex), address, mac });
          this.emit('port-joined', { name, index: e.session.localIndex, address, mac });
          break;
        }
        case 'left':
        case 'timeout': {
          const rp = this.remotes.get(e.session.localIndex);
          const reason = e.type === 'timeout' ? `timeout after ${(e.silentMs / 1000).toFixed(1)} s of silence` : e.reason;
          if (rp !== undefined) {
            this.remotes.delete(e.session.localIndex);
            if (rp.handle) this.switch.removePort(rp.handle);
          }
          const address = formatAddress(e.session.endpoint);
          this.log.info('port left', { port: portName(e.session), index: hex(e.session.localIndex), address, reason });
          this.emit('port-left', { name: portName(e.session), index: e.session.localIndex, address, reason });
          break;
        }
        case 'roamed': {
          const rp = this.remotes.get(e.session.localIndex);
          if (rp && socket) rp.socket = socket;
          this.log.info('port roamed', { port: portName(e.session), from: formatAddress(e.from), to: formatAddress(e.session.endpoint) });
          break;
        }
        case 'rejected':
          this.log.warn('join rejected', { address: formatAddress(e.to), reason: e.reasonName });
          break;
        case 'incompatible-version':
          this.log.warn('incompatible version', {
            address: formatAddress(e.from),
            theirs: e.peerVersion,
            ours: '1',
            hint: e.direction === 'we-refused' ? 'the port speaks a protocol version this switch does not: upgrade one side' : 'the peer refused our version',
          });
          break;
        case 'malformed':
          this.log.debug('malformed datagram dropped', { address: formatAddress(e.from), reason: e.reason });
          break;
      }
    }
  }

  /** Status for humans and scripts: ports with their underlay identity, the MAC table, counters. */
  snapshot(): SwitchServerSnapshot {
    return {
      ...this.switch.snapshot(),
      sessions: this.sessionList(),
      protocol: this.sessions.counters,
      datagrams: { ...this.counters },
      udp: this.sockets.map((s) => s.stats),
    };
  }

  sessionList(): SessionStatus[] {
    const now = Date.now();
    return [...this.sessions.sessions()].map((s) => ({
      name: portName(s),
      index: hex(s.localIndex),
      address: formatAddress(s.endpoint),
      joinedAt: new Date(s.joinedAt).toISOString(),
      lastSeenS: Math.round((now - s.lastSeen) / 100) / 10,
      switchPort: this.remotes.get(s.localIndex)?.handle?.id,
    }));
  }

  /** Tell every port goodbye, then stop. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.act(this.sessions.leaveAll(Date.now()), null);
    for (const q of this.txQueues.values()) this.flush(q);
    this.switch.stop();
    for (const s of this.sockets) s.close();
  }
}

/**
 * No takeover of an active MAC: another port may claim it only once the owner
 * has left (its entries are flushed) or has not used it for `holdMs`.
 */
function moveRule(holdMs: number): (entry: Readonly<MacEntry<SwitchPort>>, to: SwitchPort, now: number) => boolean {
  return (entry, _to, now) => !entry.port.attached || now - entry.updated >= holdMs;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function portName(s: SwitchSession): string {
  return s.name !== '' ? s.name : `port-${hex(s.localIndex)}`;
}
