/**
 * The server's data directory: what lives where, who may use it, and which schema and procedure
 * code its command log belongs to.
 *
 *   <data>/log/segment-….mdb      the command log's segments (command-log.ts)
 *   <data>/log/server.lock        the running server's pid: a second server is refused
 *   <data>/log/catalog.json       the schema (DDL), procedure code digest and partition count the
 *                                 log's records were written under (the "catalog stamp")
 *   <data>/log/log-start.json     the first transaction id the log still holds every record from
 *   <data>/code/<epoch>/…         the schema and procedure files of each live-updated version the
 *                                 log or a snapshot may still need (code-versions.ts)
 *   <data>/snapshots/…            snapshots (snapshot.ts)
 *   <data>/export/…               export buffers (the exporters' own)
 *
 * Small JSON files are written atomically (temporary file, fsync, rename, fsync of the folder),
 * so a crash leaves the old or the new content, never half of one.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ErrorCode, SluiceError } from '../errors.ts';
import { relativeImport } from '../execution/procedures.ts';
import { DurabilityErrorCode, durabilityError } from './framing.ts';
import { logFolder } from './recovery.ts';

export interface CatalogStamp {
  readonly ddl: string;
  /** sha256 over the procedure files and the helpers they import from the procedures folder. */
  readonly proceduresVersion: string;
  /** Per file (relative to the procedures folder): its sha256, to name what changed. */
  readonly procedureFiles: Record<string, string>;
  readonly partitions: number;
  /** Goes up by one whenever the stamp changes; logged as every record's catalogVersion. */
  readonly epoch: number;
  /**
   * After live updates (docs/live-update.md): the version the server was started with, which the
   * updates were applied to. A restart with that same schema and code continues with the data
   * directory's latest version; absent when the stamp is itself the version started with.
   */
  readonly base?: Omit<CatalogStamp, 'base'>;
}

const lockHolders = new Set<string>();

/**
 * Takes the data directory for this process, or throws naming the server that holds it. The lock
 * is a pid file: after a crash (kill -9) the pid is gone and the next server takes the lock over
 * at once, where a time-based lock would make every restart wait out its staleness period.
 * Returns the function that releases it.
 */
export function lockDataDir(dataDir: string): () => void {
  const folder = logFolder(dataDir);
  mkdirSync(folder, { recursive: true });
  const file = path.join(folder, 'server.lock');
  const key = realpathSync(folder);
  if (lockHolders.has(key)) {
    throw durabilityError(DurabilityErrorCode.DURABILITY_FAILED, `data directory ${dataDir} is already in use by a server in this process; two servers must not share a data directory`, { object: dataDir });
  }
  const content = JSON.stringify({ pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, content);
      fsyncSync(fd);
      closeSync(fd);
      lockHolders.add(key);
      // A crash between writing a small JSON file and renaming it leaves its temporary copy.
      for (const name of readdirSync(folder)) if (/\.tmp-\d+$/.test(name)) rmSync(path.join(folder, name), { force: true });
      return () => {
        lockHolders.delete(key);
        rmSync(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = readLock(file);
    if (holder !== undefined && holder.pid !== process.pid && processAlive(holder.pid)) {
      throw durabilityError(
        DurabilityErrorCode.DURABILITY_FAILED,
        `data directory ${dataDir} is in use by another server (pid ${holder.pid} on ${holder.host ?? '?'}, started ${holder.startedAt ?? '?'}); ` +
          `stop it first, or remove ${file} if that process is not a Sluice server`,
        { object: dataDir },
      );
    }
    // The holder is gone (a crash): its lock is stale.
    rmSync(file, { force: true });
  }
  throw durabilityError(DurabilityErrorCode.DURABILITY_FAILED, `could not take the lock ${file}: another server is starting on ${dataDir}`, { object: dataDir });
}

function readLock(file: string): { pid: number; host?: string; startedAt?: string } | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown; host?: string; startedAt?: string };
    return typeof parsed.pid === 'number' ? { pid: parsed.pid, host: parsed.host, startedAt: parsed.startedAt } : undefined;
  } catch {
    // Empty or half written (a crash while taking it): nobody holds it.
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readCatalogStamp(dataDir: string): CatalogStamp | undefined {
  return readJson(path.join(logFolder(dataDir), 'catalog.json')) as CatalogStamp | undefined;
}

export function writeCatalogStamp(dataDir: string, stamp: CatalogStamp): void {
  writeJsonAtomically(path.join(logFolder(dataDir), 'catalog.json'), stamp);
}

/** The first transaction id the log holds every record from; 0 when nothing was ever removed. */
export function readLogStart(dataDir: string): number {
  const value = readJson(path.join(logFolder(dataDir), 'log-start.json')) as { transactionId?: number } | undefined;
  return value?.transactionId ?? 0;
}

export function writeLogStart(dataDir: string, transactionId: number): void {
  writeJsonAtomically(path.join(logFolder(dataDir), 'log-start.json'), { transactionId });
}

export function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${file} is not valid JSON (${(error as Error).message}); the data directory is damaged`, { object: file });
  }
}

export function writeJsonAtomically(file: string, value: unknown): void {
  writeFileAtomically(file, JSON.stringify(value, null, 1));
}

/** Writes `text` to `file` so that a crash leaves the old or the new content (see the header). */
export function writeFileAtomically(file: string, text: string): void {
  const temporary = `${file}.tmp-${process.pid}`;
  const fd = openSync(temporary, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, file);
  const folder = openSync(path.dirname(file), 'r');
  try {
    fsyncSync(folder);
  } finally {
    closeSync(folder);
  }
}

/**
 * The version of the procedure code: a digest of every procedure file and, transitively, the
 * helpers it imports from inside `root` (the same files the determinism check scans).
 */
export function proceduresDigest(files: readonly string[], root: string): { version: string; files: Record<string, string> } {
  const realRoot = realpathSync(root);
  const seen = new Map<string, string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    const text = readFileSync(file);
    seen.set(file, createHash('sha256').update(text).digest('hex'));
    for (const match of text.toString('utf8').matchAll(relativeImport)) {
      let target: string;
      try {
        target = realpathSync(path.resolve(path.dirname(file), match[1] ?? match[2]));
      } catch {
        continue;
      }
      if (target.startsWith(realRoot + path.sep)) visit(target);
    }
  };
  for (const file of files) visit(file);
  const entries = [...seen].map(([file, digest]) => [path.relative(realRoot, file), digest] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const hash = createHash('sha256');
  for (const [file, digest] of entries) hash.update(`${file}\u0000${digest}\n`);
  return { version: hash.digest('hex'), files: Object.fromEntries(entries) };
}

/** What differs between the stamp the log was written under and the running code, in words. */
export function describeStampChange(stored: CatalogStamp, current: Omit<CatalogStamp, 'epoch'>): string[] {
  const changes: string[] = [];
  if (stored.ddl !== current.ddl) changes.push('the schema (DDL)');
  if (stored.partitions !== current.partitions) changes.push(`the partition count (${stored.partitions} → ${current.partitions})`);
  if (stored.proceduresVersion !== current.proceduresVersion) {
    const names = new Set([...Object.keys(stored.procedureFiles ?? {}), ...Object.keys(current.procedureFiles)]);
    const changed = [...names].filter((name) => stored.procedureFiles?.[name] !== current.procedureFiles[name]);
    changes.push(`procedure code (${changed.length > 0 ? changed.join(', ') : 'files'})`);
  }
  return changes;
}
