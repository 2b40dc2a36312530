/**
 * The embedded database: `Database.open({ schema, procedures })` runs Sluice in-process, with
 * the same DDL, procedures and SQL as the server, its partitions on the caller's thread. It is the
 * engine's front door: it assigns transaction ids and timestamps, routes each call to its
 * partition (or runs it across all of them), and owns the procedure table and the TTL sweeper.
 *
 * Every call is one transaction and runs to completion synchronously; the Promise it returns
 * only makes the embedded API look like the client SDK's.
 */
import { readSchema } from './catalog/schema-source.ts';
import path from 'node:path';
import { applyDdl, emptyCatalog } from './catalog/ddl.ts';
import type { Catalog } from './catalog/schema.ts';
import { ErrorCode, SluiceError, nearNames } from './errors.ts';
import { partitionOf } from './execution/hash.ts';
import { Partition } from './execution/partition.ts';
import { loadProcedures, type LoadedProcedure } from './execution/procedures.ts';
import { adhocProcedure } from './execution/adhoc.ts';
import { failure, invoke, procedureParams, runOnPartition } from './execution/invoke.ts';
import { MultiPartitionRunner, SinglePartitionRunner, TransactionContext, rowObjects, type StatementRunner } from './execution/transaction.ts';
import type { ResultTable } from './sql/context.ts';
import { insertValues } from './sql/dml.ts';
import { checkParameterCount, normalizeParams, planStatement, type PlannedStatement } from './sql/statement.ts';
import type { Value } from './types.ts';
import type { Logger } from 'pino';
import { ExportPipeline, type PartitionHold } from '../exporters/pipeline.ts';
import { DailyJobs, type DailyRunResult } from '../exporters/daily.ts';
import { parseExportsConfig } from '../exporters/config.ts';

export interface DatabaseOptions {
  /** DDL text, or a path to a .sql file (when it ends in .sql and names no statement). */
  schema: string;
  /** Folder that CREATE PROCEDURE … FROM paths are relative to; default: the schema file's folder. */
  procedures?: string;
  /** Number of partitions; default 1. */
  partitions?: number;
  /** How often expired TTL rows are swept, in ms; 0 turns the sweeper off. Default 1000. */
  ttlIntervalMs?: number;
  /**
   * The clock that stamps transactions (ctx.timestamp, NOW()), in ms since the epoch; default
   * Date.now. Tests and the simulator pass a fake one so that runs repeat exactly.
   */
  clock?: () => number;
  /**
   * Data directory. With one, committed rows of streams with EXPORT TO TARGET go to the export
   * pipeline (buffer in `<data>/export`; docs/exporters.md); without one they wait in memory for
   * `drainStream`.
   */
  data?: string;
  /** The deployment's `exports` section; default: each target a stream names is a JSON Lines file target. */
  exports?: unknown;
  /** Logger for the export pipeline's warnings. */
  logger?: Logger;
}

export const ttlBatchRowsMax = 1000;
const adhocPlanCacheMax = 1000;

interface Runner {
  runner: StatementRunner;
  context: TransactionContext;
}

export class Database {
  private catalogValue: Catalog;
  private readonly partitions: Partition[];
  private procedures: Map<string, LoadedProcedure>;
  private readonly single: Runner[];
  private readonly multi: Runner;
  private lastTransactionId = 0;
  private lastTimestamp = 0;
  private readonly adhocPlans = new Map<string, PlannedStatement>();
  private ttlTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly proceduresDir: string;
  private readonly clock: () => number;
  private exportPipeline: ExportPipeline | undefined;
  private dailyJobs: DailyJobs | undefined;
  private exportStreams: ReadonlySet<string> = new Set();
  /** Committed stream rows of the transaction just run, reused (StreamBuffer.takeCommitted). */
  private readonly exportRows: unknown[] = [];
  private readonly holdWaiters = new Map<number, (() => void)[]>();

  private constructor(catalog: Catalog, partitionCount: number, procedures: Map<string, LoadedProcedure>, proceduresDir: string, clock: () => number) {
    this.clock = clock;
    this.catalogValue = catalog;
    this.partitions = Array.from({ length: partitionCount }, (_, id) => new Partition(id, partitionCount, catalog));
    this.procedures = procedures;
    this.proceduresDir = proceduresDir;
    this.single = this.partitions.map((partition) => {
      const runner = new SinglePartitionRunner(partition);
      return { runner, context: new TransactionContext(runner, partition.id) };
    });
    const runner = new MultiPartitionRunner(this.partitions);
    this.multi = { runner, context: new TransactionContext(runner, -1) };
  }

  static async open(options: DatabaseOptions): Promise<Database> {
    const { ddl, folder } = await readSchema(options.schema);
    const catalog = applyDdl(ddl, emptyCatalog);
    const proceduresDir = options.procedures ?? folder;
    const procedures = await loadProcedures(catalog, proceduresDir);
    const partitions = options.partitions ?? 1;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > 1024) {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, `partitions must be an integer from 1 to 1024, got ${partitions}`);
    }
    const database = new Database(catalog, partitions, procedures, proceduresDir, options.clock ?? Date.now);
    if (options.data !== undefined) await database.openExports(options.data, options.exports, options.logger);
    else if (options.exports !== undefined) throw new SluiceError(ErrorCode.EXPORT_CONFIG, 'exports: the export buffer needs a data directory (the data option)', { path: ['exports'] });
    database.startTtl(options.ttlIntervalMs ?? 1000);
    return database;
  }

  get catalog(): Catalog {
    return this.catalogValue;
  }

  get partitionCount(): number {
    return this.partitions.length;
  }

  /**
   * Calls a procedure: one transaction. Resolves to what the procedure returned. While the
   * export buffer of the call's partition is full it waits (onFull 'wait') or fails
   * (EXPORT_BUFFER_FULL).
   */
  async call(name: string, ...params: unknown[]): Promise<unknown> {
    const pipeline = this.exportPipeline;
    if (pipeline !== undefined && pipeline.config.buffer.onFull === 'wait') {
      const procedure = this.procedures.get(name);
      if (procedure?.partitionParameter !== undefined) {
        const partition = partitionOf(procedureParams(procedure, params)[procedure.partitionParameter], this.partitions.length);
        while (pipeline.holdOf(partition) !== undefined) await this.released(partition);
      }
    }
    return this.callSync(name, params);
  }

  /** The synchronous core of `call`, for callers already on the partition's thread. */
  callSync(name: string, params: readonly unknown[]): unknown {
    this.checkOpen();
    const procedure = this.procedures.get(name);
    if (!procedure) {
      throw new SluiceError(ErrorCode.UNKNOWN_PROCEDURE, `unknown procedure ${name}`, { object: name, suggestions: nearNames(name, this.procedures.keys()) });
    }
    const values = procedureParams(procedure, params);
    if (procedure.partitionParameter === undefined) return this.runMulti(procedure, values);
    const partition = partitionOf(values[procedure.partitionParameter], this.partitions.length);
    return this.runSingle(procedure, values, partition);
  }

  /** Runs ad-hoc SQL as its own transaction. */
  async query(sql: string, params: readonly unknown[] = []): Promise<ResultTable> {
    this.checkOpen();
    const statement = this.adhocPlan(sql);
    checkParameterCount(statement, params);
    const values = normalizeParams(params);
    const routing = statement.routing;
    const procedure = adhocProcedure(statement);
    if (routing.kind === 'any' && statement.readOnly) return this.runSingle(procedure, values, 0) as ResultTable;
    if (routing.kind === 'keyed') return this.runSingle(procedure, values, partitionOf(routing.key.evaluate([], values), this.partitions.length)) as ResultTable;
    if (routing.kind === 'insert' && statement.plan.kind === 'insert' && statement.plan.rows.length === 1) {
      const row = insertValues(statement.plan, 0, values);
      return this.runSingle(procedure, values, partitionOf(row[statement.plan.table.partitionColumn!], this.partitions.length)) as ResultTable;
    }
    return this.runMulti(procedure, values) as ResultTable;
  }

  /** Ad-hoc SQL with rows as objects, for tests and scripts. */
  async queryRows(sql: string, params: readonly unknown[] = []): Promise<Record<string, unknown>[]> {
    return rowObjects(await this.query(sql, params));
  }

  /**
   * Adds DDL (tables, indexes, views, procedures) to the running database. All or nothing: the
   * script is applied to a copy of the catalog, its procedures are loaded, and every partition
   * builds its new storage beside the old (prepareCatalog) before any adopts it; an error at any
   * step leaves the catalog, procedures and data as they were.
   */
  async applySchema(ddl: string): Promise<void> {
    this.checkOpen();
    const base = this.catalogValue;
    const catalog = applyDdl(ddl, base);
    // New exported streams must fit the export configuration before anything changes.
    this.exportPipeline?.checkCatalog(catalog);
    const procedures = await loadProcedures(catalog, this.proceduresDir);
    // Loading awaited: a schema change that got in meanwhile would be silently undone by ours.
    this.checkOpen();
    if (this.catalogValue !== base) {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, 'another schema change was applied while this one loaded its procedures; apply it again');
    }
    const prepared = this.partitions.map((partition) => partition.prepareCatalog(catalog));
    for (let i = 0; i < this.partitions.length; i++) this.partitions[i].adoptCatalog(prepared[i]);
    this.catalogValue = catalog;
    this.procedures = procedures;
    this.adhocPlans.clear();
    if (this.exportPipeline !== undefined) {
      this.exportPipeline.adoptCatalog(catalog);
      this.exportStreams = new Set(this.exportPipeline.streamNames);
    }
  }

  /**
   * Deletes expired TTL rows, at most `rowsMax` per partition, each partition's batch one
   * transaction; returns how many rows (a replicated table's row counts once per partition).
   */
  expireTtl(now = this.clock(), rowsMax = ttlBatchRowsMax): number {
    let deleted = 0;
    for (const partition of this.partitions) deleted += partition.expireRows(this.nextTransactionId(), now, rowsMax);
    return deleted;
  }

  /** Runs the O(N) consistency checks of every partition (indexes and views agree with tables). */
  verify(): void {
    for (const partition of this.partitions) partition.verify();
  }

  /** Committed stream rows waiting for export, oldest first (until exporters take them). */
  drainStream(name: string): { partition: number; sequence: number; row: Value[] }[] {
    const out: { partition: number; sequence: number; row: Value[] }[] = [];
    for (const partition of this.partitions) {
      for (const entry of partition.stream(name.toLowerCase()).drain()) out.push({ partition: partition.id, ...entry });
    }
    return out;
  }

  /** The export pipeline, when the database has a data directory. */
  get exports(): ExportPipeline | undefined {
    return this.exportPipeline;
  }

  /** Runs an end-of-day export job for one finished day (see exporters/daily.ts). */
  async exportRun(job: string, day: string): Promise<DailyRunResult> {
    this.checkOpen();
    if (this.dailyJobs === undefined) throw new SluiceError(ErrorCode.UNSUPPORTED, 'this database has no export pipeline (open it with a data directory)');
    return this.dailyJobs.run(job, day, this.clock());
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.ttlTimer) clearInterval(this.ttlTimer);
    this.dailyJobs?.stop();
    await this.exportPipeline?.close();
    for (const waiters of this.holdWaiters.values()) for (const wake of waiters) wake();
  }

  private async openExports(data: string, raw: unknown, logger: Logger | undefined): Promise<void> {
    const config = parseExportsConfig(raw);
    const pipeline = await ExportPipeline.open({ exportDir: path.join(path.resolve(data), 'export'), catalog: this.catalogValue, config, partitions: this.partitions.length, logger });
    this.exportPipeline = pipeline;
    this.exportStreams = new Set(pipeline.streamNames);
    // The embedded database starts empty: new rows continue after what the buffer stored.
    const floors = pipeline.sequenceFloors();
    for (const partition of this.partitions) {
      for (const stream of partition.allStreams()) {
        const floor = floors[stream.def.name]?.[partition.id];
        if (floor !== undefined) stream.raiseSequence(floor);
      }
    }
    pipeline.onHold = (partition, hold) => {
      if (hold !== undefined) return;
      const waiters = this.holdWaiters.get(partition) ?? [];
      this.holdWaiters.delete(partition);
      for (const wake of waiters) wake();
    };
    try {
      this.dailyJobs = new DailyJobs({ config, pipeline, logger });
    } catch (error) {
      await pipeline.close();
      throw error;
    }
    this.dailyJobs.start((sql, params) => this.query(sql, params), (procedure, params) => this.call(procedure, ...params), this.clock());
  }

  private released(partition: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.holdWaiters.get(partition) ?? [];
      waiters.push(resolve);
      this.holdWaiters.set(partition, waiters);
    });
  }

  /** Refuses a call on a partition whose export buffer is full (callSync cannot wait). */
  private checkHold(partition: number): void {
    const hold: PartitionHold | undefined = this.exportPipeline?.holdOf(partition);
    if (hold !== undefined) throw hold.error;
  }

  /** Hands the committed stream rows of `partition` to the export pipeline. */
  private shipStreamRows(partition: Partition): void {
    const pipeline = this.exportPipeline!;
    const out = this.exportRows;
    for (const stream of partition.allStreams()) {
      if (this.exportStreams.has(stream.def.name)) stream.takeCommitted(out);
      else stream.discardCommitted();
    }
    if (out.length > 0) {
      pipeline.accept(partition.id, out);
      out.length = 0;
    }
  }

  // ---------------------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new SluiceError(ErrorCode.CLOSED, 'the database is closed');
  }

  private adhocPlan(sql: string): PlannedStatement {
    let statement = this.adhocPlans.get(sql);
    if (!statement) {
      statement = planStatement(sql, this.catalogValue);
      if (this.adhocPlans.size >= adhocPlanCacheMax) this.adhocPlans.delete(this.adhocPlans.keys().next().value!);
      this.adhocPlans.set(sql, statement);
    }
    return statement;
  }

  private nextTransactionId(): number {
    return ++this.lastTransactionId;
  }

  private nextTimestamp(): number {
    // Never earlier than the previous transaction's: NOW() and ctx.timestamp only move forward.
    const now = this.clock();
    if (now > this.lastTimestamp) this.lastTimestamp = now;
    return this.lastTimestamp;
  }

  private runSingle(procedure: LoadedProcedure, values: Value[], partitionId: number): unknown {
    const partition = this.partitions[partitionId];
    const { runner, context } = this.single[partitionId];
    if (this.exportPipeline === undefined) return runOnPartition(partition, runner, context, procedure, values, this.nextTransactionId(), this.nextTimestamp());
    this.checkHold(partitionId);
    try {
      return runOnPartition(partition, runner, context, procedure, values, this.nextTransactionId(), this.nextTimestamp());
    } finally {
      this.shipStreamRows(partition);
    }
  }

  private runMulti(procedure: LoadedProcedure, values: Value[]): unknown {
    const { runner, context } = this.multi;
    const transactionId = this.nextTransactionId();
    const timestamp = this.nextTimestamp();
    for (const partition of this.partitions) partition.begin(transactionId, timestamp);
    let result: unknown;
    try {
      result = invoke(procedure, runner, context, values, transactionId, timestamp);
    } catch (error) {
      for (const partition of this.partitions) partition.rollback();
      throw failure(error, procedure);
    }
    for (const partition of this.partitions) partition.commit();
    if (this.exportPipeline !== undefined) for (const partition of this.partitions) this.shipStreamRows(partition);
    return result;
  }

  private startTtl(intervalMs: number): void {
    const hasTtl = [...this.catalogValue.tables.values()].some((table) => table.ttl);
    if (!hasTtl || intervalMs <= 0) return;
    this.ttlTimer = setInterval(() => {
      // Small slices: one batch per partition per tick keeps user transactions flowing.
      this.expireTtl();
    }, intervalMs);
    this.ttlTimer.unref();
  }
}
