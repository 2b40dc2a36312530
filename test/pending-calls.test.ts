/**
 * The SDK's table of calls awaiting answers (client/pending-calls.ts): a ring by id with an
 * overflow for calls overtaken by a whole ring of newer ones, growing when many are.
 */
import { describe, expect, it } from 'vitest';
import { PendingCalls } from '../client/pending-calls.ts';

describe('PendingCalls', () => {
  it('finds, counts and forgets calls by id, answered in any order', () => {
    const calls = new PendingCalls<{ id: number; name: string }>();
    for (let id = 1; id <= 100; id++) calls.add({ id, name: `call ${id}` });
    expect(calls.size).toBe(100);
    for (let id = 100; id >= 1; id -= 2) expect(calls.delete(id)).toBe(true);
    expect(calls.delete(100)).toBe(false);
    expect(calls.get(100)).toBeUndefined();
    expect(calls.get(99)?.name).toBe('call 99');
    expect(calls.size).toBe(50);
    expect(calls.values().map((call) => call.id)).toEqual(Array.from({ length: 50 }, (_, i) => 2 * i + 1));
  });

  it('keeps a slow call that a whole ring of newer calls passed, and grows when many wait', () => {
    const calls = new PendingCalls<{ id: number }>();
    calls.add({ id: 1 });
    // Far more calls than the ring has slots come and go while call 1 waits.
    for (let id = 2; id < 100_000; id++) {
      calls.add({ id });
      calls.delete(id);
    }
    expect(calls.get(1)).toEqual({ id: 1 });
    expect(calls.size).toBe(1);
    // Then 50,000 stay in flight at once: every one is still found.
    for (let id = 100_000; id < 150_000; id++) calls.add({ id });
    expect(calls.size).toBe(50_001);
    for (let id = 100_000; id < 150_000; id += 997) expect(calls.get(id)?.id).toBe(id);
    expect(calls.get(1)?.id).toBe(1);
    expect(calls.values()).toHaveLength(50_001);
    for (let id = 100_000; id < 150_000; id++) expect(calls.delete(id)).toBe(true);
    expect(calls.values().map((call) => call.id)).toEqual([1]);
  });
});
