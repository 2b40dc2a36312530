/**
 * The planner's entry point: SQL text to a PlannedStatement, and the one function that runs a
 * plan on a partition. Also works out where a statement must run (routing): on one partition
 * when it reads only replicated tables or pins the partition column, on all of them otherwise.
 */
import type { Catalog, TableDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError, positionOf } from '../errors.ts';
import type { Value } from '../types.ts';
import { compileObjectExecutor, type ObjectExecutor } from './compiled.ts';
import { normalizeParam, normalizeParams } from './params.ts';
import type { ResultTable, StorageAccess } from './context.ts';
import { executeDelete, executeInsert, executeUpdate, planDelete, planInsert, planUpdate, type DeletePlan, type InsertPlan, type UpdatePlan } from './dml.ts';
import type { Bound } from './expr.ts';
import { firstLine, parseStatement } from './parse.ts';
import { executeSelect, explainSelect, planSelect, type SelectPlan } from './select.ts';
import { isSplitView } from './view-merge.ts';

export type Plan = SelectPlan | InsertPlan | UpdatePlan | DeletePlan;

/** Where a statement runs. `key` pins one partition through the partition column's value. */
export type Routing =
  | { readonly kind: 'any' }
  | { readonly kind: 'keyed'; readonly table: TableDef; readonly key: Bound }
  | { readonly kind: 'all' }
  | { readonly kind: 'insert'; readonly table: TableDef }
  | { readonly kind: 'replicated-write' };

export interface PlannedStatement {
  readonly sql: string;
  readonly plan: Plan;
  readonly parameterCount: number;
  readonly readOnly: boolean;
  readonly explain: boolean;
  readonly routing: Routing;
  /** Runs the statement on one partition with rows as objects, compiled where the shape allows (compiled.ts). */
  readonly objects: ObjectExecutor;
  /** `objects` normalizes the parameters itself: callers may pass them unnormalized. */
  readonly rawParams: boolean;
}

export function planStatement(sql: string, catalog: Catalog): PlannedStatement {
  const parsed = parseStatement(sql);
  const ast = parsed.ast;
  let plan: Plan;
  try {
    switch (ast.type) {
      case 'select':
        plan = planSelect(ast, catalog);
        break;
      case 'insert':
        plan = planInsert(ast, catalog, parsed.upsert);
        break;
      case 'replace':
        plan = planInsert(ast, catalog, true);
        break;
      case 'update':
        plan = planUpdate(ast, catalog);
        break;
      case 'delete':
        plan = planDelete(ast, catalog);
        break;
      default:
        throw new SluiceError(ErrorCode.UNSUPPORTED, `${String(ast.type).toUpperCase()} is not a query or DML statement; schema changes go through DDL`);
    }
  } catch (error) {
    if (error instanceof SluiceError && !error.details.statement) throw placeError(error, sql);
    throw error;
  }
  const base = {
    sql,
    plan,
    parameterCount: parsed.parameterCount,
    readOnly: plan.kind === 'select',
    explain: parsed.explain,
    routing: routeOf(plan),
  };
  const compiled = compileObjectExecutor(base, (storage, params) => executePlan(planned, storage, params));
  const planned: PlannedStatement = { ...base, objects: compiled.run, rawParams: compiled.rawParams };
  return planned;
}

/**
 * Names the statement in a binder error and turns the node offset it carries (see `at` in
 * expr.ts) into a line and column of `sql`. The message is rebuilt from its unrendered part, so
 * the position and suggestions are not rendered twice.
 */
function placeError(error: SluiceError, sql: string): SluiceError {
  const rendered = new SluiceError(error.code, '', error.details).message;
  const base = error.message.endsWith(rendered) ? error.message.slice(0, error.message.length - rendered.length) : error.message;
  const offset = error.details.position?.offset;
  const position = offset === undefined ? undefined : positionOf(sql, offset);
  return new SluiceError(error.code, `${base} in: ${firstLine(sql)}`, { ...error.details, position, statement: sql.trim() });
}

export function executePlan(statement: PlannedStatement, storage: StorageAccess, params: readonly Value[]): ResultTable {
  if (statement.explain) return explainResult(statement);
  const plan = statement.plan;
  switch (plan.kind) {
    case 'select':
      return executeSelect(plan, storage, params);
    case 'insert':
      return executeInsert(plan, storage, params);
    case 'update':
      return executeUpdate(plan, storage, params);
    case 'delete':
      return executeDelete(plan, storage, params);
  }
}

export function explainResult(statement: PlannedStatement): ResultTable {
  return { columns: ['plan'], types: [{ name: 'VARCHAR', length: 4096 }], rows: explain(statement).map((line) => [line]) };
}

export function explain(statement: PlannedStatement): string[] {
  const plan = statement.plan;
  const routing = statement.routing;
  const where =
    routing.kind === 'any' ? 'one partition (replicated data)'
      : routing.kind === 'keyed' ? `the partition of ${routing.table.name} key ${routing.key.text}`
      : routing.kind === 'insert' ? `the partition of each row's ${routing.table.name} key`
      : 'every partition';
  const head = `run on ${where}`;
  switch (plan.kind) {
    case 'select':
      return [head, ...explainSelect(plan)];
    case 'insert':
      return [head, `${plan.upsert ? 'upsert' : 'insert'} ${plan.rows.length} row(s) into ${plan.table.name}`];
    case 'update':
      return [head, `update ${plan.table.name} via ${plan.access.text}${plan.filter ? ` filter ${plan.filter.text}` : ''}`];
    case 'delete':
      return [head, `delete from ${plan.table.name} via ${plan.access.text}${plan.filter ? ` filter ${plan.filter.text}` : ''}`];
  }
}

function routeOf(plan: Plan): Routing {
  if (plan.kind === 'insert') {
    if (plan.table.partitionColumn !== undefined) return { kind: 'insert', table: plan.table };
    return plan.table.kind === 'stream' ? { kind: 'any' } : { kind: 'replicated-write' };
  }
  if (plan.kind === 'update' || plan.kind === 'delete') {
    if (!plan.table.partitioned) return { kind: 'replicated-write' };
    const key = pinnedKey(plan.table, plan.access.equal, plan.access.index);
    return key ? { kind: 'keyed', table: plan.table, key } : { kind: 'all' };
  }
  const partitioned = plan.levels.filter((level) => level.source.table.partitioned);
  if (partitioned.length === 0) return { kind: 'any' };
  // The coordinator runs the whole plan over the merged view and the replicated rows, so any
  // join order between them is answered correctly, LEFT JOINs included.
  if (plan.splitView) return { kind: 'all' };
  const split = partitioned.find((level) => isSplitView(level.source.table));
  if (split) {
    const view = split.source.table;
    throw new SluiceError(ErrorCode.UNSUPPORTED, `view ${view.name} holds partial groups on every partition (its GROUP BY leaves out the partition column of ${view.view!.source}); it can be joined only with replicated tables`, { object: view.name });
  }
  const first = partitioned[0];
  if (first.leftJoin) {
    // Each partition would null-extend the outer (replicated) rows that match only elsewhere,
    // so the merged result would repeat them: refuse rather than answer wrongly.
    throw new SluiceError(ErrorCode.UNSUPPORTED, `LEFT JOIN from replicated ${plan.levels[0].source.table.name} to partitioned ${first.source.table.name} is not supported; put the partitioned table first or use an inner join`);
  }
  if (partitioned.length > 1) {
    for (const level of partitioned.slice(1)) {
      if (!joinedOnPartitionColumns(level, partitioned)) {
        throw new SluiceError(ErrorCode.UNSUPPORTED, `partitioned tables ${first.source.table.name} and ${level.source.table.name} can only be joined on their partition columns`);
      }
    }
  }
  const key = first.source.slot === 0 ? pinnedKey(first.source.table, first.access.equal, first.access.index) : undefined;
  return key ? { kind: 'keyed', table: first.source.table, key } : { kind: 'all' };
}

/** The bound value of the partition column when an equality lookup pins it. */
function pinnedKey(table: TableDef, equal: readonly Bound[], indexName: string | undefined): Bound | undefined {
  if (table.partitionColumn === undefined || !indexName) return undefined;
  const index = table.indexes.find((candidate) => candidate.name === indexName);
  if (!index) return undefined;
  const position = index.columns.indexOf(table.partitionColumn);
  if (position === -1 || position >= equal.length) return undefined;
  const bound = equal[position];
  return bound.slots.size === 0 ? bound : undefined;
}

function joinedOnPartitionColumns(level: SelectPlan['levels'][number], partitioned: readonly SelectPlan['levels'][number][]): boolean {
  const column = level.source.table.partitionColumn;
  if (column === undefined) return false;
  const index = level.access.index ? level.source.table.indexes.find((candidate) => candidate.name === level.access.index) : undefined;
  const position = index ? index.columns.indexOf(column) : -1;
  if (position === -1 || position >= level.access.equal.length) return false;
  const other = level.access.equal[position].column;
  if (!other) return false;
  const otherLevel = partitioned.find((candidate) => candidate.source.slot === other.slot);
  return otherLevel !== undefined && otherLevel.source.table.partitionColumn === other.position;
}

export function checkParameterCount(statement: PlannedStatement, params: readonly unknown[]): void {
  if (params.length !== statement.parameterCount) {
    throw new SluiceError(ErrorCode.PARAM_COUNT, `statement expects ${statement.parameterCount} parameter(s), got ${params.length}: ${statement.sql.trim().split('\n')[0].slice(0, 100)}`, {
      statement: statement.sql,
    });
  }
}

export { normalizeParam, normalizeParams };
