/**
 * Messages between the router (main thread) and the partition workers (worker.ts). Batches are
 * flat arrays of numbers and values rather than arrays of objects: structured clone copies a flat
 * array of primitives far faster than the same data as small objects, and one postMessage carries
 * every call a partition received in one event-loop turn.
 *
 * Router → worker, on the worker's own port, a batch of entries:
 *   CALL   slot, procedureIndex, transactionId, timestamp, paramCount, ...params
 *   ADHOC  slot, sql, transactionId, timestamp, paramCount, ...params
 *   MP     transactionId, timestamp   (the marker: block and serve the coordinator's fragments)
 *   VERSION epoch                      (a live update's switch point; see Op.VERSION)
 *   SNAPSHOT, LOAD, RESUME_STREAM, LOAD_CATALOG, LOAD_DONE: durability's entries (see Op)
 * Worker → router, one batch per received batch: slot, ok (1 or 0), value (result or ErrorPayload).
 * Slot -1 carries the batch's committed stream rows instead: -1, chunks, 0 (storage/stream.ts
 * takeCommitted; the router hands them to the export pipeline).
 *
 * Outside the batches, `{ load: epoch, ddl, proceduresDir }` asks a worker to load a new
 * application version in the background; it answers on its parent port `['loaded', epoch, error]`.
 *
 * Coordinator ↔ worker, on the worker's multi-partition port, one message each way per fragment;
 * see coordinator.ts.
 */
import { AssertionFailure } from '../assert.ts';
import { ErrorCode, SluiceError, type ErrorDetails } from '../errors.ts';
import type { ErrorPayload } from '../server/protocol.ts';

export const Op = {
  CALL: 1,
  ADHOC: 2,
  MP: 3,
  /** SNAPSHOT snapshotId: capture this partition's image here (engine/durability/partition-snapshot.ts) */
  SNAPSHOT: 4,
  /** LOAD table, rows, rowIds: snapshot rows, restored before replay (durability) */
  LOAD: 5,
  /** RESUME_STREAM stream, nextSequence: a stream's sequence as the snapshot recorded it */
  RESUME_STREAM: 6,
  /** LOAD_CATALOG ddl: restore under the snapshot's own schema; LOAD_DONE then adopts the current one */
  LOAD_CATALOG: 7,
  LOAD_DONE: 8,
  /**
   * STREAM_FLOOR stream, nextSequence: the stream's next sequence becomes at least this (after
   * recovery: never reuse a sequence the export buffer already holds; exporters/pipeline.ts).
   */
  STREAM_FLOOR: 9,
  /**
   * VERSION epoch: switch to the application version loaded beforehand (a live update,
   * docs/live-update.md). Like an MP marker the partition stops here: it builds its storage for
   * the new catalog, answers the coordinator on its MP port, and adopts (END true) or drops
   * (END false) what it built, so every partition changes version at this point or none does.
   */
  VERSION: 10,
} as const;

/** Router → worker, outside the batches: load this application version (docs/live-update.md). */
export interface LoadVersionMessage {
  readonly load: number;
  readonly ddl: string;
  readonly proceduresDir: string;
}

/** Fragment kinds the coordinator sends during a multi-partition transaction. */
export const Fragment = {
  /** [EXECUTE, sql, params] → ResultTable */
  EXECUTE: 1,
  /** [FRAMES, sql, params] → Frame[] (the per-partition half of a SELECT, see sql/select.ts) */
  FRAMES: 2,
  /** [INSERT, sql, rows] → number of rows inserted (rows already routed to this partition) */
  INSERT: 3,
  /** [STATS] → PartitionStatistics */
  STATS: 4,
  /** [END, commit] → no reply; the partition commits or rolls back and leaves the marker */
  END: 5,
} as const;

/** Most calls per router → worker message; a turn with more sends several messages. */
export const batchCallsMax = 1024;

/** Slots of the shared Int32Array: one wake-up counter per partition, then the coordinator's. */
export function coordinatorSlot(partitionCount: number): number {
  return partitionCount;
}

export interface TableStatistics {
  name: string;
  kind: string;
  rows: number;
  bytesEstimate: number;
}

export interface PartitionStatistics {
  partition: number;
  transactions: number;
  tables: TableStatistics[];
}

/** An error as it crosses a thread or the network: code first, message already rendered. */
export function errorPayload(error: unknown): ErrorPayload {
  if (error instanceof SluiceError) return [error.code, error.message, error.details as Record<string, unknown>];
  if (error instanceof AssertionFailure) return [ErrorCode.INTERNAL, error.message, null];
  const message = error instanceof Error ? error.message : String(error);
  return [ErrorCode.INTERNAL, `internal error: ${message}`, null];
}

/** Rebuilds a SluiceError from its payload without rendering its message a second time. */
export function errorFromPayload(payload: ErrorPayload): SluiceError {
  const error = new SluiceError(payload[0] as ErrorCode, payload[1]);
  // The message already includes the position and suggestions; keep details for callers.
  Object.defineProperty(error, 'details', { value: (payload[2] ?? {}) as ErrorDetails });
  return error;
}
