/**
 * SQL column types and their JavaScript representation. Values are stored in canonical form so
 * that `===`, Map keys and comparisons work without conversion on the hot path:
 *
 * | SQL type                    | canonical JS value                                           |
 * | --------------------------- | ------------------------------------------------------------ |
 * | TINYINT, SMALLINT, INTEGER  | number (integer, range-checked)                              |
 * | BIGINT                      | number within ±(2^53−1); outside it is rejected, never rounded |
 * | FLOAT                       | number                                                       |
 * | DECIMAL(p, s), p ≤ 15       | number rounded to s decimal places (exact for ≤ 15 digits)   |
 * | VARCHAR(n)                  | string, at most n characters                                 |
 * | VARBINARY(n)                | Uint8Array, at most n bytes                                  |
 * | TIMESTAMP                   | number: milliseconds since the Unix epoch (UTC)              |
 * | BOOLEAN                     | boolean                                                      |
 *
 * SQL NULL is `null`. See docs/sql.md for the reasoning behind BIGINT and DECIMAL.
 */
import { ErrorCode, SluiceError } from './errors.ts';

export type TypeName =
  | 'TINYINT'
  | 'SMALLINT'
  | 'INTEGER'
  | 'BIGINT'
  | 'FLOAT'
  | 'DECIMAL'
  | 'VARCHAR'
  | 'VARBINARY'
  | 'TIMESTAMP'
  | 'BOOLEAN';

export interface SqlType {
  readonly name: TypeName;
  /** VARCHAR characters or VARBINARY bytes. */
  readonly length?: number;
  /** DECIMAL digits in all and after the point. */
  readonly precision?: number;
  readonly scale?: number;
}

export type Value = number | string | boolean | Uint8Array | null;
/** A stored row: column values in table order, then the row id in the last slot. */
export type Row = Value[];

export const decimalPrecisionMax = 15;
export const decimalDefaultPrecision = 15;
export const decimalDefaultScale = 6;
export const varcharDefaultLength = 1024;
export const varbinaryDefaultLength = 1024;

const integerRange: Partial<Record<TypeName, [number, number]>> = {
  TINYINT: [-128, 127],
  SMALLINT: [-32768, 32767],
  INTEGER: [-2147483648, 2147483647],
  BIGINT: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

export function isIntegerType(name: TypeName): boolean {
  return integerRange[name] !== undefined;
}

export function isNumericType(name: TypeName): boolean {
  return isIntegerType(name) || name === 'FLOAT' || name === 'DECIMAL';
}

export function typeToString(type: SqlType): string {
  if (type.name === 'VARCHAR' || type.name === 'VARBINARY') return `${type.name}(${type.length})`;
  if (type.name === 'DECIMAL') return `DECIMAL(${type.precision},${type.scale})`;
  return type.name;
}

/** Where a value is going, for error messages: 'column votes.state' or 'parameter 2 of Vote'. */
export interface ValueTarget {
  readonly label: string;
  readonly path?: (string | number)[];
}

/**
 * Converts a value to the canonical representation of `type`, or throws a SluiceError naming the
 * target. Accepts the obvious JavaScript inputs: number or bigint for numbers, Date or ISO text
 * for timestamps, Uint8Array for binary.
 */
export function coerceValue(value: unknown, type: SqlType, target: ValueTarget): Value {
  if (value === null || value === undefined) return null;
  if (isCanonical(value, type)) return value as Value;
  switch (type.name) {
    case 'TINYINT':
    case 'SMALLINT':
    case 'INTEGER':
    case 'BIGINT':
      return coerceInteger(value, type, target);
    case 'FLOAT':
      if (typeof value === 'number') return value;
      if (typeof value === 'bigint') return Number(value);
      throw mismatch(value, type, target);
    case 'DECIMAL':
      return coerceDecimal(value, type, target);
    case 'VARCHAR':
      if (typeof value !== 'string') throw mismatch(value, type, target);
      if (value.length > type.length! && codePointLength(value) > type.length!) {
        throw new SluiceError(
          ErrorCode.VALUE_TOO_LONG,
          `value of ${codePointLength(value)} characters is too long for ${target.label} ${typeToString(type)}`,
          { path: target.path, object: target.label },
        );
      }
      return value;
    case 'VARBINARY':
      if (!(value instanceof Uint8Array)) throw mismatch(value, type, target);
      if (value.length > type.length!) {
        throw new SluiceError(
          ErrorCode.VALUE_TOO_LONG,
          `value of ${value.length} bytes is too long for ${target.label} ${typeToString(type)}`,
          { path: target.path, object: target.label },
        );
      }
      return value;
    case 'TIMESTAMP':
      return coerceTimestamp(value, type, target);
    case 'BOOLEAN':
      if (typeof value === 'boolean') return value;
      if (value === 0 || value === 1) return value === 1;
      throw mismatch(value, type, target);
  }
}

/**
 * True when `value` is already the canonical form for `type` and in range: the common case on
 * every write and call, checked before building any error context (which costs strings).
 */
export function isCanonical(value: unknown, type: SqlType): boolean {
  if (typeof value === 'number') {
    switch (type.name) {
      case 'INTEGER':
        return (value | 0) === value;
      case 'BIGINT':
      case 'TIMESTAMP':
        return Number.isSafeInteger(value);
      case 'FLOAT':
        return true;
      case 'SMALLINT':
        return (value | 0) === value && value >= -32768 && value <= 32767;
      case 'TINYINT':
        return (value | 0) === value && value >= -128 && value <= 127;
    }
    return false;
  }
  if (typeof value === 'string') return type.name === 'VARCHAR' && value.length <= type.length!;
  if (typeof value === 'boolean') return type.name === 'BOOLEAN';
  return value === null;
}

function coerceInteger(value: unknown, type: SqlType, target: ValueTarget): number {
  let number: number;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw mismatch(value, type, target);
    number = value;
  } else if (typeof value === 'bigint') {
    number = Number(value);
    if (BigInt(number) !== value) throw outOfRange(value, type, target);
  } else {
    throw mismatch(value, type, target);
  }
  const [low, high] = integerRange[type.name]!;
  if (number < low || number > high) throw outOfRange(value, type, target);
  return number;
}

function coerceDecimal(value: unknown, type: SqlType, target: ValueTarget): number {
  let number: number;
  if (typeof value === 'number') number = value;
  else if (typeof value === 'bigint') number = Number(value);
  else if (typeof value === 'string' && /^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$/.test(value)) number = Number(value);
  else throw mismatch(value, type, target);
  if (!Number.isFinite(number)) throw outOfRange(value, type, target);
  const rounded = roundDecimal(number, type.scale!);
  if (Math.abs(rounded) >= 10 ** (type.precision! - type.scale!)) throw outOfRange(value, type, target);
  return rounded;
}

/** Rounds half away from zero to `scale` places; the result is the double nearest the decimal. */
export function roundDecimal(value: number, scale: number): number {
  const factor = 10 ** scale;
  const scaled = Math.abs(value) * factor;
  // Nudge by a relative epsilon so that 1.005 (stored as 1.00499999…) rounds as written.
  const rounded = Math.round(scaled * (1 + Number.EPSILON)) / factor;
  return value < 0 ? -rounded : rounded;
}

function coerceTimestamp(value: unknown, type: SqlType, target: ValueTarget): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw mismatch(value, type, target);
    return value;
  }
  if (value instanceof Date) {
    const time = value.getTime();
    if (Number.isNaN(time)) throw mismatch(value, type, target);
    return time;
  }
  if (typeof value === 'bigint') return coerceInteger(value, { name: 'BIGINT' }, target);
  if (typeof value === 'string') {
    const time = Date.parse(value);
    if (Number.isNaN(time)) throw mismatch(value, type, target);
    return time;
  }
  throw mismatch(value, type, target);
}

function codePointLength(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0xd800 || code > 0xdbff) count++;
  }
  return count;
}

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 40 ? `${value.slice(0, 40)}…` : value}'`;
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return `binary(${value.length} bytes)`;
  if (value instanceof Date) return `Date(${value.toISOString?.() ?? 'invalid'})`;
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

function mismatch(value: unknown, type: SqlType, target: ValueTarget): SluiceError {
  const code = target.path?.[0] === 'params' ? ErrorCode.PARAM_TYPE : ErrorCode.TYPE_MISMATCH;
  return new SluiceError(code, `${target.label} expects ${typeToString(type)}, got ${describeValue(value)}`, {
    path: target.path,
    object: target.label,
    expected: typeToString(type),
  });
}

function outOfRange(value: unknown, type: SqlType, target: ValueTarget): SluiceError {
  return new SluiceError(
    ErrorCode.VALUE_OUT_OF_RANGE,
    `value ${describeValue(value)} is out of range for ${target.label} ${typeToString(type)}`,
    { path: target.path, object: target.label, expected: typeToString(type) },
  );
}

/**
 * The total order used by ordered indexes, ORDER BY, MIN and MAX: NULL first, then numbers,
 * strings (by UTF-16 code unit, i.e. binary collation), booleans and binaries each among their own.
 */
export function compareValues(a: Value, b: Value): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean') return a ? 1 : -1;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return compareBytes(a, b);
  // Values of different families never meet in one column; order them by family for totality.
  return familyRank(a) - familyRank(b);
}

function familyRank(value: Value): number {
  if (typeof value === 'number') return 1;
  if (typeof value === 'string') return 2;
  if (typeof value === 'boolean') return 3;
  return 4;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** SQL equality of two non-null values (binary values compare by content). */
export function valuesEqual(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return compareBytes(a, b) === 0;
  return false;
}
