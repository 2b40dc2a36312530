/**
 * Stream subscriptions driven by real transactions: rows inserted into a stream by procedures on
 * the partition workers reach subscribers only when their transaction commits (an aborted one
 * sends nothing), through the router's committed-row transport that also feeds the export
 * pipeline; a subscriber that reconnects mid-stream receives every committed row exactly once.
 */
import { describe, expect, it } from 'vitest';
import type { RowPosition, StreamRow } from '../client/index.ts';
import { SluiceClientError } from '../client/index.ts';
import { eventually, startTcpProxy } from './exporters/helpers.ts';
import type raiseAlert from './fixtures/alerts/raise-alert.ts';
import { client, serve } from './server-helpers.ts';

const schema = 'test/fixtures/alerts/ddl.sql';

type AlertsApp = { RaiseAlert: typeof raiseAlert };

describe('subscriptions fed by committed transactions', () => {
  it('sends the rows of committed transactions and nothing of aborted ones', async () => {
    const server = await serve({ schema, partitions: 2 });
    const sdk = await client<AlertsApp>(server);
    const got: { row: StreamRow; at: RowPosition }[] = [];
    await sdk.subscribe('meter_alerts', (row, at) => got.push({ row, at }));
    const outcomes = await Promise.allSettled([
      sdk.call('RaiseAlert', 1, 'north', 'overload'),
      sdk.call('RaiseAlert', 2, 'south', 'abort'),
      sdk.call('RaiseAlert', 3, 'north', 'outage'),
      sdk.call('RaiseAlert', 4, 'south', 'abort'),
      sdk.call('RaiseAlert', 5, 'east', 'tamper'),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(SluiceClientError);
    expect(await eventually(() => got.length >= 3)).toBe(true);
    // One more committed call after the aborts: once its row is here, an aborted row would be too.
    await sdk.call('RaiseAlert', 6, 'west', 'last');
    expect(await eventually(() => got.length >= 4)).toBe(true);
    expect(got.map((g) => g.row.kind).sort()).toEqual(['last', 'outage', 'overload', 'tamper']);
    expect(got.every((g) => g.row.kind !== 'abort')).toBe(true);
    const first = got.find((g) => g.row.meter_id === 1)!;
    expect(first.row).toMatchObject({ meter_id: 1, region: 'north', kind: 'overload', raw: Buffer.from([1, 2, 3]) });
    expect(typeof first.row.at).toBe('number');
    // Sequences are dense per partition: aborted rows left no holes.
    for (const partition of [0, 1]) {
      const sequences = got.filter((g) => g.at.partition === partition).map((g) => g.at.sequence);
      expect(sequences).toEqual(sequences.map((_, i) => sequences[0] + i));
    }
  });

  it('filters by where, and a reconnecting subscriber gets every committed row exactly once', async () => {
    const server = await serve({ schema, partitions: 2 });
    const proxy = await startTcpProxy('127.0.0.1', server.port);
    const caller = await client<AlertsApp>(server);
    const watcher = await client({ url: `ws://127.0.0.1:${proxy.port}` }, { reconnect: true });
    const north: number[] = [];
    await watcher.subscribe('meter_alerts', { where: { region: 'north' } }, (row) => north.push(row.meter_id as number));
    const raise = async (from: number, count: number): Promise<void> => {
      await Promise.all(Array.from({ length: count }, (_, i) => caller.call('RaiseAlert', from + i, (from + i) % 2 === 0 ? 'north' : 'south', 'k')));
    };
    await raise(1, 40);
    expect(await eventually(() => north.length >= 20)).toBe(true);
    await proxy.cut();
    expect(await eventually(() => server.subscriptions.size === 0)).toBe(true);
    await raise(41, 40);
    await proxy.restore();
    await raise(81, 40);
    expect(await eventually(() => north.length >= 60, 15_000), `got ${north.length} of 60`).toBe(true);
    await caller.call('RaiseAlert', 1000, 'north', 'last');
    expect(await eventually(() => north.includes(1000))).toBe(true);
    const expected = Array.from({ length: 60 }, (_, i) => 2 * (i + 1));
    expect(north.filter((id) => id !== 1000).sort((a, b) => a - b)).toEqual(expected);
    await proxy.close();
  });
});
