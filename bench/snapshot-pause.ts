/**
 * How long a snapshot holds up transactions (docs/durability.md): a server in this process with
 * `--rows` accounts over 2 partitions, a steady single-partition update load from a client, and
 * one @SnapshotSave in the middle. Reports what the partitions measured (the barrier, the longest
 * slice) and what the client saw: the longest call latency in the second before the snapshot,
 * during it, and after it.
 *
 *   node bench/snapshot-pause.ts [--rows 400000] [--window 50]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '../client/index.ts';
import { startServer } from '../engine/server/server.ts';

const { values: options } = parseArgs({ options: { rows: { type: 'string', default: '400000' }, window: { type: 'string', default: '50' } } });
const rows = Number(options.rows);
const windowSize = Number(options.window);
const insertRowsPerStatement = 1000;

const ddl = `
CREATE TABLE accounts (id BIGINT NOT NULL PRIMARY KEY, balance BIGINT NOT NULL, touches INTEGER NOT NULL);
PARTITION TABLE accounts ON COLUMN id;
CREATE PROCEDURE Touch PARTITION ON TABLE accounts COLUMN id PARAMETER 0 AS UPDATE accounts SET touches = touches + 1 WHERE id = ?;
`;
const data = mkdtempSync(path.join(os.tmpdir(), 'sluice-snapshot-pause-'));
const server = await startServer({ schema: ddl, partitions: 2, port: 0, host: '127.0.0.1', data, durability: { mode: 'async', snapshotOnShutdown: false } });
const client = await connect(server.url, { timeoutMs: 600_000 });
const placeholders = Array.from({ length: insertRowsPerStatement }, () => '(?, ?, 0)').join(', ');
for (let start = 1; start <= rows; start += insertRowsPerStatement) {
  const params: number[] = [];
  for (let id = start; id < start + insertRowsPerStatement && id <= rows; id++) params.push(id, 100);
  const sql = params.length / 2 === insertRowsPerStatement ? `INSERT INTO accounts (id, balance, touches) VALUES ${placeholders}` : `INSERT INTO accounts (id, balance, touches) VALUES ${Array.from({ length: params.length / 2 }, () => '(?, ?, 0)').join(', ')}`;
  await client.query(sql, params);
}

let running = true;
let phase: 'before' | 'during' | 'after' = 'before';
const longest = { before: 0, during: 0, after: 0 };
const calls = { before: 0, during: 0, after: 0 };
let next = 0;
const issue = (): void => {
  const started = performance.now();
  const current = phase;
  client.call('Touch', 1 + (next++ * 7919) % rows).then(() => {
    const ms = performance.now() - started;
    if (ms > longest[current]) longest[current] = ms;
    calls[current]++;
    if (running) issue();
  });
};
for (let i = 0; i < windowSize; i++) issue();
await sleep(1000);
phase = 'during';
const snapshot = await client.call('@SnapshotSave');
phase = 'after';
await sleep(1000);
running = false;
await sleep(200);
await client.close();
await server.close();
rmSync(data, { recursive: true, force: true });
console.log(
  JSON.stringify({
    rows,
    load: os.loadavg()[0].toFixed(1),
    snapshot_seconds: snapshot.seconds,
    barrier_ms_max: snapshot.barrierMsMax,
    slice_ms_max: snapshot.sliceMsMax,
    client_latency_ms_max: { before: Number(longest.before.toFixed(1)), during: Number(longest.during.toFixed(1)), after: Number(longest.after.toFixed(1)) },
    calls,
  }),
);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
