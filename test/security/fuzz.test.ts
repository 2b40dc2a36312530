/**
 * Protocol fuzzing against a running server: 10,000 random and mutated msgpack frames —
 * truncated, with huge claimed lengths, wrong types, unknown fields and kinds, random bytes,
 * text — from several connections at once, before and after the handshake. For every frame the
 * server must either answer (a RESULTS frame for the sentinel call that follows it) or close that
 * connection; meanwhile a second, well-behaved client keeps calling, and every one of its calls
 * must succeed. Seeded, so a failure reproduces.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { seededRandom } from '../../engine/random.ts';
import { FrameKind } from '../../engine/server/protocol.ts';
import type { SluiceServer } from '../../engine/server/server.ts';
import { client, openAccounts, serve } from '../server-helpers.ts';
import { codec, raw, serveSecure } from './helpers.ts';

/** Hostile frames per run; SLUICE_FUZZ_FRAMES raises it for a longer soak. */
const framesTotal = Number(process.env.SLUICE_FUZZ_FRAMES ?? 10_000);
/** Frames for the second, secured server: handshakes with logins are the costly part. */
const securedFramesTotal = 600;
const fuzzConnections = 6;
const accounts = 20;
/** Longest the server may take to answer or close after a fuzz frame before the test calls it hung. */
const answerWaitMs = 10_000;
const sentinelId = 2 ** 40;

/** The bank fixture plus a stream, so subscription frames reach real streams. */
const fuzzSchema = `${readFileSync('test/fixtures/server/bank.sql', 'utf8')}
CREATE STREAM audit PARTITION ON COLUMN id (id BIGINT NOT NULL, note VARCHAR(20));
`;

type Random = () => number;

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

function randomBytes(random: Random, lengthMax: number): Buffer {
  const bytes = Buffer.alloc(Math.floor(random() * lengthMax));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

/** A value of any msgpack type, nested a little. */
function randomValue(random: Random, depth = 0): unknown {
  const choice = Math.floor(random() * (depth > 2 ? 9 : 12));
  switch (choice) {
    case 0: return null;
    case 1: return random() < 0.5;
    case 2: return Math.floor(random() * 2 ** 31) * (random() < 0.5 ? -1 : 1);
    case 3: return pick(random, [0, -1, 2 ** 53, -(2 ** 53), 2 ** 64, 1.5, Number.NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER]);
    case 4: return randomBytes(random, 16).toString('latin1');
    case 5: return pick(random, ['', 'Touch', '@AdHoc', '@Ping', '__proto__', 'constructor', 'x'.repeat(300), '\u0000', '😀']);
    case 6: return randomBytes(random, 32);
    case 7: return random() * 1e6;
    case 8: return BigInt(Math.floor(random() * 2 ** 53)) * 512n; // int64 beyond 2^53
    case 9: return Array.from({ length: Math.floor(random() * 4) }, () => randomValue(random, depth + 1));
    case 10: return Object.fromEntries(Array.from({ length: Math.floor(random() * 3) }, () => [pick(random, ['a', 'versions', '__proto__', 'user', 'password', 'constructor']), randomValue(random, depth + 1)]));
    default: return { versions: [randomValue(random, depth + 1)], extra: randomValue(random, depth + 1) };
  }
}

const sqlTexts = [
  'SELECT COUNT(*) FROM accounts',
  'SELECT balance FROM accounts WHERE id = ?',
  'SELECT * FROM accounts ORDER BY id LIMIT 3',
  'UPDATE accounts SET touches = touches + 1 WHERE id = ?',
  'SELEC 1',
  'SELECT ? + ?',
  'DELETE FROM nowhere',
  "SELECT 'x' || ?",
  'EXPLAIN SELECT * FROM accounts',
  'INSERT INTO branches (id, name) VALUES (?, ?)',
];

/** A CALLS frame of plausible calls with implausible details. */
function callsFrame(random: Random): unknown[] {
  const frame: unknown[] = [FrameKind.CALLS];
  const count = 1 + Math.floor(random() * 4);
  for (let i = 0; i < count; i++) {
    const id = random() < 0.9 ? Math.floor(random() * 1e9) : randomValue(random);
    const name = pick(random, ['Touch', 'OpenAccount', 'Total', 'AddBranch', '@Ping', '@AdHoc', '@SystemInformation', '@Nope', 'Nope', '', 'touch']);
    let params: unknown;
    if (name === '@AdHoc' && random() < 0.8) params = [pick(random, sqlTexts), Array.from({ length: Math.floor(random() * 3) }, () => (random() < 0.5 ? 1 + Math.floor(random() * accounts) : randomValue(random)))];
    else if (name === 'Touch' && random() < 0.5) params = [1 + Math.floor(random() * accounts)];
    else params = random() < 0.8 ? Array.from({ length: Math.floor(random() * 4) }, () => randomValue(random)) : randomValue(random);
    frame.push(id, name, params);
  }
  return frame;
}

/** Headers that claim far more data than follows. */
const hugeLengths = [
  [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4 billion
  [0xdf, 0xff, 0xff, 0xff, 0xff], // map32
  [0xdb, 0xff, 0xff, 0xff, 0xf0], // str32
  [0xc6, 0x7f, 0xff, 0xff, 0xff], // bin32
  [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32
  [0x93, 0x03, 0xdd, 0xff, 0xff, 0xff, 0xff], // [CALLS, <array32 of 4 billion>…
  [0x94, 0x03, 0x01, 0xdb, 0x7f, 0xff, 0xff, 0xff, 0x41], // [CALLS, 1, <str32 of 2 GB>…
];

/** One hostile frame: random bytes, a mutated good frame, a huge length, a wrong shape, or text. */
function fuzzFrame(random: Random): Buffer | string {
  const kind = Math.floor(random() * 12);
  switch (kind) {
    case 0:
      return randomBytes(random, 64);
    case 1:
    case 2: {
      // A good frame, bytes flipped.
      const bytes = Buffer.from(codec.pack(callsFrame(random)));
      const flips = 1 + Math.floor(random() * 4);
      for (let i = 0; i < flips && bytes.length > 0; i++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      return bytes;
    }
    case 3: {
      // A good frame, cut short.
      const bytes = codec.pack(callsFrame(random));
      return bytes.subarray(0, Math.floor(random() * bytes.length));
    }
    case 4:
      return Buffer.from([...pick(random, hugeLengths), ...randomBytes(random, 8)]);
    case 5:
      // Wrong types and unknown kinds and fields.
      return codec.pack(pick(random, [
        [FrameKind.CALLS, randomValue(random), randomValue(random), randomValue(random)],
        [pick(random, [0, 2, 4, 5, 6, 99, -1, 'CALLS', null]), randomValue(random)],
        [FrameKind.HELLO, randomValue(random)],
        [],
        randomValue(random),
        [FrameKind.CALLS, 1, '@Ping', [], 2],
        [FrameKind.CALLS, 1, '@Ping', [], { unknown: 'field' }, 'x', 3],
      ]));
    case 6:
      return random() < 0.5 ? 'hello in text' : randomBytes(random, 32).toString('latin1');
    case 10:
    case 11: {
      // Subscriptions (protocol version 2): odd streams, filters and positions.
      const id = random() < 0.8 ? Math.floor(random() * 100) : randomValue(random);
      if (random() < 0.3) return codec.pack([FrameKind.UNSUBSCRIBE, id]);
      const stream = pick(random, ['audit', 'AUDIT', 'accounts', 'nope', '', randomValue(random)]);
      const options = pick(random, [undefined, {}, { where: { id: 1 } }, { where: { note: 'x', id: [1, 2] } }, { where: { nope: 1 } }, { where: randomValue(random) }, { from: { 0: 5, 1: 2 ** 60 } }, { from: randomValue(random) }, randomValue(random)]);
      return codec.pack([FrameKind.SUBSCRIBE, id, stream, options]);
    }
    default:
      // Plausible calls with wrong parameters: answered one by one, the connection stays.
      return codec.pack(callsFrame(random));
  }
}

/** A handshake to fuzz: a good HELLO sometimes, a broken one mostly. */
function fuzzHello(random: Random, credentials: Record<string, unknown>): Buffer | string {
  if (random() < 0.3) return codec.pack([FrameKind.HELLO, { versions: random() < 0.5 ? [1, 2] : [1], ...credentials }]);
  if (random() < 0.5) return codec.pack([FrameKind.HELLO, { versions: random() < 0.5 ? [1] : randomValue(random), user: randomValue(random), password: randomValue(random), extra: randomValue(random) }]);
  return fuzzFrame(random);
}

class FuzzConnection {
  private ws: WebSocket | undefined;
  private handshaken = false;
  private waiter: ((outcome: 'answered' | 'closed') => void) | undefined;
  closes = 0;
  answers = 0;
  private readonly url: string;
  private readonly credentials: Record<string, unknown>;

  constructor(url: string, credentials: Record<string, unknown>) {
    this.url = url;
    this.credentials = credentials;
  }

  private async open(): Promise<WebSocket> {
    const ws = await raw(this.url);
    this.ws = ws;
    this.handshaken = false;
    ws.on('message', (data: Buffer) => {
      let frame: unknown[];
      try {
        frame = codec.unpack(data) as unknown[];
      } catch {
        throw new Error('the server sent a frame that is not msgpack');
      }
      if (frame[0] === FrameKind.WELCOME) {
        this.handshaken = true;
        this.settle('answered');
      } else if (frame[0] === FrameKind.RESULTS) {
        for (let i = 1; i < frame.length; i += 4) if (frame[i] === sentinelId) this.settle('answered');
      }
    });
    ws.on('close', () => {
      if (this.ws === ws) this.ws = undefined;
      this.settle('closed');
    });
    ws.on('error', () => {});
    return ws;
  }

  private settle(outcome: 'answered' | 'closed'): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.(outcome);
  }

  private wait(what: string): Promise<'answered' | 'closed'> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server neither answered nor closed within ${answerWaitMs} ms after ${what}`)), answerWaitMs);
      this.waiter = (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      };
    });
  }

  /** Sends one hostile frame; resolves once the server has answered past it or closed the connection. */
  async send(random: Random): Promise<void> {
    let ws = this.ws;
    const fresh = ws === undefined || random() < 0.1;
    if (fresh) {
      ws?.terminate();
      ws = await this.open();
      // Fuzz the handshake itself.
      const hello = fuzzHello(random, this.credentials);
      const settled = this.wait('a HELLO');
      ws.send(hello);
      const outcome = await settled;
      if (outcome === 'closed') this.closes++;
      else this.answers++;
      return;
    }
    const frame = fuzzFrame(random);
    const settled = this.wait('a frame');
    ws!.send(frame);
    // The sentinel: once it is answered, the server has dealt with the frame before it.
    if (ws!.readyState === ws!.OPEN) ws!.send(codec.pack([FrameKind.CALLS, sentinelId, '@Ping', []]));
    const outcome = await settled;
    if (outcome === 'closed') this.closes++;
    else this.answers++;
  }

  close(): void {
    this.ws?.terminate();
  }
}

async function fuzz(server: SluiceServer, frames: number, credentials: Record<string, unknown>, seed: number): Promise<{ answers: number; closes: number; wellBehavedCalls: number; wellBehavedFailures: string[] }> {
  const good = await client(server, credentials);
  // The well-behaved client: single-partition calls, reads and pings, all the while.
  let done = false;
  let wellBehavedCalls = 0;
  const wellBehavedFailures: string[] = [];
  const wellBehaved = (async () => {
    for (let i = 0; !done; i++) {
      const id = 1 + (i % accounts);
      try {
        const [balance, rows, ping] = await Promise.all([good.call('Touch', id), good.query('SELECT balance FROM accounts WHERE id = ?', [id]), good.call('@Ping')]);
        if (balance !== 100 || rows.rows[0]?.[0] !== 100 || ping !== 0) wellBehavedFailures.push(`wrong answer ${JSON.stringify([balance, rows.rows, ping])}`);
        wellBehavedCalls += 3;
      } catch (error) {
        wellBehavedFailures.push((error as Error).message);
      }
      // Yield to timers and sockets: a client failing at once must not starve the event loop.
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  const fuzzers = Array.from({ length: fuzzConnections }, () => new FuzzConnection(server.url, credentials));
  let sent = 0;
  try {
    await Promise.all(fuzzers.map(async (connection, index) => {
      const random = seededRandom(seed + index);
      while (sent < frames) {
        sent++;
        await connection.send(random);
      }
    }));
  } finally {
    for (const connection of fuzzers) connection.close();
    done = true;
    await wellBehaved;
  }
  return {
    answers: fuzzers.reduce((sum, connection) => sum + connection.answers, 0),
    closes: fuzzers.reduce((sum, connection) => sum + connection.closes, 0),
    wellBehavedCalls,
    wellBehavedFailures,
  };
}

describe('protocol fuzzing', () => {
  it(`${framesTotal} hostile frames: each is answered or closes its connection; a well-behaved client never fails`, async () => {
    const server = await serve({ schema: fuzzSchema, procedures: 'test/fixtures/server', partitions: 2 });
    const setup = await client(server);
    await openAccounts(setup, accounts, 100);
    const outcome = await fuzz(server, framesTotal, {}, 20_261_201);
    expect(outcome.answers + outcome.closes).toBeGreaterThanOrEqual(framesTotal);
    // Both kinds of outcome happened: the mix really did contain survivable and fatal frames.
    expect(outcome.answers).toBeGreaterThan(framesTotal / 10);
    expect(outcome.closes).toBeGreaterThan(framesTotal / 10);
    expect(outcome.wellBehavedFailures).toEqual([]);
    expect(outcome.wellBehavedCalls).toBeGreaterThan(30);
    // The server is still whole: new connections work, partitions answer, balances unchanged.
    const after = await client(server);
    expect(await after.call('@Ping')).toBe(0);
    expect((await after.query('SELECT COUNT(*), SUM(balance) FROM accounts WHERE id BETWEEN 1 AND ?', [accounts])).rows).toEqual([[accounts, accounts * 100]]);
    const stats = await after.call('@Statistics');
    expect(stats.partitions.length).toBe(2);
  });

  it('fuzzed handshakes and calls against a secured server: refused or welcomed, never harmful', async () => {
    const credentials = { user: 'good', password: 'good-password' };
    const server = await serveSecure([{ name: 'good', ...credentials, roles: ['app'] }], { app: { procedures: ['Touch'], adhocWrite: true } }, { loginThrottle: { baseMs: 0, maxMs: 0 } });
    await openAccounts(await client(server, credentials), accounts, 100);
    const outcome = await fuzz(server, securedFramesTotal, credentials, 7);
    expect(outcome.answers + outcome.closes).toBeGreaterThanOrEqual(securedFramesTotal);
    expect(outcome.wellBehavedFailures).toEqual([]);
    expect(outcome.wellBehavedCalls).toBeGreaterThan(3);
    const after = await client(server, credentials);
    expect((await after.query('SELECT COUNT(*), SUM(balance) FROM accounts WHERE id BETWEEN 1 AND ?', [accounts])).rows).toEqual([[accounts, accounts * 100]]);
  });
});
