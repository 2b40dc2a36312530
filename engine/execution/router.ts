/**
 * The router: the server's single sequencer. Every invocation (procedure call, ad-hoc SQL, system
 * procedure) passes through `submit`, which is the one place that assigns the transaction id, the
 * timestamp and the partition; the command log (durability, a later issue) hooks in there, through
 * `InvocationLog`, before anything runs.
 *
 * Contract of `submit(name, params, sink, token)`:
 * - Exactly one `sink.deliver(token, status, payload, timestamp)` follows, possibly synchronously
 *   (validation errors, router-local system procedures, multi-partition transactions).
 * - Single-partition calls are appended to their partition's batch; batches go out as one
 *   postMessage per partition per event-loop turn (or earlier, at batchCallsMax), and the
 *   partition answers the whole batch in one message.
 * - Multi-partition calls put an MP marker into every partition's batch at this point of the
 *   order, flush, and run the procedure body here, synchronously, as the coordinator
 *   (coordinator.ts). The router thread is blocked for the transaction's duration: that is the
 *   price of one global order, and why multi-partition procedures are the slow path.
 * - Deadlines (`deadline`, performance.now() ms, 0 = none) are checked only before a call is
 *   sequenced, never after: a sequenced call is logged and must run, or replay would differ. So a
 *   call is sequenced only when its partition can take it soon; otherwise it waits here, parked
 *   (the partition has `callsSentMax` calls unanswered, is stalled in one long transaction, or is
 *   held by export backpressure), and one that outlives its deadline there is answered TIMEOUT
 *   (DEADLINE_EXPIRED) without running.
 */
import { readFileSync } from 'node:fs';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { systemProcedureTable, systemProcedures, updateApplicationProcedure, type RunningTransactionStatistics, type Statistics, type SystemInformation } from '../../procedures/system.ts';
import type { Catalog } from '../catalog/schema.ts';
import { ErrorCode, SluiceError, nearNames } from '../errors.ts';
import { ProtocolCode, Status, statusOfCode, type ErrorPayload } from '../server/protocol.ts';
import { insertValues } from '../sql/dml.ts';
import { checkParameterCount, normalizeParams, planStatement, type PlannedStatement } from '../sql/statement.ts';
import type { Value } from '../types.ts';
import { adhocProcedure } from './adhoc.ts';
import { RemoteRunner, fragmentTimeoutMsDefault } from './coordinator.ts';
import { partitionOf } from './hash.ts';
import { PartitionMonitor, multiPartitionSlot, partitionSampleIntervalMs, transactionTag } from './monitor.ts';
import { failure, invoke, procedureParams } from './invoke.ts';
import { loadApplication, type Application } from './application.ts';
import { Op, batchCallsMax, coordinatorSlot, errorFromPayload, errorPayload, type LoadVersionMessage, type PartitionStatistics } from './messages.ts';
import type { LoadedProcedure } from './procedures.ts';
import { TransactionContext } from './transaction.ts';
import type { WorkerData } from './worker.ts';

/** Calls queued for one partition (sent or waiting in the router, not yet answered) before new ones get SERVER_BUSY. */
export const partitionQueueDepthMax = 200_000;
/**
 * Calls sent to one partition and not yet answered; further calls wait in the router, where their
 * deadlines are still checked. Eight full batches keep a busy partition fed.
 */
export const partitionCallsSentMax = 8 * batchCallsMax;
/** A transaction running longer than this is reported (log line, @Statistics). */
export const longRunningMsDefault = 1000;
const adhocPlanCacheMax = 1000;
const workerUrl = new URL('./worker.ts', import.meta.url);
const packageVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Receives the outcome of a submitted call. */
export interface ResultSink {
  /**
   * `payload` is the result on SUCCESS, else an ErrorPayload. `timestamp` is the transaction's
   * timestamp, 0 when no transaction ran.
   */
  deliver(token: number, status: Status, payload: unknown, timestamp: number): void;
}

/**
 * Where durability slots in: called for every transaction that may write, in the global order,
 * before it runs. `partition` is -1 for multi-partition transactions. Ad-hoc SQL is logged as
 * procedure '@AdHoc' with the SQL text as its first parameter. Read-only calls are not logged.
 */
export interface InvocationLog {
  append(transactionId: number, timestamp: number, partition: number, procedure: string, params: readonly Value[]): void;
  /**
   * True in sync mode: an answer is held until `Router.releaseDurable` reaches its transaction
   * (or, for a read-only call, the last logged transaction before it), so nothing is acknowledged
   * before its log record is on disk.
   */
  readonly holdsAnswers: boolean;
  /**
   * A live update switched to version `epoch` (docs/live-update.md), live or in replay: records
   * from here on, the update's own record first, carry it as their catalog version.
   */
  versionSwitched?(epoch: number): void;
}

/** An application version loaded on the router and in every partition, ready to switch to. */
export interface LoadedVersion {
  readonly epoch: number;
  /** The version's whole schema (not only what the update added). */
  readonly ddl: string;
  readonly proceduresDir: string;
  readonly application: Application;
}

/** Receives a snapshot's chunks and the end of each partition's capture (durability). */
export type SnapshotMessageHandler = (partition: number, message: unknown[]) => void;

/** A system procedure answered asynchronously outside the router (e.g. @SnapshotSave). */
export type SystemHandler = (params: readonly unknown[]) => Promise<unknown>;

export interface RouterOptions {
  /** The schema's DDL text. */
  ddl: string;
  /** Folder that CREATE PROCEDURE … FROM paths are relative to. */
  proceduresDir: string;
  partitions: number;
  queueDepthMax?: number;
  log?: InvocationLog;
  /** A partition worker died (a broken invariant): the router refuses work from then on. */
  onFatal?: (error: Error) => void;
  /**
   * The partitions send every stream's committed rows (those of streams a live update adds too)
   * to `onStreamRows`: the export pipeline and subscriptions; see worker.ts.
   */
  sendStreamRows?: boolean;
  /** Receives each worker batch's committed stream rows (storage/stream.ts takeCommitted chunks). */
  onStreamRows?: (partition: number, chunks: unknown[]) => void;
  /**
   * Told the new catalog at every version switch (a live update, or its replay in recovery) once
   * the router has adopted it, before any row of a stream it adds arrives: the export pipeline
   * follows the router's catalog. Throwing fails the switch's caller after the switch happened;
   * a live update checks beforehand what could throw here (docs/live-update.md).
   */
  onVersionSwitched?: (catalog: Catalog) => void;
  /** Calls sent to a partition and not yet answered before further ones wait in the router. */
  callsSentMax?: number;
  /** A transaction running longer than this (ms) is logged and counted; default 1000. */
  longRunningMs?: number;
  /** Time (ms) a partition has to answer a multi-partition fragment; default 10 s. */
  fragmentTimeoutMs?: number;
  /**
   * Each partition thread's young generation (MB; V8's default when unset). Every row a table
   * keeps survives the scavenges of the young generation it was made in, and a scavenge pauses
   * the partition for as long as copying those rows takes: a smaller young generation means
   * shorter, more frequent pauses (docs/benchmarks.md).
   */
  youngGenerationMb?: number;
  /** Where long-running transactions and stuck partitions are reported. */
  logger?: Logger;
}

/**
 * Export backpressure on one partition (exporters/pipeline.ts): with 'wait' its calls are parked
 * in the router before they are sequenced (no transaction id yet, nothing logged) and submitted
 * in arrival order when the hold is lifted; with 'fail' they are answered SERVER_BUSY with
 * `payload`. Multi-partition transactions are not held.
 */
export interface ExportHold {
  readonly onFull: 'wait' | 'fail';
  readonly payload: ErrorPayload;
}

/** A call waiting in the router for its partition (see `enqueue`), not yet sequenced. */
interface ParkedCall {
  readonly op: number;
  readonly target: number | string;
  readonly values: readonly Value[];
  readonly stats: ProcedureStats;
  readonly sink: ResultSink;
  readonly token: number;
  readonly name: string;
  readonly readOnly: boolean;
  /** performance.now() ms after which it is answered TIMEOUT instead of running; 0 = never. */
  readonly deadline: number;
  /** When it was parked, for the TIMEOUT message. */
  readonly parkedAt: number;
}

class ProcedureStats {
  readonly name: string;
  calls = 0;
  aborts = 0;
  failures = 0;
  /** Calls answered TIMEOUT (DEADLINE_EXPIRED) without running. */
  expired = 0;
  /** Transactions that ran longer than the long-running threshold, and the longest one (ms). */
  longRunning = 0;
  longestMs = 0;
  readonly latency: RecordableHistogram = createHistogram();
  /** Latency since the last `takeLatencyWindows`; recorded only once someone asked (the console). */
  window: RecordableHistogram | undefined;

  constructor(name: string) {
    this.name = name;
  }
}

export class Router {
  readonly partitionCount: number;
  // The application version in force; a live update replaces all of them at its switch point.
  catalog: Catalog;
  ddl: string;
  proceduresDir: string;
  /** The version's number: 1 at start (durability sets the recovered one), one more per live update. */
  epoch = 1;
  readonly startedAt = Date.now();
  private procedures: Map<string, LoadedProcedure>;
  private procedureIndex: Map<string, number>;
  private readonly workers: Worker[] = [];
  private readonly mpPorts: MessagePort[] = [];
  private readonly resultPorts: MessagePort[] = [];
  private readonly flags: Int32Array;
  private readonly remote: RemoteRunner;
  private readonly mpContext: TransactionContext;
  private readonly batches: unknown[][];
  private readonly batchCalls: number[];
  private readonly queueDepth: number[];
  private readonly answered: number[];
  private readonly queueDepthMax: number;
  private readonly log: InvocationLog | undefined;
  private readonly onFatal: (error: Error) => void;
  private readonly onStreamRows: ((partition: number, chunks: unknown[]) => void) | undefined;
  private readonly onVersionSwitched: ((catalog: Catalog) => void) | undefined;
  private readonly exportHolds: (ExportHold | undefined)[];
  /** Per partition, calls waiting to be sequenced, in arrival order from `parkedHead`. */
  private readonly parked: ParkedCall[][];
  private readonly parkedHead: number[];
  private readonly callsSentMax: number;
  private readonly monitor: PartitionMonitor;
  private readonly monitorTimer: NodeJS.Timeout;
  private readonly longRunningMs: number;
  private readonly logger: Logger | undefined;
  /** Per partition, the tag of the last transaction reported as long-running (0: none). */
  private readonly longTag: number[];
  /** Per partition, the slot of a long-running transaction reported and not yet answered (-2: none), and since when it ran. */
  private readonly longSlot: number[];
  private readonly longSince: number[];
  /**
   * Per partition, the tag of the transaction it was running when it made a multi-partition
   * transaction time out (0: none): until it leaves that transaction, others fail at once.
   */
  private readonly stuckTag: number[];
  /** The multi-partition transaction this thread coordinates now; 0 between them. */
  private coordinatingTransactionId = 0;
  /** Each partition's last answered statistics: @Statistics reports a stalled partition from them. */
  private readonly lastPartitionStatistics: (PartitionStatistics | undefined)[];
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  private lastTransactionId = 0;
  private lastTimestamp = 0;
  private readonly adhocPlans = new Map<string, PlannedStatement>();
  private readonly stats = new Map<string, ProcedureStats>();
  private broken: Error | undefined;
  private closed = false;
  // Durability (sync mode): answers wait in per-partition FIFOs (index partitionCount: the
  // multi-partition ones) until the log is durable up to their slot's transaction.
  private readonly holdAnswers: boolean;
  private durableTransactionId = 0;
  private lastLoggedId = 0;
  private readonly held: number[][];
  private readonly heldHead: number[];
  private readonly snapshotPorts: MessagePort[] = [];
  private snapshotHandler: SnapshotMessageHandler | undefined;
  private readonly systemHandlers = new Map<string, SystemHandler>();
  private idleWaiters: (() => void)[] = [];
  private readonly brokenListeners = new Set<(error: Error) => void>();

  // Pending calls, by slot: parallel arrays and a free list, so a call allocates no record.
  private readonly slotSink: (ResultSink | undefined)[] = [];
  private readonly slotToken: number[] = [];
  private readonly slotTimestamp: number[] = [];
  private readonly slotTransactionId: number[] = [];
  private readonly slotStart: number[] = [];
  private readonly slotStats: (ProcedureStats | undefined)[] = [];
  private readonly slotPartition: number[] = [];
  private readonly slotDurableId: number[] = [];
  private readonly slotStatus: Status[] = [];
  private readonly slotPayload: unknown[] = [];
  /** 1 while the slot's answer waits in `held`. */
  private readonly slotHeld: number[] = [];
  private readonly freeSlots: number[] = [];

  private constructor(options: RouterOptions, catalog: Catalog, procedures: Map<string, LoadedProcedure>) {
    this.partitionCount = options.partitions;
    this.catalog = catalog;
    this.ddl = options.ddl;
    this.proceduresDir = options.proceduresDir;
    this.procedures = procedures;
    this.procedureIndex = new Map([...procedures.keys()].map((name, index) => [name, index]));
    this.queueDepthMax = options.queueDepthMax ?? partitionQueueDepthMax;
    this.log = options.log;
    this.holdAnswers = options.log?.holdsAnswers === true;
    this.held = Array.from({ length: options.partitions + 1 }, () => []);
    this.heldHead = new Array<number>(options.partitions + 1).fill(0);
    this.onFatal = options.onFatal ?? (() => {});
    this.onStreamRows = options.onStreamRows;
    this.onVersionSwitched = options.onVersionSwitched;
    this.exportHolds = new Array<ExportHold | undefined>(options.partitions).fill(undefined);
    this.parked = Array.from({ length: options.partitions }, () => []);
    this.parkedHead = new Array<number>(options.partitions).fill(0);
    this.callsSentMax = options.callsSentMax ?? partitionCallsSentMax;
    this.longRunningMs = options.longRunningMs ?? longRunningMsDefault;
    this.logger = options.logger;
    this.longTag = new Array<number>(options.partitions).fill(0);
    this.longSlot = new Array<number>(options.partitions).fill(-2);
    this.longSince = new Array<number>(options.partitions).fill(0);
    this.stuckTag = new Array<number>(options.partitions).fill(0);
    this.lastPartitionStatistics = new Array<PartitionStatistics | undefined>(options.partitions).fill(undefined);
    this.monitor = new PartitionMonitor(options.partitions);
    this.monitorTimer = setInterval(() => this.sample(), partitionSampleIntervalMs);
    this.monitorTimer.unref();
    this.flags = new Int32Array(new SharedArrayBuffer(4 * (options.partitions + 1)));
    this.batches = Array.from({ length: options.partitions }, () => []);
    this.batchCalls = new Array<number>(options.partitions).fill(0);
    this.queueDepth = new Array<number>(options.partitions).fill(0);
    this.answered = new Array<number>(options.partitions).fill(0);
    for (const name of procedures.keys()) this.stats.set(name, new ProcedureStats(name));
    for (const entry of systemProcedures) this.stats.set(entry.name, new ProcedureStats(entry.name));
    const ports: MessagePort[] = [];
    for (let p = 0; p < options.partitions; p++) {
      const channel = new MessageChannel();
      ports.push(channel.port1);
      this.mpPorts.push(channel.port2);
    }
    this.remote = new RemoteRunner(ports, this.flags, (partition) => this.describeRunning(partition));
    this.remote.fragmentTimeoutMs = options.fragmentTimeoutMs ?? fragmentTimeoutMsDefault;
    this.mpContext = new TransactionContext(this.remote, -1);
  }

  /** Loads the schema and procedures here and in one worker per partition; resolves when all are ready. */
  static async open(options: RouterOptions): Promise<Router> {
    const partitions = options.partitions;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > 1024) {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, `partitions must be an integer from 1 to 1024, got ${partitions}`);
    }
    checkSetting('callsSentMax', options.callsSentMax, 1, partitionQueueDepthMax);
    checkSetting('longRunningMs', options.longRunningMs, partitionSampleIntervalMs, 86_400_000);
    checkSetting('fragmentTimeoutMs', options.fragmentTimeoutMs, 100, 86_400_000);
    checkSetting('partitionYoungGenerationMb', options.youngGenerationMb, 1, 4096);
    const { catalog, procedures } = await loadApplication(options.ddl, options.proceduresDir, partitions);
    const router = new Router(options, catalog, procedures);
    await router.startWorkers(options);
    return router;
  }

  private async startWorkers(options: RouterOptions): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let p = 0; p < this.partitionCount; p++) {
      const data: WorkerData = {
        ddl: options.ddl,
        proceduresDir: options.proceduresDir,
        partition: p,
        partitionCount: this.partitionCount,
        flags: this.flags.buffer as SharedArrayBuffer,
        mpPort: this.mpPorts[p],
        resultsPort: undefined as unknown as MessagePort,
        snapshotPort: undefined as unknown as MessagePort,
        running: this.monitor.buffer,
        sendStreamRows: options.sendStreamRows,
      };
      const results = new MessageChannel();
      this.resultPorts.push(results.port1);
      data.resultsPort = results.port2;
      const snapshots = new MessageChannel();
      this.snapshotPorts.push(snapshots.port1);
      data.snapshotPort = snapshots.port2;
      snapshots.port1.on('message', (message: unknown[]) => this.snapshotHandler?.(p, message));
      snapshots.port1.unref();
      const worker = new Worker(workerUrl, { workerData: data, transferList: [this.mpPorts[p], results.port2, snapshots.port2], name: `sluice-partition-${p}`, resourceLimits: options.youngGenerationMb === undefined ? undefined : { maxYoungGenerationSizeMb: options.youngGenerationMb } });
      this.workers.push(worker);
      ready.push(
        new Promise<void>((resolve, reject) => {
          const onStartError = (error: Error) => reject(error);
          worker.once('error', onStartError);
          worker.once('message', (message) => {
            worker.off('error', onStartError);
            if (message !== 'ready') {
              reject(new SluiceError(ErrorCode.INTERNAL, `partition ${p} sent ${String(message)} instead of ready`));
              return;
            }
            this.resultPorts[p].on('message', (results: unknown[]) => this.onResults(p, results));
            worker.on('message', (message: unknown[]) => this.onVersionLoaded(p, message));
            worker.on('error', (error: Error) => this.fail(new SluiceError(ErrorCode.INTERNAL, `partition ${p} crashed: ${error.message}`)));
            worker.on('exit', (code) => {
              if (!this.closed) this.fail(new SluiceError(ErrorCode.INTERNAL, `partition ${p} exited with code ${code}`));
            });
            resolve();
          });
        }),
      );
    }
    try {
      await Promise.all(ready);
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  get procedureNames(): string[] {
    return [...this.procedures.keys()];
  }

  /** The files TypeScript procedures were loaded from (real paths): their code's version. */
  get procedureFiles(): string[] {
    const files: string[] = [];
    for (const procedure of this.procedures.values()) if (procedure.def.source.kind === 'file') files.push(procedure.source);
    return files;
  }

  /** A loaded procedure (importers check their mappings against its parameters). */
  procedure(name: string): LoadedProcedure | undefined {
    return this.procedures.get(name);
  }

  /** Calls queued for each partition (sent or waiting here), and the depth at which SERVER_BUSY starts: importers pause before it. */
  get queueDepths(): readonly number[] {
    return this.queueDepth;
  }

  get queueDepthLimit(): number {
    return this.queueDepthMax;
  }

  /** Extra sections of @Statistics (e.g. 'importers'), computed when it is called. */
  readonly statisticsSections = new Map<string, () => unknown>();

  /**
   * Submits one call; see the contract at the top of this file. `deadline` (performance.now()
   * ms, 0 = none): a call still waiting to be sequenced then is answered TIMEOUT and never runs.
   */
  submit(name: string, params: readonly unknown[], sink: ResultSink, token: number, deadline = 0): void {
    if (this.broken !== undefined || this.closed) {
      sink.deliver(token, Status.UNEXPECTED_FAILURE, errorPayload(this.broken ?? new SluiceError(ErrorCode.CLOSED, 'the server is shutting down')), 0);
      return;
    }
    const procedure = this.procedures.get(name);
    if (procedure === undefined) {
      this.submitSystem(name, params, sink, token, deadline);
      return;
    }
    const stats = this.stats.get(name)!;
    let values: Value[];
    try {
      values = procedureParams(procedure, params);
    } catch (error) {
      this.rejectCall(stats, sink, token, error);
      return;
    }
    if (procedure.partitionParameter === undefined) {
      this.runMulti(procedure, values, stats, sink, token);
      return;
    }
    const partition = partitionOf(values[procedure.partitionParameter], this.partitionCount);
    this.enqueue(Op.CALL, this.procedureIndex.get(name)!, partition, values, stats, sink, token, name, procedure.readOnly, deadline);
  }

  /** Convenience for in-process callers and tests: resolves with the result or rejects with a SluiceError. */
  call(name: string, ...params: unknown[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.submit(name, params, {
        deliver(_token, status, payload) {
          if (status === Status.SUCCESS) resolve(payload);
          else reject(new SluiceError((payload as ErrorPayload)[0] as ErrorCode, (payload as ErrorPayload)[1]));
        },
      }, 0);
    });
  }

  // --- single-partition path ------------------------------------------------------------------

  /**
   * Admits a single-partition call: sequences and batches it now, or parks it here when its
   * partition cannot take it soon (export hold, `callsSentMax` sent, stalled in a long
   * transaction, or older calls parked ahead of it). Parked calls are sequenced in arrival order
   * by `pumpParked` as the partition answers, or expire (`expireParked`).
   */
  private enqueue(op: number, target: number | string, partition: number, values: readonly Value[], stats: ProcedureStats, sink: ResultSink, token: number, name: string, readOnly: boolean, deadline: number): void {
    const hold = this.exportHolds[partition];
    if (hold !== undefined && hold.onFull === 'fail') {
      stats.calls++;
      stats.failures++;
      sink.deliver(token, Status.SERVER_BUSY, hold.payload, 0);
      return;
    }
    const depth = this.queueDepth[partition];
    if (depth >= this.queueDepthMax) {
      stats.calls++;
      stats.failures++;
      sink.deliver(token, Status.SERVER_BUSY, hold?.payload ?? [ProtocolCode.SERVER_BUSY, `partition ${partition} has ${depth} calls queued; retry later`, null], 0);
      return;
    }
    const parked = this.parked[partition];
    if (hold !== undefined || this.parkedHead[partition] < parked.length || (this.monitor.stalled[partition] && this.monitor.refresh(partition)) || depth >= this.callsSentMax) {
      this.queueDepth[partition]++;
      parked.push({ op, target, values, stats, sink, token, name, readOnly, deadline, parkedAt: performance.now() });
      return;
    }
    const transactionId = ++this.lastTransactionId;
    const timestamp = this.nextTimestamp();
    this.enqueueAt(op, target, partition, values, stats, sink, token, name, transactionId, timestamp, this.log !== undefined && !readOnly);
  }

  /** Calls waiting in the router for `partition`. */
  private parkedCount(partition: number): number {
    return this.parked[partition].length - this.parkedHead[partition];
  }

  /**
   * Sequences parked calls of `partition` while it can take them, in arrival order; one past its
   * deadline is answered TIMEOUT instead (it was never sequenced, so nothing was logged).
   */
  private pumpParked(partition: number): void {
    const parked = this.parked[partition];
    let head = this.parkedHead[partition];
    if (head === parked.length || this.exportHolds[partition] !== undefined) return;
    const now = performance.now();
    while (head < parked.length && !this.monitor.stalled[partition] && this.queueDepth[partition] - (parked.length - head) < this.callsSentMax) {
      const call = parked[head++];
      this.queueDepth[partition]--;
      if (call.deadline !== 0 && call.deadline <= now) {
        this.expire(call, partition, now);
        continue;
      }
      const transactionId = ++this.lastTransactionId;
      this.enqueueAt(call.op, call.target, partition, call.values, call.stats, call.sink, call.token, call.name, transactionId, this.nextTimestamp(), this.log !== undefined && !call.readOnly);
    }
    if (head === parked.length) {
      parked.length = 0;
      head = 0;
    } else if (head > 1024 && head * 2 > parked.length) {
      parked.splice(0, head);
      head = 0;
    }
    this.parkedHead[partition] = head;
  }

  /** Answers parked calls of `partition` whose deadline has passed with TIMEOUT, keeping the others in order. */
  private expireParked(partition: number, now: number): void {
    const parked = this.parked[partition];
    let kept = this.parkedHead[partition];
    for (let i = kept; i < parked.length; i++) {
      const call = parked[i];
      if (call.deadline !== 0 && call.deadline <= now) {
        this.queueDepth[partition]--;
        this.expire(call, partition, now);
      } else {
        parked[kept++] = call;
      }
    }
    parked.length = kept;
  }

  private expire(call: ParkedCall, partition: number, now: number): void {
    call.stats.calls++;
    call.stats.expired++;
    const waitedMs = Math.round(now - call.parkedAt);
    const message = `call ${call.name} waited ${waitedMs} ms for partition ${partition}, past its deadline, and did not run: nothing changed`;
    call.sink.deliver(call.token, Status.TIMEOUT, [ErrorCode.DEADLINE_EXPIRED, message, { object: call.name }], 0);
  }

  /** The single-partition path with the transaction id and timestamp given (also replay's path). */
  private enqueueAt(op: number, target: number | string, partition: number, values: readonly Value[], stats: ProcedureStats, sink: ResultSink, token: number, name: string, transactionId: number, timestamp: number, logged: boolean): void {
    if (logged) this.appendLog(transactionId, timestamp, partition, name, op === Op.ADHOC ? [target as string, ...values] : values);
    const slot = this.allocateSlot(sink, token, timestamp, stats, partition);
    this.slotDurableId[slot] = this.lastLoggedId;
    this.slotTransactionId[slot] = transactionId;
    this.queueDepth[partition]++;
    const batch = this.batches[partition];
    batch.push(op, slot, target, transactionId, timestamp, values.length);
    for (let i = 0; i < values.length; i++) batch.push(values[i]);
    if (++this.batchCalls[partition] >= batchCallsMax) this.flushPartition(partition);
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  /** Sends every non-empty batch: one message per partition. */
  flush(): void {
    this.flushScheduled = false;
    for (let p = 0; p < this.partitionCount; p++) if (this.batches[p].length > 0) this.flushPartition(p);
  }

  /** Sets or lifts export backpressure on a partition (see ExportHold); lifting submits what waited. */
  setExportHold(partition: number, hold: ExportHold | undefined): void {
    this.exportHolds[partition] = hold;
    // A broken or closed router has answered every parked call already (failPending).
    if (hold === undefined && this.broken === undefined && !this.closed) this.pumpParked(partition);
  }

  private flushPartition(partition: number): void {
    // postMessage copies the batch synchronously, so the array is reused.
    this.workers[partition].postMessage(this.batches[partition]);
    this.batches[partition].length = 0;
    this.batchCalls[partition] = 0;
  }

  private onResults(partition: number, results: unknown[]): void {
    const now = performance.now();
    for (let i = 0; i < results.length; i += 3) {
      const slot = results[i] as number;
      if (slot < 0) {
        this.onStreamRows?.(partition, results[i + 1] as unknown[]);
        continue;
      }
      const ok = results[i + 1] === 1;
      const payload = results[i + 2];
      this.queueDepth[partition]--;
      this.answered[partition]++;
      if (slot === this.longSlot[partition]) this.longRunningEnded(partition, slot, now);
      this.complete(slot, ok ? Status.SUCCESS : statusOfCode((payload as ErrorPayload)[0]), payload, now);
    }
    if (this.monitor.stalled[partition]) this.monitor.refresh(partition);
    if (this.parkedHead[partition] < this.parked[partition].length) this.pumpParked(partition);
    if (this.idleWaiters.length > 0 && this.isIdle()) this.wakeIdle();
  }

  /**
   * Takes the answers the partitions sent while the router was blocked in a multi-partition
   * transaction, so they are delivered (and counted) before the transaction's own answer.
   */
  private drainResults(): void {
    for (let p = 0; p < this.resultPorts.length; p++) {
      for (let received = receiveMessageOnPort(this.resultPorts[p]); received !== undefined; received = receiveMessageOnPort(this.resultPorts[p])) {
        this.onResults(p, received.message as unknown[]);
      }
    }
  }

  private complete(slot: number, status: Status, payload: unknown, now: number): void {
    if (this.holdAnswers && this.broken !== undefined && this.slotDurableId[slot] > this.durableTransactionId) {
      // The log failed before this call's record was on disk: never acknowledge it.
      this.deliverSlot(slot, Status.UNEXPECTED_FAILURE, errorPayload(this.broken), now);
      return;
    }
    if (this.holdAnswers && this.slotDurableId[slot] > this.durableTransactionId && !this.closed) {
      this.slotStatus[slot] = status;
      this.slotPayload[slot] = payload;
      const queue = this.slotPartition[slot] < 0 ? this.partitionCount : this.slotPartition[slot];
      this.held[queue].push(slot);
      this.slotHeld[slot] = 1;
      return;
    }
    this.deliverSlot(slot, status, payload, now);
  }

  private deliverSlot(slot: number, status: Status, payload: unknown, now: number): void {
    const sink = this.slotSink[slot]!;
    const stats = this.slotStats[slot]!;
    const token = this.slotToken[slot];
    const timestamp = this.slotTimestamp[slot];
    stats.calls++;
    if (status === Status.USER_ABORT) stats.aborts++;
    else if (status !== Status.SUCCESS) stats.failures++;
    const micros = Math.round((now - this.slotStart[slot]) * 1000);
    stats.latency.record(micros > 0 ? micros : 1);
    stats.window?.record(micros > 0 ? micros : 1);
    this.slotSink[slot] = undefined;
    this.slotStats[slot] = undefined;
    this.slotPayload[slot] = undefined;
    this.slotHeld[slot] = 0;
    this.freeSlots.push(slot);
    sink.deliver(token, status, payload, timestamp);
  }

  // --- durability -----------------------------------------------------------------------------

  private appendLog(transactionId: number, timestamp: number, partition: number, name: string, values: readonly Value[]): void {
    this.lastLoggedId = transactionId;
    try {
      this.log!.append(transactionId, timestamp, partition, name, values);
    } catch (error) {
      // The log refuses records after a failed write; the call still runs but, marked with its
      // id, is answered with the failure (complete), and every later call is refused.
      this.failDurability(error as Error);
    }
  }

  /**
   * The command log is durable up to `transactionId`: answers held for it and earlier go out, in
   * each partition's order. Called once per commit group, so the cost is per group, not per call.
   */
  releaseDurable(transactionId: number): void {
    if (transactionId <= this.durableTransactionId) return;
    this.durableTransactionId = transactionId;
    const now = performance.now();
    for (let q = 0; q < this.held.length; q++) {
      const queue = this.held[q];
      let head = this.heldHead[q];
      while (head < queue.length && this.slotDurableId[queue[head]] <= transactionId) {
        const slot = queue[head++];
        this.deliverSlot(slot, this.slotStatus[slot], this.slotPayload[slot], now);
      }
      if (head === queue.length) {
        queue.length = 0;
        head = 0;
      }
      this.heldHead[q] = head;
    }
  }

  /** Calls answered by their partition but waiting for the log (sync mode). */
  get heldAnswers(): number {
    let count = 0;
    for (let q = 0; q < this.held.length; q++) count += this.held[q].length - this.heldHead[q];
    return count;
  }

  /**
   * The command log failed: answers not yet durable are failed with `error` (their transactions
   * may or may not survive a restart), and every later call is refused. Nothing unsure is acked.
   */
  failDurability(error: Error): void {
    if (this.broken !== undefined || this.closed) return;
    this.broken = error;
    // Held answers fail now; calls still at their partitions fail as they are answered (complete).
    const payload = errorPayload(error);
    const now = performance.now();
    for (let q = 0; q < this.held.length; q++) {
      const queue = this.held[q];
      for (let i = this.heldHead[q]; i < queue.length; i++) this.deliverSlot(queue[i], Status.UNEXPECTED_FAILURE, payload, now);
      queue.length = 0;
      this.heldHead[q] = 0;
    }
    this.notifyBroken(error);
    this.onFatal(error);
  }

  /** The last transaction id and timestamp handed out: recovery continues after them. */
  get position(): { transactionId: number; timestamp: number } {
    return { transactionId: this.lastTransactionId, timestamp: this.lastTimestamp };
  }

  /** Recovery: the next transaction id and timestamp come after these (never before). */
  resumeAfter(transactionId: number, timestamp: number): void {
    if (transactionId > this.lastTransactionId) this.lastTransactionId = transactionId;
    if (transactionId > this.lastLoggedId) this.lastLoggedId = transactionId;
    if (transactionId > this.durableTransactionId) this.durableTransactionId = transactionId;
    if (timestamp > this.lastTimestamp) this.lastTimestamp = timestamp;
  }

  /**
   * Runs a logged invocation again with its own transaction id and timestamp (recovery), through
   * the same batches and partitions as live calls, without logging it. Single-partition records
   * are queued (answers arrive later: await `whenIdle`); multi-partition ones run now.
   */
  replay(transactionId: number, timestamp: number, partition: number, procedureName: string, params: readonly Value[], sink: ResultSink): void {
    if (this.broken !== undefined) throw this.broken;
    this.resumeAfter(transactionId, timestamp);
    let procedure: LoadedProcedure;
    let values: Value[];
    let target: number | string;
    let op: number = Op.CALL;
    if (procedureName === '@AdHoc') {
      const statement = this.adhocPlan(params[0] as string);
      values = params.slice(1) as Value[];
      procedure = adhocProcedure(statement);
      target = statement.sql;
      op = Op.ADHOC;
    } else {
      const found = this.procedures.get(procedureName);
      if (found === undefined) throw new SluiceError(ErrorCode.UNKNOWN_PROCEDURE, `the log names procedure ${procedureName}, which this schema does not have`, { object: procedureName });
      procedure = found;
      values = params as Value[];
      target = this.procedureIndex.get(procedureName)!;
    }
    const stats = this.stats.get(procedureName)!;
    if (partition < 0) {
      this.runMultiAt(procedure, values, stats, sink, 0, transactionId, timestamp, true);
      return;
    }
    if (partition >= this.partitionCount) throw new SluiceError(ErrorCode.LOG_CORRUPT, `the log puts transaction ${transactionId} on partition ${partition}, but there are ${this.partitionCount}`);
    this.enqueueAt(op, target, partition, values, stats, sink, 0, procedureName, transactionId, timestamp, false);
  }

  /** Calls queued at the partitions and not yet answered. */
  private isIdle(): boolean {
    for (let p = 0; p < this.partitionCount; p++) if (this.queueDepth[p] > 0) return false;
    return true;
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves when every queued call has been answered by its partition (rejects if the router breaks). */
  whenIdle(): Promise<void> {
    this.flush();
    if (this.broken !== undefined) return Promise.reject(this.broken);
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.idleWaiters.push(() => (this.broken !== undefined ? reject(this.broken) : resolve()));
    });
  }

  /**
   * Sends `message` to every partition at this point of the global order (after every call
   * submitted so far, before every later one), like an MP marker but without stopping them.
   * Durability uses it for snapshots (Op.SNAPSHOT) and to load a snapshot (Op.LOAD …).
   */
  broadcastOp(entries: (partition: number) => readonly unknown[]): void {
    for (let p = 0; p < this.partitionCount; p++) {
      const entry = entries(p);
      for (let i = 0; i < entry.length; i++) this.batches[p].push(entry[i]);
    }
    this.flush();
  }

  /** Sends one entry to one partition's queue, in order with its calls. */
  sendOp(partition: number, entry: readonly unknown[]): void {
    const batch = this.batches[partition];
    for (let i = 0; i < entry.length; i++) batch.push(entry[i]);
    this.flushPartition(partition);
  }

  /**
   * Calls `listener` once if the router breaks (a partition died, the log failed), at once if it
   * already has. Returns the function that removes it.
   */
  onBroken(listener: (error: Error) => void): () => void {
    if (this.broken !== undefined) {
      listener(this.broken);
      return () => {};
    }
    this.brokenListeners.add(listener);
    return () => this.brokenListeners.delete(listener);
  }

  private notifyBroken(error: Error): void {
    const listeners = [...this.brokenListeners];
    this.brokenListeners.clear();
    for (const listener of listeners) listener(error);
  }

  set onSnapshotMessage(handler: SnapshotMessageHandler | undefined) {
    this.snapshotHandler = handler;
  }

  /** Answers system procedure `name` (which must be in procedures/system.ts) with `handler`. */
  setSystemHandler(name: string, handler: SystemHandler): void {
    this.systemHandlers.set(name, handler);
  }

  private allocateSlot(sink: ResultSink, token: number, timestamp: number, stats: ProcedureStats, partition: number): number {
    const slot = this.freeSlots.length > 0 ? this.freeSlots.pop()! : this.slotSink.length;
    this.slotSink[slot] = sink;
    this.slotToken[slot] = token;
    this.slotTimestamp[slot] = timestamp;
    this.slotStart[slot] = performance.now();
    this.slotStats[slot] = stats;
    this.slotPartition[slot] = partition;
    this.slotDurableId[slot] = 0;
    this.slotHeld[slot] = 0;
    return slot;
  }

  // --- multi-partition path -------------------------------------------------------------------

  private runMulti(procedure: LoadedProcedure, values: Value[], stats: ProcedureStats, sink: ResultSink, token: number): void {
    const stuck = this.stuckPartition();
    if (stuck !== undefined) {
      // Fails before it is sequenced: no transaction id, nothing logged, no partition stopped.
      this.rejectCall(stats, sink, token, stuck);
      return;
    }
    const transactionId = ++this.lastTransactionId;
    const timestamp = this.nextTimestamp();
    this.runMultiAt(procedure, values, stats, sink, token, transactionId, timestamp, false);
  }

  /**
   * Runs a multi-partition transaction at its place in the order. It is logged after it ran, and
   * only if it committed: nothing else is sequenced meanwhile (this thread is blocked), so the
   * record still lands at its place in the order, and a rolled-back transaction, which changed
   * nothing, needs no record. That matters for a fragment timeout: it depends on timing, which a
   * replay would not reproduce. Replay waits for every fragment without a timeout.
   */
  private runMultiAt(procedure: LoadedProcedure, values: Value[], stats: ProcedureStats, sink: ResultSink, token: number, transactionId: number, timestamp: number, replaying: boolean): void {
    const start = performance.now();
    this.coordinatingTransactionId = transactionId;
    this.placeMarkers(transactionId, timestamp);
    const fragmentTimeoutMs = this.remote.fragmentTimeoutMs;
    if (replaying) this.remote.fragmentTimeoutMs = Infinity;
    let status: Status = Status.SUCCESS;
    let payload: unknown;
    try {
      payload = invoke(procedure, this.remote, this.mpContext, values, transactionId, timestamp);
    } catch (error) {
      payload = errorPayload(failure(error, procedure));
      status = statusOfCode((payload as ErrorPayload)[0]);
    } finally {
      this.remote.fragmentTimeoutMs = fragmentTimeoutMs;
    }
    const timeout = this.remote.timeout;
    if (timeout !== undefined) {
      // The body may have caught the error; the transaction fails regardless (end rolls it back).
      payload = errorPayload(timeout);
      status = Status.TIMEOUT;
      this.reportStuck(timeout, transactionId, procedure.name);
    }
    this.remote.end(status === Status.SUCCESS);
    // A later call's "still stuck" message must not mistake this transaction for its own.
    this.coordinatingTransactionId = 0;
    if (!replaying && status === Status.SUCCESS && this.log !== undefined && !procedure.readOnly) {
      const statement = procedure.statement;
      // Ad-hoc SQL has no procedure to name: log its text, as the single-partition path does.
      if (procedure.name === '@AdHoc' && statement !== undefined) this.appendLog(transactionId, timestamp, -1, '@AdHoc', [statement.sql, ...values]);
      else this.appendLog(transactionId, timestamp, -1, procedure.name, values);
    }
    this.noteMultiPartitionDuration(stats, procedure.name, transactionId, performance.now() - start);
    this.drainResults();
    if (this.holdAnswers && this.lastLoggedId > this.durableTransactionId) {
      // Held like a partition's answer, in the multi-partition FIFO, until the log is durable.
      const slot = this.allocateSlot(sink, token, timestamp, stats, -1);
      this.slotStart[slot] = start;
      this.slotDurableId[slot] = this.lastLoggedId;
      this.complete(slot, status, payload, performance.now());
      return;
    }
    this.finishDirect(stats, start, status, payload, sink, token, timestamp);
  }

  /** Puts an MP marker into the queue of every partition (or those listed) at this point of the order, and sends it. */
  private placeMarkers(transactionId: number, timestamp: number, partitions?: readonly number[]): void {
    if (partitions === undefined) for (let p = 0; p < this.partitionCount; p++) this.batches[p].push(Op.MP, transactionId, timestamp);
    else for (const p of partitions) this.batches[p].push(Op.MP, transactionId, timestamp);
    this.flush();
  }

  private finishDirect(stats: ProcedureStats, start: number, status: Status, payload: unknown, sink: ResultSink, token: number, timestamp: number): void {
    stats.calls++;
    if (status === Status.USER_ABORT) stats.aborts++;
    else if (status !== Status.SUCCESS) stats.failures++;
    const micros = Math.round((performance.now() - start) * 1000);
    stats.latency.record(micros > 0 ? micros : 1);
    stats.window?.record(micros > 0 ? micros : 1);
    sink.deliver(token, status, payload, timestamp);
  }

  private rejectCall(stats: ProcedureStats, sink: ResultSink, token: number, error: unknown): void {
    stats.calls++;
    stats.failures++;
    const payload = errorPayload(error);
    sink.deliver(token, statusOfCode(payload[0]), payload, 0);
  }

  // --- system procedures and ad-hoc SQL -------------------------------------------------------

  private submitSystem(name: string, params: readonly unknown[], sink: ResultSink, token: number, deadline: number): void {
    const entry = systemProcedureTable.get(name);
    if (entry === undefined) {
      const error = new SluiceError(ErrorCode.UNKNOWN_PROCEDURE, `unknown procedure ${name}`, {
        object: name,
        suggestions: nearNames(name, [...this.procedures.keys(), ...systemProcedureTable.keys()]),
      });
      sink.deliver(token, Status.FAILURE, errorPayload(error), 0);
      return;
    }
    const stats = this.stats.get(name)!;
    const start = performance.now();
    switch (name) {
      case '@Ping':
        this.finishDirect(stats, start, Status.SUCCESS, 0, sink, token, 0);
        return;
      case '@SystemInformation':
        this.finishDirect(stats, start, Status.SUCCESS, this.systemInformation(), sink, token, 0);
        return;
      case '@Statistics': {
        // What runs now is read before the markers, which would stop it; a partition busy in one
        // transaction gets no marker (it would keep the router waiting) and is reported from its
        // last answer.
        const running = this.runningTransactions(start);
        const answering: number[] = [];
        for (let p = 0; p < this.partitionCount; p++) if (running[p] === null && !this.isStuck(p)) answering.push(p);
        const transactionId = ++this.lastTransactionId;
        const timestamp = this.nextTimestamp();
        this.placeMarkers(transactionId, timestamp, answering);
        let partitions;
        try {
          partitions = this.remote.statistics(answering);
        } finally {
          this.remote.end(true, answering);
        }
        // Every partition answered its calls before reaching the marker: count them all.
        this.drainResults();
        this.finishDirect(stats, start, Status.SUCCESS, this.statistics(partitions, running), sink, token, timestamp);
        return;
      }
      case '@AdHoc':
        this.submitAdhoc(params, stats, sink, token, deadline);
        return;
    }
    const handler = this.systemHandlers.get(name);
    if (handler === undefined) {
      this.rejectCall(stats, sink, token, new SluiceError(ErrorCode.UNSUPPORTED, `${name} is not available on this server (it needs a data directory: start with --data)`, { object: name }));
      return;
    }
    handler(params).then(
      (result) => this.finishDirect(stats, start, Status.SUCCESS, result, sink, token, 0),
      (error: unknown) => this.rejectCall(stats, sink, token, error),
    );
  }

  private submitAdhoc(params: readonly unknown[], stats: ProcedureStats, sink: ResultSink, token: number, deadline: number): void {
    let statement: PlannedStatement;
    let values: Value[];
    try {
      const sql = params[0];
      const sqlParams = params[1] ?? [];
      if (typeof sql !== 'string' || !Array.isArray(sqlParams) || params.length > 2) {
        throw new SluiceError(ErrorCode.PARAM_TYPE, '@AdHoc takes (sql: string, params?: unknown[])', { object: '@AdHoc' });
      }
      statement = this.adhocPlan(sql);
      checkParameterCount(statement, sqlParams);
      values = normalizeParams(sqlParams);
    } catch (error) {
      this.rejectCall(stats, sink, token, error);
      return;
    }
    const routing = statement.routing;
    let partition = -1;
    try {
      if (statement.explain) partition = 0;
      else if (routing.kind === 'any' && statement.readOnly) partition = 0;
      else if (routing.kind === 'keyed') partition = partitionOf(routing.key.evaluate([], values), this.partitionCount);
      else if (routing.kind === 'insert' && statement.plan.kind === 'insert' && statement.plan.rows.length === 1) {
        const row = insertValues(statement.plan, 0, values);
        partition = partitionOf(row[statement.plan.table.partitionColumn!], this.partitionCount);
      }
    } catch (error) {
      this.rejectCall(stats, sink, token, error);
      return;
    }
    if (partition >= 0) this.enqueue(Op.ADHOC, statement.sql, partition, values, stats, sink, token, '@AdHoc', statement.readOnly, deadline);
    else this.runMulti(adhocProcedure(statement), values, stats, sink, token);
  }

  /**
   * Whether an ad-hoc statement only reads (EXPLAIN only reads), for the server's permission
   * check; undefined when it does not plan (submitting it then answers the planning error).
   */
  adhocReadOnly(sql: string): boolean | undefined {
    try {
      const statement = this.adhocPlan(sql);
      return statement.readOnly || statement.explain;
    } catch {
      return undefined;
    }
  }

  private adhocPlan(sql: string): PlannedStatement {
    let statement = this.adhocPlans.get(sql);
    if (statement === undefined) {
      statement = planStatement(sql, this.catalog);
      if (this.adhocPlans.size >= adhocPlanCacheMax) this.adhocPlans.delete(this.adhocPlans.keys().next().value!);
      this.adhocPlans.set(sql, statement);
    }
    return statement;
  }

  systemInformation(): SystemInformation {
    return {
      version: packageVersion,
      partitions: this.partitionCount,
      uptimeMs: Date.now() - this.startedAt,
      startedAt: this.startedAt,
      epoch: this.epoch,
      schema: this.ddl,
      procedures: [...this.procedures.keys()],
      procedureParameters: Object.fromEntries([...this.procedures.values()].map((procedure) => [procedure.name, procedure.parameterTypes?.map((type) => type.name) ?? null])),
    };
  }

  private statistics(answers: readonly (PartitionStatistics | undefined)[], running: readonly (RunningTransactionStatistics | null)[]): Statistics {
    const procedures = [];
    for (const stats of this.stats.values()) {
      if (stats.calls === 0 && stats.longRunning === 0) continue;
      procedures.push({
        procedure: stats.name,
        calls: stats.calls,
        aborts: stats.aborts,
        failures: stats.failures,
        expired: stats.expired,
        longRunning: stats.longRunning,
        longest_ms: stats.longestMs,
        p50_ms: stats.latency.count > 0 ? stats.latency.percentile(50) / 1000 : 0,
        p99_ms: stats.latency.count > 0 ? stats.latency.percentile(99) / 1000 : 0,
      });
    }
    const partitions: PartitionStatistics[] = [];
    for (let p = 0; p < this.partitionCount; p++) {
      const answer = answers[p] ?? this.lastPartitionStatistics[p];
      this.lastPartitionStatistics[p] = answer;
      partitions.push(answer ?? { partition: p, transactions: 0, tables: [] });
    }
    const tables = new Map<string, { table: string; kind: string; rows: number; bytesEstimate: number }>();
    for (const partition of partitions) {
      for (const table of partition.tables) {
        const def = this.catalog.tables.get(table.name);
        const entry = tables.get(table.name) ?? { table: table.name, kind: table.kind, rows: 0, bytesEstimate: 0 };
        // Replicated tables hold the same rows on every partition: count them once, memory every time.
        if (def?.partitioned || partition.partition === 0) entry.rows += table.rows;
        entry.bytesEstimate += table.bytesEstimate;
        tables.set(table.name, entry);
      }
    }
    return {
      procedures,
      partitions: partitions.map((partition) => ({
        partition: partition.partition,
        transactions: partition.transactions,
        queueDepth: this.queueDepth[partition.partition],
        waiting: this.parkedCount(partition.partition),
        exportHeld: this.exportHolds[partition.partition] === undefined ? 0 : this.parkedCount(partition.partition),
        running: running[partition.partition],
        answered: answers[partition.partition] !== undefined,
      })),
      tables: [...tables.values()],
      ...Object.fromEntries([...this.statisticsSections].map(([section, compute]) => [section, compute()])),
    };
  }

  /**
   * Hands each procedure's latency histogram (microseconds) since the previous call to `visit`,
   * then starts a new window. The cumulative percentiles of @Statistics stop moving after a while;
   * a live chart needs the last second's. Windows are recorded only after the first call.
   */
  takeLatencyWindows(visit: (procedure: string, window: RecordableHistogram) => void): void {
    for (const stats of this.stats.values()) {
      if (stats.window === undefined) {
        stats.window = createHistogram();
        continue;
      }
      if (stats.window.count > 0) visit(stats.name, stats.window);
      stats.window.reset();
    }
  }

  // --- live application updates (docs/live-update.md) ----------------------------------------

  private versionLoad: { readonly epoch: number; remaining: number; failure: Error | undefined; readonly done: () => void } | undefined;

  /**
   * Loads version `epoch` (its whole schema and its procedures folder) here and in every
   * partition, beside the running one: calls keep running on the old version meanwhile. Rejects
   * with the first load error; nothing has changed then. One load at a time.
   */
  async loadVersion(epoch: number, ddl: string, proceduresDir: string): Promise<LoadedVersion> {
    const application = await loadApplication(ddl, proceduresDir, this.partitionCount);
    if (this.versionLoad !== undefined) throw new SluiceError(ErrorCode.INTERNAL, `version ${this.versionLoad.epoch} is still loading`);
    let unsubscribe = (): void => {};
    try {
      await new Promise<void>((resolve, reject) => {
        const load = { epoch, remaining: this.partitionCount, failure: undefined as Error | undefined, done: () => (load.failure === undefined ? resolve() : reject(load.failure)) };
        this.versionLoad = load;
        unsubscribe = this.onBroken((error) => reject(error));
        const message: LoadVersionMessage = { load: epoch, ddl, proceduresDir };
        for (const worker of this.workers) worker.postMessage(message);
      });
    } finally {
      this.versionLoad = undefined;
      unsubscribe();
    }
    return { epoch, ddl, proceduresDir, application };
  }

  private onVersionLoaded(partition: number, message: unknown[]): void {
    const load = this.versionLoad;
    if (message[0] !== 'loaded' || load === undefined || message[1] !== load.epoch) return;
    if (message[2] !== null && load.failure === undefined) {
      const error = errorFromPayload(message[2] as ErrorPayload);
      load.failure = new SluiceError(error.code, `partition ${partition}: ${error.message}`, error.details);
    }
    if (--load.remaining === 0) load.done();
  }

  /**
   * Switches to a loaded version at this point of the global order: calls submitted before run on
   * the old version, calls after on the new one. Like a multi-partition transaction, a VERSION
   * entry goes into every partition's queue and the router waits here, synchronously, until every
   * partition has built its storage for the new catalog; only if all did is the switch logged and
   * adopted everywhere. Otherwise each partition drops what it built and this throws the first
   * failure (a new unique index the rows break). `replayed` is the logged switch's own transaction
   * id and timestamp (recovery), which is not logged again. Returns the switch's transaction id.
   */
  switchVersion(version: LoadedVersion, replayed?: { transactionId: number; timestamp: number }): number {
    if (this.broken !== undefined || this.closed) throw this.broken ?? new SluiceError(ErrorCode.CLOSED, 'the server is shutting down');
    // Refused before it is sequenced, as a multi-partition call would be: nothing stopped.
    const stuck = replayed === undefined ? this.stuckPartition() : undefined;
    if (stuck !== undefined) throw stuck;
    if (replayed !== undefined) this.resumeAfter(replayed.transactionId, replayed.timestamp);
    const transactionId = replayed?.transactionId ?? ++this.lastTransactionId;
    const timestamp = replayed?.timestamp ?? this.nextTimestamp();
    for (let p = 0; p < this.partitionCount; p++) this.batches[p].push(Op.VERSION, version.epoch);
    this.flush();
    const fragmentTimeoutMs = this.remote.fragmentTimeoutMs;
    // Replay waits for every partition: the switch succeeded once, it must again.
    if (replayed !== undefined) this.remote.fragmentTimeoutMs = Infinity;
    try {
      this.remote.awaitEveryPartition();
    } catch (error) {
      // A partition that timed out answers later and then reads this END: it drops what it built.
      const timeout = this.remote.timeout;
      if (timeout !== undefined) this.reportStuck(timeout, transactionId, updateApplicationProcedure);
      this.remote.end(false);
      this.drainResults();
      throw error;
    } finally {
      this.remote.fragmentTimeoutMs = fragmentTimeoutMs;
    }
    this.log?.versionSwitched?.(version.epoch);
    if (replayed === undefined && this.log !== undefined) this.appendLog(transactionId, timestamp, -1, updateApplicationProcedure, [version.epoch]);
    this.remote.end(true);
    this.adoptVersion(version);
    // Before the results are drained: they may already hold rows of a stream the version adds.
    this.onVersionSwitched?.(this.catalog);
    this.drainResults();
    return transactionId;
  }

  private adoptVersion(version: LoadedVersion): void {
    const procedures = version.application.procedures;
    this.catalog = version.application.catalog;
    this.ddl = version.ddl;
    this.proceduresDir = version.proceduresDir;
    this.epoch = version.epoch;
    this.procedures = procedures;
    this.procedureIndex = new Map([...procedures.keys()].map((name, index) => [name, index]));
    for (const name of procedures.keys()) if (!this.stats.has(name)) this.stats.set(name, new ProcedureStats(name));
    this.adhocPlans.clear();
    // Parked calls are not sequenced yet: they run on the new version, so they need its indexes.
    for (const parked of this.parked) {
      for (let i = 0; i < parked.length; i++) if (parked[i].op === Op.CALL) parked[i] = { ...parked[i], target: this.procedureIndex.get(parked[i].name)! };
    }
  }

  // --- time, failure, shutdown ----------------------------------------------------------------

  private nextTimestamp(): number {
    // Never earlier than the previous transaction's: NOW() and ctx.timestamp only move forward.
    const now = Date.now();
    if (now > this.lastTimestamp) this.lastTimestamp = now;
    return this.lastTimestamp;
  }

  private fail(error: Error): void {
    if (this.broken !== undefined || this.closed) return;
    this.broken = error;
    this.failPending(Status.UNEXPECTED_FAILURE, errorPayload(error));
    this.notifyBroken(error);
    this.onFatal(error);
  }

  private failPending(status: Status, payload: ErrorPayload): void {
    clearInterval(this.monitorTimer);
    const now = performance.now();
    for (let slot = 0; slot < this.slotSink.length; slot++) {
      if (this.slotSink[slot] === undefined) continue;
      if (this.slotHeld[slot] === 1) {
        // Ran, but its log record may not be on disk: it cannot be acknowledged.
        this.deliverSlot(slot, status, payload, now);
        continue;
      }
      this.queueDepth[this.slotPartition[slot]]--;
      this.complete(slot, status, payload, now);
    }
    for (let q = 0; q < this.held.length; q++) {
      this.held[q].length = 0;
      this.heldHead[q] = 0;
    }
    for (let p = 0; p < this.parked.length; p++) {
      const parked = this.parked[p];
      const head = this.parkedHead[p];
      this.parked[p] = [];
      this.parkedHead[p] = 0;
      this.queueDepth[p] -= parked.length - head;
      for (let i = head; i < parked.length; i++) parked[i].sink.deliver(parked[i].token, status, payload, 0);
    }
  }

  // --- watching the partitions (monitor.ts) ---------------------------------------------------

  /**
   * The monitor's tick: notes what every partition runs, reports transactions that pass the
   * long-running threshold, sequences calls parked behind a stall that ended and answers parked
   * calls whose deadline passed. O(partitions) plus the parked calls, every sample interval.
   */
  private sample(): void {
    const now = performance.now();
    for (let p = 0; p < this.partitionCount; p++) {
      const elapsed = this.monitor.sample(p, now);
      if (elapsed >= this.longRunningMs) this.longRunning(p, elapsed);
      if (this.parkedHead[p] === this.parked[p].length) continue;
      if (!this.monitor.stalled[p]) this.pumpParked(p);
      this.expireParked(p, now);
    }
  }

  /** Partition `partition` has run one transaction for `elapsedMs`, past the threshold. */
  private longRunning(partition: number, elapsedMs: number): void {
    const running = this.monitor.running(partition)!;
    const stats = this.runningStats(partition, running.tag, running.slot);
    if (stats !== undefined) stats.longestMs = Math.max(stats.longestMs, Math.round(elapsedMs));
    if (this.longTag[partition] === running.tag) return;
    // First sample past the threshold: counted and logged once; its end is noted in onResults.
    this.longTag[partition] = running.tag;
    if (stats !== undefined) {
      this.longSlot[partition] = running.slot;
      this.longSince[partition] = running.since;
      stats.longRunning++;
    }
    const transactionId = this.runningTransactionId(running.tag, running.slot);
    this.logger?.warn(
      { procedure: stats?.name ?? '(multi-partition)', partition, transactionId, elapsedMs: Math.round(elapsedMs), thresholdMs: this.longRunningMs },
      `long-running transaction: ${stats?.name ?? 'a multi-partition transaction'} (transaction ${transactionId}) has run for ${Math.round(elapsedMs)} ms on partition ${partition}; the partition serves nothing else meanwhile`,
    );
  }

  /** The answer of a reported long-running transaction came: note its whole duration. */
  private longRunningEnded(partition: number, slot: number, now: number): void {
    this.longSlot[partition] = -2;
    const stats = this.slotStats[slot];
    if (stats === undefined) return;
    const elapsedMs = Math.round(now - this.longSince[partition]);
    stats.longestMs = Math.max(stats.longestMs, elapsedMs);
    this.logger?.info({ procedure: stats.name, partition, transactionId: this.slotTransactionId[slot], elapsedMs }, `long-running transaction ${this.slotTransactionId[slot]} (${stats.name}) ended after about ${elapsedMs} ms`);
  }

  /** A multi-partition transaction ran on this thread: its duration is known exactly. */
  private noteMultiPartitionDuration(stats: ProcedureStats, name: string, transactionId: number, elapsedMs: number): void {
    if (elapsedMs < this.longRunningMs) return;
    stats.longRunning++;
    stats.longestMs = Math.max(stats.longestMs, Math.round(elapsedMs));
    this.logger?.warn({ procedure: name, partition: -1, transactionId, elapsedMs: Math.round(elapsedMs), thresholdMs: this.longRunningMs }, `long-running transaction: multi-partition ${name} (transaction ${transactionId}) took ${Math.round(elapsedMs)} ms; every partition waited for it`);
  }

  /** The statistics of the call a partition runs, when the monitor's tag still matches its slot. */
  private runningStats(partition: number, tag: number, slot: number): ProcedureStats | undefined {
    if (slot === multiPartitionSlot || slot < 0 || slot >= this.slotSink.length) return undefined;
    if (this.slotPartition[slot] !== partition || transactionTag(this.slotTransactionId[slot]) !== tag) return undefined;
    return this.slotStats[slot];
  }

  private runningTransactionId(tag: number, slot: number): number {
    if (slot >= 0 && slot < this.slotTransactionId.length && transactionTag(this.slotTransactionId[slot]) === tag) return this.slotTransactionId[slot];
    return tag;
  }

  /** What every partition runs now (as far as the last sample knows), for @Statistics. */
  private runningTransactions(now: number): (RunningTransactionStatistics | null)[] {
    const rows: (RunningTransactionStatistics | null)[] = [];
    for (let p = 0; p < this.partitionCount; p++) {
      const running = this.monitor.running(p);
      if (running === undefined || !this.monitor.stillRunning(p, running.tag)) {
        rows.push(null);
        continue;
      }
      const stats = this.runningStats(p, running.tag, running.slot);
      rows.push({ procedure: stats?.name ?? '(multi-partition)', transactionId: this.runningTransactionId(running.tag, running.slot), elapsedMs: Math.round(now - running.since) });
    }
    return rows;
  }

  /** For a fragment timeout's message: what the late partition was busy with at the last sample. */
  private describeRunning(partition: number): string {
    // Sampled now: the timer cannot tick while this thread waits for a partition.
    this.monitor.sample(partition, performance.now());
    const running = this.monitor.running(partition);
    if (running === undefined || !this.monitor.stillRunning(partition, running.tag)) return '';
    const name = this.runningStats(partition, running.tag, running.slot)?.name ?? 'a multi-partition transaction';
    // The monitor's timer cannot tick while this thread coordinates, so a partition busy with the
    // waiting transaction's own fragment is first seen now: say that, not "for at least 0 ms".
    if (running.tag === transactionTag(this.coordinatingTransactionId)) return `it is still working on this transaction's statement (a long read or write on that partition)`;
    return `it has been running ${name} (transaction ${this.runningTransactionId(running.tag, running.slot)}) for at least ${Math.round(performance.now() - running.since)} ms`;
  }

  /** A partition missed a fragment's deadline: log it, and fail later transactions at once while it stays stuck. */
  private reportStuck(timeout: SluiceError, transactionId: number, name: string): void {
    const partition = this.remote.latePartition;
    const running = this.monitor.running(partition);
    this.stuckTag[partition] = running?.tag ?? 0;
    this.logger?.error({ partition, transactionId, procedure: name, fragmentTimeoutMs: this.remote.fragmentTimeoutMs }, `stuck partition ${partition}: ${timeout.message}`);
  }

  private isStuck(partition: number): boolean {
    if (this.stuckTag[partition] === 0) return false;
    if (this.monitor.stillRunning(partition, this.stuckTag[partition])) return true;
    this.stuckTag[partition] = 0;
    return false;
  }

  /** The error for a multi-partition call while a partition is still stuck where an earlier one timed out. */
  private stuckPartition(): SluiceError | undefined {
    for (let p = 0; p < this.partitionCount; p++) {
      if (!this.isStuck(p)) continue;
      return new SluiceError(ErrorCode.PARTITION_TIMEOUT, `partition ${p} is still stuck where an earlier multi-partition transaction timed out (${this.describeRunning(p)}); multi-partition calls fail until it moves on. Nothing ran`, { object: `partition ${p}` });
    }
    return undefined;
  }

  /** Answers calls still queued with UNEXPECTED_FAILURE (shutting down) and stops the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.monitorTimer);
    if (this.versionLoad !== undefined) {
      this.versionLoad.failure = new SluiceError(ErrorCode.CLOSED, 'the server shut down while a live update was loading');
      this.versionLoad.done();
    }
    this.failPending(Status.UNEXPECTED_FAILURE, [ProtocolCode.SHUTTING_DOWN, 'the server shut down before the call ran', null]);
    await Promise.all(this.workers.map((worker) => worker.terminate()));
    for (const port of this.resultPorts) port.close();
    for (const port of this.snapshotPorts) port.close();
    this.remote.close();
    if (this.idleWaiters.length > 0) this.wakeIdle();
  }
}

/** A numeric router setting from the deployment file or options: an integer in [min, max], or absent. */
function checkSetting(name: string, value: number | undefined, min: number, max: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new SluiceError(ErrorCode.INVALID_CONFIG, `${name} must be an integer from ${min} to ${max}, got ${String(value)}`, { object: name });
  }
}
