/**
 * `npm run test:crash [-- --mode sync|async --kills 12 --seed N]`: the kill -9 crash test by
 * itself (test/crash/crash-run.ts has what it checks). Prints a line per kill, then one JSON line:
 *   {"mode":"sync","kills":12,"acknowledged":…,"lost":0,"duplicated":0,"views_ok":true,…}
 * Exits 1 when anything acknowledged was lost (sync), anything is duplicated, a view disagrees
 * with its table, or a vote seen after one recovery is missing after a later one.
 */
import { parseArgs } from 'node:util';
import { runCrashTest } from './crash-run.ts';

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'sync' },
    kills: { type: 'string', default: '12' },
    seed: { type: 'string' },
    partitions: { type: 'string', default: '2' },
  },
});
if (values.mode !== 'sync' && values.mode !== 'async') {
  console.error(`error: --mode must be sync or async, got ${values.mode}`);
  process.exit(2);
}
const seed = values.seed === undefined ? Date.now() & 0x7fffffff : Number(values.seed);
console.log(`crash test: mode ${values.mode}, ${values.kills} kills, seed ${seed}`);
const result = await runCrashTest({
  mode: values.mode,
  kills: Number(values.kills),
  seed,
  loadMsMin: 200,
  loadMsMax: 1500,
  window: 200,
  partitions: Number(values.partitions),
  snapshotIntervalMinutes: 0.01,
  segmentRecordsMax: 2000,
  startupKillShare: 0.2,
  log: (line) => console.log(line),
});
for (const problem of result.problems) console.log(`problem: ${problem}`);
const failed = (result.mode === 'sync' && result.lost > 0) || result.duplicated > 0 || !result.views_ok || result.regressed > 0 || result.phantom > 0;
console.log(
  JSON.stringify({
    mode: result.mode,
    kills: result.kills,
    acknowledged: result.acknowledged,
    lost: result.lost,
    duplicated: result.duplicated,
    views_ok: result.views_ok,
    unknown: result.unknown,
    regressed: result.regressed,
    lost_in_one_kill_max: result.lostInOneKillMax,
    seed,
  }),
);
process.exit(failed ? 1 : 0);
