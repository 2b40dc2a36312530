/**
 * Helpers for tests of the server, the client SDK and the CLI: start a real server in-process on
 * a free port (its partitions are real worker threads), connect typed clients, and always close.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach } from 'vitest';
import { connect, type AppShape, type Client, type ConnectOptions } from '../client/index.ts';
import { startServer, type ServerOptions, type SluiceServer } from '../engine/server/server.ts';
import type { BankApp } from './fixtures/server/app.ts';

export const bankSchema = 'test/fixtures/server/bank.sql';

const open: { close(): Promise<void> }[] = [];

afterEach(async () => {
  // Clients first, then servers: a server closing first would fail the clients' calls.
  while (open.length > 0) await open.pop()!.close();
});

/** Starts a server for this test; it is closed after the test. */
export async function serve(options: Partial<ServerOptions> = {}): Promise<SluiceServer> {
  const server = await startServer({ schema: bankSchema, partitions: 2, port: 0, host: '127.0.0.1', ...options });
  open.unshift(server);
  return server;
}

/** Connects a client for this test; it is closed after the test (before the servers). */
export async function client<App extends AppShape = BankApp>(server: { url: string }, options: ConnectOptions = {}): Promise<Client<App>> {
  const connection = await connect<App>(server.url, options);
  open.push(connection);
  return connection;
}

/** Opens accounts 1..count with `balance` each (single-partition inserts). */
export async function openAccounts(connection: Client<BankApp>, count: number, balance: number): Promise<void> {
  const calls: Promise<unknown>[] = [];
  for (let id = 1; id <= count; id++) calls.push(connection.query('INSERT INTO accounts (id, balance, touches) VALUES (?, ?, 0)', [id, balance]));
  await Promise.all(calls);
}

/** The error a promise rejects with (fails the test when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<Error & { status?: string; code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { status?: string; code?: string };
  }
  throw new Error('expected the call to fail, but it succeeded');
}

const execFileAsync = promisify(execFile);

/** Runs the CLI (`sluice …`) as its own process; a non-zero exit is answered, not thrown. */
export async function sluice(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['client/cli.ts', ...args]);
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failed = error as { stdout: string; stderr: string; code: number };
    return { stdout: failed.stdout, stderr: failed.stderr, code: failed.code };
  }
}
