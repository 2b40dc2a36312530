/**
 * In-process Vote: Sluice's embedded engine (one partition) against the hand-written baseline
 * (bench/baseline-vote.ts), in the same process and run, alternating rounds so both see the
 * same machine. Both are awaited per call, as an embedded caller would.
 *
 *   npm run bench:inproc [-- --seconds 3 --rounds 5]
 *
 * Ends with one JSON line: {"workload":"vote-inproc","calls_per_s":…,"baseline_calls_per_s":…}
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Database } from '../engine/database.ts';
import { BaselineVoter } from './baseline-vote.ts';
import { contestantCount, contestantNames, maxVotesPerPhone, voterLoad } from './voter-load.ts';

const { values: options } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '5' } },
});
const seconds = Number(options.seconds);
const rounds = Number(options.rounds);

async function measure(label: string, call: (phone: number, contestant: number) => Promise<unknown>, seed: number): Promise<number> {
  const load = voterLoad(seed);
  const batch = 1000;
  let calls = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < batch; i++) {
      const [phone, contestant] = load.next();
      await call(phone, contestant);
    }
    calls += batch;
  }
  const rate = calls / ((performance.now() - start) / 1000);
  console.log(`${label.padEnd(9)} ${Math.round(rate).toLocaleString('en-US').padStart(10)} calls/s`);
  return rate;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const db = await Database.open({ schema: 'procedures/voter/ddl.sql', partitions: 1, ttlIntervalMs: 0 });
await db.call('Initialize', contestantCount, contestantNames);
const baseline = new BaselineVoter(contestantCount);
const baselineCall = async (phone: number, contestant: number) => baseline.vote(phone, contestant, maxVotesPerPhone);
const sluiceCall = (phone: number, contestant: number) => db.call('Vote', phone, contestant, maxVotesPerPhone);

console.log(`in-process Vote, ${rounds} rounds of ${seconds}s each; ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, Node ${process.version}, load ${os.loadavg()[0].toFixed(2)}`);
await measure('warmup', sluiceCall, 1);
await measure('warmup', baselineCall, 1);
const sluiceRates: number[] = [];
const baselineRates: number[] = [];
for (let round = 0; round < rounds; round++) {
  baselineRates.push(await measure('baseline', baselineCall, 100 + round));
  sluiceRates.push(await measure('sluice', sluiceCall, 100 + round));
}
await db.close();
const calls = Math.round(median(sluiceRates));
const baselineCalls = Math.round(median(baselineRates));
console.log(`median: sluice ${calls.toLocaleString('en-US')} calls/s, baseline ${baselineCalls.toLocaleString('en-US')} calls/s, ratio ${(calls / baselineCalls).toFixed(2)}`);
console.log(JSON.stringify({ workload: 'vote-inproc', calls_per_s: calls, baseline_calls_per_s: baselineCalls, ratio: Number((calls / baselineCalls).toFixed(3)) }));
