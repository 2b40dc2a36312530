/**
 * Materialized views kept current inside the writing transaction. Each source insert adds to its
 * group's row (creating it), each delete subtracts (removing the row when its count reaches 0),
 * each update is a delete of the old values plus an insert of the new. SUM ignores NULLs and is
 * NULL when the group has no non-NULL value; MIN/MAX that lose their extreme value are recomputed
 * from the group's remaining source rows through an index on the group columns.
 */
import { assert } from '../assert.ts';
import type { TableDef, ViewAggregate } from '../catalog/schema.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import { compareValues, roundDecimal, type Row, type Value } from '../types.ts';
import type { HashIndex, RowIndex } from '../storage/indexes.ts';
import type { Table } from '../storage/table.ts';
import type { UndoLog } from '../storage/undo.ts';

export class ViewMaintainer {
  readonly view: Table;
  private readonly source: Table | undefined;
  private readonly groupBy: readonly number[];
  private readonly aggregates: readonly ViewAggregate[];
  private readonly countColumn: number;
  private readonly groupIndex: RowIndex | undefined;
  private readonly sourceGroupIndex: RowIndex | undefined;
  private readonly keyValues: Value[];
  private readonly columns: number[];
  private readonly values: Value[];
  private readonly decimalScale: (number | undefined)[];
  /** Only changes to these source columns affect the view. */
  readonly sourceColumns: ReadonlySet<number>;

  /** `source` is undefined for views over streams (rows are not kept, so never deleted). */
  constructor(view: Table, source: Table | undefined) {
    const def = view.def.view!;
    this.view = view;
    this.source = source;
    this.groupBy = def.groupBy;
    this.aggregates = def.aggregates;
    this.countColumn = def.countColumn;
    this.groupIndex = view.indexes.find((index) => index.def.primary);
    this.sourceGroupIndex = def.sourceGroupIndex && source ? source.index(def.sourceGroupIndex) : undefined;
    this.keyValues = new Array(def.groupBy.length);
    const updated = new Set<number>([def.countColumn, ...def.aggregates.map((aggregate) => aggregate.viewColumn)]);
    this.columns = [...updated];
    this.values = new Array(this.columns.length);
    this.decimalScale = view.def.columns.map((column) => (column.type.name === 'DECIMAL' ? column.type.scale : undefined));
    this.sourceColumns = new Set([...def.groupBy, ...def.aggregates.flatMap((aggregate) => (aggregate.sourceColumn === undefined ? [] : [aggregate.sourceColumn]))]);
  }

  private findGroup(sourceRow: Row): Row | undefined {
    if (!this.groupIndex) {
      for (const row of this.view.rows) return row;
      return undefined;
    }
    for (let i = 0; i < this.groupBy.length; i++) this.keyValues[i] = sourceRow[this.groupBy[i]];
    if (this.groupIndex.def.kind === 'hash' && !this.keyValues.includes(null)) return (this.groupIndex as HashIndex).getUnique(this.keyValues);
    let found: Row | undefined;
    this.groupIndex.forEachEqual(this.keyValues, (row) => {
      found = row;
      return false;
    });
    if (found === undefined && this.keyValues.includes(null)) {
      // NULL group keys are a group of their own; hash indexes skip them, so look by scan.
      for (const row of this.view.rows) if (this.groupBy.every((_, i) => row[i] === this.keyValues[i])) return row;
    }
    return found;
  }

  onInsert(sourceRow: Row, undo: UndoLog): void {
    const row = this.findGroup(sourceRow);
    if (row === undefined) {
      const values: Value[] = new Array(this.view.def.columns.length).fill(null);
      for (let i = 0; i < this.groupBy.length; i++) values[i] = sourceRow[this.groupBy[i]];
      values[this.countColumn] = 1;
      for (const aggregate of this.aggregates) {
        if (aggregate.sourceColumn === undefined) {
          values[aggregate.viewColumn] = 1;
          continue;
        }
        const value = sourceRow[aggregate.sourceColumn];
        values[aggregate.viewColumn] = aggregate.fn === 'COUNT' ? (value === null ? 0 : 1) : value;
      }
      this.view.insert(this.view.newRow(values), undo);
      return;
    }
    for (let i = 0; i < this.columns.length; i++) this.values[i] = row[this.columns[i]];
    this.set(this.countColumn, (row[this.countColumn] as number) + 1);
    for (const aggregate of this.aggregates) {
      const current = row[aggregate.viewColumn];
      if (aggregate.sourceColumn === undefined) {
        if (aggregate.viewColumn !== this.countColumn) this.set(aggregate.viewColumn, (current as number) + 1);
        continue;
      }
      const value = sourceRow[aggregate.sourceColumn];
      if (value === null) continue;
      switch (aggregate.fn) {
        case 'COUNT':
          this.set(aggregate.viewColumn, (current as number) + 1);
          break;
        case 'SUM':
          this.set(aggregate.viewColumn, current === null ? value : this.add(aggregate.viewColumn, current as number, value as number));
          break;
        case 'MIN':
          if (current === null || compareValues(value, current) < 0) this.set(aggregate.viewColumn, value);
          break;
        case 'MAX':
          if (current === null || compareValues(value, current) > 0) this.set(aggregate.viewColumn, value);
          break;
      }
    }
    this.view.update(row, this.columns, this.values, undo);
  }

  /** Called after the source row has left the source table (so recomputes do not see it). */
  onDelete(sourceRow: Row, undo: UndoLog): void {
    const row = this.findGroup(sourceRow);
    assert(row !== undefined, `view ${this.view.def.name} has a group for every source row`);
    const count = (row[this.countColumn] as number) - 1;
    if (count === 0) {
      this.view.delete(row, undo);
      return;
    }
    for (let i = 0; i < this.columns.length; i++) this.values[i] = row[this.columns[i]];
    this.set(this.countColumn, count);
    for (const aggregate of this.aggregates) {
      const current = row[aggregate.viewColumn];
      if (aggregate.sourceColumn === undefined) {
        if (aggregate.viewColumn !== this.countColumn) this.set(aggregate.viewColumn, count);
        continue;
      }
      const value = sourceRow[aggregate.sourceColumn];
      if (value === null) continue;
      switch (aggregate.fn) {
        case 'COUNT':
          this.set(aggregate.viewColumn, (current as number) - 1);
          break;
        case 'SUM':
          this.set(aggregate.viewColumn, this.recomputeIfLastValue(aggregate, sourceRow) ?? this.add(aggregate.viewColumn, current as number, -(value as number)));
          break;
        case 'MIN':
        case 'MAX':
          if (compareValues(value, current) === 0) this.set(aggregate.viewColumn, this.recompute(aggregate, sourceRow));
          break;
      }
    }
    this.view.update(row, this.columns, this.values, undo);
  }

  private set(viewColumn: number, value: Value): void {
    this.values[this.columns.indexOf(viewColumn)] = value;
  }

  private add(viewColumn: number, a: number, b: number): number {
    const sum = a + b;
    const scale = this.decimalScale[viewColumn];
    if (scale !== undefined) return roundDecimal(sum, scale);
    if (Number.isInteger(a) && Number.isInteger(b) && !Number.isSafeInteger(sum) && this.view.def.columns[viewColumn].type.name === 'BIGINT') {
      throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, `SUM in view ${this.view.def.name} overflows the exact BIGINT range`);
    }
    return sum;
  }

  /** SUM becomes NULL when the group's last non-NULL value leaves; detect that case. */
  private recomputeIfLastValue(aggregate: ViewAggregate, sourceRow: Row): Value | undefined {
    if (!this.sourceGroupIndex && this.source === undefined) return undefined;
    let seen = false;
    this.forEachSourceInGroup(sourceRow, (row) => {
      if (row[aggregate.sourceColumn!] !== null) seen = true;
      return !seen;
    });
    return seen ? undefined : null;
  }

  private recompute(aggregate: ViewAggregate, sourceRow: Row): Value {
    let extreme: Value = null;
    const sign = aggregate.fn === 'MIN' ? -1 : 1;
    this.forEachSourceInGroup(sourceRow, (row) => {
      const value = row[aggregate.sourceColumn!];
      if (value !== null && (extreme === null || Math.sign(compareValues(value, extreme)) === sign)) extreme = value;
    });
    return extreme;
  }

  private forEachSourceInGroup(sourceRow: Row, visit: (row: Row) => boolean | void): void {
    assert(this.source !== undefined, 'only views over tables recompute from their source');
    const key = this.groupBy.map((column) => sourceRow[column]);
    if (this.sourceGroupIndex && !key.includes(null)) {
      this.sourceGroupIndex.forEachEqual(key, visit);
      return;
    }
    for (const row of this.source.rows) {
      if (this.groupBy.every((column, i) => row[column] === key[i]) && visit(row) === false) return;
    }
  }

  /** O(N) recount of the whole view from its source; run under VERIFY and by tests. */
  verify(): void {
    if (!this.source) return;
    const groups = new Map<string, Row[]>();
    for (const row of this.source.rows) {
      const key = JSON.stringify(this.groupBy.map((column) => row[column]));
      const group = groups.get(key);
      if (group) group.push(row);
      else groups.set(key, [row]);
    }
    assert(groups.size === this.view.rows.size, `view ${this.view.def.name} has one row per group of ${this.source.def.name}`);
    for (const viewRow of this.view.rows) {
      const members = groups.get(JSON.stringify(this.groupBy.map((_, i) => viewRow[i])));
      assert(members !== undefined, `every row of view ${this.view.def.name} has source rows`);
      assert(viewRow[this.countColumn] === members.length, `view ${this.view.def.name} counts its group`);
    }
  }
}

export function viewSourceDef(view: TableDef): string {
  return view.view!.source;
}
