/**
 * Assertions for invariants: a failure is a bug in Sluice, never a user error, and it stops the
 * partition rather than letting it run on wrong state. `VERIFY` turns on the costly O(N) checks
 * (index-agrees-with-table, view-matches-recount); it is on under test and off in benchmarks.
 */

export const VERIFY: boolean = process.env.SLUICE_VERIFY === '1' || (process.env.VITEST !== undefined && process.env.SLUICE_VERIFY !== '0');

export class AssertionFailure extends Error {
  constructor(fact: string) {
    super(`assertion failed: ${fact} (this is a bug in Sluice, please report it)`);
    this.name = 'AssertionFailure';
  }
}

export function assert(condition: unknown, fact: string): asserts condition {
  if (!condition) throw new AssertionFailure(fact);
}
