/**
 * The smart-meter application's procedures as one type, for typed clients (no code generation):
 *
 * ```ts
 * import { connect } from '../../client/index.ts';
 * import type { App } from './app.ts';
 * const client = await connect<App>('ws://127.0.0.1:21212');
 * const code = await client.call('IngestReading', 100000042, Date.parse('2026-03-28T23:00Z'), 1234.5);
 * ```
 */
import type billingForDay from './billing-for-day.ts';
import type configure from './configure.ts';
import type findSilentMeters from './find-silent-meters.ts';
import type ingestReading from './ingest-reading.ts';
import type loadMeters from './load-meters.ts';
import type loadTariffs from './load-tariffs.ts';

export type App = {
  IngestReading: typeof ingestReading;
  FindSilentMeters: typeof findSilentMeters;
  LoadTariffs: typeof loadTariffs;
  LoadMeters: typeof loadMeters;
  Configure: typeof configure;
  BillingForDay: typeof billingForDay;
};
