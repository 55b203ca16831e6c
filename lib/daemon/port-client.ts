// PortClient: the vport. A TAP device joined to a remote switch over UDP: the
// PortSession (lib/protocol/port-session.ts) runs the protocol; frames cross in
// windows both ways — device -> seal -> socket, socket -> open -> device.
import { EventEmitter } from 'node:events';
import { EventLog, type LiveEvent } from './events.js';
import { hostname, networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { BATCH_SIZE, MutableFrameBatch, type FrameBatch } from '../core/frames.js';
import type { BatchReceiver, Port } from '../core/port.js';
import { EtherlinkError, errorCode } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { ADDR_SLOT } from '../io/native.js';
import { TapDevice, type TapOptions, type TapStats } from '../io/tap.js';
import { UdpSocket, type UdpStats } from '../io/udp.js';
import { addressEquals, decodeAddress, encodeAddress, formatAddress } from '../io/address.js';
import { TxQueue } from '../io/tx-queue.js';
import { StreamLink, type StreamStats } from '../io/stream.js';
import { connectTcp, connectWebSocket } from '../io/stream-connect.js';
import { SwitchRoute } from './switch-route.js';
import { TransportPolicy, TRANSPORT_MODES, type StreamKind, type TransportKind, type TransportMode, type TransportStatus } from '../protocol/transport.js';
import { encodeKey, generateKeyPair, keyFrom, publicKeyOf } from '../crypto/keys.js';
import {
  DEFAULT_CIPHER,
  DEFAULT_SWITCH_PORT,
  DEFAULT_TAP_MTU,
  ETHERNET_HEADER_SIZE,
  IPV4_HEADER_SIZE,
  IPV6_HEADER_SIZE,
  TRANSPORT_OVERHEAD,
  UDP_HEADER_SIZE,
  VLAN_TAG_SIZE,
  EndpointFlags,
  LOCAL_ADDRESS_SCAN_MS,
  LOCAL_ENDPOINTS_MAX,
  LongControl,
  MessageType,
  NAME_MAX_BYTES,
  NAT_CHECK_INTERVAL_MS,
  NAT_CHECK_TIMEOUT_MS,
  NAT_MAPPING_NAMES,
  NatMapping,
  STREAM_CONNECT_TIMEOUT_MS,
  STREAM_DRAIN_POLL_MS,
  STREAM_PAUSE_BYTES,
  STREAM_PORT_QUEUE_BYTES,
  STREAM_RESUME_BYTES,
  TRAFFIC_REPORT_INTERVAL_MS,
  TRAFFIC_REPORT_REFRESH_MS,
  TRANSPORT_QUIET_MS,
  type TransportCipherName,
} from '../protocol/constants.js';

/** How often the pair sessions run their timers (handshake retries, expiry, MAC claims). */
const PAIR_POLL_INTERVAL_MS = 250;
import { insecureSwitchKey } from '../protocol/noise.js';
import { PortSession, type PortSessionEvent, type PortSessionState } from '../protocol/port-session.js';
import { decodeReflectReply, encodeEndpoints, encodeReflectRequest, encodeTrafficReport, isPairData, printable, truncateUtf8, type LongControlMessage } from '../protocol/wire.js';
import { PairSessions, type PairCounters, type PeerStatus } from '../protocol/pair-sessions.js';
import { CaptureSlot, type CaptureStatus, type PcapOptions, type PcapWriteOptions } from './pcap.js';
import { UnderlayGuard } from './underlay-guard.js';
import { inviteProof } from './invites.js';

/** Options of PortClient.start. */
export interface PortClientOptions {
  /**
   * Switch host name or address (IPv4, IPv6 literal or DNS name), reached over
   * UDP and TCP on `port`; or a ws:// or wss:// URL of the switch's WebSocket
   * (then only that: `port` is not used).
   */
  host: string;
  /** Switch UDP (and TCP) port (default 9999). */
  port?: number;
  /**
   * How to reach the switch: 'auto' (the default) tries UDP, then TCP on the
   * same port, then the WebSocket (`ws`), and moves back to UDP once it works
   * again; 'udp', 'tcp' or 'ws' use that one only.
   */
  transport?: TransportMode;
  /** The switch's WebSocket URL (ws:// or wss://), tried after TCP in 'auto'. */
  ws?: string;
  /** Extra CA certificates (PEM) trusted for wss:// (a private CA); the system's stay trusted. */
  ca?: string | Buffer;
  /** TAP options; mtu defaults to DEFAULT_TAP_MTU (1402). */
  tap?: TapOptions;
  /** This port's private key: 32 bytes or base64 text. Required unless `insecure` (then a throw-away key is made). */
  privateKey?: Buffer | string;
  /** The switch's public key: 32 bytes or base64 text. No other switch is trusted. Required unless `insecure`. */
  switchPublicKey?: Buffer | string;
  /** A pre-shared key, the same as the switch's. */
  psk?: Buffer | string;
  /** Transport cipher, the same as the switch's. Default ChaCha20-Poly1305. */
  cipher?: Exclude<TransportCipherName, 'none'>;
  /** Plaintext, to a switch that runs insecure too (the published switch key, cipher 'none'). */
  insecure?: boolean;
  /** How the switch names this port where its allow file gives no name (default HOSTNAME/IFNAME). */
  name?: string;
  /**
   * An invite to redeem (vport join; parseInviteUrl): the switch adds this
   * port's key to its allow file when the proof of `secret` checks out.
   */
  invite?: { id: Buffer; secret: Buffer };
  /** Rekey after this many seconds (default 120; tests shorten it). */
  rekeyAfterS?: number;
  /** End-to-end sessions with other ports held at once (default 256); the least recently used closes first. */
  maxPairSessions?: number;
  /** Direct paths to other ports, through NAT when needed (default true); false relays everything through the switch (--no-direct). */
  direct?: boolean;
  logger?: Logger;
}

/** Counters of the client itself. */
export interface PortClientCounters {
  /** Datagrams from an address that is not the switch, and not end-to-end data from a peer. */
  rxForeign: number;
  /** Reflector answers taken, and ones that matched no request of ours. */
  reflectReplies: number;
  reflectUnmatched: number;
  /** Streams opened to the switch, and attempts that failed. */
  streamsOpened: number;
  streamFailures: number;
  /** Datagrams for the switch with no way to it yet (a ws:// switch before its stream is up). */
  txNoTransport: number;
  /** Times the device was not read for a while because the stream to the switch had a backlog. */
  streamPauses: number;
  /** Frames from the device that were our own traffic to the switch (a route sends it over the device), dropped. */
  underlayLoops: number;
}

/** The transport to the switch, as status shows it. */
export interface PortTransportStatus extends Omit<TransportStatus, 'since'> {
  /** When the current transport began (ISO time). */
  since: string;
  /** The open stream's remote end and counters. */
  streamRemote?: string;
  streamStats?: StreamStats;
}

/** A PortClient at one instant: session, switch, RTT, device and counters. */
export interface PortClientStatus {
  mode: 'insecure' | 'secure';
  cipher: TransportCipherName;
  state: PortSessionState;
  switch: string;
  session: string;
  rttMs: number | undefined;
  lastHandshakeS?: number;
  device: string;
  /** Whether the device is up, as last told to the switch. */
  linkUp: boolean;
  publicKey: string;
  tap: TapStats;
  udp: UdpStats;
  counters: Record<string, number>;
  /** This port's member id at the switch (0 until it said). */
  memberId: number;
  /** The MACs the switch places behind this port: the sources it may use end to end. */
  macs: string[];
  /** The other members this port knows, with their end-to-end sessions. */
  peers: PeerStatus[];
  /** End-to-end counters over all peers. */
  pairs: PairCounters;
  /** Whether direct paths are on (not --no-direct). */
  direct: boolean;
  /** This port's NAT mapping as measured against the switch and its reflector. */
  nat: (typeof NAT_MAPPING_NAMES)[number];
  /** This port's address as the switch sees it. */
  publicAddress?: string;
  /** The addresses this port reported for direct paths. */
  localAddresses: string[];
  /** How datagrams to the switch travel (UDP, TCP, WebSocket), and why. */
  transport: PortTransportStatus;
  /** While our own traffic to the switch comes back out of the device (a route sends the switch over it): what is dropped, and why. */
  underlayLoop?: {
    /** The switch address the last dropped frame was for. */
    address: string;
    /** Frames dropped so far (counters.underlayLoops). */
    frames: number;
    /** Seconds since the last one. */
    lastS: number;
    /** What is wrong and what to do (the warning's text). */
    reason: string;
  };
  /** The network the switch put this port in, and its VLAN mode there ('transparent', 'access 10', ...): the switch decides both (empty until it said). */
  network: string;
  vlan: string;
  /** The recent events, oldest first: joins and rejoins, rekeys, pair sessions and their paths, the device's link, problems. */
  events: LiveEvent[];
}

/** The events of a PortClient. */
export interface PortClientEvents {
  joined: [info: { session: string; switch: string }];
  'switch-dead': [];
  /** Something to fix (the message says what); the port keeps retrying. */
  problem: [message: string];
  /** The switch refused this port's invite (unknown, expired, used): retrying cannot help. */
  'invite-refused': [message: string];
}

/** Resolve a host name to one address; errors carry code ENOTFOUND (or the resolver's) and name the host. */
export async function resolveHost(host: string): Promise<string> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  try {
    return (await lookup(bare, { verbatim: true })).address;
  } catch (err) {
    const code = errorCode(err) ?? 'ENOTFOUND';
    throw new EtherlinkError(code, `cannot resolve switch host '${host}': ${code} (check the name, or give an IP address)`, { cause: err });
  }
}

interface Identity {
  privateKey: Buffer;
  switchPublicKey: Buffer;
  psk?: Buffer;
  cipher: TransportCipherName;
}

/** The vport: a TAP device on this host joined to a switch over UDP. Also a Port: send() and setReceiver() let an app stand in for the device. */
export class PortClient extends EventEmitter<PortClientEvents> implements Port {
  readonly tap: TapDevice;
  readonly socket: UdpSocket;
  private readonly session: PortSession;
  /** The recent events (status `events`, the live web view). */
  readonly events = new EventLog();
  readonly counters: PortClientCounters = { rxForeign: 0, reflectReplies: 0, reflectUnmatched: 0, streamsOpened: 0, streamFailures: 0, txNoTransport: 0, streamPauses: 0, underlayLoops: 0 };
  private readonly route: SwitchRoute;
  private readonly transport: TransportPolicy;
  /** Bumped whenever a stream is opened or dropped: a late connect or close of an older one is ignored. */
  private streamGen = 0;
  /** When anything last came from the switch's address (its own datagrams, or end-to-end data it relayed). */
  private lastFromSwitchAt = 0;
  /** The open stream (the route sends over it while it is the transport; it may linger after). */
  private stream: StreamLink | null = null;
  private readonly wsUrl: URL | null;
  private readonly log: Logger;
  private readonly mode: 'insecure' | 'secure';
  private readonly cipher: TransportCipherName;
  private readonly switchAddr = Buffer.alloc(ADDR_SLOT);
  private readonly switchPort: number;
  private readonly queue: TxQueue;
  private readonly rx = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  private readonly fromSwitch: Uint16Array;
  private readonly fromPeers: Uint16Array;
  private readonly pairs: PairSessions;
  private pairTimer: NodeJS.Timeout | null = null;
  /** Our own addresses (slots) as last reported in ENDPOINTS, and their text. */
  private localSlots: Buffer[] = [];
  private localText = '';
  private nextScanAt = 0;
  /** The network and VLAN mode the switch gave us (ASSIGNMENT). */
  private assignment = { network: '', vlan: '' };
  /** Our address as the switch sees it (REFLECTED), and the reflector's address slot. */
  private observedSelf: Buffer | null = null;
  private readonly reflectorAddr = Buffer.alloc(ADDR_SLOT);
  private reflectTxid = '';
  private reflectTimer: NodeJS.Timeout | null = null;
  private nextNatCheckAt = Infinity;
  /** When the direct-path traffic is next reported to the switch, and what it last took. */
  private nextTrafficReportAt = 0;
  private reportedTraffic = { tx: 0, rx: 0, at: 0 };
  private readonly viaSwitch = (batch: FrameBatch): void => this.session.transmit(batch);
  private receiver: BatchReceiver | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private closed = false;
  private resolving = false;
  /** Frames read from and written to the TAP, when a capture runs. */
  private readonly capture: CaptureSlot;
  /** Drops our own datagrams to the switch when a route sends them back into the device. */
  private readonly underlay: UnderlayGuard;

  private constructor(
    private readonly opts: PortClientOptions,
    id: Identity,
    address: string,
    tap: TapDevice,
    socket: UdpSocket,
    target: SwitchTarget,
  ) {
    super();
    this.log = opts.logger ?? silentLogger;
    this.capture = new CaptureSlot(this.log, { device: tap.name });
    this.mode = opts.insecure ? 'insecure' : 'secure';
    this.cipher = id.cipher;
    this.tap = tap;
    this.socket = socket;
    this.switchPort = target.port;
    this.wsUrl = target.ws;
    encodeAddress(address, this.switchPort, this.switchAddr, 0);
    this.underlay = new UnderlayGuard({ device: tap.name, log: this.log, switchSlot: this.switchAddr, ws: this.wsUrl, counters: this.counters });
    // --transport tcp|ws: nothing for the switch goes over UDP, not even while the stream is (re)connecting.
    this.route = new SwitchRoute(socket, this.switchAddr, target.udp && (target.mode === 'auto' || target.mode === 'udp'));
    this.queue = new TxQueue(this.route);
    this.fromSwitch = new Uint16Array(socket.capacity);
    this.fromPeers = new Uint16Array(socket.capacity);
    this.session = new PortSession(
      {
        send: (datagram) => {
          if (!this.socket.closed) this.route.sendTo(datagram, this.switchAddr);
        },
        event: (e) => this.onEvent(e),
        debug: (msg) => this.log.debug(msg, { switch: this.switchAddress }),
        longControl: (msg) => this.onLongControl(msg),
      },
      this.queue,
      this.switchAddr,
      {
        privateKey: id.privateKey,
        switchPublicKey: id.switchPublicKey,
        cipher: id.cipher,
        ...(id.psk !== undefined ? { psk: id.psk } : {}),
        name: portName(opts.name ?? `${hostname()}/${tap.name}`),
        pairs: true,
        ...(opts.invite !== undefined ? { invite: { id: opts.invite.id, proof: inviteProof(opts.invite.secret, id.switchPublicKey, publicKeyOf(id.privateKey), opts.invite.id) } } : {}),
        ...(opts.rekeyAfterS !== undefined ? { rekeyAfterMs: opts.rekeyAfterS * 1000, rejectAfterMs: opts.rekeyAfterS * 1500 } : {}),
      },
    );
    this.pairs = new PairSessions(
      {
        toSwitch: (payload) => this.session.sendLong(payload),
        send: (datagram) => {
          if (!this.socket.closed) this.route.sendTo(datagram, this.switchAddr);
        },
        sendTo: (datagram, addr) => {
          if (!this.socket.closed) this.socket.sendTo(datagram, addr);
        },
        event: (e) => {
          if (e.type === 'pair-up') {
            this.log.info('pair session up', { peer: e.peer, session: e.session, path: 'relayed' });
            this.events.add('pair', `pair session with ${e.peer} up (relayed)`, { port: e.peer });
          } else if (e.type === 'pair-down') {
            this.log.info('pair session closed', { peer: e.peer, reason: e.reason });
            this.events.add('pair', `pair session with ${e.peer} closed: ${e.reason}`, { port: e.peer });
          } else {
            this.log.info('path changed', { peer: e.peer, path: e.path, endpoint: e.endpoint, rttMs: e.rttMs, reason: e.reason });
            const via = e.path === 'direct' ? `${e.endpoint !== undefined ? ` via ${e.endpoint}` : ''}${e.rttMs !== undefined ? `, ${e.rttMs.toFixed(2)} ms` : ''}` : '';
            this.events.add('path', `${e.peer} ${e.path}${via}${e.reason !== undefined ? `: ${e.reason}` : ''}`, { port: e.peer });
          }
        },
      },
      this.queue,
      this.switchAddr,
      {
        privateKey: id.privateKey,
        cipher: id.cipher,
        ...(id.psk !== undefined ? { psk: id.psk } : {}),
        ...(opts.maxPairSessions !== undefined ? { maxSessions: opts.maxPairSessions } : {}),
        direct: opts.direct !== false,
        probeSize: tap.mtu + ETHERNET_HEADER_SIZE + VLAN_TAG_SIZE,
        ...(opts.rekeyAfterS !== undefined ? { rekeyAfterMs: opts.rekeyAfterS * 1000, rejectAfterMs: opts.rekeyAfterS * 1500 } : {}),
      },
    );
    tap.setReceiver((batch) => {
      this.capture.writer?.write(batch, SENT_BY_HOST);
      this.transmit(batch);
      // After the send queue's flush (a microtask queued by transmit): is the stream backed up?
      if (this.route.stream !== null) queueMicrotask(this.checkBackpressure);
    });
    // The device going down (admin or carrier) withdraws this port's MACs at the switch, as a bridge port's would.
    tap.on('link', (state) => this.setLinkUp(state.up));
    socket.onDatagrams((batch, addrs) => this.onDatagrams(batch, addrs));
    this.transport = new TransportPolicy(
      {
        connect: (kind) => this.openStream(kind),
        closeStream: (reason) => this.dropStream(reason),
        probeUdp: (seq) => {
          const probe = this.session.udpProbe(seq);
          if (probe !== null && !this.socket.closed) this.socket.sendTo(probe, this.switchAddr);
        },
        switched: (from, to, reason) => this.switched(from, to, reason),
      },
      { mode: target.mode, udp: target.udp, tcp: target.udp, ws: target.ws !== null },
    );
  }

  /** The device is not read while the stream to the switch has a backlog (STREAM_PAUSE_BYTES). */
  private drainTimer: NodeJS.Timeout | null = null;
  /** Times the device was paused for the stream's backlog. */
  private pauses = 0;
  private readonly checkBackpressure = (): void => {
    const link = this.route.stream;
    if (link === null || this.drainTimer !== null || this.closed || link.queuedBytes <= STREAM_PAUSE_BYTES) return;
    this.pauses++;
    this.tap.pause();
    const poll = (): void => {
      const l = this.route.stream;
      if (this.closed) return;
      if (l === null || l.closed || l.queuedBytes <= STREAM_RESUME_BYTES) {
        this.drainTimer = null;
        this.tap.resume();
        return;
      }
      this.drainTimer = setTimeout(poll, STREAM_DRAIN_POLL_MS);
    };
    this.drainTimer = setTimeout(poll, STREAM_DRAIN_POLL_MS);
  };

  /** Open a stream of `kind` to the switch (the policy asked); report how it went. */
  private openStream(kind: StreamKind): void {
    const gen = ++this.streamGen;
    const host = this.opts.host;
    const opening =
      kind === 'tcp'
        ? connectTcp(decodeAddress(this.switchAddr).address, this.switchPort, STREAM_CONNECT_TIMEOUT_MS)
        : connectWebSocket(this.wsUrl!, { timeoutMs: STREAM_CONNECT_TIMEOUT_MS, ...(this.opts.ca !== undefined ? { ca: this.opts.ca } : {}) });
    this.log.debug('opening a stream to the switch', { kind, switch: kind === 'tcp' ? this.switchAddress : this.wsUrl!.href });
    opening.then(
      (carrier) => {
        if (gen !== this.streamGen || this.closed) {
          carrier.destroy('not wanted any more');
          return;
        }
        const link = new StreamLink(carrier, Buffer.from(this.switchAddr), { maxQueueBytes: STREAM_PORT_QUEUE_BYTES });
        link.onDatagrams((batch, addrs) => this.onDatagrams(batch, addrs));
        link.onClose((reason) => {
          if (this.route.stream === link) this.route.stream = null;
          if (this.stream === link) this.stream = null;
          if (gen !== this.streamGen || this.closed) return;
          this.log.warn('stream to the switch closed', { kind, reason });
          this.transport.streamDown(kind, reason, Date.now());
          this.afterTransport();
        });
        this.counters.streamsOpened++;
        this.stream = link;
        this.route.stream = link;
        this.transport.streamUp(kind, Date.now());
        this.afterTransport();
      },
      (err: Error) => {
        if (gen !== this.streamGen || this.closed) return;
        this.counters.streamFailures++;
        this.log.info('stream to the switch failed', { kind, host, error: err.message });
        this.transport.streamDown(kind, err.message, Date.now());
        this.afterTransport();
      },
    );
  }

  private dropStream(reason: string): void {
    this.streamGen++;
    const link = this.stream;
    this.stream = null;
    this.route.stream = null;
    link?.end(reason);
  }

  /** Datagrams to the switch now go over `to`: make ourselves heard there (this moves our endpoint at the switch). */
  private switched(from: TransportKind, to: TransportKind, reason: string): void {
    // Onto the open stream (also one lingering after a return to UDP), or off it.
    this.route.stream = to === 'udp' ? null : this.stream;
    this.log.info('transport changed', { from, to, reason });
    const now = Date.now();
    // An --insecure session is pinned to where it started: it hands shakes again on the new transport.
    if (this.mode === 'insecure' && this.session.isJoined) this.session.rehandshake(now);
    else this.session.kick(now);
    this.schedule();
  }

  private afterTransport(): void {
    this.transport.tick(Date.now(), { joined: this.session.isJoined, missedPings: this.session.missedPings(Date.now()), lastHeardAt: this.session.lastHeardAt });
    this.schedule();
  }

  /** Resolve the switch, create the TAP, bind a UDP socket and start joining. */
  static async start(opts: PortClientOptions): Promise<PortClient> {
    const id = identity(opts);
    const target = switchTarget(opts);
    const address = await resolveHost(target.host);
    const tap = TapDevice.open({ mtu: DEFAULT_TAP_MTU, offload: true, ...opts.tap });
    let socket: UdpSocket;
    try {
      socket = UdpSocket.bind({ address: '::', port: 0, offload: true });
    } catch (err) {
      tap.close();
      throw err;
    }
    const client = new PortClient(opts, id, address, tap, socket, target);
    // Everything written to the device arrived authenticated, unless the cipher is 'none'.
    tap.trustChecksums(id.cipher !== 'none');
    client.log.info('joining switch', { switch: client.switchAddress, device: tap.name, mac: tap.mac, mtu: tap.mtu, mode: client.mode });
    if (!tap.linkUp) client.setLinkUp(false);
    client.session.start(Date.now());
    client.schedule();
    client.pairTimer = setInterval(() => client.tick(Date.now()), PAIR_POLL_INTERVAL_MS);
    client.pairTimer.unref();
    client.tick(Date.now());
    return client;
  }

  get name(): string {
    return this.tap.name;
  }

  get switchAddress(): string {
    return formatAddress(this.switchAddr);
  }

  /** This port's public key (base64): what the switch's allow file lists. */
  get publicKey(): string {
    return this.session.publicKey;
  }

  /** Port: send frames to the switch as if they came from the TAP (embedding, tests). */
  send(batch: FrameBatch): void {
    this.transmit(batch);
  }

  /** Frames from the device: end to end where a pair session is up, the rest through the switch. */
  private transmit(batch: FrameBatch): void {
    const now = Date.now();
    // Carried, our own datagrams to the switch (routed back into the device) would loop.
    const frames = this.underlay.filter(batch, now);
    if (frames.count > 0) this.pairs.transmit(frames, now, this.viaSwitch);
  }

  /** The directory, relayed pair handshakes and introductions, from the switch. */
  private onLongControl(msg: LongControlMessage): void {
    const now = Date.now();
    if (msg.kind === LongControl.PEER) this.pairs.peer(msg, now);
    else if (msg.kind === LongControl.PAIR_RECV) this.pairs.relayed(msg.src, msg.publicKey, msg.message, now);
    else if (msg.kind === LongControl.CANDIDATES) this.pairs.candidates(msg, now);
    else if (msg.kind === LongControl.REFLECTED) this.reflected(msg.observed, msg.reflectorPort);
    else if (msg.kind === LongControl.ASSIGNMENT) {
      if (msg.network !== this.assignment.network || msg.vlan !== this.assignment.vlan) this.log.info('assigned by the switch', { network: msg.network, vlan: msg.vlan });
      this.assignment = { network: msg.network, vlan: msg.vlan };
    }
  }

  /** Pair timers, and now and then our own addresses and NAT. */
  private tick(now: number): void {
    this.pairs.poll(now);
    this.transport.tick(now, { joined: this.session.isJoined, missedPings: this.session.missedPings(now), lastHeardAt: this.session.lastHeardAt });
    // Frames went to the switch and nothing came back for a while: ask now, so a broken transport shows within seconds.
    // (Relayed end-to-end data counts as hearing from it: a relayed conversation needs no pings.)
    const heard = Math.max(this.session.lastHeardAt, this.lastFromSwitchAt);
    if (this.route.lastToSwitchAt > heard + TRANSPORT_QUIET_MS && now - heard > TRANSPORT_QUIET_MS) this.session.pingSoon(now);
    this.counters.txNoTransport = this.route.dropped;
    this.counters.streamPauses = this.pauses;
    this.schedule();
    if (now >= this.nextScanAt) {
      this.nextScanAt = now + LOCAL_ADDRESS_SCAN_MS;
      this.scanAddresses(false);
    }
    if (now >= this.nextNatCheckAt) this.checkNat();
    if (now >= this.nextTrafficReportAt) this.reportTraffic(now);
  }

  /**
   * Tell the switch what went direct since we started (TRAFFIC_REPORT): the
   * switch sees none of it, and shows it in its status and charts. Each
   * second while it changes, every TRAFFIC_REPORT_REFRESH_MS when not (a
   * datagram may be lost, or come before the switch confirmed our session);
   * nothing while nothing ever went direct.
   */
  private reportTraffic(now: number): void {
    this.nextTrafficReportAt = now + TRAFFIC_REPORT_INTERVAL_MS;
    const { txDirectBytes: tx, rxDirectBytes: rx } = this.pairs.counters;
    const last = this.reportedTraffic;
    if (tx + rx === 0 || (tx === last.tx && rx === last.rx && now - last.at < TRAFFIC_REPORT_REFRESH_MS)) return;
    if (this.session.sendLong(encodeTrafficReport(tx, rx))) this.reportedTraffic = { tx, rx, at: now };
  }

  /**
   * Our own addresses for direct paths (a peer on the same LAN reaches us on
   * them): every interface address but loopback, link-local and the device's
   * own (probing over the overlay would loop), with our UDP port. Not those of
   * an interface whose MTU cannot carry our largest datagram whole (a tunnel:
   * another VPN, a VXLAN): frames would be fragmented or lost there. Reported
   * in ENDPOINTS when they change, or when `force`.
   */
  private scanAddresses(force: boolean): void {
    const slots: Buffer[] = [];
    const port = this.socket.port;
    // The largest datagram: a full frame with a VLAN tag, sealed, in UDP.
    const datagram = this.tap.mtu + ETHERNET_HEADER_SIZE + VLAN_TAG_SIZE + TRANSPORT_OVERHEAD + UDP_HEADER_SIZE;
    if (this.pairs.direct) {
      for (const [name, addrs] of Object.entries(networkInterfaces())) {
        if (name === this.tap.name || addrs === undefined) continue;
        const mtu = interfaceMtu(name);
        for (const a of addrs) {
          if (a.internal || a.address.startsWith('fe80:') || a.address.includes('%')) continue;
          if (mtu !== undefined && mtu < datagram + (a.family === 'IPv4' ? IPV4_HEADER_SIZE : IPV6_HEADER_SIZE)) continue;
          if (slots.length >= LOCAL_ENDPOINTS_MAX) break;
          slots.push(encodeAddress(a.address, port));
        }
      }
    }
    const text = slots.map((s) => formatAddress(s)).join(',');
    if (!force && text === this.localText) return;
    this.localSlots = slots;
    this.localText = text;
    this.sendEndpoints();
  }

  private sendEndpoints(): void {
    const flags = this.pairs.direct ? 0 : EndpointFlags.NO_DIRECT;
    this.session.sendLong(encodeEndpoints(flags, this.pairs.nat, this.localSlots));
  }

  /** REFLECTED: our address as the switch sees it; measure our NAT against its reflector. */
  private reflected(observed: Buffer, reflectorPort: number): void {
    const moved = this.observedSelf === null || !addressEquals(observed, 0, this.observedSelf, 0);
    this.observedSelf = observed;
    if (reflectorPort > 0) {
      this.switchAddr.copy(this.reflectorAddr);
      this.reflectorAddr.writeUInt16BE(reflectorPort, 16);
    } else {
      this.reflectorAddr.fill(0);
    }
    if (moved) this.checkNat();
  }

  /** One REFLECT_REQUEST from our socket to the reflector: the same public port as the switch saw means endpoint-independent mapping. */
  private checkNat(): void {
    this.nextNatCheckAt = Date.now() + NAT_CHECK_INTERVAL_MS;
    if (this.observedSelf === null || this.socket.closed) return;
    if (this.ownAddress(this.observedSelf)) {
      this.setNat(NatMapping.NONE);
      return;
    }
    if (this.reflectorAddr.readUInt16BE(16) === 0) {
      this.setNat(NatMapping.UNKNOWN);
      return;
    }
    const txid = randomBytes(8);
    this.reflectTxid = txid.toString('hex');
    this.socket.sendTo(encodeReflectRequest(txid), this.reflectorAddr);
    if (this.reflectTimer !== null) clearTimeout(this.reflectTimer);
    this.reflectTimer = setTimeout(() => {
      this.reflectTimer = null;
      if (this.reflectTxid === '') return;
      this.reflectTxid = '';
      this.setNat(NatMapping.UNKNOWN);
    }, NAT_CHECK_TIMEOUT_MS);
    this.reflectTimer.unref();
  }

  private onReflectReply(buf: Buffer, off: number, len: number): void {
    const r = decodeReflectReply(buf, off, len);
    if (r === null || r.txid !== this.reflectTxid || this.observedSelf === null) {
      this.counters.reflectUnmatched++;
      return;
    }
    this.counters.reflectReplies++;
    this.reflectTxid = '';
    if (this.reflectTimer !== null) clearTimeout(this.reflectTimer);
    this.reflectTimer = null;
    this.setNat(addressEquals(r.observed, 0, this.observedSelf, 0) ? NatMapping.ENDPOINT_INDEPENDENT : NatMapping.ENDPOINT_DEPENDENT);
  }

  private setNat(nat: NatMapping): void {
    if (this.pairs.nat === nat) return;
    this.pairs.setNat(nat);
    this.log.info('NAT mapping measured', { nat: NAT_MAPPING_NAMES[nat], public: this.observedSelf !== null ? formatAddress(this.observedSelf) : undefined });
    this.sendEndpoints();
  }

  /** Whether `slot` is one of our own addresses (no NAT between us and the switch). */
  private ownAddress(slot: Buffer): boolean {
    const { address, port } = decodeAddress(slot);
    if (port !== this.socket.port) return false;
    for (const addrs of Object.values(networkInterfaces())) for (const a of addrs ?? []) if (a.address === address) return true;
    return false;
  }

  /** Port: receive frames from the switch instead of writing them to the TAP. */
  setReceiver(receiver: BatchReceiver | null): void {
    this.receiver = receiver;
  }

  /**
   * The device's link went down or came back: the switch withdraws this port's
   * MACs while it is down. The client follows its TAP's own link state by
   * itself; call this when frames go to a receiver instead and that goes down.
   */
  setLinkUp(up: boolean): void {
    this.log.info(up ? 'device up: telling the switch' : 'device down: the switch withdraws its MACs', { device: this.tap.name });
    this.events.add('link', up ? `${this.tap.name} up: told the switch` : `${this.tap.name} down: the switch withdraws its MACs`);
    this.session.setLinkUp(up, Date.now());
    this.schedule();
  }

  /**
   * One receive batch, in windows: datagrams from the switch are opened
   * straight into the device's batch — its own session's and, relayed by it,
   * the pair sessions'.
   */
  private onDatagrams(batch: FrameBatch, addrs: Buffer): void {
    const now = Date.now();
    const { buf, offsets, lengths } = batch;
    let n = 0;
    let np = 0;
    let relayed = false;
    for (let i = 0; i < batch.count; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      // End-to-end data is authenticated by its pair session wherever it comes from: relayed, or on a direct path.
      if (isPairData(buf, off, len)) {
        this.fromPeers[np++] = i;
        if (!relayed && addressEquals(addrs, i * ADDR_SLOT, this.switchAddr, 0)) relayed = true;
      }
      else if (addressEquals(addrs, i * ADDR_SLOT, this.switchAddr, 0)) this.fromSwitch[n++] = i;
      else if (buf[off + 1] === MessageType.REFLECT_REPLY && addressEquals(addrs, i * ADDR_SLOT, this.reflectorAddr, 0)) this.onReflectReply(buf, off, len);
      else this.counters.rxForeign++;
    }
    if (n > 0 || relayed) this.lastFromSwitchAt = now;
    // A window of each kind at a time: the device batch holds one window's frames (BATCH_SIZE), never two.
    for (let from = 0; from < n; from += BATCH_SIZE) {
      this.session.receive(batch, this.fromSwitch, from, Math.min(n, from + BATCH_SIZE), now, this.rx);
      this.deliver();
    }
    for (let from = 0; from < np; from += BATCH_SIZE) {
      this.pairs.receive(batch, addrs, this.fromPeers, from, Math.min(np, from + BATCH_SIZE), now, this.rx);
      this.deliver();
    }
    this.schedule();
  }

  /** The frames of one receive window, to the device (or the app's receiver). */
  private deliver(): void {
    const rx = this.rx;
    if (rx.count === 0) return;
    this.capture.writer?.write(rx, RECEIVED_BY_HOST);
    if (this.receiver !== null) this.receiver(rx);
    else this.tap.write(rx);
    rx.clear();
  }

  private onEvent(e: PortSessionEvent): void {
    switch (e.type) {
      case 'joined':
        // A new session with the switch: member ids start over; pair sessions and direct paths carry on.
        this.pairs.rejoined(Date.now());
        this.observedSelf = null;
        this.scanAddresses(true);
        this.log.info('joined switch', { switch: this.switchAddress, session: e.session, attempts: e.attempts });
        this.events.add('join', `joined the switch at ${this.switchAddress} (session ${e.session})`);
        // A new session: the switch may have restarted and forgotten our direct traffic; report it at the next tick.
        this.reportedTraffic = { tx: -1, rx: -1, at: 0 };
        this.emit('joined', { session: e.session, switch: this.switchAddress });
        break;
      case 'rekeyed':
        this.log.debug('rekeyed', { switch: this.switchAddress, session: e.session });
        this.events.add('rekey', `rekeyed with the switch (session ${e.session})`);
        break;
      case 'probe-ack':
        this.transport.probeAck(e.seq, Date.now());
        break;
      case 'problem':
        this.log.error(e.message, { switch: this.switchAddress });
        this.events.add('problem', e.message);
        this.emit('problem', e.message);
        if (e.reason === 'invite-refused') this.emit('invite-refused', e.message);
        break;
      case 'switch-dead':
        this.log.warn('switch not answering; rejoining with backoff', { switch: this.switchAddress, silent: `${(e.silentMs / 1000).toFixed(1)}s` });
        this.events.add('leave', `the switch did not answer for ${(e.silentMs / 1000).toFixed(1)} s: rejoining`);
        this.emit('switch-dead');
        this.reresolve();
        break;
      case 'left-by-switch':
        this.log.warn('switch closed the session (shutting down, or this port was removed); rejoining with backoff', { switch: this.switchAddress });
        this.events.add('leave', 'the switch closed the session (shutting down, or this port was removed): rejoining');
        break;
    }
  }

  /** The switch's name may now point elsewhere (network change, SIGHUP): look it up again. */
  reresolve(): void {
    if (this.resolving || this.closed) return;
    this.resolving = true;
    void this.underlay.refresh();
    resolveHost(switchTarget(this.opts).host)
      .then((address) => {
        const next = encodeAddress(address, this.switchPort);
        if (!addressEquals(next, 0, this.switchAddr, 0)) {
          this.log.info('switch address changed', { from: this.switchAddress, to: formatAddress(next) });
          next.copy(this.switchAddr);
          this.stream?.setPeer(this.switchAddr);
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
      this.session.poll(Date.now());
      this.schedule();
    }, Math.max(0, at - Date.now()));
  }

  /** The session, switch, RTT, device and counters now (what `vport status --json` prints). */
  status(): PortClientStatus {
    const s = this.session.status(Date.now());
    return {
      mode: this.mode,
      cipher: this.cipher,
      state: s.state,
      switch: this.switchAddress,
      session: s.session,
      rttMs: s.rttMs,
      ...(s.lastHandshakeS !== undefined ? { lastHandshakeS: s.lastHandshakeS } : {}),
      device: this.tap.name,
      linkUp: s.linkUp,
      publicKey: this.publicKey,
      tap: this.tap.stats,
      udp: this.socket.stats,
      counters: { ...s.counters, ...this.counters },
      memberId: this.pairs.selfId,
      macs: this.pairs.ownMacs(),
      peers: this.pairs.status(Date.now()),
      pairs: { ...this.pairs.counters },
      direct: this.pairs.direct,
      nat: NAT_MAPPING_NAMES[this.pairs.nat as NatMapping],
      ...(this.observedSelf !== null ? { publicAddress: formatAddress(this.observedSelf) } : {}),
      localAddresses: this.localSlots.map((a) => formatAddress(a)),
      transport: this.transportStatus(),
      ...this.underlay.statusField(Date.now()),
      network: this.assignment.network,
      vlan: this.assignment.vlan,
      events: this.events.list(),
    };
  }

  /** The transport to the switch now, for status. */
  transportStatus(): PortTransportStatus {
    const t = this.transport.status(Date.now());
    const link = this.stream;
    return {
      ...t,
      since: new Date(t.since).toISOString(),
      ...(link !== null ? { streamRemote: link.carrier.remote, streamStats: { ...link.stats } } : {}),
    };
  }

  /** What datagrams to the switch go over now. */
  get transportKind(): TransportKind {
    return this.transport.kind;
  }

  /**
   * Record the frames on the device, both directions, to a capture FILE: in
   * pcapng on an interface named after the device, as tcpdump on it would
   * label them — read from the TAP (sent by this host) outbound, written to it
   * (received by this host) inbound. Throws ERR_CAPTURE_RUNNING if a capture
   * is already on, or the open error.
   */
  startCapture(file: string, opts: PcapOptions = {}): CaptureStatus {
    return this.capture.start(file, { interfaceName: this.tap.name, ...opts }).status();
  }

  /** Stop the capture and write out what is buffered; resolves with its final status, or null if none ran. */
  stopCapture(): Promise<CaptureStatus | null> {
    return this.capture.stop();
  }

  /** The running (or failed, until stopped) capture, or null. */
  captureStatus(): CaptureStatus | null {
    return this.capture.status();
  }

  /** Say goodbye to the switch, remove the device, close the socket. Idempotent. A running capture is closed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.stopCapture();
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.pairTimer !== null) clearInterval(this.pairTimer);
    if (this.reflectTimer !== null) clearTimeout(this.reflectTimer);
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.pairs.close();
    this.session.leave();
    this.queue.flush();
    this.dropStream('port closing');
    this.tap.close();
    this.socket.close();
  }
}

/** Where the switch is, and by which transports (from PortClientOptions). */
interface SwitchTarget {
  /** The name or address to resolve. */
  host: string;
  port: number;
  udp: boolean;
  ws: URL | null;
  mode: TransportMode;
}

/** Whether a switch address is a URL (ws://, wss://, or a scheme we do not take) rather than a host name. */
export function isSwitchUrl(host: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(host);
}

/**
 * Check the switch address, transport and WebSocket URL of PortClient options
 * as start() will (a CLI can report a bad flag before it opens anything).
 * Throws ERR_INVALID_URL or ERR_INVALID_ARG_VALUE saying what to fix.
 */
export function checkSwitchAddress(opts: Pick<PortClientOptions, 'host' | 'port' | 'transport' | 'ws'>): void {
  switchTarget(opts);
}

/** The switch address and transports from the options, checked: errors say which option to fix. */
function switchTarget(opts: Pick<PortClientOptions, 'host' | 'port' | 'transport' | 'ws'>): SwitchTarget {
  const mode = opts.transport ?? 'auto';
  if (!TRANSPORT_MODES.includes(mode)) {
    throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `transport '${String(mode)}' is not one of ${TRANSPORT_MODES.join(', ')}`);
  }
  const parseWs = (text: string, what: string): URL => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new EtherlinkError('ERR_INVALID_URL', `${what} '${text}' is not a URL: use ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH`);
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new EtherlinkError('ERR_INVALID_URL', `${what} '${text}' must start with ws:// or wss://`);
    return url;
  };
  if (isSwitchUrl(opts.host)) {
    const url = parseWs(opts.host, 'switch address');
    if (mode === 'udp' || mode === 'tcp') throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `transport '${mode}' needs HOST PORT, not the WebSocket URL ${opts.host} (use transport 'ws' or 'auto')`);
    return { host: url.hostname, port: Number(url.port || (url.protocol === 'wss:' ? 443 : 80)), udp: false, ws: url, mode };
  }
  const ws = opts.ws !== undefined ? parseWs(opts.ws, 'ws') : null;
  if (mode === 'ws' && ws === null) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', "transport 'ws' needs the switch's WebSocket URL: give ws (--ws wss://HOST/etherlink), or a ws:// switch address");
  return { host: opts.host, port: opts.port ?? DEFAULT_SWITCH_PORT, udp: true, ws, mode };
}

/** An interface's MTU from sysfs (this network namespace's), or undefined if it cannot be read. */
function interfaceMtu(name: string): number | undefined {
  try {
    const n = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Keys and cipher from the options, checked before anything is created. */
function identity(opts: PortClientOptions): Identity {
  if (opts.insecure) {
    for (const k of ['switchPublicKey', 'psk', 'cipher'] as const) {
      if (opts[k] !== undefined) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `insecure: true talks to the published switch key in clear: drop '${k}' (or drop insecure)`);
    }
    return {
      privateKey: opts.privateKey !== undefined ? keyFrom(opts.privateKey, 'privateKey') : generateKeyPair().privateKey,
      switchPublicKey: insecureSwitchKey().publicKey,
      cipher: 'none',
    };
  }
  if (opts.privateKey === undefined || opts.switchPublicKey === undefined) {
    throw new EtherlinkError(
      'ERR_NO_KEY',
      `a port needs ${opts.privateKey === undefined ? 'its private key (privateKey: readKeyFile(path).privateKey)' : "the switch's public key (switchPublicKey)"}, or insecure: true for plaintext`,
    );
  }
  const privateKey = keyFrom(opts.privateKey, 'privateKey');
  const switchPublicKey = keyFrom(opts.switchPublicKey, 'switchPublicKey');
  if (switchPublicKey.equals(publicKeyOf(privateKey))) {
    throw new EtherlinkError('ERR_INVALID_KEY', `switchPublicKey is this port's own public key (${encodeKey(switchPublicKey)}): give the switch's ('etherlink pubkey' on its key file)`);
  }
  return { privateKey, switchPublicKey, ...(opts.psk !== undefined ? { psk: keyFrom(opts.psk, 'psk') } : {}), cipher: opts.cipher ?? DEFAULT_CIPHER };
}

/** Capture directions as tcpdump on the device would label them (constant: no allocation per batch). */
const SENT_BY_HOST: PcapWriteOptions = { direction: 'out' };
const RECEIVED_BY_HOST: PcapWriteOptions = { direction: 'in' };

/** What the protocol carries of a name: at most NAME_MAX_BYTES of printable UTF-8. */
function portName(name: string): string {
  return truncateUtf8(printable(name), NAME_MAX_BYTES).toString('utf8');
}
