/**
 * The `file` export target: each delivered batch becomes one file per day it touches, in
 * Hive-style day folders —
 *
 *   <path>/<stream>/dt=YYYY-MM-DD/part-p<partition>-<first sequence>-<last sequence>.<parquet|csv|jsonl>
 *
 * The day is that of `dayColumn` (a TIMESTAMP column) when configured, else the commit day, in
 * `timeZone` (default UTC). Files are written atomically (temp + fsync + rename) by a piscina pool
 * (file-encode.ts), never on the main thread. Because the pipeline repeats a failed or interrupted
 * delivery with exactly the same sequence range, a re-delivery rewrites the same file names:
 * nothing is duplicated. Rolling by size and time is the pipeline's batching (`batchRowsMax`,
 * `batchBytesMax`, `lingerMs`). A day folder gets `_SUCCESS` once every row that belongs in it has
 * been written, as far as the target can know:
 * - filed by commit day: once the pipeline's watermark (every row committed before it is
 *   delivered) has passed the day's end plus `closeGraceMs`;
 * - filed by a day column (event time, which need not follow the wall clock: a backfill, a
 *   replay, a simulation): once a row of the stream whose day column is at or past the day's end
 *   plus `closeGraceMs` has been delivered and the watermark has passed that row's commit. Rows
 *   of the day committed after it are late: they are still written, beside `_SUCCESS`, with one
 *   warning per day. A stream that goes quiet closes its days once it has committed nothing for
 *   `closeGraceMs`.
 */
import { existsSync, readdirSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import { Piscina } from 'piscina';
import type { Logger } from 'pino';
import type { TableDef } from '../engine/catalog/schema.ts';
import type { Value } from '../engine/types.ts';
import { configError, describe, nonNegativeInteger, validTimeZone } from './config.ts';
import type { EncodeResult, EncodeTask, FileFormat } from './file-encode.ts';
import type { TargetContext } from './registry.ts';
import type { DayBatch, ExportBatch, ExportTarget, TargetConfig } from './target.ts';

export const fileFormats: readonly FileFormat[] = ['parquet', 'csv', 'jsonl'];
/** Parquet page compression; the default is file-encode.ts's parquetCompressionDefault. */
export const parquetCompressions = ['snappy', 'zstd', 'lz4', 'gzip', 'none'] as const;
export type ParquetCompression = (typeof parquetCompressions)[number];
/** With a day column, rows of a day may come late: a day is closed this long after it ends. */
export const dayColumnCloseGraceMsDefault = 60 * 60 * 1000;
export const successMarker = '_SUCCESS';

const extensions: Record<FileFormat, string> = { parquet: 'parquet', csv: 'csv', jsonl: 'jsonl' };
const sequenceDigits = 12;

let pool: Piscina<EncodeTask, EncodeResult> | undefined;
let poolUsers = 0;

function acquirePool(): Piscina<EncodeTask, EncodeResult> {
  poolUsers++;
  pool ??= new Piscina<EncodeTask, EncodeResult>({
    filename: new URL('./file-encode.ts', import.meta.url).href,
    // Encoding competes with the partitions for cores: a small pool, tasks queue behind it.
    maxThreads: Math.max(1, Math.floor(os.availableParallelism() / 2)),
    minThreads: 1,
    idleTimeout: 30_000,
  });
  return pool;
}

async function releasePool(): Promise<void> {
  if (--poolUsers > 0 || pool === undefined) return;
  const closing = pool;
  pool = undefined;
  await closing.destroy();
}

interface DayRange {
  day: string;
  start: number;
  end: number;
}

/** A day folder written to and not yet closed. */
interface OpenDay {
  readonly stream: string;
  /** The day's end (ms). */
  readonly end: number;
  /**
   * Day-column filing: the commit time of the first delivered row of the stream whose day column
   * is at or past `end + closeGraceMs`; the day closes once the watermark passes it.
   */
  passedAtCommit: number | undefined;
}

export class FileTarget implements ExportTarget {
  readonly name: string;
  /** A redelivered range rewrites the same file name: never a copy. */
  readonly duplicatesPossible = 0;
  readonly root: string;
  readonly format: FileFormat;
  /** Parquet only; undefined: the encoder's default. */
  readonly compression: ParquetCompression | undefined;
  readonly timeZone: string;
  readonly closeGraceMs: number;
  private readonly dayColumns = new Map<string, number | undefined>();
  private readonly dayColumn: string | undefined;
  private readonly pool: Piscina<EncodeTask, EncodeResult>;
  private readonly logger: Logger | undefined;
  /** Day folders written and not yet closed, by folder (`<stream folder>/dt=<day>`). */
  private readonly openDays = new Map<string, OpenDay>();
  /** Per stream: the latest commit time delivered (or, for days found open at start, the start). */
  private readonly lastCommit = new Map<string, number>();
  /** Closed day folders already warned about late rows: one warning per day, not per batch. */
  private readonly warnedLate = new Set<string>();
  private lastRange: DayRange | undefined;
  private closed = false;

  constructor(config: TargetConfig, context: TargetContext) {
    const at = (key: string): (string | number)[] => ['exports', 'targets', config.name, key];
    const format = config.format ?? 'parquet';
    if (typeof format !== 'string' || !(fileFormats as readonly string[]).includes(format)) throw configError(at('format'), `expected one of ${fileFormats.join(', ')}, got ${describe(format)}`);
    const compression = config.compression;
    if (compression !== undefined) {
      if (typeof compression !== 'string' || !(parquetCompressions as readonly string[]).includes(compression)) throw configError(at('compression'), `expected one of ${parquetCompressions.join(', ')}, got ${describe(compression)}`);
      if (format !== 'parquet') throw configError(at('compression'), `applies to the parquet format only, not ${format}`);
    }
    if (config.path !== undefined && typeof config.path !== 'string') throw configError(at('path'), `expected a folder, got ${describe(config.path)}`);
    const timeZone = config.timeZone ?? 'UTC';
    if (typeof timeZone !== 'string' || !validTimeZone(timeZone)) throw configError(at('timeZone'), `expected an IANA time zone such as Europe/Copenhagen, got ${describe(timeZone)}`);
    nonNegativeInteger(config.closeGraceMs, at('closeGraceMs'));
    const dayColumn = config.dayColumn;
    if (dayColumn !== undefined && typeof dayColumn !== 'string') throw configError(at('dayColumn'), `expected a TIMESTAMP column name, got ${describe(dayColumn)}`);
    this.name = config.name;
    this.dayColumn = dayColumn?.toLowerCase();
    for (const table of context.catalog.tables.values()) {
      if (table.kind === 'stream' && table.exportTarget === config.name) this.addStream(table);
    }
    this.format = format as FileFormat;
    this.compression = compression as ParquetCompression | undefined;
    this.root = path.resolve((config.path as string | undefined) ?? path.join(context.exportDir, 'files', config.name));
    this.timeZone = timeZone;
    this.closeGraceMs = (config.closeGraceMs as number | undefined) ?? (dayColumn === undefined ? 0 : dayColumnCloseGraceMsDefault);
    this.logger = context.logger;
    mkdirSync(this.root, { recursive: true });
    this.findOpenDays();
    this.pool = acquirePool();
  }

  /** A stream exporting here, at creation or added live: its rows are filed by the day column. */
  addStream(stream: TableDef): void {
    this.dayColumns.set(stream.name, this.dayColumn === undefined ? undefined : dayColumnOf(stream, this.dayColumn, ['exports', 'targets', this.name, 'dayColumn']));
  }

  async deliver(batch: ExportBatch): Promise<void> {
    if (this.closed) throw new Error(`file target ${this.name} is closed`);
    const columns = batch.columns.map((column) => ({ name: column.name, type: column.type }));
    const writes: Promise<EncodeResult>[] = [];
    const { groups, latestWhen } = this.groupByDay(batch);
    for (const group of groups) {
      const folder = path.join(this.root, batch.stream, `dt=${group.range.day}`);
      if (!this.openDays.has(folder)) {
        if (!existsSync(path.join(folder, successMarker))) {
          this.openDays.set(folder, { stream: batch.stream, end: group.range.end, passedAtCommit: undefined });
        } else if (!this.warnedLate.has(folder)) {
          this.warnedLate.add(folder);
          this.logger?.warn(
            { target: this.name, folder },
            `rows for the closed day ${group.range.day} of stream ${batch.stream} arrived late; written beside its ${successMarker} (further late rows of that day are written without a warning)`,
          );
        }
      }
      const file = path.join(folder, `part-p${String(batch.partition).padStart(4, '0')}-${pad(group.first)}-${pad(group.last)}.${extensions[this.format]}`);
      writes.push(this.pool.run({ file, format: this.format, compression: this.compression, columns, ...group.rows }));
    }
    const commits = batch.commitTimestamps;
    if (commits.length > 0) this.lastCommit.set(batch.stream, Math.max(this.lastCommit.get(batch.stream) ?? 0, commits[commits.length - 1]));
    if (latestWhen !== undefined) this.notePassedDays(batch, latestWhen);
    await Promise.all(writes);
  }

  /**
   * Day-column filing: open days of the batch's stream that the batch's day column has passed
   * (by `closeGraceMs`) learn the commit time of the first row that passed them. Rows are looked
   * at again only when some open day was passed, about once per day.
   */
  private notePassedDays(batch: ExportBatch, latestWhen: number): void {
    const dayColumn = this.dayColumns.get(batch.stream)!;
    for (const day of this.openDays.values()) {
      if (day.stream !== batch.stream || day.passedAtCommit !== undefined) continue;
      const threshold = day.end + this.closeGraceMs;
      if (latestWhen < threshold) continue;
      for (let i = 0; i < batch.rows.length; i++) {
        const when = batch.rows[i][dayColumn];
        if (when !== null && (when as number) >= threshold) {
          day.passedAtCommit = batch.commitTimestamps[i];
          break;
        }
      }
    }
  }

  /**
   * Rows of one day keep their order; a batch touching several days makes one file per day. Filed
   * by commit time, a chunk's rows share one day, so they go to the encoder thread still encoded;
   * filed by a day column, each row is looked at here.
   */
  private groupByDay(batch: ExportBatch): { groups: DayGroup[]; latestWhen: number | undefined } {
    const dayColumn = this.dayColumns.get(batch.stream);
    const groups = new Map<string, DayGroup>();
    if (dayColumn === undefined && batch.encoded !== undefined) {
      let sequence = batch.firstSequence;
      for (const chunk of batch.encoded.chunks) {
        const range = this.dayOf(chunk.timestamp);
        let group = groups.get(range.day);
        if (group === undefined) {
          group = { range, first: sequence, last: 0, rows: { encoded: { width: batch.encoded.width, chunks: [] } } };
          groups.set(range.day, group);
        }
        group.rows.encoded!.chunks.push({ data: ownBytes(chunk.data), skip: chunk.skip, count: chunk.count });
        sequence += chunk.count;
        group.last = sequence - 1;
      }
      return { groups: [...groups.values()], latestWhen: undefined };
    }
    let latestWhen: number | undefined;
    for (let i = 0; i < batch.rows.length; i++) {
      const row = batch.rows[i];
      const dayValue = dayColumn === undefined ? null : (row[dayColumn] as number | null);
      const when = dayValue ?? batch.commitTimestamps[i];
      // Only the day column moves a day-column stream's time on: a NULL row's commit time is another clock.
      if (dayValue !== null && (latestWhen === undefined || dayValue > latestWhen)) latestWhen = dayValue;
      const range = this.dayOf(when);
      let group = groups.get(range.day);
      if (group === undefined) {
        group = { range, first: batch.firstSequence + i, last: 0, rows: { rows: [] } };
        groups.set(range.day, group);
      }
      group.rows.rows!.push(row as Value[]);
      group.last = batch.firstSequence + i;
    }
    return { groups: [...groups.values()], latestWhen };
  }

  /** Closes (writes `_SUCCESS` into) every open day whose rows are all written (see the header). */
  async watermark(committedBefore: number): Promise<void> {
    for (const [folder, day] of this.openDays) {
      if (!this.closes(day, committedBefore)) continue;
      writeAtomically(path.join(folder, successMarker), '');
      this.openDays.delete(folder);
    }
  }

  private closes(day: OpenDay, committedBefore: number): boolean {
    if (this.dayColumns.get(day.stream) === undefined) return day.end + this.closeGraceMs <= committedBefore;
    if (day.passedAtCommit !== undefined && day.passedAtCommit <= committedBefore) return true;
    const lastCommit = this.lastCommit.get(day.stream);
    return lastCommit !== undefined && lastCommit + this.closeGraceMs <= committedBefore;
  }

  /** End-of-day job: one file, then `_SUCCESS`; a day that has `_SUCCESS` already is left alone. */
  async writeDay(batch: DayBatch): Promise<'written' | 'already'> {
    const folder = path.join(this.root, batch.table ?? batch.job, `dt=${batch.day}`);
    if (existsSync(path.join(folder, successMarker))) return 'already';
    const columns = batch.columns.map((column) => ({ name: column.name, type: column.type }));
    await this.pool.run({ file: path.join(folder, `part-00000.${extensions[this.format]}`), format: this.format, compression: this.compression, columns, rows: batch.rows as EncodeTask['rows'] });
    writeAtomically(path.join(folder, successMarker), '');
    return 'written';
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await releasePool();
  }

  /** Day folders that exist without `_SUCCESS` (written before a restart) are still to be closed. */
  private findOpenDays(): void {
    for (const stream of readdirSync(this.root, { withFileTypes: true })) {
      if (!stream.isDirectory()) continue;
      for (const day of readdirSync(path.join(this.root, stream.name), { withFileTypes: true })) {
        const match = /^dt=(\d{4}-\d{2}-\d{2})$/.exec(day.name);
        if (!day.isDirectory() || !match) continue;
        const folder = path.join(this.root, stream.name, day.name);
        if (existsSync(path.join(folder, successMarker))) continue;
        const start = DateTime.fromISO(match[1], { zone: this.timeZone });
        this.openDays.set(folder, { stream: stream.name, end: start.plus({ days: 1 }).toMillis(), passedAtCommit: undefined });
        // A stream that stays quiet after the restart still closes its days, `closeGraceMs` on.
        if (!this.lastCommit.has(stream.name)) this.lastCommit.set(stream.name, Date.now());
      }
    }
  }

  private dayOf(when: number): DayRange {
    const last = this.lastRange;
    if (last !== undefined && when >= last.start && when < last.end) return last;
    const start = DateTime.fromMillis(when, { zone: this.timeZone }).startOf('day');
    const range = { day: start.toISODate()!, start: start.toMillis(), end: start.plus({ days: 1 }).toMillis() };
    this.lastRange = range;
    return range;
  }
}

interface DayGroup {
  range: DayRange;
  first: number;
  last: number;
  rows: Pick<EncodeTask, 'rows' | 'encoded'>;
}

function dayColumnOf(table: TableDef, name: string, at: (string | number)[]): number {
  const column = table.columnsByName.get(name);
  if (column === undefined) throw configError(at, `stream ${table.name} has no column ${name}`);
  if (column.type.name !== 'TIMESTAMP') throw configError(at, `column ${table.name}.${name} is ${column.type.name}; a day column must be TIMESTAMP`);
  return column.position;
}

/** The bytes in memory of their own: a view into a larger buffer would be copied whole to the encoder thread. */
function ownBytes(data: Uint8Array): Uint8Array {
  return data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
}

function pad(sequence: number): string {
  return String(sequence).padStart(sequenceDigits, '0');
}

function writeAtomically(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const temporary = path.join(path.dirname(file), `.tmp-${process.pid}-${path.basename(file)}`);
  writeFileSync(temporary, text, { flush: true });
  renameSync(temporary, file);
}
