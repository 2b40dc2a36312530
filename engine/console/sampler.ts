/**
 * The web console's heartbeat: once a second (while someone watches) it calls @Statistics through
 * the router — the same figures a client gets — and turns two consecutive answers into rates
 * (calls/s, transactions/s per partition) plus the last second's latency percentiles from the
 * router's latency windows. Every open console page shares one sampler, so ten browser tabs cost
 * one multi-partition @Statistics transaction per second, not ten.
 *
 * A short history of the headline figures is kept so that a page opened now draws the last few
 * minutes at once instead of starting from an empty chart.
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { ProcedureStatistics, Statistics, TableStatisticsRow } from '../../procedures/system.ts';
import type { Router } from '../execution/router.ts';

/** How often the console samples @Statistics. */
export const sampleIntervalMs = 1000;
/** Headline points kept for charts of a page opened later: five minutes at one a second. */
export const historySamplesMax = 300;

/**
 * @Statistics as this build returns it, plus the sections other parts of Sluice add when they are
 * present (export targets, importers): the console shows whatever rows they hold.
 */
export type StatisticsSnapshot = Omit<Statistics, 'exports' | 'targets' | 'importers'> & {
  /** Export targets, as the export pipeline reports them (exporters/pipeline.ts TargetStatistics). */
  exports?: readonly SectionRow[];
  /** The same under the name the design used first; read when `exports` is absent. */
  targets?: readonly SectionRow[];
  importers?: readonly SectionRow[];
};

/** A row of such a section: the console shows and exports its fields as they come. */
export type SectionRow = object;

export interface LatencySummary {
  /** Calls measured in the window. */
  count: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
}

export interface ProcedureSample extends ProcedureStatistics {
  callsPerSecond: number;
  /** p99 over the last interval; null when the procedure was not called in it. */
  recentP99_ms: number | null;
}

export interface PartitionSample {
  partition: number;
  transactions: number;
  transactionsPerSecond: number;
  queueDepth: number;
}

/** What one tick of the console shows; /api/statistics and the event stream send it as JSON. */
export interface ConsoleSample {
  /** Wall-clock time of the sample, ms since the epoch. */
  at: number;
  /** Time since the previous sample; 0 on the first, whose rates are therefore 0. */
  intervalMs: number;
  callsPerSecond: number;
  abortsPerSecond: number;
  failuresPerSecond: number;
  /** Calls since the server started, the console's own @Statistics polls left out. */
  callsTotal: number;
  /** Latency of every call in the interval except the console's own polls. */
  latency: LatencySummary;
  procedures: ProcedureSample[];
  partitions: PartitionSample[];
  tables: TableStatisticsRow[];
  targets?: readonly SectionRow[];
  importers?: readonly SectionRow[];
}

/** One point of the charts' history. */
export interface HistoryPoint {
  at: number;
  callsPerSecond: number;
  p50_ms: number;
  p99_ms: number;
}

/** A previous sample older than this many intervals is not used for rates. */
const staleAfterIntervals = 3;
/** The console's own polling procedure: left out of throughput and latency so an idle server reads 0. */
const ownPollProcedure = '@Statistics';

export class StatisticsSampler {
  private readonly router: Router;
  private readonly intervalMs: number;
  private readonly listeners = new Set<(sample: ConsoleSample) => void>();
  private readonly history: HistoryPoint[] = [];
  private timer: NodeJS.Timeout | undefined;
  private previous: { at: number; statistics: StatisticsSnapshot } | undefined;
  private sampling: Promise<ConsoleSample> | undefined;
  latest: ConsoleSample | undefined;
  /** The last sampling failure (the router closed or broke), cleared by the next success. */
  lastError: Error | undefined;

  constructor(router: Router, intervalMs = sampleIntervalMs) {
    this.router = router;
    this.intervalMs = intervalMs;
    // Starts the router's latency windows, so the first sample already measures one interval.
    router.takeLatencyWindows(() => {});
  }

  /** Calls `listener` with every sample until the returned function is called; samples only while someone listens. */
  subscribe(listener: (sample: ConsoleSample) => void): () => void {
    this.listeners.add(listener);
    if (this.timer === undefined) {
      this.timer = setInterval(() => void this.sample().catch(() => {}), this.intervalMs);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  historyPoints(): HistoryPoint[] {
    return this.history.slice();
  }

  /** Takes a sample now (sharing one already under way) and hands it to the listeners. */
  sample(): Promise<ConsoleSample> {
    this.sampling ??= this.takeSample().finally(() => {
      this.sampling = undefined;
    });
    return this.sampling;
  }

  /** The latest sample, or a fresh one when there is none yet. */
  async current(): Promise<ConsoleSample> {
    return this.latest ?? (await this.sample());
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async takeSample(): Promise<ConsoleSample> {
    let statistics: StatisticsSnapshot;
    try {
      statistics = (await this.router.call('@Statistics')) as StatisticsSnapshot;
    } catch (error) {
      this.lastError = error as Error;
      throw error;
    }
    this.lastError = undefined;
    const at = Date.now();
    const sample = this.derive(at, statistics);
    this.previous = { at, statistics };
    this.latest = sample;
    // A first sample has no rates yet: charting its zeros would draw a false dip.
    if (sample.intervalMs > 0) this.history.push({ at, callsPerSecond: sample.callsPerSecond, p50_ms: sample.latency.p50_ms, p99_ms: sample.latency.p99_ms });
    if (this.history.length > historySamplesMax) this.history.splice(0, this.history.length - historySamplesMax);
    for (const listener of this.listeners) listener(sample);
    return sample;
  }

  private derive(at: number, statistics: StatisticsSnapshot): ConsoleSample {
    // After a pause with nobody watching, a rate over the whole gap would mislead: start afresh.
    const previous = this.previous !== undefined && at - this.previous.at <= staleAfterIntervals * this.intervalMs ? this.previous : undefined;
    const intervalMs = previous === undefined ? 0 : Math.max(1, at - previous.at);
    const perSecond = (delta: number) => (intervalMs === 0 ? 0 : Math.max(0, delta) * (1000 / intervalMs));
    const before = new Map((previous?.statistics.procedures ?? []).map((row) => [row.procedure, row]));

    // The router resets each window right after the visit: read what is needed inside it.
    const recentP99 = new Map<string, number>();
    const combined = createHistogram();
    this.router.takeLatencyWindows((procedure, window) => {
      recentP99.set(procedure, window.percentile(99) / 1000);
      if (procedure !== ownPollProcedure) combined.add(window);
    });

    let calls = 0;
    let aborts = 0;
    let failures = 0;
    let callsTotal = 0;
    const procedures: ProcedureSample[] = statistics.procedures.map((row) => {
      const old = before.get(row.procedure);
      if (row.procedure !== ownPollProcedure) {
        calls += row.calls - (old?.calls ?? 0);
        aborts += row.aborts - (old?.aborts ?? 0);
        failures += row.failures - (old?.failures ?? 0);
        callsTotal += row.calls;
      }
      return {
        ...row,
        callsPerSecond: perSecond(row.calls - (old?.calls ?? 0)),
        recentP99_ms: recentP99.get(row.procedure) ?? null,
      };
    });

    const transactionsBefore = new Map((previous?.statistics.partitions ?? []).map((row) => [row.partition, row.transactions]));
    const partitions: PartitionSample[] = statistics.partitions.map((row) => ({
      partition: row.partition,
      transactions: row.transactions,
      transactionsPerSecond: perSecond(row.transactions - (transactionsBefore.get(row.partition) ?? row.transactions)),
      queueDepth: row.queueDepth,
    }));

    const sample: ConsoleSample = {
      at,
      intervalMs,
      callsPerSecond: perSecond(calls),
      abortsPerSecond: perSecond(aborts),
      failuresPerSecond: perSecond(failures),
      callsTotal,
      latency: summarize(combined),
      procedures,
      partitions,
      tables: statistics.tables,
    };
    const targets = exportTargetsOf(statistics);
    if (targets !== undefined) sample.targets = targets;
    if (statistics.importers !== undefined) sample.importers = statistics.importers;
    return sample;
  }
}

function summarize(histogram: RecordableHistogram): LatencySummary {
  if (histogram.count === 0) return { count: 0, p50_ms: 0, p95_ms: 0, p99_ms: 0, max_ms: 0 };
  return {
    count: histogram.count,
    p50_ms: histogram.percentile(50) / 1000,
    p95_ms: histogram.percentile(95) / 1000,
    p99_ms: histogram.percentile(99) / 1000,
    max_ms: histogram.max / 1000,
  };
}

/** The export targets section of an @Statistics answer, under either name. */
export function exportTargetsOf(statistics: StatisticsSnapshot): readonly SectionRow[] | undefined {
  return statistics.exports ?? statistics.targets;
}
