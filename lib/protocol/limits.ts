// What unauthenticated input may cost us, and how often we retry: token buckets
// for replies and log lines, the per-source handshake limiter (bounded, least
// recently seen forgotten first, as wireguard-go's ratelimiter), and the backoff.
// Time comes in as millisecond numbers.
import {
  HANDSHAKE_SOURCE_BURST,
  HANDSHAKES_PER_SOURCE_PER_S,
  RATE_LIMIT_TABLE_MAX,
  REJOIN_BACKOFF_INITIAL_MS,
  REJOIN_BACKOFF_JITTER,
  REJOIN_BACKOFF_MAX_MS,
} from './constants.js';

/**
 * A token bucket: `perSecond` refill, `burst` capacity. Bounds what a spoofed
 * source can make us send (no reflection) or log (no log flooding).
 */
export class TokenBucket {
  private tokens: number;
  private last: number | undefined;

  constructor(
    readonly perSecond: number,
    readonly burst: number = perSecond,
  ) {
    this.tokens = burst;
  }

  /** Take one token at time `now`; false when the bucket is empty. */
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

  /** Whether the bucket would be full again at `now` (an idle source: nothing worth remembering). */
  fullAt(now: number): boolean {
    return this.last === undefined || this.tokens + ((now - this.last) * this.perSecond) / 1000 >= this.burst;
  }
}

/**
 * One token bucket per source (handshake initiations per host). It is the only
 * state unauthenticated input can create, so it is bounded: when full, the
 * least recently seen source is forgotten (a source that comes back starts
 * with a full bucket, which is at most `burst` extra initiations).
 */
export class SourceLimiter {
  // A Map iterates in insertion order; re-inserting on every hit keeps it LRU-ordered.
  private readonly table = new Map<string, TokenBucket>();

  constructor(
    readonly maxSources: number = RATE_LIMIT_TABLE_MAX,
    private readonly perSecond: number = HANDSHAKES_PER_SOURCE_PER_S,
    private readonly burst: number = HANDSHAKE_SOURCE_BURST,
  ) {}

  allow(source: string, now: number): boolean {
    let b = this.table.get(source);
    if (b === undefined) {
      if (this.table.size >= this.maxSources) this.table.delete(this.table.keys().next().value!);
      b = new TokenBucket(this.perSecond, this.burst);
    } else {
      this.table.delete(source);
    }
    this.table.set(source, b);
    return b.take(now);
  }

  /** Forget sources whose bucket has refilled: they have been quiet long enough. */
  prune(now: number): void {
    for (const [k, b] of this.table) if (b.fullAt(now)) this.table.delete(k);
  }

  get size(): number {
    return this.table.size;
  }
}

/**
 * Delay before handshake attempt number `step`+1 of a series: 500 ms doubling
 * to 10 s, shortened by up to 25 % (r in [0, 1)) so ports that lost the same
 * switch don't come back in lockstep. Jitter only shortens, so the maximum holds.
 */
export function rejoinBackoffMs(step: number, r: number): number {
  const base = Math.min(REJOIN_BACKOFF_MAX_MS, REJOIN_BACKOFF_INITIAL_MS * 2 ** Math.min(step, 30));
  return base * (1 - REJOIN_BACKOFF_JITTER * r);
}
