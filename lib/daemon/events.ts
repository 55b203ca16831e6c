// The recent events of a daemon (joins, leaves, MAC moves, refused claims,
// rekeys, path changes, loop guard and storm control; a vport's own joins,
// pair sessions, paths, link and problems): a small bounded ring that the
// status report and the live web view read.

/** How many events a daemon keeps: older ones are overwritten. */
export const EVENT_LOG_CAPACITY = 200;

/** What happened: a port joined or left, a MAC moved or a move was refused, a rekey, a path change, a guard acted. */
export type LiveEventKind =
  | 'join'
  | 'leave'
  | 'mac-move'
  | 'mac-move-refused'
  | 'rekey'
  | 'path'
  | 'storm'
  | 'port-blocked'
  | 'port-unblocked'
  | 'mac-limit'
  | 'pair'
  | 'link'
  | 'problem';

/** One event as status and the web view show it: JSON-safe. */
export interface LiveEvent {
  /** Increasing from 1 in this process: a reader asks for what came after the last it saw. */
  seq: number;
  /** ISO 8601. */
  time: string;
  kind: LiveEventKind;
  port?: string;
  network?: string;
  text: string;
}

/** A fixed-size ring of the latest events, oldest overwritten first. Never grows past its capacity. */
export class EventLog {
  private readonly ring: (LiveEvent | undefined)[];
  private next = 0;
  private seq = 0;

  constructor(readonly capacity = EVENT_LOG_CAPACITY, private readonly clock: () => number = Date.now) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`EventLog capacity must be a positive integer (got ${capacity})`);
    this.ring = new Array<LiveEvent | undefined>(capacity);
  }

  /** Record an event now; the oldest is overwritten once the ring is full. */
  add(kind: LiveEventKind, text: string, where: { port?: string | undefined; network?: string | undefined } = {}): LiveEvent {
    const e: LiveEvent = {
      seq: ++this.seq,
      time: new Date(this.clock()).toISOString(),
      kind,
      ...(where.port !== undefined ? { port: where.port } : {}),
      ...(where.network !== undefined ? { network: where.network } : {}),
      text,
    };
    this.ring[this.next] = e;
    this.next = (this.next + 1) % this.capacity;
    return e;
  }

  /** The events kept, oldest first; only those after `afterSeq` when given. */
  list(afterSeq = 0): LiveEvent[] {
    const out: LiveEvent[] = [];
    for (let i = 0; i < this.capacity; i++) {
      const e = this.ring[(this.next + i) % this.capacity];
      if (e !== undefined && e.seq > afterSeq) out.push(e);
    }
    return out;
  }

  /** Events added since this log was made (kept or overwritten). */
  get total(): number {
    return this.seq;
  }
}
