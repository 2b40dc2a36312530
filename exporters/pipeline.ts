/**
 * The export pipeline, on the main thread: committed stream rows arrive from the partitions (the
 * router's slot -1 messages, or the embedded Database after each call), are stored on disk
 * (store.ts) and are delivered in order to each stream's target (target.ts), batch after batch,
 * with retry and backoff. One *lane* per (stream, partition) holds the ordered, bounded buffer:
 *
 *   accept ──► lane: chunks [acked+1 … stored] on disk (the newest also in memory)
 *                 └─► deliver(acked+1 … last) ──ack──► acked = last (persisted), chunks removed
 *
 * Guarantees (docs/exporters.md): at least once, in sequence order per stream partition; a
 * delivery's range is persisted before it starts, so a retry (also after a crash) repeats the same
 * range and idempotent targets (PostgreSQL positions, file names) absorb it. Rows at or below a
 * lane's stored sequence are duplicates from command-log replay and are dropped. When a lane's
 * undelivered bytes pass `buffer.bytesMax`, `onHold` tells the router to hold ('wait') or refuse
 * ('fail') that partition's calls until the lane drains below `bufferResumeFraction` of it.
 * A snapshot counts only once `holdThrough` says the buffer (or the target) has every row its
 * state includes: recovery from it never regenerates those rows. A failed chunk write keeps the
 * lane's rows in memory and is retried in order (a start drops rows found past a hole: replay refills them).
 *
 * The catalog is the router's: the pipeline opens with the schema the server starts with and
 * follows every version switch (`adoptCatalog`, live or replayed in recovery), so a stream a live
 * update adds is buffered and delivered from the switch on; `checkCatalog` refuses, before the
 * switch, an update whose new streams name a target that is not configured or does not fit them.
 * Lanes restored from disk for a stream the starting schema lacks wait for the replayed switch
 * that brings it back (or are reported as a dropped stream's once recovery is over).
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Catalog, ColumnDef, TableDef } from '../engine/catalog/schema.ts';
import type { StreamPosition } from '../engine/durability/server-durability.ts';
import { ErrorCode, SluiceError, nearNames } from '../engine/errors.ts';
import { typeToString, type Value } from '../engine/types.ts';
import { assert } from '../engine/assert.ts';
import { backoffMsMaxDefault, backoffMsMinDefault, batchBytesMaxDefault, batchRowsMaxDefault, parseExportsConfig, type ExportsConfig, type OnFull } from './config.ts';
import { targetFactory, type TargetContext } from './registry.ts';
import { ExportStore } from './store.ts';
import type { EncodedRows, ExportBatch, ExportTarget, TargetConfig } from './target.ts';
import { decodeStreamChunk, decodeStreamRows, encodeStreamChunk, streamChunkStride } from '../engine/storage/stream-chunk.ts';
import './targets.ts';

/** A full lane takes calls again once its undelivered bytes fall below this share of bytesMax. */
export const bufferResumeFraction = 0.9;
/** In-memory copies of stored chunks, across lanes; past it deliveries read chunks back from LMDB. */
export const residentBytesMaxDefault = 64 * 1024 * 1024;
/** How often targets hear the watermark (file targets close days then). */
export const watermarkIntervalMs = 1000;
/**
 * An idle lane vouches for commits up to this long ago only: a transaction stamped earlier may
 * still be queued at its partition, its rows not yet here.
 */
export const watermarkDelayMsDefault = 10_000;
/** How long a snapshot waits for the export buffer to hold the stream rows its state includes. */
export const holdThroughMsDefault = 30_000;
/** On close, how long lingering rows may take to go out before the rest waits for the next start. */
export const closeFlushMsMax = 5_000;

/** A file is one delivery: files roll at these sizes and ages unless the target says otherwise. */
export const fileBatchDefaults: Partial<Record<string, number>> = { batchRowsMax: 100_000, batchBytesMax: 64 * 1024 * 1024, lingerMs: 60_000 };

export interface PipelineOptions {
  /** `<data>/export`: the buffer file and, by default, file targets' output. */
  exportDir: string;
  /** The catalog the database starts with; version switches bring later ones (adoptCatalog). */
  catalog: Catalog;
  /** The deployment file's `exports` section, raw (checked here) or already parsed. */
  config?: unknown;
  logger?: Logger;
  residentBytesMax?: number;
  watermarkDelayMs?: number;
  /** For tests: the environment secrets are read from. */
  env?: Record<string, string | undefined>;
}

/** Backpressure on one partition: set while one of its lanes is over `buffer.bytesMax`. */
export interface PartitionHold {
  readonly onFull: OnFull;
  readonly error: SluiceError;
}

export interface TargetStatistics {
  target: string;
  type: string;
  streams: string[];
  rowsPending: number;
  bytesPending: number;
  rowsDelivered: number;
  deliveries: number;
  failures: number;
  duplicatesDropped: number;
  /** Rows handed to the target again after a failed delivery. */
  rowsRedelivered: number;
  /** Of those, rows the receiver may now hold twice (ExportTarget.duplicatesPossible). */
  duplicatesPossible: number;
  lastError: string | null;
  /** Seconds since the oldest undelivered row committed; 0 when nothing is pending. */
  lagSeconds: number;
  /** Stream partitions holding back calls because their buffer is full. */
  partitionsFull: number;
}

interface Chunk {
  readonly first: number;
  readonly count: number;
  readonly timestamp: number;
  readonly bytes: number;
  /** The encoded chunk (stream-chunk.ts) while it is resident; undefined once evicted (read back from LMDB). */
  data: Uint8Array | undefined;
  /** Committed to the buffer file. A chunk whose write failed stays resident until a retry writes it. */
  written: boolean;
}

interface TargetSlot {
  readonly name: string;
  readonly type: string;
  readonly target: ExportTarget | undefined;
  readonly batchRowsMax: number;
  readonly batchBytesMax: number;
  readonly lingerMs: number;
  readonly backoffMsMin: number;
  readonly backoffMsMax: number;
  readonly lanes: Lane[];
  rowsDelivered: number;
  deliveries: number;
  failures: number;
  duplicatesDropped: number;
  rowsRedelivered: number;
  lastError: string | null;
  watermarking: boolean;
}

class Lane {
  readonly stream: string;
  readonly partition: number;
  /** Undefined for rows on disk of a stream the catalog lacks: until a version switch brings it (bind). */
  def: TableDef | undefined;
  width: number;
  slot: TargetSlot;
  readonly chunks: Chunk[] = [];
  head = 0;
  /** Last sequence stored (on disk, or on its way there). */
  stored = 0;
  /** Last sequence the target acknowledged. */
  acked = 0;
  /** Last sequence of the delivery under way (or to repeat after a restart); 0 when none. */
  inflight = 0;
  bytesPending = 0;
  full = false;
  delivering: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
  attempts = 0;
  /** Arrival time (ms) of the oldest row not yet in a delivery, for lingering. */
  lingerSince = 0;
  /**
   * Set while a chunk write to the buffer file has failed and not yet been retried successfully:
   * later chunks are then kept in memory only, so the file always holds a gapless run of rows.
   */
  writeError: string | undefined;
  writeAttempts = 0;

  constructor(stream: string, partition: number, def: TableDef | undefined, width: number, slot: TargetSlot) {
    this.stream = stream;
    this.partition = partition;
    this.def = def;
    this.width = width;
    this.slot = slot;
  }

  get rowsPending(): number {
    return this.stored - this.acked;
  }
}

export class ExportPipeline {
  readonly store: ExportStore;
  readonly config: ExportsConfig;
  /** The catalog in force: the one the database started with, then each version switched to. */
  catalog: Catalog;
  private readonly context: TargetContext;
  private readonly logger: Logger | undefined;
  private readonly lanes = new Map<string, Lane>();
  private readonly slots = new Map<string, TargetSlot>();
  private readonly residentBytesMax: number;
  private readonly watermarkDelayMs: number;
  private residentBytes = 0;
  private readonly fullLanes: number[];
  private readonly watermarkTimer: NodeJS.Timeout;
  private closed = false;
  private closing = false;
  /** Streams with a target in the catalog in force: rows of others are not this pipeline's. */
  private exported: ReadonlySet<string>;
  readonly partitionCount: number;
  /** Told when a partition's calls must wait or fail (a PartitionHold) and when they may go on. */
  onHold: ((partition: number, hold: PartitionHold | undefined) => void) | undefined;

  private constructor(options: PipelineOptions, config: ExportsConfig, store: ExportStore, partitionCount: number, context: TargetContext) {
    this.store = store;
    this.config = config;
    this.catalog = options.catalog;
    this.context = context;
    this.logger = options.logger;
    this.residentBytesMax = options.residentBytesMax ?? residentBytesMaxDefault;
    this.watermarkDelayMs = options.watermarkDelayMs ?? watermarkDelayMsDefault;
    this.partitionCount = partitionCount;
    this.exported = exportedNames(options.catalog);
    this.fullLanes = new Array<number>(partitionCount).fill(0);
    this.watermarkTimer = setInterval(() => this.watermarkAll(), watermarkIntervalMs);
    this.watermarkTimer.unref();
  }

  /**
   * Checks the config, opens the buffer, creates the targets and restores every lane from disk;
   * deliveries of what was stored before a restart start at once.
   */
  static async open(options: PipelineOptions & { partitions: number }): Promise<ExportPipeline> {
    const config = isParsed(options.config) ? options.config : parseExportsConfig(options.config, options.env);
    const streams = exportedStreams(options.catalog);
    const context: TargetContext = { exportDir: options.exportDir, catalog: options.catalog, logger: options.logger };
    const targetConfigs = new Map(config.targets.map((target) => [target.name, target]));
    // Embedded default: nothing configured, so every target a stream names is a file target.
    if (config.targets.length === 0) {
      for (const stream of streams) {
        const name = stream.exportTarget!;
        if (!targetConfigs.has(name)) targetConfigs.set(name, defaultTarget(name, options.exportDir));
      }
    }
    const built = new Map<string, ExportTarget>();
    try {
      for (const target of targetConfigs.values()) built.set(target.name, buildTarget(target, context));
    } catch (error) {
      await Promise.allSettled([...built.values()].map((target) => target.close()));
      throw error;
    }
    const store = ExportStore.open(options.exportDir);
    try {
      for (const stream of streams) recordShape(store, stream);
    } catch (error) {
      await Promise.allSettled([...built.values()].map((target) => target.close()));
      await store.close();
      throw error;
    }
    const pipeline = new ExportPipeline(options, config, store, options.partitions, context);
    for (const [name, target] of built) pipeline.addSlot(name, targetConfigs.get(name)!, target);
    for (const stream of streams) {
      if (!pipeline.slots.has(stream.exportTarget!)) pipeline.addUnconfiguredSlot(stream);
      for (let p = 0; p < options.partitions; p++) pipeline.lane(stream.name, p);
    }
    pipeline.restore();
    await pipeline.adoptTargetPositions();
    for (const lane of pipeline.lanes.values()) pipeline.pump(lane);
    return pipeline;
  }

  /**
   * Per exported stream, per partition, the sequence its next row must have at least: one past
   * what the buffer stored. Applied to the partitions at start, *after* any command-log replay
   * (replayed rows must keep their old numbers so that they are recognised as duplicates); a
   * partition only ever raises its sequence (StreamBuffer.raiseSequence).
   */
  sequenceFloors(): Record<string, number[]> {
    const floors: Record<string, number[]> = {};
    for (const lane of this.lanes.values()) {
      if (lane.def === undefined) {
        // Recovery is over (this is asked after it): no replayed version brought the stream back.
        if (lane.rowsPending > 0) this.logger?.warn({ stream: lane.stream, partition: lane.partition, rows: lane.rowsPending }, `the export buffer holds ${lane.rowsPending} rows of stream ${lane.stream}, which the schema no longer has; they are kept, not delivered`);
        continue;
      }
      const floor = (floors[lane.stream] ??= new Array<number>(this.partitionCount).fill(1));
      if (lane.partition < this.partitionCount) floor[lane.partition] = lane.stored + 1;
    }
    return floors;
  }

  /** The streams whose rows the partitions must send here. */
  get streamNames(): string[] {
    return [...this.exported];
  }

  /**
   * Before a live update switches to `catalog`: each stream it adds with an export target must
   * name a target the deployment configures (when it configures none, every name gets its default
   * file target, as at start), fit that target's settings (ExportTarget.addStream: a day column, a
   * key or topic template naming its columns) and not meet rows the buffer holds under its name
   * with other columns. Throws EXPORT_CONFIG naming the stream (`object`) and the target; changes
   * nothing the running streams use.
   */
  checkCatalog(catalog: Catalog): void {
    for (const def of this.addedStreams(catalog)) {
      const name = def.exportTarget!;
      const target = this.slots.get(name)?.target;
      if (target === undefined && this.config.targets.length > 0) {
        const configured = this.config.targets.map((config) => config.name);
        throw new SluiceError(
          ErrorCode.EXPORT_CONFIG,
          `stream ${def.name} exports to target ${name}, which the deployment does not configure (exports.targets: ${configured.join(', ')}); name a configured target, or add ${name} to exports.targets and restart before this update`,
          { object: def.name, path: ['exports', 'targets'], suggestions: nearNames(name, configured) },
        );
      }
      addStreamTo(target, def);
      const conflict = shapeConflict(this.store, def);
      if (conflict !== undefined) throw conflict;
    }
  }

  /**
   * The router switched to `catalog` (a live update, or its replay in recovery): the streams it
   * adds get their lanes and are delivered from here on, and rows the buffer kept for them from
   * before a restart go out. Throws only what `checkCatalog` refuses beforehand (in recovery: a
   * deployment changed since the update, which stops the start as a bad configuration would).
   */
  adoptCatalog(catalog: Catalog): void {
    const added = this.addedStreams(catalog);
    this.catalog = catalog;
    if (added.length === 0) return;
    const context: TargetContext = { ...this.context, catalog };
    for (const def of added) {
      const name = def.exportTarget!;
      if (!this.slots.has(name)) {
        if (this.config.targets.length === 0) {
          const config = defaultTarget(name, this.context.exportDir);
          this.addSlot(name, config, buildTarget(config, context));
        } else {
          this.addUnconfiguredSlot(def);
        }
      }
      addStreamTo(this.slots.get(name)!.target, def);
      recordShape(this.store, def);
    }
    this.exported = exportedNames(catalog);
    for (const def of added) {
      for (let p = 0; p < this.partitionCount; p++) {
        const lane = this.lane(def.name, p);
        if (lane.def === undefined) this.bind(lane, def);
        this.pump(lane);
      }
    }
    this.logger?.info({ streams: added.map((def) => def.name) }, `export pipeline: streams ${added.map((def) => `${def.name} → ${def.exportTarget}`).join(', ')} added`);
  }

  /** Exported streams of `catalog` this pipeline does not export yet. */
  private addedStreams(catalog: Catalog): TableDef[] {
    return exportedStreams(catalog).filter((def) => !this.exported.has(def.name));
  }

  /** A lane restored for a stream the starting catalog lacked, now back: it joins its target. */
  private bind(lane: Lane, def: TableDef): void {
    const old = lane.slot;
    old.lanes.splice(old.lanes.indexOf(lane), 1);
    if (old.lanes.length === 0 && old.name === droppedStreamSlot) this.slots.delete(old.name);
    lane.def = def;
    lane.width = def.columns.length;
    lane.slot = this.slots.get(def.exportTarget!)!;
    lane.slot.lanes.push(lane);
  }

  private addUnconfiguredSlot(stream: TableDef): void {
    this.logger?.warn({ stream: stream.name, target: stream.exportTarget }, `stream ${stream.name} exports to target ${stream.exportTarget}, which the deployment does not configure: its rows are kept on disk (up to exports.buffer.bytesMax per partition), then its partitions' calls ${this.config.buffer.onFull === 'wait' ? 'wait' : 'fail'}`);
    this.addSlot(stream.exportTarget!, undefined, undefined);
  }

  private addSlot(name: string, config: TargetConfig | undefined, target: ExportTarget | undefined): void {
    const defaults = config?.type === 'file' ? fileBatchDefaults : undefined;
    const setting = (key: 'batchRowsMax' | 'batchBytesMax' | 'lingerMs' | 'backoffMsMin' | 'backoffMsMax', fallback: number): number =>
      (config?.[key] as number | undefined) ?? defaults?.[key] ?? fallback;
    this.slots.set(name, {
      name,
      type: config?.type ?? 'unconfigured',
      target,
      batchRowsMax: setting('batchRowsMax', batchRowsMaxDefault),
      batchBytesMax: setting('batchBytesMax', batchBytesMaxDefault),
      lingerMs: setting('lingerMs', 0),
      backoffMsMin: setting('backoffMsMin', backoffMsMinDefault),
      backoffMsMax: setting('backoffMsMax', backoffMsMaxDefault),
      lanes: [],
      rowsDelivered: 0,
      deliveries: 0,
      failures: 0,
      duplicatesDropped: 0,
      rowsRedelivered: 0,
      lastError: target === undefined ? `target ${name} is not configured in the deployment file` : null,
      watermarking: false,
    });
  }

  private lane(stream: string, partition: number): Lane {
    const key = laneKey(stream, partition);
    let lane = this.lanes.get(key);
    if (lane === undefined) {
      const def = this.catalog.tables.get(stream);
      const targetName = def?.exportTarget ?? droppedStreamSlot;
      if (!this.slots.has(targetName)) this.addSlot(targetName, undefined, undefined);
      const slot = this.slots.get(targetName)!;
      // Rows of a stream the catalog lacks are read with the columns they were stored with.
      lane = new Lane(stream, partition, def, def?.columns.length ?? this.store.shape(stream)?.length ?? 0, slot);
      slot.lanes.push(lane);
      this.lanes.set(key, lane);
    }
    return lane;
  }

  /** Rebuilds lanes from disk: acknowledged positions, stored chunks, a delivery to repeat. */
  private restore(): void {
    for (const { stream, partition, acked } of this.store.positions()) {
      const lane = this.lane(stream, partition);
      lane.acked = acked;
      lane.stored = Math.max(lane.stored, acked);
    }
    for (const chunk of this.store.chunks()) {
      const lane = this.lane(chunk.stream, chunk.partition);
      const { timestamp, values } = decodeStreamChunk(chunk.data);
      const width = lane.width > 0 ? lane.width : 1;
      const count = Math.floor(values.length / width);
      if (chunk.first + count - 1 <= lane.acked) {
        void this.store.removeChunk(chunk.stream, chunk.partition, chunk.first);
        continue;
      }
      if (chunk.first > lane.stored + 1) {
        // A write failed before the process ended and a later one had already been issued. No
        // complete snapshot covers rows past a failed write (ServerDurability waits for
        // coveredThrough), so command-log replay brings these back in order.
        this.logger?.warn({ stream: chunk.stream, partition: chunk.partition, missing: `${lane.stored + 1}…${chunk.first - 1}` }, `the export buffer of stream ${chunk.stream} partition ${chunk.partition} lacks rows ${lane.stored + 1}…${chunk.first - 1} (a failed write); rows from ${chunk.first} on are removed and come back with the command-log replay`);
        void this.store.removeChunk(chunk.stream, chunk.partition, chunk.first);
        continue;
      }
      const resident = this.residentBytes + chunk.data.length <= this.residentBytesMax;
      if (resident) this.residentBytes += chunk.data.length;
      lane.chunks.push({ first: chunk.first, count, timestamp, bytes: chunk.data.length, data: resident ? chunk.data : undefined, written: true });
      lane.bytesPending += chunk.data.length;
      lane.stored = chunk.first + count - 1;
    }
    for (const lane of this.lanes.values()) {
      const inflight = this.store.inflight(lane.stream, lane.partition);
      if (inflight > lane.acked) lane.inflight = Math.min(inflight, lane.stored);
      lane.lingerSince = Date.now();
      this.checkFull(lane);
    }
  }

  /**
   * Targets that keep positions may hold rows of an earlier life of this database (its data
   * directory was replaced): number new rows after them, or the target would skip them as repeats.
   * A target that cannot answer now is logged; its lane keeps the local position.
   */
  private async adoptTargetPositions(): Promise<void> {
    for (const lane of this.lanes.values()) {
      const target = lane.slot.target;
      if (target?.position === undefined || lane.def === undefined) continue;
      let held: number;
      try {
        held = await target.position(lane.stream, lane.partition);
      } catch (error) {
        this.logger?.warn({ target: lane.slot.name, stream: lane.stream, partition: lane.partition, err: error }, `cannot read the position of stream ${lane.stream} partition ${lane.partition} at target ${lane.slot.name}; numbering continues from the local buffer`);
        continue;
      }
      if (held <= lane.stored) continue;
      this.logger?.warn({ target: lane.slot.name, stream: lane.stream, partition: lane.partition, held, stored: lane.stored }, `target ${lane.slot.name} holds stream ${lane.stream} partition ${lane.partition} up to sequence ${held}, past this buffer (${lane.stored}); new rows are numbered after it`);
      if (lane.rowsPending === 0) lane.acked = held;
      else lane.slot.lastError = `target holds sequences up to ${held} beyond the buffer's ${lane.stored} while rows are pending`;
      lane.stored = Math.max(lane.stored, held);
    }
  }

  /**
   * Takes one message of committed stream rows from `partition` (chunks as StreamBuffer
   * takeCommitted lays them out). Hot path: the encoded rows are stored as they came.
   */
  accept(partition: number, chunks: readonly unknown[]): void {
    if (this.closed) return;
    for (let i = 0; i < chunks.length; i += streamChunkStride) {
      const stream = chunks[i] as string;
      // A stream without a target (it feeds views or subscribers) is not this pipeline's.
      if (!this.exported.has(stream)) continue;
      const first = chunks[i + 1] as number;
      const count = chunks[i + 2] as number;
      const timestamp = chunks[i + 3] as number;
      let data = chunks[i + 4] as Uint8Array;
      const lane = this.lane(stream, partition);
      // Command-log replay regenerates rows the buffer already has: same sequence, same row.
      const skip = first <= lane.stored ? Math.min(count, lane.stored - first + 1) : 0;
      if (skip > 0) lane.slot.duplicatesDropped += skip;
      if (skip === count) continue;
      const from = first + skip;
      if (from !== lane.stored + 1) {
        this.logger?.error({ stream, partition, expected: lane.stored + 1, got: from }, `stream ${stream} partition ${partition}: rows ${lane.stored + 1}…${from - 1} never reached the export buffer (a restart without the command log?); continuing from ${from}`);
        if (lane.acked === lane.stored) {
          lane.acked = from - 1;
          // Recorded, or the next start would take the missing rows for a failed write.
          void this.store.putAcked(lane.stream, lane.partition, lane.acked);
        }
      }
      if (skip > 0) data = encodeStreamChunk(timestamp, decodeStreamChunk(data).values.slice(skip * lane.width));
      this.append(lane, from, count - skip, timestamp, data);
    }
  }

  private append(lane: Lane, first: number, count: number, timestamp: number, data: Uint8Array): void {
    const chunk: Chunk = { first, count, timestamp, bytes: data.length, data, written: false };
    if (lane.rowsPending === 0) lane.lingerSince = Date.now();
    lane.chunks.push(chunk);
    lane.stored = first + count - 1;
    lane.bytesPending += data.length;
    this.residentBytes += data.length;
    // After a failed write the retry writes this chunk too, in order.
    if (lane.writeError === undefined) this.writeChunk(lane, chunk);
    this.checkFull(lane);
    this.pump(lane);
  }

  private writeChunk(lane: Lane, chunk: Chunk): Promise<void> {
    return this.store.putChunk(lane.stream, lane.partition, chunk.first, chunk.data!).then(
      () => {
        chunk.written = true;
        // Stored: past the memory bound the newest copies go first (the oldest are sent next).
        if (this.residentBytes > this.residentBytesMax && chunk.data !== undefined) {
          chunk.data = undefined;
          this.residentBytes -= chunk.bytes;
        }
      },
      (error: Error) => this.writeFailed(lane, error),
    );
  }

  /**
   * A chunk write failed (disk full, I/O error): the rows stay in memory and may still be
   * delivered; the lane writes nothing more until a retry (with backoff) has written every
   * unwritten chunk in order. Snapshots do not complete meanwhile (coveredThrough), so the
   * command log keeps what a crash would need to bring these rows back.
   */
  private writeFailed(lane: Lane, error: Error): void {
    const first = lane.writeError === undefined;
    lane.writeError = `${new Date().toISOString()} writing to the export buffer ${this.store.file} failed: ${error.message}`;
    lane.slot.lastError = lane.writeError;
    if (!first) return;
    const retryMs = Math.min(lane.slot.backoffMsMax, lane.slot.backoffMsMin * 2 ** Math.min(lane.writeAttempts, 20));
    lane.writeAttempts++;
    this.logger?.error({ err: error, stream: lane.stream, partition: lane.partition, retryMs }, `stream ${lane.stream} partition ${lane.partition}: ${lane.writeError}; its rows are kept in memory and the write is retried`);
    setTimeout(() => this.retryWrites(lane), retryMs).unref();
  }

  private retryWrites(lane: Lane): void {
    if (this.closed) return;
    lane.writeError = undefined;
    const writes: Promise<void>[] = [];
    for (let c = lane.head; c < lane.chunks.length; c++) {
      const chunk = lane.chunks[c];
      // Rows the target acknowledged meanwhile need no copy on disk any more.
      if (!chunk.written && chunk.first + chunk.count - 1 > lane.acked) writes.push(this.writeChunk(lane, chunk));
    }
    void Promise.all(writes).then(() => {
      if (lane.writeError === undefined) lane.writeAttempts = 0;
    });
  }

  /**
   * The highest sequence up to which every row of the lane is safe without the command log:
   * acknowledged by the target, or committed to the buffer file with every row before it.
   */
  private coveredThrough(lane: Lane): number {
    let covered = lane.acked;
    for (let c = lane.head; c < lane.chunks.length && lane.chunks[c].written; c++) covered = Math.max(covered, lane.chunks[c].first + lane.chunks[c].count - 1);
    return covered;
  }

  /**
   * Resolves once, for every exported stream partition listed, every row numbered below
   * `nextSequence` is acknowledged by its target or on disk in the buffer (committed and then
   * flushed): then nothing but the buffer is needed to deliver them. A snapshot waits for this
   * before it counts (engine/durability/server-durability.ts), because recovery from it does not
   * regenerate rows numbered below its sequences, and the log before it may be deleted.
   * Rejects with EXPORT_FAILED naming the stream partition when a chunk write has failed, or when
   * the rows are still not covered after `timeoutMs`.
   */
  async holdThrough(streams: readonly StreamPosition[], timeoutMs = holdThroughMsDefault): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let missing: string | undefined;
      for (const { partition, stream, nextSequence } of streams) {
        if (!this.exported.has(stream)) continue;
        const lane = this.lanes.get(laneKey(stream, partition));
        const covered = lane === undefined ? 0 : this.coveredThrough(lane);
        if (covered >= nextSequence - 1) continue;
        missing = `the export buffer holds stream ${stream} partition ${partition} only up to sequence ${covered}, and the snapshot's state has rows up to ${nextSequence - 1}`;
        if (lane?.writeError !== undefined) throw new SluiceError(ErrorCode.EXPORT_FAILED, `${missing}: ${lane.writeError}`, { object: stream });
        break;
      }
      if (missing === undefined) break;
      if (this.closed || Date.now() > deadline) throw new SluiceError(ErrorCode.EXPORT_FAILED, `${missing} (waited ${timeoutMs} ms)`, { object: 'export buffer' });
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await this.store.synced();
  }

  // --- delivery -------------------------------------------------------------------------------

  private pump(lane: Lane): void {
    if (this.closed || lane.delivering !== undefined || lane.timer !== undefined) return;
    const slot = lane.slot;
    if (slot.target === undefined || lane.def === undefined || lane.rowsPending === 0) return;
    if (lane.inflight === 0 && lane.head >= lane.chunks.length) {
      // Sequences the buffer never held (the target's position was ahead): nothing to send.
      lane.acked = lane.stored;
      void this.store.putAcked(lane.stream, lane.partition, lane.acked);
      return;
    }
    if (lane.inflight === 0) {
      const waited = Date.now() - lane.lingerSince;
      if (slot.lingerMs > 0 && waited < slot.lingerMs && lane.rowsPending < slot.batchRowsMax && lane.bytesPending < slot.batchBytesMax) {
        lane.timer = setTimeout(() => {
          lane.timer = undefined;
          this.pump(lane);
        }, slot.lingerMs - waited);
        return;
      }
      lane.inflight = this.batchEnd(lane);
    }
    lane.delivering = this.deliver(lane).finally(() => {
      lane.delivering = undefined;
      this.pump(lane);
    });
  }

  /** Last sequence of the next batch: at most batchRowsMax rows, and whole chunks up to batchBytesMax. */
  private batchEnd(lane: Lane): number {
    const slot = lane.slot;
    let last = lane.acked;
    let bytes = 0;
    for (let c = lane.head; c < lane.chunks.length; c++) {
      const chunk = lane.chunks[c];
      if (bytes > 0 && bytes + chunk.bytes > slot.batchBytesMax) break;
      bytes += chunk.bytes;
      last = chunk.first + chunk.count - 1;
      if (last - lane.acked >= slot.batchRowsMax) return lane.acked + slot.batchRowsMax;
    }
    return last;
  }

  private async deliver(lane: Lane): Promise<void> {
    const slot = lane.slot;
    const last = lane.inflight;
    try {
      await this.store.putInflight(lane.stream, lane.partition, last);
      if (lane.attempts > 0) slot.rowsRedelivered += last - lane.acked;
      const batch = this.batch(lane, last);
      await slot.target!.deliver(batch);
    } catch (error) {
      if (this.closed) return;
      slot.failures++;
      slot.lastError = `${new Date().toISOString()} stream ${lane.stream} partition ${lane.partition}, rows ${lane.acked + 1}…${last}: ${(error as Error).message}`;
      const backoff = Math.min(slot.backoffMsMax, slot.backoffMsMin * 2 ** Math.min(lane.attempts, 20));
      lane.attempts++;
      this.logger?.warn({ target: slot.name, stream: lane.stream, partition: lane.partition, attempt: lane.attempts, retryMs: backoff, err: error }, `export to ${slot.name} failed; retrying`);
      lane.timer = setTimeout(() => {
        lane.timer = undefined;
        this.pump(lane);
      }, backoff);
      return;
    }
    lane.attempts = 0;
    slot.deliveries++;
    slot.rowsDelivered += last - lane.acked;
    slot.lastError = null;
    lane.inflight = 0;
    lane.lingerSince = Date.now();
    void this.store.removeInflight(lane.stream, lane.partition);
    this.release(lane, last);
  }

  /**
   * A target acknowledged the rows of the delivery under way up to `sequence` (ExportBatch.
   * acknowledged: one Kafka request of several): stored like a whole delivery's acknowledgement,
   * so a retry, also after a restart, sends only what follows. The delivery keeps its range.
   */
  private acknowledgedPart(lane: Lane, last: number, sequence: number): void {
    if (lane.inflight !== last || sequence <= lane.acked || sequence >= last) return;
    lane.slot.rowsDelivered += sequence - lane.acked;
    this.release(lane, sequence);
  }

  /** Rows up to `last` are acknowledged: stores the position and drops the chunks it covers. */
  private release(lane: Lane, last: number): void {
    lane.acked = last;
    void this.store.putAcked(lane.stream, lane.partition, last);
    while (lane.head < lane.chunks.length) {
      const chunk = lane.chunks[lane.head];
      if (chunk.first + chunk.count - 1 > last) break;
      lane.bytesPending -= chunk.bytes;
      if (chunk.data !== undefined) this.residentBytes -= chunk.bytes;
      void this.store.removeChunk(lane.stream, lane.partition, chunk.first);
      lane.head++;
    }
    if (lane.head > 1024 && lane.head * 2 > lane.chunks.length) {
      lane.chunks.splice(0, lane.head);
      lane.head = 0;
    }
    this.checkFull(lane);
  }

  /** The rows acked+1 … last, decoded from the lane's chunks (read back from disk if evicted). */
  private batch(lane: Lane, last: number): ExportBatch {
    const from = lane.acked + 1;
    const chunks: EncodedRows[] = [];
    let rows = 0;
    for (let c = lane.head; c < lane.chunks.length && rows < last - from + 1; c++) {
      const chunk = lane.chunks[c];
      const chunkLast = chunk.first + chunk.count - 1;
      if (chunkLast < from) continue;
      const data = chunk.data ?? this.store.getChunk(lane.stream, lane.partition, chunk.first);
      if (data === undefined) throw new SluiceError(ErrorCode.EXPORT_FAILED, `chunk ${chunk.first} of stream ${lane.stream} partition ${lane.partition} is missing from ${this.store.file}`);
      const skip = Math.max(from, chunk.first) - chunk.first;
      const count = Math.min(last, chunkLast) - chunk.first + 1 - skip;
      chunks.push({ timestamp: chunk.timestamp, data, skip, count });
      rows += count;
    }
    assert(rows === last - from + 1, 'a delivery covers its range without gaps');
    return new StoredBatch(lane.stream, lane.partition, visible(lane.def!), from, lane.width, chunks, (sequence) => this.acknowledgedPart(lane, last, sequence));
  }

  // --- backpressure ---------------------------------------------------------------------------

  private checkFull(lane: Lane): void {
    const bytesMax = this.config.buffer.bytesMax;
    if (!lane.full && lane.bytesPending > bytesMax) {
      lane.full = true;
      this.fullLanes[lane.partition] = (this.fullLanes[lane.partition] ?? 0) + 1;
      if (this.fullLanes[lane.partition] === 1) this.notifyHold(lane);
    } else if (lane.full && lane.bytesPending <= bytesMax * bufferResumeFraction) {
      lane.full = false;
      if (--this.fullLanes[lane.partition] === 0) this.onHold?.(lane.partition, undefined);
    }
  }

  private notifyHold(lane: Lane): void {
    const buffer = this.config.buffer;
    const message = `the export buffer of stream ${lane.stream} partition ${lane.partition} is full (${lane.bytesPending} bytes, ${lane.rowsPending} rows not yet delivered to target ${lane.slot.name}; bytesMax ${buffer.bytesMax}${lane.slot.lastError ? `; last error: ${lane.slot.lastError}` : ''}): calls on partition ${lane.partition} ${buffer.onFull === 'wait' ? 'wait' : 'fail'} until it drains`;
    this.logger?.warn({ stream: lane.stream, partition: lane.partition, target: lane.slot.name, onFull: buffer.onFull }, message);
    this.onHold?.(lane.partition, { onFull: buffer.onFull, error: new SluiceError(ErrorCode.EXPORT_BUFFER_FULL, message, { object: lane.stream }) });
  }

  /** The current hold of a partition, for callers that ask before running (the embedded database). */
  holdOf(partition: number): PartitionHold | undefined {
    if (this.fullLanes[partition] === 0) return undefined;
    for (const lane of this.lanes.values()) {
      if (lane.partition === partition && lane.full) {
        const buffer = this.config.buffer;
        return { onFull: buffer.onFull, error: new SluiceError(ErrorCode.EXPORT_BUFFER_FULL, `the export buffer of stream ${lane.stream} partition ${partition} is full (${lane.bytesPending} bytes not yet delivered to target ${lane.slot.name})`, { object: lane.stream }) };
      }
    }
    return undefined;
  }

  // --- watermarks, statistics, shutdown -------------------------------------------------------

  private watermarkAll(): void {
    for (const slot of this.slots.values()) void this.watermark(slot);
  }

  private async watermark(slot: TargetSlot): Promise<void> {
    const target = slot.target;
    if (target?.watermark === undefined || slot.watermarking || this.closed) return;
    let committedBefore = Date.now() - this.watermarkDelayMs;
    for (const lane of slot.lanes) {
      if (lane.rowsPending > 0 && lane.head < lane.chunks.length) committedBefore = Math.min(committedBefore, lane.chunks[lane.head].timestamp - this.watermarkDelayMs);
    }
    slot.watermarking = true;
    try {
      await target.watermark(committedBefore);
    } catch (error) {
      slot.lastError = `watermark: ${(error as Error).message}`;
    } finally {
      slot.watermarking = false;
    }
  }

  statistics(now = Date.now()): TargetStatistics[] {
    const out: TargetStatistics[] = [];
    for (const slot of this.slots.values()) {
      let rowsPending = 0;
      let bytesPending = 0;
      let oldest = Infinity;
      let partitionsFull = 0;
      const streams = new Set<string>();
      for (const lane of slot.lanes) {
        streams.add(lane.stream);
        rowsPending += lane.rowsPending;
        bytesPending += lane.bytesPending;
        if (lane.full) partitionsFull++;
        if (lane.rowsPending > 0 && lane.head < lane.chunks.length) oldest = Math.min(oldest, lane.chunks[lane.head].timestamp);
      }
      out.push({
        target: slot.name,
        type: slot.type,
        streams: [...streams],
        rowsPending,
        bytesPending,
        rowsDelivered: slot.rowsDelivered,
        deliveries: slot.deliveries,
        failures: slot.failures,
        duplicatesDropped: slot.duplicatesDropped,
        rowsRedelivered: slot.rowsRedelivered,
        duplicatesPossible: slot.target?.duplicatesPossible ?? slot.rowsRedelivered,
        lastError: slot.lastError,
        lagSeconds: oldest === Infinity ? 0 : Math.max(0, (now - oldest) / 1000),
        partitionsFull,
      });
    }
    return out;
  }

  /** The target named `name`, for end-of-day jobs. */
  target(name: string): ExportTarget | undefined {
    return this.slots.get(name)?.target;
  }

  /** Resolves once every lane has delivered everything stored so far (or `timeoutMs` passed: false). */
  async idle(timeoutMs = 30_000, skipFailing = false): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let busy = false;
      for (const lane of this.lanes.values()) {
        if (skipFailing && lane.attempts > 0) continue;
        if (lane.rowsPending > 0 && lane.slot.target !== undefined && lane.def !== undefined) busy = true;
      }
      if (!busy) return true;
      if (Date.now() > deadline) return false;
      for (const lane of this.lanes.values()) {
        if (lane.timer !== undefined && lane.inflight === 0 && lane.slot.lingerMs > 0) {
          clearTimeout(lane.timer);
          lane.timer = undefined;
          lane.lingerSince = 0;
          this.pump(lane);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /**
   * Delivers what is lingering (for at most `closeFlushMsMax`), stops delivering, waits for
   * deliveries under way, closes targets and the buffer. What was not delivered stays on disk and
   * goes out after the next start.
   */
  async close(): Promise<void> {
    if (this.closed || this.closing) return;
    this.closing = true;
    // A target that is failing is not waited for: its rows wait on disk for the next start.
    await this.idle(closeFlushMsMax, true);
    this.closed = true;
    clearInterval(this.watermarkTimer);
    const running: Promise<void>[] = [];
    for (const lane of this.lanes.values()) {
      if (lane.timer !== undefined) clearTimeout(lane.timer);
      lane.timer = undefined;
      if (lane.delivering !== undefined) running.push(lane.delivering);
    }
    await Promise.allSettled(running);
    await Promise.allSettled([...this.slots.values()].map((slot) => slot.target?.close()));
    await this.store.close();
  }
}

function laneKey(stream: string, partition: number): string {
  return `${stream}\u0000${partition}`;
}

/** Where lanes of streams the catalog lacks are counted (statistics) until a version brings them back. */
const droppedStreamSlot = '(dropped stream)';

/** The streams of `catalog` that export to a target. */
function exportedStreams(catalog: Catalog): TableDef[] {
  return [...catalog.tables.values()].filter((table) => table.kind === 'stream' && table.exportTarget !== undefined);
}

function exportedNames(catalog: Catalog): ReadonlySet<string> {
  return new Set(exportedStreams(catalog).map((table) => table.name));
}

/** With no target configured, every target a stream names is a JSON Lines file target under `<data>/export/files`. */
function defaultTarget(name: string, exportDir: string): TargetConfig {
  return { name, type: 'file', format: 'jsonl', path: path.join(exportDir, 'files', name) };
}

function buildTarget(config: TargetConfig, context: TargetContext): ExportTarget {
  const factory = targetFactory(config.type);
  if (factory === undefined) throw new SluiceError(ErrorCode.EXPORT_CONFIG, `target ${config.name}: type ${config.type} is not available in this build`, { object: config.name });
  return factory(config, context);
}

/** Tells a target of a stream added after its creation; its refusal names the stream. */
function addStreamTo(target: ExportTarget | undefined, stream: TableDef): void {
  try {
    target?.addStream?.(stream);
  } catch (error) {
    if (!(error instanceof SluiceError)) throw error;
    throw new SluiceError(error.code, `stream ${stream.name} cannot export to target ${stream.exportTarget}: ${error.summary}`, { ...error.details, object: stream.name });
  }
}

/**
 * Stored chunks are flat values read with the stream's current column count, so rows stored
 * under other columns must not be read after a schema change: refuse while any are pending (they
 * drain under the old schema first). A buffer from before shapes were recorded is taken to
 * match, as it always was.
 */
function shapeConflict(store: ExportStore, stream: TableDef): SluiceError | undefined {
  const columns = columnsOf(stream);
  const stored = store.shape(stream.name);
  if (stored === undefined || stored.join(', ') === columns.join(', ')) return undefined;
  const pending = store.rowsPending(stream.name, stored.length);
  if (pending === 0) return undefined;
  return new SluiceError(
    ErrorCode.EXPORT_CONFIG,
    `stream ${stream.name} changed while its export buffer holds ${pending} undelivered rows written with its old columns (${stored.join(', ')}); its columns are now (${columns.join(', ')}). ` +
      `Start once more with the old schema and let target ${stream.exportTarget} take those rows (@Statistics exports[].rowsPending reaches 0), then change the schema`,
    { object: stream.name },
  );
}

/** Throws shapeConflict's refusal, else records the columns the stream's rows are stored with. */
function recordShape(store: ExportStore, stream: TableDef): void {
  const conflict = shapeConflict(store, stream);
  if (conflict !== undefined) throw conflict;
  const columns = columnsOf(stream);
  if (store.shape(stream.name)?.join(', ') !== columns.join(', ')) void store.putShape(stream.name, columns);
}

function columnsOf(stream: TableDef): string[] {
  return stream.columns.map((column) => `${column.name} ${typeToString(column.type)}`);
}

function isParsed(config: unknown): config is ExportsConfig {
  return typeof config === 'object' && config !== null && 'empty' in config && 'buffer' in config && Array.isArray((config as ExportsConfig).daily);
}

/** A delivery read from the buffer: rows are decoded only if the target reads them. */
class StoredBatch implements ExportBatch {
  readonly stream: string;
  readonly partition: number;
  readonly columns: readonly ColumnDef[];
  readonly firstSequence: number;
  readonly encoded: { readonly width: number; readonly chunks: readonly EncodedRows[] };
  readonly acknowledged: (lastSequence: number) => void;
  private decoded: { rows: Value[][]; commitTimestamps: number[] } | undefined;

  constructor(stream: string, partition: number, columns: readonly ColumnDef[], firstSequence: number, width: number, chunks: EncodedRows[], acknowledged: (lastSequence: number) => void) {
    this.stream = stream;
    this.partition = partition;
    this.columns = columns;
    this.firstSequence = firstSequence;
    this.encoded = { width, chunks };
    this.acknowledged = acknowledged;
  }

  get rows(): readonly (readonly Value[])[] {
    return this.decode().rows;
  }

  get commitTimestamps(): readonly number[] {
    return this.decode().commitTimestamps;
  }

  private decode(): { rows: Value[][]; commitTimestamps: number[] } {
    if (this.decoded !== undefined) return this.decoded;
    const { width, chunks } = this.encoded;
    const rows: Value[][] = [];
    const commitTimestamps: number[] = [];
    for (const chunk of chunks) {
      for (const row of decodeStreamRows(chunk.data, width, chunk.skip, chunk.count)) {
        rows.push(row);
        commitTimestamps.push(chunk.timestamp);
      }
    }
    this.decoded = { rows, commitTimestamps };
    return this.decoded;
  }
}

const visibleCache = new WeakMap<TableDef, readonly ColumnDef[]>();

function visible(def: TableDef): readonly ColumnDef[] {
  let columns = visibleCache.get(def);
  if (columns === undefined) {
    columns = def.columns.filter((column) => !column.hidden);
    visibleCache.set(def, columns);
  }
  return columns;
}
