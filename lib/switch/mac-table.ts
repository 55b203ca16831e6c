// The forwarding database: (MAC, VLAN) -> port, with aging, static entries,
// move detection and learning limits. Modelled on Linux net/bridge/br_fdb.c.

/** Linux bridge default ageing_time (300 s). */
export const DEFAULT_AGEING_MS = 300_000;
/** Total learned entries; a flood of random sources must not grow memory without bound. */
export const DEFAULT_MAX_ENTRIES = 65_536;
/** Learned entries per port, so one peer can't fill the table for everyone. */
export const DEFAULT_MAX_PER_PORT = 4_096;

/** What `learn` did; numbers, so the hot path returns without allocating. */
export const LearnResult = {
  Learned: 0,
  Refreshed: 1,
  Moved: 2,
  /** Source is a static entry: nothing changes, whichever port it came from. */
  Static: 3,
  TableFull: 4,
  PortLimit: 5,
  /** `allowMove` refused: the entry stays on its current port. */
  MoveDenied: 6,
} as const;
export type LearnResult = (typeof LearnResult)[keyof typeof LearnResult];

export type LimitReason = 'table-full' | 'port-limit';

export interface MacEntry<P> {
  readonly mac: number;
  readonly vlan: number;
  port: P;
  /** Clock time (ms) the source was last seen; like fdb->updated. */
  updated: number;
  readonly isStatic: boolean;
}

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

export interface MacTableOptions<P> {
  ageingMs?: number;
  maxEntries?: number;
  maxPerPort?: number;
  /**
   * Move policy, asked only when a live learned entry is seen on another
   * port. Default: always allow (plain bridge behaviour). Returning false
   * keeps the entry where it is, e.g. "no takeover while the owner is active".
   */
  allowMove?: (entry: Readonly<MacEntry<P>>, newPort: P, now: number) => boolean;
  onMove?: (entry: Readonly<MacEntry<P>>, from: P, now: number) => void;
  onLimit?: (reason: LimitReason, mac: number, vlan: number, port: P) => void;
}

const allowAlways = (): boolean => true;

export class MacTable<P> {
  readonly ageingMs: number;
  readonly maxEntries: number;
  readonly maxPerPort: number;
  readonly counters: MacTableCounters = {
    learned: 0, moves: 0, moveDenied: 0, staticConflicts: 0, tableFull: 0, portLimit: 0, aged: 0,
  };
  // Two levels because (48-bit MAC, 12-bit VID) doesn't fit a float64 exactly,
  // and a string key would allocate per frame. Almost always one VLAN.
  private readonly byVlan = new Map<number, Map<number, MacEntry<P>>>();
  private readonly learnedPerPort = new Map<P, number>();
  private learnedCount = 0;
  private total = 0;
  private readonly allowMove: NonNullable<MacTableOptions<P>['allowMove']>;
  private readonly onMove: MacTableOptions<P>['onMove'];
  private readonly onLimit: MacTableOptions<P>['onLimit'];

  constructor(opts: MacTableOptions<P> = {}) {
    this.ageingMs = positive('ageingMs', opts.ageingMs ?? DEFAULT_AGEING_MS);
    this.maxEntries = positive('maxEntries', opts.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.maxPerPort = positive('maxPerPort', opts.maxPerPort ?? DEFAULT_MAX_PER_PORT);
    this.allowMove = opts.allowMove ?? allowAlways;
    this.onMove = opts.onMove;
    this.onLimit = opts.onLimit;
  }

  /** All entries, static included. */
  get size(): number {
    return this.total;
  }

  /** Learned (non-static) entries held for `port`; what maxPerPort limits. */
  learnedOn(port: P): number {
    return this.learnedPerPort.get(port) ?? 0;
  }

  get(mac: number, vlan: number): Readonly<MacEntry<P>> | undefined {
    return this.byVlan.get(vlan)?.get(mac);
  }

  /** The forwarding lookup: expired-but-unswept entries already miss, so aging is exact. */
  lookup(mac: number, vlan: number, now: number): P | undefined {
    const e = this.byVlan.get(vlan)?.get(mac);
    if (e === undefined || this.expired(e, now)) return undefined;
    return e.port;
  }

  /** Record that `mac` was seen as a source on `port`. Allocation-free when the entry exists. */
  learn(mac: number, vlan: number, port: P, now: number): LearnResult {
    const macs = this.byVlan.get(vlan);
    const e = macs?.get(mac);
    if (e !== undefined) {
      if (e.isStatic) {
        if (e.port !== port) this.counters.staticConflicts++;
        return LearnResult.Static;
      }
      if (e.port === port) {
        e.updated = now;
        return LearnResult.Refreshed;
      }
      // An expired entry is gone in all but memory: re-home it silently.
      const live = !this.expired(e, now);
      if (live && !this.allowMove(e, port, now)) {
        this.counters.moveDenied++;
        return LearnResult.MoveDenied;
      }
      if (this.learnedOn(port) >= this.maxPerPort) return this.refuse('port-limit', mac, vlan, port);
      const from = e.port;
      this.countLearned(from, -1);
      this.countLearned(port, +1);
      e.port = port;
      e.updated = now;
      if (!live) return LearnResult.Learned;
      this.counters.moves++;
      this.onMove?.(e, from, now);
      return LearnResult.Moved;
    }
    if (this.learnedCount >= this.maxEntries) return this.refuse('table-full', mac, vlan, port);
    if (this.learnedOn(port) >= this.maxPerPort) return this.refuse('port-limit', mac, vlan, port);
    this.insert(macs, { mac, vlan, port, updated: now, isStatic: false });
    this.countLearned(port, +1);
    this.counters.learned++;
    return LearnResult.Learned;
  }

  /** Pin `mac` to `port`: never ages, never moved by learning, not counted against limits. */
  addStatic(mac: number, vlan: number, port: P, now = 0): void {
    this.remove(mac, vlan);
    this.insert(this.byVlan.get(vlan), { mac, vlan, port, updated: now, isStatic: true });
  }

  /** Remove one entry, static or learned. */
  remove(mac: number, vlan: number): boolean {
    const macs = this.byVlan.get(vlan);
    const e = macs?.get(mac);
    if (macs === undefined || e === undefined) return false;
    this.delete(macs, vlan, e);
    return true;
  }

  /** Drop expired learned entries; the switch calls this from its one timer. Returns how many. */
  sweep(now: number): number {
    let removed = 0;
    for (const [vlan, macs] of this.byVlan) {
      for (const e of macs.values()) {
        if (!e.isStatic && this.expired(e, now)) {
          this.delete(macs, vlan, e);
          removed++;
        }
      }
    }
    this.counters.aged += removed;
    return removed;
  }

  /** Forget everything behind `port` (static too, unless told otherwise): the port is going away. */
  flushPort(port: P, includeStatic = true): number {
    let removed = 0;
    for (const [vlan, macs] of this.byVlan) {
      for (const e of macs.values()) {
        if (e.port === port && (includeStatic || !e.isStatic)) {
          this.delete(macs, vlan, e);
          removed++;
        }
      }
    }
    return removed;
  }

  clear(): void {
    this.byVlan.clear();
    this.learnedPerPort.clear();
    this.learnedCount = 0;
    this.total = 0;
  }

  /** A copy of every entry, for status output. */
  entries(): MacEntry<P>[] {
    const out: MacEntry<P>[] = [];
    for (const macs of this.byVlan.values()) for (const e of macs.values()) out.push({ ...e });
    return out;
  }

  private expired(e: MacEntry<P>, now: number): boolean {
    return !e.isStatic && now - e.updated >= this.ageingMs;
  }

  private refuse(reason: LimitReason, mac: number, vlan: number, port: P): LearnResult {
    if (reason === 'table-full') this.counters.tableFull++;
    else this.counters.portLimit++;
    this.onLimit?.(reason, mac, vlan, port);
    return reason === 'table-full' ? LearnResult.TableFull : LearnResult.PortLimit;
  }

  private insert(macs: Map<number, MacEntry<P>> | undefined, e: MacEntry<P>): void {
    if (macs === undefined) {
      macs = new Map();
      this.byVlan.set(e.vlan, macs);
    }
    macs.set(e.mac, e);
    this.total++;
  }

  private delete(macs: Map<number, MacEntry<P>>, vlan: number, e: MacEntry<P>): void {
    macs.delete(e.mac);
    if (macs.size === 0) this.byVlan.delete(vlan);
    this.total--;
    if (!e.isStatic) this.countLearned(e.port, -1);
  }

  private countLearned(port: P, delta: number): void {
    const n = (this.learnedPerPort.get(port) ?? 0) + delta;
    if (n === 0) this.learnedPerPort.delete(port);
    else this.learnedPerPort.set(port, n);
    this.learnedCount += delta;
  }
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`MacTable ${name} must be a positive number, got ${value}`);
  return value;
}
