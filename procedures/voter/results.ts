/** Results(): each contestant's name, number and total votes, most votes first. Multi-partition read. */
import { defineProcedure, sql } from '../api.ts';

const results = sql<{ contestant_name: string; contestant_number: number; total_votes: number }>(`
  SELECT c.contestant_name, c.contestant_number, COALESCE(SUM(v.num_votes), 0) AS total_votes
  FROM contestants c LEFT JOIN v_votes_by_contestant_number_state v ON c.contestant_number = v.contestant_number
  GROUP BY c.contestant_name, c.contestant_number
  ORDER BY total_votes DESC, c.contestant_number`);

export default defineProcedure({
  statements: { results },
  run(ctx) {
    return ctx.query(results);
  },
});
