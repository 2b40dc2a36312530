/**
 * Recovery at start: load the newest complete snapshot, then replay the command log after it, in
 * transaction order. The caller supplies the two engine-facing steps (load a snapshot into fresh
 * partitions; run one logged invocation again) so this file knows files and order, not tables.
 *
 * Stops, never skips: a damaged snapshot chunk or a damaged record in the middle of the log
 * throws (SNAPSHOT_CORRUPT, LOG_CORRUPT) naming the place. Only a torn last record is removed,
 * with a warning: it is the one write a crash can leave half done, and it was never acknowledged
 * as durable unless its flush completed, in which case it would not be torn.
 */
import path from 'node:path';
import type { CommandLog, InvocationRecord } from './command-log.ts';
import { DurabilityErrorCode, durabilityError } from './framing.ts';
import { completeSnapshots, readSnapshot, snapshotDamage, type SnapshotChunk, type SnapshotHeader, type SnapshotInfo } from './snapshot.ts';

/** How often (in replayed transactions) progress is reported during the log phase. */
export const recoveryProgressRecordsEvery = 1000;

export interface RecoveryProgress {
  phase: 'snapshot' | 'log' | 'done';
  rowsLoaded: number;
  rowCount: number;
  transactionsReplayed: number;
  transactionCount: number;
  seconds: number;
}

export interface RecoverySummary {
  /** The snapshot loaded, or undefined when there was none (replay from an empty database). */
  snapshot: { path: string; lastTransactionId: number; rows: number; catalogVersion: number } | undefined;
  transactionsReplayed: number;
  /** The last transaction in the recovered state: the database continues after it. */
  lastTransactionId: number;
  lastTimestamp: number;
  tornTailRemoved: boolean;
  seconds: number;
}

export interface RecoveryOptions {
  dataDir: string;
  /** The command log of `dataDir` (its segments are in logFolder), opened by the caller and kept afterwards. */
  log: CommandLog;
  /**
   * Builds fresh partitions for the snapshot's catalog (header.catalogDdl, catalogVersion) and
   * loads every chunk into them. Not called when there is no snapshot.
   */
  loadSnapshot: (header: SnapshotHeader, chunks: AsyncIterable<SnapshotChunk>, info: SnapshotInfo) => Promise<void>;
  /**
   * The first transaction id the log holds every record from (records before it were removed
   * after a snapshot). A snapshot older than that cannot be used: the transactions between it
   * and the log are gone. Default 0: the log is whole.
   */
  logStartTransactionId?: number;
  /**
   * Runs one logged invocation again, with its own transaction id and timestamp. A record whose
   * procedure aborted originally aborts again (determinism); the callback decides whether that
   * is an error. Anything it throws stops recovery, wrapped with the transaction id.
   */
  replay: (record: InvocationRecord) => void | Promise<void>;
  onProgress?: (progress: RecoveryProgress) => void;
  /** Torn tails and skipped incomplete snapshots. */
  onWarning?: (message: string) => void;
}

/** The data directory's folder for the command log's segments (and the lock and catalog stamp). */
export function logFolder(dataDir: string): string {
  return path.join(dataDir, 'log');
}


export async function recover(options: RecoveryOptions): Promise<RecoverySummary> {
  const started = performance.now();
  const seconds = (): number => (performance.now() - started) / 1000;
  const progress: RecoveryProgress = { phase: 'snapshot', rowsLoaded: 0, rowCount: 0, transactionsReplayed: 0, transactionCount: 0, seconds: 0 };
  const report = (): void => {
    progress.seconds = seconds();
    options.onProgress?.(progress);
  };

  const snapshot = await chooseSnapshot(options);
  let lastTransactionId = 0;
  let lastTimestamp = 0;
  let catalogVersion = 0;
  if (snapshot) {
    progress.rowCount = snapshot.manifest.rowCount;
    report();
    await options.loadSnapshot(
      snapshot.header,
      readSnapshot(snapshot, (read) => {
        progress.rowsLoaded = read.rows;
        report();
      }),
      snapshot,
    );
    lastTransactionId = snapshot.header.lastTransactionId;
    lastTimestamp = snapshot.header.lastTimestamp;
    catalogVersion = snapshot.header.catalogVersion;
  }

  progress.phase = 'log';
  const from = lastTransactionId + 1;
  progress.transactionCount = options.log.count(from);
  report();
  let tornTailRemoved = false;
  const records = options.log.read(from, {
    onTornTail: (message) => {
      tornTailRemoved = true;
      options.onWarning?.(message);
    },
  });
  for (const record of records) {
    checkOrder(record, lastTransactionId, catalogVersion, snapshot);
    try {
      await options.replay(record);
    } catch (error) {
      throw durabilityError(
        DurabilityErrorCode.LOG_CORRUPT,
        `replay of transaction ${record.transactionId} (${record.procedure}) failed: ${(error as Error)?.message ?? String(error)}`,
        { object: record.procedure },
      );
    }
    lastTransactionId = record.transactionId;
    lastTimestamp = record.timestamp;
    catalogVersion = record.catalogVersion;
    progress.transactionsReplayed++;
    if (progress.transactionsReplayed % recoveryProgressRecordsEvery === 0) report();
  }
  if (tornTailRemoved) progress.transactionCount = progress.transactionsReplayed;
  progress.phase = 'done';
  report();
  return {
    snapshot: snapshot && {
      path: snapshot.path,
      lastTransactionId: snapshot.header.lastTransactionId,
      rows: snapshot.manifest.rowCount,
      catalogVersion: snapshot.header.catalogVersion,
    },
    transactionsReplayed: progress.transactionsReplayed,
    lastTransactionId,
    lastTimestamp,
    tornTailRemoved,
    seconds: progress.seconds,
  };
}

/**
 * The newest complete snapshot whose every chunk passes its checksum and that the log continues
 * from. A damaged one is passed over with a warning for the previous complete one (the log is kept
 * from the older of the two newest snapshots for this). When the log was truncated and no usable
 * snapshot covers its start, recovery stops: starting empty would silently lose the data.
 */
async function chooseSnapshot(options: RecoveryOptions): Promise<SnapshotInfo | undefined> {
  const warn = (message: string): void => options.onWarning?.(message);
  const logStart = options.logStartTransactionId ?? 0;
  const candidates = await completeSnapshots(options.dataDir, (file, reason) => warn(`snapshot ${file} skipped: ${reason}`));
  const passedOver: string[] = [];
  for (const candidate of candidates) {
    const damage = await snapshotDamage(candidate);
    if (damage !== undefined) {
      warn(`snapshot ${candidate.path} is damaged (${damage}); falling back to the previous complete snapshot`);
      passedOver.push(`${path.basename(candidate.path)} (damaged: ${damage})`);
      continue;
    }
    if (candidate.header.lastTransactionId + 1 < logStart) {
      passedOver.push(`${path.basename(candidate.path)} (ends at transaction ${candidate.header.lastTransactionId}, the log starts at ${logStart})`);
      continue;
    }
    return candidate;
  }
  if (logStart > 1) {
    throw durabilityError(
      DurabilityErrorCode.SNAPSHOT_CORRUPT,
      `no usable snapshot in ${options.dataDir}: the command log starts at transaction ${logStart} (older records were removed after a snapshot), ` +
        `so recovery needs a complete snapshot of a state at or after transaction ${logStart - 1}; ` +
        (passedOver.length > 0 ? `passed over: ${passedOver.join('; ')}` : 'none was found') +
        '. The server does not start rather than start without that data',
      { object: options.dataDir },
    );
  }
  return undefined;
}

/**
 * Checks that a record may follow the state so far: later transaction, and a catalog no older
 * than the one in force (catalogs only move forward; an older one means the log and snapshot do
 * not belong together). These are data checks, not assertions: the files may come from elsewhere.
 */
function checkOrder(record: InvocationRecord, lastTransactionId: number, catalogVersion: number, snapshot: SnapshotInfo | undefined): void {
  if (record.transactionId <= lastTransactionId) {
    throw durabilityError(DurabilityErrorCode.LOG_CORRUPT, `command log record ${record.transactionId} does not follow transaction ${lastTransactionId}`);
  }
  if (record.catalogVersion < catalogVersion) {
    const source = snapshot && lastTransactionId === snapshot.header.lastTransactionId ? `snapshot ${snapshot.path}` : 'the record before it';
    throw durabilityError(
      DurabilityErrorCode.LOG_CORRUPT,
      `command log record ${record.transactionId} ran on catalog version ${record.catalogVersion}, older than version ${catalogVersion} of ${source}`,
    );
  }
}

/** One line for logs and the CLI: what recovery did. */
export function formatRecoverySummary(summary: RecoverySummary): string {
  const from = summary.snapshot
    ? `snapshot at transaction ${summary.snapshot.lastTransactionId} (${summary.snapshot.rows} rows, catalog version ${summary.snapshot.catalogVersion})`
    : 'an empty database (no complete snapshot)';
  const torn = summary.tornTailRemoved ? '; a torn last log record was removed' : '';
  return `recovered from ${from}, replayed ${summary.transactionsReplayed} transactions up to ${summary.lastTransactionId} in ${summary.seconds.toFixed(2)} s${torn}`;
}
