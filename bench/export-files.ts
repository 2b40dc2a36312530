/**
 * Reading back what the export pipeline wrote, for end-of-run reconciliations: waiting until
 * every export target has acknowledged every row (@Statistics' `exports` section), and totalling
 * one numeric column over a folder of Parquet files (hyparquet, column by column, no row objects).
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from 'hyparquet';
import type { Client } from '../client/index.ts';

/** How often and how long to wait for the exports to drain. */
const drainPollMs = 100;
export const drainTimeoutMsDefault = 120_000;

interface ExportStatistics {
  target: string;
  rowsPending: number;
  lastError: string | null;
}

/** Resolves when no target has rows pending; rejects after `timeoutMs` naming what is left. */
export async function waitForExports(client: Client<any>, timeoutMs = drainTimeoutMsDefault): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const statistics = (await client.call('@Statistics')) as { exports?: ExportStatistics[] };
    const pending = (statistics.exports ?? []).filter((target) => target.rowsPending > 0);
    if (pending.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`exports did not drain in ${timeoutMs / 1000} s: ${pending.map((target) => `${target.target} ${target.rowsPending} rows pending${target.lastError ? ` (${target.lastError})` : ''}`).join(', ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, drainPollMs));
  }
}

export interface ColumnTotals {
  files: number;
  rows: number;
  sum: number;
}

/** Every `.parquet` file under `root` (none when it does not exist). */
async function parquetFiles(root: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(root, { recursive: true });
  } catch {
    return [];
  }
  return names.filter((name) => name.endsWith('.parquet') && !path.basename(name).startsWith('.tmp')).sort().map((name) => path.join(root, name));
}

/** Row count and sum of `column` over every Parquet file under `root`. */
export async function parquetColumnTotals(root: string, column: string): Promise<ColumnTotals> {
  const totals: ColumnTotals = { files: 0, rows: 0, sum: 0 };
  for (const file of await parquetFiles(root)) {
    const buffer = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buffer);
    totals.files++;
    totals.rows += Number(metadata.num_rows);
    let seen = 0;
    await parquetRead({
      file: buffer,
      metadata,
      columns: [column],
      onChunk: (chunk) => {
        for (const value of chunk.columnData) totals.sum += Number(value);
        seen += chunk.columnData.length;
      },
    });
    if (seen !== Number(metadata.num_rows)) throw new Error(`${file}: read ${seen} values of ${column}, the file says ${metadata.num_rows} rows`);
  }
  return totals;
}
