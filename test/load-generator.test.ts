/**
 * The shared load generator (bench/load-generator.ts) against a real server: it keeps at most
 * `window` calls outstanding, counts failures with the first message instead of stopping, sends
 * each call on the connection it names, ends when the workload is done, and offers a fixed rate.
 */
import { describe, expect, it } from 'vitest';
import { runLoad, type LoadCall, type Workload } from '../bench/load-generator.ts';
import { client, openAccounts, serve } from './server-helpers.ts';

describe('load generator', () => {
  it('runs a workload to its end within its window, counting failures without stopping', async () => {
    const server = await serve();
    const connections = [await client(server), await client(server)];
    await openAccounts(connections[0], 10, 100);
    const total = 3000;
    let issued = 0;
    let peakOutstanding = 0;
    let outstanding = 0;
    const answersByConnection: number[][] = [[], []];
    const workload: Workload = {
      next(): LoadCall | null {
        if (issued === total) return null;
        const n = issued++;
        const connection = n % 2;
        outstanding++;
        peakOutstanding = Math.max(peakOutstanding, outstanding);
        // Every 100th call names a parameter of the wrong type: a failure, not the end of the run.
        const id = n % 100 === 99 ? 'not a number' : 1 + (n % 10);
        return {
          connection,
          procedure: 'Touch',
          params: [id],
          done: () => {
            outstanding--;
            answersByConnection[connection].push(n);
          },
        };
      },
    };
    const result = await runLoad(workload, { clients: connections, window: 64, warmupSeconds: 0, seconds: 600, reportEverySeconds: 600, unit: 'calls', log: () => {} });
    expect(result.answered).toBe(total);
    expect(result.failed).toBe(30);
    expect(result.firstFailure).toMatch(/parameter 1 of Touch/);
    expect(peakOutstanding).toBeLessThanOrEqual(64);
    expect(answersByConnection.map((answers) => answers.length)).toEqual([total / 2, total / 2]);
    const [{ n }] = await connections[0].queryRows('SELECT SUM(touches) AS n FROM accounts');
    expect(n).toBe(total - 30);
  });

  it('offers a fixed rate and stops when asked', async () => {
    const server = await serve();
    const connection = await client(server);
    await openAccounts(connection, 4, 100);
    let asked = 0;
    const workload: Workload = {
      next: (stopping) => (stopping ? null : { connection: 0, procedure: 'Touch', params: [1 + (asked++ % 4)] }),
    };
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 300);
    const result = await runLoad(workload, { clients: [connection], window: 100, warmupSeconds: 0, seconds: 600, rate: 2000, reportEverySeconds: 600, unit: 'calls', signal: stop.signal, log: () => {} });
    expect(result.failed).toBe(0);
    expect(result.answered).toBe(asked);
    expect(result.answered).toBeGreaterThan(0);
    // A fixed rate never runs ahead of the clock: at most rate × elapsed calls (plus the tick's rounding).
    expect(result.answered).toBeLessThanOrEqual(Math.ceil(2000 * (result.elapsedSeconds + 0.01)) + 1);
  });
});
