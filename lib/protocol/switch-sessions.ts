// The switch's sessions with its members, sans-IO: the Noise IKpsk2 responder
// with an allow list (or open membership for --insecure), cookie replies under
// load, per-source handshake limits, keypairs per member with rekey and expiry,
// and the data path. Each admitted member is a Port: a receive window decrypts
// straight into its ingress batch, and its send() seals. Only authenticated
// datagrams create or change state. Time comes in as arguments.
import { randomBytes } from 'node:crypto';
import { BATCH_SIZE, MutableFrameBatch, type FrameBatch } from '../core/frames.js';
import type { BatchReceiver, Port } from '../core/port.js';
import type { Logger } from '../core/log.js';
import { addressEquals, formatAddress } from '../io/address.js';
import { ADDR_SLOT } from '../io/native.js';
import { encodeKey, type AllowEntry } from '../crypto/keys.js';
import {
  CONFIRM_TIMEOUT_MS,
  Control,
  DEFAULT_CIPHER,
  LOG_BUDGET_PER_SECOND,
  MAX_PENDING_HANDSHAKES,
  MEMBER_ID_MAX,
  MessageType,
  PingFlags,
  PROTOCOL_VERSION,
  REJECT_AFTER_TIME_MS,
  REPLY_BUDGET_BURST,
  REPLY_BUDGET_PER_SECOND,
  RefusedReason,
  UDP_PROBE_ACKS_PER_SECOND,
  UNDER_LOAD_HANDSHAKES_PER_S,
  handshakePrologue,
  type TransportCipherName,
} from './constants.js';
import { CookieChecker } from './cookie.js';
import { IndexTable, type RandomBytes } from './indices.js';
import { Keypair } from './keypair.js';
import { SourceLimiter, TokenBucket } from './limits.js';
import { ResponderHandshake, insecureSwitchKey, isInitiation } from './noise.js';
import { openQueued, queueOpen } from './receive.js';
import { sealInto, sealOne, type DatagramQueue } from './send.js';
import {
  LEAVE_PAYLOAD,
  decodeControl,
  decodeExtensions,
  decodeUdpProbe,
  encodeHandshakeRefused,
  encodeProbeAck,
  encodeParams,
  encodePing,
  encodeSessionUnknown,
  encodeVersionUnsupported,
  decodeLongControl,
  isPairData,
  isTransport,
  mayAnswerVersion,
  readReceiverIndex,
  type LongControlMessage,
} from './wire.js';
import { EtherlinkError } from '../core/errors.js';

/** The socket side of a member: where its datagrams go (lib/daemon/switch-server.ts has one per UDP socket). */
export interface Link {
  readonly queue: DatagramQueue;
}

/** What the sessions ask of the server. */
export interface SwitchSessionsHost<L extends Link> {
  /** A member confirmed its first keys: attach it to the switch. */
  joined(member: Member<L>): void;
  left(member: Member<L>, reason: string): void;
  /** The member's device went down or came back (carried in its pings). */
  linkChanged(member: Member<L>, up: boolean): void;
  /** A control datagram (slow path). */
  send(link: L, datagram: Buffer, to: Buffer): void;
  /** A long control message from a joined member (PAIR_SEND, MAC_CLAIM). */
  longControl?(member: Member<L>, msg: LongControlMessage): void;
  /** An authenticated datagram moved the member's endpoint (roaming): relay routes follow. */
  roamed?(member: Member<L>): void;
  /**
   * A PAIR_DATA datagram that reached JavaScript: the socket's relay table had
   * no route for it (unknown source or destination, or a member on another socket).
   */
  pairData?(link: L, datagram: Buffer, from: Buffer, now: number): void;
  /**
   * Whether the server holds any invite (open, or spent or expired within the
   * last day, so that it can say why it refuses one): only then does a key
   * outside the allow list get its initiation decrypted.
   */
  invitesKnown?(now: number): boolean;
  /**
   * A key outside the allow list presents an invite (already authenticated:
   * its initiation decrypted). The server checks it and, if good, writes the
   * key to the allow file and returns its entry; else says why not.
   */
  redeemInvite?(req: InviteRedemption): { entry: AllowEntry } | { refused: InviteRefusal };
}

/** An invite presented in an initiation (SwitchSessionsHost.redeemInvite). */
export interface InviteRedemption {
  id: Buffer;
  proof: Buffer;
  publicKey: Buffer;
  /** The name the port announced, if any. */
  name?: string;
  now: number;
}

/** Why an invite was refused. */
export type InviteRefusal = 'unknown' | 'expired' | 'used';

const INVITE_REFUSED: Readonly<Record<InviteRefusal, RefusedReason>> = {
  unknown: RefusedReason.INVITE_UNKNOWN,
  expired: RefusedReason.INVITE_EXPIRED,
  used: RefusedReason.INVITE_USED,
};

export interface SwitchSessionsOptions {
  privateKey: Buffer;
  /** Admitted ports: public key and an optional name. 'open': any key (--insecure). */
  allow: readonly AllowEntry[] | 'open';
  psk?: Buffer;
  /** Transport cipher; every port must use the same (default ChaCha20-Poly1305; 'none' for --insecure). */
  cipher?: TransportCipherName;
  keepaliveS: number;
  portTimeoutS: number;
  maxPorts?: number;
  /** Override REJECT_AFTER_TIME (tests shorten it with the port's rekey time). */
  rejectAfterMs?: number;
  /** Session indices and cookie secrets (default node:crypto). */
  random?: RandomBytes;
  logger: Logger;
}

/** Counters of the protocol layer (datagrams, handshakes), for status and metrics. */
export interface SessionCounters {
  handshakes: number;
  handshakeFailures: number;
  rekeys: number;
  cookiesSent: number;
  rateLimited: number;
  badMac1: number;
  unlisted: number;
  /** Keys outside the allow list admitted by an invite. */
  invitesRedeemed: number;
  /** Invites refused: unknown (or a wrong proof), expired, or used already. */
  invitesRefused: number;
  /** Initiations refused because the switch was full (maxPorts). */
  switchFull: number;
  /** Of badMac1: initiations for the published --insecure key (a keyed switch refuses them, saying why). */
  insecurePorts: number;
  refusalsSent: number;
  replayedInitiations: number;
  unconfirmed: number;
  authFailed: number;
  replayed: number;
  unknownIndex: number;
  malformed: number;
  badVersion: number;
  noSession: number;
  /** --insecure: transport from an address other than the member's (nothing authenticates it, so it cannot roam). */
  wrongEndpoint: number;
  /** PAIR_DATA the socket's relay table did not forward (unknown source or destination): handled or dropped in JS. */
  pairUnrouted: number;
  /** UDP_PROBE answered (a port on a stream checking whether UDP works again), and dropped (unknown index, over budget); a malformed one counts as malformed. */
  udpProbeAcks: number;
  udpProbesDropped: number;
  txOversize: number;
  roams: number;
  leaves: number;
  timeouts: number;
}

/**
 * A member of the LAN as the switch sees it: one port of the Switch. Frames of
 * a receive window land in `ingress` (views into the receive slab) and reach
 * the Switch in one call per window; frames the Switch sends are sealed for it.
 */
export class Member<L extends Link = Link> implements Port {
  /** 20-byte underlay address slot; only an authenticated datagram moves it (roaming). */
  readonly endpoint = Buffer.alloc(ADDR_SLOT);
  lastSeen: number;
  joined = false;
  /** Whether the member's device is up, as its last ping said. */
  linkUp = true;
  /** The member runs pair sessions (announced in its initiation): it gets directory entries and relayed handshakes. */
  pairs = false;
  /** Its allow-file entry (network, VLAN mode, name); undefined on an open switch. */
  entry: AllowEntry | undefined = undefined;
  lastHandshake = 0;
  rekeys = 0;
  /** @internal */ current: Keypair | null = null;
  /** @internal */ previous: Keypair | null = null;
  /** @internal */ next: Keypair | null = null;
  /** @internal When `next` went from none to pending: a retried initiation replaces `next`, not this clock. */
  unconfirmedSince = 0;
  /** @internal frames of the current receive window. */
  readonly ingress = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
  private receiver: BatchReceiver | null = null;

  /** @internal */
  constructor(
    private readonly sessions: SwitchSessions<L>,
    readonly id: number,
    public name: string,
    /** Base64 static public key. */
    readonly publicKey: string,
    readonly keyHex: string,
    readonly joinedAt: number,
    public link: L,
  ) {
    this.lastSeen = joinedAt;
  }

  /** Port: frames out of this switch port, sealed for the member at its endpoint. */
  send(batch: FrameBatch): void {
    this.sessions.seal(this, batch);
  }

  setReceiver(receiver: BatchReceiver | null): void {
    this.receiver = receiver;
  }

  /** Hand this window's frames to the switch in one call. */
  deliver(): void {
    const batch = this.ingress;
    if (batch.count > 0 && this.receiver !== null) this.receiver(batch);
    batch.clear();
  }
}

interface IndexEntry<L extends Link> {
  member: Member<L>;
  kp: Keypair;
}

/** Datagrams per receive window: each keypair's scratch and each member's ingress hold one window. */
export const RECEIVE_WINDOW = BATCH_SIZE;

export class SwitchSessions<L extends Link = Link> {
  readonly counters: SessionCounters = {
    handshakes: 0,
    handshakeFailures: 0,
    rekeys: 0,
    cookiesSent: 0,
    rateLimited: 0,
    badMac1: 0,
    unlisted: 0,
    switchFull: 0,
    insecurePorts: 0,
    refusalsSent: 0,
    replayedInitiations: 0,
    unconfirmed: 0,
    authFailed: 0,
    replayed: 0,
    unknownIndex: 0,
    invitesRedeemed: 0,
    invitesRefused: 0,
    malformed: 0,
    badVersion: 0,
    noSession: 0,
    wrongEndpoint: 0,
    pairUnrouted: 0,
    udpProbeAcks: 0,
    udpProbesDropped: 0,
    txOversize: 0,
    roams: 0,
    leaves: 0,
    timeouts: 0,
  };
  readonly cipher: TransportCipherName;
  /**
   * With cipher 'none' nothing but the handshake is authenticated: transport is
   * taken only from the member's endpoint (as a plaintext protocol must), and a
   * port that moves is found again at its next handshake.
   */
  private readonly pinned: boolean;
  private readonly responder: ResponderHandshake;
  /** Checks whether a bad-mac1 initiation was meant for the published --insecure key (a keyed switch then says so). */
  private readonly insecureChecker: CookieChecker | null;
  private allow: Map<string, AllowEntry> | 'open';
  private readonly members = new Map<string, Member<L>>();
  private readonly indices: IndexTable<IndexEntry<L>>;
  private readonly touchedKeys: IndexEntry<L>[] = [];
  private readonly touched: Member<L>[] = [];
  private readonly limiter = new SourceLimiter();
  // Separate budgets, so a flood of junk transport can't silence version answers, or the reverse.
  private readonly replyBudget = new TokenBucket(REPLY_BUDGET_PER_SECOND, REPLY_BUDGET_BURST);
  private readonly versionBudget = new TokenBucket(REPLY_BUDGET_PER_SECOND, REPLY_BUDGET_BURST);
  private readonly refusalBudget = new TokenBucket(REPLY_BUDGET_PER_SECOND, REPLY_BUDGET_BURST);
  private readonly logBudget = new TokenBucket(LOG_BUDGET_PER_SECOND, LOG_BUDGET_PER_SECOND);
  private readonly probeBudget = new TokenBucket(UDP_PROBE_ACKS_PER_SECOND, UDP_PROBE_ACKS_PER_SECOND);
  private readonly rejectAfterMs: number;
  private readonly log: Logger;
  private handshakesThisSecond = 0;
  private pending = 0;
  /** Member ids (u16) freed, reused oldest first so a stale route rarely meets a new member. */
  private readonly freeIds: number[] = [];
  private freeIdAt = 0;
  private nextFreshId = 1;
  private readonly byId = new Map<number, Member<L>>();
  // Per receive window: where its datagrams came from.
  private rxAddrs: Buffer = Buffer.alloc(0);
  private rxLink: L | null = null;
  private rxNow = 0;
  private readonly onControl = (kp: Keypair, buf: Buffer, off: number, len: number): void => this.control(kp, buf, off, len);
  private readonly onLongControl = (kp: Keypair, buf: Buffer, off: number, len: number): void => {
    const e = this.indices.get(kp.localIndex);
    if (e === undefined || !e.member.joined) return;
    const msg = decodeLongControl(buf, off, len);
    if (msg === null) this.counters.malformed++;
    else this.host.longControl?.(e.member, msg);
  };

  constructor(
    private readonly host: SwitchSessionsHost<L>,
    private readonly opts: SwitchSessionsOptions,
  ) {
    this.cipher = opts.cipher ?? DEFAULT_CIPHER;
    this.pinned = this.cipher === 'none';
    this.log = opts.logger;
    const random = opts.random ?? randomBytes;
    this.indices = new IndexTable(random);
    this.responder = new ResponderHandshake({ staticPrivateKey: opts.privateKey, prologue: handshakePrologue(this.cipher), random });
    const insecure = insecureSwitchKey();
    this.insecureChecker = this.responder.publicKey.equals(insecure.publicKey) ? null : new CookieChecker(insecure.publicKey);
    this.rejectAfterMs = opts.rejectAfterMs ?? REJECT_AFTER_TIME_MS;
    this.allow = opts.allow === 'open' ? 'open' : new Map();
    if (opts.allow !== 'open') this.setAllowList(opts.allow);
  }

  /** This switch's static public key (base64). */
  /** This switch's static public key, raw. */
  get publicKeyBytes(): Buffer {
    return this.responder.publicKey;
  }

  get publicKey(): string {
    return encodeKey(this.responder.publicKey);
  }

  /** Whether any key may join (--insecure). */
  get open(): boolean {
    return this.allow === 'open';
  }

  /** Members that have joined (confirmed their keys). */
  get size(): number {
    let n = 0;
    for (const m of this.members.values()) if (m.joined) n++;
    return n;
  }

  get pendingHandshakes(): number {
    return this.pending;
  }

  /** The joined members. */
  list(): Member<L>[] {
    return [...this.members.values()].filter((m) => m.joined);
  }

  /**
   * Replace the allow list (SIGHUP). Members whose key is gone are told goodbye
   * and removed, and so are members whose network or VLAN mode changed (they
   * rejoin into the new one); renamed ones take the new name. Returns the
   * removed names.
   */
  setAllowList(entries: readonly AllowEntry[]): string[] {
    if (this.allow === 'open') throw new EtherlinkError('ERR_INSECURE', 'an open switch (--insecure) admits any key: it has no allow list');
    this.allow = new Map(entries.map((e) => [e.publicKey.toString('hex'), e]));
    const removed: string[] = [];
    const networks = new Set(entries.map((e) => e.network));
    for (const [hexKey, member] of this.members) {
      const entry = this.allow.get(hexKey);
      if (entry === undefined) {
        removed.push(member.name);
        this.responder.forget(Buffer.from(hexKey, 'hex'));
        const gone = member.entry?.network;
        this.drop(member, gone !== undefined && !networks.has(gone) ? `removed from network ${gone}` : 'removed from the allow file', true);
        continue;
      }
      const moved = entry.network !== member.entry?.network;
      if (moved || JSON.stringify(entry.vlan) !== JSON.stringify(member.entry?.vlan)) {
        // Told goodbye, it comes straight back: into its new network, or with its new VLAN mode.
        removed.push(member.name);
        this.drop(member, moved ? `moved to network ${entry.network ?? 'default'}` : 'its VLAN mode changed', true);
        continue;
      }
      member.entry = entry;
      if (entry.name !== undefined) member.name = entry.name;
    }
    return removed;
  }

  /**
   * Datagrams [from, to) of a receive batch on `link` (at most RECEIVE_WINDOW),
   * from the peers in `addrs`. Handshakes are answered; transport data is
   * opened into the ingress batch of each member it belongs to. Returns the
   * members with frames: call deliver() on each before the next window.
   */
  receive(link: L, batch: FrameBatch, addrs: Buffer, from: number, to: number, now: number): readonly Member<L>[] {
    const { buf, offsets, lengths } = batch;
    this.rxAddrs = addrs;
    this.rxLink = link;
    this.rxNow = now;
    const touchedKeys = this.touchedKeys;
    const touched = this.touched;
    touched.length = 0;
    for (let i = from; i < to; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (isTransport(buf, off, len)) {
        const index = readReceiverIndex(buf, off);
        const e = this.indices.get(index);
        if (e === undefined) {
          this.counters.unknownIndex++;
          // A port whose switch restarted learns it at once (docs/PROTOCOL.md: SESSION_UNKNOWN).
          if (this.replyBudget.take(now)) this.host.send(link, encodeSessionUnknown(index), addrs.subarray(i * ADDR_SLOT, (i + 1) * ADDR_SLOT));
          continue;
        }
        if (this.pinned && (e.member.link !== link || !addressEquals(e.member.endpoint, 0, addrs, i * ADDR_SLOT))) {
          this.counters.wrongEndpoint++;
          continue;
        }
        if (e.kp.rxCount === 0) touchedKeys.push(e);
        if (!queueOpen(e.kp, buf, off, len, i)) this.counters.replayed++;
        continue;
      }
      if (isPairData(buf, off, len)) {
        this.counters.pairUnrouted++;
        this.host.pairData?.(link, buf.subarray(off, off + len), addrs.subarray(i * ADDR_SLOT, (i + 1) * ADDR_SLOT), now);
        continue;
      }
      this.handshakeMessage(link, buf, off, len, addrs, i, now);
    }
    for (const e of touchedKeys) {
      const m = e.member;
      // A LEAVE or a revocation opened just before may have retired this keypair.
      if (this.indices.get(e.kp.localIndex) !== e || e.kp.closed) {
        e.kp.rxCount = 0;
        continue;
      }
      const had = m.ingress.count;
      const newest = openQueued(e.kp, buf, m.ingress, this.counters, this.onControl, this.onLongControl);
      if (newest < 0) continue;
      this.heard(m, e.kp, newest);
      if (had === 0 && m.ingress.count > 0) touched.push(m);
    }
    touchedKeys.length = 0;
    return touched;
  }

  /** The joined member with this static key (hex), if any. */
  byKeyHex(keyHex: string): Member<L> | undefined {
    const m = this.members.get(keyHex);
    return m !== undefined && m.joined ? m : undefined;
  }

  /** The joined member with this id, if any. */
  byMemberId(id: number): Member<L> | undefined {
    const m = this.byId.get(id);
    return m !== undefined && m.joined ? m : undefined;
  }

  /** A long control message for `m` (CONTROL_DATA on its current keys); false if it has none. */
  sendLong(m: Member<L>, payload: Buffer): boolean {
    const kp = m.current;
    if (kp === null || !kp.confirmed) return false;
    this.host.send(m.link, sealOne(kp, payload, MessageType.CONTROL_DATA), m.endpoint);
    return true;
  }

  /** Member.send: seal frames for `m` with its current keys. */
  seal(m: Member<L>, batch: FrameBatch): void {
    const kp = m.current;
    if (kp === null || !kp.confirmed) {
      this.counters.noSession += batch.count;
      return;
    }
    sealInto(kp, batch, m.link.queue, m.endpoint, this.counters);
  }

  /** Timers: expire silent members, stale keys, unconfirmed handshakes. Call every SWITCH_TICK_INTERVAL_MS. */
  tick(now: number): void {
    this.handshakesThisSecond = 0;
    this.limiter.prune(now);
    const timeoutMs = this.opts.portTimeoutS * 1000;
    for (const m of [...this.members.values()]) {
      // Measured from the first unconfirmed handshake: a port with the wrong PSK retries more
      // often than CONFIRM_TIMEOUT_MS (backoff caps at 10 s), so each `next` alone never ages out.
      if (m.next !== null && now - m.unconfirmedSince > CONFIRM_TIMEOUT_MS) {
        this.counters.unconfirmed++;
        this.log.warn('handshake not confirmed: the port never used the new keys (a PSK mismatch?)', {
          port: m.name,
          address: formatAddress(m.endpoint),
          waited: `${CONFIRM_TIMEOUT_MS / 1000}s`,
        });
        this.setNext(m, null);
      }
      if (m.previous !== null && now - m.previous.createdAt > this.rejectAfterMs) {
        this.retire(m.previous);
        m.previous = null;
      }
      if (m.current !== null && now - m.current.createdAt > this.rejectAfterMs) {
        this.retire(m.current);
        m.current = null;
      }
      if (m.joined && now - m.lastSeen > timeoutMs) {
        this.counters.timeouts++;
        this.drop(m, `timeout after ${((now - m.lastSeen) / 1000).toFixed(1)} s of silence`, false);
      } else if (!m.joined && m.current === null && m.next === null) {
        this.drop(m, 'never confirmed', false);
      }
    }
  }

  /** Say goodbye to every member. */
  close(): void {
    for (const m of [...this.members.values()]) this.drop(m, 'switch-shutdown', true);
  }

  // ------------------------------------------------------------------ data path helpers

  /** An authentic, fresh datagram from `m` on `kp` arrived in slot `slot` of this window. */
  private heard(m: Member<L>, kp: Keypair, slot: number): void {
    m.lastSeen = this.rxNow;
    if (!kp.confirmed) this.confirm(m, kp);
    // Roaming: only an authenticated datagram moves the endpoint (to another address, or another transport).
    if (!addressEquals(m.endpoint, 0, this.rxAddrs, slot * ADDR_SLOT) || (this.rxLink !== null && m.link !== this.rxLink)) {
      const from = formatAddress(m.endpoint);
      this.rxAddrs.copy(m.endpoint, 0, slot * ADDR_SLOT, (slot + 1) * ADDR_SLOT);
      if (this.rxLink !== null) m.link = this.rxLink;
      this.counters.roams++;
      this.log.info('port roamed', { port: m.name, from, to: formatAddress(m.endpoint) });
      if (m.joined) this.host.roamed?.(m);
    }
  }

  /** An authentic control payload inside transport data. */
  private control(kp: Keypair, buf: Buffer, off: number, len: number): void {
    const e = this.indices.get(kp.localIndex);
    if (e === undefined) return;
    const m = e.member;
    const c = decodeControl(buf, off, len);
    if (c === null) {
      this.counters.malformed++;
      return;
    }
    if (c.kind === Control.PING) {
      // The PONG goes with the current keys (the ping may confirm `kp`, which then is them).
      if (!kp.confirmed) this.confirm(m, kp);
      const up = (c.flags & PingFlags.LINK_DOWN) === 0;
      if (up !== m.linkUp) {
        m.linkUp = up;
        this.log.info(up ? 'port link up' : 'port link down: its MACs withdrawn', { port: m.name });
        if (m.joined) this.host.linkChanged(m, up);
      }
      this.sendControl(m, encodePing(Control.PONG, c.seq));
    } else if (c.kind === Control.LEAVE) {
      this.counters.leaves++;
      this.drop(m, 'leave', false);
    } else {
      this.counters.malformed++;
    }
  }

  // ------------------------------------------------------------------ control plane

  private handshakeMessage(link: L, buf: Buffer, off: number, len: number, addrs: Buffer, slot: number, now: number): void {
    const from = addrs.subarray(slot * ADDR_SLOT, (slot + 1) * ADDR_SLOT);
    if (len < 4) {
      this.counters.malformed++;
      return;
    }
    const version = buf[off]!;
    if (version !== PROTOCOL_VERSION) {
      this.counters.badVersion++;
      // Answer (within budget, never larger than the trigger) so the port can say why.
      if (mayAnswerVersion(buf, off, len) && this.versionBudget.take(now)) this.host.send(link, encodeVersionUnsupported(), Buffer.from(from));
      if (this.logBudget.take(now)) {
        this.log.warn('incompatible version', { address: formatAddress(from), theirs: version, ours: PROTOCOL_VERSION, hint: 'upgrade one side' });
      }
      return;
    }
    const message = buf.subarray(off, off + len);
    if (buf[off + 1] === MessageType.HANDSHAKE_INITIATION && isInitiation(message)) {
      this.initiation(link, message, from, now);
      return;
    }
    if (buf[off + 1] === MessageType.UDP_PROBE) {
      this.udpProbe(link, buf, off, len, from, now);
      return;
    }
    this.counters.malformed++;
  }

  /**
   * UDP_PROBE from a port whose session runs over a stream: answered with an
   * authenticated PROBE_ACK to where it came from, on the link it came by.
   * Nothing moves: the member's endpoint changes only when its traffic does.
   */
  private udpProbe(link: L, buf: Buffer, off: number, len: number, from: Buffer, now: number): void {
    const p = decodeUdpProbe(buf, off, len);
    if (p === null) {
      this.counters.malformed++;
      return;
    }
    const e = this.indices.get(p.index);
    const kp = e?.kp;
    if (e === undefined || kp === undefined || !kp.confirmed || kp.closed || !e.member.joined || !this.probeBudget.take(now)) {
      this.counters.udpProbesDropped++;
      return;
    }
    this.counters.udpProbeAcks++;
    this.host.send(link, sealOne(kp, encodeProbeAck(p.seq)), Buffer.from(from));
  }

  private initiation(link: L, message: Buffer, from: Buffer, now: number): void {
    const sourceKey = from.toString('hex', 0, 16); // per host, whatever its port
    if (!this.limiter.allow(sourceKey, now)) {
      this.counters.rateLimited++;
      return;
    }
    this.handshakesThisSecond++;
    const underLoad = this.handshakesThisSecond > UNDER_LOAD_HANDSHAKES_PER_S || this.pending > MAX_PENDING_HANDSHAKES / 2;
    const res = this.responder.consumeInitiation(message, { source: from.subarray(0, 18), underLoad, now });
    if (res.kind === 'cookie') {
      this.counters.cookiesSent++;
      this.host.send(link, res.reply, Buffer.from(from));
      return;
    }
    if (res.kind === 'drop') {
      this.dropped(link, message, from, res.reason, now);
      return;
    }
    const init = res.initiation;
    const keyHex = init.peerPublicKey.toString('hex');
    let entry = this.allow === 'open' ? undefined : this.allow.get(keyHex);
    // A key outside the allow list may carry an invite: read its payload to see (only while the server holds invites).
    const invited = this.allow !== 'open' && entry === undefined && this.host.redeemInvite !== undefined && this.host.invitesKnown?.(Date.now()) === true;
    if (this.allow !== 'open' && entry === undefined && !invited) {
      this.counters.unlisted++;
      if (this.logBudget.take(now)) {
        this.log.warn('handshake from a key not in the allow file: add it and send SIGHUP to admit it', {
          key: encodeKey(init.peerPublicKey),
          address: formatAddress(from),
        });
      }
      return;
    }
    if (this.pending >= MAX_PENDING_HANDSHAKES) {
      this.counters.rateLimited++;
      return;
    }
    let m = this.members.get(keyHex);
    if (m === undefined && this.size >= (this.opts.maxPorts ?? Infinity)) {
      this.counters.switchFull++;
      if (this.logBudget.take(now)) this.log.warn('switch full: handshake refused', { key: encodeKey(init.peerPublicKey), max: this.opts.maxPorts });
      return;
    }
    // The index is reserved before accept() so the response can carry it.
    const localIndex = this.indices.reserve();
    const accepted = init.accept({ senderIndex: localIndex, now, ...(this.opts.psk ? { psk: this.opts.psk } : {}) });
    if (!accepted.ok) {
      this.indices.delete(localIndex);
      if (accepted.reason === 'replay' || accepted.reason === 'flood') this.counters.replayedInitiations++;
      else this.counters.handshakeFailures++;
      if (this.logBudget.take(now)) {
        this.log.info('initiation refused', {
          port: entry?.name ?? encodeKey(init.peerPublicKey).slice(0, 8),
          reason: accepted.reason,
          ...(accepted.reason === 'replay' ? { hint: "its timestamp is not newer than the last accepted: a replayed initiation, or the port's clock went back" } : {}),
        });
      }
      return;
    }
    const ext = decodeExtensions(accepted.extensions);
    if (invited) {
      const refusal = this.redeem(init.peerPublicKey, ext, now);
      if (refusal !== null) {
        // Forget the key and its index: it is no member, and a later invite may still admit it.
        this.indices.delete(localIndex);
        this.responder.forget(init.peerPublicKey);
        if (refusal !== 'none') this.refuse(link, from, message.readUInt32BE(4), INVITE_REFUSED[refusal], now);
        return;
      }
      entry = (this.allow as Map<string, AllowEntry>).get(keyHex);
    }
    const announced = ext?.name;
    const name = entry?.name ?? (announced !== undefined && announced !== '' ? announced : encodeKey(init.peerPublicKey).slice(0, 8));
    if (m === undefined) {
      const id = this.allocateId();
      if (id === 0) {
        this.counters.switchFull++;
        return;
      }
      m = new Member(this, id, name, encodeKey(init.peerPublicKey), keyHex, now, link);
      this.members.set(keyHex, m);
      this.byId.set(id, m);
    } else if (entry?.name === undefined) {
      m.name = name;
    }
    m.pairs = ext?.pairs === true;
    m.entry = entry;
    // The initiation proved the key (its timestamp decrypts only with it): reply where it came from.
    const moved = m.link !== link || !addressEquals(from, 0, m.endpoint, 0);
    from.copy(m.endpoint);
    m.link = link;
    if (moved && m.joined) this.host.roamed?.(m);
    const kp = new Keypair(accepted.keys, now, this.cipher);
    this.indices.set(localIndex, { member: m, kp });
    if (m.next === null) m.unconfirmedSince = now;
    this.setNext(m, kp);
    m.lastHandshake = now;
    this.counters.handshakes++;
    this.host.send(link, accepted.response, m.endpoint);
  }

  /**
   * An invite in an initiation from a key outside the allow list: null when
   * the server admitted the key (it is in the allow list now), 'none' when
   * there was no invite to check, else why it was refused.
   */
  private redeem(publicKey: Buffer, ext: ReturnType<typeof decodeExtensions>, now: number): InviteRefusal | 'none' | null {
    const key = encodeKey(publicKey);
    if (ext?.invite === undefined) {
      this.counters.unlisted++;
      if (this.logBudget.take(now)) this.log.warn('handshake from a key not in the allow file: add it and send SIGHUP to admit it', { key });
      return 'none';
    }
    const r = this.host.redeemInvite!({ id: ext.invite.id, proof: ext.invite.proof, publicKey, ...(ext.name !== undefined ? { name: ext.name } : {}), now: Date.now() });
    if ('refused' in r) {
      this.counters.invitesRefused++;
      if (this.logBudget.take(now)) {
        this.log.warn(`invite refused: ${r.refused === 'unknown' ? 'no such invite (never made here, revoked, or a wrong secret)' : r.refused === 'expired' ? 'it has expired' : 'it was used already'}`, {
          invite: ext.invite.id.toString('hex'),
          key,
        });
      }
      return r.refused;
    }
    (this.allow as Map<string, AllowEntry>).set(publicKey.toString('hex'), r.entry);
    this.counters.invitesRedeemed++;
    this.log.info('invite redeemed: key added to the allow file', { invite: ext.invite.id.toString('hex'), key, name: r.entry.name ?? '-', ...(r.entry.network !== undefined ? { network: r.entry.network } : {}) });
    return null;
  }

  /** A dropped initiation: log why (within budget), and tell an --insecure mismatch why it can't join. */
  private dropped(link: L, message: Buffer, from: Buffer, reason: string, now: number): void {
    const address = formatAddress(from);
    const senderIndex = message.readUInt32BE(4);
    if (reason === 'bad-mac1') {
      this.counters.badMac1++;
      if (this.insecureChecker !== null && this.insecureChecker.checkMac1(message)) {
        this.counters.insecurePorts++;
        this.refuse(link, from, senderIndex, RefusedReason.KEYS_REQUIRED, now);
        if (this.logBudget.take(now)) {
          this.log.warn('a port running --insecure tried to join: this switch requires keys: give the port --key and --switch-key (etherlink keygen), or run both ends with --insecure', { address });
        }
        return;
      }
      if (this.insecureChecker === null) {
        // We are the --insecure switch: this port was told another switch key.
        this.refuse(link, from, senderIndex, RefusedReason.INSECURE_SWITCH, now);
        if (this.logBudget.take(now)) {
          this.log.warn('a keyed port tried to join this --insecure switch: run the port with --insecure too, or give this switch --key and --allow', { address });
        }
        return;
      }
      if (this.logBudget.take(now)) {
        this.log.warn("dropped a handshake not meant for this switch key (bad mac1): junk, or a port whose --switch-key is not ours", { address, ourKey: this.publicKey });
      }
      return;
    }
    if (reason === 'decrypt') {
      this.counters.handshakeFailures++;
      this.refuse(link, from, senderIndex, RefusedReason.CIPHER_MISMATCH, now);
      if (this.logBudget.take(now)) {
        this.log.warn('handshake failed', {
          address,
          reason,
          hint: `mac1 matched our key but the handshake does not decrypt: the port uses another --cipher (ours is ${this.cipher}), or the initiation was tampered with`,
        });
      }
      return;
    }
    this.counters.malformed++;
  }

  private refuse(link: L, to: Buffer, senderIndex: number, reason: RefusedReason, now: number): void {
    if (!this.refusalBudget.take(now)) return;
    this.counters.refusalsSent++;
    this.host.send(link, encodeHandshakeRefused(senderIndex, reason), Buffer.from(to));
  }

  /** The port used keys from our response: they become current; the old ones stay for receiving until they expire. */
  private confirm(m: Member<L>, kp: Keypair): void {
    kp.confirmed = true;
    if (m.next === kp) this.setNext(m, null, false);
    if (m.previous !== null) this.retire(m.previous);
    m.previous = m.current;
    m.current = kp;
    this.sendControl(m, encodeParams(this.opts.keepaliveS, this.opts.portTimeoutS));
    if (!m.joined) {
      // Two new ports may have handshaken for the last free place: the first to confirm gets it.
      if (this.size >= (this.opts.maxPorts ?? Infinity)) {
        this.log.warn('switch full: port refused at confirmation', { port: m.name, max: this.opts.maxPorts });
        this.drop(m, 'switch full', true);
        return;
      }
      m.joined = true;
      this.host.joined(m);
      if (!m.linkUp) this.host.linkChanged(m, false);
    } else {
      m.rekeys++;
      this.counters.rekeys++;
      this.log.debug('port rekeyed', { port: m.name });
    }
  }

  private sendControl(m: Member<L>, payload: Buffer): void {
    const kp = m.current;
    if (kp === null || !kp.confirmed) return;
    this.host.send(m.link, sealOne(kp, payload), m.endpoint);
  }

  private drop(m: Member<L>, reason: string, sayGoodbye: boolean): void {
    if (sayGoodbye) this.sendControl(m, LEAVE_PAYLOAD);
    this.setNext(m, null);
    for (const kp of [m.current, m.previous]) if (kp !== null) this.retire(kp);
    m.current = m.previous = null;
    this.members.delete(m.keyHex);
    if (this.byId.get(m.id) === m) {
      this.byId.delete(m.id);
      this.freeIds.push(m.id);
    }
    if (m.joined) {
      m.joined = false;
      this.host.left(m, reason);
    }
  }

  /** The unconfirmed keypair, with the pending count kept in step; the old one is retired unless it was promoted. */
  private setNext(m: Member<L>, kp: Keypair | null, retireOld = true): void {
    if (m.next !== null) {
      this.pending--;
      if (retireOld) this.retire(m.next);
    }
    m.next = kp;
    if (kp !== null) this.pending++;
  }

  private retire(kp: Keypair): void {
    this.indices.delete(kp.localIndex);
    kp.close();
  }

  /** A free member id (1..MEMBER_ID_MAX), the longest-freed first; 0 when all are taken. */
  private allocateId(): number {
    if (this.nextFreshId <= MEMBER_ID_MAX) return this.nextFreshId++;
    if (this.freeIdAt < this.freeIds.length) {
      const id = this.freeIds[this.freeIdAt++]!;
      if (this.freeIdAt > 1024 && this.freeIdAt * 2 > this.freeIds.length) {
        this.freeIds.splice(0, this.freeIdAt);
        this.freeIdAt = 0;
      }
      return id;
    }
    return 0;
  }
}
