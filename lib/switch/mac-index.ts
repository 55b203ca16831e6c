// The MAC table's index: (48-bit MAC, 12-bit VLAN) -> a 32-byte slot (the key,
// a word and a clock for the owner) and a value, by open addressing. A Map
// keyed by the MAC costs ~520 ns a lookup at 100k entries (a HeapNumber key per
// call, then bucket, chain and key pointers to chase, then the entry object);
// here the key and what the forwarding path reads share one slot, in one cache line.
import { EtherlinkError } from '../core/errors.js';

/** Int32 words per slot: MAC low 32 bits, highWord, the owner's word (WORD_A), padding, then the clock as a float64. */
export const SLOT_WORDS = 8;
export const WORD_A = 2;
/** The slot's clock in `clocks`: clocks[slot * SLOT_CLOCKS + CLOCK]. */
export const SLOT_CLOCKS = SLOT_WORDS / 2;
export const CLOCK = 2;
/** Slots at first; the table doubles when it is half full. */
const INITIAL_SLOTS = 64;
const TWO_32 = 2 ** 32;
/** Marks a slot in use in the key's high word (VLAN and MAC high bits take the 28 below it). */
const USED = 1 << 28;

/** The key's high word: the MAC's top 16 bits, the VLAN, and USED. */
function highWord(mac: number, vlan: number): number {
  return USED | (vlan << 16) | ((mac / TWO_32) & 0xffff);
}

function home(low: number, high: number, mask: number): number {
  let h = Math.imul(low ^ Math.imul(high, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 15;
  return h & mask;
}

/**
 * Open addressing with linear probing; deletion shifts the run back, so no
 * tombstones. A slot number is valid until the next set or delete (either may
 * move slots, and `words` is replaced when the table grows).
 */
export class MacIndex<V> {
  /** SLOT_WORDS a slot; a slot is empty when its high word (index 1) is 0. */
  words = new Int32Array(INITIAL_SLOTS * SLOT_WORDS);
  /** The same memory as float64s, for the clocks. */
  clocks = new Float64Array(this.words.buffer);
  private values: (V | undefined)[] = new Array<V | undefined>(INITIAL_SLOTS).fill(undefined);
  private mask = INITIAL_SLOTS - 1;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The slot of (mac, vlan), or -1. */
  find(mac: number, vlan: number): number {
    if (vlan >>> 12 !== 0) return -1;
    const w = this.words;
    const low = mac | 0;
    const high = highWord(mac, vlan);
    const mask = this.mask;
    for (let i = home(low, high, mask); ; i = (i + 1) & mask) {
      const k = w[i * SLOT_WORDS + 1]!;
      if (k === 0) return -1;
      if (k === high && w[i * SLOT_WORDS] === low) return i;
    }
  }

  get(mac: number, vlan: number): V | undefined {
    const s = this.find(mac, vlan);
    return s < 0 ? undefined : this.values[s];
  }

  valueAt(slot: number): V {
    return this.values[slot]!;
  }

  /** Insert (mac, vlan) with its value, word and clock, or replace them; returns its slot. */
  set(mac: number, vlan: number, value: V, a: number, clock: number): number {
    if (vlan >>> 12 !== 0 || !Number.isInteger(vlan)) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `MAC table VLAN must be 0..4095, got ${vlan}`);
    if ((this.count + 1) * 2 > this.values.length) this.resize(this.values.length * 2);
    const low = mac | 0;
    const high = highWord(mac, vlan);
    const w = this.words;
    const mask = this.mask;
    let i = home(low, high, mask);
    for (; w[i * SLOT_WORDS + 1] !== 0; i = (i + 1) & mask) if (w[i * SLOT_WORDS + 1] === high && w[i * SLOT_WORDS] === low) break;
    if (w[i * SLOT_WORDS + 1] === 0) this.count++;
    w[i * SLOT_WORDS] = low;
    w[i * SLOT_WORDS + 1] = high;
    w[i * SLOT_WORDS + WORD_A] = a;
    this.clocks[i * SLOT_CLOCKS + CLOCK] = clock;
    this.values[i] = value;
    return i;
  }

  delete(mac: number, vlan: number): boolean {
    let i = this.find(mac, vlan);
    if (i < 0) return false;
    const w = this.words;
    const mask = this.mask;
    // Backward shift: pull later members of the run into the hole while their home allows it.
    for (let j = (i + 1) & mask; w[j * SLOT_WORDS + 1] !== 0; j = (j + 1) & mask) {
      const h = home(w[j * SLOT_WORDS]!, w[j * SLOT_WORDS + 1]!, mask);
      // j's entry may move to i only if its home is not cyclically within (i, j].
      if (i <= j ? h > i && h <= j : h > i || h <= j) continue;
      w.copyWithin(i * SLOT_WORDS, j * SLOT_WORDS, (j + 1) * SLOT_WORDS);
      this.values[i] = this.values[j];
      i = j;
    }
    w.fill(0, i * SLOT_WORDS, (i + 1) * SLOT_WORDS);
    this.values[i] = undefined;
    this.count--;
    return true;
  }

  /** Every value, in slot order (a copy: the caller may delete while walking it). */
  list(): V[] {
    const out: V[] = [];
    for (const v of this.values) if (v !== undefined) out.push(v);
    return out;
  }

  /** Slots in use, with their value: for walks over the slots (sweep). */
  forEachSlot(fn: (slot: number, value: V) => void): void {
    for (let s = 0; s < this.values.length; s++) if (this.words[s * SLOT_WORDS + 1] !== 0) fn(s, this.values[s]!);
  }

  clear(): void {
    this.words = new Int32Array(INITIAL_SLOTS * SLOT_WORDS);
    this.clocks = new Float64Array(this.words.buffer);
    this.values = new Array<V | undefined>(INITIAL_SLOTS).fill(undefined);
    this.mask = INITIAL_SLOTS - 1;
    this.count = 0;
  }

  private resize(slots: number): void {
    const old = this.words;
    const oldValues = this.values;
    const w = new Int32Array(slots * SLOT_WORDS);
    const values = new Array<V | undefined>(slots).fill(undefined);
    const mask = slots - 1;
    for (let s = 0; s < oldValues.length; s++) {
      const high = old[s * SLOT_WORDS + 1]!;
      if (high === 0) continue;
      let i = home(old[s * SLOT_WORDS]!, high, mask);
      while (w[i * SLOT_WORDS + 1] !== 0) i = (i + 1) & mask;
      w.set(old.subarray(s * SLOT_WORDS, (s + 1) * SLOT_WORDS), i * SLOT_WORDS);
      values[i] = oldValues[s];
    }
    this.words = w;
    this.clocks = new Float64Array(w.buffer);
    this.values = values;
    this.mask = mask;
  }
}
