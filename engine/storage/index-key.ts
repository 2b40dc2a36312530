/**
 * Key encoding and ordering shared by the hash and ordered indexes.
 *
 * Hash keys: a single column's value is its own key (Map compares numbers and strings by value);
 * binaries become hex text; several columns become one string with each part tagged by kind and
 * strings length-prefixed, so distinct tuples never collide.
 *
 * Ordered keys: the column values followed by the row id (which makes every key unique, so a
 * non-unique index is a plain B-tree). `keyHigh` sorts above every value and stands in for
 * "all keys with this prefix" in range bounds.
 */
import { compareValues, type Value } from '../types.ts';

export type HashKey = number | string | boolean;
export type OrderedKey = readonly (Value | typeof keyHigh)[];

export const keyHigh: unique symbol = Symbol('above every key');

export function encodePart(value: Value): HashKey {
  if (value instanceof Uint8Array) return `x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  return value as HashKey;
}

export function encodeComposite(values: readonly Value[]): string {
  let key = '';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (typeof value === 'string') key += `s${value.length}:${value}`;
    else if (typeof value === 'number') key += `n${value};`;
    else if (typeof value === 'boolean') key += value ? 't' : 'f';
    else if (value instanceof Uint8Array) key += `b${encodePart(value)};`;
    else key += 'z';
  }
  return key;
}

/** Lexicographic order; a proper prefix sorts before its extensions; keyHigh after everything. */
export function compareOrderedKeys(a: OrderedKey, b: OrderedKey): number {
  const length = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < length; i++) {
    const left = a[i];
    const right = b[i];
    if (left === right) continue;
    if (left === keyHigh) return 1;
    if (right === keyHigh) return -1;
    const order = compareValues(left as Value, right as Value);
    if (order !== 0) return order;
  }
  return a.length - b.length;
}
