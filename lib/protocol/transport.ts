// Which way a port's datagrams to its switch go — UDP, or a stream (TCP,
// WebSocket) when UDP is blocked — and when to move back. Sans-IO: time and
// what the session knows come in as arguments; the host opens and closes
// streams and sends the UDP probes. The timers are in constants.ts and
// docs/PROTOCOL.md ("Streams").
import {
  STREAM_LINGER_MS,
  STREAM_RETRY_INITIAL_MS,
  STREAM_RETRY_MAX_MS,
  STREAM_CONNECT_TIMEOUT_MS,
  TRANSPORT_MISSED_PINGS,
  UDP_HANDSHAKE_FALLBACK_MS,
  UDP_PROBE_INTERVAL_MS,
  UDP_PROBE_TIMEOUT_MS,
  UDP_STABLE_MS,
  UDP_STABLE_PROBES,
} from './constants.js';

/** A way to the switch. */
export type TransportKind = 'udp' | 'tcp' | 'ws';
/** The stream kinds. */
export type StreamKind = Exclude<TransportKind, 'udp'>;
/** `--transport`: auto (UDP first, then the streams, and back), or one kind only. */
export type TransportMode = 'auto' | TransportKind;
/** The values of `--transport`. */
export const TRANSPORT_MODES: readonly TransportMode[] = ['auto', 'udp', 'tcp', 'ws'];

/** What the policy asks of the client. */
export interface TransportHost {
  /** Open a stream of this kind (the policy has closed any other first). streamUp/streamDown report how it went. */
  connect(kind: StreamKind): void;
  /** Close the open stream (the policy forgets it at once; no streamDown follows). */
  closeStream(reason: string): void;
  /** Send UDP_PROBE `seq` over UDP (answered by probeAck). */
  probeUdp(seq: number): void;
  /** Datagrams to the switch now go over `to`: the session should make itself heard on it (ping, or handshake). */
  switched(from: TransportKind, to: TransportKind, reason: string): void;
}

/** What the policy may use: the mode, and which transports the switch has an address for. */
export interface TransportPolicyOptions {
  mode: TransportMode;
  /** Whether the switch has a UDP address (HOST PORT); a ws:// address alone has none. */
  udp: boolean;
  /** Whether it has a TCP one (the same HOST PORT) and a WebSocket URL. */
  tcp: boolean;
  ws: boolean;
}

/** What the session knows, at each tick. */
export interface SessionView {
  joined: boolean;
  /** Pings in a row the switch has not answered (PortSession.missedPings). */
  missedPings: number;
  /** When the switch was last heard from, over any transport (PortSession.lastHeardAt; default 0). */
  lastHeardAt?: number;
}

/** The transport at one instant, for status. */
export interface TransportStatus {
  mode: TransportMode;
  /** What datagrams to the switch go over now. */
  current: TransportKind;
  /** Why (e.g. "tcp: no UDP answer to the handshake for 3.0 s"). */
  reason: string;
  /** Since when (ms, the clock of the ticks). */
  since: number;
  /** A stream being opened or open, if any. */
  stream?: { kind: StreamKind; state: 'connecting' | 'up' };
  /** While on a stream: UDP probes answered in a row, and for how long. */
  udpStableMs?: number;
  /** Moves between transports so far. */
  switches: number;
}

/** Decides the transport to the switch: see the file comment. */
export class TransportPolicy {
  private readonly candidates: TransportKind[];
  /** Index in candidates of what is being tried (or used). */
  private index = 0;
  private current: TransportKind;
  private reason: string;
  private since = 0;
  private switches = 0;
  /** When the present target began: a handshake unanswered for long on it means it does not work. */
  private targetSince = 0;
  private stream: { kind: StreamKind; state: 'connecting' | 'up'; since: number; joinedOnIt: boolean } | null = null;
  private readonly nextAttemptAt = new Map<StreamKind, number>();
  private readonly retryDelay = new Map<StreamKind, number>();
  /** Back on UDP after a stream: close it at this time. */
  private lingerUntil = Infinity;
  private nextProbeAt = 0;
  private probeSeq = 0;
  private readonly probes = new Map<number, number>();
  private stableSince: number | null = null;
  private stableCount = 0;
  private started = false;
  /** Since when the session has not been joined (0: it is joined). */
  private unjoinedSince = 0;
  /** When the last stream went away: only what is heard after it came over UDP. */
  private streamGoneAt = 0;

  constructor(
    private readonly host: TransportHost,
    private readonly opts: TransportPolicyOptions,
  ) {
    const all: TransportKind[] = opts.mode === 'auto' ? ['udp', 'tcp', 'ws'] : [opts.mode];
    this.candidates = all.filter((k) => opts[k]);
    if (this.candidates.length === 0) throw new Error(`no address for transport ${opts.mode}`);
    // Until a stream is up, what little goes out goes over UDP (where there is no UDP address, nothing does).
    this.current = 'udp';
    this.reason = opts.mode === 'auto' ? 'udp: tried first' : `${opts.mode}: --transport ${opts.mode}`;
  }

  /** The transport datagrams to the switch go over now. */
  get kind(): TransportKind {
    return this.current;
  }

  /** Whether datagrams to the switch go over an open stream. */
  get onStream(): boolean {
    return this.current !== 'udp';
  }

  get target(): TransportKind {
    return this.candidates[this.index]!;
  }

  /** The transport, its reason and the stream now. */
  status(now: number): TransportStatus {
    return {
      mode: this.opts.mode,
      current: this.current,
      reason: this.reason,
      since: this.since,
      ...(this.stream !== null ? { stream: { kind: this.stream.kind, state: this.stream.state } } : {}),
      ...(this.stableSince !== null ? { udpStableMs: now - this.stableSince } : {}),
      switches: this.switches,
    };
  }

  /** Run the timers; call every few hundred ms and after the session changed. */
  tick(now: number, s: SessionView): void {
    if (!this.started) {
      this.started = true;
      this.since = this.targetSince = now;
      if (this.target !== 'udp') this.want(now);
    }
    if (s.joined) this.unjoinedSince = 0;
    else if (this.unjoinedSince === 0) this.unjoinedSince = now;
    const target = this.target;
    if (target === 'udp') {
      this.tickUdp(now, s);
    } else {
      this.tickStream(now, s, target);
    }
  }

  private tickUdp(now: number, s: SessionView): void {
    if (this.stream !== null && this.current === 'udp' && now >= this.lingerUntil) {
      this.lingerUntil = Infinity;
      this.dropStream('back on UDP', now);
    }
    if (this.candidates.length === 1) return;
    const unanswered = now - Math.max(this.targetSince, this.unjoinedSince);
    if (!s.joined && unanswered >= UDP_HANDSHAKE_FALLBACK_MS) {
      this.fail(now, `no UDP answer to the handshake for ${seconds(unanswered)}`);
    } else if (s.joined && s.missedPings >= TRANSPORT_MISSED_PINGS) {
      this.fail(now, `${s.missedPings} pings unanswered over UDP`);
    }
  }

  private tickStream(now: number, s: SessionView, kind: StreamKind): void {
    const st = this.stream;
    if (st === null) {
      // Waiting out a stream's backoff, the switch was heard since the stream went: that came over UDP, which works: stay.
      if (s.joined && (s.lastHeardAt ?? 0) > this.streamGoneAt && this.current === 'udp' && this.candidates[0] === 'udp') {
        this.index = 0;
        this.targetSince = now;
        this.pendingReason = '';
        this.reason = 'udp: answered again';
        return;
      }
      this.want(now);
      return;
    }
    if (st.state === 'connecting') {
      if (now - st.since >= STREAM_CONNECT_TIMEOUT_MS) this.streamFailed(now, `${kind} did not connect within ${seconds(STREAM_CONNECT_TIMEOUT_MS)}`);
      return;
    }
    // It worked once the switch was heard after it came up (a session joined over UDP before proves nothing about it).
    if (s.joined && (s.lastHeardAt ?? 0) > st.since) st.joinedOnIt = true;
    const unanswered = now - Math.max(st.since, this.unjoinedSince);
    if (!s.joined && unanswered >= UDP_HANDSHAKE_FALLBACK_MS) {
      this.streamFailed(now, `no handshake answer over ${kind} for ${seconds(unanswered)}`);
      return;
    }
    if (s.joined && s.missedPings >= TRANSPORT_MISSED_PINGS) {
      this.streamFailed(now, `${s.missedPings} pings unanswered over ${kind}`);
      return;
    }
    if (s.joined && this.opts.mode === 'auto' && this.candidates[0] === 'udp') this.probe(now);
  }

  /** Probe UDP while on a stream; once it has answered long enough, go back to it. */
  private probe(now: number): void {
    for (const [seq, at] of this.probes) {
      if (now - at >= UDP_PROBE_TIMEOUT_MS) {
        this.probes.delete(seq);
        this.stableSince = null;
        this.stableCount = 0;
      }
    }
    if (this.stableSince !== null && this.stableCount >= UDP_STABLE_PROBES && now - this.stableSince >= UDP_STABLE_MS) {
      const stable = now - this.stableSince;
      this.resetProbes();
      this.index = 0;
      this.targetSince = now;
      this.lingerUntil = now + STREAM_LINGER_MS;
      this.use(now, 'udp', `udp: answered every probe for ${seconds(stable)}`);
      return;
    }
    if (now >= this.nextProbeAt) {
      this.nextProbeAt = now + UDP_PROBE_INTERVAL_MS;
      const seq = (this.probeSeq = (this.probeSeq + 1) >>> 0 || 1);
      this.probes.set(seq, now);
      this.host.probeUdp(seq);
    }
  }

  /** The switch answered UDP probe `seq`. */
  probeAck(seq: number, now: number): void {
    if (!this.probes.delete(seq)) return;
    if (this.stableSince === null) this.stableSince = now;
    this.stableCount++;
  }

  /** The stream of `kind` is open (connected, upgraded): datagrams go over it. */
  streamUp(kind: StreamKind, now: number): void {
    const st = this.stream;
    if (st === null || st.kind !== kind || st.state !== 'connecting') return;
    st.state = 'up';
    st.since = now;
    this.retryDelay.delete(kind);
    this.resetProbes();
    this.use(now, kind, this.pendingReason);
    this.pendingReason = '';
  }

  /** The stream of `kind` failed to open, or closed (by the switch, a proxy, the network). */
  streamDown(kind: StreamKind, reason: string, now: number): void {
    const st = this.stream;
    if (st === null || st.kind !== kind) return;
    const wasJoined = st.joinedOnIt;
    this.stream = null;
    this.streamGoneAt = now;
    if (this.current === kind) this.use(now, 'udp', `udp: the ${kind} stream closed (${reason})`);
    if (this.target !== kind) return;
    if (wasJoined) {
      // It worked until now (a switch restart, a proxy's idle timeout): the same kind again first.
      this.nextAttemptAt.set(kind, now + STREAM_RETRY_INITIAL_MS);
      this.pendingReason = `${kind}: reconnected after the stream closed (${reason})`;
      return;
    }
    this.backoff(kind, now);
    this.fail(now, `${kind}: ${reason}`);
  }

  /** Why the next stream is being opened: its status reason once it is up. */
  private pendingReason = '';

  private streamFailed(now: number, reason: string): void {
    const kind = this.stream?.kind;
    this.dropStream(reason, now);
    if (this.current !== 'udp') this.use(now, 'udp', `udp: ${reason}`);
    if (kind !== undefined) this.backoff(kind, now);
    this.fail(now, reason);
  }

  private backoff(kind: StreamKind, now: number): void {
    const d = this.retryDelay.get(kind) ?? STREAM_RETRY_INITIAL_MS;
    this.nextAttemptAt.set(kind, now + d);
    this.retryDelay.set(kind, Math.min(STREAM_RETRY_MAX_MS, d * 2));
  }

  /** The target does not work: try the next candidate. */
  private fail(now: number, why: string): void {
    if (this.candidates.length === 1) {
      // One kind only (--transport tcp): it is retried on its backoff.
      this.targetSince = now;
      this.pendingReason = `${this.target}: --transport ${this.opts.mode} (after: ${why})`;
      return;
    }
    this.index = (this.index + 1) % this.candidates.length;
    this.targetSince = now;
    const next = this.target;
    this.pendingReason = `${next}: ${why}`;
    if (next === 'udp') {
      this.resetProbes();
      this.use(now, 'udp', `udp: tried again (${why})`);
    } else {
      this.want(now);
    }
  }

  /** Open the target stream when its backoff allows. */
  private want(now: number): void {
    const kind = this.target as StreamKind;
    if (this.stream !== null && this.stream.kind === kind) {
      // Still open (lingering after a return to UDP): take it again at once.
      if (this.stream.state === 'up' && this.current !== kind) {
        this.lingerUntil = Infinity;
        this.stream.since = now;
        this.use(now, kind, this.pendingReason || `${kind}: back on the open stream`);
        this.pendingReason = '';
      }
      return;
    }
    if (now < (this.nextAttemptAt.get(kind) ?? 0)) return;
    if (this.stream !== null) this.dropStream(`trying ${kind}`, now);
    if (this.pendingReason === '') this.pendingReason = this.opts.mode === kind ? `${kind}: --transport ${kind}` : `${kind}: the only way given to the switch (${kind === 'ws' ? 'a WebSocket URL' : 'HOST PORT'})`;
    this.stream = { kind, state: 'connecting', since: now, joinedOnIt: false };
    this.lingerUntil = Infinity;
    this.host.connect(kind);
  }

  private dropStream(reason: string, now: number): void {
    if (this.stream === null) return;
    this.stream = null;
    this.streamGoneAt = now;
    this.host.closeStream(reason);
  }

  private resetProbes(): void {
    this.probes.clear();
    this.stableSince = null;
    this.stableCount = 0;
    this.nextProbeAt = 0;
  }

  private use(now: number, kind: TransportKind, reason: string): void {
    this.reason = reason;
    if (kind === this.current) return;
    const from = this.current;
    this.current = kind;
    this.since = now;
    this.switches++;
    this.host.switched(from, kind, reason);
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
