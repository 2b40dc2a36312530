/**
 * The Voter workload's call generator and end-of-run consistency check
 * (../shared/workloads/voter.md), shared by the in-process bench, the network bench and tests.
 */
import { areaCodes } from '../procedures/voter/area-codes.ts';
import { seededRandom } from '../engine/random.ts';

export const contestantNames = 'Edwina Burnam,Tabatha Gehling,Kelly Clauss,Jessie Alloway,Alana Bregman,Jessie Eichman';
export const contestantCount = 6;
export const maxVotesPerPhone = 2;

/** A seeded stream of [phoneNumber, contestantNumber] votes with the workload's distribution. */
export function voterLoad(seed: number): { next(): [number, number] } {
  const random = seededRandom(seed >>> 0 || 1);
  const preferred = areaCodes.map(() => (random() < 0.3 ? 1 : 1 + Math.floor(random() * contestantCount)));
  return {
    next(): [number, number] {
      const pick = Math.floor(random() * areaCodes.length);
      let contestant = preferred[pick];
      if (random() < 0.5) contestant = 1 + Math.floor(random() * contestantCount);
      if (random() < 0.01) contestant = 999;
      const phone = areaCodes[pick][0] * 10_000_000 + Math.floor(random() * 10_000_000);
      return [phone, contestant];
    },
  };
}

/** Anything that answers SQL: the embedded Database or a client connection. */
export interface SqlRunner {
  queryRows(sql: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  call(name: string, ...params: unknown[]): Promise<unknown>;
}

/** Votes per range the per-phone part of the check reads at a time (about as many groups). */
const votesPerPhoneRange = 300_000;

/** `count` half-open phone-number ranges covering every area code (at most one per area code). */
function phoneRanges(wanted: number): [number, number][] {
  const codes = areaCodes.map(([code]) => code).sort((a, b) => a - b);
  const count = Math.min(wanted, codes.length);
  const ranges: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    const first = codes[Math.floor((i * codes.length) / count)];
    const next = i + 1 < count ? codes[Math.floor(((i + 1) * codes.length) / count)] : codes[codes.length - 1] + 1;
    ranges.push([first * 10_000_000, next * 10_000_000]);
  }
  return ranges;
}

/** The workload's end-of-run check; `problems` is empty when the database is consistent. */
export async function runVoterCheck(db: SqlRunner, accepted: number, limit: number): Promise<{ problems: string[]; winner: unknown }> {
  const problems: string[] = [];
  const results = (await db.call('Results')) as { contestant_name: string; total_votes: number }[];
  const total = results.reduce((sum, row) => sum + Number(row.total_votes), 0);
  if (total !== accepted) problems.push(`Results sum to ${total} votes, ${accepted} were accepted`);
  const [{ n: voteRows }] = await db.queryRows('SELECT COUNT(*) AS n FROM votes');
  if (voteRows !== accepted) problems.push(`votes has ${voteRows} rows, ${accepted} were accepted`);
  // Per phone number the recount has as many groups as there are votes: read it in ranges of
  // phone numbers, so no single multi-partition read grows with the run (a 20 s run at 250k votes/s
  // is 5M groups, and a partition has fragmentTimeoutMs to answer each read).
  for (const [low, high] of phoneRanges(Math.max(1, Math.ceil(accepted / votesPerPhoneRange)))) {
    const range = 'phone_number >= ? AND phone_number < ?';
    const byPhone = await db.queryRows(`SELECT phone_number, COUNT(*) AS n FROM votes WHERE ${range} GROUP BY phone_number ORDER BY phone_number`, [low, high]);
    const overLimit = byPhone.filter((row) => (row.n as number) > limit).length;
    if (overLimit > 0) problems.push(`${overLimit} phone numbers from ${low} to ${high - 1} voted more than ${limit} times`);
    const viewByPhone = await db.queryRows(`SELECT phone_number, num_votes AS n FROM v_votes_by_phone_number WHERE ${range} ORDER BY phone_number`, [low, high]);
    if (JSON.stringify(byPhone) !== JSON.stringify(viewByPhone)) problems.push(`v_votes_by_phone_number differs from a recount of votes for phone numbers from ${low} to ${high - 1}`);
  }
  const byState = await db.queryRows('SELECT contestant_number, state, COUNT(*) AS n FROM votes GROUP BY contestant_number, state ORDER BY contestant_number, state');
  const viewByState = await db.queryRows('SELECT contestant_number, state, SUM(num_votes) AS n FROM v_votes_by_contestant_number_state GROUP BY contestant_number, state ORDER BY contestant_number, state');
  if (JSON.stringify(byState) !== JSON.stringify(viewByState)) problems.push('v_votes_by_contestant_number_state differs from a recount of votes');
  return { problems, winner: results[0] };
}
