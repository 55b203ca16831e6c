// The loop guard's memory (lib/switch/switch.ts uses it): the last few moves
// of each (MAC, VLAN) that moved lately, in fixed rings, for a bounded number
// of MACs. A loop shows as one MAC bouncing between ports many times a second.

/** The last FLAP_THRESHOLD moves of one (MAC, VLAN): when, from which owner, to which claimant (rings). */
export class FlapRecord<P> {
  mac = 0;
  vlan = 0;
  /** Next slot to write; with `count` full, also the oldest. */
  head = 0;
  count = 0;
  readonly times: Float64Array;
  readonly owners: (P | null)[];
  readonly claimants: (P | null)[];
  /** 1: the move hold refused the claim (the owner kept the MAC). */
  readonly denied: Uint8Array;
  /** The claimant of the latest event and the owner's last use of the MAC then: a refused claim counts only if one of them changed since. */
  lastClaimant: P | null = null;
  lastOwnerSeen = -1;
  constructor(size: number) {
    this.times = new Float64Array(size);
    this.denied = new Uint8Array(size);
    this.owners = new Array<P | null>(size).fill(null);
    this.claimants = new Array<P | null>(size).fill(null);
  }
}

/**
 * The loop guard's memory: recent moves per (MAC, VLAN), for at most `cap`
 * MACs (the least recently moved is forgotten, its record reused). Only moves
 * reach it; a refreshed source never does.
 */
export class FlapTracker<P> {
  private readonly byVlan = new Map<number, Map<number, FlapRecord<P>>>();
  /** Least recently moved first (a Set iterates in insertion order). */
  private readonly order = new Set<FlapRecord<P>>();

  constructor(private readonly threshold: number, private readonly windowMs: number, private readonly cap: number) {}

  /**
   * Record one move; the record when `threshold` of its moves fall within the
   * window, else null. A claim the move hold refused counts only when it
   * interleaves: the owner used the MAC since the last event (`ownerSeen`, its
   * entry's last refresh, moved), or another port claims it. A MAC that merely
   * moved (a migrated VM: the old port silent, the new one refused for the
   * hold) is one event, not a loop.
   */
  note(mac: number, vlan: number, owner: P | null, claimant: P, denied: boolean, now: number, ownerSeen = -1): FlapRecord<P> | null {
    let macs = this.byVlan.get(vlan);
    let r = macs?.get(mac);
    if (r === undefined) {
      r = this.take();
      r.mac = mac;
      r.vlan = vlan;
      if (macs === undefined) {
        macs = new Map();
        this.byVlan.set(vlan, macs);
      }
      macs.set(mac, r);
    } else {
      if (denied && r.count > 0 && claimant === r.lastClaimant && ownerSeen === r.lastOwnerSeen) return null;
      this.order.delete(r);
    }
    r.lastClaimant = claimant;
    r.lastOwnerSeen = ownerSeen;
    this.order.add(r);
    const k = this.threshold;
    r.times[r.head] = now;
    r.owners[r.head] = owner;
    r.claimants[r.head] = claimant;
    r.denied[r.head] = denied ? 1 : 0;
    r.head = (r.head + 1) % k;
    if (r.count < k) r.count++;
    const span = now - r.times[r.head]!;
    // A clock stepped back makes old moves look recent: they do not count.
    return r.count === k && span >= 0 && span <= this.windowMs ? r : null;
  }

  /** Start the record over (after it blocked a port). */
  reset(r: FlapRecord<P>): void {
    r.count = 0;
    r.head = 0;
    r.owners.fill(null);
    r.claimants.fill(null);
    r.lastClaimant = null;
    r.lastOwnerSeen = -1;
  }

  /** A removed port must not be kept alive (or blocked) by old records. */
  forgetPort(p: P): void {
    for (const r of this.order) {
      for (let i = 0; i < r.owners.length; i++) {
        if (r.owners[i] === p) r.owners[i] = null;
        if (r.claimants[i] === p) r.claimants[i] = null;
      }
      if (r.lastClaimant === p) r.lastClaimant = null;
    }
  }

  /** A fresh record, or, at the cap, the least recently moved one taken back. */
  private take(): FlapRecord<P> {
    if (this.order.size < this.cap) return new FlapRecord<P>(this.threshold);
    const old = this.order.values().next().value!;
    this.order.delete(old);
    const macs = this.byVlan.get(old.vlan)!;
    macs.delete(old.mac);
    if (macs.size === 0) this.byVlan.delete(old.vlan);
    this.reset(old);
    return old;
  }
}
