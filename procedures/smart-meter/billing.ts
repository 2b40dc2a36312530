/**
 * End-of-day billing: for one local day, the per-customer lines of BillingForDay written to the
 * billing target — the PostgreSQL table billing_daily when a connection string is configured,
 * otherwise a CSV file per day (`billing/dt=YYYY-MM-DD/billing.csv` plus `_SUCCESS`). Both
 * replace the day's lines as one atomic step (one PostgreSQL transaction; temp file + rename),
 * so running a day twice gives the same rows, and a day re-billed after late readings closed
 * more meters' days simply carries the new totals.
 */
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BillLine } from './billing-for-day.ts';
import { localDate } from './local-time.ts';
import type { ProcedureCaller } from './load.ts';

export interface BillingTarget {
  /** Where the lines go, for logs. */
  readonly description: string;
  /** Replaces the lines of `date` (YYYY-MM-DD) with `lines`. */
  writeDay(date: string, lines: readonly BillLine[]): Promise<void>;
  /** Total kWh over every billed line (the reconciliation's "billed"). */
  billedKwh(): Promise<number>;
  close(): Promise<void>;
}

/** A folder of per-day CSV files. */
export function fileBillingTarget(folder: string): BillingTarget {
  return {
    description: folder,
    async writeDay(date, lines) {
      const dayFolder = path.join(folder, `dt=${date}`);
      await mkdir(dayFolder, { recursive: true });
      const text = ['customer_id,day,kwh,cost,estimated_intervals', ...lines.map((line) => `${line.customer_id},${date},${line.kwh},${line.cost},${line.estimated_intervals}`)].join('\n');
      const file = path.join(dayFolder, 'billing.csv');
      await writeFile(`${file}.tmp`, `${text}\n`);
      await rename(`${file}.tmp`, file);
      await writeFile(path.join(dayFolder, '_SUCCESS'), '');
    },
    async billedKwh() {
      let total = 0;
      let days: string[];
      try {
        days = (await readdir(folder)).filter((name) => name.startsWith('dt='));
      } catch {
        return 0;
      }
      for (const day of days) {
        const lines = (await readFile(path.join(folder, day, 'billing.csv'), 'utf8')).split('\n').slice(1);
        for (const line of lines) if (line) total += Number(line.split(',')[2]);
      }
      return total;
    },
    async close() {},
  };
}

/** The PostgreSQL table `table` (created if missing), replaced day by day in one transaction. */
export async function postgresBillingTarget(connectionString: string, table = 'billing_daily'): Promise<BillingTarget> {
  if (!/^[a-z_][a-z0-9_.]*$/i.test(table)) throw new Error(`billing table name '${table}' is not a plain SQL identifier`);
  const { default: pg } = await import('pg');
  const { inTransaction } = await import('../../exporters/postgres-target.ts');
  const pool = new pg.Pool({ connectionString, max: 2 });
  await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (
    customer_id BIGINT NOT NULL, day DATE NOT NULL, kwh DOUBLE PRECISION NOT NULL, cost NUMERIC(18,6) NOT NULL,
    estimated_intervals INTEGER NOT NULL, PRIMARY KEY (customer_id, day))`);
  return {
    description: `PostgreSQL table ${table}`,
    async writeDay(date, lines) {
      await inTransaction(pool, async (client) => {
        await client.query(`DELETE FROM ${table} WHERE day = $1`, [date]);
        const batchLinesMax = 1000;
        for (let start = 0; start < lines.length; start += batchLinesMax) {
          const batch = lines.slice(start, start + batchLinesMax);
          const values: unknown[] = [];
          const tuples = batch.map((line, i) => {
            values.push(line.customer_id, date, line.kwh, line.cost, line.estimated_intervals);
            return `($${i * 5 + 1}, $${i * 5 + 2}, $${i * 5 + 3}, $${i * 5 + 4}, $${i * 5 + 5})`;
          });
          await client.query(`INSERT INTO ${table} (customer_id, day, kwh, cost, estimated_intervals) VALUES ${tuples.join(', ')}`, values);
        }
      });
    },
    async billedKwh() {
      const result = await pool.query<{ total: number | null }>(`SELECT SUM(kwh) AS total FROM ${table}`);
      return Number(result.rows[0].total ?? 0);
    },
    async close() {
      await pool.end();
    },
  };
}

/** Anything that answers SQL and procedures: the embedded Database or a client connection. */
export interface SqlCaller extends ProcedureCaller {
  queryRows(sql: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
}

/** Bills one day (the UTC instant of its local midnight, as daily_usage.day holds it). */
export async function billDay(db: SqlCaller, target: BillingTarget, day: number, timeZone: string): Promise<{ date: string; lines: number; kwh: number }> {
  const lines = (await db.call('BillingForDay', day)) as BillLine[];
  // The day's midnight, plus a little, is inside the day in any zone.
  const date = localDate(timeZone, day + 60_000);
  await target.writeDay(date, lines);
  return { date, lines: lines.length, kwh: lines.reduce((sum, line) => sum + line.kwh, 0) };
}

/** Bills every day that has closed meter-days before `beforeDay` (all of them when omitted). */
export async function billClosedDays(db: SqlCaller, target: BillingTarget, timeZone: string, beforeDay = Number.POSITIVE_INFINITY): Promise<{ date: string; lines: number; kwh: number }[]> {
  const days = await db.queryRows('SELECT DISTINCT day FROM daily_usage ORDER BY day');
  const billed = [];
  for (const row of days) {
    const day = Number(row.day);
    if (day < beforeDay) billed.push(await billDay(db, target, day, timeZone));
  }
  return billed;
}
