/**
 * The command log (engine/durability/command-log.ts): records come back as written and in
 * order; group commit puts many appends into few LMDB transactions; a sync append resolves only
 * after its commit is flushed; a torn last record is removed with a warning; damage in the middle
 * stops reading with LOG_CORRUPT naming the record. Segments: the log rolls to a new file when a
 * segment is full, truncateBefore deletes whole covered segments (disk use drops), reads cross
 * segment boundaries, damage in an older segment is damage in the middle, and a missing or cut
 * short segment is detected.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from 'lmdb';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CommandLog, segmentFileName, type CommandLogOptions, type DurabilityMode, type InvocationRecord } from '../../engine/durability/command-log.ts';
import { DurabilityErrorCode, encodeFrame } from '../../engine/durability/framing.ts';
import { groupRecordSpans, type GroupRecordSpan } from '../../engine/durability/group-frame.ts';
import { SluiceError } from '../../engine/errors.ts';

const folders: string[] = [];
const logs: CommandLog[] = [];

afterEach(async () => {
  for (const log of logs.splice(0)) await log.close();
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

function tempLogPath(): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'sluice-log-'));
  folders.push(folder);
  return folder;
}

type Extra = Partial<Pick<CommandLogOptions, 'groupCommitMs' | 'asyncFlushMs' | 'segmentRecordsMax' | 'segmentBytesMax'>>;

async function openLog(logPath: string, mode: DurabilityMode, extra: Extra = {}): Promise<CommandLog> {
  const log = await CommandLog.open({ folder: logPath, mode, ...extra });
  logs.push(log);
  return log;
}

/** The segment files of a log folder, oldest first. */
function segmentFiles(folder: string): string[] {
  return readdirSync(folder).filter((name) => /^segment-\d+\.mdb$/.test(name)).sort().map((name) => path.join(folder, name));
}

function bytesOnDisk(files: readonly string[]): number {
  return files.reduce((sum, file) => sum + statSync(file).size, 0);
}

async function closeLog(log: CommandLog): Promise<void> {
  logs.splice(logs.indexOf(log), 1);
  await log.close();
}

function record(transactionId: number, parameters: InvocationRecord['parameters'] = [transactionId, `p${transactionId}`]): InvocationRecord {
  return { transactionId, timestamp: 1_700_000_000_000 + transactionId, partition: transactionId % 3 === 0 ? -1 : transactionId % 3, procedure: 'Vote', parameters, catalogVersion: 2 };
}

/** Binaries come back as Buffers: compare as plain byte arrays. */
function plain(records: readonly InvocationRecord[]): unknown[] {
  return records.map((entry) => ({ ...entry, parameters: entry.parameters.map((value) => (value instanceof Uint8Array ? Array.from(value) : value)) }));
}

describe('command log', () => {
  it('gives back every record as written, in transaction order, after a reopen', async () => {
    const logPath = tempLogPath();
    const log = await openLog(logPath, 'sync');
    const written = [
      record(1, [new Uint8Array([0, 1, 255]), null, 1.5, -7, 2 ** 53 - 1, 'ünïcødé', true, false]),
      record(2, []),
      record(5, ['x'.repeat(5000)]),
      record(9),
    ];
    await Promise.all(written.map((entry) => log.append(entry)));
    await closeLog(log);

    const reopened = await openLog(logPath, 'sync');
    expect(reopened.lastTransactionId).toBe(9);
    expect(plain([...reopened.read()])).toEqual(plain(written));
    expect(plain([...reopened.read(5)])).toEqual(plain(written.slice(2)));
    expect(reopened.count(2)).toBe(3);
  });

  it('refuses a transaction id that does not grow, also across a reopen', async () => {
    const logPath = tempLogPath();
    const log = await openLog(logPath, 'async');
    await log.append(record(10));
    expect(() => log.append(record(10))).toThrow(/transaction ids only grow/);
    await closeLog(log);
    const reopened = await openLog(logPath, 'off');
    expect(() => reopened.append(record(7))).toThrow(/transaction ids only grow/);
  });

  it('batches the appends of one window into one LMDB transaction', async () => {
    const log = await openLog(tempLogPath(), 'sync', { groupCommitMs: 5 });
    const before = log.store.getStats() as { lastTxnId: number };
    const appends: Promise<void>[] = [];
    const count = 3000;
    for (let id = 1; id <= count; id++) appends.push(log.append(record(id)));
    await Promise.all(appends);
    const after = log.store.getStats() as { lastTxnId: number };
    expect(log.stats.records).toBe(count);
    expect(log.stats.groups).toBe(1);
    // LMDB's own transaction counter: one group, one write transaction.
    expect(after.lastTxnId - before.lastTxnId).toBeLessThanOrEqual(2);
    expect([...log.read()].length).toBe(count);
  });

  it('with a window of 0 (the default), groups what one turn of the event loop appended', async () => {
    const log = await openLog(tempLogPath(), 'sync');
    expect(log.groupCommitMs).toBe(0);
    const firstTurn: Promise<void>[] = [];
    for (let id = 1; id <= 500; id++) firstTurn.push(log.append(record(id)));
    expect(log.stats.groups).toBe(0);
    // The next turn, before the first group's flush: its appends make a group of their own.
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(log.stats.groups).toBe(1);
    const secondTurn: Promise<void>[] = [];
    for (let id = 501; id <= 700; id++) secondTurn.push(log.append(record(id)));
    await Promise.all([...firstTurn, ...secondTurn]);
    expect(log.stats.groups).toBe(2);
    expect([...log.read()].map((entry) => entry.transactionId)).toEqual(Array.from({ length: 700 }, (_, i) => i + 1));
  });

  it('writes a full group at once rather than growing it without bound', async () => {
    const log = await CommandLog.open({ folder: tempLogPath(), mode: 'sync', groupCommitMs: 1000, groupRecordsMax: 100 });
    logs.push(log);
    const appends: Promise<void>[] = [];
    for (let id = 1; id <= 250; id++) appends.push(log.append(record(id)));
    // The first two groups were full and are written already; the last 50 wait for the window.
    expect(log.stats.groups).toBe(2);
    await closeLog(log);
    await Promise.all(appends);
    expect(log.stats.groups).toBe(3);
  });

  it('resolves a sync append only after its commit is flushed to disk', async () => {
    const log = await openLog(tempLogPath(), 'sync');
    const events: string[] = [];
    const keys: number[] = [];
    // Observe the real LMDB flush promise of each write (a spy around the real store). A group is
    // one write, keyed by its last transaction id.
    const store = log.store;
    const put = store.put.bind(store);
    store.put = ((key: number, value: Buffer) => {
      keys.push(key);
      const commit = put(key, value) as Promise<boolean> & { flushed: Promise<void> };
      void commit.then(() => events.push(`committed ${key}`));
      void commit.flushed.then(() => events.push(`flushed ${key}`));
      return commit;
    }) as typeof store.put;
    await Promise.all([1, 2, 3].map((id) => log.append(record(id)).then(() => events.push(`acknowledged ${id}`))));
    await log.append(record(4)).then(() => events.push('acknowledged 4'));
    expect(keys).toEqual([3, 4]);
    for (const id of [1, 2, 3, 4]) {
      const holder = keys.find((key) => key >= id)!;
      expect(events).toContain(`flushed ${holder}`);
      expect(events.indexOf(`flushed ${holder}`)).toBeLessThan(events.indexOf(`acknowledged ${id}`));
    }
  });

  it('does not wait for the disk in async mode, and writes within the flush interval', async () => {
    const log = await openLog(tempLogPath(), 'async', { asyncFlushMs: 20 });
    let acknowledged = false;
    await log.append(record(1)).then(() => (acknowledged = true));
    expect(acknowledged).toBe(true);
    expect(log.stats.groups).toBe(0);
    // Written by the interval timer, not by the append: wait for it (bounded, not timed).
    // stats.groups counts groups issued to LMDB; the commit becomes visible a little later.
    await vi.waitFor(() => expect([...log.read()].map((entry) => entry.transactionId)).toEqual([1]), { timeout: 10_000, interval: 5 });
    expect(log.stats.groups).toBe(1);
  });

  it('writes nothing in off mode', async () => {
    const log = await openLog(tempLogPath(), 'off');
    await log.append(record(1));
    await log.append(record(2));
    expect(log.lastTransactionId).toBe(2);
    expect([...log.read()]).toEqual([]);
  });

  it('removes a torn last record with a warning and keeps the rest', async () => {
    const logPath = tempLogPath();
    const log = await openLog(logPath, 'sync');
    for (let id = 1; id <= 5; id++) await log.append(record(id));
    await closeLog(log);
    await corrupt(logPath, 5, 'truncate');

    const reopened = await openLog(logPath, 'sync');
    const warnings: string[] = [];
    const ids = [...reopened.read(0, { onTornTail: (message) => warnings.push(message) })].map((entry) => entry.transactionId);
    expect(ids).toEqual([1, 2, 3, 4]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/key 5.*torn/);
    // Truncated: the record is gone, and the next transaction may reuse its id.
    expect(reopened.count()).toBe(4);
    expect(reopened.lastTransactionId).toBe(4);
    await reopened.append(record(5));
    expect([...reopened.read()].map((entry) => entry.transactionId)).toEqual([1, 2, 3, 4, 5]);
  });

  it('stops with LOG_CORRUPT naming the record when damage is followed by good records', async () => {
    const logPath = tempLogPath();
    const log = await openLog(logPath, 'sync');
    for (let id = 1; id <= 6; id++) await log.append(record(id));
    await closeLog(log);
    await corrupt(logPath, 3, 'flip');

    const reopened = await openLog(logPath, 'sync');
    const seen: number[] = [];
    let caught: unknown;
    try {
      for (const entry of reopened.read(2, { onTornTail: () => seen.push(-1) })) seen.push(entry.transactionId);
    } catch (error) {
      caught = error;
    }
    expect(seen).toEqual([2]);
    expect(caught).toBeInstanceOf(SluiceError);
    expect((caught as SluiceError).code).toBe(DurabilityErrorCode.LOG_CORRUPT);
    expect((caught as SluiceError).message).toMatch(/record 2 from transaction 2 \(key 3, after transaction 2\): checksum mismatch/);
    // Nothing was removed: the damage is left for an operator to look at.
    expect(reopened.count()).toBe(6);
  });

  it('treats a record whose key and contents disagree as damage', async () => {
    const logPath = tempLogPath();
    const log = await openLog(logPath, 'sync');
    for (let id = 1; id <= 3; id++) await log.append(record(id));
    await closeLog(log);
    const raw = open<Buffer, number>({ path: segmentFiles(logPath)[0], noSubdir: true, encoding: 'binary', overlappingSync: true });
    // A well-formed frame under the wrong key: the checksum passes, the shape check does not.
    await raw.put(2, encodeFrame([7, 0, 0, 'Vote', 2, []]));
    await raw.close();
    const reopened = await openLog(logPath, 'sync');
    expect(() => [...reopened.read()]).toThrow(/key 2.*holds transaction 7 under key 2/);
  });

  it('trims a torn last record inside a group and keeps the group\'s earlier records; damage before it is in the middle', async () => {
    const logPath = tempLogPath();
    const log = await openLog(logPath, 'sync', { groupCommitMs: 20 });
    for (let id = 1; id <= 5; id++) await log.append(record(id));
    // 6…10 share one window: one group value under key 10.
    await Promise.all([6, 7, 8, 9, 10].map((id) => log.append(record(id))));
    expect(log.stats.groups).toBe(6);
    await closeLog(log);
    const spans = await groupSpans(logPath, 10);
    expect(spans).toHaveLength(5);

    // A byte of record 7 (the group's second) flipped: good records follow it in the group.
    await damageGroup(logPath, 10, spans[1].payloadStart + 1);
    let reopened = await openLog(logPath, 'sync');
    expect(() => [...reopened.read()]).toThrow(/record 7 from transaction 0 \(key 10, record 2 of that group, after transaction 6\): checksum mismatch.*not a torn write/);
    expect(reopened.count()).toBe(10);
    await closeLog(reopened);
    await damageGroup(logPath, 10, spans[1].payloadStart + 1);

    // The group's last record cut short (a torn write): records 6…9 stay, under key 9.
    await damageGroup(logPath, 10, 'truncate');
    reopened = await openLog(logPath, 'sync');
    const warnings: string[] = [];
    expect([...reopened.read(0, { onTornTail: (message) => warnings.push(message) })].map((entry) => entry.transactionId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(warnings).toEqual([expect.stringMatching(/the last record \(key 10, record 5 of that group, record 10 from transaction 0\) is torn \(cut short/)]);
    expect(reopened.lastTransactionId).toBe(9);
    expect(reopened.count(8)).toBe(2);
    await reopened.append(record(10));
    expect([...reopened.read(7)].map((entry) => entry.transactionId)).toEqual([7, 8, 9, 10]);
  });

  it('rolls to a new segment when one is full, and reads and counts across them after a reopen', async () => {
    const folder = tempLogPath();
    const log = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    // One record per group (each append awaited), so segments hold exactly 10 records.
    for (let id = 1; id <= 35; id++) await log.append(record(id));
    expect(log.stats.segmentsStarted).toBe(3);
    await closeLog(log);
    expect(segmentFiles(folder).map((file) => path.basename(file))).toEqual([1, 11, 21, 31].map(segmentFileName));

    const reopened = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    expect(reopened.lastTransactionId).toBe(35);
    expect([...reopened.read()].map((entry) => entry.transactionId)).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
    expect([...reopened.read(19)].map((entry) => entry.transactionId)).toEqual(Array.from({ length: 17 }, (_, i) => i + 19));
    expect(reopened.count(19)).toBe(17);
    // Appends continue in the last segment until it is full, ids growing past the reopen.
    expect(() => reopened.append(record(35))).toThrow(/transaction ids only grow/);
    for (let id = 36; id <= 41; id++) await reopened.append(record(id));
    expect(segmentFiles(folder).map((file) => path.basename(file))).toEqual([1, 11, 21, 31, 41].map(segmentFileName));
  });

  it('groups never span segments, and a big group waits for the full segment to flush', async () => {
    const folder = tempLogPath();
    const log = await openLog(folder, 'sync', { segmentRecordsMax: 100, groupCommitMs: 5 });
    const appends: Promise<void>[] = [];
    for (let id = 1; id <= 150; id++) appends.push(log.append(record(id)));
    await Promise.all(appends);
    for (let id = 151; id <= 400; id++) appends.push(log.append(record(id)));
    await Promise.all(appends);
    await closeLog(log);
    // 150 records went into segment 1 as one group; the next group started segment 151.
    expect(segmentFiles(folder).map((file) => path.basename(file))).toEqual([1, 151].map(segmentFileName));
    const reopened = await openLog(folder, 'sync');
    expect([...reopened.read()].length).toBe(400);
  });

  it('truncateBefore deletes whole segments older than a snapshot, and the disk use drops', async () => {
    const folder = tempLogPath();
    const log = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    const big = 'x'.repeat(2000);
    for (let id = 1; id <= 35; id++) await log.append(record(id, [id, big]));
    const before = bytesOnDisk(segmentFiles(folder));
    const removed = await log.truncateBefore(21);
    expect(removed.segmentsRemoved).toBe(2);
    expect(segmentFiles(folder).map((file) => path.basename(file))).toEqual([21, 31].map(segmentFileName));
    const after = bytesOnDisk(segmentFiles(folder));
    expect(removed.bytesRemoved).toBe(before - after);
    // Two of four segments, each holding 10 records of 2 KB: at least 40 KB freed.
    expect(before - after).toBeGreaterThan(40_000);
    expect([...log.read(21)].map((entry) => entry.transactionId)).toEqual(Array.from({ length: 15 }, (_, i) => i + 21));
    // Records below 25 remain in segment 21 (it also holds 25…30); the current segment stays.
    expect((await log.truncateBefore(25)).segmentsRemoved).toBe(0);
    expect((await log.truncateBefore(1_000)).segmentsRemoved).toBe(1);
    expect(segmentFiles(folder).map((file) => path.basename(file))).toEqual([31].map(segmentFileName));
    await log.append(record(36));
    expect(log.count()).toBe(6);
    await closeLog(log);
    // After truncation the first segment left links to a deleted one: reading from where the
    // snapshot ends is fine, reading from before it says what is missing.
    const reopened = await openLog(folder, 'sync');
    expect([...reopened.read(31)].map((entry) => entry.transactionId)).toEqual([31, 32, 33, 34, 35, 36]);
    expect(() => [...reopened.read(5)]).toThrow(/follows segment segment-0000000000000021\.mdb \(ending at transaction 30\), which is missing, and records from transaction 5 on are needed/);
  });

  it('treats damage at the end of an older segment as damage in the middle', async () => {
    const folder = tempLogPath();
    const log = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    for (let id = 1; id <= 25; id++) await log.append(record(id));
    await closeLog(log);
    // Record 20 is the last of segment 11: a torn tail only if nothing followed it.
    await corrupt(folder, 20, 'truncate');
    const reopened = await openLog(folder, 'sync');
    const error = (() => {
      try {
        for (const _ of reopened.read(3)) void _;
      } catch (caught) {
        return caught as SluiceError;
      }
      return undefined;
    })();
    expect(error?.code).toBe(DurabilityErrorCode.LOG_CORRUPT);
    expect(error?.message).toMatch(/segment-0000000000000011\.mdb is damaged at record 10 of that segment, record 18 from transaction 3 \(key 20, after transaction 19\).*older segment/);
    expect(reopened.count()).toBe(25);
  });

  it('removes a torn tail in the last segment and keeps the earlier segments', async () => {
    const folder = tempLogPath();
    const log = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    for (let id = 1; id <= 23; id++) await log.append(record(id));
    await closeLog(log);
    await corrupt(folder, 23, 'flip');
    const reopened = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    const warnings: string[] = [];
    expect([...reopened.read(0, { onTornTail: (message) => warnings.push(message) })].map((entry) => entry.transactionId)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
    expect(warnings).toEqual([expect.stringMatching(/segment-0000000000000021\.mdb: the last record \(key 23.*torn/)]);
    expect(reopened.lastTransactionId).toBe(22);
    await reopened.append(record(23));
    expect([...reopened.read(20)].map((entry) => entry.transactionId)).toEqual([20, 21, 22, 23]);
  });

  it('detects a segment missing in the middle, and one cut short', async () => {
    const folder = tempLogPath();
    const log = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    for (let id = 1; id <= 35; id++) await log.append(record(id));
    await closeLog(log);
    // Segment 21 loses its last record (a file restored from an older copy, say).
    const raw = open<Buffer, number>({ path: segmentFiles(folder)[2], noSubdir: true, encoding: 'binary', overlappingSync: true });
    await raw.remove(30);
    await raw.close();
    let reopened = await openLog(folder, 'sync');
    expect(() => [...reopened.read()]).toThrow(/segment-0000000000000031\.mdb: segment segment-0000000000000021\.mdb ended at transaction 30 when segment-0000000000000031\.mdb started, but now ends at 29: records are missing/);
    await closeLog(reopened);
    // Segment 11 is gone: the one after it names it.
    rmSync(segmentFiles(folder)[1]);
    reopened = await openLog(folder, 'sync');
    const seen: number[] = [];
    expect(() => {
      for (const entry of reopened.read()) seen.push(entry.transactionId);
    }).toThrow(expect.objectContaining({ code: DurabilityErrorCode.LOG_CORRUPT, message: expect.stringMatching(/segment-0000000000000021\.mdb: it follows segment segment-0000000000000011\.mdb, which is missing \(the segment before it in the folder is segment-0000000000000001\.mdb\)/) }));
    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
  });

  it('drops a trailing segment left without records by a crash, and continues the ids', async () => {
    const folder = tempLogPath();
    const log = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    for (let id = 1; id <= 12; id++) await log.append(record(id));
    await closeLog(log);
    // The process died after creating segment 13 and before its first commit.
    const empty = open<Buffer, number>({ path: path.join(folder, segmentFileName(13)), noSubdir: true, encoding: 'binary', overlappingSync: true });
    await empty.close();
    const reopened = await openLog(folder, 'sync', { segmentRecordsMax: 10 });
    expect(segmentFiles(folder).map((file) => path.basename(file))).toEqual([1, 11].map(segmentFileName));
    expect(reopened.lastTransactionId).toBe(12);
    await reopened.append(record(13));
    expect([...reopened.read(11)].map((entry) => entry.transactionId)).toEqual([11, 12, 13]);
  });

  it('adopts the single-file log of earlier versions as its first segment', async () => {
    const folder = tempLogPath();
    const legacy = open<Buffer, number>({ path: path.join(folder, 'command-log.mdb'), noSubdir: true, encoding: 'binary', keyEncoding: 'ordered-binary', overlappingSync: true });
    for (let id = 1; id <= 3; id++) await legacy.put(id, encodeFrame([id, 1_700_000_000_000 + id, 1, 'Vote', 2, [id]]));
    await legacy.close();
    const log = await openLog(folder, 'sync', { segmentRecordsMax: 3 });
    expect(segmentFiles(folder).map((file) => path.basename(file))).toEqual([segmentFileName(0)]);
    await log.append(record(4));
    expect([...log.read()].map((entry) => entry.transactionId)).toEqual([1, 2, 3, 4]);
    expect(segmentFiles(folder).map((file) => path.basename(file))).toEqual([0, 4].map(segmentFileName));
  });

  it('refuses appends after close', async () => {
    const log = await openLog(tempLogPath(), 'sync');
    await closeLog(log);
    expect(() => log.append(record(1))).toThrow(expect.objectContaining({ code: DurabilityErrorCode.LOG_CLOSED }));
  });
});

/** The records of the group value stored under `key` in the log's first segment. */
async function groupSpans(folder: string, key: number): Promise<GroupRecordSpan[]> {
  const raw = open<Buffer, number>({ path: segmentFiles(folder)[0], noSubdir: true, encoding: 'binary', overlappingSync: true });
  const spans = [...groupRecordSpans(Buffer.from(raw.getBinary(key)!))];
  await raw.close();
  return spans;
}

/** Flips the byte at `offset` of the group value under `key` (again: back), or cuts its last 3 bytes. */
async function damageGroup(folder: string, key: number, how: number | 'truncate'): Promise<void> {
  const raw = open<Buffer, number>({ path: segmentFiles(folder)[0], noSubdir: true, encoding: 'binary', overlappingSync: true });
  const value = Buffer.from(raw.getBinary(key)!);
  if (how === 'truncate') await raw.put(key, value.subarray(0, value.length - 3));
  else {
    value[how] ^= 0xff;
    await raw.put(key, value);
  }
  await raw.close();
}

/** Damages the stored frame of `key` with LMDB directly: cut it short, or flip a payload byte. */
async function corrupt(folder: string, key: number, how: 'truncate' | 'flip'): Promise<void> {
  const file = segmentFiles(folder).findLast((candidate) => Number(/segment-(\d+)/.exec(candidate)![1]) <= key)!;
  const raw = open<Buffer, number>({ path: file, noSubdir: true, encoding: 'binary', overlappingSync: true });
  const frame = Buffer.from(raw.getBinary(key)!);
  const damaged = how === 'truncate' ? frame.subarray(0, frame.length - 3) : Buffer.from(frame);
  if (how === 'flip') damaged[damaged.length - 1] ^= 0xff;
  await raw.put(key, damaged);
  await raw.close();
}
