/**
 * Procedures load only from the configured folder, and cannot do I/O or read the clock inside a
 * transaction — checked through the server, the way a deployment meets them: '../', absolute
 * paths and symbolic links out of the folder stop the start; I/O imports, fetch, timers and clock
 * reads are refused at load; a clock read the scan cannot see is stopped by the runtime fence,
 * rolled back, and the server goes on.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../../client/index.ts';
import { client, rejection, serve } from '../server-helpers.ts';

const api = path.resolve('procedures/api.ts');
const table = 'CREATE TABLE items (id BIGINT NOT NULL PRIMARY KEY, label VARCHAR(40));\nPARTITION TABLE items ON COLUMN id;\n';

function procedure(body: string, preamble = ''): string {
  return `${preamble}
import { defineProcedure, sql } from ${JSON.stringify(api)};
const insertItem = sql('INSERT INTO items (id, label) VALUES (?, ?)');
export default defineProcedure({
  statements: { insertItem },
  parameters: ['BIGINT'],
  run(ctx, id: number) {
    ctx.execute(insertItem, id, 'x');
    ${body}
  },
});
`;
}

describe('procedure confinement', () => {
  let root = '';
  let app = '';

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'sluice-procs-'));
    app = path.join(root, 'app');
    await mkdir(app);
    await mkdir(path.join(root, 'elsewhere'));
    await writeFile(path.join(app, 'good.ts'), procedure('return 1;'));
    await writeFile(path.join(root, 'elsewhere', 'evil.ts'), procedure('return 2;'));
    await symlink(path.join(root, 'elsewhere', 'evil.ts'), path.join(app, 'link.ts'));
    await writeFile(path.join(app, 'reads-file.ts'), procedure('return readFileSync("/etc/hostname", "utf8");', "import { readFileSync } from 'node:fs';"));
    await writeFile(path.join(app, 'fetches.ts'), procedure('void fetch("http://127.0.0.1:1/"); return 0;'));
    await writeFile(path.join(app, 'timer.ts'), procedure('setTimeout(() => {}, 1); return 0;'));
    await writeFile(path.join(app, 'clock.ts'), procedure('return new Date().getTime();'));
    await writeFile(path.join(app, 'env.ts'), procedure('return process.env.HOME;'));
    await writeFile(path.join(app, 'dynamic.ts'), procedure('return 0;', "const lazy = () => import('node:fs');"));
    await writeFile(path.join(app, 'helper.ts'), "import { request } from 'node:http';\nexport const send = request;\n");
    await writeFile(path.join(app, 'uses-helper.ts'), procedure('return typeof send;', "import { send } from './helper.ts';"));
    await writeFile(path.join(app, 'alias-clock.ts'), procedure('return clock.now();', 'const clock = Date;'));
  });

  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  async function startWith(create: string): Promise<Error & { code?: string }> {
    return rejection(serve({ schema: `${table}${create}`, procedures: app, partitions: 1 }));
  }

  it("refuses '../', absolute paths and symbolic links that leave the procedures folder", async () => {
    const cases = [
      "CREATE PROCEDURE Escape PARTITION ON TABLE items COLUMN id FROM '../elsewhere/evil.ts';",
      `CREATE PROCEDURE Absolute PARTITION ON TABLE items COLUMN id FROM '${path.join(root, 'elsewhere', 'evil.ts')}';`,
      "CREATE PROCEDURE Linked PARTITION ON TABLE items COLUMN id FROM 'link.ts';",
    ];
    for (const create of cases) {
      const error = await startWith(create);
      expect(error.code, create).toBe('PROCEDURE_LOAD');
      expect(error.message, create).toMatch(/is outside the procedures folder/);
    }
  });

  it('refuses I/O, timers, the clock, the environment and dynamic imports at load, naming file:line', async () => {
    const cases: [string, RegExp][] = [
      ['reads-file.ts', /reads-file\.ts:1:\d+: a procedure must not import I\/O modules/],
      ['fetches.ts', /fetches\.ts:\d+:\d+: a procedure must not do I\/O/],
      ['timer.ts', /timer\.ts:\d+:\d+: a procedure runs to completion; it must not schedule work/],
      ['clock.ts', /clock\.ts:\d+:\d+: new Date\(\) reads the wall clock/],
      ['env.ts', /env\.ts:\d+:\d+: process state differs between runs/],
      ['dynamic.ts', /dynamic\.ts:\d+:\d+: a procedure must not import modules at run time/],
      ['uses-helper.ts', /helper\.ts:1:\d+: a procedure must not import I\/O modules/],
    ];
    for (const [file, message] of cases) {
      const error = await startWith(`CREATE PROCEDURE P PARTITION ON TABLE items COLUMN id FROM '${file}';`);
      expect(error.code, file).toBe('NON_DETERMINISTIC');
      expect(error.message, file).toMatch(message);
    }
  });

  it('a clock read the scan cannot see is stopped at run time and rolled back; the server goes on', async () => {
    const server = await serve({
      schema: `${table}CREATE PROCEDURE Good PARTITION ON TABLE items COLUMN id FROM 'good.ts';\nCREATE PROCEDURE AliasClock PARTITION ON TABLE items COLUMN id FROM 'alias-clock.ts';`,
      procedures: app,
      partitions: 1,
    });
    const db = (await client(server)) as unknown as Client;
    const error = await rejection(db.call('AliasClock', 1));
    expect(error.code).toBe('NON_DETERMINISTIC');
    expect(error.message).toContain('Date.now() inside a procedure reads the wall clock');
    expect((await db.query('SELECT COUNT(*) FROM items')).rows).toEqual([[0]]);
    expect(await db.call('Good', 2)).toBe(1);
    expect((await db.query('SELECT id FROM items')).rows).toEqual([[2]]);
  });
});
