/**
 * Configure(time_zone): sets the time zone in which IngestReading counts days (rollover at local
 * midnight) and tariff peak hours. Multi-partition (settings is replicated). A zone Intl does not
 * know is refused here, before any reading depends on it.
 */
import { defineProcedure, sql } from '../api.ts';
import { settingTimeZone } from './codes.ts';
import { isTimeZone } from './local-time.ts';

const upsertSetting = sql('UPSERT INTO settings (name, value) VALUES (?, ?)');

export default defineProcedure({
  statements: { upsertSetting },
  parameters: ['VARCHAR'],
  run(ctx, timeZone: string): string {
    if (!isTimeZone(timeZone)) ctx.abort(`Configure: unknown time zone '${timeZone}' (expected an IANA name such as Europe/Amsterdam or UTC)`);
    ctx.execute(upsertSetting, settingTimeZone, timeZone);
    return timeZone;
  },
});
