/**
 * Durability wired into the server: the command log behind the router's InvocationLog hook,
 * recovery before the server listens, snapshots (scheduled, on demand through @SnapshotSave,
 * and at clean shutdown), and the data directory's lock. docs/durability.md has the design.
 *
 * Order of a start: take the data directory's lock → open the log → (the server opens the
 * router and its partitions) → `recover`: newest usable snapshot into the partitions, then the
 * log after it replayed through the router with the original transaction ids and timestamps →
 * the server listens. In sync mode the router holds each answer until `onDurable` says the log
 * is on disk up to its transaction (one callback per commit group).
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { applyDdl, emptyCatalog } from '../catalog/ddl.ts';
import type { Catalog, TableDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import { Op } from '../execution/messages.ts';
import type { InvocationLog, ResultSink, Router } from '../execution/router.ts';
import { updateApplicationProcedure } from '../../procedures/system.ts';
import { Status } from '../server/protocol.ts';
import type { Value } from '../types.ts';
import { codeRoot, hasCodeVersion, readCodeVersion, readProcedureFolder, removeCodeVersionsBefore, writeCodeVersion, type CodeVersion } from './code-versions.ts';
import { CommandLog, type DurabilityMode } from './command-log.ts';
import { DurabilityErrorCode, durabilityError } from './framing.ts';
import { describeStampChange, lockDataDir, proceduresDigest, readCatalogStamp, readLogStart, writeCatalogStamp, writeLogStart, type CatalogStamp } from './data-dir.ts';
import { formatRecoverySummary, logFolder, recover, type RecoveryProgress, type RecoverySummary } from './recovery.ts';
import { completeSnapshots, removeSnapshotsBefore, SnapshotWriter, type SnapshotInfo } from './snapshot.ts';

export type { DurabilityMode };

/** The `durability` section of a deployment file. */
export interface DurabilitySettings {
  mode: DurabilityMode;
  /** sync: the group-commit window. Default 1 ms. */
  groupCommitMs?: number;
  /** async: how often the log is written. Default 100 ms. */
  asyncFlushMs?: number;
  /** Minutes between scheduled snapshots; 0 turns the schedule off. Default 10. */
  snapshotIntervalMinutes?: number;
  /** Take a snapshot at clean shutdown (so the next start replays nothing). Default true. */
  snapshotOnShutdown?: boolean;
  /** A new command-log segment starts past this many bytes. Default 64 MiB (command-log.ts). */
  segmentBytesMax?: number;
  /** … or past this many records. Default 1,000,000. */
  segmentRecordsMax?: number;
  /** Tests only: the log's write of record N fails like a full disk (command-log.ts). */
  failWriteAtRecord?: number;
  /** Tests only: the Nth snapshot chunk written since start fails like a full disk (once). */
  failSnapshotWriteAtChunk?: number;
}

/** A partition's stream and the sequence number its next row gets, as a snapshot records them. */
export interface StreamPosition {
  partition: number;
  stream: string;
  nextSequence: number;
}

/**
 * What keeps committed stream rows outside the snapshot: the export buffer
 * (exporters/pipeline.ts). Recovery from a snapshot regenerates only rows numbered at or after
 * its stream sequences, so a snapshot counts only once the holder has every row before them.
 */
export interface StreamRowsHolder {
  /** Resolves once every row below each `nextSequence` is safe without the command log; rejects saying which is not. */
  holdThrough(streams: readonly StreamPosition[]): Promise<void>;
}

export const snapshotIntervalMinutesDefault = 10;
/** Replayed records queued at the partitions before recovery waits for them to drain. */
export const replayWindowRecords = 20_000;

/** What @SnapshotSave and `sluice snapshot` report. */
export interface SnapshotResult {
  path: string;
  /** The snapshot is the state after this transaction. */
  transactionId: number;
  rows: number;
  seconds: number;
  /** The longest barrier (row-reference copy) of any partition: the pause a snapshot causes. */
  barrierMsMax: number;
  /** The longest single slice (copy + encode of ≤ 4096 rows) of any partition. */
  sliceMsMax: number;
}

interface RunningSnapshot {
  readonly snapshotId: number;
  readonly writer: SnapshotWriter;
  readonly started: number;
  readonly streams: StreamPosition[];
  captured: number;
  rows: number;
  barrierMsMax: number;
  sliceMsMax: number;
  failure: string | undefined;
  readonly done: () => void;
}

export interface DurabilityOpenOptions {
  dataDir: string;
  settings: DurabilitySettings;
  logger?: Logger;
}

export class ServerDurability implements InvocationLog {
  readonly dataDir: string;
  readonly mode: DurabilityMode;
  readonly holdsAnswers: boolean;
  readonly log: CommandLog;
  private readonly settings: DurabilitySettings;
  private readonly logger: Logger | undefined;
  private readonly unlock: () => void;
  private router: Router | undefined;
  private epoch = 0;
  private proceduresVersion = '';
  /**
   * Set for the catch-up start only: recover with the stored code of the version the log was
   * written under, although the code given to the server is another (see LogOfOtherCode).
   */
  replayWithStoredCode = false;
  /** The version the server was started with (live updates are applied on top of it). */
  private base: Omit<CatalogStamp, 'base'> | undefined;
  /** The last append's write: a live update's answer waits for its record. */
  private lastWrite: Promise<void> = Promise.resolve();
  private snapshotSequence = 0;
  private running: RunningSnapshot | undefined;
  private inProgress: Promise<SnapshotResult> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private snapshotChunksWritten = 0;
  /** Set by the server when exports are on: snapshots wait for it before they count. */
  streamRows: StreamRowsHolder | undefined;

  private constructor(options: DurabilityOpenOptions, log: CommandLog, unlock: () => void) {
    this.dataDir = options.dataDir;
    this.settings = options.settings;
    this.mode = options.settings.mode;
    this.holdsAnswers = this.mode === 'sync';
    this.logger = options.logger;
    this.log = log;
    this.unlock = unlock;
  }

  /** Takes the data directory's lock and opens its command log. */
  static async open(options: DurabilityOpenOptions): Promise<ServerDurability> {
    const mode = options.settings.mode;
    if (mode !== 'sync' && mode !== 'async' && mode !== 'off') {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, `durability mode must be sync, async or off, got ${JSON.stringify(mode)}`, { object: 'durability.mode' });
    }
    const interval = options.settings.snapshotIntervalMinutes;
    if (interval !== undefined && !(typeof interval === 'number' && interval >= 0)) {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, `durability.snapshotIntervalMinutes must be a number ≥ 0, got ${JSON.stringify(interval)}`, { object: 'durability.snapshotIntervalMinutes' });
    }
    const dataDir = path.resolve(options.dataDir);
    const unlock = lockDataDir(dataDir);
    let durability: ServerDurability | undefined;
    try {
      const log = await CommandLog.open({
        folder: logFolder(dataDir),
        mode,
        groupCommitMs: options.settings.groupCommitMs,
        asyncFlushMs: options.settings.asyncFlushMs,
        failWriteAtRecord: options.settings.failWriteAtRecord,
        segmentBytesMax: options.settings.segmentBytesMax,
        segmentRecordsMax: options.settings.segmentRecordsMax,
        onDurable: (transactionId) => durability?.router?.releaseDurable(transactionId),
        onFailure: (error) => durability?.onLogFailure(error),
      });
      durability = new ServerDurability({ ...options, dataDir }, log, unlock);
      return durability;
    } catch (error) {
      unlock();
      throw error;
    }
  }

  /** InvocationLog: the router calls it for every transaction that may write, in order. */
  append(transactionId: number, timestamp: number, partition: number, procedure: string, params: readonly Value[]): void {
    const write = this.log.appendInvocation(transactionId, timestamp, partition, procedure, this.epoch, params);
    // Appends of one group share its promise: one rejection handler per group, not per call.
    if (write === this.lastWrite) return;
    this.lastWrite = write;
    write.catch(() => undefined);
  }

  /** InvocationLog: records from here on (the switch's own first) carry the new version. */
  versionSwitched(epoch: number): void {
    this.epoch = epoch;
  }

  /**
   * After a live update's switch: records the running version in the catalog stamp (keeping the
   * version the server was started with as its base) and resolves once the switch's log record
   * is durable per the mode, so the update is acknowledged like any transaction.
   */
  async versionAdopted(router: Router): Promise<void> {
    const current = stampOf(router);
    this.proceduresVersion = current.proceduresVersion;
    writeCatalogStamp(this.dataDir, { ...current, epoch: router.epoch, base: this.base });
    await this.lastWrite;
  }

  private onLogFailure(error: SluiceError): void {
    this.logger?.fatal({ err: error, dataDir: this.dataDir }, 'the command log failed to write: the server stops acknowledging transactions; restart it once the disk is fixed');
    this.router?.failDurability(error);
  }

  /**
   * Recovery, before the server listens: loads the newest usable snapshot into the router's
   * partitions and replays the log after it. Throws (the server does not start) on damage in the
   * middle of the log, a log written by other code, or a snapshot of an incompatible schema.
   */
  async recover(router: Router, onProgress?: (progress: RecoveryProgress) => void): Promise<RecoverySummary> {
    this.router = router;
    router.onSnapshotMessage = (partition, message) => this.onSnapshotMessage(partition, message);
    router.setSystemHandler('@SnapshotSave', () => this.snapshot());
    const current = stampOf(router);
    this.proceduresVersion = current.proceduresVersion;
    const stored = readCatalogStamp(this.dataDir);
    // After live updates the data directory holds every version its log and snapshots need
    // (<data>/code). A start with the code the server was started with before them (the same
    // command line) continues with those versions: recovery switches to each as it goes.
    // `replayWithStoredCode`: the catch-up start (startServer) runs the stored code whatever the
    // stamp says; its files may differ from the originals only where imports were rewritten.
    const continuing = stored !== undefined && (this.replayWithStoredCode || (stored.base !== undefined && describeStampChange(stored.base, current).length === 0));
    const changes = stored && !continuing ? describeStampChange(stored, current) : [];
    this.base = stored === undefined || changes.length > 0 ? undefined : (stored.base ?? stored);
    this.epoch = continuing ? (stored.base ?? stored).epoch : (stored?.epoch ?? 1);
    router.epoch = this.epoch;
    let replayed = 0;
    let aborted = 0;
    const sink: ResultSink = {
      deliver(_token, status) {
        if (status !== Status.SUCCESS) aborted++;
      },
    };
    // Recovery wraps what replay throws as log damage; this one is not damage (startServer).
    let otherCode: LogOfOtherCode | undefined;
    const summary = await recover({
      dataDir: this.dataDir,
      log: this.log,
      logStartTransactionId: readLogStart(this.dataDir),
      loadSnapshot: async (header, chunks, info) => {
        if (header.partitionCount !== router.partitionCount) {
          throw new SluiceError(
            ErrorCode.INVALID_SCHEMA,
            `data directory ${this.dataDir} holds ${header.partitionCount} partitions (snapshot ${path.basename(info.path)}); start the server with --partitions ${header.partitionCount}`,
            { object: 'partitions' },
          );
        }
        if (changes.length === 0 && header.catalogVersion !== router.epoch && hasCodeVersion(codeRoot(this.dataDir), header.catalogVersion)) {
          // Taken under a live-updated version: restored under that version's own code.
          await this.switchToStored(router, header.catalogVersion, { transactionId: header.lastTransactionId, timestamp: header.lastTimestamp }, `snapshot ${path.basename(info.path)}`);
        }
        await this.loadSnapshot(router, header.catalogDdl, chunks, info);
      },
      replay: async (record) => {
        if (replayed === 0 && changes.length > 0) {
          const started = readCodeVersion(codeRoot(this.dataDir), (stored!.base ?? stored!).epoch);
          if (started !== undefined) throw (otherCode = new LogOfOtherCode(started, changes, this.log.count(record.transactionId)));
          throw new SluiceError(
            ErrorCode.INVALID_SCHEMA,
            `data directory ${this.dataDir}: the command log holds ${this.log.count(record.transactionId)} transactions from ${record.transactionId} on, written before ${changes.join(' and ')} changed; ` +
              'replaying them with other code would not rebuild the same state. Start with the schema and procedures they were written with, stop the server cleanly ' +
              '(which takes a snapshot and empties the log), then change them',
            { object: this.dataDir },
          );
        }
        if (record.procedure === updateApplicationProcedure) {
          await this.switchToStored(router, record.parameters[0] as number, record, `the live update logged as transaction ${record.transactionId}`);
          replayed++;
          return;
        }
        router.replay(record.transactionId, record.timestamp, record.partition, record.procedure, record.parameters, sink);
        if (++replayed % replayWindowRecords === 0) await router.whenIdle();
      },
      onProgress,
      onWarning: (message) => this.logger?.warn({ dataDir: this.dataDir }, message),
    }).catch((error: unknown) => {
      throw otherCode ?? error;
    });
    await router.whenIdle();
    // A barrier through every partition: the snapshot's rows are loaded and every replay ran.
    await router.call('@Statistics');
    router.resumeAfter(Math.max(summary.lastTransactionId, this.log.lastTransactionId), summary.lastTimestamp);
    this.logger?.info(
      { dataDir: this.dataDir, mode: this.mode, transactionsReplayed: summary.transactionsReplayed, replayAborted: aborted, seconds: Number(summary.seconds.toFixed(3)), snapshot: summary.snapshot?.path, tornTailRemoved: summary.tornTailRemoved },
      formatRecoverySummary(summary),
    );
    if (stored === undefined || changes.length > 0) {
      this.epoch = (stored?.epoch ?? 0) + 1;
      router.epoch = this.epoch;
      writeCatalogStamp(this.dataDir, { ...current, epoch: this.epoch });
      this.base = { ...current, epoch: this.epoch };
      // Kept so that a crash followed by a start with other code can still replay this version's
      // log records with the code that wrote them (startServer's catch-up start).
      const root = codeRoot(this.dataDir);
      if (!hasCodeVersion(root, this.epoch)) writeCodeVersion(root, this.epoch, router.ddl, readProcedureFolder(router.proceduresDir), router.proceduresDir);
      if (stored !== undefined) {
        // New code from here on: a snapshot now, so no log record of the old code is ever replayed.
        this.logger?.info({ changes }, `the ${changes.join(' and ')} changed since the last run; taking a snapshot under the new one`);
        await this.snapshot({ dropOlder: true });
      }
    } else if (router.epoch !== stored.epoch) {
      // A crash between a live update's log record and its stamp, or after a stamp whose record
      // never reached the disk: the stamp follows the version recovery ended on.
      await this.versionAdopted(router);
    }
    const minutes = this.settings.snapshotIntervalMinutes ?? snapshotIntervalMinutesDefault;
    if (minutes > 0) {
      this.timer = setInterval(() => {
        this.snapshot().catch((error: unknown) => this.logger?.error({ err: error }, 'scheduled snapshot failed'));
      }, minutes * 60_000);
      this.timer.unref();
    }
    return summary;
  }

  /** Switches the router to stored version `epoch` at `at` (recovery: not logged again). */
  private async switchToStored(router: Router, epoch: number, at: { transactionId: number; timestamp: number }, what: string): Promise<void> {
    const version = readCodeVersion(codeRoot(this.dataDir), epoch);
    if (version === undefined) {
      throw durabilityError(DurabilityErrorCode.LOG_CORRUPT, `${what} ran under version ${epoch} of the application, but ${path.join(codeRoot(this.dataDir), String(epoch))} is missing or incomplete`, { object: String(epoch) });
    }
    router.switchVersion(await router.loadVersion(epoch, version.ddl, version.proceduresDir), at);
    this.proceduresVersion = stampOf(router).proceduresVersion;
  }

  private async loadSnapshot(router: Router, snapshotDdl: string, chunks: AsyncIterable<{ partition: number; table: string; rows: Value[][]; rowIds: number[] }>, info: SnapshotInfo): Promise<void> {
    const schemaChanged = snapshotDdl !== router.ddl;
    let catalog: Catalog = router.catalog;
    if (schemaChanged) {
      catalog = applyDdl(snapshotDdl, emptyCatalog);
      checkCompatible(catalog, router.catalog, info);
      router.broadcastOp(() => [Op.LOAD_CATALOG, snapshotDdl]);
    }
    for await (const chunk of chunks) {
      const def = catalog.tables.get(chunk.table);
      if (def === undefined) throw new SluiceError(ErrorCode.SNAPSHOT_CORRUPT, `snapshot ${info.path} holds rows of table ${chunk.table}, which its own schema does not declare`, { object: chunk.table });
      const entry = [Op.LOAD, chunk.table, chunk.rows, chunk.rowIds];
      if (def.partitioned) router.sendOp(chunk.partition, entry);
      else for (let p = 0; p < router.partitionCount; p++) router.sendOp(p, entry);
    }
    for (const stream of info.manifest.streams ?? []) {
      if (catalog.tables.get(stream.stream)?.kind === 'stream') router.sendOp(stream.partition, [Op.RESUME_STREAM, stream.stream, stream.nextSequence]);
    }
    if (schemaChanged) router.broadcastOp(() => [Op.LOAD_DONE]);
  }

  /**
   * Takes a snapshot now (coalescing with one already running): a SNAPSHOT entry goes into every
   * partition's queue at this point of the global order; each partition captures its tables with
   * copy-on-write while transactions go on; the file counts once written and verified. Then older
   * snapshots and the log they cover are removed, keeping one previous snapshot to fall back to.
   */
  snapshot(options: { dropOlder?: boolean } = {}): Promise<SnapshotResult> {
    if (this.closed || this.router === undefined) return Promise.reject(new SluiceError(ErrorCode.CLOSED, 'snapshots are not available: the server is not running'));
    this.inProgress ??= this.takeSnapshot(this.router, options.dropOlder === true).finally(() => {
      this.inProgress = undefined;
    });
    return this.inProgress;
  }

  private async takeSnapshot(router: Router, dropOlder: boolean): Promise<SnapshotResult> {
    const { transactionId, timestamp } = router.position;
    const writer = SnapshotWriter.start(this.dataDir, {
      catalogDdl: router.ddl,
      catalogVersion: this.epoch,
      proceduresVersion: this.proceduresVersion,
      lastTransactionId: transactionId,
      lastTimestamp: timestamp,
      partitionCount: router.partitionCount,
      createdAt: Date.now(),
    });
    const snapshotId = ++this.snapshotSequence;
    let done!: () => void;
    const captured = new Promise<void>((resolve) => (done = resolve));
    const running: RunningSnapshot = { snapshotId, writer, started: performance.now(), streams: [], captured: 0, rows: 0, barrierMsMax: 0, sliceMsMax: 0, failure: undefined, done };
    this.running = running;
    router.broadcastOp(() => [Op.SNAPSHOT, snapshotId]);
    // A partition that dies mid-capture never reports: the router's failure ends the wait.
    const unsubscribe = router.onBroken((error) => {
      running.failure ??= error.message;
      running.done();
    });
    try {
      await captured;
      if (running.failure !== undefined) throw new SluiceError(ErrorCode.DURABILITY_FAILED, `snapshot failed: ${running.failure}`);
      try {
        await this.streamRows?.holdThrough(running.streams);
      } catch (error) {
        throw new SluiceError(
          ErrorCode.DURABILITY_FAILED,
          `snapshot after transaction ${transactionId} not completed: ${(error as Error).message}; the command log is kept, so nothing is lost, and the next snapshot tries again`,
          { object: writer.path },
        );
      }
      const info = await writer.complete({ streams: running.streams });
      await this.retain(info, dropOlder);
      const result: SnapshotResult = {
        path: info.path,
        transactionId,
        rows: info.manifest.rowCount,
        seconds: Number(((performance.now() - running.started) / 1000).toFixed(3)),
        barrierMsMax: Number(running.barrierMsMax.toFixed(3)),
        sliceMsMax: Number(running.sliceMsMax.toFixed(3)),
      };
      this.logger?.info(result, `snapshot of ${result.rows} rows after transaction ${transactionId} written`);
      return result;
    } catch (error) {
      await writer.abort();
      throw error;
    } finally {
      unsubscribe();
      this.running = undefined;
    }
  }

  private onSnapshotMessage(partition: number, message: unknown[]): void {
    const running = this.running;
    if (running === undefined || message[1] !== running.snapshotId) return;
    switch (message[0]) {
      case 'chunk': {
        const injected = ++this.snapshotChunksWritten === this.settings.failSnapshotWriteAtChunk;
        const write = injected
          ? Promise.reject(Object.assign(new Error('ENOSPC: no space left on device (injected by failSnapshotWriteAtChunk)'), { code: 'ENOSPC' }))
          : running.writer.writeFrame(partition, message[2] as string, message[3] as number, message[4] as Uint8Array);
        write.catch((error: unknown) => {
          running.failure ??= `writing a chunk of partition ${partition} to ${running.writer.path} failed: ${(error as Error).message}`;
        });
        return;
      }
      case 'captured': {
        for (const [stream, nextSequence] of message[2] as [string, number][]) running.streams.push({ partition, stream, nextSequence });
        running.rows += message[3] as number;
        running.barrierMsMax = Math.max(running.barrierMsMax, message[4] as number);
        running.sliceMsMax = Math.max(running.sliceMsMax, message[5] as number);
        break;
      }
      case 'failed':
        running.failure ??= message[2] as string;
        break;
    }
    if (++running.captured === this.router!.partitionCount) running.done();
  }

  /**
   * Keeps the new snapshot and the one before it (the fallback when the newest turns out
   * damaged), removes older ones, and the log records the older kept snapshot already holds.
   * `dropOlder` keeps only the new one (after a change of code: older ones must not be replayed).
   */
  private async retain(newest: SnapshotInfo, dropOlder: boolean): Promise<void> {
    const complete = await completeSnapshots(this.dataDir);
    const previous = dropOlder ? undefined : complete.find((info) => info.path !== newest.path);
    const keep = previous ?? newest;
    await removeSnapshotsBefore(this.dataDir, keep);
    // Without a previous snapshot the log stays whole: it is the fallback if `newest` is damaged.
    if (previous === undefined && !dropOlder) return;
    const from = keep.header.lastTransactionId + 1;
    // Recorded before the records go: recovery then knows that older snapshots cannot be used.
    if (from > readLogStart(this.dataDir)) writeLogStart(this.dataDir, from);
    const removed = await this.log.truncateBefore(from);
    if (removed.segmentsRemoved > 0) this.logger?.debug({ ...removed, before: from }, 'command log segments removed');
    // Recovery replays only records after the kept snapshot, which ran under its version or later
    // ones. After a change of code at start every older version is past.
    const versionsRemoved = removeCodeVersionsBefore(codeRoot(this.dataDir), dropOlder ? this.epoch : keep.header.catalogVersion);
    if (versionsRemoved.length > 0) this.logger?.debug({ versionsRemoved }, 'code versions no snapshot or log record needs removed');
  }

  /** Clean shutdown, first half (the router still runs): the shutdown snapshot. */
  async beforeClose(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.router === undefined || this.closed) return;
    await this.inProgress?.catch(() => undefined);
    if (this.settings.snapshotOnShutdown === false || this.log.failed !== undefined) return;
    try {
      await this.snapshot();
    } catch (error) {
      this.logger?.error({ err: error }, 'the shutdown snapshot failed; the next start replays the log instead');
    }
  }

  /** Clean shutdown, second half (after the router stopped): flush and close the log, release the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    try {
      await this.log.close();
    } finally {
      this.unlock();
    }
  }
}

/** The running version's stamp: its schema, a digest of its procedure code, the partition count. */
function stampOf(router: Router): Omit<CatalogStamp, 'epoch' | 'base'> {
  const digest = proceduresDigest(router.procedureFiles, router.proceduresDir);
  return { ddl: router.ddl, proceduresVersion: digest.version, procedureFiles: digest.files, partitions: router.partitionCount };
}

/**
 * A snapshot written under another schema can be restored under the current one only if every
 * table and view it holds still exists with the same columns, partitioning and (for views) the
 * same definition; new tables, views, indexes and procedures are fine (new views are computed
 * from the restored rows).
 */
function checkCompatible(snapshot: Catalog, current: Catalog, info: SnapshotInfo): void {
  const where = `data directory snapshot ${path.basename(info.path)}`;
  const problem = (message: string, object: string): never => {
    throw new SluiceError(ErrorCode.INVALID_SCHEMA, `the schema is incompatible with the ${where}: ${message}; start with the schema the data was written with, or move the data directory away`, { object });
  };
  const rows = new Map<string, number>();
  for (const entry of info.manifest.tables) rows.set(entry.table, (rows.get(entry.table) ?? 0) + entry.rows);
  for (const def of snapshot.tables.values()) {
    if (def.kind === 'stream') continue;
    const now = current.tables.get(def.name);
    if (now === undefined) {
      if ((rows.get(def.name) ?? 0) === 0) continue;
      return problem(`${def.kind} ${def.name} holds ${rows.get(def.name)} rows but the schema no longer declares it`, def.name);
    }
    if (now.kind !== def.kind) problem(`${def.name} was a ${def.kind} and is now a ${now.kind}`, def.name);
    const columns = describeColumns(def);
    const nowColumns = describeColumns(now);
    if (columns !== nowColumns) problem(`${def.kind} ${def.name} had columns (${columns}), the schema now says (${nowColumns})`, def.name);
    if (def.partitionColumn !== now.partitionColumn || def.partitioned !== now.partitioned) problem(`${def.kind} ${def.name} is partitioned differently`, def.name);
    if (JSON.stringify(def.view) !== JSON.stringify(now.view)) problem(`view ${def.name} has a different definition`, def.name);
  }
}

function describeColumns(def: TableDef): string {
  return def.columns.map((column) => `${column.name} ${JSON.stringify(column.type)}${column.nullable ? '' : ' NOT NULL'}`).join(', ');
}

/**
 * Recovery found log records written under other code than the server is started with, and the
 * data directory holds that code (`version`, the version the server was last started with). The
 * start becomes two: a catch-up start with `version` that replays the log and takes a snapshot,
 * then the start asked for, from that snapshot (startServer).
 */
export class LogOfOtherCode extends SluiceError {
  readonly version: CodeVersion;
  readonly changes: readonly string[];

  constructor(version: CodeVersion, changes: readonly string[], records: number) {
    super(ErrorCode.INVALID_SCHEMA, `the command log holds ${records} transactions written before ${changes.join(' and ')} changed`, { object: String(version.epoch) });
    this.version = version;
    this.changes = changes;
  }
}
