// PortClient: the vport. A TAP device joined to a remote switch over UDP:
// the PortSession runs the control protocol, frames cross in batches both ways.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { lookup } from 'node:dns/promises';
import { MutableFrameBatch, BATCH_SIZE, type FrameBatch } from './frames.js';
import { ADDR_SLOT } from './native.js';
import { TapDevice, type TapOptions } from './tap.js';
import { UdpSocket, type UdpStats } from './udp.js';
import { addressEquals, encodeAddress, formatAddress } from './udp-address.js';
import { macToBuffer, parseMac } from './ethernet.js';
import { silentLogger, type Logger } from './log.js';
import { classify, readReceiverIndex, truncateUtf8, writeDataHeader } from './protocol/wire.js';
import { PortSession, type PortAction } from './protocol/session.js';
import { DATA_HEADER_SIZE, DEFAULT_TAP_MTU, MAX_DATAGRAM_SIZE, MessageType, NAME_MAX_BYTES } from './protocol/constants.js';
import type { TapStats } from './tap.js';

/** Transmit slab for one TAP batch of full-size frames (64 x 64 KiB would be wasteful; flushed when full). */
const TX_SLAB_BYTES = 512 * 1024;

export interface PortClientOptions {
  /** Switch host name or address (IPv4, IPv6 literal or DNS name). */
  host: string;
  port: number;
  /** TAP options; mtu defaults to the protocol's DEFAULT_TAP_MTU. */
  tap?: TapOptions;
  /** Name announced to the switch for its logs (default: the interface name). */
  name?: string;
  logger?: Logger;
}

export interface PortClientCounters {
  /** TAP frames dropped because no session was up. */
  txNotJoined: number;
  /** Frames too large for one datagram. */
  txOversize: number;
  /** Datagrams from an address that is not the switch. */
  rxForeign: number;
  /** DATA for another session index (stale after a rejoin). */
  rxWrongIndex: number;
  dataIn: number;
  dataOut: number;
}

export interface PortClientStatus {
  state: string;
  switch: string;
  localIndex: string;
  remoteIndex: string;
  rttMs: number | undefined;
  device: string;
  tap: TapStats;
  udp: UdpStats;
  counters: PortClientCounters;
}

export interface PortClientEvents {
  joined: [info: { localIndex: number; remoteIndex: number; switch: string }];
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

export class PortClient extends EventEmitter<PortClientEvents> {
  readonly tap: TapDevice;
  readonly socket: UdpSocket;
  readonly session: PortSession;
  readonly counters: PortClientCounters = { txNotJoined: 0, txOversize: 0, rxForeign: 0, rxWrongIndex: 0, dataIn: 0, dataOut: 0 };
  private readonly log: Logger;
  private readonly switchAddr = Buffer.alloc(ADDR_SLOT);
  private readonly tx = new MutableFrameBatch(Buffer.allocUnsafeSlow(TX_SLAB_BYTES), BATCH_SIZE);
  private readonly txAddrs = Buffer.alloc(BATCH_SIZE * ADDR_SLOT);
  private readonly rx = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  private txUsed = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private closed = false;
  private resolving = false;

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
    encodeAddress(address, opts.port, this.switchAddr, 0);
    for (let i = 0; i < BATCH_SIZE; i++) this.switchAddr.copy(this.txAddrs, i * ADDR_SLOT);
    this.session = new PortSession({ name: truncateName(opts.name ?? `${hostname()}/${tap.name}`), mac: macToBuffer(parseMac(tap.mac)) });
    tap.setReceiver((batch) => this.onTapFrames(batch));
    socket.onDatagrams((batch, addrs) => this.onDatagrams(batch, addrs));
  }

  /** Resolve the switch, create the TAP, bind a UDP socket and start joining. */
  static async start(opts: PortClientOptions): Promise<PortClient> {
    const address = await resolveHost(opts.host);
    const tap = TapDevice.open({ mtu: DEFAULT_TAP_MTU, ...opts.tap });
    let socket: UdpSocket;
    try {
      socket = UdpSocket.bind({ address: '::', port: 0 });
    } catch (err) {
      tap.close();
      throw err;
    }
    const client = new PortClient(opts, address, tap, socket);
    client.log.info('joining switch', { switch: formatAddress(client.switchAddr), device: tap.name, mac: tap.mac, mtu: tap.mtu });
    client.act(client.session.start(Date.now()));
    return client;
  }

  get switchAddress(): string {
    return formatAddress(this.switchAddr);
  }

  private onTapFrames(batch: FrameBatch): void {
    const s = this.session;
    if (!s.isJoined) {
      this.counters.txNotJoined += batch.count;
      return;
    }
    const tx = this.tx;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.lengths[i]!;
      const size = DATA_HEADER_SIZE + len;
      if (size > MAX_DATAGRAM_SIZE) {
        this.counters.txOversize++;
        continue;
      }
      if (tx.count === tx.capacity || this.txUsed + size > tx.buf.length) this.flushTx();
      const off = batch.offsets[i]!;
      writeDataHeader(tx.buf, this.txUsed, s.remoteIndex, s.nextTxCounter());
      batch.buf.copy(tx.buf, this.txUsed + DATA_HEADER_SIZE, off, off + len);
      tx.push(this.txUsed, size);
      this.txUsed += size;
    }
    this.flushTx();
  }

  private flushTx(): void {
    if (this.tx.count === 0) return;
    this.socket.send(this.tx, this.txAddrs);
    this.counters.dataOut += this.tx.count;
    this.tx.clear();
    this.txUsed = 0;
  }

  private onDatagrams(batch: FrameBatch, addrs: Buffer): void {
    const now = Date.now();
    const { buf, offsets, lengths, count } = batch;
    const rx = this.rx;
    rx.buf = buf;
    const local = this.session.localIndex;
    const joined = this.session.isJoined;
    for (let i = 0; i < count; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (!addressEquals(addrs, i * ADDR_SLOT, this.switchAddr, 0)) {
        this.counters.rxForeign++;
        continue;
      }
      if (classify(buf, off, len) === MessageType.DATA) {
        if (joined && readReceiverIndex(buf, off, len) === local) {
          rx.push(off + DATA_HEADER_SIZE, len - DATA_HEADER_SIZE);
          continue;
        }
        this.counters.rxWrongIndex++;
      }
      this.act(this.session.onDatagram(buf, off, len, now));
    }
    if (rx.count > 0) {
      this.counters.dataIn += rx.count;
      this.tap.write(rx);
      rx.clear();
    }
  }

  private act(actions: PortAction[]): void {
    for (const a of actions) {
      if (a.kind === 'send') {
        if (!this.socket.closed) this.socket.sendTo(a.datagram, this.switchAddr);
        continue;
      }
      const e = a.event;
      switch (e.type) {
        case 'joined':
          this.log.info('joined switch', { switch: this.switchAddress, session: hex(e.localIndex), attempts: e.attempts, keepalive: `${e.keepaliveIntervalMs / 1000}s` });
          this.emit('joined', { localIndex: e.localIndex, remoteIndex: e.remoteIndex, switch: this.switchAddress });
          break;
        case 'rejected':
          this.log.warn('switch rejected the join', { switch: this.switchAddress, reason: e.reasonName, text: e.text });
          this.emit('rejected', e.reasonName);
          break;
        case 'incompatible-version': {
          const msg =
            e.direction === 'peer-refused'
              ? `incompatible version: the switch speaks protocol ${e.peerLowest ?? e.peerVersion}..${e.peerHighest ?? e.peerVersion}, this vport speaks 1: upgrade one side`
              : `incompatible version: the switch sent protocol ${e.peerVersion}, this vport speaks 1: upgrade one side`;
          this.log.error(msg, { switch: this.switchAddress });
          this.emit('incompatible-version', msg);
          break;
        }
        case 'switch-dead':
          this.log.warn('switch not answering; rejoining with backoff', { switch: this.switchAddress, missed: e.missedKeepalives, silent: `${(e.silentMs / 1000).toFixed(1)}s` });
          this.emit('switch-dead');
          this.reresolve();
          break;
        case 'left':
          if (e.by === 'switch') this.log.warn('switch closed the session (shutting down?); rejoining with backoff', { switch: this.switchAddress });
          break;
      }
    }
    this.schedule();
  }

  /** The switch's name may now point elsewhere (network change): look it up again. */
  private reresolve(): void {
    if (this.resolving || this.closed) return;
    this.resolving = true;
    resolveHost(this.opts.host)
      .then((address) => {
        const next = encodeAddress(address, this.opts.port);
        if (!addressEquals(next, 0, this.switchAddr, 0)) {
          this.log.info('switch address changed', { from: this.switchAddress, to: formatAddress(next) });
          next.copy(this.switchAddr);
          for (let i = 0; i < BATCH_SIZE; i++) next.copy(this.txAddrs, i * ADDR_SLOT);
        }
      })
      .catch((err: Error) => this.log.warn(err.message))
      .finally(() => (this.resolving = false));
  }

  /** One timer, always at the session's next deadline. */
  private schedule(): void {
    if (this.closed) return;
    const at = this.session.nextTimeout();
    if (at === undefined) return;
    if (this.timer !== null && at >= this.timerAt) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.act(this.session.poll(Date.now()));
      this.schedule();
    }, Math.max(0, at - Date.now()));
  }

  status(): PortClientStatus {
    const s = this.session;
    return {
      state: s.state,
      switch: this.switchAddress,
      localIndex: hex(s.localIndex),
      remoteIndex: hex(s.remoteIndex),
      rttMs: s.srttMs,
      device: this.tap.name,
      tap: this.tap.stats,
      udp: this.socket.stats,
      counters: { ...this.counters },
    };
  }

  /** Say goodbye to the switch, remove the device, close the socket. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.act(this.session.leave(Date.now()));
    this.tap.close();
    this.socket.close();
  }
}

/** The protocol carries at most NAME_MAX_BYTES of printable UTF-8. */
function truncateName(name: string): string {
  // eslint-disable-next-line no-control-regex
  return truncateUtf8(name.replace(/[\x00-\x1f\x7f]/g, '?'), NAME_MAX_BYTES).toString('utf8');
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
