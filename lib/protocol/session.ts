// Session state machines of protocol v1, sans-IO: PortSession (the vport side) and
// SwitchSessions (the vswitch's table). Time comes in as ms numbers; what to send comes out as actions.
import { randomFillSync, timingSafeEqual } from 'node:crypto';
import {
  DEAD_AFTER_MISSED_KEEPALIVES,
  JOIN_SIZE,
  KEEPALIVE_INTERVAL_DEFAULT_S,
  KEEPALIVE_INTERVAL_MAX_S,
  KEEPALIVE_INTERVAL_MIN_S,
  MALFORMED_NAMES,
  MAX_SESSIONS_DEFAULT,
  Malformed,
  MessageType,
  NOISY_EVENT_BUDGET_BURST,
  NOISY_EVENT_BUDGET_PER_SECOND,
  NONCE_SIZE,
  NO_INDEX,
  PORT_TIMEOUT_DEFAULT_S,
  PORT_TIMEOUT_MIN_INTERVALS,
  PROTOCOL_VERSION,
  REJECT_REASON_NAMES,
  REJOIN_BACKOFF_INITIAL_MS,
  REJOIN_BACKOFF_JITTER,
  REJOIN_BACKOFF_MAX_MS,
  REPLY_BUDGET_BURST,
  REPLY_BUDGET_PER_SECOND,
  RTT_SMOOTHING,
  RejectReason,
  TOKEN_SIZE,
} from './constants.js';
import {
  decode,
  encodeAccept,
  encodeJoin,
  encodeKeepalive,
  encodeLeave,
  encodeReject,
  encodeVersionUnsupported,
  mayAnswerVersion,
  type JoinMessage,
  type KeepaliveMessage,
  type LeaveMessage,
  type Message,
  type RejectMessage,
  type AcceptMessage,
  type VersionUnsupportedMessage,
} from './wire.js';

// Underlay address slot: 16-byte IPv6 (IPv4 mapped), port BE, 2 zero bytes. native.ts loads the addon lazily, so this import is pure.
import { ADDR_SLOT as ADDR_SLOT_SIZE } from '../io/native.js';

/** Source of randomness; injectable so tests are deterministic. */
export type RandomFill = (out: Uint8Array) => void;

const defaultRandom: RandomFill = (out) => {
  randomFillSync(out);
};

// ---------------------------------------------------------------- shared helpers

/**
 * Token bucket for unsolicited replies and noisy log events: `perSecond`
 * refill, `burst` capacity, time injected. Bounds what a spoofed source can
 * make us send (no reflection) or log (no log flooding).
 */
export class ReplyBudget {
  private tokens: number;
  private last: number | undefined;
  constructor(
    readonly perSecond: number,
    readonly burst: number = perSecond,
  ) {
    this.tokens = burst;
  }
  take(now: number): boolean {
    if (this.last === undefined) this.last = now;
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.perSecond) / 1000);
      this.last = now;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

/**
 * Delay before JOIN number `step`+1 of a series: 500 ms doubling to 10 s,
 * shortened by up to 25 % (r in [0, 1)) so ports that lost the same switch
 * don't come back in lockstep. Jitter only shortens, so the maximum holds.
 */
export function rejoinBackoffMs(step: number, r: number): number {
  const base = Math.min(REJOIN_BACKOFF_MAX_MS, REJOIN_BACKOFF_INITIAL_MS * 2 ** Math.min(step, 30));
  return base * (1 - REJOIN_BACKOFF_JITTER * r);
}

/** "[v6]:port" or "a.b.c.d:port" of a 20-byte address slot (logs only). */
export function formatEndpoint(addr: Uint8Array, off: number = 0): string {
  const port = (addr[off + 16]! << 8) | addr[off + 17]!;
  let mapped = true;
  for (let i = 0; i < 10; i++) if (addr[off + i] !== 0) mapped = false;
  if (mapped && addr[off + 10] === 0xff && addr[off + 11] === 0xff) {
    return `${addr[off + 12]}.${addr[off + 13]}.${addr[off + 14]}.${addr[off + 15]}:${port}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((addr[off + i]! << 8) | addr[off + i + 1]!).toString(16));
  return `[${groups.join(':')}]:${port}`;
}

function randomU32(random: RandomFill, scratch: Uint8Array): number {
  random(scratch);
  return ((scratch[0]! << 24) | (scratch[1]! << 16) | (scratch[2]! << 8) | scratch[3]!) >>> 0;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---------------------------------------------------------------- port side

export type PortState = 'idle' | 'joining' | 'joined' | 'dead';

export type PortEvent =
  | {
      type: 'joined';
      localIndex: number;
      remoteIndex: number;
      keepaliveIntervalMs: number;
      portTimeoutMs: number;
      /** JOINs sent in this series, the successful one included. */
      attempts: number;
    }
  | { type: 'rejected'; reason: number; reasonName: string; text: string }
  | {
      type: 'incompatible-version';
      /** 'peer-refused': the switch told us it can't speak our version; 'we-refused': it sent a version we can't. */
      direction: 'peer-refused' | 'we-refused';
      peerVersion: number;
      /** The switch's supported range when it told us (peer-refused). */
      peerLowest?: number;
      peerHighest?: number;
    }
  | { type: 'switch-dead'; missedKeepalives: number; silentMs: number }
  | { type: 'left'; by: 'port' | 'switch' };

export type PortAction = { kind: 'send'; datagram: Buffer } | { kind: 'event'; event: PortEvent };

export interface PortCounters {
  joinsSent: number;
  keepalivesSent: number;
  keepaliveAnswers: number;
  malformed: number;
  badVersion: number;
  /** Valid datagrams that don't fit our state or session (stale ACCEPT, wrong index or token...). */
  ignored: number;
  /** DATA handed to onDatagram: it belongs on the caller's hot path. */
  dataOnControlPath: number;
  repliesSuppressed: number;
}

export interface PortSessionOptions {
  /** For the switch's logs: at most 32 bytes of UTF-8, no control characters. */
  name: string;
  /** The TAP's unicast MAC, announced in JOIN. */
  mac: Uint8Array;
  random?: RandomFill;
}

/**
 * The vport's view of its session with the switch. The caller owns the socket
 * and one timer: feed it datagrams from the switch's address (onDatagram),
 * call poll() at nextTimeout(), send what comes back. DATA never comes here:
 * the hot path writes headers with remoteIndex and nextTxCounter(), and
 * accepts received DATA whose receiver index is localIndex.
 */
export class PortSession {
  state: PortState = 'idle';
  /** Our index for the current session (what the switch puts in DATA to us); 0 when idle. */
  localIndex = NO_INDEX;
  /** The switch's index (what we put in DATA we send); 0 unless joined. */
  remoteIndex = NO_INDEX;
  /** Random per PortSession: lets the switch tell our JOIN retries from a restarted port. */
  readonly nonce: Buffer;
  token: Buffer | undefined;
  keepaliveIntervalMs = KEEPALIVE_INTERVAL_DEFAULT_S * 1000;
  portTimeoutMs = PORT_TIMEOUT_DEFAULT_S * 1000;
  /** Latest, smoothed and minimum keepalive round trip; undefined until one is measured. */
  rttMs: number | undefined;
  srttMs: number | undefined;
  minRttMs: number | undefined;
  readonly counters: PortCounters = {
    joinsSent: 0,
    keepalivesSent: 0,
    keepaliveAnswers: 0,
    malformed: 0,
    badVersion: 0,
    ignored: 0,
    dataOnControlPath: 0,
    repliesSuppressed: 0,
  };

  private readonly name: string;
  private readonly mac: Buffer;
  private readonly random: RandomFill;
  private readonly scratch = new Uint8Array(4);
  private readonly replyBudget = new ReplyBudget(REPLY_BUDGET_PER_SECOND, REPLY_BUDGET_BURST);
  private readonly eventBudget = new ReplyBudget(NOISY_EVENT_BUDGET_PER_SECOND, NOISY_EVENT_BUDGET_BURST);
  private txCounter = 0;
  /** Delays used so far in the current JOIN series (index into the backoff schedule). */
  private backoffStep = 0;
  private joinsInSeries = 0;
  private nextJoinAt = 0;
  private nextKeepaliveAt = 0;
  private unanswered = 0;
  private lastHeardAt = 0;
  private echoSeq = 0;
  // Outstanding keepalives, slot = seq % size: enough for all that may be unanswered before "dead".
  private readonly echoSeqs = new Uint32Array(DEAD_AFTER_MISSED_KEEPALIVES + 1);
  private readonly echoSentAt = new Float64Array(DEAD_AFTER_MISSED_KEEPALIVES + 1).fill(-1);

  constructor(opts: PortSessionOptions) {
    this.name = opts.name;
    this.mac = Buffer.from(opts.mac);
    this.random = opts.random ?? defaultRandom;
    this.nonce = Buffer.alloc(NONCE_SIZE);
    this.random(this.nonce);
    // Fail now, at configuration time, rather than at the first JOIN.
    encodeJoin({ senderIndex: 1, nonce: this.nonce, mac: this.mac, name: this.name });
  }

  get isJoined(): boolean {
    return this.state === 'joined';
  }

  /** Counter for the next DATA we send; per session, starts at 0. */
  nextTxCounter(): number {
    return this.txCounter++;
  }

  /** Begin joining: the first JOIN goes out now. No-op unless idle. */
  start(now: number): PortAction[] {
    if (this.state !== 'idle') return [];
    this.beginSeries();
    const out: PortAction[] = [];
    this.sendJoin(now, out);
    return out;
  }

  /** Absolute time (ms) of the next thing poll() has to do; undefined when idle. */
  nextTimeout(): number | undefined {
    switch (this.state) {
      case 'idle':
        return undefined;
      case 'joining':
      case 'dead':
        return this.nextJoinAt;
      case 'joined':
        return this.nextKeepaliveAt;
    }
  }

  /** Run timers that are due: JOIN retries and rejoins, keepalives, dead-switch detection. */
  poll(now: number): PortAction[] {
    const out: PortAction[] = [];
    if ((this.state === 'joining' || this.state === 'dead') && now >= this.nextJoinAt) {
      this.state = 'joining';
      this.sendJoin(now, out);
    } else if (this.state === 'joined' && now >= this.nextKeepaliveAt) {
      if (this.unanswered >= DEAD_AFTER_MISSED_KEEPALIVES) {
        out.push({
          kind: 'event',
          event: { type: 'switch-dead', missedKeepalives: this.unanswered, silentMs: now - this.lastHeardAt },
        });
        this.enterDead(now);
      } else {
        this.sendKeepalive(now, out);
      }
    }
    return out;
  }

  /** Leave: a LEAVE if joined, then idle. start() may be called again later. */
  leave(_now: number): PortAction[] {
    const out: PortAction[] = [];
    if (this.state === 'joined' && this.token) {
      out.push({ kind: 'send', datagram: encodeLeave({ receiverIndex: this.remoteIndex, token: this.token }) });
      out.push({ kind: 'event', event: { type: 'left', by: 'port' } });
    }
    this.resetSession();
    this.state = 'idle';
    this.localIndex = NO_INDEX;
    return out;
  }

  /** A datagram from the switch's address. Never throws on bad input. */
  onDatagram(buf: Uint8Array, off: number, len: number, now: number): PortAction[] {
    const out: PortAction[] = [];
    const result = decode(buf, off, len);
    if (!result.ok) {
      if (result.error === Malformed.BAD_VERSION) this.onBadVersion(buf, off, len, now, out);
      else this.counters.malformed++;
      return out;
    }
    const m: Message = result.message;
    switch (m.type) {
      case MessageType.ACCEPT:
        this.onAccept(m, now, out);
        break;
      case MessageType.REJECT:
        this.onReject(m, now, out);
        break;
      case MessageType.KEEPALIVE:
        this.onKeepalive(m, now);
        break;
      case MessageType.LEAVE:
        this.onLeave(m, now, out);
        break;
      case MessageType.VERSION_UNSUPPORTED:
        this.onVersionUnsupported(m, now, out);
        break;
      case MessageType.DATA:
        this.counters.dataOnControlPath++;
        break;
      default:
        this.counters.ignored++; // JOIN: only the switch takes those
    }
    return out;
  }

  private onAccept(m: AcceptMessage, now: number, out: PortAction[]): void {
    if (this.state !== 'joining' || m.receiverIndex !== this.localIndex) {
      this.counters.ignored++; // a duplicate ACCEPT for a JOIN retry, or a stale one
      return;
    }
    const intervalS = Math.min(KEEPALIVE_INTERVAL_MAX_S, Math.max(KEEPALIVE_INTERVAL_MIN_S, m.keepaliveIntervalS));
    this.state = 'joined';
    this.remoteIndex = m.senderIndex;
    this.token = m.token;
    this.keepaliveIntervalMs = intervalS * 1000;
    this.portTimeoutMs = m.portTimeoutS * 1000;
    this.txCounter = 0;
    this.unanswered = 0;
    this.lastHeardAt = now;
    this.nextKeepaliveAt = now + this.keepaliveIntervalMs;
    const attempts = this.joinsInSeries;
    this.backoffStep = 0;
    this.joinsInSeries = 0;
    out.push({
      kind: 'event',
      event: {
        type: 'joined',
        localIndex: this.localIndex,
        remoteIndex: this.remoteIndex,
        keepaliveIntervalMs: this.keepaliveIntervalMs,
        portTimeoutMs: this.portTimeoutMs,
        attempts,
      },
    });
  }

  private onReject(m: RejectMessage, now: number, out: PortAction[]): void {
    const event: PortEvent = {
      type: 'rejected',
      reason: m.reason,
      reasonName: REJECT_REASON_NAMES[m.reason] ?? `reason(${m.reason})`,
      text: m.text,
    };
    if (this.state === 'joining' && m.index === this.localIndex) {
      // The switch is alive but refused: keep the backoff schedule already running.
      out.push({ kind: 'event', event });
      return;
    }
    if (this.state === 'joined' && m.reason === RejectReason.UNKNOWN_SESSION && m.index === this.remoteIndex) {
      // The switch forgot us (it restarted): rejoin now instead of waiting for dead-switch detection.
      out.push({ kind: 'event', event });
      this.resetSession();
      this.beginSeries();
      this.sendJoin(now, out);
      return;
    }
    this.counters.ignored++;
  }

  private onKeepalive(m: KeepaliveMessage, now: number): void {
    if (this.state !== 'joined' || m.receiverIndex !== this.localIndex || !this.token || !sameBytes(m.token, this.token)) {
      this.counters.ignored++;
      return;
    }
    this.counters.keepaliveAnswers++;
    this.unanswered = 0;
    this.lastHeardAt = now;
    const slot = m.echo % this.echoSeqs.length;
    const sentAt = this.echoSentAt[slot]!;
    if (this.echoSeqs[slot] !== m.echo || sentAt < 0) return; // too old or never sent: liveness only
    this.echoSentAt[slot] = -1;
    const sample = now - sentAt;
    this.rttMs = sample;
    this.srttMs = this.srttMs === undefined ? sample : this.srttMs + RTT_SMOOTHING * (sample - this.srttMs);
    this.minRttMs = this.minRttMs === undefined ? sample : Math.min(this.minRttMs, sample);
  }

  private onLeave(m: LeaveMessage, now: number, out: PortAction[]): void {
    if (this.state !== 'joined' || m.receiverIndex !== this.localIndex || !this.token || !sameBytes(m.token, this.token)) {
      this.counters.ignored++;
      return;
    }
    // The switch is shutting down: it may come back, so rejoin with backoff.
    out.push({ kind: 'event', event: { type: 'left', by: 'switch' } });
    this.enterDead(now);
  }

  private onVersionUnsupported(m: VersionUnsupportedMessage, now: number, out: PortAction[]): void {
    if (PROTOCOL_VERSION >= m.lowest && PROTOCOL_VERSION <= m.highest) {
      this.counters.ignored++; // claims not to speak a version it lists: bogus
      return;
    }
    if (this.state === 'joining' || this.state === 'dead') {
      // Retrying fast is pointless until someone upgrades a side: go to the slowest pace.
      this.backoffStep = Math.max(this.backoffStep, 30);
      this.nextJoinAt = Math.max(this.nextJoinAt, now + REJOIN_BACKOFF_MAX_MS);
    }
    if (this.eventBudget.take(now)) {
      out.push({
        kind: 'event',
        event: {
          type: 'incompatible-version',
          direction: 'peer-refused',
          peerVersion: m.senderVersion,
          peerLowest: m.lowest,
          peerHighest: m.highest,
        },
      });
    }
  }

  private onBadVersion(buf: Uint8Array, off: number, len: number, now: number, out: PortAction[]): void {
    this.counters.badVersion++;
    if (mayAnswerVersion(buf, off, len)) {
      if (this.replyBudget.take(now)) out.push({ kind: 'send', datagram: encodeVersionUnsupported() });
      else this.counters.repliesSuppressed++;
    }
    if (this.eventBudget.take(now)) {
      out.push({ kind: 'event', event: { type: 'incompatible-version', direction: 'we-refused', peerVersion: buf[off]! } });
    }
  }

  private beginSeries(): void {
    this.localIndex = this.freshIndex();
    this.backoffStep = 0;
    this.joinsInSeries = 0;
  }

  private sendJoin(now: number, out: PortAction[]): void {
    this.state = 'joining';
    out.push({
      kind: 'send',
      datagram: encodeJoin({ senderIndex: this.localIndex, nonce: this.nonce, mac: this.mac, name: this.name }),
    });
    this.counters.joinsSent++;
    this.joinsInSeries++;
    this.scheduleJoin(now);
  }

  private scheduleJoin(now: number): void {
    this.nextJoinAt = now + rejoinBackoffMs(this.backoffStep++, randomU32(this.random, this.scratch) / 0x1_0000_0000);
  }

  private sendKeepalive(now: number, out: PortAction[]): void {
    const seq = (this.echoSeq = (this.echoSeq + 1) >>> 0);
    const slot = seq % this.echoSeqs.length;
    this.echoSeqs[slot] = seq;
    this.echoSentAt[slot] = now;
    out.push({ kind: 'send', datagram: encodeKeepalive({ receiverIndex: this.remoteIndex, token: this.token!, echo: seq }) });
    this.counters.keepalivesSent++;
    this.unanswered++;
    // From now, not from the old deadline: after a long stall (laptop sleep) we send one, not a burst.
    this.nextKeepaliveAt = now + this.keepaliveIntervalMs;
  }

  /** Abandon the session; the first rejoin JOIN goes out after the first backoff delay. */
  private enterDead(now: number): void {
    this.resetSession();
    this.beginSeries();
    this.state = 'dead';
    this.scheduleJoin(now);
  }

  private resetSession(): void {
    this.remoteIndex = NO_INDEX;
    this.token = undefined;
    this.txCounter = 0;
    this.unanswered = 0;
    this.echoSentAt.fill(-1);
  }

  private freshIndex(): number {
    let index: number;
    do index = randomU32(this.random, this.scratch);
    while (index === NO_INDEX || index === this.localIndex); // a new session never reuses the old index
    return index;
  }
}

// ---------------------------------------------------------------- switch side

/** One joined port as the switch sees it. */
export class SwitchSession {
  /** Where DATA to this port goes; updated in place when the port roams. */
  readonly endpoint: Buffer;
  lastSeen: number;
  private txCounter = 0;
  constructor(
    /** The switch's index: DATA/KEEPALIVE/LEAVE from the port carry it. */
    readonly localIndex: number,
    /** The port's index: what the switch puts in DATA/KEEPALIVE/LEAVE it sends. */
    readonly remoteIndex: number,
    readonly token: Buffer,
    readonly portNonce: Buffer,
    endpoint: Uint8Array,
    readonly name: string,
    readonly mac: Buffer,
    readonly joinedAt: number,
  ) {
    this.endpoint = Buffer.from(endpoint);
    this.lastSeen = joinedAt;
  }
  /** Counter for the next DATA the switch sends to this port; starts at 0. */
  nextTxCounter(): number {
    return this.txCounter++;
  }
}

export type LeftReason =
  /** The port sent LEAVE. */
  | 'leave'
  /** A JOIN with a new nonce came from this session's address: the port process restarted. */
  | 'port-restarted'
  /** The same port (nonce) joined again with a new index: it gave up on this session. */
  | 'port-rejoined'
  /** Another session roamed onto this session's address, which must therefore be stale. */
  | 'endpoint-taken'
  /** leaveAll(): the switch is shutting down. */
  | 'switch-shutdown';

export type SwitchEvent =
  | { type: 'joined'; session: SwitchSession }
  | { type: 'left'; session: SwitchSession; reason: LeftReason }
  | { type: 'roamed'; session: SwitchSession; from: Buffer }
  | { type: 'timeout'; session: SwitchSession; silentMs: number }
  | { type: 'rejected'; to: Buffer; reason: number; reasonName: string }
  | {
      type: 'incompatible-version';
      from: Buffer;
      direction: 'peer-refused' | 'we-refused';
      peerVersion: number;
      peerLowest?: number;
      peerHighest?: number;
    }
  | { type: 'malformed'; from: Buffer; code: number; reason: string };

export type SwitchAction =
  | { kind: 'send'; datagram: Buffer; /** 20-byte address slot (a copy). */ to: Buffer }
  | { kind: 'event'; event: SwitchEvent };

export interface SwitchCounters {
  joins: number;
  /** JOIN retransmits answered with the same ACCEPT (the first one was lost). */
  duplicateJoins: number;
  leaves: number;
  timeouts: number;
  roams: number;
  replaced: number;
  rejectedFull: number;
  keepalives: number;
  /** DATA naming an index we don't know (answered with REJECT unknown-session within budget). */
  dataUnknownIndex: number;
  /** DATA for a known index from another address: dropped, v1 can't authenticate a move. */
  dataWrongEndpoint: number;
  /** DATA for a good session given to handleControl: the caller should use the hot path. */
  dataOnControlPath: number;
  controlUnknownIndex: number;
  badToken: number;
  badVersion: number;
  versionUnsupportedReceived: number;
  /** ACCEPT/REJECT sent to the switch: only ports take those. */
  unexpectedType: number;
  rejectsSent: number;
  versionUnsupportedSent: number;
  repliesSuppressed: number;
  malformed: number;
  /** By classify reason name (too-short, bad-version, ...). */
  malformedBy: Record<string, number>;
}

export interface SwitchSessionsOptions {
  maxSessions?: number;
  keepaliveIntervalS?: number;
  portTimeoutS?: number;
  random?: RandomFill;
}

/**
 * The vswitch's table of port sessions, keyed by the switch's index. Control
 * datagrams go through handleControl; DATA takes the hot path:
 *
 *   if (classify(buf, off, len) === MessageType.DATA) {
 *     const s = sessions.sessionForData(readReceiverIndex(buf, off, len));
 *     if (s && sessions.endpointMatches(s, addrs, addrOff)) { sessions.touch(s, now); forward...; continue; }
 *   }
 *   act(sessions.handleControl(buf, off, len, addrs, addrOff, now)); // DATA misses too
 *
 * and a timer calls sweep(now) every SWITCH_SWEEP_INTERVAL_MS.
 */
export class SwitchSessions {
  readonly maxSessions: number;
  readonly keepaliveIntervalS: number;
  readonly portTimeoutS: number;
  readonly counters: SwitchCounters = {
    joins: 0,
    duplicateJoins: 0,
    leaves: 0,
    timeouts: 0,
    roams: 0,
    replaced: 0,
    rejectedFull: 0,
    keepalives: 0,
    dataUnknownIndex: 0,
    dataWrongEndpoint: 0,
    dataOnControlPath: 0,
    controlUnknownIndex: 0,
    badToken: 0,
    badVersion: 0,
    versionUnsupportedReceived: 0,
    unexpectedType: 0,
    rejectsSent: 0,
    versionUnsupportedSent: 0,
    repliesSuppressed: 0,
    malformed: 0,
    malformedBy: {},
  };

  private readonly byIndex = new Map<number, SwitchSession>();
  private readonly byNonce = new Map<string, SwitchSession>();
  private readonly byEndpoint = new Map<string, SwitchSession>();
  private readonly random: RandomFill;
  private readonly scratch = new Uint8Array(4);
  private readonly replyBudget = new ReplyBudget(REPLY_BUDGET_PER_SECOND, REPLY_BUDGET_BURST);
  private readonly eventBudget = new ReplyBudget(NOISY_EVENT_BUDGET_PER_SECOND, NOISY_EVENT_BUDGET_BURST);

  constructor(opts: SwitchSessionsOptions = {}) {
    this.maxSessions = opts.maxSessions ?? MAX_SESSIONS_DEFAULT;
    this.keepaliveIntervalS = opts.keepaliveIntervalS ?? KEEPALIVE_INTERVAL_DEFAULT_S;
    this.portTimeoutS = opts.portTimeoutS ?? PORT_TIMEOUT_DEFAULT_S;
    this.random = opts.random ?? defaultRandom;
    if (!Number.isInteger(this.maxSessions) || this.maxSessions < 1) throw new RangeError('maxSessions must be a positive integer');
    if (
      !Number.isInteger(this.keepaliveIntervalS) ||
      this.keepaliveIntervalS < KEEPALIVE_INTERVAL_MIN_S ||
      this.keepaliveIntervalS > KEEPALIVE_INTERVAL_MAX_S
    ) {
      throw new RangeError(`keepaliveIntervalS must be an integer in ${KEEPALIVE_INTERVAL_MIN_S}..${KEEPALIVE_INTERVAL_MAX_S}`);
    }
    if (
      !Number.isInteger(this.portTimeoutS) ||
      this.portTimeoutS > 0xffff ||
      this.portTimeoutS < this.keepaliveIntervalS * PORT_TIMEOUT_MIN_INTERVALS
    ) {
      throw new RangeError(
        `portTimeoutS must be an integer of at least ${PORT_TIMEOUT_MIN_INTERVALS} keepalive intervals and at most 65535`,
      );
    }
  }

  get size(): number {
    return this.byIndex.size;
  }

  sessions(): IterableIterator<SwitchSession> {
    return this.byIndex.values();
  }

  /** Hot path: the session a DATA receiver index names, or undefined. No allocation. */
  sessionForData(index: number): SwitchSession | undefined {
    return this.byIndex.get(index);
  }

  /** Hot path: whether addr[addrOff .. +20) is the session's endpoint. No allocation. */
  endpointMatches(session: SwitchSession, addr: Uint8Array, addrOff: number): boolean {
    const ep = session.endpoint;
    for (let i = 0; i < ADDR_SLOT_SIZE; i++) if (ep[i] !== addr[addrOff + i]) return false;
    return true;
  }

  /** Hot path: the port is alive (valid DATA from its endpoint). */
  touch(session: SwitchSession, now: number): void {
    session.lastSeen = now;
  }

  /**
   * Everything but hot-path DATA: control messages, malformed datagrams, and
   * DATA the hot path did not accept. Never throws on bad input.
   */
  handleControl(buf: Uint8Array, off: number, len: number, addr: Uint8Array, addrOff: number, now: number): SwitchAction[] {
    const out: SwitchAction[] = [];
    const from = Buffer.from(addr.subarray(addrOff, addrOff + ADDR_SLOT_SIZE));
    const result = decode(buf, off, len);
    if (!result.ok) {
      this.onMalformed(result.error, buf, off, len, from, now, out);
      return out;
    }
    const m = result.message;
    switch (m.type) {
      case MessageType.JOIN:
        this.onJoin(m, from, now, out);
        break;
      case MessageType.KEEPALIVE:
        this.onKeepalive(m, len, from, now, out);
        break;
      case MessageType.LEAVE:
        this.onLeave(m, out);
        break;
      case MessageType.DATA: {
        const session = this.byIndex.get(m.receiverIndex);
        if (!session) {
          this.counters.dataUnknownIndex++;
          this.rejectUnknown(m.receiverIndex, len, from, now, out);
        } else if (!this.endpointMatches(session, from, 0)) {
          this.counters.dataWrongEndpoint++;
        } else {
          this.counters.dataOnControlPath++;
        }
        break;
      }
      case MessageType.VERSION_UNSUPPORTED:
        this.counters.versionUnsupportedReceived++;
        if (PROTOCOL_VERSION < m.lowest || PROTOCOL_VERSION > m.highest) {
          if (this.eventBudget.take(now)) {
            out.push({
              kind: 'event',
              event: {
                type: 'incompatible-version',
                from,
                direction: 'peer-refused',
                peerVersion: m.senderVersion,
                peerLowest: m.lowest,
                peerHighest: m.highest,
              },
            });
          }
        }
        break;
      default:
        this.counters.unexpectedType++;
    }
    return out;
  }

  /** Expire sessions silent for longer than the port timeout. */
  sweep(now: number): SwitchAction[] {
    const out: SwitchAction[] = [];
    const timeoutMs = this.portTimeoutS * 1000;
    for (const session of this.byIndex.values()) {
      const silentMs = now - session.lastSeen;
      if (silentMs > timeoutMs) {
        this.remove(session);
        this.counters.timeouts++;
        out.push({ kind: 'event', event: { type: 'timeout', session, silentMs } });
      }
    }
    return out;
  }

  /** Shutting down: a LEAVE to every port (so they rejoin with backoff, not after timeouts), table emptied. */
  leaveAll(_now: number): SwitchAction[] {
    const out: SwitchAction[] = [];
    for (const session of [...this.byIndex.values()]) {
      out.push({
        kind: 'send',
        datagram: encodeLeave({ receiverIndex: session.remoteIndex, token: session.token }),
        to: Buffer.from(session.endpoint),
      });
      this.remove(session);
      out.push({ kind: 'event', event: { type: 'left', session, reason: 'switch-shutdown' } });
    }
    return out;
  }

  private onJoin(m: JoinMessage, from: Buffer, now: number, out: SwitchAction[]): void {
    const nonceKey = m.nonce.toString('hex');
    const same = this.byNonce.get(nonceKey);
    if (same && same.remoteIndex === m.senderIndex) {
      // Retransmitted JOIN: our ACCEPT was lost. Same index and token again (idempotent).
      this.counters.duplicateJoins++;
      if (!this.endpointMatches(same, from, 0)) this.roam(same, from, out);
      same.lastSeen = now;
      out.push({ kind: 'send', datagram: this.acceptFor(same), to: from });
      return;
    }
    if (same) this.replace(same, 'port-rejoined', out);
    const atEndpoint = this.byEndpoint.get(from.toString('hex'));
    if (atEndpoint) this.replace(atEndpoint, 'port-restarted', out);
    if (this.byIndex.size >= this.maxSessions) {
      this.counters.rejectedFull++;
      this.sendReject(m.senderIndex, RejectReason.SWITCH_FULL, 'session table full', JOIN_SIZE, from, now, out);
      return;
    }
    const token = Buffer.alloc(TOKEN_SIZE);
    this.random(token);
    const session = new SwitchSession(this.freshIndex(), m.senderIndex, token, m.nonce, from, m.name, m.mac, now);
    this.byIndex.set(session.localIndex, session);
    this.byNonce.set(nonceKey, session);
    this.byEndpoint.set(from.toString('hex'), session);
    this.counters.joins++;
    out.push({ kind: 'event', event: { type: 'joined', session } });
    out.push({ kind: 'send', datagram: this.acceptFor(session), to: from });
  }

  private onKeepalive(m: KeepaliveMessage, len: number, from: Buffer, now: number, out: SwitchAction[]): void {
    const session = this.byIndex.get(m.receiverIndex);
    if (!session) {
      this.counters.controlUnknownIndex++;
      this.rejectUnknown(m.receiverIndex, len, from, now, out);
      return;
    }
    if (!sameBytes(m.token, session.token)) {
      this.counters.badToken++;
      return;
    }
    this.counters.keepalives++;
    // The token proves (weakly, in v1) this is the port: follow it to its new address.
    if (!this.endpointMatches(session, from, 0)) this.roam(session, from, out);
    session.lastSeen = now;
    out.push({
      kind: 'send',
      datagram: encodeKeepalive({ receiverIndex: session.remoteIndex, token: session.token, echo: m.echo }),
      to: Buffer.from(session.endpoint),
    });
  }

  private onLeave(m: LeaveMessage, out: SwitchAction[]): void {
    const session = this.byIndex.get(m.receiverIndex);
    if (!session) {
      this.counters.controlUnknownIndex++; // no reply: the port is going away anyway
      return;
    }
    if (!sameBytes(m.token, session.token)) {
      this.counters.badToken++;
      return;
    }
    this.remove(session);
    this.counters.leaves++;
    out.push({ kind: 'event', event: { type: 'left', session, reason: 'leave' } });
  }

  private onMalformed(code: Malformed, buf: Uint8Array, off: number, len: number, from: Buffer, now: number, out: SwitchAction[]): void {
    const reason = MALFORMED_NAMES[code] ?? 'malformed';
    if (code === Malformed.BAD_VERSION) {
      this.counters.badVersion++;
      if (mayAnswerVersion(buf, off, len)) {
        if (this.replyBudget.take(now)) {
          this.counters.versionUnsupportedSent++;
          out.push({ kind: 'send', datagram: encodeVersionUnsupported(), to: from });
        } else {
          this.counters.repliesSuppressed++;
        }
      }
      if (this.eventBudget.take(now)) {
        out.push({ kind: 'event', event: { type: 'incompatible-version', from, direction: 'we-refused', peerVersion: buf[off]! } });
      }
      return;
    }
    this.counters.malformed++;
    this.counters.malformedBy[reason] = (this.counters.malformedBy[reason] ?? 0) + 1;
    if (this.eventBudget.take(now)) out.push({ kind: 'event', event: { type: 'malformed', from, code, reason } });
  }

  /** REJECT unknown-session: makes a port whose switch restarted rejoin at once. Budgeted, never larger than the trigger. */
  private rejectUnknown(index: number, triggerLen: number, from: Buffer, now: number, out: SwitchAction[]): void {
    this.sendReject(index, RejectReason.UNKNOWN_SESSION, 'unknown session', triggerLen, from, now, out);
  }

  private sendReject(
    index: number,
    reason: RejectReason,
    text: string,
    /** Size of the datagram being answered: the REJECT is cut to fit it. */
    triggerLen: number,
    from: Buffer,
    now: number,
    out: SwitchAction[],
  ): void {
    if (!this.replyBudget.take(now)) {
      this.counters.repliesSuppressed++;
      return;
    }
    this.counters.rejectsSent++;
    out.push({ kind: 'send', datagram: encodeReject({ index, reason, text }, triggerLen), to: from });
    out.push({ kind: 'event', event: { type: 'rejected', to: from, reason, reasonName: REJECT_REASON_NAMES[reason] ?? 'unknown' } });
  }

  private acceptFor(session: SwitchSession): Buffer {
    return encodeAccept({
      senderIndex: session.localIndex,
      receiverIndex: session.remoteIndex,
      token: session.token,
      keepaliveIntervalS: this.keepaliveIntervalS,
      portTimeoutS: this.portTimeoutS,
    });
  }

  private roam(session: SwitchSession, to: Buffer, out: SwitchAction[]): void {
    const previous = Buffer.from(session.endpoint);
    const toKey = to.toString('hex');
    const occupant = this.byEndpoint.get(toKey);
    if (occupant && occupant !== session) this.replace(occupant, 'endpoint-taken', out);
    if (this.byEndpoint.get(previous.toString('hex')) === session) this.byEndpoint.delete(previous.toString('hex'));
    to.copy(session.endpoint, 0, 0, ADDR_SLOT_SIZE);
    this.byEndpoint.set(toKey, session);
    this.counters.roams++;
    out.push({ kind: 'event', event: { type: 'roamed', session, from: previous } });
  }

  private replace(session: SwitchSession, reason: LeftReason, out: SwitchAction[]): void {
    this.remove(session);
    this.counters.replaced++;
    out.push({ kind: 'event', event: { type: 'left', session, reason } });
  }

  private remove(session: SwitchSession): void {
    this.byIndex.delete(session.localIndex);
    const nonceKey = session.portNonce.toString('hex');
    if (this.byNonce.get(nonceKey) === session) this.byNonce.delete(nonceKey);
    const endpointKey = session.endpoint.toString('hex');
    if (this.byEndpoint.get(endpointKey) === session) this.byEndpoint.delete(endpointKey);
  }

  private freshIndex(): number {
    let index: number;
    do index = randomU32(this.random, this.scratch);
    while (index === NO_INDEX || this.byIndex.has(index));
    return index;
  }
}
