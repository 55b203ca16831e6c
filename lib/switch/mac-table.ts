// The forwarding database: (MAC, VLAN) -> port, with aging, static entries,
// move detection, a hold against MAC theft, and learning limits. Modelled on
// Linux net/bridge/br_fdb.c; the hold on vde_switch's minimum persistence.
import { EtherlinkError } from '../core/errors.js';
import { CLOCK, MacIndex, SLOT_CLOCKS, SLOT_WORDS, WORD_A } from './mac-index.js';

/** Linux bridge default ageing_time (300 s). */
export const DEFAULT_AGEING_MS = 300_000;
/** Total learned entries; a flood of random sources must not grow memory without bound. */
export const DEFAULT_MAX_ENTRIES = 65_536;
/** Learned entries per port, so one peer can't fill the table for everyone. */
export const DEFAULT_MAX_PER_PORT = 4_096;
/**
 * A claim refused by the hold is remembered for this many holds: long enough
 * for an owner that is going away to fall silent, short enough that a claim
 * made against an active owner is not granted long after, when it merely pauses.
 */
export const CLAIM_TTL_HOLDS = 2;

/** What `learn` did; numbers, so the hot path returns without allocating. */
export const LearnResult = {
  Learned: 0,
  Refreshed: 1,
  Moved: 2,
  /** Source is a static entry: nothing changes, whichever port it came from. */
  Static: 3,
  TableFull: 4,
  PortLimit: 5,
  /** The owner used the MAC within the hold: the entry stays, the claim is remembered. */
  MoveDenied: 6,
} as const;
export type LearnResult = (typeof LearnResult)[keyof typeof LearnResult];

/** Why a source was not learned: the whole table is full, or the port reached its share. */
export type LimitReason = 'table-full' | 'port-limit';

/** One forwarding entry: (MAC, VLAN) -> port. */
export interface MacEntry<P> {
  readonly mac: number;
  readonly vlan: number;
  port: P;
  /** Clock time (ms) the source was last seen; like fdb->updated. */
  updated: number;
  readonly isStatic: boolean;
}

/**
 * An entry, with the claim the hold refused, if any (internal). Its port and
 * clock live in its index slot, beside the key, where forwarding reads them
 * without touching this object; the getters are for the slow paths.
 */
class Entry<P> implements MacEntry<P> {
  claimant: P | null = null;
  /** Clock time of the claimant's latest refused frame. */
  claimedAt = 0;
  /** What it held when it left the table (a listener may keep it). */
  private gone: { port: P; updated: number } | null = null;

  constructor(
    private readonly table: MacTable<P>,
    readonly mac: number,
    readonly vlan: number,
    readonly isStatic: boolean,
  ) {}

  get port(): P {
    return this.gone !== null ? this.gone.port : this.table.slotPort(this);
  }

  get updated(): number {
    return this.gone !== null ? this.gone.updated : this.table.slotUpdated(this);
  }

  /** @internal it leaves the table: keep what it held. */
  detach(): void {
    if (this.gone === null) this.gone = { port: this.port, updated: this.updated };
  }
}

/** What the table learned, moved, refused and aged. */
export interface MacTableCounters {
  learned: number;
  moves: number;
  moveDenied: number;
  /** A learned source arrived on a port other than its static entry's. */
  staticConflicts: number;
  tableFull: number;
  portLimit: number;
  aged: number;
}

/** Options of a MacTable: ageing, limits, the move hold, and callbacks. */
export interface MacTableOptions<P> {
  ageingMs?: number;
  maxEntries?: number;
  maxPerPort?: number;
  /**
   * No takeover of an active MAC: while the owner used it (sent a frame with
   * that source) less than this long ago, another port's claim is refused and
   * remembered, and `grantClaims` moves the entry once the hold runs out —
   * without a second frame from the claimant. 0 (the default): a plain
   * bridge, every claim moves at once.
   */
  moveHoldMs?: number;
  /** How long a refused claim is remembered (default CLAIM_TTL_HOLDS x moveHoldMs); a new frame from the claimant renews it. */
  claimTtlMs?: number;
  /** A live entry moved to another port. */
  onMove?: (entry: Readonly<MacEntry<P>>, from: P, now: number) => void;
  /** A source was not learned because of a limit. */
  onLimit?: (reason: LimitReason, mac: number, vlan: number, port: P) => void;
  /** The hold refused a claim by a port that was not already the refused claimant (once per claimant, not per frame). */
  onMoveDenied?: (entry: Readonly<MacEntry<P>>, claimant: P) => void;
  /** The set of MACs behind `port` changed: one was added, moved away or removed (a refresh is no change). */
  onChange?: (port: P) => void;
}

/** The forwarding database, modelled on the Linux bridge: (MAC, VLAN) -> port, with ageing, static entries, moves, a hold against theft, and limits. */
export class MacTable<P> {
  readonly ageingMs: number;
  readonly maxEntries: number;
  readonly maxPerPort: number;
  /** Ports with a limit of their own (setPortLimit). */
  private readonly portLimits = new Map<P, number>();
  readonly moveHoldMs: number;
  readonly claimTtlMs: number;
  readonly counters: MacTableCounters = {
    learned: 0, moves: 0, moveDenied: 0, staticConflicts: 0, tableFull: 0, portLimit: 0, aged: 0,
  };
  /**
   * (MAC, VLAN) -> entry: typed-array open addressing, since a Map keyed by the
   * MAC is slow at 100k entries (mac-index.ts). Each slot's WORD_A is the port's
   * number << 1 | static, its clock the time of the entry's last frame.
   */
  private readonly index = new MacIndex<Entry<P>>();
  /** Small numbers for the ports that hold entries, for the slots. */
  private readonly portNos = new Map<P, number>();
  private portAt: (P | undefined)[] = [];
  private freeNos: number[] = [];
  private readonly learnedPerPort = new Map<P, number>();
  /** Every entry (static too) by its port: flushing a port costs its own entries, not the table. */
  private readonly byPort = new Map<P, Set<Entry<P>>>();
  /** Entries with a claim the hold refused. */
  private readonly claims = new Set<Entry<P>>();
  private learnedCount = 0;
  private total = 0;
  private readonly onMove: MacTableOptions<P>['onMove'];
  private readonly onLimit: MacTableOptions<P>['onLimit'];
  private readonly onMoveDenied: MacTableOptions<P>['onMoveDenied'];
  private readonly onChange: MacTableOptions<P>['onChange'];

  constructor(opts: MacTableOptions<P> = {}) {
    this.ageingMs = positive('ageingMs', opts.ageingMs ?? DEFAULT_AGEING_MS);
    this.maxEntries = positive('maxEntries', opts.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.maxPerPort = positive('maxPerPort', opts.maxPerPort ?? DEFAULT_MAX_PER_PORT);
    this.moveHoldMs = nonNegative('moveHoldMs', opts.moveHoldMs ?? 0);
    this.claimTtlMs = positive('claimTtlMs', opts.claimTtlMs ?? Math.max(1, CLAIM_TTL_HOLDS * this.moveHoldMs));
    this.onMove = opts.onMove;
    this.onLimit = opts.onLimit;
    this.onMoveDenied = opts.onMoveDenied;
    this.onChange = opts.onChange;
  }

  /** All entries, static included. */
  get size(): number {
    return this.total;
  }

  /** Learned (non-static) entries held for `port`; what maxPerPort (or its own limit) limits. */
  learnedOn(port: P): number {
    return this.learnedPerPort.get(port) ?? 0;
  }

  /**
   * A limit of `port`'s own instead of maxPerPort (a VXLAN VTEP stands for a
   * whole segment of hosts); undefined goes back to maxPerPort. Entries it
   * holds beyond a lowered limit stay until they age out or move.
   */
  setPortLimit(port: P, max: number | undefined): void {
    if (max === undefined) this.portLimits.delete(port);
    else this.portLimits.set(port, positive('port limit', max));
  }

  /** How many MACs `port` may hold. */
  limitOf(port: P): number {
    return this.portLimits.size === 0 ? this.maxPerPort : (this.portLimits.get(port) ?? this.maxPerPort);
  }

  /** The entry for (mac, vlan), expired or not. */
  get(mac: number, vlan: number): Readonly<MacEntry<P>> | undefined {
    return this.index.get(mac, vlan);
  }

  /** The forwarding lookup: expired-but-unswept entries already miss, so aging is exact. Reads the slot only. */
  lookup(mac: number, vlan: number, now: number): P | undefined {
    const s = this.index.find(mac, vlan);
    if (s < 0) return undefined;
    const a = this.index.words[s * SLOT_WORDS + WORD_A]!;
    if ((a & 1) === 0 && now - this.index.clocks[s * SLOT_CLOCKS + CLOCK]! >= this.ageingMs) return undefined;
    return this.portAt[a >> 1];
  }

  /** Record that `mac` was seen as a source on `port`. Allocation-free when the entry exists; a refresh reads and writes the slot only. */
  learn(mac: number, vlan: number, port: P, now: number): LearnResult {
    const s = this.index.find(mac, vlan);
    if (s >= 0) {
      const a = this.index.words[s * SLOT_WORDS + WORD_A]!;
      const owner = this.portAt[a >> 1];
      if ((a & 1) !== 0) {
        if (owner !== port) this.counters.staticConflicts++;
        return LearnResult.Static;
      }
      if (owner === port) {
        this.index.clocks[s * SLOT_CLOCKS + CLOCK] = now;
        return LearnResult.Refreshed;
      }
      const e = this.index.valueAt(s);
      // An expired entry is gone in all but memory: re-home it silently.
      const live = !this.expired(e, now);
      if (live && now - e.updated < this.moveHoldMs) {
        this.counters.moveDenied++;
        if (e.claimant !== port) this.onMoveDenied?.(e, port);
        e.claimant = port;
        e.claimedAt = now;
        this.claims.add(e);
        return LearnResult.MoveDenied;
      }
      return this.rehome(e, port, now, live);
    }
    if (this.learnedCount >= this.maxEntries) return this.refuse('table-full', mac, vlan, port);
    if (this.learnedOn(port) >= this.limitOf(port)) return this.refuse('port-limit', mac, vlan, port);
    this.insert(new Entry(this, mac, vlan, false), port, now);
    this.countLearned(port, +1);
    this.counters.learned++;
    return LearnResult.Learned;
  }

  /** Pin `mac` to `port`: never ages, never moved by learning, not counted against limits. */
  addStatic(mac: number, vlan: number, port: P, now = 0): void {
    this.remove(mac, vlan);
    this.insert(new Entry(this, mac, vlan, true), port, now);
  }

  /**
   * Grant the claims whose hold has run out (the owner has not used the MAC
   * for moveHoldMs), and forget those older than claimTtlMs. The switch calls
   * this at nextClaimAt(). Returns how many entries moved.
   */
  grantClaims(now: number): number {
    let moved = 0;
    for (const e of this.claims) {
      const claimant = e.claimant!;
      if (now - e.claimedAt >= this.claimTtlMs) {
        this.dropClaim(e);
      } else if (now - e.updated >= this.moveHoldMs) {
        this.dropClaim(e);
        if (this.rehome(e, claimant, now, !this.expired(e, now)) === LearnResult.Moved) moved++;
      }
    }
    return moved;
  }

  /** When grantClaims next has work: the earliest end of a hold (or of a claim's life), or undefined. */
  nextClaimAt(): number | undefined {
    let next = Infinity;
    for (const e of this.claims) next = Math.min(next, e.updated + this.moveHoldMs, e.claimedAt + this.claimTtlMs);
    return next === Infinity ? undefined : next;
  }

  /** Claims waiting for a hold to run out. */
  get pendingClaims(): number {
    return this.claims.size;
  }

  /** Remove one entry, static or learned. */
  remove(mac: number, vlan: number): boolean {
    const e = this.index.get(mac, vlan);
    if (e === undefined) return false;
    this.delete(e);
    return true;
  }

  /** Drop expired learned entries; the switch calls this from its one timer. Returns how many. */
  sweep(now: number): number {
    const old: Entry<P>[] = [];
    const { words, clocks } = this.index;
    this.index.forEachSlot((s, e) => {
      if ((words[s * SLOT_WORDS + WORD_A]! & 1) === 0 && now - clocks[s * SLOT_CLOCKS + CLOCK]! >= this.ageingMs) old.push(e);
    });
    for (const e of old) this.delete(e);
    const removed = old.length;
    this.counters.aged += removed;
    return removed;
  }

  /**
   * Forget everything behind `port` (static too, unless told otherwise): the
   * port is going away or its link went down. A MAC another port claimed
   * during the hold goes to that port at once: its owner has let it go.
   * Claims made by `port` are forgotten. Returns the entries `port` lost.
   */
  flushPort(port: P, includeStatic = true, now = 0): number {
    for (const e of this.claims) if (e.claimant === port) this.dropClaim(e);
    const own = this.byPort.get(port);
    if (own === undefined) return 0;
    let removed = 0;
    for (const e of [...own]) {
      if (!includeStatic && e.isStatic) continue;
      removed++;
      const claimant = e.claimant;
      if (claimant !== null && !e.isStatic) {
        this.dropClaim(e);
        if (this.rehome(e, claimant, now, true) === LearnResult.Moved) continue;
      }
      this.delete(e);
    }
    return removed;
  }

  /** Forget everything. */
  clear(): void {
    for (const e of this.index.list()) e.detach();
    this.index.clear();
    this.portNos.clear();
    this.portAt = [];
    this.freeNos = [];
    this.byPort.clear();
    this.claims.clear();
    this.learnedPerPort.clear();
    this.learnedCount = 0;
    this.total = 0;
  }

  /** The live entries behind `port` (static included), as (mac, vlan). */
  entriesOf(port: P, now: number): { mac: number; vlan: number }[] {
    const out: { mac: number; vlan: number }[] = [];
    const own = this.byPort.get(port);
    if (own !== undefined) for (const e of own) if (!this.expired(e, now)) out.push({ mac: e.mac, vlan: e.vlan });
    return out;
  }

  /** A copy of every entry, for status output, by VLAN then MAC. */
  entries(): MacEntry<P>[] {
    const out: MacEntry<P>[] = [];
    for (const e of this.index.list()) out.push({ mac: e.mac, vlan: e.vlan, port: e.port, updated: e.updated, isStatic: e.isStatic });
    return out.sort((x, y) => x.vlan - y.vlan || x.mac - y.mac);
  }

  private expired(e: MacEntry<P>, now: number): boolean {
    return !e.isStatic && now - e.updated >= this.ageingMs;
  }

  /** Move a learned entry to `port` (a live one is a move: counted and reported). */
  private rehome(e: Entry<P>, port: P, now: number, live: boolean): LearnResult {
    if (this.learnedOn(port) >= this.limitOf(port)) return this.refuse('port-limit', e.mac, e.vlan, port);
    const from = e.port;
    this.countLearned(from, -1);
    this.countLearned(port, +1);
    this.unlink(e);
    const s = this.index.find(e.mac, e.vlan);
    this.index.clocks[s * SLOT_CLOCKS + CLOCK] = now;
    this.index.words[s * SLOT_WORDS + WORD_A] = this.numberOf(port) << 1;
    this.link(e);
    if (e.claimant !== null) this.dropClaim(e);
    if (!live) return LearnResult.Learned;
    this.counters.moves++;
    this.onMove?.(e, from, now);
    return LearnResult.Moved;
  }

  private dropClaim(e: Entry<P>): void {
    e.claimant = null;
    this.claims.delete(e);
  }

  private refuse(reason: LimitReason, mac: number, vlan: number, port: P): LearnResult {
    if (reason === 'table-full') this.counters.tableFull++;
    else this.counters.portLimit++;
    this.onLimit?.(reason, mac, vlan, port);
    return reason === 'table-full' ? LearnResult.TableFull : LearnResult.PortLimit;
  }

  private insert(e: Entry<P>, port: P, now: number): void {
    this.index.set(e.mac, e.vlan, e, (this.numberOf(port) << 1) | (e.isStatic ? 1 : 0), now);
    this.link(e);
    this.total++;
  }

  private link(e: Entry<P>): void {
    let own = this.byPort.get(e.port);
    if (own === undefined) {
      own = new Set();
      this.byPort.set(e.port, own);
    }
    own.add(e);
    this.onChange?.(e.port);
  }

  private unlink(e: Entry<P>): void {
    const port = e.port;
    const own = this.byPort.get(port);
    if (own === undefined) return;
    own.delete(e);
    if (own.size === 0) {
      this.byPort.delete(port);
      this.releaseNumber(port);
    }
    this.onChange?.(port);
  }

  private delete(e: Entry<P>): void {
    if (e.claimant !== null) this.dropClaim(e);
    e.detach();
    this.index.delete(e.mac, e.vlan);
    this.unlink(e);
    this.total--;
    if (!e.isStatic) this.countLearned(e.port, -1);
  }

  /** @internal the port in `e`'s slot. */
  slotPort(e: Entry<P>): P {
    const s = this.index.find(e.mac, e.vlan);
    return this.portAt[this.index.words[s * SLOT_WORDS + WORD_A]! >> 1]!;
  }

  /** @internal the clock in `e`'s slot. */
  slotUpdated(e: Entry<P>): number {
    const s = this.index.find(e.mac, e.vlan);
    return this.index.clocks[s * SLOT_CLOCKS + CLOCK]!;
  }

  private numberOf(port: P): number {
    let n = this.portNos.get(port);
    if (n === undefined) {
      n = this.freeNos.pop() ?? this.portAt.length;
      this.portNos.set(port, n);
      this.portAt[n] = port;
    }
    return n;
  }

  private releaseNumber(port: P): void {
    const n = this.portNos.get(port);
    if (n === undefined) return;
    this.portNos.delete(port);
    this.portAt[n] = undefined;
    this.freeNos.push(n);
  }

  private countLearned(port: P, delta: number): void {
    const n = (this.learnedPerPort.get(port) ?? 0) + delta;
    if (n === 0) this.learnedPerPort.delete(port);
    else this.learnedPerPort.set(port, n);
    this.learnedCount += delta;
  }
}

function nonNegative(name: string, value: number): number {
  if (!(value >= 0) || !Number.isFinite(value)) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `MacTable ${name} must be a number >= 0, got ${value}`);
  return value;
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `MacTable ${name} must be a positive number, got ${value}`);
  return value;
}
