/**
 * The smart-meter application's vocabulary shared by its procedures, the load generator, the
 * demo and the tests: IngestReading's return codes, alert kinds and meter statuses.
 */

export const ingestAccepted = 'ACCEPTED';
export const ingestAcceptedWithAlert = 'ACCEPTED_WITH_ALERT';
export const ingestDuplicate = 'DUPLICATE';
export const ingestRejected = 'REJECTED';
export const ingestUnknownMeter = 'UNKNOWN_METER';

export type IngestCode =
  | typeof ingestAccepted
  | typeof ingestAcceptedWithAlert
  | typeof ingestDuplicate
  | typeof ingestRejected
  | typeof ingestUnknownMeter;

export const ingestCodes: readonly IngestCode[] = [ingestAccepted, ingestAcceptedWithAlert, ingestDuplicate, ingestRejected, ingestUnknownMeter];

export const alertUnknownMeter = 'unknown_meter';
export const alertTamperOrRollover = 'tamper_or_rollover';
export const alertSpike = 'spike';
export const alertLongGap = 'long_gap';
export const alertConcentratorOutage = 'concentrator_outage';
export const alertMeterSilent = 'meter_silent';

export const alertKinds = [alertUnknownMeter, alertTamperOrRollover, alertSpike, alertLongGap, alertConcentratorOutage, alertMeterSilent] as const;
export type AlertKind = (typeof alertKinds)[number];

/** meter_state.status: reporting, alerted as silent on its own, or silent with its concentrator. */
export const statusOk = 'ok';
export const statusSilent = 'silent';
export const statusOutage = 'outage';

/** The settings row naming the time zone that days and peak hours are counted in. */
export const settingTimeZone = 'time_zone';
export const defaultTimeZone = 'Europe/Amsterdam';
