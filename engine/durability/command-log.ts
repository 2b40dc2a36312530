/**
 * The command log: every transaction's invocation (procedure, parameters, transaction id,
 * timestamp, partition or -1 for multi-partition, catalog version), in execution order, in one
 * LMDB file keyed by transaction id. Recovery loads the newest snapshot and replays the records
 * after it; the determinism rule (design.md) makes replay reach the same state.
 *
 * Modes and what `append` promises (docs/durability.md has the loss windows):
 * - sync: resolves after the LMDB transaction holding the record is committed and fsynced.
 *   Records are group-committed: every append within `groupCommitMs` of the group's first goes
 *   into one LMDB write transaction and shares its one fsync.
 * - async: resolves at once; the pending records are written as one transaction every
 *   `asyncFlushMs`, and LMDB flushes each commit in the background.
 * - off: resolves at once and writes nothing (the ids are still checked to grow).
 *
 * Each record is a frame (framing.ts): CRC32 + msgpack. The frame is checked just before the
 * write and again when read back; `read` tells a torn last record (truncated, with a warning)
 * from damage in the middle (stops with LOG_CORRUPT naming the transaction id and position).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { assert, VERIFY } from '../assert.ts';
import type { Value } from '../types.ts';
import { DurabilityErrorCode, decodeFrame, durabilityError, durableLmdbOptions, encodeFrame, frameDamage } from './framing.ts';
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
  /** The LMDB file of the log (a file name; its lock file sits beside it as `<path>-lock`). */
  path: string;
  mode: DurabilityMode;
  /** Window in which sync appends share one LMDB transaction and one fsync. Default 1 ms. */
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
}

export const groupCommitMsDefault = 1;
export const asyncFlushMsDefault = 100;
/** Bounds the memory and the LMDB transaction of one group; a full group is written at once. */
export const groupRecordsMax = 8192;
/** Bounds one LMDB transaction of truncateBefore, so truncation never holds up group commits long. */
export const truncateBatchRecordsMax = 10_000;

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
}

interface Pending {
  key: number;
  frame: Buffer;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

const resolved: Promise<void> = Promise.resolve();

export class CommandLog {
  readonly path: string;
  readonly mode: DurabilityMode;
  readonly groupCommitMs: number;
  readonly asyncFlushMs: number;
  readonly groupRecordsMax: number;
  /** The LMDB store: exposed for recovery tooling and tests, not for writing. */
  readonly store: RootDatabase<Buffer, number>;
  readonly stats: CommandLogStats = { records: 0, groups: 0, bytes: 0 };
  private pending: Pending[] = [];
  /** Settles when the current (unwritten) group is durable per the mode; sync mode only. */
  private groupDone: Deferred | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastAppendedId: number;
  /** The last write issued; groups commit in order, so it settling means all earlier have. */
  private lastWrite: Promise<void> = resolved;
  private failure: SluiceError | undefined;
  private closed = false;
  private readonly onDurable: ((transactionId: number) => void) | undefined;
  private readonly onFailure: ((error: SluiceError) => void) | undefined;
  private readonly failWriteAtRecord: number;

  private constructor(options: CommandLogOptions, store: RootDatabase<Buffer, number>) {
    this.path = options.path;
    this.mode = options.mode;
    this.groupCommitMs = options.groupCommitMs ?? groupCommitMsDefault;
    this.asyncFlushMs = options.asyncFlushMs ?? asyncFlushMsDefault;
    this.groupRecordsMax = options.groupRecordsMax ?? groupRecordsMax;
    this.store = store;
    const last = lastKey(store);
    this.lastAppendedId = last ?? 0;
    this.onDurable = options.onDurable;
    this.onFailure = options.onFailure;
    this.failWriteAtRecord = options.failWriteAtRecord ?? 0;
  }

  /**
   * Opens (or creates) the log. The LMDB options are all chosen here, not inherited:
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
    mkdirSync(path.dirname(options.path), { recursive: true });
    const store = open<Buffer, number>({
      ...durableLmdbOptions,
      path: options.path,
      separateFlushed: true,
      safeRestore: false,
    } as Parameters<typeof open>[0] & { safeRestore: boolean });
    return new CommandLog(options, store);
  }

  /** The highest transaction id in the log or appended since it opened; 0 for an empty log. */
  get lastTransactionId(): number {
    return this.lastAppendedId;
  }

  /**
   * Adds a record; the router calls it for every invocation, in execution order, with strictly
   * growing transaction ids. Resolves when the record is durable per the mode (see the header).
   * Does O(parameters) work on the caller's thread: a shape check, msgpack encoding and a CRC.
   * Throws LOG_CLOSED after close, and DURABILITY_FAILED once any earlier write has failed:
   * a log with a hole must not take more records.
   */
  append(record: InvocationRecord): Promise<void> {
    if (this.closed) throw durabilityError(DurabilityErrorCode.LOG_CLOSED, 'the command log is closed');
    if (this.failure) throw this.failure;
    assert(record.transactionId > this.lastAppendedId, 'command-log transaction ids only grow');
    const shape = recordShapeProblem(record);
    assert(shape === undefined, `a command-log record is well formed (${shape})`);
    this.lastAppendedId = record.transactionId;
    if (this.mode === 'off') return resolved;
    const frame = encodeFrame(encodeRecord(record));
    this.pending.push({ key: record.transactionId, frame });
    if (this.pending.length === 1) {
      const windowMs = this.mode === 'sync' ? this.groupCommitMs : this.asyncFlushMs;
      this.timer = setTimeout(() => this.commitGroup(), windowMs);
    }
    let done: Promise<void> = resolved;
    if (this.mode === 'sync') {
      this.groupDone ??= deferred();
      done = this.groupDone.promise;
    }
    if (this.pending.length >= this.groupRecordsMax) this.commitGroup();
    return done;
  }

  /**
   * Writes the pending group as one LMDB transaction and settles its appends. Each frame is
   * checked just before the write (the writer's side of the boundary). In sync mode the
   * appends resolve on the commit's flush promise, i.e. after the fsync, not on the commit,
   * which with overlappingSync only means "visible".
   */
  private commitGroup(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const records = this.pending;
    const done = this.groupDone;
    this.pending = [];
    this.groupDone = undefined;
    if (records.length === 0) {
      done?.resolve();
      return;
    }
    let write: Promise<boolean> | undefined;
    const lastId = records[records.length - 1].key;
    try {
      if (this.failWriteAtRecord > 0 && this.stats.records + records.length >= this.failWriteAtRecord) {
        throw Object.assign(new Error('ENOSPC: no space left on device (injected by failWriteAtRecord)'), { code: 'ENOSPC' });
      }
      for (let i = 0; i < records.length; i++) {
        const { key, frame } = records[i];
        const damage = frameDamage(frame);
        assert(damage === undefined, `a command-log frame is whole before it is written (${damage})`);
        if (VERIFY) assert(decodeRecord(decodeFrame(frame), key).record !== undefined, 'a command-log frame decodes to its record');
        write = this.store.put(key, frame);
        this.stats.bytes += frame.length;
      }
    } catch (error) {
      this.fail(error, done);
      return;
    }
    this.stats.records += records.length;
    this.stats.groups++;
    const commit = write!;
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

  private fail(error: unknown, done: Deferred | undefined): void {
    const first = this.failure === undefined;
    this.failure ??= durabilityError(
      DurabilityErrorCode.DURABILITY_FAILED,
      `the command log ${this.path} failed to write: ${(error as Error)?.message ?? String(error)}`,
      { object: this.path },
    );
    done?.reject(this.failure);
    // Appends already waiting on a later group are rejected too: their records follow a hole.
    this.groupDone?.reject(this.failure);
    this.groupDone = undefined;
    this.pending = [];
    if (first) this.onFailure?.(this.failure);
  }

  /** The write failure that stopped the log, if any. */
  get failed(): SluiceError | undefined {
    return this.failure;
  }

  /**
   * The records from `fromTransactionId` on, in order, each checked after it is read (the
   * reader's side of the boundary). A record that fails its checksum or shape check:
   * - when it is the last record of the log, is a torn tail (a crash mid-write): it is removed,
   *   `onTornTail` is told, and iteration ends;
   * - otherwise throws LOG_CORRUPT naming the transaction id and the record's position in this
   *   read: replaying past a damaged record would silently skip a transaction.
   * Call it only while no appends are pending (at recovery, before the log takes records).
   */
  *read(fromTransactionId = 0, options: ReadOptions = {}): Generator<InvocationRecord> {
    assert(this.pending.length === 0, 'the command log is read only while no appends are pending');
    let position = 0;
    let previousKey = -Infinity;
    let torn: { key: number; problem: string } | undefined;
    for (const { key, value } of this.store.getRange({ start: fromTransactionId })) {
      position++;
      assert(typeof key !== 'number' || key > previousKey, 'LMDB returns command-log keys in increasing order');
      const problem = typeof key !== 'number' || !Number.isSafeInteger(key) ? `key ${String(key)} is not a transaction id` : undefined;
      const decoded = problem === undefined ? checkFrame(value, key) : { problem };
      if (decoded.record !== undefined) {
        previousKey = key;
        yield decoded.record;
        continue;
      }
      if (this.isLastKey(key)) {
        torn = { key, problem: decoded.problem! };
        break;
      }
      throw durabilityError(
        DurabilityErrorCode.LOG_CORRUPT,
        `command log ${this.path} is damaged at record ${position} from transaction ${fromTransactionId} ` +
          `(key ${String(key)}, after transaction ${previousKey === -Infinity ? 'none' : previousKey}): ${decoded.problem}; ` +
          'good records follow it, so this is not a torn write; recovery stops rather than skip a transaction',
        { object: `${this.path}#${String(key)}` },
      );
    }
    if (torn) {
      this.store.removeSync(torn.key);
      if (this.lastAppendedId === torn.key) this.lastAppendedId = previousKey === -Infinity ? (lastKey(this.store) ?? 0) : previousKey;
      options.onTornTail?.(
        `command log ${this.path}: the last record (key ${torn.key}, record ${position} from transaction ${fromTransactionId}) ` +
          `is torn (${torn.problem}), probably by a crash while it was written; it was removed`,
      );
    }
  }

  /** How many records `read(fromTransactionId)` would visit: for progress bars. */
  count(fromTransactionId = 0): number {
    return this.store.getKeysCount({ start: fromTransactionId });
  }

  /**
   * Removes every record with a transaction id below `transactionId`: those a complete snapshot
   * already contains. Works in LMDB transactions of at most truncateBatchRecordsMax removals.
   * Returns how many records it removed. LMDB reuses the freed pages; the file does not shrink.
   */
  async truncateBefore(transactionId: number): Promise<number> {
    let removed = 0;
    for (;;) {
      if (this.closed) throw durabilityError(DurabilityErrorCode.LOG_CLOSED, 'the command log is closed');
      const keys = Array.from(this.store.getKeys({ end: transactionId, limit: truncateBatchRecordsMax }));
      if (keys.length === 0) return removed;
      let last: Promise<boolean> = Promise.resolve(true);
      for (const key of keys) last = this.store.remove(key);
      await last;
      removed += keys.length;
    }
  }

  /** Writes what is pending, waits until every write is on disk, and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.commitGroup();
    this.closed = true;
    await this.lastWrite;
    await this.store.flushed;
    await this.store.close();
  }

  private isLastKey(key: number): boolean {
    for (const next of this.store.getKeys({ start: key, limit: 2 })) if (next !== key) return false;
    return true;
  }
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

function lastKey(store: RootDatabase<Buffer, number>): number | undefined {
  for (const key of store.getKeys({ reverse: true, limit: 1 })) return key;
  return undefined;
}

/** The record as a msgpack array: positional, so a record costs no field names on disk. */
function encodeRecord(record: InvocationRecord): unknown[] {
  return [record.transactionId, record.timestamp, record.partition, record.procedure, record.catalogVersion, record.parameters];
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
  return decodeRecord(value, key);
}

function decodeRecord(value: unknown, key: number): { record?: InvocationRecord; problem?: string } {
  if (!Array.isArray(value) || value.length !== 6) return { problem: 'it is not a 6-field record' };
  const [transactionId, timestamp, partition, procedure, catalogVersion, parameters] = value;
  const record = { transactionId, timestamp, partition, procedure, catalogVersion, parameters } as InvocationRecord;
  const problem = recordShapeProblem(record);
  if (problem !== undefined) return { problem };
  if (transactionId !== key) return { problem: `it holds transaction ${transactionId} under key ${key}` };
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
