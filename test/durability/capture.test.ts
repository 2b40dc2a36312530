/**
 * The consistent capture (engine/durability/capture.ts): an online capture, copied in slices
 * while rows are updated, deleted and inserted between the slices, yields exactly the image at
 * its barrier, as long as the write path calls beforeWrite; without the hook it would not
 * (which is why the hook exists). Also measures the barrier and the full copy of 1M rows once.
 */
import { describe, expect, it } from 'vitest';
import { PartitionCapture, captureAll, captureSliceRowsMax, type CapturedChunk } from '../../engine/durability/capture.ts';
import type { Row } from '../../engine/types.ts';
import { allTypesCatalog, allTypesValues, deleteRow, insertRow, newTable, plainValues, tableImage, updateRow } from './tables.ts';

function image(chunks: readonly CapturedChunk[]): { values: unknown[]; rowId: number }[] {
  return chunks.flatMap((chunk) => chunk.rows.map((values, i) => ({ values: plainValues(values), rowId: chunk.rowIds[i] })));
}

/** Runs a capture in slices of 50 rows, changing the table between slices. */
function captureWhileWriting(withHook: boolean): { barrier: ReturnType<typeof tableImage>; captured: ReturnType<typeof tableImage>; preserved: number } {
  const catalog = allTypesCatalog();
  const table = newTable(catalog, 'everything');
  const rows: Row[] = [];
  for (let i = 1; i <= 1000; i++) rows.push(insertRow(table, allTypesValues(i)));
  const barrier = tableImage(table);

  const capture = PartitionCapture.begin(3, [table]);
  const chunks: CapturedChunk[] = [];
  let nextId = 2000;
  let step = 0;
  for (let chunk = capture.nextSlice(50); chunk !== undefined; chunk = capture.nextSlice(50)) {
    chunks.push(chunk);
    // The transactions that ran between two slices: updates of rows far ahead of and behind the
    // slice cursor (an indexed column and a plain one), a delete, an insert, an update twice.
    step++;
    const ahead = rows[(step * 50 + 137) % rows.length];
    const behind = rows[(step * 11) % rows.length];
    for (const row of [ahead, behind, ahead]) {
      if (withHook) capture.beforeWrite(row);
      updateRow(table, row, [6, 9], [`changed ${step}`, true]);
    }
    const victim = rows[(step * 53 + 5) % rows.length];
    if (table.rows.has(victim)) deleteRow(table, victim);
    insertRow(table, allTypesValues(nextId++));
  }
  expect(capture.done).toBe(true);
  expect(chunks.every((chunk) => chunk.partition === 3 && chunk.table === 'everything' && chunk.rows.length <= 50)).toBe(true);
  return { barrier, captured: image(chunks), preserved: capture.preservedCount };
}

describe('partition capture', () => {
  it('copies exactly the image at its barrier while rows change between slices', () => {
    const { barrier, captured } = captureWhileWriting(true);
    expect(captured).toHaveLength(1000);
    expect(captured).toEqual(barrier);
  });

  it('would see the later values without the copy-on-write hook', () => {
    const { barrier, captured } = captureWhileWriting(false);
    expect(captured).not.toEqual(barrier);
  });

  it('captures every table of a partition, empty ones giving no chunk, and leaves rows untouched', () => {
    const catalog = allTypesCatalog();
    const full = newTable(catalog, 'everything');
    const empty = newTable(catalog, 'everything');
    for (let i = 1; i <= 10; i++) insertRow(full, allTypesValues(i));
    const before = tableImage(full);
    const chunks = captureAll(0, [empty, full], 4);
    expect(chunks.map((chunk) => chunk.rows.length)).toEqual([4, 4, 2]);
    expect(image(chunks)).toEqual(before);
    expect(tableImage(full)).toEqual(before);
    // Values only: no row id or position slot in a captured row.
    expect(chunks[0].rows[0]).toHaveLength(catalog.tables.get('everything')!.columns.length);
  });

  it('measures the barrier and the full copy of 1M rows (printed, not asserted on time)', () => {
    const catalog = allTypesCatalog();
    const table = newTable(catalog, 'everything');
    const values = allTypesValues(12);
    const count = 1_000_000;
    // Rows built directly: a million inserts through the indexes would dominate the test's time.
    for (let i = 1; i <= count; i++) {
      const row = values.slice();
      row[0] = i;
      table.rows.add(table.newRow(row));
    }
    let started = performance.now();
    const capture = PartitionCapture.begin(0, [table]);
    const barrierMs = performance.now() - started;
    const sliceMs: number[] = [];
    let copied = 0;
    for (;;) {
      started = performance.now();
      const chunk = capture.nextSlice();
      sliceMs.push(performance.now() - started);
      if (!chunk) break;
      copied += chunk.rows.length;
    }
    sliceMs.sort((a, b) => a - b);
    // What the barrier would cost with a RowSet method returning its array's slice() (integration).
    const references = Array.from(table.rows);
    started = performance.now();
    const referenceCopy = references.slice();
    const arraySliceMs = performance.now() - started;
    started = performance.now();
    const all = captureAll(0, [table]);
    const fullCopyMs = performance.now() - started;
    expect(copied).toBe(count);
    expect(referenceCopy).toHaveLength(count);
    expect(all.reduce((sum, chunk) => sum + chunk.rows.length, 0)).toBe(count);
    console.log(
      `capture of ${count} rows x ${catalog.tables.get('everything')!.columns.length} columns: barrier ${barrierMs.toFixed(1)} ms ` +
        `(array slice() of the references ${arraySliceMs.toFixed(1)} ms), ${captureSliceRowsMax}-row slices median ` +
        `${sliceMs[sliceMs.length >> 1].toFixed(2)} ms, longest ${sliceMs[sliceMs.length - 1].toFixed(2)} ms, full copy at a barrier ${fullCopyMs.toFixed(0)} ms`,
    );
  });
});
