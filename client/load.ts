/**
 * The CSV bulk loader behind `sluice load <table|procedure> file.csv`: reads the file with a real
 * CSV parser (csv-parse, streaming), maps each record to an INSERT into the table (by header
 * name) or to a call of the procedure (by column order), and keeps many calls in flight through
 * one client connection. A line that cannot be parsed, converted or stored is rejected with its
 * line number and reason, and loading goes on; SERVER_BUSY is not a rejection but a reason to wait
 * and send the line again. The caller gets a report; the CLI exits non-zero when anything was
 * rejected.
 *
 * ```sh
 * sluice load readings readings.csv --url ws://127.0.0.1:21212          # header names the columns
 * sluice load Ingest readings.csv --no-header --rejects rejected.csv    # columns in parameter order
 * ```
 */
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { parse } from 'csv-parse';
import { stringify } from 'csv-stringify/sync';
import type { Client } from './index.ts';
import { SluiceClientError } from './index.ts';
import type { QueryResult, SystemInformation } from '../procedures/system.ts';
import { fromText } from '../importers/mapping.ts';
import type { SqlType, TypeName } from '../engine/types.ts';

export const defaultInFlightMax = 1000;
export const busyRetryDelayMs = 20;
export const busyRetryDelayMaxMs = 1000;
/** Rejections kept in memory for the report (all of them go to the rejects file, when given). */
export const rejectionsKeptMax = 10_000;

export interface LoadOptions {
  /** The first record names the columns (tables) or is skipped (procedures). Default true. */
  header?: boolean;
  delimiter?: string;
  inFlightMax?: number;
  /** Write every rejected line here as CSV: line, reason, the record. */
  rejectsFile?: string;
  /** Called as the file is read: bytes read so far and the file's size. */
  onProgress?: (bytesRead: number, bytesTotal: number, loaded: number, rejected: number) => void;
}

export interface Rejection {
  line: number;
  reason: string;
  record: string[];
}

export interface LoadReport {
  target: string;
  kind: 'table' | 'procedure';
  loaded: number;
  rejected: number;
  rejections: Rejection[];
  seconds: number;
}

interface Target {
  kind: 'table' | 'procedure';
  /** Procedure to call: the procedure, or @AdHoc with the INSERT. */
  call(values: unknown[]): [string, unknown[]];
  /** Turns one record into parameters, or throws naming what is wrong. */
  convert(record: string[]): unknown[];
}

/** Loads `file` into `target` (a table or a procedure) through `client`. */
export async function loadCsv(client: Client, targetName: string, file: string, options: LoadOptions = {}): Promise<LoadReport> {
  const started = performance.now();
  const header = options.header ?? true;
  const bytesTotal = (await stat(file)).size;
  const inFlightMax = options.inFlightMax ?? defaultInFlightMax;
  const parser = createReadStream(file).pipe(parse({
    delimiter: options.delimiter ?? ',',
    info: true,
    relax_column_count: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    bom: true,
  }));
  const rejections: Rejection[] = [];
  const rejectedRows: unknown[][] = [];
  let rejected = 0;
  let loaded = 0;
  const reject = (line: number, reason: string, record: string[]) => {
    rejected++;
    if (rejections.length < rejectionsKeptMax) rejections.push({ line, reason, record });
    if (options.rejectsFile) rejectedRows.push([line, reason, ...record]);
  };
  parser.on('skip', (error: Error & { lines?: number; record?: string[] }) => {
    reject(error.lines ?? 0, `not valid CSV: ${error.message}`, error.record ?? []);
  });

  let target: Target | undefined;
  let inFlight = 0;
  let wakeSender: (() => void) | undefined;
  const settled = () => {
    inFlight--;
    wakeSender?.();
  };

  const send = (name: string, params: unknown[], line: number, record: string[], delayMs = busyRetryDelayMs): void => {
    inFlight++;
    client.call(name, ...params).then(
      () => {
        loaded++;
        settled();
      },
      (error: unknown) => {
        if (error instanceof SluiceClientError && error.status === 'SERVER_BUSY') {
          // Not the line's fault: send it again after a pause, still counted as in flight.
          setTimeout(() => {
            inFlight--;
            send(name, params, line, record, Math.min(delayMs * 2, busyRetryDelayMaxMs));
          }, delayMs);
          return;
        }
        reject(line, error instanceof SluiceClientError ? `${error.code}: ${error.message}` : (error as Error).message, record);
        settled();
      },
    );
  };

  for await (const entry of parser as AsyncIterable<{ record: string[]; info: { lines: number; records: number } }>) {
    const { record, info } = entry;
    if (target === undefined) {
      target = await resolveTarget(client, targetName, header ? record : undefined);
      if (header) continue;
    }
    let values: unknown[];
    try {
      values = target.convert(record);
    } catch (error) {
      reject(info.lines, (error as Error).message, record);
      continue;
    }
    const [name, params] = target.call(values);
    send(name, params, info.lines, record);
    while (inFlight >= inFlightMax) await new Promise<void>((resolve) => (wakeSender = resolve));
    options.onProgress?.(parser.info.bytes, bytesTotal, loaded, rejected);
  }
  while (inFlight > 0) await new Promise<void>((resolve) => (wakeSender = resolve));
  options.onProgress?.(bytesTotal, bytesTotal, loaded, rejected);
  if (target === undefined) target = await resolveTarget(client, targetName, undefined);
  if (options.rejectsFile) {
    rejectedRows.sort((a, b) => (a[0] as number) - (b[0] as number));
    await writeFile(options.rejectsFile, stringify([['line', 'reason', 'record...'], ...rejectedRows]));
  }
  rejections.sort((a, b) => a.line - b.line);
  return { target: targetName, kind: target.kind, loaded, rejected, rejections, seconds: (performance.now() - started) / 1000 };
}

/** A table (columns and types from the server) or a procedure (its declared parameter types). */
async function resolveTarget(client: Client, name: string, header: string[] | undefined): Promise<Target> {
  const info = (await client.call('@SystemInformation')) as SystemInformation;
  if (info.procedures.includes(name)) {
    const declared = info.procedureParameters?.[name] ?? null;
    const types = declared?.map((type) => ({ name: type as TypeName }) satisfies SqlType);
    return {
      kind: 'procedure',
      call: (values) => [name, values],
      convert(record) {
        if (types !== undefined && record.length !== types.length) throw new Error(`${record.length} field(s), but procedure ${name} takes ${types.length} parameter(s)`);
        return record.map((field, i) => (field === '' ? null : fromText(field, types?.[i], `field ${i + 1} (parameter ${i + 1} of ${name})`)));
      },
    };
  }
  let shape: QueryResult;
  try {
    shape = (await client.call('@AdHoc', `SELECT * FROM ${quoteName(name)} LIMIT 0`, [])) as QueryResult;
  } catch (error) {
    throw new LoadError(`${name} is neither a procedure nor a table of this database (${(error as Error).message})`);
  }
  const columns = shape.columns;
  const types = shape.types;
  let chosen: number[];
  if (header === undefined) {
    chosen = columns.map((_, i) => i);
  } else {
    const lower = columns.map((column) => column.toLowerCase());
    chosen = header.map((title) => {
      const index = lower.indexOf(title.trim().toLowerCase());
      if (index < 0) throw new LoadError(`the header names column ${JSON.stringify(title)}, which table ${name} does not have (it has ${columns.join(', ')})`);
      return index;
    });
  }
  const insert = `INSERT INTO ${quoteName(name)} (${chosen.map((index) => quoteName(columns[index])).join(', ')}) VALUES (${chosen.map(() => '?').join(', ')})`;
  return {
    kind: 'table',
    call: (values) => ['@AdHoc', [insert, values]],
    convert(record) {
      if (record.length !== chosen.length) throw new Error(`${record.length} field(s), expected ${chosen.length}`);
      return record.map((field, i) => {
        const column = chosen[i];
        const type = types[column];
        return field === '' ? null : fromText(field, type === null ? undefined : ({ name: type.name as TypeName } satisfies SqlType), `column ${columns[column]}`);
      });
    },
  };
}

function quoteName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** A mistake that stops the load before any line is sent (unknown target, a header that does not fit). */
export class LoadError extends Error {
  readonly code = 'LOAD';
}
