/**
 * The smart-meter application end to end over the network: a real server (partition worker
 * threads), the dimension loader through the client, the shared load generator sending a few
 * thousand readings with injected faults over two connections, FindSilentMeters on the simulated
 * timer, billing of the closed day, the Parquet export, and the reconciliation.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parquetColumnTotals, waitForExports } from '../bench/export-files.ts';
import { runLoad } from '../bench/load-generator.ts';
import { SmartMeterWorkload } from '../bench/smart-meter-load.ts';
import type { App } from '../procedures/smart-meter/app.ts';
import { fileBillingTarget, type SqlCaller } from '../procedures/smart-meter/billing.ts';
import { analyticsFolder, smartMeterExports } from '../procedures/smart-meter/exports.ts';
import { loadDimensions } from '../procedures/smart-meter/load.ts';
import { ReadingSimulator, simulationStart } from '../procedures/smart-meter/readings.ts';
import { reconcile } from '../procedures/smart-meter/reconcile.ts';
import { client, serve } from './server-helpers.ts';

const folders: string[] = [];
afterEach(async () => {
  while (folders.length > 0) await rm(folders.pop()!, { recursive: true, force: true });
});

describe('smart meter over the network', () => {
  it('ingests a few thousand faulty readings and reconciles', async () => {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-smart-meter-e2e-'));
    folders.push(folder);
    const exportFolder = path.join(folder, 'export');
    const server = await serve({ schema: 'procedures/smart-meter/ddl.sql', data: path.join(folder, 'db'), durability: { mode: 'off' }, exports: smartMeterExports(exportFolder, 'Europe/Amsterdam', 100) });
    const connections = [await client<App>(server), await client<App>(server)];
    const control = connections[0];
    const { meters, timeZone } = await loadDimensions(control, { meters: 600, seed: 21, folder });
    const simulator = new ReadingSimulator(meters, { seed: 22, startTs: simulationStart, faults: { missing: 0.02, duplicate: 0.01, rollback: 0.004, spike: 0.004 } });
    const billing = fileBillingTarget(path.join(folder, 'billing'));
    const log: string[] = [];
    const workload = new SmartMeterWorkload({ simulator, connections: 2, control, timeZone, billing, intervalsMax: 12, log: (line) => log.push(line) });
    const result = await runLoad(workload, { clients: connections, window: 500, warmupSeconds: 0, seconds: 600, reportEverySeconds: 600, unit: 'readings', log: (line) => log.push(line) });
    await workload.billAll();

    expect(result.failed, result.firstFailure).toBe(0);
    expect(workload.mismatches).toEqual([]);
    expect(workload.intervalsCompleted).toBe(12);
    expect(simulator.expected.readings).toBeGreaterThan(6000);
    expect(result.answered).toBe(simulator.expected.readings);
    expect(simulator.expected.injected.rollbacks).toBeGreaterThan(0);
    expect(simulator.expected.injected.spikes).toBeGreaterThan(0);
    expect(workload.silence.concentratorOutages).toBe(1);
    // 23:00 local start: midnight after 4 intervals, billed once the clock is 30 minutes past.
    expect(workload.billedDays).toEqual(['2026-03-28']);
    expect(log.some((line) => line.startsWith('billed 2026-03-28'))).toBe(true);

    await waitForExports(control);
    const parquet = await parquetColumnTotals(analyticsFolder(exportFolder), 'kwh_delta');
    expect(parquet.files).toBeGreaterThan(0);
    const check = await reconcile(control as unknown as SqlCaller, { expected: simulator.expected, codes: workload.codes, billedKwh: await billing.billedKwh(), exportedFiles: { kwh: parquet.sum, rows: parquet.rows } });
    expect(check.problems).toEqual([]);
    expect(parquet.rows).toBe(simulator.expected.enrichedRows);
    // One folder per local day of the intervals: the run crosses midnight in Amsterdam.
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(analyticsFolder(exportFolder))).filter((name) => name.startsWith('dt=')).sort()).toEqual(['dt=2026-03-28', 'dt=2026-03-29']);
    // A reconciliation against files that miss a row says so.
    const short = await reconcile(control as unknown as SqlCaller, { expected: simulator.expected, codes: workload.codes, billedKwh: await billing.billedKwh(), exportedFiles: { kwh: parquet.sum - 0.5, rows: parquet.rows - 1 } });
    expect(short.problems.join('\n')).toMatch(/exported files hold .* rows, readings_enriched/);
    expect(check.billedKwh).toBeGreaterThan(0);
    expect(check.keptKwh).toBeGreaterThan(0);
    expect(check.alerts).toMatchObject({ concentrator_outage: 1, spike: simulator.expected.injected.spikes, tamper_or_rollover: simulator.expected.injected.rollbacks });
  });
});
