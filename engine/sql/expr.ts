/**
 * Binding and compiling expressions. A bound expression is a closure over the statement's frame
 * (one stored row per FROM source, plus an aggregate row after grouping) and the parameters,
 * built once when the statement is planned. NULL follows SQL: comparisons and arithmetic with
 * NULL give NULL, AND/OR are three-valued, and WHERE keeps only rows whose predicate is true.
 */
import type { TableDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError, nearNames, type SourcePosition } from '../errors.ts';
import { coerceValue, compareValues, isIntegerType, roundDecimal, valuesEqual, type Row, type SqlType, type Value } from '../types.ts';
import { literalValue, noLiteral } from './literal.ts';
import type { Ast } from './parse.ts';

export type Frame = Row[];
export type Evaluate = (frame: Frame, params: readonly Value[]) => Value;

export interface Bound {
  readonly evaluate: Evaluate;
  /** Static type where known (columns, typed literals); undefined for parameters and NULL. */
  readonly type: SqlType | undefined;
  /** Frame slots the expression reads; empty means constant per execution. */
  readonly slots: ReadonlySet<number>;
  /** Set when the expression is exactly one column: its slot and position. */
  readonly column?: { slot: number; position: number };
  /** Set when the expression is exactly one parameter. */
  readonly parameter?: number;
  readonly constant?: { value: Value };
  readonly text: string;
}

export interface Source {
  readonly alias: string;
  readonly table: TableDef;
  readonly slot: number;
}

export interface AggregateCall {
  readonly fn: 'COUNT' | 'SUM' | 'MIN' | 'MAX' | 'AVG';
  readonly argument: Bound | undefined;
  readonly distinct: boolean;
  readonly text: string;
}

/** What names mean where an expression is bound. */
export interface Scope {
  readonly sources: readonly Source[];
  /** Collects aggregate calls (SELECT list, HAVING, ORDER BY); undefined where they are not allowed. */
  readonly aggregates?: AggregateCall[];
  /** The frame slot holding aggregate values after grouping. */
  readonly aggregateSlot?: number;
  /** SELECT-list aliases usable by ORDER BY and HAVING. */
  readonly aliases?: ReadonlyMap<string, Bound>;
  readonly where: string;
}

const emptySlots: ReadonlySet<number> = new Set();
const booleanType: SqlType = { name: 'BOOLEAN' };
const floatType: SqlType = { name: 'FLOAT' };
const bigintType: SqlType = { name: 'BIGINT' };
const varcharType: SqlType = { name: 'VARCHAR', length: 1 << 20 };
const timestampType: SqlType = { name: 'TIMESTAMP' };

function union(...bounds: Bound[]): ReadonlySet<number> {
  let result: Set<number> | undefined;
  for (const bound of bounds) {
    if (bound.slots.size === 0) continue;
    result ??= new Set();
    for (const slot of bound.slots) result.add(slot);
  }
  return result ?? emptySlots;
}

function make(evaluate: Evaluate, type: SqlType | undefined, parts: Bound[], text: string): Bound {
  return { evaluate, type, slots: union(...parts), text };
}

export function bindExpression(node: Ast, scope: Scope): Bound {
  const literal = literalValue(node);
  if (literal !== noLiteral) {
    const type: SqlType | undefined =
      literal === null ? undefined
        : typeof literal === 'number' ? (Number.isInteger(literal) && !/[.eE]/.test(String(node.value)) ? bigintType : floatType)
        : typeof literal === 'string' ? { name: 'VARCHAR', length: literal.length }
        : typeof literal === 'boolean' ? booleanType
        : { name: 'VARBINARY', length: (literal as Uint8Array).length };
    return { evaluate: () => literal, type, slots: emptySlots, constant: { value: literal }, text: renderLiteral(literal) };
  }
  switch (node.type) {
    case 'param': {
      const index = Number(String(node.value).slice(1));
      return { evaluate: (_frame, params) => params[index], type: undefined, slots: emptySlots, parameter: index, text: '?' };
    }
    case 'column_ref':
      return bindColumn(node, scope);
    case 'binary_expr':
      return bindBinary(node, scope);
    case 'unary_expr':
      return bindUnary(node, scope);
    case 'function':
      return bindFunction(node, scope);
    case 'aggr_func':
      return bindAggregate(node, scope);
    case 'case':
      return bindCase(node, scope);
    case 'cast':
      return bindCast(node, scope);
    case 'extract':
      return bindExtract(node, scope);
    case 'expr_list':
      if (node.value?.length === 1) return bindExpression(node.value[0], scope);
      break;
  }
  throw new SluiceError(ErrorCode.UNSUPPORTED, `unsupported expression ${describeNode(node)} in ${scope.where}`);
}

/**
 * Where a node starts in its statement (from the parser's locations), for error details.
 * statement.ts recomputes line and column from the offset against the statement text.
 */
export function at(node: Ast): { position?: SourcePosition } {
  const start = node?.loc?.start;
  return typeof start?.offset === 'number' ? { position: start as SourcePosition } : {};
}

function describeNode(node: Ast): string {
  return node?.type === 'function' ? `function ${functionName(node)}` : `'${node?.type ?? typeof node}'`;
}

function renderLiteral(value: Value): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value instanceof Uint8Array) return `X'${Buffer.from(value).toString('hex')}'`;
  return String(value);
}

function bindColumn(node: Ast, scope: Scope): Bound {
  const name = String(node.column).toLowerCase();
  const qualifier = node.table ? String(node.table).toLowerCase() : undefined;
  if (!qualifier && scope.aliases?.has(name)) {
    const matchesSource = scope.sources.some((source) => source.table.columnsByName.has(name));
    if (!matchesSource) return scope.aliases.get(name)!;
  }
  const candidates = scope.sources.filter((source) => (qualifier ? source.alias === qualifier : true) && source.table.columnsByName.has(name));
  if (qualifier && !scope.sources.some((source) => source.alias === qualifier)) {
    throw new SluiceError(ErrorCode.UNKNOWN_TABLE, `unknown table or alias ${qualifier} in ${scope.where}`, {
      ...at(node),
      object: qualifier,
      suggestions: nearNames(qualifier, scope.sources.map((source) => source.alias)),
    });
  }
  if (candidates.length === 0) {
    const known = scope.sources.flatMap((source) => source.table.columns.map((column) => column.name));
    const where = qualifier ?? scope.sources.map((source) => source.alias).join(', ');
    throw new SluiceError(ErrorCode.UNKNOWN_COLUMN, `unknown column ${qualifier ? `${qualifier}.` : ''}${name} in ${where || scope.where}`, {
      ...at(node),
      object: name,
      suggestions: nearNames(name, new Set([...known, ...(scope.aliases?.keys() ?? [])])),
    });
  }
  if (candidates.length > 1) {
    throw new SluiceError(ErrorCode.AMBIGUOUS_COLUMN, `column ${name} is ambiguous: it is in ${candidates.map((source) => source.alias).join(' and ')}; qualify it`, { ...at(node), object: name });
  }
  const source = candidates[0];
  const column = source.table.columnsByName.get(name)!;
  const slot = source.slot;
  const position = column.position;
  return {
    evaluate: (frame) => {
      const row = frame[slot];
      return row === null || row === undefined ? null : row[position];
    },
    type: column.type,
    slots: new Set([slot]),
    column: { slot, position },
    text: `${source.alias}.${name}`,
  };
}

function numeric(value: Value, operator: string): number {
  if (typeof value === 'number') return value;
  throw new SluiceError(ErrorCode.TYPE_MISMATCH, `operator ${operator} needs numbers, got ${typeof value === 'string' ? `'${value}'` : String(value)}`);
}

function integerResult(value: number, operator: string): number {
  if (!Number.isSafeInteger(value)) {
    throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, `integer result of ${operator} is outside the exact range ±${Number.MAX_SAFE_INTEGER}`);
  }
  return value;
}

function arithmeticType(left: Bound, right: Bound): SqlType | undefined {
  const a = left.type;
  const b = right.type;
  if (a?.name === 'FLOAT' || b?.name === 'FLOAT') return floatType;
  if (a?.name === 'DECIMAL' || b?.name === 'DECIMAL') return a?.name === 'DECIMAL' ? a : b;
  if (a && b && isIntegerType(a.name) && isIntegerType(b.name)) return bigintType;
  if (a?.name === 'TIMESTAMP' || b?.name === 'TIMESTAMP') return timestampType;
  return a ?? b;
}

const comparisonOperators: ReadonlySet<string> = new Set(['=', '<>', '!=', '<', '<=', '>', '>=']);

/**
 * `side` made comparable with `other`: next to a TIMESTAMP, text is a timestamp
 * ('2024-01-02T03:04:05Z'), converted once for a constant and as it is read for a parameter.
 * Without this, text and numbers never compare equal and TIMESTAMP literals would match nothing.
 */
export function comparableTo(other: Bound, side: Bound): Bound {
  if (other.type?.name !== 'TIMESTAMP' || side.type?.name === 'TIMESTAMP') return side;
  if (side.constant && typeof side.constant.value === 'string') {
    const time = coerceValue(side.constant.value, timestampType, { label: `timestamp literal ${side.text}` });
    return { evaluate: () => time, type: timestampType, slots: emptySlots, constant: { value: time }, text: side.text };
  }
  if (side.parameter !== undefined) {
    const index = side.parameter;
    const label = { label: `parameter ${index + 1}`, path: ['params', index] };
    return {
      evaluate: (_frame, params) => {
        const value = params[index];
        return typeof value === 'string' ? coerceValue(value, timestampType, label) : value;
      },
      type: undefined,
      slots: emptySlots,
      text: side.text,
    };
  }
  return side;
}

export function isTrue(value: Value): boolean {
  return value === true;
}

function bindBinary(node: Ast, scope: Scope): Bound {
  const operator = String(node.operator).toUpperCase();
  if (operator === 'BETWEEN' || operator === 'NOT BETWEEN') {
    const value = bindExpression(node.left, scope);
    const low = comparableTo(value, bindExpression(node.right.value[0], scope));
    const high = comparableTo(value, bindExpression(node.right.value[1], scope));
    const negate = operator === 'NOT BETWEEN';
    return make(
      (frame, params) => {
        // x BETWEEN l AND h is x >= l AND x <= h, three-valued: a NULL end leaves the answer
        // NULL only when the other end does not already make it false.
        const v = value.evaluate(frame, params);
        if (v === null) return null;
        const l = low.evaluate(frame, params);
        const h = high.evaluate(frame, params);
        if ((l !== null && compareValues(v, l) < 0) || (h !== null && compareValues(v, h) > 0)) return negate;
        if (l === null || h === null) return null;
        return !negate;
      },
      booleanType,
      [value, low, high],
      `${value.text} ${operator} ${low.text} AND ${high.text}`,
    );
  }
  if (operator === 'IN' || operator === 'NOT IN') {
    const value = bindExpression(node.left, scope);
    if (node.right.type !== 'expr_list') throw new SluiceError(ErrorCode.UNSUPPORTED, `IN (subquery) is not supported in ${scope.where}`);
    const list = (node.right.value as Ast[]).map((item) => comparableTo(value, bindExpression(item, scope)));
    const negate = operator === 'NOT IN';
    const constants = list.every((item) => item.constant) ? new Set(list.map((item) => item.constant!.value)) : undefined;
    return make(
      (frame, params) => {
        const v = value.evaluate(frame, params);
        if (v === null) return null;
        let found = false;
        let sawNull = false;
        if (constants && typeof v !== 'object') found = constants.has(v);
        else {
          for (let i = 0; i < list.length; i++) {
            const candidate = list[i].evaluate(frame, params);
            if (candidate === null) sawNull = true;
            else if (valuesEqual(v, candidate)) {
              found = true;
              break;
            }
          }
        }
        if (constants?.has(null)) sawNull = true;
        if (found) return !negate;
        return sawNull ? null : negate;
      },
      booleanType,
      [value, ...list],
      `${value.text} ${operator} (${list.map((item) => item.text).join(', ')})`,
    );
  }
  if (operator === 'IS' || operator === 'IS NOT') {
    const value = bindExpression(node.left, scope);
    const right = literalValue(node.right);
    if (right !== null && typeof right !== 'boolean') throw new SluiceError(ErrorCode.UNSUPPORTED, `IS needs NULL, TRUE or FALSE in ${scope.where}`);
    const negate = operator === 'IS NOT';
    return make((frame, params) => (value.evaluate(frame, params) === right) !== negate, booleanType, [value], `${value.text} ${operator} ${String(right).toUpperCase()}`);
  }
  if (operator === 'LIKE' || operator === 'NOT LIKE') return bindLike(node, scope, operator === 'NOT LIKE');
  let left = bindExpression(node.left, scope);
  let right = bindExpression(node.right, scope);
  if (comparisonOperators.has(operator)) {
    left = comparableTo(right, left);
    right = comparableTo(left, right);
  }
  const a = left.evaluate;
  const b = right.evaluate;
  const text = `${left.text} ${operator} ${right.text}`;
  switch (operator) {
    case 'AND':
      return make(
        (frame, params) => {
          const l = a(frame, params);
          if (l === false) return false;
          const r = b(frame, params);
          if (r === false) return false;
          return l === null || r === null ? null : true;
        },
        booleanType, [left, right], text,
      );
    case 'OR':
      return make(
        (frame, params) => {
          const l = a(frame, params);
          if (l === true) return true;
          const r = b(frame, params);
          if (r === true) return true;
          return l === null || r === null ? null : false;
        },
        booleanType, [left, right], text,
      );
    case '=':
      return make((frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        return l === null || r === null ? null : l === r || valuesEqual(l, r);
      }, booleanType, [left, right], text);
    case '<>':
    case '!=':
      return make((frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        return l === null || r === null ? null : !(l === r || valuesEqual(l, r));
      }, booleanType, [left, right], text);
    case '<':
      return make((frame, params) => compare(a(frame, params), b(frame, params), (order) => order < 0), booleanType, [left, right], text);
    case '<=':
      return make((frame, params) => compare(a(frame, params), b(frame, params), (order) => order <= 0), booleanType, [left, right], text);
    case '>':
      return make((frame, params) => compare(a(frame, params), b(frame, params), (order) => order > 0), booleanType, [left, right], text);
    case '>=':
      return make((frame, params) => compare(a(frame, params), b(frame, params), (order) => order >= 0), booleanType, [left, right], text);
    case '+':
    case '-':
    case '*':
    case '/':
    case '%':
    case 'DIV':
      return bindArithmetic(operator, left, right, text);
    case '||':
      return make((frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        return l === null || r === null ? null : String(l) + String(r);
      }, varcharType, [left, right], text);
  }
  throw new SluiceError(ErrorCode.UNSUPPORTED, `unsupported operator ${operator} in ${scope.where}`);
}

function compare(l: Value, r: Value, test: (order: number) => boolean): Value {
  if (l === null || r === null) return null;
  return test(compareValues(l, r));
}

const nonNumericTypes: ReadonlySet<string> = new Set(['VARCHAR', 'VARBINARY', 'BOOLEAN']);

function bindArithmetic(operator: string, left: Bound, right: Bound, text: string): Bound {
  // Caught when planned, not on the first row: an empty table must not hide the mistake.
  for (const side of [left, right]) {
    if (side.type && nonNumericTypes.has(side.type.name)) {
      throw new SluiceError(ErrorCode.TYPE_MISMATCH, `operator ${operator} needs numbers, got ${side.text} of type ${side.type.name}`);
    }
  }
  const a = left.evaluate;
  const b = right.evaluate;
  const type = arithmeticType(left, right);
  const integral = type !== undefined && isIntegerType(type.name);
  const scale = type?.name === 'DECIMAL' ? type.scale! : undefined;
  const finish = (value: number, l: number, r: number): number => {
    if (scale !== undefined) return roundDecimal(value, scale);
    // Integer operands (by type, or by value for untyped parameters) give an exact integer or an
    // error; a fractional parameter next to an integer column makes the result fractional.
    if ((integral || type === undefined) && Number.isInteger(l) && Number.isInteger(r)) return integerResult(value, operator);
    return value;
  };
  let evaluate: Evaluate;
  switch (operator) {
    case '+':
      evaluate = (frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        if (l === null || r === null) return null;
        const x = numeric(l, operator);
        const y = numeric(r, operator);
        return finish(x + y, x, y);
      };
      break;
    case '-':
      evaluate = (frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        if (l === null || r === null) return null;
        const x = numeric(l, operator);
        const y = numeric(r, operator);
        return finish(x - y, x, y);
      };
      break;
    case '*':
      evaluate = (frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        if (l === null || r === null) return null;
        const x = numeric(l, operator);
        const y = numeric(r, operator);
        return finish(x * y, x, y);
      };
      break;
    case '/':
      // Integer division truncates, as in VoltDB and PostgreSQL; division by zero is an error.
      evaluate = (frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        if (l === null || r === null) return null;
        const x = numeric(l, operator);
        const y = numeric(r, operator);
        if (y === 0) throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, 'division by zero');
        if (scale !== undefined) return roundDecimal(x / y, scale);
        const integer = (integral || type === undefined) && Number.isInteger(x) && Number.isInteger(y);
        return integer ? Math.trunc(x / y) : x / y;
      };
      break;
    case 'DIV':
      // MySQL's integer division: truncates whatever the operand types.
      evaluate = (frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        if (l === null || r === null) return null;
        const y = numeric(r, operator);
        if (y === 0) throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, 'division by zero');
        return integerResult(Math.trunc(numeric(l, operator) / y), operator);
      };
      return make(evaluate, bigintType, [left, right], text);
    default:
      evaluate = (frame, params) => {
        const l = a(frame, params);
        const r = b(frame, params);
        if (l === null || r === null) return null;
        const x = numeric(l, operator);
        const y = numeric(r, operator);
        if (y === 0) throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, 'division by zero');
        return x % y;
      };
  }
  return make(evaluate, type, [left, right], text);
}

function bindUnary(node: Ast, scope: Scope): Bound {
  const operator = String(node.operator).toUpperCase();
  const inner = bindExpression(node.expr, scope);
  const evaluate = inner.evaluate;
  if (operator === '-') {
    return make((frame, params) => {
      const value = evaluate(frame, params);
      return value === null ? null : -numeric(value, '-');
    }, inner.type, [inner], `-${inner.text}`);
  }
  if (operator === '+') return inner;
  if (operator === 'NOT' || operator === '!') return negate(inner);
  throw new SluiceError(ErrorCode.UNSUPPORTED, `unsupported operator ${operator} in ${scope.where}`);
}

function negate(inner: Bound): Bound {
  const evaluate = inner.evaluate;
  return make((frame, params) => {
    const value = evaluate(frame, params);
    return value === null ? null : !value;
  }, booleanType, [inner], `NOT ${inner.text}`);
}

function bindLike(node: Ast, scope: Scope, negated: boolean): Bound {
  const value = bindExpression(node.left, scope);
  const pattern = bindExpression(node.right, scope);
  const constantPattern = pattern.constant?.value;
  const fixed = typeof constantPattern === 'string' ? likeToRegExp(constantPattern) : undefined;
  return make(
    (frame, params) => {
      const v = value.evaluate(frame, params);
      if (v === null) return null;
      let regexp = fixed;
      if (!regexp) {
        const p = pattern.evaluate(frame, params);
        if (p === null) return null;
        regexp = likeToRegExp(String(p));
      }
      return regexp.test(String(v)) !== negated;
    },
    booleanType,
    [value, pattern],
    `${value.text} ${negated ? 'NOT LIKE' : 'LIKE'} ${pattern.text}`,
  );
}

export function likeToRegExp(pattern: string): RegExp {
  let source = '^';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i];
    if (char === '\\' && i + 1 < pattern.length) source += pattern[++i].replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (char === '%') source += '[\\s\\S]*';
    else if (char === '_') source += '[\\s\\S]';
    else source += char.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`${source}$`);
}

/** The constant LIKE prefix ('abc%' → 'abc'), usable as an index range; undefined if none. */
export function likePrefix(pattern: string): string | undefined {
  const match = /^([^%_\\]+)%$/.exec(pattern);
  return match ? match[1] : undefined;
}

/**
 * The static type of an expression that yields one of several values (COALESCE, CASE): for
 * numbers the widest (FLOAT over DECIMAL over integers), as in standard SQL and PostgreSQL, so
 * that `COALESCE(int_column, float_column) / 2` divides as FLOAT whichever value it takes.
 * Otherwise the first known type.
 */
function commonType(values: readonly Bound[]): SqlType | undefined {
  const types = values.map((value) => value.type).filter((type) => type !== undefined);
  if (types.length === 0 || !types.every(isNumericType)) return types[0];
  if (types.some((type) => type.name === 'FLOAT')) return floatType;
  let decimal: SqlType | undefined;
  for (const type of types) if (type.name === 'DECIMAL' && (decimal === undefined || type.scale! > decimal.scale!)) decimal = type;
  return decimal ?? types[0];
}

function isNumericType(type: SqlType): boolean {
  return type.name === 'FLOAT' || type.name === 'DECIMAL' || isIntegerType(type.name);
}

function bindCase(node: Ast, scope: Scope): Bound {
  const subject = node.expr ? bindExpression(node.expr, scope) : undefined;
  const branches: { when: Bound; then: Bound }[] = [];
  let otherwise: Bound | undefined;
  for (const arg of node.args as Ast[]) {
    if (arg.type === 'when') branches.push({ when: bindExpression(arg.cond, scope), then: bindExpression(arg.result, scope) });
    else otherwise = bindExpression(arg.result, scope);
  }
  const parts = [...(subject ? [subject] : []), ...branches.flatMap((branch) => [branch.when, branch.then]), ...(otherwise ? [otherwise] : [])];
  return make(
    (frame, params) => {
      const value = subject?.evaluate(frame, params);
      for (let i = 0; i < branches.length; i++) {
        const condition = branches[i].when.evaluate(frame, params);
        const matched = subject ? value !== null && condition !== null && valuesEqual(value!, condition) : condition === true;
        if (matched) return branches[i].then.evaluate(frame, params);
      }
      return otherwise ? otherwise.evaluate(frame, params) : null;
    },
    commonType([...branches.map((branch) => branch.then), ...(otherwise ? [otherwise] : [])]),
    parts,
    'CASE … END',
  );
}

function bindCast(node: Ast, scope: Scope): Bound {
  const inner = bindExpression(node.expr, scope);
  const target = String(node.target?.[0]?.dataType ?? '').toUpperCase();
  const evaluate = inner.evaluate;
  let convert: (value: Value) => Value;
  let type: SqlType;
  if (['INT', 'INTEGER', 'BIGINT', 'SMALLINT', 'TINYINT'].includes(target)) {
    type = bigintType;
    convert = (value) => {
      const number = typeof value === 'string' ? Number(value.trim()) : typeof value === 'boolean' ? Number(value) : (value as number);
      if (!Number.isFinite(number)) throw new SluiceError(ErrorCode.TYPE_MISMATCH, `cannot cast ${String(value)} to ${target}`);
      return integerResult(Math.trunc(number), 'CAST');
    };
  } else if (['FLOAT', 'DOUBLE', 'DECIMAL', 'NUMERIC', 'REAL'].includes(target)) {
    type = floatType;
    convert = (value) => {
      const number = typeof value === 'string' ? Number(value.trim()) : Number(value);
      if (Number.isNaN(number)) throw new SluiceError(ErrorCode.TYPE_MISMATCH, `cannot cast ${String(value)} to ${target}`);
      return number;
    };
  } else if (['VARCHAR', 'CHAR', 'TEXT'].includes(target)) {
    type = varcharType;
    convert = (value) => (value instanceof Uint8Array ? Buffer.from(value).toString('hex') : String(value));
  } else if (target === 'TIMESTAMP' || target === 'DATETIME') {
    type = timestampType;
    convert = (value) => {
      const time = typeof value === 'string' ? Date.parse(value) : (value as number);
      if (!Number.isFinite(time)) throw new SluiceError(ErrorCode.TYPE_MISMATCH, `cannot cast ${String(value)} to TIMESTAMP`);
      return time;
    };
  } else {
    throw new SluiceError(ErrorCode.UNSUPPORTED, `CAST to ${target} is not supported in ${scope.where}`);
  }
  return make((frame, params) => {
    const value = evaluate(frame, params);
    return value === null ? null : convert(value);
  }, type, [inner], `CAST(${inner.text} AS ${target})`);
}

const timeUnits: Record<string, number> = {
  MILLISECOND: 1,
  SECOND: 1000,
  MINUTE: 60_000,
  HOUR: 3_600_000,
  DAY: 86_400_000,
};

/** Truncates a timestamp (ms, UTC) to a unit: SECOND … DAY, WEEK (Monday), MONTH, QUARTER, YEAR. */
export function truncateTimestamp(unit: string, time: number): number {
  const fixed = timeUnits[unit];
  if (fixed) return Math.floor(time / fixed) * fixed;
  const date = new Date(time);
  switch (unit) {
    case 'WEEK': {
      const day = Math.floor(time / 86_400_000) * 86_400_000;
      const weekday = (new Date(day).getUTCDay() + 6) % 7;
      return day - weekday * 86_400_000;
    }
    case 'MONTH':
      return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
    case 'QUARTER':
      return Date.UTC(date.getUTCFullYear(), Math.floor(date.getUTCMonth() / 3) * 3, 1);
    case 'YEAR':
      return Date.UTC(date.getUTCFullYear(), 0, 1);
  }
  throw new SluiceError(ErrorCode.UNSUPPORTED, `unknown time unit ${unit}`);
}

export function extractField(field: string, time: number): number {
  const date = new Date(time);
  switch (field) {
    case 'YEAR': return date.getUTCFullYear();
    case 'QUARTER': return Math.floor(date.getUTCMonth() / 3) + 1;
    case 'MONTH': return date.getUTCMonth() + 1;
    case 'DAY': return date.getUTCDate();
    case 'HOUR': return date.getUTCHours();
    case 'MINUTE': return date.getUTCMinutes();
    case 'SECOND': return date.getUTCSeconds();
    case 'MILLISECOND': return date.getUTCMilliseconds();
    // PostgreSQL's DOW counts Sunday as 0; VoltDB's DAY_OF_WEEK counts it as 1.
    case 'DOW': return date.getUTCDay();
    case 'DAY_OF_WEEK': return date.getUTCDay() + 1;
    case 'DOY':
    case 'DAY_OF_YEAR': return Math.floor((time - Date.UTC(date.getUTCFullYear(), 0, 1)) / 86_400_000) + 1;
    case 'WEEK':
    case 'WEEK_OF_YEAR': return isoWeek(time);
    case 'EPOCH': return Math.floor(time / 1000);
  }
  throw new SluiceError(ErrorCode.UNSUPPORTED, `unknown EXTRACT field ${field}`);
}

/** ISO 8601 week number: weeks start on Monday; week 1 holds the year's first Thursday. */
function isoWeek(time: number): number {
  const day = Math.floor(time / 86_400_000);
  const weekday = (new Date(day * 86_400_000).getUTCDay() + 6) % 7;
  const thursday = day - weekday + 3;
  const year = new Date(thursday * 86_400_000).getUTCFullYear();
  const firstThursdayDay = Math.floor(Date.UTC(year, 0, 4) / 86_400_000);
  const firstWeekday = (new Date(firstThursdayDay * 86_400_000).getUTCDay() + 6) % 7;
  return Math.floor((thursday - (firstThursdayDay - firstWeekday + 3)) / 7) + 1;
}

function bindExtract(node: Ast, scope: Scope): Bound {
  const field = String(node.args.field).toUpperCase();
  const source = bindExpression(node.args.source, scope);
  extractField(field, 0);
  return make((frame, params) => {
    const value = source.evaluate(frame, params);
    return value === null ? null : extractField(field, value as number);
  }, bigintType, [source], `EXTRACT(${field} FROM ${source.text})`);
}

function functionName(node: Ast): string {
  const name = node.name;
  if (typeof name === 'string') return name.toUpperCase();
  return String(name?.name?.map((part: Ast) => part.value).join('.') ?? '').toUpperCase();
}

type Scalar = { arity: [number, number]; type: (args: Bound[]) => SqlType | undefined; fn: (values: Value[]) => Value; nullPassThrough?: boolean };

const scalars: Record<string, Scalar> = {
  ABS: { arity: [1, 1], type: (args) => args[0].type, fn: ([v]) => Math.abs(v as number) },
  CEIL: { arity: [1, 1], type: () => floatType, fn: ([v]) => Math.ceil(v as number) },
  CEILING: { arity: [1, 1], type: () => floatType, fn: ([v]) => Math.ceil(v as number) },
  FLOOR: { arity: [1, 1], type: () => floatType, fn: ([v]) => Math.floor(v as number) },
  ROUND: { arity: [1, 2], type: (args) => args[0].type, fn: ([v, places]) => roundDecimal(v as number, (places as number) ?? 0) },
  SQRT: { arity: [1, 1], type: () => floatType, fn: ([v]) => Math.sqrt(v as number) },
  POWER: { arity: [2, 2], type: () => floatType, fn: ([v, e]) => (v as number) ** (e as number) },
  EXP: { arity: [1, 1], type: () => floatType, fn: ([v]) => Math.exp(v as number) },
  LN: { arity: [1, 1], type: () => floatType, fn: ([v]) => Math.log(v as number) },
  LOG10: { arity: [1, 1], type: () => floatType, fn: ([v]) => Math.log10(v as number) },
  MOD: { arity: [2, 2], type: (args) => args[0].type, fn: ([a, b]) => {
    if (b === 0) throw new SluiceError(ErrorCode.NUMERIC_OVERFLOW, 'division by zero');
    return (a as number) % (b as number);
  } },
  UPPER: { arity: [1, 1], type: () => varcharType, fn: ([v]) => String(v).toUpperCase() },
  LOWER: { arity: [1, 1], type: () => varcharType, fn: ([v]) => String(v).toLowerCase() },
  LENGTH: { arity: [1, 1], type: () => bigintType, fn: ([v]) => (v instanceof Uint8Array ? v.length : [...String(v)].length) },
  CHAR_LENGTH: { arity: [1, 1], type: () => bigintType, fn: ([v]) => [...String(v)].length },
  TRIM: { arity: [1, 1], type: () => varcharType, fn: ([v]) => String(v).trim() },
  LTRIM: { arity: [1, 1], type: () => varcharType, fn: ([v]) => String(v).trimStart() },
  RTRIM: { arity: [1, 1], type: () => varcharType, fn: ([v]) => String(v).trimEnd() },
  SUBSTRING: { arity: [2, 3], type: () => varcharType, fn: ([v, start, length]) => {
    const chars = [...String(v)];
    const from = Math.max(0, (start as number) - 1);
    return chars.slice(from, length === undefined ? undefined : from + Math.max(0, length as number)).join('');
  } },
  SUBSTR: { arity: [2, 3], type: () => varcharType, fn: (values) => scalars.SUBSTRING.fn(values) },
  LEFT: { arity: [2, 2], type: () => varcharType, fn: ([v, n]) => [...String(v)].slice(0, n as number).join('') },
  RIGHT: { arity: [2, 2], type: () => varcharType, fn: ([v, n]) => ((n as number) <= 0 ? '' : [...String(v)].slice(-(n as number)).join('')) },
  REPLACE: { arity: [3, 3], type: () => varcharType, fn: ([v, from, to]) => String(v).split(String(from)).join(String(to)) },
  POSITION: { arity: [2, 2], type: () => bigintType, fn: ([needle, haystack]) => String(haystack).indexOf(String(needle)) + 1 },
  CONCAT: { arity: [1, 64], type: () => varcharType, fn: (values) => values.map((value) => String(value)).join('') },
  TO_TIMESTAMP: { arity: [1, 1], type: () => timestampType, fn: ([v]) => (v as number) * 1000 },
  FROM_UNIXTIME: { arity: [1, 1], type: () => timestampType, fn: ([v]) => (v as number) * 1000 },
  SINCE_EPOCH: { arity: [2, 2], type: () => bigintType, fn: ([unit, v]) => Math.floor((v as number) / (timeUnits[String(unit).toUpperCase()] ?? 1)) },
};

function bindFunction(node: Ast, scope: Scope): Bound {
  const name = functionName(node);
  let rawArgs: Ast[] = node.args?.value ?? (node.args ? [node.args] : []);
  if (name === 'NOT') return negate(bindExpression(rawArgs[0], scope));
  if (name === 'TRIM' && rawArgs.some((arg) => arg?.type === 'origin')) return bindTrim(rawArgs, scope);
  // VoltDB writes the unit as a bare word (SINCE_EPOCH(SECOND, ts)), which parses as a column.
  if (name === 'SINCE_EPOCH' && rawArgs[0]?.type === 'column_ref' && !rawArgs[0].table) {
    rawArgs = [{ type: 'single_quote_string', value: String(rawArgs[0].column) }, ...rawArgs.slice(1)];
  }
  // POSITION(needle IN haystack) arrives as one IN expression.
  if (name === 'POSITION' && rawArgs.length === 1 && rawArgs[0]?.type === 'binary_expr' && String(rawArgs[0].operator).toUpperCase() === 'IN') {
    rawArgs = [rawArgs[0].left, rawArgs[0].right];
  }
  if (name === 'COALESCE' || name === 'IFNULL' || name === 'NVL') {
    const args = rawArgs.map((arg) => bindExpression(arg, scope));
    return make((frame, params) => {
      for (let i = 0; i < args.length; i++) {
        const value = args[i].evaluate(frame, params);
        if (value !== null) return value;
      }
      return null;
    }, commonType(args), args, `COALESCE(${args.map((arg) => arg.text).join(', ')})`);
  }
  if (name === 'NULLIF') {
    const [a, b] = rawArgs.map((arg) => bindExpression(arg, scope));
    return make((frame, params) => {
      const x = a.evaluate(frame, params);
      const y = b.evaluate(frame, params);
      return x !== null && y !== null && valuesEqual(x, y) ? null : x;
    }, a.type, [a, b], `NULLIF(${a.text}, ${b.text})`);
  }
  if (name === 'NOW' || name === 'CURRENT_TIMESTAMP') {
    // The transaction's timestamp, not the wall clock: replay must compute the same value.
    return { evaluate: () => currentTransactionTime.value, type: timestampType, slots: emptySlots, text: 'NOW()' };
  }
  if (name === 'TRUNCATE' || name === 'DATE_TRUNC') {
    // VoltDB: TRUNCATE(HOUR, ts); PostgreSQL: DATE_TRUNC('hour', ts).
    const unitNode = rawArgs[0];
    const unit = String(unitNode?.type === 'column_ref' ? unitNode.column : literalValue(unitNode)).toUpperCase();
    truncateTimestamp(unit, 0);
    const time = bindExpression(rawArgs[1], scope);
    return make((frame, params) => {
      const value = time.evaluate(frame, params);
      return value === null ? null : truncateTimestamp(unit, value as number);
    }, timestampType, [time], `${name}(${unit}, ${time.text})`);
  }
  const scalar = scalars[name];
  if (!scalar) {
    throw new SluiceError(ErrorCode.UNKNOWN_FUNCTION, `unknown function ${name} in ${scope.where}`, {
      ...at(node),
      object: name,
      suggestions: nearNames(name, [...Object.keys(scalars), 'COALESCE', 'NULLIF', 'NOW', 'TRUNCATE', 'DATE_TRUNC']),
    });
  }
  if (rawArgs.length < scalar.arity[0] || rawArgs.length > scalar.arity[1]) {
    throw new SluiceError(ErrorCode.PARAM_COUNT, `function ${name} takes ${scalar.arity[0] === scalar.arity[1] ? scalar.arity[0] : `${scalar.arity[0]} to ${scalar.arity[1]}`} arguments, got ${rawArgs.length}`);
  }
  const args = rawArgs.map((arg) => bindExpression(arg, scope));
  const values: Value[] = new Array(args.length);
  const fn = scalar.fn;
  return make((frame, params) => {
    for (let i = 0; i < args.length; i++) {
      const value = args[i].evaluate(frame, params);
      if (value === null) return null;
      values[i] = value;
    }
    return fn(values);
  }, scalar.type(args), args, `${name}(${args.map((arg) => arg.text).join(', ')})`);
}

/** TRIM([BOTH | LEADING | TRAILING] [characters] FROM text): the parser passes the words through. */
function bindTrim(rawArgs: Ast[], scope: Scope): Bound {
  let side = 'BOTH';
  let charactersNode: Ast | undefined;
  let subjectNode: Ast | undefined;
  let afterFrom = false;
  for (const arg of rawArgs) {
    const word = arg?.type === 'origin' ? String(arg.value).toUpperCase() : undefined;
    if (word === 'FROM') afterFrom = true;
    else if (word === 'BOTH' || word === 'LEADING' || word === 'TRAILING') side = word;
    else if (afterFrom) subjectNode = arg;
    else charactersNode = arg;
  }
  if (!subjectNode) throw new SluiceError(ErrorCode.SYNTAX, `TRIM needs FROM <text> in ${scope.where}`);
  const subject = bindExpression(subjectNode, scope);
  const characters = charactersNode ? bindExpression(charactersNode, scope) : undefined;
  const leading = side !== 'TRAILING';
  const trailing = side !== 'LEADING';
  return make((frame, params) => {
    const value = subject.evaluate(frame, params);
    const set = characters ? characters.evaluate(frame, params) : ' ';
    if (value === null || set === null) return null;
    const text = String(value);
    const chars = String(set);
    let start = 0;
    let end = text.length;
    while (leading && start < end && chars.includes(text[start])) start++;
    while (trailing && end > start && chars.includes(text[end - 1])) end--;
    return text.slice(start, end);
  }, varcharType, characters ? [subject, characters] : [subject], `TRIM(${side} FROM ${subject.text})`);
}

/** Set by the executor before each statement runs: the transaction's timestamp for NOW(). */
export const currentTransactionTime = { value: 0 };

function bindAggregate(node: Ast, scope: Scope): Bound {
  if (!scope.aggregates || scope.aggregateSlot === undefined) {
    throw new SluiceError(ErrorCode.UNSUPPORTED, `aggregate ${node.name} is not allowed in ${scope.where}`);
  }
  const fn = String(node.name).toUpperCase() as AggregateCall['fn'];
  if (!['COUNT', 'SUM', 'MIN', 'MAX', 'AVG'].includes(fn)) {
    throw new SluiceError(ErrorCode.UNKNOWN_FUNCTION, `unknown aggregate ${fn} in ${scope.where}`);
  }
  const argumentNode = node.args?.expr;
  const innerScope: Scope = { sources: scope.sources, where: `the argument of ${fn}` };
  const argument = argumentNode?.type === 'star' ? undefined : bindExpression(argumentNode, innerScope);
  const distinct = Boolean(node.args?.distinct);
  const text = `${fn}(${distinct ? 'DISTINCT ' : ''}${argument?.text ?? '*'})`;
  let index = scope.aggregates.findIndex((call) => call.text === text);
  if (index === -1) {
    index = scope.aggregates.length;
    scope.aggregates.push({ fn, argument, distinct, text });
  }
  const slot = scope.aggregateSlot;
  const type: SqlType | undefined =
    fn === 'COUNT' ? bigintType
      : fn === 'AVG' ? floatType
      : fn === 'SUM' && argument?.type && isIntegerType(argument.type.name) ? bigintType
      : argument?.type;
  const position = index;
  return { evaluate: (frame) => frame[slot][position], type, slots: new Set([slot]), text };
}
