/**
 * The procedure context of one transaction (ProcedureContext of procedures/api.ts) and the
 * runners behind it: a single-partition runner executes statements on its partition; the
 * multi-partition runner executes each statement on the partitions it concerns and merges the
 * results. One context object is reused for every transaction of a runner: nothing per call is
 * allocated beyond the results.
 */
import type { Expectation, Param, ProcedureContext, SqlValue, Statement } from '../../procedures/api.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import type { ResultTable } from '../sql/context.ts';
import { insertRow, insertValues } from '../sql/dml.ts';
import { collectFrames, finishSelect } from '../sql/select.ts';
import { checkParameterCount, explainResult, normalizeParams, type PlannedStatement } from '../sql/statement.ts';
import { rowObjects, type RowObject } from '../sql/compiled.ts';
import type { Value } from '../types.ts';
import type { Partition } from './partition.ts';
import type { LoadedProcedure } from './procedures.ts';
import { partitionOf } from './hash.ts';
import type { Frame } from '../sql/expr.ts';

/** Runs one planned statement inside the current transaction. */
export interface StatementRunner {
  run(statement: PlannedStatement, params: readonly Value[]): ResultTable;
  /**
   * The same, with the rows as objects (a write: `[{ modified_tuples: n }]`). Runners that can
   * skip the ResultTable (one partition: compiled statements) provide it; the context falls back
   * to `rowObjects(run(…))`.
   */
  runObjects?(statement: PlannedStatement, params: readonly Value[]): RowObject[];
}

export class SinglePartitionRunner implements StatementRunner {
  readonly partition: Partition;

  constructor(partition: Partition) {
    this.partition = partition;
  }

  run(statement: PlannedStatement, params: readonly Value[]): ResultTable {
    return this.partition.execute(statement, params);
  }

  runObjects(statement: PlannedStatement, params: readonly Value[]): RowObject[] {
    return this.partition.executeObjects(statement, params);
  }
}

/** Runs statements across every partition, all inside one multi-partition transaction. */
export class MultiPartitionRunner implements StatementRunner {
  readonly partitions: readonly Partition[];

  constructor(partitions: readonly Partition[]) {
    this.partitions = partitions;
  }

  run(statement: PlannedStatement, params: readonly Value[]): ResultTable {
    if (statement.explain) return explainResult(statement);
    const partitions = this.partitions;
    const routing = statement.routing;
    const plan = statement.plan;
    switch (routing.kind) {
      case 'any':
        return partitions[0].execute(statement, params);
      case 'keyed': {
        const key = routing.key.evaluate([], params);
        return partitions[partitionOf(key, partitions.length)].execute(statement, params);
      }
      case 'insert': {
        if (plan.kind !== 'insert') break;
        const column = plan.table.partitionColumn!;
        for (let r = 0; r < plan.rows.length; r++) {
          const values = insertValues(plan, r, params);
          insertRow(plan, values, partitions[partitionOf(values[column], partitions.length)]);
        }
        return { columns: ['modified_tuples'], types: [{ name: 'BIGINT' }], rows: [[plan.rows.length]] };
      }
      case 'replicated-write': {
        let first: ResultTable | undefined;
        for (const partition of partitions) {
          const result = partition.execute(statement, params);
          first ??= result;
        }
        return first!;
      }
      case 'all': {
        if (plan.kind === 'select') {
          const frames: Frame[] = [];
          for (const partition of partitions) for (const frame of collectFrames(plan, partition, params)) frames.push(frame);
          return finishSelect(plan, frames, params);
        }
        let count = 0;
        for (const partition of partitions) count += partition.execute(statement, params).rows[0][0] as number;
        return { columns: ['modified_tuples'], types: [{ name: 'BIGINT' }], rows: [[count]] };
      }
    }
    throw new SluiceError(ErrorCode.INTERNAL, `no route for ${statement.sql}`);
  }
}

interface Queued {
  statement: PlannedStatement;
  params: Value[];
  expect: Expectation | undefined;
}

export { rowObjects };

export class TransactionContext implements ProcedureContext {
  transactionId = 0;
  timestamp = 0;
  partition: number;
  private procedure: LoadedProcedure | undefined;
  private seed = 0;
  private readonly queued: Queued[] = [];
  private queuedCount = 0;
  private readonly runner: StatementRunner;
  /** The runner returns row objects itself (runObjects). */
  private readonly direct: boolean;

  constructor(runner: StatementRunner, partition: number) {
    this.runner = runner;
    this.partition = partition;
    this.direct = typeof runner.runObjects === 'function';
  }

  reset(procedure: LoadedProcedure, transactionId: number, timestamp: number): void {
    this.procedure = procedure;
    this.transactionId = transactionId;
    this.timestamp = timestamp;
    this.seed = (Math.imul(transactionId, 0x9e3779b1) ^ timestamp) >>> 0;
    this.queuedCount = 0;
  }

  /** mulberry32: small, fast, and the same sequence on every replay of this transaction. */
  random(): number {
    this.seed = (this.seed + 0x6d2b79f5) >>> 0;
    let t = this.seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  private plan(statement: Statement<unknown>): PlannedStatement {
    const planned = this.procedure!.plans.get(statement);
    if (!planned) {
      throw new SluiceError(ErrorCode.PROCEDURE_FAILED, `procedure ${this.procedure!.name} runs a statement not declared in its statements: ${statement.sql?.slice(0, 80)}`, { object: this.procedure!.name });
    }
    return planned;
  }

  private runNow(statement: Statement<unknown>, params: readonly Param[]): ResultTable {
    const planned = this.plan(statement);
    checkParameterCount(planned, params);
    return this.runner.run(planned, normalizeParams(params));
  }

  /** Rows as objects: straight from the runner's compiled statements where it has them. */
  private runObjects(planned: PlannedStatement, params: readonly Value[]): RowObject[] {
    return this.direct ? this.runner.runObjects!(planned, params) : rowObjects(this.runner.run(planned, params));
  }

  private objectsNow(statement: Statement<unknown>, params: readonly Param[]): RowObject[] {
    const planned = this.plan(statement);
    checkParameterCount(planned, params);
    return this.runObjects(planned, this.direct && planned.rawParams ? (params as Value[]) : normalizeParams(params));
  }

  query<R>(statement: Statement<R>, ...params: Param[]): R[] {
    return this.objectsNow(statement, params) as R[];
  }

  queryOne<R>(statement: Statement<R>, ...params: Param[]): R | undefined {
    const rows = this.objectsNow(statement, params);
    if (rows.length > 1) throw expectationFailed(this.plan(statement), 'zero-or-one', rows.length);
    return rows.length === 0 ? undefined : (rows[0] as R);
  }

  execute(statement: Statement<unknown>, ...params: Param[]): number {
    const planned = this.plan(statement);
    if (this.direct && !planned.readOnly && !planned.explain) {
      checkParameterCount(planned, params);
      return this.runner.runObjects!(planned, planned.rawParams ? (params as Value[]) : normalizeParams(params))[0].modified_tuples as number;
    }
    const result = this.runNow(statement, params);
    return result.columns[0] === 'modified_tuples' ? (result.rows[0][0] as number) : result.rows.length;
  }

  queue(statement: Statement<unknown>, params: readonly Param[] = [], expect?: Expectation): void {
    const planned = this.plan(statement);
    checkParameterCount(planned, params);
    // A compiled statement normalizes its parameters as it reads them (a scalar expectation
    // runs the ResultTable path, which needs them normalized first).
    const values = this.direct && planned.rawParams && typeof expect !== 'object' ? (params as Value[]) : normalizeParams(params);
    // Queue slots are reused across transactions: queuing allocates nothing.
    const slot = this.queued[this.queuedCount];
    if (slot) {
      slot.statement = planned;
      slot.params = values;
      slot.expect = expect;
    } else {
      this.queued.push({ statement: planned, params: values, expect });
    }
    this.queuedCount++;
  }

  executeBatch(): Record<string, SqlValue>[][] {
    const count = this.queuedCount;
    this.queuedCount = 0;
    const results = new Array<Record<string, SqlValue>[]>(count);
    for (let i = 0; i < count; i++) {
      const queued = this.queued[i];
      const expect = queued.expect;
      if (typeof expect === 'object') {
        // A scalar expectation reads the first column by position: the ResultTable has it.
        const result = this.runner.run(queued.statement, queued.params);
        checkExpectation(queued.statement, result, expect);
        results[i] = rowObjects(result);
        continue;
      }
      const rows = this.runObjects(queued.statement, queued.params);
      if (expect !== undefined && expect !== 'any') checkCount(queued.statement, rows, expect);
      results[i] = rows;
    }
    return results;
  }

  abort(reason: string): never {
    throw new SluiceError(ErrorCode.USER_ABORT, reason, { object: this.procedure?.name });
  }
}

function checkExpectation(statement: PlannedStatement, result: ResultTable, expect: Expectation): void {
  const isWrite = result.columns[0] === 'modified_tuples' && !statement.readOnly;
  const count = isWrite ? (result.rows[0][0] as number) : result.rows.length;
  let ok: boolean;
  if (typeof expect === 'object') {
    ok = result.rows.length === 1 && result.rows[0].length >= 1 && result.rows[0][0] === expect.scalar;
  } else {
    ok =
      expect === 'empty' ? count === 0
        : expect === 'one' ? count === 1
        : expect === 'zero-or-one' ? count <= 1
        : count > 0;
  }
  if (!ok) throw expectationFailed(statement, typeof expect === 'object' ? `scalar ${String(expect.scalar)}` : expect, count);
}

/** checkExpectation for rows as objects; a write's count is its modified_tuples. */
function checkCount(statement: PlannedStatement, rows: RowObject[], expect: Exclude<Expectation, { readonly scalar: SqlValue }>): void {
  const count = statement.readOnly || statement.explain ? rows.length : (rows[0].modified_tuples as number);
  const ok =
    expect === 'empty' ? count === 0
      : expect === 'one' ? count === 1
      : expect === 'zero-or-one' ? count <= 1
      : count > 0;
  if (!ok) throw expectationFailed(statement, expect, count);
}

function expectationFailed(statement: PlannedStatement, expected: string, count: number): SluiceError {
  return new SluiceError(ErrorCode.EXPECTATION_FAILED, `expected ${expected} row(s), got ${count}: ${statement.sql.trim().split('\n')[0].slice(0, 100)}`, { statement: statement.sql, expected });
}
