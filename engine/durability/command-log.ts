/**
 * The command log: every transaction's invocation (procedure, parameters, transaction id,
 * timestamp, partition or -1 for multi-partition, catalog version), in execution order, keyed by
 * transaction id. Recovery loads the newest snapshot and replays the records after it; the
 * determinism rule (design.md) makes replay reach the same state.
 *
 * The log is a folder of segments, each its own LMDB file `segment-<first transaction id>.mdb`:
 * records go to the newest segment until it passes `segmentBytesMax` or `segmentRecordsMax`, then
 * a new one starts. An LMDB file never shrinks, so space comes back by deleting whole segments
 * once a complete snapshot covers them (`truncateBefore`). Each segment opens with a link record
 * (key 0) naming the segment before it and that segment's last transaction id, so a segment
 * missing in the middle, or one cut short, is detected instead of silently skipped.
 *
 * Modes and what `append` promises (docs/durability.md has the loss windows):
 * - sync: resolves after the LMDB transaction holding the record is committed and fsynced.
 *   Records are group-committed: every append of the same event-loop turn (or, with
 *   `groupCommitMs` > 0, within that window of the group's first) goes into one LMDB write
 *   transaction and shares its one fsync.
 * - async: resolves at once; the pending records are written as one transaction every
 *   `asyncFlushMs`, and LMDB flushes each commit in the background.
 * - off: resolves at once and writes nothing (the ids are still checked to grow).
 *
 * Each group commit is one LMDB value under its last transaction id (group-frame.ts, format 2):
 * the group's records, each with its own length, CRC32 and msgpack payload, so damage is still
 * found record by record. Values of format 1 (one framing.ts frame per record, older versions)
 * are read too. Records are checked when read back (and, with VERIFY, the whole group just before
 * the write); `read` tells a torn last record (truncated, with a warning)
 * from damage in the middle (stops with LOG_CORRUPT naming the segment, transaction id and
 * position). Only the last record of the last segment can be a torn tail: damage in an older
 * segment is damage in the middle.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { assert, VERIFY } from '../assert.ts';
import type { Value } from '../types.ts';
import { DurabilityErrorCode, decodeFrame, decodePayload, durabilityError, durableLmdbOptions, encodeFrame, frameDamage } from './framing.ts';
import { GroupEncoder, groupFrameVersion, groupRecordSpans } from './group-frame.ts';
import type { SluiceError } from '../errors.ts';

export type DurabilityMode = 'sync' | 'async' | 'off';

/** One transaction's invocation: what replay needs to run it again exactly. */
export interface InvocationRecord {
  readonly transactionId: number;
  readonly timestamp: number;
  /** The partition a single-partition transaction ran on, or -1 for multi-partition. */
  readonly partition: number;
  readonly procedure: string;
  /** Canonical parameter values (engine/types.ts); binaries come back as Buffers. */
  readonly parameters: readonly Value[];
  /** Version of the catalog (schema and procedure set) the transaction ran against. */
  readonly catalogVersion: number;
}

export interface CommandLogOptions {
  /** The log's folder: its segment files (and each one's LMDB lock file `<segment>-lock`). */
  folder: string;
  mode: DurabilityMode;
  /**
   * Window in which sync appends share one LMDB transaction and one fsync. Default 0: what one
   * turn of the event loop sequenced (under load a turn carries hundreds of calls). Measured on
   * Voter, 2 cores: 0 against 1 ms gave 238k against 209k votes/s unthrottled and p50 1.6–1.8
   * against 2.2–2.3 ms with 200 calls in flight, since Node runs a 1 ms timer 1–2 ms later.
   */
  groupCommitMs?: number;
  /** How often async-mode records are written. Default 100 ms. */
  asyncFlushMs?: number;
  /** A group is written at once when it reaches this many records. Default groupRecordsMax. */
  groupRecordsMax?: number;
  /**
   * Told once per group, with the group's last transaction id, when the group is durable per the
   * mode (sync: flushed to disk; async: committed). The server releases held answers with it.
   */
  onDurable?: (transactionId: number) => void;
  /** Told once when a write fails; the log takes no more records after that. */
  onFailure?: (error: SluiceError) => void;
  /**
   * Tests only: the write of the group holding record number N (counting from 1 since open)
   * fails as a full disk would (ENOSPC), to show that nothing unwritten is acknowledged.
   */
  failWriteAtRecord?: number;
  /** A new segment starts once the current one holds this many frame bytes. Default segmentBytesMaxDefault. */
  segmentBytesMax?: number;
  /** A new segment starts once the current one holds this many records. Default segmentRecordsMaxDefault. */
  segmentRecordsMax?: number;
}

export const groupCommitMsDefault = 0;
export const asyncFlushMsDefault = 100;
/** Bounds the memory and the LMDB transaction of one group; a full group is written at once. */
export const groupRecordsMax = 8192;
/**
 * Segment size: small enough that deleting covered segments returns space within a snapshot
 * interval or two, large enough that rolling (opening an LMDB file, ~1 ms) is rare: 64 MiB is
 * about a million Vote-sized records, a few seconds of the log's top append rate.
 */
export const segmentBytesMaxDefault = 64 * 1024 * 1024;
export const segmentRecordsMaxDefault = 1_000_000;
/** Format of a segment's link record (key 0): [segmentLinkVersion, previous first id, previous last id]. */
export const segmentLinkVersion = 1;
/** The file name of a segment whose first record may be `first` (or later). */
export function segmentFileName(first: number): string {
  return `segment-${String(first).padStart(16, '0')}.mdb`;
}
const segmentFilePattern = /^segment-(\d{16})\.mdb$/;
/** The single-file log of earlier versions: adopted as segment 0 (no link record) at open. */
const legacyFileName = 'command-log.mdb';

export interface ReadOptions {
  /** Called once if the last record is torn and has been removed. */
  onTornTail?: (message: string) => void;
}

export interface CommandLogStats {
  /** Records handed to LMDB (not counting mode off). */
  records: number;
  /** Group commits: LMDB write transactions issued by append. */
  groups: number;
  bytes: number;
  /** Segments started since open (the one opened or created at open not counted). */
  segmentsStarted: number;
}

/** What truncateBefore removed. */
export interface TruncateResult {
  segmentsRemoved: number;
  /** Size on disk of the removed segment files. */
  bytesRemoved: number;
}

/** One segment file; `first` is from its name: every key in it is ≥ first and < the next one's first. */
interface Segment {
  readonly first: number;
  readonly file: string;
}

/** The segment being appended to. */
interface OpenSegment extends Segment {
  readonly store: RootDatabase<Buffer, number>;
  records: number;
  bytes: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

const resolved: Promise<void> = Promise.resolve();

export class CommandLog {
  readonly folder: string;
  readonly mode: DurabilityMode;
  readonly groupCommitMs: number;
  readonly asyncFlushMs: number;
  readonly groupRecordsMax: number;
  readonly segmentBytesMax: number;
  readonly segmentRecordsMax: number;
  readonly stats: CommandLogStats = { records: 0, groups: 0, bytes: 0, segmentsStarted: 0 };
  private current: OpenSegment;
  /** Segments before the current one, oldest first; none of them is open except while retiring. */
  private older: Segment[];
  /** Older segments still flushing their last groups before their file is closed. */
  private readonly retiring = new Map<string, Promise<void>>();
  /** The group being built: every record appended since the last write, encoded (group-frame.ts). */
  private readonly group = new GroupEncoder();
  private groupFirstId = 0;
  private groupLastId = 0;
  /** Settles when the current (unwritten) group is durable per the mode; sync mode only. */
  private groupDone: Deferred | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Instead of `timer` when the window is 0. */
  private immediate: NodeJS.Immediate | undefined;
  private readonly commitGroupBound = (): void => this.commitGroup();
  /** Set while the pending group waits for the full segment to flush before a new one starts. */
  private rolling: Promise<void> | undefined;
  private lastAppendedId: number;
  /** The last transaction id handed to LMDB: the link record of the next segment names it. */
  private lastWrittenId: number;
  /** The last write issued; groups commit in order, so it settling means all earlier have. */
  private lastWrite: Promise<void> = resolved;
  private failure: SluiceError | undefined;
  private closed = false;
  private readonly onDurable: ((transactionId: number) => void) | undefined;
  private readonly onFailure: ((error: SluiceError) => void) | undefined;
  private readonly failWriteAtRecord: number;

  private constructor(options: CommandLogOptions, older: Segment[], current: OpenSegment) {
    this.folder = options.folder;
    this.mode = options.mode;
    this.groupCommitMs = options.groupCommitMs ?? groupCommitMsDefault;
    this.asyncFlushMs = options.asyncFlushMs ?? asyncFlushMsDefault;
    this.groupRecordsMax = options.groupRecordsMax ?? groupRecordsMax;
    this.segmentBytesMax = options.segmentBytesMax ?? segmentBytesMaxDefault;
    this.segmentRecordsMax = options.segmentRecordsMax ?? segmentRecordsMaxDefault;
    this.older = older;
    this.current = current;
    this.lastAppendedId = lastRecordKey(current.store) ?? current.first - 1;
    this.lastWrittenId = this.lastAppendedId;
    this.onDurable = options.onDurable;
    this.onFailure = options.onFailure;
    this.failWriteAtRecord = options.failWriteAtRecord ?? 0;
  }

  /**
   * Opens (or creates) the log in `folder`: the newest segment becomes the one appended to (a
   * trailing segment without records, left by a crash between creating it and its first commit,
   * is removed first); an empty folder gets its first segment. The LMDB options of every
   * segment are all chosen here and in openSegmentStore, not inherited:
   * - noSync false: commits are fsynced; without it nothing is ever promised durable.
   * - overlappingSync true: LMDB commits (makes visible) first and fsyncs after, outside the
   *   write lock, so group N+1 is committed while group N is being synced. Durability is then
   *   the commit's *flush* promise, not the commit: sync appends wait for it (see commitGroup).
   *   After a process crash LMDB keeps commits that reached the OS page cache; after an OS crash
   *   or power loss it falls back to the last flushed commit (which covers every sync ack).
   *   The flag is stored in the file, so every mode opens with it (off and async included):
   *   LMDB refuses to reopen a file with a different setting.
   * - separateFlushed true: a write's promise carries `.flushed`, resolved when *that* commit is
   *   on disk; `db.flushed` would also wait for later commits and is not needed.
   * - eventTurnBatching true: every put issued in one event turn lands in one LMDB transaction,
   *   which is how a group becomes one transaction; commitDelay 0 starts it right away (the
   *   group window is ours, `groupCommitMs`, not LMDB's).
   * - safeRestore false: after a process crash (same boot) the latest commit is used; it is in
   *   the page cache and so as durable as the process's view of it.
   * - encoding 'binary': values are our own frames (CRC + msgpack), so the checksum covers the
   *   exact bytes on disk; keyEncoding 'ordered-binary': numeric keys sort numerically.
   * - compression false, cache false: records are small and read once, at recovery.
   * - noMetaSync false, useWritemap false: LMDB's safe defaults, chosen explicitly.
   */
  static async open(options: CommandLogOptions): Promise<CommandLog> {
    assert(options.mode === 'sync' || options.mode === 'async' || options.mode === 'off', 'a known durability mode');
    const groupCommitMs = options.groupCommitMs ?? groupCommitMsDefault;
    const asyncFlushMs = options.asyncFlushMs ?? asyncFlushMsDefault;
    if (!(groupCommitMs >= 0 && groupCommitMs <= 1000) || !(asyncFlushMs >= 1 && asyncFlushMs <= 60_000)) {
      throw durabilityError(
        DurabilityErrorCode.DURABILITY_FAILED,
        `groupCommitMs must be 0 to 1000 and asyncFlushMs 1 to 60000, got ${groupCommitMs} and ${asyncFlushMs}`,
      );
    }
    const bytesMax = options.segmentBytesMax ?? segmentBytesMaxDefault;
    const recordsMax = options.segmentRecordsMax ?? segmentRecordsMaxDefault;
    if (!(bytesMax >= 1) || !(recordsMax >= 1)) {
      throw durabilityError(DurabilityErrorCode.DURABILITY_FAILED, `segmentBytesMax and segmentRecordsMax must be at least 1, got ${bytesMax} and ${recordsMax}`);
    }
    mkdirSync(options.folder, { recursive: true });
    adoptLegacyLog(options.folder);
    const segments = listSegments(options.folder);
    for (;;) {
      const last = segments.at(-1);
      if (last === undefined) {
        // A new log: its first segment has no predecessor (link 0, 0).
        const store = openSegmentStore(path.join(options.folder, segmentFileName(1)));
        store.putSync(0, encodeFrame([segmentLinkVersion, 0, 0]));
        return new CommandLog(options, [], { first: 1, file: path.join(options.folder, segmentFileName(1)), store, records: 0, bytes: 0 });
      }
      const store = openSegmentStore(last.file);
      if (lastRecordKey(store) === undefined && segments.length > 1) {
        await store.close();
        removeSegmentFiles(last.file);
        segments.pop();
        continue;
      }
      const records = countRecords(store, 1);
      return new CommandLog(options, segments.slice(0, -1), { ...last, store, records, bytes: statSync(last.file).size });
    }
  }

  /** The LMDB store of the segment appended to: for recovery tooling and tests, not for writing. */
  get store(): RootDatabase<Buffer, number> {
    return this.current.store;
  }

  /** Every segment file, oldest first. */
  get segmentFiles(): string[] {
    return [...this.older.map((segment) => segment.file), this.current.file];
  }

  /** The highest transaction id in the log or appended since it opened; 0 for an empty log. */
  get lastTransactionId(): number {
    return this.lastAppendedId;
  }

  /**
   * Adds a record; the router calls it for every invocation, in execution order, with strictly
   * growing transaction ids. Resolves when the record is durable per the mode (see the header).
   * Does O(parameters) work on the caller's thread: the record's msgpack and CRC, written into the
   * group's buffer (and, with VERIFY, a shape check).
   * Throws LOG_CLOSED after close, and DURABILITY_FAILED once any earlier write has failed:
   * a log with a hole must not take more records.
   */
  append(record: InvocationRecord): Promise<void> {
    return this.appendInvocation(record.transactionId, record.timestamp, record.partition, record.procedure, record.catalogVersion, record.parameters);
  }

  /** `append` without the record object: the server's path, once per call that may write. */
  appendInvocation(transactionId: number, timestamp: number, partition: number, procedure: string, catalogVersion: number, parameters: readonly Value[]): Promise<void> {
    if (this.closed) throw durabilityError(DurabilityErrorCode.LOG_CLOSED, 'the command log is closed');
    if (this.failure) throw this.failure;
    assert(transactionId > this.lastAppendedId, 'command-log transaction ids only grow');
    // The router builds every record: checking its shape is a self-check, on in tests (VERIFY).
    if (VERIFY) {
      const shape = recordShapeProblem({ transactionId, timestamp, partition, procedure, catalogVersion, parameters });
      assert(shape === undefined, `a command-log record is well formed (${shape})`);
    }
    this.lastAppendedId = transactionId;
    if (this.mode === 'off') return resolved;
    const group = this.group;
    if (group.records === 0) {
      this.groupFirstId = transactionId;
      const windowMs = this.mode === 'sync' ? this.groupCommitMs : this.asyncFlushMs;
      // Node runs a 0 ms timeout after at least 1 ms, and a timer only where the event loop
      // checks timers: a window of 0 means "what this turn of the loop sequenced", so it commits
      // when the turn's I/O is done.
      if (windowMs === 0) this.immediate = setImmediate(this.commitGroupBound);
      else this.timer = setTimeout(this.commitGroupBound, windowMs);
    }
    group.add(transactionId, timestamp, partition, procedure, catalogVersion, parameters);
    this.groupLastId = transactionId;
    let done: Promise<void> = resolved;
    if (this.mode === 'sync') {
      this.groupDone ??= deferred();
      done = this.groupDone.promise;
    }
    if (group.records >= this.groupRecordsMax) this.commitGroup();
    return done;
  }

  /**
   * Writes the pending group as one LMDB value in one transaction and settles its appends (with
   * VERIFY, the group is read back just before the write). In sync mode the appends
   * resolve on the commit's flush promise, i.e. after the fsync, not on the commit, which with
   * overlappingSync only means "visible".
   *
   * When the current segment is full, the group waits (appends keep joining it) until every
   * earlier group is flushed, and then starts a new segment. Segments are separate files that
   * flush independently: without the wait an OS crash could keep a newer segment's commit and
   * lose an older one's, and recovery would find records missing in the middle.
   */
  private commitGroup(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    if (this.rolling !== undefined) return;
    const first = this.group.records > 0 ? this.groupFirstId : undefined;
    if (first !== undefined && (this.current.records >= this.segmentRecordsMax || this.current.bytes >= this.segmentBytesMax)) {
      const full = this.current.store;
      this.rolling = this.lastWrite
        .then(() => full.flushed)
        .then(
          () => {
            this.rolling = undefined;
            if (this.failure !== undefined) return;
            try {
              this.startSegment(first);
            } catch (error) {
              this.fail(error, this.groupDone);
              return;
            }
            this.commitGroup();
          },
          (error: unknown) => {
            this.rolling = undefined;
            this.fail(error, this.groupDone);
          },
        );
      return;
    }
    const count = this.group.records;
    const done = this.groupDone;
    this.groupDone = undefined;
    if (count === 0) {
      done?.resolve();
      return;
    }
    const lastId = this.groupLastId;
    const value = this.group.take();
    const segment = this.current;
    let write: Promise<boolean>;
    try {
      if (this.failWriteAtRecord > 0 && this.stats.records + count >= this.failWriteAtRecord) {
        throw Object.assign(new Error('ENOSPC: no space left on device (injected by failWriteAtRecord)'), { code: 'ENOSPC' });
      }
      // The records were encoded and checksummed in `append` moments ago; reading the group back
      // on the sequencing thread before every write is a self-check, on in tests (VERIFY).
      if (VERIFY) this.verifyGroup(value, lastId, count);
      write = segment.store.put(lastId, value);
      segment.bytes += value.length;
      this.stats.bytes += value.length;
    } catch (error) {
      this.fail(error, done);
      return;
    }
    segment.records += count;
    this.lastWrittenId = lastId;
    this.stats.records += count;
    this.stats.groups++;
    const commit = write;
    const flushed = (commit as Promise<boolean> & { flushed?: Promise<void> }).flushed;
    assert(flushed !== undefined, 'lmdb was opened with separateFlushed, so a write promise carries flushed');
    const durable = this.mode === 'sync' ? commit.then(() => flushed) : commit;
    this.lastWrite = durable.then(
      () => {
        done?.resolve();
        if (this.failure === undefined) this.onDurable?.(lastId);
      },
      (error: unknown) => this.fail(error, done),
    );
  }

  /** Reads a group back as recovery would: every record whole, well formed, in order, the last one under `lastId`. */
  private verifyGroup(value: Buffer, lastId: number, count: number): void {
    let previous = this.lastWrittenId;
    let seen = 0;
    for (const entry of valueRecords(value, lastId)) {
      assert(entry.record !== undefined, `a command-log group is whole before it is written (${entry.problem})`);
      assert(entry.record.transactionId > previous, 'a command-log group holds ids above every id written before it');
      previous = entry.record.transactionId;
      seen++;
    }
    assert(seen === count, 'a command-log group holds every record appended to it');
  }

  /**
   * Starts segment `first` (the key of the group about to be written), once the current one is
   * flushed: its link record names the current segment and the last id written to it, and goes
   * into the same LMDB transaction as the group (same event turn). The full segment's file closes.
   */
  private startSegment(first: number): void {
    assert(first > this.lastWrittenId, 'a new segment starts after every record written');
    const file = path.join(this.folder, segmentFileName(first));
    const store = openSegmentStore(file);
    // The group's own write, in the same LMDB transaction, reports a failure of this one.
    store.put(0, encodeFrame([segmentLinkVersion, this.current.first, this.lastWrittenId])).catch(() => undefined);
    const previous = this.current;
    this.older.push({ first: previous.first, file: previous.file });
    this.current = { first, file, store, records: 0, bytes: 0 };
    this.stats.segmentsStarted++;
    const closing = previous.store.close();
    this.retiring.set(previous.file, closing);
    void closing.finally(() => this.retiring.delete(previous.file));
  }

  private fail(error: unknown, done: Deferred | undefined): void {
    const first = this.failure === undefined;
    this.failure ??= durabilityError(
      DurabilityErrorCode.DURABILITY_FAILED,
      `the command log in ${this.folder} failed to write: ${(error as Error)?.message ?? String(error)}`,
      { object: this.current.file },
    );
    done?.reject(this.failure);
    // Appends already waiting on a later group are rejected too: their records follow a hole.
    this.groupDone?.reject(this.failure);
    this.groupDone = undefined;
    this.group.clear();
    if (first) this.onFailure?.(this.failure);
  }

  /** The write failure that stopped the log, if any. */
  get failed(): SluiceError | undefined {
    return this.failure;
  }

  /**
   * The records from `fromTransactionId` on, in order, segment after segment, each checked after
   * it is read (the reader's side of the boundary). A record that fails its checksum or shape check:
   * - when it is the last record of the last segment, is a torn tail (a crash mid-write): it is
   *   removed, `onTornTail` is told, and iteration ends;
   * - otherwise throws LOG_CORRUPT naming the segment, the transaction id and the record's
   *   position: replaying past a damaged record would silently skip a transaction.
   * Each segment read must link to the one before it (its link record names that segment and its
   * last transaction id), and the first one read must not follow records at or after
   * `fromTransactionId`: otherwise a segment is missing or cut short, and LOG_CORRUPT names it.
   * Call it only while no appends are pending (at recovery, before the log takes records).
   */
  *read(fromTransactionId = 0, options: ReadOptions = {}): Generator<InvocationRecord> {
    assert(this.group.records === 0, 'the command log is read only while no appends are pending');
    const from = Math.max(fromTransactionId, 1);
    const segments = this.segmentsFrom(from);
    let position = 0;
    let previousKey = -Infinity;
    let before: { segment: Segment; lastKey: number | undefined } | undefined;
    for (let s = 0; s < segments.length; s++) {
      const segment = segments[s];
      const isLast = segment === this.current;
      const store = isLast ? this.current.store : openSegmentStore(segment.file);
      try {
        this.checkLink(segment, store, before, from);
        let positionInSegment = 0;
        let torn: { key: number; problem: string; where: string; kept: Buffer | undefined; keptLastId: number } | undefined;
        values: for (const { key, value } of store.getRange({ start: from })) {
          assert(typeof key !== 'number' || key > previousKey, 'LMDB returns command-log keys in increasing order');
          const keyProblem = typeof key !== 'number' || !Number.isSafeInteger(key) ? `key ${String(key)} is not a transaction id` : undefined;
          const entries: Iterable<RecordEntry> = keyProblem === undefined ? valueRecords(value, key) : [{ problem: keyProblem, index: 1, last: true, start: 0, previousId: undefined }];
          for (const entry of entries) {
            if (entry.record !== undefined && entry.record.transactionId < from) continue;
            position++;
            positionInSegment++;
            if (entry.record !== undefined) {
              previousKey = entry.record.transactionId;
              yield entry.record;
              continue;
            }
            // A group value holding several records names the damaged one by its place in it.
            const where = entry.index === 1 && entry.last ? `key ${String(key)}` : `key ${String(key)}, record ${entry.index} of that group`;
            if (isLast && entry.last && isLastKey(store, key)) {
              // Only records before the torn one stay: a prefix of a group value is a group value.
              const kept = entry.start > 1 ? Buffer.from((value as Uint8Array).subarray(0, entry.start)) : undefined;
              torn = { key, problem: entry.problem!, where, kept, keptLastId: entry.previousId ?? 0 };
              break values;
            }
            throw durabilityError(
              DurabilityErrorCode.LOG_CORRUPT,
              `command log ${segment.file} is damaged at record ${positionInSegment} of that segment, record ${position} from transaction ${fromTransactionId} ` +
                `(${where}, after transaction ${previousKey === -Infinity ? 'none' : previousKey}): ${entry.problem}; ` +
                (isLast ? 'good records follow it' : 'it is in an older segment, and newer segments follow') +
                ', so this is not a torn write; recovery stops rather than skip a transaction',
              { object: `${segment.file}#${String(key)}` },
            );
          }
        }
        if (torn) {
          const { key, kept, keptLastId } = torn;
          store.transactionSync(() => {
            store.removeSync(key);
            if (kept !== undefined) store.putSync(keptLastId, kept);
          });
          if (this.lastAppendedId === key) this.lastAppendedId = lastRecordKey(store) ?? segment.first - 1;
          this.lastWrittenId = this.lastAppendedId;
          options.onTornTail?.(
            `command log ${segment.file}: the last record (${torn.where}, record ${position} from transaction ${fromTransactionId}) ` +
              `is torn (${torn.problem}), probably by a crash while it was written; it was removed`,
          );
          return;
        }
        before = { segment, lastKey: lastRecordKey(store) };
      } finally {
        if (!isLast) void store.close();
      }
    }
  }

  /** How many records `read(fromTransactionId)` would visit: for progress bars. */
  count(fromTransactionId = 0): number {
    const from = Math.max(fromTransactionId, 1);
    let count = 0;
    for (const segment of this.segmentsFrom(from)) {
      if (segment === this.current) {
        count += countRecords(this.current.store, from);
        continue;
      }
      const store = openSegmentStore(segment.file);
      try {
        count += countRecords(store, from);
      } finally {
        void store.close();
      }
    }
    return count;
  }

  /**
   * Deletes every segment whose records all have transaction ids below `transactionId` (those a
   * complete snapshot already contains): a segment goes when the next one starts at or before
   * `transactionId`. The segment being appended to is never deleted, so records older than
   * `transactionId` may remain in it until it is full; `read` skips them.
   */
  async truncateBefore(transactionId: number): Promise<TruncateResult> {
    if (this.closed) throw durabilityError(DurabilityErrorCode.LOG_CLOSED, 'the command log is closed');
    const result: TruncateResult = { segmentsRemoved: 0, bytesRemoved: 0 };
    const all = [...this.older, this.current];
    let keep = 0;
    while (keep < this.older.length && all[keep + 1].first <= transactionId) keep++;
    for (const segment of this.older.slice(0, keep)) {
      // A segment that was just rolled over may still be flushing its last groups.
      await this.retiring.get(segment.file);
      result.bytesRemoved += removeSegmentFiles(segment.file);
      result.segmentsRemoved++;
    }
    this.older = this.older.slice(keep);
    return result;
  }

  /** Writes what is pending, waits until every write is on disk, and closes the files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.commitGroup();
    this.closed = true;
    await this.rolling;
    await this.lastWrite;
    await Promise.all(this.retiring.values());
    await this.current.store.flushed;
    await this.current.store.close();
  }

  /** The segments `read(from)` visits: from the last one starting at or before `from`. */
  private segmentsFrom(from: number): Segment[] {
    const all: Segment[] = [...this.older, this.current];
    let start = 0;
    while (start + 1 < all.length && all[start + 1].first <= from) start++;
    return all.slice(start);
  }

  /**
   * Checks a segment's link record against what was read before it: the segment before it in
   * the folder and that segment's last key; or, for the first segment read, that nothing it
   * follows holds records still needed (ids at or after `from`).
   */
  private checkLink(segment: Segment, store: RootDatabase<Buffer, number>, before: { segment: Segment; lastKey: number | undefined } | undefined, from: number): void {
    const name = path.basename(segment.file);
    const corrupt = (problem: string): never => {
      throw durabilityError(DurabilityErrorCode.LOG_CORRUPT, `command log ${segment.file}: ${problem}; recovery stops rather than skip transactions`, { object: segment.file });
    };
    if (segment.first === 0) {
      // The adopted single-file log of earlier versions: the first segment, no link record.
      if (before !== undefined) corrupt('the adopted single-file log is not the first segment');
      return;
    }
    const frame = store.getBinary(0);
    const damage = frameDamage(frame);
    if (damage !== undefined) return corrupt(`its link record (key 0) is damaged: ${damage}`);
    const link = decodeFrame(frame!) as unknown;
    if (!Array.isArray(link) || link[0] !== segmentLinkVersion || !Number.isSafeInteger(link[1]) || !Number.isSafeInteger(link[2])) {
      return corrupt(`its link record (key 0) is not [${segmentLinkVersion}, previous segment, previous last id]`);
    }
    const [, previousFirst, previousLast] = link as [number, number, number];
    if (before === undefined) {
      if (previousLast >= from) {
        corrupt(
          `it follows segment ${segmentFileName(previousFirst)} (ending at transaction ${previousLast}), which is missing, ` +
            `and records from transaction ${from} on are needed`,
        );
      }
      return;
    }
    if (previousFirst !== before.segment.first) {
      corrupt(`it follows segment ${segmentFileName(previousFirst)}, which is missing (the segment before it in the folder is ${path.basename(before.segment.file)})`);
    }
    if (previousLast !== (before.lastKey ?? before.segment.first - 1)) {
      corrupt(`segment ${path.basename(before.segment.file)} ended at transaction ${previousLast} when ${name} started, but now ends at ${before.lastKey ?? 'no record'}: records are missing`);
    }
  }
}

/** Opens one segment's LMDB file; the options are explained on CommandLog.open. */
function openSegmentStore(file: string): RootDatabase<Buffer, number> {
  return open<Buffer, number>({
    ...durableLmdbOptions,
    path: file,
    separateFlushed: true,
    safeRestore: false,
  } as Parameters<typeof open>[0] & { safeRestore: boolean });
}

/** The segment files in `folder`, oldest first. */
function listSegments(folder: string): Segment[] {
  const segments: Segment[] = [];
  for (const name of readdirSync(folder)) {
    const match = segmentFilePattern.exec(name);
    if (match) segments.push({ first: Number(match[1]), file: path.join(folder, name) });
  }
  return segments.sort((a, b) => a.first - b.first);
}

/**
 * Earlier versions kept the whole log in `command-log.mdb`: it becomes segment 0, the first
 * segment (it has no link record; every later segment links to it).
 */
function adoptLegacyLog(folder: string): void {
  const legacy = path.join(folder, legacyFileName);
  if (!existsSync(legacy)) return;
  renameSync(legacy, path.join(folder, segmentFileName(0)));
  rmSync(`${legacy}-lock`, { force: true });
}

/** Deletes a segment's file and its LMDB lock file; returns the bytes freed. */
function removeSegmentFiles(file: string): number {
  let bytes = 0;
  try {
    bytes = statSync(file).size;
  } catch {
    // Already gone: nothing to free.
  }
  rmSync(file, { force: true });
  rmSync(`${file}-lock`, { force: true });
  return bytes;
}

function isLastKey(store: RootDatabase<Buffer, number>, key: number): boolean {
  for (const next of store.getKeys({ start: key, limit: 2 })) if (next !== key) return false;
  return true;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((onResolve, onReject) => {
    resolve = onResolve;
    reject = onReject;
  });
  // A group nobody awaits (async callers dropped it) must not raise an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** The highest record key of a segment (its link record, key 0, is not a record). */
function lastRecordKey(store: RootDatabase<Buffer, number>): number | undefined {
  for (const key of store.getKeys({ reverse: true, limit: 1 })) return key > 0 ? key : undefined;
  return undefined;
}

/**
 * One record read from a log value, or why it cannot be read: `index` is its place in the value
 * (from 1), `last` whether nothing follows it there, `start` its offset (the bytes before it are
 * the whole records in front of it) and `previousId` the id of the record before it in the value.
 */
interface RecordEntry {
  record?: InvocationRecord;
  problem?: string;
  index: number;
  last: boolean;
  start: number;
  previousId: number | undefined;
}

/**
 * The records of one LMDB value under `key`, each checked (CRC, decode, shape, ids): a group value
 * (format 2, group-frame.ts) holds records with growing ids, the last one `key`; a format 1 frame
 * holds the one record `key`. Ends after the first damaged record.
 */
function* valueRecords(value: Uint8Array | undefined, key: number): Generator<RecordEntry> {
  if (value === undefined || value.length === 0 || value[0] !== groupFrameVersion) {
    const checked = checkFrame(value, key);
    yield { ...checked, index: 1, last: true, start: 0, previousId: undefined };
    return;
  }
  let index = 0;
  let previousId: number | undefined;
  for (const span of groupRecordSpans(value)) {
    index++;
    let checked: { record?: InvocationRecord; problem?: string } = { problem: span.damage };
    if (span.damage === undefined) {
      try {
        checked = decodeRecord(decodePayload(value, span.payloadStart, span.end), key, span.last, previousId);
      } catch (error) {
        checked = { problem: `msgpack cannot decode it (${(error as Error).message})` };
      }
    }
    yield { ...checked, index, last: span.last, start: span.start, previousId };
    if (checked.record === undefined) return;
    previousId = checked.record.transactionId;
  }
}

/**
 * How many records with ids from `from` on a segment holds (for progress bars and the segment's
 * record count). Walks the group values' lengths without checking CRCs; only the first value can
 * hold ids below `from`, so only its records are decoded.
 */
function countRecords(store: RootDatabase<Buffer, number>, from: number): number {
  let count = 0;
  let first = true;
  for (const { value } of store.getRange({ start: from })) {
    if (value === undefined || value.length === 0 || value[0] !== groupFrameVersion) {
      count++;
    } else {
      for (const span of groupRecordSpans(value, false)) {
        if (first && from > 1 && span.damage === undefined && firstFieldOf(value, span.payloadStart, span.end) < from) continue;
        count++;
      }
    }
    first = false;
  }
  return count;
}

/** The transaction id (first field) of a record payload; Infinity when it cannot be decoded (counted, and reported by `read`). */
function firstFieldOf(value: Uint8Array, start: number, end: number): number {
  try {
    const decoded = decodePayload(value, start, end);
    return Array.isArray(decoded) && typeof decoded[0] === 'number' ? decoded[0] : Infinity;
  } catch {
    return Infinity;
  }
}

function checkFrame(frame: Uint8Array | undefined, key: number): { record?: InvocationRecord; problem?: string } {
  const damage = frameDamage(frame);
  if (damage !== undefined) return { problem: damage };
  let value: unknown;
  try {
    value = decodeFrame(frame!);
  } catch (error) {
    return { problem: `msgpack cannot decode it (${(error as Error).message})` };
  }
  return decodeRecord(value, key, true, undefined);
}

/**
 * Checks a decoded payload: six fields of the right types; the last record of a value holds the
 * value's key as its id, an earlier one an id below it and above the record before it.
 */
function decodeRecord(value: unknown, key: number, last: boolean, previousId: number | undefined): { record?: InvocationRecord; problem?: string } {
  if (!Array.isArray(value) || value.length !== 6) return { problem: 'it is not a 6-field record' };
  const [transactionId, timestamp, partition, procedure, catalogVersion, parameters] = value;
  const record = { transactionId, timestamp, partition, procedure, catalogVersion, parameters } as InvocationRecord;
  const problem = recordShapeProblem(record);
  if (problem !== undefined) return { problem };
  if (last && transactionId !== key) return { problem: `it holds transaction ${transactionId} under key ${key}` };
  if (!last && transactionId >= key) return { problem: `it holds transaction ${transactionId} before the group's last one, ${key}` };
  if (previousId !== undefined && transactionId <= previousId) return { problem: `it holds transaction ${transactionId} after transaction ${previousId} in the same group` };
  return { record };
}

/** What is wrong with a record's shape, or undefined. O(parameters). */
function recordShapeProblem(record: InvocationRecord): string | undefined {
  if (!Number.isSafeInteger(record.transactionId) || record.transactionId <= 0) return 'transactionId is a positive integer';
  if (!Number.isSafeInteger(record.timestamp)) return 'timestamp is an integer';
  if (!Number.isSafeInteger(record.partition) || record.partition < -1) return 'partition is -1 or a partition id';
  if (typeof record.procedure !== 'string' || record.procedure.length === 0) return 'procedure is a name';
  if (!Number.isSafeInteger(record.catalogVersion) || record.catalogVersion < 0) return 'catalogVersion is an integer';
  if (!Array.isArray(record.parameters)) return 'parameters is an array';
  for (let i = 0; i < record.parameters.length; i++) {
    const value = record.parameters[i];
    const kind = typeof value;
    if (value !== null && kind !== 'number' && kind !== 'string' && kind !== 'boolean' && !(value instanceof Uint8Array)) {
      return `parameter ${i} is a canonical value, not ${kind}`;
    }
  }
  return undefined;
}
