/**
 * Per-importer counters behind the `importers` section of @Statistics: messages received,
 * applied, skipped as duplicates (exactly-once), dead-lettered, errors, how often the source was
 * paused, a rate over the last few seconds, the source's lag, and the produce→commit latency.
 */
import { createHistogram } from 'node:perf_hooks';
import type { ImporterStatistics } from '../procedures/system.ts';

/** The rate is measured over this window, from samples taken once a second. */
export const rateWindowSeconds = 5;
const sampleIntervalMs = 1000;

export class ImporterCounters {
  readonly importer: string;
  readonly type: string;
  received = 0;
  applied = 0;
  skipped = 0;
  deadLettered = 0;
  errors = 0;
  pauses = 0;
  /** Messages the source has not delivered yet (Kafka consumer lag), when the source knows. */
  lag: number | null = null;
  state = 'starting';
  /** Produce (or arrival) → commit, µs. */
  readonly latencyMicros = createHistogram();
  private readonly samples: { at: number; done: number }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(importer: string, type: string) {
    this.importer = importer;
    this.type = type;
    this.timer = setInterval(() => this.sample(), sampleIntervalMs);
    this.timer.unref();
    this.sample();
  }

  /** Records the time from the message's own timestamp (ms) to now. */
  latency(producedAtMs: number): void {
    if (producedAtMs <= 0) return;
    const micros = Math.round((Date.now() - producedAtMs) * 1000);
    this.latencyMicros.record(micros > 0 ? micros : 1);
  }

  private get done(): number {
    return this.applied + this.skipped + this.deadLettered;
  }

  private sample(): void {
    this.samples.push({ at: performance.now(), done: this.done });
    if (this.samples.length > rateWindowSeconds + 1) this.samples.shift();
  }

  messagesPerSecond(): number {
    if (this.samples.length === 0) return 0;
    const first = this.samples[0];
    const seconds = (performance.now() - first.at) / 1000;
    return seconds > 0 ? (this.done - first.done) / seconds : 0;
  }

  snapshot(inFlight: number, paused: boolean): ImporterStatistics {
    return {
      importer: this.importer,
      type: this.type,
      state: this.state,
      received: this.received,
      applied: this.applied,
      skipped: this.skipped,
      deadLettered: this.deadLettered,
      errors: this.errors,
      inFlight,
      messagesPerSecond: Math.round(this.messagesPerSecond() * 10) / 10,
      lag: this.lag,
      paused,
      latencyP50Ms: this.latencyMicros.count > 0 ? this.latencyMicros.percentile(50) / 1000 : 0,
      latencyP99Ms: this.latencyMicros.count > 0 ? this.latencyMicros.percentile(99) / 1000 : 0,
    };
  }

  close(): void {
    clearInterval(this.timer);
  }
}
