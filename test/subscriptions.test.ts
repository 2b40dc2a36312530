/**
 * Stream subscriptions over the real server and SDK (engine/server/subscriptions.ts,
 * client/subscriptions.ts): rows reach subscribers with their positions, filtered server-side by
 * `where`; a client that loses its connection resumes where it stopped and misses nothing; a
 * saved position continues in a new client; positions the server no longer covers are refused
 * by name; bad requests are refused without harming the connection or the server.
 *
 * Rows are handed to the hub as the router hands it committed stream rows (`publish`), so these
 * tests control exactly which sequences exist; test/subscriptions-commit.test.ts drives them
 * through real transactions.
 */
import { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { SubscriptionError, type RowPosition, type StreamRow, type Subscription } from '../client/index.ts';
import { ErrorCode } from '../engine/errors.ts';
import { FrameKind, ProtocolCode, createCodec, protocolVersion } from '../engine/server/protocol.ts';
import { SubscriptionHub, type SubscriptionSink } from '../engine/server/subscriptions.ts';
import type { Value } from '../engine/types.ts';
import { applyDdl } from '../engine/catalog/ddl.ts';
import { readFileSync } from 'node:fs';
import { dedupe, eventually, range, startTcpProxy } from './exporters/helpers.ts';
import { client, serve } from './server-helpers.ts';

const schema = 'test/fixtures/alerts/ddl.sql';
const at = Date.UTC(2026, 10, 22, 8, 0, 0);

function alert(meter: number, n: number, region = 'north'): Value[] {
  return [meter, region, `k${n}`, at + n, new Uint8Array([n & 0xff])];
}

function rowsFor(meter: number, first: number, count: number, region = 'north'): Value[][] {
  return range(first, count).map((n) => alert(meter, n, region));
}

interface Got {
  row: StreamRow;
  at: RowPosition;
}

function collector(): { got: Got[]; onRow: (row: StreamRow, at: RowPosition) => void } {
  const got: Got[] = [];
  return { got, onRow: (row, position) => got.push({ row, at: position }) };
}

const sequencesOf = (got: Got[], partition: number): number[] => got.filter((g) => g.at.partition === partition).map((g) => g.at.sequence);

describe('stream subscriptions', () => {
  it('delivers rows published after subscribing, as objects with their partition and sequence', async () => {
    const server = await serve({ schema, partitions: 2 });
    const sdk = await client(server);
    expect(server.subscriptions.wants('meter_alerts')).toBe(false);
    await sdk.subscribe('meter_alerts', () => undefined);
    expect(server.subscriptions.wants('meter_alerts')).toBe(true);
    server.subscriptions.publish('meter_alerts', 0, 1, rowsFor(7, 1, 3));
    const { got, onRow } = collector();
    const subscription = await sdk.subscribe('meter_alerts', onRow);
    expect(subscription.columns).toEqual(['meter_id', 'region', 'kind', 'at', 'raw']);
    expect(subscription.position).toEqual({ 0: 4, 1: 0 });
    server.subscriptions.publish('meter_alerts', 0, 4, rowsFor(7, 4, 2));
    server.subscriptions.publish('meter_alerts', 1, 1, rowsFor(8, 1, 1));
    expect(await eventually(() => got.length >= 3)).toBe(true);
    expect(got[0]).toEqual({ row: { meter_id: 7, region: 'north', kind: 'k4', at: at + 4, raw: Buffer.from([4]) }, at: { partition: 0, sequence: 4 } });
    expect(got.map((g) => [g.at.partition, g.at.sequence])).toEqual([[0, 4], [0, 5], [1, 1]]);
    expect(subscription.position).toEqual({ 0: 6, 1: 2 });
  });

  it('filters on the server by column equality and value lists, converting values to the column type', async () => {
    const server = await serve({ schema, partitions: 1 });
    const sdk = await client(server);
    const north = collector();
    const some = collector();
    await sdk.subscribe('meter_alerts', { where: { region: 'north' } }, north.onRow);
    await sdk.subscribe('meter_alerts', { where: { METER_ID: [2, 3], kind: ['k2', 'k3', 'k4'] } }, some.onRow);
    server.subscriptions.publish('meter_alerts', 0, 1, [alert(1, 1, 'north'), alert(2, 2, 'south'), alert(3, 3, 'north'), alert(3, 4, 'north'), alert(2, 5, 'north')]);
    expect(await eventually(() => north.got.length >= 4 && some.got.length >= 3)).toBe(true);
    expect(north.got.map((g) => g.at.sequence)).toEqual([1, 3, 4, 5]);
    expect(some.got.map((g) => g.at.sequence)).toEqual([2, 3, 4]);
  });

  it('filters by comparisons, IN lists and their AND, with NULL meeting no condition', async () => {
    const server = await serve({ schema, partitions: 1 });
    const sdk = await client(server);
    const middle = collector();
    const notNorth = collector();
    const late = collector();
    const binary = collector();
    await sdk.subscribe('meter_alerts', { where: { meter_id: { '>': 1, '<=': 4 }, kind: { in: ['k2', 'k3', 'k5'] } } }, middle.onRow);
    await sdk.subscribe('meter_alerts', { where: { region: { '!=': 'north' } } }, notNorth.onRow);
    // Values convert to the column's type, here a Date for a TIMESTAMP.
    await sdk.subscribe('meter_alerts', { where: { at: { '>=': new Date(at + 4) }, meter_id: { '<': 9 } } }, late.onRow);
    await sdk.subscribe('meter_alerts', { where: { raw: { '!=': new Uint8Array([2]) } } }, binary.onRow);
    const nullRegion = [6, null, 'k6', at + 6, null];
    server.subscriptions.publish('meter_alerts', 0, 1, [alert(1, 1), alert(2, 2, 'south'), alert(3, 3), alert(4, 4, 'east'), alert(5, 5, 'south'), nullRegion, alert(9, 7)]);
    expect(await eventually(() => middle.got.length >= 2 && notNorth.got.length >= 3 && late.got.length >= 3 && binary.got.length >= 5)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(middle.got.map((g) => g.at.sequence)).toEqual([2, 3]);
    expect(notNorth.got.map((g) => g.at.sequence)).toEqual([2, 4, 5]);
    expect(late.got.map((g) => g.at.sequence)).toEqual([4, 5, 6]);
    expect(binary.got.map((g) => g.at.sequence)).toEqual([1, 3, 4, 5, 7]);
  });

  it('refuses filters with unknown operators, comparisons a type has not, NULL and values of the wrong type', async () => {
    const server = await serve({ schema, partitions: 1 });
    const sdk = await client(server);
    const refusal = async (where: Record<string, unknown>): Promise<[string, string, unknown]> => {
      try {
        await sdk.subscribe('meter_alerts', { where }, () => undefined);
      } catch (error) {
        const failure = error as SubscriptionError;
        return [failure.code, failure.message, failure.details?.path];
      }
      throw new Error(`expected ${JSON.stringify(where)} to be refused`);
    };
    expect(await refusal({ meter_id: { '=>': 3 } })).toEqual([ErrorCode.PARAM_TYPE, "subscription filter on meter_id uses operator '=>'; the operators are =, !=, <, <=, >, >=, in", ['where', 'meter_id', '=>']]);
    expect(await refusal({ raw: { '<': new Uint8Array([1]) } })).toEqual([ErrorCode.TYPE_MISMATCH, "subscription filter on raw compares with '<', but column meter_alerts.raw is VARBINARY, which has only =, != and in", ['where', 'raw', '<']]);
    expect(await refusal({ kind: { in: 'k1' } })).toEqual([ErrorCode.PARAM_TYPE, 'subscription filter on kind: \'in\' takes a list of values, got "k1"', ['where', 'kind', 'in']]);
    expect(await refusal({ region: { '!=': null } })).toEqual([ErrorCode.PARAM_TYPE, 'subscription filter on region compares with NULL, which no row matches; leave the condition out', ['where', 'region', '!=']]);
    expect(await refusal({ region: {} })).toEqual([ErrorCode.PARAM_TYPE, 'subscription filter on region has no condition; give one of =, !=, <, <=, >, >=, in', ['where', 'region']]);
    const [code, message, path] = await refusal({ meter_id: { '>=': 'many' } });
    expect([code, path]).toEqual([ErrorCode.TYPE_MISMATCH, ['where', 'meter_id', '>=']]);
    expect(message).toMatch(/filter value for column meter_alerts\.meter_id/);
    const [, listMessage, listPath] = await refusal({ meter_id: { in: [1, 'two'] } });
    expect(listPath).toEqual(['where', 'meter_id', 'in', 1]);
    expect(listMessage).toMatch(/filter value for column meter_alerts\.meter_id/);
    expect(server.subscriptions.size).toBe(0);
    expect(await sdk.query('SELECT COUNT(*) FROM meters')).toMatchObject({ rows: [[0]] });
  });

  it('advances the position past rows the filter drops, so a resume does not fall behind', async () => {
    const server = await serve({ schema, partitions: 1 });
    const sdk = await client(server);
    const subscription = await sdk.subscribe('meter_alerts', { where: { region: 'nowhere' } }, () => undefined);
    server.subscriptions.publish('meter_alerts', 0, 1, rowsFor(1, 1, 50));
    expect(await eventually(() => subscription.position[0] === 51)).toBe(true);
  });

  it('resumes after a lost connection from where it stopped: nothing missed, nothing twice', async () => {
    const server = await serve({ schema, partitions: 2 });
    const proxy = await startTcpProxy('127.0.0.1', server.port);
    const sdk = await client({ url: `ws://127.0.0.1:${proxy.port}` }, { reconnect: true });
    const { got, onRow } = collector();
    const ended: SubscriptionError[] = [];
    await sdk.subscribe('meter_alerts', { onEnd: (error) => ended.push(error) }, onRow);
    server.subscriptions.publish('meter_alerts', 0, 1, rowsFor(1, 1, 10));
    server.subscriptions.publish('meter_alerts', 1, 1, rowsFor(2, 1, 10));
    expect(await eventually(() => got.length >= 20)).toBe(true);
    await proxy.cut();
    expect(await eventually(() => server.subscriptions.size === 0)).toBe(true);
    // Committed while the client is away.
    server.subscriptions.publish('meter_alerts', 0, 11, rowsFor(1, 11, 15));
    server.subscriptions.publish('meter_alerts', 1, 11, rowsFor(2, 11, 5));
    await proxy.restore();
    expect(await eventually(() => got.length >= 40, 15_000), `got ${got.length} of 40`).toBe(true);
    server.subscriptions.publish('meter_alerts', 0, 26, rowsFor(1, 26, 5));
    expect(await eventually(() => got.length >= 45)).toBe(true);
    expect(sequencesOf(got, 0)).toEqual(range(1, 30));
    expect(sequencesOf(got, 1)).toEqual(range(1, 15));
    expect(ended).toEqual([]);
    await proxy.close();
  });

  it('continues from a saved position in a new client, and from the earliest retained row', async () => {
    const server = await serve({ schema, partitions: 1 });
    const first = await client(server);
    const one = collector();
    const subscription = await first.subscribe('meter_alerts', { from: 'earliest' }, one.onRow);
    server.subscriptions.publish('meter_alerts', 0, 1, rowsFor(1, 1, 10));
    expect(await eventually(() => one.got.length >= 10)).toBe(true);
    const saved = subscription.position;
    await first.close();
    server.subscriptions.publish('meter_alerts', 0, 11, rowsFor(1, 11, 5));
    const second = await client(server);
    const two = collector();
    await second.subscribe('meter_alerts', { from: saved }, two.onRow);
    expect(await eventually(() => two.got.length >= 5)).toBe(true);
    expect(sequencesOf(two.got, 0)).toEqual(range(11, 5));
    const everything = collector();
    await second.subscribe('meter_alerts', { from: 'earliest' }, everything.onRow);
    expect(await eventually(() => everything.got.length >= 15)).toBe(true);
    expect(dedupe(sequencesOf(everything.got, 0))).toEqual({ unique: range(1, 15), duplicates: 0 });
  });

  it('refuses a position older than the rows the server retains, saying what it still has', async () => {
    const server = await serve({ schema, partitions: 1, subscriptionRetainRowsMax: 100 });
    const sdk = await client(server);
    await sdk.subscribe('meter_alerts', () => undefined);
    server.subscriptions.publish('meter_alerts', 0, 1, rowsFor(1, 1, 250));
    const error = await sdk.subscribe('meter_alerts', { from: { 0: 120 } }, () => undefined).then(
      () => undefined,
      (refusal: unknown) => refusal,
    );
    expect(error).toBeInstanceOf(SubscriptionError);
    expect((error as SubscriptionError).code).toBe(ErrorCode.POSITION_TOO_OLD);
    expect((error as Error).message).toBe('position 120 of meter_alerts partition 0 is older than the oldest row the server still holds (151; it keeps the last 100 rows per partition, in memory, since it started): rows in between are no longer available');
    const { got, onRow } = collector();
    await sdk.subscribe('meter_alerts', { from: { 0: 151 } }, onRow);
    expect(await eventually(() => got.length >= 100)).toBe(true);
    expect(sequencesOf(got, 0)).toEqual(range(151, 100));
  });

  it('ends a resumed subscription whose rows the server dropped while the client was away', async () => {
    const server = await serve({ schema, partitions: 1, subscriptionRetainRowsMax: 20 });
    const proxy = await startTcpProxy('127.0.0.1', server.port);
    const sdk = await client({ url: `ws://127.0.0.1:${proxy.port}` }, { reconnect: true });
    const ended: SubscriptionError[] = [];
    const subscription = await sdk.subscribe('meter_alerts', { onEnd: (error) => ended.push(error) }, () => undefined);
    server.subscriptions.publish('meter_alerts', 0, 1, rowsFor(1, 1, 5));
    expect(await eventually(() => subscription.position[0] === 6)).toBe(true);
    await proxy.cut();
    expect(await eventually(() => server.subscriptions.size === 0)).toBe(true);
    server.subscriptions.publish('meter_alerts', 0, 6, rowsFor(1, 6, 50));
    await proxy.restore();
    expect(await eventually(() => ended.length > 0, 15_000)).toBe(true);
    expect(ended[0].code).toBe(ErrorCode.POSITION_TOO_OLD);
    expect(ended[0].message).toMatch(/^position 6 of meter_alerts partition 0 is older than the oldest row the server still holds \(36;/);
    expect(subscription.endError).toBe(ended[0]);
    await proxy.close();
  });

  it('stops delivering after unsubscribe', async () => {
    const server = await serve({ schema, partitions: 1 });
    const sdk = await client(server);
    const { got, onRow } = collector();
    const subscription: Subscription = await sdk.subscribe('meter_alerts', onRow);
    server.subscriptions.publish('meter_alerts', 0, 1, rowsFor(1, 1, 3));
    expect(await eventually(() => got.length >= 3)).toBe(true);
    await subscription.unsubscribe();
    expect(await eventually(() => server.subscriptions.size === 0)).toBe(true);
    server.subscriptions.publish('meter_alerts', 0, 4, rowsFor(1, 4, 3));
    await sdk.query('SELECT COUNT(*) FROM meters'); // a round trip: anything sent before it has arrived
    expect(got).toHaveLength(3);
  });

  it('refuses bad subscriptions by name and keeps the connection working', async () => {
    const server = await serve({ schema, partitions: 1 });
    const sdk = await client(server);
    const refusal = (promise: Promise<unknown>): Promise<SubscriptionError> =>
      promise.then(
        () => {
          throw new Error('expected a refusal');
        },
        (error: SubscriptionError) => error,
      );
    const unknown = await refusal(sdk.subscribe('meter_alert', () => undefined));
    expect([unknown.code, unknown.message]).toEqual([ErrorCode.UNKNOWN_TABLE, "cannot subscribe to meter_alert: no stream; did you mean 'meter_alerts'?"]);
    const table = await refusal(sdk.subscribe('meters', () => undefined));
    expect(table.message).toBe('cannot subscribe to meters: a table, not a stream');
    const column = await refusal(sdk.subscribe('meter_alerts', { where: { regoin: 'x' } }, () => undefined));
    expect([column.code, column.message]).toEqual([ErrorCode.UNKNOWN_COLUMN, "subscription filter names column regoin, which stream meter_alerts does not have; did you mean 'region'?"]);
    const value = await refusal(sdk.subscribe('meter_alerts', { where: { meter_id: 'seven' } }, () => undefined));
    expect(value.message).toMatch(/filter value for column meter_alerts\.meter_id/);
    const from = await refusal(sdk.subscribe('meter_alerts', { from: { 5: 1 } }, () => undefined));
    expect(from.message).toBe("subscription option 'from' names partition 5; the server has partitions 0…0");
    server.subscriptions.publish('meter_alerts', 0, 1, rowsFor(1, 1, 3));
    const ahead = await refusal(sdk.subscribe('meter_alerts', { from: { 0: 10 } }, () => undefined));
    expect(ahead.code).toBe(ErrorCode.POSITION_AHEAD);
    expect(await sdk.query('SELECT COUNT(*) FROM meters')).toMatchObject({ rows: [[0]] });
    expect(server.subscriptions.size).toBe(0);
  });

  it('closes a connection that sends a malformed SUBSCRIBE, and one of protocol version 1 that sends any', async () => {
    const server = await serve({ schema, partitions: 1 });
    const codec = createCodec();
    async function closeCodeAfter(version: number, frame: unknown[]): Promise<number> {
      const ws = new WebSocket(server.url);
      await new Promise((resolve) => ws.once('open', resolve));
      ws.send(codec.pack([FrameKind.HELLO, { versions: [version], client: 'test' }]));
      await new Promise((resolve) => ws.once('message', resolve));
      ws.send(codec.pack(frame));
      return new Promise((resolve) => ws.once('close', (code: number) => resolve(code)));
    }
    expect(await closeCodeAfter(2, [FrameKind.SUBSCRIBE, 'one', 'meter_alerts', {}])).toBe(4002);
    expect(await closeCodeAfter(1, [FrameKind.SUBSCRIBE, 1, 'meter_alerts', {}])).toBe(4002);
    const sdk = await client(server);
    expect(sdk.protocolVersion).toBe(protocolVersion);
  });
});

describe('subscription hub', () => {
  const catalog = applyDdl(readFileSync(schema, 'utf8').replace(/CREATE PROCEDURE.*$/gm, ''));

  function sink(buffered = 0): SubscriptionSink & { frames: unknown[][] } {
    const frames: unknown[][] = [];
    return { frames, sendFrame: (frame) => frames.push(frame), bufferedBytes: buffered };
  }

  it('cuts off a subscriber whose connection has too much unsent data, naming its position', () => {
    const hub = new SubscriptionHub({ catalog }, 1, { bufferedBytesMax: 1000 });
    const slow = sink(5000);
    hub.subscribe(slow, 1, 'meter_alerts');
    hub.publish('meter_alerts', 0, 1, rowsFor(1, 1, 2));
    expect(slow.frames).toEqual([[FrameKind.SUBSCRIPTION_ENDED, 1, ProtocolCode.SUBSCRIBER_TOO_SLOW, expect.stringMatching(/slower than they commit/), { partition: 0, wanted: 0 }]]);
    expect(hub.size).toBe(0);
  });

  it('keeps only the last retainRowsMax rows per partition and replays from any of them', async () => {
    const hub = new SubscriptionHub({ catalog }, 2, { retainRowsMax: 10 });
    hub.publish('meter_alerts', 0, 1, rowsFor(1, 1, 5));
    expect(hub.wants('meter_alerts')).toBe(false); // Nobody subscribed yet: nothing kept.
    hub.subscribe(sink(), 9, 'meter_alerts');
    for (let first = 1; first <= 100; first += 7) hub.publish('meter_alerts', 1, first, rowsFor(1, first, 7));
    const late = sink();
    const info = hub.subscribe(late, 1, 'meter_alerts', { from: { 1: 96 } });
    expect(info.position).toEqual({ 0: 0, 1: 96 });
    await Promise.resolve();
    expect(late.frames).toHaveLength(1);
    expect(late.frames[0].slice(0, 4)).toEqual([FrameKind.ROWS, 1, 1, 106]);
    expect(late.frames[0].filter((_, i) => i >= 4 && i % 2 === 0)).toEqual(range(96, 10));
    expect(() => hub.subscribe(sink(), 2, 'meter_alerts', { from: { 1: 95 } })).toThrow(/position 95 of meter_alerts partition 1 is older than the oldest row the server still holds \(96;/);
    // Kept since the first subscription: position 0 means from there, and there is where it starts.
    const fromStart = sink();
    expect(hub.subscribe(fromStart, 3, 'meter_alerts', { from: { 0: 0 } }).position).toEqual({ 0: 0, 1: 106 });
  });
});
