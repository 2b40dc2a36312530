/**
 * The `sluice` command line against a running server: `sql -c`, `sql -f`, `call`, and errors as
 * one line with exit code 1. `start` is covered by starting a server process and stopping it.
 */
import { spawn } from 'node:child_process';
import { writeFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { describe, expect, it } from 'vitest';
import { client, openAccounts, serve, sluice } from './server-helpers.ts';


describe('sluice CLI', () => {
  it('sql -c and -f print aligned tables; call prints results', async () => {
    const server = await serve();
    await openAccounts(await client(server), 3, 250);
    const query = await sluice('sql', '--url', server.url, '-c', 'SELECT id, balance FROM accounts ORDER BY id; SELECT COUNT(*) AS n FROM accounts');
    expect(query.code).toBe(0);
    expect(query.stdout).toBe(['id | balance', '---+--------', ' 1 |     250', ' 2 |     250', ' 3 |     250', '(3 rows)', 'n', '-', '3', '(1 row)', ''].join('\n'));
    const folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-cli-'));
    const file = path.join(folder, 'script.sql');
    await writeFile(file, "-- a comment; with a semicolon\nUPDATE accounts SET balance = 1 WHERE id = 2;\nSELECT balance FROM accounts WHERE id = 2;\n");
    const script = await sluice('sql', '--url', server.url, '-f', file);
    expect(script.stdout).toContain('modified_tuples');
    expect(script.stdout).toMatch(/balance\n-+\n +1\n\(1 row\)/);
    const call = await sluice('call', '--url', server.url, 'Transfer', '1', '3', '50');
    expect([call.code, call.stdout.trim()]).toEqual([0, '200']);
    const total = await sluice('call', '--url', server.url, 'Total');
    expect(JSON.parse(total.stdout)).toEqual({ total: 501, accounts: 3 });
  });

  it('reports errors as one line and exits 1', async () => {
    const server = await serve();
    const unknown = await sluice('call', '--url', server.url, 'Nope');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('error: UNKNOWN_PROCEDURE unknown procedure Nope\n');
    const typo = await sluice('call', '--url', server.url, 'Totl');
    expect(typo.stderr).toBe("error: UNKNOWN_PROCEDURE unknown procedure Totl; did you mean 'Total'?\n");
    const bad = await sluice('sql', '--url', server.url, '-c', 'SELECT nope FROM accounts');
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^error: UNKNOWN_COLUMN unknown column nope/);
    expect(bad.stderr).not.toContain('    at ');
    const down = await sluice('call', '--url', 'ws://127.0.0.1:1', '@Ping');
    expect(down.code).toBe(1);
    expect(down.stderr.trim()).toMatch(/^error: CONNECTION_LOST cannot connect/);
  });

  it('start (from a deployment file) listens, logs where, and stops cleanly on SIGTERM', async () => {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-deploy-'));
    const deployment = path.join(folder, 'sluice.json');
    // Paths in a deployment file are relative to the file.
    const schema = path.relative(folder, path.resolve('test/fixtures/server/bank.sql'));
    await writeFile(deployment, JSON.stringify({ schema, partitions: 3, host: '127.0.0.1', port: 21212, limits: { connectionCallsInFlightMax: 10 } }));
    const child = spawn(process.execPath, ['client/cli.ts', 'start', '--deployment', deployment, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Record<string, unknown>[] = [];
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      child.once('exit', () => reject(new Error('server exited early')));
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        const entry = JSON.parse(line) as Record<string, unknown>;
        lines.push(entry);
        if (typeof entry.url === 'string') resolve(entry.url);
      });
    });
    const db = await client({ url });
    expect(await db.call('@Ping')).toBe(0);
    expect(db.partitions).toBe(3);
    await db.close();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(lines[0].msg).toBe(`listening on ${url}`);
    expect(lines.some((entry) => entry.msg === 'server stopped')).toBe(true);
  });
});
