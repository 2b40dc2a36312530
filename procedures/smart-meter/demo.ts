/**
 * The one-command demo (`npm start`): a Sluice server with the smart-meter application on
 * embedded defaults, its dimension data generated and loaded, and the built-in reading generator
 * (with the workload's faults) driving it in this process — then a status line every few seconds:
 * readings/s, answers, alerts, billed days, and where to look. Ctrl-C finishes the simulated
 * interval, reconciles, and stops cleanly.
 *
 *   npm start [-- --meters 100000 --rate 20000 --partitions 2 --port 21212 --data ./data]
 *
 * Data goes under ./data: the database's command log and snapshots (db/, durability sync by
 * default), the exports — enriched readings as Parquet (export/analytics/), alerts as JSON Lines
 * (export/alerts/), bills as CSV (export/billing/), all in dt=YYYY-MM-DD day folders — the
 * dimension CSV files and the server's JSON log. The demo's simulated clock starts over at every
 * start, so db/ and export/ start empty too.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { parquetColumnTotals, waitForExports } from '../../bench/export-files.ts';
import { runLoad } from '../../bench/load-generator.ts';
import { SmartMeterWorkload } from '../../bench/smart-meter-load.ts';
import { connect, type Client } from '../../client/index.ts';
import type { AlertRow } from '../../engine/console/alerts.ts';
import { startConsole, type SluiceConsole } from '../../engine/console/console.ts';
import { startServer, type SluiceServer } from '../../engine/server/server.ts';
import type { App } from './app.ts';
import { fileBillingTarget, postgresBillingTarget, type BillingTarget, type SqlCaller } from './billing.ts';
import { defaultTimeZone, ingestAccepted, ingestAcceptedWithAlert } from './codes.ts';
import { defaultSeed } from './dimensions.ts';
import { alertTopicDefault, analyticsFolder, smartMeterExports } from './exports.ts';
import { loadDimensions } from './load.ts';
import { ReadingSimulator, simulationStart } from './readings.ts';
import { reconcile } from './reconcile.ts';

const demoDefaults = { meters: 100_000, rate: 20_000, port: 21212, consolePort: 8080, reportEverySeconds: 2, window: 2000, connections: 2 };

function fail(message: string): never {
  console.error(`error: ${message}`);
  process.exit(2);
}

function positive(name: string, text: string | undefined, fallback: number, integer = true): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) fail(`--${name} must be a ${integer ? 'whole ' : ''}number ≥ 0, got '${text}'`);
  return value;
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      meters: { type: 'string' },
      rate: { type: 'string' },
      partitions: { type: 'string' },
      port: { type: 'string' },
      data: { type: 'string', default: 'data' },
      seconds: { type: 'string' },
      'report-every': { type: 'string' },
      'time-zone': { type: 'string', default: defaultTimeZone },
      'billing-postgres': { type: 'string' },
      durability: { type: 'string', default: 'sync' },
      'alerts-mqtt': { type: 'string' },
      'console-port': { type: 'string' },
      'no-console': { type: 'boolean', default: false },
      'alerts-topic': { type: 'string', default: alertTopicDefault },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (error) {
  fail(`${(error as Error).message} (npm start -- --help lists the options)`);
}
const options = parsed.values;
if (options.help) {
  console.log(`npm start [-- options]
  --meters N           simulated meters (default ${demoDefaults.meters.toLocaleString('en-US')})
  --rate N             readings per second offered; 0 = as fast as the server accepts (default ${demoDefaults.rate.toLocaleString('en-US')})
  --partitions N       partition worker threads (default: one per core)
  --port N             client port (default ${demoDefaults.port}; 0 picks a free one)
  --console-port N     web console port (default ${demoDefaults.consolePort}, or a free one if taken; 0 picks a free one)
  --no-console         no web console
  --data DIR           where data, exports and the log go (default ./data)
  --seconds N          stop by itself after N seconds (default: run until Ctrl-C)
  --report-every S     seconds between status lines (default ${demoDefaults.reportEverySeconds})
  --time-zone ZONE     days and peak hours are counted in this zone (default ${defaultTimeZone})
  --durability MODE    sync, async or off (default sync): the command log and snapshots in DATA/db
  --billing-postgres URL  bill closed days into PostgreSQL table billing_daily instead of files
  --alerts-mqtt URL    publish alerts to this MQTT broker (QoS 1) instead of JSON Lines files
  --alerts-topic T     their topic template (default ${alertTopicDefault})`);
  process.exit(0);
}
const meterCount = positive('meters', options.meters, demoDefaults.meters);
if (meterCount < 1) fail('--meters must be at least 1');
const rate = positive('rate', options.rate, demoDefaults.rate);
const port = positive('port', options.port, demoDefaults.port);
const consolePort = positive('console-port', options['console-port'], demoDefaults.consolePort);
const partitions = options.partitions === undefined ? undefined : positive('partitions', options.partitions, 0);
const seconds = options.seconds === undefined ? Number.POSITIVE_INFINITY : positive('seconds', options.seconds, 0, false);
const reportEverySeconds = positive('report-every', options['report-every'], demoDefaults.reportEverySeconds, false) || demoDefaults.reportEverySeconds;
const durabilityMode = options.durability;
if (durabilityMode !== 'sync' && durabilityMode !== 'async' && durabilityMode !== 'off') fail(`--durability must be sync, async or off, got '${durabilityMode}'`);
const dataFolder = path.resolve(options.data);
const databaseFolder = path.join(dataFolder, 'db');
const exportFolder = path.join(dataFolder, 'export');
const logFile = path.join(dataFolder, 'sluice.log');
/** Paths under the working folder as the user typed them; others in full. */
const relative = (file: string) => {
  const shown = path.relative(process.cwd(), file);
  return shown === '' ? '.' : shown.startsWith('..') ? file : shown;
};

// The simulated clock starts over every run: yesterday's meter states would answer DUPLICATE, and
// yesterday's files would spoil the reconciliation.
await rm(databaseFolder, { recursive: true, force: true });
await rm(exportFolder, { recursive: true, force: true });
await mkdir(exportFolder, { recursive: true });
const logger = pino({ level: 'info', base: { service: 'sluice' } }, pino.destination({ dest: logFile, sync: false, mkdir: true }));
const stop = new AbortController();
let interrupted = false;
const onSignal = (signal: string) => {
  if (interrupted) {
    console.log(`\n${signal} again: stopping at once`);
    process.exit(130);
  }
  interrupted = true;
  console.log(`\n${signal}: finishing the simulated interval, then stopping (again to stop at once)`);
  stop.abort();
};
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));

let server: SluiceServer | undefined;
let webConsole: SluiceConsole | undefined;
const clients: Client<App>[] = [];
let billing: BillingTarget | undefined;
let exitCode = 0;
try {
  try {
    server = await startServer({
      schema: path.join(import.meta.dirname, 'ddl.sql'),
      partitions,
      port,
      host: '127.0.0.1',
      logger,
      data: databaseFolder,
      durability: { mode: durabilityMode },
      exports: smartMeterExports(exportFolder, options['time-zone'], undefined, options['alerts-mqtt'] ? { url: options['alerts-mqtt'], topic: options['alerts-topic'] } : undefined),
    });
  } catch (error) {
    const message = (error as Error).message;
    fail(/EADDRINUSE/.test(message) ? `port ${port} is in use (another Sluice?); pick another with --port N, or --port 0 for any free one` : message);
  }
  for (let i = 0; i < demoDefaults.connections; i++) clients.push(await connect<App>(server.url, { callsInFlightMax: demoDefaults.window, timeoutMs: 120_000 }));
  const control = clients[0];
  console.log('Sluice smart-meter demo');
  console.log(`  server     ${server.url} (${control.partitions} partitions), log ${relative(logFile)}`);
  console.log(`  database   ${relative(databaseFolder)} (durability ${durabilityMode}: command log and snapshots; fresh at every demo start)`);

  const loadStart = performance.now();
  const dimensions = await loadDimensions(control, { meters: meterCount, seed: defaultSeed, timeZone: options['time-zone'], folder: path.join(dataFolder, 'dimensions') });
  console.log(`  meters     ${meterCount.toLocaleString('en-US')} from ${relative(dimensions.metersFile)}, tariffs from ${relative(dimensions.tariffsFile)} (${((performance.now() - loadStart) / 1000).toFixed(1)} s), days in ${dimensions.timeZone}`);
  billing = options['billing-postgres'] ? await postgresBillingTarget(options['billing-postgres']) : fileBillingTarget(path.join(exportFolder, 'billing'));
  const alertsGo = options['alerts-mqtt'] ? `MQTT ${options['alerts-mqtt']} topics ${options['alerts-topic']}` : `${relative(path.join(exportFolder, 'alerts'))} (JSON Lines)`;
  console.log(`  exports    ${relative(path.join(exportFolder, 'analytics'))} (enriched readings, Parquet, by day); alerts → ${alertsGo}`);
  console.log(`  billing    ${relative(billing.description)}${options['billing-postgres'] ? '' : '/dt=YYYY-MM-DD/billing.csv'} (closed days, billed 30 simulated minutes after midnight)`);
  console.log(`  readings   ${rate > 0 ? `${rate.toLocaleString('en-US')}/s` : 'as fast as the server accepts'}, 15-minute intervals from ${new Date(simulationStart).toISOString()}, with missing, duplicate, rolled-back and spiking readings and one concentrator going dark`);
  console.log(`  look       npm run sluice -- sql --url ${server.url} -c "SELECT region, SUM(kwh) AS kwh FROM region_load GROUP BY region ORDER BY region"`);

  // Alerts reach subscribers as their transactions commit: show the rare ones as they happen,
  // and feed the web console's alerts panel.
  let lastAlert = '';
  let shownAlert = '';
  const alertListeners = new Set<(rows: readonly AlertRow[]) => void>();
  await control.subscribe('meter_alerts', (row) => {
    lastAlert = `${row.kind} meter ${row.meter_id}: ${row.detail}`;
    if (row.kind === 'concentrator_outage' || row.kind === 'meter_silent') console.log(`  alert → ${lastAlert}`);
    for (const listener of alertListeners) listener([row]);
  });
  if (!options['no-console']) {
    const alerts = {
      stream: 'meter_alerts',
      subscribe: (onRows: (rows: readonly AlertRow[]) => void) => {
        alertListeners.add(onRows);
        return () => alertListeners.delete(onRows);
      },
    };
    try {
      webConsole = await startConsole({ server, port: consolePort, host: '127.0.0.1', logger, alerts });
    } catch (error) {
      if (!/EADDRINUSE/.test((error as Error).message) || consolePort === 0) throw error;
      // The usual port is taken (another demo, another tool): any free one will do.
      webConsole = await startConsole({ server, port: 0, host: '127.0.0.1', logger, alerts });
    }
    console.log(`  console    ${webConsole.url}  (live throughput, latency, partitions, exports, alerts, SQL)`);
  }
  console.log('  Ctrl-C stops.');
  const filesWritten = async () => {
    const names = await readdir(exportFolder, { recursive: true }).catch(() => []);
    return names.filter((name) => /\.(parquet|csv|jsonl)$/.test(name)).length;
  };

  const simulator = new ReadingSimulator(dimensions.meters, { seed: defaultSeed + 1, startTs: simulationStart });
  const workload = new SmartMeterWorkload({ simulator, connections: clients.length, control, timeZone: dimensions.timeZone, billing, log: (line) => console.log(`  ${line}`) });
  const started = performance.now();
  let lastAnswered = 0;
  let lastTime = started;
  const answeredSoFar = () => Object.values(workload.codes).reduce((sum, n) => sum + n, 0) + workload.failed;
  const status = async () => {
    const alerts = await control.queryRows('SELECT kind, SUM(alerts) AS n FROM alert_counts GROUP BY kind ORDER BY kind').catch(() => []);
    const files = await filesWritten();
    const now = performance.now();
    const answered = answeredSoFar();
    const perSecond = (answered - lastAnswered) / ((now - lastTime) / 1000);
    lastAnswered = answered;
    lastTime = now;
    const alertText = alerts.length === 0 ? 'none' : alerts.map((row) => `${row.kind} ${row.n}`).join(', ');
    const accepted = workload.codes[ingestAccepted] + workload.codes[ingestAcceptedWithAlert];
    console.log(`[${((now - started) / 1000).toFixed(0).padStart(4)}s] ${Math.round(perSecond).toLocaleString('en-US').padStart(8)} readings/s | ${workload.progress()} | accepted ${accepted.toLocaleString('en-US')} of ${answered.toLocaleString('en-US')} | alerts: ${alertText} | billed days ${workload.billedDays.length} | files in ${relative(exportFolder)}: ${files}`);
    if (lastAlert !== shownAlert) console.log(`         latest alert: ${lastAlert}`);
    shownAlert = lastAlert;
  };
  const reporter = setInterval(() => void status(), reportEverySeconds * 1000);
  const result = await runLoad(workload, {
    clients,
    window: demoDefaults.window,
    warmupSeconds: 0,
    seconds,
    rate: rate > 0 ? rate : undefined,
    reportEverySeconds: Number.POSITIVE_INFINITY,
    unit: 'readings',
    signal: stop.signal,
  });
  clearInterval(reporter);
  await workload.billAll();
  await waitForExports(control);
  const parquet = await parquetColumnTotals(analyticsFolder(exportFolder), 'kwh_delta');
  const check = await reconcile(control as unknown as SqlCaller, { expected: simulator.expected, codes: workload.codes, billedKwh: await billing.billedKwh(), exportedFiles: { kwh: parquet.sum, rows: parquet.rows } });
  if (workload.mismatchCount > 0) check.problems.push(`${workload.mismatchCount} readings answered other than predicted (first: ${workload.mismatches[0]})`);
  if (result.failed > 0) check.problems.push(`${result.failed} calls failed (first: ${result.firstFailure})`);
  console.log(`stopped after ${result.answered.toLocaleString('en-US')} readings (${workload.intervalsCompleted} simulated intervals, ${result.perSecond.toLocaleString('en-US')} readings/s, p99 ${result.latencyMs.p99} ms)`);
  console.log(`exported ${parquet.rows.toLocaleString('en-US')} enriched readings in ${parquet.files} Parquet files under ${relative(path.join(exportFolder, 'analytics'))}`);
  console.log(`reconciliation: Parquet ${parquet.sum.toFixed(3)} kWh = exported ${check.exportedKwh.toFixed(3)} kWh = meter_state ${check.keptKwh.toFixed(3)} + billed ${check.billedKwh.toFixed(3)} kWh → ${check.problems.length === 0 ? 'ok' : `FAILED: ${check.problems.join('; ')}`}`);
  if (check.problems.length > 0) exitCode = 1;
} catch (error) {
  console.error(`error: ${(error as Error).message}`);
  exitCode = 1;
} finally {
  for (const client of clients) await client.close().catch(() => {});
  await webConsole?.close().catch(() => {});
  await billing?.close().catch(() => {});
  await server?.close();
  logger.flush();
}
process.exit(exitCode);
