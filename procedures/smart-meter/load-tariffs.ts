/**
 * LoadTariffs(csv, first_line): upserts tariffs.csv into the replicated tariffs table
 * (multi-partition). Peak hours must be 0–23; a bad line aborts with its line and column.
 */
import { defineProcedure, sql } from '../api.ts';
import { multiRowUpsert, parseCsvBatch, type CsvColumn } from './csv-batch.ts';

export const tariffColumns: readonly CsvColumn[] = [
  { name: 'tariff_id', kind: 'integer' },
  { name: 'name', kind: 'text' },
  { name: 'peak_price_per_kwh', kind: 'number' },
  { name: 'offpeak_price_per_kwh', kind: 'number' },
  { name: 'peak_start_hour', kind: 'integer' },
  { name: 'peak_end_hour', kind: 'integer' },
];

const upsertOne = sql(multiRowUpsert('tariffs', tariffColumns, 1));

export default defineProcedure({
  statements: { upsertOne },
  parameters: ['VARCHAR', 'INTEGER'],
  run(ctx, csv: string, firstLine: number): number {
    let rows: (number | string)[][];
    try {
      rows = parseCsvBatch('tariffs.csv', csv, firstLine, tariffColumns);
    } catch (error) {
      return ctx.abort((error as Error).message);
    }
    rows.forEach((row, i) => {
      for (const c of [4, 5]) {
        const hour = row[c] as number;
        if (hour < 0 || hour > 23) ctx.abort(`tariffs.csv line ${firstLine + i}, column ${tariffColumns[c].name}: ${hour} is not an hour (0–23)`);
      }
      ctx.execute(upsertOne, ...row);
    });
    return rows.length;
  },
});
