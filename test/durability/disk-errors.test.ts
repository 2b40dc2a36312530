/**
 * Snapshots, the export buffer and failing disks (engine/durability/server-durability.ts,
 * exporters/pipeline.ts): a snapshot counts only once the export buffer holds every stream row
 * its state includes, because recovery from it never regenerates those rows. Without that rule a
 * failed (or merely slow) buffer write followed by a snapshot and a restart loses acknowledged
 * rows. Also: a failing buffer write is retried and then snapshots complete; a failing snapshot
 * write fails @SnapshotSave clearly while calls go on, and loses nothing; a buffer left with a
 * hole by a failed write keeps the rows before it and takes the rest again from the replay.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Client } from '../../client/index.ts';
import { applyDdl } from '../../engine/catalog/ddl.ts';
import { listSnapshotFiles } from '../../engine/durability/snapshot.ts';
import { startServer, type ServerOptions, type SluiceServer } from '../../engine/server/server.ts';
import { encodeStreamChunk } from '../../engine/storage/stream-chunk.ts';
import { ExportPipeline } from '../../exporters/pipeline.ts';
import type Emit from '../fixtures/exporters/emit.ts';
import { exportSchema, jsonlRowsByPartition, temporaryFolder } from '../exporters/file-helpers.ts';
import { rejection } from '../server-helpers.ts';

type ExportApp = { Emit: typeof Emit };

const day1 = Date.UTC(2026, 10, 22, 10, 0, 0);
const hourMs = 3_600_000;
const meters = [1, 2, 3, 4];

const running: { close(): Promise<void> }[] = [];
afterEach(async () => {
  while (running.length > 0) await running.pop()!.close();
});

async function start(options: Partial<ServerOptions>): Promise<SluiceServer> {
  const server = await startServer({ schema: exportSchema, partitions: 2, port: 0, host: '127.0.0.1', ...options });
  running.push(server);
  return server;
}

async function open(server: SluiceServer): Promise<Client<ExportApp>> {
  const client = await connect<ExportApp>(server.url);
  running.push(client);
  return client;
}

async function stop(server: SluiceServer, client: Client<ExportApp>): Promise<void> {
  running.splice(running.indexOf(client), 1);
  await client.close();
  running.splice(running.indexOf(server), 1);
  await server.close();
}

function enospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device (injected)'), { code: 'ENOSPC' });
}

function serverOptions(data: string, root: string, durability: ServerOptions['durability'] = {}): Partial<ServerOptions> {
  return {
    data,
    durability: { mode: 'sync', snapshotOnShutdown: false, ...durability },
    exports: { targets: [{ name: 'lake', type: 'file', format: 'jsonl', path: root, lingerMs: 0, batchRowsMax: 50, backoffMsMin: 10, backoffMsMax: 40 }] },
  };
}

/** Ten readings per meter at `ts`, all acknowledged. */
async function emitRound(db: Client<ExportApp>, ts: number): Promise<void> {
  await Promise.all(meters.map((meter) => db.call('Emit', meter, ts, 10, 0)));
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 400; attempt++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Every meter's readings at the target, as `ts:kwh`, in delivery order. */
function readingsAtTarget(root: string): Map<number, string[]> {
  const byMeter = new Map<number, string[]>();
  for (const rows of jsonlRowsByPartition(root).values()) {
    for (const row of rows) {
      const list = byMeter.get(row.meter as number) ?? [];
      list.push(`${row.ts as string}:${row.kwh as number}`);
      byMeter.set(row.meter as number, list);
    }
  }
  return byMeter;
}

function expectedReadings(rounds: readonly number[]): string[] {
  return rounds.flatMap((ts) => Array.from({ length: 10 }, (_, i) => `${new Date(ts + i * 60_000).toISOString()}:${i}`));
}

/** The stream's folder is a file: every delivery fails and rows stay in the buffer (a target that is down). */
function blockTarget(root: string, stream = 'readings'): void {
  mkdirSync(root, { recursive: true });
  writeFileSync(path.join(root, stream), 'in the way');
}

/** A server in sync mode with the four meters, whose file target is down. */
async function startBehindBlockedTarget() {
  const data = temporaryFolder();
  const root = path.join(data, 'out');
  blockTarget(root);
  const options = serverOptions(data, root);
  const first = await start(options);
  const db = await open(first);
  for (const meter of meters) await db.query('INSERT INTO meters VALUES (?, 0)', [meter]);
  return { data, root, options, first, db };
}

/** Unblocks the target, restarts (replaying the four calls) and waits for both rounds of every meter to be there. */
async function restartAndExpectBothRounds(root: string, options: Partial<ServerOptions>): Promise<SluiceServer> {
  rmSync(path.join(root, 'readings'));
  const second = await start(options);
  expect(second.recovery?.transactionsReplayed).toBe(4);
  await waitFor(() => second.exports!.pipeline.statistics()[0].rowsDelivered === 80, '80 rows delivered');
  const atTarget = readingsAtTarget(root);
  for (const meter of meters) expect(atTarget.get(meter)).toEqual(expectedReadings([day1, day1 + hourMs]));
  return second;
}

describe('snapshots, the export buffer and disk errors', () => {
  it('refuses a snapshot while the export buffer cannot write its rows; after a restart every acknowledged row reaches the target once', async () => {
    const { data, root, options, first, db } = await startBehindBlockedTarget();
    await emitRound(db, day1);
    await db.call('@SnapshotSave');

    first.exports!.pipeline.store.failChunkWrites = enospc();
    await emitRound(db, day1 + hourMs);
    const refused = await rejection(db.call('@SnapshotSave'));
    expect(refused.code).toBe('DURABILITY_FAILED');
    expect(refused.message).toMatch(
      /snapshot after transaction \d+ not completed: the export buffer holds stream readings partition \d only up to sequence \d+, and the snapshot's state has rows up to \d+: .*buffer\.mdb failed: ENOSPC.*the command log is kept, so nothing is lost/,
    );
    expect(listSnapshotFiles(data)).toHaveLength(1);
    // The server goes on answering.
    expect((await db.query('SELECT COUNT(*) FROM meters')).rows).toEqual([[4]]);
    expect((await db.call('@Statistics')).exports![0].rowsPending).toBe(80);

    // The process ends with the second round in memory only (as a crash would leave it).
    await stop(first, db);
    await restartAndExpectBothRounds(root, options);
  });

  it('retries a failed buffer write once the disk is back; then snapshots complete again', async () => {
    const { root, options, first, db } = await startBehindBlockedTarget();
    const store = first.exports!.pipeline.store;
    store.failChunkWrites = enospc();
    await emitRound(db, day1);
    expect((await rejection(db.call('@SnapshotSave'))).message).toMatch(/ENOSPC/);
    store.failChunkWrites = undefined;
    // The retry (backoff 10–40 ms) writes the rows kept in memory, in order.
    await waitFor(async () => (await db.call('@SnapshotSave').then(() => true, () => false)), 'a snapshot after the retry');
    await emitRound(db, day1 + hourMs);
    await stop(first, db);

    const second = await restartAndExpectBothRounds(root, options);
    // The replayed second round was in the buffer already: recognised by sequence, not sent twice.
    expect(second.exports!.pipeline.statistics()[0].duplicatesDropped).toBe(40);
  });

  it('fails @SnapshotSave clearly when the snapshot file cannot be written; calls go on and nothing is lost', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const options = serverOptions(data, root, { failSnapshotWriteAtChunk: 1 });
    const first = await start(options);
    const db = await open(first);
    for (const meter of meters) await db.query('INSERT INTO meters VALUES (?, 0)', [meter]);
    await emitRound(db, day1);
    const refused = await rejection(db.call('@SnapshotSave'));
    expect(refused.code).toBe('DURABILITY_FAILED');
    expect(refused.message).toMatch(/snapshot failed: writing a chunk of partition \d to .*snapshot-\d+-\d+\.mdb failed: ENOSPC/);
    // The unfinished file is gone; reads and writes go on, and are acknowledged.
    expect(listSnapshotFiles(data)).toEqual([]);
    expect((await db.query('SELECT COUNT(*) FROM meters')).rows).toEqual([[4]]);
    await emitRound(db, day1 + hourMs);
    const saved = await db.call('@SnapshotSave');
    await emitRound(db, day1 + 2 * hourMs);
    await waitFor(() => first.exports!.pipeline.statistics()[0].rowsDelivered === 120, '120 rows delivered');
    await stop(first, db);

    const second = await start(options);
    expect(second.recovery?.snapshot?.lastTransactionId).toBe(saved.transactionId);
    expect(second.recovery?.transactionsReplayed).toBe(4);
    const again = await open(second);
    expect((await again.query('SELECT COUNT(*) FROM meters')).rows).toEqual([[4]]);
    const atTarget = readingsAtTarget(root);
    for (const meter of meters) expect(atTarget.get(meter)).toEqual(expectedReadings([day1, day1 + hourMs, day1 + 2 * hourMs]));
  });
});

describe('the export buffer on its own', () => {
  const catalog = applyDdl('CREATE STREAM events PARTITION ON COLUMN id EXPORT TO TARGET out (id BIGINT NOT NULL, label VARCHAR(10));');
  const committedAt = Date.UTC(2026, 10, 22, 12, 0, 0);
  const values = (first: number, count: number): unknown[] => Array.from({ length: count }, (_, i) => [first + i, `row ${first + i}`]).flat();
  const chunk = (first: number, count: number): unknown[] => ['events', first, count, committedAt, encodeStreamChunk(committedAt, values(first, count))];
  const openPipeline = (folder: string): Promise<ExportPipeline> =>
    ExportPipeline.open({
      exportDir: path.join(folder, 'export'),
      catalog,
      partitions: 1,
      // A long backoff: the failed write is not retried within the test.
      config: { targets: [{ name: 'out', type: 'file', format: 'jsonl', path: path.join(folder, 'out'), lingerMs: 0, batchRowsMax: 4, backoffMsMin: 60_000, backoffMsMax: 60_000 }] },
    });

  it('says how far it holds a stream, keeps the rows before a hole left by a failed write, and takes the rest from the replay', async () => {
    const folder = temporaryFolder();
    blockTarget(path.join(folder, 'out'), 'events');
    let pipeline = await openPipeline(folder);
    pipeline.accept(0, chunk(1, 4));
    await pipeline.holdThrough([{ partition: 0, stream: 'events', nextSequence: 5 }]);
    pipeline.store.failChunkWrites = enospc();
    pipeline.accept(0, chunk(5, 4));
    await expect(pipeline.holdThrough([{ partition: 0, stream: 'events', nextSequence: 9 }])).rejects.toMatchObject({
      code: 'EXPORT_FAILED',
      message: expect.stringMatching(/holds stream events partition 0 only up to sequence 4, and the snapshot's state has rows up to 8: .*ENOSPC/),
    });
    // A later chunk that reached the disk before the failure was known: the file has a hole at 5…8.
    pipeline.store.failChunkWrites = undefined;
    await pipeline.store.putChunk('events', 0, 9, encodeStreamChunk(committedAt, values(9, 2)));
    await pipeline.close();

    rmSync(path.join(folder, 'out', 'events'));
    pipeline = await openPipeline(folder);
    // Rows past the hole are dropped: new numbers continue after row 4, where the replay starts.
    expect(pipeline.sequenceFloors()).toEqual({ events: [5] });
    pipeline.accept(0, chunk(5, 6));
    expect(await pipeline.idle()).toBe(true);
    await pipeline.close();
    expect(jsonlRowsByPartition(path.join(folder, 'out')).get(0)!.map((row) => row.id)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
  });
});
