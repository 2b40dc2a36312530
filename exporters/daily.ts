/**
 * End-of-day batch exports: a job runs a query (or a procedure) over one finished day and hands the
 * whole result to its target's `writeDay` — one PostgreSQL transaction, or one file and then
 * `_SUCCESS` — then records the day as exported in the export buffer's LMDB. Running a job again
 * for a recorded day changes nothing and says so; the targets check too (a positions table in
 * PostgreSQL, `_SUCCESS` for files), so a crash between the write and the record is also safe.
 *
 * Scheduled jobs (`daily: "00:05 Europe/Copenhagen"`) fire once a day at that local time and
 * export the day that just ended; at start, a job whose last firing time passed without its day
 * recorded runs at once (catch-up). By hand: `@ExportRun(job, day)` (`sluice export run`).
 */
import { DateTime } from 'luxon';
import type { Logger } from 'pino';
import type { ColumnDef } from '../engine/catalog/schema.ts';
import { ErrorCode, SluiceError, nearNames } from '../engine/errors.ts';
import { planStatement } from '../engine/sql/statement.ts';
import type { SqlType, TypeName, Value } from '../engine/types.ts';
import { configError, type DailyJobConfig, type ExportsConfig } from './config.ts';
import type { ExportPipeline } from './pipeline.ts';
import type { DayBatch } from './target.ts';

export interface DailyRunResult {
  job: string;
  day: string;
  /** 'written' now, or 'already' exported before (nothing changed). */
  status: 'written' | 'already';
  rows: number;
}

export type QueryRunner = (sql: string, params: unknown[]) => Promise<unknown>;
export type ProcedureRunner = (procedure: string, params: unknown[]) => Promise<unknown>;

interface Job {
  readonly config: DailyJobConfig;
  readonly parameterCount: number;
  timer: NodeJS.Timeout | undefined;
}

export class DailyJobs {
  private readonly jobs = new Map<string, Job>();
  private readonly pipeline: ExportPipeline;
  private readonly logger: Logger | undefined;
  private readonly running = new Map<string, Promise<DailyRunResult>>();
  private runQuery: QueryRunner | undefined;
  private runProcedure: ProcedureRunner | undefined;
  private stopped = false;

  constructor(options: { config: ExportsConfig; pipeline: ExportPipeline; logger?: Logger }) {
    this.pipeline = options.pipeline;
    this.logger = options.logger;
    options.config.daily.forEach((config, i) => {
      let parameterCount = 2;
      if (config.query !== undefined) {
        try {
          parameterCount = planStatement(config.query, options.pipeline.catalog).parameterCount;
        } catch (error) {
          throw configError(['exports', 'daily', i, 'query'], (error as Error).message);
        }
        if (parameterCount > 2) throw configError(['exports', 'daily', i, 'query'], `the query takes ${parameterCount} parameters; it gets at most two: the day's start and end (TIMESTAMP, end exclusive)`);
      }
      const target = options.pipeline.target(config.target);
      if (target?.writeDay === undefined) throw configError(['exports', 'daily', i, 'target'], `target ${config.target} cannot write end-of-day batches (use a file or postgresql target)`);
      this.jobs.set(config.name, { config, parameterCount, timer: undefined });
    });
  }

  /** Starts the timers (and catch-up runs); the runners execute SQL and procedures on the database. */
  start(runQuery: QueryRunner, runProcedure: ProcedureRunner, now = Date.now()): void {
    this.runQuery = runQuery;
    this.runProcedure = runProcedure;
    for (const job of this.jobs.values()) {
      if (job.config.minuteOfDay === undefined) continue;
      const next = this.nextFiring(job.config, now);
      const previous = next.minus({ days: 1 });
      const missed = previous.minus({ days: 1 }).toISODate()!;
      if (previous.toMillis() <= now && this.pipeline.store.day(job.config.name, missed) === undefined) this.runLogged(job.config.name, missed, 'catch-up');
      this.schedule(job, now);
    }
  }

  /** Exports `day` (YYYY-MM-DD, in the job's time zone) for job `name`, once. */
  run(name: string, day: string, now = Date.now()): Promise<DailyRunResult> {
    const job = this.jobs.get(name);
    if (job === undefined) {
      return Promise.reject(new SluiceError(ErrorCode.EXPORT_CONFIG, `no daily export job ${name} (configured: ${[...this.jobs.keys()].join(', ') || 'none'})`, { object: name, suggestions: nearNames(name, this.jobs.keys()) }));
    }
    const start = DateTime.fromISO(day, { zone: job.config.timeZone });
    if (!/^\d{4}-\d{2}-\d{2}$/.test(day) || !start.isValid) return Promise.reject(new SluiceError(ErrorCode.PARAM_TYPE, `day must be a date YYYY-MM-DD, got ${JSON.stringify(day)}`, { path: ['day'] }));
    const end = start.plus({ days: 1 });
    if (end.toMillis() > now) return Promise.reject(new SluiceError(ErrorCode.EXPORT_FAILED, `day ${day} is not over yet in ${job.config.timeZone} (it ends at ${end.toISO()}); a daily export covers finished days only`, { object: name }));
    const key = `${name}\u0000${day}`;
    let running = this.running.get(key);
    if (running === undefined) {
      running = this.export(job, day, start.toMillis(), end.toMillis()).finally(() => this.running.delete(key));
      this.running.set(key, running);
    }
    return running;
  }

  stop(): void {
    this.stopped = true;
    for (const job of this.jobs.values()) if (job.timer !== undefined) clearTimeout(job.timer);
  }

  private async export(job: Job, day: string, dayStart: number, dayEnd: number): Promise<DailyRunResult> {
    const config = job.config;
    const recorded = this.pipeline.store.day(config.name, day);
    if (recorded !== undefined) return { job: config.name, day, status: 'already', rows: recorded.rows };
    if (this.runQuery === undefined || this.runProcedure === undefined) throw new SluiceError(ErrorCode.CLOSED, 'daily exports are not attached to a database');
    let result: unknown;
    try {
      if (config.query !== undefined) result = await this.runQuery(config.query, [dayStart, dayEnd].slice(0, job.parameterCount));
      else result = await this.runProcedure(config.procedure!, [dayStart, dayEnd]);
    } catch (error) {
      throw new SluiceError(ErrorCode.EXPORT_FAILED, `daily export ${config.name} for ${day}: the ${config.query !== undefined ? 'query' : `procedure ${config.procedure}`} failed: ${(error as Error).message}`, { object: config.name });
    }
    const batch = { ...toDayBatch(config.name, day, result), table: config.table };
    const target = this.pipeline.target(config.target)!;
    let status: 'written' | 'already';
    try {
      status = await target.writeDay!(batch);
    } catch (error) {
      throw new SluiceError(ErrorCode.EXPORT_FAILED, `daily export ${config.name} for ${day}: target ${config.target} failed: ${(error as Error).message}`, { object: config.name });
    }
    await this.pipeline.store.putDay(config.name, day, { rows: batch.rows.length, at: Date.now() });
    this.logger?.info({ job: config.name, day, rows: batch.rows.length, status }, `daily export ${config.name} for ${day}: ${status}`);
    return { job: config.name, day, status, rows: batch.rows.length };
  }

  private nextFiring(config: DailyJobConfig, now: number): DateTime {
    const today = DateTime.fromMillis(now, { zone: config.timeZone }).startOf('day').plus({ minutes: config.minuteOfDay! });
    return today.toMillis() > now ? today : today.plus({ days: 1 });
  }

  private schedule(job: Job, now: number): void {
    if (this.stopped) return;
    const next = this.nextFiring(job.config, now);
    job.timer = setTimeout(() => {
      job.timer = undefined;
      const day = next.minus({ days: 1 }).toISODate()!;
      this.runLogged(job.config.name, day, 'scheduled');
      this.schedule(job, Date.now());
    }, Math.max(0, next.toMillis() - now));
    job.timer.unref();
  }

  private runLogged(name: string, day: string, reason: string): void {
    this.run(name, day).catch((error: Error) => this.logger?.error({ job: name, day, reason, err: error }, `daily export ${name} for ${day} failed: ${error.message}`));
  }
}

/** A query result (@AdHoc's {columns, types, rows}) or a procedure's row objects as a DayBatch. */
export function toDayBatch(job: string, day: string, result: unknown): DayBatch {
  let names: string[];
  let types: (SqlType | null | undefined)[];
  let rows: Value[][];
  if (Array.isArray(result)) {
    names = result.length > 0 ? Object.keys(result[0] as object) : [];
    types = names.map(() => undefined);
    rows = result.map((row) => names.map((column) => (row as Record<string, Value>)[column] ?? null));
  } else if (typeof result === 'object' && result !== null && Array.isArray((result as { columns?: unknown }).columns) && Array.isArray((result as { rows?: unknown }).rows)) {
    const table = result as { columns: string[]; types?: (SqlType | null)[]; rows: Value[][] };
    names = table.columns;
    types = table.types ?? [];
    rows = table.rows;
  } else {
    throw new SluiceError(ErrorCode.EXPORT_FAILED, `daily export ${job}: expected rows (a query result, or a procedure returning an array of row objects), got ${typeof result}`, { object: job });
  }
  const columns: ColumnDef[] = names.map((column, position) => ({
    name: column,
    type: types[position] ?? { name: sniffType(rows, position) },
    nullable: true,
    defaultValue: undefined,
    position,
    hidden: false,
  }));
  return { job, day, columns, rows };
}

function sniffType(rows: readonly Value[][], position: number): TypeName {
  for (const row of rows) {
    const value = row[position];
    if (value === null || value === undefined) continue;
    if (typeof value === 'boolean') return 'BOOLEAN';
    if (typeof value === 'number') return Number.isInteger(value) ? 'BIGINT' : 'FLOAT';
    if (value instanceof Uint8Array) return 'VARBINARY';
    return 'VARCHAR';
  }
  return 'VARCHAR';
}
