/**
 * The typed client: `connect<App>()` checks procedure names, parameter lists and result types
 * from the application's own definitions, with no code generation. The checks run under
 * `npx tsc --noEmit` (a wrong type or a missing expected error fails it); the test body only
 * builds the calls and never sends them.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { Client, type CallParams, type CallResult } from '../../client/index.ts';
import type { Statistics } from '../../procedures/system.ts';
import type { App } from '../../procedures/voter/app.ts';

describe('typed client', () => {
  it('infers parameters and results from the Voter App type', () => {
    expectTypeOf<CallParams<App['Vote']>>().toEqualTypeOf<[phoneNumber: number, contestantNumber: number, maxVotesPerPhoneNumber: number]>();
    expectTypeOf<CallResult<App['Vote']>>().toEqualTypeOf<number>();
    expectTypeOf<CallResult<App['Results']>>().items.toHaveProperty('total_votes');
    const client = new Client<App>('ws://127.0.0.1:1');
    const calls = () => {
      expectTypeOf(client.call('Vote', 2015550123, 1, 2)).resolves.toEqualTypeOf<number>();
      expectTypeOf(client.call('@Statistics')).resolves.toEqualTypeOf<Statistics>();
      // @ts-expect-error -- wrong parameter type
      void client.call('Vote', '2015550123', 1, 2);
      // @ts-expect-error -- missing parameter
      void client.call('Vote', 2015550123, 1);
      // @ts-expect-error -- unknown procedure
      void client.call('Vot', 2015550123, 1, 2);
    };
    expect(typeof calls).toBe('function');
  });
});
