/**
 * The transaction-consistent image of a partition's tables for a snapshot, taken while
 * transactions keep running. Pure functions over Table objects (engine/storage/table.ts): they
 * read rows and never change them.
 *
 * The approach: a short barrier, then bounded slices with copy-on-write.
 * 1. Barrier (`PartitionCapture.begin`, between two transactions of the partition, in its inbox
 *    like any task): copy each table's *row references* into an array. O(rows) pointer copies and
 *    no value copies: ~50 ms per 1M rows through the row set's iterator, ~4 ms with an array
 *    slice() (docs/durability.md). This fixes the set and
 *    the order of the rows in the image; later inserts are not in it, later deletes do not
 *    remove from it (the captured array still holds the row object).
 * 2. Slices (`nextSlice`, one per inbox turn between transactions, at most `captureSliceRowsMax`
 *    rows): copy the values of the next rows out of the captured references.
 * 3. Copy-on-write (`beforeWrite`): rows are updated in place, so a row updated after the barrier
 *    and before its slice would show the new values. The write path calls `beforeWrite(row)`
 *    before it changes a row in place; the first call per row keeps a copy of its values as they
 *    were at the barrier, and the slice uses that copy. The only in-place writer is
 *    Table.update (views update their rows through it too); Table.restore (rollback) only puts
 *    back values that the update before it already preserved. Deleted rows keep their values.
 *
 * The hook is `Table.capture`, checked at the top of Table.update; the partition worker sets it
 * on every captured table for the capture's duration (partition-snapshot.ts). Without the hook,
 * use `captureAll`, which copies everything at the barrier: the whole copy is then the pause.
 *
 * All partitions must begin their capture at the same point in the serial order (the snapshot is
 * itself a multi-partition task with a transaction id, as in VoltDB), so the images of all
 * partitions together are the state after that transaction.
 */
import { assert } from '../assert.ts';
import type { Table } from '../storage/table.ts';
import type { Row, Value } from '../types.ts';

/** Rows copied per slice: bounds the time a slice holds up the partition's next transaction. */
export const captureSliceRowsMax = 4096;

/** A slice of one table's image: values without the row-id and position slots, and the row ids. */
export interface CapturedChunk {
  readonly partition: number;
  readonly table: string;
  readonly rows: Value[][];
  /** The rows' ids, kept so a restore can give rows back their ids (ordered-index tie order). */
  readonly rowIds: number[];
}

interface CapturedTable {
  readonly name: string;
  /** Slot of the row id; values are the slots before it. */
  readonly rowIdSlot: number;
  readonly rows: Row[];
}

export class PartitionCapture {
  readonly partition: number;
  /** Rows in the image, over all tables. */
  readonly rowCount: number;
  private readonly tables: CapturedTable[];
  /** Values of rows changed in place since the barrier, as they were at the barrier. */
  private readonly preserved = new Map<Row, Row>();
  private tableIndex = 0;
  private rowIndex = 0;
  private finished = false;

  private constructor(partition: number, tables: CapturedTable[]) {
    this.partition = partition;
    this.tables = tables;
    let rows = 0;
    for (const table of tables) rows += table.rows.length;
    this.rowCount = rows;
  }

  /**
   * The barrier: call between two transactions of the partition (never inside one: the image
   * would hold its uncommitted writes). Copies row references only; see the file header.
   */
  static begin(partition: number, tables: Iterable<Table>): PartitionCapture {
    const captured: CapturedTable[] = [];
    for (const table of tables) {
      // The row set's array slice(): ~4 ms per 1M rows here, against ~50 ms through its iterator.
      const rows: Row[] = table.rows.toArray();
      captured.push({ name: table.def.name, rowIdSlot: table.rowIdSlot, rows });
    }
    return new PartitionCapture(partition, captured);
  }

  get done(): boolean {
    return this.finished;
  }

  /** Rows changed in place since the barrier whose barrier values are being kept. */
  get preservedCount(): number {
    return this.preserved.size;
  }

  /**
   * The copy-on-write hook: call before changing `row` in place while the capture runs. O(1)
   * after the first call per row; the first copies the row's values and row id. Rows inserted
   * after the barrier or already copied are kept needlessly but harmlessly, so the write path
   * needs no lookup of its own.
   */
  beforeWrite(row: Row): void {
    if (this.finished || this.preserved.has(row)) return;
    // Values and row id; the position slot (last) belongs to the row set.
    this.preserved.set(row, row.slice(0, row.length - 1));
  }

  /**
   * Copies the next at most `rowsMax` rows of one table, or returns undefined when the image is
   * complete (the capture then drops its preserved copies and ignores beforeWrite).
   */
  nextSlice(rowsMax = captureSliceRowsMax): CapturedChunk | undefined {
    assert(rowsMax > 0, 'a capture slice copies at least one row');
    while (this.tableIndex < this.tables.length && this.rowIndex >= this.tables[this.tableIndex].rows.length) {
      this.tableIndex++;
      this.rowIndex = 0;
    }
    if (this.tableIndex >= this.tables.length) {
      this.finished = true;
      this.preserved.clear();
      return undefined;
    }
    const table = this.tables[this.tableIndex];
    const end = Math.min(table.rows.length, this.rowIndex + rowsMax);
    const slot = table.rowIdSlot;
    const rows: Value[][] = new Array(end - this.rowIndex);
    const rowIds: number[] = new Array(end - this.rowIndex);
    const checkPreserved = this.preserved.size > 0;
    for (let i = this.rowIndex; i < end; i++) {
      const live = table.rows[i];
      const source = checkPreserved ? (this.preserved.get(live) ?? live) : live;
      rows[i - this.rowIndex] = source.slice(0, slot);
      rowIds[i - this.rowIndex] = source[slot] as number;
    }
    this.rowIndex = end;
    return { partition: this.partition, table: table.name, rows, rowIds };
  }
}

/**
 * The whole image at once: for callers without the copy-on-write hook, and for tests. The pause
 * is the full value copy (230–300 ms per 1M rows of 10 columns here; docs/durability.md).
 */
export function captureAll(partition: number, tables: Iterable<Table>, rowsMax = captureSliceRowsMax): CapturedChunk[] {
  const capture = PartitionCapture.begin(partition, tables);
  const chunks: CapturedChunk[] = [];
  for (let chunk = capture.nextSlice(rowsMax); chunk !== undefined; chunk = capture.nextSlice(rowsMax)) chunks.push(chunk);
  return chunks;
}
