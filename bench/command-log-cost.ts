/**
 * Main-thread CPU per command-log record: `CommandLog.append` of Vote-sized records in sync mode,
 * groups of `--group` records (one commit window's worth), every group awaited to its flush, as
 * the router drives it under load. CPU time of this thread only (/proc/self/task/<pid>/schedstat:
 * LMDB commits and fsyncs run on other threads), so the numbers hold on a busy machine.
 *
 *   node bench/command-log-cost.ts [--records 200000] [--group 200] [--rounds 5] [--baseline <checkout>]
 *
 * With --baseline, the same loop also runs the CommandLog of another checkout (before/after in one
 * process, rounds interleaved); prints ns per record per round and the medians.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CommandLog } from '../engine/durability/command-log.ts';

const { values: options } = parseArgs({
  options: {
    records: { type: 'string', default: '200000' },
    group: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '5' },
    baseline: { type: 'string' },
  },
});
const recordsPerRound = Number(options.records);
const groupSize = Number(options.group);

interface LogClass {
  open(options: { folder: string; mode: 'sync'; groupCommitMs: number; groupRecordsMax: number }): Promise<{
    append(record: { transactionId: number; timestamp: number; partition: number; procedure: string; parameters: readonly (number | string)[]; catalogVersion: number }): Promise<void>;
    close(): Promise<void>;
  }>;
}

function threadCpuNs(): number {
  return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
}

/** ns of this thread's CPU per record: appends (groups written when full) and the wait for each flush. */
async function measure(Log: LogClass): Promise<number> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'sluice-log-cost-'));
  // A window longer than any group takes to fill: groups are written when full, as at full load.
  const log = await Log.open({ folder, mode: 'sync', groupCommitMs: 1000, groupRecordsMax: groupSize });
  const timestamp = Date.now();
  let id = 0;
  const before = threadCpuNs();
  while (id < recordsPerRound) {
    let last: Promise<void> | undefined;
    for (let i = 0; i < groupSize; i++) {
      id++;
      last = log.append({ transactionId: id, timestamp: timestamp + id, partition: id & 1, procedure: 'Vote', parameters: [5_550_000_000 + id, (id % 6) + 1, 2], catalogVersion: 1 });
    }
    await last;
  }
  const cpu = threadCpuNs() - before;
  await log.close();
  rmSync(folder, { recursive: true, force: true });
  return cpu / recordsPerRound;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const variants: [string, LogClass][] = [['this checkout', CommandLog as unknown as LogClass]];
if (options.baseline !== undefined) {
  const module = (await import(path.resolve(options.baseline, 'engine/durability/command-log.ts'))) as { CommandLog: LogClass };
  variants.unshift([`baseline ${options.baseline}`, module.CommandLog]);
}
const results = new Map<string, number[]>(variants.map(([name]) => [name, []]));
for (let round = 1; round <= Number(options.rounds); round++) {
  const line: string[] = [];
  for (const [name, Log] of variants) {
    const ns = await measure(Log);
    results.get(name)!.push(ns);
    line.push(`${name} ${ns.toFixed(0)} ns/record`);
  }
  console.log(`round ${round}: ${line.join('   ')}`);
}
const medians = Object.fromEntries([...results].map(([name, values]) => [name, Math.round(median(values))]));
console.log(`median main-thread ns per record (groups of ${groupSize}): ${JSON.stringify(medians)}`);
