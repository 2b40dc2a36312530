/**
 * A hash map from numbers to rows for unique hash indexes on one numeric column (a primary key of
 * ids, phone numbers, meter ids). A JavaScript Map stores such keys as boxed heap numbers: a probe
 * walks a bucket chain and loads each boxed key from wherever it lives on the heap, a cache miss
 * per step, and on tables of millions of rows that probe was the largest single cost of a Vote.
 * Here the keys sit unboxed in a Float64Array with linear probing, so a probe reads one or two
 * adjacent cache lines, and the garbage collector never scans the keys.
 *
 * Semantics are Map's for numbers (SameValueZero): -0 and 0 are one key, NaN equals NaN.
 * Deletion shifts later entries of the probe run back (no tombstones), so lookups stay short
 * after many deletes.
 */
import { assert } from '../assert.ts';
import type { Row } from '../types.ts';
import type { HashKey } from './index-key.ts';

/** Slots per entry before the table doubles: at most half full keeps probe runs short. */
const loadFactorMax = 0.5;
const initialCapacity = 16;

const scratch = new Float64Array(1);
const scratchWords = new Int32Array(scratch.buffer);

/** Spreads the 64 bits of a double over a 32-bit hash (murmur3's finalizer). */
function hashNumber(key: number): number {
  scratch[0] = key;
  let hash = Math.imul(scratchWords[0], 0x9e3779b1) ^ scratchWords[1];
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash;
}

/** What a unique hash index needs of its key → row map: a Map, or a NumberMap for number keys. */
export interface UniqueRows {
  get(key: HashKey): Row | undefined;
  set(key: HashKey, row: Row): unknown;
  delete(key: HashKey): boolean;
  readonly size: number;
}

export class NumberMap implements UniqueRows {
  private keys: Float64Array;
  /** The row of each slot; undefined marks a free slot. */
  private rows: (Row | undefined)[];
  private mask: number;
  private count = 0;
  /** NaN never equals itself in a Float64Array comparison: its one entry lives here. */
  private nanRow: Row | undefined;

  constructor() {
    this.keys = new Float64Array(initialCapacity);
    this.rows = new Array<Row | undefined>(initialCapacity).fill(undefined);
    this.mask = initialCapacity - 1;
  }

  get size(): number {
    return this.count + (this.nanRow === undefined ? 0 : 1);
  }

  /** The row stored under `key`; undefined for a key that is not a number (never stored). */
  get(key: HashKey): Row | undefined {
    if (typeof key !== 'number') return undefined;
    if (key !== key) return this.nanRow;
    const keys = this.keys;
    const rows = this.rows;
    const mask = this.mask;
    // +0 for -0: both hash alike, as Map treats them as one key.
    let slot = hashNumber(key === 0 ? 0 : key) & mask;
    for (;;) {
      const row = rows[slot];
      if (row === undefined) return undefined;
      if (keys[slot] === key) return row;
      slot = (slot + 1) & mask;
    }
  }

  set(key: HashKey, row: Row): void {
    assert(typeof key === 'number', 'a number-keyed index stores only numbers (canonical values of a numeric column)');
    if (key !== key) {
      this.nanRow = row;
      return;
    }
    const normalized = key === 0 ? 0 : key;
    let slot = hashNumber(normalized) & this.mask;
    for (;;) {
      const existing = this.rows[slot];
      if (existing === undefined) break;
      if (this.keys[slot] === normalized) {
        this.rows[slot] = row;
        return;
      }
      slot = (slot + 1) & this.mask;
    }
    this.keys[slot] = normalized;
    this.rows[slot] = row;
    this.count++;
    if (this.count > (this.mask + 1) * loadFactorMax) this.grow();
  }

  delete(key: HashKey): boolean {
    if (typeof key !== 'number') return false;
    if (key !== key) {
      const had = this.nanRow !== undefined;
      this.nanRow = undefined;
      return had;
    }
    const keys = this.keys;
    const rows = this.rows;
    const mask = this.mask;
    let slot = hashNumber(key === 0 ? 0 : key) & mask;
    for (;;) {
      if (rows[slot] === undefined) return false;
      if (keys[slot] === key) break;
      slot = (slot + 1) & mask;
    }
    // Backward-shift deletion: move each later entry of the run into the hole when its home slot
    // does not lie (cyclically) between the hole and its current slot.
    let hole = slot;
    let next = (hole + 1) & mask;
    while (rows[next] !== undefined) {
      const home = hashNumber(keys[next]) & mask;
      const movable = hole <= next ? home <= hole || home > next : home <= hole && home > next;
      if (movable) {
        keys[hole] = keys[next];
        rows[hole] = rows[next];
        hole = next;
      }
      next = (next + 1) & mask;
    }
    rows[hole] = undefined;
    keys[hole] = 0;
    this.count--;
    return true;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldRows = this.rows;
    const capacity = oldKeys.length * 2;
    this.keys = new Float64Array(capacity);
    this.rows = new Array<Row | undefined>(capacity).fill(undefined);
    this.mask = capacity - 1;
    const keys = this.keys;
    const rows = this.rows;
    const mask = this.mask;
    for (let i = 0; i < oldKeys.length; i++) {
      const row = oldRows[i];
      if (row === undefined) continue;
      const key = oldKeys[i];
      let slot = hashNumber(key) & mask;
      while (rows[slot] !== undefined) slot = (slot + 1) & mask;
      keys[slot] = key;
      rows[slot] = row;
    }
  }
}
