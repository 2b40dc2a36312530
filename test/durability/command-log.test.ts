/**
 * The command log (engine/durability/command-log.ts): records come back as written and in
 * order; group commit puts many appends into few LMDB transactions; a sync append resolves only
 * after its commit is flushed; a torn last record is removed with a warning; damage in the middle
 * stops reading with LOG_CORRUPT naming the record; truncateBefore drops older records.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from 'lmdb';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CommandLog, type DurabilityMode, type InvocationRecord } from '../../engine/durability/command-log.ts';
import { DurabilityErrorCode, encodeFrame } from '../../engine/durability/framing.ts';
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
  return path.join(folder, 'command-log.mdb');
}

async function openLog(logPath: string, mode: DurabilityMode, extra: { groupCommitMs?: number; asyncFlushMs?: number } = {}): Promise<CommandLog> {
  const log = await CommandLog.open({ path: logPath, mode, ...extra });
  logs.push(log);
  return log;
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

  it('writes a full group at once rather than growing it without bound', async () => {
    const log = await CommandLog.open({ path: tempLogPath(), mode: 'sync', groupCommitMs: 1000, groupRecordsMax: 100 });
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
    // Observe the real LMDB flush promise of each write (a spy around the real store).
    const store = log.store;
    const put = store.put.bind(store);
    store.put = ((key: number, value: Buffer) => {
      const commit = put(key, value) as Promise<boolean> & { flushed: Promise<void> };
      void commit.then(() => events.push(`committed ${key}`));
      void commit.flushed.then(() => events.push(`flushed ${key}`));
      return commit;
    }) as typeof store.put;
    await Promise.all([1, 2, 3].map((id) => log.append(record(id)).then(() => events.push(`acknowledged ${id}`))));
    for (const id of [1, 2, 3]) {
      expect(events).toContain(`flushed ${id}`);
      expect(events.indexOf(`flushed ${id}`)).toBeLessThan(events.indexOf(`acknowledged ${id}`));
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
    const raw = open<Buffer, number>({ path: logPath, noSubdir: true, encoding: 'binary', overlappingSync: true });
    // A well-formed frame under the wrong key: the checksum passes, the shape check does not.
    await raw.put(2, encodeFrame([7, 0, 0, 'Vote', 2, []]));
    await raw.close();
    const reopened = await openLog(logPath, 'sync');
    expect(() => [...reopened.read()]).toThrow(/key 2.*holds transaction 7 under key 2/);
  });

  it('truncateBefore removes the records older than a snapshot', async () => {
    const log = await openLog(tempLogPath(), 'sync');
    for (let id = 1; id <= 30; id++) await log.append(record(id));
    expect(await log.truncateBefore(21)).toBe(20);
    expect([...log.read()].map((entry) => entry.transactionId)).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    expect(await log.truncateBefore(21)).toBe(0);
    await log.append(record(31));
    expect(log.count()).toBe(11);
  });

  it('refuses appends after close', async () => {
    const log = await openLog(tempLogPath(), 'sync');
    await closeLog(log);
    expect(() => log.append(record(1))).toThrow(expect.objectContaining({ code: DurabilityErrorCode.LOG_CLOSED }));
  });
});

/** Damages the stored frame of `key` with LMDB directly: cut it short, or flip a payload byte. */
async function corrupt(logPath: string, key: number, how: 'truncate' | 'flip'): Promise<void> {
  const raw = open<Buffer, number>({ path: logPath, noSubdir: true, encoding: 'binary', overlappingSync: true });
  const frame = Buffer.from(raw.getBinary(key)!);
  const damaged = how === 'truncate' ? frame.subarray(0, frame.length - 3) : Buffer.from(frame);
  if (how === 'flip') damaged[damaged.length - 1] ^= 0xff;
  await raw.put(key, damaged);
  await raw.close();
}
