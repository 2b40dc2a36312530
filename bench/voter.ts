/**
 * Voter over the network (../shared/workloads/voter.md): starts `sluice start` as its own process,
 * then drives it from this process through the client SDK, the way VoltDB's published Voter
 * numbers are measured. Server and client share the machine's cores, so the figure is a floor.
 *
 *   npm run bench:voter [-- --seconds 20 --warmup 5 --rate N --partitions N --window 2000 --durability sync|async|off]
 *
 * With --durability the server writes its command log and snapshots to a fresh temporary data
 * directory (or --data <dir>), removed at the end.
 *
 * Without --rate it keeps `window` calls outstanding (as many as the server accepts); with
 * --rate it offers N calls/s. Ends with one JSON line; exits non-zero if the consistency check fails.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHistogram } from 'node:perf_hooks';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { connect, type Client } from '../client/index.ts';
import type { App } from '../procedures/voter/app.ts';
import { voteAccepted, voteInvalidContestant, voteOverLimit } from '../procedures/voter/vote.ts';
import { contestantCount, contestantNames, maxVotesPerPhone, runVoterCheck, voterLoad } from './voter-load.ts';

const { values: options } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    rate: { type: 'string' },
    partitions: { type: 'string' },
    window: { type: 'string', default: '3000' },
    url: { type: 'string' },
    'report-every': { type: 'string', default: '2' },
    durability: { type: 'string' },
    data: { type: 'string' },
  },
});
const seconds = Number(options.seconds);
const warmupSeconds = Number(options.warmup);
const rate = options.rate === undefined ? undefined : Number(options.rate);
const windowSize = Number(options.window);
const reportEverySeconds = Number(options['report-every']);
const serverStartTimeoutMs = 30_000;

// --- the server, as its own process ------------------------------------------------------------

const serverArgs = ['client/cli.ts', 'start', '--schema', 'procedures/voter/ddl.sql', '--port', '0', '--host', '127.0.0.1', '--log-level', 'info'];
if (options.partitions) serverArgs.push('--partitions', options.partitions);
const dataDir = options.durability === undefined ? undefined : (options.data ?? mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-')));
if (options.durability !== undefined) serverArgs.push('--durability', options.durability, '--data', dataDir!);
// With --url, drive a server that is already running (its database must be fresh for the check).
const server = options.url ? undefined : spawn(process.execPath, serverArgs, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, SLUICE_VERIFY: '0' } });
const url = options.url ?? await new Promise<string>((resolve, reject) => {
  if (!server) return;
  const timer = setTimeout(() => reject(new Error('the server did not start in time')), serverStartTimeoutMs);
  server.once('exit', (code) => reject(new Error(`the server exited with code ${code}`)));
  const lines = readline.createInterface({ input: server.stdout! });
  lines.on('line', (line) => {
    try {
      const entry = JSON.parse(line) as { url?: string };
      if (entry.url) {
        clearTimeout(timer);
        resolve(entry.url);
      }
    } catch {
      console.log(line);
    }
  });
});

async function stopServer(): Promise<void> {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  await exited;
  if (dataDir !== undefined && options.data === undefined) rmSync(dataDir, { recursive: true, force: true });
}

// --- the load ----------------------------------------------------------------------------------

const client: Client<App> = await connect<App>(url, { callsInFlightMax: windowSize, timeoutMs: 60_000 });
console.log(`voter: ${url}, ${client.partitions} partitions; ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, Node ${process.version}, load ${os.loadavg()[0].toFixed(2)}`);
console.log(`warmup ${warmupSeconds}s, measure ${seconds}s, ${rate === undefined ? `window ${windowSize}` : `fixed rate ${rate}/s`}, durability ${options.durability ?? 'none'}`);
await client.call('Initialize', contestantCount, contestantNames);

const load = voterLoad(Date.now() & 0x7fffffff);
const latency = createHistogram();
const counts = { accepted: 0, invalid: 0, overLimit: 0, failed: 0 };
let measuring = false;
let running = true;
let outstanding = 0;
let measuredCalls = 0;
let intervalCalls = 0;
let intervalFailed = 0;
let firstFailure: string | undefined;
let drained: () => void = () => {};

function issue(): void {
  const [phone, contestant] = load.next();
  const start = performance.now();
  outstanding++;
  client.call('Vote', phone, contestant, maxVotesPerPhone).then(
    (outcome) => {
      if (outcome === voteAccepted) counts.accepted++;
      else if (outcome === voteInvalidContestant) counts.invalid++;
      else if (outcome === voteOverLimit) counts.overLimit++;
      if (measuring) {
        measuredCalls++;
        intervalCalls++;
        const micros = Math.round((performance.now() - start) * 1000);
        latency.record(micros > 0 ? micros : 1);
      }
      done();
    },
    (error: Error) => {
      counts.failed++;
      intervalFailed++;
      firstFailure ??= error.message;
      done();
    },
  );
}

function done(): void {
  outstanding--;
  if (running && rate === undefined) issue();
  else if (!running && outstanding === 0) drained();
}

let rateTimer: NodeJS.Timeout | undefined;
if (rate === undefined) {
  for (let i = 0; i < windowSize; i++) issue();
} else {
  const started = performance.now();
  let issued = 0;
  rateTimer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    while (issued < due && running) {
      issue();
      issued++;
    }
  }, 1);
}

await sleep(warmupSeconds * 1000);
measuring = true;
intervalCalls = 0;
intervalFailed = 0;
const measureStart = performance.now();
let lastReport = measureStart;
const reporter = setInterval(() => {
  const now = performance.now();
  const tps = intervalCalls / ((now - lastReport) / 1000);
  console.log(`${((now - measureStart) / 1000).toFixed(0).padStart(4)}s ${Math.round(tps).toLocaleString('en-US').padStart(10)} votes/s   failed ${intervalFailed}   outstanding ${outstanding}`);
  intervalCalls = 0;
  intervalFailed = 0;
  lastReport = now;
}, reportEverySeconds * 1000);
await sleep(seconds * 1000);
measuring = false;
const elapsed = (performance.now() - measureStart) / 1000;
running = false;
clearInterval(reporter);
clearInterval(rateTimer);
if (outstanding > 0) await new Promise<void>((resolve) => (drained = resolve));

// --- the report and the check ------------------------------------------------------------------

const tps = Math.round(measuredCalls / elapsed);
const ms = (percentile: number) => Number((latency.percentile(percentile) / 1000).toFixed(3));
console.log('');
console.log(`accepted ${counts.accepted}, invalid contestant ${counts.invalid}, over the limit ${counts.overLimit}, failed ${counts.failed}${firstFailure ? ` (first: ${firstFailure})` : ''}`);
const results = await client.call('Results');
console.log('Results:');
for (const row of results) console.log(`  ${row.contestant_name.padEnd(20)} ${String(row.contestant_number).padStart(3)} ${String(row.total_votes).padStart(12)}`);
console.log(`winner: ${results[0]?.contestant_name} with ${results[0]?.total_votes} votes`);
console.log(`throughput ${tps.toLocaleString('en-US')} votes/s over ${elapsed.toFixed(1)}s`);
console.log(`latency ms: p50 ${ms(50)}  p95 ${ms(95)}  p99 ${ms(99)}  p99.9 ${ms(99.9)}  max ${(latency.max / 1000).toFixed(3)}`);
const checkStart = performance.now();
const check = await runVoterCheck(client, counts.accepted, maxVotesPerPhone);
if (counts.failed > 0) check.problems.push(`${counts.failed} calls failed`);
console.log(`consistency check ${check.problems.length === 0 ? 'ok' : `FAILED: ${check.problems.join('; ')}`} (${((performance.now() - checkStart) / 1000).toFixed(1)}s)`);
await client.close();
await stopServer();
console.log(
  JSON.stringify({
    workload: 'voter',
    durability: options.durability ?? 'none',
    seconds: Number(elapsed.toFixed(1)),
    tps,
    p50_ms: ms(50),
    p95_ms: ms(95),
    p99_ms: ms(99),
    p999_ms: ms(99.9),
    failed: counts.failed,
    check: check.problems.length === 0 ? 'ok' : 'failed',
  }),
);
process.exit(check.problems.length === 0 ? 0 : 1);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
