/**
 * Compiled executors: the statements a procedure runs on every call, turned into one generated
 * JavaScript function each, which return the rows as objects (what a procedure reads) without
 * building a ResultTable first. Used by the single-partition runner (execution/transaction.ts),
 * where a statement runs on the partition it was called on; the multi-partition paths keep the
 * ResultTable form, which they merge.
 *
 * Three shapes are compiled, because they are most of OLTP: a point lookup through a unique hash
 * index (SELECT … WHERE pk = ?), an UPDATE through one (UPDATE … SET … WHERE pk = ?) and a
 * one-row INSERT. Parameters and plain columns become array reads in the generated code; any
 * other expression stays the bound closure the planner made, so the semantics are the planner's
 * (the differential tests compare both paths). Every other statement runs the generic executor
 * and converts its ResultTable (`rowObjects`).
 */
import type { TableDef } from '../catalog/schema.ts';
import type { HashIndex } from '../storage/indexes.ts';
import type { Table } from '../storage/table.ts';
import { coerceValue, isCanonical, type Row, type SqlType, type Value } from '../types.ts';
import { normalizeParam } from './params.ts';
import type { ResultTable, StorageAccess } from './context.ts';
import type { Bound, Frame } from './expr.ts';
import type { InsertPlan, UpdatePlan } from './dml.ts';
import type { SelectPlan } from './select.ts';

/** A row as a procedure sees it. */
export type RowObject = Record<string, number | string | boolean | Uint8Array | null>;

/**
 * Runs a statement on one partition and returns its rows as objects; a write returns
 * `[{ modified_tuples: n }]`, as the ResultTable form does.
 */
export type ObjectExecutor = (storage: StorageAccess, params: readonly Value[]) => RowObject[];

export interface CompiledExecutor {
  readonly run: ObjectExecutor;
  /**
   * `run` normalizes each parameter as it reads it (it reads them all inline), so callers may
   * skip normalizeParams and pass the values as the procedure gave them.
   */
  readonly rawParams: boolean;
}

/** The parts of a planned statement the compiler reads (statement.ts owns the full type). */
export interface CompilableStatement {
  readonly plan: { readonly kind: string };
  readonly explain: boolean;
}

const rowFactories = new WeakMap<readonly string[], (row: Value[]) => RowObject>();

/** Builds row objects with a constructor compiled per column list: fast, monomorphic objects. */
export function rowObjects(result: ResultTable): RowObject[] {
  const factory = rowFactory(result.columns);
  const objects = new Array<RowObject>(result.rows.length);
  for (let i = 0; i < objects.length; i++) objects[i] = factory(result.rows[i]);
  return objects;
}

function rowFactory(columns: readonly string[]): (row: Value[]) => RowObject {
  let factory = rowFactories.get(columns);
  if (!factory) {
    factory = new Function('row', `return { ${columns.map((name, i) => `${JSON.stringify(name)}: row[${i}]`).join(', ')} };`) as (row: Value[]) => RowObject;
    rowFactories.set(columns, factory);
  }
  return factory;
}

/**
 * The object executor of a statement: compiled when its shape allows, otherwise `generic` (the
 * statement's ResultTable executor) followed by `rowObjects`.
 */
export function compileObjectExecutor(
  statement: CompilableStatement,
  generic: (storage: StorageAccess, params: readonly Value[]) => ResultTable,
): CompiledExecutor {
  const plan = statement.plan as SelectPlan | InsertPlan | UpdatePlan;
  if (!statement.explain) {
    if (plan.kind === 'select' && isCompilableLookup(plan)) return compilePointLookup(plan);
    if (plan.kind === 'insert' && plan.rows.length === 1 && !plan.upsert) return compileInsert(plan);
    if (plan.kind === 'update' && plan.access.kind === 'unique') return compileUpdate(plan);
  }
  return { run: (storage, params) => rowObjects(generic(storage, params)), rawParams: false };
}

// --- point lookups ----------------------------------------------------------------------------

function isCompilableLookup(plan: SelectPlan): boolean {
  // LIMIT/OFFSET on a one-row answer are rare: the generic point-lookup path handles them.
  return plan.pointLookup !== undefined && plan.limit === undefined && plan.offset === undefined;
}

/** An expression as generated code: a parameter or column read inline, anything else a call. */
function expressionCode(bound: Bound, closures: Bound['evaluate'][], rowVariable: string | undefined, parameters: Set<number>): string {
  if (isPlainParameter(bound)) {
    parameters.add(bound.parameter!);
    return `p${bound.parameter}`;
  }
  if (rowVariable !== undefined && bound.column !== undefined && bound.column.slot === 0) return `${rowVariable}[${bound.column.position}]`;
  if (bound.constant !== undefined && isInlineConstant(bound.constant.value)) return JSON.stringify(bound.constant.value);
  closures.push(bound.evaluate);
  return `closures[${closures.length - 1}](frame, params)`;
}

/** A bound that is exactly `?` (comparableTo may wrap a parameter in a conversion and keep no `parameter`). */
function isPlainParameter(bound: Bound): boolean {
  return bound.parameter !== undefined && bound.slots.size === 0;
}

function isInlineConstant(value: Value): boolean {
  return value === null || typeof value === 'boolean' || typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value) && !Object.is(value, -0));
}

/**
 * The parameters a compiled function reads, loaded once at its top. With `normalize`, each is
 * brought to canonical form as normalizeParams would (bigint → number, Date → ms, undefined →
 * NULL), in parameter order, so the caller may pass the procedure's values as they are.
 */
function parameterLines(parameters: ReadonlySet<number>, normalize: boolean): string[] {
  return [...parameters]
    .sort((a, b) => a - b)
    .map((index) =>
      normalize
        ? `let p${index} = params[${index}]; if (typeof p${index} !== 'number' && typeof p${index} !== 'string' && typeof p${index} !== 'boolean' && p${index} !== null) p${index} = normalizeParam(p${index}, ${index});`
        : `const p${index} = params[${index}];`,
    );
}

/**
 * The cache of the index a compiled lookup probes, per partition: a partition's tables are
 * replaced on a schema change, which bumps its `catalogGeneration`.
 */
interface IndexCache {
  storage: StorageAccess | undefined;
  generation: number;
  index: HashIndex | undefined;
}

function compilePointLookup(plan: SelectPlan): CompiledExecutor {
  const level = plan.levels[0];
  const tableName = level.source.table.name;
  const indexName = level.access.index!;
  const closures: Bound['evaluate'][] = [];
  const parameters = new Set<number>();
  const frame: Frame = plan.pointLookup!.frame;
  const key: Value[] = plan.pointLookup!.key;
  const cache: IndexCache = { storage: undefined, generation: -1, index: undefined };
  const resolve = (storage: StorageAccess): HashIndex => {
    cache.index = storage.table(tableName).index(indexName) as HashIndex;
    cache.storage = storage;
    cache.generation = storage.catalogGeneration;
    return cache.index;
  };
  const equal = level.access.equal;
  const lines: string[] = [];
  // An empty answer is a fresh [] (the caller owns it); a found row is returned as [row].
  if (plan.constantFilter) {
    closures.push(plan.constantFilter.evaluate);
    lines.push(`if (closures[${closures.length - 1}](frame, params) !== true) return [];`);
  }
  lines.push(...uniqueProbeLines(equal, closures, parameters, '[]'));
  // Closures read the row through the frame; plain columns read it directly.
  const projection = plan.projection.map((bound) => expressionCode(bound, closures, 'row', parameters));
  const needsFrame = closures.length > 0 || level.where !== undefined;
  if (needsFrame) lines.push('frame[0] = row;');
  const fields = plan.columns.map((name, i) => `${JSON.stringify(name)}: ${projection[i]}`).join(', ');
  if (level.where) {
    closures.push(level.where.evaluate);
    lines.push(`const rows = closures[${closures.length - 1}](frame, params) === true ? [{ ${fields} }] : [];`);
  } else {
    lines.push(`const rows = [{ ${fields} }];`);
  }
  // The frame is the plan's: clear it so it does not keep a deleted row alive.
  if (needsFrame) lines.push('frame[0] = null;');
  lines.push('return rows;');
  // Closures read the parameter array themselves: only without any can it arrive unnormalized.
  const rawParams = closures.length === 0;
  const body = [...parameterLines(parameters, rawParams), ...lines].join('\n');
  const factory = new Function('closures', 'frame', 'key', 'cache', 'resolve', 'normalizeParam', `"use strict"; return function pointLookup(storage, params) {\n${body}\n};`);
  return { run: factory(closures, frame, key, cache, resolve, normalizeParam) as ObjectExecutor, rawParams };
}

/**
 * Generated lines that set `row` to the row a unique index holds for the key `equal` computes, or
 * return `missing` when a key value is NULL or no row has it. They read the factory's `cache`
 * (the index, per partition and catalog generation), `resolve` and `key` (a reused key array).
 */
function uniqueProbeLines(equal: readonly Bound[], closures: Bound['evaluate'][], parameters: Set<number>, missing: string): string[] {
  const lines: string[] = [];
  for (let i = 0; i < equal.length; i++) {
    lines.push(`const k${i} = ${expressionCode(equal[i], closures, undefined, parameters)};`);
    lines.push(`if (k${i} === null || k${i} === undefined) return ${missing};`);
  }
  lines.push('const index = storage === cache.storage && storage.catalogGeneration === cache.generation ? cache.index : resolve(storage);');
  if (equal.length === 1) {
    lines.push('const row = index.getOne(k0);');
  } else {
    for (let i = 0; i < equal.length; i++) lines.push(`key[${i}] = k${i};`);
    lines.push('const row = index.getUnique(key);');
  }
  lines.push(`if (row === undefined) return ${missing};`);
  return lines;
}

// --- one-row inserts --------------------------------------------------------------------------

/** Inline code that is true when `variable` is already canonical for `type` (isCanonical, unrolled). */
function canonicalCode(variable: string, type: SqlType): string | undefined {
  switch (type.name) {
    case 'INTEGER':
      return `(typeof ${variable} === 'number' && (${variable} | 0) === ${variable})`;
    case 'BIGINT':
    case 'TIMESTAMP':
      return `Number.isSafeInteger(${variable})`;
    case 'FLOAT':
      return `typeof ${variable} === 'number'`;
    case 'VARCHAR':
      return `(typeof ${variable} === 'string' && ${variable}.length <= ${type.length!})`;
    case 'BOOLEAN':
      return `typeof ${variable} === 'boolean'`;
  }
  return undefined;
}

function compileInsert(plan: InsertPlan): CompiledExecutor {
  const table: TableDef = plan.table;
  const columns = table.columns;
  const bounds = plan.rows[0];
  const closures: Bound['evaluate'][] = [];
  const parameters = new Set<number>();
  const defaults: Value[] = columns.map((column) => (column.hidden ? 0 : column.defaultValue ?? null));
  const types: SqlType[] = columns.map((column) => column.type);
  const coerce = (value: Value, position: number): Value => {
    const column = columns[position];
    return coerceValue(value, column.type, { label: `column ${table.name}.${column.name}` });
  };
  const lines: string[] = [];
  const entries: string[] = [];
  for (let i = 0; i < columns.length; i++) {
    const bound = bounds[i];
    if (bound === undefined) {
      entries.push(`defaults[${i}]`);
      continue;
    }
    lines.push(`const v${i} = ${expressionCode(bound, closures, undefined, parameters)};`);
    const canonical = canonicalCode(`v${i}`, types[i]) ?? `isCanonical(v${i}, types[${i}])`;
    lines.push(`const c${i} = v${i} === null || ${canonical} ? v${i} : coerce(v${i}, ${i});`);
    entries.push(`c${i}`);
  }
  // One array literal, with the two slots the table fills (row id, position): a stored row is
  // allocated whole, in its final shape, and never regrows.
  lines.push(`const values = [${entries.join(', ')}, 0, null];`);
  lines.push('storage.insert(table, values);');
  lines.push('return [{ modified_tuples: 1 }];');
  const rawParams = closures.length === 0;
  const body = [...parameterLines(parameters, rawParams), ...lines].join('\n');
  const factory = new Function('closures', 'frame', 'defaults', 'types', 'table', 'isCanonical', 'coerce', 'normalizeParam', `"use strict"; return function insertOne(storage, params) {\n${body}\n};`);
  const noFrame: Row[] = [];
  return { run: factory(closures, noFrame, defaults, types, table, isCanonical, coerce, normalizeParam) as ObjectExecutor, rawParams };
}

// --- updates through a unique index ----------------------------------------------------------

/** IndexCache with the table a compiled update writes to. */
interface TableCache extends IndexCache {
  table: Table | undefined;
}

/**
 * UPDATE … SET … WHERE <unique key> = …: finds the row with one probe, evaluates the SET values
 * against it in order (each converted right after it is computed, as executeUpdate does) and
 * writes them. The generic path collects matching rows through a visitor closure into an array
 * first; every IngestReading of the smart meter runs one of these.
 */
function compileUpdate(plan: UpdatePlan): CompiledExecutor {
  const tableName = plan.table.name;
  const indexName = plan.access.index!;
  const closures: Bound['evaluate'][] = [];
  const parameters = new Set<number>();
  const frame: Row[] = [null as unknown as Row];
  const key = new Array<Value>(plan.access.equal.length);
  const cache: TableCache = { storage: undefined, generation: -1, table: undefined, index: undefined };
  const resolve = (storage: StorageAccess): HashIndex => {
    cache.table = storage.table(tableName);
    cache.index = cache.table.index(indexName) as HashIndex;
    cache.storage = storage;
    cache.generation = storage.catalogGeneration;
    return cache.index;
  };
  const coerce = (value: Value, i: number): Value => coerceValue(value, plan.types[i], plan.targets[i]);
  const lines = uniqueProbeLines(plan.access.equal, closures, parameters, '[{ modified_tuples: 0 }]');
  const body: string[] = [];
  if (plan.filter) {
    closures.push(plan.filter.evaluate);
    body.push(`if (closures[${closures.length - 1}](frame, params) !== true) return [{ modified_tuples: 0 }];`);
  }
  const entries: string[] = [];
  for (let i = 0; i < plan.values.length; i++) {
    body.push(`const v${i} = ${expressionCode(plan.values[i], closures, 'row', parameters)};`);
    const canonical = canonicalCode(`v${i}`, plan.types[i]) ?? `isCanonical(v${i}, types[${i}])`;
    body.push(`const c${i} = v${i} === null || ${canonical} ? v${i} : coerce(v${i}, ${i});`);
    entries.push(`c${i}`);
  }
  // Closures read the row through the frame; the frame is cleared afterwards (even on an error)
  // so it does not keep a deleted row alive.
  body.push(`storage.update(cache.table, row, columns, [${entries.join(', ')}]);`, 'return [{ modified_tuples: 1 }];');
  if (closures.length > 0) lines.push('frame[0] = row;', 'try {', ...body, '} finally { frame[0] = null; }');
  else lines.push(...body);
  const rawParams = closures.length === 0;
  const source = [...parameterLines(parameters, rawParams), ...lines].join('\n');
  const factory = new Function('closures', 'frame', 'key', 'cache', 'resolve', 'columns', 'types', 'isCanonical', 'coerce', 'normalizeParam', `"use strict"; return function updateOne(storage, params) {\n${source}\n};`);
  return { run: factory(closures, frame, key, cache, resolve, plan.columns, plan.types, isCanonical, coerce, normalizeParam) as ObjectExecutor, rawParams };
}

/** For tests: whether a statement runs compiled code (rather than the generic executor). */
export function isCompiled(executor: ObjectExecutor): boolean {
  return executor.name === 'pointLookup' || executor.name === 'insertOne' || executor.name === 'updateOne';
}
