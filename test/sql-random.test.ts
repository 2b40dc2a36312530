/**
 * Differential SQL test: the same random rows (NULLs, duplicates, integers, text, floats,
 * timestamps) go into a table WITH hash and ordered indexes and into one WITHOUT any; generated
 * queries (equality, ranges, BETWEEN, IN, LIKE, IS NULL, AND/OR/NOT, ORDER BY … LIMIT/OFFSET,
 * GROUP BY aggregates, DISTINCT, inner and left joins) run against both and against a plain
 * JavaScript evaluation of the raw rows, and all three must agree. Index plans and scan plans are
 * thereby checked against each other and against the SQL semantics, on 1 and 3 partitions.
 *
 * Seeds are fixed so runs repeat; SQL_RANDOM_SEED=<n> runs one other seed. A failure message
 * names the seed, the query and its parameters.
 */
import { describe, expect, it } from 'vitest';
import type { Database } from '../engine/database.ts';
import type { Value } from '../engine/types.ts';
import { openDatabase } from './helpers.ts';
import { seededRandom } from '../engine/random.ts';

const seeds = process.env.SQL_RANDOM_SEED ? [Number(process.env.SQL_RANDOM_SEED)] : [1, 2, 3];
const rowsPerTable = 300;
const queriesPerSeed = 400;

const ddl = `
CREATE TABLE indexed (id INTEGER NOT NULL PRIMARY KEY, k INTEGER, v INTEGER, s VARCHAR(8), f FLOAT, ts TIMESTAMP, g INTEGER NOT NULL);
PARTITION TABLE indexed ON COLUMN id;
CREATE HASH INDEX indexed_k ON indexed (k);
CREATE INDEX indexed_v ON indexed (v);
CREATE INDEX indexed_s ON indexed (s);
CREATE INDEX indexed_ts ON indexed (ts);
CREATE INDEX indexed_g_v ON indexed (g, v);
CREATE INDEX indexed_f ON indexed (f);
CREATE TABLE plain (id INTEGER NOT NULL, k INTEGER, v INTEGER, s VARCHAR(8), f FLOAT, ts TIMESTAMP, g INTEGER NOT NULL);
PARTITION TABLE plain ON COLUMN id;
CREATE TABLE dim_indexed (k INTEGER NOT NULL PRIMARY KEY, name VARCHAR(8));
CREATE TABLE dim_plain (k INTEGER NOT NULL, name VARCHAR(8));
`;

type Row = { id: number; k: number | null; v: number | null; s: string | null; f: number | null; ts: number | null; g: number };
type Dim = { k: number; name: string | null };
type Truth = boolean | null;

const random = seededRandom;

const words = ['ab', 'abc', 'abd', 'b', 'ba', 'bab', 'c', 'ca', '', 'a_b', 'a%'];
const baseTime = Date.UTC(2024, 0, 1);

class Generator {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = random(seed);
  }
  int(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  maybeNull<T>(value: T, chance = 0.12): T | null {
    return this.next() < chance ? null : value;
  }
}

function makeRows(gen: Generator): { rows: Row[]; dims: Dim[] } {
  const rows: Row[] = [];
  for (let id = 1; id <= rowsPerTable; id++) {
    rows.push({
      id,
      k: gen.maybeNull(gen.int(0, 25)),
      v: gen.maybeNull(gen.int(-40, 40)),
      s: gen.maybeNull(gen.pick(words) + (gen.next() < 0.5 ? gen.pick(['', 'x', 'y']) : '')),
      f: gen.maybeNull(gen.int(-500, 500) / 4),
      ts: gen.maybeNull(baseTime + gen.int(0, 72) * 3_600_000 + gen.int(0, 59) * 60_000),
      g: gen.int(0, 4),
    });
  }
  const dims: Dim[] = [];
  for (let k = 0; k <= 30; k += gen.int(1, 2)) dims.push({ k, name: gen.maybeNull(gen.pick(['red', 'green', 'blue'])) });
  return { rows, dims };
}

// ---------------------------------------------------------------------------------------------
// The oracle: SQL semantics written out plainly in JavaScript.

function compare(a: number | string, b: number | string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function and(a: Truth, b: Truth): Truth {
  if (a === false || b === false) return false;
  return a === null || b === null ? null : true;
}

function or(a: Truth, b: Truth): Truth {
  if (a === true || b === true) return true;
  return a === null || b === null ? null : false;
}

function not(a: Truth): Truth {
  return a === null ? null : !a;
}

/** Sort order of the engine: NULL first, then by value. */
function orderValues(a: Value, b: Value): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  return compare(a as number | string, b as number | string);
}

interface Predicate {
  sql: string;
  params: Value[];
  test: (row: Row) => Truth;
}

type Column = 'k' | 'v' | 's' | 'f' | 'ts' | 'g';

function literal(column: Column, value: number | string): string {
  if (column === 's') return `'${value}'`;
  if (column === 'ts') return `'${new Date(value as number).toISOString()}'`;
  return String(value);
}

function randomValue(gen: Generator, column: Column): number | string {
  switch (column) {
    case 'k': return gen.int(-1, 27);
    case 'v': return gen.int(-45, 45);
    case 's': return gen.pick(words) + gen.pick(['', '', 'x']);
    case 'f': return gen.int(-520, 520) / 4;
    case 'ts': return baseTime + gen.int(-2, 74) * 3_600_000;
    case 'g': return gen.int(-1, 5);
  }
}

/** A comparison operand: a literal or a `?` parameter (timestamps then go as ISO text). */
function operand(gen: Generator, column: Column, value: number | string, params: Value[]): string {
  if (gen.next() < 0.3) {
    params.push(column === 'ts' && gen.next() < 0.5 ? new Date(value as number).toISOString() : value);
    return '?';
  }
  return literal(column, value);
}

function comparison(gen: Generator, table: string): Predicate {
  const column = gen.pick<Column>(['k', 'v', 's', 'f', 'ts', 'g', 'v', 's']);
  const ref = `${table}.${column}`;
  const get = (row: Row) => row[column];
  const params: Value[] = [];
  const kind = gen.int(0, 9);
  if (kind <= 3) {
    const op = gen.pick(['=', '<>', '<', '<=', '>', '>=']);
    const value = randomValue(gen, column);
    const sql = `${ref} ${op} ${operand(gen, column, value, params)}`;
    return {
      sql,
      params,
      test: (row) => {
        const x = get(row);
        if (x === null) return null;
        const order = compare(x, value);
        return op === '=' ? order === 0 : op === '<>' ? order !== 0 : op === '<' ? order < 0 : op === '<=' ? order <= 0 : op === '>' ? order > 0 : order >= 0;
      },
    };
  }
  if (kind === 4) {
    let low = randomValue(gen, column);
    let high = randomValue(gen, column);
    if (gen.next() < 0.8 && compare(low, high) > 0) [low, high] = [high, low];
    const negated = gen.next() < 0.2;
    const sql = `${ref} ${negated ? 'NOT ' : ''}BETWEEN ${operand(gen, column, low, params)} AND ${operand(gen, column, high, params)}`;
    return {
      sql,
      params,
      test: (row) => {
        const x = get(row);
        if (x === null) return null;
        const inside = compare(x, low) >= 0 && compare(x, high) <= 0;
        return negated ? !inside : inside;
      },
    };
  }
  if (kind === 5) {
    const values = Array.from({ length: gen.int(1, 4) }, () => randomValue(gen, column));
    const withNull = gen.next() < 0.2;
    const negated = gen.next() < 0.3;
    const list = [...values.map((value) => literal(column, value)), ...(withNull ? ['NULL'] : [])];
    return {
      sql: `${ref} ${negated ? 'NOT IN' : 'IN'} (${list.join(', ')})`,
      params,
      test: (row) => {
        const x = get(row);
        if (x === null) return null;
        if (values.some((value) => compare(x, value) === 0)) return !negated;
        return withNull ? null : negated;
      },
    };
  }
  if (kind === 6) {
    const negated = gen.next() < 0.5;
    return { sql: `${ref} IS ${negated ? 'NOT ' : ''}NULL`, params, test: (row) => (get(row) === null) !== negated };
  }
  if (kind === 7) {
    const prefix = gen.pick(['a', 'ab', 'b', 'ba', 'c', 'abc', 'z']);
    const contains = gen.next() < 0.25;
    const pattern = contains ? `%${prefix}%` : `${prefix}%`;
    return {
      sql: `${table}.s LIKE '${pattern}'`,
      params,
      test: (row) => (row.s === null ? null : contains ? row.s.includes(prefix) : row.s.startsWith(prefix)),
    };
  }
  if (kind === 8) {
    // The composite ordered index: equality on g, range on v.
    const g = gen.int(0, 4);
    const v = gen.int(-40, 40);
    const op = gen.pick(['<', '>=']);
    return {
      sql: `${table}.g = ${g} AND ${table}.v ${op} ${v}`,
      params,
      test: (row) => and(row.g === g, row.v === null ? null : op === '<' ? row.v < v : row.v >= v),
    };
  }
  const value = randomValue(gen, 'k');
  return { sql: `${table}.k = ${value}`, params, test: (row) => (row.k === null ? null : row.k === value) };
}

function predicate(gen: Generator, table: string, depth = 0): Predicate {
  const roll = gen.next();
  if (depth >= 2 || roll < 0.55) return comparison(gen, table);
  const left = predicate(gen, table, depth + 1);
  if (roll < 0.65) return { sql: `NOT (${left.sql})`, params: left.params, test: (row) => not(left.test(row)) };
  const right = predicate(gen, table, depth + 1);
  const isAnd = roll < 0.85;
  return {
    sql: `(${left.sql}) ${isAnd ? 'AND' : 'OR'} (${right.sql})`,
    params: [...left.params, ...right.params],
    test: (row) => (isAnd ? and(left.test(row), right.test(row)) : or(left.test(row), right.test(row))),
  };
}

// ---------------------------------------------------------------------------------------------
// Queries: SQL for a (table, dimension) pair, and the expected rows.

interface Query {
  sql: (table: string, dim: string) => string;
  params: Value[];
  expected: Value[][];
  /** Compare in order (ORDER BY determines every projected value) or as a multiset. */
  ordered: boolean;
}

function sortRows(rows: Value[][]): Value[][] {
  return [...rows].sort((a, b) => {
    for (let i = 0; i < a.length; i++) {
      const order = orderValues(a[i], b[i]);
      if (order !== 0) return order;
    }
    return 0;
  });
}

function generateQuery(gen: Generator, rows: Row[], dims: Dim[]): Query {
  const where = predicate(gen, 'T');
  const matching = rows.filter((row) => where.test(row) === true);
  const sql = (text: string) => (table: string, dim: string) => text.replaceAll('T.', `${table}.`).replaceAll(' T ', ` ${table} `).replaceAll(' D ', ` ${dim} `).replaceAll('D.', `${dim}.`);
  const kind = gen.int(0, 9);
  if (kind <= 2) {
    return {
      sql: sql(`SELECT T.id, T.k, T.v, T.s, T.ts FROM T WHERE ${where.sql}`),
      params: where.params,
      expected: matching.map((row) => [row.id, row.k, row.v, row.s, row.ts]),
      ordered: false,
    };
  }
  if (kind <= 4) {
    // ORDER BY … LIMIT/OFFSET on an indexed column: only that column is projected, so ties
    // between rows cannot make two correct answers differ.
    const column = gen.pick<Column>(['v', 's', 'ts', 'f']);
    const descending = gen.next() < 0.5;
    const limit = gen.int(0, 12);
    const offset = gen.next() < 0.4 ? gen.int(0, 20) : 0;
    const values = matching.map((row) => row[column] as Value).sort((a, b) => (descending ? -orderValues(a, b) : orderValues(a, b)));
    return {
      sql: sql(`SELECT T.${column} FROM T WHERE ${where.sql} ORDER BY T.${column}${descending ? ' DESC' : ''} LIMIT ${limit}${offset ? ` OFFSET ${offset}` : ''}`),
      params: where.params,
      expected: values.slice(offset, offset + limit).map((value) => [value]),
      ordered: true,
    };
  }
  if (kind === 5) {
    // The composite index yields v in order within one g.
    const g = gen.int(0, 4);
    const limit = gen.int(1, 10);
    const descending = gen.next() < 0.5;
    const values = rows.filter((row) => row.g === g).map((row) => row.v).sort((a, b) => (descending ? -orderValues(a, b) : orderValues(a, b)));
    return {
      sql: sql(`SELECT T.v FROM T WHERE T.g = ${g} ORDER BY T.v${descending ? ' DESC' : ''} LIMIT ${limit}`),
      params: [],
      expected: values.slice(0, limit).map((value) => [value]),
      ordered: true,
    };
  }
  if (kind === 6) {
    const groupColumn = gen.pick<Column>(['k', 'g', 's']);
    const groups = new Map<Value, Row[]>();
    for (const row of matching) {
      const key = row[groupColumn];
      const group = groups.get(key) ?? [];
      group.push(row);
      groups.set(key, group);
    }
    const expected: Value[][] = [];
    for (const [key, group] of groups) {
      const vs = group.map((row) => row.v).filter((v): v is number => v !== null);
      const sum = vs.length === 0 ? null : vs.reduce((a, b) => a + b, 0);
      const fs = group.map((row) => row.f).filter((f): f is number => f !== null);
      expected.push([
        key,
        group.length,
        vs.length,
        sum,
        vs.length === 0 ? null : Math.min(...vs),
        vs.length === 0 ? null : Math.max(...vs),
        sum === null ? null : sum / vs.length,
        fs.length === 0 ? null : Math.max(...fs),
      ]);
    }
    const having = gen.next() < 0.3 ? gen.int(1, 4) : undefined;
    return {
      sql: sql(`SELECT T.${groupColumn}, COUNT(*), COUNT(T.v), SUM(T.v), MIN(T.v), MAX(T.v), AVG(T.v), MAX(T.f) FROM T WHERE ${where.sql} GROUP BY T.${groupColumn}${having ? ` HAVING COUNT(*) >= ${having}` : ''}`),
      params: where.params,
      expected: having ? expected.filter((row) => (row[1] as number) >= having) : expected,
      ordered: false,
    };
  }
  if (kind === 7) {
    const vs = matching.map((row) => row.v).filter((v): v is number => v !== null);
    return {
      sql: sql(`SELECT COUNT(*), SUM(T.v), MIN(T.s), COUNT(DISTINCT T.k) FROM T WHERE ${where.sql}`),
      params: where.params,
      expected: [[
        matching.length,
        vs.length === 0 ? null : vs.reduce((a, b) => a + b, 0),
        matching.map((row) => row.s).filter((s) => s !== null).sort(orderValues)[0] ?? null,
        new Set(matching.map((row) => row.k).filter((k) => k !== null)).size,
      ]],
      ordered: true,
    };
  }
  if (kind === 8) {
    const left = gen.next() < 0.5;
    const expected: Value[][] = [];
    for (const row of matching) {
      const partners = row.k === null ? [] : dims.filter((dim) => dim.k === row.k);
      for (const dim of partners) expected.push([row.id, dim.k, dim.name]);
      if (left && partners.length === 0) expected.push([row.id, null, null]);
    }
    return {
      sql: sql(`SELECT T.id, D.k, D.name FROM T ${left ? 'LEFT ' : ''}JOIN D ON D.k = T.k WHERE ${where.sql}`),
      params: where.params,
      expected,
      ordered: false,
    };
  }
  const column = gen.pick<Column>(['s', 'k', 'g']);
  const distinct = new Map<Value, Value>();
  for (const row of matching) distinct.set(row[column], row[column]);
  return {
    sql: sql(`SELECT DISTINCT T.${column} FROM T WHERE ${where.sql}`),
    params: where.params,
    expected: [...distinct.values()].map((value) => [value]),
    ordered: false,
  };
}

async function load(db: Database, rows: Row[], dims: Dim[]): Promise<void> {
  for (const table of ['indexed', 'plain']) {
    for (const row of rows) {
      await db.query(`INSERT INTO ${table} VALUES (?, ?, ?, ?, ?, ?, ?)`, [row.id, row.k, row.v, row.s, row.f, row.ts, row.g]);
    }
  }
  for (const table of ['dim_indexed', 'dim_plain']) {
    for (const dim of dims) await db.query(`INSERT INTO ${table} VALUES (?, ?)`, [dim.k, dim.name]);
  }
}

describe('random SQL: indexed, unindexed and JavaScript agree', () => {
  for (const partitions of [1, 3]) {
    for (const seed of seeds) {
      it(`seed ${seed} on ${partitions} partition(s)`, async () => {
        const gen = new Generator(seed);
        const { rows, dims } = makeRows(gen);
        const db = await openDatabase(ddl, { partitions });
        try {
          await load(db, rows, dims);
          db.verify();
          let indexPlans = 0;
          for (let i = 0; i < queriesPerSeed; i++) {
            const query = generateQuery(gen, rows, dims);
            const expected = query.ordered ? query.expected : sortRows(query.expected);
            for (const [table, dim] of [['indexed', 'dim_indexed'], ['plain', 'dim_plain']]) {
              const text = query.sql(table, dim);
              const context = `seed ${seed}, ${partitions} partition(s), query ${i}: ${text} params ${JSON.stringify(query.params)}`;
              let actual: Value[][];
              try {
                actual = (await db.query(text, query.params)).rows;
              } catch (error) {
                throw new Error(`${context}: ${(error as Error).message}`);
              }
              expect(query.ordered ? actual : sortRows(actual), context).toEqual(expected);
              if (table === 'indexed') {
                const plan = (await db.query(`EXPLAIN ${text}`, query.params)).rows.map((row) => String(row[0])).join('\n');
                if (/ using /.test(plan)) indexPlans++;
              }
            }
          }
          // The comparison is only worth something if the indexed table really used its indexes.
          expect(indexPlans, `seed ${seed}: queries planned with an index`).toBeGreaterThan(queriesPerSeed / 5);
        } finally {
          await db.close();
        }
      });
    }
  }
});
