/**
 * The export pipeline in the server: rows travel from worker-thread partitions to the file target;
 * @Statistics reports per target; a target that goes down fills the buffer and backpressure
 * reaches the procedures ('fail': SERVER_BUSY / EXPORT_BUFFER_FULL, 'wait': calls are held), and
 * when it comes back nothing is lost and nothing duplicated.
 */
import { rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../engine/execution/hash.ts';
import type { Client } from '../../client/index.ts';
import { client as connect, rejection, serve } from '../server-helpers.ts';
import type Emit from '../fixtures/exporters/emit.ts';
import { exportSchema, exportedFiles, jsonlRowsByPartition, temporaryFolder } from './file-helpers.ts';

const day1 = Date.UTC(2026, 10, 22, 10, 0, 0);

type ExportApp = {
  Emit: typeof Emit;
};

const client = (server: { url: string }): Promise<Client<ExportApp>> => connect<ExportApp>(server);

async function seed(db: Client<ExportApp>, meters: number[]): Promise<void> {
  for (const meter of meters) await db.query('INSERT INTO meters VALUES (?, 0)', [meter]);
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 400; attempt++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

function serverExports(root: string, buffer: Record<string, unknown> = {}): unknown {
  return {
    targets: [{ name: 'lake', type: 'file', format: 'jsonl', path: root, lingerMs: 0, batchRowsMax: 50, backoffMsMin: 10, backoffMsMax: 40 }],
    buffer,
  };
}

describe('export from the server', () => {
  it('moves committed rows from the partitions to the target, in order, and reports them', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const server = await serve({ schema: exportSchema, data, exports: serverExports(root) });
    const db = await client(server);
    const meters = Array.from({ length: 20 }, (_, i) => i + 1);
    await seed(db, meters);
    await Promise.all(meters.map((meter) => db.call('Emit', meter, day1, 10, 0)));
    const aborted = await rejection(db.call('Emit', 1, day1, 10, 1));
    expect(aborted.status).toBe('USER_ABORT');
    await waitFor(() => server.exports!.pipeline.statistics()[0].rowsDelivered === 200, '200 rows delivered');
    const byPartition = jsonlRowsByPartition(root);
    expect([...byPartition.values()].flat()).toHaveLength(200);
    for (const [partition, rows] of byPartition) {
      for (const row of rows) expect(partitionOf(row.meter as number, 2)).toBe(partition);
      for (const meter of meters) {
        const kwh = rows.filter((row) => row.meter === meter).map((row) => row.kwh);
        if (kwh.length > 0) expect(kwh).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      }
    }
    const stats = await db.call('@Statistics');
    expect(stats.exports).toEqual([expect.objectContaining({ target: 'lake', type: 'file', streams: ['readings'], rowsPending: 0, rowsDelivered: 200, lastError: null, lagSeconds: 0 })]);
  });

  it("fails calls with EXPORT_BUFFER_FULL while the target is down (onFull 'fail'), then loses nothing", async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const server = await serve({ schema: exportSchema, data, exports: serverExports(root, { bytesMax: 300, onFull: 'fail' }) });
    const db = await client(server);
    await seed(db, [1, 2, 3, 4]);
    // The stream's folder is a file: every delivery fails until it is removed.
    mkdirSync(root, { recursive: true });
    writeFileSync(path.join(root, 'readings'), 'in the way');
    const full = partitionOf(1, 2);
    await db.call('Emit', 1, day1, 20, 0);
    await waitFor(async () => (await db.call('@Statistics')).exports![0].partitionsFull === 1, 'the buffer to be full');
    await waitFor(() => server.exports!.pipeline.statistics()[0].failures > 0, 'a failed delivery');
    const refused = await rejection(db.call('Emit', 1, day1, 5, 0));
    expect(refused.status).toBe('SERVER_BUSY');
    expect(refused.code).toBe('EXPORT_BUFFER_FULL');
    expect(refused.message).toMatch(/export buffer of stream readings partition \d is full .* target lake.*ENOTDIR|export buffer of stream readings partition \d is full/);
    const stats = (await db.call('@Statistics')).exports![0];
    expect(stats.rowsPending).toBe(20);
    expect(stats.failures).toBeGreaterThan(0);
    expect(stats.lastError).toMatch(/readings/);
    // The other partition still takes calls.
    const other = [2, 3, 4].find((meter) => partitionOf(meter, 2) !== full)!;
    expect(await db.call('Emit', other, day1, 1, 0)).toBe(1);

    rmSync(path.join(root, 'readings'));
    await waitFor(async () => (await db.call('@Statistics')).exports![0].rowsPending === 0, 'the buffer to drain');
    expect(await db.call('Emit', 1, day1, 5, 0)).toBe(5);
    await waitFor(() => server.exports!.pipeline.statistics()[0].rowsDelivered === 26, 'all rows delivered');
    const rows = [...jsonlRowsByPartition(root).values()].flat();
    expect(rows.filter((row) => row.meter === 1).map((row) => row.kwh)).toEqual([...Array.from({ length: 20 }, (_, i) => i), 0, 1, 2, 3, 4]);
    expect(rows).toHaveLength(26);
  });

  it("holds calls while the buffer is full (onFull 'wait') and runs them when it drains", async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const server = await serve({ schema: exportSchema, data, exports: serverExports(root, { bytesMax: 300, onFull: 'wait' }) });
    const db = await client(server);
    await seed(db, [1]);
    mkdirSync(root, { recursive: true });
    writeFileSync(path.join(root, 'readings'), 'in the way');
    const partition = partitionOf(1, 2);
    await db.call('Emit', 1, day1, 20, 0);
    await waitFor(async () => (await db.call('@Statistics')).exports![0].partitionsFull === 1, 'the buffer to be full');
    const held = db.call('Emit', 1, day1, 5, 0);
    await waitFor(async () => (await db.call('@Statistics')).partitions[partition].exportHeld === 1, 'the call to be held');
    rmSync(path.join(root, 'readings'));
    expect(await held).toBe(5);
    await waitFor(() => server.exports!.pipeline.statistics()[0].rowsDelivered === 25, 'all rows delivered');
    const files = exportedFiles(root, 'jsonl').sort((a, b) => a.first - b.first);
    expect(files[0].first).toBe(1);
    for (let i = 1; i < files.length; i++) expect(files[i].first).toBe(files[i - 1].last + 1);
    expect([...jsonlRowsByPartition(root).values()].flat()).toHaveLength(25);
  });

  it('answers @ExportRun with a clear error when the server has no export pipeline', async () => {
    const server = await serve({ schema: exportSchema });
    const db = await client(server);
    const error = await rejection(db.call('@ExportRun', 'daily_billing', '2026-11-22'));
    expect(error.code).toBe('UNSUPPORTED');
    expect(error.message).toMatch(/@ExportRun is not available on this server/);
  });
});
