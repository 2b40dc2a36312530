/**
 * The contract between the export pipeline (stream buffers → delivery positions) and the export
 * targets (file, PostgreSQL, Kafka, MQTT, HTTP, ws subscribers). The pipeline owns ordering,
 * retries, persistence of positions and backpressure; a target only turns one batch of committed
 * stream rows into the target's own writes and says when the target has acknowledged them.
 *
 * Delivery is at least once: after a crash or a failed `deliver`, the pipeline hands the same
 * rows again from the last acknowledged position. Every row carries its stream partition and a
 * per-partition sequence number (dense, strictly increasing, deterministic under command-log
 * replay), so a target that can store them (PostgreSQL, a file name) makes delivery idempotent.
 */
import type { ColumnDef, TableDef } from '../engine/catalog/schema.ts';
import type { Value } from '../engine/types.ts';

/** Committed rows of one stream partition, in sequence order, with no gaps. */
export interface ExportBatch {
  /** Stream name, lower case as in the catalog. */
  readonly stream: string;
  readonly partition: number;
  /** The stream's visible columns, in row order. */
  readonly columns: readonly ColumnDef[];
  /** Sequence number of rows[0]; rows[i] has firstSequence + i. */
  readonly firstSequence: number;
  readonly rows: readonly (readonly Value[])[];
  /**
   * Commit time (ms since the epoch) of each row's transaction, to within one worker batch (a
   * few milliseconds): what a file target files a row under when it has no day column.
   */
  readonly commitTimestamps: readonly number[];
  /**
   * The same rows as the buffer stores them, undecoded: for a target that hands them to another
   * thread (the file target's encoders) instead of reading `rows` on the main thread. `width`
   * values per row (hidden columns last).
   */
  readonly encoded?: { readonly width: number; readonly chunks: readonly EncodedRows[] };
  /**
   * Optional, for targets that send a batch in several requests (Kafka): the target holds every
   * row up to `lastSequence`, a part of the batch. The pipeline stores it as the acknowledged
   * position at once, so a retry, also after a restart, starts after it. Targets that name or
   * store what they write by the batch's range (file, PostgreSQL) do not call it.
   */
  acknowledged?(lastSequence: number): void;
}

/** Rows `skip … skip+count-1` of one encoded chunk (engine/storage/stream-chunk.ts). */
export interface EncodedRows {
  /** Commit time of the chunk's transactions (to within one worker batch). */
  readonly timestamp: number;
  readonly data: Uint8Array;
  readonly skip: number;
  readonly count: number;
}

/** One end-of-day batch: the whole result of a daily job for one day, written all or nothing. */
export interface DayBatch {
  /** The daily job's name, as the deployment file spells it. */
  readonly job: string;
  /** The day, YYYY-MM-DD, in the job's time zone. */
  readonly day: string;
  /** Where the target puts it: a table (postgresql) or a folder (file); default: the job's name. */
  readonly table?: string;
  readonly columns: readonly ColumnDef[];
  readonly rows: readonly (readonly Value[])[];
}

export interface ExportTarget {
  /** The target's name as `EXPORT TO TARGET name` and the deployment file spell it. */
  readonly name: string;
  /**
   * Resolves once the target holds every row of the batch (for PostgreSQL: committed; for a file:
   * renamed into place; for Kafka/MQTT: acknowledged by the broker). Rejects with an Error whose
   * message says what failed; the pipeline keeps the rows and retries with backoff.
   */
  deliver(batch: ExportBatch): Promise<void>;
  /**
   * Optional. Every row this target receives that committed before `committedBefore` has been
   * delivered: a file target closes the days that ended before it (`_SUCCESS`). Called by the
   * pipeline after deliveries and on a timer; must be idempotent.
   */
  watermark?(committedBefore: number): Promise<void>;
  /**
   * Optional; targets that store positions (PostgreSQL) implement it: the last sequence of the
   * stream partition the target holds (0 if none). The pipeline asks at start and numbers new rows
   * after it, so a Sluice data directory started afresh never reuses sequences the target would
   * take for repeats and skip.
   */
  position?(stream: string, partition: number): Promise<number>;
  /**
   * Optional; targets that serve end-of-day jobs implement it. Writes the batch in one atomic
   * step (one PostgreSQL transaction; a file and then `_SUCCESS`) and resolves 'written', or
   * 'already' when that job's day is already there, in which case it changes nothing.
   */
  writeDay?(batch: DayBatch): Promise<'written' | 'already'>;
  /**
   * Optional: rows this target sent again that its receiver may already have held, so possible
   * copies downstream. Idempotent targets (PostgreSQL positions, file names) say 0; Kafka counts
   * the records of failed requests whose outcome is unknown. Absent, @Statistics assumes every
   * redelivered row may be a copy (MQTT, HTTP).
   */
  readonly duplicatesPossible?: number;
  /**
   * Optional; targets with settings that depend on a stream's columns implement it (a file target's
   * `dayColumn`, Kafka's `key`, an MQTT topic template). A live update adds `stream`, which exports
   * here: throws EXPORT_CONFIG naming the setting when the stream does not fit it; otherwise the
   * target takes the stream as if it had been there at creation. Idempotent (the pipeline checks
   * before the switch and adopts at it).
   */
  addStream?(stream: TableDef): void;
  /** Flushes what it holds (a file being rolled) and releases connections. */
  close(): Promise<void>;
}

/** One entry of the deployment file's `exports.targets`: `type` picks the implementation. */
export interface TargetConfig {
  readonly name: string;
  readonly type: 'file' | 'postgresql' | 'kafka' | 'mqtt' | 'http';
  readonly [setting: string]: unknown;
}
