/**
 * Reads of a *split view* across partitions: a materialized view over a partitioned table whose
 * GROUP BY leaves out the partition column holds, on each partition, partial groups (that
 * partition's COUNT, SUM, MIN and MAX of the group, and its hidden counts). A SELECT routed to
 * every partition must see whole groups, as VoltDB gives them, so for such a statement:
 *
 *   1. each partition sends its view rows (`gatherSplitView`), narrowed only by the conjuncts on
 *      group columns, which keep or drop a group whole; partition 0 also sends the rows of the
 *      replicated tables the statement joins, narrowed by the conjuncts on that table alone;
 *   2. the coordinator merges the partial rows by group key (`mergeSplitView`): COUNTs and the
 *      hidden counts add, SUM adds (NULL when every part is NULL), MIN and MAX take the extreme;
 *   3. the statement's own plan then runs over those rows (select.ts, `finishSelect`): WHERE on
 *      aggregate columns sees merged values, and joins, grouping, ORDER BY and LIMIT follow.
 *
 * The frames exchanged are one row each, at the index of its source in `SplitViewRead.gather`,
 * so the collect/finish protocol of the runners (transaction.ts, coordinator.ts) is unchanged.
 * On a single partition (a single-partition procedure) the statement reads that partition's
 * own rows: select.ts's executeSelect never merges.
 */
import type { TableDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import { encodeComposite } from '../storage/index-key.ts';
import { Table } from '../storage/table.ts';
import { compareValues, roundDecimal, type Row, type Value } from '../types.ts';
import { andAll, chooseAccessPath, runAccessPath, tableShape, type AccessPath, type Conjunct } from './access.ts';
import type { StorageAccess, TableSource } from './context.ts';
import type { Bound, Frame, Source } from './expr.ts';
import type { Ast } from './parse.ts';

/** One table whose rows partitions send to the coordinator. */
export interface GatheredTable {
  readonly table: TableDef;
  /** The FROM slot the pushed-down filter reads the row from. */
  readonly slot: number;
  readonly access: AccessPath;
  readonly filter: Bound | undefined;
  /** The split view comes from every partition; a replicated table from partition 0 only. */
  readonly everyPartition: boolean;
  /** The table's definition with only the indexes the statement's plan uses: the coordinator
   * builds these, not every index of the table. */
  readonly coordinatorDef: TableDef;
}

/** How one view column of two partial rows of a group combines. */
interface ColumnMerge {
  readonly column: number;
  readonly kind: 'add' | 'sum' | 'min' | 'max';
  /** DECIMAL scale of a SUM column: the merged sum is rounded back to it. */
  readonly scale: number | undefined;
  /** An integer SUM column, which must stay within the exact range. */
  readonly integer: boolean;
}

export interface SplitViewRead {
  readonly view: TableDef;
  /** Index of the view in `gather`. */
  readonly viewIndex: number;
  readonly gather: readonly GatheredTable[];
  readonly merges: readonly ColumnMerge[];
  /** Width of the scratch frame the pushed-down filters read (one slot per FROM source). */
  readonly sourceCount: number;
  readonly constantFilter: Bound | undefined;
}

/** A view whose groups are split across partitions (see the file comment). */
export function isSplitView(def: TableDef): boolean {
  return def.kind === 'view' && def.partitioned && def.partitionColumn === undefined;
}

/**
 * The gather-and-merge plan for a SELECT that reads a split view together with replicated tables
 * only; undefined for any other statement (statement.ts refuses a split view joined with another
 * partitioned table, whose rows could not be gathered to one place this way).
 */
export function planSplitView(
  sources: readonly Source[],
  levels: readonly { readonly source: Source; readonly leftJoin: boolean; readonly access: AccessPath }[],
  whereConjuncts: readonly Conjunct[],
  onConjuncts: readonly (readonly Conjunct[])[],
  constantFilter: Bound | undefined,
): SplitViewRead | undefined {
  const views = sources.filter((source) => isSplitView(source.table));
  if (views.length !== 1 || sources.some((source) => source.table.partitioned && !isSplitView(source.table))) return undefined;
  const view = views[0].table;
  const gather: GatheredTable[] = [];
  const names = [...new Set(sources.map((source) => source.table.name))];
  for (const name of names) {
    const reading = sources.filter((source) => source.table.name === name);
    const table = reading[0].table;
    const slot = reading[0].slot;
    // A table read twice (a self-join) is sent whole: each read has its own conditions.
    const pushed = reading.length === 1 ? pushable(table, slot, levels[slot].leftJoin, whereConjuncts, onConjuncts[slot]) : [];
    const access = chooseAccessPath(tableShape(table), slot, pushed, new Set(), undefined);
    const used = new Set(levels.filter((level) => level.source.table.name === name).map((level) => level.access.index));
    gather.push({
      table,
      slot,
      access,
      filter: andAll(pushed.filter((conjunct) => !access.consumed.has(conjunct))),
      everyPartition: table === view,
      coordinatorDef: { ...table, indexes: table.indexes.filter((index) => used.has(index.name)) },
    });
  }
  return {
    view,
    viewIndex: names.indexOf(view.name),
    gather,
    merges: columnMerges(view),
    sourceCount: sources.length,
    constantFilter,
  };
}

/**
 * The conjuncts that may narrow a table's rows before the coordinator runs the plan: those that
 * read this source alone. WHERE conjuncts only when the source is not on the NULL side of a LEFT
 * JOIN (there WHERE applies after NULL-extension, so pre-filtering would invent non-matches). On
 * the split view, only conjuncts on group columns: they keep or drop a whole group, while a
 * condition on an aggregate column must see the merged value.
 */
function pushable(table: TableDef, slot: number, leftJoin: boolean, where: readonly Conjunct[], on: readonly Conjunct[]): Conjunct[] {
  const candidates = leftJoin ? on : [...on, ...where];
  const groupNames = isSplitView(table) ? new Set(table.columns.slice(0, table.view!.groupBy.length).map((column) => column.name)) : undefined;
  return candidates.filter((conjunct) => {
    const slots = conjunct.bound.slots;
    if (slots.size !== 1 || !slots.has(slot)) return false;
    return groupNames === undefined || readsOnlyColumns(conjunct.ast, groupNames);
  });
}

/**
 * True when every column reference in `node` names one of `names`. The caller knows the node
 * reads one source only, so names alone decide. Anything unusual (a unit keyword parsed as a
 * column) only makes the answer false, which keeps the conjunct on the coordinator: safe.
 */
function readsOnlyColumns(node: Ast, names: ReadonlySet<string>): boolean {
  if (node === null || typeof node !== 'object') return true;
  if (Array.isArray(node)) return node.every((item) => readsOnlyColumns(item, names));
  if (node.type === 'column_ref') return typeof node.column === 'string' && names.has(node.column.toLowerCase());
  for (const key of Object.keys(node)) {
    if (key !== 'loc' && !readsOnlyColumns(node[key], names)) return false;
  }
  return true;
}

function columnMerges(view: TableDef): ColumnMerge[] {
  const merges: ColumnMerge[] = [];
  const definition = view.view!;
  for (const aggregate of definition.aggregates) {
    const type = view.columns[aggregate.viewColumn].type;
    const kind = aggregate.fn === 'COUNT' ? 'add' : aggregate.fn === 'SUM' ? 'sum' : aggregate.fn === 'MIN' ? 'min' : 'max';
    merges.push({
      column: aggregate.viewColumn,
      kind,
      scale: kind === 'sum' && type.name === 'DECIMAL' ? type.scale : undefined,
      integer: kind === 'sum' && type.name !== 'DECIMAL' && type.name !== 'FLOAT',
    });
    if (aggregate.nonNullColumn !== undefined) merges.push({ column: aggregate.nonNullColumn, kind: 'add', scale: undefined, integer: false });
  }
  // The group count is a column of its own unless a visible COUNT(*) already holds it.
  if (!definition.aggregates.some((aggregate) => aggregate.viewColumn === definition.countColumn)) {
    merges.push({ column: definition.countColumn, kind: 'add', scale: undefined, integer: false });
  }
  return merges;
}

/** Per-partition half: this partition's view rows, and on partition 0 the replicated rows. */
export function gatherSplitView(read: SplitViewRead, storage: StorageAccess, params: readonly Value[]): Frame[] {
  const frames: Frame[] = [];
  if (read.constantFilter && read.constantFilter.evaluate([], params) !== true) return frames;
  const scratch: Frame = new Array(read.sourceCount).fill(null);
  const width = read.gather.length;
  for (let i = 0; i < width; i++) {
    const item = read.gather[i];
    if (!item.everyPartition && storage.id !== 0) continue;
    const slot = item.slot;
    const filter = item.filter;
    runAccessPath(item.access, storage.table(item.table.name), scratch, params, (row) => {
      scratch[slot] = row;
      if (filter === undefined || filter.evaluate(scratch, params) === true) {
        const frame: Frame = new Array(width).fill(null);
        frame[i] = row;
        frames.push(frame);
      }
      return true;
    });
    scratch[slot] = null as unknown as Row;
  }
  return frames;
}

/**
 * Coordinator half: the gathered rows as tables (the view's with one merged row per group, each
 * with the indexes the plan uses), ready for the statement's plan to run over. Rows are copied:
 * on in-process partitions the gathered rows are the partitions' own, and a table writes its row
 * position into each row it holds.
 */
export function mergeSplitView(read: SplitViewRead, frames: readonly Frame[]): TableSource {
  const tables = new Map<string, Table>();
  for (const item of read.gather) tables.set(item.table.name, new Table(item.coordinatorDef));
  const groups = new Map<string, Row>();
  const groupCount = read.view.view!.groupBy.length;
  const key: Value[] = new Array(groupCount);
  for (const frame of frames) {
    for (let i = 0; i < frame.length; i++) {
      const row = frame[i];
      if (row === null || row === undefined) continue;
      if (i !== read.viewIndex) {
        addRow(tables.get(read.gather[i].table.name)!, row.slice());
        continue;
      }
      for (let c = 0; c < groupCount; c++) key[c] = row[c];
      const groupKey = encodeComposite(key);
      const group = groups.get(groupKey);
      if (group === undefined) groups.set(groupKey, row.slice());
      else mergeInto(group, row, read);
    }
  }
  const view = tables.get(read.view.name)!;
  // Partial rows of one group carry row ids from different partitions: number the merged ones.
  let rowId = 1;
  for (const row of groups.values()) {
    row[view.rowIdSlot] = rowId++;
    addRow(view, row);
  }
  return { table: (name) => tables.get(name)! };
}

function addRow(table: Table, row: Row): void {
  table.rows.add(row);
  for (let i = 0; i < table.indexes.length; i++) table.indexes[i].add(row);
}

function mergeInto(group: Row, part: Row, read: SplitViewRead): void {
  const merges = read.merges;
  for (let i = 0; i < merges.length; i++) {
    const merge = merges[i];
    const column = merge.column;
    const value = part[column];
    if (value === null) continue;
    const current = group[column];
    if (current === null) {
      group[column] = value;
      continue;
    }
    switch (merge.kind) {
      case 'add':
        group[column] = (current as number) + (value as number);
        break;
      case 'sum': {
        const sum = (current as number) + (value as number);
        if (merge.integer && !Number.isSafeInteger(sum)) {
          throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, `SUM column ${read.view.columns[column].name} of view ${read.view.name} overflows the exact BIGINT range when its partitions' parts are added`, { object: read.view.name });
        }
        group[column] = merge.scale === undefined ? sum : roundDecimal(sum, merge.scale);
        break;
      }
      case 'min':
        if (compareValues(value, current) < 0) group[column] = value;
        break;
      case 'max':
        if (compareValues(value, current) > 0) group[column] = value;
        break;
    }
  }
}

export function explainSplitView(read: SplitViewRead): string[] {
  const lines = read.gather.map((item) => {
    const from = item.everyPartition ? 'every partition' : 'partition 0';
    return `gather ${item.table.name} from ${from}: ${item.access.text}${item.filter ? ` filter ${item.filter.text}` : ''}`;
  });
  const groupNames = read.view.columns.slice(0, read.view.view!.groupBy.length).map((column) => column.name);
  lines.push(`merge partial groups of view ${read.view.name}${groupNames.length > 0 ? ` by ${groupNames.join(', ')}` : ''}`);
  return lines;
}
