/**
 * Initialize(maxContestants, names): loads the contestants and the area-code table once.
 * Multi-partition (it writes replicated tables). Returns the number of contestants.
 */
import { defineProcedure, sql } from '../api.ts';
import { areaCodes } from './area-codes.ts';

const countContestants = sql<{ n: number }>('SELECT COUNT(*) AS n FROM contestants');
const insertContestant = sql('INSERT INTO contestants (contestant_number, contestant_name) VALUES (?, ?)');
const insertAreaCode = sql('INSERT INTO area_code_state (area_code, state) VALUES (?, ?)');

export default defineProcedure({
  statements: { countContestants, insertContestant, insertAreaCode },
  parameters: ['INTEGER', 'VARCHAR'],
  run(ctx, maxContestants: number, names: string): number {
    const existing = ctx.query(countContestants)[0].n;
    if (existing > 0) return existing;
    const list = names.split(',');
    for (let i = 0; i < maxContestants; i++) ctx.execute(insertContestant, i + 1, list[i]?.trim() || `Contestant ${i + 1}`);
    for (const [areaCode, state] of areaCodes) ctx.execute(insertAreaCode, areaCode, state);
    return maxContestants;
  },
});
