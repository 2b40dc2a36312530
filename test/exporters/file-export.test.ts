/**
 * The export pipeline with the file target, embedded: committed rows leave in order per
 * partition with dense sequences; an abort exports nothing; a restart continues where the buffer
 * stopped; day folders and _SUCCESS; bad configuration is refused with the setting's name.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Database } from '../../engine/database.ts';
import { ErrorCode } from '../../engine/errors.ts';
import { partitionOf } from '../../engine/execution/hash.ts';
import { parseExportsConfig } from '../../exporters/config.ts';
import encodeFile from '../../exporters/file-encode.ts';
import { expectError } from '../helpers.ts';
import { exportSchema, exportedFiles, jsonlRowsByPartition, listFiles, temporaryFolder } from './file-helpers.ts';

const day1 = Date.UTC(2026, 10, 22, 10, 0, 0);

function fileExports(root: string, extra: Record<string, unknown> = {}): unknown {
  return { targets: [{ name: 'lake', type: 'file', format: 'jsonl', path: root, lingerMs: 0, batchRowsMax: 7, ...extra }] };
}

async function openDatabase(data: string, exports: unknown, clock?: () => number): Promise<Database> {
  return Database.open({ schema: exportSchema, partitions: 2, ttlIntervalMs: 0, data, exports, clock });
}

async function seedMeters(db: Database, meters: number[]): Promise<void> {
  for (const meter of meters) await db.query('INSERT INTO meters VALUES (?, 0)', [meter]);
}

describe('file export (embedded)', () => {
  it('delivers every committed row in order per partition, and nothing of an aborted call', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const db = await openDatabase(data, fileExports(root), () => day1);
    await seedMeters(db, [1, 2, 3, 4, 5, 6, 7]);
    for (let meter = 1; meter <= 6; meter++) expect(await db.call('Emit', meter, day1, 5, 0)).toBe(5);
    await expectError(() => db.call('Emit', 7, day1, 4, 1), ErrorCode.USER_ABORT, /aborted on purpose/);
    expect(await db.exports!.idle()).toBe(true);

    const byPartition = jsonlRowsByPartition(root);
    let total = 0;
    for (const [partition, rows] of byPartition) {
      total += rows.length;
      for (const row of rows) expect(partitionOf(row.meter as number, 2)).toBe(partition);
      // Per meter, rows keep the order they were inserted in.
      for (let meter = 1; meter <= 6; meter++) {
        const kwh = rows.filter((row) => row.meter === meter).map((row) => row.kwh);
        if (kwh.length > 0) expect(kwh).toEqual([0, 1, 2, 3, 4]);
      }
    }
    expect(total).toBe(30);
    expect([...byPartition.values()].flat().some((row) => row.meter === 7)).toBe(false);
    const sample = [...byPartition.values()].flat().find((row) => row.meter === 1 && row.kwh === 1)!;
    expect(sample).toEqual({ meter: 1, ts: new Date(day1 + 60_000).toISOString(), kwh: 1, note: 'n1', ok: false, level: 1, price: 0.125 });

    // Files cover 1…n of each partition without gaps or overlaps.
    for (const partition of byPartition.keys()) {
      const ranges = exportedFiles(root, 'jsonl').filter((file) => file.partition === partition).sort((a, b) => a.first - b.first);
      let next = 1;
      for (const range of ranges) {
        expect(range.first).toBe(next);
        next = range.last + 1;
      }
      expect(next - 1).toBe(byPartition.get(partition)!.length);
    }
    const stats = db.exports!.statistics().find((entry) => entry.target === 'lake')!;
    expect(stats).toMatchObject({ rowsPending: 0, rowsDelivered: 30, lastError: null, lagSeconds: 0, type: 'file' });
    await db.close();
  });

  it('continues after a restart without reusing sequence numbers', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    let db = await openDatabase(data, fileExports(root), () => day1);
    await seedMeters(db, [1, 2]);
    await db.call('Emit', 1, day1, 3, 0);
    await db.call('Emit', 2, day1, 3, 0);
    expect(await db.exports!.idle()).toBe(true);
    await db.close();

    db = await openDatabase(data, fileExports(root), () => day1);
    await seedMeters(db, [1, 2]);
    await db.call('Emit', 1, day1, 2, 0);
    await db.call('Emit', 2, day1, 2, 0);
    expect(await db.exports!.idle()).toBe(true);
    await db.close();
    const byPartition = jsonlRowsByPartition(root);
    expect([...byPartition.values()].flat()).toHaveLength(10);
    for (const partition of byPartition.keys()) {
      const ranges = exportedFiles(root, 'jsonl').filter((file) => file.partition === partition).sort((a, b) => a.first - b.first);
      for (let i = 1; i < ranges.length; i++) expect(ranges[i].first).toBe(ranges[i - 1].last + 1);
    }
  });

  it('files rows under the day of a timestamp column and closes finished days with _SUCCESS', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const db = await openDatabase(data, fileExports(root, { dayColumn: 'ts', closeGraceMs: 0, timeZone: 'Europe/Copenhagen' }), () => day1);
    await seedMeters(db, [1]);
    // 23:58 Copenhagen time (22:58 UTC) plus 0…3 minutes: two rows on each side of midnight.
    const lateEvening = Date.UTC(2026, 10, 22, 22, 58, 0);
    await db.call('Emit', 1, lateEvening, 4, 0);
    expect(await db.exports!.idle()).toBe(true);
    const files = exportedFiles(root, 'jsonl');
    expect(files.map((file) => [file.day, file.first, file.last]).sort()).toEqual([['2026-11-22', 1, 2], ['2026-11-23', 3, 4]]);
    const successes = [path.join(root, 'readings', 'dt=2026-11-22', '_SUCCESS'), path.join(root, 'readings', 'dt=2026-11-23', '_SUCCESS')];
    for (let waited = 0; waited < 100 && !successes.every((file) => existsSync(file)); waited++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(successes.map((file) => existsSync(file))).toEqual([true, true]);
    expect(listFiles(root).filter((file) => file.includes('.tmp-'))).toEqual([]);
    await db.close();
  });

  it('closes a day filed by a day column when the stream passes its end plus the grace, not by the wall clock', async () => {
    // A replay of January 2020: the day column is years behind the commit clock, as in a backfill
    // or the smart-meter demo's simulated time. Commits are stamped an hour ago, so the watermark
    // (now - 10 s) has passed every one of them; the grace of 2 hours keeps the stream from
    // counting as quiet.
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const hour = 3_600_000;
    const db = await openDatabase(data, fileExports(root, { dayColumn: 'ts', closeGraceMs: 2 * hour, timeZone: 'Europe/Copenhagen' }), () => Date.now() - hour);
    await seedMeters(db, [1, 2]);
    const lateEvening = Date.UTC(2020, 0, 1, 22, 50, 0); // 23:50 in Copenhagen
    await db.call('Emit', 1, lateEvening, 3, 0);
    await db.call('Emit', 2, lateEvening + 20 * 60_000, 2, 0); // 00:10 and 00:11 on 2 January
    await db.call('Emit', 1, lateEvening + 135 * 60_000, 1, 0); // 02:05: past 1 January's end plus the grace
    expect(await db.exports!.idle()).toBe(true);
    const day = (date: string): string => path.join(root, 'readings', `dt=${date}`);
    for (let waited = 0; waited < 100 && !existsSync(path.join(day('2020-01-01'), '_SUCCESS')); waited++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(path.join(day('2020-01-01'), '_SUCCESS'))).toBe(true);
    // 2 January is under way: its end plus the grace is years before the wall clock, yet it stays open.
    expect(existsSync(path.join(day('2020-01-02'), '_SUCCESS'))).toBe(false);
    // A row for the closed day still goes out, beside _SUCCESS.
    await db.call('Emit', 2, lateEvening + 5 * 60_000, 1, 0);
    expect(await db.exports!.idle()).toBe(true);
    const late = exportedFiles(root, 'jsonl').filter((file) => file.day === '2020-01-01');
    expect(late.length).toBeGreaterThanOrEqual(2);
    expect(existsSync(path.join(day('2020-01-02'), '_SUCCESS'))).toBe(false);
    await db.close();
  });

  it('closes the days of a day-column stream that has committed nothing for the grace', async () => {
    // Commits stamped three hours ago with a grace of two: the stream is quiet, so its days close
    // although no row has passed them.
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const hour = 3_600_000;
    const db = await openDatabase(data, fileExports(root, { dayColumn: 'ts', closeGraceMs: 2 * hour, timeZone: 'UTC' }), () => Date.now() - 3 * hour);
    await seedMeters(db, [1]);
    await db.call('Emit', 1, Date.UTC(2020, 0, 1, 12, 0, 0), 2, 0);
    expect(await db.exports!.idle()).toBe(true);
    const success = path.join(root, 'readings', 'dt=2020-01-01', '_SUCCESS');
    for (let waited = 0; waited < 100 && !existsSync(success); waited++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(success)).toBe(true);
    await db.close();
  });

  it('writes CSV with a header, ISO timestamps and empty NULLs', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const db = await openDatabase(data, fileExports(root, { format: 'csv' }), () => day1);
    await seedMeters(db, [1]);
    await db.call('Emit', 1, day1, 2, 0);
    expect(await db.exports!.idle()).toBe(true);
    const [file] = exportedFiles(root, 'csv');
    expect(readFileSync(file.file, 'utf8').trim().split('\n')).toEqual([
      'meter,ts,kwh,note,ok,level,price',
      `1,${new Date(day1).toISOString()},0,,1,0,0`,
      `1,${new Date(day1 + 60_000).toISOString()},1,n1,,1,0.125`,
    ]);
    await db.close();
  });

  it('writes Parquet that DuckDB reads with the stream types, row counts and day partitions', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const db = await openDatabase(data, fileExports(root, { format: 'parquet', batchRowsMax: 1000, dayColumn: 'ts' }), () => day1);
    await seedMeters(db, [1, 2, 3]);
    // 1500 minutes from 10:00 on the 22nd: rows on the 22nd and the 23rd.
    for (const meter of [1, 2, 3]) await db.call('Emit', meter, day1, 1500, 0);
    expect(await db.exports!.idle()).toBe(true);
    await db.close();
    const files = exportedFiles(root, 'parquet');
    expect(new Set(files.map((file) => file.day))).toEqual(new Set(['2026-11-22', '2026-11-23']));
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const instance = await DuckDBInstance.create(':memory:');
    const duck = await instance.connect();
    try {
      const glob = path.join(root, 'readings', '*', '*.parquet');
      const schema = (await duck.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${glob}', hive_partitioning = true)`)).getRowObjects();
      expect(schema.map((column) => `${column.column_name}:${column.column_type}`)).toEqual([
        'meter:BIGINT', 'ts:TIMESTAMP', 'kwh:DOUBLE', 'note:VARCHAR', 'ok:BOOLEAN', 'level:INTEGER', 'price:DECIMAL(10,4)', 'dt:DATE',
      ]);
      const counts = (await duck.runAndReadAll(`SELECT CAST(dt AS VARCHAR) AS day, COUNT(*)::INTEGER AS n, COUNT(DISTINCT meter)::INTEGER AS meters, SUM(kwh) AS kwh FROM read_parquet('${glob}', hive_partitioning = true) GROUP BY dt ORDER BY dt`)).getRowObjects();
      // 10:00 + 0…839 minutes is the 22nd, the remaining 660 minutes the 23rd (UTC).
      expect(counts).toEqual([
        { day: '2026-11-22', n: 3 * 840, meters: 3, kwh: 3 * ((839 * 840) / 2) },
        { day: '2026-11-23', n: 3 * 660, meters: 3, kwh: 3 * ((1499 * 1500) / 2 - (839 * 840) / 2) },
      ]);
      const one = (await duck.runAndReadAll(`SELECT meter, epoch_ms(ts) AS ts, note, ok, level, price::DOUBLE AS price FROM read_parquet('${glob}') WHERE meter = 2 AND kwh = 4`)).getRowObjects();
      expect(one).toEqual([{ meter: 2n, ts: BigInt(day1 + 4 * 60_000), note: 'n4', ok: true, level: 4, price: 0.5 }]);
    } finally {
      duck.closeSync();
      instance.closeSync();
    }
  });

  it('writes DECIMAL columns as Parquet DECIMAL with their precision and scale, values exact', async () => {
    const folder = temporaryFolder();
    const file = path.join(folder, 'decimals.parquet');
    const columns = [
      { name: 'small', type: { name: 'DECIMAL', precision: 5, scale: 2 } },
      { name: 'wide', type: { name: 'DECIMAL', precision: 15, scale: 6 } },
      { name: 'whole', type: { name: 'DECIMAL', precision: 12, scale: 0 } },
    ] as const;
    const rows = [
      [999.99, 999999999.999999, 999999999999],
      [-999.99, -999999999.999999, -999999999999],
      [0.01, 0.000001, 0],
      [1.1, 0.1 + 0.2, 7],
      [null, null, null],
    ];
    encodeFile({ file, format: 'parquet', columns: columns.map((column) => ({ ...column, type: { ...column.type } })), rows });
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const instance = await DuckDBInstance.create(':memory:');
    const duck = await instance.connect();
    try {
      const schema = (await duck.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${file}')`)).getRowObjects();
      expect(schema.map((column) => `${column.column_name}:${column.column_type}`)).toEqual(['small:DECIMAL(5,2)', 'wide:DECIMAL(15,6)', 'whole:DECIMAL(12,0)']);
      const physical = (await duck.runAndReadAll(`SELECT name, type, converted_type, precision, scale FROM parquet_schema('${file}') WHERE type IS NOT NULL ORDER BY name`)).getRowObjects();
      expect(physical).toEqual([
        { name: 'small', type: 'INT32', converted_type: 'DECIMAL', precision: 5n, scale: 2n },
        { name: 'whole', type: 'INT64', converted_type: 'DECIMAL', precision: 12n, scale: 0n },
        { name: 'wide', type: 'INT64', converted_type: 'DECIMAL', precision: 15n, scale: 6n },
      ]);
      const text = (await duck.runAndReadAll(`SELECT small::VARCHAR AS small, wide::VARCHAR AS wide, whole::VARCHAR AS whole FROM read_parquet('${file}')`)).getRowObjects();
      expect(text).toEqual([
        { small: '999.99', wide: '999999999.999999', whole: '999999999999' },
        { small: '-999.99', wide: '-999999999.999999', whole: '-999999999999' },
        { small: '0.01', wide: '0.000001', whole: '0' },
        { small: '1.10', wide: '0.300000', whole: '7' },
        { small: null, wide: null, whole: null },
      ]);
    } finally {
      duck.closeSync();
      instance.closeSync();
    }
  });

  it('writes an end-of-day batch as one file plus _SUCCESS, once, and catches up a missed day at start', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const exports = {
      targets: [{ name: 'lake', type: 'file', format: 'csv', path: root }],
      daily: [
        { name: 'by_hand', target: 'lake', query: 'SELECT meter, COUNT(*) AS intervals, SUM(kwh) AS kwh FROM meter_usage WHERE ts >= ? AND ts < ? GROUP BY meter ORDER BY meter' },
        { name: 'scheduled', daily: '00:05 UTC', target: 'lake', query: 'SELECT COUNT(*) AS n FROM meters' },
      ],
    };
    const now = Date.UTC(2026, 10, 23, 6, 0, 0);
    const db = await openDatabase(data, exports, () => now);
    for (const [meter, ts, kwh] of [[1, day1, 1], [1, day1 + 1000, 2], [2, day1 - 86_400_000, 5]]) await db.query('INSERT INTO meter_usage VALUES (?, ?, ?)', [meter, ts, kwh]);
    expect(await db.exportRun('by_hand', '2026-11-22')).toMatchObject({ status: 'written', rows: 1 });
    expect(await db.exportRun('by_hand', '2026-11-22')).toMatchObject({ status: 'already', rows: 1 });
    expect(readFileSync(path.join(root, 'by_hand', 'dt=2026-11-22', 'part-00000.csv'), 'utf8').trim().split('\n')).toEqual(['meter,intervals,kwh', '1,2,3']);
    expect(existsSync(path.join(root, 'by_hand', 'dt=2026-11-22', '_SUCCESS'))).toBe(true);
    // The scheduled job's last firing (00:05 on the 23rd) passed before the database opened.
    expect(await db.exportRun('scheduled', '2026-11-22')).toMatchObject({ status: 'already' });
    expect(existsSync(path.join(root, 'scheduled', 'dt=2026-11-22', '_SUCCESS'))).toBe(true);
    await db.close();
  });

  it('exports to a JSON Lines file target under <data>/export by default', async () => {
    const data = temporaryFolder();
    const db = await openDatabase(data, undefined, () => day1);
    await seedMeters(db, [1]);
    await db.call('Emit', 1, day1, 3, 0);
    await db.exports!.idle();
    // The default target lingers (rolls files by time); closing delivers nothing more but keeps the rows.
    await db.close();
    const root = path.join(data, 'export', 'files', 'lake');
    const reopened = await openDatabase(data, undefined, () => day1);
    expect(await reopened.exports!.idle()).toBe(true);
    await reopened.close();
    expect([...jsonlRowsByPartition(root).values()].flat().map((row) => row.kwh)).toEqual([0, 1, 2]);
  });
});

describe('backpressure (embedded)', () => {
  async function blocked(onFull: 'wait' | 'fail'): Promise<{ db: Database; root: string }> {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    mkdirSync(root, { recursive: true });
    // The stream's folder is a file: deliveries fail until it is removed.
    writeFileSync(path.join(root, 'readings'), 'in the way');
    const db = await openDatabase(data, { ...(fileExports(root, { backoffMsMin: 10, backoffMsMax: 20 }) as object), buffer: { bytesMax: 200, onFull } }, () => day1);
    await seedMeters(db, [1, 2, 3, 4]);
    await db.call('Emit', 1, day1, 20, 0);
    return { db, root };
  }

  const otherPartitionMeter = [2, 3, 4].find((meter) => partitionOf(meter, 2) !== partitionOf(1, 2))!;

  it("fails calls of the full partition with EXPORT_BUFFER_FULL ('fail') and takes them again once it drains", async () => {
    const { db, root } = await blocked('fail');
    await expectError(() => db.call('Emit', 1, day1, 1, 0), ErrorCode.EXPORT_BUFFER_FULL, /export buffer of stream readings partition \d is full .*target lake/);
    expect(await db.call('Emit', otherPartitionMeter, day1, 1, 0)).toBe(1);
    rmSync(path.join(root, 'readings'));
    expect(await db.exports!.idle()).toBe(true);
    expect(await db.call('Emit', 1, day1, 2, 0)).toBe(2);
    expect(await db.exports!.idle()).toBe(true);
    expect([...jsonlRowsByPartition(root).values()].flat()).toHaveLength(23);
    await db.close();
  });

  it("holds calls of the full partition until it drains ('wait')", async () => {
    const { db, root } = await blocked('wait');
    let answered = false;
    const held = db.call('Emit', 1, day1, 3, 0).then((result) => {
      answered = true;
      return result;
    });
    for (let attempt = 0; attempt < 400 && db.exports!.statistics()[0].failures < 3; attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(db.exports!.statistics()[0].failures).toBeGreaterThanOrEqual(3);
    expect(answered).toBe(false);
    rmSync(path.join(root, 'readings'));
    expect(await held).toBe(3);
    expect(await db.exports!.idle()).toBe(true);
    expect([...jsonlRowsByPartition(root).values()].flat()).toHaveLength(23);
    await db.close();
  });
});

describe('export configuration errors', () => {
  it('names the wrong setting', async () => {
    await expectError(() => parseExportsConfig({ targets: [{ name: 'lake', type: 'filez' }] }), ErrorCode.EXPORT_CONFIG, /exports\.targets\[0\]\.type: expected one of file, postgresql/);
    await expectError(() => parseExportsConfig({ targets: [{ name: 'lake', type: 'postgresql', passwordEnv: 'SLUICE_TEST_NO_SUCH_VARIABLE' }] }, {}), ErrorCode.EXPORT_CONFIG, /exports\.targets\[0\]\.passwordEnv: environment variable SLUICE_TEST_NO_SUCH_VARIABLE is not set/);
    await expectError(() => parseExportsConfig({ targets: [{ name: 'lake', type: 'postgresql', url: 'postgres://u:${NOPE_PASSWORD}@h/db' }] }, {}), ErrorCode.EXPORT_CONFIG, /exports\.targets\[0\]\.url: environment variable NOPE_PASSWORD/);
    await expectError(() => parseExportsConfig({ buffer: { bytesMax: -1 } }), ErrorCode.EXPORT_CONFIG, /exports\.buffer\.bytesMax: expected a positive integer, got -1/);
    await expectError(() => parseExportsConfig({ buffer: { onFull: 'drop' } }), ErrorCode.EXPORT_CONFIG, /exports\.buffer\.onFull: expected "wait" or "fail"/);
    await expectError(() => parseExportsConfig({ targets: [{ name: 'pg', type: 'postgresql' }], daily: [{ name: 'billing', daily: '25:00 Europe/Copenhagen', target: 'pg', query: 'SELECT 1' }] }), ErrorCode.EXPORT_CONFIG, /exports\.daily\[0\]\.daily: expected "HH:MM Area\/City"/);
    await expectError(() => parseExportsConfig({ targets: [{ name: 'pg', type: 'postgresql' }], daily: [{ name: 'billing', daily: '00:05 Mars/Olympus', target: 'pg', query: 'SELECT 1' }] }), ErrorCode.EXPORT_CONFIG, /unknown time zone "Mars\/Olympus"/);
    await expectError(() => parseExportsConfig({ targets: [], daily: [{ name: 'billing', target: 'pg', query: 'SELECT 1' }] }), ErrorCode.EXPORT_CONFIG, /exports\.daily\[0\]\.target: expected the name of a configured target/);
    expect(parseExportsConfig({ targets: [{ name: 'PG', type: 'postgresql', password: '${SECRET}' }] }, { SECRET: 's3cret' }).targets[0]).toMatchObject({ name: 'pg', password: 's3cret' });
  });

  it('refuses a file target with a bad format, compression or day column, and opens nothing', async () => {
    const data = temporaryFolder();
    await expectError(() => openDatabase(data, fileExports(path.join(data, 'out'), { format: 'xml' })), ErrorCode.EXPORT_CONFIG, /exports\.targets\.lake\.format: expected one of parquet, csv, jsonl, got "xml"/);
    await expectError(() => openDatabase(data, fileExports(path.join(data, 'out'), { format: 'parquet', compression: 'lzo' })), ErrorCode.EXPORT_CONFIG, /exports\.targets\.lake\.compression: expected one of snappy, zstd, lz4, gzip, none, got "lzo"/);
    await expectError(() => openDatabase(data, fileExports(path.join(data, 'out'), { format: 'csv', compression: 'zstd' })), ErrorCode.EXPORT_CONFIG, /exports\.targets\.lake\.compression: applies to the parquet format only, not csv/);
    await expectError(() => openDatabase(data, fileExports(path.join(data, 'out'), { dayColumn: 'note' })), ErrorCode.EXPORT_CONFIG, /column readings\.note is VARCHAR; a day column must be TIMESTAMP/);
    await expectError(() => Database.open({ schema: exportSchema, exports: fileExports('x') }), ErrorCode.EXPORT_CONFIG, /needs a data directory/);
  });
});
