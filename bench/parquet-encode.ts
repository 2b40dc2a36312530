/**
 * CPU cost per row of a file target's encode task (exporters/file-encode.ts), stage by stage, for
 * the export benchmark's two streams: `readings` (the Emit stream, 7 columns) and `vote_feed`
 * (bench/fixtures/vote-fed.ts, 3 columns: Voter's phone numbers and contestants). Values are
 * seeded pseudo-random, not constants, so that no encoder gets an easier job than live data would
 * give it. Input is what the encoder thread receives: encoded chunks of `--chunk-rows` rows.
 *
 * The CPU is process CPU (process.cpuUsage: user + system, every thread, so garbage collection
 * on helper threads counts), the median of `--repeat` runs after one warm-up, in ns per row. It
 * holds on a machine shared with other work, where wall-clock rates do not. Before and after in
 * one run: `baseline` is the encoder as it was before parquet-wasm (msgpackr rows → row arrays →
 * hyparquet-writer; CSV by csv-stringify), kept here for the comparison.
 *
 *   node bench/parquet-encode.ts [--rows 100000] [--chunk-rows 100] [--repeat 5]
 *
 * Ends with one JSON line: {"workload":"parquet-encode", …}.
 */
import { parseArgs } from 'node:util';
import { stringify } from 'csv-stringify/sync';
import { parquetWriteBuffer, schemaFromColumnData } from 'hyparquet-writer';
import { decodeStreamColumns, decodeStreamRows, encodeStreamChunk } from '../engine/storage/stream-chunk.ts';
import { decimalDefaultPrecision, decimalDefaultScale, type SqlType, type Value } from '../engine/types.ts';
import { seededRandom } from '../engine/random.ts';
import { arrowStream, columnFormat, encode, encodeParquet, parquetCompressionDefault, parquetFromArrow, type EncodeTask } from '../exporters/file-encode.ts';
import { parquetCompressions } from '../exporters/file-target.ts';
import { voterLoad } from './voter-load.ts';

const { values: options } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    'chunk-rows': { type: 'string', default: '100' },
    repeat: { type: 'string', default: '5' },
  },
});
const rowsTotal = Number(options.rows);
const chunkRows = Number(options['chunk-rows']);
const repeat = Number(options.repeat);

interface Fixture {
  name: string;
  columns: EncodeTask['columns'];
  row(n: number): Value[];
}

const random = seededRandom(7);
const votes = voterLoad(7);
const fixtures: Fixture[] = [
  {
    name: 'readings (Emit, 7 columns)',
    columns: [
      { name: 'meter', type: { name: 'BIGINT' } },
      { name: 'ts', type: { name: 'TIMESTAMP' } },
      { name: 'kwh', type: { name: 'FLOAT' } },
      { name: 'note', type: { name: 'VARCHAR', length: 20 } },
      { name: 'ok', type: { name: 'BOOLEAN' } },
      { name: 'level', type: { name: 'INTEGER' } },
      { name: 'price', type: { name: 'DECIMAL', precision: 10, scale: 4 } },
    ],
    row: (n) => [
      1 + Math.floor(random() * 1000),
      1_795_000_000_000 + Math.floor(n / 100) * 60_000,
      Math.round(random() * 5_000) / 1_000,
      random() < 0.3 ? null : `n${Math.floor(random() * 50)}`,
      random() < 0.5,
      Math.floor(random() * 100),
      Math.round(random() * 1e6) / 1e4,
    ],
  },
  {
    name: 'vote_feed (Voter, 3 columns)',
    columns: [
      { name: 'phone_number', type: { name: 'BIGINT' } },
      { name: 'contestant_number', type: { name: 'INTEGER' } },
      { name: 'voted_at', type: { name: 'TIMESTAMP' } },
    ],
    row: (n) => {
      const [phone, contestant] = votes.next();
      // Commit time: a few hundred votes per millisecond at the rates bench/export.ts reaches.
      return [phone, contestant, 1_795_000_000_000 + Math.floor(n / 300)];
    },
  },
];

/** The task an encoder thread gets for `rowsTotal` rows: encoded chunks as the partition workers wrote them. */
function encodedTask(fixture: Fixture): EncodeTask {
  const chunks: { data: Uint8Array; skip: number; count: number }[] = [];
  for (let first = 0; first < rowsTotal; first += chunkRows) {
    const count = Math.min(chunkRows, rowsTotal - first);
    const values: Value[] = [];
    for (let n = first; n < first + count; n++) values.push(...fixture.row(n));
    chunks.push({ data: encodeStreamChunk(1_795_000_000_000 + first, values), skip: 0, count });
  }
  return { file: '', format: 'parquet', columns: fixture.columns, encoded: { width: fixture.columns.length, chunks } };
}

/** Runs before the measured ones, so that the figures are of optimized code, as on a busy encoder thread. */
const warmups = 3;

/** CPU µs of one call, all threads. */
function cpu<T>(work: () => T): { micros: number; result: T } {
  const before = process.cpuUsage();
  const result = work();
  const used = process.cpuUsage(before);
  return { micros: used.user + used.system, result };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * Runs `stages` in order (each gets the previous one's result) `repeat` times after a warm-up and
 * gives each stage's median ns per row, plus the last result.
 */
function measure(stages: [string, (input: any) => unknown][]): { perRow: Record<string, number>; result: unknown } {
  const samples = stages.map(() => [] as number[]);
  let result: unknown;
  for (let run = 0; run < warmups + repeat; run++) {
    let input: unknown;
    stages.forEach(([, stage], s) => {
      const { micros, result: output } = cpu(() => stage(input));
      if (run >= warmups) samples[s].push((micros * 1000) / rowsTotal);
      input = output;
    });
    result = input;
  }
  const perRow: Record<string, number> = {};
  stages.forEach(([name], s) => (perRow[name] = median(samples[s])));
  return { perRow, result };
}

/** The encoder before parquet-wasm: rows decoded by msgpackr, columns of JS values (a BigInt per
 * BIGINT and DECIMAL value), hyparquet-writer (uncompressed). */
function baselineColumns(task: EncodeTask, rows: Value[][]): { name: string; data: unknown[]; type: string; nullable: boolean }[] {
  return task.columns.map((column, c) => {
    const data = new Array<unknown>(rows.length);
    for (let r = 0; r < rows.length; r++) data[r] = rows[r][c];
    const types: Record<string, string> = { TINYINT: 'INT32', SMALLINT: 'INT32', INTEGER: 'INT32', BIGINT: 'INT64', FLOAT: 'DOUBLE', DECIMAL: 'DOUBLE', VARCHAR: 'STRING', VARBINARY: 'BYTE_ARRAY', TIMESTAMP: 'TIMESTAMP', BOOLEAN: 'BOOLEAN' };
    if (column.type.name === 'BIGINT') for (let r = 0; r < data.length; r++) if (data[r] !== null) data[r] = BigInt(data[r] as number);
    if (column.type.name === 'DECIMAL') {
      const factor = 10 ** (column.type.scale ?? decimalDefaultScale);
      for (let r = 0; r < data.length; r++) if (data[r] !== null) data[r] = BigInt(Math.round((data[r] as number) * factor));
    }
    return { name: column.name, data, type: types[column.type.name], nullable: true };
  });
}

function baselineParquet(task: EncodeTask, columnData: ReturnType<typeof baselineColumns>): Uint8Array {
  const schema = schemaFromColumnData({ columnData: columnData as Parameters<typeof schemaFromColumnData>[0]['columnData'] });
  task.columns.forEach((column, c) => {
    const type: SqlType = column.type;
    if (type.name !== 'DECIMAL') return;
    const precision = type.precision ?? decimalDefaultPrecision;
    const scale = type.scale ?? decimalDefaultScale;
    schema[c + 1] = { name: column.name, type: precision <= 9 ? 'INT32' : 'INT64', repetition_type: 'OPTIONAL', converted_type: 'DECIMAL', precision, scale, logical_type: { type: 'DECIMAL', precision, scale } };
  });
  return new Uint8Array(parquetWriteBuffer({ columnData: columnData.map(({ name, data }) => ({ name, data })), schema }));
}

/** CSV as it was written before: csv-stringify over rows of cell values. */
function baselineCsv(task: EncodeTask): Uint8Array {
  const rows = task.encoded!.chunks.flatMap((chunk) => decodeStreamRows(chunk.data, task.encoded!.width, chunk.skip, chunk.count));
  const cells = rows.map((row) =>
    row.map((value, c) => {
      if (value === null) return null;
      if (task.columns[c].type.name === 'TIMESTAMP') return new Date(value as number).toISOString();
      return value instanceof Uint8Array ? Buffer.from(value).toString('hex') : value;
    }),
  );
  return Buffer.from(stringify(cells, { header: true, columns: task.columns.map((column) => column.name) }));
}

const fmt = (n: number): string => n.toFixed(0).padStart(7);
const report: Record<string, unknown> = {};
console.log(`${rowsTotal.toLocaleString('en-US')} rows per file, chunks of ${chunkRows} rows; CPU ns per row (all threads), median of ${repeat}\n`);
for (const fixture of fixtures) {
  const task = encodedTask(fixture);
  const layouts = task.columns.map((column) => columnFormat(column.type).layout);
  const baseline = measure([
    ['decode rows (msgpackr)', () => task.encoded!.chunks.flatMap((chunk) => decodeStreamRows(chunk.data, task.encoded!.width, chunk.skip, chunk.count))],
    ['build columns', (rows: Value[][]) => baselineColumns(task, rows)],
    ['hyparquet-writer', (columns: ReturnType<typeof baselineColumns>) => baselineParquet(task, columns)],
  ]);
  const now = measure([
    ['decode into columns', () => decodeStreamColumns(task.encoded!.chunks, layouts)],
    ['Arrow IPC stream', (columns) => arrowStream(task.columns, columns)],
    [`parquet-wasm (${parquetCompressionDefault})`, (ipc: Uint8Array) => parquetFromArrow(task.columns, ipc, parquetCompressionDefault)],
  ]);
  const whole = measure([['whole task', () => encode(task)]]);
  const baselineTotal = Object.values(baseline.perRow).reduce((a, b) => a + b, 0);
  console.log(`## ${fixture.name}\n`);
  console.log('| stage | ns/row |\n| --- | ---: |');
  for (const [name, value] of Object.entries(baseline.perRow)) console.log(`| before: ${name} | ${fmt(value)} |`);
  console.log(`| **before: whole task** | **${fmt(baselineTotal)}** |`);
  for (const [name, value] of Object.entries(now.perRow)) console.log(`| after: ${name} | ${fmt(value)} |`);
  console.log(`| **after: whole task** | **${fmt(whole.perRow['whole task'])}** |`);
  console.log(`\nbefore/after: ${(baselineTotal / whole.perRow['whole task']).toFixed(1)}x; file bytes/row ${((baseline.result as Uint8Array).length / rowsTotal).toFixed(1)} before, ${((whole.result as Uint8Array).length / rowsTotal).toFixed(1)} after\n`);

  const columns = decodeStreamColumns(task.encoded!.chunks, layouts);
  console.log('| compression | Arrow + Parquet ns/row | bytes/row |\n| --- | ---: | ---: |');
  const compressions: Record<string, { nsPerRow: number; bytesPerRow: number }> = {};
  for (const compression of parquetCompressions) {
    const { perRow, result } = measure([[compression, () => encodeParquet(task.columns, columns, compression)]]);
    compressions[compression] = { nsPerRow: perRow[compression], bytesPerRow: (result as Uint8Array).length / rowsTotal };
    console.log(`| ${compression} | ${fmt(perRow[compression])} | ${compressions[compression].bytesPerRow.toFixed(1)} |`);
  }
  const text = measure([
    ['csv before (csv-stringify)', () => baselineCsv(task)],
    ['csv', () => encode({ ...task, format: 'csv' })],
    ['jsonl', () => encode({ ...task, format: 'jsonl' })],
  ]);
  console.log(`\nwhole task, ns/row: CSV ${fmt(text.perRow['csv before (csv-stringify)'])} before, ${fmt(text.perRow.csv)} after; JSON Lines ${fmt(text.perRow.jsonl)}\n`);
  report[fixture.name] = { before: { ...baseline.perRow, total: baselineTotal }, after: { ...now.perRow, total: whole.perRow['whole task'] }, compressions, csvBefore: text.perRow['csv before (csv-stringify)'], csv: text.perRow.csv, jsonl: text.perRow.jsonl };
}
console.log(JSON.stringify({ workload: 'parquet-encode', rows: rowsTotal, chunkRows, repeat, ...report }));
