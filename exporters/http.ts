/**
 * The `http` export target: POSTs a stream batch as one JSON document to a URL —
 *
 * ```json
 * { "stream": "meter_alerts", "partition": 3, "firstSequence": 1201, "lastSequence": 1300,
 *   "rows": [ { "meter_id": 7, "kind": "overload", "at": "2026-11-22T08:15:00.000Z" }, … ] }
 * ```
 *
 * — rows as exporters/row-json.ts renders them; rows[i] has sequence firstSequence + i. A large
 * batch goes out as several requests of at most `rowsPerRequestMax` rows, in order. Each request
 * also carries `Idempotency-Key: <stream>/<partition>/<first>-<last>`; with (stream, partition,
 * sequence) the receiver can drop what it already has, because delivery is at least once.
 *
 * A 2xx answer acknowledges the rows. 5xx, 408, 429 and network errors or timeouts are retried
 * here with exponential backoff (honouring Retry-After), up to `retriesMax` times; then `deliver`
 * fails and the pipeline retries the batch later. Any other 4xx fails at once with the receiver's
 * answer in the message: the receiver refuses these rows, and repeating them quickly would not help.
 */
import type { Logger } from 'pino';
import { backoffDelayMs, sleep } from './backoff.ts';
import { rowToJson } from './row-json.ts';
import { TargetSettings, type NetworkTargetContext } from './settings.ts';
import type { ExportBatch, ExportTarget, TargetConfig } from './target.ts';

export const httpTimeoutMs = 10_000;
export const httpRetriesMax = 5;
export const httpRetryDelayMinMs = 100;
export const httpRetryDelayMaxMs = 10_000;
export const httpRowsPerRequestMax = 1000;
/** How much of a refusing receiver's answer goes into the error message. */
const answerExcerptCharsMax = 300;

interface HttpSettings {
  url: string;
  headers: Record<string, string>;
  timeoutMs: number;
  retriesMax: number;
  retryDelayMinMs: number;
  retryDelayMaxMs: number;
  rowsPerRequestMax: number;
}

export function httpSettings(config: TargetConfig, context: NetworkTargetContext = {}): HttpSettings {
  const settings = new TargetSettings(config, context.env);
  const url = settings.requiredString('url', 'https://collector.example.com/sluice');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw settings.error('url', `"${url}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw settings.error('url', `"${url}" is not an http:// or https:// URL`);
  const headers = settings.stringMap('headers');
  const bearerToken = settings.string('bearerToken');
  if (bearerToken !== undefined) headers.authorization = `Bearer ${bearerToken}`;
  const result: HttpSettings = {
    url,
    headers,
    timeoutMs: settings.number('timeoutMs', httpTimeoutMs, { min: 1, max: 3_600_000 }),
    retriesMax: settings.number('retriesMax', httpRetriesMax, { min: 0, max: 1000, integer: true }),
    retryDelayMinMs: settings.number('retryDelayMinMs', httpRetryDelayMinMs, { min: 0, max: 3_600_000 }),
    retryDelayMaxMs: settings.number('retryDelayMaxMs', httpRetryDelayMaxMs, { min: 0, max: 3_600_000 }),
    rowsPerRequestMax: settings.number('rowsPerRequestMax', httpRowsPerRequestMax, { min: 1, max: 1_000_000, integer: true }),
  };
  settings.rejectUnknown();
  return result;
}

/** A failed request: `retry` says whether trying again could help. */
class RequestFailure extends Error {
  readonly retry: boolean;
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retry: boolean, retryAfterMs?: number) {
    super(message);
    this.retry = retry;
    this.retryAfterMs = retryAfterMs;
  }
}

export class HttpTarget implements ExportTarget {
  readonly name: string;
  private readonly settings: HttpSettings;
  private readonly logger: Logger | undefined;
  private readonly closed = new AbortController();
  /** Requests answered 2xx / retried, since the target was created. */
  requestsAcknowledged = 0;
  requestsRetried = 0;

  constructor(config: TargetConfig, context: NetworkTargetContext = {}) {
    this.name = config.name;
    this.settings = httpSettings(config, context);
    this.logger = context.logger;
  }

  async deliver(batch: ExportBatch): Promise<void> {
    const step = this.settings.rowsPerRequestMax;
    for (let start = 0; start < batch.rows.length; start += step) {
      const rows = batch.rows.slice(start, start + step);
      const firstSequence = batch.firstSequence + start;
      const lastSequence = firstSequence + rows.length - 1;
      const body = JSON.stringify({ stream: batch.stream, partition: batch.partition, firstSequence, lastSequence, rows: rows.map((row) => rowToJson(batch.columns, row)) });
      await this.post(body, `${batch.stream}/${batch.partition}/${firstSequence}-${lastSequence}`);
    }
  }

  async close(): Promise<void> {
    this.closed.abort();
  }

  private async post(body: string, key: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.closed.signal.aborted) throw new Error(`http target '${this.name}' is closed`);
      try {
        await this.request(body, key);
        this.requestsAcknowledged++;
        return;
      } catch (error) {
        const failure = error instanceof RequestFailure ? error : new RequestFailure((error as Error).message, true);
        if (!failure.retry || attempt >= this.settings.retriesMax) {
          const tries = attempt + 1;
          throw new Error(`http target '${this.name}': POST ${this.settings.url} (rows ${key}) ${failure.message}${failure.retry ? `; gave up after ${tries} ${tries === 1 ? 'try' : 'tries'}` : '; not retried'}`);
        }
        const delay = Math.min(this.settings.retryDelayMaxMs, Math.max(backoffDelayMs(attempt, this.settings.retryDelayMinMs, this.settings.retryDelayMaxMs), failure.retryAfterMs ?? 0));
        this.requestsRetried++;
        this.logger?.warn({ target: this.name, url: this.settings.url, rows: key, attempt: attempt + 1, delayMs: delay, error: failure.message }, 'http target retrying');
        await sleep(delay, this.closed.signal);
      }
    }
  }

  private async request(body: string, key: string): Promise<void> {
    let response: Response;
    try {
      response = await fetch(this.settings.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key, ...this.settings.headers },
        body,
        signal: AbortSignal.any([AbortSignal.timeout(this.settings.timeoutMs), this.closed.signal]),
      });
    } catch (error) {
      const cause = (error as Error & { cause?: Error }).cause;
      const reason = (error as Error).name === 'TimeoutError' ? `got no answer within ${this.settings.timeoutMs} ms` : `failed: ${cause?.message ?? (error as Error).message}`;
      throw new RequestFailure(reason, true);
    }
    if (response.ok) {
      await response.body?.cancel();
      return;
    }
    const text = await response.text().catch(() => '');
    const excerpt = text.length > answerExcerptCharsMax ? `${text.slice(0, answerExcerptCharsMax)}…` : text;
    const answer = `answered ${response.status} ${response.statusText}${excerpt === '' ? '' : `: ${excerpt}`}`;
    const status = response.status;
    const retry = status >= 500 || status === 408 || status === 429;
    throw new RequestFailure(answer, retry, retryAfterMs(response.headers.get('retry-after')));
  }
}

/** Retry-After as delay seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(header: string | null): number | undefined {
  if (header === null) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
