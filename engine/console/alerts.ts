/**
 * The console's "latest alerts" panel. Alerts are rows of a stream (e.g. `meter_alerts`); rows of
 * a stream are not kept in a table, so the console cannot simply query them. It takes them from
 * one of two sources, whichever the caller of startConsole supplies:
 *
 * - a feed: anything that pushes committed rows of the stream as they arrive (the server's
 *   stream subscriptions, wrapped in the small `AlertFeed` interface below), or
 * - a query: SQL run every few seconds whose result is the latest alerts (for an application that
 *   also keeps its alerts in a table), e.g. `SELECT * FROM alerts ORDER BY at DESC LIMIT 20`.
 *
 * Without either, the panel says there is no alert stream. The newest rows are kept (bounded) so
 * a page opened later shows them at once.
 */
import type { QueryResult } from '../../procedures/system.ts';
import type { Router } from '../execution/router.ts';

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

export type AlertSource = AlertFeed | AlertQuery;

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
  private readonly source: AlertSource | undefined;
  private readonly router: Router;
  private readonly listeners = new Set<(state: AlertState) => void>();
  private rows: AlertRow[] = [];
  private total = 0;
  private error: string | null = null;
  private stopFeed: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(router: Router, source: AlertSource | undefined) {
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
      this.rows = result.rows.slice(0, alertsKeptMax).map((row) => Object.fromEntries(result.columns.map((column, i) => [column, row[i]])));
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
