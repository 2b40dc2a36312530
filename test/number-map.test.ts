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

  it('stays right while a grown table drains into its successor, across chunks of row references', () => {
    // Over 131,072 keys take the table to 512k slots (8 chunks of 65,536); every growth from 64k on
    // drains over the following operations, which here overwrite, delete and look up keys that
    // may still sit in the old table, including ones whose probe runs pass moved entries.
    const next = seededRandom(7);
    const map = new NumberMap();
    const truth = new Map<number, Row>();
    const keyOf = () => 5_000_000_000 + Math.floor(next() * 400_000) * 3;
    for (let step = 0; step < 450_000; step++) {
      const key = keyOf();
      const action = next();
      if (action < 0.6) {
        const row = rowFor(key, step);
        map.set(key, row);
        truth.set(key, row);
      } else if (action < 0.7) {
        expect(map.delete(key)).toBe(truth.delete(key));
      } else if (map.get(key) !== truth.get(key)) {
        expect.fail(`get ${key} at step ${step}: ${String(map.get(key))} against ${String(truth.get(key))}`);
      }
    }
    expect(map.size).toBe(truth.size);
    expect(truth.size).toBeGreaterThan(131_072);
    for (const [key, row] of truth) if (map.get(key) !== row) expect.fail(`${key} lost after the drains`);
    for (const key of [...truth.keys()]) map.delete(key);
    expect(map.size).toBe(0);
    expect(map.get(keyOf())).toBeUndefined();
  });

  it('finds every key after every operation while a table drains', () => {
    // Small tables drain the same way as large ones; checking every key after every operation
    // catches a probe run cut where the drain has passed, or an entry stranded behind it.
    for (const seed of [1, 2, 3, 4, 5]) {
      const next = seededRandom(seed);
      const map = new NumberMap();
      const truth = new Map<number, Row>();
      const draining = () => (map as unknown as { draining: unknown }).draining !== undefined;
      let checkedWhileDraining = 0;
      for (let step = 0; step < 6_000; step++) {
        const key = Math.floor(next() * 700) * 1_000_003;
        if (next() < 0.7) {
          const row = rowFor(key, step);
          map.set(key, row);
          truth.set(key, row);
        } else {
          expect(map.delete(key)).toBe(truth.delete(key));
        }
        if (!draining()) continue;
        checkedWhileDraining++;
        for (const [stored, row] of truth) if (map.get(stored) !== row) expect.fail(`seed ${seed}, step ${step}: ${stored} not found while draining`);
      }
      expect(checkedWhileDraining).toBeGreaterThan(0);
      expect(map.size).toBe(truth.size);
    }
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
