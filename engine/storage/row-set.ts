/**
 * A table's rows: a dense sequence with each row's position kept in the row's last slot, so add
 * and delete are O(1) (delete moves the last row into the hole) and scans walk arrays. Measured
 * against a Set of rows on this machine: about 4× cheaper per insert, with no hash table to
 * grow. Order is insertion order until a delete; SQL promises no order without ORDER BY.
 *
 * The sequence is split into chunks of 65,536 rows. One array would be copied whole each time it
 * outgrows its backing store (V8 grows by half): 13 ms at 1.3M rows and 19 ms at 2M here, inside
 * whichever insert crossed the line, with every call queued behind it waiting as long.
 */
import { assert } from '../assert.ts';
import type { Row } from '../types.ts';

const chunkBits = 16;
const chunkSize = 1 << chunkBits;
const chunkMask = chunkSize - 1;

export class RowSet {
  /** Full chunks, then the one being filled (never empty unless it is the only one). */
  private readonly chunks: Row[][] = [[]];
  private count = 0;
  private readonly positionSlot: number;

  /** `positionSlot` is the row-array slot reserved for the position (after the row id). */
  constructor(positionSlot: number) {
    this.positionSlot = positionSlot;
  }

  get size(): number {
    return this.count;
  }

  add(row: Row): void {
    row[this.positionSlot] = this.count;
    let last = this.chunks[this.chunks.length - 1];
    if (last.length === chunkSize) {
      last = [];
      this.chunks.push(last);
    }
    last.push(row);
    this.count++;
  }

  has(row: Row): boolean {
    const position = row[this.positionSlot];
    return typeof position === 'number' && position < this.count && this.at(position) === row;
  }

  delete(row: Row): void {
    const position = row[this.positionSlot] as number;
    assert(position < this.count && this.at(position) === row, 'a row removed from a table is at its recorded position');
    const chunks = this.chunks;
    const lastChunk = chunks[chunks.length - 1];
    const last = lastChunk.pop()!;
    if (lastChunk.length === 0 && chunks.length > 1) chunks.pop();
    this.count--;
    if (last !== row) {
      chunks[position >>> chunkBits][position & chunkMask] = last;
      last[this.positionSlot] = position;
    }
    row[this.positionSlot] = null;
  }

  /** Calls `visit` for each row in order; stops (and returns false) when it returns false. */
  scan(visit: (row: Row) => boolean): boolean {
    const chunks = this.chunks;
    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c];
      for (let i = 0; i < chunk.length; i++) if (!visit(chunk[i])) return false;
    }
    return true;
  }

  /** The first row, if any (a view without GROUP BY holds at most one). */
  first(): Row | undefined {
    return this.chunks[0][0];
  }

  /** A copy of the row references in order: a snapshot's barrier (~4 ms per 1M rows here). */
  toArray(): Row[] {
    return this.chunks.length === 1 ? this.chunks[0].slice() : ([] as Row[]).concat(...this.chunks);
  }

  *[Symbol.iterator](): Generator<Row, void, undefined> {
    const chunks = this.chunks;
    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c];
      for (let i = 0; i < chunk.length; i++) yield chunk[i];
    }
  }

  /** The row at a position below `count`. */
  private at(position: number): Row {
    return this.chunks[position >>> chunkBits][position & chunkMask];
  }
}
