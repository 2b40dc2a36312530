/**
 * The multi-partition coordinator: runs a multi-partition procedure's body on the router thread,
 * sending each statement to the partitions it concerns and waiting synchronously for their answers
 * (Atomics.wait on a shared counter + receiveMessageOnPort). Every partition has already been told,
 * through an MP marker in its queue, to stop at this transaction and serve its fragments; see
 * worker.ts and docs/architecture.md for why this order is global and cannot deadlock.
 *
 * No wait is unbounded: each fragment has `fragmentTimeoutMs` (all partitions of a broadcast
 * share one deadline) to be answered, counted from when it is sent, so it includes the time the
 * partition needs to reach the transaction's marker. A partition that misses it fails the
 * transaction (PARTITION_TIMEOUT): every later statement of that transaction fails at once, and
 * `end` rolls it back whatever the body did with the error. The late partition still has the
 * fragments in its queue; it runs them when it reaches the marker, then the rollback, and its late
 * answers are counted here (`stale`) and dropped, so they never pass for a later transaction's.
 * docs/architecture.md says which state is safe after a timeout, and why.
 *
 * The statement semantics mirror MultiPartitionRunner (transaction.ts), which does the same on
 * in-process partitions: reads of replicated data go to one partition, keyed statements to their
 * partition, inserts row by row to each row's partition, replicated writes to all, and other
 * SELECTs gather frames from every partition and finish (group, order, limit) here.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { ErrorCode, SluiceError } from '../errors.ts';
import { createCodec, type ErrorPayload } from '../server/protocol.ts';
import type { ResultTable } from '../sql/context.ts';
import { insertValues } from '../sql/dml.ts';
import type { Frame } from '../sql/expr.ts';
import { finishSelect } from '../sql/select.ts';
import { explainResult, type PlannedStatement } from '../sql/statement.ts';
import type { Value } from '../types.ts';
import { partitionOf } from './hash.ts';
import { Fragment, coordinatorSlot, errorFromPayload, type PartitionStatistics } from './messages.ts';
import type { StatementRunner } from './transaction.ts';

const modifiedColumns: readonly string[] = ['modified_tuples'];
const modifiedTypes = [{ name: 'BIGINT' as const }];

/** Default time a partition has to answer one fragment of a multi-partition transaction. */
export const fragmentTimeoutMsDefault = 10_000;

export class RemoteRunner implements StatementRunner {
  private readonly ports: readonly MessagePort[];
  private readonly flags: Int32Array;
  private readonly ownSlot: number;
  private readonly codec = createCodec();
  /** Says what a partition that missed a fragment is busy with, for the error (the router's monitor). */
  private readonly describeLate: (partition: number) => string;
  /** Answers each partition owes to fragments whose wait timed out: dropped when they come. */
  private readonly stale: number[];
  /** Infinity while replaying the log: a transaction that committed once must commit again. */
  fragmentTimeoutMs = fragmentTimeoutMsDefault;
  /** The timeout that doomed the current transaction, if one did; cleared by `end`. */
  private timedOut: SluiceError | undefined;
  /** The partition of the last timeout. */
  latePartition = -1;

  constructor(ports: readonly MessagePort[], flags: Int32Array, describeLate: (partition: number) => string = () => '') {
    this.ports = ports;
    this.flags = flags;
    this.ownSlot = coordinatorSlot(ports.length);
    this.describeLate = describeLate;
    this.stale = new Array<number>(ports.length).fill(0);
  }

  /** The PARTITION_TIMEOUT that failed the current transaction, if any (it must roll back). */
  get timeout(): SluiceError | undefined {
    return this.timedOut;
  }

  get partitionCount(): number {
    return this.ports.length;
  }

  run(statement: PlannedStatement, params: readonly Value[]): ResultTable {
    if (statement.explain) return explainResult(statement);
    // A partition is behind this transaction: nothing more of it can run there in step.
    if (this.timedOut !== undefined) throw this.timedOut;
    const count = this.ports.length;
    const routing = statement.routing;
    const plan = statement.plan;
    switch (routing.kind) {
      case 'any':
        return this.request(0, [Fragment.EXECUTE, statement.sql, params]) as ResultTable;
      case 'keyed': {
        const key = routing.key.evaluate([], params);
        return this.request(partitionOf(key, count), [Fragment.EXECUTE, statement.sql, params]) as ResultTable;
      }
      case 'insert': {
        if (plan.kind !== 'insert') break;
        const column = plan.table.partitionColumn!;
        const perPartition: Value[][][] = Array.from({ length: count }, () => []);
        for (let r = 0; r < plan.rows.length; r++) {
          const values = insertValues(plan, r, params);
          perPartition[partitionOf(values[column], count)].push(values);
        }
        const targets: number[] = [];
        for (let p = 0; p < count; p++) {
          if (perPartition[p].length === 0) continue;
          this.send(p, [Fragment.INSERT, statement.sql, perPartition[p]]);
          targets.push(p);
        }
        this.gather(targets, this.deadline());
        return { columns: modifiedColumns, types: modifiedTypes, rows: [[plan.rows.length]] };
      }
      case 'replicated-write': {
        const results = this.broadcast([Fragment.EXECUTE, statement.sql, params]) as ResultTable[];
        return results[0];
      }
      case 'all': {
        if (plan.kind === 'select') {
          const parts = this.broadcast([Fragment.FRAMES, statement.sql, params]) as Uint8Array[];
          let frames: Frame[] = [];
          for (const part of parts) {
            const decoded = this.codec.unpack(part) as Frame[];
            if (frames.length === 0) frames = decoded;
            else for (const frame of decoded) frames.push(frame);
          }
          return finishSelect(plan, frames, params);
        }
        const results = this.broadcast([Fragment.EXECUTE, statement.sql, params]) as ResultTable[];
        let modified = 0;
        for (const result of results) modified += result.rows[0][0] as number;
        return { columns: modifiedColumns, types: modifiedTypes, rows: [[modified]] };
      }
    }
    throw new SluiceError(ErrorCode.INTERNAL, `no route for ${statement.sql}`);
  }

  /**
   * Statistics of the partitions in `partitions` (a read-only fragment of @Statistics), which
   * must be the ones that got the marker; a partition that timed out is left undefined.
   */
  statistics(partitions: readonly number[]): (PartitionStatistics | undefined)[] {
    const answers = new Array<PartitionStatistics | undefined>(this.ports.length);
    const message = [Fragment.STATS];
    for (const p of partitions) this.send(p, message);
    const deadline = this.deadline();
    for (const p of partitions) {
      try {
        answers[p] = this.receive(p, deadline) as PartitionStatistics;
      } catch (error) {
        if (!(error instanceof SluiceError) || error.code !== ErrorCode.PARTITION_TIMEOUT) throw error;
      }
    }
    return answers;
  }

  /**
   * Waits until every partition has answered once on its own (a VERSION entry: each reports
   * whether it could build its storage for the new catalog), each within the fragment timeout;
   * throws the first failure after all answered or timed out.
   */
  awaitEveryPartition(): void {
    this.gather(this.ports.map((_port, partition) => partition), this.deadline());
  }

  /**
   * Ends the transaction on the partitions that got its marker (all by default); they leave the
   * marker and go on. A transaction that timed out is rolled back whatever `commit` says.
   */
  end(commit: boolean, partitions?: readonly number[]): void {
    const message = [Fragment.END, commit && this.timedOut === undefined];
    this.timedOut = undefined;
    if (partitions === undefined) for (let p = 0; p < this.ports.length; p++) this.send(p, message);
    else for (const p of partitions) this.send(p, message);
  }

  close(): void {
    for (const port of this.ports) port.close();
  }

  private request(partition: number, message: unknown[]): unknown {
    this.send(partition, message);
    return this.receive(partition, this.deadline());
  }

  /** Sends one fragment to every partition (they run it in parallel) and gathers the answers. */
  private broadcast(message: unknown[]): unknown[] {
    for (let p = 0; p < this.ports.length; p++) this.send(p, message);
    const deadline = this.deadline();
    const answers = new Array<unknown>(this.ports.length);
    let failed: SluiceError | undefined;
    // Every answer is received even after a failure, so no stale reply is left on a port.
    for (let p = 0; p < this.ports.length; p++) {
      try {
        answers[p] = this.receive(p, deadline);
      } catch (error) {
        failed ??= error as SluiceError;
      }
    }
    if (failed) throw failed;
    return answers;
  }

  private gather(partitions: readonly number[], deadline: number): void {
    let failed: SluiceError | undefined;
    for (const p of partitions) {
      try {
        this.receive(p, deadline);
      } catch (error) {
        failed ??= error as SluiceError;
      }
    }
    if (failed) throw failed;
  }

  private deadline(): number {
    return performance.now() + this.fragmentTimeoutMs;
  }

  private send(partition: number, message: unknown[]): void {
    this.ports[partition].postMessage(message);
    Atomics.add(this.flags, partition, 1);
    Atomics.notify(this.flags, partition);
  }

  private receive(partition: number, deadline: number): unknown {
    const port = this.ports[partition];
    for (;;) {
      const seen = Atomics.load(this.flags, this.ownSlot);
      const received = receiveMessageOnPort(port);
      if (received !== undefined) {
        if (this.stale[partition] > 0) {
          this.stale[partition]--;
          continue;
        }
        const reply = received.message as [number, unknown];
        if (reply[0] === 1) return reply[1];
        throw errorFromPayload(reply[1] as ErrorPayload);
      }
      const waitMs = deadline - performance.now();
      if (waitMs <= 0) throw this.late(partition);
      Atomics.wait(this.flags, this.ownSlot, seen, waitMs);
    }
  }

  /** Partition `partition` missed its deadline: its answer will come late, and the transaction fails. */
  private late(partition: number): SluiceError {
    this.stale[partition]++;
    const busy = this.describeLate(partition);
    const error = new SluiceError(
      ErrorCode.PARTITION_TIMEOUT,
      `partition ${partition} did not answer within ${this.fragmentTimeoutMs} ms${busy === '' ? '' : ` (${busy})`}; the multi-partition transaction was rolled back`,
      { object: `partition ${partition}` },
    );
    if (this.timedOut === undefined) {
      this.timedOut = error;
      this.latePartition = partition;
    }
    return error;
  }
}
