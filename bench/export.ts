/**
 * Export throughput, in two parts (numbers belong in docs/benchmarks.md, measured on a quiet
 * machine):
 *
 * 1. The pipeline alone: committed-row chunks as partition workers send them are fed to
 *    ExportPipeline.accept and timed until every row is acknowledged — to a file target (Parquet,
 *    CSV) and, when a PostgreSQL URL is given, to the postgresql target. Prints rows/s.
 * 2. OLTP with exporting on and off: a server (worker-thread partitions) driven over the network
 *    with a window of outstanding calls, once without a data directory (stream rows are not
 *    exported) and once with a Parquet file target; prints calls/s and the difference. Two loads:
 *    `Emit`, a call that is nothing but one stream row (the export's cost at its most visible),
 *    and Voter's Vote with each accepted vote appended to an exported stream (the issue's
 *    "Voter-style" load, bench/fixtures/vote-fed.ts).
 *
 *   node bench/export.ts [--rows 200000] [--seconds 10] [--partitions 2] [--postgres postgres://…] [--only oltp]
 *
 * Ends with one JSON line: {"workload":"export", …}.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { applyDdl } from '../engine/catalog/ddl.ts';
import { startServer } from '../engine/server/server.ts';
import { connect, type Client } from '../client/index.ts';
import { contestantCount, contestantNames, maxVotesPerPhone, voterLoad } from './voter-load.ts';
import { ExportPipeline } from '../exporters/pipeline.ts';
import { encodeStreamChunk } from '../engine/storage/stream-chunk.ts';
import { waitForExports } from './export-files.ts';

const { values: options } = parseArgs({
  options: {
    rows: { type: 'string', default: '200000' },
    seconds: { type: 'string', default: '10' },
    partitions: { type: 'string', default: '2' },
    postgres: { type: 'string', default: process.env.SLUICE_TEST_POSTGRES_URL },
    /** `oltp` runs only the exporting on/off comparison (for profiling it). */
    only: { type: 'string' },
  },
});
const rowsTotal = Number(options.rows);
const seconds = Number(options.seconds);
const partitions = Number(options.partitions);
const schemaFile = path.resolve('test/fixtures/exporters/ddl.sql');
const chunkRows = 100;
const callWindow = 2000;

const catalog = applyDdl(`CREATE STREAM readings PARTITION ON COLUMN meter EXPORT TO TARGET lake (
  meter BIGINT NOT NULL, ts TIMESTAMP NOT NULL, kwh FLOAT, note VARCHAR(20), ok BOOLEAN, level INTEGER, price DECIMAL(10,4));`);

/** Feeds `rowsTotal` rows as worker-batch chunks and waits until the target has them all. */
async function pipelineRate(label: string, target: Record<string, unknown>): Promise<number> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-export-'));
  try {
    const pipeline = await ExportPipeline.open({ exportDir: folder, catalog, partitions, config: { targets: [{ name: 'lake', lingerMs: 0, ...target }], buffer: { bytesMax: 4 * 1024 * 1024 * 1024 } } });
    const next = new Array<number>(partitions).fill(1);
    const start = performance.now();
    for (let sent = 0; sent < rowsTotal; sent += chunkRows) {
      const partition = (sent / chunkRows) % partitions;
      const values: unknown[] = [];
      for (let r = 0; r < chunkRows; r++) values.push(sent + r, 1_795_000_000_000 + r * 1000, r / 10, r % 3 === 0 ? null : 'note', r % 2 === 0, r, r / 8);
      const committed = Date.now();
      // As a partition worker sends them: encoded where the rows were committed.
      pipeline.accept(partition, ['readings', next[partition], chunkRows, committed, encodeStreamChunk(committed, values)]);
      next[partition] += chunkRows;
      // Let deliveries run between worker messages, as they would on a live server.
      if ((sent / chunkRows) % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    if (!(await pipeline.idle(600_000))) throw new Error(`${label}: rows still pending after 10 minutes`);
    const rate = rowsTotal / ((performance.now() - start) / 1000);
    await pipeline.close();
    console.log(`${label.padEnd(22)} ${Math.round(rate).toLocaleString('en-US').padStart(10)} rows/s`);
    return rate;
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

/** An OLTP load for the exporting on/off comparison: its schema, setup, and one call. */
interface OltpLoad {
  name: string;
  schema: string;
  procedures?: string;
  setup(client: Client): Promise<void>;
  call(client: Client, n: number): Promise<unknown>;
}

const meters = 1000;
/** Emit: the call is nothing but its one stream row, so this is the export's cost at its most visible. */
const emitLoad: OltpLoad = {
  name: 'Emit (one stream row, nothing else)',
  schema: schemaFile,
  async setup(client) {
    for (let meter = 1; meter <= meters; meter++) await client.query('INSERT INTO meters VALUES (?, 0)', [meter]);
  },
  call: (client, n) => client.call('Emit', (n % meters) + 1, 1_795_000_000_000 + n, 1, 0),
};

/** Voter's Vote, each accepted vote also appended to an exported stream (bench/fixtures/vote-fed.ts). */
function voterFeedLoad(folder: string): OltpLoad {
  // Procedures load from inside one folder: the repository, so Voter's files and the fixture both are.
  const ddl = `${readFileSync('procedures/voter/ddl.sql', 'utf8').replaceAll("FROM '", "FROM 'procedures/voter/")}
CREATE STREAM vote_feed PARTITION ON COLUMN phone_number EXPORT TO TARGET lake (
  phone_number BIGINT NOT NULL, contestant_number INTEGER NOT NULL, voted_at TIMESTAMP NOT NULL);
CREATE PROCEDURE VoteFed PARTITION ON TABLE votes COLUMN phone_number PARAMETER 0 FROM 'bench/fixtures/vote-fed.ts';
`;
  const schema = path.join(folder, 'voter-feed.sql');
  writeFileSync(schema, ddl);
  const votes = voterLoad(7);
  return {
    name: 'Voter (Vote + one stream row per accepted vote)',
    schema,
    procedures: path.resolve('.'),
    setup: async (client) => void (await client.call('Initialize', contestantCount, contestantNames)),
    call: (client) => {
      const [phone, contestant] = votes.next();
      return client.call('VoteFed', phone, contestant, maxVotesPerPhone);
    },
  };
}

/**
 * Runs `load` for `seconds` with `callWindow` calls outstanding, exporting its stream to Parquet or
 * not. Besides the rate, the CPU of the whole process (server, partitions, encoder threads and the
 * client alike) per call, counted until the export has written every row: a figure that holds on
 * a shared machine, where the rate does not.
 */
async function oltpRate(label: string, load: OltpLoad, exporting: boolean): Promise<{ rate: number; cpuPerCall: number }> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-oltp-'));
  const server = await startServer({
    schema: load.schema,
    procedures: load.procedures,
    partitions,
    port: 0,
    host: '127.0.0.1',
    data: exporting ? folder : undefined,
    durability: exporting ? { mode: 'off' } : undefined,
    exports: exporting ? { targets: [{ name: 'lake', type: 'file', format: 'parquet', path: path.join(folder, 'files'), lingerMs: 1000 }] } : undefined,
  });
  const client = await connect(server.url);
  try {
    await load.setup(client);
    let calls = 0;
    let next = 0;
    const end = performance.now() + seconds * 1000;
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    const worker = async (): Promise<void> => {
      while (performance.now() < end) {
        await load.call(client, next++);
        calls++;
      }
    };
    await Promise.all(Array.from({ length: callWindow }, worker));
    const rate = calls / ((performance.now() - start) / 1000);
    // Throughput that leaves the export behind would only defer its cost: say how far behind it is.
    const statistics = exporting ? ((await client.call('@Statistics')) as { exports?: { rowsPending: number; lagSeconds: number }[] }) : undefined;
    const lag = statistics?.exports?.[0];
    if (exporting) await waitForExports(client);
    const cpu = process.cpuUsage(cpuStart);
    const cpuPerCall = (cpu.user + cpu.system) / calls;
    console.log(`${label.padEnd(30)} ${Math.round(rate).toLocaleString('en-US').padStart(10)} calls/s, ${cpuPerCall.toFixed(2)} µs CPU per call${lag ? `   export behind by ${lag.rowsPending} rows (${lag.lagSeconds.toFixed(1)} s) at the end` : ''}`);
    return { rate, cpuPerCall };
  } finally {
    await client.close();
    await server.close();
    rmSync(folder, { recursive: true, force: true });
  }
}

/** Exporting off, then on, for one load; prints the cost. */
async function onOff(load: OltpLoad, short: string): Promise<{ off: number; on: number; cpuOff: number; cpuOn: number }> {
  console.log(`OLTP: ${load.name}`);
  const off = options.only === 'oltp-on' ? { rate: Number.NaN, cpuPerCall: Number.NaN } : await oltpRate(`${short}, exporting off`, load, false);
  const on = await oltpRate(`${short}, exporting on`, load, true);
  console.log(`exporting costs ${(((off.rate - on.rate) / off.rate) * 100).toFixed(1)} % of ${short} throughput (target: at most 15 %); CPU per call ${(on.cpuPerCall - off.cpuPerCall).toFixed(2)} µs more, ${(((on.cpuPerCall - off.cpuPerCall) / on.cpuPerCall) * 100).toFixed(1)} % of the exporting run's`);
  return { off: off.rate, on: on.rate, cpuOff: off.cpuPerCall, cpuOn: on.cpuPerCall };
}

console.log(`export benchmark: ${rowsTotal} rows, ${partitions} partitions; ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, Node ${process.version}, load ${os.loadavg()[0].toFixed(2)}`);
const pipelines = options.only === undefined;
const parquet = !pipelines ? Number.NaN : await pipelineRate('pipeline → parquet', { type: 'file', format: 'parquet', batchRowsMax: 50_000, lingerMs: 500 });
const csv = !pipelines ? Number.NaN : await pipelineRate('pipeline → csv', { type: 'file', format: 'csv', batchRowsMax: 50_000, lingerMs: 500 });
let postgres: number | undefined;
if (options.postgres && pipelines) {
  const schema = `sluice_bench_${process.pid}`;
  postgres = await pipelineRate('pipeline → postgresql', { type: 'postgresql', url: options.postgres, schema, batchRowsMax: 10_000 });
  const pg = await import('pg');
  const admin = new pg.default.Client({ connectionString: options.postgres });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.end();
} else {
  console.log('pipeline → postgresql   skipped: pass --postgres <url> or set SLUICE_TEST_POSTGRES_URL');
}
const emit = await onOff(emitLoad, 'emit');
const feedFolder = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-voter-feed-'));
const voter = await onOff(voterFeedLoad(feedFolder), 'voter');
rmSync(feedFolder, { recursive: true, force: true });
console.log(JSON.stringify({ workload: 'export', rows: rowsTotal, partitions, parquet_rows_per_s: Math.round(parquet), csv_rows_per_s: Math.round(csv), postgresql_rows_per_s: postgres === undefined ? null : Math.round(postgres), oltp_off_calls_per_s: Math.round(emit.off), oltp_on_calls_per_s: Math.round(emit.on), voter_off_calls_per_s: Math.round(voter.off), voter_on_calls_per_s: Math.round(voter.on), oltp_cpu_us_per_call_off: emit.cpuOff, oltp_cpu_us_per_call_on: emit.cpuOn, voter_cpu_us_per_call_off: voter.cpuOff, voter_cpu_us_per_call_on: voter.cpuOn }));
