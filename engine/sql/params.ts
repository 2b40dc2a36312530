/**
 * Parameters as callers give them (procedure arguments, ad-hoc SQL, client calls) to the canonical
 * values plans compute with: bigint within the exact range to number, Date to ms, undefined to
 * NULL; anything else is refused naming the parameter. Used by the planner's entry points and
 * inlined by compiled statements (compiled.ts).
 */
import { ErrorCode, SluiceError } from '../errors.ts';
import type { Value } from '../types.ts';

/** Parameters in canonical form: bigint within the exact range to number, Date to ms. */
export function normalizeParams(params: readonly unknown[]): Value[] {
  // Most calls pass canonical values already: check, and reuse the array instead of copying.
  for (let i = 0; i < params.length; i++) {
    const value = params[i];
    if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean' || value === null) continue;
    return normalizedCopy(params);
  }
  return params as Value[];
}

function normalizedCopy(params: readonly unknown[]): Value[] {
  const values = new Array<Value>(params.length);
  for (let i = 0; i < params.length; i++) values[i] = normalizeParam(params[i], i);
  return values;
}

export function normalizeParam(value: unknown, index: number): Value {
  if (value === undefined || value === null) return null;
  switch (typeof value) {
    case 'number':
    case 'string':
    case 'boolean':
      return value;
    case 'bigint': {
      const number = Number(value);
      if (BigInt(number) !== value) {
        throw new SluiceError(ErrorCode.VALUE_OUT_OF_RANGE, `parameter ${index + 1} (${value}n) is outside the exact range ±${Number.MAX_SAFE_INTEGER}`, { path: ['params', index] });
      }
      return number;
    }
  }
  if (value instanceof Date) return value.getTime();
  if (value instanceof Uint8Array) return value;
  throw new SluiceError(ErrorCode.PARAM_TYPE, `parameter ${index + 1} has unsupported type ${Array.isArray(value) ? 'array' : typeof value}`, { path: ['params', index] });
}
