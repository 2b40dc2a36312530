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
import type { ColumnDef } from '../engine/catalog/schema.ts';
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
  /** Flushes what it holds (a file being rolled) and releases connections. */
  close(): Promise<void>;
}

/** One entry of the deployment file's `exports.targets`: `type` picks the implementation. */
export interface TargetConfig {
  readonly name: string;
  readonly type: 'file' | 'postgresql' | 'kafka' | 'mqtt' | 'http';
  readonly [setting: string]: unknown;
}
