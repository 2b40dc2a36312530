/**
 * A second database as the oracle (VoltDB's SQLCoverage compares with HSQLDB or PostgreSQL):
 * seeded random rows go into Sluice (1 and 3 partitions) and into the machine's PostgreSQL, then
 * generated queries run on all three and the answers must agree row for row. The generator
 * covers WHERE (AND/OR/NOT, comparisons, BETWEEN, IN, LIKE, IS NULL), arithmetic, CASE, COALESCE,
 * string functions, ORDER BY … LIMIT/OFFSET with a unique tie-breaker, GROUP BY with COUNT, SUM,
 * MIN, MAX, AVG and HAVING, DISTINCT, and inner and left joins with a replicated table.
 *
 * The SQL text is the same for both databases except where Sluice deliberately differs (see
 * docs/sql.md, "Compared with PostgreSQL"): ORDER BY spells out Sluice's NULL order with NULLS
 * FIRST/LAST, and PostgreSQL's text columns use the "C" collation (Sluice compares text by code
 * unit). Constructs whose answers deliberately differ are not generated; each is named where it
 * is left out.
 *
 * PostgreSQL comes from SLUICE_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/
 * postgres). The tables live in a schema with a random suffix, dropped afterwards. Without a
 * reachable server the suite is skipped with the reason printed, except in CI (CI=true), which
 * provides PostgreSQL: there the test fails. Seeds are fixed; SQL_POSTGRES_SEED=<n> runs another.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../engine/database.ts';
import type { Value } from '../engine/types.ts';
import { openDatabase } from './helpers.ts';
import { seededRandom } from '../engine/random.ts';

const url = process.env.SLUICE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const inCi = process.env.CI === 'true';
const seeds = process.env.SQL_POSTGRES_SEED ? [Number(process.env.SQL_POSTGRES_SEED)] : [11, 12];
const rowsPerTable = 240;
const queriesPerSeed = 250;
/** Relative tolerance for non-integer numbers: AVG and float arithmetic round differently. */
const tolerance = 1e-9;

/** BIGINT (COUNT, SUM) and NUMERIC (DECIMAL, AVG) arrive as text by default: read them as numbers. */
const pgTypes = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === 20 || oid === 1700 ? (text: string) => Number(text) : pg.types.getTypeParser(oid, format),
};

async function reachability(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return `PostgreSQL at ${url} is unreachable: ${(error as Error).message}`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const unreachable = await reachability();
if (unreachable !== undefined && !inCi) console.log(`sql-postgres: skipped. ${unreachable} (set SLUICE_TEST_POSTGRES_URL)`);

describe('PostgreSQL as the oracle', () => {
  it.runIf(inCi && unreachable !== undefined)('needs PostgreSQL in CI', () => {
    expect.fail(`${unreachable}. CI provides PostgreSQL; set SLUICE_TEST_POSTGRES_URL to it`);
  });

  describe.skipIf(unreachable !== undefined)('random queries', () => {
    for (const seed of seeds) {
      it(`agree with PostgreSQL on 1 and 3 partitions (seed ${seed})`, async () => {
        const gen = new Generator(seed);
        const data = makeData(gen);
        const oracle = await Oracle.open(data);
        const sluices: { partitions: number; db: Database }[] = [];
        try {
          for (const partitions of [1, 3]) sluices.push({ partitions, db: await loadSluice(data, partitions) });
          const failures: string[] = [];
          let compared = 0;
          let bothFailed = 0;
          let withRows = 0;
          for (let i = 0; i < queriesPerSeed; i++) {
            const query = generateQuery(gen);
            const expected = await oracle.run(query.postgres);
            if (expected.error !== undefined) bothFailed++;
            else if (expected.rows.length > 0) withRows++;
            for (const { partitions, db } of sluices) {
              const actual = await runSluice(db, query.sluice);
              const difference = compareResults(query, expected, actual);
              if (difference) failures.push(`seed ${seed}, query ${i}, ${partitions} partition(s): ${difference}\n  sluice:   ${query.sluice}\n  postgres: ${query.postgres}`);
              else compared++;
            }
          }
          expect(failures.slice(0, 5).join('\n\n'), `${failures.length} difference(s)`).toBe('');
          expect(compared).toBe(queriesPerSeed * 2);
          // The generator is meant to write valid SQL whose answers have rows: a query both
          // databases refuse compares nothing, and too many empty answers would prove little.
          expect(bothFailed, 'queries PostgreSQL refused').toBeLessThanOrEqual(queriesPerSeed * 0.02);
          expect(withRows, 'queries with rows').toBeGreaterThan(queriesPerSeed * 0.6);
        } finally {
          for (const { db } of sluices) await db.close();
          await oracle.close();
        }
      });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Data

interface Data {
  rows: Value[][];
  dims: Value[][];
}

/** Seeded choices, so a failing query can be replayed from its seed. */
class Generator {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = seededRandom(seed);
  }
  int(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  maybeNull<T>(value: T, p = 0.12): T | null {
    return this.chance(p) ? null : value;
  }
}

const words = ['ab', 'abc', 'abd', 'b', 'ba', 'bab', 'c', 'ca', '', 'a_b', 'Ab', 'B'];
const names = ['red', 'green', 'blue', 'Red'];

// Columns: id (unique, the partition column), k (joins dim), v and g (integers), s (text),
// f (FLOAT, quarters: sums stay exact), d (DECIMAL(8,2)).
const sluiceSchema = `
CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, k INTEGER, v INTEGER, g INTEGER NOT NULL, s VARCHAR(8), f FLOAT, d DECIMAL(8,2));
PARTITION TABLE t ON COLUMN id;
CREATE HASH INDEX t_k ON t (k);
CREATE INDEX t_v ON t (v);
CREATE INDEX t_s ON t (s);
CREATE INDEX t_g_v ON t (g, v);
CREATE TABLE dim (k INTEGER NOT NULL PRIMARY KEY, name VARCHAR(8), w INTEGER);
`;

const postgresSchema = `
CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, k INTEGER, v INTEGER, g INTEGER NOT NULL, s VARCHAR(8) COLLATE "C", f DOUBLE PRECISION, d NUMERIC(8,2));
CREATE TABLE dim (k INTEGER NOT NULL PRIMARY KEY, name VARCHAR(8) COLLATE "C", w INTEGER);
`;

function makeData(gen: Generator): Data {
  const rows: Value[][] = [];
  for (let id = 1; id <= rowsPerTable; id++) {
    rows.push([
      id,
      gen.maybeNull(gen.int(0, 25)),
      gen.maybeNull(gen.int(-40, 40)),
      gen.int(0, 4),
      gen.maybeNull(gen.pick(words) + (gen.chance(0.4) ? gen.pick(['x', 'y']) : '')),
      gen.maybeNull(gen.int(-400, 400) / 4),
      gen.maybeNull(gen.int(-99999, 99999) / 100),
    ]);
  }
  const dims: Value[][] = [];
  for (let k = 0; k <= 30; k += gen.int(1, 2)) dims.push([k, gen.maybeNull(gen.pick(names)), gen.maybeNull(gen.int(-5, 5))]);
  return { rows, dims };
}

async function loadSluice(data: Data, partitions: number): Promise<Database> {
  const db = await openDatabase(sluiceSchema, { partitions });
  for (const [table, rows] of [['t', data.rows], ['dim', data.dims]] as const) {
    for (let i = 0; i < rows.length; i += 50) {
      const batch = rows.slice(i, i + 50);
      const placeholders = batch.map((row) => `(${row.map(() => '?').join(', ')})`).join(', ');
      await db.query(`INSERT INTO ${table} VALUES ${placeholders}`, batch.flat());
    }
  }
  return db;
}

class Oracle {
  private readonly client: pg.Client;
  private readonly schema: string;

  private constructor(client: pg.Client, schema: string) {
    this.client = client;
    this.schema = schema;
  }

  static async open(data: Data): Promise<Oracle> {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000, types: pgTypes });
    await client.connect();
    const schema = `sluice_oracle_${Math.random().toString(36).slice(2, 10)}`;
    const oracle = new Oracle(client, schema);
    try {
      await client.query(`CREATE SCHEMA ${schema}`);
      await client.query(`SET search_path TO ${schema}`);
      await client.query(postgresSchema);
      for (const [table, rows] of [['t', data.rows], ['dim', data.dims]] as const) {
        for (let i = 0; i < rows.length; i += 50) {
          const batch = rows.slice(i, i + 50);
          let n = 0;
          const placeholders = batch.map((row) => `(${row.map(() => `$${++n}`).join(', ')})`).join(', ');
          await client.query(`INSERT INTO ${table} VALUES ${placeholders}`, batch.flat());
        }
      }
    } catch (error) {
      await oracle.close();
      throw error;
    }
    return oracle;
  }

  async run(sql: string): Promise<Outcome> {
    try {
      const result = await this.client.query({ text: sql, rowMode: 'array' });
      return { rows: result.rows as Value[][] };
    } catch (error) {
      return { error: (error as Error).message };
    }
  }

  async close(): Promise<void> {
    try {
      await this.client.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
    } finally {
      await this.client.end();
    }
  }
}

type Outcome = { rows: Value[][]; error?: undefined } | { rows?: undefined; error: string };

async function runSluice(db: Database, sql: string): Promise<Outcome> {
  try {
    return { rows: (await db.query(sql)).rows };
  } catch (error) {
    return { error: `${(error as { code?: string }).code ?? 'no code'}: ${(error as Error).message}` };
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison

function sameValue(a: Value, b: Value): boolean {
  if (a === null || b === null) return a === b;
  if (typeof a === 'number' && typeof b === 'number') {
    if (Number.isInteger(a) && Number.isInteger(b)) return a === b;
    return Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(a), Math.abs(b));
  }
  return a === b;
}

/** Canonical text of a row, for putting rows in one order when the query leaves it open. */
function rowKey(row: Value[]): string {
  return JSON.stringify(row.map((value) => (typeof value === 'number' ? Number(value.toPrecision(12)) : value)));
}

function compareResults(query: GeneratedQuery, expected: Outcome, actual: Outcome): string | undefined {
  if (expected.error !== undefined && actual.error !== undefined) return undefined;
  if (expected.error !== undefined) return `PostgreSQL failed (${expected.error}), Sluice did not`;
  if (actual.error !== undefined) return `Sluice failed (${actual.error}), PostgreSQL did not`;
  let want = expected.rows;
  let got = actual.rows;
  if (!query.ordered) {
    want = [...want].sort((a, b) => (rowKey(a) < rowKey(b) ? -1 : rowKey(a) > rowKey(b) ? 1 : 0));
    got = [...got].sort((a, b) => (rowKey(a) < rowKey(b) ? -1 : rowKey(a) > rowKey(b) ? 1 : 0));
  }
  if (want.length !== got.length) return `${got.length} row(s), PostgreSQL ${want.length}: ${JSON.stringify(got.slice(0, 5))} vs ${JSON.stringify(want.slice(0, 5))}`;
  for (let r = 0; r < want.length; r++) {
    if (want[r].length !== got[r].length || want[r].some((value, c) => !sameValue(value, got[r][c]))) {
      return `row ${r}: ${JSON.stringify(got[r])}, PostgreSQL ${JSON.stringify(want[r])}`;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Generation. An expression is rendered once: both databases get the same text, except ORDER BY.

type Kind = 'int' | 'float' | 'decimal' | 'text';

interface Expr {
  readonly sql: string;
  readonly kind: Kind;
}

interface GeneratedQuery {
  readonly sluice: string;
  readonly postgres: string;
  /** ORDER BY makes the row order unique; otherwise rows are compared as a multiset. */
  readonly ordered: boolean;
}

const numericColumns: readonly [string, Kind][] = [['k', 'int'], ['v', 'int'], ['g', 'int'], ['id', 'int'], ['f', 'float'], ['d', 'decimal'], ['v', 'int']];

function column(gen: Generator, alias: string, kind?: Kind): Expr {
  if (kind === 'text') return { sql: `${alias}.s`, kind: 'text' };
  const choices = kind ? numericColumns.filter(([, k]) => k === kind) : numericColumns;
  const [name, k] = gen.pick(choices);
  return { sql: `${alias}.${name}`, kind: k };
}

function numberLiteral(gen: Generator, kind: Kind): string {
  if (kind === 'float') return String(gen.int(-200, 200) / 4);
  if (kind === 'decimal') return (gen.int(-99999, 99999) / 100).toFixed(2);
  return String(gen.int(-30, 30));
}

function textLiteral(gen: Generator): string {
  return `'${gen.pick(words)}${gen.chance(0.3) ? gen.pick(['x', 'y']) : ''}'`;
}

/** A numeric expression; `depth` bounds nesting. */
function numeric(gen: Generator, alias: string, depth: number): Expr {
  const roll = depth <= 0 ? 0 : gen.int(0, 13);
  switch (roll) {
    case 0:
    case 1:
    case 2:
      return column(gen, alias);
    case 11: {
      // ROUND of DECIMAL only: both round half away from zero there, while PostgreSQL rounds a
      // FLOAT half to even (Sluice: away from zero, docs/sql.md).
      return { sql: `ROUND(${alias}.d${gen.chance(0.5) ? `, ${gen.int(0, 1)}` : ''})`, kind: 'decimal' };
    }
    case 12: {
      const value = numeric(gen, alias, depth - 1);
      // CAST(… AS INTEGER) of a fraction is left out: Sluice truncates toward zero (as VoltDB
      // does), PostgreSQL rounds.
      return gen.chance(0.5) ? { sql: `(-${value.sql})`, kind: value.kind } : { sql: `CAST(${value.sql} AS FLOAT)`, kind: 'float' };
    }
    case 13: {
      const value = column(gen, alias, 'int');
      return { sql: `CASE ${value.sql} WHEN ${gen.int(0, 3)} THEN ${numberLiteral(gen, 'int')} WHEN ${gen.int(0, 3)} THEN ${value.sql} ELSE ${gen.chance(0.5) ? 'NULL' : numberLiteral(gen, 'int')} END`, kind: 'int' };
    }
    case 3: {
      const left = numeric(gen, alias, depth - 1);
      const right = gen.chance(0.5) ? numeric(gen, alias, depth - 1) : { sql: numberLiteral(gen, 'int'), kind: 'int' as Kind };
      const op = gen.pick(['+', '-']);
      return { sql: `(${left.sql} ${op} ${right.sql})`, kind: widest(left.kind, right.kind) };
    }
    case 4: {
      // Multiplication by a small integer: a DECIMAL × DECIMAL product would keep more places in
      // PostgreSQL, while Sluice rounds DECIMAL results to the operand's scale (docs/sql.md).
      const left = numeric(gen, alias, depth - 1);
      return { sql: `(${left.sql} * ${gen.int(-4, 4)})`, kind: left.kind };
    }
    case 5: {
      // Integer division and remainder by a non-zero constant (both truncate toward zero in both
      // databases). DECIMAL division is left out: Sluice rounds it to the operand's scale.
      const left = numeric(gen, alias, depth - 1);
      const divisor = gen.pick([2, 3, -3, 5, 7]);
      if (left.kind === 'int') return { sql: gen.chance(0.2) ? `MOD(${left.sql}, ${divisor})` : `(${left.sql} ${gen.pick(['/', '%'])} ${divisor})`, kind: 'int' };
      if (left.kind === 'float') return { sql: `(${left.sql} / ${divisor})`, kind: 'float' };
      return left;
    }
    case 6: {
      const value = numeric(gen, alias, depth - 1);
      return { sql: `ABS(${value.sql})`, kind: value.kind };
    }
    case 7: {
      const first = numeric(gen, alias, depth - 1);
      const second = numeric(gen, alias, depth - 1);
      return { sql: `COALESCE(${first.sql}, ${second.sql}, ${numberLiteral(gen, 'int')})`, kind: widest(first.kind, second.kind) };
    }
    case 8: {
      const then = numeric(gen, alias, depth - 1);
      const otherwise = numeric(gen, alias, depth - 1);
      const hasElse = gen.chance(0.7);
      return { sql: `CASE WHEN ${predicate(gen, alias, depth - 1)} THEN ${then.sql}${hasElse ? ` ELSE ${otherwise.sql}` : ''} END`, kind: widest(then.kind, hasElse ? otherwise.kind : then.kind) };
    }
    case 9: {
      const value = column(gen, alias, 'int');
      return { sql: `NULLIF(${value.sql}, ${gen.int(-3, 3)})`, kind: 'int' };
    }
    default: {
      const text = textual(gen, alias, depth - 1);
      return { sql: `LENGTH(${text.sql})`, kind: 'int' };
    }
  }
}

function widest(a: Kind, b: Kind): Kind {
  if (a === 'float' || b === 'float') return 'float';
  if (a === 'decimal' || b === 'decimal') return 'decimal';
  return 'int';
}

function textual(gen: Generator, alias: string, depth: number): Expr {
  const roll = depth <= 0 ? 0 : gen.int(0, 9);
  const base = (): Expr => (depth <= 0 ? column(gen, alias, 'text') : textual(gen, alias, depth - 1));
  switch (roll) {
    case 0:
    case 1:
      return column(gen, alias, 'text');
    case 2:
      return { sql: `UPPER(${base().sql})`, kind: 'text' };
    case 3:
      return { sql: `LOWER(${base().sql})`, kind: 'text' };
    case 4:
      // Concatenation with ||: CONCAT is left out, since Sluice's CONCAT is NULL when any part is
      // NULL (MySQL's rule) and PostgreSQL's skips NULL parts.
      return { sql: `(${base().sql} || ${textLiteral(gen)})`, kind: 'text' };
    case 5:
      return { sql: `SUBSTRING(${base().sql}, ${gen.int(1, 3)}, ${gen.int(0, 3)})`, kind: 'text' };
    case 6:
      return { sql: `${gen.pick(['LEFT', 'RIGHT'])}(${base().sql}, ${gen.int(0, 3)})`, kind: 'text' };
    case 7:
      return { sql: `REPLACE(${base().sql}, '${gen.pick(['a', 'b', 'ab'])}', '${gen.pick(['', 'z', 'zz'])}')`, kind: 'text' };
    case 8:
      // CAST of integers only: Sluice's DECIMAL is a double, so CAST(1.50 AS VARCHAR) is '1.5'.
      return { sql: `CAST(${column(gen, alias, 'int').sql} AS VARCHAR)`, kind: 'text' };
    default:
      return { sql: `COALESCE(${base().sql}, ${textLiteral(gen)})`, kind: 'text' };
  }
}

function comparable(gen: Generator, alias: string, depth: number): [Expr, string] {
  if (gen.chance(0.25)) {
    const text = gen.chance(0.6) ? column(gen, alias, 'text') : textual(gen, alias, depth);
    return [text, gen.chance(0.8) ? textLiteral(gen) : textual(gen, alias, 0).sql];
  }
  const value = gen.chance(0.6) ? column(gen, alias) : numeric(gen, alias, depth);
  return [value, gen.chance(0.8) ? numberLiteral(gen, value.kind === 'text' ? 'int' : value.kind) : numeric(gen, alias, 0).sql];
}

function predicate(gen: Generator, alias: string, depth: number): string {
  const roll = depth <= 0 ? gen.int(0, 6) : gen.int(0, 10);
  switch (roll) {
    case 0:
    case 1:
    case 2: {
      const [left, right] = comparable(gen, alias, depth - 1);
      return `${left.sql} ${gen.pick(['=', '<>', '!=', '<', '<=', '>', '>='])} ${right}`;
    }
    case 3: {
      const [value, low] = comparable(gen, alias, depth - 1);
      const high = value.kind === 'text' ? textLiteral(gen) : numberLiteral(gen, value.kind);
      return `${value.sql} ${gen.chance(0.25) ? 'NOT ' : ''}BETWEEN ${low} AND ${high}`;
    }
    case 4: {
      const value = gen.chance(0.3) ? column(gen, alias, 'text') : column(gen, alias, gen.pick(['int', 'int', 'float']));
      const items = Array.from({ length: gen.int(1, 4) }, () => (value.kind === 'text' ? textLiteral(gen) : numberLiteral(gen, value.kind)));
      if (gen.chance(0.15)) items.push('NULL');
      return `${value.sql} ${gen.chance(0.3) ? 'NOT IN' : 'IN'} (${items.join(', ')})`;
    }
    case 5: {
      const pattern = gen.pick(['a%', 'ab%', '%b', '%a%', 'b_', '_a%', 'a_b%', '%', '', 'B%', 'c']);
      const target = gen.chance(0.7) ? `${alias}.s` : textual(gen, alias, 0).sql;
      return `${target} ${gen.chance(0.25) ? 'NOT LIKE' : 'LIKE'} '${pattern}'`;
    }
    case 6: {
      const value = gen.chance(0.7) ? column(gen, alias, gen.pick<Kind>(['int', 'float', 'decimal', 'text'])) : numeric(gen, alias, 0);
      return `${value.sql} IS ${gen.chance(0.4) ? 'NOT ' : ''}NULL`;
    }
    case 7:
    case 8:
      return `(${predicate(gen, alias, depth - 1)} ${gen.pick(['AND', 'OR'])} ${predicate(gen, alias, depth - 1)})`;
    case 9:
      return `NOT (${predicate(gen, alias, depth - 1)})`;
    default:
      return `(${predicate(gen, alias, depth - 1)} AND ${predicate(gen, alias, depth - 1)} OR ${predicate(gen, alias, depth - 1)})`;
  }
}

interface OrderKey {
  readonly sql: string;
  readonly descending: boolean;
}

/** Sluice sorts NULL first ascending and last descending; PostgreSQL is told so. */
function orderBy(keys: readonly OrderKey[]): { sluice: string; postgres: string } {
  if (keys.length === 0) return { sluice: '', postgres: '' };
  return {
    sluice: ` ORDER BY ${keys.map((key) => `${key.sql}${key.descending ? ' DESC' : ''}`).join(', ')}`,
    postgres: ` ORDER BY ${keys.map((key) => `${key.sql}${key.descending ? ' DESC NULLS LAST' : ' NULLS FIRST'}`).join(', ')}`,
  };
}

function limitClause(gen: Generator): string {
  if (!gen.chance(0.6)) return '';
  return ` LIMIT ${gen.int(0, 25)}${gen.chance(0.3) ? ` OFFSET ${gen.int(0, 20)}` : ''}`;
}

function build(head: string, keys: readonly OrderKey[], tail: string, ordered: boolean): GeneratedQuery {
  const order = orderBy(keys);
  return { sluice: `${head}${order.sluice}${tail}`, postgres: `${head}${order.postgres}${tail}`, ordered };
}

function where(gen: Generator, alias: string): string {
  return gen.chance(0.85) ? ` WHERE ${predicate(gen, alias, 2)}` : '';
}

function projection(gen: Generator, alias: string): Expr[] {
  return Array.from({ length: gen.int(1, 4) }, () => {
    if (gen.chance(0.08)) return { sql: `(${predicate(gen, alias, 1)})`, kind: 'int' as Kind };
    return gen.chance(0.25) ? textual(gen, alias, 1) : gen.chance(0.4) ? column(gen, alias) : numeric(gen, alias, 2);
  });
}

/** Rows of t, filtered, in a unique order (the id breaks ties) or as a multiset. */
function selectQuery(gen: Generator): GeneratedQuery {
  const items = projection(gen, 't');
  const head = `SELECT ${items.map((item) => item.sql).join(', ')} FROM t${where(gen, 't')}`;
  if (!gen.chance(0.7)) return build(head, [], '', false);
  const keys: OrderKey[] = Array.from({ length: gen.int(0, 2) }, () => ({ sql: gen.chance(0.5) ? column(gen, 't', gen.pick<Kind>(['int', 'text', 'float'])).sql : numeric(gen, 't', 1).sql, descending: gen.chance(0.4) }));
  keys.push({ sql: 't.id', descending: gen.chance(0.3) });
  return build(head, keys, limitClause(gen), true);
}

/** DISTINCT over a few columns, ordered by all of them (which makes the order unique). */
function distinctQuery(gen: Generator): GeneratedQuery {
  const items = Array.from({ length: gen.int(1, 3) }, () => (gen.chance(0.3) ? textual(gen, 't', 1) : gen.chance(0.5) ? column(gen, 't', gen.pick<Kind>(['int', 'int', 'text'])) : numeric(gen, 't', 1)));
  const head = `SELECT DISTINCT ${items.map((item) => item.sql).join(', ')} FROM t${where(gen, 't')}`;
  if (!gen.chance(0.6)) return build(head, [], '', false);
  const keys = items.map((_, i) => ({ sql: String(i + 1), descending: gen.chance(0.3) }));
  return build(head, keys, limitClause(gen), true);
}

function aggregate(gen: Generator, alias: string): Expr {
  const roll = gen.int(0, 7);
  if (roll === 0) return { sql: 'COUNT(*)', kind: 'int' };
  if (roll === 1) return { sql: `COUNT(${column(gen, alias).sql})`, kind: 'int' };
  if (roll === 2) return { sql: `COUNT(DISTINCT ${column(gen, alias, gen.pick<Kind>(['int', 'text'])).sql})`, kind: 'int' };
  const value = gen.chance(0.7) ? column(gen, alias) : numeric(gen, alias, 1);
  if (roll === 3 || roll === 4) return { sql: `SUM(${value.sql})`, kind: value.kind };
  if (roll === 5) return { sql: `AVG(${value.sql})`, kind: 'float' };
  const target = gen.chance(0.3) ? column(gen, alias, 'text') : value;
  return { sql: `${roll === 6 ? 'MIN' : 'MAX'}(${target.sql})`, kind: target.kind };
}

/** GROUP BY one or two keys, with aggregates and maybe HAVING; ordered by the keys. */
function groupQuery(gen: Generator): GeneratedQuery {
  // t.id is the partition column: grouping by it keeps each group on one partition (groupsConfined).
  const keyChoices = ['t.g', 't.k', 't.s', 't.v', '(t.v % 4)', 'UPPER(t.s)', 't.id'];
  const groupKeys = gen.chance(0.6) ? [gen.pick(keyChoices)] : [...new Set([gen.pick(keyChoices), gen.pick(keyChoices)])];
  const aggregates = Array.from({ length: gen.int(1, 3) }, () => aggregate(gen, 't'));
  const having = gen.chance(0.4) ? ` HAVING ${gen.pick(['COUNT(*) > 2', 'SUM(t.v) > 10', 'MIN(t.f) < 0', 'MAX(t.s) > \'b\'', 'COUNT(t.d) <= 5', 'AVG(t.v) > 0'])}` : '';
  const head = `SELECT ${[...groupKeys, ...aggregates.map((item) => item.sql)].join(', ')} FROM t${where(gen, 't')} GROUP BY ${groupKeys.join(', ')}${having}`;
  if (!gen.chance(0.7)) return build(head, [], '', false);
  const keys: OrderKey[] = [];
  if (gen.chance(0.3)) keys.push({ sql: String(groupKeys.length + 1), descending: gen.chance(0.5) });
  for (let i = 0; i < groupKeys.length; i++) keys.push({ sql: String(i + 1), descending: gen.chance(0.3) });
  return build(head, keys, limitClause(gen), true);
}

/** Aggregates over all (filtered) rows: one row, even when no row matches. */
function totalQuery(gen: Generator): GeneratedQuery {
  const aggregates = Array.from({ length: gen.int(1, 4) }, () => aggregate(gen, 't'));
  return build(`SELECT ${aggregates.map((item) => item.sql).join(', ')} FROM t${where(gen, 't')}`, [], '', false);
}

/**
 * t joined with the replicated dim (its key is unique, so t.id stays a unique tie-breaker).
 * `dim LEFT JOIN t` is left out: Sluice refuses a LEFT JOIN from a replicated to a partitioned
 * table (UNSUPPORTED, docs/sql.md).
 */
function joinQuery(gen: Generator): GeneratedQuery {
  const shape = gen.pick(['t JOIN dim ON t.k = dim.k', 't LEFT JOIN dim ON t.k = dim.k', 'dim JOIN t ON dim.k = t.k', 't LEFT JOIN dim ON t.k = dim.k AND dim.w > 0', 't JOIN dim USING (k)']);
  const dimItems = [gen.pick(['dim.name', 'dim.w', 'COALESCE(dim.name, \'none\')', '(dim.w + t.v)', 'dim.k'])];
  const filter = gen.chance(0.8) ? ` WHERE ${predicate(gen, 't', 1)}${gen.chance(0.4) ? ` ${gen.pick(['AND', 'OR'])} ${gen.pick(['dim.w > 0', 'dim.name IS NULL', "dim.name = 'red'", 'dim.w IN (1, 2, -3)', 'dim.k < t.v'])}` : ''}` : '';
  if (gen.chance(0.3)) {
    const head = `SELECT dim.name, COUNT(*), SUM(t.v), MAX(dim.w) FROM ${shape}${filter} GROUP BY dim.name`;
    return build(head, [{ sql: '1', descending: gen.chance(0.5) }], '', true);
  }
  const items = [...projection(gen, 't').slice(0, 2), ...dimItems.map((sql) => ({ sql, kind: 'int' as Kind }))];
  const head = `SELECT t.id, ${items.map((item) => item.sql).join(', ')} FROM ${shape}${filter}`;
  if (!gen.chance(0.7)) return build(head, [], '', false);
  const keys: OrderKey[] = [];
  if (gen.chance(0.5)) keys.push({ sql: gen.pick(['dim.name', 'dim.w', 't.v', 't.s']), descending: gen.chance(0.4) });
  keys.push({ sql: 't.id', descending: gen.chance(0.3) });
  return build(head, keys, limitClause(gen), true);
}

function generateQuery(gen: Generator): GeneratedQuery {
  const roll = gen.next();
  if (roll < 0.35) return selectQuery(gen);
  if (roll < 0.45) return distinctQuery(gen);
  if (roll < 0.65) return groupQuery(gen);
  if (roll < 0.75) return totalQuery(gen);
  return joinQuery(gen);
}
