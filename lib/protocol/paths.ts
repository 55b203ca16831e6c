// The direct path of one pair, sans-IO: the candidates where the peer may be
// reached without the switch (its address as the switch sees it, its own
// addresses, and the sources of its authenticated datagrams), the probes that
// punch holes and measure them, and the choice of the path frames take:
// relayed by the switch, direct, or both while a direct path is in doubt (the
// pair's replay window drops the duplicate). Time comes in as arguments; what
// to send goes out through PathHost. docs/PROTOCOL.md, "Direct paths", names
// every timer and state.
import {
  EndpointFlags,
  NatMapping,
  PATH_CANDIDATES_MAX,
  PATH_DOUBT_GRACE_MS,
  PATH_HEARTBEAT_MS,
  PATH_IDLE_MS,
  PATH_REDISCOVER_MS,
  PATH_RETRY_MS,
  PATH_RTT_ALPHA,
  PATH_SWITCH_RTT_RATIO,
  PATH_TRUST_MS,
  PROBES_OUTSTANDING_MAX,
  RENDEZVOUS_MIN_INTERVAL_MS,
} from './constants.js';
import { addressEquals, formatAddress } from '../io/address.js';
import { ADDR_SLOT } from '../io/native.js';

/** Where a candidate came from: the switch's view of the peer, the peer's own report, or the source of its authenticated datagrams. */
export type CandidateKind = 'public' | 'local' | 'observed';

/** How frames for the peer leave: through the switch, direct, or both (a direct path in doubt). */
export const Route = { RELAY: 0, DIRECT: 1, BOTH: 2 } as const;
export type Route = (typeof Route)[keyof typeof Route];

/** What a pair's path asks of its port. */
export interface PathHost {
  /** Send a PROBE with `id` to `addr` (an address slot), sealed on the pair session. False: no keys to seal with yet. */
  probe(addr: Buffer, id: number): boolean;
  /** Ask the switch to introduce the pair (RENDEZVOUS). */
  rendezvous(): void;
  /** The path changed (logs, the switch's PATH_REPORT). */
  changed(): void;
}

/** What the port knows of itself, shared by all its pairs. */
export interface PathContext {
  /** --no-direct: relay only; no probes sent or answered. */
  disabled: boolean;
  /** This port's NAT mapping (NatMapping), as measured against the switch. */
  nat: number;
}

/** One candidate as status shows it. */
export interface CandidateStatus {
  address: string;
  kind: CandidateKind;
  rttMs?: number;
  /** Answered a probe within PATH_TRUST_MS. */
  working: boolean;
}

class Candidate {
  lastProbeAt = 0;
  firstProbeAt = 0;
  lastPongAt = 0;
  heardAt = 0;
  /** Smoothed RTT; NaN until the first pong. */
  rttMs = NaN;
  readonly probeIds: number[] = [];
  readonly probeAt: number[] = [];
  constructor(
    readonly addr: Buffer,
    public kind: CandidateKind,
    readonly addedAt: number,
  ) {}

  working(now: number): boolean {
    return this.lastPongAt > 0 && now - this.lastPongAt <= PATH_TRUST_MS;
  }
}

/** The direct path of one pair. */
export class PeerPaths {
  private readonly list: Candidate[] = [];
  private best: Candidate | null = null;
  private nextId = 1;
  private lastActive = -Infinity;
  private nextRetryAt = 0;
  private nextRediscoverAt = 0;
  private lastRendezvousAt = -Infinity;
  /** The switch introduced us (CANDIDATES) at least once. */
  private introduced = false;
  private peerFlags = 0;
  private peerNat: number = NatMapping.UNKNOWN;
  /** When the last direct path was lost, and where it went. */
  private lostAt = 0;
  private lostAddr = '';
  private lostIdle = false;
  /** The peer's address as the switch last reported it. */
  private latestPublic: Buffer | null = null;
  /** The path as last reported: direct or not, and since when. */
  private direct = false;
  private sinceAt: number;
  /** Bytes each way on each path (sealed and opened payloads). */
  txDirectBytes = 0;
  rxDirectBytes = 0;
  txRelayBytes = 0;
  rxRelayBytes = 0;

  constructor(
    private readonly host: PathHost,
    private readonly ctx: PathContext,
    now: number,
  ) {
    this.sinceAt = now;
  }

  /** The direct path's address slot, while frames may use it. */
  get endpoint(): Buffer | null {
    return this.best?.addr ?? null;
  }

  get isDirect(): boolean {
    return this.direct;
  }

  /** When the current path was taken. */
  get since(): number {
    return this.sinceAt;
  }

  /** The direct path's RTT (ms), if direct. */
  get rttMs(): number | undefined {
    const r = this.best?.rttMs;
    return r !== undefined && !Number.isNaN(r) ? r : undefined;
  }

  /**
   * Where frames for the peer go now (hot path: once per batch). A direct
   * path whose heartbeat is late gets frames on the relay too; one silent for
   * PATH_TRUST_MS is dropped.
   */
  route(now: number): Route {
    const b = this.best;
    if (b === null) return Route.RELAY;
    if (!this.inDoubt(b, now)) return Route.DIRECT;
    if (now - b.lastPongAt <= PATH_TRUST_MS) return Route.BOTH;
    this.lose(now, true);
    return Route.RELAY;
  }

  /** Frames went to or came from the peer: after an idle spell, probe and ask for an introduction at once. */
  activity(now: number): void {
    if (now - this.lastActive > PATH_IDLE_MS) {
      this.lastActive = now;
      this.wake(now);
    }
    this.lastActive = now;
  }

  /** CANDIDATES from the switch: the peer's address as the switch sees it and its own addresses. Probes all of them now (the peer does the same). */
  introduce(flags: number, nat: number, observed: Buffer, local: readonly Buffer[], now: number): void {
    this.introduced = true;
    this.peerFlags = flags;
    this.peerNat = nat;
    if (this.ctx.disabled || flags & EndpointFlags.NO_DIRECT) {
      this.changedIfNeeded(now);
      return;
    }
    // A new public address replaces the old one (the peer's NAT mapping changed), unless the old one still works.
    for (let i = this.list.length - 1; i >= 0; i--) {
      const c = this.list[i]!;
      if (c.kind === 'public' && c !== this.best && !addressEquals(c.addr, 0, observed, 0)) this.list.splice(i, 1);
    }
    this.add(observed, 'public', now);
    this.latestPublic = observed;
    for (const a of local) this.add(a, 'local', now);
    for (const c of this.list) this.probe(c, now);
    this.nextRetryAt = now + PATH_RETRY_MS;
    this.changedIfNeeded(now);
  }

  /**
   * An authenticated datagram from the peer at `addrs[at..]`, not via the
   * switch: a new source becomes a candidate and is probed. Cheap when it is
   * the current path (per receive window).
   */
  heard(addrs: Buffer, at: number, now: number): void {
    if (this.ctx.disabled) return;
    const b = this.best;
    if (b !== null && addressEquals(b.addr, 0, addrs, at)) {
      b.heardAt = now;
      return;
    }
    let c = this.find(addrs, at);
    if (c === undefined) {
      c = this.add(Buffer.from(addrs.subarray(at, at + ADDR_SLOT)), 'observed', now);
      if (c === undefined) return;
    }
    c.heardAt = now;
    // Answer a new source with a probe of our own: its NAT has just opened for us.
    if (now - c.lastProbeAt >= PATH_HEARTBEAT_MS) this.probe(c, now);
  }

  /** A PROBE_REPLY from `addrs[at..]` (authenticated and fresh): RTT, trust, and perhaps a better path. */
  pong(addrs: Buffer, at: number, id: number, now: number): void {
    if (this.ctx.disabled) return;
    const c = this.find(addrs, at);
    if (c === undefined) return;
    const k = c.probeIds.indexOf(id);
    if (k < 0) return; // not a probe we sent there (or a very late one)
    const rtt = now - c.probeAt[k]!;
    c.probeIds.splice(0, k + 1);
    c.probeAt.splice(0, k + 1);
    c.rttMs = Number.isNaN(c.rttMs) ? rtt : c.rttMs + PATH_RTT_ALPHA * (rtt - c.rttMs);
    c.lastPongAt = now;
    this.choose(c, now);
  }

  /** Heartbeats, retries, re-introductions. Call every few hundred ms. */
  poll(now: number): void {
    if (this.ctx.disabled || this.peerFlags & EndpointFlags.NO_DIRECT) return;
    if (now - this.lastActive > PATH_IDLE_MS) {
      // Idle: nothing is sent; a path that was direct stays so until its trust runs out, then quietly goes.
      if (this.best !== null && now - this.best.lastPongAt > PATH_TRUST_MS) this.lose(now, false);
      return;
    }
    // route() drops a path silent for PATH_TRUST_MS; what is left is heartbeated.
    const route = this.route(now);
    const b = this.best;
    if (b !== null && now - b.lastProbeAt >= PATH_HEARTBEAT_MS) this.probe(b, now);
    if (route !== Route.DIRECT) {
      if (now >= this.nextRetryAt) {
        this.nextRetryAt = now + PATH_RETRY_MS;
        for (const c of this.list) if (c !== this.best) this.probe(c, now);
      }
      if (this.best === null && now >= this.nextRediscoverAt) {
        this.nextRediscoverAt = now + PATH_REDISCOVER_MS;
        this.askRendezvous(now);
      }
    }
    // Candidates never probed because no keys were there yet (CANDIDATES before the session).
    for (const c of this.list) if (c.lastProbeAt === 0) this.probe(c, now);
  }

  /** The path as status shows it. */
  reason(now: number): string | undefined {
    if (this.direct) return undefined;
    if (this.ctx.disabled) return 'direct disabled (--no-direct)';
    if (this.peerFlags & EndpointFlags.NO_DIRECT) return 'the peer has direct paths disabled (--no-direct)';
    if (!this.introduced && this.list.length === 0) return 'not introduced yet (the switch passes candidates on the first traffic)';
    if (this.list.length === 0) return 'the peer reported no addresses';
    if (this.lostAt > 0 && this.lostIdle) return `idle since ${clock(this.lastActive)}: the next frame probes ${this.lostAddr} again`;
    if (this.lostAt > 0) return `direct path ${this.lostAddr} stopped answering: probes unanswered since ${clock(this.lostAt)}`;
    let first = Infinity;
    for (const c of this.list) if (c.firstProbeAt > 0 && c.firstProbeAt < first) first = c.firstProbeAt;
    const since = first === Infinity ? 'probes not sent yet' : `probes unanswered since ${clock(first)}`;
    const here = this.ctx.nat === NatMapping.ENDPOINT_DEPENDENT;
    const there = this.peerNat === NatMapping.ENDPOINT_DEPENDENT;
    if (here && there) return `symmetric NAT on both sides: ${since}`;
    if (here) return `symmetric NAT here, and the peer's NAT does not let our probes in: ${since}`;
    if (there) return `symmetric NAT at the peer, and our NAT does not let its probes in: ${since}`;
    void now;
    return since;
  }

  candidates(now: number): CandidateStatus[] {
    return this.list.map((c) => ({
      address: formatAddress(c.addr),
      kind: c.kind,
      ...(Number.isNaN(c.rttMs) ? {} : { rttMs: round(c.rttMs) }),
      working: c.working(now),
    }));
  }

  // ------------------------------------------------------------------ internals

  /**
   * A probe to the path has gone unanswered for max(grace, 2 RTT), or the
   * path's trust ran out. Counted from the probe, not from the last pong: a
   * heartbeat that left late because the event loop was busy (a 2-core host
   * under a transfer) is no sign of a dead path, and doubting it would copy
   * every frame through the switch until the pong came.
   */
  private inDoubt(b: Candidate, now: number): boolean {
    if (now - b.lastPongAt > PATH_TRUST_MS) return true;
    const oldest = b.probeAt[0];
    if (oldest === undefined) return false;
    const rtt = Number.isNaN(b.rttMs) ? 0 : b.rttMs;
    return now - oldest > Math.max(PATH_DOUBT_GRACE_MS, 2 * rtt);
  }

  private wake(now: number): void {
    if (this.ctx.disabled || this.peerFlags & EndpointFlags.NO_DIRECT) return;
    for (const c of this.list) this.probe(c, now);
    this.nextRetryAt = now + PATH_RETRY_MS;
    this.askRendezvous(now);
  }

  private askRendezvous(now: number): void {
    if (now - this.lastRendezvousAt < RENDEZVOUS_MIN_INTERVAL_MS) return;
    this.lastRendezvousAt = now;
    this.nextRediscoverAt = now + PATH_REDISCOVER_MS;
    this.host.rendezvous();
  }

  private probe(c: Candidate, now: number): void {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0 || 1;
    if (!this.host.probe(c.addr, id)) return;
    if (c.probeIds.length >= PROBES_OUTSTANDING_MAX) {
      c.probeIds.shift();
      c.probeAt.shift();
    }
    c.probeIds.push(id);
    c.probeAt.push(now);
    c.lastProbeAt = now;
    if (c.firstProbeAt === 0) c.firstProbeAt = now;
  }

  /** A candidate answered: take it if there is no direct path, the current one is in doubt, or it is clearly faster. */
  private choose(c: Candidate, now: number): void {
    const b = this.best;
    if (b === c) {
      this.changedIfNeeded(now);
      return;
    }
    if (b === null || this.inDoubt(b, now) || c.rttMs < b.rttMs * PATH_SWITCH_RTT_RATIO) {
      this.best = c;
      // A public address the switch no longer reports (the peer's NAT mapping moved) is gone once we left it.
      if (b !== null && b.kind === 'public' && this.latestPublic !== null && !addressEquals(b.addr, 0, this.latestPublic, 0)) this.list.splice(this.list.indexOf(b), 1);
      this.lostAt = 0;
      // Moving from one direct path to another is a change too.
      if (this.direct) this.report(now);
      else this.changedIfNeeded(now);
    }
  }

  /** The direct path is dropped: it stopped answering while frames flow (`active`), or its trust ran out while idle. */
  private lose(now: number, active: boolean): void {
    const b = this.best;
    if (b === null) return;
    this.best = null;
    this.lostAt = b.lastPongAt;
    this.lostAddr = formatAddress(b.addr);
    this.lostIdle = !active;
    this.changedIfNeeded(now);
    // Idle: nothing more (the next frame wakes the pair). Active: perhaps the peer moved; ask where it is now, and try everything again soon.
    if (!active) return;
    this.nextRetryAt = now;
    this.askRendezvous(now);
  }

  private changedIfNeeded(now: number): void {
    const direct = this.best !== null;
    if (direct === this.direct) return;
    this.direct = direct;
    this.report(now);
  }

  private report(now: number): void {
    this.sinceAt = now;
    this.host.changed();
  }

  private find(addrs: Buffer, at: number): Candidate | undefined {
    for (const c of this.list) if (addressEquals(c.addr, 0, addrs, at)) return c;
    return undefined;
  }

  private add(addr: Buffer, kind: CandidateKind, now: number): Candidate | undefined {
    const known = this.find(addr, 0);
    if (known !== undefined) {
      // What the peer or the switch says beats what we merely observed.
      if (known.kind === 'observed') known.kind = kind;
      return known;
    }
    if (this.list.length >= PATH_CANDIDATES_MAX) {
      // Forget the least useful: never answered, oldest first; never the current path.
      let worst = -1;
      for (let i = 0; i < this.list.length; i++) {
        const c = this.list[i]!;
        if (c === this.best || c.lastPongAt > 0) continue;
        if (worst < 0 || c.addedAt < this.list[worst]!.addedAt) worst = i;
      }
      if (worst < 0) return undefined;
      this.list.splice(worst, 1);
    }
    const c = new Candidate(Buffer.from(addr.subarray(0, ADDR_SLOT)), kind, now);
    this.list.push(c);
    return c;
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** A time of day for reasons: '07:31:02Z'. */
function clock(t: number): string {
  return new Date(t).toISOString().slice(11, 19) + 'Z';
}
