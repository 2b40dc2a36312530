/**
 * The Sluice client SDK: a WebSocket connection (ws) speaking the msgpack protocol of
 * engine/server/protocol.ts, typed end to end from the application's own procedure definitions
 * with no code generation (after Hono's RPC client).
 *
 * ```ts
 * import { connect } from './client/index.ts';
 * import type { App } from './procedures/voter/app.ts';
 *
 * const client = await connect<App>('ws://127.0.0.1:21212');
 * const outcome = await client.call('Vote', 2015550123, 3, 2); // checked: (number, number, number) → number
 * const { rows } = await client.query('SELECT COUNT(*) FROM votes');
 * await client.close();
 * ```
 *
 * Many calls ride in one frame: calls made in the same event-loop turn go out together. At most
 * `callsInFlightMax` calls are outstanding; further calls wait (their promise stays pending) until
 * answers free room, so nothing is dropped. Each call has a timeout (TIMEOUT status; the call may
 * still commit on the server). When the connection drops, calls in flight fail with
 * CONNECTION_LOST (they may or may not have committed); with `reconnect`, calls not yet sent wait
 * for the new connection.
 */
import { WebSocket } from 'ws';
import type { ProcedureDefinition } from '../procedures/api.ts';
import type { QueryResult, SystemApp } from '../procedures/system.ts';
import {
  CloseCode,
  FrameKind,
  ProtocolCode,
  Status,
  callStrideOf,
  callTimeoutProblem,
  statusOfCode,
  createCodec,
  frameCallsMax,
  resultFrameBytesMax,
  protocolVersionsSupported,
  resultStride,
  statusName,
  type ErrorPayload,
  type StatusName,
} from '../engine/server/protocol.ts';
import { PendingCalls } from './pending-calls.ts';
import { SubscriptionRegistry, type RowHandler, type SubscribeOptions, type Subscription } from './subscriptions.ts';

export { Status, type StatusName, type QueryResult };
export { Subscription, SubscriptionError, type RowHandler, type RowPosition, type StreamRow, type SubscribeOptions, type SubscriptionPosition, type WhereCondition } from './subscriptions.ts';

/** Default most calls outstanding per connection. */
export const clientCallsInFlightMax = 2000;
/** Default per-call timeout. */
export const callTimeoutMs = 30_000;
/** Default time to open a connection and handshake. */
export const connectTimeoutMs = 10_000;
/** Timeouts are checked on this tick; a call times out at most this much late. */
const timeoutTickMs = 10;
const reconnectDelayMinMs = 50;
const reconnectDelayMaxMs = 2000;
const clientName = 'sluice-js/0.1';

/** Procedures of an application: name → `typeof` its defineProcedure value. */
export type AppShape = Record<string, { readonly run: (...args: never[]) => unknown }>;
/** The untyped default: any name, any parameters, unknown result. */
export type UntypedApp = Record<string, ProcedureDefinition<any[], unknown>>;

type Procedures<App> = App & SystemApp;

/**
 * The signature of a procedure declared in SQL (CREATE PROCEDURE … AS <statement>), which has no
 * TypeScript definition to take `typeof` of: `{ AddBranch: SqlProcedure<[id: number, name: string]> }`.
 */
export interface SqlProcedure<P extends unknown[]> {
  readonly run: (ctx: never, ...params: P) => QueryResult;
}
/** The parameters of a procedure definition's `run`, after its context. */
export type CallParams<D> = D extends { readonly run: (ctx: never, ...params: infer P) => unknown } ? P : never;
/** What a procedure definition's `run` returns. */
export type CallResult<D> = D extends { readonly run: (...args: never[]) => infer R } ? R : never;

export interface ConnectOptions {
  /** Most calls outstanding at once; more wait. Default 2000. */
  callsInFlightMax?: number;
  /** Default per-call timeout in ms. Default 30 s. */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** Reconnect after a lost connection (calls in flight still fail with CONNECTION_LOST). Default false. */
  reconnect?: boolean;
  /** Largest frame accepted from the server. */
  frameBytesMax?: number;
  /** User and password, sent in the handshake; needed when the server has security on (docs/security.md). */
  user?: string;
  password?: string;
  /** For wss:// URLs: certificates (PEM) to trust besides the system's, e.g. a self-signed server's. */
  ca?: string | Buffer | (string | Buffer)[];
}

export interface CallOptions {
  timeoutMs?: number;
}

/** A call's answer with its transaction timestamp (ms since the epoch; 0 when none ran). */
export interface CallResponse<R> {
  result: R;
  timestamp: number;
}

/**
 * A call that did not succeed. `status` says how it ended (docs/protocol.md), `code` is the error
 * code (engine/errors.ts or the protocol's), `details` the server's structured details.
 */
export class SluiceClientError extends Error {
  readonly status: StatusName | 'UNKNOWN';
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> | null = null) {
    super(message);
    this.name = 'SluiceClientError';
    this.status = statusName(status);
    this.code = code;
    this.details = details ?? {};
  }
}

interface PendingCall {
  id: number;
  name: string;
  params: unknown[];
  timeoutMs: number;
  deadline: number;
  detailed: boolean;
  sent: boolean;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/** Opens a connection and handshakes; resolves when the server has answered HELLO. */
export async function connect<App extends AppShape = UntypedApp>(url: string, options: ConnectOptions = {}): Promise<Client<App>> {
  const client = new Client<App>(url, options);
  await client.open();
  return client;
}

export class Client<App extends AppShape = UntypedApp> {
  readonly url: string;
  /** Partitions of the server, from the handshake. */
  partitions = 0;
  /** The protocol version agreed in the handshake. */
  protocolVersion = 0;
  private readonly options: Required<Omit<ConnectOptions, 'user' | 'password' | 'ca'>>;
  private readonly credentials: { user?: string; password?: string };
  private readonly ca: ConnectOptions['ca'];
  private readonly codec = createCodec();
  private ws: WebSocket | undefined;
  private connected = false;
  private closing = false;
  private nextId = 1;
  private readonly pending = new PendingCalls<PendingCall>();
  /** Calls not yet sent because callsInFlightMax were outstanding (or while reconnecting). */
  private readonly waiting: PendingCall[] = [];
  private waitingHead = 0;
  private inFlight = 0;
  /** The CALLS frame being built this turn. */
  private readonly out: unknown[] = [FrameKind.CALLS];
  /** Elements per call in `out`: from protocol version 3 each call carries its timeout, for the server's deadline. */
  private callStride = callStrideOf(1);
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  /**
   * Calls by timeout, each queue in submission order, so deadlines within a queue only grow and a
   * sweep stops at the first call still running. A queue holds a call only until it is answered
   * and reaches the front: bucketing ids by deadline instead kept every id of the last `timeoutMs`
   * (millions at high rates) alive, and the scavenger copied them all. Queues hold ids, not the
   * calls: a queue's discarded backing store, once in the old generation, would keep every call
   * it referenced alive through the next scavenges (see pending-calls.ts).
   */
  private readonly deadlines = new Map<number, { ids: number[]; head: number }>();
  private timer: NodeJS.Timeout | undefined;
  private reconnectDelay = reconnectDelayMinMs;
  private readonly subscriptions = new SubscriptionRegistry((frame) => this.sendNow(frame), () => this.protocolVersion);

  constructor(url: string, options: ConnectOptions = {}) {
    this.url = url;
    this.options = {
      callsInFlightMax: options.callsInFlightMax ?? clientCallsInFlightMax,
      timeoutMs: options.timeoutMs ?? callTimeoutMs,
      connectTimeoutMs: options.connectTimeoutMs ?? connectTimeoutMs,
      reconnect: options.reconnect ?? false,
      frameBytesMax: options.frameBytesMax ?? resultFrameBytesMax,
    };
    const timeoutProblem = sdkTimeoutProblem(this.options.timeoutMs);
    if (timeoutProblem !== undefined) throw new SluiceClientError(Status.FAILURE, ProtocolCode.BAD_CALL, `connect: ${timeoutProblem}`, { path: ['timeoutMs'] });
    this.credentials = { user: options.user, password: options.password };
    this.ca = options.ca;
  }

  /** Calls a procedure; resolves with its result, rejects with a SluiceClientError. */
  call<K extends keyof Procedures<App> & string>(name: K, ...params: CallParams<Procedures<App>[K]>): Promise<CallResult<Procedures<App>[K]>> {
    return this.submit(name, params, this.options.timeoutMs, false) as Promise<CallResult<Procedures<App>[K]>>;
  }

  /** `call` with options (a per-call timeout). */
  callWith<K extends keyof Procedures<App> & string>(options: CallOptions, name: K, ...params: CallParams<Procedures<App>[K]>): Promise<CallResult<Procedures<App>[K]>> {
    return this.submit(name, params, options.timeoutMs ?? this.options.timeoutMs, false) as Promise<CallResult<Procedures<App>[K]>>;
  }

  /** `call` answering the result together with the transaction's timestamp. */
  invoke<K extends keyof Procedures<App> & string>(name: K, params: CallParams<Procedures<App>[K]>, options: CallOptions = {}): Promise<CallResponse<CallResult<Procedures<App>[K]>>> {
    return this.submit(name, params as unknown[], options.timeoutMs ?? this.options.timeoutMs, true) as Promise<CallResponse<CallResult<Procedures<App>[K]>>>;
  }

  /** Runs one ad-hoc SQL statement (the @AdHoc system procedure). */
  query(sql: string, params: readonly unknown[] = [], options: CallOptions = {}): Promise<QueryResult> {
    return this.submit('@AdHoc', [sql, params], options.timeoutMs ?? this.options.timeoutMs, false) as Promise<QueryResult>;
  }

  /** `query` with each row as an object keyed by column name. */
  async queryRows(sql: string, params: readonly unknown[] = []): Promise<Record<string, unknown>[]> {
    const result = await this.query(sql, params);
    return result.rows.map((row) => Object.fromEntries(result.columns.map((column, i) => [column, row[i]])));
  }

  /**
   * Receives a stream's rows as their transactions commit (client/subscriptions.ts): filtered by
   * the server with `where`, starting `from` a saved position, 'earliest' or 'now'. Resolves once
   * the server has accepted; rejects with a SubscriptionError (unknown stream or column, position
   * older than what the server retains). With `reconnect`, the subscription resumes by itself
   * after a lost connection, from where it stood.
   */
  subscribe(stream: string, options: SubscribeOptions, onRow: RowHandler): Promise<Subscription>;
  subscribe(stream: string, onRow: RowHandler): Promise<Subscription>;
  subscribe(stream: string, optionsOrHandler: SubscribeOptions | RowHandler, onRow?: RowHandler): Promise<Subscription> {
    if (typeof optionsOrHandler === 'function') return this.subscriptions.subscribe(stream, {}, optionsOrHandler);
    return this.subscriptions.subscribe(stream, optionsOrHandler, onRow!);
  }

  /** Writes one frame now; false when not connected. */
  private sendNow(frame: unknown[]): boolean {
    if (!this.connected || this.ws === undefined) return false;
    this.ws.send(this.codec.pack(frame), { binary: true });
    return true;
  }

  /** Calls sent and not yet answered (at most callsInFlightMax). */
  get callsInFlight(): number {
    return this.inFlight;
  }

  /** Calls outstanding at the server plus calls waiting to be sent. */
  get outstanding(): number {
    return this.pending.size;
  }

  /** Closes the connection; calls not yet answered fail with CONNECTION_LOST. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    this.timer = undefined;
    this.failAll(false, 'the client closed the connection');
    this.subscriptions.endAll();
    const ws = this.ws;
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(CloseCode.NORMAL, 'client closed');
    });
  }

  // --- connection -----------------------------------------------------------------------------

  /** Connects and handshakes (used by `connect`, and again by reconnects). */
  open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(this.url, { perMessageDeflate: false, maxPayload: this.options.frameBytesMax, skipUTF8Validation: true, ca: this.ca });
      ws.binaryType = 'nodebuffer';
      this.ws = ws;
      let settled = false;
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(error);
      };
      const timer = setTimeout(() => fail(new SluiceClientError(Status.CONNECTION_LOST, ProtocolCode.TIMEOUT, `no handshake from ${this.url} within ${this.options.connectTimeoutMs} ms`)), this.options.connectTimeoutMs);
      ws.on('open', () => ws.send(this.codec.pack([FrameKind.HELLO, { versions: protocolVersionsSupported, client: clientName, ...this.credentials }])));
      ws.on('error', (error: Error) => fail(new SluiceClientError(Status.CONNECTION_LOST, ProtocolCode.CONNECTION_LOST, `cannot connect to ${this.url}: ${error.message}`)));
      ws.on('close', (code: number, reason: Buffer) => {
        if (!settled) fail(new SluiceClientError(Status.CONNECTION_LOST, ProtocolCode.CONNECTION_LOST, `${this.url} closed the connection (${code} ${reason.toString()})`));
        else this.onClose(ws, code, reason.toString());
      });
      ws.on('message', (data: Buffer) => {
        if (settled) {
          this.onFrame(data);
          return;
        }
        let frame: unknown[];
        try {
          frame = this.codec.unpack(data) as unknown[];
        } catch (error) {
          fail(new SluiceClientError(Status.CONNECTION_LOST, ProtocolCode.MALFORMED_FRAME, `bad handshake answer: ${(error as Error).message}`));
          return;
        }
        if (frame[0] === FrameKind.ERROR) {
          fail(new SluiceClientError(statusOfCode(String(frame[1])), String(frame[1]), String(frame[2])));
          return;
        }
        if (frame[0] !== FrameKind.WELCOME) {
          fail(new SluiceClientError(Status.CONNECTION_LOST, ProtocolCode.HANDSHAKE_EXPECTED, 'the server did not answer HELLO with WELCOME'));
          return;
        }
        const welcome = frame[1] as { version: number; partitions: number };
        settled = true;
        clearTimeout(timer);
        this.protocolVersion = welcome.version;
        this.callStride = callStrideOf(welcome.version);
        this.partitions = welcome.partitions;
        this.connected = true;
        this.reconnectDelay = reconnectDelayMinMs;
        this.timer ??= setInterval(() => this.sweepTimeouts(), timeoutTickMs);
        this.timer.unref();
        this.pump();
        this.subscriptions.resume();
        resolve();
      });
    });
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.connected = false;
    if (this.closing) return;
    const message = `connection to ${this.url} lost (${code}${reason ? ` ${reason}` : ''})`;
    this.failAll(this.options.reconnect, message);
    this.subscriptions.onConnectionLost(this.options.reconnect, message);
    if (this.options.reconnect) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, reconnectDelayMaxMs);
    setTimeout(() => {
      if (this.closing) return;
      this.open().catch(() => this.scheduleReconnect());
    }, delay).unref();
  }

  /** Fails calls in flight with CONNECTION_LOST; waiting calls too unless they will go out after a reconnect. */
  private failAll(keepWaiting: boolean, message: string): void {
    for (const call of this.pending.values()) {
      if (keepWaiting && !call.sent) continue;
      this.pending.delete(call.id);
      call.reject(new SluiceClientError(Status.CONNECTION_LOST, ProtocolCode.CONNECTION_LOST, `${message}; call ${call.name} ${call.sent ? 'may or may not have committed' : 'was not sent'}`));
    }
    this.inFlight = 0;
    this.out.length = 1;
  }

  // --- calls ----------------------------------------------------------------------------------

  private submit(name: string, params: unknown[], timeoutMs: number, detailed: boolean): Promise<unknown> {
    if (this.closing) return Promise.reject(new SluiceClientError(Status.CONNECTION_LOST, ProtocolCode.CONNECTION_LOST, 'the client is closed'));
    if (!this.connected && !this.options.reconnect) {
      return Promise.reject(new SluiceClientError(Status.CONNECTION_LOST, ProtocolCode.CONNECTION_LOST, `not connected to ${this.url}`));
    }
    const timeoutProblem = sdkTimeoutProblem(timeoutMs);
    if (timeoutProblem !== undefined) return Promise.reject(new SluiceClientError(Status.FAILURE, ProtocolCode.BAD_CALL, `call ${name}: ${timeoutProblem}`, { path: ['timeoutMs'] }));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const call: PendingCall = { id, name, params, timeoutMs, deadline: Date.now() + timeoutMs, detailed, sent: false, resolve, reject };
      this.pending.add(call);
      const queue = this.deadlines.get(timeoutMs);
      if (queue === undefined) this.deadlines.set(timeoutMs, { ids: [id], head: 0 });
      else queue.ids.push(id);
      if (this.connected && this.inFlight < this.options.callsInFlightMax && this.waitingHead === this.waiting.length) this.send(call);
      else this.waiting.push(call);
    });
  }

  private send(call: PendingCall): void {
    call.sent = true;
    this.inFlight++;
    // What is left of the call's time: a call that waited here for room must not run at the
    // server after this client has given up on it.
    if (this.callStride > 3) this.out.push(call.id, call.name, call.params, Math.max(1, call.deadline - Date.now()));
    else this.out.push(call.id, call.name, call.params);
    if (this.out.length - 1 >= frameCallsMax * this.callStride) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.out.length === 1 || !this.connected) return;
    const frame = this.codec.pack(this.out);
    this.out.length = 1;
    this.ws!.send(frame, { binary: true });
  }

  /** Sends waiting calls while there is room. */
  private pump(): void {
    const waiting = this.waiting;
    while (this.waitingHead < waiting.length && this.connected && this.inFlight < this.options.callsInFlightMax) {
      const call = waiting[this.waitingHead++];
      if (this.pending.get(call.id) === call) this.send(call);
    }
    if (this.waitingHead === waiting.length) {
      waiting.length = 0;
      this.waitingHead = 0;
    } else if (this.waitingHead > 1024 && this.waitingHead * 2 > waiting.length) {
      waiting.splice(0, this.waitingHead);
      this.waitingHead = 0;
    }
  }

  private onFrame(data: Buffer): void {
    let frame: unknown[];
    try {
      frame = this.codec.unpack(data) as unknown[];
    } catch (error) {
      this.ws?.close(CloseCode.MALFORMED_FRAME, `undecodable frame: ${(error as Error).message}`.slice(0, 120));
      return;
    }
    if (frame[0] === FrameKind.ERROR) {
      // The server closes right after; remember why for the close message.
      this.lastServerError = `${String(frame[1])}: ${String(frame[2])}`;
      return;
    }
    if (frame[0] !== FrameKind.RESULTS) {
      this.subscriptions.onFrame(frame);
      return;
    }
    for (let i = 1; i < frame.length; i += resultStride) {
      const call = this.pending.get(frame[i] as number);
      if (call === undefined) continue; // Timed out already: the late answer is dropped.
      this.pending.delete(call.id);
      this.inFlight--;
      const status = frame[i + 1] as number;
      const payload = frame[i + 2];
      if (status === Status.SUCCESS) {
        call.resolve(call.detailed ? { result: payload, timestamp: frame[i + 3] as number } : payload);
      } else {
        const [code, message, details] = payload as ErrorPayload;
        call.reject(new SluiceClientError(status, code, message, details));
      }
    }
    if (this.waitingHead < this.waiting.length) this.pump();
  }

  /** Last ERROR frame from the server, for diagnostics. */
  lastServerError: string | undefined;

  private sweepTimeouts(): void {
    const now = Date.now();
    for (const [timeoutMs, queue] of this.deadlines) {
      const ids = queue.ids;
      let head = queue.head;
      for (; head < ids.length; head++) {
        const call = this.pending.get(ids[head]);
        if (call === undefined) continue; // Answered (or failed) already.
        if (call.deadline > now) break;
        this.pending.delete(call.id);
        if (call.sent) this.inFlight--;
        call.reject(new SluiceClientError(Status.TIMEOUT, ProtocolCode.TIMEOUT, `call ${call.name} got no answer within ${call.timeoutMs} ms; it ${call.sent ? 'may still commit' : 'was never sent'}`));
      }
      if (head === ids.length) {
        this.deadlines.delete(timeoutMs);
        continue;
      }
      // A slow call at the front holds back the answered ones behind it: drop those now and then.
      if (ids.length - head > 2 * this.pending.size + 1024) {
        queue.ids = ids.slice(head).filter((id) => this.pending.get(id) !== undefined);
        head = 0;
      } else if (head > 1024 && head * 2 > ids.length) {
        ids.splice(0, head);
        head = 0;
      }
      queue.head = head;
    }
    if (this.waitingHead < this.waiting.length) this.pump();
  }

}

/** The SDK always keeps a deadline of its own, so "0 = none", which the wire allows, is refused here. */
function sdkTimeoutProblem(timeoutMs: unknown): string | undefined {
  if (timeoutMs === 0) return 'timeoutMs must be at least 1 ms (the SDK always times calls out)';
  return callTimeoutProblem(timeoutMs);
}
