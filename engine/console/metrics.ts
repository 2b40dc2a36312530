/**
 * Prometheus metrics (`GET /metrics` on the console port), built with prom-client from one fresh
 * @Statistics answer per scrape, so a scrape and a client's @Statistics taken at the same quiet
 * moment agree number for number. Counters that Sluice keeps itself (calls, transactions) are
 * exposed as Prometheus counters set to Sluice's totals; process figures come from prom-client's
 * default collectors. docs/console.md lists every name.
 *
 * Sections other parts of Sluice add to @Statistics (`exports` per target, `importers`) are exported
 * when present. Their well-known fields get proper names; every other numeric field of a row is
 * still visible as a labelled gauge, so a field added later is not lost on the way to Prometheus.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { exportTargetsOf, type SectionRow, type StatisticsSnapshot } from './sampler.ts';

type Row = Record<string, unknown>;

/** Field spellings for a section's figures, first match wins (the sections are owned elsewhere). */
const targetNameFields = ['target', 'name'];
const targetPendingFields = ['rowsPending', 'pending', 'rows_pending'];
const targetDeliveredFields = ['rowsDelivered', 'delivered', 'rows_delivered'];
const targetLagFields = ['lagSeconds', 'lag_s', 'lag_seconds', 'lag'];
const importerNameFields = ['importer', 'name'];
const importerMessagesFields = ['received', 'messages', 'messagesTotal', 'messages_total'];
const importerLagFields = ['lag', 'lagMessages', 'lag_messages'];
const importerErrorsFields = ['errors', 'errorsTotal', 'errors_total'];

export class ConsoleMetrics {
  readonly registry = new Registry();
  private readonly procedureCalls: Counter<'procedure'>;
  private readonly procedureAborts: Counter<'procedure'>;
  private readonly procedureFailures: Counter<'procedure'>;
  private readonly procedureLatency: Gauge<'procedure' | 'quantile'>;
  private readonly partitionTransactions: Counter<'partition'>;
  private readonly partitionQueueDepth: Gauge<'partition'>;
  private readonly tableRows: Gauge<'table' | 'kind'>;
  private readonly tableBytes: Gauge<'table' | 'kind'>;
  private readonly targetPending: Gauge<'target'>;
  private readonly targetDelivered: Counter<'target'>;
  private readonly targetLag: Gauge<'target'>;
  private readonly targetStat: Gauge<'target' | 'stat'>;
  private readonly importerMessages: Counter<'importer'>;
  private readonly importerLag: Gauge<'importer'>;
  private readonly importerErrors: Counter<'importer'>;
  private readonly importerStat: Gauge<'importer' | 'stat'>;
  private readonly partitions: Gauge;

  constructor(partitionCount: number) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.procedureCalls = new Counter({ name: 'sluice_procedure_calls_total', help: 'Calls answered, per procedure (as @Statistics calls)', labelNames: ['procedure'], registers });
    this.procedureAborts = new Counter({ name: 'sluice_procedure_aborts_total', help: 'Calls that aborted (USER_ABORT, EXPECTATION_FAILED), per procedure', labelNames: ['procedure'], registers });
    this.procedureFailures = new Counter({ name: 'sluice_procedure_failures_total', help: 'Calls that failed otherwise (bad parameters, constraint violations, errors), per procedure', labelNames: ['procedure'], registers });
    this.procedureLatency = new Gauge({ name: 'sluice_procedure_latency_seconds', help: 'Latency percentiles since the server started, per procedure (router to answer)', labelNames: ['procedure', 'quantile'], registers });
    this.partitionTransactions = new Counter({ name: 'sluice_partition_transactions_total', help: 'Transactions run, per partition', labelNames: ['partition'], registers });
    this.partitionQueueDepth = new Gauge({ name: 'sluice_partition_queue_depth', help: 'Calls sent to the partition and not yet answered', labelNames: ['partition'], registers });
    this.tableRows = new Gauge({ name: 'sluice_table_rows', help: 'Rows per table, view and stream buffer (replicated tables counted once)', labelNames: ['table', 'kind'], registers });
    this.tableBytes = new Gauge({ name: 'sluice_table_bytes_estimate', help: 'Estimated memory per table, over all partitions', labelNames: ['table', 'kind'], registers });
    this.targetPending = new Gauge({ name: 'sluice_export_target_rows_pending', help: 'Committed stream rows not yet acknowledged by the export target', labelNames: ['target'], registers });
    this.targetDelivered = new Counter({ name: 'sluice_export_target_rows_delivered_total', help: 'Stream rows the export target acknowledged', labelNames: ['target'], registers });
    this.targetLag = new Gauge({ name: 'sluice_export_target_lag_seconds', help: 'Age of the oldest row not yet delivered to the export target', labelNames: ['target'], registers });
    this.targetStat = new Gauge({ name: 'sluice_export_target_stat', help: 'Every other numeric figure @Statistics reports per export target', labelNames: ['target', 'stat'], registers });
    this.importerMessages = new Counter({ name: 'sluice_importer_messages_total', help: 'Messages the importer consumed', labelNames: ['importer'], registers });
    this.importerLag = new Gauge({ name: 'sluice_importer_lag', help: 'Messages waiting at the source for the importer', labelNames: ['importer'], registers });
    this.importerErrors = new Counter({ name: 'sluice_importer_errors_total', help: 'Messages that failed to decode or whose procedure failed', labelNames: ['importer'], registers });
    this.importerStat = new Gauge({ name: 'sluice_importer_stat', help: 'Every other numeric figure @Statistics reports per importer', labelNames: ['importer', 'stat'], registers });
    this.partitions = new Gauge({ name: 'sluice_partitions', help: 'Partition worker threads', registers });
    this.partitions.set(partitionCount);
  }

  /** Sets every Sluice figure from one @Statistics answer; label sets gone from it disappear. */
  update(statistics: StatisticsSnapshot): void {
    for (const metric of [this.procedureCalls, this.procedureAborts, this.procedureFailures, this.procedureLatency, this.partitionTransactions, this.partitionQueueDepth, this.tableRows, this.tableBytes]) metric.reset();
    for (const row of statistics.procedures) {
      const labels = { procedure: row.procedure };
      this.procedureCalls.inc(labels, row.calls);
      this.procedureAborts.inc(labels, row.aborts);
      this.procedureFailures.inc(labels, row.failures);
      this.procedureLatency.set({ ...labels, quantile: '0.5' }, row.p50_ms / 1000);
      this.procedureLatency.set({ ...labels, quantile: '0.99' }, row.p99_ms / 1000);
    }
    for (const row of statistics.partitions) {
      const labels = { partition: String(row.partition) };
      this.partitionTransactions.inc(labels, row.transactions);
      this.partitionQueueDepth.set(labels, row.queueDepth);
    }
    for (const row of statistics.tables) {
      const labels = { table: row.table, kind: row.kind };
      this.tableRows.set(labels, row.rows);
      this.tableBytes.set(labels, row.bytesEstimate);
    }
    this.updateTargets(exportTargetsOf(statistics) ?? []);
    this.updateImporters(statistics.importers ?? []);
  }

  private updateTargets(sectionRows: readonly SectionRow[]): void {
    const rows = sectionRows as readonly Row[];
    for (const metric of [this.targetPending, this.targetDelivered, this.targetLag, this.targetStat]) metric.reset();
    for (const row of rows) {
      const target = { target: String(pick(row, targetNameFields) ?? '?') };
      const known = new Set([...targetNameFields]);
      setIfNumber(row, targetPendingFields, known, (value) => this.targetPending.set(target, value));
      setIfNumber(row, targetDeliveredFields, known, (value) => this.targetDelivered.inc(target, value));
      setIfNumber(row, targetLagFields, known, (value) => this.targetLag.set(target, value));
      for (const [stat, value] of Object.entries(row)) {
        if (!known.has(stat) && isFiniteNumber(value)) this.targetStat.set({ ...target, stat }, value);
      }
    }
  }

  private updateImporters(sectionRows: readonly SectionRow[]): void {
    const rows = sectionRows as readonly Row[];
    for (const metric of [this.importerMessages, this.importerLag, this.importerErrors, this.importerStat]) metric.reset();
    for (const row of rows) {
      const importer = { importer: String(pick(row, importerNameFields) ?? '?') };
      const known = new Set([...importerNameFields]);
      setIfNumber(row, importerMessagesFields, known, (value) => this.importerMessages.inc(importer, value));
      setIfNumber(row, importerLagFields, known, (value) => this.importerLag.set(importer, value));
      setIfNumber(row, importerErrorsFields, known, (value) => this.importerErrors.inc(importer, value));
      for (const [stat, value] of Object.entries(row)) {
        if (!known.has(stat) && isFiniteNumber(value)) this.importerStat.set({ ...importer, stat }, value);
      }
    }
  }

  /** The exposition text, after `update`. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function pick(row: Row, fields: readonly string[]): unknown {
  for (const field of fields) if (row[field] !== undefined && row[field] !== null) return row[field];
  return undefined;
}

/** Calls `set` with the first numeric field of `fields` and marks it handled. */
function setIfNumber(row: Row, fields: readonly string[], known: Set<string>, set: (value: number) => void): void {
  for (const field of fields) {
    const value = row[field];
    if (isFiniteNumber(value)) {
      // Counters only go up; a negative figure is a bug elsewhere, not a reason to fail the scrape.
      set(Math.max(0, value));
      known.add(field);
      return;
    }
  }
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}
