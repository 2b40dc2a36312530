/**
 * A table's rows in one partition, with its indexes, and the three writes (insert, delete,
 * update) that keep them in step and record undo. Constraint checks happen before any change,
 * so a failed write leaves nothing to undo. Rows are arrays of canonical values with the row id in
 * the last slot; updates change a row in place and touch only the indexes whose columns changed.
 */
import { assert } from '../assert.ts';
import type { IndexDef, TableDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import { describeValue, type Row, type TypeName, type Value } from '../types.ts';
import { HashIndex, OrderedIndex, type RowIndex } from './indexes.ts';
import { RowSet } from './row-set.ts';
import { UndoKind, type UndoLog } from './undo.ts';

const noIndexes: readonly RowIndex[] = [];

export class Table {
  readonly def: TableDef;
  readonly rows: RowSet;
  readonly indexes: RowIndex[];
  readonly indexesByName: Map<string, RowIndex>;
  /** Slot of the row id in every row array; the row's position in `rows` follows it. */
  readonly rowIdSlot: number;
  private nextRowId = 1;
  /**
   * A running snapshot's copy-on-write hook (engine/durability/capture.ts), or null: told before
   * a row changes in place, so the snapshot keeps the values the row had at its barrier.
   */
  capture: { beforeWrite(row: Row): void } | null = null;
  /** 1 where some index covers the column: updates elsewhere skip index maintenance. */
  private readonly indexedColumns: Uint8Array;

  constructor(def: TableDef) {
    this.def = def;
    this.rowIdSlot = def.columns.length;
    this.rows = new RowSet(this.rowIdSlot + 1);
    this.indexes = def.indexes.map((index) => createIndex(index, this.rowIdSlot, def));
    this.indexesByName = new Map(this.indexes.map((index) => [index.def.name, index]));
    this.indexedColumns = new Uint8Array(def.columns.length);
    for (const index of def.indexes) for (const column of index.columns) this.indexedColumns[column] = 1;
  }

  /**
   * A new table for a changed definition, holding the same rows (schema changes). A new unique
   * index that the rows already break throws UNIQUE_VIOLATION; `this` is left as it was, so the
   * caller can drop the new table and keep the old. The rows are copied, not shared, for the same
   * reason: the row set writes each row's position into the row.
   */
  rebuild(def: TableDef): Table {
    const table = new Table(def);
    table.nextRowId = this.nextRowId;
    for (const existing of this.rows) {
      const row = existing.slice();
      table.checkUnique(row, undefined);
      table.rows.add(row);
      for (const index of table.indexes) index.add(row);
    }
    return table;
  }

  index(name: string): RowIndex | undefined {
    return this.indexesByName.get(name);
  }

  /** Makes `values` a row: adds the row id and the position slot (callers may pre-size for them). */
  newRow(values: Value[]): Row {
    const slot = this.rowIdSlot;
    assert(values.length === slot || values.length === slot + 2, 'a new row has one value per column');
    values[slot] = this.nextRowId++;
    values[slot + 1] = null;
    return values;
  }

  /**
   * Adds a row after checking NOT NULL and uniqueness. `knownUnique` skips the unique check for
   * callers that have just looked the key up themselves (view maintenance creating a group).
   */
  insert(row: Row, undo: UndoLog, knownUnique = false): void {
    this.checkNotNull(row);
    if (!knownUnique) this.checkUnique(row, undefined);
    this.rows.add(row);
    for (let i = 0; i < this.indexes.length; i++) this.indexes[i].add(row);
    undo.push(UndoKind.insert, this, row, undefined);
  }

  delete(row: Row, undo: UndoLog): void {
    assert(this.rows.has(row), 'a deleted row is in its table');
    this.rows.delete(row);
    for (let i = 0; i < this.indexes.length; i++) this.indexes[i].remove(row);
    undo.push(UndoKind.delete, this, row, undefined);
  }

  /**
   * Sets the given columns of `row` in place. `changes` holds column positions and values in
   * pairs; values are canonical. Unique conflicts are checked against the new key first.
   */
  update(row: Row, columns: readonly number[], values: readonly Value[], undo: UndoLog): void {
    if (this.capture !== null) this.capture.beforeWrite(row);
    const touched = this.indexesTouching(columns, row, values);
    if (touched.length === 0) {
      // No index sees the change (a view's counters, most business columns): undo needs only
      // the old values, not a copy of the row.
      for (let i = 0; i < columns.length; i++) {
        if (values[i] === null && !this.def.columns[columns[i]].nullable) this.notNull(columns[i]);
      }
      for (let i = 0; i < columns.length; i++) {
        const column = columns[i];
        undo.pushSet(this, row, column, row[column]);
        row[column] = values[i];
      }
      return;
    }
    const before = row.slice();
    const candidate = row.slice();
    for (let i = 0; i < columns.length; i++) candidate[columns[i]] = values[i];
    this.checkNotNull(candidate);
    this.checkUnique(candidate, row, touched);
    for (let i = 0; i < touched.length; i++) touched[i].remove(row);
    for (let i = 0; i < columns.length; i++) row[columns[i]] = values[i];
    for (let i = 0; i < touched.length; i++) touched[i].add(row);
    undo.push(UndoKind.update, this, row, before);
  }

  /**
   * Adds a row restored from a snapshot with the row id it had (so ordered-index ties and later
   * ids come out as before the restart); checks uniqueness, since a snapshot that breaks a
   * unique index belongs to another schema. No undo: restoring happens outside transactions.
   */
  loadRow(values: Value[], rowId: number): void {
    const slot = this.rowIdSlot;
    assert(values.length === slot, 'a restored row has one value per column');
    values[slot] = rowId;
    values[slot + 1] = null;
    this.checkNotNull(values);
    this.checkUnique(values, undefined);
    this.rows.add(values);
    for (let i = 0; i < this.indexes.length; i++) this.indexes[i].add(values);
    if (rowId >= this.nextRowId) this.nextRowId = rowId + 1;
  }

  /** Puts back a row's earlier values (rollback of an update). */
  restore(row: Row, before: Row): void {
    for (const index of this.indexes) index.remove(row);
    // Values and row id only: the position slot belongs to the row set and may have moved since.
    for (let i = 0; i <= this.rowIdSlot; i++) row[i] = before[i];
    for (const index of this.indexes) index.add(row);
  }

  /** Removes an inserted row (rollback of an insert). */
  unlink(row: Row): void {
    this.rows.delete(row);
    for (const index of this.indexes) index.remove(row);
  }

  /** Puts back a deleted row (rollback of a delete). */
  relink(row: Row): void {
    this.rows.add(row);
    for (const index of this.indexes) index.add(row);
  }

  private indexesTouching(columns: readonly number[], row: Row, values: readonly Value[]): readonly RowIndex[] {
    let anyIndexed = false;
    for (let i = 0; i < columns.length; i++) if (this.indexedColumns[columns[i]] === 1) anyIndexed = true;
    if (!anyIndexed) return noIndexes;
    const touched: RowIndex[] = [];
    for (const index of this.indexes) {
      for (let i = 0; i < columns.length; i++) {
        if (index.def.columns.includes(columns[i]) && row[columns[i]] !== values[i]) {
          touched.push(index);
          break;
        }
      }
    }
    return touched;
  }

  private checkNotNull(row: Row): void {
    const columns = this.def.columns;
    for (let i = 0; i < columns.length; i++) {
      if (row[i] === null && !columns[i].nullable) this.notNull(i);
    }
  }

  private notNull(position: number): never {
    const column = this.def.columns[position];
    throw new SluiceError(ErrorCode.NOT_NULL_VIOLATION, `column ${this.def.name}.${column.name} cannot be NULL`, {
      object: `${this.def.name}.${column.name}`,
    });
  }

  private checkUnique(row: Row, self: Row | undefined, among: readonly RowIndex[] = this.indexes): void {
    for (let i = 0; i < among.length; i++) {
      const index = among[i];
      if (!index.def.unique) continue;
      const existing = index.conflict(row);
      if (existing !== undefined && existing !== self) {
        const key = index.def.columns.map((column) => `${this.def.columns[column].name}=${describeValue(row[column])}`).join(', ');
        throw new SluiceError(
          ErrorCode.UNIQUE_VIOLATION,
          `${index.def.primary ? 'primary key' : 'unique index'} ${index.def.name} of ${this.def.name} already has a row with ${key}`,
          { object: index.def.name },
        );
      }
    }
  }

  /** O(N) check that every index holds exactly the table's rows; run under VERIFY. */
  verifyIndexes(): void {
    for (const index of this.indexes) {
      if (index instanceof OrderedIndex) {
        assert(index.size === this.rows.size, `ordered index ${index.def.name} has one entry per row of ${this.def.name}`);
      }
      for (const row of this.rows) {
        if (index.def.columns.some((column) => row[column] === null) && index instanceof HashIndex) continue;
        let found = false;
        index.forEachEqual(
          index.def.columns.map((column) => row[column]),
          (candidate) => {
            if (candidate === row) found = true;
            return !found;
          },
        );
        assert(found, `index ${index.def.name} finds every row of ${this.def.name}`);
      }
    }
  }
}

function createIndex(def: IndexDef, rowIdSlot: number, table: TableDef): RowIndex {
  if (def.kind !== 'hash') return new OrderedIndex(def, rowIdSlot);
  const numberKeys = def.columns.length === 1 && numberTypes.has(table.columns[def.columns[0]].type.name);
  return new HashIndex(def, numberKeys);
}

/** Column types whose canonical values are always numbers (engine/types.ts). */
const numberTypes: ReadonlySet<TypeName> = new Set<TypeName>(['TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'FLOAT', 'DECIMAL', 'TIMESTAMP']);
