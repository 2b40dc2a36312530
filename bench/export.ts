/**
 * Export throughput, in two parts (numbers belong in docs/benchmarks.md, measured on a quiet
 * machine):
 *
 * 1. The pipeline alone: committed-row chunks as partition workers send them are fed to
 *    ExportPipeline.accept and timed until every row is acknowledged — to a file target (Parquet,
 *    CSV) and, when a PostgreSQL URL is given, to the postgresql target. Prints rows/s.
 * 2. OLTP with exporting on and off: a server (worker-thread partitions) runs a Voter-sized
 *    procedure that appends one row to an exported stream per call (`Emit`), driven over the
 *    network with a window of outstanding calls; once without a data directory (rows are not
 *    exported) and once with a Parquet file target. Prints calls/s and the difference.
 *
 *   node bench/export.ts [--rows 200000] [--seconds 10] [--partitions 2] [--postgres postgres://…] [--only oltp]
 *
 * Ends with one JSON line: {"workload":"export", …}.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { applyDdl } from '../engine/catalog/ddl.ts';
import { startServer } from '../engine/server/server.ts';
import { connect } from '../client/index.ts';
import { ExportPipeline } from '../exporters/pipeline.ts';
import { encodeStreamChunk } from '../engine/storage/stream-chunk.ts';
import type Emit from '../test/fixtures/exporters/emit.ts';

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

/** Calls Emit (one stream row each) for `seconds` with `callWindow` calls outstanding. */
async function oltpRate(label: string, exporting: boolean): Promise<number> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-oltp-'));
  const server = await startServer({
    schema: schemaFile,
    partitions,
    port: 0,
    host: '127.0.0.1',
    data: exporting ? folder : undefined,
    durability: exporting ? { mode: 'off' } : undefined,
    exports: exporting ? { targets: [{ name: 'lake', type: 'file', format: 'parquet', path: path.join(folder, 'files'), lingerMs: 1000 }] } : undefined,
  });
  const client = await connect<{ Emit: typeof Emit }>(server.url);
  try {
    const meters = 1000;
    for (let meter = 1; meter <= meters; meter++) await client.query('INSERT INTO meters VALUES (?, 0)', [meter]);
    let calls = 0;
    let next = 0;
    const end = performance.now() + seconds * 1000;
    const start = performance.now();
    const worker = async (): Promise<void> => {
      while (performance.now() < end) {
        const n = next++;
        await client.call('Emit', (n % meters) + 1, 1_795_000_000_000 + n, 1, 0);
        calls++;
      }
    };
    await Promise.all(Array.from({ length: callWindow }, worker));
    const rate = calls / ((performance.now() - start) / 1000);
    // Throughput that leaves the export behind would only defer its cost: say how far behind it is.
    const statistics = exporting ? ((await client.call('@Statistics')) as { exports?: { rowsPending: number; lagSeconds: number }[] }) : undefined;
    const lag = statistics?.exports?.[0];
    console.log(`${label.padEnd(22)} ${Math.round(rate).toLocaleString('en-US').padStart(10)} calls/s${lag ? `   export behind by ${lag.rowsPending} rows (${lag.lagSeconds.toFixed(1)} s) at the end` : ''}`);
    return rate;
  } finally {
    await client.close();
    await server.close();
    rmSync(folder, { recursive: true, force: true });
  }
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
const off = options.only === 'oltp-on' ? Number.NaN : await oltpRate('oltp, exporting off', false);
const on = await oltpRate('oltp, exporting on', true);
console.log(`exporting costs ${(((off - on) / off) * 100).toFixed(1)} % of OLTP throughput (target: at most 15 %)`);
console.log(JSON.stringify({ workload: 'export', rows: rowsTotal, partitions, parquet_rows_per_s: Math.round(parquet), csv_rows_per_s: Math.round(csv), postgresql_rows_per_s: postgres === undefined ? null : Math.round(postgres), oltp_off_calls_per_s: Math.round(off), oltp_on_calls_per_s: Math.round(on) }));
