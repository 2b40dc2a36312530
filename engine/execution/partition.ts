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
import type { ResultTable, StorageAccess } from '../sql/context.ts';
import { currentTransactionTime } from '../sql/expr.ts';
import { executePlan, type PlannedStatement } from '../sql/statement.ts';
import { StreamBuffer } from '../storage/stream.ts';
import { Table } from '../storage/table.ts';
import { UndoLog } from '../storage/undo.ts';
import { describeValue, type Row, type Value } from '../types.ts';
import { ViewMaintainer } from '../views/maintain.ts';
import { partitionOf } from './hash.ts';

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

  constructor(id: number, partitionCount: number, catalog: Catalog) {
    assert(id >= 0 && id < partitionCount, 'a partition id is within the partition count');
    this.id = id;
    this.partitionCount = partitionCount;
    this.catalog = catalog;
    this.applyCatalog(catalog);
  }

  /** Adopts a new catalog: new tables start empty, existing ones keep their rows. */
  applyCatalog(catalog: Catalog): void {
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
    // A new view over existing rows starts from those rows.
    for (const [source, views] of maintainers) {
      const sourceTable = tables.get(source);
      if (!sourceTable) continue;
      for (const maintainer of views) {
        if (this.tables.has(maintainer.view.def.name) || sourceTable.rows.size === 0) continue;
        for (const row of sourceTable.rows) maintainer.onInsert(row, this.undo);
        this.undo.release();
      }
    }
    this.tables = tables;
    this.streams = streams;
    this.maintainers = maintainers;
    this.catalog = catalog;
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
    for (const stream of this.touchedStreams) stream.commit();
    this.touchedStreams.length = 0;
    this.inTransaction = false;
    this.transactionCount++;
  }

  rollback(): void {
    assert(this.inTransaction, 'rollback follows begin');
    this.undo.rollback();
    for (const stream of this.touchedStreams) stream.rollback();
    this.touchedStreams.length = 0;
    this.inTransaction = false;
    this.transactionCount++;
  }

  execute(statement: PlannedStatement, params: readonly Value[]): ResultTable {
    assert(this.inTransaction, 'statements run inside a transaction');
    return executePlan(statement, this, params);
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
    const affected = views?.filter((view) => columns.some((column, i) => view.sourceColumns.has(column) && row[column] !== values[i]));
    const before = affected && affected.length > 0 ? row.slice() : undefined;
    table.update(row, columns, values, this.undo);
    if (before) {
      for (const view of affected!) {
        view.onDelete(before, this.undo);
        view.onInsert(row, this.undo);
      }
    }
  }

  // --- background work ----------------------------------------------------------------------

  /**
   * Deletes up to `rowsMax` rows whose TTL has passed, as one transaction per call, so expiry
   * runs in small slices between user transactions. Returns how many rows it deleted.
   */
  expireRows(transactionId: number, now: number, rowsMax: number): number {
    let deleted = 0;
    this.begin(transactionId, now);
    try {
      for (const table of this.tables.values()) {
        const ttl = table.def.ttl;
        if (!ttl) continue;
        const cutoff = now - ttl.minutes * 60_000;
        const expired: Row[] = [];
        for (const row of table.rows) {
          const value = row[ttl.column];
          if (value !== null && (value as number) < cutoff) {
            expired.push(row);
            if (deleted + expired.length >= rowsMax) break;
          }
        }
        for (const row of expired) this.delete(table, row);
        deleted += expired.length;
        if (deleted >= rowsMax) break;
      }
      this.commit();
    } catch (error) {
      this.rollback();
      throw error;
    }
    return deleted;
  }

  /** O(N) checks that indexes and views agree with their tables; tests call it. */
  verify(): void {
    if (!VERIFY) return;
    for (const table of this.tables.values()) table.verifyIndexes();
    for (const views of this.maintainers.values()) for (const view of views) view.verify();
  }
}
