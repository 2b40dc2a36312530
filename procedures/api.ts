/**
 * The stored-procedure API: what a procedure author imports.
 *
 * A procedure declares its SQL statements once (planned when it loads, like VoltDB's SQLStmt)
 * and a synchronous `run` that executes them through the context. Everything `run` does is one
 * ACID transaction: returning commits, throwing or `ctx.abort()` rolls back every change.
 *
 * ```ts
 * import { defineProcedure, sql } from '../api.ts';
 *
 * const getBalance = sql<{ balance: number }>('SELECT balance FROM accounts WHERE id = ?');
 * const setBalance = sql('UPDATE accounts SET balance = ? WHERE id = ?');
 *
 * export default defineProcedure({
 *   statements: { getBalance, setBalance },
 *   parameters: ['BIGINT', 'BIGINT'],
 *   run(ctx, id: number, amount: number) {
 *     const account = ctx.queryOne(getBalance, id);
 *     if (!account) return ctx.abort(`no account ${id}`);
 *     ctx.execute(setBalance, account.balance + amount, id);
 *     return account.balance + amount;
 *   },
 * });
 * ```
 *
 * Determinism: `run` must compute the same effects from the same parameters and database, since
 * recovery replays invocations. Use `ctx.timestamp` and `ctx.random()`, never `Date.now()`,
 * `new Date()`, `Math.random()` or I/O; see docs/procedures.md for how this is enforced.
 */
import type { TypeName } from '../engine/types.ts';

/** A value a procedure passes to SQL or receives in a row. */
export type SqlValue = number | string | boolean | Uint8Array | null;
/** What callers may pass: bigint and Date are converted to their canonical form. */
export type Param = SqlValue | bigint | Date;

declare const rowType: unique symbol;

/** A declared SQL statement. `R` is the row type its SELECT returns. */
export interface Statement<R = Record<string, SqlValue>> {
  readonly sql: string;
  readonly [rowType]?: R;
}

/** Declares a statement; plan it by listing it in the procedure's `statements`. */
export function sql<R = Record<string, SqlValue>>(text: string): Statement<R> {
  return Object.freeze({ sql: text }) as Statement<R>;
}

/**
 * What a queued statement must return, checked when the batch runs; a miss aborts the
 * transaction with EXPECTATION_FAILED. For INSERT/UPDATE/DELETE, 'one' and 'zero-or-one' count
 * the rows changed.
 */
export type Expectation = 'any' | 'empty' | 'one' | 'zero-or-one' | 'non-empty' | { readonly scalar: SqlValue };

/** The row a DML statement returns. */
export interface Modified {
  readonly modified_tuples: number;
}

export interface ProcedureContext {
  /** This transaction's id: unique and increasing in execution order. */
  readonly transactionId: number;
  /** The transaction's timestamp in ms since the epoch: use it instead of the clock. */
  readonly timestamp: number;
  /** The partition this runs on; -1 for a multi-partition transaction. */
  readonly partition: number;
  /** A random number in [0, 1) from a source seeded by the transaction: replays identically. */
  random(): number;
  /** Runs a statement now and returns its rows. */
  query<R>(statement: Statement<R>, ...params: Param[]): R[];
  /** Runs a statement expected to return at most one row. */
  queryOne<R>(statement: Statement<R>, ...params: Param[]): R | undefined;
  /** Runs an INSERT/UPDATE/DELETE and returns the number of rows changed. */
  execute(statement: Statement<unknown>, ...params: Param[]): number;
  /** Queues a statement for the next `executeBatch`. */
  queue(statement: Statement<unknown>, params?: readonly Param[], expect?: Expectation): void;
  /** Runs the queued statements in order, checks their expectations, returns their rows. */
  executeBatch(): Record<string, SqlValue>[][];
  /** Rolls back the transaction; the caller receives USER_ABORT with `reason`. */
  abort(reason: string): never;
}

export interface ProcedureDefinition<P extends Param[] = Param[], R = unknown> {
  readonly kind: 'sluice-procedure';
  readonly statements: Readonly<Record<string, Statement<any>>>;
  /** Declared parameter types: checked and converted before `run`, errors name the parameter. */
  readonly parameters: readonly TypeName[] | undefined;
  readonly run: (ctx: ProcedureContext, ...params: P) => R;
}

export function defineProcedure<P extends Param[], R>(definition: {
  statements?: Record<string, Statement<any>>;
  parameters?: readonly TypeName[];
  run: (ctx: ProcedureContext, ...params: P) => R;
}): ProcedureDefinition<P, R> {
  return Object.freeze({
    kind: 'sluice-procedure' as const,
    statements: Object.freeze({ ...(definition.statements ?? {}) }),
    parameters: definition.parameters,
    run: definition.run,
  });
}

/** The parameter list of a procedure definition, for typed clients. */
export type ProcedureParams<D> = D extends ProcedureDefinition<infer P, unknown> ? P : never;
/** The result of a procedure definition, for typed clients. */
export type ProcedureResult<D> = D extends ProcedureDefinition<Param[], infer R> ? R : never;
