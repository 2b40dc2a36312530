/**
 * The client SDK against a real server: backpressure (calls wait, none dropped), per-call
 * timeouts, SERVER_BUSY from the server's connection limit, and calls in flight when the
 * connection drops (CONNECTION_LOST), then a reconnect.
 */
import { describe, expect, it } from 'vitest';
import { connect } from '../client/index.ts';
import { startServer } from '../engine/server/server.ts';
import type { BankApp } from './fixtures/server/app.ts';
import { bankSchema, client, openAccounts, rejection, serve } from './server-helpers.ts';

describe('client SDK', () => {
  it('holds calls beyond callsInFlightMax until answers make room, and drops none', async () => {
    const server = await serve();
    const db = await client(server, { callsInFlightMax: 5 });
    await openAccounts(db, 10, 7);
    let peak = 0;
    const calls: Promise<number>[] = [];
    for (let i = 0; i < 300; i++) {
      calls.push(db.call('Touch', 1 + (i % 10)));
      peak = Math.max(peak, db.callsInFlight);
    }
    expect(db.outstanding).toBe(300);
    const sampler = setInterval(() => (peak = Math.max(peak, db.callsInFlight)), 1);
    const results = await Promise.all(calls);
    clearInterval(sampler);
    expect(results).toEqual(new Array(300).fill(7));
    expect(peak).toBeLessThanOrEqual(5);
    expect((await db.query('SELECT SUM(touches) FROM accounts')).rows).toEqual([[300]]);
  });

  it('times a call out with TIMEOUT, and keeps working', async () => {
    const server = await serve();
    const db = await client(server);
    const error = await rejection(db.callWith({ timeoutMs: 20 }, 'Spin', 1, 300_000_000));
    expect(error.status).toBe('TIMEOUT');
    expect(error.message).toContain('within 20 ms');
    expect(await db.call('@Ping')).toBe(0);
  });

  it('gets SERVER_BUSY beyond the server\'s per-connection limit', async () => {
    const server = await serve({ connectionCallsInFlightMax: 3 });
    const db = await client(server, { callsInFlightMax: 50 });
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, i) => db.call('Spin', i, 100_000).then(() => 'ok', (error: { status: string }) => error.status)),
    );
    expect(outcomes.filter((outcome) => outcome === 'SERVER_BUSY').length).toBeGreaterThan(0);
    expect(outcomes.filter((outcome) => outcome === 'ok').length).toBeGreaterThanOrEqual(3);
    expect(outcomes.every((outcome) => outcome === 'ok' || outcome === 'SERVER_BUSY')).toBe(true);
  });

  it('fails calls in flight with CONNECTION_LOST when the server goes, then reconnects', async () => {
    const first = await startServer({ schema: bankSchema, partitions: 2, port: 0, host: '127.0.0.1' });
    const port = first.port;
    const db = await connect<BankApp>(first.url, { reconnect: true });
    try {
      const inFlight = rejection(db.call('Spin', 1, 200_000_000));
      await new Promise((resolve) => setTimeout(resolve, 50));
      await first.close();
      const error = await inFlight;
      expect(error.status).toMatch(/CONNECTION_LOST|UNEXPECTED_FAILURE/);
      const second = await serve({ port });
      expect(second.port).toBe(port);
      // Sent while reconnecting: waits for the new connection instead of failing.
      expect(await db.callWith({ timeoutMs: 10_000 }, '@Ping')).toBe(0);
    } finally {
      await db.close();
    }
    await expect(db.call('@Ping')).rejects.toMatchObject({ status: 'CONNECTION_LOST' });
  });
});
