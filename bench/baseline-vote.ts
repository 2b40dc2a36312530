/**
 * The baseline for the in-process Vote benchmark: Voter's Vote written by hand in plain
 * JavaScript over Maps, with the same checks and the same two "views" kept current, but with no
 * SQL, no undo log, no constraints and no determinism fences. It bounds what an engine could do
 * on one thread; Sluice's target is at least half of it.
 */
import { areaCodes } from '../procedures/voter/area-codes.ts';

export class BaselineVoter {
  private readonly contestants = new Map<number, string>();
  private readonly areaCodeState = new Map<number, string>(areaCodes.map(([code, state]) => [code, state]));
  readonly votes: { phoneNumber: number; state: string; contestantNumber: number }[] = [];
  private readonly votesByPhone = new Map<number, number>();
  private readonly votesByContestantState = new Map<string, number>();

  constructor(contestantCount: number) {
    for (let i = 1; i <= contestantCount; i++) this.contestants.set(i, `Contestant ${i}`);
  }

  vote(phoneNumber: number, contestantNumber: number, maxVotesPerPhoneNumber: number): number {
    if (!this.contestants.has(contestantNumber)) return 1;
    const votes = this.votesByPhone.get(phoneNumber) ?? 0;
    if (votes >= maxVotesPerPhoneNumber) return 2;
    const state = this.areaCodeState.get(Math.floor(phoneNumber / 10_000_000)) ?? 'XX';
    this.votes.push({ phoneNumber, state, contestantNumber });
    this.votesByPhone.set(phoneNumber, votes + 1);
    const key = `${contestantNumber}|${state}`;
    this.votesByContestantState.set(key, (this.votesByContestantState.get(key) ?? 0) + 1);
    return 0;
  }
}
