/**
 * Helpers for the security tests: a server with users and roles (cheap scrypt hashes so logins
 * are fast in tests; the parameters travel in each hash), clients that log in, raw sockets that
 * speak the protocol by hand, and a logger whose lines the test can read.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { WebSocket } from 'ws';
import { FrameKind, createCodec } from '../../engine/server/protocol.ts';
import type { SecurityConfig } from '../../engine/security/config.ts';
import { hashPassword } from '../../engine/security/passwords.ts';
import type { ServerOptions, SluiceServer } from '../../engine/server/server.ts';
import { serve } from '../server-helpers.ts';

/** scrypt cost for test hashes: 1024 takes about a millisecond. */
export const testScryptCost = 1024;

export const codec = createCodec();

export interface TestUser {
  name: string;
  password: string;
  roles: string[];
}

/** The security section for these users and roles, with their passwords hashed. */
export async function securityFor(users: TestUser[], roles: SecurityConfig['roles']): Promise<SecurityConfig> {
  return {
    enabled: true,
    users: await Promise.all(users.map(async (user) => ({ name: user.name, passwordHash: await hashPassword(user.password, { cost: testScryptCost }), roles: user.roles }))),
    roles,
  };
}

/** A server with security on; failed logins are slowed down by only a millisecond or two. */
export async function serveSecure(users: TestUser[], roles: SecurityConfig['roles'], options: Partial<ServerOptions> = {}): Promise<SluiceServer> {
  return serve({ security: await securityFor(users, roles), loginThrottle: { baseMs: 1, maxMs: 2 }, ...options });
}

/** A logger whose lines the test reads back. */
export function capturedLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

/** Opens a raw WebSocket (no SDK). */
export function raw(url: string, options: { ca?: Buffer } = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Every frame a raw socket receives until it closes, and the close code. */
export function untilClosed(ws: WebSocket): Promise<{ code: number; frames: unknown[][] }> {
  const frames: unknown[][] = [];
  ws.on('message', (data: Buffer) => frames.push(codec.unpack(data) as unknown[]));
  return new Promise((resolve) => ws.once('close', (code) => resolve({ code, frames })));
}

/** Sends HELLO with these fields and waits for the first answer frame. */
export async function sendHello(ws: WebSocket, fields: Record<string, unknown>): Promise<unknown[]> {
  const answer = new Promise<unknown[]>((resolve) => ws.once('message', (data: Buffer) => resolve(codec.unpack(data) as unknown[])));
  ws.send(codec.pack([FrameKind.HELLO, { versions: [1], ...fields }]));
  return answer;
}
