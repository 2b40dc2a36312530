/**
 * Compiled executors (engine/sql/compiled.ts) against the generic executor they replace: the
 * same statements and parameters, run both ways on identical partitions, must give the same rows,
 * the same errors and the same stored state. Point lookups cover every key type, composite hash
 * keys, residual filters, computed projections and NULL/missing keys; inserts cover every column
 * type, defaults, constants, expressions and each kind of bad value; updates through a unique key
 * cover SET expressions over the row, residual filters, views kept current and bad values.
 */
import { describe, expect, it } from 'vitest';
import { applyDdl, emptyCatalog } from '../engine/catalog/ddl.ts';
import type { Catalog } from '../engine/catalog/schema.ts';
import { SluiceError } from '../engine/errors.ts';
import { Partition } from '../engine/execution/partition.ts';
import { seededRandom } from '../engine/random.ts';
import { isCompiled, rowObjects } from '../engine/sql/compiled.ts';
import { executePlan, normalizeParams, planStatement, type PlannedStatement } from '../engine/sql/statement.ts';
import type { Value } from '../engine/types.ts';

const ddl = `
CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, big BIGINT, name VARCHAR(6), f FLOAT, ts TIMESTAMP, flag BOOLEAN,
  small SMALLINT, d DECIMAL(8,2), bin VARBINARY(4), note VARCHAR(10) DEFAULT 'none');
CREATE TABLE byname (name VARCHAR(6) NOT NULL PRIMARY KEY, n INTEGER);
CREATE TABLE byts (ts TIMESTAMP NOT NULL PRIMARY KEY, n INTEGER);
CREATE TABLE bybin (b VARBINARY(4) NOT NULL PRIMARY KEY, n INTEGER);
CREATE TABLE bybig (k BIGINT NOT NULL PRIMARY KEY, n INTEGER);
CREATE TABLE pair (a INTEGER NOT NULL, b VARCHAR(4) NOT NULL, n INTEGER);
CREATE UNIQUE HASH INDEX pair_ab ON pair (a, b);
CREATE TABLE counted (g INTEGER NOT NULL, x INTEGER);
CREATE VIEW counted_by_g (g, n, total) AS SELECT g, COUNT(*), SUM(x) FROM counted GROUP BY g;
`;

const baseTime = Date.UTC(2024, 0, 1);

/** Runs one statement in its own transaction; returns its rows as objects or the error. */
function run(partition: Partition, statement: PlannedStatement, params: readonly unknown[], compiled: boolean, transactionId: number): unknown {
  partition.begin(transactionId, baseTime);
  try {
    // As the procedure context does: a compiled statement that normalizes its own parameters
    // gets them as the caller gave them (bigint, Date, undefined included).
    const values = compiled && statement.rawParams ? (params as Value[]) : normalizeParams(params);
    const rows = compiled ? partition.executeObjects(statement, values) : rowObjects(executePlan(statement, partition, values));
    partition.commit();
    return { rows };
  } catch (error) {
    partition.rollback();
    if (!(error instanceof SluiceError)) throw error;
    return { code: error.code, message: error.message };
  }
}

function tableState(partition: Partition): Record<string, Value[][]> {
  const state: Record<string, Value[][]> = {};
  for (const table of partition.allTables()) {
    // Values only (not the hidden row id and position), sorted: the two partitions must agree.
    const width = table.def.columns.length;
    state[table.def.name] = [...table.rows].map((row) => row.slice(0, width)).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  }
  return state;
}

class Pair {
  readonly catalog: Catalog = applyDdl(ddl, emptyCatalog);
  readonly generic = new Partition(0, 1, this.catalog);
  readonly compiled = new Partition(0, 1, this.catalog);
  private transactionId = 0;
  private readonly plans = new Map<string, PlannedStatement>();

  plan(sql: string): PlannedStatement {
    let statement = this.plans.get(sql);
    if (!statement) {
      statement = planStatement(sql, this.catalog);
      this.plans.set(sql, statement);
    }
    return statement;
  }

  /** Runs `sql` both ways and expects the same answer; returns it. */
  same(sql: string, params: readonly unknown[]): unknown {
    const statement = this.plan(sql);
    const id = ++this.transactionId;
    const expected = run(this.generic, statement, params, false, id);
    const actual = run(this.compiled, statement, params, true, id);
    expect(actual, `${sql} ${JSON.stringify(params, (_, value) => (typeof value === 'bigint' ? `${value}n` : value))}`).toEqual(expected);
    return actual;
  }
}

function randomBytes(next: () => number): Uint8Array {
  return Uint8Array.from({ length: 1 + Math.floor(next() * 3) }, () => Math.floor(next() * 4));
}

describe('compiled statements agree with the generic executor', () => {
  it('the shapes that matter are compiled, the others are not', () => {
    const pair = new Pair();
    for (const sql of [
      'SELECT name FROM t WHERE id = ?',
      'SELECT * FROM t WHERE id = ? AND flag = TRUE',
      'SELECT n FROM pair WHERE a = ? AND b = ?',
      'INSERT INTO t (id, name) VALUES (?, ?)',
      'INSERT INTO counted VALUES (?, ?)',
      'UPDATE t SET name = ? WHERE id = ?',
      'UPDATE pair SET n = n + 1 WHERE a = ? AND b = ? AND n > 0',
    ]) {
      expect(isCompiled(pair.plan(sql).objects), sql).toBe(true);
    }
    expect(pair.plan('UPDATE t SET name = ?, big = ? WHERE id = ?').rawParams).toBe(true);
    expect(pair.plan('UPDATE t SET big = big + 1 WHERE id = ?').rawParams).toBe(false);
    // Closure-free compiled statements normalize their own parameters; with a closure they cannot.
    expect(pair.plan('SELECT name FROM t WHERE id = ?').rawParams).toBe(true);
    expect(pair.plan('INSERT INTO t (id, name) VALUES (?, ?)').rawParams).toBe(true);
    expect(pair.plan('SELECT id FROM t WHERE id = ? + 1').rawParams).toBe(false);
    expect(pair.plan('SELECT name FROM t WHERE name = ?').rawParams).toBe(false);
    for (const sql of [
      'SELECT name FROM t WHERE id = ? LIMIT 1',
      'SELECT name FROM t WHERE name = ?',
      'SELECT COUNT(*) FROM t WHERE id = ?',
      'UPSERT INTO t (id, name) VALUES (?, ?)',
      'INSERT INTO pair VALUES (1, ?, 2), (2, ?, 3)',
      'DELETE FROM t WHERE id = ?',
      'UPDATE t SET name = ? WHERE name = ?',
      'UPDATE t SET name = ?',
      'EXPLAIN SELECT name FROM t WHERE id = ?',
    ]) {
      expect(isCompiled(pair.plan(sql).objects), sql).toBe(false);
    }
  });

  it('random inserts and point lookups give the same rows, errors and state', () => {
    for (const seed of [1, 2, 3]) {
      const next = seededRandom(seed);
      const int = (low: number, high: number) => low + Math.floor(next() * (high - low + 1));
      const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
      const maybe = <T>(value: T): T | null => (next() < 0.1 ? null : value);
      const pair = new Pair();
      const names = ['a', 'bb', 'ccc', 'dddddd', 'toolong!', ''];
      // Values that each column may be offered: canonical ones, convertible ones and bad ones.
      const anyValue = (): unknown =>
        pick<() => unknown>([
          () => int(-3, 40),
          () => int(-40000, 40000),
          () => 2 ** 53 + int(0, 3),
          () => BigInt(int(-5, 5)),
          () => int(0, 10) + 0.5,
          () => pick(names),
          () => new Date(baseTime + int(0, 5) * 1000),
          () => new Date(baseTime + int(0, 5) * 1000).toISOString(),
          () => pick([true, false]),
          () => randomBytes(next),
          () => null,
          () => undefined,
          () => 2n ** 60n,
          () => ({ not: 'a value' }),
        ])();
      const inserts: [string, () => unknown[]][] = [
        ['INSERT INTO t (id, big, name, f, ts, flag, small, d, bin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', () => [int(0, 60), maybe(int(-1e12, 1e12)), maybe(pick(names)), maybe(next() * 100), maybe(baseTime + int(0, 5) * 1000), maybe(next() < 0.5), maybe(int(-100, 100)), maybe(int(0, 9999) / 100), maybe(randomBytes(next))]],
        ['INSERT INTO t (id, big, name, f, ts, flag, small, d, bin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', () => Array.from({ length: 9 }, anyValue)],
        ['INSERT INTO t (id, name) VALUES (?, ?)', () => [int(0, 60), anyValue()]],
        ["INSERT INTO t (id, name, note, small) VALUES (? + 100, 'k', ?, 7)", () => [int(0, 60), pick(['x', null, 'elevenchars', 5])]],
        ['INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', () => [int(0, 60), int(0, 9), pick(names), 1.5, baseTime, true, 3, 1.234, null, pick(names)]],
        ['INSERT INTO byname VALUES (?, ?)', () => [maybe(pick(names)), int(0, 9)]],
        ['INSERT INTO byts VALUES (?, ?)', () => [pick([baseTime + int(0, 5) * 1000, new Date(baseTime + int(0, 5) * 1000).toISOString()]), int(0, 9)]],
        ['INSERT INTO bybin VALUES (?, ?)', () => [randomBytes(next), int(0, 9)]],
        ['INSERT INTO bybig VALUES (?, ?)', () => [pick([int(-3, 3) * 1e15, BigInt(int(-3, 3)) * 10n ** 15n, 2 ** 53]), int(0, 9)]],
        ['INSERT INTO pair VALUES (?, ?, ?)', () => [int(0, 4), maybe(pick(names)), int(0, 9)]],
        ['INSERT INTO counted VALUES (?, ?)', () => [int(0, 5), maybe(int(-9, 9))]],
      ];
      const lookups: [string, () => unknown[]][] = [
        ['SELECT name, big, note FROM t WHERE id = ?', () => [maybe(int(-1, 60))]],
        ['SELECT * FROM t WHERE id = ?', () => [int(0, 60)]],
        ['SELECT id, name, big * 2 AS twice, COALESCE(name, ?) AS shown FROM t WHERE id = ?', () => ['-', int(0, 60)]],
        ['SELECT name AS x, id AS x FROM t WHERE id = ?', () => [int(0, 60)]],
        ['SELECT id FROM t WHERE id = ? AND flag = TRUE', () => [int(0, 60)]],
        ['SELECT id FROM t WHERE id = ? AND name LIKE ?', () => [int(0, 60), pick(['%', 'a%', 'b_'])]],
        ['SELECT id FROM t WHERE id = ? AND ? > 0', () => [int(0, 60), int(-1, 1)]],
        ['SELECT id, 1 AS one, NULL AS nothing, ? AS echo FROM t WHERE ? = id', () => [anyValue(), int(0, 60)]],
        ['SELECT id FROM t WHERE id = ? + 1', () => [int(-1, 60)]],
        ['SELECT id FROM t WHERE id = ?', () => [anyValue()]],
        ['SELECT n FROM byname WHERE name = ?', () => [maybe(pick(names))]],
        ['SELECT n FROM byts WHERE ts = ?', () => [pick([baseTime + int(0, 5) * 1000, new Date(baseTime + int(0, 5) * 1000).toISOString(), 'not a time'])]],
        ["SELECT n FROM byts WHERE ts = '2024-01-01T00:00:02Z'", () => []],
        ['SELECT n FROM bybin WHERE b = ?', () => [randomBytes(next)]],
        ['SELECT n FROM bybig WHERE k = ?', () => [pick([int(-3, 3) * 1e15, BigInt(int(-3, 3)) * 10n ** 15n])]],
        ['SELECT n, a, b FROM pair WHERE a = ? AND b = ?', () => [int(0, 4), maybe(pick(names))]],
        ['SELECT n FROM pair WHERE b = ? AND a = ?', () => [pick(names), int(0, 4)]],
        ['SELECT g, n, total FROM counted_by_g WHERE g = ?', () => [int(0, 5)]],
      ];
      const updates: [string, () => unknown[]][] = [
        ['UPDATE t SET name = ?, big = ? WHERE id = ?', () => [maybe(pick(names)), maybe(int(-1e12, 1e12)), maybe(int(-1, 60))]],
        ['UPDATE t SET big = big + ?, small = ? WHERE id = ?', () => [int(-5, 5), anyValue(), int(0, 60)]],
        ['UPDATE t SET ts = ?, d = ?, bin = ?, flag = ? WHERE id = ?', () => [anyValue(), anyValue(), anyValue(), anyValue(), int(0, 60)]],
        ['UPDATE t SET note = COALESCE(name, ?) WHERE id = ? AND flag = TRUE', () => [pick(['x', 'elevenchars!']), int(0, 60)]],
        ['UPDATE t SET f = ? WHERE id = ?', () => [anyValue(), anyValue()]],
        ['UPDATE byname SET n = n * 2 WHERE name = ?', () => [maybe(pick(names))]],
        ['UPDATE pair SET n = ? WHERE a = ? AND b = ?', () => [maybe(int(0, 9)), int(0, 4), pick(names)]],
        ['UPDATE counted SET x = ? WHERE g = ?', () => [int(-9, 9), int(0, 5)]],
      ];
      let rowsSeen = 0;
      let rowsUpdated = 0;
      for (let i = 0; i < 2000; i++) {
        const roll = next();
        if (roll >= 0.75) {
          const [sql, params] = pick(updates);
          const answer = pair.same(sql, params()) as { rows?: { modified_tuples: number }[] };
          rowsUpdated += answer.rows?.[0]?.modified_tuples ?? 0;
          continue;
        }
        const [sql, params] = roll < 0.4 ? pick(inserts) : pick(lookups);
        const answer = pair.same(sql, params()) as { rows?: unknown[] };
        rowsSeen += answer.rows?.length ?? 0;
      }
      expect(pair.compiled.catalogGeneration).toBe(pair.generic.catalogGeneration);
      expect(tableState(pair.compiled)).toEqual(tableState(pair.generic));
      // The run did find rows: an always-empty run would agree vacuously.
      expect(rowsSeen).toBeGreaterThan(300);
      expect(rowsUpdated).toBeGreaterThan(50);
      pair.compiled.verify();
    }
  });

  it('a schema change is seen by a compiled lookup planned before it', () => {
    const catalog = applyDdl(ddl, emptyCatalog);
    const partition = new Partition(0, 1, catalog);
    const lookup = planStatement('SELECT name FROM t WHERE id = ?', catalog);
    const insert = planStatement("INSERT INTO t (id, name) VALUES (?, 'x')", catalog);
    partition.begin(1, baseTime);
    partition.executeObjects(insert, [1]);
    expect(partition.executeObjects(lookup, [1])).toEqual([{ name: 'x' }]);
    partition.commit();
    // A new index on t rebuilds the table: the cached index of the old one must not be used.
    partition.applyCatalog(applyDdl('CREATE INDEX t_name ON t (name);', catalog));
    partition.begin(2, baseTime);
    partition.executeObjects(insert, [2]);
    expect(partition.executeObjects(lookup, [2])).toEqual([{ name: 'x' }]);
    partition.commit();
  });
});
