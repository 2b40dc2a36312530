/**
 * Running one transaction: the procedure body with the clock and Math.random fenced off, its
 * parameters checked against their declared types, and any failure turned into a SluiceError.
 * Shared by the embedded Database and the partition worker threads, so both run procedures the
 * same way (which replay relies on).
 */
import { AssertionFailure } from '../assert.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import { normalizeParam } from '../sql/statement.ts';
import { coerceValue, isCanonical, type Value } from '../types.ts';
import type { Partition } from './partition.ts';
import type { LoadedProcedure } from './procedures.ts';
import type { StatementRunner, TransactionContext } from './transaction.ts';

const savedRandom = Math.random;
const savedNow = Date.now;
/**
 * The first fenced call of the running procedure. The fence throws, but a procedure could catch
 * that and carry on: remembering the violation lets `invoke` fail the transaction regardless.
 */
let violation: SluiceError | undefined;
function forbiddenRandom(): number {
  violation ??= new SluiceError(ErrorCode.NON_DETERMINISTIC, 'Math.random() inside a procedure is not replayable; use ctx.random()');
  throw violation;
}
function forbiddenNow(): number {
  violation ??= new SluiceError(ErrorCode.NON_DETERMINISTIC, 'Date.now() inside a procedure reads the wall clock; use ctx.timestamp');
  throw violation;
}

/** Runs the procedure body with the clock and Math.random fenced off. */
export function invoke(procedure: LoadedProcedure, runner: StatementRunner, context: TransactionContext, values: Value[], transactionId: number, timestamp: number): unknown {
  if (procedure.statement) {
    const result = runner.run(procedure.statement, values);
    return result;
  }
  context.reset(procedure, transactionId, timestamp);
  violation = undefined;
  Math.random = forbiddenRandom;
  Date.now = forbiddenNow;
  try {
    const result = callRun(procedure.run!, context, values);
    if (violation !== undefined) throw violation;
    if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
      throw new SluiceError(ErrorCode.NON_DETERMINISTIC, `procedure ${procedure.name} returned a Promise: procedures are synchronous and must not await`);
    }
    return result;
  } catch (error) {
    // A fenced call whose error the procedure caught, then failed otherwise: report the cause.
    throw violation ?? error;
  } finally {
    violation = undefined;
    Math.random = savedRandom;
    Date.now = savedNow;
  }
}

/** Calls `run` with the parameters as arguments; fixed arities avoid a spread call per transaction. */
function callRun(run: NonNullable<LoadedProcedure['run']>, context: TransactionContext, values: Value[]): unknown {
  const call = run as (context: TransactionContext, ...params: Value[]) => unknown;
  switch (values.length) {
    case 0:
      return call(context);
    case 1:
      return call(context, values[0]);
    case 2:
      return call(context, values[0], values[1]);
    case 3:
      return call(context, values[0], values[1], values[2]);
    case 4:
      return call(context, values[0], values[1], values[2], values[3]);
    default:
      return call(context, ...values);
  }
}

export function failure(error: unknown, procedure: LoadedProcedure): Error {
  if (error instanceof SluiceError || error instanceof AssertionFailure) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new SluiceError(ErrorCode.PROCEDURE_FAILED, `procedure ${procedure.name} failed: ${message}`, { object: procedure.name });
}

export function procedureParams(procedure: LoadedProcedure, params: readonly unknown[]): Value[] {
  if (params.length !== procedure.parameterCount) {
    throw new SluiceError(ErrorCode.PARAM_COUNT, `procedure ${procedure.name} takes ${procedure.parameterCount} parameter(s), got ${params.length}`, {
      object: procedure.name,
      path: ['params'],
      expected: `${procedure.parameterCount} parameter(s)`,
    });
  }
  const types = procedure.parameterTypes;
  const values = new Array<Value>(params.length);
  for (let i = 0; i < params.length; i++) {
    const value = params[i];
    if (types) {
      values[i] = isCanonical(value, types[i]) ? (value as Value) : coerceValue(value, types[i], { label: `parameter ${i + 1} of ${procedure.name}`, path: ['params', i] });
    } else {
      values[i] = normalizeParam(value, i);
    }
  }
  const partition = procedure.partitionParameter;
  if (partition !== undefined && procedure.partitionType && !isCanonical(values[partition], procedure.partitionType)) {
    // Route by the value the partition column will hold: '42' and 42 must reach the same partition.
    values[partition] = coerceValue(values[partition], procedure.partitionType, { label: `partition parameter ${partition} of ${procedure.name}`, path: ['params', partition] });
  }
  return values;
}


/**
 * One single-partition transaction: begin, run, commit — or roll back and rethrow as a
 * SluiceError (a broken invariant stays an AssertionFailure, which crashes the partition's owner).
 * Used by the embedded Database and by the partition workers.
 */
export function runOnPartition(
  partition: Partition,
  runner: StatementRunner,
  context: TransactionContext,
  procedure: LoadedProcedure,
  values: Value[],
  transactionId: number,
  timestamp: number,
): unknown {
  partition.begin(transactionId, timestamp);
  let result: unknown;
  try {
    result = invoke(procedure, runner, context, values, transactionId, timestamp);
  } catch (error) {
    partition.rollback();
    throw failure(error, procedure);
  }
  partition.commit();
  return result;
}
