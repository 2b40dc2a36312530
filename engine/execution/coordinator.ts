/**
 * The multi-partition coordinator: runs a multi-partition procedure's body on the router thread,
 * sending each statement to the partitions it concerns and waiting synchronously for their answers
 * (Atomics.wait on a shared counter + receiveMessageOnPort). Every partition has already been told,
 * through an MP marker in its queue, to stop at this transaction and serve its fragments; see
 * worker.ts and docs/architecture.md for why this order is global and cannot deadlock.
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

export class RemoteRunner implements StatementRunner {
  private readonly ports: readonly MessagePort[];
  private readonly flags: Int32Array;
  private readonly ownSlot: number;
  private readonly codec = createCodec();

  constructor(ports: readonly MessagePort[], flags: Int32Array) {
    this.ports = ports;
    this.flags = flags;
    this.ownSlot = coordinatorSlot(ports.length);
  }

  get partitionCount(): number {
    return this.ports.length;
  }

  run(statement: PlannedStatement, params: readonly Value[]): ResultTable {
    if (statement.explain) return explainResult(statement);
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
        this.gather(targets);
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

  /** Statistics of every partition (a read-only fragment of @Statistics). */
  statistics(): PartitionStatistics[] {
    return this.broadcast([Fragment.STATS]) as PartitionStatistics[];
  }

  /** Ends the transaction on every partition; they leave their markers and go on. */
  end(commit: boolean): void {
    const message = [Fragment.END, commit];
    for (let p = 0; p < this.ports.length; p++) this.send(p, message);
  }

  close(): void {
    for (const port of this.ports) port.close();
  }

  private request(partition: number, message: unknown[]): unknown {
    this.send(partition, message);
    return this.receive(partition);
  }

  /** Sends one fragment to every partition (they run it in parallel) and gathers the answers. */
  private broadcast(message: unknown[]): unknown[] {
    for (let p = 0; p < this.ports.length; p++) this.send(p, message);
    const answers = new Array<unknown>(this.ports.length);
    let failed: SluiceError | undefined;
    // Every answer is received even after a failure, so no stale reply is left on a port.
    for (let p = 0; p < this.ports.length; p++) {
      try {
        answers[p] = this.receive(p);
      } catch (error) {
        failed ??= error as SluiceError;
      }
    }
    if (failed) throw failed;
    return answers;
  }

  private gather(partitions: readonly number[]): void {
    let failed: SluiceError | undefined;
    for (const p of partitions) {
      try {
        this.receive(p);
      } catch (error) {
        failed ??= error as SluiceError;
      }
    }
    if (failed) throw failed;
  }

  private send(partition: number, message: unknown[]): void {
    this.ports[partition].postMessage(message);
    Atomics.add(this.flags, partition, 1);
    Atomics.notify(this.flags, partition);
  }

  private receive(partition: number): unknown {
    const port = this.ports[partition];
    for (;;) {
      const seen = Atomics.load(this.flags, this.ownSlot);
      const received = receiveMessageOnPort(port);
      if (received !== undefined) {
        const reply = received.message as [number, unknown];
        if (reply[0] === 1) return reply[1];
        throw errorFromPayload(reply[1] as ErrorPayload);
      }
      Atomics.wait(this.flags, this.ownSlot, seen);
    }
  }
}
