/**
 * The part every importer shares: a message goes through its mapping and into the router as one
 * call of the importer's procedure (or of its exactly-once wrapper, importers/exactly-once.ts);
 * the answer decides what happens next:
 * - SUCCESS: applied (or, exactly-once, skipped as already applied) — the source may commit it;
 * - the message cannot be mapped, or its transaction fails (abort, constraint, bad parameter,
 *   exception): it goes to the dead-letter place with the reason, then counts as done, and the
 *   stream goes on;
 * - SERVER_BUSY (a partition queue is full) is answered synchronously inside `submit`, before the
 *   call was sequenced: the pipeline keeps the message and every later one in order, tells the
 *   source to pause, and retries with backoff. Nothing is reordered, which exactly-once relies on;
 * - the server shutting down: the message is not done and is never acknowledged, so the source
 *   delivers it again after the restart.
 *
 * Flow control: at most `inFlightMax` calls per importer are outstanding, and the pipeline also
 * pauses its source while any partition queue is past `queueDepthPauseFraction` of the limit at
 * which the router starts refusing calls; it resumes the source when both drain below half.
 * Sources pause for real (Kafka: the message stream stops fetching; MQTT: the client stops reading
 * its socket), so nothing is buffered without bound.
 */
import type { Logger } from 'pino';
import { ErrorCode } from '../engine/errors.ts';
import type { ResultSink, Router } from '../engine/execution/router.ts';
import { ProtocolCode, Status, type ErrorPayload } from '../engine/server/protocol.ts';
import type { ImportMessage, Mapping } from './mapping.ts';
import { wrapperName } from './exactly-once.ts';
import type { DeadLetter, DeadLetterSink } from './dead-letter.ts';
import { ImporterCounters } from './statistics.ts';

export const defaultInFlightMax = 2000;
/** Pause when a partition queue reaches this fraction of the router's SERVER_BUSY depth. */
export const queueDepthPauseFraction = 0.5;
export const retryDelayInitialMs = 5;
export const retryDelayMaxMs = 500;
/** How long `close` waits for outstanding calls before giving up on them (they are redelivered). */
export const closeWaitMs = 10_000;

export type Delivery = 'at-least-once' | 'exactly-once';

/** What the source learns about each message it offered. */
export interface MessageDone {
  /** The message is finished (applied, skipped or dead-lettered): acknowledge or commit it. */
  (): void;
}

export interface PipelineOptions {
  importer: string;
  procedure: string;
  delivery: Delivery;
  mapping: Mapping;
  deadLetter: DeadLetterSink;
  router: Router;
  logger: Logger | undefined;
  counters: ImporterCounters;
  inFlightMax?: number;
  /** Called when the source may offer messages again after `offer` returned false. */
  resume: () => void;
}

interface Offered {
  message: ImportMessage;
  done: MessageDone;
  name: string;
  params: unknown[];
}

const statusNames = new Map<number, string>(Object.entries(Status).map(([name, value]) => [value, name]));

export class ImportPipeline implements ResultSink {
  private readonly options: PipelineOptions;
  private readonly inFlightMax: number;
  private readonly pending = new Map<number, Offered>();
  private nextToken = 1;
  /** Messages refused with SERVER_BUSY (the first) and those offered after it, in order. */
  private readonly blocked: Offered[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = retryDelayInitialMs;
  private submitting = false;
  private refusedNow = false;
  private pausedSource = false;
  private closed = false;
  private drainWaiters: (() => void)[] = [];

  constructor(options: PipelineOptions) {
    this.options = options;
    this.inFlightMax = options.inFlightMax ?? defaultInFlightMax;
  }

  get inFlight(): number {
    return this.pending.size + this.blocked.length;
  }

  get paused(): boolean {
    return this.pausedSource;
  }

  /**
   * Takes one message. Returns false when the source must pause: the pipeline keeps the message
   * (it will be submitted in order) and calls `resume` when the source may go on.
   */
  offer(message: ImportMessage, done: MessageDone): boolean {
    const counters = this.options.counters;
    counters.received++;
    let params: unknown[];
    try {
      params = this.options.mapping(message);
    } catch (error) {
      counters.errors++;
      this.deadLetter(message, `cannot map the message to ${this.options.procedure}: ${(error as Error).message}`, done);
      return !this.mustPause();
    }
    const offered: Offered = { message, done, name: this.options.procedure, params };
    if (this.options.delivery === 'exactly-once') {
      offered.name = wrapperName(this.options.procedure);
      offered.params = [this.options.importer, message.topic, message.partition, message.offset, ...params];
    }
    if (this.closed) return false;
    if (this.blocked.length > 0 || !this.trySubmit(offered)) {
      this.blocked.push(offered);
      this.pauseSource();
      this.scheduleRetry();
      return false;
    }
    if (this.mustPause()) {
      this.pauseSource();
      return false;
    }
    return true;
  }

  /** Submits; false when the router refused it at once with SERVER_BUSY (nothing ran). */
  private trySubmit(offered: Offered): boolean {
    const token = this.nextToken++;
    this.pending.set(token, offered);
    this.submitting = true;
    this.refusedNow = false;
    try {
      this.options.router.submit(offered.name, offered.params, this, token);
    } finally {
      this.submitting = false;
    }
    if (this.refusedNow) {
      this.pending.delete(token);
      return false;
    }
    return true;
  }

  /** ResultSink: the router's answer. */
  deliver(token: number, status: number, payload: unknown): void {
    if (status === Status.SERVER_BUSY && this.submitting) {
      this.refusedNow = true;
      return;
    }
    const offered = this.pending.get(token);
    if (offered === undefined) return;
    this.pending.delete(token);
    const counters = this.options.counters;
    if (status === Status.SUCCESS) {
      if (this.options.delivery === 'exactly-once' && Array.isArray(payload) && payload[0] === 0) counters.skipped++;
      else counters.applied++;
      counters.latency(offered.message.timestamp);
      offered.done();
    } else {
      const error = payload as ErrorPayload;
      const code = Array.isArray(error) ? String(error[0]) : 'UNKNOWN';
      const message = Array.isArray(error) ? String(error[1]) : String(payload);
      if (code === ProtocolCode.SHUTTING_DOWN || code === ErrorCode.CLOSED || (status === Status.UNEXPECTED_FAILURE && /partition \d+ (crashed|exited)/.test(message))) {
        // Not run, or the server is going down: never acknowledged, so delivered again later.
        counters.errors++;
        this.options.logger?.warn({ importer: this.options.importer, code }, `message left unacknowledged: ${message}`);
      } else {
        counters.errors++;
        this.deadLetter(offered.message, `${this.options.procedure} failed with ${statusNames.get(status) ?? status} ${code}: ${message}`, offered.done);
      }
    }
    this.afterCompletion();
  }

  private afterCompletion(): void {
    if (this.blocked.length > 0) {
      this.retryBlocked();
      return;
    }
    if (this.pausedSource && !this.closed && this.canResume()) {
      this.pausedSource = false;
      this.options.resume();
    }
    if (this.pending.size === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  private deadLetter(message: ImportMessage, reason: string, done: MessageDone): void {
    const counters = this.options.counters;
    this.options.logger?.warn({ importer: this.options.importer, topic: message.topic, partition: message.partition, offset: message.offset }, `dead letter: ${reason}`);
    const entry: DeadLetter = { importer: this.options.importer, message, reason };
    const token = this.nextToken++;
    // Counted as in flight until it is written, so a stream of poison cannot outrun the sink.
    this.pending.set(token, { message, done, name: '', params: [] });
    this.options.deadLetter.write(entry).then(
      () => {
        counters.deadLettered++;
        this.pending.delete(token);
        done();
        this.afterCompletion();
      },
      (error: unknown) => {
        // The sink retries until it is closed; it only gives up at shutdown: redelivered later.
        this.pending.delete(token);
        this.options.logger?.error({ importer: this.options.importer, err: error }, 'dead letter not written; the message stays unacknowledged');
        this.afterCompletion();
      },
    );
  }

  private mustPause(): boolean {
    if (this.inFlight >= this.inFlightMax) return true;
    const threshold = this.options.router.queueDepthLimit * queueDepthPauseFraction;
    for (const depth of this.options.router.queueDepths) if (depth >= threshold) return true;
    return false;
  }

  private canResume(): boolean {
    if (this.inFlight > this.inFlightMax / 2) return false;
    const threshold = (this.options.router.queueDepthLimit * queueDepthPauseFraction) / 2;
    for (const depth of this.options.router.queueDepths) if (depth > threshold) return false;
    return true;
  }

  private pauseSource(): void {
    if (!this.pausedSource) {
      this.pausedSource = true;
      this.options.counters.pauses++;
    }
    // Partition queues drain without any answer of ours: look again after a while.
    if (this.blocked.length === 0 && this.pending.size === 0) this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryBlocked();
    }, this.retryDelayMs);
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, retryDelayMaxMs);
  }

  private retryBlocked(): void {
    if (this.closed) return;
    while (this.blocked.length > 0) {
      if (!this.trySubmit(this.blocked[0])) {
        this.scheduleRetry();
        return;
      }
      this.blocked.shift();
    }
    this.retryDelayMs = retryDelayInitialMs;
    if (this.pausedSource && this.canResume()) {
      this.pausedSource = false;
      this.options.resume();
    } else if (this.pausedSource && this.pending.size === 0) {
      this.scheduleRetry();
    }
  }

  /** Stops taking messages and waits (bounded) for the outstanding ones to be answered. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.blocked.length = 0;
    if (this.pending.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, closeWaitMs);
      }),
    ]);
    clearTimeout(timer);
  }
}
