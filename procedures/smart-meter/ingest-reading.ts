/**
 * IngestReading(meter_id, ts, cumulative_kwh): one meter reading, single-partition on meter_id.
 * Implements rules 1–7 of the smart-meter workload: unknown meters and non-increasing readings
 * are answered without a state change; a lower cumulative value is a tamper/rollover alert; the
 * delta is checked against the meter's maximum, spread over missing intervals (estimated rows),
 * priced per interval by the tariff's local peak hours, added to the meter's day (closing the
 * day into daily_usage at local midnight) and emitted to readings_enriched.
 *
 * Rejections commit (they are answers with an alert, not failures). The first reading of a meter
 * only sets its baseline: a cumulative counter says nothing about the interval before it.
 * Time comes only from the reading's ts, so replay recomputes the same rows.
 */
import { defineProcedure, sql } from '../api.ts';
import {
  alertLongGap,
  alertSpike,
  alertTamperOrRollover,
  alertUnknownMeter,
  defaultTimeZone,
  ingestAccepted,
  ingestAcceptedWithAlert,
  ingestDuplicate,
  ingestRejected,
  ingestUnknownMeter,
  settingTimeZone,
  statusOk,
  type IngestCode,
} from './codes.ts';
import { intervalMs, isPeakHour, localDayStart, localHour } from './local-time.ts';

/** A gap longer than this (31 days of intervals) is booked as one row with an alert, not interpolated. */
export const interpolatedIntervalsMax = 31 * 96;

const getMeter = sql<{ customer_id: number; concentrator_id: number; tariff_id: number; region: string; max_kwh_per_interval: number }>(
  'SELECT customer_id, concentrator_id, tariff_id, region, max_kwh_per_interval FROM meters WHERE meter_id = ?',
);
const getState = sql<{ last_ts: number; last_kwh: number; day: number; day_kwh: number; day_cost: number; gaps: number; day_estimated: number }>(
  'SELECT last_ts, last_kwh, day, day_kwh, day_cost, gaps, day_estimated FROM meter_state WHERE meter_id = ?',
);
const getSetting = sql<{ value: string }>('SELECT value FROM settings WHERE name = ?');
const getTariff = sql<{ peak_price_per_kwh: number; offpeak_price_per_kwh: number; peak_start_hour: number; peak_end_hour: number }>(
  'SELECT peak_price_per_kwh, offpeak_price_per_kwh, peak_start_hour, peak_end_hour FROM tariffs WHERE tariff_id = ?',
);
const insertState = sql(
  `INSERT INTO meter_state (meter_id, last_ts, last_kwh, day, day_kwh, day_cost, status, gaps, day_estimated)
   VALUES (?, ?, ?, ?, 0, 0, 'ok', 0, 0)`,
);
const updateState = sql(
  `UPDATE meter_state SET last_ts = ?, last_kwh = ?, day = ?, day_kwh = ?, day_cost = ?, status = ?, gaps = ?, day_estimated = ?
   WHERE meter_id = ?`,
);
const insertAlert = sql('INSERT INTO meter_alerts (meter_id, concentrator_id, region, ts, kind, detail) VALUES (?, ?, ?, ?, ?, ?)');
const insertEnriched = sql(
  'INSERT INTO readings_enriched (meter_id, customer_id, region, ts, kwh_delta, estimated, price, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
);
const insertDailyUsage = sql('INSERT INTO daily_usage (meter_id, day, customer_id, kwh, cost, estimated_intervals) VALUES (?, ?, ?, ?, ?, ?)');

/** DECIMAL(…, 6) money: round the same way the column does, so sums agree with stored values. */
function money(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

export default defineProcedure({
  statements: { getMeter, getState, getSetting, getTariff, insertState, updateState, insertAlert, insertEnriched, insertDailyUsage },
  parameters: ['BIGINT', 'TIMESTAMP', 'FLOAT'],
  run(ctx, meterId: number, ts: number, cumulativeKwh: number): IngestCode {
    const meter = ctx.queryOne(getMeter, meterId);
    if (!meter) {
      ctx.execute(insertAlert, meterId, null, null, ts, alertUnknownMeter, `reading for meter ${meterId}, which is not in meters`);
      return ingestUnknownMeter;
    }
    const timeZone = ctx.queryOne(getSetting, settingTimeZone)?.value ?? defaultTimeZone;
    const state = ctx.queryOne(getState, meterId);
    if (!state) {
      ctx.execute(insertState, meterId, ts, cumulativeKwh, localDayStart(timeZone, ts - intervalMs));
      return ingestAccepted;
    }
    if (ts <= state.last_ts) return ingestDuplicate;
    if (cumulativeKwh < state.last_kwh) {
      ctx.execute(insertAlert, meterId, meter.concentrator_id, meter.region, ts, alertTamperOrRollover, `cumulative ${cumulativeKwh} kWh below the last accepted ${state.last_kwh} kWh`);
      return ingestRejected;
    }

    let alerted = false;
    const intervals = Math.max(1, Math.round((ts - state.last_ts) / intervalMs));
    const delta = cumulativeKwh - state.last_kwh;
    if (delta > meter.max_kwh_per_interval * intervals) {
      alerted = true;
      ctx.execute(insertAlert, meterId, meter.concentrator_id, meter.region, ts, alertSpike, `${delta.toFixed(3)} kWh in ${intervals} interval(s), above ${meter.max_kwh_per_interval} kWh per interval`);
    }
    let rows = intervals;
    if (intervals > interpolatedIntervalsMax) {
      alerted = true;
      rows = 1;
      ctx.execute(insertAlert, meterId, meter.concentrator_id, meter.region, ts, alertLongGap, `${intervals - 1} intervals missing; booked as one interval`);
    }

    const tariff = ctx.queryOne(getTariff, meter.tariff_id);
    if (!tariff) return ctx.abort(`meter ${meterId} has tariff ${meter.tariff_id}, which is not in tariffs`);
    let day = state.day;
    let dayKwh = state.day_kwh;
    let dayCost = state.day_cost;
    let dayEstimated = state.day_estimated;
    const share = delta / rows;
    let booked = 0;
    for (let k = 1; k <= rows; k++) {
      const estimated = k < rows;
      // The last row takes the remainder, so the rows sum to the delta exactly as measured.
      const kwh = estimated ? share : delta - booked;
      booked += kwh;
      const start = (estimated ? state.last_ts + k * intervalMs : ts) - intervalMs;
      const rowDay = localDayStart(timeZone, start);
      if (rowDay !== day) {
        ctx.execute(insertDailyUsage, meterId, day, meter.customer_id, dayKwh, money(dayCost), dayEstimated);
        day = rowDay;
        dayKwh = 0;
        dayCost = 0;
        dayEstimated = 0;
      }
      const price = isPeakHour(localHour(timeZone, start), tariff.peak_start_hour, tariff.peak_end_hour) ? tariff.peak_price_per_kwh : tariff.offpeak_price_per_kwh;
      const cost = money(kwh * price);
      dayKwh += kwh;
      dayCost += cost;
      if (estimated) dayEstimated++;
      ctx.execute(insertEnriched, meterId, meter.customer_id, meter.region, start, kwh, estimated, price, cost);
    }
    ctx.execute(updateState, ts, cumulativeKwh, day, dayKwh, money(dayCost), statusOk, state.gaps + rows - 1, dayEstimated, meterId);
    return alerted ? ingestAcceptedWithAlert : ingestAccepted;
  },
});
