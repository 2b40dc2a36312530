/**
 * System procedures: one typed table (after Redis's command table) read by the router's
 * dispatcher, the docs and the typed client. Each entry says what it touches and where it runs:
 * 'router' ones answer from the router without a transaction; 'multi' ones run as
 * multi-partition transactions in the global order like any other.
 *
 * ```ts
 * const info = await client.call('@SystemInformation');
 * console.log(info.partitions, info.uptimeMs);
 * ```
 */
import type { ProcedureDefinition } from './api.ts';
import type { TargetStatistics as ExportTargetStatisticsRow } from '../exporters/pipeline.ts';
import type { SnapshotResult as SnapshotSaveResult } from '../engine/durability/server-durability.ts';

/** Per export target, and what @SnapshotSave answers: the shapes their producers define. */
export type { ExportTargetStatisticsRow, SnapshotSaveResult };

/** The call signature of a system procedure, shaped like a ProcedureDefinition's `run`. */
export interface SystemSignature<P extends unknown[], R> {
  readonly run: (ctx: never, ...params: P) => R;
}

/**
 * Who may call a system procedure when security is on (docs/security.md); every entry must say.
 * - 'anyone': every authenticated user;
 * - 'read': roles with `adhocRead` (it reads data or metadata: schema, statistics);
 * - 'adhoc': ad-hoc SQL: `adhocRead` for statements whose plan is read-only, `adhocWrite` for the rest;
 * - 'admin': roles with `admin` only (snapshots, live schema/procedure changes, shutdown, export runs).
 * A role's `procedures` list may also name a system procedure to grant it alone.
 */
export type SystemPermission = 'anyone' | 'read' | 'adhoc' | 'admin';

export interface SystemProcedureInfo {
  readonly name: string;
  readonly access: 'read' | 'write';
  readonly scope: 'router' | 'single' | 'multi';
  readonly permission: SystemPermission;
  readonly summary: string;
}

export const systemProcedures = [
  { name: '@Ping', access: 'read', scope: 'router', permission: 'anyone', summary: 'answers 0 at once; checks that the server is up and the connection works' },
  { name: '@SystemInformation', access: 'read', scope: 'router', permission: 'read', summary: 'version, partitions, uptime and the schema (DDL) of the running database' },
  { name: '@Statistics', access: 'read', scope: 'multi', permission: 'read', summary: 'per procedure: calls, aborts, failures, expired calls, long-running transactions and the longest, latency p50/p99; per partition: transactions, queue depth, calls waiting, the transaction running now; per table: rows and a memory estimate; per importer: messages/s, lag, errors' },
  { name: '@AdHoc', access: 'write', scope: 'router', permission: 'adhoc', summary: 'runs one SQL statement (sql, params[]): on one partition when the statement pins it, else as a multi-partition transaction' },
  { name: '@SnapshotSave', access: 'read', scope: 'multi', permission: 'admin', summary: 'takes a transaction-consistent snapshot of every partition now (needs a data directory); answers with its path, transaction id, rows and the longest pause' },
  { name: '@UpdateApplication', access: 'write', scope: 'multi', permission: 'admin', summary: 'changes the running application without a restart (ddl, procedures): adds tables, indexes, views, streams and procedures, replaces procedure code; takes effect at one point of the transaction order' },
  { name: '@ExportRun', access: 'write', scope: 'router', permission: 'admin', summary: 'runs an end-of-day export job for one finished day (job, "YYYY-MM-DD"); a day already exported is left as it is (status "already")' },
] as const satisfies readonly SystemProcedureInfo[];

/** The name a live update's switch is logged under in the command log. */
export const updateApplicationProcedure = '@UpdateApplication';

export type SystemProcedureName = (typeof systemProcedures)[number]['name'];

export const systemProcedureTable: ReadonlyMap<string, SystemProcedureInfo> = new Map(systemProcedures.map((entry) => [entry.name, entry]));

export interface SystemInformation {
  version: string;
  partitions: number;
  uptimeMs: number;
  startedAt: number;
  /** The application version: goes up by one with every live update (and code change between runs). */
  epoch: number;
  schema: string;
  procedures: string[];
  /** Each procedure's declared parameter types (null when it declares none): loaders convert text with them. */
  procedureParameters?: Record<string, string[] | null>;
}

export interface ProcedureStatistics {
  procedure: string;
  calls: number;
  aborts: number;
  failures: number;
  /** Calls answered TIMEOUT (DEADLINE_EXPIRED) because they waited past their deadline; none of them ran. */
  expired: number;
  /** Transactions that ran longer than the long-running threshold (`longRunningMs`). */
  longRunning: number;
  /** The longest of those, in ms (0 when none); exact to within the monitor's 20 ms sample. */
  longest_ms: number;
  p50_ms: number;
  p99_ms: number;
}

/** The transaction a partition is running, once it has run for at least one monitor sample (20 ms). */
export interface RunningTransactionStatistics {
  /** The procedure, or '(multi-partition)' while the partition serves one. */
  procedure: string;
  transactionId: number;
  elapsedMs: number;
}

export interface PartitionQueueStatistics {
  partition: number;
  /** Transactions run; from the last answer when `answered` is false. */
  transactions: number;
  /** Calls for this partition not yet answered: sent to it or waiting in the router. */
  queueDepth: number;
  /** Calls waiting in the router, not yet sequenced (partition busy, stalled or export-held). */
  waiting: number;
  /** Calls parked because an export buffer of this partition is full (onFull 'wait'). */
  exportHeld: number;
  /** What it runs now, or null when idle or between short transactions. */
  running: RunningTransactionStatistics | null;
  /**
   * False when the partition was busy in one transaction and was not asked (asking would wait for
   * it): `transactions` and its tables' rows are from its last answer.
   */
  answered: boolean;
}

export interface TableStatisticsRow {
  table: string;
  kind: string;
  rows: number;
  bytesEstimate: number;
}

/** One importer (importers/): what it consumed, applied and could not apply, and how far behind it is. */
export interface ImporterStatistics {
  importer: string;
  type: string;
  state: string;
  received: number;
  applied: number;
  skipped: number;
  deadLettered: number;
  errors: number;
  inFlight: number;
  messagesPerSecond: number;
  lag: number | null;
  paused: boolean;
  /** From the message's timestamp (Kafka: the producer's; MQTT: a `timestamp` user property, else arrival) to the answer. */
  latencyP50Ms: number;
  latencyP99Ms: number;
}


export interface Statistics {
  procedures: ProcedureStatistics[];
  partitions: PartitionQueueStatistics[];
  tables: TableStatisticsRow[];
  /** Present when the server runs importers. */
  importers?: ImporterStatistics[];
  /** Present when the server has an export pipeline (a data directory). */
  exports?: ExportTargetStatisticsRow[];
}

/** What @ExportRun answers. */
export interface ExportRunResult {
  job: string;
  day: string;
  status: 'written' | 'already';
  rows: number;
}

/**
 * What @UpdateApplication takes: DDL to add (on top of the running schema) and, optionally, the
 * whole procedures folder as file texts keyed by their paths inside it ('vote.ts', 'lib/fees.ts').
 * Without `procedures` the running procedure files stay.
 */
export interface ApplicationUpdate {
  ddl?: string;
  procedures?: Record<string, string>;
}

/** What @UpdateApplication answers. */
export interface ApplicationUpdateResult {
  /** The new version's number (@SystemInformation's `epoch`). */
  epoch: number;
  /** The switch's place in the transaction order: calls sequenced after it ran on the new version. */
  transactionId: number;
  /** Tables, views and streams the update added. */
  tablesAdded: string[];
  proceduresAdded: string[];
  /** Procedures whose code (their file or a helper it imports) changed. */
  proceduresReplaced: string[];
}

/** A result table, as @AdHoc (and client.query) returns it. */
export interface QueryResult {
  columns: string[];
  types: ({ name: string; length?: number; precision?: number; scale?: number } | null)[];
  rows: (number | string | boolean | Uint8Array | null)[][];
}

/** The system procedures' signatures, merged into every typed client's procedures. */
export interface SystemApp {
  '@Ping': ProcedureDefinition<[], number>;
  '@SystemInformation': ProcedureDefinition<[], SystemInformation>;
  '@Statistics': ProcedureDefinition<[], Statistics>;
  '@AdHoc': SystemSignature<[sql: string, params: unknown[]], QueryResult>;
  '@SnapshotSave': SystemSignature<[], SnapshotSaveResult>;
  '@UpdateApplication': SystemSignature<[update: ApplicationUpdate], ApplicationUpdateResult>;
  '@ExportRun': SystemSignature<[job: string, day: string], ExportRunResult>;
}

