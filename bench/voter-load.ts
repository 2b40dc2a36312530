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

/** The workload's end-of-run check; `problems` is empty when the database is consistent. */
export async function runVoterCheck(db: SqlRunner, accepted: number, limit: number): Promise<{ problems: string[]; winner: unknown }> {
  const problems: string[] = [];
  const results = (await db.call('Results')) as { contestant_name: string; total_votes: number }[];
  const total = results.reduce((sum, row) => sum + Number(row.total_votes), 0);
  if (total !== accepted) problems.push(`Results sum to ${total} votes, ${accepted} were accepted`);
  const [{ n: voteRows }] = await db.queryRows('SELECT COUNT(*) AS n FROM votes');
  if (voteRows !== accepted) problems.push(`votes has ${voteRows} rows, ${accepted} were accepted`);
  const overLimit = await db.queryRows('SELECT phone_number, COUNT(*) AS n FROM votes GROUP BY phone_number HAVING COUNT(*) > ?', [limit]);
  if (overLimit.length > 0) problems.push(`${overLimit.length} phone numbers voted more than ${limit} times`);
  const byPhone = await db.queryRows('SELECT phone_number, COUNT(*) AS n FROM votes GROUP BY phone_number ORDER BY phone_number');
  const viewByPhone = await db.queryRows('SELECT phone_number, num_votes AS n FROM v_votes_by_phone_number ORDER BY phone_number');
  if (JSON.stringify(byPhone) !== JSON.stringify(viewByPhone)) problems.push('v_votes_by_phone_number differs from a recount of votes');
  const byState = await db.queryRows('SELECT contestant_number, state, COUNT(*) AS n FROM votes GROUP BY contestant_number, state ORDER BY contestant_number, state');
  const viewByState = await db.queryRows('SELECT contestant_number, state, SUM(num_votes) AS n FROM v_votes_by_contestant_number_state GROUP BY contestant_number, state ORDER BY contestant_number, state');
  if (JSON.stringify(byState) !== JSON.stringify(viewByState)) problems.push('v_votes_by_contestant_number_state differs from a recount of votes');
  return { problems, winner: results[0] };
}
