/**
 * The encoded form of a chunk of committed stream rows: msgpack of `[commit timestamp, values]`,
 * the values row after row. A partition worker encodes each chunk once; the bytes then cross to
 * the main thread, sit in the export buffer (exporters/store.ts) and reach a file target's encoder
 * thread as they are. Rows are decoded only where they are used — a target that sends them from
 * the main thread, a subscription — so the main thread, which also sequences every transaction,
 * does not clone, slice and re-encode every exported value.
 */
import { Packr } from 'msgpackr';
import type { Value } from '../types.ts';

/** Explicit msgpack options: no records extension, 64-bit floats, binaries copied out of LMDB. */
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number', copyBuffers: true, useFloat32: 0 });

export function encodeStreamChunk(timestamp: number, values: readonly unknown[]): Uint8Array {
  // A copy of exact size: msgpackr's result is a view of its larger working buffer, and a view
  // crossing threads would carry all of it.
  return Uint8Array.prototype.slice.call(packr.pack([timestamp, values]));
}

export function decodeStreamChunk(data: Uint8Array): { timestamp: number; values: Value[] } {
  const [timestamp, values] = packr.unpack(data) as [number, Value[]];
  return { timestamp, values };
}

/** Rows `skip … skip+count-1` of an encoded chunk, `width` values each (default: every row from `skip`). */
export function decodeStreamRows(data: Uint8Array, width: number, skip = 0, count?: number): Value[][] {
  const { values } = decodeStreamChunk(data);
  const end = count === undefined ? Math.floor(values.length / width) : skip + count;
  const rows = new Array<Value[]>(end - skip);
  for (let r = skip; r < end; r++) rows[r - skip] = values.slice(r * width, (r + 1) * width);
  return rows;
}

/** Values per chunk in the flat layout `StreamBuffer.takeCommitted` appends. */
export const streamChunkStride = 5;
