/**
 * The server end to end: real worker-thread partitions behind a real WebSocket endpoint, driven by
 * the client SDK (and by a raw socket for malformed input). Multi-partition correctness runs
 * transfers between accounts on different partitions while single-partition load runs.
 */
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { CloseCode, FrameKind, Status, createCodec } from '../engine/server/protocol.ts';
import { partitionOf } from '../engine/execution/hash.ts';
import type { Client } from '../client/index.ts';
import { client, openAccounts, rejection, serve } from './server-helpers.ts';

describe('server round trip', () => {
  it('runs single-partition, multi-partition, ad-hoc and system calls', async () => {
    const server = await serve();
    const db = await client(server);
    expect(db.partitions).toBe(2);
    await openAccounts(db, 10, 100);
    expect(await db.call('Touch', 3)).toBe(100);
    expect(await db.call('Transfer', 1, 2, 30)).toBe(70);
    expect(await db.call('Total')).toEqual({ total: 1000, accounts: 10 });
    const keyed = await db.query('SELECT id, balance FROM accounts WHERE id = ?', [2]);
    expect(keyed.rows).toEqual([[2, 130]]);
    const all = await db.query('SELECT id FROM accounts WHERE balance = ? ORDER BY id DESC LIMIT 3', [100]);
    expect(all.rows).toEqual([[10], [9], [8]]);
    const response = await db.invoke('Touch', [4]);
    expect(response.result).toBe(100);
    expect(response.timestamp).toBeGreaterThan(1_600_000_000_000);
    expect(await db.call('@Ping')).toBe(0);
    const info = await db.call('@SystemInformation');
    expect(info.partitions).toBe(2);
    expect(info.schema).toContain('CREATE TABLE accounts');
    const stats = await db.call('@Statistics');
    const touch = stats.procedures.find((entry) => entry.procedure === 'Touch')!;
    expect(touch.calls).toBe(2);
    expect(stats.partitions.map((entry) => entry.partition)).toEqual([0, 1]);
    expect(stats.tables.find((entry) => entry.table === 'accounts')!.rows).toBe(10);
  });

  it('serves several connections at once', async () => {
    const server = await serve();
    const connections = await Promise.all([client(server), client(server), client(server)]);
    await openAccounts(connections[0], 30, 0);
    const touches = connections.flatMap((connection) => Array.from({ length: 30 }, (_, i) => connection.call('Touch', i + 1)));
    expect(await Promise.all(touches)).toEqual(new Array(90).fill(0));
    const rows = await connections[1].query('SELECT SUM(touches) FROM accounts');
    expect(rows.rows[0][0]).toBe(90);
  });

  it('routes ad-hoc inserts and replicated writes', async () => {
    const server = await serve({ partitions: 3 });
    const db = await client(server);
    await db.query('INSERT INTO accounts (id, balance, touches) VALUES (1, 5, 0), (2, 6, 0), (3, 7, 0), (4, 8, 0)');
    await db.call('AddBranch', 1, 'north');
    const rows = await db.query('SELECT a.id, b.name FROM accounts a, branches b ORDER BY a.id');
    expect(rows.rows).toEqual([[1, 'north'], [2, 'north'], [3, 'north'], [4, 'north']]);
    const updated = await db.query('UPDATE accounts SET balance = balance * 2');
    expect(updated.rows).toEqual([[4]]);
    expect((await db.query('SELECT SUM(balance) FROM accounts')).rows).toEqual([[52]]);
  });
});

describe('multi-partition correctness', () => {
  it('keeps the total constant under concurrent transfers and single-partition load; no read sees a partial transfer', async () => {
    const server = await serve({ partitions: 4 });
    const [a, b, c] = await Promise.all([client(server), client(server), client(server)]);
    const accounts = 40;
    await openAccounts(a, accounts, 1000);
    // Pick pairs on different partitions so every transfer is a real two-partition write.
    const pairs: [number, number][] = [];
    for (let from = 1; from <= accounts; from++) {
      for (let to = 1; to <= accounts; to++) if (partitionOf(from, 4) !== partitionOf(to, 4)) pairs.push([from, to]);
    }
    const transfers: Promise<unknown>[] = [];
    const totals: Promise<{ total: number; accounts: number }>[] = [];
    const touches: Promise<unknown>[] = [];
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 400; i++) {
      const [from, to] = pairs[random(pairs.length)];
      // Some transfers are too large and abort: they must leave nothing behind.
      transfers.push(a.call('Transfer', from, to, random(1500)).catch((error: { status: string }) => error.status));
      touches.push(b.call('Touch', 1 + random(accounts)));
      if (i % 20 === 0) totals.push(c.call('Total'));
    }
    const outcomes = await Promise.all(transfers);
    await Promise.all(touches);
    for (const total of await Promise.all(totals)) expect(total).toEqual({ total: accounts * 1000, accounts });
    expect(outcomes.filter((outcome) => outcome === 'USER_ABORT').length).toBeGreaterThan(0);
    expect(outcomes.filter((outcome) => typeof outcome === 'number').length).toBeGreaterThan(0);
    const final = await c.query('SELECT SUM(balance), SUM(touches), MIN(balance) FROM accounts');
    expect(final.rows[0]).toEqual([accounts * 1000, 400, final.rows[0][2]]);
    expect(final.rows[0][2] as number).toBeGreaterThanOrEqual(0);
  });

  it('an aborted multi-partition transaction leaves nothing on any partition', async () => {
    const server = await serve({ partitions: 4 });
    const db = await client(server);
    await openAccounts(db, 8, 50);
    const before = await db.query('SELECT id, balance, touches FROM accounts ORDER BY id');
    const error = await rejection(db.call('TransferThenAbort', 1, 2, 10));
    expect(error.status).toBe('USER_ABORT');
    expect(error.message).toContain('changed my mind');
    expect((await db.query('SELECT id, balance, touches FROM accounts ORDER BY id')).rows).toEqual(before.rows);
    // The replicated insert was rolled back on every partition: each copy is empty.
    for (let id = 1; id <= 8; id++) {
      expect((await db.query('SELECT COUNT(*) FROM accounts a, branches b WHERE a.id = ?', [id])).rows).toEqual([[0]]);
    }
    const violation = await rejection(db.query('INSERT INTO accounts (id, balance, touches) VALUES (100, 1, 0), (101, 1, 0), (1, 1, 0)'));
    expect(violation.status).toBe('CONSTRAINT_VIOLATION');
    expect((await db.query('SELECT COUNT(*) FROM accounts')).rows).toEqual([[8]]);
  });
});

describe('bad input, and the server stays up', () => {
  const codec = createCodec();

  function raw(url: string): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  }
  function closed(ws: WebSocket): Promise<{ code: number; frames: unknown[][] }> {
    const frames: unknown[][] = [];
    ws.on('message', (data: Buffer) => frames.push(codec.unpack(data) as unknown[]));
    return new Promise((resolve) => ws.once('close', (code) => resolve({ code, frames })));
  }
  async function hello(ws: WebSocket): Promise<void> {
    const welcomed = new Promise<unknown[]>((resolve) => ws.once('message', (data: Buffer) => resolve(codec.unpack(data) as unknown[])));
    ws.send(codec.pack([FrameKind.HELLO, { versions: [1] }]));
    expect((await welcomed)[0]).toBe(FrameKind.WELCOME);
  }

  it('closes connections that send malformed, text, oversized or out-of-order frames', async () => {
    const server = await serve({ frameBytesMax: 4096 });
    const cases: [string, (ws: WebSocket) => Promise<void>, number][] = [
      ['undecodable bytes', async (ws) => { await hello(ws); ws.send(Buffer.from([0xc1, 0xc1, 0xc1])); }, CloseCode.MALFORMED_FRAME],
      ['not an array', async (ws) => { await hello(ws); ws.send(codec.pack({ calls: 1 })); }, CloseCode.MALFORMED_FRAME],
      ['text message', async (ws) => { await hello(ws); ws.send('hello'); }, CloseCode.MALFORMED_FRAME],
      ['broken triples', async (ws) => { await hello(ws); ws.send(codec.pack([FrameKind.CALLS, 1, 'Touch'])); }, CloseCode.MALFORMED_FRAME],
      ['oversized frame', async (ws) => { await hello(ws); ws.send(Buffer.alloc(10_000)); }, CloseCode.MESSAGE_TOO_BIG],
      ['calls before hello', async (ws) => { ws.send(codec.pack([FrameKind.CALLS, 1, '@Ping', []])); }, CloseCode.HANDSHAKE_EXPECTED],
      ['unknown version', async (ws) => { ws.send(codec.pack([FrameKind.HELLO, { versions: [99] }])); }, CloseCode.UNSUPPORTED_VERSION],
    ];
    for (const [label, act, expected] of cases) {
      const ws = await raw(server.url);
      const outcome = closed(ws);
      await act(ws);
      const { code, frames } = await outcome;
      expect(code, label).toBe(expected);
      if (expected !== CloseCode.MESSAGE_TOO_BIG) expect(frames.at(-1)?.[0], label).toBe(FrameKind.ERROR);
    }
    const db = await client(server);
    expect(await db.call('@Ping')).toBe(0);
  });

  it('answers bad calls with clear errors', async () => {
    const server = await serve();
    const db = await client(server);
    await openAccounts(db, 2, 10);
    const loose = db as unknown as Client;
    const unknown = await rejection(loose.call('Tuch'));
    expect([unknown.status, unknown.code]).toEqual(['FAILURE', 'UNKNOWN_PROCEDURE']);
    expect(unknown.message).toContain("did you mean 'Touch'");
    const type = await rejection(loose.call('Touch', 'one'));
    expect([type.status, type.code]).toEqual(['FAILURE', 'PARAM_TYPE']);
    const count = await rejection(loose.call('Transfer', 1, 2));
    expect([count.status, count.code]).toEqual(['FAILURE', 'PARAM_COUNT']);
    const boom = await rejection(db.call('Boom', 1));
    expect([boom.status, boom.code]).toEqual(['UNEXPECTED_FAILURE', 'PROCEDURE_FAILED']);
    expect((await db.query('SELECT touches FROM accounts WHERE id = 1')).rows).toEqual([[0]]);
    const syntax = await rejection(db.query('SELEC 1'));
    expect(syntax.status).toBe('FAILURE');
    expect(syntax.code).toBe('SYNTAX');
    // A bad call inside a good frame gets its own answer; the connection stays open.
    const ws = await raw(server.url);
    await hello(ws);
    const answer = new Promise<unknown[]>((resolve) => ws.once('message', (data: Buffer) => resolve(codec.unpack(data) as unknown[])));
    ws.send(codec.pack([FrameKind.CALLS, 7, 42, [], 8, '@Ping', []]));
    const frame = await answer;
    expect(frame[0]).toBe(FrameKind.RESULTS);
    expect([frame[1], frame[2], (frame[3] as unknown[])[0]]).toEqual([7, Status.FAILURE, 'BAD_CALL']);
    expect([frame[5], frame[6], frame[7]]).toEqual([8, Status.SUCCESS, 0]);
    ws.close();
    expect(await db.call('Touch', 2)).toBe(10);
  });

  it('survives a client that disconnects with calls in flight', async () => {
    const server = await serve();
    const setup = await client(server);
    await openAccounts(setup, 4, 1);
    const ws = await raw(server.url);
    await hello(ws);
    const frame: unknown[] = [FrameKind.CALLS];
    for (let i = 0; i < 500; i++) frame.push(i, 'Spin', [i, 20_000]);
    ws.send(codec.pack(frame));
    ws.terminate();
    const db = await client(server);
    expect(await db.call('Touch', 1)).toBe(1);
    const stats = await db.call('@Statistics');
    expect(stats.procedures.find((entry) => entry.procedure === 'Spin')?.calls).toBe(500);
  });
});
