/**
 * The small vocabulary tests speak (after SQLite's one-line helpers): open a database from DDL,
 * run SQL and expect rows, expect an error by code (and position). Keep tests reading as SQL plus
 * its answer.
 */
import { expect } from 'vitest';
import { Database, type DatabaseOptions } from '../engine/database.ts';
import { SluiceError, type ErrorCode } from '../engine/errors.ts';

/** Opens an embedded database from DDL text; the TTL sweeper is off unless asked for. */
export async function openDatabase(ddl: string, options: Partial<DatabaseOptions> = {}): Promise<Database> {
  return Database.open({ schema: ddl, ttlIntervalMs: 0, ...options });
}

/** Runs SQL and expects exactly these rows (as arrays, in order). */
export async function expectRows(db: Database, sql: string, params: unknown[], rows: unknown[][]): Promise<void> {
  const result = await db.query(sql, params);
  expect(result.rows, sql).toEqual(rows);
}

/** Expects `action` to fail with a SluiceError of `code`; optionally at line/column. */
export async function expectError(
  action: () => unknown,
  code: ErrorCode,
  where?: { line: number; column: number } | RegExp,
): Promise<SluiceError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected error ${code}`).toBeInstanceOf(SluiceError);
  const error = caught as SluiceError;
  expect(error.code, error.message).toBe(code);
  if (where instanceof RegExp) expect(error.message).toMatch(where);
  else if (where) {
    expect(error.position?.line, error.message).toBe(where.line);
    expect(error.position?.column, error.message).toBe(where.column);
  }
  return error;
}

/** Every row of each named table (or view), ordered by all its columns: a state to compare. */
export async function snapshotState(db: Database, tables: readonly string[]): Promise<Record<string, unknown[][]>> {
  const state: Record<string, unknown[][]> = {};
  for (const name of tables) {
    const def = db.catalog.tables.get(name);
    expect(def, `table ${name}`).toBeDefined();
    const columns = def!.columns.filter((column) => !column.hidden).map((column) => column.name).join(', ');
    state[name] = (await db.query(`SELECT ${columns} FROM ${name} ORDER BY ${columns}`)).rows;
  }
  return state;
}
