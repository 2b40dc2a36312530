/** Runs in-process Vote calls for profiling (node --cpu-prof bench/profile-vote.ts). */
import { Database } from '../engine/database.ts';
import { contestantCount, contestantNames, maxVotesPerPhone, voterLoad } from './voter-load.ts';

const db = await Database.open({ schema: 'procedures/voter/ddl.sql', partitions: 1, ttlIntervalMs: 0 });
await db.call('Initialize', contestantCount, contestantNames);
const load = voterLoad(7);
const count = Number(process.argv[2] ?? 300_000);
const start = performance.now();
for (let i = 0; i < count; i++) {
  const [phone, contestant] = load.next();
  db.callSync('Vote', [phone, contestant, maxVotesPerPhone]);
}
console.log(`${Math.round(count / ((performance.now() - start) / 1000))} calls/s (sync)`);
