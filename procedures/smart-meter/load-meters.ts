/**
 * LoadMeters(csv, first_line): upserts a chunk of meters.csv into the replicated meters table
 * (multi-partition: every partition's copy changes in the same transaction). Upsert, so loading
 * the same file again is harmless. A bad line aborts the chunk with its line and column.
 */
import { defineProcedure, sql } from '../api.ts';
import { multiRowUpsert, parseCsvBatch, upsertRowsMax, type CsvColumn } from './csv-batch.ts';

export const meterColumns: readonly CsvColumn[] = [
  { name: 'meter_id', kind: 'integer' },
  { name: 'customer_id', kind: 'integer' },
  { name: 'concentrator_id', kind: 'integer' },
  { name: 'tariff_id', kind: 'integer' },
  { name: 'region', kind: 'text' },
  { name: 'max_kwh_per_interval', kind: 'number' },
];

const upsertMany = sql(multiRowUpsert('meters', meterColumns, upsertRowsMax));
const upsertOne = sql(multiRowUpsert('meters', meterColumns, 1));

export default defineProcedure({
  statements: { upsertMany, upsertOne },
  parameters: ['VARCHAR', 'INTEGER'],
  run(ctx, csv: string, firstLine: number): number {
    let rows: (number | string)[][];
    try {
      rows = parseCsvBatch('meters.csv', csv, firstLine, meterColumns);
    } catch (error) {
      return ctx.abort((error as Error).message);
    }
    let i = 0;
    for (; i + upsertRowsMax <= rows.length; i += upsertRowsMax) ctx.execute(upsertMany, ...rows.slice(i, i + upsertRowsMax).flat());
    for (; i < rows.length; i++) ctx.execute(upsertOne, ...rows[i]);
    return rows.length;
  },
});
