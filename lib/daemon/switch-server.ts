// SwitchServer: the vswitch. UDP sockets + a protocol engine (encrypted by
// default, plaintext on request) + the learning Switch; each port is a RemotePort.
import { EventEmitter } from 'node:events';
import { MutableFrameBatch, BATCH_SIZE, type FrameBatch } from '../core/frames.js';
import type { BatchReceiver, Port } from '../core/port.js';
import { Switch, type SwitchPort, type SwitchSnapshot } from '../switch/switch.js';
import { UdpSocket, type UdpStats } from '../io/udp.js';
import { formatAddress } from '../io/address.js';
import { silentLogger, type Logger } from '../core/log.js';
import { TxQueue } from '../io/tx-queue.js';
import { PcapWriter, captureFields, logCapture, type CaptureStatus, type PcapOptions } from './pcap.js';
import type { EnginePeer, SessionStatus, SwitchEngine, SwitchEngineHost } from '../switch-engine.js';
import { PlainSwitchEngine } from '../plain-switch.js';
import { SecureSwitchEngine, type SecureSwitchOptions } from '../secure/switch-engine.js';
import { KEEPALIVE_INTERVAL_DEFAULT_S, PORT_TIMEOUT_DEFAULT_S, PORT_TIMEOUT_MIN_INTERVALS, SWITCH_SWEEP_INTERVAL_MS } from '../protocol/constants.js';

export const DEFAULT_SWITCH_PORT = 9999;
/**
 * A learned MAC stays with its port while that port used it this recently
 * (docs/SECURITY.md); vde_switch keeps 3 s of minimum persistence against flapping.
 */
export const DEFAULT_MAC_MOVE_HOLD_S = 3;
/** Learned MACs per port: a member flooding random sources fills only its own quota. */
export const DEFAULT_MAX_MACS_PER_PORT = 64;

export interface ListenAddress {
  address: string;
  port: number;
}

export interface SwitchServerOptions {
  /** Default: [{ address: '::', port: 9999 }] (IPv4 and IPv6). */
  listen?: readonly ListenAddress[];
  /**
   * Encrypted and authenticated (protocol 2): the switch's private key and the
   * admitted ports. Omit only together with `insecure: true`.
   */
  security?: Omit<SecureSwitchOptions, 'keepaliveS' | 'portTimeoutS' | 'maxPorts'>;
  /** Plaintext protocol 1: anyone who reaches the port can join. */
  insecure?: boolean;
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

/** A joined remote port as the switch sees it: frames out become datagrams through the engine. */
class RemotePort implements Port {
  receiver: BatchReceiver | null = null;
  handle: SwitchPort | null = null;
  /** Ingress frames of the current receive batch: views into the socket's slab. */
  readonly ingress = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  constructor(
    readonly engine: SwitchEngine,
    readonly peer: EnginePeer,
  ) {}
  get name(): string {
    return this.peer.name;
  }
  send(batch: FrameBatch): void {
    this.engine.transmit(this.peer, batch);
  }
  setReceiver(receiver: BatchReceiver | null): void {
    this.receiver = receiver;
  }
}

export interface SwitchServerSnapshot extends SwitchSnapshot {
  mode: 'insecure' | 'secure';
  sessions: SessionStatus[];
  protocol: Record<string, number>;
  udp: UdpStats[];
}

export interface PortEventInfo {
  name: string;
  id: number;
  address: string;
  publicKey?: string;
}

export interface SwitchServerEvents {
  'port-joined': [info: PortEventInfo];
  'port-left': [info: PortEventInfo & { reason: string }];
}

export class SwitchServer extends EventEmitter<SwitchServerEvents> {
  readonly switch: Switch;
  readonly engine: SwitchEngine;
  readonly sockets: UdpSocket[] = [];
  private readonly log: Logger;
  private readonly remotes = new Map<number, RemotePort>();
  private readonly txQueues = new Map<UdpSocket, TxQueue>();
  private readonly touched: RemotePort[] = [];
  private tickTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private capture: PcapWriter | null = null;

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
    if (!opts.insecure && opts.security === undefined) {
      throw Object.assign(new Error('a switch needs a private key (security.privateKey), or insecure: true for plaintext'), { code: 'ERR_NO_KEY' });
    }
    this.switch = new Switch({
      ...(opts.macAgeS !== undefined ? { ageingMs: opts.macAgeS * 1000 } : {}),
      ...(opts.maxMacs !== undefined ? { maxEntries: opts.maxMacs } : {}),
      maxPerPort: opts.maxMacsPerPort ?? DEFAULT_MAX_MACS_PER_PORT,
      moveHoldMs: (opts.macMoveHoldS ?? DEFAULT_MAC_MOVE_HOLD_S) * 1000,
    });
    this.switch.on('mac-move', (e: { mac: string; vlan: number; from: SwitchPort; to: SwitchPort }) =>
      this.log.info('MAC moved', { mac: e.mac, vlan: e.vlan, from: e.from.name, to: e.to.name }),
    );
    this.switch.on('mac-limit', (e: { reason: string; mac: string; port: SwitchPort; suppressed: number }) =>
      this.log.warn('MAC not learned: limit reached', { reason: e.reason, mac: e.mac, port: e.port.name, suppressed: e.suppressed }),
    );
    const host: SwitchEngineHost = {
      log: this.log,
      joined: (peer, detail) => this.onJoined(peer, detail),
      left: (peer, reason) => this.onLeft(peer, reason),
      deliver: (peer, buf, off, len) => this.deliver(peer, buf, off, len),
      sendTo: (socket, datagram, addr) => {
        if (!socket.closed) socket.sendTo(datagram, addr);
      },
      queueFor: (socket) => this.txQueues.get(socket)!,
    };
    const first = (): UdpSocket => this.sockets[0]!;
    const engineOpts = { keepaliveS, portTimeoutS, ...(opts.maxPorts !== undefined ? { maxPorts: opts.maxPorts } : {}) };
    this.engine = opts.insecure
      ? new PlainSwitchEngine(host, first, engineOpts)
      : new SecureSwitchEngine(host, first, { ...opts.security!, ...engineOpts });
    for (const l of opts.listen ?? [{ address: '::', port: DEFAULT_SWITCH_PORT }]) {
      let socket: UdpSocket;
      try {
        socket = UdpSocket.bind({ address: l.address, port: l.port, offload: true });
      } catch (err) {
        this.close();
        throw err;
      }
      this.sockets.push(socket);
      this.txQueues.set(socket, new TxQueue(socket));
      socket.onDatagrams((batch, addrs) => this.onDatagrams(socket, batch, addrs));
    }
    this.switch.start();
    this.tickTimer = setInterval(() => this.engine.tick(Date.now()), SWITCH_SWEEP_INTERVAL_MS);
    this.tickTimer.unref();
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
    this.engine.receive(socket, batch, addrs, Date.now());
    // One switch decision pass per port per receive batch.
    for (const rp of this.touched) {
      if (rp.receiver !== null) rp.receiver(rp.ingress);
      rp.ingress.clear();
    }
    this.touched.length = 0;
  }

  private deliver(peer: EnginePeer, buf: Buffer, off: number, len: number): void {
    const rp = this.remotes.get(peer.id);
    if (rp === undefined) return;
    if (rp.ingress.count === 0) {
      rp.ingress.buf = buf;
      this.touched.push(rp);
    } else if (rp.ingress.count === rp.ingress.capacity) {
      if (rp.receiver !== null) rp.receiver(rp.ingress);
      rp.ingress.clear();
    }
    rp.ingress.push(off, len);
  }

  private onJoined(peer: EnginePeer, detail: Record<string, string | number>): void {
    const address = formatAddress(peer.endpoint);
    const rp = new RemotePort(this.engine, peer);
    this.remotes.set(peer.id, rp);
    rp.handle = this.switch.addPort(rp, { name: peer.name });
    this.log.info('port joined', { port: peer.name, address, ...(peer.publicKey ? { key: peer.publicKey } : {}), ...detail });
    this.emit('port-joined', { name: peer.name, id: peer.id, address, ...(peer.publicKey ? { publicKey: peer.publicKey } : {}) });
  }

  private onLeft(peer: EnginePeer, reason: string): void {
    const rp = this.remotes.get(peer.id);
    if (rp !== undefined) {
      this.remotes.delete(peer.id);
      if (rp.handle) this.switch.removePort(rp.handle);
    }
    const address = formatAddress(peer.endpoint);
    this.log.info('port left', { port: peer.name, address, reason });
    this.emit('port-left', { name: peer.name, id: peer.id, address, reason, ...(peer.publicKey ? { publicKey: peer.publicKey } : {}) });
  }

  /** Status for humans and scripts: ports with their underlay identity, the MAC table, counters. */
  snapshot(): SwitchServerSnapshot {
    const now = Date.now();
    const sessions = this.engine.sessions(now).map((s) => {
      const rp = [...this.remotes.values()].find((r) => r.peer.id === s['id']);
      return rp?.handle ? { ...s, switchPort: rp.handle.id } : s;
    });
    return {
      ...this.switch.snapshot(),
      mode: this.engine.mode,
      sessions,
      protocol: this.engine.counters(),
      udp: this.sockets.map((s) => s.stats),
    };
  }

  /**
   * Record every frame that enters the switch, from any port, before it is
   * forwarded, to a pcap FILE (see PcapOptions for the size bound and rotation).
   * Throws ERR_CAPTURE_RUNNING if a capture is already on, or the open error.
   */
  startCapture(file: string, opts: PcapOptions = {}): CaptureStatus {
    if (this.capture?.isOpen) {
      throw Object.assign(new Error(`a capture to '${this.capture.file}' is already running: stop it first`), { code: 'ERR_CAPTURE_RUNNING' });
    }
    const writer = new PcapWriter(file, opts);
    logCapture(writer, this.log, () => {
      if (this.capture === writer) this.switch.onIngress = null;
    });
    this.capture = writer;
    this.switch.onIngress = (_port, batch) => writer.write(batch);
    const status = writer.status();
    this.log.info('capture started', captureFields(status));
    return status;
  }

  /** Stop the capture and write out what is buffered; resolves with its final status, or null if none ran. */
  async stopCapture(): Promise<CaptureStatus | null> {
    const writer = this.capture;
    if (writer === null) return null;
    this.capture = null;
    this.switch.onIngress = null;
    await writer.close();
    const status = writer.status();
    this.log.info('capture stopped', captureFields(status));
    return status;
  }

  /** The running (or failed, until stopped) capture, or null. */
  captureStatus(): CaptureStatus | null {
    return this.capture?.status() ?? null;
  }

  /** Tell every port goodbye, then stop. Idempotent. A running capture is closed (await stopCapture() first to know it is on disk). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.stopCapture();
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.sockets.length > 0) this.engine.close(Date.now());
    for (const q of this.txQueues.values()) q.flush();
    this.switch.stop();
    for (const s of this.sockets) s.close();
  }
}
