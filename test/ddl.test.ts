/**
 * DDL: every statement form and column type, defaults and constraints, and every DDL error with
 * the line and column it names. A failed schema load (at open or through applySchema) leaves
 * the catalog and the data as they were.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { applyDdl } from '../engine/catalog/ddl.ts';
import type { Database } from '../engine/database.ts';
import { ErrorCode } from '../engine/errors.ts';
import { expectError, expectRows, openDatabase, snapshotState } from './helpers.ts';

let db: Database | undefined;
afterEach(async () => {
  await db?.close();
  db = undefined;
});

async function open(ddl: string, partitions = 1): Promise<Database> {
  db = await openDatabase(ddl, { partitions });
  return db;
}

const allTypes = `
CREATE TABLE everything (
  t TINYINT,
  s SMALLINT,
  i INTEGER NOT NULL DEFAULT 7,
  b BIGINT PRIMARY KEY,
  f FLOAT DEFAULT 1.5,
  d DECIMAL(10, 2),
  v VARCHAR(5) UNIQUE,
  vb VARBINARY(4),
  ts TIMESTAMP DEFAULT '2024-01-02T03:04:05Z',
  flag BOOLEAN DEFAULT TRUE
);`;

describe('CREATE TABLE', () => {
  it('declares every column type with its parameters, nullability and defaults', async () => {
    const database = await open(allTypes);
    const table = database.catalog.tables.get('everything')!;
    expect(table.columns.map((column) => [column.name, column.type, column.nullable])).toEqual([
      ['t', { name: 'TINYINT' }, true],
      ['s', { name: 'SMALLINT' }, true],
      ['i', { name: 'INTEGER' }, false],
      ['b', { name: 'BIGINT' }, false],
      ['f', { name: 'FLOAT' }, true],
      ['d', { name: 'DECIMAL', precision: 10, scale: 2 }, true],
      ['v', { name: 'VARCHAR', length: 5 }, true],
      ['vb', { name: 'VARBINARY', length: 4 }, true],
      ['ts', { name: 'TIMESTAMP' }, true],
      ['flag', { name: 'BOOLEAN' }, true],
    ]);
    expect(table.primaryKey?.columns).toEqual([3]);
    expect(table.indexes.filter((index) => index.unique).map((index) => index.name)).toEqual(['everything_pkey', 'everything_v_key']);
    expect(table.partitioned).toBe(false);
  });

  it('stores values of every type and fills defaults', async () => {
    const database = await open(allTypes);
    await database.query('INSERT INTO everything (t, s, b, d, v, vb) VALUES (?, ?, ?, ?, ?, ?)', [-128, 32767, 1, 12.345, 'abcde', new Uint8Array([1, 2, 3, 4])]);
    const rows = await database.queryRows('SELECT * FROM everything');
    expect(rows).toEqual([
      { t: -128, s: 32767, i: 7, b: 1, f: 1.5, d: 12.35, v: 'abcde', vb: new Uint8Array([1, 2, 3, 4]), ts: Date.parse('2024-01-02T03:04:05Z'), flag: true },
    ]);
  });

  it('keeps BIGINT exact and refuses values it would round', async () => {
    const database = await open(allTypes);
    await database.query('INSERT INTO everything (b) VALUES (?)', [9007199254740991n]);
    await database.query('INSERT INTO everything (b) VALUES (?)', [-9007199254740991]);
    await expectRows(database, 'SELECT b FROM everything ORDER BY b', [], [[-9007199254740991], [9007199254740991]]);
    await expectError(() => database.query('INSERT INTO everything (b) VALUES (?)', [9007199254740993n]), ErrorCode.VALUE_OUT_OF_RANGE, /9007199254740993/);
    await expectError(() => database.query('INSERT INTO everything (b) VALUES (?)', [2 ** 60]), ErrorCode.VALUE_OUT_OF_RANGE, /everything\.b BIGINT/);
    await expectRows(database, 'SELECT COUNT(*) FROM everything', [], [[2]]);
  });

  it('names the column of a value out of range or too long', async () => {
    const database = await open(allTypes);
    await expectError(() => database.query('INSERT INTO everything (b, t) VALUES (1, 128)'), ErrorCode.VALUE_OUT_OF_RANGE, /everything\.t TINYINT/);
    await expectError(() => database.query('INSERT INTO everything (b, s) VALUES (1, -32769)'), ErrorCode.VALUE_OUT_OF_RANGE, /everything\.s SMALLINT/);
    await expectError(() => database.query('INSERT INTO everything (b, i) VALUES (1, 2147483648)'), ErrorCode.VALUE_OUT_OF_RANGE, /everything\.i INTEGER/);
    await expectError(() => database.query('INSERT INTO everything (b, d) VALUES (1, 123456789.5)'), ErrorCode.VALUE_OUT_OF_RANGE, /everything\.d DECIMAL\(10,2\)/);
    await expectError(() => database.query('INSERT INTO everything (b, v) VALUES (1, ?)', ['abcdef']), ErrorCode.VALUE_TOO_LONG, /6 characters.*everything\.v VARCHAR\(5\)/);
    await expectError(() => database.query('INSERT INTO everything (b, vb) VALUES (1, ?)', [new Uint8Array(5)]), ErrorCode.VALUE_TOO_LONG, /5 bytes.*everything\.vb VARBINARY\(4\)/);
    await expectError(() => database.query('INSERT INTO everything (b, flag) VALUES (1, ?)', ['yes']), ErrorCode.TYPE_MISMATCH, /everything\.flag/);
    await expectRows(database, 'SELECT COUNT(*) FROM everything', [], [[0]]);
  });

  it('enforces PRIMARY KEY, UNIQUE and NOT NULL, naming the constraint and column', async () => {
    const database = await open(allTypes);
    await database.query("INSERT INTO everything (b, v) VALUES (1, 'x')");
    await expectError(() => database.query("INSERT INTO everything (b, v) VALUES (1, 'y')"), ErrorCode.UNIQUE_VIOLATION, /primary key everything_pkey.*b=1/);
    await expectError(() => database.query("INSERT INTO everything (b, v) VALUES (2, 'x')"), ErrorCode.UNIQUE_VIOLATION, /unique index everything_v_key.*v='x'/);
    await expectError(() => database.query('INSERT INTO everything (b, i) VALUES (3, NULL)'), ErrorCode.NOT_NULL_VIOLATION, /everything\.i cannot be NULL/);
    await expectError(() => database.query('INSERT INTO everything (v) VALUES (?)', ['z']), ErrorCode.NOT_NULL_VIOLATION, /everything\.b/);
    await database.query("INSERT INTO everything (b, v) VALUES (2, 'y')");
    await expectError(() => database.query("UPDATE everything SET v = 'x' WHERE b = 2"), ErrorCode.UNIQUE_VIOLATION, /everything_v_key/);
    await expectError(() => database.query('UPDATE everything SET i = NULL WHERE b = 2'), ErrorCode.NOT_NULL_VIOLATION, /everything\.i/);
    // NULLs never conflict in a unique index.
    await database.query('INSERT INTO everything (b) VALUES (3)');
    await database.query('INSERT INTO everything (b) VALUES (4)');
    await expectRows(database, 'SELECT b, v FROM everything ORDER BY b', [], [[1, 'x'], [2, 'y'], [3, null], [4, null]]);
    database.verify();
  });

  it('accepts table-level PRIMARY KEY and UNIQUE over several columns', async () => {
    const database = await open('CREATE TABLE pairs (a INTEGER, b INTEGER, c INTEGER, PRIMARY KEY (a, b), UNIQUE (b, c));');
    const table = database.catalog.tables.get('pairs')!;
    expect(table.primaryKey?.columns).toEqual([0, 1]);
    expect(table.columns[0].nullable).toBe(false);
    await database.query('INSERT INTO pairs VALUES (1, 1, 1), (1, 2, 1)');
    await expectError(() => database.query('INSERT INTO pairs VALUES (1, 1, 5)'), ErrorCode.UNIQUE_VIOLATION, /pairs_pkey/);
    await expectError(() => database.query('INSERT INTO pairs VALUES (2, 1, 1)'), ErrorCode.UNIQUE_VIOLATION, /pairs_b_c_key/);
  });
});

describe('CREATE INDEX and PARTITION TABLE', () => {
  it('creates ordered, hash, unique and multi-column indexes that queries use', async () => {
    const database = await open(`
      CREATE TABLE t (id INTEGER NOT NULL, a INTEGER, b VARCHAR(10), PRIMARY KEY (id));
      CREATE INDEX t_a ON t (a);
      CREATE UNIQUE INDEX t_ab ON t (a, b);
      CREATE HASH INDEX t_b ON t (b);
      CREATE ORDERED INDEX t_ba ON t (b, a);
      CREATE INDEX t_hash_using ON t (a) USING HASH;`);
    const kinds = Object.fromEntries(database.catalog.tables.get('t')!.indexes.map((index) => [index.name, [index.kind, index.unique, index.columns]]));
    expect(kinds).toEqual({
      t_pkey: ['hash', true, [0]],
      t_a: ['ordered', false, [1]],
      t_ab: ['ordered', true, [1, 2]],
      t_b: ['hash', false, [2]],
      t_ba: ['ordered', false, [2, 1]],
      t_hash_using: ['hash', false, [1]],
    });
    for (let i = 0; i < 15; i++) await database.query('INSERT INTO t VALUES (?, ?, ?)', [i, i % 5, `b${i % 3}`]);
    await expectRows(database, 'SELECT id FROM t WHERE a = 2 AND b = ? ORDER BY id', ['b1'], [[7]]);
    await expectRows(database, 'SELECT COUNT(*) FROM t WHERE a >= 3', [], [[6]]);
    await expectError(() => database.query("INSERT INTO t VALUES (100, 2, 'b1')"), ErrorCode.UNIQUE_VIOLATION, /t_ab/);
    database.verify();
  });

  it('partitions a table on a column and leaves the others replicated', async () => {
    const database = await open('CREATE TABLE p (k BIGINT, v INTEGER);\nPARTITION TABLE p ON COLUMN k;\nCREATE TABLE r (k INTEGER);', 3);
    const p = database.catalog.tables.get('p')!;
    expect([p.partitioned, p.partitionColumn, p.columns[0].nullable]).toEqual([true, 0, false]);
    expect(database.catalog.tables.get('r')!.partitioned).toBe(false);
    for (let k = 0; k < 30; k++) await database.query('INSERT INTO p VALUES (?, ?)', [k, k]);
    await database.query('INSERT INTO r VALUES (1)');
    await expectRows(database, 'SELECT COUNT(*), SUM(v) FROM p', [], [[30, 435]]);
    await expectRows(database, 'SELECT COUNT(*) FROM r', [], [[1]]);
  });

  it('refuses a unique index on a partitioned table that leaves out the partition column', async () => {
    await expectError(() => open('CREATE TABLE p (k BIGINT, v INTEGER);\nPARTITION TABLE p ON COLUMN k;\nCREATE UNIQUE INDEX p_v ON p (v);'), ErrorCode.INVALID_SCHEMA, { line: 3, column: 21 });
    const error = await expectError(() => open('CREATE TABLE p (k BIGINT, v INTEGER PRIMARY KEY);\nPARTITION TABLE p ON COLUMN k;'), ErrorCode.INVALID_SCHEMA, { line: 2, column: 1 });
    expect(error.message).toMatch(/primary key of partitioned table p must include the partition column k/);
    const database = await open('CREATE TABLE p (k BIGINT, v INTEGER, PRIMARY KEY (v, k));\nPARTITION TABLE p ON COLUMN k;\nCREATE UNIQUE INDEX p_kv ON p (k, v);');
    expect(database.catalog.tables.get('p')!.indexes.length).toBe(2);
  });
});

describe('CREATE VIEW, STREAM and PROCEDURE', () => {
  it('creates a materialized view with COUNT, SUM, MIN and MAX, named or aliased', async () => {
    const database = await open(`
      CREATE TABLE t (g1 VARCHAR(3), g2 INTEGER, x INTEGER);
      CREATE VIEW v AS SELECT g1, g2, COUNT(*), SUM(x), MIN(x), MAX(x) FROM t GROUP BY g1, g2;
      CREATE VIEW w (grp, n, total) AS SELECT g1, COUNT(*), SUM(x) FROM t GROUP BY g1;`);
    const v = database.catalog.tables.get('v')!;
    expect(v.kind).toBe('view');
    expect(v.columns.filter((column) => !column.hidden).map((column) => column.name)).toEqual(['g1', 'g2', 'count', 'sum_x', 'min_x', 'max_x']);
    await database.query("INSERT INTO t VALUES ('a', 1, 5), ('a', 1, 7), ('b', 2, 1)");
    await expectRows(database, 'SELECT * FROM v ORDER BY g1', [], [['a', 1, 2, 12, 5, 7], ['b', 2, 1, 1, 1, 1]]);
    await expectRows(database, 'SELECT grp, n, total FROM w ORDER BY grp', [], [['a', 2, 12], ['b', 1, 1]]);
    await expectError(() => database.query('INSERT INTO v VALUES (1, 1, 1, 1, 1, 1)'), ErrorCode.READ_ONLY, /view v/);
  });

  it('creates insertable streams, partitioned or not', async () => {
    const database = await open(`
      CREATE STREAM events PARTITION ON COLUMN device (device BIGINT NOT NULL, reading FLOAT);
      CREATE STREAM alerts (message VARCHAR(40) NOT NULL) ;`, 3);
    const events = database.catalog.tables.get('events')!;
    expect([events.kind, events.partitionColumn]).toEqual(['stream', 0]);
    expect(database.catalog.tables.get('alerts')!.partitioned).toBe(false);
    for (let device = 0; device < 9; device++) await database.query('INSERT INTO events VALUES (?, ?)', [device, device / 2]);
    await database.query("INSERT INTO alerts VALUES ('hot')");
    const drained = database.drainStream('events');
    expect(drained.map((entry) => entry.row[0]).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(database.drainStream('alerts').map((entry) => entry.row)).toEqual([['hot']]);
    await expectError(() => database.query('INSERT INTO alerts VALUES (NULL)'), ErrorCode.NOT_NULL_VIOLATION, /alerts\.message/);
    await expectError(() => database.query('DELETE FROM alerts'), ErrorCode.READ_ONLY, /insert-only/);
  });

  it('creates SQL procedures, single- and multi-partition', async () => {
    const database = await open(`
      CREATE TABLE p (k BIGINT NOT NULL, v INTEGER);
      PARTITION TABLE p ON COLUMN k;
      CREATE PROCEDURE Put PARTITION ON TABLE p COLUMN k AS INSERT INTO p VALUES (?, ?);
      CREATE PROCEDURE PutSecond PARTITION ON TABLE p COLUMN k PARAMETER 1 AS INSERT INTO p (v, k) VALUES (?, ?);
      CREATE PROCEDURE Total AS SELECT SUM(v) FROM p;`, 3);
    expect(database.catalog.procedures.get('Put')!.partitioning).toEqual({ table: 'p', column: 'k', parameter: 0 });
    expect(database.catalog.procedures.get('PutSecond')!.partitioning?.parameter).toBe(1);
    expect(database.catalog.procedures.get('Total')!.partitioning).toBeUndefined();
    for (let k = 0; k < 10; k++) await database.call('Put', k, 1);
    for (let k = 10; k < 20; k++) await database.call('PutSecond', 2, k);
    expect(await database.call('Total')).toMatchObject({ rows: [[30]] });
  });

  it('parses USING TTL into minutes and a column', async () => {
    const database = await open('CREATE TABLE s (id INTEGER, at TIMESTAMP) USING TTL 90 MINUTES ON COLUMN at;\nCREATE TABLE h (id INTEGER, at BIGINT) USING TTL 2 HOURS ON COLUMN at;');
    expect(database.catalog.tables.get('s')!.ttl).toEqual({ minutes: 90, column: 1 });
    expect(database.catalog.tables.get('h')!.ttl).toEqual({ minutes: 120, column: 1 });
  });

  it('ignores comments and is case-insensitive about names', async () => {
    const database = await open('-- a comment\nCREATE TABLE Mixed (/* inline */ Id INTEGER);\n/* block ; with a semicolon */\nCREATE INDEX mixed_id ON MIXED (ID);');
    expect(database.catalog.tables.get('mixed')!.columns[0].name).toBe('id');
  });
});

describe('DDL errors name the statement, line and column', () => {
  const cases: [string, string, ErrorCode, number, number, RegExp][] = [
    ['a misspelt type', 'CREATE TABLE a (x INTEGER);\nCREATE TABLE b (y INTEGR);', ErrorCode.SYNTAX, 2, 19, /INTEGR/],
    ['a syntax error on a later line of a statement', 'CREATE TABLE a (x INTEGER);\nCREATE TABLE b (\n  y INTEGER,\n  z VARCHAR(10) NOT NUL\n);', ErrorCode.SYNTAX, 4, 17, /CREATE TABLE b/],
    ['an unknown partition column', 'CREATE TABLE a (x INTEGER);\nPARTITION TABLE a ON COLUMN y;', ErrorCode.UNKNOWN_COLUMN, 2, 29, /unknown column y in table a in: PARTITION TABLE a ON COLUMN y/],
    ['an unknown partitioned table', 'CREATE TABLE a (x INTEGER);\nPARTITION TABLE b ON COLUMN x;', ErrorCode.UNKNOWN_TABLE, 2, 17, /unknown table b in: PARTITION TABLE b/],
    ['an unknown index column', 'CREATE TABLE a (x INTEGER);\nCREATE INDEX i ON a (y);', ErrorCode.UNKNOWN_COLUMN, 2, 22, /unknown column y in table a/],
    ['an unknown indexed table', 'CREATE TABLE a (x INTEGER);\nCREATE INDEX i ON zz (x);', ErrorCode.UNKNOWN_TABLE, 2, 19, /unknown table zz/],
    ['a duplicate table', 'CREATE TABLE a (x INTEGER);\nCREATE TABLE a (x INTEGER);', ErrorCode.DUPLICATE_OBJECT, 2, 14, /table a already exists/],
    ['a duplicate column', 'CREATE TABLE a (x INTEGER, x BIGINT);', ErrorCode.DUPLICATE_OBJECT, 1, 17, /column a\.x is declared twice/],
    ['a duplicate index', 'CREATE TABLE a (x INTEGER);\nCREATE INDEX i ON a (x);\nCREATE INDEX i ON a (x);', ErrorCode.DUPLICATE_OBJECT, 3, 14, /index i already exists/],
    ['a default out of range', 'CREATE TABLE a (x INTEGER, y TINYINT DEFAULT 500);', ErrorCode.VALUE_OUT_OF_RANGE, 1, 28, /default of column a\.y TINYINT/],
    ['a default too long', "CREATE TABLE a (\n  y VARCHAR(2) DEFAULT 'abc'\n);", ErrorCode.VALUE_TOO_LONG, 2, 3, /default of column a\.y VARCHAR\(2\)/],
    ['a DECIMAL beyond the precision limit', 'CREATE TABLE a (y DECIMAL(20,2));', ErrorCode.UNSUPPORTED, 1, 17, /DECIMAL\(20,2\)/],
    ['two primary keys', 'CREATE TABLE a (x INTEGER PRIMARY KEY, y INTEGER, PRIMARY KEY (y));', ErrorCode.INVALID_SCHEMA, 1, 1, /more than one primary key/],
    ['an unsupported view aggregate', 'CREATE TABLE a (x INTEGER);\nCREATE VIEW v AS SELECT x, AVG(x) FROM a GROUP BY x;', ErrorCode.UNSUPPORTED, 2, 1, /view v must be/],
    ['a view over an unknown column', 'CREATE TABLE a (x INTEGER);\nCREATE VIEW v AS SELECT q, COUNT(*) FROM a GROUP BY q;', ErrorCode.UNKNOWN_COLUMN, 2, 25, /unknown column q/],
    ['a view with WHERE', 'CREATE TABLE a (x INTEGER);\nCREATE VIEW v AS SELECT x, COUNT(*) FROM a WHERE x > 1 GROUP BY x;', ErrorCode.UNSUPPORTED, 2, 1, /WHERE/],
    ['a SUM of text', 'CREATE TABLE a (g VARCHAR(3));\nCREATE VIEW v AS SELECT g, SUM(g) FROM a GROUP BY g;', ErrorCode.TYPE_MISMATCH, 2, 25, /SUM needs a numeric column/],
    ['a view over a view', 'CREATE TABLE a (x INTEGER);\nCREATE VIEW v AS SELECT x, COUNT(*) FROM a GROUP BY x;\nCREATE VIEW w AS SELECT x, COUNT(*) FROM v GROUP BY x;', ErrorCode.UNSUPPORTED, 3, 1, /another view/],
    ['a procedure with a syntax error', 'CREATE TABLE a (x INTEGER);\nCREATE PROCEDURE p AS SELEC * FROM a;', ErrorCode.SYNTAX, 2, 29, /SELEC/],
    ['a malformed CREATE PROCEDURE', "CREATE TABLE a (x INTEGER);\nCREATE PROCEDURE p PARTITION ON a FROM 'p.ts';", ErrorCode.SYNTAX, 2, 1, /expected CREATE PROCEDURE/],
    ['a procedure partitioned on a non-partition column', "CREATE TABLE a (x INTEGER, y INTEGER);\nPARTITION TABLE a ON COLUMN x;\nCREATE PROCEDURE p PARTITION ON TABLE a COLUMN y FROM 'p.ts';", ErrorCode.INVALID_SCHEMA, 3, 48, /not the partition column/],
    ['a duplicate procedure', 'CREATE TABLE a (x INTEGER);\nCREATE PROCEDURE p AS SELECT x FROM a;\nCREATE PROCEDURE p AS SELECT x FROM a;', ErrorCode.DUPLICATE_OBJECT, 3, 18, /procedure p already exists/],
    ['an unsupported statement', 'CREATE TABLE a (x INTEGER);\n  DROP TABLE a;', ErrorCode.UNSUPPORTED, 2, 3, /DROP TABLE/],
    ['a TTL on an unknown column', 'CREATE TABLE a (x INTEGER, t TIMESTAMP)\n  USING TTL 5 MINUTES ON COLUMN q;', ErrorCode.UNKNOWN_COLUMN, 2, 33, /unknown column q/],
    ['a TTL on a text column', 'CREATE TABLE a (x INTEGER, t VARCHAR(3)) USING TTL 5 MINUTES ON COLUMN t;', ErrorCode.INVALID_SCHEMA, 1, 72, /TTL column a\.t must be a TIMESTAMP/],
    ['a TTL on a stream', 'CREATE STREAM s (x INTEGER, t TIMESTAMP) USING TTL 5 MINUTES ON COLUMN t;', ErrorCode.INVALID_SCHEMA, 1, 42, /stream s keeps no rows/],
    ['a stream with a primary key', 'CREATE STREAM s (x INTEGER PRIMARY KEY);', ErrorCode.INVALID_SCHEMA, 1, 1, /stream s cannot have a primary key or unique constraint in: CREATE STREAM s/],
    ['a stream partitioned on an unknown column', 'CREATE STREAM s PARTITION ON COLUMN q (x INTEGER);', ErrorCode.UNKNOWN_COLUMN, 1, 37, /unknown column q in table s in: CREATE STREAM/],
    ['an index on a stream', 'CREATE STREAM s (x INTEGER);\nCREATE INDEX i ON s (x);', ErrorCode.INVALID_SCHEMA, 2, 1, /stream s cannot be indexed/],
    ['a table partitioned twice', 'CREATE TABLE a (x INTEGER, y INTEGER);\nPARTITION TABLE a ON COLUMN x;\nPARTITION TABLE a ON COLUMN y;', ErrorCode.INVALID_SCHEMA, 3, 29, /already partitioned on x/],
  ];
  for (const [what, ddl, code, line, column, message] of cases) {
    it(what, async () => {
      const error = await expectError(() => applyDdl(ddl), code, { line, column });
      expect(error.message).toMatch(message);
      expect(error.details.statement, 'the error carries its statement').toBeTruthy();
      // Opening a database with the same DDL fails the same way.
      await expectError(() => openDatabase(ddl), code, { line, column });
    });
  }

  it('an unknown name suggests the near ones', async () => {
    const error = await expectError(() => applyDdl('CREATE TABLE orders (id INTEGER);\nCREATE INDEX o ON ordrs (id);'), ErrorCode.UNKNOWN_TABLE);
    expect(error.details.suggestions).toEqual(['orders']);
  });
});

describe('a failed schema change changes nothing', () => {
  const base = `
    CREATE TABLE t (id INTEGER NOT NULL, g INTEGER, x INTEGER, PRIMARY KEY (id));
    PARTITION TABLE t ON COLUMN id;
    CREATE VIEW v AS SELECT g, COUNT(*) AS n, SUM(x) AS total FROM t GROUP BY g;`;

  async function loaded(partitions: number): Promise<Database> {
    const database = await open(base, partitions);
    for (let id = 0; id < 12; id++) await database.query('INSERT INTO t VALUES (?, ?, ?)', [id, id % 2, id]);
    await database.query('INSERT INTO t VALUES (12, 0, 0)');
    return database;
  }

  for (const partitions of [1, 3]) {
    const failures: [string, string, ErrorCode][] = [
      ['a DDL error on the last statement', 'CREATE TABLE extra (a INTEGER);\nCREATE INDEX t_x ON t (x);\nCREATE INDEX bad ON t (nope);', ErrorCode.UNKNOWN_COLUMN],
      ['a unique index without the partition column', 'CREATE TABLE extra (a INTEGER);\nCREATE UNIQUE INDEX t_gx ON t (g, x, id);\nCREATE UNIQUE INDEX t_dup ON t (x);', ErrorCode.INVALID_SCHEMA],
      ['partitioning a table that already holds rows', 'CREATE TABLE r (a INTEGER);\nPARTITION TABLE t ON COLUMN id;', ErrorCode.INVALID_SCHEMA],
      ['a procedure that does not plan', 'CREATE TABLE extra (a INTEGER);\nCREATE PROCEDURE Bad AS SELECT nope FROM extra;', ErrorCode.UNKNOWN_COLUMN],
    ];
    for (const [what, ddl, code] of failures) {
      it(`${what} (${partitions} partition(s))`, async () => {
        const database = await loaded(partitions);
        const catalog = database.catalog;
        const before = await snapshotState(database, ['t', 'v']);
        await expectError(() => database.applySchema(ddl), code);
        expect(database.catalog).toBe(catalog);
        expect(await snapshotState(database, ['t', 'v'])).toEqual(before);
        await expectError(() => database.query('SELECT * FROM extra'), ErrorCode.UNKNOWN_TABLE);
        await database.query('INSERT INTO t VALUES (100, 1, 1)');
        database.verify();
      });
    }
  }

  it('a new unique index over a replicated table with duplicate rows fails with UNIQUE_VIOLATION and changes nothing', async () => {
    const database = await open('CREATE TABLE r (id INTEGER, x INTEGER);', 3);
    await database.query('INSERT INTO r VALUES (1, 5), (2, 5)');
    const catalog = database.catalog;
    await expectError(() => database.applySchema('CREATE TABLE extra (a INTEGER);\nCREATE UNIQUE INDEX r_x ON r (x);'), ErrorCode.UNIQUE_VIOLATION, /r_x/);
    expect(database.catalog).toBe(catalog);
    await expectRows(database, 'SELECT id, x FROM r ORDER BY id', [], [[1, 5], [2, 5]]);
    await database.query('INSERT INTO r VALUES (3, 5)');
    database.verify();
  });

  it('a view added to a table with rows starts from those rows', async () => {
    const database = await loaded(3);
    await database.applySchema('CREATE VIEW by_g AS SELECT g, COUNT(*) AS n, MAX(x) AS top FROM t GROUP BY g;');
    await expectRows(database, 'SELECT g, SUM(n), MAX(top) FROM by_g GROUP BY g ORDER BY g', [], [[0, 7, 10], [1, 6, 11]]);
    database.verify();
  });
});
