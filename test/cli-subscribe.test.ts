/**
 * `sluice subscribe`: a stream's rows as JSON lines, filtered with --where, from a position, and
 * the position to resume from printed on exit; a refused subscription is one error line, exit 1.
 */
import { describe, expect, it } from 'vitest';
import { client, serve, sluice } from './server-helpers.ts';


const at = Date.UTC(2026, 10, 22, 8, 0, 0);

describe('sluice subscribe', () => {
  it('prints matching rows as JSON lines and the position to resume from', async () => {
    const server = await serve({ schema: 'test/fixtures/alerts/ddl.sql', partitions: 1 });
    // Rows are kept for later subscribers from a stream's first subscription on.
    await (await client(server)).subscribe('meter_alerts', () => undefined);
    server.subscriptions.publish('meter_alerts', 0, 1, [
      [1, 'north', 'a', at, new Uint8Array([1])],
      [2, 'south', 'b', at, null],
      [3, 'north', 'c', at, null],
      [4, 'east', 'd', at, null],
    ]);
    const result = await sluice('subscribe', '--url', server.url, 'meter_alerts', '--from', 'earliest', '--where', 'region=north', '--where', 'region=east', '--count', '3');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim().split('\n').map((line) => JSON.parse(line))).toEqual([
      { partition: 0, sequence: 1, row: { meter_id: 1, region: 'north', kind: 'a', at, raw: 'AQ==' } },
      { partition: 0, sequence: 3, row: { meter_id: 3, region: 'north', kind: 'c', at, raw: null } },
      { partition: 0, sequence: 4, row: { meter_id: 4, region: 'east', kind: 'd', at, raw: null } },
    ]);
    expect(result.stderr.trim()).toBe('position: {"0":5}');
    server.subscriptions.publish('meter_alerts', 0, 5, [[5, 'north', 'e', at, null]]);
    const resumed = await sluice('subscribe', '--url', server.url, 'meter_alerts', '--from', '{"0":5}', '--count', '1');
    expect(JSON.parse(resumed.stdout).sequence).toBe(5);
    const compared = await sluice('subscribe', '--url', server.url, 'meter_alerts', '--from', 'earliest', '--where', 'meter_id>1', '--where', 'meter_id<=4', '--where', 'region!=east', '--count', '2');
    expect(compared.code, compared.stderr).toBe(0);
    expect(compared.stdout.trim().split('\n').map((line) => JSON.parse(line).sequence)).toEqual([2, 3]);
  });

  it('reports a refused subscription as one line and exits 1', async () => {
    const server = await serve({ schema: 'test/fixtures/alerts/ddl.sql', partitions: 1 });
    const result = await sluice('subscribe', '--url', server.url, 'meter_alert', '--count', '1');
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe("error: UNKNOWN_TABLE cannot subscribe to meter_alert: no stream; did you mean 'meter_alerts'?");
    const where = await sluice('subscribe', '--url', server.url, 'meter_alerts', '--where', 'region');
    expect([where.code, where.stderr.trim()]).toEqual([1, 'error: --where takes column=value, or column!=, <, <=, >, >= value; got region']);
  });
});
