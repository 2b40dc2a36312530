/**
 * BillingForDay(day): one local day's bill lines, per customer: kWh, cost and estimated intervals,
 * summed over the customer's meters from daily_usage (closed days). Multi-partition read; the
 * billing job (billing.ts) writes the lines to PostgreSQL or a file, replacing the day's lines,
 * so running it twice gives the same rows.
 */
import { defineProcedure, sql } from '../api.ts';

export interface BillLine {
  customer_id: number;
  day: number;
  kwh: number;
  cost: number;
  estimated_intervals: number;
}

const linesOfDay = sql<BillLine>(`
  SELECT customer_id, day, SUM(kwh) AS kwh, SUM(cost) AS cost, SUM(estimated_intervals) AS estimated_intervals
  FROM daily_usage WHERE day = ?
  GROUP BY customer_id, day
  ORDER BY customer_id`);

export default defineProcedure({
  statements: { linesOfDay },
  parameters: ['TIMESTAMP'],
  run(ctx, day: number): BillLine[] {
    return ctx.query(linesOfDay, day);
  },
});
