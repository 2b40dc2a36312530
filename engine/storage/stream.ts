/**
 * A stream's rows in one partition: an ordered, append-only buffer. Rows appended by a
 * transaction become visible to consumers only when it commits; an abort truncates them away.
 * Each committed row has a sequence number (per stream partition), the basis of idempotent export.
 *
 * Delivery to export targets comes with the exporters: until then committed rows wait here and
 * tests read them with `drain`. The buffer is bounded by `streamBufferRowsMax`; past it the oldest
 * rows are dropped and counted in `overflowed` (an interim rule, replaced by overflow-to-disk).
 */
import type { TableDef } from '../catalog/schema.ts';
import type { Row } from '../types.ts';

export const streamBufferRowsMax = 1_000_000;

export class StreamBuffer {
  readonly def: TableDef;
  private rows: Row[] = [];
  /** Sequence number of rows[0]. */
  private firstSequence = 1;
  private transactionMark = -1;
  overflowed = 0;

  constructor(def: TableDef) {
    this.def = def;
  }

  /** Appends within the running transaction; returns true the first time in a transaction. */
  append(row: Row): boolean {
    const first = this.transactionMark < 0;
    if (first) this.transactionMark = this.rows.length;
    this.rows.push(row);
    return first;
  }

  commit(): void {
    this.transactionMark = -1;
    if (this.rows.length > streamBufferRowsMax) {
      const excess = this.rows.length - streamBufferRowsMax;
      this.rows.splice(0, excess);
      this.firstSequence += excess;
      this.overflowed += excess;
    }
  }

  rollback(): void {
    if (this.transactionMark >= 0) this.rows.length = this.transactionMark;
    this.transactionMark = -1;
  }

  get committedCount(): number {
    return this.transactionMark < 0 ? this.rows.length : this.transactionMark;
  }

  get nextSequence(): number {
    return this.firstSequence + this.committedCount;
  }

  /**
   * Restoring from a snapshot: the next committed row gets `nextSequence`, as it did before the
   * restart, so exporters can drop rows they already delivered by (stream, partition, sequence).
   */
  resumeAt(nextSequence: number): void {
    if (this.rows.length !== 0 || this.transactionMark >= 0) throw new Error(`stream ${this.def.name} is resumed only while empty`);
    this.firstSequence = nextSequence;
  }

  /** Takes the committed rows with their sequence numbers, oldest first. */
  drain(): { sequence: number; row: Row }[] {
    const count = this.committedCount;
    const taken = this.rows.splice(0, count).map((row, i) => ({ sequence: this.firstSequence + i, row }));
    this.firstSequence += count;
    if (this.transactionMark >= 0) this.transactionMark -= count;
    return taken;
  }
}
