/**
 * The server under test as its own process (`sluice start`), the way published numbers are
 * measured: the load generator and the server share only the machine. Resolves with the URL the
 * server logs once it listens; `stop` sends SIGTERM and waits for a clean exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const serverStartTimeoutMs = 60_000;

export interface ServerProcessOptions {
  schema: string;
  partitions?: string | number;
  /** Passed through as `--durability <mode>` (off, async, sync) when set, with a data directory. */
  durability?: string;
  /** The data directory for durability; default: a fresh temporary one, removed by `stop`. */
  data?: string;
  /** A deployment file (`--deployment`): data directory, exports…; then no temporary data directory is made. */
  deployment?: string;
  /** Extra `sluice start` arguments. */
  args?: readonly string[];
  /** Lines the server prints that are not its JSON log (echoed by default). */
  onOutput?: (line: string) => void;
}

export interface ServerProcess {
  readonly url: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const args = ['client/cli.ts', 'start', '--schema', options.schema, '--port', '0', '--host', '127.0.0.1', '--log-level', 'info'];
  if (options.partitions !== undefined) args.push('--partitions', String(options.partitions));
  const temporaryData = options.durability !== undefined && options.data === undefined && options.deployment === undefined ? mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-')) : undefined;
  const removeData = () => temporaryData !== undefined && rmSync(temporaryData, { recursive: true, force: true });
  if (options.deployment !== undefined) args.push('--deployment', options.deployment);
  if (options.durability !== undefined) args.push('--durability', options.durability);
  if (options.data !== undefined || temporaryData !== undefined) args.push('--data', options.data ?? temporaryData!);
  args.push(...(options.args ?? []));
  // SLUICE_VERIFY=0: the server skips its self-checks meant for tests.
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, SLUICE_VERIFY: '0' } });
  const echo = options.onOutput ?? ((line: string) => console.log(line));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', removeData);
    const timer = setTimeout(() => reject(new Error(`the server did not start within ${serverStartTimeoutMs / 1000} s`)), serverStartTimeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with code ${code} before listening (sluice ${args.slice(1).join(' ')})`));
    });
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let entry: { url?: string } | undefined;
      try {
        entry = JSON.parse(line) as { url?: string };
      } catch {
        echo(line);
        return;
      }
      if (entry.url) {
        clearTimeout(timer);
        resolve(entry.url);
      }
    });
  });
  return {
    url,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      removeData();
    },
  };
}
