/**
 * Transactions: a failed procedure rolls back every kind of change it made (rows, index entries,
 * view rows including SUM/MIN/MAX, stream rows) whether it calls ctx.abort, throws, or breaks a
 * constraint midway, on one and on several partitions, single- and multi-partition; batches
 * check their declared expectations. Fixture: test/fixtures/bank.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../engine/database.ts';
import { ErrorCode } from '../engine/errors.ts';
import { expectError, openDatabase, snapshotState } from './helpers.ts';

const fixture = path.resolve(import.meta.dirname, 'fixtures/bank');
const accountCount = 6;

let db: Database | undefined;
afterEach(async () => {
  await db?.close();
  db = undefined;
});

async function openBank(partitions: number): Promise<Database> {
  db = await openDatabase(path.join(fixture, 'ddl.sql'), { partitions });
  expect(await db.call('Setup', accountCount)).toBe(accountCount);
  return db;
}

/** Everything a transaction could have changed, read back through SQL (and so through indexes). */
async function state(database: Database): Promise<unknown> {
  return {
    tables: await snapshotState(database, ['accounts', 'entries', 'branches']),
    // Re-aggregated: with several partitions each one holds its share of every branch.
    branchTotals: (await database.query('SELECT branch, SUM(n), SUM(total), MIN(low), MAX(high) FROM branch_totals GROUP BY branch ORDER BY branch')).rows,
    entryTotals: (await database.query('SELECT id, n, total, low, high FROM entry_totals ORDER BY id')).rows,
    auditCounts: (await database.query('SELECT id, n FROM audit_counts ORDER BY id')).rows,
    // Answered through the accounts_owner index.
    changedOwners: (await database.query("SELECT id FROM accounts WHERE owner = 'changed'")).rows,
    owner3: (await database.query("SELECT id FROM accounts WHERE owner = 'owner 3'")).rows,
  };
}

function auditRows(database: Database): number {
  return database.drainStream('audit').length;
}

for (const partitions of [1, 3]) {
  describe(`rollback on ${partitions} partition(s)`, () => {
    const failures: [string, ErrorCode, RegExp][] = [
      ['abort', ErrorCode.USER_ABORT, /account 3 said no/],
      ['throw', ErrorCode.PROCEDURE_FAILED, /account 3 broke/],
      ['unique', ErrorCode.UNIQUE_VIOLATION, /entries_pkey/],
      ['not-null', ErrorCode.NOT_NULL_VIOLATION, /entries\.amount/],
      ['too-long', ErrorCode.VALUE_TOO_LONG, /accounts\.owner/],
    ];
    for (const [failure, code, message] of failures) {
      it(`single-partition: '${failure}' undoes inserts, updates, deletes, index entries, views and stream rows`, async () => {
        const database = await openBank(partitions);
        auditRows(database);
        const before = await state(database);
        await expectError(() => database.call('Mutate', 3, failure), code, message);
        expect(await state(database)).toEqual(before);
        expect(auditRows(database)).toBe(0);
        database.verify();
      });
    }

    it('single-partition: the same transaction commits every change when it does not fail', async () => {
      const database = await openBank(partitions);
      auditRows(database);
      const before = await state(database);
      expect(await database.call('Mutate', 3, 'none')).toBe('committed');
      const after = (await state(database)) as Record<string, unknown>;
      expect(after).not.toEqual(before);
      expect(after.changedOwners).toEqual([[3]]);
      expect(after.owner3).toEqual([]);
      // Entry 1 (amount 1, the minimum) left and entry 100 (amount 500, the maximum) came.
      expect((after.entryTotals as unknown[][])[2]).toEqual([3, 3, 5 + 9 + 500, 5, 500]);
      expect(auditRows(database)).toBe(1);
      database.verify();
    });

    for (const [failure, code] of [
      ['abort', ErrorCode.USER_ABORT],
      ['throw', ErrorCode.PROCEDURE_FAILED],
      ['unique', ErrorCode.UNIQUE_VIOLATION],
    ] as const) {
      it(`multi-partition: '${failure}' undoes changes on every partition and in replicated tables`, async () => {
        const database = await openBank(partitions);
        auditRows(database);
        const before = await state(database);
        await expectError(() => database.call('MutateAll', failure), code);
        expect(await state(database)).toEqual(before);
        expect(auditRows(database)).toBe(0);
        database.verify();
      });
    }

    it('multi-partition: commits on every partition when it does not fail', async () => {
      const database = await openBank(partitions);
      auditRows(database);
      expect(await database.call('MutateAll', 'none')).toBe(accountCount);
      expect((await database.query('SELECT COUNT(*) FROM entries WHERE seq = 1')).rows).toEqual([[0]]);
      expect((await database.query("SELECT COUNT(*) FROM branches WHERE name = 'renamed'")).rows).toEqual([[3]]);
      expect((await database.query('SELECT branch FROM branches WHERE branch = 99')).rows).toEqual([[99]]);
      expect(auditRows(database)).toBe(accountCount);
      database.verify();
    });

    it('a failed transaction leaves the partition ready for the next one', async () => {
      const database = await openBank(partitions);
      for (let i = 0; i < 3; i++) await expectError(() => database.call('Mutate', 4, 'abort'), ErrorCode.USER_ABORT);
      expect(await database.call('Mutate', 4, 'none')).toBe('committed');
      expect(await database.call('Mutate', 5, 'none')).toBe('committed');
      expect((await database.query('SELECT id FROM accounts WHERE owner = ? ORDER BY id', ['changed'])).rows).toEqual([[4], [5]]);
      database.verify();
    });
  });
}

describe('batch expectations', () => {
  const cases: [string, ErrorCode | undefined][] = [
    ['one-ok', undefined],
    ['one-miss', ErrorCode.EXPECTATION_FAILED],
    ['zero-or-one-ok', undefined],
    ['zero-or-one-miss', ErrorCode.EXPECTATION_FAILED],
    ['empty-miss', ErrorCode.EXPECTATION_FAILED],
    ['non-empty-miss', ErrorCode.EXPECTATION_FAILED],
    ['scalar-ok', undefined],
    ['scalar-miss', ErrorCode.EXPECTATION_FAILED],
    ['query-one-miss', ErrorCode.EXPECTATION_FAILED],
  ];
  for (const [mode, code] of cases) {
    it(`${mode}: ${code ? 'fails and rolls back the batch' : 'passes and commits'}`, async () => {
      const database = await openBank(3);
      const before = await state(database);
      if (code) {
        const error = await expectError(() => database.call('Batch', 2, mode), code);
        expect(error.kind).toBe('abort');
        expect(await state(database)).toEqual(before);
      } else {
        const result = (await database.call('Batch', 2, mode)) as number[];
        expect(result[0]).toBe(1);
        expect((await database.query('SELECT amount FROM entries WHERE id = 2 AND seq = 50')).rows).toEqual([[50]]);
      }
      database.verify();
    });
  }

  it('a scalar expectation compares the first column of the one row', async () => {
    const database = await openBank(1);
    expect(await database.call('Batch', 5, 'scalar-ok')).toEqual([1, 1]);
    // Entry 50 now exists for account 5, so the count is 4 again only for other accounts.
    await expectError(() => database.call('Batch', 5, 'one-ok'), ErrorCode.UNIQUE_VIOLATION);
  });
});
