/**
 * Access paths: how one FROM source finds its rows, given the conjuncts that constrain it.
 * Preference: a unique hash index with every column bound by equality (one row), then any hash
 * index fully bound, then the ordered index with the longest equality prefix plus a range on the
 * next column (<, <=, >, >=, BETWEEN, LIKE 'prefix%' on text), then an ordered index that yields
 * the ORDER BY order, then a full scan.
 * Conjuncts an index consumes are not evaluated again; the rest stay as a residual filter.
 */
import type { TableDef } from '../catalog/schema.ts';
import { Table } from '../storage/table.ts';
import { HashIndex, OrderedIndex, type RangeBound } from '../storage/indexes.ts';
import type { Row, Value } from '../types.ts';
import type { Ast } from './parse.ts';
import { comparableTo, likePrefix, type Bound, type Frame } from './expr.ts';

/** One conjunct of a WHERE/ON clause, bound, with the column comparison it is (if any). */
export interface Conjunct {
  readonly bound: Bound;
  readonly ast: Ast;
  /** `column op other` with the column on the left after normalizing. */
  readonly comparison?: { slot: number; position: number; op: '=' | '<' | '<=' | '>' | '>='; other: Bound };
  /** LIKE 'prefix%' on a text column: usable as the range [prefix, high); no high when none exists. */
  readonly likeRange?: { slot: number; position: number; low: string; high: string | undefined };
  /** `column BETWEEN low AND high`: an inclusive range. */
  readonly between?: { slot: number; position: number; low: Bound; high: Bound };
}

export interface AccessPath {
  readonly kind: 'scan' | 'unique' | 'hash' | 'ordered';
  readonly index?: string;
  readonly equal: readonly Bound[];
  readonly low?: { readonly bounds: readonly Bound[]; readonly inclusive: boolean };
  readonly high?: { readonly bounds: readonly Bound[]; readonly inclusive: boolean };
  readonly descending: boolean;
  /** The path returns rows in this source's ORDER BY order. */
  readonly ordered: boolean;
  readonly consumed: ReadonlySet<Conjunct>;
  readonly text: string;
}

const flipped: Record<string, '=' | '<' | '<=' | '>' | '>='> = { '=': '=', '<': '>', '<=': '>=', '>': '<', '>=': '<=' };

/** Describes a bound conjunct as a column comparison if it is one. */
export function analyzeConjunct(ast: Ast, bound: Bound, bindSide: (node: Ast) => Bound): Conjunct {
  const operator = String(ast?.operator ?? '').toUpperCase();
  if (ast?.type === 'binary_expr' && operator in flipped) {
    let left = bindSide(ast.left);
    let right = bindSide(ast.right);
    left = comparableTo(right, left);
    right = comparableTo(left, right);
    if (left.column && !right.slots.has(left.column.slot)) {
      return { bound, ast, comparison: { ...left.column, op: operator as '=', other: right } };
    }
    if (right.column && !left.slots.has(right.column.slot)) {
      return { bound, ast, comparison: { ...right.column, op: flipped[operator], other: left } };
    }
  }
  if (ast?.type === 'binary_expr' && operator === 'LIKE') {
    const left = bindSide(ast.left);
    const pattern = bindSide(ast.right);
    const prefix = typeof pattern.constant?.value === 'string' ? likePrefix(pattern.constant.value) : undefined;
    // Only text sorts like its LIKE prefix: numbers matched as text ('1%' matches 10) do not.
    if (left.column && prefix && left.type?.name === 'VARCHAR') {
      return { bound, ast, likeRange: { ...left.column, low: prefix, high: prefixSuccessor(prefix) } };
    }
  }
  if (ast?.type === 'binary_expr' && operator === 'BETWEEN') {
    const value = bindSide(ast.left);
    const low = comparableTo(value, bindSide(ast.right.value[0]));
    const high = comparableTo(value, bindSide(ast.right.value[1]));
    if (value.column && !low.slots.has(value.column.slot) && !high.slots.has(value.column.slot)) {
      return { bound, ast, between: { ...value.column, low, high } };
    }
  }
  return { bound, ast };
}

/** The least string above every string starting with `prefix`; undefined when there is none. */
export function prefixSuccessor(prefix: string): string | undefined {
  let end = prefix.length;
  while (end > 0 && prefix.charCodeAt(end - 1) === 0xffff) end--;
  if (end === 0) return undefined;
  return prefix.slice(0, end - 1) + String.fromCharCode(prefix.charCodeAt(end - 1) + 1);
}

export function chooseAccessPath(
  table: Table,
  slot: number,
  conjuncts: readonly Conjunct[],
  /** Slots bound before this source (usable in lookup keys). */
  available: ReadonlySet<number>,
  /** ORDER BY on this source's columns, if the whole ORDER BY is on it. */
  orderBy: readonly { position: number; descending: boolean }[] | undefined,
): AccessPath {
  const usable = (bound: Bound) => [...bound.slots].every((used) => available.has(used));
  const equal = new Map<number, Conjunct>();
  const ranges = new Map<number, Conjunct[]>();
  for (const conjunct of conjuncts) {
    const comparison = conjunct.comparison;
    if (comparison && comparison.slot === slot && usable(comparison.other)) {
      if (comparison.op === '=') {
        if (!equal.has(comparison.position)) equal.set(comparison.position, conjunct);
      } else {
        const list = ranges.get(comparison.position) ?? [];
        list.push(conjunct);
        ranges.set(comparison.position, list);
      }
    } else if (conjunct.likeRange && conjunct.likeRange.slot === slot) {
      const list = ranges.get(conjunct.likeRange.position) ?? [];
      list.push(conjunct);
      ranges.set(conjunct.likeRange.position, list);
    } else if (conjunct.between && conjunct.between.slot === slot && usable(conjunct.between.low) && usable(conjunct.between.high)) {
      const list = ranges.get(conjunct.between.position) ?? [];
      list.push(conjunct);
      ranges.set(conjunct.between.position, list);
    }
  }
  const name = table.def.name;
  let best: AccessPath | undefined;
  let bestScore = 0;
  for (const index of table.indexes) {
    const columns = index.def.columns;
    let prefix = 0;
    while (prefix < columns.length && equal.has(columns[prefix])) prefix++;
    const equalBounds = columns.slice(0, prefix).map((column) => equal.get(column)!.comparison!.other);
    const consumed = new Set(columns.slice(0, prefix).map((column) => equal.get(column)!));
    if (index instanceof HashIndex) {
      if (prefix < columns.length) continue;
      const score = index.def.unique ? 100 : 50;
      if (score > bestScore) {
        bestScore = score;
        best = { kind: index.def.unique ? 'unique' : 'hash', index: index.def.name, equal: equalBounds, descending: false, ordered: false, consumed, text: `${index.def.unique ? 'unique' : 'hash'} lookup on ${name} using ${index.def.name}` };
      }
      continue;
    }
    const rangeColumn = columns[prefix];
    let low: AccessPath['low'];
    let high: AccessPath['high'];
    let highConjunct: Conjunct | undefined;
    for (const conjunct of ranges.get(rangeColumn) ?? []) {
      if (conjunct.likeRange) {
        // The LIKE itself stays a residual filter: the range only narrows the scan.
        if (!low && !high) {
          low = { bounds: [...equalBounds, constantBound(conjunct.likeRange.low)], inclusive: true };
          if (conjunct.likeRange.high !== undefined) high = { bounds: [...equalBounds, constantBound(conjunct.likeRange.high)], inclusive: false };
        }
        continue;
      }
      if (conjunct.between) {
        // Both ends inclusive; a NULL end yields no rows, as BETWEEN NULL is never true.
        if (!low && !high) {
          low = { bounds: [...equalBounds, conjunct.between.low], inclusive: true };
          high = { bounds: [...equalBounds, conjunct.between.high], inclusive: true };
          consumed.add(conjunct);
        }
        continue;
      }
      const { op, other } = conjunct.comparison!;
      if ((op === '>' || op === '>=') && !low) {
        low = { bounds: [...equalBounds, other], inclusive: op === '>=' };
        consumed.add(conjunct);
      } else if ((op === '<' || op === '<=') && !high) {
        high = { bounds: [...equalBounds, other], inclusive: op === '<=' };
        highConjunct = conjunct;
      }
    }
    // NULLs sort first: an upper bound alone would let them through, so it stays a residual
    // filter unless a lower bound already excludes them.
    if (highConjunct && ranges.get(rangeColumn)!.some((conjunct) => consumed.has(conjunct))) consumed.add(highConjunct);
    if (prefix > 0 || low || high) {
      if (!low) low = prefix > 0 ? { bounds: equalBounds, inclusive: true } : undefined;
      if (!high) high = prefix > 0 ? { bounds: equalBounds, inclusive: true } : undefined;
    }
    // Order is kept when ORDER BY walks the columns after the equality prefix, one direction.
    let ordered = false;
    let descending = false;
    if (orderBy && orderBy.length > 0 && orderBy.length + prefix <= columns.length) {
      descending = orderBy[0].descending;
      ordered = orderBy.every((item, i) => item.position === columns[prefix + i] && item.descending === descending);
    }
    const full = prefix === columns.length;
    const score = (full && index.def.unique ? 90 : 0) + prefix * 10 + (low || high ? 5 : 0) + (ordered ? 3 : 0);
    if (score > bestScore) {
      bestScore = score;
      const parts = [`${index.def.unique && full ? 'unique' : 'ordered'} ${prefix > 0 || low || high ? 'range' : 'scan'} on ${name} using ${index.def.name}`];
      if (descending && ordered) parts.push('descending');
      best = { kind: 'ordered', index: index.def.name, equal: equalBounds, low, high, descending: ordered && descending, ordered, consumed, text: parts.join(' ') };
    }
  }
  return best ?? { kind: 'scan', equal: [], descending: false, ordered: false, consumed: new Set(), text: `full scan of ${name}` };
}

function constantBound(value: Value): Bound {
  return { evaluate: () => value, type: undefined, slots: new Set(), constant: { value }, text: `'${String(value)}'` };
}

/**
 * Visits the rows the path selects; stops when `visit` returns false. Key values are computed
 * once per call from the frame (outer sources) and parameters. Returns false if stopped.
 */
export function runAccessPath(
  path: AccessPath,
  table: Table,
  frame: Frame,
  params: readonly Value[],
  visit: (row: Row) => boolean,
): boolean {
  switch (path.kind) {
    case 'scan':
      return table.rows.scan(visit);
    case 'unique': {
      const index = table.index(path.index!) as HashIndex;
      const key = evaluateAll(path.equal, frame, params);
      if (key === undefined) return true;
      const row = index.getUnique(key);
      return row === undefined ? true : visit(row);
    }
    case 'hash': {
      const key = evaluateAll(path.equal, frame, params);
      if (key === undefined) return true;
      let going = true;
      table.index(path.index!)!.forEachEqual(key, (row) => (going = visit(row)));
      return going;
    }
    case 'ordered': {
      const index = table.index(path.index!) as OrderedIndex;
      const low = bound(path.low, frame, params);
      const high = bound(path.high, frame, params);
      if (low === null || high === null) return true;
      let going = true;
      index.scan(low, high, path.descending, (row) => (going = visit(row)));
      return going;
    }
  }
}

function evaluateAll(bounds: readonly Bound[], frame: Frame, params: readonly Value[]): Value[] | undefined {
  const values = new Array<Value>(bounds.length);
  for (let i = 0; i < bounds.length; i++) {
    const value = bounds[i].evaluate(frame, params);
    if (value === null) return undefined;
    values[i] = value;
  }
  return values;
}

/** null means the bound compares with NULL, so nothing matches. */
function bound(spec: AccessPath['low'], frame: Frame, params: readonly Value[]): RangeBound | undefined | null {
  if (!spec) return undefined;
  const values = evaluateAll(spec.bounds, frame, params);
  if (!values) return null;
  return { values, inclusive: spec.inclusive };
}

export function describeSourceTable(def: TableDef): string {
  return def.kind === 'view' ? `view ${def.name}` : def.name;
}

/** The planner chooses indexes from definitions only; an empty Table gives it their shapes. */
const shapes = new WeakMap<TableDef, Table>();
export function tableShape(def: TableDef): Table {
  let shape = shapes.get(def);
  if (!shape) {
    shape = new Table(def);
    shapes.set(def, shape);
  }
  return shape;
}

/** The conjunction of conjuncts, three-valued: false beats NULL, NULL beats true. */
export function andAll(conjuncts: readonly Conjunct[]): Bound | undefined {
  if (conjuncts.length === 0) return undefined;
  if (conjuncts.length === 1) return conjuncts[0].bound;
  const parts = conjuncts.map((conjunct) => conjunct.bound.evaluate);
  return {
    evaluate: (frame, params) => {
      let sawNull = false;
      for (let i = 0; i < parts.length; i++) {
        const value = parts[i](frame, params);
        if (value === false) return false;
        if (value === null) sawNull = true;
      }
      return sawNull ? null : true;
    },
    type: { name: 'BOOLEAN' },
    slots: new Set(conjuncts.flatMap((conjunct) => [...conjunct.bound.slots])),
    text: conjuncts.map((conjunct) => conjunct.bound.text).join(' AND '),
  };
}
