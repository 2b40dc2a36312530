/**
 * Voter over the network (../shared/workloads/voter.md): starts `sluice start` as its own process,
 * then drives it from this process through the client SDK with the shared load generator
 * (bench/load-generator.ts), the way VoltDB's published Voter numbers are measured. Server and
 * client share the machine's cores, so the figure is a floor.
 *
 *   npm run bench:voter [-- --seconds 20 --warmup 5 --rate N --partitions N --window 3000 --connections 1 --durability sync|async|off --deployment file.json]
 *
 * With --durability the server writes its command log and snapshots to a fresh temporary data
 * directory (or --data <dir>), removed at the end.
 *
 * Without --rate it keeps `window` calls outstanding (as many as the server accepts); with
 * --rate it offers N calls/s. Ends with one JSON line; exits non-zero if the consistency check fails.
 */
import { parseArgs } from 'node:util';
import { connect, type Client } from '../client/index.ts';
import type { App } from '../procedures/voter/app.ts';
import { voteAccepted, voteInvalidContestant, voteOverLimit } from '../procedures/voter/vote.ts';
import { machineDescription, runLoad, type Workload } from './load-generator.ts';
import { startServerProcess, type ServerProcess } from './server-process.ts';
import { contestantCount, contestantNames, maxVotesPerPhone, runVoterCheck, voterLoad } from './voter-load.ts';

const { values: options } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    rate: { type: 'string' },
    partitions: { type: 'string' },
    window: { type: 'string', default: '3000' },
    connections: { type: 'string', default: '1' },
    durability: { type: 'string' },
    data: { type: 'string' },
    deployment: { type: 'string' },
    url: { type: 'string' },
    'report-every': { type: 'string', default: '2' },
  },
});
const windowSize = Number(options.window);
const connections = Number(options.connections);

// With --url, drive a server that is already running (its database must be fresh for the check).
const server: ServerProcess | undefined = options.url
  ? undefined
  : await startServerProcess({ schema: 'procedures/voter/ddl.sql', partitions: options.partitions, durability: options.durability, data: options.data, deployment: options.deployment });
const url = options.url ?? server!.url;
const clients: Client<App>[] = [];
for (let i = 0; i < connections; i++) clients.push(await connect<App>(url, { callsInFlightMax: windowSize, timeoutMs: 60_000 }));
const client = clients[0];
console.log(`voter: ${url}, ${client.partitions} partitions; ${machineDescription()}`);
console.log(`warmup ${options.warmup}s, measure ${options.seconds}s, ${options.rate === undefined ? `window ${windowSize}` : `fixed rate ${options.rate}/s`}, ${connections} connection(s), durability ${options.durability ?? 'none'}`);
await client.call('Initialize', contestantCount, contestantNames);

const load = voterLoad(Date.now() & 0x7fffffff);
const counts = { accepted: 0, invalid: 0, overLimit: 0 };
let nextConnection = 0;
const countOutcome = (outcome: unknown) => {
  if (outcome === voteAccepted) counts.accepted++;
  else if (outcome === voteInvalidContestant) counts.invalid++;
  else if (outcome === voteOverLimit) counts.overLimit++;
};
const workload: Workload = {
  next(stopping) {
    if (stopping) return null;
    const [phone, contestant] = load.next();
    return { connection: nextConnection++, procedure: 'Vote', params: [phone, contestant, maxVotesPerPhone], done: countOutcome };
  },
};
const result = await runLoad(workload, {
  clients,
  window: windowSize,
  warmupSeconds: Number(options.warmup),
  seconds: Number(options.seconds),
  rate: options.rate === undefined ? undefined : Number(options.rate),
  reportEverySeconds: Number(options['report-every']),
  unit: 'votes',
});

// --- the report and the check ------------------------------------------------------------------

const latency = result.latencyMs;
console.log('');
console.log(`accepted ${counts.accepted}, invalid contestant ${counts.invalid}, over the limit ${counts.overLimit}, failed ${result.failed}${result.firstFailure ? ` (first: ${result.firstFailure})` : ''}`);
const results = await client.call('Results');
console.log('Results:');
for (const row of results) console.log(`  ${row.contestant_name.padEnd(20)} ${String(row.contestant_number).padStart(3)} ${String(row.total_votes).padStart(12)}`);
console.log(`winner: ${results[0]?.contestant_name} with ${results[0]?.total_votes} votes`);
console.log(`throughput ${result.perSecond.toLocaleString('en-US')} votes/s over ${result.elapsedSeconds.toFixed(1)}s`);
console.log(`latency ms: p50 ${latency.p50}  p95 ${latency.p95}  p99 ${latency.p99}  p99.9 ${latency.p999}  max ${latency.max}`);
console.log(`load generator's event loop delay ms: p99 ${result.clientLoopDelayMs.p99}  max ${result.clientLoopDelayMs.max}`);
// The server's own view (from the call's arrival to its answer leaving the router, warm-up
// included): what the client sees beyond it is the network, the WebSocket path and its own loop.
const serverVote = (await client.call('@Statistics')).procedures.find((entry) => entry.procedure === 'Vote');
if (serverVote !== undefined) console.log(`server-side latency ms (Vote, whole run): p50 ${serverVote.p50_ms}  p99 ${serverVote.p99_ms}`);
const checkStart = performance.now();
const check = await runVoterCheck(client, counts.accepted, maxVotesPerPhone);
if (result.failed > 0) check.problems.push(`${result.failed} calls failed`);
console.log(`consistency check ${check.problems.length === 0 ? 'ok' : `FAILED: ${check.problems.join('; ')}`} (${((performance.now() - checkStart) / 1000).toFixed(1)}s)`);
for (const connection of clients) await connection.close();
await server?.stop();
console.log(
  JSON.stringify({
    workload: 'voter',
    durability: options.durability ?? 'none',
    seconds: Number(result.elapsedSeconds.toFixed(1)),
    tps: result.perSecond,
    p50_ms: latency.p50,
    p95_ms: latency.p95,
    p99_ms: latency.p99,
    p999_ms: latency.p999,
    failed: result.failed,
    check: check.problems.length === 0 ? 'ok' : 'failed',
  }),
);
process.exit(check.problems.length === 0 ? 0 : 1);
