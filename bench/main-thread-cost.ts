/**
 * CPU per call on the server's main thread (the one that parses client frames, sequences, routes
 * and appends to the command log), under Voter load, for each durability mode: what decides the
 * server's throughput when that thread saturates. CPU time, not wall-clock throughput, so the
 * numbers hold on a machine shared with other work (docs/benchmarks.md, "sync against off").
 *
 *   node bench/main-thread-cost.ts [--modes off,sync] [--rounds 5] [--seconds 6] [--window 3000]
 *                                  [--profile <dir>]   (a --cpu-prof of each server into <dir>)
 *                                  [--trees <dir>,<dir>] (servers from other checkouts: before/after)
 *                                  [--rate N] (offer N calls/s instead of keeping the window full)
 *
 * Each round starts a fresh server per mode and tree (interleaved, so drift on the machine hits
 * all alike), drives it unthrottled (or at --rate: the same offered load for every server, so
 * each sees about as many calls per event-loop turn; unthrottled, a slower run batches less), and reads the main thread's CPU time from
 * /proc/<pid>/task/<pid>/schedstat (the main thread's tid is the pid) before and after the load.
 * Prints µs of main-thread CPU per answered call per round and the median per mode, and ends with
 * one JSON line.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect, type Client } from '../client/index.ts';
import type { App } from '../procedures/voter/app.ts';
import { machineDescription, runLoad, type Workload } from './load-generator.ts';
import { startServerProcess } from './server-process.ts';
import { contestantCount, contestantNames, maxVotesPerPhone, voterLoad } from './voter-load.ts';

const { values: options } = parseArgs({
  options: {
    modes: { type: 'string', default: 'off,sync' },
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '6' },
    window: { type: 'string', default: '3000' },
    rate: { type: 'string' },
    partitions: { type: 'string' },
    profile: { type: 'string' },
    trees: { type: 'string', default: '.' },
  },
});
const trees = options.trees.split(',');
const modes = options.modes.split(',');
const home = process.cwd();
const rounds = Number(options.rounds);
const windowSize = Number(options.window);

/** Nanoseconds the thread `tid` of process `pid` has run on a CPU (schedstat's first field). */
function threadCpuNs(pid: number, tid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
}

async function measure(tree: string, mode: string): Promise<{ usPerCall: number; calls: number; perSecond: number }> {
  // --cpu-prof through NODE_OPTIONS reaches only the server: this process has already started.
  const nodeOptions = options.profile === undefined ? undefined : `--cpu-prof --cpu-prof-dir=${options.profile}`;
  const saved = process.env.NODE_OPTIONS;
  if (nodeOptions !== undefined) process.env.NODE_OPTIONS = nodeOptions;
  // The server runs the code of `tree`: it is spawned from there (client/cli.ts is relative).
  process.chdir(tree);
  const server = await startServerProcess({ schema: 'procedures/voter/ddl.sql', partitions: options.partitions, durability: mode, onOutput: () => undefined }).finally(() => process.chdir(home));
  if (nodeOptions !== undefined) process.env.NODE_OPTIONS = saved;
  const pid = server.child.pid!;
  const client: Client<App> = await connect<App>(server.url, { callsInFlightMax: windowSize, timeoutMs: 60_000 });
  await client.call('Initialize', contestantCount, contestantNames);
  const load = voterLoad(Date.now() & 0x7fffffff);
  const workload: Workload = {
    next(stopping) {
      if (stopping) return null;
      const [phone, contestant] = load.next();
      return { connection: 0, procedure: 'Vote', params: [phone, contestant, maxVotesPerPhone] };
    },
  };
  const before = threadCpuNs(pid, pid);
  const result = await runLoad(workload, { clients: [client], window: windowSize, warmupSeconds: 1, seconds: Number(options.seconds), rate: options.rate === undefined ? undefined : Number(options.rate), reportEverySeconds: Infinity, unit: 'votes', log: () => undefined });
  const after = threadCpuNs(pid, pid);
  await client.close();
  await server.stop();
  if (result.failed > 0) throw new Error(`${result.failed} calls failed (first: ${result.firstFailure})`);
  return { usPerCall: (after - before) / 1000 / result.answered, calls: result.answered, perSecond: result.perSecond };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

console.log(`main-thread CPU per call; ${machineDescription()}; ${rounds} rounds of ${options.seconds} s, ${options.rate === undefined ? `window ${windowSize}` : `${options.rate} calls/s`}`);
const runs = trees.flatMap((tree) => modes.map((mode) => ({ tree, mode, label: trees.length > 1 ? `${tree} ${mode}` : mode })));
const perRun = new Map<string, number[]>(runs.map((run) => [run.label, []]));
for (let round = 1; round <= rounds; round++) {
  const line: string[] = [];
  for (const run of runs) {
    const { usPerCall, calls, perSecond } = await measure(run.tree, run.mode);
    perRun.get(run.label)!.push(usPerCall);
    line.push(`${run.label} ${usPerCall.toFixed(2)} µs/call (${calls} calls, ${perSecond}/s)`);
  }
  console.log(`round ${round}: ${line.join('   ')}`);
}
const medians = Object.fromEntries(runs.map((run) => [run.label, Number(median(perRun.get(run.label)!).toFixed(3))]));
console.log(`median µs of main-thread CPU per call: ${runs.map((run) => `${run.label} ${medians[run.label]}`).join(', ')}`);
console.log(JSON.stringify({ benchmark: 'main-thread-cost', rounds, seconds: Number(options.seconds), usPerCall: medians, all: Object.fromEntries(perRun) }));
process.exit(0);
