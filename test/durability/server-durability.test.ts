/**
 * Durability wired into the server (engine/durability/server-durability.ts), in-process: what a
 * sync-mode server acknowledged is there after a restart (by log replay, by snapshot, by both),
 * tables and views equal before and after; snapshots are transaction-consistent while
 * transactions run; stream sequence numbers carry over; and the faults: a second server on the
 * same data directory, an incompatible schema, changed procedure code with log records to
 * replay, a damaged newest snapshot, a damaged log record in the middle, and a disk that fails
 * writes (nothing unwritten is acknowledged).
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from 'lmdb';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Client } from '../../client/index.ts';
import { encodeFrame } from '../../engine/durability/framing.ts';
import { groupRecordSpans } from '../../engine/durability/group-frame.ts';
import { segmentFileName } from '../../engine/durability/command-log.ts';
import { logFolder } from '../../engine/durability/recovery.ts';
import { completeSnapshots, readSnapshot } from '../../engine/durability/snapshot.ts';
import { startServer, type ServerOptions, type SluiceServer } from '../../engine/server/server.ts';
import { bankSchema, rejection } from '../server-helpers.ts';

const ledgerDdl = `
CREATE TABLE accounts (id BIGINT NOT NULL PRIMARY KEY, balance BIGINT NOT NULL, touches INTEGER NOT NULL);
PARTITION TABLE accounts ON COLUMN id;
CREATE TABLE branches (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(20) NOT NULL);
CREATE STREAM events PARTITION ON COLUMN id (id BIGINT NOT NULL, amount BIGINT);
CREATE VIEW v_accounts_by_touches (touches, n, total) AS SELECT touches, COUNT(*), SUM(balance) FROM accounts GROUP BY touches;
CREATE PROCEDURE OpenAccount PARTITION ON TABLE accounts COLUMN id PARAMETER 0 AS INSERT INTO accounts (id, balance, touches) VALUES (?, ?, 0);
CREATE PROCEDURE Bump PARTITION ON TABLE accounts COLUMN id PARAMETER 1 AS UPDATE accounts SET touches = touches + 1, balance = balance + ? WHERE id = ?;
CREATE PROCEDURE Emit PARTITION ON TABLE accounts COLUMN id PARAMETER 0 AS INSERT INTO events (id, amount) VALUES (?, ?);
CREATE PROCEDURE AddBranch AS INSERT INTO branches (id, name) VALUES (?, ?);
`;

const folders: string[] = [];
const running: { close(): Promise<void> }[] = [];

afterEach(async () => {
  while (running.length > 0) await running.pop()!.close();
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

function dataFolder(): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'sluice-server-durability-'));
  folders.push(folder);
  return folder;
}

function segmentFilesOf(data: string): string[] {
  return readdirSync(logFolder(data)).filter((name) => name.startsWith('segment-')).sort();
}

function bytesOnDisk(data: string, names: readonly string[]): number {
  return names.reduce((sum, name) => sum + statSync(path.join(logFolder(data), name)).size, 0);
}

async function start(options: Partial<ServerOptions>): Promise<SluiceServer> {
  const server = await startServer({ schema: ledgerDdl, partitions: 2, port: 0, host: '127.0.0.1', ...options });
  running.push(server);
  return server;
}

async function stop(server: SluiceServer, client?: Client): Promise<void> {
  if (client) await client.close();
  running.splice(running.indexOf(server), 1);
  await server.close();
}

async function open_(server: SluiceServer): Promise<Client> {
  const client = await connect(server.url);
  running.unshift(client);
  return client;
}

/** Every row of every table and view, ordered: the state to compare across a restart. */
async function state(client: Client): Promise<Record<string, unknown[][]>> {
  const out: Record<string, unknown[][]> = {};
  for (const sql of ['SELECT id, balance, touches FROM accounts ORDER BY id', 'SELECT id, name FROM branches ORDER BY id', 'SELECT touches, n, total FROM v_accounts_by_touches ORDER BY touches']) {
    out[sql] = (await client.query(sql)).rows;
  }
  return out;
}

async function load(client: Client, accounts: number): Promise<void> {
  const calls: Promise<unknown>[] = [];
  for (let id = 1; id <= accounts; id++) calls.push(client.call('OpenAccount', id, 100));
  for (let id = 1; id <= accounts; id += 3) calls.push(client.call('Bump', id, id));
  calls.push(client.call('AddBranch', 1, 'north'), client.call('AddBranch', 2, 'south'));
  await Promise.all(calls);
}

describe('server durability', () => {
  it('sync: every acknowledged transaction is back after a restart, by replay of the log alone', async () => {
    const data = dataFolder();
    const options = { data, durability: { mode: 'sync' as const, snapshotOnShutdown: false } };
    const first = await start(options);
    expect(first.dataDir).toBe(path.resolve(data));
    expect(first.durabilityMode).toBe('sync');
    const client = await open_(first);
    await load(client, 300);
    const before = await state(client);
    await stop(first, client);

    const second = await start(options);
    expect(second.recovery?.snapshot).toBeUndefined();
    expect(second.recovery?.transactionsReplayed).toBe(300 + 100 + 2);
    const again = await open_(second);
    expect(await state(again)).toEqual(before);
    // New transactions continue after the replayed ones.
    await again.call('OpenAccount', 1000, 5);
    expect((await again.query('SELECT COUNT(*) FROM accounts')).rows).toEqual([[301]]);
  });

  it('snapshot on demand, more writes, then a restart loads the snapshot and replays only what followed', async () => {
    const data = dataFolder();
    const options = { data, durability: { mode: 'sync' as const, snapshotOnShutdown: false } };
    const first = await start(options);
    const client = await open_(first);
    await load(client, 200);
    const saved = await client.call('@SnapshotSave');
    expect(saved.rows).toBeGreaterThanOrEqual(200);
    expect(saved.barrierMsMax).toBeGreaterThanOrEqual(0);
    await client.call('OpenAccount', 500, 1);
    await client.call('Bump', 1, 7);
    const before = await state(client);
    await stop(first, client);

    const second = await start(options);
    expect(second.recovery?.snapshot?.lastTransactionId).toBe(saved.transactionId);
    expect(second.recovery?.transactionsReplayed).toBe(2);
    expect(await state(await open_(second))).toEqual(before);
  });

  it('the log rolls into segments; those the kept snapshot covers are deleted, disk use drops, and a restart replays across the rest', async () => {
    const data = dataFolder();
    const options = { data, durability: { mode: 'sync' as const, snapshotOnShutdown: false, segmentRecordsMax: 50 } };
    const first = await start(options);
    const client = await open_(first);
    await load(client, 100);
    // Rounds of 20 calls: groups of at most 20 records, so segments of 50 roll every few rounds.
    const bumpRounds = async (rounds: number): Promise<void> => {
      for (let round = 0; round < rounds; round++) await Promise.all(Array.from({ length: 20 }, (_, i) => client.call('Bump', round, (i % 100) + 1)));
    };
    await bumpRounds(15);
    const segmentsBefore = segmentFilesOf(data);
    expect(segmentsBefore.length).toBeGreaterThanOrEqual(5);
    const bytesBefore = bytesOnDisk(data, segmentsBefore);
    // The first snapshot has no previous one to fall back to: the log stays whole.
    await client.call('@SnapshotSave');
    expect(segmentFilesOf(data)).toEqual(segmentsBefore);
    await bumpRounds(3);
    // The second keeps the first as fallback and deletes the segments the first one covers.
    await client.call('@SnapshotSave');
    const segmentsAfter = segmentFilesOf(data);
    expect(segmentsAfter.length).toBeLessThan(segmentsBefore.length);
    expect(segmentsAfter[0]).not.toBe(segmentsBefore[0]);
    expect(bytesOnDisk(data, segmentsAfter)).toBeLessThan(bytesBefore);
    await bumpRounds(3);
    const before = await state(client);
    await stop(first, client);

    const second = await start(options);
    expect(second.recovery?.transactionsReplayed).toBe(60);
    expect(await state(await open_(second))).toEqual(before);
  });

  it('a clean shutdown takes a snapshot, so the next start replays nothing and the state is the same', async () => {
    const data = dataFolder();
    const first = await start({ data, durability: { mode: 'async' } });
    const client = await open_(first);
    await load(client, 150);
    const before = await state(client);
    await stop(first, client);

    const second = await start({ data, durability: { mode: 'async' } });
    expect(second.recovery?.snapshot).toBeDefined();
    expect(second.recovery?.transactionsReplayed).toBe(0);
    expect(await state(await open_(second))).toEqual(before);
  });

  it('a snapshot taken while transfers run is transaction-consistent: balances always sum to the total', async () => {
    const data = dataFolder();
    const server = await start({ schema: bankSchema, data, durability: { mode: 'async', snapshotOnShutdown: false } });
    const client = await open_(server);
    const accounts = 12_000;
    const opened: Promise<unknown>[] = [];
    for (let id = 1; id <= accounts; id++) opened.push(client.call('OpenAccount', id, 1000));
    await Promise.all(opened);
    const work: Promise<unknown>[] = [];
    // Transfers (multi-partition) and touches (in-place updates) keep arriving around the snapshot.
    for (let i = 0; i < 300; i++) {
      work.push(client.call('Transfer', 1 + (i * 7919) % accounts, 1 + (i * 104729) % accounts, 1 + (i % 50)).catch(() => undefined));
      work.push(client.call('Touch', 1 + (i * 31) % accounts));
      if (i === 20) work.push(client.call('@SnapshotSave'));
    }
    await Promise.all(work);
    const [info] = await completeSnapshots(data);
    let balances = 0;
    let rows = 0;
    for await (const chunk of readSnapshot(info)) {
      if (chunk.table !== 'accounts') continue;
      for (const row of chunk.rows) balances += row[1] as number;
      rows += chunk.rows.length;
    }
    expect(rows).toBe(accounts);
    expect(balances).toBe(accounts * 1000);
  });

  it('stream sequence numbers carry over a restart from a snapshot', async () => {
    const data = dataFolder();
    const options = { data, durability: { mode: 'sync' as const } };
    const first = await start(options);
    const client = await open_(first);
    for (let i = 0; i < 10; i++) await client.call('Emit', 4, i);
    await stop(first, client);
    const second = await start(options);
    const again = await open_(second);
    for (let i = 0; i < 5; i++) await again.call('Emit', 4, i);
    await again.call('@SnapshotSave');
    const [info] = await completeSnapshots(data);
    const sequences = info.manifest.streams!.filter((entry) => entry.stream === 'events').map((entry) => entry.nextSequence);
    // One partition got all 15 rows of id 4 (sequences 1..15), the other none.
    expect(sequences.sort((a, b) => a - b)).toEqual([1, 16]);
  });

  it('refuses a second server on the same data directory', async () => {
    const data = dataFolder();
    await start({ data, durability: { mode: 'off' } });
    const error = await rejection(start({ data, durability: { mode: 'off' } }));
    expect(error.message).toMatch(/data directory .* is already in use/);
  });

  it('refuses a schema incompatible with the data directory, naming the table and columns', async () => {
    const data = dataFolder();
    const first = await start({ data, durability: { mode: 'sync' } });
    const client = await open_(first);
    await load(client, 20);
    await stop(first, client);
    const changed = ledgerDdl.replace('touches INTEGER NOT NULL', 'touches BIGINT NOT NULL');
    const error = await rejection(start({ schema: changed, data, durability: { mode: 'sync' } }));
    expect(error.message).toMatch(/incompatible with the data directory snapshot .* table accounts had columns \(id .*touches \{"name":"INTEGER"\}.*\), the schema now says/);
    // Nothing was lost: the original schema starts on the same data.
    const again = await start({ data, durability: { mode: 'sync' } });
    expect((await (await open_(again)).query('SELECT COUNT(*) FROM accounts')).rows).toEqual([[20]]);
  });

  it('a compatible schema change (a new table and view) starts from the snapshot and fills the new view', async () => {
    const data = dataFolder();
    const first = await start({ data, durability: { mode: 'sync' } });
    const client = await open_(first);
    await load(client, 30);
    await stop(first, client);
    const extended = `${ledgerDdl}
CREATE TABLE notes (id INTEGER NOT NULL, body VARCHAR(20));
CREATE VIEW v_accounts_by_balance (balance, n) AS SELECT balance, COUNT(*) FROM accounts GROUP BY balance;`;
    const second = await start({ schema: extended, data, durability: { mode: 'sync' } });
    const again = await open_(second);
    expect((await again.query('SELECT SUM(n) FROM v_accounts_by_balance')).rows).toEqual([[30]]);
    await again.query('INSERT INTO notes (id, body) VALUES (1, ?)', ['kept']);
    await stop(second, again);
    const third = await start({ schema: extended, data, durability: { mode: 'sync' } });
    expect((await (await open_(third)).query('SELECT body FROM notes')).rows).toEqual([['kept']]);
  });

  it('replays log records written under other code with the code that wrote them, then runs the new code', async () => {
    const data = dataFolder();
    const first = await start({ data, durability: { mode: 'sync', snapshotOnShutdown: false } });
    const client = await open_(first);
    await load(client, 10);
    const before = await state(client);
    await stop(first, client);
    const changed = ledgerDdl.replace('touches = touches + 1', 'touches = touches + 2');
    const second = await start({ schema: changed, data, durability: { mode: 'sync' } });
    // The catch-up start replayed the log and left a snapshot: this start replays nothing.
    expect(second.recovery?.transactionsReplayed).toBe(0);
    expect(second.recovery?.snapshot).toBeDefined();
    const again = await open_(second);
    // Replayed with the old Bump (+1 touch each), not the new one.
    expect(await state(again)).toEqual(before);
    expect((await again.query('SELECT touches FROM accounts WHERE id = 1')).rows).toEqual([[1]]);
    await again.call('Bump', 0, 1);
    expect((await again.query('SELECT touches FROM accounts WHERE id = 1')).rows).toEqual([[3]]);
    await stop(second, again);
    // The new code is now the data directory's own: a plain restart keeps it.
    const third = await start({ schema: changed, data, durability: { mode: 'sync' } });
    expect((await (await open_(third)).query('SELECT touches FROM accounts WHERE id = 1')).rows).toEqual([[3]]);
  });

  it('refuses to replay log records under changed code when the code that wrote them is gone, and names what changed', async () => {
    const data = dataFolder();
    const first = await start({ data, durability: { mode: 'sync', snapshotOnShutdown: false } });
    const client = await open_(first);
    await load(client, 10);
    await stop(first, client);
    rmSync(path.join(data, 'code'), { recursive: true, force: true });
    const changed = ledgerDdl.replace('touches = touches + 1', 'touches = touches + 2');
    const error = await rejection(start({ schema: changed, data, durability: { mode: 'sync' } }));
    expect(error.message).toMatch(/command log holds \d+ transactions .* written before the schema \(DDL\) changed/);
  });

  it('falls back to the previous complete snapshot when the newest is damaged', async () => {
    const data = dataFolder();
    const options = { data, durability: { mode: 'sync' as const, snapshotOnShutdown: false } };
    const first = await start(options);
    const client = await open_(first);
    await load(client, 100);
    await client.call('@SnapshotSave');
    await client.call('OpenAccount', 501, 1);
    await client.call('@SnapshotSave');
    await client.call('OpenAccount', 502, 1);
    const before = await state(client);
    await stop(first, client);
    const [newest, previous] = await completeSnapshots(data);
    expect(previous).toBeDefined();
    // Flip a byte inside chunk 0 of the newest snapshot, keeping its frame header.
    const store = open<Buffer, number | string>({ path: newest.path, noSubdir: true, encoding: 'binary', keyEncoding: 'ordered-binary', overlappingSync: true });
    const frame = Buffer.from(store.getBinary(0)!);
    frame[frame.length - 1] ^= 0xff;
    await store.put(0, frame);
    await store.flushed;
    await store.close();

    const second = await start(options);
    expect(second.recovery?.snapshot?.path).toBe(previous.path);
    expect(await state(await open_(second))).toEqual(before);
  });

  it('a missing newest snapshot falls back to the previous one; with none left that covers the log, the server refuses to start', async () => {
    const data = dataFolder();
    const options = { data, durability: { mode: 'sync' as const, snapshotOnShutdown: false } };
    const first = await start(options);
    const client = await open_(first);
    await load(client, 50);
    await client.call('@SnapshotSave');
    await client.call('OpenAccount', 601, 1);
    await client.call('@SnapshotSave');
    await client.call('OpenAccount', 602, 1);
    await client.call('@SnapshotSave');
    await client.call('OpenAccount', 603, 1);
    const before = await state(client);
    await stop(first, client);
    const [newest, previous] = await completeSnapshots(data);
    rmSync(newest.path);
    const second = await start(options);
    expect(second.recovery?.snapshot?.path).toBe(previous.path);
    expect(await state(await open_(second))).toEqual(before);
    await stop(second);
    // The log now starts after the previous snapshot: without any snapshot, data would be lost.
    for (const info of await completeSnapshots(data)) rmSync(info.path);
    const error = await rejection(start(options));
    expect(error.message).toMatch(/no usable snapshot .* the command log starts at transaction \d+ .* does not start rather than start without that data/);
  });

  it('stops recovery at a damaged record in the middle of the log, naming its position', async () => {
    const data = dataFolder();
    const options = { data, durability: { mode: 'sync' as const, snapshotOnShutdown: false } };
    const first = await start(options);
    const client = await open_(first);
    await load(client, 20);
    await stop(first, client);
    const log = open<Buffer, number>({ path: path.join(logFolder(data), segmentFileName(1)), noSubdir: true, encoding: 'binary', keyEncoding: 'ordered-binary', overlappingSync: true });
    // Key 0 is the segment's link record; records start at 1, grouped one value per group commit
    // (keyed by the group's last id). The sixth record's last byte flipped: more records follow.
    const records = [...log.getRange({ start: 1 })].flatMap(({ key, value }) => [...groupRecordSpans(value)].map((span) => ({ key, end: span.end })));
    expect(records.length).toBeGreaterThan(6);
    const victim = records[5];
    const value = Buffer.from(log.getBinary(victim.key)!);
    value[victim.end - 1] ^= 0xff;
    await log.put(victim.key, value);
    await log.flushed;
    await log.close();
    const error = await rejection(start(options));
    expect(error.message).toMatch(new RegExp(`damaged at record 6 .*key ${victim.key}.*checksum mismatch`));
  });

  it('removes a torn last log record with a warning and starts', async () => {
    const data = dataFolder();
    const options = { data, durability: { mode: 'sync' as const, snapshotOnShutdown: false } };
    const first = await start(options);
    const client = await open_(first);
    await load(client, 20);
    await stop(first, client);
    const log = open<Buffer, number>({ path: path.join(logFolder(data), segmentFileName(1)), noSubdir: true, encoding: 'binary', keyEncoding: 'ordered-binary', overlappingSync: true });
    const last = [...log.getKeys({ reverse: true, limit: 1 })][0];
    await log.put(last + 1, encodeFrame([last + 1]).subarray(0, 7));
    await log.flushed;
    await log.close();
    const second = await start(options);
    expect(second.recovery?.tornTailRemoved).toBe(true);
    expect((await (await open_(second)).query('SELECT COUNT(*) FROM accounts')).rows).toEqual([[20]]);
  });

  it('a failing disk write stops acknowledgements: every acknowledged call survives, none after the failure is acked', async () => {
    const data = dataFolder();
    const server = await start({ data, durability: { mode: 'sync', failWriteAtRecord: 150, snapshotOnShutdown: false } });
    const client = await open_(server);
    const outcomes = await Promise.allSettled(Array.from({ length: 400 }, (_, i) => client.call('OpenAccount', i + 1, 1)));
    const acknowledged = outcomes.flatMap((outcome, i) => (outcome.status === 'fulfilled' ? [i + 1] : []));
    const failures = outcomes.filter((outcome) => outcome.status === 'rejected').map((outcome) => (outcome as PromiseRejectedResult).reason as Error & { code: string });
    expect(acknowledged.length).toBeLessThan(150);
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.every((error) => error.code === 'DURABILITY_FAILED')).toBe(true);
    expect(failures[0].message).toMatch(/failed to write: ENOSPC/);
    // The server stays up and says why it refuses.
    expect((await rejection(client.call('OpenAccount', 9999, 1))).code).toBe('DURABILITY_FAILED');
    await stop(server, client);

    const again = await start({ data, durability: { mode: 'sync' } });
    const present = (await (await open_(again)).query('SELECT id FROM accounts ORDER BY id')).rows.map((row) => row[0] as number);
    for (const id of acknowledged) expect(present).toContain(id);
  });

  it('@SnapshotSave without a data directory says what it needs', async () => {
    const server = await start({});
    const error = await rejection((await open_(server)).call('@SnapshotSave'));
    expect(error.message).toMatch(/needs a data directory/);
  });
});
