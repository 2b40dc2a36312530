/**
 * The command line's side of security: `sluice hash-password` makes hashes the server accepts,
 * `sql`/`call` log in with --user and SLUICE_PASSWORD, refusals are one line, and `start` from a
 * deployment file with a security section logs nothing secret.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { describe, expect, it } from 'vitest';
import { parseHash, verifyPassword } from '../../engine/security/passwords.ts';
import { openAccounts, client } from '../server-helpers.ts';
import { serveSecure, testScryptCost } from './helpers.ts';

interface Ran {
  stdout: string;
  stderr: string;
  code: number | null;
}

function sluice(args: string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const env: Record<string, string | undefined> = { ...process.env, ...options.env };
    // Only what the test passes: a developer's own SLUICE_USER/SLUICE_PASSWORD must not leak in.
    if (options.env?.SLUICE_USER === undefined) delete env.SLUICE_USER;
    if (options.env?.SLUICE_PASSWORD === undefined) delete env.SLUICE_PASSWORD;
    const child = spawn(process.execPath, ['client/cli.ts', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdin.end(options.input ?? '');
    child.once('exit', (code) => resolve({ stdout, stderr, code }));
  });
}

const users = [{ name: 'ops', password: 'ops-password-1', roles: ['operator'] }];
const roles = { operator: { procedures: ['Touch'], adhocRead: true } };

describe('sluice CLI with security', () => {
  it('hash-password reads the password from standard input and prints a hash that verifies', async () => {
    const { stdout, code } = await sluice(['hash-password', '--cost', String(testScryptCost)], { input: 'p4ssw0rd\n' });
    expect(code).toBe(0);
    const hash = stdout.trim();
    expect(await verifyPassword('p4ssw0rd', parseHash(hash, 'output'))).toBe(true);
    expect(await verifyPassword('p4ssw0rd\n', parseHash(hash, 'output'))).toBe(false);
    const bad = await sluice(['hash-password', '--cost', '1000'], { input: 'x\n' });
    expect([bad.code, bad.stderr]).toEqual([1, 'error: INVALID_CONFIG hashPassword: scrypt N must be a power of two from 2 to 1048576, got 1000\n']);
  });

  it('sql and call log in with --user and SLUICE_PASSWORD; refusals are one line', async () => {
    const server = await serveSecure(users, { ...roles, admin: { admin: true } }, {});
    const query = await sluice(['sql', '--url', server.url, '--user', 'ops', '-c', 'SELECT COUNT(*) AS n FROM accounts'], { env: { SLUICE_PASSWORD: 'ops-password-1' } });
    expect([query.code, query.stdout]).toEqual([0, 'n\n-\n0\n(1 row)\n']);
    const denied = await sluice(['call', '--url', server.url, '--user', 'ops', '--password', 'ops-password-1', 'Transfer', '1', '2', '3']);
    expect([denied.code, denied.stderr]).toEqual([1, "error: PERMISSION_DENIED user 'ops' (roles: operator) may not call Transfer\n"]);
    const wrong = await sluice(['call', '--url', server.url, '--user', 'ops', '@Ping'], { env: { SLUICE_PASSWORD: 'nope' } });
    expect([wrong.code, wrong.stderr]).toEqual([1, 'error: AUTHENTICATION_FAILED authentication failed: unknown user or wrong password\n']);
    const anonymous = await sluice(['call', '--url', server.url, '@Ping']);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toMatch(/^error: AUTHENTICATION_FAILED this server requires a user and password/);
  });

  it('start with a security section: users log in, and neither password nor hash reaches the log', async () => {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-secure-'));
    try {
      const hashed = await sluice(['hash-password', '--cost', String(testScryptCost)], { input: 'app-secret\n' });
      const hash = hashed.stdout.trim();
      const deployment = path.join(folder, 'sluice.json');
      await writeFile(deployment, JSON.stringify({
        schema: path.resolve('test/fixtures/server/bank.sql'),
        partitions: 1,
        host: '127.0.0.1',
        port: 0,
        logLevel: 'debug',
        security: { enabled: true, users: [{ name: 'app', passwordHash: hash, roles: ['rw'] }], roles: { rw: { procedures: ['*'], adhocWrite: true } } },
      }));
      const child = spawn(process.execPath, ['client/cli.ts', 'start', '--deployment', deployment], { stdio: ['ignore', 'pipe', 'pipe'] });
      const lines: string[] = [];
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const url = await new Promise<string>((resolve, reject) => {
        readline.createInterface({ input: child.stdout }).on('line', (line) => {
          lines.push(line);
          const entry = JSON.parse(line) as { msg: string; url?: string };
          if (entry.url) resolve(entry.url);
        });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.once('exit', () => reject(new Error(`server exited: ${lines.join('\n')} ${stderr}`)));
      });
      const db = await client({ url }, { user: 'app', password: 'app-secret' });
      await openAccounts(db, 2, 5);
      expect(await db.call('Touch', 1)).toBe(5);
      await db.close();
      const refused = await sluice(['call', '--url', url, '--user', 'app', '@Ping'], { env: { SLUICE_PASSWORD: 'app-secreT' } });
      expect(refused.code).toBe(1);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const log = lines.join('\n');
      expect(log).toContain('"msg":"login"');
      expect(log).toContain('"msg":"login refused"');
      expect(log).toContain('"security":true');
      for (const secret of ['app-secret', 'app-secreT', hash, hash.split('$')[5]]) expect(log).not.toContain(secret);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
