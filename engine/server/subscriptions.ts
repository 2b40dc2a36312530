/**
 * Live stream subscriptions (alerts for clients): a client subscribes to a stream over its ws
 * connection (SUBSCRIBE frame, docs/protocol.md) and gets the stream's rows as their
 * transactions commit (ROWS frames), filtered here by a `where` map (equality, comparisons, IN,
 * all ANDed), with a per-partition position that lets a reconnecting client continue exactly
 * where it stopped.
 *
 * Place in the system: the router hands the committed rows of every worker batch to `publish`
 * (rows cross from the partition workers once, for the export pipeline and for this hub; an
 * aborted transaction's rows never leave its partition). From the first subscription to a
 * stream on, the hub keeps the last `retainRowsMax` rows of each of its partitions in memory, so
 * a client can resume from a position that is at most that far behind; an older position is
 * refused with POSITION_TOO_OLD naming the oldest one still held — a client is never silently
 * handed a gap. Streams nobody has subscribed to cost nothing here.
 *
 * Positions: for each partition, the sequence number of the next row the client wants
 * (sequences are per stream partition, dense, starting at 1). 0 means "from the first row this
 * server has kept" (since the stream's first subscription); it is what a partition that has had
 * no row since then reports.
 * Rows are retained in memory only: across a server restart, a position survives only when the
 * server recovers its data (sequence numbers continue), and rows committed before the restart
 * can no longer be replayed (POSITION_TOO_OLD).
 *
 * Everything runs on the main thread, between worker batches, so a subscription's catch-up
 * from retained rows and the live rows that follow can neither overlap nor leave a gap.
 *
 * The hub reads the catalog in force from its source (the router) at each use, so a stream a live
 * update adds can be subscribed to from the switch on.
 */
import type { ColumnDef, Catalog, TableDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError, nearNames } from '../errors.ts';
import { coerceValue, compareValues, valuesEqual, type Value } from '../types.ts';
import { FrameKind, ProtocolCode } from './protocol.ts';

/** Rows retained per stream partition for resuming subscribers. */
export const subscriptionRetainRowsMax = 10_000;
/** Subscriptions one connection may hold. */
export const connectionSubscriptionsMax = 256;
/** A subscriber whose connection has this much unsent data is cut off (SUBSCRIBER_TOO_SLOW). */
export const subscriberBufferedBytesMax = 64 * 1024 * 1024;
/** Values one `where` column may list (an IN list). */
const whereValuesMax = 1000;

/** Position-only ROWS frames (rows arrived, none matched the filter) go out at most this often per subscription. */
export const positionUpdateIntervalMs = 1000;

/** Where a subscription's frames go: the server's connection. */
export interface SubscriptionSink {
  /** Sends a ROWS or SUBSCRIPTION_ENDED frame (protocol.ts). */
  sendFrame(frame: unknown[]): void;
  /** Bytes queued for the client and not yet written to the socket. */
  readonly bufferedBytes: number;
}

export interface SubscribeOptions {
  /**
   * Column → value, list of values (IN) or { operator: value } with =, !=, <, <=, >, >=, in: a row
   * is sent when every condition holds (compileWhere).
   */
  where?: unknown;
  /** 'now' (default), 'earliest', or partition → next sequence wanted. */
  from?: unknown;
}

export interface SubscribedInfo {
  readonly stream: string;
  readonly columns: string[];
  readonly partitions: number;
  /** Partition → next sequence this subscription will deliver (0: from the first row seen since start). */
  readonly position: Record<number, number>;
  readonly retainRowsMax: number;
}

/** The retained tail of one stream partition. */
class PartitionTail {
  private rows: (readonly Value[])[] = [];
  private head = 0;
  /** Sequence of rows[head]; 0 until the first row arrives. */
  firstSequence = 0;
  /** Sequence of the first row this server saw (0: none yet): what position 0 means. */
  startSequence = 0;
  private readonly retainRowsMax: number;

  constructor(retainRowsMax: number) {
    this.retainRowsMax = retainRowsMax;
  }

  get known(): boolean {
    return this.startSequence > 0;
  }

  get nextSequence(): number {
    return this.known ? this.firstSequence + this.rows.length - this.head : 0;
  }

  append(firstSequence: number, rows: readonly (readonly Value[])[]): void {
    if (!this.known) {
      this.startSequence = firstSequence;
      this.firstSequence = firstSequence;
    } else if (firstSequence !== this.nextSequence) {
      // A gap or overlap would break positions: the producer skipped rows (a restart of the
      // pipeline raises sequences). Start the tail over from here; older positions become too old.
      this.rows = [];
      this.head = 0;
      this.firstSequence = firstSequence;
    }
    for (const row of rows) this.rows.push(row);
    const excess = this.rows.length - this.head - this.retainRowsMax;
    if (excess > 0) {
      this.head += excess;
      this.firstSequence += excess;
    }
    if (this.head > this.retainRowsMax) {
      this.rows = this.rows.slice(this.head);
      this.head = 0;
    }
  }

  /** Rows from `sequence` on (must be ≥ firstSequence). */
  from(sequence: number): { first: number; rows: (readonly Value[])[] } {
    const offset = this.head + Math.max(0, sequence - this.firstSequence);
    return { first: this.firstSequence + offset - this.head, rows: this.rows.slice(offset) };
  }
}

type Matcher = (row: readonly Value[]) => boolean;

interface Subscription {
  readonly sink: SubscriptionSink;
  readonly id: number;
  readonly stream: TableDef;
  readonly matches: Matcher | undefined;
  /** Per partition: next sequence to deliver; 0 = the first row that arrives. */
  readonly next: number[];
  /** When the last ROWS frame went out (ms), for throttling position-only frames. */
  lastSentMs: number;
}

/** Whoever owns the catalog in force (the router, which switches it at live updates). */
export interface CatalogSource {
  readonly catalog: Catalog;
}

export class SubscriptionHub {
  readonly partitions: number;
  readonly retainRowsMax: number;
  private readonly source: CatalogSource;
  private readonly bufferedBytesMax: number;
  private readonly tails = new Map<string, PartitionTail[]>();
  private readonly byStream = new Map<string, Set<Subscription>>();
  private readonly bySink = new Map<SubscriptionSink, Map<number, Subscription>>();

  constructor(source: CatalogSource, partitions: number, options: { retainRowsMax?: number; bufferedBytesMax?: number } = {}) {
    this.source = source;
    this.partitions = partitions;
    this.retainRowsMax = options.retainRowsMax ?? subscriptionRetainRowsMax;
    this.bufferedBytesMax = options.bufferedBytesMax ?? subscriberBufferedBytesMax;
  }

  /** Streams whose rows the hub needs from the workers: all of them. */
  get streamNames(): string[] {
    return [...this.source.catalog.tables.values()].filter((def) => def.kind === 'stream').map((def) => def.name);
  }

  /** Subscriptions open now (all connections). */
  get size(): number {
    let count = 0;
    for (const subscriptions of this.bySink.values()) count += subscriptions.size;
    return count;
  }

  /**
   * Whether the rows of `stream` are needed: once a stream has been subscribed to, its rows are
   * retained for resuming subscribers; before that, nobody can resume from them, and the router
   * (exporters/exports.ts streamRowsOptions) spares itself cutting them into rows.
   */
  wants(stream: string): boolean {
    return this.tails.has(stream);
  }

  /** Values per row of `stream` as the partitions encode them (streams only grow live: never stale). */
  valuesPerRow(stream: string): number {
    return this.source.catalog.tables.get(stream)!.columns.length;
  }

  /**
   * Committed rows of one stream partition, in sequence order, `firstSequence` being rows[0]'s.
   * Called on the main thread as each worker batch's results arrive.
   */
  publish(stream: string, partition: number, firstSequence: number, rows: readonly (readonly Value[])[]): void {
    if (rows.length === 0) return;
    const tail = this.tails.get(stream)?.[partition];
    if (tail === undefined) return;
    tail.append(firstSequence, rows);
    const subscriptions = this.byStream.get(stream);
    if (subscriptions === undefined) return;
    for (const subscription of subscriptions) {
      const wanted = subscription.next[partition];
      if (wanted === 0 || wanted === firstSequence) this.send(subscription, partition, firstSequence, rows);
      else if (wanted > firstSequence && wanted < firstSequence + rows.length) this.send(subscription, partition, wanted, rows.slice(wanted - firstSequence));
      else if (wanted < firstSequence) this.end(subscription, ErrorCode.POSITION_TOO_OLD, `rows ${wanted}…${firstSequence - 1} of ${stream} partition ${partition} are no longer available to this subscription`, { partition, wanted, oldest: tail.firstSequence });
    }
  }

  /** Opens a subscription; replays retained rows from its position. Throws a SluiceError when refused. */
  subscribe(sink: SubscriptionSink, id: number, streamName: unknown, options: SubscribeOptions = {}): SubscribedInfo {
    if (typeof streamName !== 'string' || streamName === '') throw new SluiceError(ErrorCode.UNKNOWN_TABLE, 'SUBSCRIBE names a stream: a non-empty string');
    const name = streamName.toLowerCase();
    const stream = this.source.catalog.tables.get(name);
    if (stream === undefined || stream.kind !== 'stream') {
      const streams = this.streamNames;
      const what = stream === undefined ? 'no stream' : `a ${stream.kind}, not a stream`;
      throw new SluiceError(ErrorCode.UNKNOWN_TABLE, `cannot subscribe to ${streamName}: ${what}${streams.length > 0 ? '' : ' (the schema has no streams)'}`, { object: streamName, suggestions: nearNames(name, streams) });
    }
    const mine = this.bySink.get(sink);
    if (mine?.has(id) === true) throw new SluiceError(ErrorCode.DUPLICATE_OBJECT, `subscription id ${id} is already open on this connection`, { object: String(id) });
    if (mine !== undefined && mine.size >= connectionSubscriptionsMax) throw new SluiceError(ErrorCode.UNSUPPORTED, `a connection may hold at most ${connectionSubscriptionsMax} subscriptions`);
    const matches = compileWhere(stream, options.where);
    const tails = this.tailsOf(name)!;
    const next = this.startPositions(stream, tails, options.from);
    const subscription: Subscription = { sink, id, stream, matches, next, lastSentMs: 0 };
    if (mine === undefined) this.bySink.set(sink, new Map([[id, subscription]]));
    else mine.set(id, subscription);
    let set = this.byStream.get(name);
    if (set === undefined) this.byStream.set(name, (set = new Set()));
    set.add(subscription);
    const position: Record<number, number> = {};
    for (let p = 0; p < this.partitions; p++) position[p] = next[p];
    const info: SubscribedInfo = { stream: name, columns: visible(stream).map((column) => column.name), partitions: this.partitions, position, retainRowsMax: this.retainRowsMax };
    // Catch up after the caller has sent SUBSCRIBED (queueMicrotask keeps the frames in order).
    queueMicrotask(() => this.catchUp(subscription));
    return info;
  }

  unsubscribe(sink: SubscriptionSink, id: number): boolean {
    const subscription = this.bySink.get(sink)?.get(id);
    if (subscription === undefined) return false;
    this.remove(subscription);
    return true;
  }

  /** Subscriptions one connection holds (the idle timeout spares connections that listen). */
  countOf(sink: SubscriptionSink): number {
    return this.bySink.get(sink)?.size ?? 0;
  }

  /** A connection went away: forget its subscriptions. */
  dropSink(sink: SubscriptionSink): void {
    const mine = this.bySink.get(sink);
    if (mine === undefined) return;
    for (const subscription of [...mine.values()]) this.remove(subscription);
  }

  private tailsOf(stream: string): PartitionTail[] | undefined {
    let tails = this.tails.get(stream);
    if (tails === undefined) {
      const def = this.source.catalog.tables.get(stream);
      if (def === undefined || def.kind !== 'stream') return undefined;
      tails = Array.from({ length: this.partitions }, () => new PartitionTail(this.retainRowsMax));
      this.tails.set(stream, tails);
    }
    return tails;
  }

  private startPositions(stream: TableDef, tails: PartitionTail[], from: unknown): number[] {
    if (from === undefined || from === null || from === 'now') return tails.map((tail) => tail.nextSequence);
    if (from === 'earliest') return tails.map((tail) => (tail.known ? tail.firstSequence : 0));
    if (typeof from !== 'object' || Array.isArray(from)) {
      throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription option 'from' is 'now', 'earliest' or { partition: next sequence }, got ${JSON.stringify(from)}`, { path: ['from'] });
    }
    const next = tails.map((tail) => tail.nextSequence);
    for (const [key, value] of Object.entries(from as Record<string, unknown>)) {
      const partition = Number(key);
      if (!Number.isInteger(partition) || partition < 0 || partition >= this.partitions) {
        throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription option 'from' names partition ${key}; the server has partitions 0…${this.partitions - 1}`, { path: ['from', key] });
      }
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription option 'from' for partition ${key} is a sequence number (integer ≥ 0), got ${JSON.stringify(value)}`, { path: ['from', key] });
      }
      const tail = tails[partition];
      const available = tail.known ? tail.firstSequence : 0;
      if (value === 0 ? tail.known && tail.firstSequence > tail.startSequence : tail.known && value < tail.firstSequence) {
        throw new SluiceError(
          ErrorCode.POSITION_TOO_OLD,
          `position ${value} of ${stream.name} partition ${partition} is older than the oldest row the server still holds (${available}; it keeps the last ${this.retainRowsMax} rows per partition, in memory, since it started): rows in between are no longer available`,
          { path: ['from', key], expected: `≥ ${available}` },
        );
      }
      if (tail.known && value > tail.nextSequence) {
        throw new SluiceError(
          ErrorCode.POSITION_AHEAD,
          `position ${value} of ${stream.name} partition ${partition} is ahead of the stream (next row: ${tail.nextSequence}); was it taken from another server or before data was lost?`,
          { path: ['from', key], expected: `≤ ${tail.nextSequence}` },
        );
      }
      next[partition] = value === 0 ? (tail.known ? tail.startSequence : 0) : value;
    }
    return next;
  }

  private catchUp(subscription: Subscription): void {
    if (this.bySink.get(subscription.sink)?.get(subscription.id) !== subscription) return;
    const tails = this.tails.get(subscription.stream.name)!;
    for (let p = 0; p < this.partitions; p++) {
      const tail = tails[p];
      const wanted = subscription.next[p];
      if (!tail.known || wanted === 0 || wanted >= tail.nextSequence) continue;
      const { first, rows } = tail.from(wanted);
      this.send(subscription, p, first, rows);
    }
  }

  private send(subscription: Subscription, partition: number, firstSequence: number, rows: readonly (readonly Value[])[]): void {
    if (subscription.sink.bufferedBytes > this.bufferedBytesMax) {
      this.end(subscription, ProtocolCode.SUBSCRIBER_TOO_SLOW, `the client reads rows of ${subscription.stream.name} slower than they commit (over ${this.bufferedBytesMax} bytes waiting to be sent); subscribe again from its position to continue`, { partition, wanted: subscription.next[partition] });
      return;
    }
    const nextSequence = firstSequence + rows.length;
    subscription.next[partition] = nextSequence;
    const frame: unknown[] = [FrameKind.ROWS, subscription.id, partition, nextSequence];
    const matches = subscription.matches;
    const width = visible(subscription.stream).length;
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      if (matches !== undefined && !matches(row)) continue;
      frame.push(firstSequence + i, row.length === width ? row : row.slice(0, width));
    }
    const now = Date.now();
    // Nothing matched: the position still moves, but the client hears of it only now and then
    // (a resume from a slightly older position replays rows that do not match anyway).
    if (frame.length === 4 && now - subscription.lastSentMs < positionUpdateIntervalMs) return;
    subscription.lastSentMs = now;
    subscription.sink.sendFrame(frame);
  }

  private end(subscription: Subscription, code: string, message: string, details: Record<string, unknown>): void {
    this.remove(subscription);
    subscription.sink.sendFrame([FrameKind.SUBSCRIPTION_ENDED, subscription.id, code, message, details]);
  }

  private remove(subscription: Subscription): void {
    const mine = this.bySink.get(subscription.sink);
    mine?.delete(subscription.id);
    if (mine?.size === 0) this.bySink.delete(subscription.sink);
    this.byStream.get(subscription.stream.name)?.delete(subscription);
  }
}

function visible(stream: TableDef): readonly ColumnDef[] {
  return stream.columns.filter((column) => !column.hidden);
}

/** The comparisons a `where` condition object may use; several in one object must all hold. */
const whereOperators = ['=', '!=', '<', '<=', '>', '>=', 'in'] as const;
type WhereOperator = (typeof whereOperators)[number];

/** One condition on one column; `values` holds one value, or the IN list. */
interface WhereTest {
  readonly position: number;
  readonly operator: WhereOperator;
  readonly values: readonly Value[];
}

/**
 * The `where` map as a row predicate: every column's conditions must hold (AND). A column maps
 * to a value (=), a list (IN) or an object of operator → value, e.g. `{ kwh: { '>=': 1, '<': 5 } }`.
 * NULL satisfies no condition, as in SQL. Errors name the column, operator or value that is wrong.
 */
function compileWhere(stream: TableDef, where: unknown): Matcher | undefined {
  if (where === undefined || where === null) return undefined;
  if (typeof where !== 'object' || Array.isArray(where) || where instanceof Uint8Array) {
    throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription option 'where' is an object of column → value, list of values or { operator: value }, got ${JSON.stringify(where)}`, { path: ['where'] });
  }
  const tests: WhereTest[] = [];
  for (const [name, wanted] of Object.entries(where as Record<string, unknown>)) {
    const column = stream.columnsByName.get(name.toLowerCase());
    if (column === undefined || column.hidden) {
      throw new SluiceError(ErrorCode.UNKNOWN_COLUMN, `subscription filter names column ${name}, which stream ${stream.name} does not have`, { path: ['where', name], object: name, suggestions: nearNames(name, visible(stream).map((c) => c.name)) });
    }
    if (Array.isArray(wanted)) tests.push(whereTest(stream, column, name, 'in', wanted, ['where', name]));
    else if (isConditionObject(wanted)) {
      const conditions = Object.entries(wanted);
      if (conditions.length === 0) throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription filter on ${name} has no condition; give one of ${whereOperators.join(', ')}`, { path: ['where', name] });
      for (const [operator, value] of conditions) {
        if (!(whereOperators as readonly string[]).includes(operator)) {
          throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription filter on ${name} uses operator '${operator}'; the operators are ${whereOperators.join(', ')}`, { path: ['where', name, operator], expected: whereOperators.join(' | ') });
        }
        tests.push(whereTest(stream, column, name, operator as WhereOperator, value, ['where', name, operator]));
      }
    } else tests.push(whereTest(stream, column, name, '=', wanted, ['where', name]));
  }
  if (tests.length === 0) return undefined;
  return (row) => {
    for (const test of tests) if (!holds(test, row[test.position] ?? null)) return false;
    return true;
  };
}

function isConditionObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !(value instanceof Uint8Array) && !(value instanceof Date) && !Array.isArray(value);
}

function whereTest(stream: TableDef, column: ColumnDef, name: string, operator: WhereOperator, wanted: unknown, path: (string | number)[]): WhereTest {
  const ordered = operator === '<' || operator === '<=' || operator === '>' || operator === '>=';
  if (ordered && (column.type.name === 'BOOLEAN' || column.type.name === 'VARBINARY')) {
    throw new SluiceError(ErrorCode.TYPE_MISMATCH, `subscription filter on ${name} compares with '${operator}', but column ${stream.name}.${column.name} is ${column.type.name}, which has only =, != and in`, { path, object: name });
  }
  if (operator === 'in' && !Array.isArray(wanted)) {
    throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription filter on ${name}: 'in' takes a list of values, got ${JSON.stringify(wanted)}`, { path });
  }
  const list = operator === 'in' ? (wanted as unknown[]) : [wanted];
  if (list.length === 0 || list.length > whereValuesMax) throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription filter on ${name} lists ${list.length} values; give 1 to ${whereValuesMax}`, { path });
  const label = `filter value for column ${stream.name}.${column.name}`;
  const values = list.map((value, i) => {
    const at = operator === 'in' ? [...path, i] : path;
    if (value === null || value === undefined) throw new SluiceError(ErrorCode.PARAM_TYPE, `subscription filter on ${name} compares with NULL, which no row matches; leave the condition out`, { path: at });
    return coerceValue(value, column.type, { label, path: at });
  });
  return { position: column.position, operator, values };
}

function holds(test: WhereTest, value: Value): boolean {
  if (value === null) return false;
  switch (test.operator) {
    case '=':
      return valuesEqual(value, test.values[0]);
    case '!=':
      return !valuesEqual(value, test.values[0]);
    case '<':
      return compareValues(value, test.values[0]) < 0;
    case '<=':
      return compareValues(value, test.values[0]) <= 0;
    case '>':
      return compareValues(value, test.values[0]) > 0;
    case '>=':
      return compareValues(value, test.values[0]) >= 0;
    case 'in':
      for (const candidate of test.values) if (valuesEqual(value, candidate)) return true;
      return false;
  }
}

/**
 * One connection's side of the subscription protocol: turns SUBSCRIBE / UNSUBSCRIBE frames into
 * hub calls and answers SUBSCRIBED or SUBSCRIPTION_ENDED. The server creates one per connection
 * that negotiated protocol version 2 and closes it with the connection.
 */
export class ConnectionSubscriptions implements SubscriptionSink {
  private readonly hub: SubscriptionHub;
  private readonly send: (frame: unknown[]) => void;
  private readonly buffered: () => number;

  constructor(hub: SubscriptionHub, send: (frame: unknown[]) => void, buffered: () => number) {
    this.hub = hub;
    this.send = send;
    this.buffered = buffered;
  }

  get bufferedBytes(): number {
    return this.buffered();
  }

  sendFrame(frame: unknown[]): void {
    this.send(frame);
  }

  /**
   * Handles a SUBSCRIBE or UNSUBSCRIBE frame. Returns a message when the frame itself is
   * malformed (the connection is then closed); a refused subscription is answered, not fatal.
   */
  handle(frame: unknown[]): string | undefined {
    const id = frame[1];
    if (typeof id !== 'number' || !Number.isSafeInteger(id)) return `subscription ids are integers; got ${typeof id}`;
    if (frame[0] === FrameKind.UNSUBSCRIBE) {
      this.hub.unsubscribe(this, id);
      return undefined;
    }
    const options = frame[3] ?? {};
    if (typeof options !== 'object' || Array.isArray(options)) {
      this.send([FrameKind.SUBSCRIPTION_ENDED, id, ProtocolCode.BAD_SUBSCRIPTION, `SUBSCRIBE options are an object { where?, from? }, got ${JSON.stringify(options)}`, null]);
      return undefined;
    }
    try {
      const info = this.hub.subscribe(this, id, frame[2], options as SubscribeOptions);
      this.send([FrameKind.SUBSCRIBED, id, info]);
    } catch (error) {
      if (!(error instanceof SluiceError)) throw error;
      this.send([FrameKind.SUBSCRIPTION_ENDED, id, error.code, error.message, { ...error.details }]);
    }
    return undefined;
  }

  close(): void {
    this.hub.dropSink(this);
  }
}
