// The port's session with its switch, sans-IO: the Noise IKpsk2 initiator that
// accepts only the configured switch key, keepalive pings with RTT and the link
// state, rekey without a gap (the old keys keep receiving), dead-switch
// detection and rejoin with backoff. Time comes in as arguments; randomness and
// the RTT clock are injected; datagrams go out through the host.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { FrameBatch, MutableFrameBatch } from '../core/frames.js';
import { encodeKey, publicKeyOf } from '../crypto/keys.js';
import {
  Control,
  DEAD_AFTER_MISSED_KEEPALIVES,
  DEFAULT_CIPHER,
  HINT_HANDSHAKE_INTERVAL_MS,
  KEEPALIVE_INTERVAL_DEFAULT_S,
  KEEPALIVE_INTERVAL_MAX_S,
  KEEPALIVE_INTERVAL_MIN_S,
  LINK_STATE_RETRY_MS,
  MessageType,
  PINGS_OUTSTANDING_MAX,
  PING_RETRY_MS,
  PingFlags,
  PROTOCOL_VERSION,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_TIME_MS,
  RefusedReason,
  SILENT_ATTEMPTS_BEFORE_HINT,
  handshakePrologue,
  type TransportCipherName,
} from './constants.js';
import { CookieGenerator } from './cookie.js';
import { IndexTable, randomFraction, type RandomBytes } from './indices.js';
import { Keypair } from './keypair.js';
import { rejoinBackoffMs } from './limits.js';
import { InitiatorHandshake } from './noise.js';
import { openQueued, queueOpen, type OpenCounters } from './receive.js';
import { sealInto, sealOne, type DatagramQueue } from './send.js';
import {
  LEAVE_PAYLOAD,
  decodeControl,
  decodeHandshakeRefused,
  decodeLongControl,
  decodeSessionUnknown,
  isEndpointUnknown,
  decodeVersionUnsupported,
  encodeExtensions,
  encodePing,
  encodeUdpProbe,
  formatIndex,
  isTransport,
  readReceiverIndex,
  type LongControlMessage,
} from './wire.js';

/** What kind of problem a 'problem' event reports. */
export type ProblemReason = 'incompatible-version' | 'refused' | 'invite-refused' | 'bad-response' | 'no-answer';

export interface PortSessionOptions {
  privateKey: Buffer;
  switchPublicKey: Buffer;
  psk?: Buffer;
  /** Transport cipher; must match the switch's (default ChaCha20-Poly1305; 'none' for --insecure). */
  cipher?: TransportCipherName;
  /** How this port calls itself in the switch's logs and status (sent encrypted in the initiation). */
  name?: string;
  /** Announce that this port runs pair sessions (PortClient does): the switch then gives it the directory. */
  pairs?: boolean;
  /**
   * Redeem an invite (vport join): its id and this key's proof of its secret
   * (lib/daemon/invites.ts inviteProof), sent encrypted in every initiation. A
   * switch that lists the key already ignores it.
   */
  invite?: { id: Buffer; proof: Buffer };
  /** Shortened in tests to exercise rekeying. */
  rekeyAfterMs?: number;
  rejectAfterMs?: number;
  /** Session indices and backoff jitter (default node:crypto). */
  random?: RandomBytes;
  /** A monotonic clock in ms with sub-ms resolution, for the RTT (default performance.now). */
  monotonic?: () => number;
}

export type PortSessionEvent =
  | { type: 'joined'; session: string; attempts: number }
  | { type: 'rekeyed'; session: string }
  | { type: 'switch-dead'; silentMs: number }
  | { type: 'left-by-switch' }
  /** The switch answered UDP_PROBE `seq` (authenticated, over UDP): UDP works both ways. */
  | { type: 'probe-ack'; seq: number }
  /** Something the user must fix; the session keeps retrying on its backoff. */
  | { type: 'problem'; reason: ProblemReason; message: string };

/** What the session asks of whoever owns the socket. */
export interface PortSessionHost {
  /** A control datagram for the switch (slow path). */
  send(datagram: Buffer): void;
  event(e: PortSessionEvent): void;
  /** Diagnostics the user may want at debug level. */
  debug(msg: string): void;
  /** A long control message from the switch (the directory, relayed pair handshakes). */
  longControl?(msg: LongControlMessage): void;
}

/** Where a port is: not started, handshaking (joining or rejoining), or joined. */
export type PortSessionState = 'idle' | 'handshaking' | 'joined';

export interface PortSessionStatus {
  state: PortSessionState;
  /** "local/remote" session indices, or '-'. */
  session: string;
  rttMs: number | undefined;
  lastHandshakeS?: number;
  /** What this port last told the switch about its device. */
  linkUp: boolean;
  counters: Record<string, number>;
}

const REFUSED_HINTS: Readonly<Record<number, string>> = {
  [RefusedReason.KEYS_REQUIRED]:
    "the switch requires keys and refuses --insecure ports: give this port --key and --switch-key ('etherlink keygen'; 'etherlink pubkey' on the switch's key file) and add its public key to the switch's allow file",
  [RefusedReason.INSECURE_SWITCH]: 'the switch runs --insecure (plaintext) and refuses keyed ports: run this port with --insecure too, or give the switch --key and --allow',
  [RefusedReason.INVITE_UNKNOWN]: "the switch refused the invite: it does not know it (revoked, made by another switch, or copied wrong): ask for a new one ('vswitch invite')",
  [RefusedReason.INVITE_EXPIRED]: "the switch refused the invite: it has expired: ask for a new one ('vswitch invite --expires ...')",
  [RefusedReason.INVITE_USED]: "the switch refused the invite: it was used already: ask for a new one ('vswitch invite'), or, if this key was admitted before, ask why its line left the allow file",
};

/** Refusal reasons that concern an invite: a port that joins by one cannot get further. */
export const INVITE_REFUSALS: ReadonlySet<number> = new Set([RefusedReason.INVITE_UNKNOWN, RefusedReason.INVITE_EXPIRED, RefusedReason.INVITE_USED]);

export class PortSession {
  private state: PortSessionState = 'idle';
  private current: Keypair | null = null;
  private previous: Keypair | null = null;
  private handshake: InitiatorHandshake | null = null;
  private readonly indices: IndexTable<true>;
  private readonly cookies: CookieGenerator;
  private readonly rekeyAfterMs: number;
  private readonly rejectAfterMs: number;
  private readonly cipher: TransportCipherName;
  private readonly random: RandomBytes;
  private readonly monotonic: () => number;
  private readonly extensions: Buffer;
  private attempt = 0;
  private silentAttempts = 0;
  private everJoined = false;
  private nextHandshakeAt = Infinity;
  private nextPingAt = Infinity;
  private lastHeard = 0;
  private lastHandshakeAt = 0;
  private lastHintAt = -Infinity;
  private lastEndpointHintAt = -Infinity;
  /** The last problem reported, so a retry series reports each kind once. */
  private lastProblem = '';
  /** The switch said it lost our session: the next completed handshake is a rejoin, not a rekey. */
  private sessionLost = false;
  private keepaliveMs = KEEPALIVE_INTERVAL_DEFAULT_S * 1000;
  private pingSeq = 0;
  /** Pings sent since the last PONG, and when the latest went out. */
  private unanswered = 0;
  private lastPingAt = 0;
  private readonly pingSentAt = new Map<number, number>();
  private rttMs: number | undefined;
  private linkUp = true;
  /** The ping that first carried the current link state; the switch knows it once that is answered. */
  private linkPingSeq = 0;
  private linkAcked = true;
  private rxNow = 0;
  private readonly touched: Keypair[] = [];
  private readonly counters = {
    handshakesSent: 0,
    handshakes: 0,
    rekeys: 0,
    handshakeFailures: 0,
    txNotJoined: 0,
    txOversize: 0,
    authFailed: 0,
    replayed: 0,
    unknownIndex: 0,
    malformed: 0,
    cookies: 0,
    ignored: 0,
    /** ENDPOINT_UNKNOWN hints acted on (a ping sent at once). */
    endpointHints: 0,
  };
  private readonly onControl = (kp: Keypair, buf: Buffer, off: number, len: number): void => this.control(kp, buf, off, len);
  private readonly onLongControl = (kp: Keypair, buf: Buffer, off: number, len: number): void => {
    if (kp !== this.current && kp !== this.previous) return;
    const msg = decodeLongControl(buf, off, len);
    if (msg === null) this.counters.malformed++;
    else this.host.longControl?.(msg);
  };

  constructor(
    private readonly host: PortSessionHost,
    /** Where sealed frames go, and the switch's 20-byte address slot (updated in place if it moves). */
    private readonly out: DatagramQueue,
    private readonly switchAddr: Buffer,
    private readonly opts: PortSessionOptions,
  ) {
    this.cookies = new CookieGenerator(opts.switchPublicKey);
    this.rekeyAfterMs = opts.rekeyAfterMs ?? REKEY_AFTER_TIME_MS;
    this.rejectAfterMs = Math.max(opts.rejectAfterMs ?? REJECT_AFTER_TIME_MS, this.rekeyAfterMs);
    this.cipher = opts.cipher ?? DEFAULT_CIPHER;
    this.random = opts.random ?? randomBytes;
    this.monotonic = opts.monotonic ?? (() => performance.now());
    this.indices = new IndexTable(this.random);
    this.extensions = encodeExtensions({
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      ...(opts.pairs === true ? { pairs: true } : {}),
      ...(opts.invite !== undefined ? { invite: opts.invite } : {}),
    });
  }

  get isJoined(): boolean {
    return this.state === 'joined' && this.current !== null;
  }

  /** This port's static public key (base64). */
  get publicKey(): string {
    return encodeKey(publicKeyOf(this.opts.privateKey));
  }

  start(now: number): void {
    if (this.state !== 'idle') return;
    this.state = 'handshaking';
    this.attempt = 0;
    this.initiate(now);
  }

  /**
   * Datagrams slots[from..to) of `batch`, all from the switch's address (the
   * caller filters the rest), at most one window (BATCH_SIZE). Frames are
   * appended to `frames` as views into batch.buf.
   */
  receive(batch: FrameBatch, slots: Uint16Array, from: number, to: number, now: number, frames: MutableFrameBatch): void {
    const { buf, offsets, lengths } = batch;
    this.rxNow = now;
    const touched = this.touched;
    for (let k = from; k < to; k++) {
      const i = slots[k]!;
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (isTransport(buf, off, len)) {
        const kp = this.keypairFor(readReceiverIndex(buf, off));
        if (kp === null) {
          this.counters.unknownIndex++;
          continue;
        }
        if (kp.rxCount === 0) touched.push(kp);
        if (!queueOpen(kp, buf, off, len, i)) this.counters.replayed++;
        continue;
      }
      this.handshakeMessage(buf.subarray(off, off + len), now);
    }
    const counters: OpenCounters = this.counters;
    for (const kp of touched) {
      // A LEAVE opened just before may have retired this keypair.
      if (kp !== this.current && kp !== this.previous) {
        kp.rxCount = 0;
        continue;
      }
      if (openQueued(kp, buf, frames, counters, this.onControl, this.onLongControl) >= 0) this.lastHeard = now;
    }
    touched.length = 0;
  }

  /** Frames from the device to the switch. */
  transmit(batch: FrameBatch): void {
    const kp = this.current;
    if (kp === null || this.state !== 'joined') {
      this.counters.txNotJoined += batch.count;
      return;
    }
    sealInto(kp, batch, this.out, this.switchAddr, this.counters);
  }

  /** A long control message for the switch (CONTROL_DATA); false when not joined (it is dropped). */
  sendLong(payload: Buffer): boolean {
    const kp = this.current;
    if (kp === null || this.state !== 'joined') return false;
    this.host.send(sealOne(kp, payload, MessageType.CONTROL_DATA));
    return true;
  }

  /**
   * The device's link went down or came up: the switch is told at once (and
   * again every LINK_STATE_RETRY_MS until it answers), so it can withdraw or
   * restore this port's MACs.
   */
  setLinkUp(up: boolean, now: number): void {
    if (this.linkUp === up) return;
    this.linkUp = up;
    this.linkAcked = false;
    this.linkPingSeq = 0;
    if (this.isJoined) this.ping(now);
  }

  poll(now: number): void {
    if (this.state === 'idle') return;
    const cur = this.current;
    if (cur !== null && now - cur.createdAt >= this.rejectAfterMs) {
      // Keys too old to use: silence until a handshake completes.
      this.host.debug('session keys expired before a rekey completed; rejoining');
      this.dropKeys();
      this.beginRejoin(now);
    }
    if (this.previous !== null && now - this.previous.createdAt >= this.rejectAfterMs) {
      this.retire(this.previous);
      this.previous = null;
    }
    if (this.state === 'joined' && this.current !== null) {
      if (now - this.lastHeard > this.deadAfterMs()) {
        this.host.event({ type: 'switch-dead', silentMs: now - this.lastHeard });
        this.dropKeys();
        this.beginRejoin(now);
      } else {
        if (now >= this.nextPingAt) this.ping(now);
        if (this.handshake === null && now - this.current.createdAt >= this.rekeyAfterMs) {
          this.attempt = 0;
          this.initiate(now);
        }
      }
    }
    if (this.handshake !== null && now >= this.nextHandshakeAt) this.initiate(now);
  }

  /** Absolute ms of the next poll(), or undefined. */
  nextTimeout(): number | undefined {
    if (this.state === 'idle') return undefined;
    let t = this.nextHandshakeAt;
    if (this.state === 'joined' && this.current !== null) {
      t = Math.min(t, this.nextPingAt, this.lastHeard + this.deadAfterMs() + 1, this.current.createdAt + this.rejectAfterMs);
      if (this.handshake === null) t = Math.min(t, this.current.createdAt + this.rekeyAfterMs);
    }
    return Number.isFinite(t) ? t : undefined;
  }

  /**
   * Pings in a row the switch has not answered: the latest one counts once it
   * has had PING_RETRY_MS to come back. 0 when not joined.
   */
  missedPings(now: number): number {
    if (!this.isJoined || this.unanswered === 0) return 0;
    return now - this.lastPingAt >= PING_RETRY_MS ? this.unanswered : this.unanswered - 1;
  }

  /** When the switch was last heard from (an authenticated datagram; the handshake response counts). */
  get lastHeardAt(): number {
    return this.lastHeard;
  }

  /**
   * The way to the switch changed (another transport): joined, ping now (the
   * authenticated ping moves this port's endpoint at the switch); handshaking,
   * send the initiation now instead of at the end of the backoff.
   */
  kick(now: number): void {
    if (this.state === 'idle') return;
    // Pings lost on the old way say nothing about the new one.
    this.unanswered = 0;
    if (this.isJoined) {
      this.ping(now);
      return;
    }
    this.attempt = 0;
    this.initiate(now);
  }

  /** Ping now unless one is already waiting for its answer (frames went out and nothing came back). */
  pingSoon(now: number): void {
    if (this.isJoined && this.unanswered === 0) this.ping(now);
  }

  /** A UDP_PROBE with sequence `seq` for the current session, or null when not joined. */
  udpProbe(seq: number): Buffer | null {
    const kp = this.current;
    if (kp === null || this.state !== 'joined') return null;
    return encodeUdpProbe(kp.remoteIndex, seq);
  }

  /** Start a new handshake now (an --insecure session cannot move to another transport: the switch pins it to its endpoint). */
  rehandshake(now: number): void {
    if (this.state === 'idle') return;
    this.unanswered = 0;
    this.attempt = 0;
    this.initiate(now);
  }

  /** Say goodbye (if joined) and stop. */
  leave(): void {
    if (this.current !== null) this.sendControl(LEAVE_PAYLOAD);
    this.dropKeys();
    this.dropHandshake();
    this.state = 'idle';
  }

  status(now: number): PortSessionStatus {
    return {
      state: this.state,
      session: this.current ? `${formatIndex(this.current.localIndex)}/${formatIndex(this.current.remoteIndex)}` : '-',
      rttMs: this.rttMs,
      ...(this.lastHandshakeAt > 0 ? { lastHandshakeS: Math.round((now - this.lastHandshakeAt) / 100) / 10 } : {}),
      linkUp: this.linkUp,
      counters: { ...this.counters },
    };
  }

  // ------------------------------------------------------------------ control plane

  private deadAfterMs(): number {
    return DEAD_AFTER_MISSED_KEEPALIVES * this.keepaliveMs + this.keepaliveMs / 2;
  }

  /** An authentic control payload inside transport data. */
  private control(kp: Keypair, buf: Buffer, off: number, len: number): void {
    if (kp !== this.current && kp !== this.previous) return;
    const c = decodeControl(buf, off, len);
    if (c === null) {
      this.counters.malformed++;
      return;
    }
    switch (c.kind) {
      case Control.PING:
        this.sendControl(encodePing(Control.PONG, c.seq));
        return;
      case Control.PONG: {
        if (this.unanswered > 0) {
          this.unanswered = 0;
          // Answered: back from retrying every PING_RETRY_MS to the keepalive interval.
          if (this.linkAcked) this.nextPingAt = this.lastPingAt + this.keepaliveMs;
        }
        const sent = this.pingSentAt.get(c.seq);
        if (sent !== undefined) {
          this.rttMs = Math.round((this.monotonic() - sent) * 1000) / 1000;
          this.pingSentAt.clear();
        }
        if (!this.linkAcked && this.linkPingSeq !== 0 && seqAtLeast(c.seq, this.linkPingSeq)) {
          this.linkAcked = true;
          this.nextPingAt = this.rxNow + this.keepaliveMs;
        }
        return;
      }
      case Control.PARAMS:
        if (c.keepaliveS >= KEEPALIVE_INTERVAL_MIN_S && c.keepaliveS <= KEEPALIVE_INTERVAL_MAX_S) this.keepaliveMs = c.keepaliveS * 1000;
        this.nextPingAt = Math.min(this.nextPingAt, this.rxNow + this.keepaliveMs);
        return;
      case Control.PROBE_ACK:
        this.host.event({ type: 'probe-ack', seq: c.seq });
        return;
      case Control.LEAVE:
        this.host.event({ type: 'left-by-switch' });
        this.dropKeys();
        this.beginRejoin(this.rxNow);
        return;
    }
  }

  /** A datagram that is not transport data: the handshake and the switch's hints. */
  private handshakeMessage(msg: Buffer, now: number): void {
    if (msg.length < 4) {
      this.counters.malformed++;
      return;
    }
    const version = decodeVersionUnsupported(msg);
    if (version !== undefined) {
      this.problem(
        'incompatible-version',
        `incompatible version: the switch speaks protocol ${version.lowest}..${version.highest}, this vport speaks ${PROTOCOL_VERSION}: upgrade one side`,
      );
      return;
    }
    if (msg[0] !== PROTOCOL_VERSION) {
      this.counters.malformed++;
      return;
    }
    const type = msg[1];
    if (type === MessageType.HANDSHAKE_RESPONSE && this.handshake !== null) {
      this.response(msg, now);
      return;
    }
    if (type === MessageType.COOKIE_REPLY && this.handshake !== null) {
      if (this.handshake.consumeCookieReply(msg, now)) this.counters.cookies++;
      else this.counters.ignored++;
      return;
    }
    const refused = decodeHandshakeRefused(msg);
    if (refused !== undefined) {
      // Unauthenticated: it can only make us say something, never change what we do.
      if (this.handshake === null || refused.receiverIndex !== this.handshake.senderIndex) {
        this.counters.ignored++;
        return;
      }
      this.problem(
        INVITE_REFUSALS.has(refused.reason) ? 'invite-refused' : 'refused',
        REFUSED_HINTS[refused.reason] ??
          `the switch refused the handshake: it uses another --cipher than this port's ${this.cipher} (or the initiation was altered on the way)`,
      );
      return;
    }
    if (isEndpointUnknown(msg)) {
      // Unauthenticated: it can only make us ping sooner, at most once a second. The ping moves our endpoint at the switch.
      if (this.isJoined && now - this.lastEndpointHintAt >= HINT_HANDSHAKE_INTERVAL_MS) {
        this.lastEndpointHintAt = now;
        this.counters.endpointHints++;
        this.host.debug('the switch does not know our address (a NAT rebinding?): pinging it from here');
        this.ping(now);
      } else {
        this.counters.ignored++;
      }
      return;
    }
    const unknown = decodeSessionUnknown(msg);
    if (unknown !== undefined) {
      // Unauthenticated: it can only make us handshake sooner, at most once a second.
      if (this.current !== null && unknown === this.current.remoteIndex && this.handshake === null && now - this.lastHintAt >= HINT_HANDSHAKE_INTERVAL_MS) {
        this.lastHintAt = now;
        this.sessionLost = true;
        this.host.debug('the switch does not know our session (restarted?): handshaking again');
        this.attempt = 0;
        this.initiate(now);
      } else {
        this.counters.ignored++;
      }
      return;
    }
    this.counters.malformed++;
  }

  private response(msg: Buffer, now: number): void {
    const res = this.handshake!.consumeResponse(msg);
    if (!res.ok) {
      this.counters.handshakeFailures++;
      if (res.reason === 'decrypt') {
        this.problem('bad-response', "the switch answered but its handshake response does not authenticate: the PSK differs from the switch's (--psk), or the response was tampered with");
      }
      return;
    }
    const kp = new Keypair(res.keys, now, this.cipher);
    if (this.previous !== null) this.retire(this.previous);
    this.previous = this.current;
    this.current = kp;
    this.handshake = null; // its index now belongs to kp
    this.nextHandshakeAt = Infinity;
    this.lastHeard = now;
    this.lastHandshakeAt = now;
    this.silentAttempts = 0;
    this.lastProblem = '';
    this.counters.handshakes++;
    const wasJoined = this.state === 'joined' && this.previous !== null && !this.sessionLost;
    this.sessionLost = false;
    this.state = 'joined';
    // The first message under the new keys confirms them to the switch.
    this.ping(now);
    if (wasJoined) {
      this.counters.rekeys++;
      this.host.event({ type: 'rekeyed', session: formatIndex(kp.localIndex) });
    } else {
      this.everJoined = true;
      this.host.event({ type: 'joined', session: formatIndex(kp.localIndex), attempts: this.attempt });
    }
  }

  /** Report a problem once per kind and message in a retry series. */
  private problem(reason: ProblemReason, message: string): void {
    if (message === this.lastProblem) return;
    this.lastProblem = message;
    this.host.event({ type: 'problem', reason, message });
  }

  private initiate(now: number): void {
    if (this.handshake !== null) {
      this.silentAttempts++;
      if (this.silentAttempts === SILENT_ATTEMPTS_BEFORE_HINT && !this.everJoined && this.lastProblem === '') {
        this.problem(
          'no-answer',
          `no handshake response from the switch after ${this.silentAttempts} attempts: check that --switch-key is the switch's public key (etherlink pubkey on its key file), that this port's key ${this.publicKey} is in the switch's allow file, that both use the same --cipher and that the switch is reachable`,
        );
      }
      this.dropHandshake();
    }
    const senderIndex = this.indices.allocate(true);
    const { message, handshake } = InitiatorHandshake.createInitiation({
      staticPrivateKey: this.opts.privateKey,
      responderPublicKey: this.opts.switchPublicKey,
      senderIndex,
      now,
      cookies: this.cookies,
      prologue: handshakePrologue(this.cipher),
      extensions: this.extensions,
      ...(this.opts.psk ? { psk: this.opts.psk } : {}),
    });
    this.handshake = handshake;
    this.counters.handshakesSent++;
    this.host.send(message);
    this.nextHandshakeAt = now + rejoinBackoffMs(this.attempt++, randomFraction(this.random));
  }

  private ping(now: number): void {
    const seq = (this.pingSeq = (this.pingSeq + 1) >>> 0 || 1);
    this.pingSentAt.set(seq, this.monotonic());
    if (this.pingSentAt.size > PINGS_OUTSTANDING_MAX) this.pingSentAt.delete(this.pingSentAt.keys().next().value!);
    if (!this.linkAcked && this.linkPingSeq === 0) this.linkPingSeq = seq;
    this.sendControl(encodePing(Control.PING, seq, this.linkUp ? 0 : PingFlags.LINK_DOWN));
    this.unanswered++;
    this.lastPingAt = now;
    // Until a PONG comes, ping again soon: missed pings are how a broken transport shows (missedPings).
    this.nextPingAt = now + (this.linkAcked ? Math.min(PING_RETRY_MS, this.keepaliveMs) : LINK_STATE_RETRY_MS);
  }

  private sendControl(payload: Buffer): void {
    if (this.current === null) return;
    this.host.send(sealOne(this.current, payload));
  }

  private beginRejoin(now: number): void {
    this.state = 'handshaking';
    this.unanswered = 0;
    this.attempt = 0;
    this.dropHandshake();
    this.nextPingAt = Infinity;
    // The switch forgets our link state with the session: tell the new one.
    if (!this.linkUp) {
      this.linkAcked = false;
      this.linkPingSeq = 0;
    }
    this.initiate(now);
  }

  private dropHandshake(): void {
    if (this.handshake !== null) this.indices.delete(this.handshake.senderIndex);
    this.handshake = null;
  }

  private dropKeys(): void {
    if (this.current !== null) this.retire(this.current);
    if (this.previous !== null) this.retire(this.previous);
    this.current = this.previous = null;
  }

  private retire(kp: Keypair): void {
    this.indices.delete(kp.localIndex);
    kp.close();
  }

  private keypairFor(index: number): Keypair | null {
    if (this.current !== null && this.current.localIndex === index) return this.current;
    if (this.previous !== null && this.previous.localIndex === index) return this.previous;
    return null;
  }
}

/** seq is `ref` or later, in u32 serial arithmetic. */
function seqAtLeast(seq: number, ref: number): boolean {
  return ((seq - ref) >>> 0) < 0x8000_0000;
}
