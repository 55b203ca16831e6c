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
  LOCAL_MACS_MAX,
  MAC_CLAIM_INTERVAL_MS,
  MAX_PAIR_SESSIONS_DEFAULT,
  MessageType,
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
import {
  PAIR_LEAVE_PAYLOAD,
  decodePairControl,
  encodeMacClaims,
  encodeNotHere,
  encodePairSend,
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
}

/** What the pair sessions ask of the port. */
export interface PairSessionsHost {
  /** A long control message for the switch, on the port's own session (false: not joined, dropped). */
  toSwitch(payload: Buffer): boolean;
  /** One PAIR_DATA datagram for the switch to relay (slow path: keepalives, notices). */
  send(datagram: Buffer): void;
  /** A pair session came up or went away (logs). */
  event(e: PairEvent): void;
}

export type PairEvent =
  | { type: 'pair-up'; peer: string; session: string; initiator: boolean }
  | { type: 'pair-down'; peer: string; reason: string };

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
}

/** One peer as `vport status` shows it. */
export interface PeerStatus {
  id: number;
  name: string;
  publicKey: string;
  /** 'relayed' (through the switch) while a session is up; '-' otherwise. */
  path: 'relayed' | '-';
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
  constructor(
    readonly id: number,
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
  private sessions = 0;
  private rxPeer: Peer | null = null;
  private rxNow = 0;
  private readonly onControl = (kp: Keypair, buf: Buffer, off: number, len: number): void => this.pairControl(kp, buf, off, len);

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
      if (msg.flags & PeerFlags.RESET) {
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
    if (p === undefined) {
      p = new Peer(msg.id, Buffer.from(msg.publicKey), msg.name);
      this.peers.set(msg.id, p);
    }
    p.name = msg.name;
    if (msg.flags & PeerFlags.RESET) this.clearMacs(p);
    for (const r of msg.macs) {
      const macs = this.directory.get(r.vlan);
      const before = macs?.get(r.mac);
      if (before === p) continue;
      if (before !== undefined) removeRecord(before.macs, r);
      setIn(this.directory, r.vlan, r.mac, p);
      p.macs.push(r);
    }
    void now;
  }

  /** The port's session with the switch is new (the switch restarted, or we rejoined): ids and MACs start over. */
  reset(reason: string): void {
    for (const p of [...this.peers.values()]) this.dropPeer(p, reason);
    this.own.clear();
    this.selfId = 0;
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
    if (p === undefined) {
      p = new Peer(src, Buffer.from(publicKey), encodeKey(publicKey).slice(0, 8));
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
    this.host.send(sealOne(kp, EMPTY));
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
      if (kp === null || kp.closed) {
        this.want(p, now);
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
    sealInto(kp, p.tx, this.out, this.switchAddr, this.counters);
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
   * PAIR_DATA datagrams slots[from..to) of `batch` (from the switch). Frames
   * that pass the checks are appended to `frames`.
   */
  receive(batch: FrameBatch, slots: Uint16Array, from: number, to: number, now: number, frames: MutableFrameBatch): void {
    const { buf, offsets, lengths } = batch;
    this.rxNow = now;
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
      const newest = openQueued(kp, buf, rx, this.counters, this.onControl);
      this.rxPeer = null;
      p.authFailed += this.counters.authFailed - failedBefore;
      if (newest < 0) {
        rx.clear();
        continue;
      }
      p.lastUsed = now;
      if (kp === p.next) this.confirm(p, kp);
      this.accept(p, rx, frames);
      rx.clear();
    }
    touchedKeys.length = 0;
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
    this.host.send(sealOne(kp, encodeNotHere(mac, vlan)));
  }

  /** A short control payload on a pair session. */
  private pairControl(kp: Keypair, buf: Buffer, off: number, len: number): void {
    const p = this.rxPeer;
    if (p === null) return;
    const c = decodePairControl(buf, off, len);
    if (c === null) {
      this.counters.malformed++;
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
    for (const p of this.peers.values()) {
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
    for (const p of this.peers.values()) {
      const kp = p.current;
      if (kp !== null && !kp.closed) this.host.send(sealOne(kp, PAIR_LEAVE_PAYLOAD));
    }
    this.reset('port closing');
  }

  // ------------------------------------------------------------------ status

  status(now: number): PeerStatus[] {
    const out: PeerStatus[] = [];
    for (const p of this.peers.values()) {
      const kp = p.current;
      out.push({
        id: p.id,
        name: p.name,
        publicKey: encodeKey(p.publicKey),
        path: kp !== null ? 'relayed' : '-',
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
    this.peers.delete(p.id);
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
