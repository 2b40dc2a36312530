/**
 * Helpers for the exporter tests: temporary data folders (removed after each test), the fixture
 * schema, and readers for what file targets wrote (JSON Lines, CSV) keyed by partition.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';

export const exportSchema = 'test/fixtures/exporters/ddl.sql';

const folders: string[] = [];

afterEach(() => {
  while (folders.length > 0) rmSync(folders.pop()!, { recursive: true, force: true });
});

export function temporaryFolder(prefix = 'sluice-export-'): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), prefix));
  folders.push(folder);
  return folder;
}

/** Every file under `root` (relative paths, sorted), skipping nothing: temp files show up too. */
export function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    // The entry types come with the listing: a temporary file renamed away while an export runs
    // would make a separate stat fail.
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else out.push(path.relative(root, full));
    }
  };
  walk(root);
  return out.sort();
}

export interface ExportedFile {
  partition: number;
  first: number;
  last: number;
  day: string;
  file: string;
}

/** Parses `…/dt=DAY/part-pPPPP-FIRST-LAST.ext` names. */
export function exportedFiles(root: string, extension: string): ExportedFile[] {
  return listFiles(root)
    .filter((file) => file.endsWith(`.${extension}`) && path.basename(file).startsWith('part-p'))
    .map((file) => {
      const match = /dt=(\d{4}-\d{2}-\d{2})\/part-p(\d+)-(\d+)-(\d+)\./.exec(file)!;
      return { day: match[1], partition: Number(match[2]), first: Number(match[3]), last: Number(match[4]), file: path.join(root, file) };
    });
}

/** JSON Lines rows of every exported file, per partition, in sequence order. */
export function jsonlRowsByPartition(root: string): Map<number, Record<string, unknown>[]> {
  const byPartition = new Map<number, { first: number; rows: Record<string, unknown>[] }[]>();
  for (const file of exportedFiles(root, 'jsonl')) {
    const rows = readFileSync(file.file, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    const list = byPartition.get(file.partition) ?? [];
    list.push({ first: file.first, rows });
    byPartition.set(file.partition, list);
  }
  const out = new Map<number, Record<string, unknown>[]>();
  for (const [partition, list] of byPartition) out.set(partition, list.sort((a, b) => a.first - b.first).flatMap((entry) => entry.rows));
  return out;
}
