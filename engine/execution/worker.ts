/**
 * A partition worker thread: owns one Partition outright and runs its transactions strictly one
 * at a time, in the order the router sent them. It loads the catalog (from the DDL text) and the
 * procedures itself, because functions cannot cross threads.
 *
 * Run loop contract: each message from the router is a batch (messages.ts). Calls run to
 * completion in order; their answers go back as one batch. An MP marker means "every transaction
 * before this point has run here, none after it has": the worker begins the multi-partition
 * transaction and blocks, serving the coordinator's fragments synchronously on its MP port, until
 * the coordinator ends it (commit or rollback). Only then does it go on with the batch. This is
 * what puts multi-partition transactions at one point of every partition's serial order.
 *
 * A live update (docs/live-update.md) arrives in two steps: a `{ load }` message outside the
 * batches, which loads the new version in the background while calls keep running on the old one,
 * then a VERSION entry at the switch point, where the partition stops like at an MP marker until
 * the coordinator says whether every partition could take the new catalog.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { AssertionFailure } from '../assert.ts';
import type { Catalog } from '../catalog/schema.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import type { ResultTable } from '../sql/context.ts';
import { insertRow } from '../sql/dml.ts';
import type { Frame } from '../sql/expr.ts';
import { collectFrames } from '../sql/select.ts';
import { planStatement, type PlannedStatement } from '../sql/statement.ts';
import type { Value } from '../types.ts';
import { adhocProcedure } from './adhoc.ts';
import { runOnPartition } from './invoke.ts';
import { loadApplication, type Application } from './application.ts';
import { Fragment, Op, coordinatorSlot, errorPayload, type LoadVersionMessage, type PartitionStatistics } from './messages.ts';
import { RunningCell, multiPartitionSlot } from './monitor.ts';
import { Partition, type PreparedCatalog } from './partition.ts';
import { createCodec } from '../server/protocol.ts';
import type { LoadedProcedure } from './procedures.ts';
import { SinglePartitionRunner, TransactionContext } from './transaction.ts';
import { PartitionDurability } from '../durability/partition-snapshot.ts';

export interface WorkerData {
  ddl: string;
  proceduresDir: string;
  partition: number;
  partitionCount: number;
  /** Int32Array over a SharedArrayBuffer: wake-up counters (messages.ts coordinatorSlot). */
  flags: SharedArrayBuffer;
  mpPort: MessagePort;
  /** Where answers go (a port of its own, so the router can drain it synchronously). */
  resultsPort: MessagePort;
  /** Where snapshot chunks go (engine/durability/partition-snapshot.ts). */
  snapshotPort: MessagePort;
  /** Where this worker publishes the transaction it runs, for the router's monitor (monitor.ts). */
  running: SharedArrayBuffer;
  /**
   * Every stream's committed rows (also of streams a live update adds) go to the main thread after
   * every batch, with the answers: the export pipeline and subscriptions take them there. Unset,
   * rows stay in the stream buffers.
   */
  sendStreamRows?: boolean;
}

const planCacheMax = 1000;

const data = workerData as WorkerData;
const port = parentPort!;
const flags = new Int32Array(data.flags);
const ownSlot = data.partition;
const coordinator = coordinatorSlot(data.partitionCount);
const mpPort = data.mpPort;
const resultsPort = data.resultsPort;
const running = new RunningCell(data.running, data.partition);

const started = await loadApplication(data.ddl, data.proceduresDir, data.partitionCount);
let catalog: Catalog = started.catalog;
let procedures: LoadedProcedure[] = [...started.procedures.values()];
/** A version loaded ahead of its switch point (Op.VERSION). */
let loadedVersion: { readonly epoch: number; readonly application: Application } | undefined;
const partition = new Partition(data.partition, data.partitionCount, catalog);
const runner = new SinglePartitionRunner(partition);
const context = new TransactionContext(runner, partition.id);
const plans = new Map<string, PlannedStatement>();
const codec = createCodec();
const durability = new PartitionDurability(partition, data.snapshotPort, catalog);

/** Answers of the batch being run, reused across batches (postMessage copies it). */
const results: unknown[] = [];
const sendStreamRows = data.sendStreamRows === true;
/** Committed stream rows since the last message (StreamBuffer.takeCommitted chunks), reused. */
const exportRows: unknown[] = [];

function planOf(sql: string): PlannedStatement {
  let plan = plans.get(sql);
  if (plan === undefined) {
    plan = planStatement(sql, catalog);
    if (plans.size >= planCacheMax) plans.delete(plans.keys().next().value!);
    plans.set(sql, plan);
  }
  return plan;
}

function runTransaction(procedure: LoadedProcedure, values: Value[], transactionId: number, timestamp: number): unknown {
  return runOnPartition(partition, runner, context, procedure, values, transactionId, timestamp);
}

function runBatch(batch: unknown[]): void {
  let i = 0;
  while (i < batch.length) {
    const op = batch[i] as number;
    if (op === Op.MP) {
      flushResults();
      serveMultiPartition(batch[i + 1] as number, batch[i + 2] as number);
      i += 3;
      continue;
    }
    if (op === Op.STREAM_FLOOR) {
      flushResults();
      partition.stream(batch[i + 1] as string).raiseSequence(batch[i + 2] as number);
      i += 3;
      continue;
    }
    if (op >= Op.SNAPSHOT) {
      flushResults();
      if (op === Op.VERSION) {
        switchVersion(batch[i + 1] as number);
        i += 2;
      } else {
        i = durability.run(op, batch, i);
      }
      continue;
    }
    const slot = batch[i + 1] as number;
    const target = batch[i + 2];
    const transactionId = batch[i + 3] as number;
    const timestamp = batch[i + 4] as number;
    const paramCount = batch[i + 5] as number;
    const values = batch.slice(i + 6, i + 6 + paramCount) as Value[];
    i += 6 + paramCount;
    results.push(slot);
    running.start(transactionId, slot);
    try {
      const procedure = op === Op.CALL ? procedures[target as number] : adhocProcedure(planOf(target as string));
      const result = runTransaction(procedure, values, transactionId, timestamp);
      results.push(1, result);
    } catch (error) {
      if (error instanceof AssertionFailure) throw error;
      results.push(0, errorPayload(error));
    }
    running.end();
  }
  flushResults();
}

/** Moves committed stream rows into `exportRows`: they ride with the answers as slot -1. */
function collectStreamRows(): void {
  for (const stream of partition.allStreams()) stream.takeCommitted(exportRows);
  if (exportRows.length > 0) results.push(-1, exportRows, 0);
}

function flushResults(): void {
  if (sendStreamRows) collectStreamRows();
  if (results.length === 0) return;
  try {
    resultsPort.postMessage(results);
  } catch {
    // A result that cannot be copied (a function, a class instance with private state): answer
    // those calls with an error instead of losing the whole batch.
    for (let r = 0; r < results.length; r += 3) {
      if (results[r + 1] !== 1) continue;
      try {
        structuredClone(results[r + 2]);
      } catch (error) {
        results[r + 1] = 0;
        results[r + 2] = errorPayload(new Error(`the procedure's result cannot be sent: ${(error as Error).message}`));
      }
    }
    resultsPort.postMessage(results);
  }
  results.length = 0;
  exportRows.length = 0;
}

/**
 * The partition's side of a multi-partition transaction: begin it, then serve fragments until
 * END. Blocks this thread (Atomics.wait), which is the point: nothing else may run here meanwhile.
 */
function serveMultiPartition(transactionId: number, timestamp: number): void {
  partition.begin(transactionId, timestamp);
  running.start(transactionId, multiPartitionSlot);
  for (;;) {
    const message = nextFragment();
    const kind = message[0] as number;
    if (kind === Fragment.END) {
      if (message[1] === true) partition.commit();
      else partition.rollback();
      running.end();
      return;
    }
    let reply: unknown[];
    let crash: AssertionFailure | undefined;
    try {
      reply = [1, runFragment(kind, message)];
    } catch (error) {
      if (error instanceof AssertionFailure) crash = error;
      reply = [0, errorPayload(error)];
    }
    answerCoordinator(reply);
    // Answer first, then crash: the coordinator is blocked waiting for this reply.
    if (crash !== undefined) throw crash;
  }
}

/** Blocks until the coordinator's next message on the MP port. */
function nextFragment(): unknown[] {
  for (;;) {
    const seen = Atomics.load(flags, ownSlot);
    const received = receiveMessageOnPort(mpPort);
    if (received !== undefined) return received.message as unknown[];
    Atomics.wait(flags, ownSlot, seen);
  }
}

function answerCoordinator(reply: unknown[]): void {
  mpPort.postMessage(reply);
  Atomics.add(flags, coordinator, 1);
  Atomics.notify(flags, coordinator);
}

/** Loads a new application version beside the running one; calls keep running meanwhile. */
async function loadVersion(message: LoadVersionMessage): Promise<void> {
  try {
    const application = await loadApplication(message.ddl, message.proceduresDir, data.partitionCount);
    loadedVersion = { epoch: message.load, application };
    port.postMessage(['loaded', message.load, null]);
  } catch (error) {
    port.postMessage(['loaded', message.load, errorPayload(error)]);
  }
}

/**
 * The switch point of a live update (Op.VERSION): builds this partition's storage for the new
 * catalog (a new unique index the rows break fails here), tells the coordinator, and adopts it only
 * if the coordinator ends with true, i.e. every partition built it. Every call before the entry ran
 * on the old version; every call after it runs on the new one.
 */
function switchVersion(epoch: number): void {
  const version = loadedVersion;
  loadedVersion = undefined;
  let prepared: PreparedCatalog | undefined;
  let crash: AssertionFailure | undefined;
  try {
    if (version?.epoch !== epoch) throw new SluiceError(ErrorCode.INTERNAL, `partition ${partition.id} reached the switch to version ${epoch} without having loaded it`);
    prepared = partition.prepareCatalog(version.application.catalog);
    answerCoordinator([1, null]);
  } catch (error) {
    if (error instanceof AssertionFailure) crash = error;
    // Names the partition: only the rows of some partitions may break a new unique index.
    answerCoordinator([0, errorPayload(error instanceof SluiceError ? new SluiceError(error.code, `partition ${partition.id}: ${error.summary}`, error.details) : error)]);
  }
  if (crash !== undefined) throw crash;
  const decision = nextFragment();
  if (decision[0] !== Fragment.END || decision[1] !== true || prepared === undefined || version === undefined) return;
  partition.adoptCatalog(prepared);
  catalog = version.application.catalog;
  procedures = [...version.application.procedures.values()];
  plans.clear();
  durability.catalog = catalog;
}

function runFragment(kind: number, message: unknown[]): unknown {
  switch (kind) {
    case Fragment.EXECUTE:
      return partition.execute(planOf(message[1] as string), message[2] as Value[]) satisfies ResultTable;
    case Fragment.FRAMES: {
      const statement = planOf(message[1] as string);
      if (statement.plan.kind !== 'select') throw new Error(`FRAMES fragment for a ${statement.plan.kind}`);
      // Frames go back msgpack-encoded: for many small rows that is several times cheaper than
      // structured clone (1.3M rows: ~0.7 s against ~2 s, measured here).
      return codec.pack(collectFrames(statement.plan, partition, message[2] as Value[]) satisfies Frame[]);
    }
    case Fragment.INSERT: {
      const statement = planOf(message[1] as string);
      if (statement.plan.kind !== 'insert') throw new Error(`INSERT fragment for a ${statement.plan.kind}`);
      const rows = message[2] as Value[][];
      for (const row of rows) insertRow(statement.plan, row, partition);
      return rows.length;
    }
    case Fragment.STATS:
      return statistics();
  }
  throw new Error(`unknown fragment kind ${kind}`);
}

function statistics(): PartitionStatistics {
  const tables = [];
  for (const table of partition.allTables()) {
    const rows = table.rows.size;
    // A row is an array of its values plus a row id; ~16 bytes per slot plus the array header.
    const bytesEstimate = rows * (32 + 16 * (table.def.columns.length + 1)) + table.indexes.length * rows * 48;
    tables.push({ name: table.def.name, kind: table.def.kind, rows, bytesEstimate });
  }
  return { partition: partition.id, transactions: partition.transactionCount, tables };
}

port.on('message', (message: unknown[] | LoadVersionMessage) => {
  if (Array.isArray(message)) runBatch(message);
  else void loadVersion(message);
});
port.postMessage('ready');
