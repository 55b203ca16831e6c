// A port's end-to-end sessions with the other ports, sans-IO. The switch
// vouches for membership (PEER: member id, static key, the MACs behind it) and
// relays the Noise IKpsk2 handshake between the two ports (PAIR_SEND /
// PAIR_RECV); from then on known unicast is sealed here for the destination
// port and crosses the switch as PAIR_DATA it cannot open. What this side
// enforces on receive: the frame's source MAC belongs to the sender according
// to the switch, its destination MAC is one of ours (else NOT_HERE, and the
// sender goes back through the switch). Time comes in as arguments.
import { randomBytes } from 'node:crypto';
import { BATCH_SIZE, MutableFrameBatch, type FrameBatch } from '../core/frames.js';
import { ETHERNET, formatMac, isMulticast, readMac, readVlanId } from '../core/ethernet.js';
import { encodeKey } from '../crypto/keys.js';
import {
  DEFAULT_CIPHER,
  DEFAULT_TAP_MTU,
  ETHERNET_HEADER_SIZE,
  VLAN_TAG_SIZE,
  LOCAL_MACS_MAX,
  MAC_CLAIM_INTERVAL_MS,
  MAX_PAIR_SESSIONS_DEFAULT,
  MessageType,
  NatMapping,
  PEER_QUERY_RETRY_MS,
  PEER_REJOIN_GRACE_MS,
  PathKind,
  NOT_HERE_PER_SECOND,
  PAIR_HANDSHAKE_ATTEMPTS,
  PAIR_HANDSHAKE_COOLDOWN_MS,
  PAIR_HANDSHAKE_RETRY_MS,
  PAIR_IDENTIFIER,
  PAIR_IDLE_MS,
  PAIR_RESPONDER_REKEY_FRACTION,
  PairControl,
  PeerFlags,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_TIME_MS,
  TRANSPORT_OVERHEAD,
  handshakePrologue,
  type TransportCipherName,
} from './constants.js';
import { CookieGenerator } from './cookie.js';
import { IndexTable, type RandomBytes } from './indices.js';
import { Keypair } from './keypair.js';
import { TokenBucket } from './limits.js';
import { InitiatorHandshake, ResponderHandshake, isInitiation } from './noise.js';
import { openQueued, queueOpen } from './receive.js';
import { sealInto, sealOne, type DatagramQueue } from './send.js';
import { addressEquals, formatAddress } from '../io/address.js';
import { ADDR_SLOT } from '../io/native.js';
import { PeerPaths, Route, type CandidateStatus, type PathContext } from './paths.js';
import {
  PAIR_LEAVE_PAYLOAD,
  decodePairControl,
  encodeMacClaims,
  encodeNotHere,
  encodePairSend,
  encodePathReport,
  encodePeerQuery,
  encodeProbeFrame,
  isProbeFrame,
  encodeRendezvous,
  type CandidatesMessage,
  formatIndex,
  readReceiverIndex,
  type MacRecord,
  type PeerMessage,
} from './wire.js';

export interface PairSessionsOptions {
  privateKey: Buffer;
  psk?: Buffer;
  cipher?: TransportCipherName;
  /** Pair sessions held at once (default MAX_PAIR_SESSIONS_DEFAULT); the least recently used is closed first. */
  maxSessions?: number;
  rekeyAfterMs?: number;
  rejectAfterMs?: number;
  random?: RandomBytes;
  /** Direct paths to peers (default true); false is --no-direct: everything through the switch. */
  direct?: boolean;
  /** Plaintext bytes of a probe: the largest frame this port seals (device MTU + 14 + a VLAN tag), so only a path that carries such frames is chosen. */
  probeSize?: number;
}

/** What the pair sessions ask of the port. */
export interface PairSessionsHost {
  /** A long control message for the switch, on the port's own session (false: not joined, dropped). */
  toSwitch(payload: Buffer): boolean;
  /** One PAIR_DATA datagram for the switch to relay (slow path: keepalives, notices). */
  send(datagram: Buffer): void;
  /** One datagram straight to `addr` (an address slot): probes, and notices on a direct path. */
  sendTo(datagram: Buffer, addr: Buffer): void;
  /** A pair session came up or went away (logs). */
  event(e: PairEvent): void;
}

export type PairEvent =
  | { type: 'pair-up'; peer: string; session: string; initiator: boolean }
  | { type: 'pair-down'; peer: string; reason: string }
  | { type: 'path'; peer: string; path: 'direct' | 'relayed'; endpoint?: string; rttMs?: number; reason?: string };

/** Counters over every peer (status, metrics). */
export interface PairCounters {
  /** Frames sealed end to end, and frames that went through the switch instead (flooded, unknown, no session yet). */
  txPair: number;
  txViaSwitch: number;
  /** Of txViaSwitch: broadcast, multicast or runt; a destination the switch placed behind no peer; a source MAC not (yet) ours at the switch; no session with the peer yet. */
  viaSwitchGroup: number;
  viaSwitchUnknownDst: number;
  viaSwitchForeignSrc: number;
  viaSwitchNoSession: number;
  rxPair: number;
  handshakesSent: number;
  handshakes: number;
  handshakeFailures: number;
  /** PAIR_RECV whose handshake is not from the key the switch vouched for, or not for us. */
  handshakeRejected: number;
  authFailed: number;
  replayed: number;
  unknownIndex: number;
  /** Frames from a peer whose source MAC the switch does not place behind that peer: dropped. */
  srcNotOwned: number;
  /** Frames for a destination that is not ours: dropped, NOT_HERE sent. */
  dstNotHere: number;
  /** Group-addressed frames on a pair session (those go through the switch): dropped. */
  dstGroup: number;
  notHereSent: number;
  notHereReceived: number;
  malformed: number;
  txOversize: number;
  /** Sessions closed to make room (maxSessions). */
  evicted: number;
  /** Peers the switch said left or were revoked. */
  peersGone: number;
  /** Frames sealed onto a direct path, onto the relay, and onto both (a direct path in doubt). */
  txDirect: number;
  txRelayed: number;
  txBoth: number;
  /** Opened frames that came on a direct path. */
  rxDirect: number;
  /** Frame bytes sent onto a direct path (also when in doubt) and received on one: what the port reports to the switch (TRAFFIC_REPORT). */
  txDirectBytes: number;
  rxDirectBytes: number;
  probesSent: number;
  probesAnswered: number;
  pongsReceived: number;
  /** Path changes (direct <-> relayed, or to another direct address). */
  pathChanges: number;
  /** Peers kept across a rejoin of the switch, and those dropped because the new switch did not vouch for them again. */
  peersKeptAcrossRejoin: number;
  peersLostAtRejoin: number;
}

/** One peer as `vport status` shows it. */
export interface PeerStatus {
  id: number;
  name: string;
  publicKey: string;
  /** 'direct' (to `endpoint`), 'relayed' (through the switch, `reason` says why) while a session is up; '-' otherwise. */
  path: 'direct' | 'relayed' | '-';
  /** The peer's address on the direct path. */
  endpoint?: string;
  /** Why frames are relayed. */
  reason?: string;
  /** When the current path was taken (ISO time). */
  pathSince?: string;
  /** The direct path's round-trip time. */
  rttMs?: number;
  txDirectBytes: number;
  rxDirectBytes: number;
  txRelayBytes: number;
  rxRelayBytes: number;
  candidates: CandidateStatus[];
  /** Kept from before the switch restarted (or we rejoined): waiting for the new switch to vouch for it again. */
  stale?: boolean;
  state: 'up' | 'handshaking' | 'idle';
  session: string;
  lastHandshakeS?: number;
  macs: number;
  txFrames: number;
  txBytes: number;
  rxFrames: number;
  rxBytes: number;
  authFailed: number;
  srcNotOwned: number;
}

interface IndexEntry {
  peer: Peer;
  kp: Keypair;
}

/** A member of the LAN as this port knows it from the switch. */
class Peer {
  current: Keypair | null = null;
  previous: Keypair | null = null;
  /** Our response's keys, until the initiator's first datagram confirms them. */
  next: Keypair | null = null;
  handshake: InitiatorHandshake | null = null;
  readonly cookies: CookieGenerator;
  attempts = 0;
  nextRetryAt = Infinity;
  cooldownUntil = 0;
  lastUsed = 0;
  lastHandshakeAt = 0;
  /** Its MACs, as (vlan, mac) pairs in the directory. */
  readonly macs: MacRecord[] = [];
  readonly tx = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  readonly rx = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  txFrames = 0;
  txBytes = 0;
  rxFrames = 0;
  rxBytes = 0;
  authFailed = 0;
  srcNotOwned = 0;
  /** In this batch's list of peers with frames to seal. */
  touched = false;
  /** Counted against maxSessions. */
  counted = false;
  /** Kept across a rejoin: its id is from the old switch session, until a PEER of the new one names it. */
  stale = false;
  staleSince = 0;
  queryAt = 0;
  paths!: PeerPaths;
  /** What the switch last heard of this pair's path (PATH_REPORT), to report only changes. */
  reported = '';
  /** Reattached after a rejoin: its next PEER adds MACs instead of replacing them (the new switch may not have relearned them yet). */
  mergeNext = false;
  constructor(
    public id: number,
    readonly publicKey: Buffer,
    public name: string,
  ) {
    this.cookies = new CookieGenerator(publicKey);
  }

  get hasSession(): boolean {
    return this.current !== null || this.next !== null || this.previous !== null;
  }
}

/** The end-to-end side of a port: the directory the switch pushed, and the pair sessions. */
export class PairSessions {
  readonly counters: PairCounters = {
    txPair: 0,
    txViaSwitch: 0,
    viaSwitchGroup: 0,
    viaSwitchUnknownDst: 0,
    viaSwitchForeignSrc: 0,
    viaSwitchNoSession: 0,
    rxPair: 0,
    handshakesSent: 0,
    handshakes: 0,
    handshakeFailures: 0,
    handshakeRejected: 0,
    authFailed: 0,
    replayed: 0,
    unknownIndex: 0,
    srcNotOwned: 0,
    dstNotHere: 0,
    dstGroup: 0,
    notHereSent: 0,
    notHereReceived: 0,
    malformed: 0,
    txOversize: 0,
    evicted: 0,
    peersGone: 0,
    txDirect: 0,
    txRelayed: 0,
    txBoth: 0,
    rxDirect: 0,
    txDirectBytes: 0,
    rxDirectBytes: 0,
    probesSent: 0,
    probesAnswered: 0,
    pongsReceived: 0,
    pathChanges: 0,
    peersKeptAcrossRejoin: 0,
    peersLostAtRejoin: 0,
  };
  /** This port's member id, once the switch said (PEER with SELF). */
  selfId = 0;
  /**
   * Test seam for a misbehaving member: when false this side seals frames from
   * any source MAC (the receiver must drop them). Never set outside tests.
   * @internal
   */
  checkOwnSource = true;
  private readonly peers = new Map<number, Peer>();
  /** Peers kept across a rejoin, by public key (hex), until the new switch names them. */
  private readonly stale = new Map<string, Peer>();
  private readonly pathCtx: PathContext;
  private readonly probeSize: number;
  private rxAddrs: Buffer = Buffer.alloc(0);
  /** (vlan, mac) -> the peer the switch places it behind. */
  private readonly directory = new Map<number, Map<number, Peer>>();
  /** (vlan, mac) -> whether used on a pair session since the last claim: the MACs the switch placed behind us. */
  private readonly own = new Map<number, Map<number, boolean>>();
  private readonly indices: IndexTable<IndexEntry>;
  private readonly responder: ResponderHandshake;
  private readonly prologue: Buffer;
  private readonly cipher: TransportCipherName;
  private readonly maxSessions: number;
  private readonly rekeyAfterMs: number;
  private readonly rejectAfterMs: number;
  private readonly notHereBudget = new TokenBucket(NOT_HERE_PER_SECOND, NOT_HERE_PER_SECOND);
  private readonly hop: MutableFrameBatch = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  private readonly touchedPeers: Peer[] = [];
  private readonly touchedKeys: IndexEntry[] = [];
  private nextClaimAt = 0;
  /** After a rejoin: the next PEER SELF adds to our MACs instead of replacing them. */
  private ownMerge = false;
  private sessions = 0;
  private rxPeer: Peer | null = null;
  private rxNow = 0;
  private readonly onControl = (kp: Keypair, buf: Buffer, off: number, len: number, slot: number): void => this.pairControl(kp, buf, off, len, slot);

  constructor(
    private readonly host: PairSessionsHost,
    /** Where sealed frames go, and the switch's address slot (the relay). */
    private readonly out: DatagramQueue,
    private readonly switchAddr: Buffer,
    private readonly opts: PairSessionsOptions,
  ) {
    const random = opts.random ?? randomBytes;
    this.indices = new IndexTable(random);
    this.cipher = opts.cipher ?? DEFAULT_CIPHER;
    this.prologue = handshakePrologue(this.cipher, PAIR_IDENTIFIER);
    this.responder = new ResponderHandshake({ staticPrivateKey: opts.privateKey, prologue: this.prologue, random });
    this.maxSessions = opts.maxSessions ?? MAX_PAIR_SESSIONS_DEFAULT;
    this.rekeyAfterMs = opts.rekeyAfterMs ?? REKEY_AFTER_TIME_MS;
    this.rejectAfterMs = Math.max(opts.rejectAfterMs ?? REJECT_AFTER_TIME_MS, this.rekeyAfterMs);
    this.probeSize = opts.probeSize ?? DEFAULT_TAP_MTU + ETHERNET_HEADER_SIZE + VLAN_TAG_SIZE;
    this.pathCtx = { disabled: opts.direct === false, nat: NatMapping.UNKNOWN };
  }

  /** This port's NAT mapping (NatMapping), as the port measured it: explains relayed paths. */
  setNat(nat: number): void {
    this.pathCtx.nat = nat;
  }

  get nat(): number {
    return this.pathCtx.nat;
  }

  /** Whether direct paths are on (not --no-direct). */
  get direct(): boolean {
    return !this.pathCtx.disabled;
  }

  private newPeer(id: number, publicKey: Buffer, name: string, now: number): Peer {
    const p = new Peer(id, publicKey, name);
    p.paths = new PeerPaths(
      {
        probe: (addr, probeId) => {
          const kp = p.current;
          if (kp === null || kp.closed) return false;
          this.counters.probesSent++;
          this.host.sendTo(sealOne(kp, encodeProbeFrame(PairControl.PROBE, probeId, this.probeSize)), addr);
          return true;
        },
        rendezvous: () => {
          if (!p.stale) this.host.toSwitch(encodeRendezvous(p.id));
        },
        changed: () => this.pathChanged(p),
      },
      this.pathCtx,
      now,
    );
    return p;
  }

  private pathChanged(p: Peer): void {
    this.counters.pathChanges++;
    const now = Date.now();
    const direct = p.paths.isDirect;
    const endpoint = p.paths.endpoint;
    const reason = p.paths.reason(now);
    const rtt = p.paths.rttMs;
    this.host.event({
      type: 'path',
      peer: p.name,
      path: direct ? 'direct' : 'relayed',
      ...(direct && endpoint !== null ? { endpoint: formatAddress(endpoint) } : {}),
      ...(rtt !== undefined ? { rttMs: rtt } : {}),
      ...(reason !== undefined ? { reason } : {}),
    });
    this.reportPath(p, Date.now());
  }

  /** Tell the switch how we reach `p` if that changed since the last report (its status shows which pairs it relays, and why). */
  private reportPath(p: Peer, now: number): void {
    if (p.stale || p.current === null) return;
    const direct = p.paths.isDirect && p.paths.endpoint !== null;
    const text = direct ? formatAddress(p.paths.endpoint!) : (p.paths.reason(now) ?? '');
    const key = `${direct ? 1 : 0}${text}`;
    if (key === p.reported) return;
    if (this.host.toSwitch(encodePathReport(p.id, direct ? PathKind.DIRECT : PathKind.RELAYED, text))) p.reported = key;
  }

  /** CANDIDATES from the switch: where `msg.id` may be reached directly. */
  candidates(msg: CandidatesMessage, now: number): void {
    const p = this.peers.get(msg.id);
    if (p === undefined) return;
    p.paths.introduce(msg.flags, msg.nat, msg.observed, msg.local, now);
  }

  /** A slow-path datagram for `p`: on its direct path when there is one, else through the switch. */
  private sendSlow(p: Peer, datagram: Buffer): void {
    const e = p.paths.endpoint;
    if (e !== null) this.host.sendTo(datagram, e);
    else if (!p.stale) this.host.send(datagram);
  }

  /** Pair sessions up now. */
  get sessionCount(): number {
    return this.sessions;
  }

  // ------------------------------------------------------------------ the directory (from the switch)

  /** A PEER message from the switch (authenticated on our session with it). */
  peer(msg: PeerMessage, now: number): void {
    if (msg.flags & PeerFlags.GONE) {
      const p = this.peers.get(msg.id);
      if (p !== undefined) {
        this.counters.peersGone++;
        this.dropPeer(p, 'the switch says it left or was revoked');
      }
      return;
    }
    if (msg.flags & PeerFlags.SELF) {
      this.selfId = msg.id;
      if (msg.flags & PeerFlags.RESET && this.ownMerge) {
        // The first word of a new switch: it may not have relearned our MACs yet (our claims are on the way).
        this.ownMerge = false;
        for (const r of msg.macs) if (this.own.get(r.vlan)?.has(r.mac) !== true) setIn(this.own, r.vlan, r.mac, false);
      } else if (msg.flags & PeerFlags.RESET) {
        // Keep the 'used' marks of MACs that stay ours.
        const old = this.own;
        const kept = new Map<number, Map<number, boolean>>();
        for (const r of msg.macs) setIn(kept, r.vlan, r.mac, old.get(r.vlan)?.get(r.mac) ?? false);
        old.clear();
        for (const [v, m] of kept) old.set(v, m);
      } else {
        for (const r of msg.macs) setIn(this.own, r.vlan, r.mac, false);
      }
      return;
    }
    if (msg.id === this.selfId) return;
    let p = this.peers.get(msg.id);
    if (p !== undefined && !p.publicKey.equals(msg.publicKey)) {
      // The id went to another member: nothing of the old one may survive.
      this.dropPeer(p, 'its member id now belongs to another key');
      p = undefined;
    }
    if (p === undefined) p = this.reattach(msg.id, msg.publicKey);
    if (p === undefined) {
      p = this.newPeer(msg.id, Buffer.from(msg.publicKey), msg.name, now);
      this.peers.set(msg.id, p);
    }
    p.name = msg.name;
    if (msg.flags & PeerFlags.RESET && !p.mergeNext) this.clearMacs(p);
    p.mergeNext = false;
    for (const r of msg.macs) {
      const macs = this.directory.get(r.vlan);
      const before = macs?.get(r.mac);
      if (before === p) continue;
      if (before !== undefined) removeRecord(before.macs, r);
      setIn(this.directory, r.vlan, r.mac, p);
      p.macs.push(r);
    }
  }

  /** Forget everything: ids, sessions, MACs. */
  reset(reason: string): void {
    for (const p of [...this.peers.values(), ...this.stale.values()]) this.dropPeer(p, reason);
    this.own.clear();
    this.ownMerge = false;
    this.selfId = 0;
  }

  /**
   * The port's session with the switch is new (the switch restarted, or we
   * rejoined): member ids start over, but pair sessions are the ports' own and
   * direct paths do not need the switch. Peers with a session are kept, under
   * their key, until the new switch names them again (PEER_QUERY) or
   * PEER_REJOIN_GRACE_MS passes; frames for them meanwhile go direct, or hop
   * by hop through the switch. Our MACs stay ours until the switch says.
   */
  rejoined(now: number): void {
    this.selfId = 0;
    // Claim every MAC of ours at once: the new switch learns them and tells our peers.
    this.ownMerge = true;
    for (const macs of this.own.values()) for (const mac of macs.keys()) macs.set(mac, true);
    this.nextClaimAt = 0;
    for (const p of [...this.peers.values()]) {
      this.peers.delete(p.id);
      if (!p.hasSession) {
        this.dropPeer(p, 'rejoined the switch');
        continue;
      }
      p.stale = true;
      p.staleSince = now;
      p.queryAt = now;
      this.stale.set(p.publicKey.toString('hex'), p);
    }
  }

  /** A stale peer the new switch names `id`: it is vouched for again. */
  private reattach(id: number, publicKey: Buffer): Peer | undefined {
    const key = publicKey.toString('hex');
    const p = this.stale.get(key);
    if (p === undefined) return undefined;
    this.stale.delete(key);
    p.stale = false;
    p.reported = '';
    p.mergeNext = true;
    p.id = id;
    for (const kp of [p.current, p.previous, p.next]) if (kp !== null) kp.route = id;
    this.peers.set(id, p);
    this.counters.peersKeptAcrossRejoin++;
    // The new switch hears how we reach it on the next poll (reported was cleared).
    return p;
  }

  // ------------------------------------------------------------------ handshakes (relayed by the switch)

  /** A PAIR_RECV: handshake `message` from member `src`, whose key the switch vouches is `publicKey`. */
  relayed(src: number, publicKey: Buffer, message: Buffer, now: number): void {
    if (src === this.selfId || message.length < 4) {
      this.counters.handshakeRejected++;
      return;
    }
    let p = this.peers.get(src);
    if (p !== undefined && !p.publicKey.equals(publicKey)) {
      this.dropPeer(p, 'its member id now belongs to another key');
      p = undefined;
    }
    if (p === undefined) p = this.reattach(src, publicKey);
    if (p === undefined) {
      p = this.newPeer(src, Buffer.from(publicKey), encodeKey(publicKey).slice(0, 8), now);
      this.peers.set(src, p);
    }
    const type = message[1];
    if (type === MessageType.HANDSHAKE_INITIATION && isInitiation(message)) this.initiation(p, message, now);
    else if (type === MessageType.HANDSHAKE_RESPONSE && p.handshake !== null) this.response(p, message, now);
    else if (type === MessageType.COOKIE_REPLY && p.handshake !== null) p.handshake.consumeCookieReply(message, now);
    else this.counters.handshakeRejected++;
  }

  private initiation(p: Peer, message: Buffer, now: number): void {
    const res = this.responder.consumeInitiation(message, { source: Buffer.from([p.id >>> 8, p.id & 0xff]), underLoad: false, now });
    if (res.kind !== 'initiation' || !res.initiation.peerPublicKey.equals(p.publicKey)) {
      // Not for our key, undecryptable, or from another key than the switch vouched for.
      this.counters.handshakeRejected++;
      return;
    }
    const localIndex = this.indices.reserve();
    const accepted = res.initiation.accept({ senderIndex: localIndex, now, ...(this.opts.psk ? { psk: this.opts.psk } : {}) });
    if (!accepted.ok) {
      this.indices.delete(localIndex);
      this.counters.handshakeFailures++;
      return;
    }
    if (!this.host.toSwitch(encodePairSend(p.id, accepted.response))) {
      this.indices.delete(localIndex);
      return;
    }
    const kp = this.keypair(p, accepted.keys, now);
    if (p.next !== null) this.retire(p.next);
    this.makeRoom(p);
    p.next = kp;
    p.lastUsed = now;
  }

  private response(p: Peer, message: Buffer, now: number): void {
    const res = p.handshake!.consumeResponse(message);
    if (!res.ok) {
      if (res.reason !== 'wrong-index') this.counters.handshakeFailures++;
      return;
    }
    const had = p.hasSession;
    const kp = this.keypair(p, res.keys, now);
    p.handshake = null;
    p.nextRetryAt = Infinity;
    p.attempts = 0;
    this.makeRoom(p);
    if (p.previous !== null) this.retire(p.previous);
    p.previous = p.current;
    p.current = kp;
    p.lastHandshakeAt = now;
    p.lastUsed = now;
    this.counters.handshakes++;
    // The first datagram under the new keys confirms them to the responder.
    this.sendSlow(p, sealOne(kp, EMPTY));
    if (!had) this.host.event({ type: 'pair-up', peer: p.name, session: formatIndex(kp.localIndex), initiator: true });
  }

  private keypair(p: Peer, keys: ConstructorParameters<typeof Keypair>[0], now: number): Keypair {
    const kp = new Keypair(keys, now, this.cipher);
    kp.wireType = MessageType.PAIR_DATA;
    kp.route = p.id;
    this.indices.set(kp.localIndex, { peer: p, kp });
    return kp;
  }

  /** Start (or retry) a handshake with `p` through the switch. */
  private initiate(p: Peer, now: number): void {
    if (p.handshake !== null) this.indices.delete(p.handshake.senderIndex);
    const senderIndex = this.indices.reserve();
    const { message, handshake } = InitiatorHandshake.createInitiation({
      staticPrivateKey: this.opts.privateKey,
      responderPublicKey: p.publicKey,
      senderIndex,
      now,
      cookies: p.cookies,
      prologue: this.prologue,
      ...(this.opts.psk ? { psk: this.opts.psk } : {}),
    });
    p.handshake = handshake;
    p.attempts++;
    p.nextRetryAt = now + PAIR_HANDSHAKE_RETRY_MS;
    this.counters.handshakesSent++;
    if (!this.host.toSwitch(encodePairSend(p.id, message))) {
      this.indices.delete(senderIndex);
      p.handshake = null;
      p.nextRetryAt = Infinity;
    }
  }

  /** Traffic wants a session with `p`: start one unless one is on the way or the last series failed recently. */
  private want(p: Peer, now: number): void {
    if (p.handshake !== null || now < p.cooldownUntil) return;
    p.attempts = 0;
    this.initiate(p, now);
  }

  // ------------------------------------------------------------------ data path

  /**
   * Frames from the device: known unicast from one of our MACs to a peer with
   * a session is sealed for it; everything else goes to `viaSwitch` (the
   * port's session with the switch), as one batch.
   */
  transmit(batch: FrameBatch, now: number, viaSwitch: (batch: FrameBatch) => void): void {
    const { buf, offsets, lengths, count } = batch;
    const hop = this.hop;
    hop.buf = buf;
    const touched = this.touchedPeers;
    // Bulk traffic repeats the same (source, destination): remember the last answer.
    let lastDst = -1, lastVlan = -1, lastPeer: Peer | undefined, lastSrc = -1, lastSrcVlan = -1;
    let lastOwn: Map<number, boolean> | undefined;
    for (let i = 0; i < count; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (len < ETHERNET.HEADER_LEN) {
        this.counters.viaSwitchGroup++;
        hop.push(off, len);
        continue;
      }
      const dst = readMac(buf, off + ETHERNET.DST_OFFSET);
      if (isMulticast(dst)) {
        this.counters.viaSwitchGroup++;
        hop.push(off, len);
        continue;
      }
      const vlan = readVlanId(buf, off, len);
      let p: Peer | undefined;
      if (dst === lastDst && vlan === lastVlan) p = lastPeer;
      else {
        p = this.directory.get(vlan)?.get(dst);
        lastDst = dst;
        lastVlan = vlan;
        lastPeer = p;
      }
      if (p === undefined) {
        this.counters.viaSwitchUnknownDst++;
        hop.push(off, len);
        continue;
      }
      const src = readMac(buf, off + ETHERNET.SRC_OFFSET);
      if (src !== lastSrc || vlan !== lastSrcVlan) {
        lastOwn = this.own.get(vlan);
        if (this.checkOwnSource && lastOwn?.has(src) !== true) {
          // Not (yet) ours at the switch: it must see this frame to learn the MAC.
          lastSrc = -1;
          this.counters.viaSwitchForeignSrc++;
          hop.push(off, len);
          continue;
        }
        lastSrc = src;
        lastSrcVlan = vlan;
        if (lastOwn?.has(src) === true) lastOwn.set(src, true);
      }
      const kp = p.current;
      if (kp === null || kp.closed || (p.stale && p.paths.endpoint === null)) {
        if (!p.stale) this.want(p, now);
        this.counters.viaSwitchNoSession++;
        hop.push(off, len);
        continue;
      }
      if (!p.touched) {
        p.touched = true;
        p.tx.buf = buf;
        touched.push(p);
      }
      if (!p.tx.push(off, len)) {
        this.flushPeer(p, now);
        p.tx.buf = buf;
        p.tx.push(off, len);
      }
    }
    for (let k = 0; k < touched.length; k++) {
      const p = touched[k]!;
      p.touched = false;
      this.flushPeer(p, now);
    }
    touched.length = 0;
    if (hop.count > 0) {
      this.counters.txViaSwitch += hop.count;
      viaSwitch(hop);
      hop.clear();
    }
  }

  private flushPeer(p: Peer, now: number): void {
    const kp = p.current!;
    const n = p.tx.count;
    let bytes = 0;
    for (let j = 0; j < n; j++) bytes += p.tx.lengths[j]!;
    const paths = p.paths;
    paths.activity(now);
    const route = paths.route(now);
    const endpoint = paths.endpoint;
    if (route === Route.RELAY || endpoint === null) {
      sealInto(kp, p.tx, this.out, this.switchAddr, this.counters);
      paths.txRelayBytes += bytes;
      this.counters.txRelayed += n;
    } else if (route === Route.DIRECT || p.stale) {
      sealInto(kp, p.tx, this.out, endpoint, this.counters);
      paths.txDirectBytes += bytes;
      this.counters.txDirect += n;
      this.counters.txDirectBytes += bytes;
    } else {
      // In doubt: both ways until a pong settles it; the peer's replay window drops the second copy.
      sealInto(kp, p.tx, this.out, endpoint, this.counters, this.switchAddr);
      paths.txDirectBytes += bytes;
      paths.txRelayBytes += bytes;
      this.counters.txBoth += n;
      this.counters.txDirectBytes += bytes;
    }
    p.txFrames += n;
    p.txBytes += bytes;
    this.counters.txPair += n;
    p.lastUsed = now;
    p.tx.clear();
    // Rekey on use, as WireGuard: the initiator at REKEY_AFTER_TIME, the responder a little later.
    const age = now - kp.createdAt;
    const rekeyAt = kp.isInitiator ? this.rekeyAfterMs : this.rekeyAfterMs + (this.rejectAfterMs - this.rekeyAfterMs) * PAIR_RESPONDER_REKEY_FRACTION;
    if (p.handshake === null && age >= rekeyAt) this.want(p, now);
  }

  /**
   * PAIR_DATA datagrams slots[from..to) of `batch`, relayed by the switch or
   * straight from a peer; `addrs` holds each one's source address slot.
   * Frames that pass the checks are appended to `frames`.
   */
  receive(batch: FrameBatch, addrs: Buffer, slots: Uint16Array, from: number, to: number, now: number, frames: MutableFrameBatch): void {
    const { buf, offsets, lengths } = batch;
    this.rxNow = now;
    this.rxAddrs = addrs;
    const touchedKeys = this.touchedKeys;
    for (let k = from; k < to; k++) {
      const i = slots[k]!;
      const off = offsets[i]!;
      const len = lengths[i]!;
      const e = this.indices.get(readReceiverIndex(buf, off));
      if (e === undefined) {
        this.counters.unknownIndex++;
        continue;
      }
      if (e.kp.rxCount === 0) touchedKeys.push(e);
      if (!queueOpen(e.kp, buf, off, len, i)) this.counters.replayed++;
    }
    if (frames.count === 0) frames.buf = buf;
    for (const e of touchedKeys) {
      const { peer: p, kp } = e;
      if (kp.closed || this.indices.get(kp.localIndex) !== e) {
        kp.rxCount = 0;
        continue;
      }
      const rx = p.rx;
      const failedBefore = this.counters.authFailed;
      this.rxPeer = p;
      const queued = kp.rxCount;
      const newest = openQueued(kp, buf, rx, this.counters, this.onControl, undefined, true);
      this.rxPeer = null;
      p.authFailed += this.counters.authFailed - failedBefore;
      if (newest < 0) {
        rx.clear();
        continue;
      }
      p.lastUsed = now;
      this.pathsOf(p, kp, buf, addrs, queued, now);
      if (kp === p.next) this.confirm(p, kp);
      this.accept(p, rx, frames);
      rx.clear();
    }
    touchedKeys.length = 0;
  }

  /** Which path each fresh, authentic datagram came on: bytes per path, and new sources become candidates. */
  private pathsOf(p: Peer, kp: Keypair, buf: Buffer, addrs: Buffer, n: number, now: number): void {
    const paths = p.paths;
    const sw = this.switchAddr;
    let relayed = 0, direct = 0, directFrames = 0, frames = 0, lastDirect = -1;
    for (let j = 0; j < n; j++) {
      if (kp.rxResults[j] !== 1) continue;
      const at = kp.rxSlots[j]! * ADDR_SLOT;
      // Frame bytes, as on the send side; probes and keepalives count as neither traffic nor bytes.
      const len = kp.rxLengths[j]! - TRANSPORT_OVERHEAD;
      const plain = kp.rxPlainOffsets[j]!;
      const frame = len >= ETHERNET.HEADER_LEN && !(buf[plain] === 0 && isProbeFrame(buf, plain, len));
      if (frame) frames++;
      if (addressEquals(addrs, at, sw, 0)) {
        if (frame) relayed += len;
      } else {
        lastDirect = at;
        if (frame) {
          direct += len;
          directFrames++;
        }
      }
    }
    // Only frames keep a pair active: heartbeats answering heartbeats would keep each other alive forever.
    if (frames > 0) paths.activity(now);
    paths.rxRelayBytes += relayed;
    paths.rxDirectBytes += direct;
    this.counters.rxDirect += directFrames;
    this.counters.rxDirectBytes += direct;
    if (lastDirect >= 0) paths.heard(addrs, lastDirect, now);
  }

  /** The checks of an opened window from `p`: source theirs, destination ours. */
  private accept(p: Peer, rx: MutableFrameBatch, frames: MutableFrameBatch): void {
    const { buf, offsets, lengths, count } = rx;
    let lastSrc = -1, lastVlan = -1, srcOk = false, lastDst = -1, dstOk = false;
    for (let j = 0; j < count; j++) {
      const off = offsets[j]!;
      const len = lengths[j]!;
      const vlan = readVlanId(buf, off, len);
      const src = readMac(buf, off + ETHERNET.SRC_OFFSET);
      if (src !== lastSrc || vlan !== lastVlan) {
        srcOk = this.directory.get(vlan)?.get(src) === p;
        lastSrc = src;
        lastVlan = vlan;
        lastDst = -1;
      }
      if (!srcOk) {
        this.counters.srcNotOwned++;
        p.srcNotOwned++;
        continue;
      }
      const dst = readMac(buf, off + ETHERNET.DST_OFFSET);
      if (isMulticast(dst)) {
        // Flooding is the switch's job: a group frame never comes end to end.
        this.counters.dstGroup++;
        continue;
      }
      if (dst !== lastDst) {
        dstOk = this.own.get(vlan)?.has(dst) === true;
        lastDst = dst;
        if (!dstOk) this.notHere(p, dst, vlan);
      }
      if (!dstOk) {
        this.counters.dstNotHere++;
        continue;
      }
      frames.push(off, len);
      p.rxFrames++;
      p.rxBytes += len;
      this.counters.rxPair++;
    }
  }

  private notHere(p: Peer, mac: number, vlan: number): void {
    const kp = p.current ?? p.previous;
    if (kp === null || !this.notHereBudget.take(this.rxNow)) return;
    this.counters.notHereSent++;
    this.sendSlow(p, sealOne(kp, encodeNotHere(mac, vlan)));
  }

  /** A short control payload on a pair session, in receive slot `slot`. */
  private pairControl(kp: Keypair, buf: Buffer, off: number, len: number, slot: number): void {
    const p = this.rxPeer;
    if (p === null) return;
    const c = decodePairControl(buf, off, len);
    if (c === null) {
      this.counters.malformed++;
      return;
    }
    if (c.kind === PairControl.PROBE) {
      if (this.pathCtx.disabled) return;
      // Answer on the address it came from, with the newest keys we may send with.
      const out = p.current !== null && !p.current.closed ? p.current : null;
      if (out === null) return;
      const at = slot * ADDR_SLOT;
      this.counters.probesAnswered++;
      this.host.sendTo(sealOne(out, encodeProbeFrame(PairControl.PROBE_REPLY, c.id, this.probeSize)), Buffer.from(this.rxAddrs.subarray(at, at + ADDR_SLOT)));
      return;
    }
    if (c.kind === PairControl.PROBE_REPLY) {
      this.counters.pongsReceived++;
      p.paths.pong(this.rxAddrs, slot * ADDR_SLOT, c.id, this.rxNow);
      return;
    }
    if (c.kind === PairControl.NOT_HERE) {
      this.counters.notHereReceived++;
      // Only the peer the entry points at can withdraw it; the next frame goes through the switch.
      const macs = this.directory.get(c.vlan);
      if (macs?.get(c.mac) === p) {
        macs.delete(c.mac);
        removeRecord(p.macs, c);
      }
      return;
    }
    // LEAVE: the peer closed the session; the next frame for it starts a new one.
    void kp;
    this.closeSession(p, 'the peer closed the session');
  }

  private confirm(p: Peer, kp: Keypair): void {
    const had = p.current !== null;
    kp.confirmed = true;
    p.next = null;
    if (p.previous !== null) this.retire(p.previous);
    p.previous = p.current;
    p.current = kp;
    p.lastHandshakeAt = this.rxNow;
    this.counters.handshakes++;
    if (!had) this.host.event({ type: 'pair-up', peer: p.name, session: formatIndex(kp.localIndex), initiator: false });
  }

  // ------------------------------------------------------------------ timers

  /** Retries, key expiry, idle sessions, MAC claims. Call about once a second. */
  poll(now: number): void {
    for (const p of this.stale.values()) {
      if (now - p.staleSince >= PEER_REJOIN_GRACE_MS) {
        this.counters.peersLostAtRejoin++;
        this.dropPeer(p, 'the switch did not vouch for it again after the rejoin');
        continue;
      }
      p.paths.poll(now);
      if (now >= p.queryAt && this.host.toSwitch(encodePeerQuery(p.publicKey))) p.queryAt = now + PEER_QUERY_RETRY_MS;
    }
    for (const p of this.peers.values()) {
      if (p.current !== null) {
        p.paths.poll(now);
        this.reportPath(p, now);
      }
      if (p.handshake !== null && now >= p.nextRetryAt) {
        if (p.attempts >= PAIR_HANDSHAKE_ATTEMPTS) {
          this.indices.delete(p.handshake.senderIndex);
          p.handshake = null;
          p.nextRetryAt = Infinity;
          p.cooldownUntil = now + PAIR_HANDSHAKE_COOLDOWN_MS;
          this.counters.handshakeFailures++;
        } else {
          this.initiate(p, now);
        }
      }
      if (p.previous !== null && now - p.previous.createdAt >= this.rejectAfterMs) {
        this.retire(p.previous);
        p.previous = null;
      }
      if (p.current !== null && now - p.current.createdAt >= this.rejectAfterMs) {
        this.retire(p.current);
        p.current = null;
      }
      if (p.next !== null && now - p.next.createdAt >= this.rejectAfterMs) {
        this.retire(p.next);
        p.next = null;
      }
      if (p.hasSession && now - p.lastUsed >= PAIR_IDLE_MS) this.closeSession(p, 'idle');
      else if (!p.hasSession && p.counted) this.uncount(p, 'keys expired');
    }
    if (now >= this.nextClaimAt) {
      this.nextClaimAt = now + MAC_CLAIM_INTERVAL_MS;
      this.claim();
    }
  }

  /** Tell the switch which of our MACs pair sessions used: its entries must not age or be taken while we use them. */
  private claim(): void {
    const used: MacRecord[] = [];
    outer: for (const [vlan, macs] of this.own) {
      for (const [mac, u] of macs) {
        if (used.length >= LOCAL_MACS_MAX) break outer;
        if (!u) continue;
        used.push({ mac, vlan });
        macs.set(mac, false);
      }
    }
    for (const m of encodeMacClaims(used)) this.host.toSwitch(m);
  }

  /** Say goodbye on every session (the port is leaving) and forget everything. */
  close(): void {
    for (const p of [...this.peers.values(), ...this.stale.values()]) {
      const kp = p.current;
      if (kp !== null && !kp.closed) this.sendSlow(p, sealOne(kp, PAIR_LEAVE_PAYLOAD));
    }
    this.reset('port closing');
  }

  // ------------------------------------------------------------------ status

  status(now: number): PeerStatus[] {
    const out: PeerStatus[] = [];
    for (const p of [...this.peers.values(), ...this.stale.values()]) {
      const kp = p.current;
      const paths = p.paths;
      const endpoint = paths.endpoint;
      const direct = kp !== null && paths.isDirect && endpoint !== null;
      const reason = kp !== null ? paths.reason(now) : undefined;
      const rtt = paths.rttMs;
      out.push({
        id: p.id,
        name: p.name,
        publicKey: encodeKey(p.publicKey),
        path: kp === null ? '-' : direct ? 'direct' : 'relayed',
        ...(direct ? { endpoint: formatAddress(endpoint) } : {}),
        ...(reason !== undefined ? { reason } : {}),
        ...(kp !== null ? { pathSince: new Date(paths.since).toISOString() } : {}),
        ...(direct && rtt !== undefined ? { rttMs: rtt } : {}),
        txDirectBytes: paths.txDirectBytes,
        rxDirectBytes: paths.rxDirectBytes,
        txRelayBytes: paths.txRelayBytes,
        rxRelayBytes: paths.rxRelayBytes,
        candidates: paths.candidates(now),
        ...(p.stale ? { stale: true } : {}),
        state: kp !== null ? 'up' : p.handshake !== null || p.next !== null ? 'handshaking' : 'idle',
        session: kp !== null ? `${formatIndex(kp.localIndex)}/${formatIndex(kp.remoteIndex)}` : '-',
        ...(p.lastHandshakeAt > 0 ? { lastHandshakeS: Math.round((now - p.lastHandshakeAt) / 100) / 10 } : {}),
        macs: p.macs.length,
        txFrames: p.txFrames,
        txBytes: p.txBytes,
        rxFrames: p.rxFrames,
        rxBytes: p.rxBytes,
        authFailed: p.authFailed,
        srcNotOwned: p.srcNotOwned,
      });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  /** Our MACs as the switch confirmed them (status). */
  ownMacs(): string[] {
    const out: string[] = [];
    for (const [vlan, macs] of this.own) for (const mac of macs.keys()) out.push(vlan === 0 ? formatMac(mac) : `${formatMac(mac)}@${vlan}`);
    return out;
  }

  // ------------------------------------------------------------------ bookkeeping

  /** A new session for `p`: close the least recently used one when at the limit. */
  private makeRoom(p: Peer): void {
    if (p.counted) return;
    p.counted = true;
    this.sessions++;
    if (this.sessions <= this.maxSessions) return;
    let lru: Peer | undefined;
    for (const q of this.peers.values()) if (q !== p && q.counted && (lru === undefined || q.lastUsed < lru.lastUsed)) lru = q;
    if (lru !== undefined) {
      this.counters.evicted++;
      this.closeSession(lru, 'evicted: too many pair sessions');
    }
  }

  private uncount(p: Peer, reason: string): void {
    if (!p.counted) return;
    p.counted = false;
    this.sessions--;
    this.host.event({ type: 'pair-down', peer: p.name, reason });
  }

  private closeSession(p: Peer, reason: string): void {
    for (const kp of [p.current, p.previous, p.next]) if (kp !== null) this.retire(kp);
    p.current = p.previous = p.next = null;
    if (p.handshake !== null) this.indices.delete(p.handshake.senderIndex);
    p.handshake = null;
    p.nextRetryAt = Infinity;
    this.uncount(p, reason);
  }

  private dropPeer(p: Peer, reason: string): void {
    this.closeSession(p, reason);
    this.clearMacs(p);
    this.responder.forget(p.publicKey);
    if (p.stale) this.stale.delete(p.publicKey.toString('hex'));
    else if (this.peers.get(p.id) === p) this.peers.delete(p.id);
  }

  private clearMacs(p: Peer): void {
    for (const r of p.macs) {
      const macs = this.directory.get(r.vlan);
      if (macs?.get(r.mac) === p) {
        macs.delete(r.mac);
        if (macs.size === 0) this.directory.delete(r.vlan);
      }
    }
    p.macs.length = 0;
  }

  private retire(kp: Keypair): void {
    this.indices.delete(kp.localIndex);
    kp.close();
  }
}

const EMPTY = Buffer.alloc(0);

function setIn<V>(m: Map<number, Map<number, V>>, vlan: number, mac: number, v: V): void {
  let inner = m.get(vlan);
  if (inner === undefined) {
    inner = new Map();
    m.set(vlan, inner);
  }
  inner.set(mac, v);
}

function removeRecord(list: MacRecord[], r: MacRecord): void {
  const i = list.findIndex((x) => x.mac === r.mac && x.vlan === r.vlan);
  if (i >= 0) list.splice(i, 1);
}
