/**
 * The map behind a unique hash index on several columns: one Map level per column, keyed by the
 * column's value itself (binaries by their hex text, encodePart), the row at the last level. A
 * single Map would need one string per lookup encoding every column (index-key.ts
 * encodeComposite): building and hashing that string was most of the cost of maintaining a view
 * grouped by two columns (Voter's votes by contestant and state). Levels are created on insert and
 * pruned when they empty, so a deleted key leaves nothing behind.
 *
 * Key semantics are Map's per column, as the string encoding's were: values of different kinds
 * never match (1 and '1'), -0 matches 0, NaN matches NaN. Rows with a NULL in the key are not
 * stored (the index skips them), so NULL never reaches this map.
 */
import type { Row, Value } from '../types.ts';
import { encodePart, type HashKey } from './index-key.ts';

type Level = Map<HashKey, Level | Row>;

export class NestedRows {
  private readonly root: Level = new Map();
  private readonly depth: number;
  private count = 0;

  constructor(depth: number) {
    this.depth = depth;
  }

  get size(): number {
    return this.count;
  }

  /**
   * The row under the key `source[positions[i]]` for each level i, or `source[i]` when
   * `positions` is undefined (lookup values given in index column order).
   */
  find(source: readonly Value[], positions: readonly number[] | undefined): Row | undefined {
    let level = this.root;
    const last = this.depth - 1;
    for (let i = 0; i < last; i++) {
      const next = level.get(encodePart(source[positions === undefined ? i : positions[i]]));
      if (next === undefined) return undefined;
      level = next as Level;
    }
    return level.get(encodePart(source[positions === undefined ? last : positions[last]])) as Row | undefined;
  }

  /** Stores `row` under its own key (the values at `positions`), replacing any row there. */
  set(row: Row, positions: readonly number[]): void {
    let level = this.root;
    const last = this.depth - 1;
    for (let i = 0; i < last; i++) {
      const key = encodePart(row[positions[i]]);
      let next = level.get(key) as Level | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(key, next);
      }
      level = next;
    }
    const key = encodePart(row[positions[last]]);
    if (!level.has(key)) this.count++;
    level.set(key, row);
  }

  /** Removes `row` if it is the row stored under its key; prunes levels left empty. */
  remove(row: Row, positions: readonly number[]): void {
    const path: Level[] = [];
    const keys: HashKey[] = [];
    let level = this.root;
    const last = this.depth - 1;
    for (let i = 0; i < last; i++) {
      const key = encodePart(row[positions[i]]);
      const next = level.get(key) as Level | undefined;
      if (next === undefined) return;
      path.push(level);
      keys.push(key);
      level = next;
    }
    const key = encodePart(row[positions[last]]);
    if (level.get(key) !== row) return;
    level.delete(key);
    this.count--;
    for (let i = path.length - 1; i >= 0 && level.size === 0; i--) {
      path[i].delete(keys[i]);
      level = path[i];
    }
  }
}
