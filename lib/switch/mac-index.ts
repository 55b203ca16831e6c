// The MAC table's index: (48-bit MAC, 12-bit VLAN) -> value, open addressing
// over one typed array of keys. A Map<number, ...> keyed by the MAC costs
// ~520 ns a lookup at 100k entries (a HeapNumber key per lookup, and a chain of
// pointers to chase); this is ~150 ns: the key words sit together, and the
// value is one load away.
import { EtherlinkError } from '../core/errors.js';

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

/** Open addressing with linear probing; deletion shifts the run back, so no tombstones. */
export class MacIndex<V> {
  /** Two words a slot: the MAC's low 32 bits, then highWord (0: empty). */
  private keys = new Int32Array(INITIAL_SLOTS * 2);
  private values: (V | undefined)[] = new Array<V | undefined>(INITIAL_SLOTS).fill(undefined);
  private mask = INITIAL_SLOTS - 1;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(mac: number, vlan: number): V | undefined {
    if (vlan >>> 12 !== 0) return undefined;
    const keys = this.keys;
    const low = mac | 0;
    const high = highWord(mac, vlan);
    const mask = this.mask;
    for (let i = home(low, high, mask); ; i = (i + 1) & mask) {
      const k = keys[2 * i + 1]!;
      if (k === 0) return undefined;
      if (k === high && keys[2 * i] === low) return this.values[i];
    }
  }

  /** Insert, or replace the value of an existing key. */
  set(mac: number, vlan: number, value: V): void {
    if (vlan >>> 12 !== 0 || !Number.isInteger(vlan)) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `MAC table VLAN must be 0..4095, got ${vlan}`);
    if ((this.count + 1) * 2 > this.values.length) this.resize(this.values.length * 2);
    const low = mac | 0;
    const high = highWord(mac, vlan);
    const keys = this.keys;
    const mask = this.mask;
    let i = home(low, high, mask);
    for (; keys[2 * i + 1] !== 0; i = (i + 1) & mask) {
      if (keys[2 * i + 1] === high && keys[2 * i] === low) {
        this.values[i] = value;
        return;
      }
    }
    keys[2 * i] = low;
    keys[2 * i + 1] = high;
    this.values[i] = value;
    this.count++;
  }

  delete(mac: number, vlan: number): boolean {
    if (vlan >>> 12 !== 0) return false;
    const keys = this.keys;
    const low = mac | 0;
    const high = highWord(mac, vlan);
    const mask = this.mask;
    let i = home(low, high, mask);
    for (; ; i = (i + 1) & mask) {
      const k = keys[2 * i + 1]!;
      if (k === 0) return false;
      if (k === high && keys[2 * i] === low) break;
    }
    // Backward shift: pull later members of the run into the hole while their home allows it.
    for (let j = (i + 1) & mask; keys[2 * j + 1] !== 0; j = (j + 1) & mask) {
      const h = home(keys[2 * j]!, keys[2 * j + 1]!, mask);
      // j's entry may move to i only if its home is not cyclically within (i, j].
      if (i <= j ? h > i && h <= j : h > i || h <= j) continue;
      keys[2 * i] = keys[2 * j]!;
      keys[2 * i + 1] = keys[2 * j + 1]!;
      this.values[i] = this.values[j];
      i = j;
    }
    keys[2 * i] = 0;
    keys[2 * i + 1] = 0;
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

  clear(): void {
    this.keys = new Int32Array(INITIAL_SLOTS * 2);
    this.values = new Array<V | undefined>(INITIAL_SLOTS).fill(undefined);
    this.mask = INITIAL_SLOTS - 1;
    this.count = 0;
  }

  private resize(slots: number): void {
    const oldKeys = this.keys;
    const oldValues = this.values;
    const keys = new Int32Array(slots * 2);
    const values = new Array<V | undefined>(slots).fill(undefined);
    const mask = slots - 1;
    for (let s = 0; s < oldValues.length; s++) {
      const high = oldKeys[2 * s + 1]!;
      if (high === 0) continue;
      const low = oldKeys[2 * s]!;
      let i = home(low, high, mask);
      while (keys[2 * i + 1] !== 0) i = (i + 1) & mask;
      keys[2 * i] = low;
      keys[2 * i + 1] = high;
      values[i] = oldValues[s];
    }
    this.keys = keys;
    this.values = values;
    this.mask = mask;
  }
}
