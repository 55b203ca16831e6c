// SwitchServer: the vswitch. UDP sockets, the members' sessions (lib/protocol/
// switch-sessions.ts) and the learning Switch. A receive window goes socket ->
// sessions (decrypt into each member's ingress batch) -> Switch (one pass per
// member) -> the egress members' send (seal into the socket's queue) -> socket.
import { EventLog } from './events.js';
import { EventEmitter } from 'node:events';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import type { FrameBatch } from '../core/frames.js';
import type { Port } from '../core/port.js';
import { EtherlinkError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { Switch, type MacStatus, type SwitchOptions, type SwitchPort, type SwitchSnapshot, type TrafficCounters } from '../switch/switch.js';
import { formatVlanMode, sameVlanMode, type VlanMode } from '../switch/vlan.js';
import { DEFAULT_NETWORK, checkNetworks, mergedAllowList, type NetworkSpec } from './networks.js';
import { InviteBook, allowFileName, allowLine, type InviteRecord, type InviteRequest } from './invites.js';
import { appendFileSync, readFileSync } from 'node:fs';
import { UdpSocket, type DatagramSocket, type UdpStats } from '../io/udp.js';
import { decodeAddress, encodeAddress, formatAddress } from '../io/address.js';
import { STREAM_BATCH, StreamLink, type StreamCarrier } from '../io/stream.js';
import { MutableFrameBatch } from '../core/frames.js';
import { listenTcp, listenWebSocket, type ListenerCounters, type StreamOrigin, type WebSocketListenOptions } from './stream-listener.js';
import type { Server as NetServer } from 'node:net';
import { RELAY_COUNTERS_PER_MEMBER, RelayCounter } from '../io/native.js';
import { TxQueue } from '../io/tx-queue.js';
import { RelayWorkers, type RelayWorkerStatus } from './relay-workers.js';
import { VxlanEndpoint, type VtepAddress, type VtepPort, type VtepStatus, type VxlanCounters, type VxlanNetwork, type VxlanOptions } from './vxlan.js';
import { encodeKey, keyFrom, type AllowEntry } from '../crypto/keys.js';
import {
  DEFAULT_CIPHER,
  DEFAULT_SWITCH_PORT,
  GONE_REPLIES_PER_SECOND,
  KEEPALIVE_INTERVAL_DEFAULT_S,
  EndpointFlags,
  LongControl,
  MEMBER_ID_MAX,
  NAT_MAPPING_NAMES,
  NatMapping,
  PathKind,
  REFLECT_REPLIES_PER_SECOND,
  RENDEZVOUS_PER_SECOND,
  MAX_PORTS_DEFAULT,
  PORT_TIMEOUT_DEFAULT_S,
  PORT_TIMEOUT_MIN_INTERVALS,
  SWITCH_TICK_INTERVAL_MS,
  STREAM_AUTH_TIMEOUT_MS,
  STREAM_CONNECTIONS_MAX,
  STREAM_CONNECTIONS_PER_ADDRESS,
  STREAM_DATAGRAM_MAX,
  STREAM_LENGTH_SIZE,
  STREAM_UNBOUND_DATAGRAM_MAX,
  type TransportCipherName,
} from '../protocol/constants.js';
import { insecureSwitchKey } from '../protocol/noise.js';
import { Member, RECEIVE_WINDOW, SwitchSessions, type Link, type SessionCounters } from '../protocol/switch-sessions.js';
import {
  encodeAssignment,
  encodeCandidates,
  encodeEndpointUnknown,
  encodePairRecv,
  encodePeer,
  encodePeerGone,
  encodeReflectReply,
  encodeReflected,
  isPairData,
  isReflectRequest,
  readReceiverIndex,
  readRoute,
  type LongControlMessage,
} from '../protocol/wire.js';
import { TokenBucket } from '../protocol/limits.js';
import { Directory } from './directory.js';
import { CaptureSlot, type CaptureStatus, type PcapOptions, type PcapWriteOptions } from './pcap.js';

export { DEFAULT_SWITCH_PORT };

/**
 * A learned MAC stays with its port while that port used it this recently
 * (docs/SECURITY.md); vde_switch keeps 3 s of minimum persistence against flapping.
 */
export const DEFAULT_MAC_MOVE_HOLD_S = 3;
/** Learned MACs per port: a member flooding random sources fills only its own quota. */
export const DEFAULT_MAX_MACS_PER_PORT = 64;

/** An address and UDP port to listen on. */
export interface ListenAddress {
  address: string;
  port: number;
}

/** Options of a SwitchServer. */
export interface SwitchServerOptions {
  /** Where to listen. Default: [{ address: '::', port: 9999 }] (IPv4 and IPv6). */
  listen?: readonly ListenAddress[];
  /** This switch's private key: 32 bytes, or base64 text (readKeyFile, generateKeyPair). Required unless `insecure`. */
  privateKey?: Buffer | string;
  /** The admitted ports (readAllowFile, parseAllowList): one network, named 'default'. Required unless `insecure` or `networks`. */
  allow?: readonly AllowEntry[];
  /**
   * Several isolated networks on this one switch (instead of `allow`): each
   * has its own MAC table, limits, flood domain and end-to-end sessions; a
   * member's key decides its network, and a key may be in only one.
   */
  networks?: readonly NetworkSpec[];
  /** Broadcast, multicast and unknown-unicast frames per second per port (default DEFAULT_STORM_LIMIT; 0: no limit); a network may override it. */
  stormLimit?: number;
  /** MAC-flap loop guard: a MAC seen from another port this many times within a second blocks the newer port (default from the Switch; 0: off). */
  flapThreshold?: number;
  /** How long the loop guard blocks a port, in seconds (doubling for a repeat offender, up to an hour). */
  loopBlockS?: number;
  /** A pre-shared key mixed into every handshake; every port needs the same. */
  psk?: Buffer | string;
  /** Transport cipher; every port must use the same. Default ChaCha20-Poly1305. */
  cipher?: Exclude<TransportCipherName, 'none'>;
  /**
   * Plaintext: cipher 'none', the published switch key, and any key may join.
   * For trusted labs and benchmarks only.
   */
  insecure?: boolean;
  /** MAC ageing in seconds (default 300). */
  macAgeS?: number;
  /** Cap on learned MACs in total (default 65536). */
  maxMacs?: number;
  /** Cap on learned MACs per port (default 64). */
  maxMacsPerPort?: number;
  /** Seconds after its owner's last frame before another port may take a MAC (default 3). */
  macMoveHoldS?: number;
  /** Seconds of silence before a port is dropped (default 30). */
  portTimeoutS?: number;
  /** Keepalive interval told to ports; default min(10, portTimeout / 3). */
  keepaliveS?: number;
  /** Ports that may join (default 1024). */
  maxPorts?: number;
  /** Session keys are refused after this many seconds (default 180; tests shorten it). */
  keyLifetimeS?: number;
  /**
   * UDP port of the reflector, a second socket that tells a port its address
   * as seen there: a different public port than the switch saw means the
   * port's NAT maps per destination ("symmetric"), and direct paths will
   * likely need the relay. Default 0: any free port; false: no reflector
   * (ports report their NAT as 'unknown').
   */
  reflectorPort?: number | false;
  /** Also accept ports over TCP, on each listen address and the same port number (default true). */
  tcp?: boolean;
  /** Also accept ports over WebSocket (HTTP Upgrade on a path), optionally with TLS: for a reverse proxy on 443, or wss:// directly. */
  ws?: WebSocketListenOptions;
  /** A stream must carry a handshake within this many ms or it is closed (default STREAM_AUTH_TIMEOUT_MS, 10 s; tests shorten it). */
  streamAuthTimeoutMs?: number;
  /**
   * Be a VXLAN VTEP too (RFC 7348; lib/daemon/vxlan.ts): each remote VTEP is
   * a port of its network. `vni` and `vteps` here are the first network's
   * (an open switch's only one); a NetworkSpec's own vni and vteps win.
   * Unauthenticated: only configured VTEP addresses with their VNI are heard.
   */
  vxlan?: VxlanOptions & { vni?: number; vteps?: readonly VtepAddress[]; maxMacsPerVtep?: number };
  /**
   * Relay workers (lib/daemon/relay-workers.ts): threads that relay pair data
   * on every core, each for a share of the destinations, in the UDP ports'
   * SO_REUSEPORT groups. Default 0: the main thread relays alone. Await
   * `listening` before relying on them.
   */
  workers?: number;
  logger?: Logger;
}

export type { WebSocketListenOptions };

/** The stream listeners' counters, in status. */
export interface StreamCounters {
  /** Streams open now, accepted in all, and refused (over STREAM_CONNECTIONS_MAX, or per address). */
  open: number;
  accepted: number;
  refused: number;
  /** Closed for not carrying a handshake within STREAM_AUTH_TIMEOUT_MS, or idle past the port timeout. */
  authTimeouts: number;
  idleTimeouts: number;
  /** Closed because the bytes were not length-prefixed datagrams. */
  malformed: number;
  /** Datagrams skipped for being too long (before a handshake: over STREAM_UNBOUND_DATAGRAM_MAX). */
  skipped: number;
  /** Datagrams not sent to a stream: its send queue was full (head-of-line bound). */
  txDropped: number;
  /** HTTP requests that were no WebSocket upgrade to our path. */
  wsRejected: number;
}

/** Default keepalive for a port timeout: three keepalives fit in one timeout. */
export function keepaliveFor(portTimeoutS: number): number {
  return Math.max(1, Math.min(KEEPALIVE_INTERVAL_DEFAULT_S, Math.floor(portTimeoutS / 3)));
}

/** One remote member as status shows it. */
export interface MemberStatus {
  /** The switch port id of the member (SwitchSnapshot.ports[].id). */
  switchPort: number;
  name: string;
  publicKey: string;
  address: string;
  joinedAt: string;
  lastSeenS: number;
  lastHandshakeS: number;
  rekeys: number;
  linkUp: boolean;
  /** The member id end-to-end datagrams are routed by. */
  memberId: number;
  /** The network its key belongs to, and its VLAN mode ('transparent', 'access 10', 'trunk 10,20 pvid 1'). */
  network: string;
  vlan: string;
  /** How it reaches the switch now: 'udp', 'tcp' or 'ws'. */
  transport: 'udp' | 'tcp' | 'ws';
  /** End-to-end traffic the switch relayed (unopened) for this member: to it and from it. */
  relayed: { toFrames: number; toBytes: number; fromFrames: number; fromBytes: number };
  /** Members that hold this one's directory entry (itself included). */
  knownBy: number;
  /** The names of the other members that hold it: who may talk to it end to end. */
  knownByNames: string[];
  /** Its NAT mapping as it measured it, and whether it runs with --no-direct. */
  nat: (typeof NAT_MAPPING_NAMES)[number];
  direct: boolean;
  /** The addresses it reported for direct paths (its LAN side). */
  localAddresses: string[];
  /**
   * What it reports it sent and received on direct paths since its vport
   * started (TRAFFIC_REPORT): traffic this switch no longer sees. Self-reported,
   * for status and charts only; absent until it reported.
   */
  directTraffic?: { txBytes: number; rxBytes: number };
}

/** A pair of members and how they reach each other, as they report it. */
export interface PairPathStatus {
  a: string;
  b: string;
  /** The network both are in. */
  network: string;
  path: 'direct' | 'relayed';
  /** Why relayed (the reporting side's words), or the direct endpoint it uses. */
  reason?: string;
}

/** The VXLAN VTEP as status shows it: its port, its source ports, the largest UDP payload per family, and what it dropped. */
export interface VxlanStatus extends VxlanCounters {
  port: number;
  sourcePorts: number[];
  maxPayload: { v4: number; v6: number };
  socket: UdpStats;
  /** The source-port pool's sends, added up. */
  send: { txDatagrams: number; txBytes: number; txErrors: number; txDropped: number };
}

/** A SwitchServer at one instant: the Switch snapshot, the members, the protocol and socket counters. */
export interface SwitchServerSnapshot extends SwitchSnapshot {
  /** The isolated networks; ports, macTable and totals above are every network's together (each port and MAC names its network). */
  networks: NetworkStatus[];
  ports: (SwitchSnapshot['ports'][number] & { network: string })[];
  macTable: (MacStatus & { network: string })[];
  mode: 'insecure' | 'secure';
  cipher: TransportCipherName;
  publicKey: string;
  members: MemberStatus[];
  /** Pairs with an end-to-end session, direct or relayed, as their members report (PATH_REPORT). */
  pairs: PairPathStatus[];
  /** The reflector's UDP port (0: none). */
  reflectorPort: number;
  /** TCP ports listened on (the UDP ports' numbers), and the WebSocket listener ('ws://ADDR:PORT/PATH' or 'wss://...'). */
  tcpPorts: number[];
  ws?: string;
  streams: StreamCounters;
  protocol: SessionCounters & {
    ports: number;
    pendingHandshakes: number;
    /** Pair handshake messages relayed between members. */
    pairHandshakesRelayed: number;
    /** PAIR_DATA relayed in JavaScript (a destination on another socket, or a stream to or from UDP). */
    pairRelayedSlow: number;
    /** PAIR_DATA relayed from one stream to another, framed as it came. */
    pairRelayedStream: number;
    /** PAIR_DATA dropped: from no member, or for a member that is gone. */
    pairDropped: number;
    /** Of those and of PAIR_SEND: for a member of another network (or VLAN mode), refused as if it did not exist. */
    pairCrossNetwork: number;
    /** PEER messages sent (directory entries and withdrawals). */
    directoryMessages: number;
    /** Introductions (CANDIDATES pairs) sent, refused (no such member, rate), and reflector answers. */
    rendezvous: number;
    rendezvousRefused: number;
    reflectReplies: number;
    reflectDropped: number;
  };
  /** Remote VXLAN VTEPs (ports of their networks), and the VTEP's socket and drop counters. */
  vteps: VtepStatus[];
  vxlan?: VxlanStatus;
  /** Relay workers (SwitchServerOptions.workers): each one's sockets' counters. */
  workers: RelayWorkerStatus[];
  udp: UdpStats[];
}

/** A port in the 'port-joined' and 'port-left' events. */
export interface PortEventInfo {
  name: string;
  /** The switch port id. */
  id: number;
  address: string;
  publicKey: string;
}

/** The events of a SwitchServer. */
export interface SwitchServerEvents {
  /** A key outside the allow list redeemed an invite: its line was added to the network's allow file. */
  'invite-redeemed': [info: { invite: string; publicKey: string; name: string; network: string }];
  'port-joined': [info: PortEventInfo];
  'port-left': [info: PortEventInfo & { reason: string }];
}

/** One isolated network of a switch: its spec and its own learning Switch. */
interface Network {
  readonly name: string;
  spec: NetworkSpec;
  readonly switch: Switch;
}

/** One network as status shows it. */
export interface NetworkStatus {
  name: string;
  allowFile?: string;
  /** Keys admitted, and members joined now. */
  admitted: number;
  members: number;
  ports: number;
  macs: number;
  limits: { maxMacs: number; maxMacsPerPort: number; stormLimit: number };
  macTableCounters: SwitchSnapshot['macTableCounters'];
  totals: TrafficCounters;
  /** Ports the loop guard blocks now. */
  blocked: string[];
}

/** One UDP socket or one stream connection, and the queue its members' datagrams go through. */
interface SocketLink extends Link {
  /** Unique per link: endpoint keys are per link (a TCP and a UDP peer may share address and port). */
  readonly id: number;
  readonly kind: 'udp' | 'tcp' | 'ws';
  readonly socket: DatagramSocket;
  readonly queue: TxQueue;
  /** The UDP socket (its relay table), or null for a stream. */
  readonly udp: UdpSocket | null;
  readonly stream: StreamLink | null;
  /** A stream: a member's handshake has come over it (its datagram limit is raised, its auth timer stops). */
  bound: boolean;
  /** A stream: where it came from (a per-address count; the forwarded client of a local proxy). */
  origin?: StreamOrigin;
  /** A stream: the member on it (a stream has one other end), for the relay without a lookup by address. */
  member?: Member<SocketLink> | undefined;
  /** The socket's relay counters: 4 doubles per member id (UDP only). */
  relayCounters: Float64Array;
}

/** The vswitch: UDP sockets, the members' sessions and the learning Switch. Members join over UDP; local ports (a TAP, a memory port) attach with addLocalPort. */
export class SwitchServer extends EventEmitter<SwitchServerEvents> {
  /** The recent joins, leaves, MAC moves, refused claims, rekeys, path changes and guard actions (status and the web view). */
  readonly events = new EventLog();
  /** Each member's rekey count at the last tick: a rise is a rekey event. */
  private readonly rekeysSeen = new WeakMap<object, number>();
  /** The networks by name, in the order given: each its own learning Switch. */
  private readonly networks = new Map<string, Network>();
  /** Invites by allow file (or by network, without one). */
  private readonly inviteBooks = new Map<string, InviteBook>();
  /** Which network each joined member is in. */
  private readonly memberNetwork = new Map<Member<SocketLink>, Network>();
  /** Relay groups (network and VLAN mode): members relay end to end only within one. */
  private readonly relayGroups = new Map<string, number>();
  /** Switch port ids, unique across the networks (status joins members and ports by them). */
  private nextPortId = 1;
  private readonly switchDefaults: SwitchOptions;
  /** The capture, if one runs: every network's switch feeds it. */
  private captureHook: ((net: Network, port: SwitchPort, batch: FrameBatch) => void) | null = null;
  private pairCrossNetwork = 0;
  private readonly sessions: SwitchSessions<SocketLink>;
  readonly sockets: UdpSocket[] = [];
  private readonly links: SocketLink[] = [];
  private readonly log: Logger;
  private readonly handles = new Map<Member<SocketLink>, SwitchPort>();
  private tickTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private relayedHandshakes = 0;
  private pairRelayedSlow = 0;
  private pairRelayedStream = 0;
  private pairDropped = 0;
  private readonly capture: CaptureSlot;
  private readonly directory: Directory<Member<SocketLink>>;
  /** Member endpoints (hex of the address slot) -> member: the JavaScript side of the relay, for what the socket's table leaves. */
  private readonly byEndpoint = new Map<string, Member<SocketLink>>();
  /** The key each routed member is under in byEndpoint: a roam moves it without a scan. */
  private readonly endpointKeys = new Map<Member<SocketLink>, string>();
  private readonly goneBudget = new TokenBucket(GONE_REPLIES_PER_SECOND, GONE_REPLIES_PER_SECOND);
  /** What members reported for direct paths: flags, NAT mapping, own addresses. */
  private readonly endpoints = new Map<Member<SocketLink>, { flags: number; nat: number; addrs: Buffer[] }>();
  /** Members introduced to each other (re-introduced when one of them roams). */
  private readonly introduced = new Map<Member<SocketLink>, Set<Member<SocketLink>>>();
  /** How each member reaches the members it has pair sessions with (PATH_REPORT), by member id. */
  private readonly paths = new Map<Member<SocketLink>, Map<number, { path: number; reason: string }>>();
  /** Each member's direct-path traffic as it last reported it (TRAFFIC_REPORT). */
  private readonly directTraffic = new Map<Member<SocketLink>, { txBytes: number; rxBytes: number }>();
  private readonly rendezvousBudget = new Map<Member<SocketLink>, TokenBucket>();
  private rendezvousSent = 0;
  private rendezvousRefused = 0;
  private reflector: DgramSocket | null = null;
  private reflectorBound = 0;
  private reflectReplies = 0;
  private reflectDropped = 0;
  private readonly reflectBudget = new TokenBucket(REFLECT_REPLIES_PER_SECOND, REFLECT_REPLIES_PER_SECOND);
  private nextLinkId = 1;
  /** The VXLAN VTEP, if any, and the switch port of each remote VTEP. */
  private readonly vxlan: VxlanEndpoint | null = null;
  /** The vxlan option's vni and vteps, and the network they belong to (the first at start: a reload that reorders or drops networks never moves them). */
  private readonly vxlanDefaults: { network?: string; vni?: number; vteps?: readonly VtepAddress[]; maxMacsPerVtep?: number } = {};
  private readonly vtepHandles = new Map<VtepPort, SwitchPort>();
  /** Relay workers, if any. */
  private readonly relayWorkers: RelayWorkers | null = null;
  /** Where each member was last on UDP: a member left on a stream that closes goes back there (it has moved on to UDP, or will). */
  private readonly lastUdp = new Map<Member<SocketLink>, { link: SocketLink; endpoint: Buffer }>();
  /** Open stream links, and how many per origin address. */
  private readonly streamLinks = new Set<SocketLink>();
  private readonly perAddress = new Map<string, number>();
  private readonly streamCounters: StreamCounters = { open: 0, accepted: 0, refused: 0, authTimeouts: 0, idleTimeouts: 0, malformed: 0, skipped: 0, txDropped: 0, wsRejected: 0 };
  private readonly listenerCounters: ListenerCounters = { wsRejected: 0 };
  private readonly streamServers: { close(): void }[] = [];
  private readonly tcpBound: number[] = [];
  private wsBound = '';
  private readonly portTimeoutMs: number;
  private readonly streamAuthTimeoutMs: number;
  /** Resolves once the stream listeners are bound (rejects with the bind error). */
  readonly listening: Promise<void>;

  constructor(opts: SwitchServerOptions = {}) {
    super();
    this.log = opts.logger ?? silentLogger;
    this.capture = new CaptureSlot(this.log);
    const portTimeoutS = opts.portTimeoutS ?? PORT_TIMEOUT_DEFAULT_S;
    const keepaliveS = opts.keepaliveS ?? keepaliveFor(portTimeoutS);
    this.portTimeoutMs = portTimeoutS * 1000;
    this.streamAuthTimeoutMs = opts.streamAuthTimeoutMs ?? STREAM_AUTH_TIMEOUT_MS;
    if (portTimeoutS < keepaliveS * PORT_TIMEOUT_MIN_INTERVALS) {
      throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `port timeout ${portTimeoutS} s must be at least ${PORT_TIMEOUT_MIN_INTERVALS} keepalive intervals (${keepaliveS} s)`);
    }
    this.switchDefaults = {
      ...(opts.macAgeS !== undefined ? { ageingMs: opts.macAgeS * 1000 } : {}),
      ...(opts.maxMacs !== undefined ? { maxEntries: opts.maxMacs } : {}),
      maxPerPort: opts.maxMacsPerPort ?? DEFAULT_MAX_MACS_PER_PORT,
      moveHoldMs: (opts.macMoveHoldS ?? DEFAULT_MAC_MOVE_HOLD_S) * 1000,
      ...(opts.stormLimit !== undefined ? { stormLimit: opts.stormLimit } : {}),
      ...(opts.flapThreshold !== undefined ? { flapThreshold: opts.flapThreshold } : {}),
      ...(opts.loopBlockS !== undefined ? { loopBlockMs: opts.loopBlockS * 1000 } : {}),
      portIds: () => this.nextPortId++,
    };
    const ident = identity(opts);
    const specs: NetworkSpec[] = ident.networks ?? [{ name: DEFAULT_NETWORK, allow: [] }];
    checkNetworks(specs);
    for (const spec of specs) this.addNetwork(spec);
    this.sessions = new SwitchSessions<SocketLink>(
      {
        joined: (m) => this.onJoined(m),
        left: (m, reason) => this.onLeft(m, reason),
        linkChanged: (m, up) => {
          const h = this.handles.get(m);
          if (h !== undefined) this.memberNetwork.get(m)?.switch.setLinkUp(h, up);
        },
        send: (link, datagram, to) => {
          if (!link.socket.closed) link.socket.sendTo(datagram, to);
        },
        longControl: (m, msg) => this.onLongControl(m, msg),
        roamed: (m) => {
          this.route(m);
          this.roamed(m);
        },
        pairData: (link, datagram, from, now) => this.onUnroutedPair(link, datagram, from, now),
        invitesKnown: () => this.invitesKnown(),
        redeemInvite: (req) => this.redeemInvite(req.id, req.proof, req.publicKey, req.name, req.now),
      },
      {
        privateKey: ident.privateKey,
        allow: ident.networks === undefined ? 'open' : mergedAllowList(ident.networks),
        ...(ident.psk !== undefined ? { psk: ident.psk } : {}),
        cipher: ident.cipher,
        keepaliveS,
        portTimeoutS,
        maxPorts: opts.maxPorts ?? MAX_PORTS_DEFAULT,
        ...(opts.keyLifetimeS !== undefined ? { rejectAfterMs: opts.keyLifetimeS * 1000 } : {}),
        logger: this.log,
      },
    );
    for (const l of opts.listen ?? [{ address: '::', port: DEFAULT_SWITCH_PORT }]) {
      let socket: UdpSocket;
      try {
        socket = UdpSocket.bind({ address: l.address, port: l.port, offload: true, ...((opts.workers ?? 0) > 0 ? { reusePort: true, exclusive: true } : {}) });
      } catch (err) {
        this.close();
        throw err;
      }
      // 4 doubles per possible member id: 2 MiB of address space, touched only where members are.
      const link: SocketLink = {
        id: this.nextLinkId++,
        kind: 'udp',
        socket,
        udp: socket,
        stream: null,
        bound: true,
        queue: new TxQueue(socket),
        relayCounters: new Float64Array((MEMBER_ID_MAX + 1) * RELAY_COUNTERS_PER_MEMBER),
      };
      socket.setRelayCounters(link.relayCounters);
      this.sockets.push(socket);
      this.links.push(link);
      socket.onDatagrams((batch, addrs) => this.onDatagrams(link, batch, addrs));
    }
    this.directory = new Directory<Member<SocketLink>>({
      describe: (target, self) => {
        const h = this.handles.get(target);
        const net = this.memberNetwork.get(target);
        // As the member's own device sees them: an access port's VLAN is untagged there.
        const macs = h !== undefined && net !== undefined ? net.switch.macsAsSeenBy(h, Date.now()) : [];
        return encodePeer(target.id, Buffer.from(target.keyHex, 'hex'), target.name, macs, self);
      },
      gone: (target) => encodePeerGone(target.id),
      send: (viewer, payload) => void this.sessions.sendLong(viewer, payload),
    });
    const workers = opts.workers ?? 0;
    let workersReady: Promise<void> = Promise.resolve();
    if (workers > 0) {
      const listen = opts.listen ?? [{ address: '::', port: DEFAULT_SWITCH_PORT }];
      try {
        const rw = new RelayWorkers(
          workers,
          this.sockets.map((s, i) => ({ address: listen[i]!.address, port: s.port })),
          (link, datagrams, addrs) => this.passedUp(link, datagrams, addrs),
          // Only once every worker's socket is in the group (the program's socket numbers are bind order), and again when one exits.
          (n) => {
            for (const s of this.sockets) s.steerPairData(n);
          },
          this.log,
        );
        this.relayWorkers = rw;
        workersReady = rw.ready.then(() => this.log.info('relay workers ready', { workers, steering: 'pair data by destination id' }));
      } catch (err) {
        this.close();
        throw err;
      }
    }
    if (opts.vxlan !== undefined) {
      const { vni, vteps, maxMacsPerVtep, ...where } = opts.vxlan;
      this.vxlanDefaults = { network: specs[0]!.name, ...(vni !== undefined ? { vni } : {}), ...(vteps !== undefined ? { vteps } : {}), ...(maxMacsPerVtep !== undefined ? { maxMacsPerVtep } : {}) };
      try {
        this.vxlan = new VxlanEndpoint(where);
        this.configureVxlan();
        this.log.info('VXLAN VTEP listening', { udp: this.vxlan.port, sourcePorts: this.vxlan.sourcePorts.join(','), vteps: this.vxlan.ports.length, mtu: this.vxlan.maxPayload.v4 + 28 });
      } catch (err) {
        this.close();
        throw err;
      }
    } else {
      try {
        noVxlanSettings(specs);
      } catch (err) {
        this.close();
        throw err;
      }
    }
    if (opts.reflectorPort !== false) this.startReflector(opts.listen?.[0]?.address ?? '::', opts.reflectorPort ?? 0);
    this.tickTimer = setInterval(() => {
      const now = Date.now();
      this.sessions.tick(now);
      this.tickStreams(now);
      this.noteRekeys();
    }, SWITCH_TICK_INTERVAL_MS);
    this.tickTimer.unref();
    this.listening = Promise.all([this.listenStreams(opts), workersReady]).then(() => undefined);
    // A caller that never awaits listening still sees a bind failure in the log, not as an unhandled rejection.
    this.listening.catch((err: Error) => this.log.error(`stream listener failed: ${err.message}`));
  }

  /** TCP on every UDP listen address and port number, and the WebSocket listener, as configured. */
  private async listenStreams(opts: SwitchServerOptions): Promise<void> {
    const accept = (kind: 'tcp' | 'ws') => (carrier: StreamCarrier, origin: StreamOrigin) => this.acceptStream(kind, carrier, origin);
    if (opts.tcp !== false) {
      const listen = opts.listen ?? [{ address: '::', port: DEFAULT_SWITCH_PORT }];
      for (let i = 0; i < listen.length; i++) {
        const server: NetServer = await listenTcp(listen[i]!.address, this.sockets[i]!.port, accept('tcp'));
        if (this.closed) {
          server.close();
          return;
        }
        this.streamServers.push(server);
        this.tcpBound.push(this.sockets[i]!.port);
      }
    }
    if (opts.ws !== undefined) {
      const server = await listenWebSocket(opts.ws, accept('ws'), this.listenerCounters);
      if (this.closed) {
        server.close();
        return;
      }
      this.streamServers.push(server);
      const a = server.address();
      const port = typeof a === 'object' && a !== null ? a.port : opts.ws.port;
      const host = opts.ws.address.includes(':') ? `[${opts.ws.address}]` : opts.ws.address;
      this.wsBound = `${opts.ws.tlsCert !== undefined ? 'wss' : 'ws'}://${host}:${port}${opts.ws.path ?? '/etherlink'}`;
      this.log.info('WebSocket listening', { url: this.wsBound });
    }
  }

  /** A new stream: within the limits it becomes a link, whose datagrams go the way a socket's do. */
  private acceptStream(kind: 'tcp' | 'ws', carrier: StreamCarrier, origin: StreamOrigin): boolean {
    // An IPv6 host has a /64 to pick addresses from: it counts as one.
    const key = origin.address.includes(':') ? encodeAddress(origin.address, 0).toString('hex', 0, 8) : origin.address;
    const count = this.perAddress.get(key) ?? 0;
    // Behind a local proxy every client shares its address: the per-address bound applies to the forwarded one.
    if (this.closed || this.streamLinks.size >= STREAM_CONNECTIONS_MAX || count >= STREAM_CONNECTIONS_PER_ADDRESS) {
      this.streamCounters.refused++;
      return false;
    }
    let peer: Buffer;
    try {
      peer = encodeAddress(origin.address, origin.port);
    } catch {
      this.streamCounters.refused++;
      return false;
    }
    const stream = new StreamLink(carrier, peer, { maxDatagram: STREAM_UNBOUND_DATAGRAM_MAX });
    const link: SocketLink = { id: this.nextLinkId++, kind, socket: stream, udp: null, stream, bound: false, origin, queue: new TxQueue(stream), relayCounters: new Float64Array(0) };
    this.perAddress.set(key, count + 1);
    this.streamLinks.add(link);
    this.streamCounters.accepted++;
    stream.onDatagrams((batch, addrs) => this.onDatagrams(link, batch, addrs));
    stream.onClose((reason) => {
      this.streamLinks.delete(link);
      const n = (this.perAddress.get(key) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(key);
      else this.perAddress.set(key, n);
      this.streamGone(link);
      this.streamCounters.skipped += stream.stats.rxSkipped;
      this.streamCounters.txDropped += stream.stats.txDropped;
      if (reason.startsWith('a zero length') || reason.startsWith('not an')) this.streamCounters.malformed++;
      this.log.debug('stream closed', { kind, remote: carrier.remote, reason });
    });
    this.log.debug('stream accepted', { kind, remote: carrier.remote });
    return true;
  }

  /**
   * A stream closed: a member still on it (its last datagrams on the stream
   * came after its first on UDP, as a port returning to UDP sends) goes back
   * to where it was last on UDP, so what the switch sends it is not lost
   * until its next datagram.
   */
  private streamGone(link: SocketLink): void {
    const m = link.member;
    link.member = undefined;
    if (m === undefined || m.link !== link || !this.handles.has(m)) return;
    const udp = this.lastUdp.get(m);
    if (udp === undefined || udp.link.socket.closed) return;
    m.link = udp.link;
    udp.endpoint.copy(m.endpoint);
    this.route(m);
    this.log.info('port transport', { port: m.name, transport: 'udp', address: formatAddress(m.endpoint), reason: 'its stream closed' });
  }

  /** Streams without a handshake in time, or idle past the port timeout, are closed. */
  private tickStreams(now: number): void {
    for (const link of this.streamLinks) {
      const st = link.stream!;
      if (!link.bound && now - st.openedAt > this.streamAuthTimeoutMs) {
        this.streamCounters.authTimeouts++;
        st.close(`no handshake within ${this.streamAuthTimeoutMs / 1000} s`);
      } else if (link.bound && now - st.lastReceiveAt > this.portTimeoutMs) {
        this.streamCounters.idleTimeouts++;
        st.close(`idle for ${this.portTimeoutMs / 1000} s`);
      }
    }
  }

  /** A member's authenticated traffic or handshake came over `link`: a stream there is trusted with full-size datagrams. */
  private bind(link: SocketLink): void {
    if (link.bound || link.stream === null) return;
    link.bound = true;
    link.stream.decoder.max = STREAM_DATAGRAM_MAX;
  }

  /** The learning Switch of the first network (the only one, unless `networks` gave several). */
  get switch(): Switch {
    return this.networks.values().next().value!.switch;
  }

  /** The learning Switch of network `name`, or undefined. */
  networkSwitch(name: string): Switch | undefined {
    return this.networks.get(name)?.switch;
  }

  /** The networks' names, in order. */
  get networkNames(): string[] {
    return [...this.networks.keys()];
  }

  private addNetwork(spec: NetworkSpec): Network {
    const sw = new Switch({
      ...this.switchDefaults,
      ...(spec.maxMacs !== undefined ? { maxEntries: spec.maxMacs } : {}),
      ...(spec.maxMacsPerPort !== undefined ? { maxPerPort: spec.maxMacsPerPort } : {}),
      ...(spec.stormLimit !== undefined ? { stormLimit: spec.stormLimit } : {}),
    });
    const net: Network = { name: spec.name, spec, switch: sw };
    const network = spec.name;
    sw.on('mac-move', (e: { mac: string; vlan: number; from: SwitchPort; to: SwitchPort }) => {
      this.log.info('MAC moved', { network, mac: e.mac, vlan: e.vlan, from: e.from.name, to: e.to.name });
      this.events.add('mac-move', `${e.mac}${e.vlan ? ` vlan ${e.vlan}` : ''} moved from ${e.from.name} to ${e.to.name}`, { port: e.to.name, network });
    });
    sw.on('mac-move-denied', (e: { mac: string; vlan: number; from: SwitchPort; to: SwitchPort }) =>
      this.events.add('mac-move-refused', `${e.to.name} claimed ${e.mac}${e.vlan ? ` vlan ${e.vlan}` : ''}, refused: ${e.from.name} used it within the move hold`, { port: e.to.name, network }),
    );
    sw.on('mac-limit', (e: { reason: string; mac: string; port: SwitchPort; suppressed: number }) => {
      this.log.warn('MAC not learned: limit reached', { network, reason: e.reason, mac: e.mac, port: e.port.name, suppressed: e.suppressed });
      this.events.add('mac-limit', `${e.mac} not learned on ${e.port.name}: ${e.reason}`, { port: e.port.name, network });
    });
    sw.on('storm', (e: { port: SwitchPort; dropped: number }) => {
      this.log.warn('storm control: flooded frames over the limit dropped', { network, port: e.port.name, dropped: e.dropped, limit: `${sw.stormLimit}/s` });
      this.events.add('storm', `storm control dropped ${e.dropped} flooded frames from ${e.port.name} (limit ${sw.stormLimit}/s)`, { port: e.port.name, network });
    });
    sw.on('port-blocked', (e: { port: SwitchPort; reason: string }) => {
      this.log.warn('loop guard: port blocked', { network, port: e.port.name, reason: e.reason });
      this.events.add('port-blocked', `loop guard blocked ${e.port.name}: ${e.reason}`, { port: e.port.name, network });
    });
    sw.on('port-unblocked', (e: { port: SwitchPort }) => {
      this.log.info('loop guard: port unblocked', { network, port: e.port.name });
      this.events.add('port-unblocked', `loop guard unblocked ${e.port.name}`, { port: e.port.name, network });
    });
    sw.onMacsChanged = (port) => {
      const m = this.memberOf(port);
      if (m !== undefined) this.directory.changed(m);
    };
    // A member sent known unicast through the switch: both ends get each other's entry, then talk end to end.
    sw.onUnicast = (from, to) => {
      const a = this.memberOf(from);
      const b = this.memberOf(to);
      if (a === undefined || b === undefined || !a.pairs || !b.pairs || !this.pairable(a, b) || this.directory.knows(a, b)) return;
      this.directory.subscribe(a, b);
      this.directory.subscribe(b, a);
    };
    if (this.captureHook !== null) {
      const hook = this.captureHook;
      sw.onIngress = (port, batch) => hook(net, port, batch);
    }
    sw.start();
    this.networks.set(spec.name, net);
    return net;
  }

  /**
   * Make an invite (`vswitch invite`): a one-time secret that adds one key to
   * `network`'s allow file (default: the first network) when a port proves it
   * in its handshake. Kept in ALLOWFILE.invites (mode 0600) so that it
   * survives a restart; in memory only for a network without an allow file.
   * Format the URL with formatInviteUrl. Throws ERR_INSECURE on an open
   * switch, ERR_INVALID_NETWORK for an unknown network, ERR_INVALID_ARG_VALUE
   * for bad numbers.
   */
  createInvite(req: Partial<InviteRequest> = {}): { id: Buffer; secret: Buffer; record: InviteRecord } {
    if (this.sessions.open) throw new EtherlinkError('ERR_INSECURE', 'an --insecure switch admits any key: it needs no invites (give it --key and --allow to use them)');
    const name = req.network ?? this.networks.keys().next().value!;
    const net = this.networks.get(name);
    if (net === undefined) throw new EtherlinkError('ERR_INVALID_NETWORK', `no network '${name}' here (there are: ${[...this.networks.keys()].join(', ')})`);
    return this.inviteBook(net).create({ ...req, network: net.name }, Date.now());
  }

  /** The invite books in use: one per allow file (two networks may share one), or per network without one. */
  private books(): InviteBook[] {
    return [...new Set([...this.networks.values()].map((n) => this.inviteBook(n)))];
  }

  /** Invites of every network, made and not yet pruned (used-up, expired and revoked ones stay a day). */
  invites(now = Date.now()): InviteRecord[] {
    return this.books().flatMap((b) => b.list(now));
  }

  /**
   * Revoke invite `id` (16 hex digits, as `vswitch invite --list` shows it):
   * its URL admits nobody from now on, and is refused as unknown (a port that
   * joined with it stays). Returns the record; 'already' if it was revoked
   * before; undefined when no network holds it.
   */
  revokeInvite(id: string, now = Date.now()): InviteRecord | 'already' | undefined {
    for (const book of this.books()) {
      const record = book.list().find((r) => r.id === id);
      if (record === undefined) continue;
      if (!book.revoke(id, now)) return 'already';
      this.log.info('invite revoked', { id, network: record.network, ...(record.name !== undefined ? { name: record.name } : {}), used: record.redeemedBy.length });
      return record;
    }
    return undefined;
  }

  private inviteBook(net: Network): InviteBook {
    const key = net.spec.allowFile !== undefined ? `file:${net.spec.allowFile}` : `net:${net.name}`;
    let book = this.inviteBooks.get(key);
    if (book === undefined) {
      book = new InviteBook(net.spec.allowFile !== undefined ? `${net.spec.allowFile}.invites` : undefined);
      this.inviteBooks.set(key, book);
    }
    return book;
  }

  private invitesKnown(): boolean {
    for (const net of this.networks.values()) if (this.inviteBook(net).size > 0) return true;
    return false;
  }

  /** An invite from a key outside the allow lists: check it, write the key's line, admit it. */
  private redeemInvite(id: Buffer, proof: Buffer, publicKey: Buffer, announced: string | undefined, now: number): { entry: AllowEntry } | { refused: 'unknown' | 'expired' | 'used' } {
    const hex = id.toString('hex');
    for (const net of this.networks.values()) {
      const book = this.inviteBook(net);
      if (!book.has(hex)) continue;
      const checked = book.check(id, proof, this.sessions.publicKeyBytes, publicKey, now);
      if (!checked.ok) return { refused: checked.reason };
      const key = encodeKey(publicKey);
      const name = checked.record.name ?? allowFileName(announced, `port-${key.slice(0, 8).replace(/[+/]/g, '-')}`);
      let line = net.spec.allow.reduce((max, e) => Math.max(max, e.line), 0) + 1;
      const file = net.spec.allowFile;
      if (file !== undefined) {
        try {
          const text = readFileSync(file, 'utf8');
          appendFileSync(file, `${text.length > 0 && !text.endsWith('\n') ? '\n' : ''}${allowLine(key, name)}\n`);
          line = text.split('\n').length + (text.length > 0 && !text.endsWith('\n') ? 1 : 0);
        } catch (err) {
          this.log.error(`invite ${hex}: cannot add the key to ${file}: ${(err as Error).message}; the invite stays unused`, { key });
          return { refused: 'unknown' };
        }
      }
      book.spend(checked.record, key);
      const entry: AllowEntry = { publicKey: Buffer.from(publicKey), name, line, network: net.name, ...(file !== undefined ? { source: file } : {}) };
      net.spec = { ...net.spec, allow: [...net.spec.allow, entry] };
      this.emit('invite-redeemed', { invite: hex, publicKey: key, name, network: net.name });
      return { entry };
    }
    return { refused: 'unknown' };
  }

  /**
   * Replace the networks (SIGHUP): new ones start, removed ones' members are
   * told goodbye and disconnected, and reloaded ones take their new allow
   * list — members whose key is gone or moved to another network are
   * disconnected (a moved one rejoins there). The others are not disturbed.
   * Limits of a network that already runs take effect on a restart.
   * Throws (changing nothing) for a bad set: ERR_KEY_IN_TWO_NETWORKS, ERR_INVALID_NETWORK.
   */
  setNetworks(specs: readonly NetworkSpec[]): { added: string[]; removed: string[]; reloaded: string[]; disconnected: string[]; restartNeeded: string[] } {
    if (this.sessions.open) throw new EtherlinkError('ERR_INSECURE', 'an --insecure switch admits any key: it has no networks to replace');
    checkNetworks(specs);
    // VXLAN settings are checked before anything changes, as the rest is.
    if (this.vxlan !== null) this.vxlanPlan(specs);
    else noVxlanSettings(specs);
    const next = new Set(specs.map((s) => s.name));
    const added: string[] = [];
    const reloaded: string[] = [];
    const restartNeeded: string[] = [];
    for (const spec of specs) {
      const net = this.networks.get(spec.name);
      if (net === undefined) {
        this.addNetwork(spec);
        added.push(spec.name);
        continue;
      }
      if (spec.maxMacs !== net.spec.maxMacs || spec.maxMacsPerPort !== net.spec.maxMacsPerPort || spec.stormLimit !== net.spec.stormLimit) restartNeeded.push(spec.name);
      net.spec = { ...spec, maxMacs: net.spec.maxMacs, maxMacsPerPort: net.spec.maxMacsPerPort, stormLimit: net.spec.stormLimit } as NetworkSpec;
      reloaded.push(spec.name);
    }
    const disconnected = this.sessions.setAllowList(mergedAllowList(specs));
    const removed: string[] = [];
    for (const [name, net] of this.networks) {
      if (next.has(name)) continue;
      // Its members are gone with their keys; local ports on it go too.
      for (const p of net.switch.portList) net.switch.removePort(p);
      net.switch.stop();
      this.networks.delete(name);
      removed.push(name);
    }
    if (this.vxlan !== null) this.configureVxlan();
    return { added, removed, reloaded, disconnected, restartNeeded };
  }

  /**
   * Each network's VNI and remote VTEPs to the VTEP: ports for new VTEPs in
   * their network's switch, and those no longer listed (or whose network
   * went) detached. Throws if VXLAN is on but no network has a VNI.
   */
  private configureVxlan(): void {
    const vx = this.vxlan!;
    const changes = vx.configure(this.vxlanPlan([...this.networks.values()].map((n) => n.spec)));
    for (const p of changes.removed) {
      const h = this.vtepHandles.get(p);
      this.vtepHandles.delete(p);
      if (h !== undefined) this.networks.get(p.network)?.switch.removePort(h);
      this.log.info('VTEP removed', { network: p.network, vni: p.vni, vtep: p.text });
      this.events.add('leave', `${p.name} (VNI ${p.vni}) removed`, { port: p.name, network: p.network });
    }
    for (const p of changes.added) {
      const net = this.networks.get(p.network)!;
      // A VTEP stands for a segment of hosts: by default it may hold as many MACs as its network's table.
      const h = net.switch.addPort(p, { name: p.name, maxMacs: this.vxlanDefaults.maxMacsPerVtep ?? net.switch.macTable.maxEntries });
      p.switchPort = h.id;
      this.vtepHandles.set(p, h);
      this.log.info('VTEP added', { network: p.network, vni: p.vni, vtep: p.text });
      this.events.add('join', `${p.name} (VNI ${p.vni}) added`, { port: p.name, network: p.network });
    }
  }

  /**
   * Each network's VNI and VTEPs from `specs` (the network the vxlan option
   * names takes its vni and vteps unless it has its own), checked as the VTEP
   * would check them. Throws, changing nothing, for VTEPs without a VNI, no
   * VNI at all, or what VxlanEndpoint.check refuses.
   */
  private vxlanPlan(specs: readonly NetworkSpec[]): VxlanNetwork[] {
    const list: VxlanNetwork[] = [];
    const d = this.vxlanDefaults;
    for (const spec of specs) {
      const own = spec.name === d.network;
      const vni = spec.vni ?? (own ? d.vni : undefined);
      const vteps = spec.vteps ?? (own ? d.vteps : undefined) ?? [];
      if (vni === undefined && vteps.length > 0) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `network '${spec.name}' has VTEPs but no VNI: give it one (--vni N, or "vni" in its networks entry)`);
      if (vni !== undefined) list.push({ network: spec.name, vni, vteps });
    }
    if (list.length === 0) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', 'VXLAN is on but no network has a VNI: give one (--vni N, or "vni" in a networks entry)');
    this.vxlan!.check(list);
    return list;
  }

  /** The VXLAN VTEP's UDP port, or 0 if the switch is none. */
  get vxlanPort(): number {
    return this.vxlan?.port ?? 0;
  }

  /** Whether members `a` and `b` may meet end to end: the same network and the same VLAN mode (else the switch must carry, and tag, their frames). */
  private pairable(a: Member<SocketLink>, b: Member<SocketLink>): boolean {
    const na = this.memberNetwork.get(a);
    return na !== undefined && na === this.memberNetwork.get(b) && sameVlanMode(vlanModeOf(a), vlanModeOf(b));
  }

  /** The relay group of `m`: the socket's relay table forwards end-to-end data only within one. */
  private groupOf(m: Member<SocketLink>): number {
    const key = groupKey(this.memberNetwork.get(m)?.name ?? '', vlanModeOf(m));
    let g = this.relayGroups.get(key);
    if (g !== undefined) return g;
    if (this.relayGroups.size >= RELAY_GROUPS_MAX) {
      // Groups of networks and modes long gone (many reloads): number the ones in use afresh, and re-route their members.
      this.relayGroups.clear();
      for (const other of this.handles.keys()) {
        const k = groupKey(this.memberNetwork.get(other)?.name ?? '', vlanModeOf(other));
        if (other !== m && !this.relayGroups.has(k)) this.relayGroups.set(k, this.relayGroups.size + 1);
      }
      for (const other of this.handles.keys()) if (other !== m) this.route(other);
      g = this.relayGroups.get(key);
      if (g !== undefined) return g;
    }
    this.relayGroups.set(key, (g = this.relayGroups.size + 1));
    return g;
  }

  /** This switch's public key (base64): what ports give as their switch key. */
  get publicKey(): string {
    return this.sessions.publicKey;
  }

  /** 'insecure' (plaintext, open) or 'secure'. */
  get mode(): 'insecure' | 'secure' {
    return this.sessions.open ? 'insecure' : 'secure';
  }

  /** The reflector's UDP port once bound (0: none, or not yet). */
  get reflectorPort(): number {
    return this.reflectorBound;
  }

  /** The reflector: answers REFLECT_REQUEST with the source address it saw, within a global budget. */
  private startReflector(address: string, port: number): void {
    const bindTo = address === '' ? '::' : address;
    const sock = createSocket({ type: isIPv4(bindTo) ? 'udp4' : 'udp6' });
    this.reflector = sock;
    sock.on('error', (err) => {
      this.log.warn('reflector off: ports will report their NAT as unknown', { error: err.message, port });
      this.reflectorBound = 0;
      if (this.reflector === sock) this.reflector = null;
      sock.close();
    });
    sock.on('message', (msg, rinfo) => {
      if (!isReflectRequest(msg) || !this.reflectBudget.take(Date.now())) {
        this.reflectDropped++;
        return;
      }
      this.reflectReplies++;
      sock.send(encodeReflectReply(msg, encodeAddress(rinfo.address, rinfo.port)), rinfo.port, rinfo.address);
    });
    sock.bind(port, bindTo, () => {
      this.reflectorBound = sock.address().port;
      this.log.debug('reflector listening', { port: this.reflectorBound });
    });
    sock.unref();
  }

  /** The UDP ports bound, e.g. after listening on port 0. */
  get ports(): number[] {
    return this.sockets.map((s) => s.port);
  }

  /** Joined remote ports. */
  get memberCount(): number {
    return this.sessions.size;
  }

  /** Attach a local port (a TAP in this process, a memory port...) to the switch: to the first network, or `opts.network`, with a VLAN mode. */
  addLocalPort(port: Port, name?: string, opts: { network?: string; vlan?: VlanMode } = {}): SwitchPort {
    const net = opts.network !== undefined ? this.networks.get(opts.network) : this.networks.values().next().value;
    if (net === undefined) throw new EtherlinkError('ERR_INVALID_NETWORK', `no network '${opts.network}' on this switch (it has ${this.networkNames.join(', ')})`);
    return net.switch.addPort(port, { ...(name !== undefined ? { name } : {}), ...(opts.vlan !== undefined ? { vlan: opts.vlan } : {}) });
  }

  /**
   * Replace the admitted keys of a one-network switch (after editing the
   * allow file: SIGHUP). Members whose key is gone, or whose VLAN mode
   * changed, are told goodbye and removed at once. Returns their names. A
   * switch with several networks takes setNetworks.
   */
  setAllowList(entries: readonly AllowEntry[]): string[] {
    if (this.sessions.open) throw new EtherlinkError('ERR_INSECURE', 'an --insecure switch admits any key: it has no allow list to replace');
    if (this.networks.size !== 1) throw new EtherlinkError('ERR_INVALID_NETWORK', `this switch has ${this.networks.size} networks: replace them with setNetworks`);
    const net = this.networks.values().next().value!;
    return this.setNetworks([{ ...net.spec, allow: entries }]).disconnected;
  }

  /** One receive batch of one socket, in windows: decrypt into members, then one Switch pass per member. */
  private onDatagrams(link: SocketLink, input: FrameBatch, addrs: Buffer): void {
    const now = Date.now();
    const m = link.member;
    // From a member's stream, end-to-end data for members on streams is passed on framed, as it came; the rest goes on below.
    const batch = m !== undefined && m.link === link && m.pairs ? this.relayFramed(m, input) : input;
    const count = batch.count;
    for (let from = 0; from < count; from += RECEIVE_WINDOW) {
      const touched = this.sessions.receive(link, batch, addrs, from, Math.min(count, from + RECEIVE_WINDOW), now);
      for (let i = 0; i < touched.length; i++) touched[i]!.deliver();
    }
  }

  /** What relayFramed leaves for the sessions: views into the same buffer. */
  private readonly rest = new MutableFrameBatch(Buffer.alloc(0), STREAM_BATCH);

  /**
   * The stream relay: runs of PAIR_DATA from `src` (on a stream) to one member
   * on a stream, back to back in the received buffer, go out as one write of
   * the framed bytes (no copy, no per-datagram work but a look at the route).
   * Returns the datagrams left (other kinds, or destinations elsewhere).
   */
  private relayFramed(src: Member<SocketLink>, batch: FrameBatch): FrameBatch {
    const { buf, offsets, lengths, count } = batch;
    const rest = this.rest;
    rest.buf = buf;
    rest.count = 0;
    const counters = this.links[0]?.relayCounters;
    for (let i = 0; i < count; ) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      // Framed as it came only where its own prefix is right before it (not when that prefix was cut across chunks).
      const framed = off >= STREAM_LENGTH_SIZE && buf[off - 2] === len >>> 8 && buf[off - 1] === (len & 0xff);
      const dst = framed && isPairData(buf, off, len) ? this.sessions.byMemberId(readRoute(buf, off)) : undefined;
      const out = dst !== undefined && dst !== src && dst.pairs && this.pairable(src, dst) ? dst.link.stream : null;
      if (out === null || !this.handles.has(dst!)) {
        rest.push(off, len);
        i++;
        continue;
      }
      const id = dst!.id;
      let end = off + len;
      let bytes = len;
      let j = i + 1;
      while (j < count && offsets[j] === end + STREAM_LENGTH_SIZE && isPairData(buf, offsets[j]!, lengths[j]!) && readRoute(buf, offsets[j]!) === id) {
        end = offsets[j]! + lengths[j]!;
        bytes += lengths[j]!;
        j++;
      }
      const sent = out.writeFramed(buf, off - STREAM_LENGTH_SIZE, end, j - i, bytes);
      this.pairRelayedStream += sent;
      if (sent === 0) this.pairDropped += j - i;
      if (counters !== undefined && sent > 0) {
        counters[src.id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.fromDatagrams]! += sent;
        counters[src.id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.fromBytes]! += bytes;
        counters[id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.toDatagrams]! += sent;
        counters[id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.toBytes]! += bytes;
      }
      i = j;
    }
    return rest;
  }

  /** The member behind a switch port, if it is one (not a local port). */
  private memberOf(port: SwitchPort): Member<SocketLink> | undefined {
    const p = port.port;
    return p instanceof Member ? (p as Member<SocketLink>) : undefined;
  }

  /** Program the relay route of `m` (joined, or roamed: on its socket only, off the others). */
  private route(m: Member<SocketLink>): void {
    this.forgetEndpoint(m);
    this.bind(m.link);
    if (m.link.stream !== null) m.link.member = m;
    else this.lastUdp.set(m, { link: m.link, endpoint: Buffer.from(m.endpoint) });
    const key = endpointKey(m.link, m.endpoint);
    this.byEndpoint.set(key, m);
    this.endpointKeys.set(m, key);
    const group = this.groupOf(m);
    this.links.forEach((l, i) => {
      if (l.socket.closed) return;
      const addr = l === m.link ? m.endpoint : null;
      l.udp!.setRelayRoute(m.id, addr, group);
      this.relayWorkers?.setRoute(i, m.id, addr, group);
    });
  }

  private unroute(m: Member<SocketLink>): void {
    this.forgetEndpoint(m);
    if (m.link.member === m) m.link.member = undefined;
    this.links.forEach((l, i) => {
      if (!l.socket.closed) l.udp!.setRelayRoute(m.id, null);
      this.relayWorkers?.setRoute(i, m.id, null);
    });
  }

  /** Pair data a relay worker could not relay (no such source or destination): handled as if the main thread's socket got it. */
  private passedUp(link: number, datagrams: Uint8Array[], addrs: Uint8Array): void {
    const l = this.links[link];
    if (l === undefined || this.closed || datagrams.length === 0) return;
    const total = datagrams.reduce((n, d) => n + d.length, 0);
    const batch = new MutableFrameBatch(Buffer.allocUnsafe(total), datagrams.length);
    let at = 0;
    for (const d of datagrams) {
      batch.buf.set(d, at);
      batch.push(at, d.length);
      at += d.length;
    }
    this.onDatagrams(l, batch, Buffer.from(addrs.buffer, addrs.byteOffset, addrs.byteLength));
  }

  /** Drop the endpoint `m` was routed at (it roamed from there, or left). */
  private forgetEndpoint(m: Member<SocketLink>): void {
    const key = this.endpointKeys.get(m);
    if (key === undefined) return;
    this.endpointKeys.delete(m);
    if (this.byEndpoint.get(key) === m) this.byEndpoint.delete(key);
  }

  /** A long control message from a joined member. */
  private onLongControl(m: Member<SocketLink>, msg: LongControlMessage): void {
    const h = this.handles.get(m);
    if (h === undefined) return;
    if (msg.kind === LongControl.MAC_CLAIM) {
      this.memberNetwork.get(m)?.switch.learnReported(h, msg.macs);
      return;
    }
    if (msg.kind === LongControl.ENDPOINTS) {
      const before = this.endpoints.get(m);
      this.endpoints.set(m, { flags: msg.flags, nat: msg.nat, addrs: msg.addrs });
      // Its addresses changed (a new network): the members it was introduced to meet it again.
      if (before !== undefined && !sameEndpoints(before, msg)) for (const other of this.introduced.get(m) ?? []) if (this.handles.has(other)) this.introduce(m, other);
      return;
    }
    if (msg.kind === LongControl.RENDEZVOUS) {
      this.rendezvous(m, msg.id);
      return;
    }
    if (msg.kind === LongControl.PATH_REPORT) {
      const d = this.sessions.byMemberId(msg.id);
      if (d === undefined || !this.directory.knows(m, d)) return;
      let r = this.paths.get(m);
      if (r === undefined) this.paths.set(m, (r = new Map()));
      const was = r.get(msg.id);
      r.set(msg.id, { path: msg.path, reason: msg.reason });
      if (was?.path !== msg.path) this.notePath(m, d, msg.path, msg.reason);
      return;
    }
    if (msg.kind === LongControl.TRAFFIC_REPORT) {
      this.directTraffic.set(m, { txBytes: msg.txDirectBytes, rxBytes: msg.rxDirectBytes });
      return;
    }
    if (msg.kind === LongControl.PEER_QUERY) {
      // After a rejoin: the member with this key now, if any, and the other way round.
      const d = this.sessions.byKeyHex(msg.publicKey.toString('hex'));
      if (d === undefined || d === m || !d.pairs || !m.pairs || !this.handles.has(d) || !this.pairable(m, d) || !this.budgetOf(m).take(Date.now())) return;
      if (!this.directory.subscribe(m, d)) this.directory.resend(m, d);
      this.directory.subscribe(d, m);
      return;
    }
    if (msg.kind !== LongControl.PAIR_SEND) {
      this.sessions.counters.malformed++;
      return;
    }
    const d = this.sessions.byMemberId(msg.dst);
    if (d === undefined || d === m || !d.pairs || !m.pairs || !this.handles.has(d) || !this.pairable(m, d)) {
      if (d !== undefined && this.handles.has(d) && !this.pairable(m, d)) this.pairCrossNetwork++;
      this.sessions.sendLong(m, encodePeerGone(msg.dst));
      return;
    }
    // Whoever handshakes with a member hears of its MACs, and the other way round.
    this.directory.subscribe(m, d);
    this.directory.subscribe(d, m);
    this.relayedHandshakes++;
    this.sessions.sendLong(d, encodePairRecv(m.id, Buffer.from(m.keyHex, 'hex'), msg.message));
  }

  /**
   * PAIR_DATA the socket's relay table left to us: a member on another of our
   * sockets is relayed here (slow path); for a member that is gone, its sender
   * hears PEER GONE and goes back through the switch. Anything from an address
   * that is no member is dropped.
   */
  private onUnroutedPair(link: SocketLink, datagram: Buffer, from: Buffer, now: number): void {
    const src = link.stream !== null ? (link.member !== undefined && link.member.link === link ? link.member : undefined) : this.byEndpoint.get(endpointKey(link, from));
    if (src === undefined) {
      this.pairDropped++;
      // Perhaps a member whose NAT mapping changed: its ping from the new address moves it (roaming).
      if (this.goneBudget.take(now)) link.socket.sendTo(encodeEndpointUnknown(readReceiverIndex(datagram, 0)), Buffer.from(from));
      return;
    }
    const dst = this.sessions.byMemberId(readRoute(datagram, 0));
    if (dst === undefined || dst === src) {
      this.pairDropped++;
      if (this.goneBudget.take(now)) this.sessions.sendLong(src, encodePeerGone(readRoute(datagram, 0)));
      return;
    }
    if (!this.pairable(src, dst)) {
      // Another network (or VLAN mode): as if it did not exist.
      this.pairDropped++;
      if (this.handles.has(dst)) this.pairCrossNetwork++;
      if (this.goneBudget.take(now)) this.sessions.sendLong(src, encodePeerGone(readRoute(datagram, 0)));
      return;
    }
    if (dst.link.socket.closed) {
      this.pairDropped++;
      return;
    }
    if (!this.relayOne(dst, datagram)) {
      this.pairDropped++;
      return;
    }
    this.pairRelayedSlow++;
    // Counted per member as the socket's relay table counts what it forwards.
    const counters = this.links[0]?.relayCounters;
    if (counters !== undefined) {
      counters[src.id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.fromDatagrams]! += 1;
      counters[src.id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.fromBytes]! += datagram.length;
      counters[dst.id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.toDatagrams]! += 1;
      counters[dst.id * RELAY_COUNTERS_PER_MEMBER + RelayCounter.toBytes]! += datagram.length;
    }
  }

  /** One end-to-end datagram to `dst`; false if its stream's queue is full. */
  private relayOne(dst: Member<SocketLink>, datagram: Buffer): boolean {
    // A stream gathers what it sends into one write per callback itself: one copy.
    if (dst.link.stream !== null) return dst.link.stream.append(datagram, 0, datagram.length) === 1;
    // Through the destination's queue: one sendmmsg per receive batch, not one per datagram.
    const q = dst.link.queue;
    q.ensure(datagram.length);
    const at = q.used;
    datagram.copy(q.batch.buf, at);
    q.commit(at, datagram.length, dst.endpoint);
    return true;
  }

  private budgetOf(m: Member<SocketLink>): TokenBucket {
    let b = this.rendezvousBudget.get(m);
    if (b === undefined) this.rendezvousBudget.set(m, (b = new TokenBucket(RENDEZVOUS_PER_SECOND, RENDEZVOUS_PER_SECOND)));
    return b;
  }

  /**
   * RENDEZVOUS from `m` for member `id`: each hears the other's candidates
   * now (its address as we see it, and the ones it reported), so both probe
   * at the same moment. Only between members that know each other (a pair
   * session was relayed between them), within a budget per member.
   */
  private rendezvous(m: Member<SocketLink>, id: number): void {
    const d = this.sessions.byMemberId(id);
    if (d === undefined || d === m || !this.directory.knows(m, d) || !this.handles.has(d) || !this.pairable(m, d) || !this.budgetOf(m).take(Date.now())) {
      this.rendezvousRefused++;
      return;
    }
    this.introduce(m, d);
  }

  private introduce(a: Member<SocketLink>, b: Member<SocketLink>): void {
    this.rendezvousSent++;
    this.sessions.sendLong(a, this.candidatesOf(b));
    this.sessions.sendLong(b, this.candidatesOf(a));
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      let set = this.introduced.get(x);
      if (set === undefined) this.introduced.set(x, (set = new Set()));
      set.add(y);
    }
  }

  private candidatesOf(m: Member<SocketLink>): Buffer {
    const e = this.endpoints.get(m);
    return encodeCandidates(m.id, e?.flags ?? 0, e?.nat ?? NatMapping.UNKNOWN, this.publicCandidate(m, e?.addrs ?? []), e?.addrs ?? []);
  }

  /**
   * Where others may try to reach `m` over UDP: the address we see. For a
   * member on a stream that is a TCP port, so its UDP port is guessed as the
   * one of its own socket (what a NAT that keeps ports, and no NAT, give).
   */
  private publicCandidate(m: Member<SocketLink>, own: readonly Buffer[]): Buffer {
    if (m.link.stream === null || own.length === 0) return m.endpoint;
    const slot = Buffer.from(m.endpoint);
    slot.writeUInt16BE(own[0]!.readUInt16BE(16), 16);
    return slot;
  }

  /** `m` moved (NAT rebinding, new network): it hears its new address, and the members it was introduced to meet it again. */
  private roamed(m: Member<SocketLink>): void {
    this.log.info('port transport', { port: m.name, transport: m.link.kind, address: formatAddress(m.endpoint) });
    if (!m.pairs) return;
    // Over a stream the address we see is not the port's UDP mapping: its NAT is not measured against it.
    if (m.link.stream === null) this.sessions.sendLong(m, encodeReflected(m.endpoint, this.reflectorBound));
    for (const other of this.introduced.get(m) ?? []) if (this.handles.has(other)) this.introduce(m, other);
  }

  private info(m: Member<SocketLink>, id: number): PortEventInfo {
    return { name: m.name, id, address: formatAddress(m.endpoint), publicKey: m.publicKey };
  }

  private onJoined(m: Member<SocketLink>): void {
    const named = this.networks.get(m.entry?.network ?? DEFAULT_NETWORK);
    // Entries always name a network that exists (setNetworks sets both together); an open switch has one.
    const net = named ?? this.networks.values().next().value!;
    if (named === undefined && m.entry?.network !== undefined) this.log.error('member of an unknown network put in the first one', { port: m.name, network: m.entry.network });
    const vlan = vlanModeOf(m);
    const handle = net.switch.addPort(m, { name: m.name, vlan });
    this.handles.set(m, handle);
    this.memberNetwork.set(m, net);
    this.route(m);
    // For its status: the switch decides both.
    this.sessions.sendLong(m, encodeAssignment(net.name, formatVlanMode(vlan)));
    // A member that runs pair sessions hears its own entry: its id, and later the MACs it may send from end to end.
    if (m.pairs) {
      this.directory.subscribe(m, m);
      if (m.link.stream === null) this.sessions.sendLong(m, encodeReflected(m.endpoint, this.reflectorBound));
    }
    const info = this.info(m, handle.id);
    this.log.info('port joined', { port: m.name, network: net.name, ...(vlan.kind !== 'transparent' ? { vlan: formatVlanMode(vlan) } : {}), address: info.address, transport: m.link.kind, key: m.publicKey });
    this.emit('port-joined', info);
    this.rekeysSeen.set(m, m.rekeys);
    this.events.add('join', `${m.name} joined from ${info.address} over ${m.link.kind}`, { port: m.name, network: net.name });
  }

  /** A member reported a new path to a peer: an event (the pair's row in status says the same). */
  private notePath(m: Member<SocketLink>, peer: Member<SocketLink>, path: number, reason: string): void {
    const direct = path === PathKind.DIRECT;
    this.events.add('path', `${m.name} reaches ${peer.name} ${direct ? 'direct' : 'relayed'}${reason ? `: ${reason}` : ''}`, { port: m.name, network: this.memberNetwork.get(m)?.name });
  }

  /** Rekeys happen inside the sessions; each tick turns a member's rising count into an event. */
  private noteRekeys(): void {
    for (const m of this.handles.keys()) {
      const seen = this.rekeysSeen.get(m) ?? 0;
      if (m.rekeys > seen) this.events.add('rekey', `${m.name} rekeyed${m.rekeys - seen > 1 ? ` (${m.rekeys - seen} times)` : ''}`, { port: m.name, network: this.memberNetwork.get(m)?.name });
      this.rekeysSeen.set(m, m.rekeys);
    }
  }

  private onLeft(m: Member<SocketLink>, reason: string): void {
    const handle = this.handles.get(m);
    const stream = m.link.member === m ? m.link.stream : null;
    this.unroute(m);
    this.lastUdp.delete(m);
    // Its stream carried nothing but its session: it ends with it (a port that comes back opens another).
    stream?.end(`port left: ${reason}`);
    // Every member that knew it hears at once: their pair sessions with it close.
    this.directory.remove(m);
    this.endpoints.delete(m);
    this.paths.delete(m);
    this.directTraffic.delete(m);
    // Its id may be another member's next (even in another network): what others reported about it goes.
    for (const reports of this.paths.values()) reports.delete(m.id);
    this.rendezvousBudget.delete(m);
    for (const other of this.introduced.get(m) ?? []) this.introduced.get(other)?.delete(m);
    this.introduced.delete(m);
    this.handles.delete(m);
    const net = this.memberNetwork.get(m);
    this.memberNetwork.delete(m);
    if (handle !== undefined) net?.switch.removePort(handle);
    const info = this.info(m, handle?.id ?? 0);
    this.log.info('port left', { port: m.name, address: info.address, reason });
    this.emit('port-left', { ...info, reason });
    this.events.add('leave', `${m.name} left: ${reason}`, { port: m.name, network: net?.name });
  }

  /** Status for humans and scripts: ports with their underlay identity, the MAC table, counters. */
  snapshot(): SwitchServerSnapshot {
    const now = Date.now();
    const members: MemberStatus[] = [];
    for (const [m, h] of this.handles) {
      members.push({
        switchPort: h.id,
        name: m.name,
        publicKey: m.publicKey,
        address: formatAddress(m.endpoint),
        joinedAt: new Date(m.joinedAt).toISOString(),
        lastSeenS: Math.round((now - m.lastSeen) / 100) / 10,
        lastHandshakeS: Math.round((now - m.lastHandshake) / 100) / 10,
        rekeys: m.rekeys,
        linkUp: m.linkUp,
        memberId: m.id,
        network: this.memberNetwork.get(m)?.name ?? '',
        vlan: formatVlanMode(vlanModeOf(m)),
        transport: m.link.kind,
        relayed: this.relayedFor(m.id),
        knownBy: this.directory.viewerCount(m),
        knownByNames: this.directory.viewersOf(m).map((v) => v.name),
        nat: NAT_MAPPING_NAMES[(this.endpoints.get(m)?.nat ?? 0) as NatMapping] ?? 'unknown',
        direct: ((this.endpoints.get(m)?.flags ?? 0) & EndpointFlags.NO_DIRECT) === 0,
        localAddresses: (this.endpoints.get(m)?.addrs ?? []).map((a) => formatAddress(a)),
        ...(this.directTraffic.has(m) ? { directTraffic: { ...this.directTraffic.get(m)! } } : {}),
      });
    }
    const perNet = [...this.networks.values()].map((net) => ({ net, snap: net.switch.snapshot() }));
    const counts = new Map<Network, number>();
    for (const n of this.memberNetwork.values()) counts.set(n, (counts.get(n) ?? 0) + 1);
    const networks = perNet.map(({ net, snap }): NetworkStatus => ({
      name: net.name,
      ...(net.spec.allowFile !== undefined ? { allowFile: net.spec.allowFile } : {}),
      admitted: net.spec.allow.length,
      members: counts.get(net) ?? 0,
      ports: snap.ports.length,
      macs: snap.macTable.length,
      limits: { maxMacs: net.switch.macTable.maxEntries, maxMacsPerPort: net.switch.macTable.maxPerPort, stormLimit: net.switch.stormLimit },
      macTableCounters: snap.macTableCounters,
      totals: snap.totals,
      blocked: snap.ports.filter((p) => p.blocked !== undefined).map((p) => p.name),
    }));
    return {
      ports: perNet.flatMap(({ net, snap }) => snap.ports.map((p) => ({ ...p, network: net.name }))),
      macTable: perNet.flatMap(({ net, snap }) => snap.macTable.map((e) => ({ ...e, network: net.name }))),
      macTableCounters: sumCounters(perNet.map((x) => x.snap.macTableCounters)),
      totals: sumCounters(perNet.map((x) => x.snap.totals)),
      networks,
      mode: this.mode,
      cipher: this.sessions.cipher,
      publicKey: this.publicKey,
      members,
      pairs: this.pairPaths(),
      reflectorPort: this.reflectorBound,
      tcpPorts: [...this.tcpBound],
      ...(this.wsBound !== '' ? { ws: this.wsBound } : {}),
      streams: this.streamStatus(),
      protocol: {
        ...this.sessions.counters,
        ports: this.sessions.size,
        pendingHandshakes: this.sessions.pendingHandshakes,
        pairHandshakesRelayed: this.relayedHandshakes,
        pairRelayedSlow: this.pairRelayedSlow,
        pairRelayedStream: this.pairRelayedStream,
        pairDropped: this.pairDropped,
        pairCrossNetwork: this.pairCrossNetwork,
        directoryMessages: this.directory.sent,
        rendezvous: this.rendezvousSent,
        rendezvousRefused: this.rendezvousRefused,
        reflectReplies: this.reflectReplies,
        reflectDropped: this.reflectDropped,
      },
      udp: this.sockets.map((s) => s.stats),
      vteps: this.vxlan?.status(now) ?? [],
      workers: this.relayWorkers?.status() ?? [],
      ...(this.vxlan !== null ? { vxlan: { port: this.vxlan.port, sourcePorts: this.vxlan.sourcePorts, maxPayload: this.vxlan.maxPayload, ...this.vxlan.counters, socket: this.vxlan.socketStats, send: this.vxlan.sendStats } } : {}),
    };
  }

  private streamStatus(): StreamCounters {
    const c = { ...this.streamCounters, open: this.streamLinks.size, wsRejected: this.listenerCounters.wsRejected };
    for (const l of this.streamLinks) {
      c.skipped += l.stream!.stats.rxSkipped;
      c.txDropped += l.stream!.stats.txDropped;
    }
    return c;
  }

  /** Each pair once: relayed if either side says so (with its reason), else direct. */
  private pairPaths(): PairPathStatus[] {
    const seen = new Map<string, PairPathStatus>();
    for (const [m, reports] of this.paths) {
      for (const [id, r] of reports) {
        const d = this.sessions.byMemberId(id);
        if (d === undefined) continue;
        const [a, b] = m.id < d.id ? [m, d] : [d, m];
        const key = `${a.id}:${b.id}`;
        const path = r.path === PathKind.DIRECT ? 'direct' : 'relayed';
        const had = seen.get(key);
        if (had !== undefined && (had.path === 'relayed' || path === 'direct')) continue;
        seen.set(key, { a: a.name, b: b.name, network: this.memberNetwork.get(a)?.name ?? '', path, ...(r.reason !== '' ? { reason: r.reason } : {}) });
      }
    }
    return [...seen.values()].sort((x, y) => (x.a === y.a ? x.b.localeCompare(y.b) : x.a.localeCompare(y.a)));
  }

  /** Relayed traffic of member `id` over every socket. */
  private relayedFor(id: number): MemberStatus['relayed'] {
    const r = { toFrames: 0, toBytes: 0, fromFrames: 0, fromBytes: 0 };
    const at = id * RELAY_COUNTERS_PER_MEMBER;
    for (const l of this.links) {
      const c = l.relayCounters;
      r.toFrames += c[at + RelayCounter.toDatagrams]!;
      r.toBytes += c[at + RelayCounter.toBytes]!;
      r.fromFrames += c[at + RelayCounter.fromDatagrams]!;
      r.fromBytes += c[at + RelayCounter.fromBytes]!;
    }
    this.links.forEach((_, i) => this.relayWorkers?.addRelayed(i, id, r));
    return r;
  }

  /**
   * Record every frame that enters the switch, from any port, before it is
   * forwarded, to a capture FILE (see PcapOptions for the format, the size
   * bound and rotation). In pcapng each switch port is an interface named after its network and itself ("default/3 h1")
   * and its frames are marked inbound: received by the switch from it.
   * Throws ERR_CAPTURE_RUNNING if a capture is already on, or the open error.
   */
  startCapture(file: string, opts: PcapOptions = {}): CaptureStatus {
    const writer = this.capture.start(file, { interfaceName: 'vswitch', ...opts }, () => {
      this.captureHook = null;
      for (const net of this.networks.values()) net.switch.onIngress = null;
    });
    // pcapng: one interface per switch port, named after its network and itself; every frame recorded as received by it.
    const interfaces = new Map<SwitchPort, PcapWriteOptions>();
    const fallback: PcapWriteOptions = { interface: 0, direction: 'in' };
    const interfaceOf = (net: Network, port: SwitchPort): PcapWriteOptions => {
      let w = interfaces.get(port);
      if (w === undefined) {
        try {
          w = { interface: writer.addInterface(`${net.name}/${port.id} ${port.name}`), direction: 'in' };
        } catch (err) {
          this.log.warn(`capture: port ${port.name} recorded on interface 0: ${(err as Error).message}`);
          w = fallback;
        }
        interfaces.set(port, w);
      }
      return w;
    };
    const hook = (net: Network, port: SwitchPort, batch: FrameBatch): void => writer.write(batch, interfaceOf(net, port));
    this.captureHook = hook;
    for (const net of this.networks.values()) {
      for (const p of net.switch.portList) interfaceOf(net, p);
      net.switch.onIngress = (port, batch) => hook(net, port, batch);
    }
    return writer.status();
  }

  /** Stop the capture and write out what is buffered; resolves with its final status, or null if none ran. */
  stopCapture(): Promise<CaptureStatus | null> {
    return this.capture.stop();
  }

  /** The running (or failed, until stopped) capture, or null. */
  captureStatus(): CaptureStatus | null {
    return this.capture.status();
  }

  /** Tell every port goodbye, then stop. Idempotent. A running capture is closed (await stopCapture() first to know it is on disk). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.stopCapture();
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.sessions.close();
    for (const l of this.links) l.queue.flush();
    for (const net of this.networks.values()) net.switch.stop();
    for (const s of this.sockets) s.close();
    for (const srv of this.streamServers) srv.close();
    for (const l of this.streamLinks) {
      l.queue.flush();
      l.stream!.end('switch shutting down');
    }
    this.reflector?.close();
    this.reflector = null;
    this.vxlan?.close();
    this.relayWorkers?.close();
  }
}

/** A switch that is no VTEP refuses networks with a VNI or VTEPs (at start and on reload alike). */
function noVxlanSettings(specs: readonly NetworkSpec[]): void {
  const n = specs.find((x) => x.vni !== undefined || (x.vteps?.length ?? 0) > 0);
  if (n !== undefined) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `network '${n.name}' has a VNI or VTEPs, but the switch is no VTEP: (re)start it with vxlan (--vxlan [ADDR:]PORT)`);
}

/** The byEndpoint key of a peer slot on a link. */
function endpointKey(link: SocketLink, slot: Buffer): string {
  return `${link.id}/${slot.toString('hex', 0, 18)}`;
}

function sameEndpoints(a: { flags: number; nat: number; addrs: Buffer[] }, b: { flags: number; nat: number; addrs: Buffer[] }): boolean {
  return a.flags === b.flags && a.nat === b.nat && a.addrs.length === b.addrs.length && a.addrs.every((x, i) => x.equals(b.addrs[i]!));
}

/** Relay group numbers (u16, 0 unused) before they are numbered afresh. */
const RELAY_GROUPS_MAX = 65_535;

/** One key per network and VLAN mode, as pairable() sees them (a trunk's list in any order is the same mode). */
function groupKey(network: string, mode: VlanMode): string {
  const canonical: VlanMode = mode.kind === 'trunk' ? { ...mode, vlans: [...mode.vlans].sort((a, b) => a - b) } : mode;
  return `${network}\n${formatVlanMode(canonical)}`;
}

/** A member's VLAN mode: from its allow-file line; transparent without one. */
function vlanModeOf(m: Member<SocketLink>): VlanMode {
  return m.entry?.vlan ?? TRANSPARENT;
}
const TRANSPARENT: VlanMode = { kind: 'transparent' };

/** Counters of several switches added up, field by field (nested objects too). */
function sumCounters<T extends object>(list: readonly T[]): T {
  const add = (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = typeof v === 'number' ? ((out[k] as number | undefined) ?? 0) + v : typeof v === 'object' && v !== null ? add((out[k] as Record<string, unknown> | undefined) ?? {}, v as Record<string, unknown>) : v;
    return out;
  };
  return list.reduce<Record<string, unknown>>((acc, x) => add(acc, x as Record<string, unknown>), {}) as T;
}

/** Key, networks and cipher from the options, checked. */
function identity(opts: SwitchServerOptions): { privateKey: Buffer; networks?: NetworkSpec[]; psk?: Buffer; cipher: TransportCipherName } {
  if (opts.insecure) {
    for (const k of ['privateKey', 'allow', 'networks', 'psk', 'cipher'] as const) {
      if (opts[k] !== undefined) {
        throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `insecure: true uses the published switch key, admits any key and sends in clear: drop '${k}' (or drop insecure)`);
      }
    }
    return { privateKey: insecureSwitchKey().privateKey, cipher: 'none' };
  }
  if (opts.allow !== undefined && opts.networks !== undefined) {
    throw new EtherlinkError('ERR_INVALID_ARG_VALUE', "give 'allow' (one network) or 'networks' (several), not both");
  }
  if (opts.privateKey === undefined || (opts.allow === undefined && opts.networks === undefined)) {
    throw new EtherlinkError(
      'ERR_NO_KEY',
      `a switch needs ${opts.privateKey === undefined ? 'a private key (privateKey: readKeyFile(path).privateKey, or generateKeyPair().privateKey)' : 'an allow list (allow: readAllowFile(path)) or networks'}, or insecure: true for plaintext`,
    );
  }
  return {
    privateKey: keyFrom(opts.privateKey, 'privateKey'),
    networks: opts.networks !== undefined ? [...opts.networks] : [{ name: DEFAULT_NETWORK, allow: opts.allow! }],
    ...(opts.psk !== undefined ? { psk: keyFrom(opts.psk, 'psk') } : {}),
    cipher: opts.cipher ?? DEFAULT_CIPHER,
  };
}
