/**
 * Procedures: calls with the wrong name, parameter count or types fail naming what was wrong;
 * determinism is enforced (load-time source scan, runtime fence on Math.random and Date.now,
 * no Promises); ctx gives a replayable random source; files load only from the procedures
 * folder; a failed procedure load leaves the schema unchanged. Fixture: test/fixtures/procs.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Database } from '../engine/database.ts';
import { ErrorCode } from '../engine/errors.ts';
import { TransactionContext, type StatementRunner } from '../engine/execution/transaction.ts';
import type { LoadedProcedure } from '../engine/execution/procedures.ts';
import { expectError, expectRows, openDatabase } from './helpers.ts';

const fixture = path.resolve(import.meta.dirname, 'fixtures/procs');
const schema = path.join(fixture, 'ddl.sql');

let db: Database | undefined;
afterEach(async () => {
  await db?.close();
  db = undefined;
});

async function open(partitions = 3, clock?: () => number): Promise<Database> {
  db = await openDatabase(schema, { partitions, clock });
  return db;
}

describe('calling', () => {
  it('runs typed, untyped and SQL procedures', async () => {
    const database = await open();
    expect(typeof (await database.call('AddItem', 1, 'one', 5))).toBe('number');
    expect(await database.call('Untyped', 2, 'two')).toBe(1);
    // A bigint inside the exact range is the same key as the number.
    await database.call('AddItem', 3n, 'three', 7);
    expect(await database.call('GetItem', 3)).toMatchObject({ rows: [['three', 7]] });
    expect((await database.call('CountItems', 5)) as { rows: unknown[][] }).toMatchObject({ rows: [[2]] });
  });

  it('an unknown procedure is named, with near names suggested', async () => {
    const database = await open();
    const error = await expectError(() => database.call('AddItme', 1, 'x', 1), ErrorCode.UNKNOWN_PROCEDURE, /AddItme/);
    expect(error.details.suggestions).toContain('AddItem');
    expect(error.message).toMatch(/did you mean 'AddItem'/);
  });

  it('a wrong parameter count names the procedure and the expected count', async () => {
    const database = await open();
    const tooFew = await expectError(() => database.call('AddItem', 1, 'x'), ErrorCode.PARAM_COUNT, /AddItem takes 3 parameter\(s\), got 2/);
    expect(tooFew.details.path).toEqual(['params']);
    await expectError(() => database.call('Untyped', 1), ErrorCode.PARAM_COUNT, /Untyped takes 2/);
    await expectError(() => database.call('CountItems'), ErrorCode.PARAM_COUNT, /CountItems takes 1/);
  });

  it('a parameter of the wrong type is named by its path', async () => {
    const database = await open();
    const wrongType = await expectError(() => database.call('AddItem', 1, 'x', 'many'), ErrorCode.PARAM_TYPE, /parameter 3 of AddItem expects SMALLINT, got 'many'/);
    expect(wrongType.details.path).toEqual(['params', 2]);
    expect(wrongType.details.expected).toBe('SMALLINT');
    const notText = await expectError(() => database.call('AddItem', 1, { label: 'x' }, 1), ErrorCode.PARAM_TYPE);
    expect(notText.details.path).toEqual(['params', 1]);
    const fraction = await expectError(() => database.call('AddItem', 1.5, 'x', 1), ErrorCode.PARAM_TYPE);
    expect(fraction.details.path).toEqual(['params', 0]);
  });

  it('a parameter out of range for its type is named by its path', async () => {
    const database = await open();
    const error = await expectError(() => database.call('AddItem', 1, 'x', 40_000), ErrorCode.VALUE_OUT_OF_RANGE, /parameter 3 of AddItem.*SMALLINT/);
    expect(error.details.path).toEqual(['params', 2]);
    const huge = await expectError(() => database.call('AddItem', 2n ** 60n, 'x', 1), ErrorCode.VALUE_OUT_OF_RANGE);
    expect(huge.details.path).toEqual(['params', 0]);
  });

  it('a value too long for its column names the column, and nothing is written', async () => {
    const database = await open();
    await expectError(() => database.call('AddItem', 1, 'much too long', 1), ErrorCode.VALUE_TOO_LONG, /items\.label VARCHAR\(8\)/);
    await expectError(() => database.call('Untyped', 1, 'much too long'), ErrorCode.VALUE_TOO_LONG, /items\.label/);
    await expectRows(database, 'SELECT COUNT(*) FROM items', [], [[0]]);
  });

  it('the partition parameter is checked against the partition column type before routing', async () => {
    const database = await open();
    await database.call('AddItem', 42, 'number', 1);
    // Text would hash to another partition than the number: refused, not misrouted.
    const sqlProcedure = await expectError(() => database.call('GetItem', '42'), ErrorCode.PARAM_TYPE, /partition parameter 0 of GetItem expects BIGINT/);
    expect(sqlProcedure.details.path).toEqual(['params', 0]);
    const untyped = await expectError(() => database.call('Untyped', 'forty-two', 'x'), ErrorCode.PARAM_TYPE);
    expect(untyped.details.path).toEqual(['params', 0]);
    expect(await database.call('GetItem', 42n)).toMatchObject({ rows: [['number', 1]] });
  });
});

describe('determinism', () => {
  it('Math.random() at run time fails with NON_DETERMINISTIC and rolls back', async () => {
    const database = await open();
    await expectError(() => database.call('Sneaky', 1), ErrorCode.NON_DETERMINISTIC, /Math\.random\(\).*ctx\.random\(\)/);
    await expectRows(database, 'SELECT COUNT(*) FROM items', [], [[0]]);
    // The fence is lifted after the call: the test (outside any procedure) can use the real one.
    expect(Math.random()).toBeLessThan(1);
  });

  it('catching the fence error does not let the transaction commit', async () => {
    const database = await open();
    await expectError(() => database.call('SneakyCaught', 1), ErrorCode.NON_DETERMINISTIC, /Math\.random/);
    await expectRows(database, 'SELECT COUNT(*) FROM items', [], [[0]]);
  });

  it('Date.now() at run time fails with NON_DETERMINISTIC and rolls back', async () => {
    const database = await open();
    await expectError(() => database.call('SneakyClock', 1), ErrorCode.NON_DETERMINISTIC, /Date\.now\(\).*ctx\.timestamp/);
    await expectRows(database, 'SELECT COUNT(*) FROM items', [], [[0]]);
    expect(Date.now()).toBeGreaterThan(0);
  });

  it('a procedure returning a Promise fails and rolls back', async () => {
    const database = await open();
    await expectError(() => database.call('Thenable', 1), ErrorCode.NON_DETERMINISTIC, /returned a Promise/);
    await expectRows(database, 'SELECT COUNT(*) FROM items', [], [[0]]);
  });

  it('source that reads the clock is refused at load, naming file:line', async () => {
    const database = await open();
    const error = await expectError(() => database.applySchema("CREATE PROCEDURE BadClock FROM 'bad-clock.ts';"), ErrorCode.NON_DETERMINISTIC, /bad-clock\.ts:8:\d+: Date\.now\(\)/);
    expect(error.details.position?.line).toBe(8);
    expect(database.catalog.procedures.has('BadClock')).toBe(false);
  });

  it('an async run is refused at load', async () => {
    const database = await open();
    await expectError(() => database.applySchema("CREATE PROCEDURE BadAsync FROM 'bad-async.ts';"), ErrorCode.NON_DETERMINISTIC, /async/);
  });

  it('a helper imported from the procedures folder is scanned too', async () => {
    const database = await open();
    await expectError(() => database.applySchema("CREATE PROCEDURE BadHelper FROM 'bad-helper.ts';"), ErrorCode.NON_DETERMINISTIC, /helper-random\.ts:3:\d+: Math\.random/);
  });

  it('ctx.random is the same sequence for the same transaction, and differs between transactions', async () => {
    const clock = () => 1_700_000_000_000;
    const first = await open(1, clock);
    const a1 = await first.call('Dice');
    const a2 = await first.call('Dice');
    await first.close();
    const second = await open(1, clock);
    const b1 = await second.call('Dice');
    expect(b1).toEqual(a1);
    expect(a2).not.toEqual(a1);
    const draws = (a1 as { draws: number[] }).draws;
    for (const draw of draws) expect(draw >= 0 && draw < 1).toBe(true);
    expect(new Set(draws).size).toBe(3);
    expect(a1).toMatchObject({ timestamp: 1_700_000_000_000, partition: -1 });
  });

  it('the context reseeds from the transaction id and timestamp alone', () => {
    const runner: StatementRunner = { run: () => ({ columns: [], types: [], rows: [] }) };
    const context = new TransactionContext(runner, 0);
    const procedure = { name: 'P', plans: new Map() } as unknown as LoadedProcedure;
    context.reset(procedure, 17, 5000);
    const once = [context.random(), context.random()];
    context.reset(procedure, 99, 5000);
    const other = [context.random(), context.random()];
    context.reset(procedure, 17, 5000);
    expect([context.random(), context.random()]).toEqual(once);
    expect(other).not.toEqual(once);
  });
});

describe('loading', () => {
  it('a procedure file outside the procedures folder is refused', async () => {
    const database = await open();
    await expectError(() => database.applySchema("CREATE PROCEDURE Outside FROM '../bank/setup.ts';"), ErrorCode.PROCEDURE_LOAD, /outside the procedures folder/);
    await expectError(() => database.applySchema("CREATE PROCEDURE Missing FROM 'no-such-file.ts';"), ErrorCode.PROCEDURE_LOAD, /no-such-file\.ts not found/);
  });

  it('a file without a defineProcedure default export is refused', async () => {
    const database = await open();
    await expectError(() => database.applySchema("CREATE PROCEDURE BadExport FROM 'bad-export.ts';"), ErrorCode.PROCEDURE_LOAD, /defineProcedure/);
  });

  it('a statement naming an unknown table is refused at load, naming the procedure and statement', async () => {
    const database = await open();
    const error = await expectError(() => database.applySchema("CREATE PROCEDURE BadStatement FROM 'bad-statement.ts';"), ErrorCode.UNKNOWN_TABLE, /procedure BadStatement, statement missing: unknown table itemz/);
    expect(error.details.suggestions).toContain('items');
  });

  it('a SQL procedure naming an unknown table points at its line and column in the DDL', async () => {
    const database = await open();
    const error = await expectError(
      () => database.applySchema('CREATE TABLE extra (a INTEGER);\nCREATE PROCEDURE Broken AS\n  SELECT a FROM extr;'),
      ErrorCode.UNKNOWN_TABLE,
      { line: 3, column: 17 },
    );
    expect(error.message).toMatch(/procedure Broken: unknown table extr/);
  });

  it('a partition parameter beyond the parameter list is refused', async () => {
    const database = await open();
    await expectError(
      () => database.applySchema('CREATE PROCEDURE Far PARTITION ON TABLE items COLUMN id PARAMETER 2 AS SELECT * FROM items WHERE id = ?;'),
      ErrorCode.INVALID_SCHEMA,
      /partitioned on parameter 2, but it takes 1/,
    );
  });

  it('a failed procedure load changes nothing: tables, procedures and data stay as they were', async () => {
    const database = await open();
    await database.call('AddItem', 1, 'kept', 1);
    const catalog = database.catalog;
    await expectError(() => database.applySchema("CREATE TABLE later (a INTEGER);\nCREATE INDEX items_label ON items (label);\nCREATE PROCEDURE BadClock FROM 'bad-clock.ts';"), ErrorCode.NON_DETERMINISTIC);
    expect(database.catalog).toBe(catalog);
    expect(database.catalog.tables.has('later')).toBe(false);
    await expectError(() => database.query('SELECT * FROM later'), ErrorCode.UNKNOWN_TABLE);
    await expectRows(database, 'SELECT label FROM items', [], [['kept']]);
    expect(await database.call('AddItem', 2, 'after', 1)).toBeGreaterThan(0);
    database.verify();
  });

  it('the Voter procedures pass the determinism scan', async () => {
    const voter = await openDatabase(path.resolve(import.meta.dirname, '../procedures/voter/ddl.sql'));
    expect([...voter.catalog.procedures.keys()]).toContain('Vote');
    await voter.close();
  });
});
