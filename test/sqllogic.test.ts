/**
 * The driver for SQL behaviour written as data: every test/sql/**\/*.test file, run against the
 * embedded Database on 1 and on 3 partitions (the same answers are expected from both).
 *
 * The format follows DuckDB's sqllogictest dialect:
 *
 *   # name: test/sql/select/where.test            (header: name and description are required)
 *   # description: WHERE predicates
 *
 *   statement ok                                   (then the SQL, up to a blank line)
 *   CREATE TABLE t (id INTEGER NOT NULL, PRIMARY KEY (id));
 *
 *   statement error UNKNOWN_COLUMN [at LINE:COLUMN] (the SluiceError code, optionally its position)
 *   SELECT nope FROM t
 *   ----
 *   unknown column nope                            (optional: substrings the message must contain)
 *
 *   query II rowsort                               (one letter per column; rowsort when the order
 *   SELECT id, name FROM t                          is not defined by ORDER BY; nosort to say the
 *                                                    order is defined anyway)
 *   ----
 *   1	alice                                        (values separated by a tab; by whitespace when
 *                                                    the line has no tab)
 *
 * Statements starting with CREATE or PARTITION go through `applySchema` (a block may hold several,
 * separated by `;`); everything else through `query`, one statement per block. Values render as:
 * NULL, true/false, numbers as JavaScript prints them, TIMESTAMP columns as ISO 8601 text,
 * VARBINARY as hex, the empty string as (empty).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Database } from '../engine/database.ts';
import { SluiceError } from '../engine/errors.ts';
import type { ResultTable } from '../engine/sql/context.ts';
import type { Value } from '../engine/types.ts';
import { openDatabase } from './helpers.ts';

const root = path.join(import.meta.dirname, 'sql');

interface Statement {
  kind: 'ok' | 'error';
  sql: string;
  code?: string;
  at?: { line: number; column: number };
  messages: string[];
  line: number;
}

interface Query {
  kind: 'query';
  sql: string;
  columns: number;
  rowsort: boolean;
  expected: string[][];
  line: number;
}

type TestRecord = Statement | Query;

function listTests(folder: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(folder).sort()) {
    const full = path.join(folder, name);
    if (statSync(full).isDirectory()) files.push(...listTests(full));
    else if (name.endsWith('.test')) files.push(full);
  }
  return files;
}

function parseTestFile(file: string): TestRecord[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const header = lines.filter((line) => line.startsWith('#'));
  if (!header.some((line) => /^# name: /.test(line)) || !header.some((line) => /^# description: /.test(line))) {
    throw new Error(`${file}: the header must have '# name:' and '# description:' lines`);
  }
  const records: TestRecord[] = [];
  let i = 0;
  const where = (n: number) => `${path.relative(root, file)}:${n + 1}`;
  /** Lines from i up to a blank line or `----` (not included). */
  const takeSql = (): string[] => {
    const taken: string[] = [];
    while (i < lines.length && lines[i].trim() !== '' && lines[i].trim() !== '----') taken.push(lines[i++]);
    return taken;
  };
  const takeResult = (): string[] => {
    const taken: string[] = [];
    if (lines[i]?.trim() !== '----') return taken;
    i++;
    while (i < lines.length && lines[i].trim() !== '') taken.push(lines[i++]);
    return taken;
  };
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === '' || line.startsWith('#')) {
      i++;
      continue;
    }
    const start = i;
    let match: RegExpExecArray | null;
    if (/^statement ok\s*$/.test(line)) {
      i++;
      const sql = takeSql().join('\n');
      if (!sql) throw new Error(`${where(start)}: statement without SQL`);
      records.push({ kind: 'ok', sql, messages: [], line: start + 1 });
    } else if ((match = /^statement error (\w+)(?: at (\d+):(\d+))?\s*$/.exec(line))) {
      i++;
      const sql = takeSql().join('\n');
      if (!sql) throw new Error(`${where(start)}: statement without SQL`);
      const messages = takeResult();
      const at = match[2] ? { line: Number(match[2]), column: Number(match[3]) } : undefined;
      records.push({ kind: 'error', sql, code: match[1], at, messages, line: start + 1 });
    } else if ((match = /^query ([A-Z]+)(?: (rowsort|nosort))?\s*$/.exec(line))) {
      i++;
      const sql = takeSql().join('\n');
      const columns = match[1].length;
      const expected = takeResult().map((row) => (columns === 1 ? [row] : row.includes('\t') ? row.split('\t') : row.trim().split(/\s+/)));
      const rowsort = match[2] === 'rowsort';
      // Without ORDER BY the order depends on partitions and storage: say rowsort, or nosort
      // where the order is defined otherwise (EXPLAIN lines, one-row results).
      if (match[2] === undefined && expected.length > 1 && !/ORDER\s+BY|^\s*EXPLAIN\b/i.test(sql)) {
        throw new Error(`${where(start)}: a query without ORDER BY returning several rows needs 'rowsort'`);
      }
      for (const row of expected) {
        if (row.length !== columns) throw new Error(`${where(start)}: expected row ${JSON.stringify(row)} has ${row.length} values for ${columns} columns`);
      }
      records.push({ kind: 'query', sql, columns, rowsort, expected, line: start + 1 });
    } else {
      throw new Error(`${where(start)}: expected 'statement ok', 'statement error CODE' or 'query TYPES', got: ${line}`);
    }
  }
  return records;
}

function render(value: Value, type: string | undefined): string {
  if (value === null) return 'NULL';
  if (value === '') return '(empty)';
  if (type === 'TIMESTAMP' && typeof value === 'number') return new Date(value).toISOString();
  if (value instanceof Uint8Array) return `x'${Buffer.from(value).toString('hex')}'`;
  return String(value);
}

function renderResult(result: ResultTable): string[][] {
  return result.rows.map((row) => row.map((value, i) => render(value, result.types[i]?.name)));
}

function isSchema(sql: string): boolean {
  return /^\s*(CREATE|PARTITION)\b/i.test(sql);
}

async function run(db: Database, sql: string): Promise<ResultTable | undefined> {
  if (isSchema(sql)) {
    await db.applySchema(sql);
    return undefined;
  }
  return db.query(sql.replace(/;\s*$/, ''));
}

async function runRecord(db: Database, record: TestRecord, label: string): Promise<void> {
  if (record.kind === 'ok') {
    await run(db, record.sql);
    return;
  }
  if (record.kind === 'error') {
    let caught: unknown;
    try {
      await run(db, record.sql);
    } catch (error) {
      caught = error;
    }
    expect(caught, `${label}: expected error ${record.code}`).toBeInstanceOf(SluiceError);
    const error = caught as SluiceError;
    expect(error.code, `${label}: ${error.message}`).toBe(record.code);
    for (const message of record.messages) expect(error.message, label).toContain(message);
    if (record.at) {
      expect({ line: error.position?.line, column: error.position?.column }, `${label}: ${error.message}`).toEqual(record.at);
    }
    return;
  }
  if (record.kind !== 'query') return;
  const result = await run(db, record.sql);
  expect(result, `${label}: a query must return rows`).toBeDefined();
  expect(result!.columns.length, `${label}: column count`).toBe(record.columns);
  let actual = renderResult(result!);
  let expected = record.expected;
  if (record.rowsort) {
    const key = (row: string[]) => row.join('\t');
    actual = [...actual].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    expected = [...expected].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  }
  expect(actual, label).toEqual(expected);
}

const files = listTests(root);

describe('sqllogictest', () => {
  it('finds test files', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  for (const partitions of [1, 3]) {
    describe(`${partitions} partition(s)`, () => {
      for (const file of files) {
        const name = path.relative(root, file);
        it(name, async () => {
          const records = parseTestFile(file);
          const db = await openDatabase('', { partitions });
          try {
            for (const record of records) {
              await runRecord(db, record, `${name}:${record.line} (${partitions} partition(s))\n${record.sql}`);
            }
            db.verify();
          } finally {
            await db.close();
          }
        });
      }
    });
  }
});
