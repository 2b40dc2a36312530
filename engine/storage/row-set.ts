/**
 * A table's rows: a dense array with each row's position kept in the row's last slot, so add and
 * delete are O(1) (delete moves the last row into the hole) and scans walk an array. Measured
 * against a Set of rows on this machine: about 4× cheaper per insert, with no hash table to
 * grow. Order is insertion order until a delete; SQL promises no order without ORDER BY.
 */
import { assert } from '../assert.ts';
import type { Row } from '../types.ts';

export class RowSet {
  private readonly items: Row[] = [];
  private readonly positionSlot: number;

  /** `positionSlot` is the row-array slot reserved for the position (after the row id). */
  constructor(positionSlot: number) {
    this.positionSlot = positionSlot;
  }

  get size(): number {
    return this.items.length;
  }

  add(row: Row): void {
    row[this.positionSlot] = this.items.length;
    this.items.push(row);
  }

  has(row: Row): boolean {
    const position = row[this.positionSlot];
    return typeof position === 'number' && this.items[position] === row;
  }

  delete(row: Row): void {
    const position = row[this.positionSlot] as number;
    assert(this.items[position] === row, 'a row removed from a table is at its recorded position');
    const last = this.items.pop()!;
    if (last !== row) {
      this.items[position] = last;
      last[this.positionSlot] = position;
    }
    row[this.positionSlot] = null;
  }

  /** A copy of the row references in order: a snapshot's barrier (~4 ms per 1M rows here). */
  toArray(): Row[] {
    return this.items.slice();
  }

  [Symbol.iterator](): ArrayIterator<Row> {
    return this.items.values();
  }
}
