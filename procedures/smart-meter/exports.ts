/**
 * Where the smart-meter streams go, as the deployment's `exports` section (docs/exporters.md):
 * readings_enriched (target `analytics`) as Parquet and meter_alerts (target `alerts`) as JSON
 * Lines, each in Hive-style day folders `dt=YYYY-MM-DD/` by the local day of the row's `ts`
 * (the interval start), which is also the day IngestReading books the interval to. Alerts can go
 * to an MQTT broker instead, one topic per meter (alerts/{region}/{meter_id}).
 */
import path from 'node:path';

/** How long a file target waits to fill a file before writing what it has: files appear live. */
export const fileLingerMsDefault = 2000;

/** The workload's alert topic: one MQTT topic per meter, grouped by region. */
export const alertTopicDefault = 'alerts/{region}/{meter_id}';

export interface AlertsToMqtt {
  url: string;
  /** Topic template over meter_alerts' columns; default alerts/{region}/{meter_id}. */
  topic?: string;
}

export function smartMeterExports(folder: string, timeZone: string, lingerMs = fileLingerMsDefault, alertsToMqtt?: AlertsToMqtt): { targets: Record<string, unknown>[] } {
  const alerts = alertsToMqtt
    ? { name: 'alerts', type: 'mqtt', url: alertsToMqtt.url, topic: alertsToMqtt.topic ?? alertTopicDefault }
    : { name: 'alerts', type: 'file', format: 'jsonl', path: path.join(folder, 'alerts'), dayColumn: 'ts', timeZone, lingerMs };
  return {
    targets: [{ name: 'analytics', type: 'file', format: 'parquet', path: path.join(folder, 'analytics'), dayColumn: 'ts', timeZone, lingerMs }, alerts],
  };
}

/** The folder of readings_enriched's Parquet files under the exports' folder. */
export function analyticsFolder(folder: string): string {
  return path.join(folder, 'analytics', 'readings_enriched');
}
