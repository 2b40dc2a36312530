/**
 * Materialized views kept current inside the writing transaction. Each source insert adds to its
 * group's row (creating it), each delete subtracts (removing the row when its count reaches 0),
 * each update is a delete of the old values plus an insert of the new. SUM ignores NULLs and is
 * NULL when the group has no non-NULL value (a hidden per-group count of non-NULL values says when,
 * so no delete scans its group for SUM); MIN/MAX that lose their extreme value are recomputed
 * from the group's remaining source rows through an index on the group columns.
 *
 * A view over a partitioned table whose GROUP BY leaves out the partition column holds, in each
 * partition, that partition's share of each group: the same group key can appear once per
 * partition. Queries across partitions re-aggregate (SUM of counts and sums, MIN of minimums, MAX
 * of maximums) to get the totals.
 */
import { assert } from '../assert.ts';
import type { TableDef, ViewAggregate, ViewDef } from '../catalog/schema.ts';
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
  /** Every aggregate is the group's COUNT(*): an existing group only has its count changed. */
  private readonly countOnly: boolean;
  /** The one group column when there is one and a unique hash index finds groups by it. */
  private readonly singleGroupHash: HashIndex | undefined;
  /** Whether the key of the last findGroup had a NULL (such groups are found by scan). */
  private keyHadNull = false;
  /** The row of a new group for a source row, as one array literal (see newGroupRowFactory). */
  private readonly newGroupRow: (sourceRow: Row) => Value[];

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
    const updated = new Set<number>([def.countColumn]);
    for (const aggregate of def.aggregates) {
      updated.add(aggregate.viewColumn);
      if (aggregate.nonNullColumn !== undefined) updated.add(aggregate.nonNullColumn);
    }
    this.columns = [...updated];
    this.values = new Array(this.columns.length);
    this.decimalScale = view.def.columns.map((column) => (column.type.name === 'DECIMAL' ? column.type.scale : undefined));
    this.sourceColumns = new Set([...def.groupBy, ...def.aggregates.flatMap((aggregate) => (aggregate.sourceColumn === undefined ? [] : [aggregate.sourceColumn]))]);
    this.countOnly = def.aggregates.every((aggregate) => aggregate.sourceColumn === undefined && aggregate.viewColumn === def.countColumn);
    this.newGroupRow = newGroupRowFactory(def, view.def.columns.length);
    assert(!this.countOnly || (this.columns.length === 1 && this.columns[0] === def.countColumn), 'a count-only view updates its count column alone');
    this.singleGroupHash = def.groupBy.length === 1 && this.groupIndex?.def.kind === 'hash' ? (this.groupIndex as HashIndex) : undefined;
  }

  /** True when setting `columns` of `row` to `values` changes a column this view reads. */
  changedBy(row: Row, columns: readonly number[], values: readonly Value[]): boolean {
    for (let i = 0; i < columns.length; i++) if (this.sourceColumns.has(columns[i]) && row[columns[i]] !== values[i]) return true;
    return false;
  }

  private findGroup(sourceRow: Row): Row | undefined {
    this.keyHadNull = false;
    if (!this.groupIndex) return this.view.rows.first();
    if (this.singleGroupHash !== undefined) {
      const value = sourceRow[this.groupBy[0]];
      if (value !== null) return this.singleGroupHash.getOne(value);
    }
    for (let i = 0; i < this.groupBy.length; i++) this.keyValues[i] = sourceRow[this.groupBy[i]];
    // A loop, not includes(null): includes goes through the runtime on every call.
    for (let i = 0; i < this.keyValues.length; i++) if (this.keyValues[i] === null) this.keyHadNull = true;
    if (this.groupIndex.def.kind === 'hash' && !this.keyHadNull) return (this.groupIndex as HashIndex).getUnique(this.keyValues);
    let found: Row | undefined;
    this.groupIndex.forEachEqual(this.keyValues, (row) => {
      found = row;
      return false;
    });
    if (found === undefined && this.keyHadNull) {
      // NULL group keys are a group of their own; hash indexes skip them, so look by scan.
      for (const row of this.view.rows) if (this.groupBy.every((_, i) => row[i] === this.keyValues[i])) return row;
    }
    return found;
  }

  onInsert(sourceRow: Row, undo: UndoLog): void {
    const row = this.findGroup(sourceRow);
    if (row === undefined) {
      // findGroup just found no row with this key: the group index cannot conflict.
      this.view.insert(this.view.newRow(this.newGroupRow(sourceRow)), undo, this.groupIndex !== undefined && !this.keyHadNull);
      return;
    }
    if (this.countOnly) {
      // this.columns is [countColumn]: the group's count is the one value that changes.
      this.values[0] = (row[this.countColumn] as number) + 1;
      this.view.update(row, this.columns, this.values, undo);
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
          if (aggregate.nonNullColumn !== undefined) this.set(aggregate.nonNullColumn, (row[aggregate.nonNullColumn] as number) + 1);
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
        case 'SUM': {
          // With no hidden count the column is NOT NULL: the group count says when it empties.
          const nonNull = aggregate.nonNullColumn === undefined ? count : (row[aggregate.nonNullColumn] as number) - 1;
          if (aggregate.nonNullColumn !== undefined) this.set(aggregate.nonNullColumn, nonNull);
          this.set(aggregate.viewColumn, nonNull === 0 ? null : this.add(aggregate.viewColumn, current as number, -(value as number)));
          break;
        }
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
    this.source.rows.scan((row) => !this.groupBy.every((column, i) => row[column] === key[i]) || visit(row) !== false);
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
      for (const aggregate of this.aggregates) {
        const expected = recount(aggregate, members);
        const actual = viewRow[aggregate.viewColumn];
        // Sums of FLOAT drift with the order of additions and subtractions: compare them loosely.
        const agrees = typeof expected === 'number' && typeof actual === 'number' && aggregate.fn === 'SUM'
          ? Math.abs(expected - actual) <= 1e-9 * Math.max(1, Math.abs(expected))
          : expected === null ? actual === null : actual !== null && compareValues(expected, actual) === 0;
        assert(agrees, `view ${this.view.def.name} column ${this.view.def.columns[aggregate.viewColumn].name} matches a recount of its group`);
        if (aggregate.nonNullColumn !== undefined) {
          let nonNull = 0;
          for (const member of members) if (member[aggregate.sourceColumn!] !== null) nonNull++;
          assert(viewRow[aggregate.nonNullColumn] === nonNull, `view ${this.view.def.name} counts the non-NULL values of its SUM`);
        }
      }
    }
  }
}

/**
 * Compiles the first row of a group: group values, a count of 1, and each aggregate over the one
 * source row (COUNT of a value: 1 unless NULL; SUM, MIN, MAX: the value), followed by the row id
 * and position slots the table fills. One array literal per row: the rows of a view live as long
 * as their group, and V8 allocates a literal whole, already in its final shape.
 */
function newGroupRowFactory(def: ViewDef, columnCount: number): (sourceRow: Row) => Value[] {
  const entries: string[] = new Array<string>(columnCount).fill('null');
  def.groupBy.forEach((sourceColumn, i) => (entries[i] = `s[${sourceColumn}]`));
  entries[def.countColumn] = '1';
  for (const aggregate of def.aggregates) {
    const source = aggregate.sourceColumn;
    if (source === undefined) {
      entries[aggregate.viewColumn] = '1';
      continue;
    }
    entries[aggregate.viewColumn] = aggregate.fn === 'COUNT' ? `(s[${source}] === null ? 0 : 1)` : `s[${source}]`;
    if (aggregate.nonNullColumn !== undefined) entries[aggregate.nonNullColumn] = `(s[${source}] === null ? 0 : 1)`;
  }
  return new Function('s', `"use strict"; return [${entries.join(', ')}, 0, null];`) as (sourceRow: Row) => Value[];
}

/** An aggregate computed from scratch over a group's source rows (for verify). */
function recount(aggregate: ViewAggregate, members: readonly Row[]): Value {
  if (aggregate.sourceColumn === undefined) return members.length;
  let result: Value = aggregate.fn === 'COUNT' ? 0 : null;
  for (const member of members) {
    const value = member[aggregate.sourceColumn];
    if (value === null) continue;
    if (aggregate.fn === 'COUNT') result = (result as number) + 1;
    else if (aggregate.fn === 'SUM') result = result === null ? value : (result as number) + (value as number);
    else if (result === null || compareValues(value, result) * (aggregate.fn === 'MIN' ? -1 : 1) > 0) result = value;
  }
  return result;
}

export function viewSourceDef(view: TableDef): string {
  return view.view!.source;
}
