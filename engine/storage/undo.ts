/**
 * The undo log of the running transaction: one small typed record per write, in order. Rollback
 * walks it backwards; commit truncates it. The array is reused across transactions, so a commit
 * allocates nothing. Stream appends are undone by the stream buffer itself (engine/storage/stream.ts).
 */
import { assert } from '../assert.ts';
import type { Row, Value } from '../types.ts';
import type { Table } from './table.ts';

/** `set` puts back one column value (an update that touched no index: no row copy needed). */
export const UndoKind = { insert: 0, delete: 1, update: 2, set: 3 } as const;
export type UndoKind = (typeof UndoKind)[keyof typeof UndoKind];

interface UndoRecord {
  kind: UndoKind;
  table: Table;
  row: Row;
  before: Row | undefined;
  /** For `set`: the column and its value before the write. */
  column: number;
  value: Value;
}

export class UndoLog {
  private readonly records: UndoRecord[] = [];
  private length = 0;

  get size(): number {
    return this.length;
  }

  push(kind: UndoKind, table: Table, row: Row, before: Row | undefined): void {
    const slot = this.records[this.length];
    if (slot) {
      slot.kind = kind;
      slot.table = table;
      slot.row = row;
      slot.before = before;
    } else {
      this.records.push({ kind, table, row, before, column: -1, value: null });
    }
    this.length++;
  }

  /** Records the value `row[column]` has before an in-place write that no index sees. */
  pushSet(table: Table, row: Row, column: number, value: Value): void {
    const slot = this.records[this.length];
    if (slot) {
      slot.kind = UndoKind.set;
      slot.table = table;
      slot.row = row;
      slot.before = undefined;
      slot.column = column;
      slot.value = value;
    } else {
      this.records.push({ kind: UndoKind.set, table, row, before: undefined, column, value });
    }
    this.length++;
  }

  /** Undoes records back to `mark` (a savepoint), newest first. */
  rollback(mark = 0): void {
    for (let i = this.length - 1; i >= mark; i--) {
      const record = this.records[i];
      switch (record.kind) {
        case UndoKind.insert:
          record.table.unlink(record.row);
          break;
        case UndoKind.delete:
          record.table.relink(record.row);
          break;
        case UndoKind.update:
          record.table.restore(record.row, record.before!);
          break;
        case UndoKind.set:
          record.row[record.column] = record.value;
          break;
      }
      record.row = undefined as unknown as Row;
      record.before = undefined;
      record.value = null;
    }
    this.length = mark;
  }

  release(): void {
    for (let i = 0; i < this.length; i++) {
      const record = this.records[i];
      record.row = undefined as unknown as Row;
      record.before = undefined;
      record.value = null;
    }
    this.length = 0;
  }

  assertEmpty(): void {
    assert(this.length === 0, 'the undo log is empty between transactions');
  }
}
