/**
 * NumberMap (engine/storage/number-map.ts), the open-addressing map behind unique hash indexes on
 * numeric columns, against a JavaScript Map: random sets, overwrites, deletes and lookups over key
 * sets chosen to collide and wrap around the table, plus the keys Map treats specially.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../engine/random.ts';
import { NumberMap } from '../engine/storage/number-map.ts';
import type { Row } from '../engine/types.ts';

function rowFor(key: number, version: number): Row {
  return [key, version];
}

describe('NumberMap agrees with Map', () => {
  for (const [label, keyOf] of [
    ['small integers (dense collisions)', (next: () => number) => Math.floor(next() * 40)],
    ['phone numbers', (next: () => number) => 2_000_000_000 + Math.floor(next() * 3000) * 1_000_003],
    ['fractions and negatives', (next: () => number) => (Math.floor(next() * 200) - 100) / 8],
  ] as const) {
    it(`random sets, deletes and lookups: ${label}`, () => {
      for (const seed of [1, 2, 3, 4]) {
        const next = seededRandom(seed);
        const map = new NumberMap();
        const truth = new Map<number, Row>();
        for (let step = 0; step < 20_000; step++) {
          const key = keyOf(next);
          const action = next();
          if (action < 0.45) {
            const row = rowFor(key, step);
            map.set(key, row);
            truth.set(key, row);
          } else if (action < 0.75) {
            expect(map.delete(key), `delete ${key} at step ${step}`).toBe(truth.delete(key));
          } else {
            expect(map.get(key), `get ${key} at step ${step}`).toBe(truth.get(key));
          }
          expect(map.size).toBe(truth.size);
        }
        // Every surviving key is found, and deleted ones are gone: backward shifts kept runs whole.
        for (const [key, row] of truth) expect(map.get(key)).toBe(row);
        for (let probe = 0; probe < 500; probe++) {
          const key = keyOf(next);
          expect(map.get(key)).toBe(truth.get(key));
        }
      }
    });
  }

  it('grows from empty to many keys and back to empty', () => {
    const map = new NumberMap();
    const keys = Array.from({ length: 50_000 }, (_, i) => i * 7919 + 0.5);
    for (const key of keys) map.set(key, rowFor(key, 0));
    expect(map.size).toBe(keys.length);
    for (const key of keys) expect(map.get(key)?.[0]).toBe(key);
    for (const key of keys) expect(map.delete(key)).toBe(true);
    expect(map.size).toBe(0);
    for (const key of keys.slice(0, 100)) expect(map.get(key)).toBeUndefined();
  });

  it('-0 and 0 are one key, NaN finds NaN, and keys that are not numbers are never found', () => {
    const map = new NumberMap();
    const zero = rowFor(0, 1);
    map.set(-0, zero);
    expect(map.get(0)).toBe(zero);
    expect(map.get(-0)).toBe(zero);
    const nan = rowFor(Number.NaN, 2);
    map.set(Number.NaN, nan);
    expect(map.get(Number.NaN)).toBe(nan);
    expect(map.size).toBe(2);
    expect(map.get('0')).toBeUndefined();
    expect(map.get(true)).toBeUndefined();
    expect(map.delete('0')).toBe(false);
    expect(map.delete(0)).toBe(true);
    expect(map.delete(Number.NaN)).toBe(true);
    expect(map.delete(Number.NaN)).toBe(false);
    expect(map.size).toBe(0);
    expect(() => map.set('x', zero)).toThrow(/only numbers/);
  });
});
