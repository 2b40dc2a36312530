/**
 * `sluice start` with the web console: the flags and the deployment file's `console` section turn
 * it on, the log says where it listens, /metrics answers, and SIGTERM stops both cleanly. Bad log
 * settings are one-line errors.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { connect } from '../client/index.ts';
import { parsePrometheusText } from './prometheus-text.ts';

const run = promisify(execFile);

/** Starts `sluice start …` and resolves once the console's log line names its URL. */
async function startWithConsole(args: string[]): Promise<{ consoleUrl: string; lines: Record<string, unknown>[]; stop(): Promise<number | null> }> {
  const child = spawn(process.execPath, ['client/cli.ts', 'start', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const consoleUrl = await new Promise<string>((resolve, reject) => {
    child.once('exit', () => reject(new Error(`server exited early: ${stderr}`)));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      lines.push(entry);
      if (typeof entry.url === 'string' && entry.url.startsWith('http://')) resolve(entry.url);
    });
  });
  return {
    consoleUrl,
    lines,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

describe('sluice start with the console', () => {
  it('--console-port serves the console and /metrics; SIGTERM stops cleanly', async () => {
    const server = await startWithConsole(['--schema', 'procedures/voter/ddl.sql', '--partitions', '1', '--port', '0', '--console-port', '0', '--log-format', 'json']);
    expect(server.consoleUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(server.lines.find((line) => line.url === server.consoleUrl)).toMatchObject({ level: 30, service: 'sluice', msg: `web console on ${server.consoleUrl}` });
    const metrics = parsePrometheusText(await (await fetch(`${server.consoleUrl}metrics`)).text());
    expect(metrics.value('sluice_partitions')).toBe(1);
    expect(await (await fetch(server.consoleUrl)).text()).toContain('<title>Sluice console</title>');
    expect(await server.stop()).toBe(0);
    expect(server.lines.some((line) => line.msg === 'server stopped')).toBe(true);
  });

  it('the deployment file\'s console section turns it on, and --no-console wins over it', async () => {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-console-'));
    try {
      const deployment = path.join(folder, 'sluice.json');
      const schema = path.relative(folder, path.resolve('procedures/voter/ddl.sql'));
      await writeFile(deployment, JSON.stringify({ schema, partitions: 1, port: 0, host: '127.0.0.1', logFormat: 'json', console: { port: 0, host: '127.0.0.1' } }));
      const server = await startWithConsole(['--deployment', deployment]);
      expect((await fetch(`${server.consoleUrl}healthz`)).status).toBe(200);
      expect(await server.stop()).toBe(0);

      const child = spawn(process.execPath, ['client/cli.ts', 'start', '--deployment', deployment, '--no-console'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const lines: Record<string, unknown>[] = [];
      await new Promise<void>((resolve) => {
        readline.createInterface({ input: child.stdout! }).on('line', (line) => {
          lines.push(JSON.parse(line) as Record<string, unknown>);
          if (String(lines.at(-1)!.msg).startsWith('listening on')) resolve();
        });
      });
      // A round trip first: SIGTERM before the CLI has installed its handler would kill it outright.
      const db = await connect(String(lines.at(-1)!.url));
      expect(await db.call('@Ping')).toBe(0);
      await db.close();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(lines.some((line) => String(line.msg).startsWith('web console'))).toBe(false);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  it('bad log settings and an occupied console port are one-line errors', async () => {
    const failure = async (...args: string[]) => {
      try {
        await run(process.execPath, ['client/cli.ts', 'start', '--schema', 'procedures/voter/ddl.sql', '--partitions', '1', '--port', '0', ...args]);
        return { code: 0, stderr: '' };
      } catch (error) {
        return error as { code: number; stderr: string };
      }
    };
    const level = await failure('--log-level', 'loud');
    expect([level.code, level.stderr]).toEqual([1, "error: unknown log level 'loud': use one of trace, debug, info, warn, error, fatal, silent\n"]);
    const format = await failure('--log-format', 'xml');
    expect([format.code, format.stderr]).toEqual([1, "error: unknown log format 'xml': use one of auto, json, pretty\n"]);
    // Take a port, then ask the console for it.
    const first = await startWithConsole(['--schema', 'procedures/voter/ddl.sql', '--partitions', '1', '--port', '0', '--console-port', '0', '--log-format', 'json']);
    const port = new URL(first.consoleUrl).port;
    const busy = await failure('--console-port', port, '--log-level', 'silent');
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(new RegExp(`^error: cannot start the web console: listen EADDRINUSE.*${port}\\n$`));
    expect(await first.stop()).toBe(0);
  });
});
