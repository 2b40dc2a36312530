/**
 * The file target's encoder (exporters/file-encode.ts). Parquet: decodeStreamColumns (encoded
 * chunks straight into Arrow's column buffers) against decodeStreamRows as the oracle, and whole
 * files of every SQL type — from encoded chunks and from rows — read back by DuckDB with their
 * types, values and compression. CSV: the same text csv-stringify wrote, cells that need quotes
 * included.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { decodeStreamColumns, decodeStreamRows, encodeStreamChunk, type ColumnBuffers, type ColumnLayout } from '../../engine/storage/stream-chunk.ts';
import type { SqlType, Value } from '../../engine/types.ts';
import { stringify } from 'csv-stringify/sync';
import { seededRandom } from '../../engine/random.ts';
import encodeFile, { IsoTimestamps, columnFormat, encodeCsv, type EncodeTask } from '../../exporters/file-encode.ts';
import { temporaryFolder } from './file-helpers.ts';

const columns: EncodeTask['columns'] = [
  { name: 'tiny', type: { name: 'TINYINT' } },
  { name: 'small', type: { name: 'SMALLINT' } },
  { name: 'int', type: { name: 'INTEGER' } },
  { name: 'big', type: { name: 'BIGINT' } },
  { name: 'f', type: { name: 'FLOAT' } },
  { name: 'd', type: { name: 'DECIMAL', precision: 12, scale: 3 } },
  { name: 's', type: { name: 'VARCHAR', length: 400 } },
  { name: 'b', type: { name: 'VARBINARY', length: 200 } },
  { name: 't', type: { name: 'TIMESTAMP' } },
  { name: 'ok', type: { name: 'BOOLEAN' } },
];
const layouts = columns.map((column) => columnFormat(column.type).layout);

// Every msgpack width of integer (fixint, int8/16/32, uint8/16/32, past 32 bits), strings and
// binaries shorter and longer than the copy loop's 32 bytes and than the 16 bytes a row the
// buffers start with, multi-byte UTF-8, a NULL in every column.
const samples: Value[][] = [
  [0, 0, 0, 0, 0, 0, '', new Uint8Array(0), 0, false],
  [127, 32767, 2147483647, Number.MAX_SAFE_INTEGER, 1.5, 999999999.999, 'a', new Uint8Array([0, 255]), 1_795_000_000_123, true],
  [-128, -32768, -2147483648, -Number.MAX_SAFE_INTEGER, -1e300, -999999999.999, 'æøå — €', new Uint8Array(100).fill(7), -1, true],
  [-1, 128, 65536, 4294967296, 0.1, 0.001, 'x'.repeat(40), new Uint8Array([1]), 86_400_000, false],
  [-33, 255, -65537, -4294967297, Number.MIN_VALUE, -0.5, 'y'.repeat(300), new Uint8Array(33).fill(200), 253_402_300_799_999, true],
  [null, null, null, null, null, null, null, null, null, null],
  [5, -300, 70000, 4294967295, -2.25, 12.345, 'n5', null, 1_000, null],
];

/** Row `n` of the test data: the samples over and over. */
function row(n: number): Value[] {
  return samples[n % samples.length];
}

/** Encoded chunks of `sizes` rows each, as partition workers write them. */
function encodedChunks(sizes: number[]): { data: Uint8Array; skip: number; count: number }[] {
  let n = 0;
  return sizes.map((size) => {
    const values: Value[] = [];
    for (let r = 0; r < size; r++) values.push(...row(n++));
    return { data: encodeStreamChunk(1_795_000_000_000, values), skip: 0, count: size };
  });
}

/** The values a column's buffers hold, as the SQL values they came from. */
function columnValues(column: ColumnBuffers, layout: ColumnLayout, type: SqlType): Value[] {
  const out: Value[] = [];
  for (let r = 0; r < column.rows; r++) {
    if ((column.validity[r >> 3] & (1 << (r & 7))) === 0) {
      out.push(null);
      continue;
    }
    switch (layout.kind) {
      case 'int8':
      case 'int16':
      case 'int32':
      case 'float64':
        out.push(column.values[r]);
        break;
      case 'int64': {
        const words = column.values as Int32Array;
        out.push(words[r * 2 + 1] * 2 ** 32 + (words[r * 2] >>> 0));
        break;
      }
      case 'decimal128': {
        const words = column.values as Uint32Array;
        const high = words[r * 4 + 1] | 0;
        // The upper 64 bits only extend the sign.
        expect([words[r * 4 + 2], words[r * 4 + 3]]).toEqual(high < 0 ? [0xffffffff, 0xffffffff] : [0, 0]);
        out.push((high * 2 ** 32 + words[r * 4]) / 10 ** layout.scale);
        break;
      }
      case 'boolean':
        out.push((column.values[r >> 3] & (1 << (r & 7))) !== 0);
        break;
      case 'utf8':
      case 'binary': {
        const bytes = (column.values as Uint8Array).slice(column.offsets![r], column.offsets![r + 1]);
        out.push(type.name === 'VARCHAR' ? Buffer.from(bytes).toString('utf8') : bytes);
        break;
      }
    }
  }
  return out;
}

describe('decodeStreamColumns', () => {
  it('gives the values decodeStreamRows gives, column by column, across chunks and skipped rows', () => {
    const chunks = encodedChunks([7, 1, 30, 12]);
    chunks[0].skip = 2;
    chunks[0].count = 5;
    chunks[2].skip = 29;
    chunks[2].count = 1;
    chunks[3].count = 10;
    const expected = chunks.flatMap((chunk) => decodeStreamRows(chunk.data, columns.length, chunk.skip, chunk.count));
    const decoded = decodeStreamColumns(chunks, layouts);
    expect(decoded.map((column) => column.rows)).toEqual(columns.map(() => 17));
    decoded.forEach((column, c) => {
      // msgpackr gives binaries as Buffers, the column's bytes are plain Uint8Arrays.
      const want = expected.map((values) => (values[c] instanceof Uint8Array ? new Uint8Array(values[c]) : values[c]));
      expect(column.nullCount).toBe(want.filter((value) => value === null).length);
      expect(columnValues(column, layouts[c], columns[c].type), columns[c].name).toEqual(want);
    });
  });

  it('refuses a chunk whose value does not fit the column, naming the column and the byte', () => {
    const chunk = { data: encodeStreamChunk(0, [1, 'not a number']), skip: 0, count: 1 };
    expect(() => decodeStreamColumns([chunk], [{ kind: 'int32' }, { kind: 'int32' }])).toThrow(/expected a number in column 1 at byte \d+, found msgpack type 0xac/);
    expect(() => decodeStreamColumns([{ ...chunk, count: 2 }], [{ kind: 'int32' }, { kind: 'utf8' }])).toThrow(/holds 2 values, fewer than the 4 asked for/);
    expect(() => decodeStreamColumns([chunk], [{ kind: 'boolean' }, { kind: 'utf8' }])).toThrow(/expected a boolean in column 0 at byte \d+, found msgpack type 0x1/);
    expect(() => decodeStreamColumns([chunk], [{ kind: 'int64' }, { kind: 'decimal128', scale: 2 }])).toThrow(/expected a number in column 1/);
    expect(() => decodeStreamColumns([chunk], [{ kind: 'binary' }, { kind: 'utf8' }])).toThrow(/expected a string or binary in column 0/);
  });
});

describe('Parquet files', () => {
  let instance: DuckDBInstance;
  let duck: DuckDBConnection;
  beforeAll(async () => {
    const { DuckDBInstance } = await import('@duckdb/node-api');
    instance = await DuckDBInstance.create(':memory:');
    duck = await instance.connect();
  });
  afterAll(() => {
    duck.closeSync();
    instance.closeSync();
  });

  const query = async (sql: string): Promise<Record<string, unknown>[]> => (await duck.runAndReadAll(sql)).getRowObjects();

  it('holds every SQL type with its values, whether the rows came encoded or as values', async () => {
    const folder = temporaryFolder();
    const chunks = encodedChunks([10, 11]);
    chunks[0].skip = 3;
    chunks[0].count = 7;
    const rows = chunks.flatMap((chunk) => decodeStreamRows(chunk.data, columns.length, chunk.skip, chunk.count));
    const fromChunks = path.join(folder, 'chunks.parquet');
    const fromRows = path.join(folder, 'rows.parquet');
    expect(encodeFile({ file: fromChunks, format: 'parquet', columns, encoded: { width: columns.length, chunks } }).file).toBe(fromChunks);
    encodeFile({ file: fromRows, format: 'parquet', columns, rows });
    const expected = rows.map((values) => ({
      tiny: values[0],
      small: values[1],
      int: values[2],
      big: values[3] === null ? null : BigInt(values[3] as number),
      f: values[4],
      d: values[5] === null ? null : (values[5] as number).toFixed(3),
      s: values[6],
      b: values[7] === null ? null : Buffer.from(values[7] as Uint8Array).toString('hex').toUpperCase(),
      t: values[8] === null ? null : BigInt(values[8] as number),
      ok: values[9],
    }));
    for (const file of [fromChunks, fromRows]) {
      const schema = await query(`DESCRIBE SELECT * FROM read_parquet('${file}')`);
      expect(schema.map((column) => `${column.column_name}:${column.column_type}`)).toEqual([
        'tiny:TINYINT', 'small:SMALLINT', 'int:INTEGER', 'big:BIGINT', 'f:DOUBLE', 'd:DECIMAL(12,3)', 's:VARCHAR', 'b:BLOB', 't:TIMESTAMP', 'ok:BOOLEAN',
      ]);
      const read = await query(`SELECT tiny, small, int, big, f, d::VARCHAR AS d, s, hex(b) AS b, epoch_ms(t) AS t, ok FROM read_parquet('${file}')`);
      expect(read, file).toEqual(expected);
    }
  });

  it('writes a lone surrogate in a VARCHAR as U+FFFD, as TextEncoder does, instead of failing', async () => {
    const file = path.join(temporaryFolder(), 'surrogates.parquet');
    const strings = ['a\ud800b', '\udc00', 'pair \ud83d\ude00 ok', `${'x'.repeat(100)}\ud800`, '\ud800\ud800'];
    const chunk = { data: encodeStreamChunk(0, strings), skip: 0, count: strings.length };
    encodeFile({ file, format: 'parquet', columns: [{ name: 's', type: { name: 'VARCHAR' } }], encoded: { width: 1, chunks: [chunk] } });
    const read = await query(`SELECT s FROM read_parquet('${file}')`);
    expect(read.map((line) => line.s)).toEqual(strings.map((text) => Buffer.from(text).toString('utf8')));
    expect(read[0].s).toBe('a\ufffdb');
  });

  it('compresses pages with snappy unless told otherwise', async () => {
    const folder = temporaryFolder();
    const codecs: Record<string, unknown[]> = {};
    for (const compression of [undefined, 'zstd', 'none'] as const) {
      const file = path.join(folder, `${compression ?? 'default'}.parquet`);
      encodeFile({ file, format: 'parquet', compression, columns, encoded: { width: columns.length, chunks: encodedChunks([50]) } });
      codecs[compression ?? 'default'] = (await query(`SELECT DISTINCT compression FROM parquet_metadata('${file}')`)).map((line) => line.compression);
      expect((await query(`SELECT COUNT(*)::INTEGER AS n FROM read_parquet('${file}')`))[0].n).toBe(50);
    }
    expect(codecs).toEqual({ default: ['SNAPPY'], zstd: ['ZSTD'], none: ['UNCOMPRESSED'] });
  });
});

describe('CSV', () => {
  it('is the text csv-stringify wrote with its defaults, quoting included', () => {
    const tricky: Value[][] = [
      ...samples,
      [1, 2, 3, 4, -0, 1.25, 'comma, inside', null, 0, false],
      [1, 2, 3, 4, NaN, 1.25, 'say "hi"', null, 0, true],
      [1, 2, 3, 4, 5e-7, 1.25, 'two\nlines', null, 0, true],
      [1, 2, 3, 4, 1e21, 1.25, 'carriage\rreturn', null, 0, true],
      [1, 2, 3, 4, 6, 1.25, '"', null, 0, true],
      [1, 2, 3, 4, 6, 1.25, ' spaced ', null, 0, true],
    ];
    const named = [...columns, { name: 'odd, "name"', type: { name: 'INTEGER' } as SqlType }];
    const rows = tricky.map((values, r) => [...values, r]);
    const cells = rows.map((values) =>
      values.map((value, c) => {
        if (value === null) return null;
        if (named[c].type.name === 'TIMESTAMP') return new Date(value as number).toISOString();
        return value instanceof Uint8Array ? Buffer.from(value).toString('hex') : value;
      }),
    );
    const expected = stringify(cells, { header: true, columns: named.map((column) => column.name) });
    expect(expected).toContain('"comma, inside"');
    expect(Buffer.from(encodeCsv(named, rows)).toString('utf8')).toBe(expected);
  });
});

describe('IsoTimestamps', () => {
  it('writes what toISOString writes, across days, years past 9999 and before 0, and fractions', () => {
    const random = seededRandom(11);
    const range = 8.64e15;
    const times = [0, -1, 1, 86_399_999, 86_400_000, -86_400_000, -86_400_001, 1.5, -1.5, 253_402_300_799_999, 253_402_300_800_000, -62_167_219_200_001, range, -range];
    for (let i = 0; i < 2000; i++) times.push(Math.floor((random() * 2 - 1) * range));
    // Runs of one day, then back to an earlier day: the cached date part must follow.
    for (let i = 0; i < 200; i++) times.push(1_795_000_000_000 + Math.floor(random() * 3) * 86_400_000 + Math.floor(random() * 86_400_000));
    const timestamps = new IsoTimestamps();
    expect(times.map((time) => timestamps.format(time))).toEqual(times.map((time) => new Date(time).toISOString()));
    for (const outside of [range + 1, -range - 1, range + 86_400_000, Number.NaN]) expect(() => timestamps.format(outside)).toThrow(RangeError);
  });
});
