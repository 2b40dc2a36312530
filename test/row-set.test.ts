/**
 * A table's row set (engine/storage/row-set.ts) across its chunk boundaries (65,536 rows), against
 * one plain array with the same rule (a deleted row's place goes to the last row): the same rows,
 * in the same order, each row knowing its position, through iteration, scan and toArray alike.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../engine/random.ts';
import { RowSet } from '../engine/storage/row-set.ts';
import type { Row } from '../engine/types.ts';

const positionSlot = 2;

/** The model: rows in order, and where each one is (so a delete needs no search). */
class Model {
  readonly rows: Row[] = [];
  private readonly positions = new Map<Row, number>();

  add(row: Row): void {
    this.positions.set(row, this.rows.length);
    this.rows.push(row);
  }

  delete(row: Row): void {
    const position = this.positions.get(row)!;
    this.positions.delete(row);
    const last = this.rows.pop()!;
    if (last !== row) {
      this.rows[position] = last;
      this.positions.set(last, position);
    }
  }
}

function expectSameRows(set: RowSet, { rows: model }: Model): void {
  expect(set.size).toBe(model.length);
  const iterated = [...set];
  const scanned: Row[] = [];
  set.scan((row) => {
    scanned.push(row);
    return true;
  });
  const copied = set.toArray();
  for (let i = 0; i < model.length; i++) {
    if (iterated[i] !== model[i] || scanned[i] !== model[i] || copied[i] !== model[i]) expect.fail(`row ${i} differs from the model`);
    if (model[i][positionSlot] !== i) expect.fail(`row ${i} records position ${String(model[i][positionSlot])}`);
  }
  expect([iterated.length, scanned.length, copied.length]).toEqual([model.length, model.length, model.length]);
}

describe('RowSet', () => {
  it('adds and deletes across chunks like one array', () => {
    const next = seededRandom(11);
    const set = new RowSet(positionSlot);
    const model = new Model();
    let id = 0;
    // Grow past three chunks, shrink below one (emptied chunks are dropped), grow again.
    for (const [target, deleteShare] of [
      [200_000, 0.1],
      [30_000, 0.9],
      [140_000, 0.2],
    ] as const) {
      const growing = target > model.rows.length;
      while (growing ? model.rows.length < target : model.rows.length > target) {
        const count = model.rows.length;
        if (count > 0 && next() < deleteShare) {
          const victim = next() < 0.3 ? model.rows[count - 1] : model.rows[Math.floor(next() * count)];
          set.delete(victim);
          model.delete(victim);
          if (victim[positionSlot] !== null || set.has(victim)) expect.fail(`row ${String(victim[0])} is still in the set after its delete`);
        } else {
          const row: Row = [id++, 'x', null];
          set.add(row);
          model.add(row);
          if (!set.has(row)) expect.fail(`row ${String(row[0])} is not in the set after its add`);
        }
      }
      expectSameRows(set, model);
    }
  });

  it('stops a scan when the visitor says so, and empties completely', () => {
    const set = new RowSet(positionSlot);
    const rows: Row[] = Array.from({ length: 70_000 }, (_, i) => [i, 'y', null]);
    for (const row of rows) set.add(row);
    let seen = 0;
    expect(set.scan(() => ++seen < 66_000)).toBe(false);
    expect(seen).toBe(66_000);
    const model = new Model();
    for (const row of rows) model.add(row);
    for (const row of rows.slice(0, 5)) {
      set.delete(row);
      model.delete(row);
    }
    expectSameRows(set, model);
    for (const row of [...set]) set.delete(row);
    expect(set.size).toBe(0);
    expect([...set]).toEqual([]);
    expect(set.has(rows[0])).toBe(false);
    expect(() => set.delete(rows[1])).toThrow(/recorded position/);
  });
});
