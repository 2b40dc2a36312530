/** Results(): each contestant's name, number and total votes, most votes first. Multi-partition read. */
import { defineProcedure, sql } from '../api.ts';

const contestants = sql<{ contestant_name: string; contestant_number: number }>('SELECT contestant_name, contestant_number FROM contestants');
// Grouped across partitions: each partition holds partial counts of the view.
const totals = sql<{ contestant_number: number; total_votes: number }>(`
  SELECT contestant_number, SUM(num_votes) AS total_votes
  FROM v_votes_by_contestant_number_state GROUP BY contestant_number`);

export default defineProcedure({
  statements: { contestants, totals },
  run(ctx) {
    const votes = new Map(ctx.query(totals).map((row) => [row.contestant_number, row.total_votes]));
    return ctx
      .query(contestants)
      .map((row) => ({ ...row, total_votes: votes.get(row.contestant_number) ?? 0 }))
      .sort((a, b) => b.total_votes - a.total_votes || a.contestant_number - b.contestant_number);
  },
});
