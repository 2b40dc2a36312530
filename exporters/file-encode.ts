/**
 * The file target's encoder, run in a piscina pool (file-target.ts) so that Parquet and CSV
 * encoding never runs on the main thread, where the router sequences transactions. A task is
 * stateless: rows and column types in, one file out, written atomically — encode, write to a
 * temporary name beside the final one with fsync, then rename over it (a re-delivery of the same
 * range replaces the same file; a crash leaves at most a stray temporary file, never half a file).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { parquetWriteBuffer, schemaFromColumnData } from 'hyparquet-writer';
import { decimalDefaultPrecision, decimalDefaultScale, type SqlType, type TypeName, type Value } from '../engine/types.ts';
import { decodeStreamRows } from '../engine/storage/stream-chunk.ts';

export type FileFormat = 'parquet' | 'csv' | 'jsonl';

export interface EncodeTask {
  /** Final path of the file; the folder is created if missing. */
  file: string;
  format: FileFormat;
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
  const rows = task.rows ?? decodeRows(task.encoded!);
  switch (task.format) {
    case 'parquet':
      return encodeParquet(task, rows);
    case 'csv':
      return Buffer.from(stringify(rows.map((row) => row.map((value, c) => textValue(value, task.columns[c].type.name))), { header: true, columns: task.columns.map((column) => column.name) }));
    case 'jsonl': {
      let text = '';
      for (const row of rows) {
        const object: Record<string, unknown> = {};
        for (let c = 0; c < task.columns.length; c++) object[task.columns[c].name] = jsonValue(row[c], task.columns[c].type.name);
        text += JSON.stringify(object) + '\n';
      }
      return Buffer.from(text);
    }
  }
}

function decodeRows(encoded: NonNullable<EncodeTask['encoded']>): Value[][] {
  return encoded.chunks.flatMap((chunk) => decodeStreamRows(chunk.data, encoded.width, chunk.skip, chunk.count));
}

/**
 * DECIMAL columns get a schema element of their own (the library's basic types have no DECIMAL):
 * the DECIMAL logical type with the column's precision and scale over INT32 (p ≤ 9) or INT64, so
 * readers get exact decimals, not doubles. Every other column keeps the library's element.
 */
function encodeParquet(task: EncodeTask, rows: Value[][]): Uint8Array {
  const columnData = task.columns.map((column, c) => parquetColumn(column.name, column.type.name, rows, c));
  const schema = schemaFromColumnData({ columnData });
  for (let c = 0; c < task.columns.length; c++) {
    const type = task.columns[c].type;
    if (type.name !== 'DECIMAL') continue;
    const precision = type.precision ?? decimalDefaultPrecision;
    const scale = type.scale ?? decimalDefaultScale;
    schema[c + 1] = { name: task.columns[c].name, type: precision <= 9 ? 'INT32' : 'INT64', repetition_type: 'OPTIONAL', converted_type: 'DECIMAL', precision, scale, logical_type: { type: 'DECIMAL', precision, scale } };
    // Sluice keeps a DECIMAL as a double rounded to its scale with at most 15 digits, so the
    // scaled value is within rounding error of an integer below 2^53: exact after Math.round.
    const factor = 10 ** scale;
    const data = columnData[c].data;
    for (let r = 0; r < data.length; r++) if (data[r] !== null) data[r] = BigInt(Math.round((data[r] as number) * factor));
  }
  return new Uint8Array(parquetWriteBuffer({ columnData: columnData.map(({ name, data }) => ({ name, data })), schema }));
}

/** SQL type → Parquet column: integers as INT32/INT64, FLOAT as DOUBLE (DECIMAL too, until encodeParquet
 * replaces its schema element), TIMESTAMP in ms. */
function parquetColumn(name: string, type: TypeName, rows: Value[][], c: number): { name: string; data: unknown[]; type: 'INT32' | 'INT64' | 'DOUBLE' | 'STRING' | 'BYTE_ARRAY' | 'TIMESTAMP' | 'BOOLEAN'; nullable: boolean } {
  const data = new Array<unknown>(rows.length);
  for (let r = 0; r < rows.length; r++) data[r] = rows[r][c];
  switch (type) {
    case 'TINYINT':
    case 'SMALLINT':
    case 'INTEGER':
      return { name, data, type: 'INT32', nullable: true };
    case 'BIGINT':
      for (let r = 0; r < data.length; r++) if (data[r] !== null) data[r] = BigInt(data[r] as number);
      return { name, data, type: 'INT64', nullable: true };
    case 'FLOAT':
    case 'DECIMAL':
      return { name, data, type: 'DOUBLE', nullable: true };
    case 'VARCHAR':
      return { name, data, type: 'STRING', nullable: true };
    case 'VARBINARY':
      return { name, data, type: 'BYTE_ARRAY', nullable: true };
    case 'TIMESTAMP':
      return { name, data, type: 'TIMESTAMP', nullable: true };
    case 'BOOLEAN':
      return { name, data, type: 'BOOLEAN', nullable: true };
  }
}

/** CSV cells: timestamps as ISO 8601 (UTC), binaries as hex, NULL as an empty cell. */
function textValue(value: Value, type: TypeName): string | number | boolean | null {
  if (value === null) return null;
  if (type === 'TIMESTAMP') return new Date(value as number).toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.length).toString('hex');
  return value;
}

/** JSON values: timestamps as ISO 8601 (UTC), binaries as base64. */
function jsonValue(value: Value, type: TypeName): unknown {
  if (value === null) return null;
  if (type === 'TIMESTAMP') return new Date(value as number).toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.length).toString('base64');
  return value;
}
