/**
 * INSERT, UPSERT, UPDATE and DELETE: planning and execution. Values are coerced to their
 * column's type at the write, so a wrong value names its column. UPDATE and DELETE find their
 * rows through the same access paths as SELECT, collect them first, then change them, so a write
 * never sees its own changes mid-scan.
 */
import type { Catalog, TableDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError, nearNames } from '../errors.ts';
import { coerceValue, isCanonical, type Row, type SqlType, type Value, type ValueTarget } from '../types.ts';
import { analyzeConjunct, andAll, chooseAccessPath, runAccessPath, type AccessPath } from './access.ts';
import { modifiedColumns, modifiedTypes, type ResultTable, type StorageAccess } from './context.ts';
import { at, bindExpression, type Bound, type Scope } from './expr.ts';
import type { Ast } from './parse.ts';
import { lookupTable, splitAnd } from './select.ts';
import { Table } from '../storage/table.ts';

const noFrame: Row[] = [];

export interface InsertPlan {
  readonly kind: 'insert';
  readonly table: TableDef;
  readonly upsert: boolean;
  /** One entry per VALUES row: per table column, the bound value or undefined for the default. */
  readonly rows: readonly (readonly (Bound | undefined)[])[];
  /** Columns named in the statement (UPSERT updates only these on conflict). */
  readonly named: readonly number[];
}

export interface UpdatePlan {
  readonly kind: 'update';
  readonly table: TableDef;
  readonly access: AccessPath;
  readonly filter: Bound | undefined;
  readonly columns: readonly number[];
  readonly values: readonly Bound[];
  /** Per SET column: its type, and where a value that needs converting is going (made once, not per row). */
  readonly types: readonly SqlType[];
  readonly targets: readonly ValueTarget[];
}

export interface DeletePlan {
  readonly kind: 'delete';
  readonly table: TableDef;
  readonly access: AccessPath;
  readonly filter: Bound | undefined;
}

export function planInsert(ast: Ast, catalog: Catalog, upsert: boolean): InsertPlan {
  const table = lookupTable(catalog, ast.table[0].table, ast.table[0]);
  if (table.kind === 'view') throw new SluiceError(ErrorCode.READ_ONLY, `view ${table.name} is maintained by Sluice and cannot be written`, { object: table.name });
  if (upsert && !table.primaryKey) throw new SluiceError(ErrorCode.INVALID_SCHEMA, `UPSERT into ${table.name} needs a primary key`, { object: table.name });
  if (ast.values?.type !== 'values') throw new SluiceError(ErrorCode.UNSUPPORTED, 'INSERT … SELECT is not supported; use VALUES');
  if (ast.on_duplicate_update) throw new SluiceError(ErrorCode.UNSUPPORTED, 'ON DUPLICATE KEY UPDATE is not supported; use UPSERT');
  const visible = table.columns.filter((column) => !column.hidden);
  const named = ast.columns
    ? (ast.columns as Ast[]).map((name) => columnPosition(table, String(typeof name === 'string' ? name : name.column ?? name.value)))
    : visible.map((column) => column.position);
  if (new Set(named).size !== named.length) throw new SluiceError(ErrorCode.DUPLICATE_OBJECT, `a column of ${table.name} is named twice in INSERT`);
  const scope: Scope = { sources: [], where: `INSERT INTO ${table.name}` };
  const rows = (ast.values.values as Ast[]).map((list, rowNumber) => {
    const values: Ast[] = list.value;
    if (values.length !== named.length) {
      throw new SluiceError(ErrorCode.PARAM_COUNT, `INSERT INTO ${table.name}: row ${rowNumber + 1} has ${values.length} values for ${named.length} columns`);
    }
    const bound: (Bound | undefined)[] = new Array(table.columns.length).fill(undefined);
    named.forEach((position, i) => (bound[position] = bindExpression(values[i], scope)));
    return bound;
  });
  return { kind: 'insert', table, upsert, rows, named };
}

export function planUpdate(ast: Ast, catalog: Catalog): UpdatePlan {
  if (ast.table.length !== 1) throw new SluiceError(ErrorCode.UNSUPPORTED, 'UPDATE of several tables is not supported');
  const table = lookupTable(catalog, ast.table[0].table, ast.table[0]);
  writable(table);
  const alias = String(ast.table[0].as ?? table.name).toLowerCase();
  const scope: Scope = { sources: [{ alias, table, slot: 0 }], where: `UPDATE ${table.name}` };
  const columns: number[] = [];
  const values: Bound[] = [];
  for (const item of ast.set as Ast[]) {
    const position = columnPosition(table, item.column, item);
    if (columns.includes(position)) throw new SluiceError(ErrorCode.DUPLICATE_OBJECT, `column ${table.name}.${item.column} is set twice`);
    columns.push(position);
    values.push(bindExpression(item.value, scope));
  }
  if (table.partitionColumn !== undefined && columns.includes(table.partitionColumn)) {
    // The row would belong to another partition; refused at plan time so that one partition and
    // many answer alike.
    throw new SluiceError(ErrorCode.UNSUPPORTED, `the partition column ${table.name}.${table.columns[table.partitionColumn].name} cannot be updated; delete and insert the row instead`, { object: `${table.name}.${table.columns[table.partitionColumn].name}` });
  }
  const { access, filter } = planRowSearch(table, ast.where, scope);
  const types = columns.map((position) => table.columns[position].type);
  const targets = columns.map((position) => ({ label: `column ${table.name}.${table.columns[position].name}` }));
  return { kind: 'update', table, access, filter, columns, values, types, targets };
}

export function planDelete(ast: Ast, catalog: Catalog): DeletePlan {
  const table = lookupTable(catalog, (ast.from ?? ast.table)[0].table, (ast.from ?? ast.table)[0]);
  writable(table);
  const scope: Scope = { sources: [{ alias: table.name, table, slot: 0 }], where: `DELETE FROM ${table.name}` };
  const { access, filter } = planRowSearch(table, ast.where, scope);
  return { kind: 'delete', table, access, filter };
}

function writable(table: TableDef): void {
  if (table.kind === 'view') throw new SluiceError(ErrorCode.READ_ONLY, `view ${table.name} is maintained by Sluice and cannot be written`, { object: table.name });
  if (table.kind === 'stream') throw new SluiceError(ErrorCode.READ_ONLY, `stream ${table.name} is insert-only`, { object: table.name });
}

function planRowSearch(table: TableDef, where: Ast, scope: Scope): { access: AccessPath; filter: Bound | undefined } {
  const conjuncts = splitAnd(where).map((node) => analyzeConjunct(node, bindExpression(node, scope), (side) => bindExpression(side, scope)));
  const access = chooseAccessPath(new Table(table), 0, conjuncts, new Set(), undefined);
  return { access, filter: andAll(conjuncts.filter((conjunct) => !access.consumed.has(conjunct))) };
}

function columnPosition(table: TableDef, name: string, node?: Ast): number {
  const column = table.columnsByName.get(String(name).toLowerCase());
  if (!column || column.hidden) {
    throw new SluiceError(ErrorCode.UNKNOWN_COLUMN, `unknown column ${name} in table ${table.name}`, {
      ...at(node),
      object: `${table.name}.${name}`,
      suggestions: nearNames(String(name), table.columns.filter((candidate) => !candidate.hidden).map((candidate) => candidate.name)),
    });
  }
  return column.position;
}

function modified(count: number): ResultTable {
  return { columns: modifiedColumns, types: modifiedTypes, rows: [[count]] };
}

/** Computes the canonical values of one VALUES row; shared by routing and execution. */
export function insertValues(plan: InsertPlan, rowIndex: number, params: readonly Value[]): Value[] {
  const table = plan.table;
  const bounds = plan.rows[rowIndex];
  const columns = table.columns;
  // Two spare slots: the row id and row position the table adds, so the array never regrows.
  const values = new Array<Value>(columns.length + 2);
  for (let i = 0; i < columns.length; i++) {
    const column = columns[i];
    const bound = bounds[i];
    if (bound === undefined) {
      values[i] = column.hidden ? 0 : column.defaultValue ?? null;
      continue;
    }
    const value = bound.evaluate(noFrame, params);
    values[i] = value === null || isCanonical(value, column.type) ? value : coerceValue(value, column.type, { label: `column ${table.name}.${column.name}` });
  }
  return values;
}

export function executeInsert(plan: InsertPlan, storage: StorageAccess, params: readonly Value[]): ResultTable {
  for (let r = 0; r < plan.rows.length; r++) insertRow(plan, insertValues(plan, r, params), storage);
  return modified(plan.rows.length);
}

/** Inserts (or for UPSERT, updates on a primary-key match) one row of computed values. */
export function insertRow(plan: InsertPlan, values: Value[], storage: StorageAccess): void {
  if (plan.upsert) {
    const table = storage.table(plan.table.name);
    const existing = findByPrimaryKey(table, values);
    if (existing) {
      storage.update(table, existing, plan.named, plan.named.map((position) => values[position]));
      return;
    }
  }
  storage.insert(plan.table, values);
}

function findByPrimaryKey(table: Table, values: Value[]): Row | undefined {
  const key = table.def.primaryKey!;
  let found: Row | undefined;
  table.index(key.name)!.forEachEqual(key.columns.map((column) => values[column]), (row) => {
    found = row;
    return false;
  });
  return found;
}

function matchingRows(plan: UpdatePlan | DeletePlan, table: Table, params: readonly Value[]): Row[] {
  const rows: Row[] = [];
  const frame: Row[] = [null as unknown as Row];
  runAccessPath(plan.access, table, frame, params, (row) => {
    frame[0] = row;
    if (!plan.filter || plan.filter.evaluate(frame, params) === true) rows.push(row);
    return true;
  });
  return rows;
}

export function executeUpdate(plan: UpdatePlan, storage: StorageAccess, params: readonly Value[]): ResultTable {
  const table = storage.table(plan.table.name);
  const rows = matchingRows(plan, table, params);
  const frame: Row[] = [null as unknown as Row];
  const { values: bounds, types, targets } = plan;
  // Every UPDATE of every procedure runs this: no closure, and no error label built per value.
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r];
    frame[0] = row;
    const values = new Array<Value>(bounds.length);
    for (let i = 0; i < bounds.length; i++) {
      const value = bounds[i].evaluate(frame, params);
      values[i] = value === null || isCanonical(value, types[i]) ? value : coerceValue(value, types[i], targets[i]);
    }
    storage.update(table, row, plan.columns, values);
  }
  return modified(rows.length);
}

export function executeDelete(plan: DeletePlan, storage: StorageAccess, params: readonly Value[]): ResultTable {
  const table = storage.table(plan.table.name);
  const rows = matchingRows(plan, table, params);
  for (const row of rows) storage.delete(table, row);
  return modified(rows.length);
}
