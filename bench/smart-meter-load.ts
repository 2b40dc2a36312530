/**
 * The smart-meter workload for the load generator (bench/load-generator.ts): readings from the
 * seeded simulator (procedures/smart-meter/readings.ts), interval after interval as fast as the
 * server accepts them, each meter's readings on one connection so they arrive in order.
 *
 * When every reading of an interval has been answered, FindSilentMeters runs for that interval's
 * time (the simulated timer), and once the simulated clock is past a local midnight (plus a
 * grace period for late meters) the closed days are billed. At most `intervalsAheadMax`
 * intervals are in flight, so memory stays bounded however far the sender runs ahead.
 * Used by `npm run bench:smart-meter`, the demo (`npm start`) and the end-to-end test.
 */
import type { Client } from '../client/index.ts';
import { billClosedDays, type BillingTarget, type SqlCaller } from '../procedures/smart-meter/billing.ts';
import { ingestCodes } from '../procedures/smart-meter/codes.ts';
import type { SilentMetersResult } from '../procedures/smart-meter/find-silent-meters.ts';
import { localDayStart, offsetAt } from '../procedures/smart-meter/local-time.ts';
import type { Reading, ReadingSimulator } from '../procedures/smart-meter/readings.ts';
import type { LoadCall, Workload } from './load-generator.ts';

/** Intervals generated but not fully answered, at most. */
export const intervalsAheadMax = 2;
/** Closed days are billed once the simulated clock is this far into the next day. */
export const billingGraceMs = 30 * 60_000;
const mismatchesKeptMax = 5;

export interface SmartMeterWorkloadOptions {
  simulator: ReadingSimulator;
  /** Connections readings are spread over (by meter). */
  connections: number;
  /** The connection for FindSilentMeters and billing (any connected client). */
  control: Client<any>;
  timeZone: string;
  billing?: BillingTarget;
  /** Stop after this many intervals (default: when the load generator says stop). */
  intervalsMax?: number;
  log?: (line: string) => void;
}

interface IntervalProgress {
  index: number;
  pending: number;
  issuedAll: boolean;
  /** Every reading answered; its FindSilentMeters is queued or done. */
  answeredAll: boolean;
}

export class SmartMeterWorkload implements Workload {
  readonly codes: Record<string, number> = Object.fromEntries(ingestCodes.map((code) => [code, 0]));
  readonly mismatches: string[] = [];
  mismatchCount = 0;
  failed = 0;
  intervalsCompleted = 0;
  silence: SilentMetersResult = { concentratorOutages: 0, silentMeters: 0, metersInOutages: 0 };
  billedDays: string[] = [];
  private readonly options: SmartMeterWorkloadOptions;
  private readonly simulator: ReadingSimulator;
  private readings: Reading[] = [];
  private position = 0;
  private current: IntervalProgress | undefined;
  private readonly inFlight = new Map<number, IntervalProgress>();
  private wake: () => void = () => {};
  private wakeScheduled = false;
  /** Side work (checks, billing) runs one at a time, in interval order of completion. */
  private chain: Promise<void> = Promise.resolve();
  private sideError: Error | undefined;
  private billedBefore: number;
  private latestCompletedTs = 0;

  constructor(options: SmartMeterWorkloadOptions) {
    this.options = options;
    this.simulator = options.simulator;
    this.billedBefore = localDayStart(options.timeZone, this.simulator.tsOf(0));
  }

  start(wake: () => void): void {
    this.wake = wake;
  }

  next(stoppingNow: boolean): LoadCall | undefined | null {
    if (this.position >= this.readings.length) {
      const stopping = stoppingNow || this.simulator.interval >= (this.options.intervalsMax ?? Number.POSITIVE_INFINITY);
      const finishedIssuing = this.current;
      this.current = undefined;
      if (finishedIssuing) {
        finishedIssuing.issuedAll = true;
        if (finishedIssuing.pending === 0) this.complete(finishedIssuing);
      }
      // Stopping ends at an interval boundary: once every generated interval is answered.
      if (stopping) return this.inFlight.size === 0 ? null : undefined;
      if (this.inFlight.size >= intervalsAheadMax) return undefined;
      this.startInterval();
      if (this.readings.length === 0) return undefined;
    }
    const reading = this.readings[this.position++];
    const interval = this.current!;
    return {
      connection: reading.meterIndex % this.options.connections,
      procedure: 'IngestReading',
      params: [reading.meterId, reading.ts, reading.cumulativeKwh],
      done: (result, error) => this.answered(interval, reading, result, error),
    };
  }

  progress(): string {
    const ts = this.simulator.tsOf(Math.max(0, this.simulator.interval - 1));
    const local = new Date(ts + offsetAt(this.options.timeZone, ts)).toISOString().slice(0, 16).replace('T', ' ');
    return `simulated ${local} (${this.options.timeZone}), interval ${this.simulator.interval}`;
  }

  /** Resolves when the checks and billing started so far have finished; rejects with their error. */
  async settled(): Promise<void> {
    await this.chain;
    if (this.sideError) throw this.sideError;
  }

  /** Bills every closed day (at the end of a run). */
  async billAll(): Promise<void> {
    await this.settled();
    if (!this.options.billing) return;
    const billed = await billClosedDays(this.options.control as unknown as SqlCaller, this.options.billing, this.options.timeZone);
    this.billedDays = [...new Set([...this.billedDays, ...billed.map((day) => day.date)])];
  }

  private startInterval(): void {
    const index = this.simulator.interval;
    this.readings = this.simulator.nextInterval();
    this.position = 0;
    const progress: IntervalProgress = { index, pending: this.readings.length, issuedAll: this.readings.length === 0, answeredAll: false };
    this.inFlight.set(index, progress);
    this.current = progress;
    if (this.readings.length === 0) {
      this.current = undefined;
      this.complete(progress);
    }
  }

  private answered(interval: IntervalProgress, reading: Reading, result: unknown, error: Error | undefined): void {
    if (error) {
      this.failed++;
      this.note(`meter ${reading.meterId} at ${new Date(reading.ts).toISOString()}: ${error.message}`);
    } else {
      const code = String(result);
      this.codes[code] = (this.codes[code] ?? 0) + 1;
      if (code !== reading.expect) this.note(`meter ${reading.meterId} at ${new Date(reading.ts).toISOString()}: answered ${code}, expected ${reading.expect}`);
    }
    interval.pending--;
    if (interval.pending === 0 && interval.issuedAll) this.complete(interval);
  }

  private note(mismatch: string): void {
    this.mismatchCount++;
    if (this.mismatches.length < mismatchesKeptMax) this.mismatches.push(mismatch);
  }

  /**
   * An interval whose readings are all answered: FindSilentMeters runs for it, and only then does
   * it leave the intervals in flight. So the check for interval k always runs before any reading
   * of interval k + 2 is sent — a meter coming back cannot hide the silence it is checked for.
   */
  private complete(interval: IntervalProgress): void {
    if (interval.answeredAll) return;
    interval.answeredAll = true;
    const ts = this.simulator.tsOf(interval.index);
    this.chain = this.chain.then(async () => {
      if (this.sideError) return;
      try {
        const found = (await this.options.control.call('FindSilentMeters', ts)) as SilentMetersResult;
        this.simulator.silenceChecked(interval.index);
        this.silence.concentratorOutages += found.concentratorOutages;
        this.silence.silentMeters += found.silentMeters;
        this.silence.metersInOutages += found.metersInOutages;
        if (found.concentratorOutages > 0) this.options.log?.(`concentrator outage detected at ${new Date(ts).toISOString()} (${found.metersInOutages} meters)`);
        this.intervalsCompleted++;
        this.latestCompletedTs = Math.max(this.latestCompletedTs, ts);
        await this.billIfDayClosed();
      } catch (error) {
        this.sideError = error as Error;
      }
      this.inFlight.delete(interval.index);
      this.wakeSoon();
    });
  }

  /** Not from inside next(): the generator's pump would re-enter it mid-interval. */
  private wakeSoon(): void {
    if (!this.wakeScheduled) {
      this.wakeScheduled = true;
      setImmediate(() => {
        this.wakeScheduled = false;
        this.wake();
      });
    }
  }

  private async billIfDayClosed(): Promise<void> {
    if (!this.options.billing) return;
    const today = localDayStart(this.options.timeZone, this.latestCompletedTs - billingGraceMs);
    if (today <= this.billedBefore) return;
    const billed = await billClosedDays(this.options.control as unknown as SqlCaller, this.options.billing, this.options.timeZone, today);
    this.billedBefore = today;
    for (const day of billed) {
      if (!this.billedDays.includes(day.date)) this.billedDays.push(day.date);
      this.options.log?.(`billed ${day.date}: ${day.lines} customers, ${day.kwh.toFixed(1)} kWh → ${this.options.billing.description}`);
    }
  }
}
