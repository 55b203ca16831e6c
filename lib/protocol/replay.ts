// The receive-side replay filter for transport counters: a sliding bitmap window
// as in RFC 6479 and wireguard-go's replay/replay.go, sized by lib/protocol/constants.ts.
import {
  REJECT_AFTER_MESSAGES,
  REPLAY_BLOCK_BITS,
  REPLAY_RING_BLOCKS,
  REPLAY_WINDOW_SIZE,
} from './constants.js';

/**
 * Accepts each counter at most once, and refuses counters more than
 * REPLAY_WINDOW_SIZE (8160) behind the highest accepted one. Call it only for
 * datagrams that authenticated: an attacker must not be able to move the window.
 */
export class ReplayWindow {
  /** Bit i of the ring is counter (block * 32 + bit) within the window. */
  private readonly ring: Uint32Array;
  /** Highest counter accepted so far (0 before any: counter 0 is then checked by its bit). */
  private last = 0;

  /**
   * @param limit counters at or above this are refused (REJECT_AFTER_MESSAGES).
   * @param ring the bitmap's storage, REPLAY_RING_BLOCKS words of zeros (a view
   *   into a larger buffer saves memory per session); a new one when omitted.
   */
  constructor(
    private readonly limit: number = REJECT_AFTER_MESSAGES,
    ring?: Uint32Array,
  ) {
    if (ring !== undefined && ring.length !== REPLAY_RING_BLOCKS) throw new RangeError(`a replay ring has ${REPLAY_RING_BLOCKS} words, not ${ring.length}`);
    this.ring = ring ?? new Uint32Array(REPLAY_RING_BLOCKS);
  }

  /** True, and remembered, if `counter` was never seen and is inside the window and below the limit. */
  checkAndUpdate(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= this.limit) return false;
    const block = Math.floor(counter / REPLAY_BLOCK_BITS);
    if (counter > this.last) {
      // Slide forward: clear the blocks the window moves over (at most the whole ring).
      const current = Math.floor(this.last / REPLAY_BLOCK_BITS);
      const diff = Math.min(block - current, REPLAY_RING_BLOCKS);
      for (let i = current + 1; i <= current + diff; i++) this.ring[i % REPLAY_RING_BLOCKS] = 0;
      this.last = counter;
    } else if (this.last - counter > REPLAY_WINDOW_SIZE) {
      return false;
    }
    const index = block % REPLAY_RING_BLOCKS;
    const bit = (1 << counter % REPLAY_BLOCK_BITS) >>> 0;
    const old = this.ring[index]!;
    if ((old & bit) !== 0) return false;
    this.ring[index] = (old | bit) >>> 0;
    return true;
  }

  /**
   * Whether checkAndUpdate would accept `counter`, without changing anything: lets
   * a receiver skip decrypting an obvious replay. The real check still follows decryption.
   */
  wouldAccept(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= this.limit) return false;
    if (counter > this.last) return true;
    if (this.last - counter > REPLAY_WINDOW_SIZE) return false;
    const bit = (1 << counter % REPLAY_BLOCK_BITS) >>> 0;
    return (this.ring[Math.floor(counter / REPLAY_BLOCK_BITS) % REPLAY_RING_BLOCKS]! & bit) === 0;
  }

  /** Highest counter accepted so far. */
  get highest(): number {
    return this.last;
  }

  reset(): void {
    this.ring.fill(0);
    this.last = 0;
  }
}
