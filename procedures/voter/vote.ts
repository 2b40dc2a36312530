/**
 * Vote(phoneNumber, contestantNumber, maxVotesPerPhoneNumber): one caller's vote, single-partition
 * on the phone number. Returns 0 accepted, 1 invalid contestant, 2 over the per-phone limit.
 * Rejections commit (they are answers, not failures).
 */
import { defineProcedure, sql } from '../api.ts';

export const voteAccepted = 0;
export const voteInvalidContestant = 1;
export const voteOverLimit = 2;

const checkContestant = sql<{ contestant_number: number }>('SELECT contestant_number FROM contestants WHERE contestant_number = ?');
const checkVoter = sql<{ num_votes: number }>('SELECT num_votes FROM v_votes_by_phone_number WHERE phone_number = ?');
const checkState = sql<{ state: string }>('SELECT state FROM area_code_state WHERE area_code = ?');
const insertVote = sql('INSERT INTO votes (phone_number, state, contestant_number) VALUES (?, ?, ?)');

export default defineProcedure({
  statements: { checkContestant, checkVoter, checkState, insertVote },
  parameters: ['BIGINT', 'INTEGER', 'BIGINT'],
  run(ctx, phoneNumber: number, contestantNumber: number, maxVotesPerPhoneNumber: number): number {
    ctx.queue(checkContestant, [contestantNumber]);
    ctx.queue(checkVoter, [phoneNumber]);
    ctx.queue(checkState, [Math.floor(phoneNumber / 10_000_000)]);
    const [contestant, voter, state] = ctx.executeBatch();
    if (contestant.length === 0) return voteInvalidContestant;
    if (voter.length > 0 && (voter[0].num_votes as number) >= maxVotesPerPhoneNumber) return voteOverLimit;
    const stateCode = state.length > 0 ? (state[0].state as string) : 'XX';
    ctx.queue(insertVote, [phoneNumber, stateCode, contestantNumber], 'one');
    ctx.executeBatch();
    return voteAccepted;
  },
});
