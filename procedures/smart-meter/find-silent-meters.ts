/**
 * FindSilentMeters(now): meters with no reading for two intervals, multi-partition, run on a
 * timer by whoever drives the clock (the load generator, the demo) with the simulated time.
 *
 * Silent meters are grouped by concentrator: when most (more than half) of a concentrator's meters
 * are silent, the concentrator is the likelier cause and one `concentrator_outage` alert names it;
 * otherwise each silent meter gets its own `meter_silent` alert. Alerted meters change status
 * (outage / silent) so the next run does not alert them again; their next reading sets them back
 * to ok. Returns the alerts raised.
 */
import { defineProcedure, sql } from '../api.ts';
import { alertConcentratorOutage, alertMeterSilent, statusOk, statusOutage, statusSilent } from './codes.ts';
import { intervalMs } from './local-time.ts';

/** A meter is silent after missing this many intervals. */
export const silentIntervals = 2;

const findSilent = sql<{ meter_id: number; concentrator_id: number; region: string; last_ts: number }>(`
  SELECT s.meter_id, m.concentrator_id, m.region, s.last_ts
  FROM meter_state s JOIN meters m ON m.meter_id = s.meter_id
  WHERE s.last_ts <= ? AND s.status = ?
  ORDER BY m.concentrator_id, s.meter_id`);
const countConcentratorMeters = sql<{ n: number }>('SELECT COUNT(*) AS n FROM meters WHERE concentrator_id = ?');
const setStatus = sql('UPDATE meter_state SET status = ? WHERE meter_id = ?');
const insertAlert = sql('INSERT INTO meter_alerts (meter_id, concentrator_id, region, ts, kind, detail) VALUES (?, ?, ?, ?, ?, ?)');

export interface SilentMetersResult {
  concentratorOutages: number;
  silentMeters: number;
  /** Meters covered by the outage alerts. */
  metersInOutages: number;
}

export default defineProcedure({
  statements: { findSilent, countConcentratorMeters, setStatus, insertAlert },
  parameters: ['TIMESTAMP'],
  run(ctx, now: number): SilentMetersResult {
    const result: SilentMetersResult = { concentratorOutages: 0, silentMeters: 0, metersInOutages: 0 };
    const silent = ctx.query(findSilent, now - silentIntervals * intervalMs, statusOk);
    for (let first = 0; first < silent.length; ) {
      const concentrator = silent[first].concentrator_id;
      let end = first;
      while (end < silent.length && silent[end].concentrator_id === concentrator) end++;
      const group = silent.slice(first, end);
      first = end;
      const total = ctx.queryOne(countConcentratorMeters, concentrator)?.n ?? 0;
      if (group.length * 2 > total) {
        const since = Math.max(...group.map((meter) => meter.last_ts));
        ctx.execute(insertAlert, group[0].meter_id, concentrator, group[0].region, now, alertConcentratorOutage,
          `${group.length} of ${total} meters silent, none heard since ${new Date(since).toISOString()}`);
        for (const meter of group) ctx.execute(setStatus, statusOutage, meter.meter_id);
        result.concentratorOutages++;
        result.metersInOutages += group.length;
      } else {
        for (const meter of group) {
          ctx.execute(insertAlert, meter.meter_id, concentrator, meter.region, now, alertMeterSilent, `last reading ${new Date(meter.last_ts).toISOString()}`);
          ctx.execute(setStatus, statusSilent, meter.meter_id);
        }
        result.silentMeters += group.length;
      }
    }
    return result;
  },
});
