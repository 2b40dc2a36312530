/**
 * The smart-meter workload over the network (../shared/workloads/smart-meter.md): starts
 * `sluice start` with procedures/smart-meter as its own process, loads the generated dimension
 * data (default 100,000 meters), then sends readings interval after interval with the workload's
 * injected faults from this process through the shared load generator, and reconciles at the end:
 * every accepted reading accounted for (kWh in the exported Parquet files = in readings_enriched
 * = meter_state + billed) and alert counts matching the injected faults. The server exports
 * readings_enriched as Parquet and meter_alerts as JSON Lines to a temporary folder (removed at
 * the end), so exporting is part of what is measured; durability defaults to off.
 *
 *   npm run bench:smart-meter [-- --seconds 20 --warmup 3 --meters 100000 --rate N --partitions N
 *                               --window 4000 --connections 2 --durability sync --billing-postgres URL]
 *
 * Ends with one JSON line {"workload":"smart-meter","readings_per_s":…,"p99_ms":…,"check":"ok",…};
 * exits non-zero if the check fails.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { connect, type Client } from '../client/index.ts';
import type { App } from '../procedures/smart-meter/app.ts';
import { fileBillingTarget, postgresBillingTarget, type BillingTarget, type SqlCaller } from '../procedures/smart-meter/billing.ts';
import { defaultTimeZone } from '../procedures/smart-meter/codes.ts';
import { defaultMeterCount, defaultSeed } from '../procedures/smart-meter/dimensions.ts';
import { analyticsFolder, smartMeterExports } from '../procedures/smart-meter/exports.ts';
import { loadDimensions } from '../procedures/smart-meter/load.ts';
import { ReadingSimulator, simulationStart } from '../procedures/smart-meter/readings.ts';
import { reconcile } from '../procedures/smart-meter/reconcile.ts';
import { parquetColumnTotals, waitForExports } from './export-files.ts';
import { machineDescription, runLoad } from './load-generator.ts';
import { startServerProcess, type ServerProcess } from './server-process.ts';
import { SmartMeterWorkload } from './smart-meter-load.ts';

const { values: options } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    rate: { type: 'string' },
    partitions: { type: 'string' },
    window: { type: 'string', default: '4000' },
    connections: { type: 'string', default: '2' },
    meters: { type: 'string', default: String(defaultMeterCount) },
    seed: { type: 'string', default: String(defaultSeed) },
    'time-zone': { type: 'string', default: defaultTimeZone },
    durability: { type: 'string' },
    'billing-postgres': { type: 'string' },
    url: { type: 'string' },
    'report-every': { type: 'string', default: '2' },
  },
});
const windowSize = Number(options.window);
/** Files roll at least this often: about a second of readings per file and partition. */
const exportLingerMs = 1000;
const connections = Number(options.connections);
const meterCount = Number(options.meters);
const seed = Number(options.seed);
for (const [name, value] of [['window', windowSize], ['connections', connections], ['meters', meterCount], ['seed', seed]] as const) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`error: --${name} must be a positive integer, got '${options[name]}'`);
    process.exit(2);
  }
}

const work = await mkdtemp(path.join(os.tmpdir(), 'sluice-smart-meter-'));
let server: ServerProcess | undefined;
const clients: Client<App>[] = [];
let billing: BillingTarget | undefined;
try {
  const exportFolder = path.join(work, 'export');
  const durability = options.durability ?? 'off';
  if (!options.url) {
    // Exports need a data directory; the deployment file gives both.
    const deployment = path.join(work, 'deployment.json');
    await writeFile(deployment, JSON.stringify({ data: path.join(work, 'db'), exports: smartMeterExports(exportFolder, options['time-zone'], exportLingerMs) }, null, 2));
    server = await startServerProcess({ schema: 'procedures/smart-meter/ddl.sql', partitions: options.partitions, durability, deployment });
  }
  const url = options.url ?? server!.url;
  for (let i = 0; i < connections; i++) clients.push(await connect<App>(url, { callsInFlightMax: windowSize, timeoutMs: 120_000 }));
  const control = clients[0];
  console.log(`smart-meter: ${url}, ${control.partitions} partitions; ${machineDescription()}`);
  console.log(`${meterCount.toLocaleString('en-US')} meters, warmup ${options.warmup}s, measure ${options.seconds}s, ${options.rate === undefined ? `window ${windowSize}` : `fixed rate ${options.rate}/s`}, ${connections} connection(s), durability ${options.url ? 'as the server was started' : durability}`);

  const bar = new cliProgress.SingleBar({ format: 'loading meters [{bar}] {value}/{total}', stream: process.stderr, hideCursor: false }, cliProgress.Presets.shades_classic);
  const loadStart = performance.now();
  const dimensions = await loadDimensions(control, {
    meters: meterCount,
    seed,
    timeZone: options['time-zone'],
    folder: path.join(work, 'dimensions'),
    onProgress: (loaded, total) => (loaded === 0 ? bar.start(total, 0) : bar.update(loaded)),
  });
  bar.stop();
  console.log(`loaded ${dimensions.meters.length.toLocaleString('en-US')} meters in ${((performance.now() - loadStart) / 1000).toFixed(1)}s (CSV in ${path.dirname(dimensions.metersFile)})`);

  billing = options['billing-postgres'] ? await postgresBillingTarget(options['billing-postgres']) : fileBillingTarget(path.join(work, 'billing'));
  const simulator = new ReadingSimulator(dimensions.meters, { seed: seed + 1, startTs: simulationStart });
  const workload = new SmartMeterWorkload({ simulator, connections, control, timeZone: dimensions.timeZone, billing, log: (line) => console.log(line) });
  const result = await runLoad(workload, {
    clients,
    window: windowSize,
    warmupSeconds: Number(options.warmup),
    seconds: Number(options.seconds),
    rate: options.rate === undefined ? undefined : Number(options.rate),
    reportEverySeconds: Number(options['report-every']),
    unit: 'readings',
  });
  await workload.billAll();

  const latency = result.latencyMs;
  const expected = simulator.expected;
  console.log('');
  console.log(`${expected.readings.toLocaleString('en-US')} readings over ${workload.intervalsCompleted} intervals: ${Object.entries(workload.codes).map(([code, n]) => `${code} ${n}`).join(', ')}; failed ${result.failed}${result.firstFailure ? ` (first: ${result.firstFailure})` : ''}`);
  console.log(`injected: ${Object.entries(expected.injected).map(([kind, n]) => `${kind} ${n}`).join(', ')}; billed days: ${workload.billedDays.join(', ') || 'none'}`);
  console.log(`throughput ${result.perSecond.toLocaleString('en-US')} readings/s over ${result.elapsedSeconds.toFixed(1)}s`);
  console.log(`latency ms: p50 ${latency.p50}  p95 ${latency.p95}  p99 ${latency.p99}  p99.9 ${latency.p999}  max ${latency.max}`);
  console.log(`load generator's event loop delay ms: p99 ${result.clientLoopDelayMs.p99}  max ${result.clientLoopDelayMs.max}`);
  const checkStart = performance.now();
  // The Parquet side: everything the analytics target acknowledged, read back from the files.
  let exportedFiles: { kwh: number; rows: number } | undefined;
  const exportProblems: string[] = [];
  if (!options.url) {
    try {
      await waitForExports(control);
      const parquet = await parquetColumnTotals(analyticsFolder(exportFolder), 'kwh_delta');
      exportedFiles = { kwh: parquet.sum, rows: parquet.rows };
      console.log(`exported: ${parquet.files} Parquet files, ${parquet.rows.toLocaleString('en-US')} rows, ${parquet.sum.toFixed(3)} kWh (${((performance.now() - checkStart) / 1000).toFixed(1)}s to drain and read)`);
    } catch (error) {
      exportProblems.push((error as Error).message);
    }
  }
  const check = await reconcile(control as unknown as SqlCaller, { expected, codes: workload.codes, billedKwh: await billing.billedKwh(), exportedFiles });
  check.problems.push(...exportProblems);
  if (result.failed > 0) check.problems.push(`${result.failed} calls failed`);
  if (workload.mismatchCount > 0) check.problems.push(`${workload.mismatchCount} readings answered other than predicted (first: ${workload.mismatches[0]})`);
  console.log(`reconciliation: exported ${check.exportedKwh.toFixed(3)} kWh = meter_state ${check.keptKwh.toFixed(3)} + billed ${check.billedKwh.toFixed(3)}; ${check.enrichedRows} enriched rows (${check.estimatedRows} estimated); alerts ${JSON.stringify(check.alerts)}`);
  console.log(`check ${check.problems.length === 0 ? 'ok' : `FAILED:\n  ${check.problems.join('\n  ')}`} (${((performance.now() - checkStart) / 1000).toFixed(1)}s)`);
  const ok = check.problems.length === 0;
  console.log(
    JSON.stringify({
      workload: 'smart-meter',
      readings_per_s: result.perSecond,
      p99_ms: latency.p99,
      check: ok ? 'ok' : 'failed',
      p50_ms: latency.p50,
      p95_ms: latency.p95,
      p999_ms: latency.p999,
      seconds: Number(result.elapsedSeconds.toFixed(1)),
      meters: meterCount,
      durability: options.url ? 'unknown' : durability,
      readings: expected.readings,
      intervals: workload.intervalsCompleted,
      failed: result.failed,
    }),
  );
  process.exitCode = ok ? 0 : 1;
} catch (error) {
  console.error(`error: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  for (const client of clients) await client.close().catch(() => {});
  await billing?.close();
  await server?.stop();
  await rm(work, { recursive: true, force: true });
}
