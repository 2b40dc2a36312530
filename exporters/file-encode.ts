/**
 * The file target's encoder, run in a piscina pool (file-target.ts) so that Parquet and CSV
 * encoding never runs on the main thread, where the router sequences transactions. A task is
 * stateless: rows and column types in, one file out, written atomically — encode, write to a
 * temporary name beside the final one with fsync, then rename over it (a re-delivery of the same
 * range replaces the same file; a crash leaves at most a stray temporary file, never half a file).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Binary, Bool, Decimal, Field, Float64, Int8, Int16, Int32, Int64, RecordBatch, Schema, Struct, Table, TimestampMillisecond, Utf8, makeData, tableToIPC, type DataType } from 'apache-arrow';
import { Compression, EnabledStatistics, Table as WasmTable, WriterPropertiesBuilder, WriterVersion, writeParquet } from 'parquet-wasm';
import { decimalDefaultPrecision, decimalDefaultScale, type SqlType, type TypeName, type Value } from '../engine/types.ts';
import type { ParquetCompression } from './file-target.ts';
import { decodeStreamColumns, decodeStreamRows, encodeStreamChunk, type ColumnBuffers, type ColumnLayout } from '../engine/storage/stream-chunk.ts';

export type FileFormat = 'parquet' | 'csv' | 'jsonl';
const compressionCodes: Record<ParquetCompression, Compression> = {
  snappy: Compression.SNAPPY,
  zstd: Compression.ZSTD,
  lz4: Compression.LZ4_RAW,
  gzip: Compression.GZIP,
  none: Compression.UNCOMPRESSED,
};
export const parquetCompressionDefault: ParquetCompression = 'snappy';

export interface EncodeTask {
  /** Final path of the file; the folder is created if missing. */
  file: string;
  format: FileFormat;
  /** Parquet only; default parquetCompressionDefault. */
  compression?: ParquetCompression;
  columns: { name: string; type: SqlType }[];
  /** The rows, or (from the export buffer) the encoded chunks holding them, decoded here. */
  rows?: Value[][];
  encoded?: { width: number; chunks: { data: Uint8Array; skip: number; count: number }[] };
}

export interface EncodeResult {
  file: string;
  bytes: number;
}

/** Piscina's entry point. */
export default function encodeFile(task: EncodeTask): EncodeResult {
  const bytes = encode(task);
  mkdirSync(path.dirname(task.file), { recursive: true });
  const temporary = path.join(path.dirname(task.file), `.tmp-${process.pid}-${path.basename(task.file)}`);
  writeFileSync(temporary, bytes, { flush: true });
  renameSync(temporary, task.file);
  return { file: task.file, bytes: bytes.length };
}

export function encode(task: EncodeTask): Uint8Array {
  if (task.format === 'parquet') return encodeParquet(task.columns, decodeColumns(task), task.compression ?? parquetCompressionDefault);
  const rows = task.rows ?? decodeRows(task.encoded!);
  switch (task.format) {
    case 'csv':
      return encodeCsv(task.columns, rows);
    case 'jsonl': {
      const text = new TextSink();
      const timestamps = new IsoTimestamps();
      for (const row of rows) {
        const object: Record<string, unknown> = {};
        for (let c = 0; c < task.columns.length; c++) object[task.columns[c].name] = jsonValue(row[c], task.columns[c].type.name, timestamps);
        text.write(JSON.stringify(object) + '\n');
      }
      return text.bytes();
    }
  }
}

/** The task's rows as column buffers; rows sent as values are encoded as a chunk first, so that one decoder builds every column. */
export function decodeColumns(task: EncodeTask): ColumnBuffers[] {
  const layouts = task.columns.map((column) => columnFormat(column.type).layout);
  if (task.encoded !== undefined) return decodeStreamColumns(task.encoded.chunks, layouts);
  const rows = task.rows!;
  const width = layouts.length;
  const values = new Array<Value>(rows.length * width);
  for (let r = 0; r < rows.length; r++) for (let c = 0; c < width; c++) values[r * width + c] = rows[r][c];
  return decodeStreamColumns([{ data: encodeStreamChunk(0, values), skip: 0, count: rows.length }], layouts);
}

function decodeRows(encoded: NonNullable<EncodeTask['encoded']>): Value[][] {
  return encoded.chunks.flatMap((chunk) => decodeStreamRows(chunk.data, encoded.width, chunk.skip, chunk.count));
}

/**
 * Parquet through Apache Arrow: the rows become Arrow columns (decodeStreamColumns reads encoded
 * chunks straight into Arrow's buffers), cross into parquet-wasm (the Rust arrow-rs writer built
 * for WebAssembly) as one IPC stream and come back as the file's bytes. SQL types map to
 * TINYINT, SMALLINT and INTEGER → INT32 marked INT(8), INT(16) and INT(32), BIGINT → INT64, FLOAT → DOUBLE, DECIMAL(p,s) → the DECIMAL logical type
 * with the same precision and scale (INT32 for p ≤ 9, else INT64: exact, not doubles), TIMESTAMP
 * → TIMESTAMP(MILLIS), VARCHAR → UTF-8 string, VARBINARY → binary, BOOLEAN; every column nullable.
 */
export function encodeParquet(columns: EncodeTask['columns'], buffers: ColumnBuffers[], compression: ParquetCompression): Uint8Array {
  return parquetFromArrow(columns, arrowStream(columns, buffers), compression);
}

/** The columns as an Arrow IPC stream of one record batch; the buffers are copied once, into it. */
export function arrowStream(columns: EncodeTask['columns'], buffers: ColumnBuffers[]): Uint8Array {
  const fields = columns.map((column) => new Field(column.name, columnFormat(column.type).arrow, true));
  const children = buffers.map((column, c) =>
    makeData({
      type: fields[c].type,
      length: column.rows,
      nullCount: column.nullCount,
      nullBitmap: column.nullCount > 0 ? column.validity : undefined,
      data: column.values,
      valueOffsets: column.offsets,
    } as Parameters<typeof makeData>[0]),
  );
  const rows = buffers.length > 0 ? buffers[0].rows : 0;
  const batch = new RecordBatch(new Schema(fields), makeData({ type: new Struct(fields), length: rows, nullCount: 0, children }));
  return tableToIPC(new Table(batch), 'stream');
}

export function parquetFromArrow(columns: EncodeTask['columns'], ipc: Uint8Array, compression: ParquetCompression): Uint8Array {
  // Chosen by CPU per row against file size (bench/parquet-encode.ts, docs/benchmarks.md): the
  // version 2 writer's delta encodings (what hyparquet-writer wrote too) shrink sequences and
  // timestamps cheaply; dictionaries cost more than they save except on strings, which repeat.
  let properties = new WriterPropertiesBuilder()
    .setWriterVersion(WriterVersion.V2)
    .setCompression(compressionCodes[compression])
    .setDictionaryEnabled(false)
    // Column-chunk min/max let readers skip files; page statistics would cost more than they save.
    .setStatisticsEnabled(EnabledStatistics.Chunk);
  for (const column of columns) if (column.type.name === 'VARCHAR') properties = properties.setColumnDictionaryEnabled(column.name, true);
  return writeParquet(WasmTable.fromIPCStream(ipc), properties.build());
}

/**
 * Each SQL type's decode layout and Arrow type. TINYINT and SMALLINT keep their own widths, so the
 * file marks them INT(8) and INT(16) and readers get the SQL type back.
 */
export function columnFormat(type: SqlType): { layout: ColumnLayout; arrow: DataType } {
  switch (type.name) {
    case 'TINYINT':
      return { layout: { kind: 'int8' }, arrow: new Int8() };
    case 'SMALLINT':
      return { layout: { kind: 'int16' }, arrow: new Int16() };
    case 'INTEGER':
      return { layout: { kind: 'int32' }, arrow: new Int32() };
    case 'BIGINT':
      return { layout: { kind: 'int64' }, arrow: new Int64() };
    case 'TIMESTAMP':
      return { layout: { kind: 'int64' }, arrow: new TimestampMillisecond() };
    case 'FLOAT':
      return { layout: { kind: 'float64' }, arrow: new Float64() };
    case 'DECIMAL': {
      const scale = type.scale ?? decimalDefaultScale;
      return { layout: { kind: 'decimal128', scale }, arrow: new Decimal(scale, type.precision ?? decimalDefaultPrecision, 128) };
    }
    case 'BOOLEAN':
      return { layout: { kind: 'boolean' }, arrow: new Bool() };
    case 'VARCHAR':
      return { layout: { kind: 'utf8' }, arrow: new Utf8() };
    case 'VARBINARY':
      return { layout: { kind: 'binary' }, arrow: new Binary() };
  }
}

/**
 * CSV with a header line: timestamps as ISO 8601 (UTC), binaries as hex, booleans as 1 and an
 * empty cell, NULL as an empty cell; a cell holding a comma, a quote, CR or LF is quoted with its
 * quotes doubled, and every line ends with LF. That is csv-stringify's output with its defaults,
 * which this file used before (the tests hold the two equal), written here without its per-cell
 * casting and option checks, which cost ~10 µs a row (docs/benchmarks.md, "Export").
 */
export function encodeCsv(columns: EncodeTask['columns'], rows: Value[][]): Uint8Array {
  const width = columns.length;
  const isTimestamp = columns.map((column) => column.type.name === 'TIMESTAMP');
  const timestamps = new IsoTimestamps();
  const text = new TextSink();
  text.write(columns.map((column) => csvText(column.name)).join(',') + '\n');
  for (const row of rows) {
    let line = '';
    for (let c = 0; c < width; c++) {
      if (c > 0) line += ',';
      const value = row[c];
      if (value === null) continue;
      if (typeof value === 'number') line += isTimestamp[c] ? timestamps.format(value) : String(value);
      else if (typeof value === 'string') line += csvText(value);
      else if (typeof value === 'boolean') line += value ? '1' : '';
      else line += Buffer.from(value.buffer, value.byteOffset, value.length).toString('hex');
    }
    text.write(line + '\n');
  }
  return text.bytes();
}

/**
 * Text written line by line into one growing buffer: concatenating a file's lines into one
 * string and encoding it at the end cost twice as much CPU, most of it garbage collection.
 */
class TextSink {
  private buffer = Buffer.allocUnsafe(64 * 1024);
  private length = 0;

  write(text: string): void {
    // At most three UTF-8 bytes for each UTF-16 unit.
    if (this.length + text.length * 3 > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + text.length * 3));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    this.length += this.buffer.write(text, this.length);
  }

  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

const dayMs = 86_400_000;
/** The farthest a Date reaches either side of the epoch. */
const dateMsMax = 8.64e15;

/**
 * Date.prototype.toISOString's text for milliseconds since the epoch, with the date part made
 * once per day: a Date and toISOString for every value cost ~1.3 µs, more than the rest of a CSV
 * row. Rows of one file are mostly of one day.
 */
export class IsoTimestamps {
  private day = Number.NaN;
  private datePart = '';

  format(ms: number): string {
    // As the Date constructor does (TimeClip): fractions of a millisecond truncate toward zero.
    const time = Math.trunc(ms);
    const day = Math.floor(time / dayMs);
    if (day !== this.day || time > dateMsMax || time < -dateMsMax) {
      // Through toISOString itself, so years before 0 or after 9999 read as it writes them;
      // a time out of a Date's range throws here as it does there.
      this.datePart = new Date(time).toISOString().slice(0, -13);
      this.day = day;
    }
    let rest = time - day * dayMs;
    const hours = Math.floor(rest / 3_600_000);
    rest -= hours * 3_600_000;
    const minutes = Math.floor(rest / 60_000);
    rest -= minutes * 60_000;
    const seconds = Math.floor(rest / 1000);
    const millis = rest - seconds * 1000;
    return `${this.datePart}${two(hours)}:${two(minutes)}:${two(seconds)}.${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
  }
}

function two(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

const csvQuoted = /[",\r\n]/;

function csvText(text: string): string {
  return csvQuoted.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** JSON values: timestamps as ISO 8601 (UTC), binaries as base64. */
function jsonValue(value: Value, type: TypeName, timestamps: IsoTimestamps): unknown {
  if (value === null) return null;
  if (type === 'TIMESTAMP') return timestamps.format(value as number);
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.length).toString('base64');
  return value;
}
