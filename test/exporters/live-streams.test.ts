/**
 * Streams added by a live update (@UpdateApplication), on a real server with worker partitions, a
 * file target and a subscription client: rows inserted after the switch reach the files and a
 * subscriber without a restart, rows of the streams that were there before are all exported, a
 * restart (replaying the switch from the command log, or from a snapshot taken under the new
 * version) keeps exporting the new stream and delivers what its target could not take before. An
 * update naming a target the deployment does not configure, or one whose settings the new stream
 * does not fit, is refused with the stream, the target and the line; the server goes on.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Client, RowPosition, StreamRow } from '../../client/index.ts';
import { Database } from '../../engine/database.ts';
import { ErrorCode } from '../../engine/errors.ts';
import type { ServerOptions, SluiceServer } from '../../engine/server/server.ts';
import type { ApplicationUpdate } from '../../procedures/system.ts';
import { expectError } from '../helpers.ts';
import { client, rejection, serve } from '../server-helpers.ts';
import { eventually, range } from './helpers.ts';
import { jsonlRowsByPartition, temporaryFolder } from './file-helpers.ts';

/** The live-update fixture's schema with a stream exported from the start. */
const schema = `${readFileSync('test/fixtures/live/schema.sql', 'utf8')}
CREATE STREAM old_events PARTITION ON COLUMN id EXPORT TO TARGET lake (id BIGINT NOT NULL, note VARCHAR(20));`;
const procedures = 'test/fixtures/live/v1';

const newStream = `CREATE TABLE marks (id BIGINT NOT NULL, at BIGINT);
CREATE STREAM new_events PARTITION ON COLUMN id EXPORT TO TARGET lake (id BIGINT NOT NULL, note VARCHAR(20), at TIMESTAMP);`;

function lake(root: string, extra: Record<string, unknown> = {}): unknown {
  return { targets: [{ name: 'lake', type: 'file', format: 'jsonl', path: root, lingerMs: 0, batchRowsMax: 50, backoffMsMin: 10, backoffMsMax: 40, ...extra }] };
}

function update(db: Client, change: ApplicationUpdate) {
  return db.call('@UpdateApplication', change);
}

function insert(db: Client, stream: string, ids: number[]): Promise<unknown[]> {
  return Promise.all(ids.map((id) => db.query(`INSERT INTO ${stream} (id, note) VALUES (?, ?)`, [id, `${stream} ${id}`])));
}

/** The ids a file target wrote for `stream`, in the order of each partition's sequences. */
function exportedIds(root: string, stream: string): number[] {
  if (!existsSync(path.join(root, stream))) return [];
  return [...jsonlRowsByPartition(path.join(root, stream)).values()].flat().map((row) => row.id as number);
}

async function waitForIds(root: string, stream: string, count: number): Promise<number[]> {
  let ids: number[] = [];
  const arrived = await eventually(() => (ids = exportedIds(root, stream)).length >= count, 20_000);
  expect(arrived, `${ids.length} of ${count} rows of ${stream} exported`).toBe(true);
  return ids.sort((a, b) => a - b);
}

async function start(options: Partial<ServerOptions>): Promise<{ server: SluiceServer; db: Client }> {
  const server = await serve({ schema, procedures, ...options });
  return { server, db: await client(server) };
}

describe('streams added by a live update', () => {
  it('are exported and subscribable from the switch on, lose nothing of the streams before, and keep exporting after restarts', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'lake');
    const options = { data, exports: lake(root) };
    let { server, db } = await start(options);
    await insert(db, 'old_events', range(1, 30));
    // Calls on the old stream run on both sides of the switch; none of their rows may be lost.
    const around = insert(db, 'old_events', range(31, 30));
    const result = await update(db, { ddl: newStream });
    await around;
    expect(result.tablesAdded.sort()).toEqual(['marks', 'new_events']);

    const got: { id: number; at: RowPosition }[] = [];
    await db.subscribe('new_events', (row: StreamRow, at: RowPosition) => got.push({ id: row.id as number, at }));
    await insert(db, 'new_events', range(1, 40));
    expect(await waitForIds(root, 'new_events', 40)).toEqual(range(1, 40));
    expect(await eventually(() => got.length >= 40)).toBe(true);
    expect(got.map((row) => row.id).sort((a, b) => a - b)).toEqual(range(1, 40));
    expect(await waitForIds(root, 'old_events', 60)).toEqual(range(1, 60));
    const stats = await db.call('@Statistics');
    expect(stats.exports).toEqual([expect.objectContaining({ target: 'lake', streams: expect.arrayContaining(['old_events', 'new_events']), rowsDelivered: 100, rowsPending: 0 })]);

    // The target cannot take new_events for a while: its rows wait in the buffer across a restart.
    rmSync(path.join(root, 'new_events'), { recursive: true });
    writeFileSync(path.join(root, 'new_events'), 'in the way');
    await insert(db, 'new_events', range(41, 15));
    expect(await eventually(() => server.exports!.pipeline.statistics()[0].failures > 0)).toBe(true);
    await server.close();

    // Restart 1: the command log replays the switch; the pipeline takes the stream back then.
    rmSync(path.join(root, 'new_events'));
    ({ server, db } = await start(options));
    expect(await waitForIds(root, 'new_events', 15)).toEqual(range(41, 15));
    await insert(db, 'new_events', range(56, 5));
    expect(await waitForIds(root, 'new_events', 20)).toEqual(range(41, 20));
    await db.call('@SnapshotSave');
    await insert(db, 'new_events', range(61, 5));
    await server.close();

    // Restart 2: from the snapshot taken under the new version, then the log after it.
    ({ server, db } = await start(options));
    await insert(db, 'new_events', range(66, 5));
    expect(await waitForIds(root, 'new_events', 30)).toEqual(range(41, 30));
    const { exports } = await db.call('@Statistics');
    // The lanes restored before the replayed switch brought new_events back joined target lake.
    expect(exports).toHaveLength(1);
    const after = exports![0];
    expect(after).toMatchObject({ target: 'lake', rowsPending: 0, lastError: null });
    expect([...after.streams].sort()).toEqual(['new_events', 'old_events']);
  });

  it('without configured targets, export to the default file target of the name, and a stream without a target reaches subscribers', async () => {
    const data = temporaryFolder();
    const { server, db } = await start({ data, schema: 'test/fixtures/live/schema.sql' });
    await update(db, { ddl: 'CREATE STREAM feed_rows PARTITION ON COLUMN id EXPORT TO TARGET feed (id BIGINT NOT NULL, note VARCHAR(20));\nCREATE STREAM plain PARTITION ON COLUMN id (id BIGINT NOT NULL, note VARCHAR(20));' });
    const got: number[] = [];
    await db.subscribe('plain', (row: StreamRow) => got.push(row.id as number));
    await insert(db, 'plain', range(1, 10));
    await insert(db, 'feed_rows', range(1, 10));
    // The default file target lingers a minute for a fuller file: idle() sends what lingers.
    expect(await server.exports!.pipeline.idle()).toBe(true);
    expect(await waitForIds(path.join(data, 'export', 'files', 'feed'), 'feed_rows', 10)).toEqual(range(1, 10));
    expect(await eventually(() => got.length >= 10)).toBe(true);
    expect(got.sort((a, b) => a - b)).toEqual(range(1, 10));
  });

  it('refuses a stream whose target is not configured or does not fit it, naming stream, target and line; the server goes on', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'lake');
    mkdirSync(root);
    const { db } = await start({ data, exports: lake(root, { dayColumn: 'at' }), schema: `${readFileSync('test/fixtures/live/schema.sql', 'utf8')}\nCREATE STREAM old_events PARTITION ON COLUMN id EXPORT TO TARGET lake (id BIGINT NOT NULL, at TIMESTAMP NOT NULL);` });
    const unconfigured = await rejection(update(db, { ddl: 'CREATE TABLE fine (a INTEGER);\n\nCREATE STREAM alerts2 EXPORT TO TARGET lakee (id BIGINT NOT NULL);' }));
    expect(unconfigured.code).toBe('EXPORT_CONFIG');
    expect(unconfigured.message).toMatch(/stream alerts2 exports to target lakee, which the deployment does not configure \(exports\.targets: lake\).*CREATE STREAM alerts2.*line 3, column 40.*did you mean 'lake'/s);
    const misfit = await rejection(update(db, { ddl: 'CREATE STREAM no_day EXPORT TO TARGET lake (id BIGINT NOT NULL);' }));
    expect(misfit.code).toBe('EXPORT_CONFIG');
    expect(misfit.message).toMatch(/stream no_day cannot export to target lake: .*dayColumn.*stream no_day has no column at.*line 1/s);
    // Nothing changed: the same version runs, calls go on, and a stream that fits is taken.
    expect((await db.call('@SystemInformation')).epoch).toBe(1);
    await db.call('AddItem', 1, 1);
    expect((await update(db, { ddl: 'CREATE STREAM with_day EXPORT TO TARGET lake (id BIGINT NOT NULL, at TIMESTAMP NOT NULL);' })).epoch).toBe(2);
    await db.query('INSERT INTO with_day (id, at) VALUES (?, ?)', [1, Date.UTC(2026, 10, 22, 12, 0, 0)]);
    expect(await waitForIds(root, 'with_day', 1)).toEqual([1]);
  });

  it('in the embedded database too: applySchema adds a stream its pipeline exports, or refuses an unconfigured target', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'lake');
    const database = await Database.open({ schema: 'CREATE TABLE t (id BIGINT NOT NULL);', partitions: 2, ttlIntervalMs: 0, data, exports: lake(root) });
    try {
      await expectError(() => database.applySchema('CREATE STREAM lost EXPORT TO TARGET elsewhere (id BIGINT NOT NULL);'), ErrorCode.EXPORT_CONFIG, /stream lost exports to target elsewhere, which the deployment does not configure/);
      expect(database.catalog.tables.has('lost')).toBe(false);
      await database.applySchema('CREATE STREAM events PARTITION ON COLUMN id EXPORT TO TARGET lake (id BIGINT NOT NULL, note VARCHAR(20));');
      await insertEmbedded(database, range(1, 8));
      expect(await database.exports!.idle()).toBe(true);
      expect(exportedIds(root, 'events').sort((a, b) => a - b)).toEqual(range(1, 8));
    } finally {
      await database.close();
    }
  });
});

async function insertEmbedded(database: Database, ids: number[]): Promise<void> {
  for (const id of ids) await database.query('INSERT INTO events (id, note) VALUES (?, ?)', [id, `event ${id}`]);
}
