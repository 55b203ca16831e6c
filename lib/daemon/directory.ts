// The switch's MAC directory for end-to-end sessions: which member knows
// which other member's entry (its key and the MACs the MAC table places behind
// it), and the PEER messages that keep them current. The MAC table stays the
// single source of truth; this only tells the members that use an entry when
// it changes (learned, moved away, aged, withdrawn) and when a member is gone.

/** What the directory asks of the switch. */
export interface DirectoryHost<M> {
  /** The PEER messages describing `target` (its MACs now), for `viewer` (SELF when they are the same). */
  describe(target: M, self: boolean): Buffer[];
  /** The PEER GONE message of `target`. */
  gone(target: M): Buffer;
  /** Send one long control message to `viewer`. */
  send(viewer: M, payload: Buffer): void;
}

export class Directory<M> {
  /** target -> the members told about it (itself included). */
  private readonly viewers = new Map<M, Set<M>>();
  /** viewer -> the targets it was told about. */
  private readonly watching = new Map<M, Set<M>>();
  private readonly dirty = new Set<M>();
  /** (viewer, target) entries to send whole, once. */
  private readonly initial: [M, M][] = [];
  private scheduled = false;
  /** PEER messages sent, for status and metrics. */
  sent = 0;

  constructor(private readonly host: DirectoryHost<M>) {}

  /** `viewer` uses `target`'s entry from now on: it gets it now and every change after. False if it already did. */
  subscribe(viewer: M, target: M): boolean {
    let v = this.viewers.get(target);
    if (v === undefined) {
      v = new Set();
      this.viewers.set(target, v);
    }
    if (v.has(viewer)) return false;
    v.add(viewer);
    let w = this.watching.get(viewer);
    if (w === undefined) {
      w = new Set();
      this.watching.set(viewer, w);
    }
    w.add(target);
    this.initial.push([viewer, target]);
    this.schedule();
    return true;
  }

  /** Send `viewer` the whole entry of `target` again (it asked: PEER_QUERY). Nothing if it is not subscribed. */
  resend(viewer: M, target: M): void {
    if (!this.knows(viewer, target)) return;
    this.initial.push([viewer, target]);
    this.schedule();
  }

  /** Whether `viewer` is told about `target`. */
  knows(viewer: M, target: M): boolean {
    return this.viewers.get(target)?.has(viewer) === true;
  }

  /** Members told about `target`, itself included. */
  viewerCount(target: M): number {
    return this.viewers.get(target)?.size ?? 0;
  }

  /** The members told about `target`, itself excluded (status). */
  viewersOf(target: M): M[] {
    return [...(this.viewers.get(target) ?? [])].filter((v) => v !== target);
  }

  /** `target`'s MACs changed: its viewers hear of it when the current batch is done. */
  changed(target: M): void {
    if (!this.viewers.has(target)) return;
    this.dirty.add(target);
    this.schedule();
  }

  /** `target` left or was revoked: everyone told about it hears so now, and it forgets what it was told. */
  remove(target: M): void {
    const v = this.viewers.get(target);
    this.viewers.delete(target);
    this.dirty.delete(target);
    if (v !== undefined) {
      const msg = this.host.gone(target);
      for (const viewer of v) {
        if (viewer === target) continue;
        this.watching.get(viewer)?.delete(target);
        this.host.send(viewer, msg);
        this.sent++;
      }
    }
    const w = this.watching.get(target);
    this.watching.delete(target);
    if (w !== undefined) for (const t of w) this.viewers.get(t)?.delete(target);
    for (let i = this.initial.length - 1; i >= 0; i--) {
      const [viewer, t] = this.initial[i]!;
      if (viewer === target || t === target) this.initial.splice(i, 1);
    }
  }

  /** Send what changed. Runs by itself after the current task; public for tests and shutdown. */
  flush(): void {
    this.scheduled = false;
    const initial = this.initial.splice(0);
    for (const [viewer, target] of initial) {
      if (this.dirty.has(target)) continue; // the change below covers it
      for (const m of this.host.describe(target, viewer === target)) {
        this.host.send(viewer, m);
        this.sent++;
      }
    }
    const dirty = [...this.dirty];
    this.dirty.clear();
    for (const target of dirty) {
      const v = this.viewers.get(target);
      if (v === undefined) continue;
      // The others first: a member starts sending from a new MAC end to end only
      // once it hears it is its own, and by then its peers should know it too.
      const others = this.host.describe(target, false);
      for (const viewer of v) {
        if (viewer === target) continue;
        for (const m of others) {
          this.host.send(viewer, m);
          this.sent++;
        }
      }
      if (v.has(target)) {
        for (const m of this.host.describe(target, true)) {
          this.host.send(target, m);
          this.sent++;
        }
      }
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }
}
