/**
 * Recovery (engine/durability/recovery.ts) over a small engine built from the real Table: run
 * transactions while logging them (in segments of 10 records), snapshot midway and truncate the
 * log, run more, then recover into a fresh table and compare. Also: a torn last record is removed and reported; damage in
 * the middle of the log stops recovery; with no snapshot the whole log is replayed.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { open } from 'lmdb';
import { afterEach, describe, expect, it } from 'vitest';
import { captureAll } from '../../engine/durability/capture.ts';
import { CommandLog, segmentFileName, type InvocationRecord } from '../../engine/durability/command-log.ts';
import { DurabilityErrorCode } from '../../engine/durability/framing.ts';
import { formatRecoverySummary, logFolder, recover, type RecoveryProgress } from '../../engine/durability/recovery.ts';
import { SnapshotWriter } from '../../engine/durability/snapshot.ts';
import type { Table } from '../../engine/storage/table.ts';
import type { Row, Value } from '../../engine/types.ts';
import { allTypesCatalog, allTypesDdl, allTypesValues, insertRow, newTable, plainValues, removeFolders, temporaryFolder, updateRow } from './tables.ts';

const folders: string[] = [];
const logs: CommandLog[] = [];
afterEach(async () => {
  for (const log of logs.splice(0)) await log.close();
  removeFolders(folders);
});

/** A one-procedure engine: Put(id, label) inserts the row or changes its label. Deterministic. */
class KeyValueEngine {
  readonly table: Table = newTable(allTypesCatalog(), 'everything');
  private readonly byId = new Map<number, Row>();

  put(id: number, label: string): void {
    const row = this.byId.get(id);
    if (row) updateRow(this.table, row, [6], [label]);
    else this.byId.set(id, insertRow(this.table, allTypesValues(id).with(6, label)));
  }

  load(values: Value[]): void {
    this.byId.set(values[0] as number, insertRow(this.table, values));
  }

  state(): unknown[] {
    return [...this.table.rows].map((row) => plainValues(row.slice(0, this.table.rowIdSlot))).sort((a, b) => (a[0] as number) - (b[0] as number));
  }
}

/** Small segments (10 records each), so every test crosses segment boundaries. */
async function openLog(dataDir: string): Promise<CommandLog> {
  const log = await CommandLog.open({ folder: logFolder(dataDir), mode: 'sync', segmentRecordsMax: 10 });
  logs.push(log);
  return log;
}

async function closeLog(log: CommandLog): Promise<void> {
  logs.splice(logs.indexOf(log), 1);
  await log.close();
}

async function run(engine: KeyValueEngine, log: CommandLog, transactionId: number): Promise<void> {
  const id = transactionId % 17;
  const label = `t${transactionId}`;
  engine.put(id, label);
  await log.append({ transactionId, timestamp: 1_000 + transactionId, partition: 0, procedure: 'Put', parameters: [id, label], catalogVersion: 1 });
}

/** Recovers `dataDir` into a fresh engine. */
async function recoverInto(dataDir: string, warnings: string[] = [], progress: RecoveryProgress[] = []) {
  const log = await openLog(dataDir);
  const engine = new KeyValueEngine();
  const summary = await recover({
    dataDir,
    log,
    loadSnapshot: async (header, chunks) => {
      expect(header.catalogDdl).toBe(allTypesDdl);
      for await (const chunk of chunks) for (const values of chunk.rows) engine.load(values);
    },
    replay: (record: InvocationRecord) => {
      expect(record.procedure).toBe('Put');
      engine.put(record.parameters[0] as number, record.parameters[1] as string);
    },
    onProgress: (report) => progress.push({ ...report }),
    onWarning: (message) => warnings.push(message),
  });
  return { engine, summary, log };
}

describe('recovery', () => {
  it('loads the newest snapshot and replays the log after it to the same state', async () => {
    const dataDir = temporaryFolder(folders);
    const engine = new KeyValueEngine();
    const log = await openLog(dataDir);
    for (let t = 1; t <= 50; t++) await run(engine, log, t);
    const writer = await SnapshotWriter.create(dataDir, {
      catalogDdl: allTypesDdl, catalogVersion: 1, proceduresVersion: 'v1', lastTransactionId: 50, lastTimestamp: 1_050, partitionCount: 1, createdAt: 1,
    });
    for (const chunk of captureAll(0, [engine.table])) await writer.writeChunk(chunk);
    await writer.complete();
    // Segments 1…31 hold only records before 51; segment 41 holds 41…50 and is the current one.
    expect(await log.truncateBefore(51)).toMatchObject({ segmentsRemoved: 4 });
    for (let t = 51; t <= 80; t++) await run(engine, log, t);
    await closeLog(log);

    const progress: RecoveryProgress[] = [];
    const recovered = await recoverInto(dataDir, [], progress);
    expect(recovered.engine.state()).toEqual(engine.state());
    expect(recovered.summary).toMatchObject({ transactionsReplayed: 30, lastTransactionId: 80, lastTimestamp: 1_080, tornTailRemoved: false });
    expect(recovered.summary.snapshot).toMatchObject({ lastTransactionId: 50, rows: 17 });
    expect(progress.map((report) => report.phase)).toEqual(['snapshot', 'snapshot', 'log', 'done']);
    expect(progress.at(-1)).toMatchObject({ rowsLoaded: 17, rowCount: 17, transactionsReplayed: 30, transactionCount: 30 });
    expect(formatRecoverySummary(recovered.summary)).toMatch(/^recovered from snapshot at transaction 50 \(17 rows, catalog version 1\), replayed 30 transactions up to 80 in /);
    // The log continues after the recovered state.
    expect(recovered.log.lastTransactionId).toBe(80);
  });

  it('replays the whole log when there is no snapshot, removing a torn last record', async () => {
    const dataDir = temporaryFolder(folders);
    const engine = new KeyValueEngine();
    const log = await openLog(dataDir);
    for (let t = 1; t <= 20; t++) await run(engine, log, t);
    await closeLog(log);
    const expected = engine.state();
    // The 21st transaction's record was half written when the process died (in the last segment).
    const raw = open<Buffer, number>({ path: path.join(logFolder(dataDir), segmentFileName(11)), noSubdir: true, encoding: 'binary', overlappingSync: true });
    await raw.put(21, Buffer.from([1, 0, 0, 0]));
    await raw.close();

    const warnings: string[] = [];
    const recovered = await recoverInto(dataDir, warnings);
    expect(recovered.engine.state()).toEqual(expected);
    expect(recovered.summary).toMatchObject({ snapshot: undefined, transactionsReplayed: 20, lastTransactionId: 20, tornTailRemoved: true });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/last record \(key 21.*torn.*removed/);
  });

  it('stops with LOG_CORRUPT naming the place when a record in the middle is damaged', async () => {
    const dataDir = temporaryFolder(folders);
    const engine = new KeyValueEngine();
    const log = await openLog(dataDir);
    for (let t = 1; t <= 20; t++) await run(engine, log, t);
    await closeLog(log);
    const raw = open<Buffer, number>({ path: path.join(logFolder(dataDir), segmentFileName(11)), noSubdir: true, encoding: 'binary', overlappingSync: true });
    const frame = Buffer.from(raw.getBinary(12)!);
    frame[frame.length - 1] ^= 0x01;
    await raw.put(12, frame);
    await raw.close();

    await expect(recoverInto(dataDir)).rejects.toMatchObject({
      code: DurabilityErrorCode.LOG_CORRUPT,
      message: expect.stringMatching(/segment-0000000000000011\.mdb is damaged at record 2 of that segment, record 12 from transaction 1 \(key 12, after transaction 11\)/),
    });
  });

  it('stops at damage in an older segment and at a missing segment, naming the segment', async () => {
    const dataDir = temporaryFolder(folders);
    const engine = new KeyValueEngine();
    const log = await openLog(dataDir);
    for (let t = 1; t <= 45; t++) await run(engine, log, t);
    await closeLog(log);
    const files = [1, 11, 21, 31, 41].map((first) => path.join(logFolder(dataDir), segmentFileName(first)));
    // The last record of segment 21: not a torn tail, two segments follow it.
    const raw = open<Buffer, number>({ path: files[2], noSubdir: true, encoding: 'binary', overlappingSync: true });
    await raw.put(30, Buffer.from([1, 0, 0]));
    await raw.close();
    const progress: RecoveryProgress[] = [];
    await expect(recoverInto(dataDir, [], progress)).rejects.toMatchObject({
      code: DurabilityErrorCode.LOG_CORRUPT,
      message: expect.stringMatching(/segment-0000000000000021\.mdb is damaged at record 10 of that segment, record 30 from transaction 1 \(key 30, after transaction 29\).*older segment/),
    });
    // The progress bar saw the whole log across segments before the damage stopped it.
    expect(progress.find((report) => report.phase === 'log')?.transactionCount).toBe(45);
    for (const log of logs.splice(0)) await log.close();

    rmSync(files[2]);
    await expect(recoverInto(dataDir)).rejects.toMatchObject({
      code: DurabilityErrorCode.LOG_CORRUPT,
      message: expect.stringMatching(/segment-0000000000000031\.mdb: it follows segment segment-0000000000000021\.mdb, which is missing/),
    });
  });

  it('stops when a replayed transaction fails, naming it', async () => {
    const dataDir = temporaryFolder(folders);
    const log = await openLog(dataDir);
    await log.append({ transactionId: 1, timestamp: 1, partition: -1, procedure: 'Missing', parameters: [], catalogVersion: 1 });
    await closeLog(log);
    await expect(recoverInto(dataDir)).rejects.toThrow(/replay of transaction 1 \(Missing\) failed/);
  });
});
