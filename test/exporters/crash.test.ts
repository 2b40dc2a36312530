/**
 * kill -9 of a server process in the middle of exporting to PostgreSQL, then a restart on the same
 * data directory: every acknowledged call's rows reach PostgreSQL exactly once (the command log
 * replays what the export buffer had not stored; the buffer and PostgreSQL's positions drop what
 * they already have), and no call's rows are there in part.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../../bench/server-process.ts';
import { connect, type Client } from '../../client/index.ts';
import type Emit from '../fixtures/exporters/emit.ts';
import { serviceAddress } from '../services/env.ts';
import { exportSchema, temporaryFolder } from './file-helpers.ts';

const url = serviceAddress('SLUICE_TEST_POSTGRES_URL', 'pg_ctlcluster 15 main start; export SLUICE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres');
const schema = `sluice_crash_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
const callsTotal = 400;
const rowsPerCall = 5;
/** The first half is acknowledged before the kill. */
const killAfterAcknowledged = callsTotal / 2;
const base = Date.UTC(2026, 10, 22, 0, 0, 0);

type ExportApp = { Emit: typeof Emit };

describe.skipIf(url === undefined)('kill -9 during export', () => {
  let admin: pg.Client;
  const processes: ServerProcess[] = [];

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  });

  afterAll(async () => {
    for (const server of processes) await server.stop();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  it('loses no acknowledged row and duplicates none after a restart', async () => {
    const data = temporaryFolder();
    const deployment = path.join(data, 'sluice.json');
    writeFileSync(deployment, JSON.stringify({ exports: { targets: [{ name: 'lake', type: 'postgresql', url, schema, table: 'readings_crash', lingerMs: 0, batchRowsMax: 100 }] } }));
    const start = async (): Promise<ServerProcess> => {
      const server = await startServerProcess({ schema: path.resolve(exportSchema), partitions: 2, durability: 'sync', data: path.join(data, 'db'), args: ['--deployment', deployment], onOutput: () => {} });
      processes.push(server);
      return server;
    };
    const first = await start();
    const db: Client<ExportApp> = await connect<ExportApp>(first.url);
    for (let meter = 1; meter <= 20; meter++) await db.query('INSERT INTO meters VALUES (?, 0)', [meter]);
    const acknowledged: number[] = [];
    const fire = (from: number, to: number): Promise<void>[] => {
      const calls: Promise<void>[] = [];
      for (let call = from; call < to; call++) {
        const ts = base + call * 3_600_000;
        calls.push(db.call('Emit', (call % 20) + 1, ts, rowsPerCall, 0).then(() => void acknowledged.push(ts), () => {}));
      }
      return calls;
    };
    await Promise.all(fire(0, callsTotal / 2));
    // The second half goes out while the first is being exported: kill once PostgreSQL has rows.
    const inFlight = fire(callsTotal / 2, callsTotal);
    let exportedAtKill = 0;
    for (let attempt = 0; attempt < 2000 && exportedAtKill === 0; attempt++) {
      exportedAtKill = await admin.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${schema}.readings_crash`).then((result) => Number(result.rows[0].n), () => 0);
      if (exportedAtKill === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    first.child.kill('SIGKILL');
    await Promise.all(inFlight);
    await db.close().catch(() => {});
    expect(acknowledged.length).toBeGreaterThanOrEqual(killAfterAcknowledged);

    console.log(`kill -9 after ${acknowledged.length} acknowledged calls (${acknowledged.length * rowsPerCall} rows); PostgreSQL had ${exportedAtKill} rows when it was killed`);
    const second = await start();
    const after = await connect<ExportApp>(second.url);
    try {
      for (let attempt = 0; attempt < 1200; attempt++) {
        const exports = (await after.call('@Statistics')).exports!;
        if (exports[0].rowsPending === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const stats = (await after.call('@Statistics')).exports![0];
      expect(stats.rowsPending).toBe(0);
    } finally {
      await after.close();
    }
    const perCall = await admin.query<{ ts: string; n: string; distinct_kwh: string }>(`SELECT (extract(epoch FROM ts) * 1000)::bigint - (kwh * 60000)::bigint AS ts, COUNT(*) AS n, COUNT(DISTINCT kwh) AS distinct_kwh FROM ${schema}.readings_crash GROUP BY 1`);
    const stored = new Map(perCall.rows.map((row) => [Number(row.ts), Number(row.n)]));
    for (const ts of acknowledged) expect(stored.get(ts), `rows of the call at ${new Date(ts).toISOString()}`).toBe(rowsPerCall);
    // Whole calls only, each once: every call present has exactly its rows.
    for (const row of perCall.rows) {
      expect(Number(row.n)).toBe(rowsPerCall);
      expect(Number(row.distinct_kwh)).toBe(rowsPerCall);
    }
    const total = await admin.query<{ n: string; keys: string }>(`SELECT COUNT(*) AS n, COUNT(DISTINCT (_partition, _sequence)) AS keys FROM ${schema}.readings_crash`);
    expect(Number(total.rows[0].n)).toBe(Number(total.rows[0].keys));
  });
});
