// Session indices: the random, non-zero 32-bit numbers a receiver chooses for
// each of its sessions and finds them by (WireGuard's receiver index). One
// table per side; randomness is injected so tests can replay a run.
import { randomBytes } from 'node:crypto';

/** Source of randomness: n random bytes (node:crypto's randomBytes by default). */
export type RandomBytes = (n: number) => Buffer;

/** A uniformly random u32 from `random`. */
export function randomU32(random: RandomBytes): number {
  return random(4).readUInt32BE(0);
}

/** A random fraction in [0, 1) from `random` (backoff jitter). */
export function randomFraction(random: RandomBytes): number {
  return randomU32(random) / 0x1_0000_0000;
}

/** Index -> value, with indices chosen at random among the unused non-zero ones. */
export class IndexTable<T> {
  private readonly byIndex = new Map<number, T>();

  constructor(private readonly random: RandomBytes = randomBytes) {}

  /** A fresh index for `value`. */
  allocate(value: T): number {
    for (;;) {
      const i = randomU32(this.random);
      if (i !== 0 && !this.byIndex.has(i)) {
        this.byIndex.set(i, value);
        return i;
      }
    }
  }

  /** A fresh index whose value comes later (set), e.g. once a handshake it is written into succeeds. */
  reserve(): number {
    return this.allocate(undefined as T);
  }

  /** Give a reserved index its value. */
  set(index: number, value: T): void {
    this.byIndex.set(index, value);
  }

  get(index: number): T | undefined {
    return this.byIndex.get(index);
  }

  delete(index: number): boolean {
    return this.byIndex.delete(index);
  }

  get size(): number {
    return this.byIndex.size;
  }
}
