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
import { parquetWriteBuffer } from 'hyparquet-writer';
import type { TypeName, Value } from '../engine/types.ts';

export type FileFormat = 'parquet' | 'csv' | 'jsonl';

export interface EncodeTask {
  /** Final path of the file; the folder is created if missing. */
  file: string;
  format: FileFormat;
  columns: { name: string; type: TypeName }[];
  rows: Value[][];
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
  switch (task.format) {
    case 'parquet':
      return new Uint8Array(parquetWriteBuffer({ columnData: task.columns.map((column, c) => parquetColumn(column.name, column.type, task.rows, c)) }));
    case 'csv':
      return Buffer.from(stringify(task.rows.map((row) => row.map((value, c) => textValue(value, task.columns[c].type))), { header: true, columns: task.columns.map((column) => column.name) }));
    case 'jsonl': {
      let text = '';
      for (const row of task.rows) {
        const object: Record<string, unknown> = {};
        for (let c = 0; c < task.columns.length; c++) object[task.columns[c].name] = jsonValue(row[c], task.columns[c].type);
        text += JSON.stringify(object) + '\n';
      }
      return Buffer.from(text);
    }
  }
}

/** SQL type → Parquet column: integers as INT32/INT64, DECIMAL and FLOAT as DOUBLE, TIMESTAMP in ms. */
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
