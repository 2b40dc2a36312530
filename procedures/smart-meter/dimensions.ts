/**
 * The smart-meter dimension data, generated from a seed: tariffs and meters spread over
 * concentrators and regions (default 100,000 meters). The same seed and count always give the
 * same rows, so a benchmark run, the demo and the tests can be repeated exactly. Written as CSV
 * (the form dimension data arrives in from billing systems) and loaded by load.ts.
 */
import { seededRandom } from '../../engine/random.ts';
import { meterColumns } from './load-meters.ts';
import { tariffColumns } from './load-tariffs.ts';

export const defaultMeterCount = 100_000;
export const defaultSeed = 20261201;
export const metersPerConcentrator = 200;
/** Meter ids start here, so they look like the 9-digit ids meters carry. */
export const meterIdBase = 100_000_000;
export const regions = ['north', 'south', 'east', 'west', 'central', 'coast', 'valley', 'highlands'] as const;
/** Every this many meters, one is a business meter (larger maximum, business tariff). */
const businessMeterEvery = 20;

export interface TariffRow {
  tariff_id: number;
  name: string;
  peak_price_per_kwh: number;
  offpeak_price_per_kwh: number;
  peak_start_hour: number;
  peak_end_hour: number;
}

export interface MeterRow {
  meter_id: number;
  customer_id: number;
  concentrator_id: number;
  tariff_id: number;
  region: string;
  max_kwh_per_interval: number;
}

export const tariffs: readonly TariffRow[] = [
  { tariff_id: 1, name: 'standard', peak_price_per_kwh: 0.34, offpeak_price_per_kwh: 0.22, peak_start_hour: 7, peak_end_hour: 23 },
  { tariff_id: 2, name: 'green', peak_price_per_kwh: 0.31, offpeak_price_per_kwh: 0.24, peak_start_hour: 8, peak_end_hour: 20 },
  { tariff_id: 3, name: 'night-saver', peak_price_per_kwh: 0.38, offpeak_price_per_kwh: 0.15, peak_start_hour: 7, peak_end_hour: 1 },
  { tariff_id: 4, name: 'business', peak_price_per_kwh: 0.29, offpeak_price_per_kwh: 0.19, peak_start_hour: 6, peak_end_hour: 22 },
];

/** `count` meters from `seed`: about 200 per concentrator, concentrators spread over the regions. */
export function generateMeters(count: number = defaultMeterCount, seed: number = defaultSeed): MeterRow[] {
  if (!Number.isInteger(count) || count < 1) throw new Error(`meter count must be a positive integer, got ${count}`);
  const random = seededRandom(seed >>> 0 || 1);
  const meters = new Array<MeterRow>(count);
  for (let i = 0; i < count; i++) {
    const concentrator = 1 + Math.floor(i / metersPerConcentrator);
    const business = i % businessMeterEvery === businessMeterEvery - 1;
    const pick = random();
    meters[i] = {
      meter_id: meterIdBase + i,
      // Most customers have one meter; about one in eleven has two (consecutive meters).
      customer_id: 1 + Math.floor((i * 10) / 11),
      concentrator_id: concentrator,
      tariff_id: business ? 4 : pick < 0.6 ? 1 : pick < 0.85 ? 2 : 3,
      region: regions[concentrator % regions.length],
      max_kwh_per_interval: business ? Math.round(100 + random() * 150) / 10 : Math.round(15 + random() * 25) / 10,
    };
  }
  return meters;
}

function csvOf<T extends object>(columns: readonly { name: string }[], rows: readonly T[]): string {
  const lines = [columns.map((column) => column.name).join(',')];
  for (const row of rows) lines.push(columns.map((column) => String((row as Record<string, unknown>)[column.name])).join(','));
  return `${lines.join('\n')}\n`;
}

export function tariffsCsv(rows: readonly TariffRow[] = tariffs): string {
  return csvOf(tariffColumns, rows);
}

export function metersCsv(rows: readonly MeterRow[]): string {
  return csvOf(meterColumns, rows);
}
