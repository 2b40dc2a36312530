/**
 * The `postgresql` export target (pg): each delivered batch is one PostgreSQL transaction that
 * inserts the rows with one multi-row `INSERT … SELECT FROM unnest($1::type[], …)` (one statement
 * and one round trip per batch, whatever its size) and moves the stream partition's position in
 * `sluice_export_positions` — so a repeated batch (a retry, or a re-delivery after a crash)
 * inserts nothing it inserted before: exactly once in PostgreSQL. The target table gets the
 * stream's columns plus `_partition` and `_sequence` (primary key), created if missing.
 *
 * End-of-day jobs (`writeDay`) insert the day's rows and a row in `sluice_export_days` in one
 * transaction; a day already there is left alone ('already').
 *
 * Settings: `url` (or host, port, user, password / passwordEnv, database), `schema` (default
 * public), `table` (default: the stream's name; `{stream}` is replaced by it), `createTable`
 * (default true), `poolSize` (default 4).
 */
import pg from 'pg';
import type { ColumnDef } from '../engine/catalog/schema.ts';
import type { SqlType, Value } from '../engine/types.ts';
import { configError, describe, positiveInteger } from './config.ts';
import type { TargetContext } from './registry.ts';
import type { DayBatch, ExportBatch, ExportTarget, TargetConfig } from './target.ts';

export const positionsTableName = 'sluice_export_positions';
export const daysTableName = 'sluice_export_days';
const poolSizeDefault = 4;
const connectTimeoutMs = 5000;


/**
 * Runs `work` in one PostgreSQL transaction on a pooled connection: COMMIT when it resolves,
 * ROLLBACK (its own failure ignored, the work's error kept) when it throws.
 */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The PostgreSQL column type for a Sluice SQL type. */
export function postgresType(type: SqlType): string {
  switch (type.name) {
    case 'TINYINT':
    case 'SMALLINT':
      return 'smallint';
    case 'INTEGER':
      return 'integer';
    case 'BIGINT':
      return 'bigint';
    case 'FLOAT':
      return 'double precision';
    case 'DECIMAL':
      return type.precision !== undefined ? `numeric(${type.precision},${type.scale ?? 0})` : 'numeric';
    case 'VARCHAR':
      return type.length !== undefined ? `varchar(${type.length})` : 'text';
    case 'VARBINARY':
      return 'bytea';
    case 'TIMESTAMP':
      return 'timestamptz';
    case 'BOOLEAN':
      return 'boolean';
  }
}

/** The array type unnest takes a column as (lengths and precisions do not matter there). */
function arrayType(type: SqlType): string {
  return `${postgresType(type).replace(/\(.*\)$/, '')}[]`;
}

export class PostgresTarget implements ExportTarget {
  readonly name: string;
  /** A redelivered row is skipped by its stored position: never a copy. */
  readonly duplicatesPossible = 0;
  private readonly pool: pg.Pool;
  private readonly schema: string;
  private readonly tableTemplate: string | undefined;
  private readonly createTable: boolean;
  private readonly ready = new Map<string, Promise<void>>();
  private closed = false;

  constructor(config: TargetConfig, _context: TargetContext) {
    const at = (key: string): (string | number)[] => ['exports', 'targets', config.name, key];
    for (const key of ['url', 'host', 'user', 'password', 'database', 'schema', 'table'] as const) {
      if (config[key] !== undefined && typeof config[key] !== 'string') throw configError(at(key), `expected text, got ${describe(config[key])}`);
    }
    if (config.port !== undefined && (!Number.isInteger(config.port) || (config.port as number) <= 0)) throw configError(at('port'), `expected a port number, got ${describe(config.port)}`);
    positiveInteger(config.poolSize, at('poolSize'));
    if (config.createTable !== undefined && typeof config.createTable !== 'boolean') throw configError(at('createTable'), `expected true or false, got ${describe(config.createTable)}`);
    if (config.url === undefined && config.host === undefined) throw configError(at('url'), 'give url (postgres://user@host:5432/db) or host, port, user, database');
    this.name = config.name;
    this.schema = (config.schema as string | undefined) ?? 'public';
    this.tableTemplate = config.table as string | undefined;
    this.createTable = (config.createTable as boolean | undefined) ?? true;
    this.pool = new pg.Pool({
      connectionString: config.url as string | undefined,
      host: config.host as string | undefined,
      port: config.port as number | undefined,
      user: config.user as string | undefined,
      password: config.password as string | undefined,
      database: config.database as string | undefined,
      max: (config.poolSize as number | undefined) ?? poolSizeDefault,
      connectionTimeoutMillis: connectTimeoutMs,
    });
    // An idle client's connection dropping is reported here; the next delivery reconnects.
    this.pool.on('error', () => {});
  }

  private qualified(table: string): string {
    return `${quoteIdentifier(this.schema)}.${quoteIdentifier(table)}`;
  }

  private tableOf(stream: string): string {
    return this.tableTemplate === undefined ? stream : this.tableTemplate.replace('{stream}', stream);
  }

  /** Creates the schema, positions table and the stream's table once per run (IF NOT EXISTS). */
  private prepare(key: string, ddl: string[]): Promise<void> {
    let ready = this.ready.get(key);
    if (ready === undefined) {
      ready = (async () => {
        const client = await this.pool.connect();
        try {
          for (const statement of ddl) await client.query(statement);
        } finally {
          client.release();
        }
      })();
      // A failed preparation is tried again by the next delivery.
      ready.catch(() => this.ready.delete(key));
      this.ready.set(key, ready);
    }
    return ready;
  }

  private baseDdl(): string[] {
    return [
      `CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(this.schema)}`,
      `CREATE TABLE IF NOT EXISTS ${this.qualified(positionsTableName)} (target text NOT NULL, stream text NOT NULL, partition integer NOT NULL, sequence bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (target, stream, partition))`,
      `CREATE TABLE IF NOT EXISTS ${this.qualified(daysTableName)} (job text NOT NULL, day date NOT NULL, rows bigint NOT NULL, exported_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, day))`,
    ];
  }

  private tableDdl(table: string, columns: readonly ColumnDef[], sequenced: boolean): string {
    const definitions = columns.map((column) => `${quoteIdentifier(column.name)} ${postgresType(column.type)}${column.nullable ? '' : ' NOT NULL'}`);
    if (sequenced) definitions.push('"_partition" integer NOT NULL', '"_sequence" bigint NOT NULL', 'PRIMARY KEY ("_partition", "_sequence")');
    return `CREATE TABLE IF NOT EXISTS ${this.qualified(table)} (${definitions.join(', ')})`;
  }

  async deliver(batch: ExportBatch): Promise<void> {
    if (this.closed) throw new Error(`postgresql target ${this.name} is closed`);
    const table = this.tableOf(batch.stream);
    await this.prepare(`stream:${batch.stream}`, [...this.baseDdl(), ...(this.createTable ? [this.tableDdl(table, batch.columns, true)] : [])]);
    await inTransaction(this.pool, async (client) => {
      await client.query(`INSERT INTO ${this.qualified(positionsTableName)} (target, stream, partition, sequence) VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING`, [this.name, batch.stream, batch.partition]);
      const position = await client.query<{ sequence: string }>(`SELECT sequence FROM ${this.qualified(positionsTableName)} WHERE target = $1 AND stream = $2 AND partition = $3 FOR UPDATE`, [this.name, batch.stream, batch.partition]);
      const stored = Number(position.rows[0].sequence);
      const skip = Math.max(0, Math.min(batch.rows.length, stored - batch.firstSequence + 1));
      const last = batch.firstSequence + batch.rows.length - 1;
      if (skip < batch.rows.length) {
        const sequences = new Array<number>(batch.rows.length - skip);
        for (let i = 0; i < sequences.length; i++) sequences[i] = batch.firstSequence + skip + i;
        const partitions = new Array<number>(sequences.length).fill(batch.partition);
        await this.insertRows(client, table, batch.columns, skip === 0 ? batch.rows : batch.rows.slice(skip), [
          { name: '_partition', type: 'integer[]', values: partitions },
          { name: '_sequence', type: 'bigint[]', values: sequences },
        ]);
        await client.query(`UPDATE ${this.qualified(positionsTableName)} SET sequence = $4, updated_at = now() WHERE target = $1 AND stream = $2 AND partition = $3`, [this.name, batch.stream, batch.partition, last]);
      }
    });
  }

  async position(stream: string, partition: number): Promise<number> {
    const exists = await this.pool.query<{ found: string | null }>('SELECT to_regclass($1) AS found', [`${quoteIdentifier(this.schema)}.${quoteIdentifier(positionsTableName)}`]);
    if (exists.rows[0].found === null) return 0;
    const result = await this.pool.query<{ sequence: string }>(`SELECT sequence FROM ${this.qualified(positionsTableName)} WHERE target = $1 AND stream = $2 AND partition = $3`, [this.name, stream, partition]);
    return result.rows.length === 0 ? 0 : Number(result.rows[0].sequence);
  }

  async writeDay(batch: DayBatch): Promise<'written' | 'already'> {
    const table = batch.table ?? batch.job;
    await this.prepare(`day:${table}`, [...this.baseDdl(), ...(this.createTable ? [this.tableDdl(table, batch.columns, false)] : [])]);
    return inTransaction(this.pool, async (client) => {
      // The claim inserts nothing when the day was exported before: committing it changes nothing.
      const claimed = await client.query(`INSERT INTO ${this.qualified(daysTableName)} (job, day, rows) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING job`, [batch.job, batch.day, batch.rows.length]);
      if (claimed.rowCount === 0) return 'already';
      if (batch.rows.length > 0) await this.insertRows(client, table, batch.columns, batch.rows, []);
      return 'written';
    });
  }

  /** One INSERT … SELECT FROM unnest(arrays): a column-major copy of the rows, one statement. */
  private async insertRows(client: pg.PoolClient, table: string, columns: readonly ColumnDef[], rows: readonly (readonly Value[])[], extra: { name: string; type: string; values: unknown[] }[]): Promise<void> {
    const arrays: unknown[][] = columns.map(() => new Array<unknown>(rows.length));
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r];
      for (let c = 0; c < columns.length; c++) {
        const value = row[c];
        arrays[c][r] = value !== null && columns[c].type.name === 'TIMESTAMP' ? new Date(value as number).toISOString() : value;
      }
    }
    const names = [...columns.map((column) => quoteIdentifier(column.name)), ...extra.map((column) => quoteIdentifier(column.name))];
    const casts = [...columns.map((column, c) => `$${c + 1}::${arrayType(column.type)}`), ...extra.map((column, e) => `$${columns.length + e + 1}::${column.type}`)];
    await client.query(`INSERT INTO ${this.qualified(table)} (${names.join(', ')}) SELECT * FROM unnest(${casts.join(', ')}) ON CONFLICT DO NOTHING`, [...arrays, ...extra.map((column) => column.values)]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}
