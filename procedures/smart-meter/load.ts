/**
 * Loads the smart-meter dimension data: generates tariffs and meters from a seed, writes them as
 * CSV (tariffs.csv, meters.csv) to a folder, then loads the files in chunks through the
 * LoadTariffs / LoadMeters procedures (one multi-partition transaction per chunk) and sets the
 * time zone. Works against the embedded Database and a client connection alike.
 *
 * Not the general CSV loader (`sluice load`, the importers' job): this one knows its two files.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { defaultTimeZone } from './codes.ts';
import { defaultMeterCount, defaultSeed, generateMeters, metersCsv, tariffsCsv, type MeterRow } from './dimensions.ts';

/** Data lines per LoadMeters call: one multi-partition transaction each. */
export const loadChunkLinesMax = 5000;

/** What the loader needs from a database: the embedded Database and the client both fit. */
export interface ProcedureCaller {
  call(name: string, ...params: unknown[]): Promise<unknown>;
}

export interface LoadOptions {
  meters?: number;
  seed?: number;
  timeZone?: string;
  /** Where the CSV files are written. */
  folder: string;
  /** Called after each chunk with rows loaded so far and the total. */
  onProgress?: (loaded: number, total: number) => void;
}

export interface LoadedDimensions {
  meters: MeterRow[];
  tariffsFile: string;
  metersFile: string;
  timeZone: string;
}

/** Writes the CSV files for `meters` meters from `seed`; returns the generated rows. */
export async function writeDimensionCsv(folder: string, meterCount: number, seed: number): Promise<{ meters: MeterRow[]; tariffsFile: string; metersFile: string }> {
  await mkdir(folder, { recursive: true });
  const meters = generateMeters(meterCount, seed);
  const tariffsFile = path.join(folder, 'tariffs.csv');
  const metersFile = path.join(folder, 'meters.csv');
  await writeFile(tariffsFile, tariffsCsv());
  await writeFile(metersFile, metersCsv(meters));
  return { meters, tariffsFile, metersFile };
}

/** Loads one CSV file through `procedure` in chunks of `loadChunkLinesMax` lines. */
export async function loadCsvFile(db: ProcedureCaller, procedure: 'LoadTariffs' | 'LoadMeters', file: string, onChunk?: (rows: number) => void): Promise<number> {
  const lines = (await readFile(file, 'utf8')).split(/\r?\n/);
  const header = lines[0];
  let loaded = 0;
  for (let start = 1; start < lines.length; start += loadChunkLinesMax) {
    const chunk = lines.slice(start, start + loadChunkLinesMax).filter((line) => line.trim() !== '');
    if (chunk.length === 0) continue;
    // Line numbers as an editor shows them: the header is line 1.
    const rows = (await db.call(procedure, `${header}\n${chunk.join('\n')}`, start + 1)) as number;
    loaded += rows;
    onChunk?.(rows);
  }
  return loaded;
}

/** Generates, writes and loads tariffs and meters, and sets the time zone. */
export async function loadDimensions(db: ProcedureCaller, options: LoadOptions): Promise<LoadedDimensions> {
  const meterCount = options.meters ?? defaultMeterCount;
  const timeZone = options.timeZone ?? defaultTimeZone;
  await db.call('Configure', timeZone);
  const { meters, tariffsFile, metersFile } = await writeDimensionCsv(options.folder, meterCount, options.seed ?? defaultSeed);
  await loadCsvFile(db, 'LoadTariffs', tariffsFile);
  let loaded = 0;
  options.onProgress?.(0, meters.length);
  await loadCsvFile(db, 'LoadMeters', metersFile, (rows) => {
    loaded += rows;
    options.onProgress?.(loaded, meters.length);
  });
  return { meters, tariffsFile, metersFile, timeZone };
}
