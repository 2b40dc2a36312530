/**
 * The postgresql export target against the machine's PostgreSQL (SLUICE_TEST_POSTGRES_URL):
 * every committed row arrives once, in sequence order per partition; the target going away for a
 * while loses and duplicates nothing; a repeated batch inserts nothing; end-of-day jobs write a
 * day once. Each run works in its own schema, dropped at the end.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../engine/database.ts';
import { ErrorCode } from '../../engine/errors.ts';
import { applyDdl } from '../../engine/catalog/ddl.ts';
import { partitionOf } from '../../engine/execution/hash.ts';
import { PostgresTarget } from '../../exporters/postgres-target.ts';
import type { Client } from '../../client/index.ts';
import type Emit from '../fixtures/exporters/emit.ts';
import { expectError } from '../helpers.ts';
import { serviceAddress } from '../services/env.ts';
import { client as connect, serve } from '../server-helpers.ts';
import { exportSchema, temporaryFolder } from './file-helpers.ts';
import { readFileSync } from 'node:fs';

const url = serviceAddress('SLUICE_TEST_POSTGRES_URL', 'pg_ctlcluster 15 main start; export SLUICE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres');
const schema = `sluice_export_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
const day1 = Date.UTC(2026, 10, 22, 10, 0, 0);

type ExportApp = { Emit: typeof Emit };
const client = (server: { url: string }): Promise<Client<ExportApp>> => connect<ExportApp>(server);

async function waitFor(condition: () => boolean | Promise<boolean>, what: string | (() => string)): Promise<void> {
  for (let attempt = 0; attempt < 600; attempt++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`gave up waiting for ${typeof what === 'string' ? what : what()}`);
}

/** One postgresql target writing stream s to table `s_<suffix>` of this run's schema. */
function pgExports(suffix: string): Record<string, unknown> {
  return { targets: [{ name: 'lake', type: 'postgresql', url, schema, table: `{stream}_${suffix}`, lingerMs: 0, batchRowsMax: 25, backoffMsMin: 10, backoffMsMax: 50 }] };
}

describe.skipIf(url === undefined)('postgresql export', () => {
  let admin: pg.Client;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
  });

  afterAll(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  async function rows(table: string): Promise<{ meter: number; kwh: number; partition: number; sequence: number; ts: Date; price: string | null }[]> {
    const result = await admin.query(`SELECT meter::float8 AS meter, kwh, _partition AS partition, _sequence::float8 AS sequence, ts, price FROM ${schema}.${table} ORDER BY _partition, _sequence`);
    return result.rows;
  }

  it('inserts every committed row once, in sequence order per partition, with the stream types', async () => {
    const data = temporaryFolder();
    const server = await serve({ schema: exportSchema, data, exports: pgExports('order') });
    const db = await client(server);
    const meters = Array.from({ length: 20 }, (_, i) => i + 1);
    for (const meter of meters) await db.query('INSERT INTO meters VALUES (?, 0)', [meter]);
    await Promise.all(meters.map((meter) => db.call('Emit', meter, day1, 10, 0)));
    await expect(db.call('Emit', 1, day1, 10, 1)).rejects.toThrow(/aborted on purpose/);
    await waitFor(() => server.exports!.pipeline.statistics()[0].rowsDelivered === 200, '200 rows in PostgreSQL');
    const stored = await rows('readings_order');
    expect(stored).toHaveLength(200);
    for (const partition of [0, 1]) {
      const own = stored.filter((row) => row.partition === partition);
      expect(own.map((row) => row.sequence)).toEqual(own.map((_, i) => i + 1));
      for (const row of own) expect(partitionOf(row.meter, 2)).toBe(partition);
      for (const meter of meters) {
        const kwh = own.filter((row) => row.meter === meter).map((row) => row.kwh);
        if (kwh.length > 0) expect(kwh).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      }
    }
    const sample = stored.find((row) => row.meter === 3 && row.kwh === 4)!;
    expect(sample.ts.getTime()).toBe(day1 + 4 * 60_000);
    expect(sample.price).toBe('0.5000');
    const columns = await admin.query(`SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'readings_order' ORDER BY ordinal_position`, [schema]);
    expect(columns.rows.map((row) => `${row.column_name}:${row.data_type}`)).toEqual([
      'meter:bigint', 'ts:timestamp with time zone', 'kwh:double precision', 'note:character varying', 'ok:boolean', 'level:integer', 'price:numeric', '_partition:integer', '_sequence:bigint',
    ]);
  });

  it('loses and duplicates nothing while the table is away for a while', async () => {
    const data = temporaryFolder();
    const server = await serve({ schema: exportSchema, data, exports: pgExports('away') });
    const db = await client(server);
    for (const meter of [1, 2, 3, 4]) await db.query('INSERT INTO meters VALUES (?, 0)', [meter]);
    for (const meter of [1, 2, 3, 4]) await db.call('Emit', meter, day1, 10, 0);
    await waitFor(() => server.exports!.pipeline.statistics()[0].rowsDelivered === 40, 'the first 40 rows');
    await admin.query(`ALTER TABLE ${schema}.readings_away RENAME TO readings_gone`);
    for (const meter of [1, 2, 3, 4]) await db.call('Emit', meter, day1, 15, 0);
    await waitFor(() => server.exports!.pipeline.statistics()[0].failures >= 3, () => `failed deliveries: ${JSON.stringify(server.exports!.pipeline.statistics())}`);
    const down = (await db.call('@Statistics')).exports![0];
    expect(down.rowsPending).toBe(60);
    expect(down.lastError).toMatch(/readings_away/);
    await admin.query(`ALTER TABLE ${schema}.readings_gone RENAME TO readings_away`);
    await waitFor(() => server.exports!.pipeline.statistics()[0].rowsPending === 0, 'the backlog to drain');
    const stored = await rows('readings_away');
    expect(stored).toHaveLength(100);
    for (const meter of [1, 2, 3, 4]) expect(stored.filter((row) => row.meter === meter).map((row) => row.kwh)).toEqual([...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 15 }, (_, i) => i)]);
  });

  it('inserts nothing twice when a batch is delivered again, whole or overlapping', async () => {
    const def = applyDdl(readFileSync(exportSchema, 'utf8')).tables.get('readings')!;
    const target = new PostgresTarget({ name: 'again', type: 'postgresql', url, schema, table: 'readings_again' }, { exportDir: temporaryFolder(), catalog: applyDdl(''), logger: undefined });
    const row = (i: number) => [7, day1 + i, i, null, true, i, 1.5];
    const batch = (first: number, count: number) => ({ stream: 'readings', partition: 1, columns: def.columns, firstSequence: first, rows: Array.from({ length: count }, (_, i) => row(first + i)), commitTimestamps: Array.from({ length: count }, () => day1) });
    await target.deliver(batch(1, 10));
    await target.deliver(batch(1, 10));
    await target.deliver(batch(6, 10));
    await target.close();
    const stored = await rows('readings_again');
    expect(stored.map((entry) => entry.sequence)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(stored.map((entry) => entry.kwh)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
  });

  it('writes an end-of-day batch in one transaction, once per day', async () => {
    const data = temporaryFolder();
    const exports = {
      targets: [{ name: 'billing', type: 'postgresql', url, schema }],
      daily: [{ name: 'daily_usage', timeZone: 'Europe/Copenhagen', target: 'billing', table: 'usage_daily', query: 'SELECT meter, COUNT(*) AS intervals, SUM(kwh) AS kwh FROM meter_usage WHERE ts >= ? AND ts < ? GROUP BY meter ORDER BY meter' }],
    };
    const now = Date.UTC(2026, 10, 23, 12, 0, 0);
    const open = () => Database.open({ schema: exportSchema, partitions: 2, ttlIntervalMs: 0, data, exports, clock: () => now });
    let db = await open();
    // 22 November in Copenhagen is 21 Nov 23:00 UTC … 22 Nov 23:00 UTC.
    const readings = [[1, Date.UTC(2026, 10, 21, 23, 30), 1.5], [1, Date.UTC(2026, 10, 22, 12, 0), 2], [2, Date.UTC(2026, 10, 22, 22, 59), 4], [2, Date.UTC(2026, 10, 22, 23, 30), 100], [3, Date.UTC(2026, 10, 21, 22, 0), 100]];
    for (const [meter, ts, kwh] of readings) await db.query('INSERT INTO meter_usage VALUES (?, ?, ?)', [meter, ts, kwh]);
    expect(await db.exportRun('daily_usage', '2026-11-22')).toEqual({ job: 'daily_usage', day: '2026-11-22', status: 'written', rows: 2 });
    expect(await db.exportRun('daily_usage', '2026-11-22')).toEqual({ job: 'daily_usage', day: '2026-11-22', status: 'already', rows: 2 });
    await expectError(() => db.exportRun('daily_usage', '2026-11-23'), ErrorCode.EXPORT_FAILED, /day 2026-11-23 is not over yet in Europe\/Copenhagen/);
    await expectError(() => db.exportRun('daily_usag', '2026-11-22'), ErrorCode.EXPORT_CONFIG, /no daily export job daily_usag.*did you mean 'daily_usage'/);
    await expectError(() => db.exportRun('daily_usage', '22.11.2026'), ErrorCode.PARAM_TYPE, /YYYY-MM-DD/);
    await db.close();
    // A new data directory forgets the LMDB record; PostgreSQL's own record still stops a second write.
    const fresh = temporaryFolder();
    db = await Database.open({ schema: exportSchema, partitions: 2, ttlIntervalMs: 0, data: fresh, exports, clock: () => now });
    for (const [meter, ts, kwh] of readings) await db.query('INSERT INTO meter_usage VALUES (?, ?, ?)', [meter, ts, kwh]);
    expect((await db.exportRun('daily_usage', '2026-11-22')).status).toBe('already');
    await db.close();
    const stored = await admin.query(`SELECT meter::float8 AS meter, intervals::float8 AS intervals, kwh FROM ${schema}.usage_daily ORDER BY meter`);
    expect(stored.rows).toEqual([{ meter: 1, intervals: 2, kwh: 3.5 }, { meter: 2, intervals: 1, kwh: 4 }]);
    const days = await admin.query(`SELECT job, to_char(day, 'YYYY-MM-DD') AS day, rows::float8 AS rows FROM ${schema}.sluice_export_days`);
    expect(days.rows).toEqual([{ job: 'daily_usage', day: '2026-11-22', rows: 2 }]);
  });
});
