/**
 * Durability's side of a partition worker (engine/execution/worker.ts): the entries the router
 * puts into a partition's queue for snapshots and restores (messages.ts Op.SNAPSHOT … LOAD_DONE).
 * They run in queue order between transactions, so a SNAPSHOT entry placed into every queue at
 * one point of the global order captures every partition at that same point.
 *
 * A capture is the barrier + slices + copy-on-write of capture.ts: the barrier copies row
 * references (the pause), then one slice of at most captureSliceRowsMax rows per event-loop turn
 * (setImmediate, so the batches that arrive meanwhile run between slices) is framed here, on the
 * partition's thread, and posted to the main thread, which only writes the bytes.
 * Replicated tables are captured by partition 0 only; every partition loads partition 0's copy.
 *
 * Messages on the snapshot port (worker → main):
 *   ['chunk', snapshotId, table, rowCount, frame]
 *   ['captured', snapshotId, streams: [stream, nextSequence][], rows, barrierMs, sliceMsMax]
 *   ['failed', snapshotId, message]
 */
import type { MessagePort } from 'node:worker_threads';
import { applyDdl, emptyCatalog } from '../catalog/ddl.ts';
import type { Catalog } from '../catalog/schema.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import type { Partition } from '../execution/partition.ts';
import { Op } from '../execution/messages.ts';
import type { Table } from '../storage/table.ts';
import type { Value } from '../types.ts';
import { PartitionCapture } from './capture.ts';
import { encodeChunkFrame } from './snapshot.ts';

interface RunningCapture {
  readonly snapshotId: number;
  readonly capture: PartitionCapture;
  readonly tables: Table[];
  readonly streams: [string, number][];
  readonly barrierMs: number;
  sliceMsMax: number;
}

export class PartitionDurability {
  private readonly partition: Partition;
  private readonly port: MessagePort;
  /** The worker's current catalog: adopted again after a restore under an older one. */
  catalog: Catalog;
  private running: RunningCapture | undefined;
  private readonly sliceBound = (): void => this.slice();

  /** `catalog` is the worker's own (current) catalog, adopted again after a restore under an older one. */
  constructor(partition: Partition, port: MessagePort, catalog: Catalog) {
    this.partition = partition;
    this.port = port;
    this.catalog = catalog;
  }

  /** Runs the durability entry at `batch[i]`; returns the index of the next entry. */
  run(op: number, batch: unknown[], i: number): number {
    switch (op) {
      case Op.SNAPSHOT:
        this.begin(batch[i + 1] as number);
        return i + 2;
      case Op.LOAD: {
        const table = this.partition.table(batch[i + 1] as string);
        const rows = batch[i + 2] as Value[][];
        const rowIds = batch[i + 3] as number[];
        for (let r = 0; r < rows.length; r++) table.loadRow(rows[r], rowIds[r]);
        return i + 4;
      }
      case Op.RESUME_STREAM:
        this.partition.stream(batch[i + 1] as string).resumeAt(batch[i + 2] as number);
        return i + 3;
      case Op.LOAD_CATALOG:
        this.partition.adoptCatalog(this.partition.prepareCatalog(applyDdl(batch[i + 1] as string, emptyCatalog)));
        return i + 2;
      case Op.LOAD_DONE:
        // Tables restored under the snapshot's schema move to the current one (new views are
        // computed from the restored rows, new indexes built over them).
        this.partition.adoptCatalog(this.partition.prepareCatalog(this.catalog));
        return i + 1;
    }
    throw new SluiceError(ErrorCode.INTERNAL, `unknown durability entry ${op}`);
  }

  /** The barrier: between two transactions of this partition. */
  private begin(snapshotId: number): void {
    if (this.running !== undefined) {
      this.port.postMessage(['failed', snapshotId, `partition ${this.partition.id} is still capturing snapshot ${this.running.snapshotId}`]);
      return;
    }
    const started = performance.now();
    const tables: Table[] = [];
    for (const table of this.partition.allTables()) {
      if (table.def.partitioned || this.partition.id === 0) tables.push(table);
    }
    const capture = PartitionCapture.begin(this.partition.id, tables);
    for (const table of tables) table.capture = capture;
    const streams: [string, number][] = [];
    for (const stream of this.partition.allStreams()) streams.push([stream.def.name, stream.nextSequence]);
    this.running = { snapshotId, capture, tables, streams, barrierMs: performance.now() - started, sliceMsMax: 0 };
    setImmediate(this.sliceBound);
  }

  private slice(): void {
    const running = this.running!;
    const started = performance.now();
    let chunk;
    try {
      chunk = running.capture.nextSlice();
      if (chunk !== undefined) {
        const frame = encodeChunkFrame(chunk);
        this.port.postMessage(['chunk', running.snapshotId, chunk.table, chunk.rows.length, frame]);
      }
    } catch (error) {
      this.finish();
      this.port.postMessage(['failed', running.snapshotId, `partition ${this.partition.id}: ${(error as Error).message}`]);
      return;
    }
    const elapsed = performance.now() - started;
    if (elapsed > running.sliceMsMax) running.sliceMsMax = elapsed;
    if (chunk !== undefined) {
      setImmediate(this.sliceBound);
      return;
    }
    this.finish();
    this.port.postMessage(['captured', running.snapshotId, running.streams, running.capture.rowCount, running.barrierMs, running.sliceMsMax]);
  }

  private finish(): void {
    for (const table of this.running!.tables) table.capture = null;
    this.running = undefined;
  }
}
