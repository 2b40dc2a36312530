/**
 * A stream's rows in one partition: an ordered, append-only buffer. Rows appended by a
 * transaction become visible to consumers only when it commits; an abort truncates them away.
 * Each committed row has a sequence number (per stream partition), the basis of idempotent export.
 *
 * Streams with an export target are emptied after every batch of transactions: `takeCommitted`
 * encodes their committed rows (stream-chunk.ts) into a list that crosses to the export pipeline
 * in one message (exporters/pipeline.ts keeps them on disk). Streams without one (they feed views only) are
 * emptied with `discardCommitted`. Embedded databases without an export pipeline leave rows here
 * for `drain` (tests); only there can `streamBufferRowsMax` drop the oldest rows (`overflowed`).
 */
import type { TableDef } from '../catalog/schema.ts';
import type { Row } from '../types.ts';
import { encodeStreamChunk } from './stream-chunk.ts';

export const streamBufferRowsMax = 1_000_000;

/** The rows of the chunk being encoded, flat; reused. */
const scratchValues: unknown[] = [];

export class StreamBuffer {
  readonly def: TableDef;
  private rows: Row[] = [];
  /** Sequence number of rows[0]. */
  private firstSequence = 1;
  private transactionMark = -1;
  overflowed = 0;
  /** Timestamp of the last committed transaction that appended rows (ms since the epoch). */
  lastCommitTimestamp = 0;

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

  commit(timestamp: number): void {
    this.transactionMark = -1;
    this.lastCommitTimestamp = timestamp;
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

  /**
   * Appends one export chunk to `out` and removes its rows from the buffer:
   * `stream name, first sequence, row count, commit timestamp, encoded rows` (stream-chunk.ts;
   * `streamChunkStride` values). Returns the number of rows taken (0 appends nothing).
   */
  takeCommitted(out: unknown[]): number {
    const count = this.committedCount;
    if (count === 0) return 0;
    const width = this.def.columns.length;
    const values = scratchValues;
    for (let r = 0; r < count; r++) {
      const row = this.rows[r];
      for (let c = 0; c < width; c++) values.push(row[c]);
    }
    out.push(this.def.name, this.firstSequence, count, this.lastCommitTimestamp, encodeStreamChunk(this.lastCommitTimestamp, values));
    values.length = 0;
    this.forget(count);
    return count;
  }

  /**
   * Makes the next sequence at least `next`: at start, after recovery, so that rows of new
   * transactions never reuse a sequence the export pipeline already stored (which it would drop as
   * a replayed duplicate). Only between transactions, with the buffer empty.
   */
  raiseSequence(next: number): void {
    if (next <= this.firstSequence + this.rows.length) return;
    if (this.rows.length !== 0 || this.transactionMark >= 0) throw new Error(`stream ${this.def.name}: its sequence is raised only while its buffer is empty`);
    this.firstSequence = next;
  }

  /** Drops the committed rows (a stream that only feeds views); sequence numbers still advance. */
  discardCommitted(): void {
    const count = this.committedCount;
    if (count > 0) this.forget(count);
  }

  private forget(count: number): void {
    if (count === this.rows.length) this.rows.length = 0;
    else this.rows.splice(0, count);
    this.firstSequence += count;
    if (this.transactionMark >= 0) this.transactionMark -= count;
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
