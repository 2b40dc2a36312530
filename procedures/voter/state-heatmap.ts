/** GetStateHeatmap(): for each state, the leading contestant and its votes. Multi-partition read. */
import { defineProcedure, sql } from '../api.ts';

const byState = sql<{ state: string; contestant_number: number; num_votes: number }>(`
  SELECT state, contestant_number, SUM(num_votes) AS num_votes
  FROM v_votes_by_contestant_number_state
  GROUP BY state, contestant_number
  ORDER BY state, num_votes DESC, contestant_number`);

export default defineProcedure({
  statements: { byState },
  run(ctx) {
    const leaders: { state: string; contestant_number: number; num_votes: number }[] = [];
    for (const row of ctx.query(byState)) {
      if (leaders.length === 0 || leaders[leaders.length - 1].state !== row.state) leaders.push(row);
    }
    return leaders;
  },
});
