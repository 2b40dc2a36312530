/**
 * The partition hash: which partition owns a partition-column value. The one function used by
 * the router, the client SDK (to send a call straight to its partition's queue), the importers
 * and the partition's own check on inserted rows. Changing it changes where every row lives:
 * it is part of the snapshot format.
 */
import type { Value } from '../types.ts';

export function partitionOf(value: Value, partitionCount: number): number {
  if (partitionCount === 1) return 0;
  return hashValue(value) % partitionCount;
}

/** A 32-bit unsigned hash of a canonical value. */
export function hashValue(value: Value): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) {
      const low = value | 0;
      const high = Math.floor(value / 4294967296) | 0;
      return mix(Math.imul(low, 0x9e3779b1) ^ mix(high + 0x7f4a7c15));
    }
    return hashString(String(value));
  }
  if (typeof value === 'string') return hashString(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value === null) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) hash = Math.imul(hash ^ value[i], 0x01000193);
  return mix(hash);
}

function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return mix(hash);
}

/** murmur3's finalizer: spreads every input bit over the output. */
function mix(input: number): number {
  let hash = input;
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
