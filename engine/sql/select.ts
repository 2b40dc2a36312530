/**
 * SELECT: planning and execution. The plan is a list of source levels (access path, join kind,
 * filters), then grouping, HAVING, projection, DISTINCT, ORDER BY and OFFSET/LIMIT. Execution is
 * split where a multi-partition query splits: `collect` runs on each partition and yields frames
 * (the joined, filtered source rows); `finish` runs once over all frames. On one partition the
 * two run back to back, and a query without grouping, sorting or DISTINCT streams rows straight
 * to the result, stopping at LIMIT.
 */
import type { Catalog, TableDef } from '../catalog/schema.ts';
import { visibleColumns } from '../catalog/schema.ts';
import { ErrorCode, SluiceError, nearNames } from '../errors.ts';
import { encodeComposite } from '../storage/index-key.ts';
import { Table } from '../storage/table.ts';
import type { HashIndex } from '../storage/indexes.ts';
import { compareValues, roundDecimal, type Row, type SqlType, type Value } from '../types.ts';
import { analyzeConjunct, andAll, chooseAccessPath, runAccessPath, tableShape, type AccessPath, type Conjunct } from './access.ts';
import type { ResultTable, StorageAccess, TableSource } from './context.ts';
import { at, bindExpression, type AggregateCall, type Bound, type Frame, type Scope, type Source } from './expr.ts';
import type { Ast } from './parse.ts';
import { explainSplitView, gatherSplitView, mergeSplitView, planSplitView, type SplitViewRead } from './view-merge.ts';

export interface SourceLevel {
  readonly source: Source;
  readonly leftJoin: boolean;
  readonly access: AccessPath;
  /** ON conjuncts not consumed by the access path (decide whether a left row has a match). */
  readonly on: Bound | undefined;
  /** WHERE conjuncts first evaluable at this level. */
  readonly where: Bound | undefined;
}

interface OrderKey {
  readonly bound: Bound;
  readonly descending: boolean;
}

export interface SelectPlan {
  readonly kind: 'select';
  readonly levels: readonly SourceLevel[];
  readonly constantFilter: Bound | undefined;
  readonly grouped: boolean;
  readonly groupBy: readonly Bound[];
  readonly aggregates: readonly AggregateCall[];
  readonly aggregateSlot: number;
  readonly having: Bound | undefined;
  readonly projection: readonly Bound[];
  readonly columns: readonly string[];
  readonly types: readonly (SqlType | undefined)[];
  readonly distinct: boolean;
  readonly orderBy: readonly OrderKey[];
  /** The first level's access path already yields ORDER BY order. */
  readonly orderedByIndex: boolean;
  readonly limit: Bound | undefined;
  readonly offset: Bound | undefined;
  readonly tables: readonly TableDef[];
  /**
   * Set when every group lives on one partition (the GROUP BY includes the partition column of
   * the only source): each partition then finishes its groups, HAVING included, and the
   * coordinator only concatenates, sorts and limits. Without it a GROUP BY over a key as fine as
   * the rows (per phone number) sends every group to the coordinator to be merged with nothing.
   */
  readonly groupsConfined: boolean;
  /** Set when the query reads a view split across partitions: how a multi-partition read
   * gathers and merges its partial groups before the rest of the plan runs (view-merge.ts). */
  readonly splitView: SplitViewRead | undefined;
  /** Set when the query is a single unique-index lookup: scratch space for the fast path. */
  readonly pointLookup: { readonly frame: Frame; readonly key: Value[] } | undefined;
}

export function planSelect(ast: Ast, catalog: Catalog): SelectPlan {
  if (ast.with) throw new SluiceError(ErrorCode.UNSUPPORTED, 'WITH is not supported');
  if (ast._next || ast.set_op) throw new SluiceError(ErrorCode.UNSUPPORTED, 'UNION/INTERSECT/EXCEPT are not supported');
  const fromItems: Ast[] = ast.from ?? [];
  const sources: Source[] = fromItems.map((item, slot) => {
    if (item.expr) throw new SluiceError(ErrorCode.UNSUPPORTED, 'subqueries in FROM are not supported');
    const table = lookupTable(catalog, item.table, item);
    const alias = String(item.as ?? item.table).toLowerCase();
    return { alias, table, slot };
  });
  const aliasesSeen = new Set<string>();
  for (const source of sources) {
    if (aliasesSeen.has(source.alias)) throw new SluiceError(ErrorCode.AMBIGUOUS_COLUMN, `table name ${source.alias} is used twice in FROM; give one an alias`);
    aliasesSeen.add(source.alias);
  }
  const aggregateSlot = sources.length;
  const baseScope: Scope = { sources, where: 'WHERE' };

  // Conjuncts: WHERE's, and each join's ON (with USING expanded to equalities).
  const whereConjuncts = splitAnd(ast.where).map((node) => conjunctOf(node, baseScope));
  const onConjuncts = fromItems.map((item, slot) => {
    const nodes: Ast[] = [];
    if (item.on) nodes.push(...splitAnd(item.on));
    if (item.using) {
      for (const column of item.using as Ast[]) {
        const name = String(column.value ?? column.column ?? column).toLowerCase();
        const left = sources.slice(0, slot).find((source) => source.table.columnsByName.has(name));
        if (!left) throw new SluiceError(ErrorCode.UNKNOWN_COLUMN, `USING column ${name} is not in an earlier table`, { object: name });
        nodes.push({ type: 'binary_expr', operator: '=', left: { type: 'column_ref', table: left.alias, column: name }, right: { type: 'column_ref', table: sources[slot].alias, column: name } });
      }
    }
    const scope: Scope = { sources: sources.slice(0, slot + 1), where: `the ON clause of ${sources[slot].alias}` };
    return nodes.map((node) => conjunctOf(node, scope));
  });
  const joinKinds = fromItems.map((item) => String(item.join ?? 'INNER JOIN').toUpperCase());
  for (const kind of joinKinds) {
    if (kind !== 'INNER JOIN' && kind !== 'JOIN' && kind !== 'LEFT JOIN' && kind !== 'LEFT OUTER JOIN' && kind !== 'CROSS JOIN') {
      throw new SluiceError(ErrorCode.UNSUPPORTED, `${kind} is not supported (inner and left joins are)`);
    }
  }
  const isLeft = joinKinds.map((kind) => kind.startsWith('LEFT'));

  // Aliases and the select list, then ORDER BY (which may use aliases and aggregates).
  const aggregates: AggregateCall[] = [];
  const selectScope: Scope = { sources, aggregates, aggregateSlot, where: 'the SELECT list' };
  const projection: Bound[] = [];
  const columns: string[] = [];
  for (const item of ast.columns as Ast[]) {
    const expr = item.expr;
    if (expr.type === 'column_ref' && expr.column === '*') {
      const qualifier = expr.table ? String(expr.table).toLowerCase() : undefined;
      const chosen = sources.filter((source) => !qualifier || source.alias === qualifier);
      if (qualifier && chosen.length === 0) throw new SluiceError(ErrorCode.UNKNOWN_TABLE, `unknown table or alias ${qualifier} in the SELECT list`, { object: qualifier });
      for (const source of chosen) {
        for (const column of visibleColumns(source.table)) {
          projection.push(bindExpression({ type: 'column_ref', table: source.alias, column: column.name }, selectScope));
          columns.push(column.name);
        }
      }
      continue;
    }
    projection.push(bindExpression(expr, selectScope));
    columns.push(item.as ? String(item.as).toLowerCase() : defaultColumnName(expr, projection.length));
  }
  const aliases = new Map<string, Bound>();
  columns.forEach((name, i) => aliases.set(name, projection[i]));
  const groupScope: Scope = { sources, aliases, where: 'GROUP BY' };
  const groupBy: Bound[] = (ast.groupby?.columns ?? []).map((node: Ast) => bindOrdinal(node, projection) ?? bindExpression(node, groupScope));
  const havingScope: Scope = { sources, aggregates, aggregateSlot, aliases, where: 'HAVING' };
  const having = ast.having ? bindExpression(ast.having, havingScope) : undefined;
  const orderScope: Scope = { sources, aggregates, aggregateSlot, aliases, where: 'ORDER BY' };
  const orderBy: OrderKey[] = (ast.orderby ?? []).map((item: Ast) => ({
    bound: bindOrdinal(item.expr, projection) ?? bindExpression(item.expr, orderScope),
    descending: String(item.type ?? 'ASC').toUpperCase() === 'DESC',
  }));
  const grouped = groupBy.length > 0 || aggregates.length > 0;
  if (grouped) checkGroupedColumns(projection, columns, groupBy, aggregateSlot);
  const distinct = String(ast.distinct ?? '').toUpperCase() === 'DISTINCT';

  // Levels: each WHERE conjunct goes to the first level where all its sources are bound.
  const constant = whereConjuncts.filter((conjunct) => conjunct.bound.slots.size === 0);
  const levels: SourceLevel[] = [];
  const available = new Set<number>();
  for (const source of sources) {
    const slot = source.slot;
    const whereHere = whereConjuncts.filter((conjunct) => conjunct.bound.slots.size > 0 && maxSlot(conjunct.bound) === slot);
    const onHere = onConjuncts[slot];
    const forAccess = isLeft[slot] ? onHere : [...onHere, ...whereHere];
    let order: { position: number; descending: boolean }[] | undefined;
    if (slot === 0 && !grouped && !distinct && orderBy.length > 0 && orderBy.every((key) => key.bound.column?.slot === 0)) {
      order = orderBy.map((key) => ({ position: key.bound.column!.position, descending: key.descending }));
    }
    const access = chooseAccessPath(tableShape(source.table), slot, forAccess, available, order);
    const remainingOn = onHere.filter((conjunct) => !access.consumed.has(conjunct));
    const remainingWhere = whereHere.filter((conjunct) => isLeft[slot] || !access.consumed.has(conjunct));
    levels.push({ source, leftJoin: isLeft[slot], access, on: andAll(remainingOn), where: andAll(remainingWhere) });
    available.add(slot);
  }
  const orderedByIndex = orderBy.length > 0 && levels.length > 0 && levels[0].access.ordered && levels.slice(1).every((level) => level.access.kind === 'unique' && !level.leftJoin);
  const partitionColumn = sources.length === 1 && sources[0].table.partitioned ? sources[0].table.partitionColumn : undefined;
  const groupsConfined = partitionColumn !== undefined && groupBy.some((bound) => bound.column?.slot === 0 && bound.column.position === partitionColumn);
  const limitScope: Scope = { sources: [], where: 'LIMIT' };
  const [limit, offset] = bindLimit(ast.limit, limitScope);
  return {
    kind: 'select',
    levels,
    constantFilter: andAll(constant),
    grouped,
    groupBy,
    aggregates,
    aggregateSlot,
    having,
    projection,
    columns,
    types: projection.map((bound) => bound.type),
    distinct,
    orderBy,
    orderedByIndex,
    limit,
    offset,
    tables: sources.map((source) => source.table),
    groupsConfined,
    splitView: planSplitView(sources, levels, whereConjuncts, onConjuncts, andAll(constant)),
    pointLookup:
      levels.length === 1 && levels[0].access.kind === 'unique' && !grouped && !distinct && orderBy.length === 0
        ? { frame: [null as unknown as Row, null as unknown as Row], key: new Array(levels[0].access.equal.length) }
        : undefined,
  };
}

function conjunctOf(node: Ast, scope: Scope): Conjunct {
  const bound = bindExpression(node, scope);
  return analyzeConjunct(node, bound, (side) => bindExpression(side, scope));
}

export function splitAnd(node: Ast): Ast[] {
  if (!node) return [];
  if (node.type === 'binary_expr' && String(node.operator).toUpperCase() === 'AND') return [...splitAnd(node.left), ...splitAnd(node.right)];
  if (node.parentheses && node.type === 'binary_expr' && String(node.operator).toUpperCase() === 'AND') return splitAnd({ ...node, parentheses: false });
  return [node];
}

function maxSlot(bound: Bound): number {
  let max = -1;
  for (const slot of bound.slots) if (slot > max) max = slot;
  return max;
}

function bindOrdinal(node: Ast, projection: Bound[]): Bound | undefined {
  if (node?.type === 'number' && Number.isInteger(Number(node.value))) {
    const ordinal = Number(node.value);
    if (ordinal < 1 || ordinal > projection.length) throw new SluiceError(ErrorCode.UNKNOWN_COLUMN, `ORDER/GROUP BY position ${ordinal} is not in the select list (1..${projection.length})`);
    return projection[ordinal - 1];
  }
  return undefined;
}

function bindLimit(limit: Ast, scope: Scope): [Bound | undefined, Bound | undefined] {
  const values: Ast[] = limit?.value ?? [];
  if (values.length === 0) return [undefined, undefined];
  const bound = values.map((node) => bindExpression(node, scope));
  if (values.length === 1) return [bound[0], undefined];
  // MySQL: LIMIT offset, count; standard: LIMIT count OFFSET offset.
  return limit.seperator === 'offset' ? [bound[0], bound[1]] : [bound[1], bound[0]];
}

function defaultColumnName(expr: Ast, position: number): string {
  if (expr.type === 'column_ref') return String(expr.column).toLowerCase();
  if (expr.type === 'aggr_func') {
    const argument = expr.args?.expr;
    const name = String(expr.name).toLowerCase();
    return argument?.type === 'column_ref' ? `${name}_${String(argument.column).toLowerCase()}` : name;
  }
  return `c${position}`;
}

function checkGroupedColumns(projection: Bound[], columns: string[], groupBy: Bound[], aggregateSlot: number): void {
  const groupColumns = new Set(groupBy.filter((bound) => bound.column).map((bound) => `${bound.column!.slot}:${bound.column!.position}`));
  const groupTexts = new Set(groupBy.map((bound) => bound.text));
  projection.forEach((bound, i) => {
    if (groupTexts.has(bound.text)) return;
    if (bound.slots.size === 0) return;
    if ([...bound.slots].every((slot) => slot === aggregateSlot)) return;
    if (bound.column && groupColumns.has(`${bound.column.slot}:${bound.column.position}`)) return;
    if (bound.slots.has(aggregateSlot)) return;
    throw new SluiceError(ErrorCode.NOT_GROUPED, `column ${columns[i]} must appear in GROUP BY or be used in an aggregate`, { object: columns[i] });
  });
}

/** The table (or stream or view) named in FROM/INTO; `node` places the error in the text. */
export function lookupTable(catalog: Catalog, name: string, node?: Ast): TableDef {
  const table = catalog.tables.get(String(name).toLowerCase());
  if (!table) {
    throw new SluiceError(ErrorCode.UNKNOWN_TABLE, `unknown table ${name}`, { ...at(node), object: String(name), suggestions: nearNames(String(name), catalog.tables.keys()) });
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// Execution

/** Runs every level's loop, calling `emit` with the frame for each joined row; false stops. */
function forEachFrame(plan: SelectPlan, storage: TableSource, params: readonly Value[], emit: (frame: Frame) => boolean): void {
  if (plan.constantFilter && plan.constantFilter.evaluate([], params) !== true) return;
  const levels = plan.levels;
  const frame: Frame = new Array(levels.length + 1).fill(null);
  if (levels.length === 0) {
    emit(frame);
    return;
  }
  const tables = levels.map((level) => storage.table(level.source.table.name));
  const descend = (depth: number): boolean => {
    const level = levels[depth];
    const slot = level.source.slot;
    let matched = false;
    const going = runAccessPath(level.access, tables[depth], frame, params, (row) => {
      frame[slot] = row;
      if (level.on && level.on.evaluate(frame, params) !== true) return true;
      matched = true;
      if (level.where && level.where.evaluate(frame, params) !== true) return true;
      return depth + 1 === levels.length ? emit(frame) : descend(depth + 1);
    });
    if (!going) return false;
    if (level.leftJoin && !matched) {
      frame[slot] = null as unknown as Row;
      if (!level.where || level.where.evaluate(frame, params) === true) {
        if (!(depth + 1 === levels.length ? emit(frame) : descend(depth + 1))) return false;
      }
    }
    frame[slot] = null as unknown as Row;
    return true;
  };
  descend(0);
}

function limitValue(bound: Bound | undefined, params: readonly Value[], what: string): number | undefined {
  if (!bound) return undefined;
  const value = bound.evaluate([], params);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new SluiceError(ErrorCode.PARAM_TYPE, `${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

/** Streams without grouping/sorting: the fast path, and where LIMIT stops the scan early. */
function canStream(plan: SelectPlan): boolean {
  return !plan.grouped && !plan.distinct && (plan.orderBy.length === 0 || plan.orderedByIndex);
}

/**
 * Per-partition half of a multi-partition SELECT: the frames of the query (copied, so they
 * outlive the scan), or, when it reads a split view, the rows to merge (view-merge.ts).
 */
export function collectFrames(plan: SelectPlan, storage: StorageAccess, params: readonly Value[]): Frame[] {
  if (plan.splitView) return gatherSplitView(plan.splitView, storage, params);
  return localFrames(plan, storage, params);
}

/**
 * Grouped queries whose aggregates can be combined (no DISTINCT) are pre-aggregated where the
 * rows are: each partition sends one frame per group, carrying partial states instead of every
 * row, and the coordinator merges them (mergePartialGroups). Both halves always pair up: every
 * frame finishFrames receives for such a plan comes from localFrames.
 */
function aggregatesLocally(plan: SelectPlan): boolean {
  return plan.grouped && plan.aggregates.every((call) => !call.distinct);
}

/** Partial states in the aggregate slot: [count, value, sum] per aggregate, flat. */
const partialWidth = 3;

/** The groups of one grouped query: found by the GROUP BY key, each with its accumulators. */
class Groups {
  private readonly groups = new Map<string, { frame: Frame; accumulators: Accumulator[] }>();
  private readonly keyValues: Value[];
  private readonly plan: SelectPlan;
  private readonly params: readonly Value[];

  /** `always` adds the one group a query without GROUP BY has even over no rows (COUNT(*) = 0). */
  constructor(plan: SelectPlan, params: readonly Value[], always: boolean) {
    this.plan = plan;
    this.params = params;
    this.keyValues = new Array(plan.groupBy.length);
    if (always && plan.groupBy.length === 0) this.groups.set('', { frame: new Array(plan.aggregateSlot + 1).fill(null), accumulators: this.newAccumulators() });
  }

  private newAccumulators(): Accumulator[] {
    return this.plan.aggregates.map((call) => ({ count: 0, value: null, sum: 0, distinct: call.distinct ? new Set() : undefined }));
  }

  /** The accumulators of `frame`'s group; a new group keeps `frame` (a copy when `copy`). */
  accumulatorsOf(frame: Frame, copy: boolean): Accumulator[] {
    const groupBy = this.plan.groupBy;
    for (let i = 0; i < groupBy.length; i++) this.keyValues[i] = groupBy[i].evaluate(frame, this.params);
    const key = groupBy.length === 0 ? '' : encodeComposite(this.keyValues);
    let group = this.groups.get(key);
    if (!group) {
      group = { frame: copy ? frame.slice() : frame, accumulators: this.newAccumulators() };
      this.groups.set(key, group);
    }
    return group.accumulators;
  }

  /** One frame per group with `mapStates(accumulators)` in the aggregate slot. */
  frames(mapStates: (accumulators: Accumulator[]) => Value[]): Frame[] {
    const output: Frame[] = [];
    for (const { frame, accumulators } of this.groups.values()) {
      const result = frame.slice();
      while (result.length <= this.plan.aggregateSlot) result.push(null as unknown as Row);
      result[this.plan.aggregateSlot] = mapStates(accumulators);
      output.push(result);
    }
    return output;
  }

  /** Frames whose aggregate slot holds the final aggregate values. */
  finalFrames(): Frame[] {
    const aggregates = this.plan.aggregates;
    return this.frames((accumulators) => accumulators.map((accumulator, i) => finalValue(aggregates[i], accumulator)));
  }
}

/** This partition's rows of a grouped query, accumulated into their groups. */
function groupLocalRows(plan: SelectPlan, storage: TableSource, params: readonly Value[]): Groups {
  const groups = new Groups(plan, params, false);
  const aggregates = plan.aggregates;
  forEachFrame(plan, storage, params, (frame) => {
    const accumulators = groups.accumulatorsOf(frame, true);
    for (let i = 0; i < aggregates.length; i++) accumulate(aggregates[i], accumulators[i], frame, params);
    return true;
  });
  return groups;
}

function localGroups(plan: SelectPlan, storage: TableSource, params: readonly Value[]): Frame[] {
  return groupLocalRows(plan, storage, params).frames((accumulators) => {
    const states: Value[] = new Array(accumulators.length * partialWidth);
    accumulators.forEach((accumulator, i) => {
      states[i * partialWidth] = accumulator.count;
      states[i * partialWidth + 1] = accumulator.value;
      states[i * partialWidth + 2] = accumulator.sum;
    });
    return states;
  });
}

/** This partition's groups, finished and filtered by HAVING (plan.groupsConfined). */
function confinedGroups(plan: SelectPlan, storage: TableSource, params: readonly Value[]): Frame[] {
  const frames = groupLocalRows(plan, storage, params).finalFrames();
  const having = plan.having;
  return having === undefined ? frames : frames.filter((frame) => having.evaluate(frame, params) === true);
}

function mergePartialGroups(plan: SelectPlan, frames: Frame[], params: readonly Value[]): Frame[] {
  const aggregates = plan.aggregates;
  const groups = new Groups(plan, params, true);
  for (const frame of frames) {
    const accumulators = groups.accumulatorsOf(frame, false);
    const states = frame[plan.aggregateSlot] as Value[];
    for (let i = 0; i < aggregates.length; i++) {
      const accumulator = accumulators[i];
      const count = states[i * partialWidth] as number;
      if (count === 0) continue;
      const value = states[i * partialWidth + 1];
      accumulator.count += count;
      accumulator.sum += states[i * partialWidth + 2] as number;
      const fn = aggregates[i].fn;
      if ((fn === 'MIN' || fn === 'MAX') && value !== null) {
        const order = accumulator.value === null ? 0 : compareValues(value, accumulator.value);
        if (accumulator.value === null || (fn === 'MIN' ? order < 0 : order > 0)) accumulator.value = value;
      }
    }
  }
  return groups.finalFrames();
}

function localFrames(plan: SelectPlan, storage: TableSource, params: readonly Value[]): Frame[] {
  if (plan.groupsConfined) return confinedGroups(plan, storage, params);
  if (aggregatesLocally(plan)) return localGroups(plan, storage, params);
  const frames: Frame[] = [];
  let remaining = Infinity;
  if (canStream(plan)) {
    const limit = limitValue(plan.limit, params, 'LIMIT');
    if (limit !== undefined) remaining = limit + (limitValue(plan.offset, params, 'OFFSET') ?? 0);
  }
  if (remaining === 0) return frames;
  forEachFrame(plan, storage, params, (frame) => {
    frames.push(frame.slice());
    return --remaining > 0;
  });
  return frames;
}

/**
 * Runs a SELECT on one partition's storage. A split view reads as this partition's partial
 * groups: merging them is for statements that run on every partition (finishSelect).
 */
export function executeSelect(plan: SelectPlan, storage: StorageAccess, params: readonly Value[]): ResultTable {
  if (plan.pointLookup) return executePointLookup(plan, storage, params);
  return runOver(plan, storage, params);
}

/** The whole plan over one set of tables: a partition's, or the coordinator's merged ones. */
function runOver(plan: SelectPlan, storage: TableSource, params: readonly Value[]): ResultTable {
  if (canStream(plan)) {
    const rows: Value[][] = [];
    const limit = limitValue(plan.limit, params, 'LIMIT') ?? Infinity;
    let skip = limitValue(plan.offset, params, 'OFFSET') ?? 0;
    if (limit > 0) {
      const projection = plan.projection;
      forEachFrame(plan, storage, params, (frame) => {
        if (skip > 0) {
          skip--;
          return true;
        }
        const row = new Array<Value>(projection.length);
        for (let i = 0; i < projection.length; i++) row[i] = projection[i].evaluate(frame, params);
        rows.push(row);
        return rows.length < limit;
      });
    }
    return { columns: plan.columns, types: plan.types, rows };
  }
  return finishFrames(plan, localFrames(plan, storage, params), params);
}

/**
 * The hot path of OLTP reads: one source found through a unique hash index (at most one row),
 * no grouping or sorting. No closures, no frame allocation: the plan's own frame is reused, which
 * is safe because a partition runs one statement at a time.
 */
function executePointLookup(plan: SelectPlan, storage: StorageAccess, params: readonly Value[]): ResultTable {
  const level = plan.levels[0];
  const frame = plan.pointLookup!.frame;
  const rows: Value[][] = [];
  const result: ResultTable = { columns: plan.columns, types: plan.types, rows };
  if (plan.constantFilter && plan.constantFilter.evaluate(frame, params) !== true) return result;
  const equal = level.access.equal;
  const key = plan.pointLookup!.key;
  for (let i = 0; i < equal.length; i++) {
    const value = equal[i].evaluate(frame, params);
    if (value === null) return result;
    key[i] = value;
  }
  const row = (storage.table(level.source.table.name).index(level.access.index!) as HashIndex).getUnique(key);
  if (row === undefined) return result;
  frame[0] = row;
  if (level.where === undefined || level.where.evaluate(frame, params) === true) {
    const offset = plan.offset ? limitValue(plan.offset, params, 'OFFSET')! : 0;
    const limit = plan.limit ? limitValue(plan.limit, params, 'LIMIT')! : 1;
    if (offset === 0 && limit > 0) {
      const projection = plan.projection;
      const out = new Array<Value>(projection.length);
      for (let i = 0; i < projection.length; i++) out[i] = projection[i].evaluate(frame, params);
      rows.push(out);
    }
  }
  frame[0] = null as unknown as Row;
  return result;
}

/**
 * Coordinator half of a multi-partition SELECT, over every partition's collectFrames: grouping,
 * HAVING, projection, DISTINCT, ORDER BY and OFFSET/LIMIT; or, for a split view, the merge of
 * its partial groups and then the whole plan over the merged rows.
 */
export function finishSelect(plan: SelectPlan, frames: Frame[], params: readonly Value[]): ResultTable {
  if (plan.splitView) return runOver(plan, mergeSplitView(plan.splitView, frames), params);
  return finishFrames(plan, frames, params);
}

function finishFrames(plan: SelectPlan, frames: Frame[], params: readonly Value[]): ResultTable {
  const outputFrames = !plan.grouped || plan.groupsConfined ? frames : aggregatesLocally(plan) ? mergePartialGroups(plan, frames, params) : groupFrames(plan, frames, params);
  const projection = plan.projection;
  let rows: { row: Value[]; keys: Value[] }[] = [];
  // Confined groups passed HAVING on their partition already.
  const having = plan.groupsConfined ? undefined : plan.having;
  for (const frame of outputFrames) {
    if (having && having.evaluate(frame, params) !== true) continue;
    const row = new Array<Value>(projection.length);
    for (let i = 0; i < projection.length; i++) row[i] = projection[i].evaluate(frame, params);
    const keys = plan.orderBy.map((key) => key.bound.evaluate(frame, params));
    rows.push({ row, keys });
  }
  if (plan.distinct) {
    const seen = new Set<string>();
    rows = rows.filter((entry) => {
      const key = encodeComposite(entry.row);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
  if (plan.orderBy.length > 0) {
    const descending = plan.orderBy.map((key) => key.descending);
    rows.sort((a, b) => {
      for (let i = 0; i < descending.length; i++) {
        const order = compareValues(a.keys[i], b.keys[i]);
        if (order !== 0) return descending[i] ? -order : order;
      }
      return 0;
    });
  }
  const offset = limitValue(plan.offset, params, 'OFFSET') ?? 0;
  const limit = limitValue(plan.limit, params, 'LIMIT');
  const chosen = rows.slice(offset, limit === undefined ? undefined : offset + limit);
  return { columns: plan.columns, types: plan.types, rows: chosen.map((entry) => entry.row) };
}

interface Accumulator {
  count: number;
  value: Value;
  sum: number;
  distinct: Set<unknown> | undefined;
}

function groupFrames(plan: SelectPlan, frames: Frame[], params: readonly Value[]): Frame[] {
  const groups = new Groups(plan, params, true);
  const aggregates = plan.aggregates;
  for (const frame of frames) {
    const accumulators = groups.accumulatorsOf(frame, false);
    for (let i = 0; i < aggregates.length; i++) accumulate(aggregates[i], accumulators[i], frame, params);
  }
  return groups.finalFrames();
}

function accumulate(call: AggregateCall, accumulator: Accumulator, frame: Frame, params: readonly Value[]): void {
  if (!call.argument) {
    accumulator.count++;
    return;
  }
  const value = call.argument.evaluate(frame, params);
  if (value === null) return;
  if (accumulator.distinct) {
    const key = value instanceof Uint8Array ? encodeComposite([value]) : value;
    if (accumulator.distinct.has(key)) return;
    accumulator.distinct.add(key);
  }
  accumulator.count++;
  switch (call.fn) {
    case 'SUM':
    case 'AVG':
      if (typeof value !== 'number') throw new SluiceError(ErrorCode.TYPE_MISMATCH, `${call.fn} needs numbers, got ${typeof value}`);
      // DECIMAL sums in integer units of its scale: exact, so the answer does not depend on
      // the order rows arrive in (which differs between partition counts).
      if (call.argument!.type?.name === 'DECIMAL') accumulator.sum += Math.round(value * 10 ** call.argument!.type.scale!);
      else accumulator.sum += value;
      break;
    case 'MIN':
      if (accumulator.value === null || compareValues(value, accumulator.value) < 0) accumulator.value = value;
      break;
    case 'MAX':
      if (accumulator.value === null || compareValues(value, accumulator.value) > 0) accumulator.value = value;
      break;
  }
}

/** A DECIMAL sum kept in units of 10^-scale, back to the canonical double. */
function decimalSum(units: number, call: AggregateCall): number {
  if (!Number.isSafeInteger(units)) throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, `${call.text} overflows the exact DECIMAL range`);
  return roundDecimal(units / 10 ** call.argument!.type!.scale!, call.argument!.type!.scale!);
}

function finalValue(call: AggregateCall, accumulator: Accumulator): Value {
  switch (call.fn) {
    case 'COUNT':
      return accumulator.count;
    case 'SUM':
      if (accumulator.count === 0) return null;
      if (call.argument?.type?.name === 'DECIMAL') return decimalSum(accumulator.sum, call);
      if (call.argument?.type?.name !== 'FLOAT' && Number.isInteger(accumulator.sum) && !Number.isSafeInteger(accumulator.sum)) {
        throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, `${call.text} overflows the exact BIGINT range`);
      }
      return accumulator.sum;
    case 'AVG':
      if (accumulator.count === 0) return null;
      if (call.argument?.type?.name === 'DECIMAL') return accumulator.sum / 10 ** call.argument.type.scale! / accumulator.count;
      return accumulator.sum / accumulator.count;
    default:
      return accumulator.value;
  }
}

export function explainSelect(plan: SelectPlan): string[] {
  const lines: string[] = [];
  plan.levels.forEach((level, i) => {
    const join = i === 0 ? '' : level.leftJoin ? 'left join: ' : 'join: ';
    lines.push(`${'  '.repeat(i)}${join}${level.access.text}${level.on ? ` on ${level.on.text}` : ''}${level.where ? ` filter ${level.where.text}` : ''}`);
  });
  if (plan.constantFilter) lines.unshift(`filter ${plan.constantFilter.text}`);
  if (plan.splitView) lines.unshift(...explainSplitView(plan.splitView));
  if (plan.grouped) lines.push(`aggregate ${plan.aggregates.map((call) => call.text).join(', ')}${plan.groupBy.length ? ` group by ${plan.groupBy.map((bound) => bound.text).join(', ')}` : ''}${plan.groupsConfined ? ' (each group on one partition)' : ''}`);
  if (plan.having) lines.push(`having ${plan.having.text}`);
  if (plan.distinct) lines.push('distinct');
  if (plan.orderBy.length) lines.push(plan.orderedByIndex ? 'order by index (no sort)' : `sort by ${plan.orderBy.map((key) => `${key.bound.text}${key.descending ? ' DESC' : ''}`).join(', ')}`);
  if (plan.limit || plan.offset) lines.push(`limit ${plan.limit?.text ?? 'all'}${plan.offset ? ` offset ${plan.offset.text}` : ''}`);
  lines.push(`project ${plan.columns.join(', ')}`);
  return lines;
}
