/**
 * Server-side deadlines, long-running transactions and multi-partition fragment timeouts, on a
 * real server with worker-thread partitions. A Spin call keeps one partition busy for about two
 * seconds; the tests check what happens to other calls meanwhile: a call that waits past its
 * deadline is answered TIMEOUT and never runs, the other partition keeps serving, the long
 * transaction is logged and counted, and a multi-partition transaction fails cleanly instead of
 * waiting forever, then works again once the partition is free, also after a restart (replay).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { connect, type Client } from '../client/index.ts';
import { partitionOf } from '../engine/execution/hash.ts';
import { startServer } from '../engine/server/server.ts';
import { FrameKind, Status, callTimeoutMsMax, createCodec } from '../engine/server/protocol.ts';
import type { BankApp } from './fixtures/server/app.ts';
import { capturedLogger, raw } from './security/helpers.ts';
import { bankSchema, client, openAccounts, rejection, serve } from './server-helpers.ts';

const codec = createCodec();
/** About two seconds of Spin on this machine (300M iterations took 1.7 s). */
const spinIterations = 350_000_000;
const folders: string[] = [];

afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

/** Account ids 1..10 grouped by partition (of 2): two on partition 0's side, one on the other. */
function accounts(): { busy: number; busyToo: number; free: number; busyPartition: number; freePartition: number } {
  const ids = Array.from({ length: 10 }, (_, i) => i + 1);
  const busy = ids[0];
  const busyPartition = partitionOf(busy, 2);
  const busyToo = ids.find((id) => id !== busy && partitionOf(id, 2) === busyPartition)!;
  const free = ids.find((id) => partitionOf(id, 2) !== busyPartition)!;
  return { busy, busyToo, free, busyPartition, freePartition: 1 - busyPartition };
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Starts Spin on `id`'s partition; resolves (with Spin's own promise) once @Statistics shows it running there. */
async function spinning(db: Client<BankApp>, id: number): Promise<{ done: Promise<number>; finished: () => boolean }> {
  let finished = false;
  const done = db.callWith({ timeoutMs: 120_000 }, 'Spin', id, spinIterations);
  void done.then(() => (finished = true));
  // Give the monitor a few samples to see it: a @Statistics before that would wait for the Spin.
  await new Promise((resolve) => setTimeout(resolve, 200));
  await waitFor(async () => {
    expect(finished, 'Spin ended before the test saw it running').toBe(false);
    return (await db.call('@Statistics')).partitions[partitionOf(id, 2)].running?.procedure === 'Spin';
  }, 'Spin to run');
  return { done, finished: () => finished };
}

/** A raw protocol-3 connection that collects RESULTS answers by call id. */
async function rawV3(url: string): Promise<{ ws: WebSocket; answers: Map<number, unknown[]>; closed: Promise<number> }> {
  const ws = await raw(url);
  const answers = new Map<number, unknown[]>();
  const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  const welcomed = new Promise<unknown[]>((resolve) => ws.once('message', (data: Buffer) => resolve(codec.unpack(data) as unknown[])));
  ws.send(codec.pack([FrameKind.HELLO, { versions: [1, 2, 3], client: 'test' }]));
  const welcome = await welcomed;
  expect(welcome[0]).toBe(FrameKind.WELCOME);
  expect((welcome[1] as { version: number }).version).toBe(3);
  ws.on('message', (data: Buffer) => {
    const frame = codec.unpack(data) as unknown[];
    if (frame[0] !== FrameKind.RESULTS) return;
    for (let i = 1; i < frame.length; i += 4) answers.set(frame[i] as number, [frame[i + 1], frame[i + 2], frame[i + 3]]);
  });
  return { ws, answers, closed };
}

async function touches(db: Client<BankApp>, id: number): Promise<number> {
  return (await db.query('SELECT touches FROM accounts WHERE id = ?', [id])).rows[0][0] as number;
}

describe('server-side deadlines', () => {
  it('answers a call that waited past its deadline with TIMEOUT and never runs it; the other partition keeps serving', async () => {
    const server = await serve();
    const db = await client(server);
    await openAccounts(db, 10, 100);
    const { busyToo, free } = accounts();
    const spin = await spinning(db, accounts().busy);
    const { ws, answers } = await rawV3(server.url);
    ws.send(codec.pack([FrameKind.CALLS, 1, 'Touch', [busyToo], 150, 2, 'Touch', [free], 150, 3, '@Ping', [], 0]));
    await waitFor(() => answers.has(1) && answers.has(2) && answers.has(3), 'three answers');
    expect(spin.finished(), 'the expired call was answered while its partition was still busy').toBe(false);
    const [status, payload] = answers.get(1)!;
    expect(status).toBe(Status.TIMEOUT);
    expect((payload as unknown[])[0]).toBe('DEADLINE_EXPIRED');
    expect((payload as unknown[])[1]).toContain('did not run');
    expect(answers.get(2)!.slice(0, 2)).toEqual([Status.SUCCESS, 100]);
    expect(answers.get(3)!.slice(0, 2)).toEqual([Status.SUCCESS, 0]);
    ws.close();
    await spin.done;
    // Let a turn pass after the Spin: a call that had been queued would have run by now.
    expect(await db.call('Touch', busyToo)).toBe(100);
    expect(await touches(db, busyToo)).toBe(1);
    expect(await touches(db, free)).toBe(1);
    const touch = (await db.call('@Statistics')).procedures.find((entry) => entry.procedure === 'Touch')!;
    expect(touch.expired).toBe(1);
  });

  it('the SDK sends its timeout: a call it gave up on is not run later', async () => {
    const server = await serve();
    const db = await client(server);
    await openAccounts(db, 10, 100);
    const { busy, busyToo } = accounts();
    const spin = await spinning(db, busy);
    const error = await rejection(db.callWith({ timeoutMs: 100 }, 'Touch', busyToo));
    expect(error.status).toBe('TIMEOUT');
    await spin.done;
    expect(await db.call('@Ping')).toBe(0);
    expect(await touches(db, busyToo)).toBe(0);
  });

  it('refuses negative, fractional, non-numeric and absurd timeouts with a clear error, and keeps the connection', async () => {
    const server = await serve();
    const { ws, answers } = await rawV3(server.url);
    const bad: unknown[] = [-5, 1.5, 'soon', callTimeoutMsMax + 1, null];
    const frame: unknown[] = [FrameKind.CALLS];
    bad.forEach((timeout, i) => frame.push(i + 1, '@Ping', [], timeout));
    frame.push(99, '@Ping', [], 0);
    ws.send(codec.pack(frame));
    await waitFor(() => answers.size === bad.length + 1, 'every answer');
    for (let i = 0; i < bad.length; i++) {
      const [status, payload] = answers.get(i + 1)!;
      const [code, message, details] = payload as [string, string, { path: unknown[] }];
      expect([status, code], String(bad[i])).toEqual([Status.FAILURE, 'BAD_CALL']);
      expect(message).toContain(`call ${i + 1} (@Ping): timeoutMs must be an integer number of milliseconds from 0 (no deadline) to ${callTimeoutMsMax}`);
      expect(details.path).toEqual(['timeoutMs']);
    }
    expect(answers.get(1)![1]).toEqual(expect.arrayContaining([expect.stringContaining('got -5')]));
    expect(answers.get(99)!.slice(0, 2)).toEqual([Status.SUCCESS, 0]);
    // Under version 3 a call is a quadruple: the version-2 triple shape no longer parses.
    const { ws: old, closed } = await rawV3(server.url);
    old.send(codec.pack([FrameKind.CALLS, 1, '@Ping', []]));
    expect(await closed).toBe(4002);
    ws.close();

    const db = await client(server);
    const negative = await rejection(db.callWith({ timeoutMs: -1 }, '@Ping'));
    expect([negative.status, negative.code]).toEqual(['FAILURE', 'BAD_CALL']);
    expect(negative.message).toContain('call @Ping: timeoutMs must be an integer');
    const zero = await rejection(db.query('SELECT 1', [], { timeoutMs: 0 }));
    expect(zero.message).toContain('at least 1 ms');
    await expect(connect(server.url, { timeoutMs: 1e12 })).rejects.toThrow(`connect: timeoutMs must be an integer number of milliseconds from 0 (no deadline) to ${callTimeoutMsMax}; got 1000000000000`);
    expect(await db.call('@Ping')).toBe(0);
  });

  it('parks calls beyond partitionCallsSentMax in the router and runs them all, in order', async () => {
    const server = await serve({ partitionCallsSentMax: 1 });
    const db = await client(server);
    await openAccounts(db, 2, 5);
    const results = await Promise.all(Array.from({ length: 200 }, () => db.call('Touch', 1)));
    expect(results).toEqual(new Array(200).fill(5));
    expect(await touches(db, 1)).toBe(200);
    // SQL sees the order: each call reads the count its predecessors left.
    const counts = await Promise.all(Array.from({ length: 50 }, () => db.query('UPDATE accounts SET touches = touches + 1 WHERE id = 2').then(() => db.query('SELECT touches FROM accounts WHERE id = 2'))));
    expect(counts.at(-1)!.rows).toEqual([[50]]);
  });

  it('refuses absurd deadline, long-running and fragment-timeout settings at start', async () => {
    await expect(serve({ longRunningMs: -1 })).rejects.toThrow('longRunningMs must be an integer from 20 to 86400000, got -1');
    await expect(serve({ fragmentTimeoutMs: 0 })).rejects.toThrow('fragmentTimeoutMs must be an integer from 100 to 86400000, got 0');
    await expect(serve({ partitionCallsSentMax: 1.5 })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    await expect(serve({ partitionYoungGenerationMb: 0 })).rejects.toThrow('partitionYoungGenerationMb must be an integer from 1 to 4096, got 0');
  });

  it('runs partitions with a small young generation', async () => {
    const server = await serve({ partitionYoungGenerationMb: 3 });
    const db = await client(server);
    await openAccounts(db, 2, 5);
    const results = await Promise.all(Array.from({ length: 2000 }, (_, i) => db.call('Touch', 1 + (i % 2))));
    expect(results.length).toBe(2000);
    expect((await touches(db, 1)) + (await touches(db, 2))).toBe(2000);
  });
});

describe('long-running transactions', () => {
  it('logs and counts a transaction past the threshold while the other partition keeps serving', async () => {
    const { logger, lines } = capturedLogger();
    const server = await serve({ longRunningMs: 200, logger });
    const db = await client(server);
    await openAccounts(db, 10, 100);
    const { busy, free, busyPartition, freePartition } = accounts();
    const spin = await spinning(db, busy);
    for (let i = 0; i < 20; i++) expect(await db.call('Touch', free)).toBe(100);
    expect(spin.finished(), 'the other partition answered while this one spun').toBe(false);
    const during = await db.call('@Statistics');
    expect(during.partitions[busyPartition].running).toMatchObject({ procedure: 'Spin' });
    expect(during.partitions[busyPartition].answered).toBe(false);
    expect(during.partitions[freePartition].answered).toBe(true);
    await waitFor(() => lines.some((line) => line.includes('long-running transaction:')), 'the warning');
    const warning = JSON.parse(lines.find((line) => line.includes('long-running transaction:'))!) as Record<string, unknown>;
    expect(warning).toMatchObject({ level: 40, procedure: 'Spin', partition: busyPartition, thresholdMs: 200 });
    expect(warning.transactionId).toEqual(expect.any(Number));
    expect(warning.elapsedMs as number).toBeGreaterThanOrEqual(200);
    await spin.done;
    const after = await db.call('@Statistics');
    const spinStats = after.procedures.find((entry) => entry.procedure === 'Spin')!;
    expect(spinStats.longRunning).toBe(1);
    expect(spinStats.longest_ms).toBeGreaterThanOrEqual(200);
    expect(after.procedures.find((entry) => entry.procedure === 'Touch')!.longRunning).toBe(0);
    expect(after.partitions[busyPartition].running).toBeNull();
    expect(after.partitions[busyPartition].answered).toBe(true);
  });
});

describe('multi-partition fragment timeout', () => {
  it('fails a multi-partition transaction whose partition does not answer, reports it, and works again after; replay agrees', async () => {
    const data = mkdtempSync(path.join(os.tmpdir(), 'sluice-deadlines-'));
    folders.push(data);
    const { logger, lines } = capturedLogger();
    const server = await startServer({ schema: bankSchema, partitions: 2, port: 0, host: '127.0.0.1', fragmentTimeoutMs: 300, logger, data });
    const db = await connect<BankApp>(server.url);
    try {
      await openAccounts(db, 10, 100);
      await fragmentTimeoutScenario(db, lines);
    } finally {
      await db.close();
      await server.close();
    }
    const restarted = await serve({ data });
    const again = await client(restarted);
    const { busy, free } = accounts();
    expect((await again.query('SELECT id, balance FROM accounts WHERE id IN (?, ?) ORDER BY id', [busy, free])).rows).toEqual(expectedBalances(busy, free));
    expect(await again.call('Total')).toEqual({ total: 1000, accounts: 10 });
  });
});

function expectedBalances(busy: number, free: number): number[][] {
  return [busy, free].sort((x, y) => x - y).map((id) => [id, id === busy ? 105 : 95]);
}

async function fragmentTimeoutScenario(db: Client<BankApp>, lines: string[]): Promise<void> {
    const { busy, free, busyPartition } = accounts();
    const spin = await spinning(db, busy);
    const timedOut = await rejection(db.call('Transfer', free, busy, 5));
    expect([timedOut.status, timedOut.code]).toEqual(['TIMEOUT', 'PARTITION_TIMEOUT']);
    expect(timedOut.message).toContain(`partition ${busyPartition} did not answer within 300 ms (it has been running Spin`);
    expect(timedOut.message).toContain('rolled back');
    // While the partition is still in the same transaction, the next one fails at once.
    const fast = await rejection(db.call('Transfer', free, busy, 5));
    expect(fast.code).toBe('PARTITION_TIMEOUT');
    expect(fast.message).toContain(`partition ${busyPartition} is still stuck`);
    expect(spin.finished()).toBe(false);
    expect(await db.call('Touch', free)).toBe(100);
    expect(lines.some((line) => line.includes(`stuck partition ${busyPartition}`))).toBe(true);
    await spin.done;
    // The late partition ran the stale fragment and rolled it back: nothing of either attempt stayed.
    expect(await db.call('Total')).toEqual({ total: 1000, accounts: 10 });
    expect(await db.call('Transfer', free, busy, 5)).toBe(95);
    const balances = (await db.query('SELECT id, balance FROM accounts WHERE id IN (?, ?) ORDER BY id', [busy, free])).rows;
    expect(balances).toEqual(expectedBalances(busy, free));
}
