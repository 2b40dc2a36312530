/**
 * Secondary structures over a table's rows: hash indexes (equality, O(1)) and ordered indexes
 * (sorted-btree: equality on a prefix, ranges, ORDER BY). Both implement RowIndex so the table,
 * the undo log and the planner treat them alike. A row whose key has a NULL is not in a hash
 * index (equality never matches NULL) and never conflicts in a unique index, as in SQL.
 */
import BTreeModule from 'sorted-btree';
import type { IndexDef } from '../catalog/schema.ts';
import type { Row, Value } from '../types.ts';
import { compareOrderedKeys, encodeComposite, encodePart, keyHigh, type HashKey, type OrderedKey } from './index-key.ts';
import { NestedRows } from './nested-map.ts';
import { NumberMap, type UniqueRows } from './number-map.ts';

// sorted-btree is CommonJS: Node's ESM loader puts the class on `.default`, Vite's interop does not.
const BTree: typeof BTreeModule.default = (BTreeModule as unknown as { default?: typeof BTreeModule.default }).default ?? (BTreeModule as unknown as typeof BTreeModule.default);
type OrderedTree = InstanceType<typeof BTree<OrderedKey, Row>>;

export interface RowIndex {
  readonly def: IndexDef;
  /** For a unique index: the stored row with the same key as `row`, if any. */
  conflict(row: Row): Row | undefined;
  add(row: Row): void;
  remove(row: Row): void;
  /** Calls `visit` for each row whose leading key columns equal `values`; stops when it returns false. */
  forEachEqual(values: readonly Value[], visit: (row: Row) => boolean | void): void;
  readonly size: number;
}

function hasNull(row: Row, columns: readonly number[]): boolean {
  for (let i = 0; i < columns.length; i++) if (row[columns[i]] === null) return true;
  return false;
}

export class HashIndex implements RowIndex {
  readonly def: IndexDef;
  /** A unique index on one column (Map or NumberMap); undefined for `nested` and non-unique ones. */
  private readonly unique: UniqueRows | undefined;
  /** A unique index on several columns. */
  private readonly nested: NestedRows | undefined;
  private readonly buckets: Map<HashKey, Set<Row>> | undefined;
  private readonly single: number;
  private readonly columns: readonly number[];
  private readonly keyValues: Value[];
  private memoKey: HashKey | undefined;
  private memoRow: Row | undefined;

  /** `numberKeys`: the index has one column whose values are numbers (a NumberMap then holds a unique index). */
  constructor(def: IndexDef, numberKeys = false) {
    this.def = def;
    this.columns = def.columns;
    this.single = def.columns.length === 1 ? def.columns[0] : -1;
    this.keyValues = new Array(def.columns.length);
    if (def.unique && this.single < 0) this.nested = new NestedRows(def.columns.length);
    else if (def.unique) this.unique = numberKeys ? new NumberMap() : new Map<HashKey, Row>();
    else this.buckets = new Map();
  }

  get size(): number {
    return this.unique ? this.unique.size : this.nested ? this.nested.size : this.buckets!.size;
  }

  private rowKey(row: Row): HashKey {
    if (this.single >= 0) return encodePart(row[this.single]);
    for (let i = 0; i < this.columns.length; i++) this.keyValues[i] = row[this.columns[i]];
    return encodeComposite(this.keyValues);
  }

  /** The key for lookup values given in index column order. */
  valuesKey(values: readonly Value[]): HashKey {
    return this.single >= 0 ? encodePart(values[0]) : encodeComposite(values);
  }

  conflict(row: Row): Row | undefined {
    if (!this.def.unique || hasNull(row, this.columns)) return undefined;
    if (this.nested) return this.nested.find(row, this.columns);
    return this.unique!.get(this.rowKey(row));
  }

  add(row: Row): void {
    if (hasNull(row, this.columns)) return;
    if (this.nested) {
      this.nested.set(row, this.columns);
      return;
    }
    const key = this.rowKey(row);
    this.memoKey = undefined;
    if (this.unique) {
      this.unique.set(key, row);
      return;
    }
    const bucket = this.buckets!.get(key);
    if (bucket) bucket.add(row);
    else this.buckets!.set(key, new Set([row]));
  }

  remove(row: Row): void {
    if (hasNull(row, this.columns)) return;
    if (this.nested) {
      this.nested.remove(row, this.columns);
      return;
    }
    const key = this.rowKey(row);
    this.memoKey = undefined;
    if (this.unique) {
      if (this.unique.get(key) === row) this.unique.delete(key);
      return;
    }
    const bucket = this.buckets!.get(key);
    if (!bucket) return;
    bucket.delete(row);
    if (bucket.size === 0) this.buckets!.delete(key);
  }

  /** The one row with this key, for unique indexes (the point-lookup fast path). */
  getUnique(values: readonly Value[]): Row | undefined {
    for (let i = 0; i < values.length; i++) if (values[i] === null) return undefined;
    if (this.nested) return this.nested.find(values, undefined);
    const key = this.valuesKey(values);
    // A procedure often reads a key and then writes through it (read the view row, then insert
    // the source row, whose view maintenance looks the same key up again). A one-entry memo,
    // dropped on every change to the index, saves the second probe into a large Map.
    if (key === this.memoKey) return this.memoRow;
    const row = this.unique!.get(key);
    this.memoKey = key;
    this.memoRow = row;
    return row;
  }

  /** getUnique for a one-column index, without a key array (compiled point lookups). */
  getOne(value: Value): Row | undefined {
    if (value === null) return undefined;
    const key = typeof value === 'object' ? encodePart(value) : value;
    if (key === this.memoKey) return this.memoRow;
    const row = this.unique!.get(key);
    this.memoKey = key;
    this.memoRow = row;
    return row;
  }

  forEachEqual(values: readonly Value[], visit: (row: Row) => boolean | void): void {
    if (values.length !== this.columns.length) throw new Error('hash index lookups need every key column');
    for (let i = 0; i < values.length; i++) if (values[i] === null) return;
    if (this.nested) {
      const row = this.nested.find(values, undefined);
      if (row) visit(row);
      return;
    }
    const key = this.valuesKey(values);
    if (this.unique) {
      const row = this.unique.get(key);
      if (row) visit(row);
      return;
    }
    const bucket = this.buckets!.get(key);
    if (!bucket) return;
    for (const row of bucket) if (visit(row) === false) return;
  }
}

export interface RangeBound {
  /** Values for the leading index columns. */
  readonly values: readonly Value[];
  readonly inclusive: boolean;
}

export class OrderedIndex implements RowIndex {
  readonly def: IndexDef;
  private readonly tree: OrderedTree;
  private readonly columns: readonly number[];
  private readonly rowIdSlot: number;

  constructor(def: IndexDef, rowIdSlot: number) {
    this.def = def;
    this.columns = def.columns;
    this.rowIdSlot = rowIdSlot;
    this.tree = new BTree<OrderedKey, Row>(undefined, compareOrderedKeys);
  }

  get size(): number {
    return this.tree.size;
  }

  private rowKey(row: Row): OrderedKey {
    const key = new Array<Value>(this.columns.length + 1);
    for (let i = 0; i < this.columns.length; i++) key[i] = row[this.columns[i]];
    key[this.columns.length] = row[this.rowIdSlot];
    return key;
  }

  conflict(row: Row): Row | undefined {
    if (!this.def.unique || hasNull(row, this.columns)) return undefined;
    const prefix = this.columns.map((column) => row[column]);
    for (const [key, found] of this.tree.entries(prefix)) {
      return compareOrderedKeys(key.slice(0, prefix.length), prefix) === 0 ? found : undefined;
    }
    return undefined;
  }

  add(row: Row): void {
    this.tree.set(this.rowKey(row), row);
  }

  remove(row: Row): void {
    this.tree.delete(this.rowKey(row));
  }

  /**
   * Key equality, where NULL matches NULL: an ordered index holds rows with NULL keys (they sort
   * first), and the consistency check must find them. SQL equality never matches NULL; the planner
   * never looks a NULL up (access.ts stops at a NULL key value).
   */
  forEachEqual(values: readonly Value[], visit: (row: Row) => boolean | void): void {
    this.scan({ values, inclusive: true }, { values, inclusive: true }, false, visit);
  }

  /**
   * Visits rows between the bounds in key order (or reverse), stopping when `visit` returns false.
   * A bound on k values constrains the first k index columns.
   */
  scan(low: RangeBound | undefined, high: RangeBound | undefined, descending: boolean, visit: (row: Row) => boolean | void): void {
    const lowKey: OrderedKey | undefined = low ? (low.inclusive ? low.values : [...low.values, keyHigh]) : undefined;
    const highKey: OrderedKey | undefined = high ? (high.inclusive ? [...high.values, keyHigh] : high.values) : undefined;
    if (!descending) {
      for (const [key, row] of this.tree.entries(lowKey)) {
        if (highKey && compareOrderedKeys(key, highKey) >= 0) return;
        if (visit(row) === false) return;
      }
      return;
    }
    for (const [key, row] of this.tree.entriesReversed(highKey)) {
      if (highKey && compareOrderedKeys(key, highKey) >= 0) continue;
      if (lowKey && compareOrderedKeys(key, lowKey) < 0) return;
      if (visit(row) === false) return;
    }
  }
}
