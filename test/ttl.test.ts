/**
 * USING TTL: db.expireTtl(now) deletes rows whose TTL column is older than now minus the TTL, at
 * most the batch size per partition per call, maintaining views; with an ordered index on the
 * TTL column the oldest rows go first. The background sweeper runs the same batches on a timer.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Database } from '../engine/database.ts';
import { expectRows, openDatabase } from './helpers.ts';

let db: Database | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await db?.close();
  db = undefined;
});

const minute = 60_000;
const start = Date.UTC(2024, 0, 1);

function schema(indexed: boolean): string {
  return `
    CREATE TABLE sessions (id BIGINT NOT NULL, kind INTEGER NOT NULL, seen TIMESTAMP, PRIMARY KEY (id))
      USING TTL 10 MINUTES ON COLUMN seen;
    PARTITION TABLE sessions ON COLUMN id;
    ${indexed ? 'CREATE INDEX sessions_seen ON sessions (seen);' : ''}
    CREATE VIEW by_kind AS SELECT kind, COUNT(*) AS n, MIN(seen) AS oldest FROM sessions GROUP BY kind;`;
}

/** Rows 0..count-1, seen at start + (i * 7 mod count) minutes: not in time order. */
async function load(database: Database, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await database.query('INSERT INTO sessions VALUES (?, ?, ?)', [i, i % 3, start + ((i * 7) % count) * minute]);
  await database.query('INSERT INTO sessions VALUES (?, ?, NULL)', [count, 0]);
}

for (const indexed of [false, true]) {
  for (const partitions of [1, 3]) {
    describe(`${indexed ? 'with' : 'without'} an index on the TTL column, ${partitions} partition(s)`, () => {
      it('deletes exactly the expired rows, in batches of at most the batch size, keeping views current', async () => {
        const database = await openDatabase(schema(indexed), { partitions });
        db = database;
        await load(database, 40);
        // At start + 30 minutes, rows seen before start + 20 minutes have expired: 20 of them.
        const now = start + 30 * minute;
        const batches: number[] = [];
        for (;;) {
          const deleted = database.expireTtl(now, 3);
          expect(deleted).toBeLessThanOrEqual(3 * partitions);
          if (deleted === 0) break;
          batches.push(deleted);
          database.verify();
        }
        expect(batches.reduce((a, b) => a + b, 0)).toBe(20);
        expect(batches.length).toBeGreaterThanOrEqual(Math.ceil(20 / (3 * partitions)));
        await expectRows(database, 'SELECT COUNT(*), MIN(seen) FROM sessions', [], [[21, start + 20 * minute]]);
        // The row with no timestamp never expires.
        await expectRows(database, 'SELECT id FROM sessions WHERE seen IS NULL', [], [[40]]);
        await expectRows(database, 'SELECT SUM(n), MIN(oldest) FROM by_kind', [], [[21, start + 20 * minute]]);
        // A row exactly at the cutoff is not yet expired.
        expect(database.expireTtl(start + 30 * minute)).toBe(0);
        expect(database.expireTtl(start + 30 * minute + 1)).toBe(1);
        database.verify();
      });
    });
  }
}

describe('TTL order and background sweeping', () => {
  it('with an ordered index on the TTL column, the oldest expired rows go first', async () => {
    const database = await openDatabase(schema(true));
    db = database;
    await load(database, 40);
    expect(database.expireTtl(start + 30 * minute, 5)).toBe(5);
    await expectRows(database, 'SELECT MIN(seen) FROM sessions', [], [[start + 5 * minute]]);
  });

  it('the sweeper deletes expired rows one batch per partition per tick', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    let now = start;
    const database = await openDatabase(schema(true), { partitions: 2, ttlIntervalMs: 1000, clock: () => now });
    db = database;
    await load(database, 40);
    now = start + 30 * minute;
    await expectRows(database, 'SELECT COUNT(*) FROM sessions', [], [[41]]);
    vi.advanceTimersByTime(1000);
    const afterOneTick = (await database.query('SELECT COUNT(*) FROM sessions')).rows[0][0] as number;
    expect(afterOneTick).toBe(21);
    vi.advanceTimersByTime(1000);
    await expectRows(database, 'SELECT COUNT(*) FROM sessions', [], [[21]]);
    database.verify();
  });
});
