/**
 * Every server limit answers with a clear status instead of a crash or unbounded memory: frame
 * size, calls per frame, outstanding calls per connection, connections, idle time, the handshake
 * deadline, procedure name length and rows per ad-hoc query. After each, a well-behaved client
 * still gets answers.
 */
import { describe, expect, it } from 'vitest';
import { connect } from '../../client/index.ts';
import { CloseCode, FrameKind, ProtocolCode, Status, frameCallsMax } from '../../engine/server/protocol.ts';
import { client, openAccounts, rejection, serve } from '../server-helpers.ts';
import { codec, raw, sendHello, untilClosed } from './helpers.ts';

describe('limits', () => {
  it('a message over frameBytesMax closes that connection (1009); others carry on', async () => {
    const server = await serve({ frameBytesMax: 4096 });
    const bystander = await client(server);
    const db = await client(server);
    const error = await rejection(db.query('SELECT ?', ['x'.repeat(10_000)]));
    expect(error.status).toBe('CONNECTION_LOST');
    expect(error.message).toContain('(1009');
    expect(await bystander.call('@Ping')).toBe(0);
  });

  it('a CALLS frame over frameCallsMax closes the connection (4003) with an ERROR frame', async () => {
    const server = await serve();
    const ws = await raw(server.url);
    await sendHello(ws, {});
    const closed = untilClosed(ws);
    const frame: unknown[] = [FrameKind.CALLS];
    for (let i = 0; i <= frameCallsMax; i++) frame.push(i, '@Ping', []);
    ws.send(codec.pack(frame));
    const { code, frames } = await closed;
    expect(code).toBe(CloseCode.FRAME_LIMIT);
    expect(frames.at(-1)).toEqual([FrameKind.ERROR, ProtocolCode.MALFORMED_FRAME, `a CALLS frame may carry at most ${frameCallsMax} calls; got ${frameCallsMax + 1}`]);
    expect(await (await client(server)).call('@Ping')).toBe(0);
  });

  it('calls beyond connectionCallsInFlightMax are answered SERVER_BUSY, not queued', async () => {
    const server = await serve({ connectionCallsInFlightMax: 3 });
    await openAccounts(await client(server), 1, 0);
    const ws = await raw(server.url);
    await sendHello(ws, {});
    const answers = new Map<number, unknown[]>();
    const all = new Promise<void>((resolve) => {
      ws.on('message', (data: Buffer) => {
        const frame = codec.unpack(data) as unknown[];
        for (let i = 1; i < frame.length; i += 4) answers.set(frame[i] as number, [frame[i + 1], frame[i + 2]]);
        if (answers.size === 10) resolve();
      });
    });
    const frame: unknown[] = [FrameKind.CALLS];
    for (let id = 0; id < 10; id++) frame.push(id, 'Spin', [1, 1000]);
    ws.send(codec.pack(frame));
    await all;
    const busy = [...answers.entries()].filter(([, [status]]) => status === Status.SERVER_BUSY);
    expect(busy.map(([id]) => id).sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect((busy[0][1][1] as unknown[])[0]).toBe(ProtocolCode.SERVER_BUSY);
    expect((busy[0][1][1] as unknown[])[1]).toBe('this connection has 3 calls outstanding (at most 3)');
    expect([0, 1, 2].map((id) => answers.get(id)![0])).toEqual([Status.SUCCESS, Status.SUCCESS, Status.SUCCESS]);
    ws.close();
  });

  it('connections beyond connectionsMax are refused with SERVER_BUSY (close 1013); a freed slot is reused', async () => {
    const server = await serve({ connectionsMax: 2 });
    const first = await client(server);
    const second = await connect(server.url);
    const refused = await rejection(connect(server.url));
    expect(refused).toMatchObject({ status: 'SERVER_BUSY', code: ProtocolCode.SERVER_BUSY });
    expect(refused.message).toBe('the server has 2 connections open (at most 2); try again later');
    const ws = await raw(server.url);
    expect((await untilClosed(ws)).code).toBe(CloseCode.TRY_AGAIN_LATER);
    await second.close();
    // The server forgets the closed connection when its close arrives: retry until it has.
    let third;
    for (let attempt = 0; attempt < 100 && third === undefined; attempt++) {
      third = await connect(server.url).catch(() => new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20)));
    }
    expect(third).toBeDefined();
    expect(await third!.call('@Ping')).toBe(0);
    await third!.close();
    expect(await first.call('@Ping')).toBe(0);
  });

  it('an idle connection is closed with IDLE_TIMEOUT (4005); a busy one is not', async () => {
    const server = await serve({ idleTimeoutMs: 150 });
    const idle = await raw(server.url);
    await sendHello(idle, {});
    const busy = await client(server);
    const closed = untilClosed(idle);
    let pings = 0;
    let done = false;
    const pinging = (async () => {
      while (!done) {
        expect(await busy.call('@Ping')).toBe(0);
        pings++;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const { code, frames } = await closed;
    // Keep the busy client going for a few more idle periods' worth of pings.
    const target = pings + 40;
    while (pings < target) await new Promise((resolve) => setTimeout(resolve, 10));
    done = true;
    await pinging;
    expect(code).toBe(CloseCode.IDLE_TIMEOUT);
    expect(frames.at(-1)).toEqual([FrameKind.ERROR, ProtocolCode.IDLE_TIMEOUT, 'the connection was idle for 150 ms (the server\'s idle timeout)']);
    expect(await busy.call('@Ping')).toBe(0);
  });

  it('a client that does not read its answers is closed (4006) once connectionBufferedBytesMax are waiting', async () => {
    const server = await serve({ connectionBufferedBytesMax: 1024 * 1024 });
    const bystander = await client(server);
    const answer = 'a'.repeat(64 * 1024);
    const ws = await raw(server.url);
    await sendHello(ws, {});
    const closed = untilClosed(ws);
    // Stop reading: answers pile up in the kernel's buffers, then in the server's.
    const socket = (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    // 64 KiB answers, 20 × 16 of them: far more than the kernel's buffers and the 1 MiB limit.
    for (let burst = 0; burst < 20; burst++) {
      const frame: unknown[] = [FrameKind.CALLS];
      for (let i = 0; i < 16; i++) frame.push(burst * 16 + i, '@AdHoc', ['SELECT ? AS x', [answer]]);
      ws.send(codec.pack(frame));
      // Each burst's answers go out before the next burst is judged.
      expect(await bystander.call('@Ping')).toBe(0);
    }
    socket.resume();
    const { code, frames } = await closed;
    expect(code).toBe(CloseCode.CLIENT_TOO_SLOW);
    const error = frames.at(-1)!;
    expect(error.slice(0, 2)).toEqual([FrameKind.ERROR, ProtocolCode.CLIENT_TOO_SLOW]);
    expect(error[2]).toMatch(/^the client left \d+ bytes of answers unread \(at most 1048576\)/);
    expect(await bystander.call('@Ping')).toBe(0);
  });

  it('a connection that never says HELLO is closed after helloTimeoutMs (4001)', async () => {
    const server = await serve({ helloTimeoutMs: 100 });
    const ws = await raw(server.url);
    const { code, frames } = await untilClosed(ws);
    expect(code).toBe(CloseCode.HANDSHAKE_EXPECTED);
    expect(frames.at(-1)?.[1]).toBe(ProtocolCode.HANDSHAKE_EXPECTED);
  });

  it('a procedure name over procedureNameLengthMax is a BAD_CALL; the connection stays', async () => {
    const server = await serve();
    const db = await client(server);
    const error = await rejection((db as unknown as { call(name: string): Promise<unknown> }).call('P'.repeat(300)));
    expect([error.status, error.code]).toEqual(['FAILURE', ProtocolCode.BAD_CALL]);
    expect(await db.call('@Ping')).toBe(0);
  });

  it('an ad-hoc query returning more than adhocRowsMax rows is answered RESULT_TOO_LARGE', async () => {
    const server = await serve({ adhocRowsMax: 5, partitions: 3 });
    const db = await client(server);
    await openAccounts(db, 12, 1);
    const all = await rejection(db.query('SELECT id FROM accounts'));
    expect([all.status, all.code]).toEqual(['FAILURE', ProtocolCode.RESULT_TOO_LARGE]);
    expect(all.message).toBe('the query returned 12 rows, more than the 5 an ad-hoc query may return; add a LIMIT or narrow the WHERE clause');
    expect((await db.query('SELECT id FROM accounts ORDER BY id LIMIT 5')).rows).toEqual([[1], [2], [3], [4], [5]]);
    expect((await db.query('SELECT COUNT(*) FROM accounts')).rows).toEqual([[12]]);
    // A write's answer is one row (the count), whatever it changed.
    expect((await db.query('UPDATE accounts SET balance = 2')).rows).toEqual([[12]]);
    // Procedures are not ad-hoc queries: their results are bounded by the frame size only.
    expect(await db.call('Total')).toEqual({ total: 24, accounts: 12 });
  });
});
