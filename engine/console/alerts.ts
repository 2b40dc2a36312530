/**
 * The console's "latest alerts" panel. Alerts are rows of a stream (e.g. `meter_alerts`); rows of
 * a stream are not kept in a table, so the console cannot simply query them. It takes them from
 * one of two sources, whichever the caller of startConsole supplies:
 *
 * - a stream: `{ stream: 'meter_alerts', where? }` — the console subscribes to it through the
 *   server's stream subscriptions (engine/server/subscriptions.ts), as a client would, and gets
 *   rows as their transactions commit (never an aborted transaction's);
 * - a feed: anything else that pushes committed rows as they arrive, wrapped in the small
 *   `AlertFeed` interface below; or
 * - a query: SQL run every few seconds whose result is the latest alerts (for an application that
 *   also keeps its alerts in a table), e.g. `SELECT * FROM alerts ORDER BY at DESC LIMIT 20`.
 *
 * Without either, the panel says there is no alert stream. The newest rows are kept (bounded) so
 * a page opened later shows them at once.
 */
import type { QueryResult } from '../../procedures/system.ts';
import type { Router } from '../execution/router.ts';
import { FrameKind } from '../server/protocol.ts';
import type { SubscribeOptions, SubscribedInfo, SubscriptionSink } from '../server/subscriptions.ts';

/** Alerts kept for the panel; older ones fall off. */
export const alertsKeptMax = 50;
/** How often an alert query runs. */
export const alertQueryIntervalMs = 2000;

export type AlertRow = Record<string, unknown>;

/** Pushes committed rows of an alert stream; `subscribe` returns the function that stops it. */
export interface AlertFeed {
  /** The stream's name, shown as the panel's title. */
  readonly stream: string;
  subscribe(onRows: (rows: readonly AlertRow[]) => void): () => void;
}

export interface AlertQuery {
  /** Shown as the panel's title. */
  readonly title: string;
  readonly sql: string;
  readonly intervalMs?: number;
}

/** A stream of the running server, followed through its subscriptions. */
export interface AlertStream {
  readonly stream: string;
  /** Column → value (or values): only matching rows, as a client's subscription `where`. */
  readonly where?: Record<string, unknown>;
}

export type AlertSource = AlertFeed | AlertQuery | AlertStream;

/** The part of the server's SubscriptionHub the console uses. */
export interface SubscriptionSource {
  subscribe(sink: SubscriptionSink, id: number, stream: unknown, options?: SubscribeOptions): SubscribedInfo;
  unsubscribe(sink: SubscriptionSink, id: number): boolean;
}

/**
 * An AlertFeed over the server's stream subscriptions: the console is one more subscriber, in
 * process, starting from now. Throws (UNKNOWN_TABLE naming the streams there are) when the
 * stream does not exist, so a misspelt name fails at start rather than showing nothing.
 */
export function subscriptionAlertFeed(hub: SubscriptionSource, source: AlertStream, onEnded: (message: string) => void, timestampColumns?: (stream: string) => readonly string[]): AlertFeed {
  return {
    stream: source.stream,
    subscribe(onRows) {
      let columns: string[] = [];
      const sink: SubscriptionSink = {
        // In process: nothing waits in a socket buffer.
        bufferedBytes: 0,
        sendFrame(frame) {
          if (frame[0] === FrameKind.SUBSCRIPTION_ENDED) {
            onEnded(`the alert subscription ended: ${String(frame[2])} ${String(frame[3])}`);
            return;
          }
          if (frame[0] !== FrameKind.ROWS) return;
          const rows: AlertRow[] = [];
          // [ROWS, id, partition, nextSequence, sequence, row, sequence, row, …]
          for (let i = 5; i < frame.length; i += 2) {
            const values = frame[i] as readonly unknown[];
            rows.push(Object.fromEntries(columns.map((column, c) => [column, values[c]])));
          }
          onRows(rows);
        },
      };
      columns = hub.subscribe(sink, consoleSubscriptionId, source.stream, { where: source.where, from: 'now' }).columns;
      const timestamps = new Set(timestampColumns?.(source.stream) ?? []);
      if (timestamps.size > 0) {
        const deliver = onRows;
        onRows = (rows) => deliver(rows.map((row) => showTimestamps(row, timestamps)));
      }
      return () => void hub.unsubscribe(sink, consoleSubscriptionId);
    },
  };
}

/** TIMESTAMP values (ms since the epoch) as ISO text: an operator reads times, not numbers. */
function showTimestamps(row: AlertRow, columns: ReadonlySet<string>): AlertRow {
  const shown: AlertRow = {};
  for (const [column, value] of Object.entries(row)) shown[column] = columns.has(column) && typeof value === 'number' ? new Date(value).toISOString() : value;
  return shown;
}

/** The console's one subscription on its own in-process sink. */
const consoleSubscriptionId = 1;

/** What /api/alerts answers and the event stream sends on each change. */
export interface AlertState {
  /** False when no alert source is configured: the panel says so. */
  available: boolean;
  title: string | null;
  /** Newest first. */
  rows: AlertRow[];
  /** Alerts seen since the console started (a feed) or rows of the last query result. */
  total: number;
  error: string | null;
}

export class AlertLog {
  private readonly source: AlertFeed | AlertQuery | undefined;
  private readonly router: Router;
  private readonly listeners = new Set<(state: AlertState) => void>();
  private rows: AlertRow[] = [];
  private total = 0;
  private error: string | null = null;
  private stopFeed: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(router: Router, source: AlertFeed | AlertQuery | undefined) {
    this.router = router;
    this.source = source;
    if (source !== undefined && 'subscribe' in source) {
      this.stopFeed = source.subscribe((rows) => this.onRows(rows));
    } else if (source !== undefined) {
      this.timer = setInterval(() => void this.poll(source), source.intervalMs ?? alertQueryIntervalMs);
      this.timer.unref();
      void this.poll(source);
    }
  }

  state(): AlertState {
    if (this.source === undefined) return { available: false, title: null, rows: [], total: 0, error: null };
    const title = 'subscribe' in this.source ? this.source.stream : this.source.title;
    return { available: true, title, rows: this.rows.slice(), total: this.total, error: this.error };
  }

  subscribe(listener: (state: AlertState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The source failed for good (a subscription ended): the panel shows why. */
  fail(message: string): void {
    this.error = message;
    this.publish();
  }

  close(): void {
    this.stopFeed?.();
    clearInterval(this.timer);
  }

  private onRows(rows: readonly AlertRow[]): void {
    if (rows.length === 0) return;
    this.total += rows.length;
    const newest = rows.slice(-alertsKeptMax).reverse();
    this.rows = [...newest, ...this.rows].slice(0, alertsKeptMax);
    this.publish();
  }

  private async poll(query: AlertQuery): Promise<void> {
    try {
      const result = (await this.router.call('@AdHoc', query.sql, [])) as QueryResult;
      const timestamps = new Set(result.columns.filter((_column, i) => result.types[i]?.name === 'TIMESTAMP'));
      this.rows = result.rows.slice(0, alertsKeptMax).map((row) => showTimestamps(Object.fromEntries(result.columns.map((column, i) => [column, row[i]])), timestamps));
      this.total = result.rows.length;
      this.error = null;
    } catch (error) {
      this.error = `alert query failed: ${(error as Error).message}`;
    }
    this.publish();
  }

  private publish(): void {
    const state = this.state();
    for (const listener of this.listeners) listener(state);
  }
}
