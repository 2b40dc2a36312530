/**
 * A partition: its share of every partitioned table, a full copy of every replicated table, its
 * stream buffers and view maintainers, and the undo log of the one transaction it runs at a time.
 * One object owns all of it, so a worker thread can own a partition outright; nothing else
 * touches its tables. It implements StorageAccess for the SQL executors: every write goes through
 * here, which keeps rows, indexes, views, streams and undo in step.
 */
import { assert, VERIFY } from '../assert.ts';
import type { Catalog, TableDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import type { RowObject } from '../sql/compiled.ts';
import type { ResultTable, StorageAccess } from '../sql/context.ts';
import { currentTransactionTime } from '../sql/expr.ts';
import { executePlan, type PlannedStatement } from '../sql/statement.ts';
import { OrderedIndex } from '../storage/indexes.ts';
import { StreamBuffer } from '../storage/stream.ts';
import { Table } from '../storage/table.ts';
import { UndoLog } from '../storage/undo.ts';
import { describeValue, type Row, type Value } from '../types.ts';
import { ViewMaintainer } from '../views/maintain.ts';
import { partitionOf } from './hash.ts';

/** A partition's storage for a new catalog, built by prepareCatalog and not yet in use. */
export interface PreparedCatalog {
  readonly catalog: Catalog;
  readonly tables: Map<string, Table>;
  readonly streams: Map<string, StreamBuffer>;
  readonly maintainers: Map<string, ViewMaintainer[]>;
}

export class Partition implements StorageAccess {
  readonly id: number;
  readonly partitionCount: number;
  catalog: Catalog;
  private tables = new Map<string, Table>();
  private streams = new Map<string, StreamBuffer>();
  private maintainers = new Map<string, ViewMaintainer[]>();
  private readonly undo = new UndoLog();
  private touchedStreams: StreamBuffer[] = [];
  private inTransaction = false;
  private lastTransactionId = 0;
  transactionCount = 0;
  /** Bumped by every adoptCatalog (StorageAccess.catalogGeneration). */
  catalogGeneration = 0;

  constructor(id: number, partitionCount: number, catalog: Catalog) {
    assert(id >= 0 && id < partitionCount, 'a partition id is within the partition count');
    this.id = id;
    this.partitionCount = partitionCount;
    this.catalog = catalog;
    this.applyCatalog(catalog);
  }

  /** Adopts a new catalog: new tables start empty, existing ones keep their rows. */
  applyCatalog(catalog: Catalog): void {
    this.adoptCatalog(this.prepareCatalog(catalog));
  }

  /**
   * The first half of a schema change: builds this partition's tables, streams and views for
   * `catalog` beside the current ones and changes nothing, so a failure (a new unique index the
   * rows break, a new view whose SUM overflows) leaves the partition as it was. The database
   * prepares every partition before it adopts any, so a schema change is all or nothing.
   */
  prepareCatalog(catalog: Catalog): PreparedCatalog {
    assert(!this.inTransaction, 'schema changes happen between transactions');
    const tables = new Map<string, Table>();
    const streams = new Map<string, StreamBuffer>();
    for (const def of catalog.tables.values()) {
      if (def.kind === 'stream') {
        streams.set(def.name, this.streams.get(def.name) ?? new StreamBuffer(def));
        continue;
      }
      const existing = this.tables.get(def.name);
      tables.set(def.name, existing ? (existing.def === def ? existing : existing.rebuild(def)) : new Table(def));
    }
    const maintainers = new Map<string, ViewMaintainer[]>();
    for (const def of catalog.tables.values()) {
      const views = def.dependentViews.map((name) => new ViewMaintainer(tables.get(name)!, tables.get(def.name)));
      if (views.length > 0) maintainers.set(def.name, views);
    }
    // A new view over existing rows starts from those rows. Its writes go to a scratch undo log:
    // the new tables are thrown away whole if this fails, and the partition's log stays empty.
    const scratch = new UndoLog();
    for (const [source, views] of maintainers) {
      const sourceTable = tables.get(source);
      if (!sourceTable) continue;
      for (const maintainer of views) {
        if (this.tables.has(maintainer.view.def.name) || sourceTable.rows.size === 0) continue;
        for (const row of sourceTable.rows) maintainer.onInsert(row, scratch);
        scratch.release();
      }
    }
    return { catalog, tables, streams, maintainers };
  }

  /** The second half of a schema change: cannot fail. */
  adoptCatalog(prepared: PreparedCatalog): void {
    assert(!this.inTransaction, 'schema changes happen between transactions');
    this.tables = prepared.tables;
    this.streams = prepared.streams;
    this.maintainers = prepared.maintainers;
    this.catalog = prepared.catalog;
    this.catalogGeneration++;
  }

  table(name: string): Table {
    const table = this.tables.get(name);
    assert(table !== undefined, `plans name only tables of the catalog (${name})`);
    return table;
  }

  stream(name: string): StreamBuffer {
    const stream = this.streams.get(name);
    assert(stream !== undefined, `plans name only streams of the catalog (${name})`);
    return stream;
  }

  /** The tables of this partition, for statistics, snapshots and verification. */
  allTables(): IterableIterator<Table> {
    return this.tables.values();
  }

  allStreams(): IterableIterator<StreamBuffer> {
    return this.streams.values();
  }

  // --- transactions -------------------------------------------------------------------------

  begin(transactionId: number, timestamp: number): void {
    assert(!this.inTransaction, 'a partition runs one transaction at a time');
    assert(transactionId > this.lastTransactionId, 'transaction ids only grow');
    this.undo.assertEmpty();
    this.inTransaction = true;
    this.lastTransactionId = transactionId;
    currentTransactionTime.value = timestamp;
  }

  commit(): void {
    assert(this.inTransaction, 'commit follows begin');
    this.undo.release();
    // Only when there is something to clear: setting an array's length is a runtime call.
    if (this.touchedStreams.length > 0) {
      for (const stream of this.touchedStreams) stream.commit(currentTransactionTime.value);
      this.touchedStreams.length = 0;
    }
    this.inTransaction = false;
    this.transactionCount++;
  }

  rollback(): void {
    assert(this.inTransaction, 'rollback follows begin');
    this.undo.rollback();
    if (this.touchedStreams.length > 0) {
      for (const stream of this.touchedStreams) stream.rollback();
      this.touchedStreams.length = 0;
    }
    this.inTransaction = false;
    this.transactionCount++;
  }

  execute(statement: PlannedStatement, params: readonly Value[]): ResultTable {
    assert(this.inTransaction, 'statements run inside a transaction');
    return executePlan(statement, this, params);
  }

  /** `execute` with the rows as objects, through the statement's compiled executor. */
  executeObjects(statement: PlannedStatement, params: readonly Value[]): RowObject[] {
    assert(this.inTransaction, 'statements run inside a transaction');
    return statement.objects(this, params);
  }

  // --- writes (StorageAccess) -----------------------------------------------------------------

  insert(def: TableDef, values: Value[]): void {
    if (def.partitionColumn !== undefined && this.partitionCount > 1) {
      const key = values[def.partitionColumn];
      const owner = partitionOf(key, this.partitionCount);
      if (owner !== this.id) {
        throw new SluiceError(
          ErrorCode.WRONG_PARTITION,
          `row with ${def.name}.${def.columns[def.partitionColumn].name} = ${describeValue(key)} belongs to partition ${owner}, not ${this.id}: a single-partition procedure can only write rows of its own partition key`,
          { object: def.name },
        );
      }
    }
    if (def.kind === 'stream') {
      const stream = this.stream(def.name);
      values.length = def.columns.length;
      for (let i = 0; i < values.length; i++) {
        if (values[i] === null && !def.columns[i].nullable) {
          throw new SluiceError(ErrorCode.NOT_NULL_VIOLATION, `column ${def.name}.${def.columns[i].name} cannot be NULL`, { object: `${def.name}.${def.columns[i].name}` });
        }
      }
      const row: Row = values;
      if (stream.append(row)) this.touchedStreams.push(stream);
      const views = this.maintainers.get(def.name);
      if (views) for (const view of views) view.onInsert(row, this.undo);
      return;
    }
    const table = this.table(def.name);
    const row = table.newRow(values);
    table.insert(row, this.undo);
    const views = this.maintainers.get(def.name);
    if (views) for (let i = 0; i < views.length; i++) views[i].onInsert(row, this.undo);
  }

  delete(table: Table, row: Row): void {
    table.delete(row, this.undo);
    const views = this.maintainers.get(table.def.name);
    if (views) for (const view of views) view.onDelete(row, this.undo);
  }

  update(table: Table, row: Row, columns: readonly number[], values: readonly Value[]): void {
    const def = table.def;
    if (def.partitionColumn !== undefined && this.partitionCount > 1 && def.kind === 'table') {
      const position = columns.indexOf(def.partitionColumn);
      if (position !== -1 && values[position] !== row[def.partitionColumn]) {
        throw new SluiceError(ErrorCode.UNSUPPORTED, `the partition column ${def.name}.${def.columns[def.partitionColumn].name} cannot be updated; delete and insert the row instead`);
      }
    }
    const views = this.maintainers.get(def.name);
    // Copy the old values only when a view reads a changed column: most updates touch none.
    let before: Row | undefined;
    if (views) {
      for (let i = 0; i < views.length && before === undefined; i++) if (views[i].changedBy(row, columns, values)) before = row.slice();
    }
    table.update(row, columns, values, this.undo);
    if (before) {
      for (let i = 0; i < views!.length; i++) {
        if (!views![i].changedBy(before, columns, values)) continue;
        views![i].onDelete(before, this.undo);
        views![i].onInsert(row, this.undo);
      }
    }
  }

  // --- background work ----------------------------------------------------------------------

  /**
   * Deletes up to `rowsMax` rows whose TTL has passed (TTL column older than `now` minus the TTL),
   * as one transaction per call, so expiry runs in small slices between user transactions; views
   * over the rows are maintained like any delete. Returns how many rows it deleted.
   */
  expireRows(transactionId: number, now: number, rowsMax: number): number {
    assert(rowsMax > 0, 'a TTL batch deletes at least one row');
    let deleted = 0;
    this.begin(transactionId, now);
    try {
      for (const table of this.tables.values()) {
        const ttl = table.def.ttl;
        if (!ttl || deleted >= rowsMax) continue;
        const expired = expiredRows(table, ttl.column, now - ttl.minutes * 60_000, rowsMax - deleted);
        for (let i = 0; i < expired.length; i++) this.delete(table, expired[i]);
        deleted += expired.length;
      }
      this.commit();
    } catch (error) {
      this.rollback();
      throw error;
    }
    assert(deleted <= rowsMax, 'a TTL batch deletes at most its batch size');
    return deleted;
  }

  /** O(N) checks that indexes and views agree with their tables; tests call it. */
  verify(): void {
    if (!VERIFY) return;
    for (const table of this.tables.values()) table.verifyIndexes();
    for (const views of this.maintainers.values()) for (const view of views) view.verify();
  }
}

/**
 * Up to `rowsMax` rows of `table` whose `column` is before `cutoff`. With an ordered index led by
 * the TTL column this visits only expired rows, oldest first, and stops at the batch size; without
 * one it scans every row of the table on every call, which is why docs/ddl.md advises the index.
 */
function expiredRows(table: Table, column: number, cutoff: number, rowsMax: number): Row[] {
  const expired: Row[] = [];
  for (const index of table.indexes) {
    if (!(index instanceof OrderedIndex) || index.def.columns[0] !== column) continue;
    // Keys above every NULL (which never expires) and strictly below the cutoff.
    index.scan({ values: [null], inclusive: false }, { values: [cutoff], inclusive: false }, false, (row) => {
      expired.push(row);
      return expired.length < rowsMax;
    });
    return expired;
  }
  for (const row of table.rows) {
    const value = row[column];
    if (value !== null && (value as number) < cutoff) {
      expired.push(row);
      if (expired.length >= rowsMax) break;
    }
  }
  return expired;
}
