/**
 * The web console: an HTTP server on its own port beside the ws endpoint, serving a single-page
 * console (engine/console/static, plain ES modules, no build step; uPlot for the charts, served
 * from node_modules) and the JSON it draws from, all backed by the router:
 *
 *   GET  /                    the console page
 *   GET  /api/statistics      the latest sample: rates, latency, procedures, partitions, tables…
 *   GET  /api/history         the last minutes of throughput and latency, for the charts
 *   GET  /api/events          server-sent events: `sample` every second, `alerts` on change
 *   GET  /api/schema          tables, views, streams and procedures with their partitioning
 *   GET  /api/info            version, partitions, uptime (@SystemInformation without the DDL)
 *   GET  /api/alerts          the latest alerts, or {available: false}
 *   POST /api/sql             {sql, params?} → @AdHoc → {columns, rows…} or {error: {code, message, position}}
 *   GET  /metrics             Prometheus text format (metrics.ts)
 *   GET  /healthz             "ok" while the router takes calls
 *
 * Bad requests get a JSON error naming what was wrong, never a crash: the console shares the
 * process with the database. docs/console.md describes the page, the endpoints and the metrics.
 *
 * With the server's security on, every request but /healthz logs in with HTTP Basic credentials
 * (engine/security/http.ts) and each endpoint needs the rights of the system procedure it stands
 * for (routeCalls); with the server's TLS, the console serves https (docs/security.md).
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { QueryResult } from '../../procedures/system.ts';
import { visibleColumns } from '../catalog/schema.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import type { Router } from '../execution/router.ts';
import type { Authenticator } from '../security/authenticator.ts';
import { authenticateRequest, refusalOf } from '../security/http.ts';
import type { Grant } from '../security/grants.ts';
import { createHttpServer, type TlsMaterial } from '../security/tls.ts';
import { Status, statusName, type ErrorPayload } from '../server/protocol.ts';
import { AlertLog, subscriptionAlertFeed, type AlertSource, type SubscriptionSource } from './alerts.ts';
import { ConsoleMetrics } from './metrics.ts';
import { StatisticsSampler, sampleIntervalMs, type StatisticsSnapshot } from './sampler.ts';
import { describeSchema } from './schema.ts';

export const defaultConsolePort = 8080;
/** Loopback by default: the console runs SQL (writes too), so exposing it is a deliberate choice. */
export const defaultConsoleHost = '127.0.0.1';
const loopbackHosts: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost', '::1']);
/** Largest request body the SQL endpoint reads. */
export const sqlRequestBytesMax = 1024 * 1024;
/** Rows of a query result sent to the page; the rest are counted, not sent. */
export const sqlResultRowsMax = 1000;
/** Open event streams (browser tabs) at once; more get 503. */
export const eventClientsMax = 100;
/** An idle event stream gets a comment this often, so proxies keep it open. */
const eventKeepAliveMs = 15_000;

export interface ConsoleOptions {
  /** The router to observe; or pass `server` (anything holding one, such as startServer's result). */
  router?: Router;
  /** A server: its router, its stream subscriptions for an alert stream, and its security and TLS. */
  server?: { readonly router: Router; readonly subscriptions?: SubscriptionSource; readonly authenticator?: Authenticator; readonly tls?: TlsMaterial };
  /** Logins (security on); default: the server's. */
  authenticator?: Authenticator;
  /** Serve https with this material; default: the server's TLS. */
  tls?: TlsMaterial;
  /** TCP port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Interface to listen on. Default 127.0.0.1. */
  host?: string;
  logger?: Logger;
  /**
   * Where the alerts panel gets its rows: `{ stream }` (needs `server`, for its subscriptions),
   * `{ title, sql }`, or a feed. Without one the panel says there is no alert stream.
   */
  alerts?: AlertSource;
  /** Sampling period of the live figures. Default 1000 ms. */
  sampleIntervalMs?: number;
}

export interface SluiceConsole {
  /** http://host:port/ */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

interface StaticFile {
  body: Buffer;
  type: string;
}

const staticFolder = new URL('./static/', import.meta.url);
const staticFiles: Record<string, [file: string, type: string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/static/console.js': ['console.js', 'text/javascript; charset=utf-8'],
  '/static/console.css': ['console.css', 'text/css; charset=utf-8'],
};
const vendorFiles: Record<string, [file: string, type: string]> = {
  '/vendor/uPlot.esm.js': ['uPlot.esm.js', 'text/javascript; charset=utf-8'],
  '/vendor/uPlot.min.css': ['uPlot.min.css', 'text/css; charset=utf-8'],
};

/** Reads the page's files once: they are small, and a missing one should fail at start, not on a click. */
function loadStaticFiles(): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  for (const [route, [file, type]] of Object.entries(staticFiles)) files.set(route, { body: readFileSync(new URL(file, staticFolder)), type });
  const uplotFolder = path.join(path.dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
  for (const [route, [file, type]] of Object.entries(vendorFiles)) files.set(route, { body: readFileSync(path.join(uplotFolder, file)), type });
  return files;
}

/** Starts the console's HTTP server; resolves once it listens. */
export async function startConsole(options: ConsoleOptions): Promise<SluiceConsole> {
  const router = options.router ?? options.server?.router;
  if (router === undefined) throw new SluiceError(ErrorCode.INVALID_SCHEMA, 'startConsole needs the router (or the server) to observe');
  const webConsole = new WebConsole(router, options);
  await webConsole.listen(options.port ?? defaultConsolePort, options.host ?? defaultConsoleHost);
  options.logger?.info({ url: webConsole.url }, `web console on ${webConsole.url}`);
  const host = options.host ?? defaultConsoleHost;
  const secured = (options.authenticator ?? options.server?.authenticator) !== undefined;
  if (!loopbackHosts.has(host) && !secured) {
    // Without the server's security the console has no login: anyone who reaches it is let in.
    options.logger?.warn({ url: webConsole.url, host }, `the web console listens on ${host} with no login: anyone who reaches it can run SQL, writes included`);
  }
  return webConsole;
}

/**
 * The system procedure each endpoint stands for when security is on: a user needs that call's
 * rights to use the endpoint (docs/security.md). /api/sql is judged per statement instead.
 */
const routeCalls: Record<string, string> = {
  '/api/statistics': '@Statistics',
  '/api/history': '@Statistics',
  '/api/events': '@Statistics',
  '/metrics': '@Statistics',
  '/api/schema': '@SystemInformation',
  '/api/info': '@SystemInformation',
  '/api/alerts': '@SystemInformation',
};

class RequestError extends Error {
  readonly httpStatus: number;
  readonly code: string;

  constructor(httpStatus: number, code: string, message: string) {
    super(message);
    this.httpStatus = httpStatus;
    this.code = code;
  }
}

class WebConsole implements SluiceConsole {
  private readonly router: Router;
  private readonly logger: Logger | undefined;
  private readonly files = loadStaticFiles();
  private readonly sampler: StatisticsSampler;
  private readonly alerts: AlertLog;
  private readonly metrics: ConsoleMetrics;
  private readonly http: Server;
  private readonly sockets = new Set<Socket>();
  private readonly eventStreams = new Set<ServerResponse>();
  private metricsScrape: Promise<string> | undefined;
  private readonly sampleIntervalMs: number;
  private readonly authenticator: Authenticator | undefined;
  private readonly tls: TlsMaterial | undefined;
  port = 0;
  url = '';

  constructor(router: Router, options: ConsoleOptions) {
    this.router = router;
    this.logger = options.logger;
    this.sampleIntervalMs = options.sampleIntervalMs ?? sampleIntervalMs;
    this.sampler = new StatisticsSampler(router, this.sampleIntervalMs);
    this.alerts = openAlerts(router, options);
    this.metrics = new ConsoleMetrics(router.partitionCount);
    this.authenticator = options.authenticator ?? options.server?.authenticator;
    this.tls = options.tls ?? options.server?.tls;
    this.http = createHttpServer(this.tls, (request, response) => void this.handle(request, response));
    this.http.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.http.on('clientError', (error, socket) => {
      this.logger?.debug({ err: error }, 'console: bad HTTP request');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    });
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        this.http.on('error', (error) => this.logger?.error({ err: error }, 'console socket error'));
        this.port = (this.http.address() as AddressInfo).port;
        const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
        this.url = `${this.tls ? 'https' : 'http'}://${shownHost}:${this.port}/`;
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    this.sampler.stop();
    this.alerts.close();
    for (const stream of this.eventStreams) stream.end();
    this.eventStreams.clear();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://console');
    const route = url.pathname;
    try {
      let grant: Grant | undefined;
      if (this.authenticator !== undefined && route !== '/healthz') {
        const login = await authenticateRequest(this.authenticator, request);
        if (!login.ok) {
          for (const [name, value] of Object.entries(login.headers)) response.setHeader(name, value);
          throw new RequestError(login.status, 'AUTHENTICATION_FAILED', login.message);
        }
        grant = login.grant;
        const call = routeCalls[route];
        const refusal = grant === undefined || call === undefined ? undefined : refusalOf(grant, call, [], () => undefined);
        if (refusal !== undefined) throw new RequestError(403, refusal[0], refusal[1]);
      }
      const file = this.files.get(route);
      if (file !== undefined) {
        expectMethod(request, 'GET');
        response.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' });
        response.end(file.body);
        return;
      }
      switch (route) {
        case '/api/statistics':
          expectMethod(request, 'GET');
          sendJson(response, 200, await this.sampler.current());
          return;
        case '/api/history':
          expectMethod(request, 'GET');
          sendJson(response, 200, { intervalMs: this.sampleIntervalMs, points: this.sampler.historyPoints() });
          return;
        case '/api/events':
          expectMethod(request, 'GET');
          this.openEventStream(request, response);
          return;
        case '/api/schema':
          expectMethod(request, 'GET');
          sendJson(response, 200, describeSchema(this.router.catalog));
          return;
        case '/api/info': {
          expectMethod(request, 'GET');
          const { schema: _ddl, ...info } = this.router.systemInformation();
          sendJson(response, 200, info);
          return;
        }
        case '/api/alerts':
          expectMethod(request, 'GET');
          sendJson(response, 200, this.alerts.state());
          return;
        case '/api/sql':
          expectMethod(request, 'POST');
          await this.runSql(request, response, grant);
          return;
        case '/metrics':
          expectMethod(request, 'GET');
          response.writeHead(200, { 'content-type': this.metrics.contentType });
          response.end(await this.scrape());
          return;
        case '/healthz':
          expectMethod(request, 'GET');
          await this.router.call('@Ping');
          response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
          response.end('ok\n');
          return;
        default:
          throw new RequestError(404, 'NOT_FOUND', `no such page or endpoint: ${route}`);
      }
    } catch (error) {
      this.fail(request, response, error);
    }
  }

  private fail(request: IncomingMessage, response: ServerResponse, error: unknown): void {
    let status = 500;
    let code: string = ErrorCode.INTERNAL;
    let message = error instanceof Error ? error.message : String(error);
    if (error instanceof RequestError) {
      status = error.httpStatus;
      code = error.code;
    } else if (error instanceof SluiceError) {
      // The router refused (shutting down, a partition failed): the database, not the request.
      status = 503;
      code = error.code;
    } else {
      this.logger?.error({ err: error, url: request.url }, 'console: request failed');
    }
    if (response.headersSent) {
      response.destroy();
      return;
    }
    if (status === 405) response.setHeader('allow', message.includes('POST') ? 'POST' : 'GET');
    sendJson(response, status, { error: { code, message } });
  }

  /** One @Statistics per scrape, shared by concurrent scrapes (each would be a multi-partition transaction). */
  private scrape(): Promise<string> {
    this.metricsScrape ??= (async () => {
      try {
        this.metrics.update((await this.router.call('@Statistics')) as StatisticsSnapshot);
        return await this.metrics.render();
      } finally {
        this.metricsScrape = undefined;
      }
    })();
    return this.metricsScrape;
  }

  private openEventStream(request: IncomingMessage, response: ServerResponse): void {
    if (this.eventStreams.size >= eventClientsMax) throw new RequestError(503, 'TOO_MANY_STREAMS', `at most ${eventClientsMax} console pages may follow live updates at once`);
    response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    response.write('retry: 2000\n\n');
    const send = (event: string, data: unknown) => response.write(`event: ${event}\ndata: ${toJson(data)}\n\n`);
    this.eventStreams.add(response);
    if (this.sampler.latest !== undefined) send('sample', this.sampler.latest);
    send('alerts', this.alerts.state());
    const stopSamples = this.sampler.subscribe((sample) => send('sample', sample));
    const stopAlerts = this.alerts.subscribe((state) => send('alerts', state));
    const keepAlive = setInterval(() => response.write(': keep-alive\n\n'), eventKeepAliveMs);
    const stop = () => {
      stopSamples();
      stopAlerts();
      clearInterval(keepAlive);
      this.eventStreams.delete(response);
    };
    request.once('close', stop);
    response.once('error', stop);
  }

  private async runSql(request: IncomingMessage, response: ServerResponse, grant: Grant | undefined): Promise<void> {
    const body = await readBody(request, sqlRequestBytesMax);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch (error) {
      throw new RequestError(400, 'BAD_REQUEST', `the request body is not JSON: ${(error as Error).message}; send {"sql": "SELECT …", "params": []}`);
    }
    const { sql, params } = (parsed ?? {}) as { sql?: unknown; params?: unknown };
    if (typeof sql !== 'string' || sql.trim() === '') throw new RequestError(400, 'BAD_REQUEST', 'the request needs "sql": a non-empty string');
    if (params !== undefined && !Array.isArray(params)) throw new RequestError(400, 'BAD_REQUEST', '"params" must be an array of values');
    const refusal = grant === undefined ? undefined : refusalOf(grant, '@AdHoc', [sql, params ?? []], (text) => this.router.adhocReadOnly(text));
    if (refusal !== undefined) throw new RequestError(403, refusal[0], refusal[1]);
    const started = performance.now();
    const answer = await this.submit('@AdHoc', [sql, params ?? []]);
    const elapsedMs = performance.now() - started;
    if (answer.status !== Status.SUCCESS) {
      const [code, message, details] = answer.payload as ErrorPayload;
      const position = (details as { position?: unknown } | null)?.position ?? null;
      // A bad query is the user's input, not a failure of the console: 400 with the database's words.
      sendJson(response, answer.status === Status.SERVER_BUSY ? 503 : 400, { error: { code, message, status: statusName(answer.status), position } });
      return;
    }
    const result = answer.payload as QueryResult;
    sendJson(response, 200, {
      columns: result.columns,
      types: result.types,
      rows: result.rows.slice(0, sqlResultRowsMax),
      rowCount: result.rows.length,
      truncated: result.rows.length > sqlResultRowsMax,
      elapsedMs,
    });
  }

  /** Submits through the router keeping the whole error payload (position included), which `Router.call` drops. */
  private submit(name: string, params: unknown[]): Promise<{ status: number; payload: unknown }> {
    return new Promise((resolve) => {
      this.router.submit(name, params, { deliver: (_token, status, payload) => resolve({ status, payload }) }, 0);
    });
  }
}

function openAlerts(router: Router, options: ConsoleOptions): AlertLog {
  const source = options.alerts;
  if (source === undefined || 'subscribe' in source || 'sql' in source) return new AlertLog(router, source);
  const hub = options.server?.subscriptions;
  if (hub === undefined) throw new SluiceError(ErrorCode.UNSUPPORTED, `the alert stream ${source.stream} needs the server's stream subscriptions: pass startConsole({ server })`);
  let log: AlertLog | undefined;
  const timestampColumns = (stream: string) => visibleColumns(router.catalog.tables.get(stream.toLowerCase())!).filter((column) => column.type.name === 'TIMESTAMP').map((column) => column.name);
  const feed = subscriptionAlertFeed(hub, source, (message) => log?.fail(message), timestampColumns);
  log = new AlertLog(router, feed);
  return log;
}

function expectMethod(request: IncomingMessage, method: 'GET' | 'POST'): void {
  const actual = request.method ?? 'GET';
  if (actual === method || (method === 'GET' && actual === 'HEAD')) return;
  throw new RequestError(405, 'METHOD_NOT_ALLOWED', `${actual} is not allowed here; use ${method}`);
}

function readBody(request: IncomingMessage, bytesMax: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    request.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > bytesMax) {
        reject(new RequestError(413, 'TOO_LARGE', `the request body is over ${bytesMax} bytes`));
        request.resume();
        return;
      }
      chunks.push(chunk);
    });
    request.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.once('error', reject);
  });
}

/** JSON with the values JSON lacks spelled the way the SQL shell spells them. */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (item instanceof Uint8Array) return `x'${Buffer.from(item).toString('hex')}'`;
    if (typeof item === 'bigint') return item.toString();
    if (typeof item === 'number' && !Number.isFinite(item)) return String(item);
    return item;
  });
}

function sendJson(response: ServerResponse, status: number, value: unknown): void {
  const body = toJson(value);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  response.end(body);
}
