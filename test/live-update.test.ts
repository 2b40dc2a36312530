/**
 * Live application updates (@UpdateApplication, engine/server/live-update.ts), on a real server
 * with worker partitions: a procedure added and called; a procedure replaced while calls are in
 * flight, each call's answer saying which version ran it; tables, an index, a view and a stream
 * added and used; updates that cannot be applied refused with errors naming the object and line
 * while the server goes on with the old version; and with a data directory, a restart without a
 * snapshot (and one from a snapshot) that replays every call with the code that originally ran it.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Client } from '../client/index.ts';
import { readProcedureFolder } from '../engine/durability/code-versions.ts';
import { startServer, type ServerOptions, type SluiceServer } from '../engine/server/server.ts';
import type { ApplicationUpdate } from '../procedures/system.ts';
import { rejection } from './server-helpers.ts';

const schema = 'test/fixtures/live/schema.sql';
const v1 = 'test/fixtures/live/v1';
const v2Files = readProcedureFolder('test/fixtures/live/v2');
/** Version 2's additions: the table Bump v2 writes, and the procedure added with it. */
const v2Ddl = `CREATE TABLE bump_log (id BIGINT NOT NULL, at BIGINT NOT NULL);
PARTITION TABLE bump_log ON COLUMN id;
CREATE PROCEDURE CountItems FROM 'count-items.ts';`;

const folders: string[] = [];
const running: { close(): Promise<void> }[] = [];

afterEach(async () => {
  while (running.length > 0) await running.pop()!.close();
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

async function start(options: Partial<ServerOptions> = {}): Promise<{ server: SluiceServer; client: Client }> {
  const server = await startServer({ schema, procedures: v1, partitions: 2, port: 0, host: '127.0.0.1', ...options });
  running.push(server);
  const client = await connect(server.url);
  running.push(client);
  return { server, client };
}

/** Stops without the shutdown snapshot: the next start must replay the whole log. */
async function stopAbruptly(server: SluiceServer, client: Client): Promise<void> {
  await client.close();
  running.splice(running.indexOf(client), 1);
  running.splice(running.indexOf(server), 1);
  await server.close();
}

function dataFolder(): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'sluice-live-update-'));
  folders.push(folder);
  return folder;
}

function update(client: Client, change: ApplicationUpdate) {
  return client.call('@UpdateApplication', change);
}

async function epoch(client: Client): Promise<number> {
  return (await client.call('@SystemInformation')).epoch;
}

async function rows(client: Client, sql: string): Promise<unknown[][]> {
  return (await client.query(sql)).rows;
}

type BumpResult = [string, number, number];

describe('live update', () => {
  it('adds a procedure and a table, and the new procedure answers at once', async () => {
    const { client } = await start();
    await client.call('Bump', 1);
    const result = await update(client, { ddl: v2Ddl, procedures: v2Files });
    expect(result).toMatchObject({ epoch: 2, tablesAdded: ['bump_log'], proceduresAdded: ['CountItems'], proceduresReplaced: ['Bump'] });
    expect(await client.call('CountItems')).toEqual(['v2', 1, 1]);
    expect(await client.call('Bump', 1)).toEqual(['v2', expect.any(Number), 11]);
    expect(await rows(client, 'SELECT id FROM bump_log')).toEqual([[1]]);
    const info = await client.call('@SystemInformation');
    expect(info.epoch).toBe(2);
    expect(info.procedures).toContain('CountItems');
    expect(info.schema).toContain('CREATE TABLE bump_log');
  });

  it('replaces a procedure while calls are in flight: calls sequenced before the switch ran the old code, calls after it the new', async () => {
    const { client } = await start();
    const before = Array.from({ length: 300 }, (_, i) => client.call('Bump', i % 20) as Promise<BumpResult>);
    const switched = update(client, { ddl: v2Ddl, procedures: v2Files });
    const during = Array.from({ length: 300 }, (_, i) => client.call('Bump', i % 20) as Promise<BumpResult>);
    const { transactionId } = await switched;
    const after = Array.from({ length: 100 }, (_, i) => client.call('Bump', i % 20) as Promise<BumpResult>);
    const answers = { before: await Promise.all(before), during: await Promise.all(during), after: await Promise.all(after) };
    // Sent before the update: sequenced before its switch point. Sent after its answer: after it.
    expect(answers.before.every(([version, id]) => version === 'v1' && id < transactionId)).toBe(true);
    expect(answers.after.every(([version, id]) => version === 'v2' && id > transactionId)).toBe(true);
    // In between, the transaction order alone decides which code ran.
    for (const [version, id] of answers.during) expect(version).toBe(id < transactionId ? 'v1' : 'v2');
    const all = [...answers.before, ...answers.during, ...answers.after];
    const expected = all.reduce((sum, [version]) => sum + (version === 'v1' ? 1 : 10), 0);
    expect(await rows(client, 'SELECT SUM(n) FROM items')).toEqual([[expected]]);
    // Every v2 call noted itself, no v1 call did.
    expect(await rows(client, 'SELECT COUNT(*) FROM bump_log')).toEqual([[all.filter(([version]) => version === 'v2').length]]);
  });

  it('adds a table, an index, a view over existing rows and a stream, and uses them', async () => {
    const { client } = await start();
    for (let id = 1; id <= 6; id++) await client.call('AddItem', id, id % 3);
    const result = await update(client, {
      ddl: `CREATE TABLE tags (id BIGINT NOT NULL, tag VARCHAR(20) NOT NULL);
PARTITION TABLE tags ON COLUMN id;
CREATE INDEX tags_by_tag ON tags (tag);
CREATE VIEW items_by_n (n, items) AS SELECT n, COUNT(*) FROM items GROUP BY n;
CREATE STREAM tag_events PARTITION ON COLUMN id (id BIGINT NOT NULL, tag VARCHAR(20));
CREATE PROCEDURE Tag PARTITION ON TABLE tags COLUMN id PARAMETER 0 AS INSERT INTO tags (id, tag) VALUES (?, ?);`,
    });
    expect(result.tablesAdded.sort()).toEqual(['items_by_n', 'tag_events', 'tags']);
    expect(result.proceduresAdded).toEqual(['Tag']);
    expect(result.proceduresReplaced).toEqual([]);
    // The view starts from the rows the table held at the switch, and follows later writes.
    expect(await rows(client, 'SELECT n, SUM(items) FROM items_by_n GROUP BY n ORDER BY n')).toEqual([[0, 2], [1, 2], [2, 2]]);
    await client.call('AddItem', 7, 2);
    expect(await rows(client, 'SELECT SUM(items) FROM items_by_n WHERE n = 2')).toEqual([[3]]);
    await client.call('Tag', 1, 'red');
    await client.call('Tag', 2, 'red');
    await client.call('Tag', 3, 'blue');
    expect(await rows(client, "SELECT id FROM tags WHERE tag = 'red' ORDER BY id")).toEqual([[1], [2]]);
    const plan = await rows(client, "EXPLAIN SELECT id FROM tags WHERE tag = 'red'");
    expect(JSON.stringify(plan)).toContain('tags_by_tag');
    expect(await client.query('INSERT INTO tag_events (id, tag) VALUES (?, ?)', [1, 'red'])).toMatchObject({ rows: [[1]] });
    // Procedure code stayed: the update carried none.
    expect(((await client.call('Bump', 1)) as BumpResult)[0]).toBe('v1');
  });

  describe('refuses what it cannot do, and the server goes on with the old version', () => {
    const refusals: [string, ApplicationUpdate, string, RegExp][] = [
      ['ALTER TABLE', { ddl: 'CREATE TABLE fine (a INTEGER);\nALTER TABLE items ADD COLUMN extra INTEGER;' }, 'UNSUPPORTED', /ALTER TABLE.*live update only adds.*line 2/s],
      ['DROP TABLE', { ddl: 'DROP TABLE items;' }, 'UNSUPPORTED', /DROP TABLE.*line 1/s],
      ['a new partition column', { ddl: '\n\nPARTITION TABLE items ON COLUMN n;' }, 'INVALID_SCHEMA', /items already exists.*line 3/s],
      ['a table that exists', { ddl: 'CREATE TABLE items (id BIGINT);' }, 'DUPLICATE_OBJECT', /items/],
      ['a file that does not compile', { procedures: { 'bump.ts': "import { defineProcedure } from '../../../../procedures/api.ts';\nexport default defineProcedure({ statements: {}, parameters: ['BIGINT'], run(ctx, id: number) { return id +; } });\n" } }, 'PROCEDURE_LOAD', /procedure Bump failed to load.*bump\.ts:2/s],
      ['a statement that does not plan', { procedures: { 'bump.ts': "import { defineProcedure, sql } from '../../../../procedures/api.ts';\nconst read = sql('SELECT n FROM no_such_items WHERE id = ?');\nexport default defineProcedure({ statements: { read }, parameters: ['BIGINT'], run(ctx, id: number) { return ctx.query(read, id).length; } });\n" } }, 'UNKNOWN_TABLE', /procedure Bump, statement read: unknown table no_such_items/],
      ['a clock read', { procedures: { 'bump.ts': "import { defineProcedure } from '../../../../procedures/api.ts';\nexport default defineProcedure({ statements: {}, parameters: ['BIGINT'], run(ctx, id: number) { return Date.now() + id; } });\n" } }, 'NON_DETERMINISTIC', /bump\.ts:2:\d+: Date\.now/],
      ['a procedure whose file is missing', { ddl: `${v2Ddl}\nCREATE PROCEDURE Ghost FROM 'ghost.ts';`, procedures: v2Files }, 'PROCEDURE_LOAD', /Ghost.*ghost\.ts not found/],
      ['a path outside the folder', { procedures: { '../escape.ts': 'export {};' } }, 'PARAM_TYPE', /escape\.ts.*stay inside/],
      ['a file that is not code', { procedures: { 'notes.txt': 'hello' } }, 'PARAM_TYPE', /notes\.txt is not a code file/],
      ['nothing to do', {}, 'PARAM_TYPE', /nothing to update/],
    ];
    for (const [what, change, code, message] of refusals) {
      it(what, async () => {
        const { server, client } = await start();
        await client.call('Bump', 1);
        const error = await rejection(update(client, change));
        expect(error.code).toBe(code);
        expect(error.message).toMatch(message);
        expect(await epoch(client)).toBe(1);
        expect(await client.call('Bump', 1)).toEqual(['v1', expect.any(Number), 2]);
        expect(server.router.procedureNames).not.toContain('Ghost');
      });
    }

    it('a second update while one is being applied', async () => {
      const { client } = await start();
      const first = update(client, { ddl: v2Ddl, procedures: v2Files });
      const second = await rejection(update(client, { ddl: 'CREATE TABLE other (a INTEGER);' }));
      expect(second.code).toBe('UNSUPPORTED');
      expect(second.message).toMatch(/another update is being applied/);
      expect((await first).epoch).toBe(2);
      expect((await rejection(client.query('SELECT * FROM other'))).code).toBe('UNKNOWN_TABLE');
    });

    it('a unique index the rows of one partition break, found at the switch point: no partition changes', async () => {
      const { client } = await start();
      for (let id = 1; id <= 4; id++) await client.call('AddItem', id, 7);
      // Key 1's partition holds a duplicate; the other partition could build the index.
      for (const [k, a] of [[1, 5], [1, 5], [2, 5], [3, 6]]) await client.call('AddPair', k, a);
      const error = await rejection(update(client, { ddl: 'CREATE TABLE other (a INTEGER);\nCREATE UNIQUE INDEX pairs_ka ON pairs (k, a);' }));
      expect(error.code).toBe('UNIQUE_VIOLATION');
      expect(error.message).toMatch(/^partition \d: /);
      expect(await epoch(client)).toBe(1);
      expect(await rows(client, 'SELECT COUNT(*), SUM(n) FROM items')).toEqual([[4, 28]]);
      // Without the index, the duplicate is still accepted on every partition.
      await client.call('AddPair', 2, 5);
      await client.call('AddPair', 3, 6);
      expect(await rows(client, 'SELECT COUNT(*) FROM pairs')).toEqual([[6]]);
      // Nothing of the refused update is there, and the next update works.
      expect((await rejection(client.query('SELECT * FROM other'))).code).toBe('UNKNOWN_TABLE');
      expect((await update(client, { ddl: v2Ddl, procedures: v2Files })).epoch).toBe(2);
      expect(await client.call('CountItems')).toEqual(['v2', 4, 28]);
    });
  });

  it('sluice update sends a procedures folder and a schema file; a refusal prints one line and exits 1', async () => {
    const { client, server } = await start();
    const additions = path.join(dataFolder(), 'additions.sql');
    writeFileSync(additions, v2Ddl);
    const run = promisify(execFile);
    const done = await run(process.execPath, ['client/cli.ts', 'update', '--procedures', 'test/fixtures/live/v2', '--schema', additions, '--url', server.url]);
    // Nothing ran after the update: its switch is the last transaction handed out.
    expect(done.stdout).toBe(`version 2 in force from transaction ${server.router.position.transactionId}; added bump_log, CountItems; replaced Bump\n`);
    expect(((await client.call('Bump', 3)) as BumpResult)[0]).toBe('v2');
    writeFileSync(additions, 'CREATE TABLE ok (a INTEGER);\nDROP TABLE items;');
    const refused = await run(process.execPath, ['client/cli.ts', 'update', '--schema', additions, '--url', server.url]).catch((error: { stderr: string; code: number }) => error);
    expect(refused).toMatchObject({ code: 1 });
    expect((refused as { stderr: string }).stderr).toMatch(/^error: UNSUPPORTED unsupported DDL statement 'DROP TABLE'.*\(line 2, column 1\)\n$/);
    expect(await epoch(client)).toBe(2);
  });

  describe('with a data directory', () => {
    const settings = { mode: 'sync' as const, snapshotOnShutdown: false, snapshotIntervalMinutes: 0 };

    it('replays each call with the code that ran it after a stop without a snapshot', async () => {
      const data = dataFolder();
      const first = await start({ data, durability: settings });
      for (let i = 0; i < 30; i++) await first.client.call('Bump', i % 5);
      await update(first.client, { ddl: v2Ddl, procedures: v2Files });
      for (let i = 0; i < 20; i++) await first.client.call('Bump', i % 5);
      const expected = await rows(first.client, 'SELECT id, n FROM items ORDER BY id');
      // 30 bumps of 1 then 20 of 10: replaying all with either version alone would differ.
      expect(expected).toEqual([0, 1, 2, 3, 4].map((id) => [id, 6 + 40]));
      await stopAbruptly(first.server, first.client);

      const second = await start({ data, durability: settings });
      expect(second.server.recovery?.transactionsReplayed).toBe(51);
      expect(await rows(second.client, 'SELECT id, n FROM items ORDER BY id')).toEqual(expected);
      expect(await rows(second.client, 'SELECT COUNT(*) FROM bump_log')).toEqual([[20]]);
      expect(await epoch(second.client)).toBe(2);
      expect(((await second.client.call('Bump', 0)) as BumpResult)[0]).toBe('v2');
      expect(await second.client.call('CountItems')).toEqual(['v2', 5, 240]);
    });

    it('restores a snapshot taken under a live version with that version, then replays later updates', async () => {
      const data = dataFolder();
      const first = await start({ data, durability: settings });
      for (let i = 0; i < 10; i++) await first.client.call('Bump', i % 2);
      await update(first.client, { ddl: v2Ddl, procedures: v2Files });
      await first.client.call('Bump', 0);
      await first.client.call('@SnapshotSave');
      await first.client.call('Bump', 1);
      await update(first.client, { ddl: 'CREATE TABLE later (a INTEGER);' });
      await first.client.call('Bump', 1);
      await first.client.call('@SnapshotSave');
      const expected = await rows(first.client, 'SELECT id, n FROM items ORDER BY id');
      expect(expected).toEqual([[0, 15], [1, 25]]);
      // Two snapshots, both under version 2 or later: versions 1's code is no longer needed.
      expect(readdirSync(path.join(data, 'code')).sort()).toEqual(['2', '3']);
      await first.client.call('Bump', 0);
      await stopAbruptly(first.server, first.client);

      const second = await start({ data, durability: settings });
      expect(await rows(second.client, 'SELECT id, n FROM items ORDER BY id')).toEqual([[0, 25], [1, 25]]);
      expect(await epoch(second.client)).toBe(3);
      expect(await rows(second.client, 'SELECT COUNT(*) FROM later')).toEqual([[0]]);
    });

    it('a start with other code replays a log with live updates with the stored versions, then refuses a schema without a table they added', async () => {
      const data = dataFolder();
      const first = await start({ data, durability: settings });
      await first.client.call('Bump', 1);
      await update(first.client, { ddl: v2Ddl, procedures: v2Files });
      await first.client.call('Bump', 1);
      await stopAbruptly(first.server, first.client);
      const changed = `${readFileSync(schema, 'utf8')}\nCREATE TABLE extra (a INTEGER);`;
      const error = await rejection(startServer({ schema: changed, procedures: v1, partitions: 2, port: 0, host: '127.0.0.1', data, durability: settings }));
      // The catch-up start replayed both versions' calls and took a snapshot under version 2, whose
      // bump_log table the new schema would drop.
      expect(error.message).toMatch(/snapshot .*: table bump_log holds 1 rows but the schema no longer declares it/);
      // The same command line as the first start still recovers both versions' work.
      const again = await start({ data, durability: settings });
      expect(await rows(again.client, 'SELECT n FROM items')).toEqual([[11]]);
    });

    it('kill -9 after an acknowledged update: the restart replays both versions and the server logged the update', async () => {
      const data = dataFolder();
      const child = spawn(process.execPath, ['client/cli.ts', 'start', '--schema', schema, '--procedures', v1, '--data', data, '--partitions', '2', '--port', '0', '--host', '127.0.0.1', '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const lines: Record<string, unknown>[] = [];
      const url = new Promise<string>((resolve) => {
        readline.createInterface({ input: child.stdout! }).on('line', (line) => {
          const entry = JSON.parse(line) as Record<string, unknown>;
          lines.push(entry);
          if (typeof entry.url === 'string') resolve(entry.url);
        });
      });
      try {
        const client = await connect(await url);
        for (let i = 0; i < 12; i++) await client.call('Bump', i % 3);
        const { epoch: version, transactionId } = await update(client, { ddl: v2Ddl, procedures: v2Files });
        await Promise.all(Array.from({ length: 12 }, (_, i) => client.call('Bump', i % 3)));
        const expected = await rows(client, 'SELECT id, n FROM items ORDER BY id');
        expect(expected).toEqual([[0, 44], [1, 44], [2, 44]]);
        child.kill('SIGKILL');
        await exited;
        await client.close().catch(() => undefined);
        const logged = lines.find((entry) => entry.epoch === version && entry.transactionId === transactionId);
        expect(logged).toMatchObject({ msg: `application updated live to version 2 at transaction ${transactionId}`, tablesAdded: ['bump_log'], proceduresAdded: ['CountItems'], proceduresReplaced: ['Bump'] });

        const again = await start({ data });
        expect(await rows(again.client, 'SELECT id, n FROM items ORDER BY id')).toEqual(expected);
        expect(await epoch(again.client)).toBe(2);
      } finally {
        child.kill('SIGKILL');
      }
    });

    it('a refused update leaves no version behind and the log replays as before', async () => {
      const data = dataFolder();
      const first = await start({ data, durability: settings });
      await first.client.call('Bump', 1);
      await rejection(update(first.client, { procedures: { 'bump.ts': 'export default 1;' } }));
      expect(existsSync(path.join(data, 'code', '2'))).toBe(false);
      await first.client.call('Bump', 1);
      await stopAbruptly(first.server, first.client);
      const second = await start({ data, durability: settings });
      expect(await rows(second.client, 'SELECT n FROM items')).toEqual([[2]]);
      expect(await epoch(second.client)).toBe(1);
    });
  });
});
