/**
 * The server: a WebSocket endpoint (ws) in front of the router. Each connection handshakes (HELLO
 * → WELCOME), then sends CALLS frames; every call goes to the router, and the answers of one
 * event-loop turn go back to each connection as one RESULTS frame. The wire format is
 * protocol.ts; docs/protocol.md describes it for other client authors.
 *
 * A bad client never takes the server down: undecodable or wrongly shaped frames close that
 * connection with a documented close code, a bad call inside a good frame gets a FAILURE answer,
 * and answers for a connection that went away are dropped.
 */
import { readSchema } from '../catalog/schema-source.ts';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { systemProcedureTable, type QueryResult } from '../../procedures/system.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import { Router, type InvocationLog, type ResultSink } from '../execution/router.ts';
import type { RecoveryProgress, RecoverySummary } from '../durability/recovery.ts';
import { LogOfOtherCode, ServerDurability, type DurabilityMode, type DurabilitySettings } from '../durability/server-durability.ts';
import { LiveUpdates } from './live-update.ts';
import { importerSchemaDdl, parseImporterConfigs, startImporters, type RunningImporters } from '../../importers/index.ts';
import { ServerExports, streamRowsOptions } from '../../exporters/exports.ts';
import { Authenticator, type ThrottleOptions } from '../security/authenticator.ts';
import { checkSecurity, type SecurityConfig } from '../security/config.ts';
import { allProceduresWildcard, type Grant } from '../security/grants.ts';
import { refusalOf } from '../security/http.ts';
import { createHttpServer, loadTls, type TlsConfig, type TlsMaterial } from '../security/tls.ts';
import {
  CloseCode,
  FrameKind,
  ProtocolCode,
  Status,
  adhocRowsMax,
  callStrideOf,
  callTimeoutProblem,
  connectionBufferedBytesMax,
  connectionCallsInFlightMax,
  connectionsMax,
  createCodec,
  frameBytesMax,
  frameCallsMax,
  resultFrameBytesMax,
  helloTimeoutMs,
  idleTimeoutMsDefault,
  procedureNameLengthMax,
  protocolVersionsSupported,
  subscriptionsVersion,
} from './protocol.ts';
import { ConnectionSubscriptions, SubscriptionHub } from './subscriptions.ts';

export interface ServerOptions {
  /** DDL text, or the path of a .sql file. */
  schema: string;
  /** Procedures folder; default: the schema file's folder (or the working directory for DDL text). */
  procedures?: string;
  /** Partition worker threads; default: the number of cores. */
  partitions?: number;
  /** TCP port; 0 picks a free one. Default 21212. */
  port?: number;
  /** Interface to listen on; default 0.0.0.0 (all). */
  host?: string;
  frameBytesMax?: number;
  resultFrameBytesMax?: number;
  connectionCallsInFlightMax?: number;
  queueDepthMax?: number;
  helloTimeoutMs?: number;
  /** Connections open at once; more are refused with SERVER_BUSY (close 1013). */
  connectionsMax?: number;
  /** Close connections idle (nothing sent, nothing outstanding) this long; 0 = never. */
  idleTimeoutMs?: number;
  /** Rows an ad-hoc query may return. */
  adhocRowsMax?: number;
  /** Calls sent to a partition and not yet answered before further ones wait in the router (deadlines are checked there). */
  partitionCallsSentMax?: number;
  /** A transaction running longer than this (ms) is logged as long-running and counted in @Statistics; default 1000. */
  longRunningMs?: number;
  /** Time (ms) a partition has to answer a multi-partition transaction's fragment before it fails; default 10 s. */
  fragmentTimeoutMs?: number;
  /** Each partition thread's young generation in MB (V8's default when unset; engine/execution/router.ts). */
  partitionYoungGenerationMb?: number;
  /** Unread answers a connection may leave in the send buffer before it is closed (4006). */
  connectionBufferedBytesMax?: number;
  /** Users and roles (the deployment file's `security`, docs/security.md); off when absent or not enabled. */
  security?: SecurityConfig;
  /** PEM files: serve wss:// instead of ws:// (the deployment file's `tls`). */
  tls?: TlsConfig;
  /** How failed logins are slowed down (tests shorten the delays). */
  loginThrottle?: ThrottleOptions;
  log?: InvocationLog;
  /** Structured logger; default: none. */
  logger?: Logger;
  /** Rows of each stream partition kept for subscribers resuming from a position (subscriptions.ts). */
  subscriptionRetainRowsMax?: number;
  /**
   * Data directory (command log, snapshots; exporters keep their buffers under it too). Without
   * one the server keeps nothing across a restart.
   */
  data?: string;
  /** Durability settings; needs `data`. Default mode: sync. */
  durability?: Partial<DurabilitySettings>;
  /** Recovery progress (the CLI draws a bar with it); the summary is logged either way. */
  onRecoveryProgress?: (progress: RecoveryProgress) => void;
  /** Importers (the deployment file's `importers`, importers/config.ts): started and stopped with the server. */
  importers?: unknown[];
  /** The deployment file's `exports` section (targets, buffer, daily jobs); needs `data`. */
  exports?: unknown;
}

export const defaultPort = 21212;
const serverName = 'sluice';

export interface SluiceServer {
  readonly url: string;
  readonly port: number;
  readonly router: Router;
  /** Live stream subscriptions; the router's committed stream rows go to `subscriptions.publish`. */
  readonly subscriptions: SubscriptionHub;
  /** The data directory (absolute), or undefined when the server keeps nothing. */
  readonly dataDir: string | undefined;
  /** The durability mode, or undefined without a data directory. */
  readonly durabilityMode: DurabilityMode | undefined;
  /** Durability (snapshots, the command log), or undefined without a data directory. */
  readonly durability: ServerDurability | undefined;
  /** What recovery did at start, or undefined without a data directory. */
  readonly recovery: RecoverySummary | undefined;
  /** The export pipeline and daily jobs (docs/exporters.md), when the server has a data directory. */
  readonly exports: ServerExports | undefined;
  /** Checks logins when security is on (undefined when off): HTTP endpoints use it through engine/security/http.ts. */
  readonly authenticator: Authenticator | undefined;
  /** The TLS material when the server speaks wss://: `createHttpServer(server.tls, …)` serves https beside it. */
  readonly tls: TlsMaterial | undefined;
  close(): Promise<void>;
}

/**
 * Loads the schema and procedures, starts the partitions, recovers, and listens. When the data
 * directory's command log was written by other code than `options` give (a crash, then a start
 * with new procedures or schema), the log is first replayed by a catch-up start with the code
 * that wrote it, stored in the data directory: it recovers, takes a snapshot and stops without
 * listening; the start asked for then begins from that snapshot, as after a clean stop.
 */
export async function startServer(options: ServerOptions): Promise<SluiceServer> {
  try {
    return await startOnce(options, false);
  } catch (error) {
    if (!(error instanceof LogOfOtherCode)) throw error;
    options.logger?.warn(
      { version: error.version.epoch, changes: error.changes },
      `${error.message}: replaying them with the code that wrote them (version ${error.version.epoch}, kept in the data directory), then starting with the new code`,
    );
    // One snapshot, taken here so that a failure stops the start; none again at its close.
    const durability = { ...options.durability, snapshotOnShutdown: false };
    const catchUp = await startOnce({ ...options, schema: error.version.ddl, procedures: error.version.proceduresDir, importers: undefined, durability }, true);
    try {
      await catchUp.durability!.snapshot();
    } finally {
      await catchUp.close();
    }
    return startOnce(options, false);
  }
}

/** One start; `catchUp`: recover with the stored code of the log's version, then return without listening. */
async function startOnce(options: ServerOptions, catchUp: boolean): Promise<SluiceServer> {
  // Configuration first: a bad users list or certificate stops the start before any worker runs.
  const security = options.security === undefined ? undefined : checkSecurity(options.security);
  const tls = options.tls === undefined ? undefined : await loadTls(options.tls);
  const authenticator = security?.enabled ? new Authenticator(security, options.loginThrottle) : undefined;
  const { ddl: schemaDdl, folder } = await readSchema(options.schema);
  const importerConfigs = parseImporterConfigs(options.importers);
  const ddl = schemaDdl + importerSchemaDdl(importerConfigs);
  const partitions = options.partitions ?? os.availableParallelism();
  const logger = options.logger;
  if (options.durability !== undefined && options.data === undefined) {
    throw new SluiceError(ErrorCode.INVALID_SCHEMA, 'durability settings need a data directory (--data <dir>, or "data" in the deployment file)', { object: 'data' });
  }
  const durability = options.data === undefined
    ? undefined
    : await ServerDurability.open({ dataDir: options.data, settings: { ...options.durability, mode: options.durability?.mode ?? 'sync' }, logger });
  const proceduresDir = path.resolve(options.procedures ?? folder);
  // Before the router and recovery: replayed transactions' rows reach the pipeline, which drops
  // those it already holds (same stream, partition and sequence).
  let hub: SubscriptionHub | undefined;
  let exports: ServerExports | undefined;
  try {
    exports = await ServerExports.open({ ddl, data: options.data, config: options.exports, partitions, logger });
    // A snapshot counts only once the export buffer holds the stream rows its state includes.
    if (durability !== undefined && exports !== undefined) durability.streamRows = exports.pipeline;
  } catch (error) {
    await durability?.close();
    throw error;
  }
  let router: Router;
  try {
    router = await Router.open({
      ddl,
      proceduresDir,
      partitions,
      queueDepthMax: options.queueDepthMax,
      callsSentMax: options.partitionCallsSentMax,
      longRunningMs: options.longRunningMs,
      fragmentTimeoutMs: options.fragmentTimeoutMs,
      youngGenerationMb: options.partitionYoungGenerationMb,
      logger,
      log: durability ?? options.log,
      onFatal: (error) => logger?.fatal({ err: error }, 'a partition failed; the server refuses further calls'),
      ...streamRowsOptions(exports, () => hub),
    });
  } catch (error) {
    await exports?.close();
    await durability?.close();
    throw error;
  }
  let recovery: RecoverySummary | undefined;
  const server = new Server(router, options, durability, exports, authenticator, tls);
  hub = server.subscriptions;
  if (security?.enabled) {
    const known = new Set([...router.procedureNames, ...systemProcedureTable.keys(), allProceduresWildcard]);
    for (const role of security.roles.values()) {
      for (const name of role.procedures) if (!known.has(name)) logger?.warn({ role: role.name, procedure: name }, `role ${role.name} grants ${name}, which is not a procedure of this database`);
    }
  }
  try {
    if (durability) {
      durability.replayWithStoredCode = catchUp;
      server.recovery = recovery = await durability.recover(router, options.onRecoveryProgress);
    }
    if (catchUp) return server;
    const liveUpdates = (server.liveUpdates = new LiveUpdates({ router, startupProceduresDir: proceduresDir, durability, exports: exports?.pipeline, logger }));
    router.setSystemHandler('@UpdateApplication', (params) => liveUpdates.apply(params));
    // After replay: new rows continue past every sequence the export buffer holds.
    exports?.attach(router);
    await server.listen(options.port ?? defaultPort, options.host ?? '0.0.0.0');
  } catch (error) {
    await router.close();
    await exports?.close();
    await durability?.close();
    throw error;
  }
  if (importerConfigs.length > 0) {
    try {
      server.importers = await startImporters(router, importerConfigs, { proceduresDir, logger });
    } catch (error) {
      await server.close();
      throw error;
    }
  }
  logger?.info({ url: server.url, port: server.port, partitions, procedures: router.procedureNames, dataDir: durability?.dataDir, durability: durability?.mode, transactionsReplayed: recovery?.transactionsReplayed, security: authenticator !== undefined, tls: tls !== undefined }, `listening on ${server.url}`);
  return server;
}

class Server implements SluiceServer {
  readonly router: Router;
  readonly subscriptions: SubscriptionHub;
  readonly durability: ServerDurability | undefined;
  readonly exports: ServerExports | undefined;
  recovery: RecoverySummary | undefined;
  readonly codec = createCodec();
  readonly logger: Logger | undefined;
  readonly frameBytesMax: number;
  readonly resultFrameBytesMax: number;
  readonly callsInFlightMax: number;
  readonly helloTimeoutMs: number;
  readonly connectionsMax: number;
  readonly idleTimeoutMs: number;
  readonly adhocRowsMax: number;
  readonly bufferedBytesMax: number;
  readonly authenticator: Authenticator | undefined;
  readonly tls: TlsMaterial | undefined;
  private wss: WebSocketServer | undefined;
  private httpServer: http.Server | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly connections = new Set<Connection>();
  private readonly dirty: Connection[] = [];
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  private nextConnectionId = 1;
  importers: RunningImporters | undefined;
  liveUpdates: LiveUpdates | undefined;
  port = 0;
  url = '';

  constructor(router: Router, options: ServerOptions, durability: ServerDurability | undefined, exports: ServerExports | undefined, authenticator: Authenticator | undefined, tls: TlsMaterial | undefined) {
    this.router = router;
    this.subscriptions = new SubscriptionHub(router, router.partitionCount, { retainRowsMax: options.subscriptionRetainRowsMax });
    this.durability = durability;
    this.exports = exports;
    this.authenticator = authenticator;
    this.tls = tls;
    this.connectionsMax = options.connectionsMax ?? connectionsMax;
    this.idleTimeoutMs = options.idleTimeoutMs ?? idleTimeoutMsDefault;
    this.adhocRowsMax = options.adhocRowsMax ?? adhocRowsMax;
    this.bufferedBytesMax = options.connectionBufferedBytesMax ?? connectionBufferedBytesMax;
    this.logger = options.logger;
    this.frameBytesMax = options.frameBytesMax ?? frameBytesMax;
    this.resultFrameBytesMax = options.resultFrameBytesMax ?? resultFrameBytesMax;
    this.callsInFlightMax = options.connectionCallsInFlightMax ?? connectionCallsInFlightMax;
    this.helloTimeoutMs = options.helloTimeoutMs ?? helloTimeoutMs;
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const httpServer = createHttpServer(this.tls, (_request, response) => {
        response.writeHead(426, { 'content-type': 'text/plain' });
        response.end('this is a Sluice WebSocket endpoint: connect with the client SDK or `sluice sql`\n');
      });
      this.httpServer = httpServer;
      const wss = new WebSocketServer({
        server: httpServer,
        maxPayload: this.frameBytesMax,
        perMessageDeflate: false,
        clientTracking: false,
        skipUTF8Validation: true,
      });
      this.wss = wss;
      httpServer.once('error', reject);
      httpServer.listen(port, host, () => {
        httpServer.off('error', reject);
        httpServer.on('error', (error) => this.logger?.error({ err: error }, 'server socket error'));
        // A failed TLS handshake is the client's problem: note it, keep serving.
        httpServer.on('tlsClientError', (error: Error) => this.logger?.debug({ err: error }, 'TLS handshake failed'));
        this.port = (httpServer.address() as AddressInfo).port;
        this.url = `${this.tls ? 'wss' : 'ws'}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${this.port}`;
        if (this.idleTimeoutMs > 0) {
          this.idleTimer = setInterval(() => this.closeIdle(), Math.max(Math.floor(this.idleTimeoutMs / 4), 1));
          this.idleTimer.unref();
        }
        resolve();
      });
      wss.on('connection', (ws, request) => {
        const remote = request.socket.remoteAddress ?? '?';
        if (this.connections.size >= this.connectionsMax) {
          this.logger?.warn({ remote, connections: this.connections.size }, 'connection refused: connection limit reached');
          ws.send(this.codec.pack([FrameKind.ERROR, ProtocolCode.SERVER_BUSY, `the server has ${this.connections.size} connections open (at most ${this.connectionsMax}); try again later`]));
          ws.close(CloseCode.TRY_AGAIN_LATER, 'too many connections');
          return;
        }
        const connection = new Connection(this, ws, this.nextConnectionId++, remote);
        this.connections.add(connection);
      });
    });
  }

  /** Closes connections that sent nothing and had nothing outstanding since the last two sweeps' span. */
  private closeIdle(): void {
    const now = Date.now();
    for (const connection of this.connections) connection.checkIdle(now, this.idleTimeoutMs);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  forget(connection: Connection): void {
    this.connections.delete(connection);
  }

  markDirty(connection: Connection): void {
    this.dirty.push(connection);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  /** Sends each connection's answers of this turn as one frame. */
  private flush(): void {
    this.flushScheduled = false;
    for (let i = 0; i < this.dirty.length; i++) this.dirty[i].flush();
    this.dirty.length = 0;
  }

  get dataDir(): string | undefined {
    return this.durability?.dataDir;
  }

  get durabilityMode(): DurabilityMode | undefined {
    return this.durability?.mode;
  }

  async close(): Promise<void> {
    clearInterval(this.idleTimer);
    // Importers first: their outstanding calls are answered (and acknowledged) before the router stops.
    await this.importers?.stop();
    for (const connection of this.connections) connection.close(CloseCode.GOING_AWAY, 'server shutting down');
    await this.durability?.beforeClose();
    await this.router.close();
    this.liveUpdates?.close();
    await this.exports?.close();
    await this.durability?.close();
    await new Promise<void>((resolve) => (this.wss ? this.wss.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (this.httpServer?.listening ? this.httpServer.close(() => resolve()) : resolve()));
    this.logger?.info('server stopped');
  }
}

/** Answers an ad-hoc query that returned more than adhocRowsMax rows with RESULT_TOO_LARGE instead. */
class AdhocRowsLimit implements ResultSink {
  private readonly connection: Connection;
  private readonly rowsMax: number;

  constructor(connection: Connection, rowsMax: number) {
    this.connection = connection;
    this.rowsMax = rowsMax;
  }

  deliver(token: number, status: Status, payload: unknown, timestamp: number): void {
    const rows = status === Status.SUCCESS ? (payload as QueryResult | null)?.rows : undefined;
    if (Array.isArray(rows) && rows.length > this.rowsMax) {
      // Only a SELECT returns rows, so refusing the answer hides no committed write.
      const message = `the query returned ${rows.length} rows, more than the ${this.rowsMax} an ad-hoc query may return; add a LIMIT or narrow the WHERE clause`;
      this.connection.deliver(token, Status.FAILURE, [ProtocolCode.RESULT_TOO_LARGE, message, { object: '@AdHoc', expected: `at most ${this.rowsMax} rows` }], timestamp);
      return;
    }
    this.connection.deliver(token, status, payload, timestamp);
  }
}

class Connection {
  private readonly server: Server;
  private readonly ws: WebSocket;
  readonly id: number;
  private readonly remote: string;
  private state: 'hello' | 'authenticating' | 'open' | 'closed' = 'hello';
  /** Elements per call in this connection's CALLS frames: the agreed version says whether a timeout rides along. */
  private callStride = callStrideOf(1);
  private inFlight = 0;
  /** What the user may call; undefined when security is off (everything is allowed). */
  private grant: Grant | undefined;
  private readonly adhocSink: AdhocRowsLimit;
  private readonly adhocReadOnly: (sql: string) => boolean | undefined;
  /** Set by every frame; the idle sweep clears it and notes when it last saw it clear. */
  private active = true;
  private idleSince = 0;
  /** The RESULTS frame being built: kind, then id, status, payload, timestamp per answer. */
  private readonly out: unknown[] = [FrameKind.RESULTS];
  private helloTimer: NodeJS.Timeout | undefined;
  /** Stream subscriptions, once the handshake agreed on a version that has them. */
  private subscriptions: ConnectionSubscriptions | undefined;

  constructor(server: Server, ws: WebSocket, id: number, remote: string) {
    this.server = server;
    this.ws = ws;
    this.id = id;
    this.remote = remote;
    this.adhocSink = new AdhocRowsLimit(this, server.adhocRowsMax);
    this.adhocReadOnly = (sql) => server.router.adhocReadOnly(sql);
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', (code: number) => this.onClose(code));
    ws.on('error', (error: Error) => {
      // ws reports oversized and invalid frames here, then closes (1009/1002): log, stay up.
      server.logger?.warn({ connection: id, err: error }, 'connection error');
    });
    this.helloTimer = setTimeout(() => this.protocolError(CloseCode.HANDSHAKE_EXPECTED, ProtocolCode.HANDSHAKE_EXPECTED, 'no HELLO frame within the handshake timeout'), server.helloTimeoutMs);
    server.logger?.debug({ connection: id, remote }, 'connection opened');
  }

  /** Closes the connection when it has been idle for `timeoutMs` (called by the server's sweep). */
  checkIdle(now: number, timeoutMs: number): void {
    if (this.state !== 'open') return;
    const listening = this.subscriptions !== undefined && this.server.subscriptions.countOf(this.subscriptions) > 0;
    if (this.active || this.inFlight > 0 || listening) {
      this.active = false;
      this.idleSince = now;
      return;
    }
    if (now - this.idleSince >= timeoutMs) {
      this.protocolError(CloseCode.IDLE_TIMEOUT, ProtocolCode.IDLE_TIMEOUT, `the connection was idle for ${timeoutMs} ms (the server's idle timeout)`);
    }
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state === 'closed') return;
    this.active = true;
    if (this.state === 'authenticating') {
      this.protocolError(CloseCode.HANDSHAKE_EXPECTED, ProtocolCode.HANDSHAKE_EXPECTED, 'a frame arrived before WELCOME: wait for the handshake to finish');
      return;
    }
    if (!isBinary) {
      this.protocolError(CloseCode.MALFORMED_FRAME, ProtocolCode.MALFORMED_FRAME, 'text messages are not part of the protocol: send msgpack frames as binary messages');
      return;
    }
    let frame: unknown;
    try {
      frame = this.server.codec.unpack(data);
    } catch (error) {
      this.protocolError(CloseCode.MALFORMED_FRAME, ProtocolCode.MALFORMED_FRAME, `frame is not valid msgpack: ${(error as Error).message}`);
      return;
    }
    if (!Array.isArray(frame) || frame.length === 0) {
      this.protocolError(CloseCode.MALFORMED_FRAME, ProtocolCode.MALFORMED_FRAME, 'a frame is a msgpack array whose first element is its kind');
      return;
    }
    if (this.state === 'hello') this.onHello(frame);
    else if (frame[0] === FrameKind.CALLS) this.onCalls(frame);
    else if ((frame[0] === FrameKind.SUBSCRIBE || frame[0] === FrameKind.UNSUBSCRIBE) && this.subscriptions !== undefined) this.onSubscription(frame);
    else this.protocolError(CloseCode.MALFORMED_FRAME, ProtocolCode.MALFORMED_FRAME, `unexpected frame kind ${String(frame[0])}`);
  }

  private onHello(frame: unknown[]): void {
    clearTimeout(this.helloTimer);
    const hello = frame[1] as { versions?: unknown; user?: unknown; password?: unknown } | undefined;
    if (frame[0] !== FrameKind.HELLO || typeof hello !== 'object' || hello === null || !Array.isArray(hello.versions)) {
      this.protocolError(CloseCode.HANDSHAKE_EXPECTED, ProtocolCode.HANDSHAKE_EXPECTED, 'the first frame must be [HELLO, { versions: [...] }]');
      return;
    }
    const offered = hello.versions as unknown[];
    let version = 0;
    for (const candidate of protocolVersionsSupported) if (offered.includes(candidate) && candidate > version) version = candidate;
    if (version === 0) {
      this.protocolError(CloseCode.UNSUPPORTED_VERSION, ProtocolCode.UNSUPPORTED_VERSION, `no common protocol version: client offers ${JSON.stringify(offered)}, server speaks ${JSON.stringify(protocolVersionsSupported)}`);
      return;
    }
    const authenticator = this.server.authenticator;
    if (authenticator === undefined) {
      this.welcome(version);
      return;
    }
    this.state = 'authenticating';
    const { user, password } = hello;
    authenticator.login(user, password, this.remote).then(
      (outcome) => {
        if (this.state !== 'authenticating') return; // The client left while we checked.
        // The user name is logged (clipped), the password never.
        const who = typeof user === 'string' ? user.slice(0, 64) : undefined;
        if (outcome.ok) {
          this.grant = outcome.grant;
          this.server.logger?.info({ connection: this.id, remote: this.remote, user: who, roles: outcome.grant.roles }, 'login');
          this.welcome(version);
          return;
        }
        this.server.logger?.warn({ connection: this.id, remote: this.remote, user: who, reason: outcome.reason, failures: authenticator.throttle.failures(this.remote) }, 'login refused');
        const message =
          outcome.reason === 'missing'
            ? 'this server requires a user and password in HELLO (connect(url, { user, password }), or sluice --user/--password)'
            : outcome.reason === 'throttled'
              ? 'authentication failed: too many failed attempts from this address; try again later'
              : 'authentication failed: unknown user or wrong password';
        this.protocolError(CloseCode.AUTHENTICATION_FAILED, ProtocolCode.AUTHENTICATION_FAILED, message);
      },
      (error: Error) => {
        this.server.logger?.error({ connection: this.id, err: error }, 'login check failed');
        this.protocolError(CloseCode.AUTHENTICATION_FAILED, ProtocolCode.AUTHENTICATION_FAILED, 'authentication failed: the server could not check the password');
      },
    );
  }

  private welcome(version: number): void {
    this.state = 'open';
    this.callStride = callStrideOf(version);
    if (version >= subscriptionsVersion) this.subscriptions = new ConnectionSubscriptions(this.server.subscriptions, (out) => this.send(out), () => this.ws.bufferedAmount);
    const router = this.server.router;
    const welcome: Record<string, unknown> = { version, server: serverName, partitions: router.partitionCount, connection: this.id };
    if (this.grant !== undefined) welcome.user = this.grant.user;
    this.send([FrameKind.WELCOME, welcome]);
  }

  private onCalls(frame: unknown[]): void {
    const callStride = this.callStride;
    const count = (frame.length - 1) / callStride;
    if (!Number.isInteger(count)) {
      const shape = callStride === 3 ? '(id, procedure, params) triples' : '(id, procedure, params, timeoutMs) quadruples';
      this.protocolError(CloseCode.MALFORMED_FRAME, ProtocolCode.MALFORMED_FRAME, `a CALLS frame holds ${shape}; got ${frame.length - 1} elements`);
      return;
    }
    if (count > frameCallsMax) {
      this.protocolError(CloseCode.FRAME_LIMIT, ProtocolCode.MALFORMED_FRAME, `a CALLS frame may carry at most ${frameCallsMax} calls; got ${count}`);
      return;
    }
    const router = this.server.router;
    // Deadlines count from the frame's arrival; the clocks of client and server never meet.
    const arrival = callStride > 3 ? performance.now() : 0;
    for (let i = 1; i < frame.length; i += callStride) {
      const id = frame[i];
      if (typeof id !== 'number' || !Number.isSafeInteger(id)) {
        this.protocolError(CloseCode.MALFORMED_FRAME, ProtocolCode.MALFORMED_FRAME, `call ids are integers; got ${typeof id}`);
        return;
      }
      const name = frame[i + 1];
      const params = frame[i + 2];
      if (typeof name !== 'string' || name.length > procedureNameLengthMax || !Array.isArray(params)) {
        this.deliverNow(id, Status.FAILURE, [ProtocolCode.BAD_CALL, `a call is (id, procedure name up to ${procedureNameLengthMax} characters, params array)`, null]);
        continue;
      }
      let deadline = 0;
      if (callStride > 3) {
        const timeoutMs = frame[i + 3];
        const problem = callTimeoutProblem(timeoutMs);
        if (problem !== undefined) {
          this.deliverNow(id, Status.FAILURE, [ProtocolCode.BAD_CALL, `call ${id} (${name}): ${problem}`, { path: ['timeoutMs'], object: name }]);
          continue;
        }
        if ((timeoutMs as number) > 0) deadline = arrival + (timeoutMs as number);
      }
      if (this.grant !== undefined) {
        const refusal = refusalOf(this.grant, name, params, this.adhocReadOnly);
        if (refusal !== undefined) {
          this.deliverNow(id, Status.FAILURE, refusal);
          continue;
        }
      }
      if (this.inFlight >= this.server.callsInFlightMax) {
        this.deliverNow(id, Status.SERVER_BUSY, [ProtocolCode.SERVER_BUSY, `this connection has ${this.inFlight} calls outstanding (at most ${this.server.callsInFlightMax})`, null]);
        continue;
      }
      this.inFlight++;
      router.submit(name, params, name === '@AdHoc' ? this.adhocSink : this, id, deadline);
    }
  }

  private onSubscription(frame: unknown[]): void {
    const id = frame[1];
    if (this.grant !== undefined && frame[0] === FrameKind.SUBSCRIBE && typeof id === 'number' && Number.isSafeInteger(id) && !this.grant.maySubscribe(frame[2])) {
      const message = `${this.grant.describe()} may not subscribe to ${String(frame[2])}`;
      this.send([FrameKind.SUBSCRIPTION_ENDED, id, ProtocolCode.PERMISSION_DENIED, message, { object: String(frame[2]) }]);
      return;
    }
    const problem = this.subscriptions!.handle(frame);
    if (problem !== undefined) this.protocolError(CloseCode.MALFORMED_FRAME, ProtocolCode.MALFORMED_FRAME, problem);
  }

  /** ResultSink: the router's answer for call `token`. */
  deliver(token: number, status: number, payload: unknown, timestamp: number): void {
    this.inFlight--;
    this.deliverNow(token, status, payload, timestamp);
  }

  private deliverNow(token: number, status: number, payload: unknown, timestamp = 0): void {
    if (this.state === 'closed') return;
    if (this.out.length === 1) this.server.markDirty(this);
    this.out.push(token, status, payload, timestamp);
  }

  flush(): void {
    if (this.state === 'closed' || this.out.length === 1) {
      this.out.length = 1;
      return;
    }
    const unread = this.ws.bufferedAmount;
    if (unread > this.server.bufferedBytesMax) {
      this.out.length = 1;
      this.protocolError(CloseCode.CLIENT_TOO_SLOW, ProtocolCode.CLIENT_TOO_SLOW, `the client left ${unread} bytes of answers unread (at most ${this.server.bufferedBytesMax}): read answers as they come`);
      return;
    }
    this.sendResults(this.out);
    this.out.length = 1;
  }

  /** Encodes answers into one frame; splits frames over the byte limit, and answers a result too large for any frame with an error. */
  private sendResults(frame: unknown[]): void {
    let encoded: Buffer | undefined;
    try {
      encoded = this.server.codec.pack(frame);
    } catch {
      encoded = undefined;
    }
    if (encoded !== undefined && encoded.length <= this.server.resultFrameBytesMax) {
      this.ws.send(encoded, { binary: true });
      return;
    }
    const answers = (frame.length - 1) / 4;
    if (answers > 1) {
      const half = 1 + Math.floor(answers / 2) * 4;
      this.sendResults([FrameKind.RESULTS, ...frame.slice(1, half)]);
      this.sendResults([FrameKind.RESULTS, ...frame.slice(half)]);
      return;
    }
    const reason = encoded === undefined ? 'cannot be encoded as msgpack' : `is ${encoded.length} bytes encoded, over the ${this.server.resultFrameBytesMax}-byte frame limit`;
    const replacement = [FrameKind.RESULTS, frame[1], Status.FAILURE, [ErrorCode.UNSUPPORTED, `the result ${reason}`, null], frame[4]];
    this.ws.send(this.server.codec.pack(replacement), { binary: true });
  }

  private send(frame: unknown[]): void {
    this.ws.send(this.server.codec.pack(frame), { binary: true });
  }

  private protocolError(closeCode: number, code: string, message: string): void {
    if (this.state === 'closed') return;
    this.server.logger?.warn({ connection: this.id, code, closeCode }, message);
    try {
      this.send([FrameKind.ERROR, code, message]);
    } catch (error) {
      this.server.logger?.debug({ connection: this.id, err: error }, 'could not send the ERROR frame');
    }
    this.close(closeCode, message);
  }

  close(closeCode: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.helloTimer);
    this.subscriptions?.close();
    // A close reason is at most 123 bytes.
    this.ws.close(closeCode, Buffer.from(reason).subarray(0, 120).toString());
    this.server.forget(this);
  }

  private onClose(code: number): void {
    this.server.logger?.debug({ connection: this.id, code, inFlight: this.inFlight }, 'connection closed');
    this.state = 'closed';
    clearTimeout(this.helloTimer);
    this.subscriptions?.close();
    this.server.forget(this);
  }
}
