/**
 * The end-of-run reconciliation of a smart-meter run: every accepted reading accounted for, and
 * alerts matching the injected faults. Compares three views of the same kWh:
 *
 *   exported  = SUM(kwh_delta) of readings_enriched (the region_load view keeps it in the
 *               database; the exported Parquet files, when given, must hold the same)
 *   kept      = SUM(day_kwh) of meter_state (days still open)
 *   billed    = what the billing target holds (closed days, billed) — equal to daily_usage
 *
 * exported = kept + billed, exported = the simulator's accepted kWh, and row counts and alert
 * counts equal the simulator's prediction. `problems` is empty when all hold.
 */
import type { SqlCaller } from './billing.ts';
import type { Expected } from './readings.ts';

/** Relative tolerance of kWh comparisons: float sums differ by order of addition, not more. */
export const kwhToleranceRelative = 1e-6;

export interface Reconciliation {
  problems: string[];
  exportedKwh: number;
  keptKwh: number;
  billedKwh: number;
  dailyUsageKwh: number;
  enrichedRows: number;
  estimatedRows: number;
  alerts: Record<string, number>;
}

function close(a: number, b: number): boolean {
  return Math.abs(a - b) <= kwhToleranceRelative * Math.max(1, Math.abs(a), Math.abs(b));
}

export interface ReconcileInputs {
  expected: Expected;
  /** Answer codes counted by the driver, to compare with the expected ones. */
  codes: Record<string, number>;
  billedKwh: number;
  /** kWh and rows found in exported files, when an exporter wrote them. */
  exportedFiles?: { kwh: number; rows: number };
}

export async function reconcile(db: SqlCaller, inputs: ReconcileInputs): Promise<Reconciliation> {
  const { expected } = inputs;
  const problems: string[] = [];
  const number = (value: unknown) => Number(value ?? 0);
  const [load] = await db.queryRows('SELECT SUM(kwh) AS kwh, SUM(readings) AS n FROM region_load');
  const [state] = await db.queryRows('SELECT SUM(day_kwh) AS kwh, SUM(gaps) AS gaps FROM meter_state');
  const [usage] = await db.queryRows('SELECT SUM(kwh) AS kwh, SUM(estimated_intervals) AS estimated FROM daily_usage');
  const [stateEstimated] = await db.queryRows('SELECT SUM(day_estimated) AS n FROM meter_state');
  const alertRows = await db.queryRows('SELECT kind, SUM(alerts) AS n FROM alert_counts GROUP BY kind');
  const alerts: Record<string, number> = {};
  for (const row of alertRows) alerts[String(row.kind)] = number(row.n);

  const result: Reconciliation = {
    problems,
    exportedKwh: number(load.kwh),
    keptKwh: number(state.kwh),
    billedKwh: inputs.billedKwh,
    dailyUsageKwh: number(usage.kwh),
    enrichedRows: number(load.n),
    estimatedRows: number(state.gaps),
    alerts,
  };
  const kwh = (value: number) => value.toFixed(3);
  if (!close(result.exportedKwh, result.keptKwh + result.billedKwh)) {
    problems.push(`exported ${kwh(result.exportedKwh)} kWh ≠ meter_state ${kwh(result.keptKwh)} + billed ${kwh(result.billedKwh)} kWh`);
  }
  if (!close(result.dailyUsageKwh, result.billedKwh)) problems.push(`billed ${kwh(result.billedKwh)} kWh ≠ closed days in daily_usage ${kwh(result.dailyUsageKwh)} kWh`);
  if (!close(result.exportedKwh, expected.acceptedKwh)) problems.push(`exported ${kwh(result.exportedKwh)} kWh ≠ accepted by the generator's count ${kwh(expected.acceptedKwh)} kWh`);
  if (inputs.exportedFiles) {
    if (!close(inputs.exportedFiles.kwh, result.exportedKwh)) problems.push(`exported files hold ${kwh(inputs.exportedFiles.kwh)} kWh, readings_enriched ${kwh(result.exportedKwh)} kWh`);
    if (inputs.exportedFiles.rows !== result.enrichedRows) problems.push(`exported files hold ${inputs.exportedFiles.rows} rows, readings_enriched ${result.enrichedRows}`);
  }
  if (result.enrichedRows !== expected.enrichedRows) problems.push(`readings_enriched has ${result.enrichedRows} rows, expected ${expected.enrichedRows}`);
  if (result.estimatedRows !== expected.estimatedRows) problems.push(`${result.estimatedRows} estimated intervals (meter_state.gaps), expected ${expected.estimatedRows}`);
  const estimatedByDay = number(usage.estimated) + number(stateEstimated.n);
  if (estimatedByDay !== result.estimatedRows) problems.push(`estimated intervals by day (${estimatedByDay}) ≠ meter_state.gaps (${result.estimatedRows})`);
  for (const [code, count] of Object.entries(expected.codes)) {
    if ((inputs.codes[code] ?? 0) !== count) problems.push(`${inputs.codes[code] ?? 0} readings answered ${code}, expected ${count}`);
  }
  for (const [kind, count] of Object.entries(expected.alerts)) {
    if ((alerts[kind] ?? 0) !== count) problems.push(`${alerts[kind] ?? 0} ${kind} alerts, expected ${count}`);
  }
  for (const kind of Object.keys(alerts)) {
    if (!(kind in expected.alerts)) problems.push(`${alerts[kind]} unexpected ${kind} alerts`);
  }
  return result;
}
