/**
 * Micro benchmarks (tinybench) of the engine's hot paths, in-process on one partition:
 * a planned point lookup, an insert maintaining two views, an ordered-index range scan, one
 * Vote call, one smart-meter IngestReading, and SQL parse+plan (what ad-hoc queries pay before
 * their plan is cached).
 *
 *   npm run bench:micro [-- --time 1000]
 *
 * Prints ops/s and latency percentiles per task, then one JSON line with the same figures.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { Database } from '../engine/database.ts';
import { planStatement } from '../engine/sql/statement.ts';
import { loadDimensions } from '../procedures/smart-meter/load.ts';
import { ReadingSimulator, simulationStart, type Reading } from '../procedures/smart-meter/readings.ts';
import { contestantCount, contestantNames, maxVotesPerPhone, voterLoad } from './voter-load.ts';

const { values: options } = parseArgs({ options: { time: { type: 'string', default: '1000' } } });

const schema = `
CREATE TABLE accounts (id BIGINT NOT NULL PRIMARY KEY, owner VARCHAR(32), balance BIGINT NOT NULL, opened TIMESTAMP NOT NULL);
CREATE INDEX accounts_opened ON accounts (opened);
CREATE TABLE events (account BIGINT NOT NULL, kind VARCHAR(8) NOT NULL, amount BIGINT NOT NULL);
CREATE VIEW events_by_account (account, n, total) AS SELECT account, COUNT(*), SUM(amount) FROM events GROUP BY account;
CREATE VIEW events_by_kind (kind, n, biggest) AS SELECT kind, COUNT(*), MAX(amount) FROM events GROUP BY kind;
`;
const accounts = await Database.open({ schema, ttlIntervalMs: 0 });
const accountCount = 100_000;
for (let id = 1; id <= accountCount; id++) {
  await accounts.query('INSERT INTO accounts VALUES (?, ?, ?, ?)', [id, `owner ${id}`, id * 10, 1_700_000_000_000 + id * 1000]);
}
const voter = await Database.open({ schema: 'procedures/voter/ddl.sql', ttlIntervalMs: 0 });
await voter.call('Initialize', contestantCount, contestantNames);
const smartMeter = await Database.open({ schema: 'procedures/smart-meter/ddl.sql', ttlIntervalMs: 0 });
const dimensionsFolder = mkdtempSync(path.join(os.tmpdir(), 'sluice-micro-'));
const { meters } = await loadDimensions(smartMeter, { meters: 10_000, folder: dimensionsFolder });
rmSync(dimensionsFolder, { recursive: true, force: true });
const readings = new ReadingSimulator(meters, { seed: 5, startTs: simulationStart });
// Generated ahead so the task times the procedure, not the simulator (more only if it runs out).
const generatedIntervals = 40;
let interval: Reading[] = [];
for (let i = 0; i < generatedIntervals; i++) interval = interval.concat(readings.nextInterval());
let nextReading = 0;
const votes = voterLoad(3);

let counter = 0;
const bench = new Bench({ time: Number(options.time), warmupTime: 200 });
bench
  .add('point lookup (SELECT … WHERE pk = ?)', async () => {
    await accounts.query('SELECT owner, balance FROM accounts WHERE id = ?', [1 + (counter++ % accountCount)]);
  })
  .add('insert maintaining two views', async () => {
    counter++;
    await accounts.query('INSERT INTO events VALUES (?, ?, ?)', [counter % accountCount, counter % 3 === 0 ? 'debit' : 'credit', counter % 1000]);
  })
  .add('ordered-index range scan (100 rows)', async () => {
    const start = 1_700_000_000_000 + (counter++ % (accountCount - 200)) * 1000;
    await accounts.query('SELECT id, balance FROM accounts WHERE opened >= ? AND opened < ? ORDER BY opened', [start, start + 100_000]);
  })
  .add('Vote (one procedure call)', async () => {
    const [phone, contestant] = votes.next();
    await voter.call('Vote', phone, contestant, maxVotesPerPhone);
  })
  .add('IngestReading (one smart-meter reading)', async () => {
    if (nextReading === interval.length) {
      interval = readings.nextInterval();
      nextReading = 0;
    }
    const reading = interval[nextReading++];
    await smartMeter.call('IngestReading', reading.meterId, reading.ts, reading.cumulativeKwh);
  })
  .add('parse + plan a join with GROUP BY', () => {
    planStatement('SELECT e.kind, COUNT(*), SUM(e.amount) FROM events e JOIN accounts a ON a.id = e.account WHERE a.balance > ? GROUP BY e.kind ORDER BY 2 DESC', accounts.catalog);
  });

console.log(`micro benchmarks; ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, Node ${process.version}, load ${os.loadavg()[0].toFixed(2)}`);
await bench.run();
const summary: Record<string, { ops_per_s: number; p50_us: number; p99_us: number }> = {};
for (const task of bench.tasks) {
  const result = task.result as { throughput?: { mean: number }; latency?: { p50?: number; p99?: number } } | undefined;
  const ops = Math.round(result?.throughput?.mean ?? 0);
  const p50 = Number(((result?.latency?.p50 ?? 0) * 1000).toFixed(2));
  const p99 = Number(((result?.latency?.p99 ?? 0) * 1000).toFixed(2));
  summary[task.name] = { ops_per_s: ops, p50_us: p50, p99_us: p99 };
  console.log(`${task.name.padEnd(40)} ${ops.toLocaleString('en-US').padStart(11)} ops/s   p50 ${String(p50).padStart(7)} µs   p99 ${String(p99).padStart(7)} µs`);
}
await accounts.close();
await voter.close();
await smartMeter.close();
console.log(JSON.stringify({ workload: 'micro', tasks: summary }));
