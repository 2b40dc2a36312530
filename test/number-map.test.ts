/**
 * The maps behind unique hash indexes, against a JavaScript Map. NumberMap
 * (engine/storage/number-map.ts, one numeric column): random sets, overwrites, deletes and lookups
 * over key sets chosen to collide and wrap around the table, plus the keys Map treats specially.
 * NestedRows (engine/storage/nested-map.ts, several columns): the same against one Map keyed by
 * the composite string encoding it replaces, with values of mixed kinds that must not match.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../engine/random.ts';
import { encodeComposite } from '../engine/storage/index-key.ts';
import { NestedRows } from '../engine/storage/nested-map.ts';
import { NumberMap } from '../engine/storage/number-map.ts';
import type { Row, Value } from '../engine/types.ts';

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

describe('NestedRows agrees with one Map over encoded composite keys', () => {
  const columns = [0, 1, 2];
  const pools: readonly Value[][] = [
    [1, 2, -0, 0, Number.NaN, '1', 't', true, false, 2.5],
    ['a', 'b', '', 'NJ', 1, Uint8Array.from([1, 2]), Uint8Array.from([1, 2]), Uint8Array.from([3])],
    [7, 8, 'x', true],
  ];

  it('random sets, removes and finds, pruning emptied levels', () => {
    for (const seed of [1, 2, 3]) {
      const next = seededRandom(seed);
      const pick = (pool: readonly Value[]) => pool[Math.floor(next() * pool.length)];
      const nested = new NestedRows(columns.length);
      const truth = new Map<string, Row>();
      for (let step = 0; step < 20_000; step++) {
        const row: Row = [pick(pools[0]), pick(pools[1]), pick(pools[2]), step];
        const key = encodeComposite(row.slice(0, 3));
        const action = next();
        if (action < 0.45) {
          nested.set(row, columns);
          truth.set(key, row);
        } else if (action < 0.75) {
          // remove deletes only the stored row itself, as the index does.
          const stored = truth.get(key);
          const victim = stored !== undefined && next() < 0.8 ? stored : row;
          nested.remove(victim, columns);
          if (stored === victim) truth.delete(key);
        } else {
          expect(nested.find(row, columns), `find ${key} at step ${step}`).toBe(truth.get(key));
          expect(nested.find(row.slice(0, 3), undefined)).toBe(truth.get(key));
        }
        expect(nested.size).toBe(truth.size);
      }
      for (const row of truth.values()) expect(nested.find(row, columns)).toBe(row);
      for (const row of [...truth.values()]) nested.remove(row, columns);
      expect(nested.size).toBe(0);
      // Every level was pruned: the root map is empty again.
      expect((nested as unknown as { root: Map<unknown, unknown> }).root.size).toBe(0);
    }
  });
});
