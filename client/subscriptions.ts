/**
 * The client SDK's side of stream subscriptions (protocol version 2, docs/protocol.md): rows of
 * a stream pushed by the server as their transactions commit, filtered server-side, each with
 * its partition and sequence number. The SDK keeps the subscription's position (per partition,
 * the next sequence wanted) and, when the client reconnects (`reconnect: true`), subscribes
 * again from it, so nothing the server still retains is missed and nothing is delivered twice.
 *
 * Used through `Client.subscribe` (client/index.ts); this file holds the bookkeeping so that
 * the client's call path stays as it was.
 */
import { FrameKind, ProtocolCode } from '../engine/server/protocol.ts';

/** Per partition, the sequence number of the next row wanted (0: from the first row the server has seen since it started). */
export type SubscriptionPosition = Record<number, number>;

/** Comparisons on one column of a subscription filter (docs/protocol.md). NULL meets none. */
export interface WhereCondition {
  '='?: unknown;
  '!='?: unknown;
  '<'?: unknown;
  '<='?: unknown;
  '>'?: unknown;
  '>='?: unknown;
  in?: unknown[];
}

export interface SubscribeOptions {
  /**
   * Only rows meeting every condition are sent (filtered on the server). Per column: a value
   * (equals), a list (one of), or an object of comparisons, all of which must hold:
   * `{ region: 'north', meter_id: [1, 2], kwh: { '>=': 1, '<': 5 }, kind: { '!=': 'test' } }`.
   */
  where?: Record<string, unknown | unknown[] | WhereCondition>;
  /** Where to start: 'now' (default), 'earliest' (every row the server retains), or a saved `position`. */
  from?: SubscriptionPosition | 'now' | 'earliest';
  /**
   * Called once when the subscription ends other than by `unsubscribe`: the server refused to
   * resume it (POSITION_TOO_OLD), or the connection was lost without `reconnect`.
   */
  onEnd?: (error: SubscriptionError) => void;
}

/** Where a row sits in its stream. */
export interface RowPosition {
  readonly partition: number;
  readonly sequence: number;
}

/** A stream row as an object keyed by column name (values as in query results: TIMESTAMP as ms, VARBINARY as Uint8Array). */
export type StreamRow = Record<string, unknown>;

export type RowHandler = (row: StreamRow, at: RowPosition) => void;

/** Why a subscription could not start or ended: `code` as the server (or the SDK) names it. */
export class SubscriptionError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown>;
  constructor(code: string, message: string, details: Record<string, unknown> | null = null) {
    super(message);
    this.name = 'SubscriptionError';
    this.code = code;
    this.details = details ?? {};
  }
}

interface SubscribedInfo {
  stream: string;
  columns: string[];
  partitions: number;
  position: Record<string, number>;
  retainRowsMax: number;
}

/** A live subscription. */
export class Subscription {
  readonly id: number;
  readonly stream: string;
  /** Column names, in the order of the stream. */
  columns: string[] = [];
  /** Rows this server retains per partition for resuming. */
  retainRowsMax = 0;
  /** Rows handed to the handler so far. */
  rowsReceived = 0;
  /** How the subscription ended (undefined while it runs, or after `unsubscribe`). */
  endError: SubscriptionError | undefined;
  private readonly registry: SubscriptionRegistry;
  readonly options: SubscribeOptions;
  readonly onRow: RowHandler;
  readonly next = new Map<number, number>();
  state: 'opening' | 'open' | 'resuming' | 'ended' = 'opening';
  /** The first SUBSCRIBED (or refusal) settles `subscribe()`. */
  opened: { resolve: (subscription: Subscription) => void; reject: (error: Error) => void } | undefined;

  constructor(registry: SubscriptionRegistry, id: number, stream: string, options: SubscribeOptions, onRow: RowHandler) {
    this.registry = registry;
    this.id = id;
    this.stream = stream;
    this.options = options;
    this.onRow = onRow;
  }

  /** Where to resume: per partition, the next sequence wanted. Save it to continue in another process. */
  get position(): SubscriptionPosition {
    return Object.fromEntries(this.next);
  }

  /** Stops the rows (rows already on the wire are dropped). */
  async unsubscribe(): Promise<void> {
    this.registry.unsubscribe(this);
  }
}

/**
 * The client's subscriptions by id. `send` writes one frame now (or returns false when not
 * connected); `canSubscribe` says whether the connection speaks version 2.
 */
export class SubscriptionRegistry {
  private readonly subscriptions = new Map<number, Subscription>();
  private nextId = 1;
  private readonly send: (frame: unknown[]) => boolean;
  private readonly version: () => number;

  constructor(send: (frame: unknown[]) => boolean, version: () => number) {
    this.send = send;
    this.version = version;
  }

  get size(): number {
    return this.subscriptions.size;
  }

  subscribe(stream: string, options: SubscribeOptions, onRow: RowHandler): Promise<Subscription> {
    if (this.version() < 2) {
      return Promise.reject(new SubscriptionError(ProtocolCode.UNSUPPORTED_VERSION, `the server speaks protocol version ${this.version()}; subscriptions need version 2`));
    }
    const subscription = new Subscription(this, this.nextId++, stream, options, onRow);
    return new Promise((resolve, reject) => {
      subscription.opened = { resolve, reject };
      this.subscriptions.set(subscription.id, subscription);
      const from = options.from ?? 'now';
      if (!this.send([FrameKind.SUBSCRIBE, subscription.id, stream, { where: options.where, from }])) {
        this.subscriptions.delete(subscription.id);
        reject(new SubscriptionError(ProtocolCode.CONNECTION_LOST, 'not connected'));
      }
    });
  }

  unsubscribe(subscription: Subscription): void {
    if (subscription.state === 'ended') return;
    subscription.state = 'ended';
    this.subscriptions.delete(subscription.id);
    this.send([FrameKind.UNSUBSCRIBE, subscription.id]);
  }

  /** Handles SUBSCRIBED, ROWS and SUBSCRIPTION_ENDED; false for other frames. */
  onFrame(frame: unknown[]): boolean {
    const kind = frame[0];
    if (kind !== FrameKind.SUBSCRIBED && kind !== FrameKind.ROWS && kind !== FrameKind.SUBSCRIPTION_ENDED) return false;
    const subscription = this.subscriptions.get(frame[1] as number);
    if (subscription === undefined) return true; // Unsubscribed: rows still on the wire are dropped.
    if (kind === FrameKind.SUBSCRIBED) this.onSubscribed(subscription, frame[2] as SubscribedInfo);
    else if (kind === FrameKind.ROWS) this.onRows(subscription, frame);
    else this.onEnded(subscription, new SubscriptionError(String(frame[2]), String(frame[3]), (frame[4] as Record<string, unknown> | null) ?? null));
    return true;
  }

  /** After a reconnect: subscribe again, from where each subscription stands. */
  resume(): void {
    for (const subscription of this.subscriptions.values()) {
      if (subscription.state !== 'open' && subscription.state !== 'resuming') continue;
      subscription.state = 'resuming';
      this.send([FrameKind.SUBSCRIBE, subscription.id, subscription.stream, { where: subscription.options.where, from: subscription.position }]);
    }
  }

  /** The client closes: every subscription ends quietly (no onEnd: the application asked for it). */
  endAll(): void {
    for (const subscription of this.subscriptions.values()) {
      subscription.state = 'ended';
      subscription.opened?.reject(new SubscriptionError(ProtocolCode.CONNECTION_LOST, 'the client closed the connection'));
      subscription.opened = undefined;
    }
    this.subscriptions.clear();
  }

  /** The connection is gone. With `willReconnect`, open subscriptions wait to be resumed; the rest end. */
  onConnectionLost(willReconnect: boolean, message: string): void {
    for (const subscription of [...this.subscriptions.values()]) {
      if (subscription.state === 'opening') {
        this.subscriptions.delete(subscription.id);
        subscription.state = 'ended';
        subscription.opened?.reject(new SubscriptionError(ProtocolCode.CONNECTION_LOST, `${message}; subscription to ${subscription.stream} was not confirmed`));
      } else if (!willReconnect) {
        this.onEnded(subscription, new SubscriptionError(ProtocolCode.CONNECTION_LOST, `${message}; resubscribe with \`from: subscription.position\` to continue`));
      }
    }
  }

  private onSubscribed(subscription: Subscription, info: SubscribedInfo): void {
    subscription.columns = info.columns;
    subscription.retainRowsMax = info.retainRowsMax;
    // On a resume the server echoes our own position; on a first subscribe it says where we start.
    for (const [partition, next] of Object.entries(info.position)) {
      const p = Number(partition);
      if (!subscription.next.has(p) || subscription.state === 'opening') subscription.next.set(p, next);
    }
    subscription.state = 'open';
    const opened = subscription.opened;
    subscription.opened = undefined;
    opened?.resolve(subscription);
  }

  private onRows(subscription: Subscription, frame: unknown[]): void {
    const partition = frame[2] as number;
    const columns = subscription.columns;
    for (let i = 4; i < frame.length; i += 2) {
      const values = frame[i + 1] as unknown[];
      const row: StreamRow = {};
      for (let c = 0; c < columns.length; c++) row[columns[c]] = values[c];
      const sequence = frame[i] as number;
      // The position moves row by row, so a handler that stops the subscription resumes after this row.
      subscription.next.set(partition, sequence + 1);
      subscription.rowsReceived++;
      subscription.onRow(row, { partition, sequence });
      if (subscription.state === 'ended') return;
    }
    subscription.next.set(partition, frame[3] as number);
  }

  private onEnded(subscription: Subscription, error: SubscriptionError): void {
    if (error.code === ProtocolCode.SUBSCRIBER_TOO_SLOW && subscription.state === 'open') {
      // The server cut us off because we fell behind: pick up again from our position.
      subscription.state = 'resuming';
      this.send([FrameKind.SUBSCRIBE, subscription.id, subscription.stream, { where: subscription.options.where, from: subscription.position }]);
      return;
    }
    this.subscriptions.delete(subscription.id);
    const wasOpening = subscription.state === 'opening';
    subscription.state = 'ended';
    subscription.endError = error;
    if (wasOpening && subscription.opened !== undefined) {
      subscription.opened.reject(error);
      subscription.opened = undefined;
      return;
    }
    subscription.options.onEnd?.(error);
  }
}
