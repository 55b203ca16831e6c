// PortClient: the vport. A TAP device joined to a remote switch over UDP:
// the PortSession runs the control protocol, frames cross in batches both ways.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { lookup } from 'node:dns/promises';
import { MutableFrameBatch, BATCH_SIZE, type FrameBatch } from '../core/frames.js';
import { ADDR_SLOT } from '../io/native.js';
import { TapDevice, type TapOptions } from '../io/tap.js';
import { UdpSocket, type UdpStats } from '../io/udp.js';
import { addressEquals, encodeAddress, formatAddress } from '../io/address.js';
import { macToBuffer, parseMac } from '../core/ethernet.js';
import { silentLogger, type Logger } from '../core/log.js';
import { truncateUtf8 } from '../protocol/wire.js';
import { DEFAULT_TAP_MTU, NAME_MAX_BYTES } from '../protocol/constants.js';
import type { TapStats } from '../io/tap.js';
import type { BatchReceiver, Port } from '../core/port.js';
import { TxQueue } from '../io/tx-queue.js';
import type { PortEngine, PortEngineEvent, PortEngineHost } from '../port-engine.js';
import { PlainPortEngine } from '../plain-port.js';
import { SecurePortEngine, type SecurePortOptions } from '../secure/port-engine.js';
import { PcapWriter, captureFields, logCapture, type CaptureStatus, type PcapOptions } from './pcap.js';


export interface PortClientOptions {
  /** Switch host name or address (IPv4, IPv6 literal or DNS name). */
  host: string;
  port: number;
  /** TAP options; mtu defaults to the protocol's DEFAULT_TAP_MTU. */
  tap?: TapOptions;
  /** Name announced to the switch for its logs in insecure mode (default: HOSTNAME/IFNAME). */
  name?: string;
  /** Encrypted and authenticated (the default): this port's key and the switch's public key. */
  security?: SecurePortOptions;
  /** Plaintext protocol 1. Both ends must choose it. */
  insecure?: boolean;
  logger?: Logger;
}

export interface PortClientCounters {
  /** Datagrams from an address that is not the switch. */
  rxForeign: number;
}

export interface PortClientStatus {
  mode: 'insecure' | 'secure';
  state: string;
  switch: string;
  session: string;
  rttMs: number | undefined;
  lastHandshakeS?: number;
  device: string;
  publicKey?: string;
  tap: TapStats;
  udp: UdpStats;
  counters: Record<string, number>;
}

export interface PortClientEvents {
  joined: [info: { session: string; switch: string }];
  'switch-dead': [];
  rejected: [reason: string];
  'incompatible-version': [message: string];
}

/** Resolve a host name to one address; errors carry code ENOTFOUND and name the host. */
export async function resolveHost(host: string): Promise<string> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  try {
    return (await lookup(bare, { verbatim: true })).address;
  } catch (err) {
    const e = err as { code?: string };
    throw Object.assign(new Error(`cannot resolve switch host '${host}': ${e.code ?? String(err)} (check the name, or give an IP address)`), {
      code: e.code ?? 'ENOTFOUND',
    });
  }
}

export class PortClient extends EventEmitter<PortClientEvents> implements Port {
  readonly tap: TapDevice;
  readonly socket: UdpSocket;
  readonly engine: PortEngine;
  readonly counters: PortClientCounters = { rxForeign: 0 };
  private readonly log: Logger;
  private readonly switchAddr = Buffer.alloc(ADDR_SLOT);
  private readonly queue: TxQueue;
  private readonly rx = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  private fromSwitch = new Uint16Array(BATCH_SIZE);
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private closed = false;
  private resolving = false;
  /** Frames read from and written to the TAP, when a capture runs. */
  private capture: PcapWriter | null = null;

  private constructor(
    private readonly opts: PortClientOptions,
    address: string,
    tap: TapDevice,
    socket: UdpSocket,
  ) {
    super();
    this.log = opts.logger ?? silentLogger;
    this.tap = tap;
    this.socket = socket;
    this.queue = new TxQueue(socket);
    this.fromSwitch = new Uint16Array(socket.capacity);
    encodeAddress(address, opts.port, this.switchAddr, 0);
    const host: PortEngineHost = {
      log: this.log,
      switchAddr: this.switchAddr,
      queue: this.queue,
      send: (datagram) => {
        if (!this.socket.closed) this.socket.sendTo(datagram, this.switchAddr);
      },
      deliver: (buf, off, len) => this.deliver(buf, off, len),
      event: (e) => this.onEvent(e),
    };
    this.engine =
      opts.insecure || opts.security === undefined
        ? new PlainPortEngine(host, truncateName(opts.name ?? `${hostname()}/${tap.name}`), macToBuffer(parseMac(tap.mac)))
        : new SecurePortEngine(host, opts.security);
    tap.setReceiver((batch) => {
      this.capture?.write(batch);
      this.engine.transmit(batch);
    });
    socket.onDatagrams((batch, addrs) => this.onDatagrams(batch, addrs));
  }

  /** Resolve the switch, create the TAP, bind a UDP socket and start joining. */
  static async start(opts: PortClientOptions): Promise<PortClient> {
    if (!opts.insecure && opts.security === undefined) {
      throw Object.assign(new Error('a port needs its private key and the switch public key (security), or insecure: true for plaintext'), { code: 'ERR_NO_KEY' });
    }
    const address = await resolveHost(opts.host);
    const tap = TapDevice.open({ mtu: DEFAULT_TAP_MTU, offload: true, ...opts.tap });
    let socket: UdpSocket;
    try {
      socket = UdpSocket.bind({ address: '::', port: 0, offload: true });
    } catch (err) {
      tap.close();
      throw err;
    }
    const client = new PortClient(opts, address, tap, socket);
    client.log.info('joining switch', { switch: formatAddress(client.switchAddr), device: tap.name, mac: tap.mac, mtu: tap.mtu, mode: client.engine.mode });
    client.engine.start(Date.now());
    client.schedule();
    return client;
  }

  get name(): string {
    return this.tap.name;
  }

  get switchAddress(): string {
    return formatAddress(this.switchAddr);
  }

  /** Port: send frames to the switch as if they came from the TAP (embedding, tests). */
  send(batch: FrameBatch): void {
    this.engine.transmit(batch);
  }

  /** Port: receive frames from the switch instead of writing them to the TAP. */
  setReceiver(receiver: BatchReceiver | null): void {
    this.receiver = receiver;
  }

  private receiver: BatchReceiver | null = null;

  private deliver(buf: Buffer, off: number, len: number): void {
    const rx = this.rx;
    if (rx.count > 0 && rx.buf !== buf) this.flushRx();
    if (rx.count === rx.capacity) this.flushRx();
    rx.buf = buf;
    rx.push(off, len);
  }

  private flushRx(): void {
    if (this.rx.count === 0) return;
    this.capture?.write(this.rx);
    if (this.receiver !== null) this.receiver(this.rx);
    else this.tap.write(this.rx);
    this.rx.clear();
  }

  private onDatagrams(batch: FrameBatch, addrs: Buffer): void {
    const now = Date.now();
    let n = 0;
    for (let i = 0; i < batch.count; i++) {
      if (addressEquals(addrs, i * ADDR_SLOT, this.switchAddr, 0)) this.fromSwitch[n++] = i;
      else this.counters.rxForeign++;
    }
    if (n > 0) this.engine.receive(batch, this.fromSwitch, n, now);
    this.flushRx();
    this.schedule();
  }

  private onEvent(e: PortEngineEvent): void {
    switch (e.type) {
      case 'joined':
        this.log.info('joined switch', { switch: this.switchAddress, session: e.session, attempts: e.attempts });
        this.emit('joined', { session: e.session, switch: this.switchAddress });
        break;
      case 'rekeyed':
        this.log.debug('rekeyed', { switch: this.switchAddress, session: e.session });
        break;
      case 'rejected':
        this.log.warn('switch rejected the join', { switch: this.switchAddress, reason: e.reason });
        this.emit('rejected', e.reason);
        break;
      case 'incompatible-version':
        this.log.error(e.message, { switch: this.switchAddress });
        this.emit('incompatible-version', e.message);
        break;
      case 'handshake-failed':
        this.log.error(e.message, { switch: this.switchAddress });
        this.emit('rejected', e.message);
        break;
      case 'switch-dead':
        this.log.warn('switch not answering; rejoining with backoff', { switch: this.switchAddress, silent: `${(e.silentMs / 1000).toFixed(1)}s` });
        this.emit('switch-dead');
        this.reresolve();
        break;
      case 'left-by-switch':
        this.log.warn('switch closed the session (shutting down, or this port was removed); rejoining with backoff', { switch: this.switchAddress });
        break;
    }
  }

  /** The switch's name may now point elsewhere (network change, SIGHUP): look it up again. */
  reresolve(): void {
    if (this.resolving || this.closed) return;
    this.resolving = true;
    resolveHost(this.opts.host)
      .then((address) => {
        const next = encodeAddress(address, this.opts.port);
        if (!addressEquals(next, 0, this.switchAddr, 0)) {
          this.log.info('switch address changed', { from: this.switchAddress, to: formatAddress(next) });
          next.copy(this.switchAddr);
        }
      })
      .catch((err: Error) => this.log.warn(err.message))
      .finally(() => (this.resolving = false));
  }

  /** One timer, always at the engine's next deadline. */
  private schedule(): void {
    if (this.closed) return;
    const at = this.engine.nextTimeout();
    if (at === undefined) return;
    if (this.timer !== null && at >= this.timerAt) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.engine.poll(Date.now());
      this.schedule();
    }, Math.max(0, at - Date.now()));
  }

  status(): PortClientStatus {
    const s = this.engine.status(Date.now());
    return {
      mode: this.engine.mode,
      state: s.state,
      switch: this.switchAddress,
      session: s.session,
      rttMs: s.rttMs,
      ...(s.lastHandshakeS !== undefined ? { lastHandshakeS: s.lastHandshakeS } : {}),
      device: this.tap.name,
      ...(this.engine instanceof SecurePortEngine ? { publicKey: this.engine.publicKey } : {}),
      tap: this.tap.stats,
      udp: this.socket.stats,
      counters: { ...s.counters, ...this.counters },
    };
  }

  /**
   * Record the frames on the device, both directions (read from the TAP and
   * written to it), to a pcap FILE. Throws ERR_CAPTURE_RUNNING if a capture is
   * already on, or the open error.
   */
  startCapture(file: string, opts: PcapOptions = {}): CaptureStatus {
    if (this.capture?.isOpen) {
      throw Object.assign(new Error(`a capture to '${this.capture.file}' is already running: stop it first`), { code: 'ERR_CAPTURE_RUNNING' });
    }
    const writer = new PcapWriter(file, opts);
    logCapture(writer, this.log);
    this.capture = writer;
    const status = writer.status();
    this.log.info('capture started', { device: this.tap.name, ...captureFields(status) });
    return status;
  }

  /** Stop the capture and write out what is buffered; resolves with its final status, or null if none ran. */
  async stopCapture(): Promise<CaptureStatus | null> {
    const writer = this.capture;
    if (writer === null) return null;
    this.capture = null;
    await writer.close();
    const status = writer.status();
    this.log.info('capture stopped', { device: this.tap.name, ...captureFields(status) });
    return status;
  }

  /** The running (or failed, until stopped) capture, or null. */
  captureStatus(): CaptureStatus | null {
    return this.capture?.status() ?? null;
  }

  /** Say goodbye to the switch, remove the device, close the socket. Idempotent. A running capture is closed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.stopCapture();
    if (this.timer !== null) clearTimeout(this.timer);
    this.engine.leave(Date.now());
    this.queue.flush();
    this.tap.close();
    this.socket.close();
  }
}

/** The protocol carries at most NAME_MAX_BYTES of printable UTF-8. */
function truncateName(name: string): string {
  // eslint-disable-next-line no-control-regex
  return truncateUtf8(name.replace(/[\x00-\x1f\x7f]/g, '?'), NAME_MAX_BYTES).toString('utf8');
}
