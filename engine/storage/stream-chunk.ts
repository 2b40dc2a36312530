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

/**
 * How decodeStreamColumns lays out one column: Apache Arrow's memory layout, so the buffers become
 * Arrow vectors without a copy. `int64` is pairs of Int32 words (low, high) — no BigInt per value;
 * `decimal128` holds the value times 10^scale as four Uint32 words, little end first. `utf8`
 * and `binary` hold every row's bytes back to back, with offsets; a `utf8` column's lone
 * surrogates, which msgpackr writes as the surrogate's own three bytes (not valid UTF-8, refused
 * by Arrow), read as U+FFFD, as TextEncoder writes them.
 */
export type ColumnLayout =
  | { kind: 'int8' }
  | { kind: 'int16' }
  | { kind: 'int32' }
  | { kind: 'int64' }
  | { kind: 'float64' }
  | { kind: 'decimal128'; scale: number }
  | { kind: 'boolean' }
  | { kind: 'utf8' }
  | { kind: 'binary' };

export interface ColumnBuffers {
  rows: number;
  nullCount: number;
  /** Bit r (least significant first) is set when row r is not NULL. */
  validity: Uint8Array;
  /** int8, int16, int32: Int8Array, Int16Array, Int32Array; int64: Int32Array; float64:
   * Float64Array; decimal128: Uint32Array; boolean: a bitmap like `validity`; utf8, binary: the
   * bytes of every row, back to back. */
  values: Int8Array | Int16Array | Int32Array | Float64Array | Uint32Array | Uint8Array;
  /** utf8, binary: row r is values[offsets[r] … offsets[r + 1]). */
  offsets?: Int32Array;
}

// The narrow integers decode as int32 does: only their arrays' widths differ.
const layoutCodes = { int8: 0, int16: 0, int32: 0, int64: 1, float64: 2, decimal128: 3, boolean: 4, utf8: 5, binary: 6 } as const;
const twoTo32 = 4294967296;
const bytesPerRowGuess = 16;

/**
 * Rows of encoded chunks (each `skip … skip+count-1`, `width` values a row) straight into column
 * buffers, reading the msgpack bytes in place: no JavaScript value per row or field, strings and
 * binaries copied as bytes. The encoder threads' Parquet path (exporters/file-encode.ts).
 */
export function decodeStreamColumns(chunks: readonly { data: Uint8Array; skip: number; count: number }[], layouts: readonly ColumnLayout[]): ColumnBuffers[] {
  let rows = 0;
  for (const chunk of chunks) rows += chunk.count;
  const width = layouts.length;
  const codes = Int8Array.from(layouts, (layout) => layoutCodes[layout.kind]);
  const factors = Float64Array.from(layouts, (layout) => (layout.kind === 'decimal128' ? 10 ** layout.scale : 1));
  const columns = layouts.map((layout): ColumnBuffers => {
    // Every row valid to begin with: a NULL clears its bit, so values, the common case, cost nothing here.
    const column: ColumnBuffers = { rows, nullCount: 0, validity: new Uint8Array((rows + 7) >> 3).fill(0xff), values: new Int32Array(0), offsets: undefined };
    switch (layout.kind) {
      case 'int8': column.values = new Int8Array(rows); break;
      case 'int16': column.values = new Int16Array(rows); break;
      case 'int32': column.values = new Int32Array(rows); break;
      case 'int64': column.values = new Int32Array(rows * 2); break;
      case 'float64': column.values = new Float64Array(rows); break;
      case 'decimal128': column.values = new Uint32Array(rows * 4); break;
      case 'boolean': column.values = new Uint8Array((rows + 7) >> 3); break;
      case 'utf8':
      case 'binary':
        column.values = new Uint8Array(rows * bytesPerRowGuess);
        column.offsets = new Int32Array(rows + 1);
        break;
    }
    // The bits past the last row stay clear, as Arrow writers leave them.
    if ((rows & 7) !== 0) column.validity[rows >> 3] = (1 << (rows & 7)) - 1;
    return column;
  });
  const cursor = new ChunkCursor();
  let row = 0;
  for (const chunk of chunks) {
    cursor.open(chunk.data, (chunk.skip + chunk.count) * width);
    for (let i = chunk.skip * width; i > 0; i--) cursor.skip();
    decodeRowsInto(cursor, columns, codes, factors, row, row + chunk.count);
    row += chunk.count;
  }
  for (const column of columns) if (column.offsets !== undefined) column.values = column.values.subarray(0, column.offsets[rows]);
  return columns;
}

/**
 * Rows `row … end-1` from the cursor into the columns. A function of its own, called once per
 * chunk, so that V8 optimizes it whole rather than through on-stack replacement of the loop,
 * which deoptimized at every chunk's end.
 */
function decodeRowsInto(cursor: ChunkCursor, columns: ColumnBuffers[], codes: Int8Array, factors: Float64Array, row: number, end: number): void {
  // The position, bytes and view in locals, and numbers read inline: this loop is the decoder's
  // whole cost, and fields of the cursor read and written for every value made it half again slower.
  const data = cursor.data;
  const view = cursor.view;
  let pos = cursor.pos;
  const width = columns.length;
  for (; row < end; row++) {
    for (let c = 0; c < width; c++) {
      const column = columns[c];
      const code = codes[c];
      const head = data[pos];
      if (head === 0xc0) {
        pos++;
        column.nullCount++;
        column.validity[row >> 3] &= ~(1 << (row & 7));
        if (code >= layoutCodes.utf8) column.offsets![row + 1] = column.offsets![row];
        continue;
      }
      if (code === layoutCodes.boolean) {
        if (head === 0xc3) column.values[row >> 3] |= 1 << (row & 7);
        else if (head !== 0xc2) throw cursor.corrupt(`a boolean in column ${c}`, pos);
        pos++;
        continue;
      }
      if (code >= layoutCodes.utf8) {
        cursor.pos = pos;
        cursor.bytes(column, row, c, code === layoutCodes.utf8);
        pos = cursor.pos;
        continue;
      }
      let value: number;
      if (head <= 0x7f) {
        value = head;
        pos++;
      } else if (head === 0xcb) {
        value = view.getFloat64(pos + 1);
        pos += 9;
      } else if (code === layoutCodes.int64 && (head === 0xcf || head === 0xd3)) {
        // Exact, whatever the magnitude: the two words as they are.
        const words = column.values as Int32Array;
        words[row * 2 + 1] = view.getInt32(pos + 1);
        words[row * 2] = view.getInt32(pos + 5);
        pos += 9;
        continue;
      } else {
        value = numberAt(view, pos, head);
        if (Number.isNaN(value) && head !== 0xca) throw cursor.corrupt(`a number in column ${c}`, pos);
        pos += numberBytes[head];
      }
      switch (code) {
        case layoutCodes.int32:
          // Int8Array and Int16Array too: the column's SQL type keeps its values within their range.
          (column.values as Int32Array)[row] = value;
          break;
        case layoutCodes.int64: {
          const high = Math.floor(value / twoTo32);
          const words = column.values as Int32Array;
          words[row * 2] = value - high * twoTo32;
          words[row * 2 + 1] = high;
          break;
        }
        case layoutCodes.float64:
          (column.values as Float64Array)[row] = value;
          break;
        default: {
          // Sluice keeps a DECIMAL as a double rounded to its scale with at most 15 digits, so the
          // scaled value is within rounding error of an integer below 2^53: exact after Math.round.
          const scaled = Math.round(value * factors[c]);
          const high = Math.floor(scaled / twoTo32);
          const words = column.values as Uint32Array;
          words[row * 4] = scaled - high * twoTo32;
          words[row * 4 + 1] = high;
          words[row * 4 + 2] = words[row * 4 + 3] = high < 0 ? 0xffffffff : 0;
        }
      }
    }
  }
  cursor.pos = pos;
}

/** Bytes of a msgpack number, its type byte included, by that byte; 0 for what is no number. */
const numberBytes = new Uint8Array(256);
for (let head = 0; head < 256; head++) {
  if (head <= 0x7f || head >= 0xe0) numberBytes[head] = 1;
}
for (const [head, bytes] of [[0xcc, 2], [0xd0, 2], [0xcd, 3], [0xd1, 3], [0xce, 5], [0xd2, 5], [0xca, 5], [0xcf, 9], [0xd3, 9], [0xcb, 9]]) numberBytes[head] = bytes;

/** The msgpack number whose type byte `head` is at `at`; NaN when `head` is no number type. */
function numberAt(view: DataView, at: number, head: number): number {
  if (head <= 0x7f) return head;
  if (head >= 0xe0) return head - 256;
  switch (head) {
    case 0xcb: return view.getFloat64(at + 1);
    case 0xca: return view.getFloat32(at + 1);
    case 0xcc: return view.getUint8(at + 1);
    case 0xcd: return view.getUint16(at + 1);
    case 0xce: return view.getUint32(at + 1);
    case 0xcf: return view.getUint32(at + 1) * twoTo32 + view.getUint32(at + 5);
    case 0xd0: return view.getInt8(at + 1);
    case 0xd1: return view.getInt16(at + 1);
    case 0xd2: return view.getInt32(at + 1);
    case 0xd3: return view.getInt32(at + 1) * twoTo32 + view.getUint32(at + 5);
  }
  return Number.NaN;
}

/** A read position in one chunk's msgpack: `[timestamp, [values…]]` as encodeStreamChunk writes it. */
class ChunkCursor {
  data: Uint8Array = new Uint8Array(0);
  view: DataView = new DataView(this.data.buffer);
  pos = 0;

  /** Positions at the first value and checks the chunk holds at least `values` of them. */
  open(data: Uint8Array, values: number): void {
    this.data = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.pos = 0;
    if (data[this.pos++] !== 0x92) throw this.corrupt('a two-element array');
    this.skip();
    const head = data[this.pos++];
    let length: number;
    if (head >= 0x90 && head <= 0x9f) length = head & 0x0f;
    else if (head === 0xdc) length = this.view.getUint16((this.pos += 2) - 2);
    else if (head === 0xdd) length = this.view.getUint32((this.pos += 4) - 4);
    else throw this.corrupt('the values array');
    if (length < values) throw new Error(`stream chunk holds ${length} values, fewer than the ${values} asked for`);
  }

  /** A string's UTF-8 bytes or a binary's bytes, appended to a `utf8` or `binary` column as row `row`. */
  bytes(column: ColumnBuffers, row: number, index: number, utf8: boolean): void {
    const data = this.data;
    const head = data[this.pos++];
    let length: number;
    if (head >= 0xa0 && head <= 0xbf) length = head & 0x1f;
    else if (head === 0xd9 || head === 0xc4) length = data[this.pos++];
    else if (head === 0xda || head === 0xc5) length = this.view.getUint16((this.pos += 2) - 2);
    else if (head === 0xdb || head === 0xc6) length = this.view.getUint32((this.pos += 4) - 4);
    else {
      this.pos--;
      throw this.corrupt(`a string or binary in column ${index}`);
    }
    const offsets = column.offsets!;
    const start = offsets[row];
    const end = start + length;
    let target = column.values as Uint8Array;
    if (end > target.length) {
      const grown = new Uint8Array(Math.max(end, target.length * 2));
      grown.set(target.subarray(0, start));
      column.values = target = grown;
    }
    // Short strings are the common case: a loop beats creating a subarray for set().
    if (length <= 32) for (let i = 0; i < length; i++) target[start + i] = data[this.pos + i];
    else target.set(data.subarray(this.pos, this.pos + length), start);
    this.pos += length;
    offsets[row + 1] = end;
    // ED A0–BF is a surrogate's encoding (a pair is written as one four-byte character): same length as U+FFFD's.
    if (utf8) {
      for (let i = start; i + 2 < end; i++) {
        if (target[i] === 0xed && target[i + 1] >= 0xa0) {
          target[i] = 0xef;
          target[i + 1] = 0xbf;
          target[i + 2] = 0xbd;
          i += 2;
        }
      }
    }
  }

  /** Steps over one value of any type encodeStreamChunk writes. */
  skip(): void {
    const data = this.data;
    const head = data[this.pos++];
    if (head <= 0x7f || head >= 0xe0 || head === 0xc0 || head === 0xc2 || head === 0xc3) return;
    if (head >= 0xa0 && head <= 0xbf) return void (this.pos += head & 0x1f);
    switch (head) {
      case 0xcc: case 0xd0: this.pos += 1; return;
      case 0xcd: case 0xd1: this.pos += 2; return;
      case 0xce: case 0xd2: case 0xca: this.pos += 4; return;
      case 0xcf: case 0xd3: case 0xcb: this.pos += 8; return;
      case 0xd9: case 0xc4: this.pos += 1 + data[this.pos]; return;
      case 0xda: case 0xc5: this.pos += 2 + this.view.getUint16(this.pos); return;
      case 0xdb: case 0xc6: this.pos += 4 + this.view.getUint32(this.pos); return;
    }
    this.pos--;
    throw this.corrupt('a value');
  }

  corrupt(expected: string, at = this.pos): Error {
    return new Error(`stream chunk: expected ${expected} at byte ${at}, found msgpack type 0x${this.data[at]?.toString(16) ?? 'end'}`);
  }
}
