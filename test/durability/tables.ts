/**
 * Helpers for the durability tests: a table of every column type built from real DDL, rows
 * written through the real Table API (with an undo log released as a commit would), and a
 * temporary data folder that is removed afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyDdl } from '../../engine/catalog/ddl.ts';
import type { Catalog } from '../../engine/catalog/schema.ts';
import { Table } from '../../engine/storage/table.ts';
import { UndoLog } from '../../engine/storage/undo.ts';
import type { Row, Value } from '../../engine/types.ts';

export const allTypesDdl = `
CREATE TABLE everything (
  id BIGINT NOT NULL PRIMARY KEY,
  tiny TINYINT, small SMALLINT, whole INTEGER, ratio FLOAT, price DECIMAL(12,2),
  label VARCHAR(40), payload VARBINARY(16), seen TIMESTAMP, flag BOOLEAN
);
CREATE INDEX everything_label ON everything (label);
`;

export function allTypesCatalog(): Catalog {
  return applyDdl(allTypesDdl);
}

/** Canonical values for row `i` of `everything`, with NULLs and edge values mixed in. */
export function allTypesValues(i: number): Value[] {
  return [
    i,
    i % 7 === 0 ? null : (i % 256) - 128,
    -32768 + (i % 65536),
    i % 2 === 0 ? 2147483647 - i : -2147483648 + i,
    i % 5 === 0 ? null : i / 3,
    Math.round(i * 1.25 * 100) / 100,
    i % 11 === 0 ? null : `label ${i} ü`,
    i % 13 === 0 ? null : new Uint8Array([i & 255, (i >> 8) & 255, 0, 255]),
    1_700_000_000_000 + i,
    i % 3 === 0 ? null : i % 2 === 0,
  ];
}

const undo = new UndoLog();

export function insertRow(table: Table, values: Value[]): Row {
  const row = table.newRow(values.slice());
  table.insert(row, undo);
  undo.release();
  return row;
}

export function updateRow(table: Table, row: Row, columns: number[], values: Value[]): void {
  table.update(row, columns, values, undo);
  undo.release();
}

export function deleteRow(table: Table, row: Row): void {
  table.delete(row, undo);
  undo.release();
}

/** The table's rows as plain values (binaries as byte arrays), in row-set order, with row ids. */
export function tableImage(table: Table): { values: unknown[]; rowId: number }[] {
  return Array.from(table.rows, (row) => ({ values: plainValues(row.slice(0, table.rowIdSlot)), rowId: row[table.rowIdSlot] as number }));
}

export function plainValues(values: readonly Value[]): unknown[] {
  return values.map((value) => (value instanceof Uint8Array ? Array.from(value) : value));
}

export function newTable(catalog: Catalog, name: string): Table {
  return new Table(catalog.tables.get(name)!);
}

export function temporaryFolder(folders: string[]): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'sluice-durability-'));
  folders.push(folder);
  return folder;
}

export function removeFolders(folders: string[]): void {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
}
