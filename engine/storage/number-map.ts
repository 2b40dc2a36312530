/**
 * A hash map from numbers to rows for unique hash indexes on one numeric column (a primary key of
 * ids, phone numbers, meter ids). A JavaScript Map stores such keys as boxed heap numbers: a probe
 * walks a bucket chain and loads each boxed key from wherever it lives on the heap, a cache miss
 * per step, and on tables of millions of rows that probe was the largest single cost of a Vote.
 * Here the keys sit unboxed in a Float64Array with linear probing, so a probe reads one or two
 * adjacent cache lines, and the garbage collector never scans the keys.
 *
 * Semantics are Map's for numbers (SameValueZero): -0 and 0 are one key, NaN equals NaN.
 * Deletion shifts later entries of the probe run back (no tombstones outside a drain, below), so
 * lookups stay short after many deletes.
 *
 * Growing never stops the partition for long. Doubling a table of a million keys at once took
 * ~80 ms here (allocating the new row array alone ~30 ms, its pages faulted in), and ~330 ms at
 * two million: every call queued behind that insert waited as long. So keys and row references sit
 * in chunks of 65,536 slots, allocated when first written, and a full table is drained into its
 * successor a few slots per write: until the old table is empty, lookups try the new table and
 * then the old one, where moved entries leave tombstones so the probe runs of the rest stay whole.
 */
import { assert } from '../assert.ts';
import type { Row } from '../types.ts';
import type { HashKey } from './index-key.ts';

/** Slots per entry before the table doubles: at most half full keeps probe runs short. */
const loadFactorMax = 0.5;
const initialCapacity = 16;
const chunkBits = 16;
/** Slots per chunk (512 KiB of keys, as much of row references): allocating one is a short pause. */
const chunkSize = 1 << chunkBits;
const chunkMask = chunkSize - 1;
/**
 * Old-table slots moved per write (set or delete) while draining. The drain ends after
 * capacity / 16 writes, long before the new table (twice the capacity, a quarter full at the
 * start) could fill: at most a sixteenth of the old capacity is inserted meanwhile.
 */
const drainSlotsPerOperation = 16;

type Chunk = (Row | undefined)[];
/** Stands for every chunk not yet written: reads find free slots there without a branch. */
const unwrittenChunk: Chunk = new Array<Row | undefined>(chunkSize).fill(undefined);
/** The keys of every chunk not yet written (never written to). */
const unwrittenKeys = new Float64Array(chunkSize);
/** Marks a slot of a draining table whose entry has moved: probes go on past it. */
const moved: Row = [];

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

/** One open-addressing table: keys unboxed, keys and rows in chunks; a free slot holds undefined. */
class SlotTable {
  readonly keyChunks: Float64Array[];
  readonly chunks: Chunk[];
  readonly mask: number;

  constructor(capacity: number) {
    this.mask = capacity - 1;
    if (capacity <= chunkSize) {
      this.keyChunks = [new Float64Array(capacity)];
      this.chunks = [new Array<Row | undefined>(capacity).fill(undefined)];
    } else {
      // Allocating the keys at once too would be one large external allocation, which V8 answers
      // with a full collection at once (~350 ms on a heap of 2M rows here).
      this.keyChunks = new Array<Float64Array>(capacity >>> chunkBits).fill(unwrittenKeys);
      this.chunks = new Array<Chunk>(capacity >>> chunkBits).fill(unwrittenChunk);
    }
  }

  get capacity(): number {
    return this.mask + 1;
  }

  row(slot: number): Row | undefined {
    return this.chunks[slot >>> chunkBits][slot & chunkMask];
  }

  /** The key in an occupied slot. */
  key(slot: number): number {
    return this.keyChunks[slot >>> chunkBits][slot & chunkMask];
  }

  /** Sets a slot's row (undefined frees it); its key too, unless `key` is undefined. */
  set(slot: number, key: number | undefined, row: Row | undefined): void {
    const index = slot >>> chunkBits;
    let chunk = this.chunks[index];
    if (chunk === unwrittenChunk) {
      chunk = new Array<Row | undefined>(chunkSize).fill(undefined);
      this.chunks[index] = chunk;
      this.keyChunks[index] = new Float64Array(chunkSize);
    }
    chunk[slot & chunkMask] = row;
    if (key !== undefined) this.keyChunks[index][slot & chunkMask] = key;
  }

  /** The slot holding `key`, or -1. Tombstones (draining tables only) are passed over. */
  find(key: number): number {
    const keyChunks = this.keyChunks;
    const chunks = this.chunks;
    const mask = this.mask;
    let slot = hashNumber(key === 0 ? 0 : key) & mask;
    for (;;) {
      const row = chunks[slot >>> chunkBits][slot & chunkMask];
      if (row === undefined) return -1;
      if (keyChunks[slot >>> chunkBits][slot & chunkMask] === key && row !== moved) return slot;
      slot = (slot + 1) & mask;
    }
  }

  /** Puts a key known to be absent into its first free slot. */
  insert(key: number, row: Row): void {
    this.set(this.freeSlot(key), key, row);
  }

  /**
   * `insert`, but only where a draining table's cursor has not passed yet (the drain moves it on
   * later); false when the first free slot lies behind `cursor`.
   */
  insertAhead(key: number, row: Row, cursor: number): boolean {
    const slot = this.freeSlot(key);
    if (slot < cursor) return false;
    this.set(slot, key, row);
    return true;
  }

  /** The first free slot of `key`'s probe run (tombstones are not free). */
  private freeSlot(key: number): number {
    const chunks = this.chunks;
    const mask = this.mask;
    let slot = hashNumber(key) & mask;
    while (chunks[slot >>> chunkBits][slot & chunkMask] !== undefined) slot = (slot + 1) & mask;
    return slot;
  }

  /**
   * Backward-shift deletion: moves each later entry of the run into the hole when its home slot
   * does not lie (cyclically) between the hole and its current slot.
   */
  removeAt(slot: number): void {
    const mask = this.mask;
    let hole = slot;
    let next = (hole + 1) & mask;
    for (let row = this.row(next); row !== undefined; row = this.row(next)) {
      const key = this.key(next);
      const home = hashNumber(key) & mask;
      const movable = hole <= next ? home <= hole || home > next : home <= hole && home > next;
      if (movable) {
        this.set(hole, key, row);
        hole = next;
      }
      next = (next + 1) & mask;
    }
    this.set(hole, 0, undefined);
  }
}

export class NumberMap implements UniqueRows {
  private table = new SlotTable(initialCapacity);
  /** The table being emptied into `table` after a growth, or undefined. */
  private draining: SlotTable | undefined;
  private drainCursor = 0;
  /** Entries in both tables. */
  private count = 0;
  /** NaN never equals itself in a Float64Array comparison: its one entry lives here. */
  private nanRow: Row | undefined;

  get size(): number {
    return this.count + (this.nanRow === undefined ? 0 : 1);
  }

  /** The row stored under `key`; undefined for a key that is not a number (never stored). */
  get(key: HashKey): Row | undefined {
    if (typeof key !== 'number') return undefined;
    if (key !== key) return this.nanRow;
    if (this.draining !== undefined) return this.getWhileDraining(key);
    // The probe of SlotTable.find, inlined: this lookup is the hot path of every keyed read.
    const table = this.table;
    const keyChunks = table.keyChunks;
    const chunks = table.chunks;
    const mask = table.mask;
    // +0 for -0: both hash alike, as Map treats them as one key.
    let slot = hashNumber(key === 0 ? 0 : key) & mask;
    for (;;) {
      const row = chunks[slot >>> chunkBits][slot & chunkMask];
      if (row === undefined) return undefined;
      if (keyChunks[slot >>> chunkBits][slot & chunkMask] === key) return row;
      slot = (slot + 1) & mask;
    }
  }

  /** Reads leave the drain to writes, which are what grows a table (and keeps a read cheap). */
  private getWhileDraining(key: number): Row | undefined {
    const slot = this.table.find(key);
    if (slot >= 0) return this.table.row(slot);
    const draining = this.draining!;
    const old = draining.find(key);
    return old < 0 ? undefined : draining.row(old);
  }

  set(key: HashKey, row: Row): void {
    assert(typeof key === 'number', 'a number-keyed index stores only numbers (canonical values of a numeric column)');
    if (key !== key) {
      this.nanRow = row;
      return;
    }
    if (this.draining !== undefined) {
      this.drain();
      const old = this.draining?.find(key) ?? -1;
      if (old >= 0) {
        this.draining!.set(old, undefined, row);
        return;
      }
    }
    const normalized = key === 0 ? 0 : key;
    const table = this.table;
    const slot = table.find(normalized);
    if (slot >= 0) {
      table.set(slot, undefined, row);
      return;
    }
    // While draining, a new key goes into the old table when its place there is still ahead of
    // the drain: the new table's chunks then fill in the drain's order, a few at a time, instead
    // of all of them within the first few hundred inserts (a burst V8 answers with a full
    // collection at once).
    const draining = this.draining;
    if (draining === undefined || !draining.insertAhead(normalized, row, this.drainCursor)) table.insert(normalized, row);
    this.count++;
    if (this.count > table.capacity * loadFactorMax) this.grow();
  }

  delete(key: HashKey): boolean {
    if (typeof key !== 'number') return false;
    if (key !== key) {
      const had = this.nanRow !== undefined;
      this.nanRow = undefined;
      return had;
    }
    if (this.draining !== undefined) {
      this.drain();
      const draining = this.draining;
      const old = draining?.find(key) ?? -1;
      if (old >= 0) {
        // A tombstone, not a shift: the drain cursor may already be past the run's later slots.
        draining!.set(old, undefined, moved);
        this.count--;
        return true;
      }
    }
    const slot = this.table.find(key);
    if (slot < 0) return false;
    this.table.removeAt(slot);
    this.count--;
    return true;
  }

  private grow(): void {
    // A drain always ends first (see drainSlotsPerOperation); this only keeps the invariant.
    while (this.draining !== undefined) this.drain();
    this.draining = this.table;
    this.drainCursor = 0;
    this.table = new SlotTable(this.table.capacity * 2);
  }

  /** Moves the next few entries of the draining table into the current one. */
  private drain(): void {
    const old = this.draining!;
    const end = Math.min(this.drainCursor + drainSlotsPerOperation, old.capacity);
    for (let slot = this.drainCursor; slot < end; slot++) {
      const row = old.row(slot);
      if (row === undefined || row === moved) continue;
      old.set(slot, undefined, moved);
      this.table.insert(old.key(slot), row);
    }
    this.drainCursor = end;
    if (end === old.capacity) this.draining = undefined;
  }
}
