#!/usr/bin/env node
/**
 * The `sluice` command line:
 *
 *   sluice start --schema app.sql [--procedures ./procedures] [--partitions N] [--port 21212] [--deployment sluice.json]
 *                [--console-port 8080] [--log-level info] [--log-format auto|json|pretty]
 *   sluice sql [--url ws://127.0.0.1:21212] [-c "SELECT …"] [-f file.sql]   (interactive without -c/-f)
 *   sluice call [--url …] Proc arg…                                          (args: JSON where they parse, else text)
 *   sluice snapshot [--url …]                                                (takes a snapshot now: @SnapshotSave)
 *   sluice update [--procedures ./procedures] [--schema additions.sql] [--url …]  (changes the running application: @UpdateApplication)
 *   sluice export run <job> --day YYYY-MM-DD [--url …]                      (an end-of-day export by hand: @ExportRun)
 *   sluice hash-password                                                     (prints a scrypt hash for the deployment file)
 *   sluice subscribe [--url …] stream [--where col=value]… [--from earliest|now|position] [--count N]
 *                                                                            (rows as JSON lines, as they commit)
 *   sluice load [--url …] table|Procedure file.csv [--no-header] [--rejects r.csv]  (CSV bulk load: client/load.ts)
 *
 * `sql` and `call` take --user/--password (or SLUICE_USER/SLUICE_PASSWORD) and --ca for wss:// with a
 * private certificate authority (docs/security.md).
 *
 * Errors print as one line (`error: CODE message`) and exit 1; a stack trace is a bug.
 */
import { readFile } from 'node:fs/promises';
import { appendFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Command, CommanderError } from 'commander';
import type { SecurityConfig } from '../engine/security/config.ts';
import type { TlsConfig } from '../engine/security/tls.ts';
import { connect, SluiceClientError, type Client, type ConnectOptions, type QueryResult, type WhereCondition } from './index.ts';

const defaultUrl = 'ws://127.0.0.1:21212';
const historyFile = path.join(os.homedir(), '.sluice_history');
const historyLinesMax = 1000;

/** Everything `start` can be told, as a deployment file (JSON) holds it. */
interface Deployment {
  schema?: string;
  procedures?: string;
  partitions?: number;
  port?: number;
  host?: string;
  logLevel?: string;
  /** auto (pretty on a terminal, else JSON), json or pretty. */
  logFormat?: string;
  /** The web console (engine/console): on when this section is present, unless enabled is false. */
  console?: { enabled?: boolean; port?: number; host?: string; alerts?: { stream?: string; where?: Record<string, unknown>; title?: string; sql?: string; intervalMs?: number } };
  limits?: {
    frameBytesMax?: number;
    resultFrameBytesMax?: number;
    connectionCallsInFlightMax?: number;
    queueDepthMax?: number;
    connectionsMax?: number;
    idleTimeoutMs?: number;
    adhocRowsMax?: number;
    connectionBufferedBytesMax?: number;
    partitionCallsSentMax?: number;
    /** A transaction running longer than this (ms) is logged and counted as long-running. */
    longRunningMs?: number;
    /** Time (ms) a partition has to answer a multi-partition fragment. */
    fragmentTimeoutMs?: number;
    /** Each partition thread's young generation (MB): smaller means shorter garbage-collection pauses. */
    partitionYoungGenerationMb?: number;
  };
  /** Data directory (command log, snapshots, export buffers); relative to the deployment file. */
  data?: string;
  durability?: { mode?: 'sync' | 'async' | 'off'; groupCommitMs?: number; asyncFlushMs?: number; snapshotIntervalMinutes?: number; snapshotOnShutdown?: boolean; segmentBytesMax?: number; segmentRecordsMax?: number };
  /** Kafka and MQTT importers (docs/importers.md), checked by importers/config.ts. */
  importers?: unknown[];
  /** Export targets, buffer bound and end-of-day jobs (docs/exporters.md); checked by the server. */
  exports?: unknown;
  /** Users and roles (docs/security.md). */
  security?: SecurityConfig;
  /** PEM files for wss:// (paths relative to the deployment file). */
  tls?: TlsConfig;
}

/** Keys whose values never reach the log, wherever they appear in a logged object. */
const redactedLogPaths = ['password', 'passwordHash', '*.password', '*.passwordHash', 'security.users[*].passwordHash', 'deployment.security'];

const program = new Command();
program.name('sluice').description('Sluice: an in-memory transactional database').exitOverride();

program
  .command('start')
  .description('start a server')
  .option('--schema <file>', 'DDL file (.sql)')
  .option('--procedures <dir>', 'procedures folder (default: the schema file\'s folder)')
  .option('--partitions <n>', 'partition worker threads (default: number of cores)', parseInteger)
  .option('--port <port>', 'TCP port (default 21212; 0 picks a free one)', parseInteger)
  .option('--host <host>', 'interface to listen on (default 0.0.0.0)')
  .option('--deployment <file>', 'deployment file (JSON) with any of these settings and limits')
  .option('--log-level <level>', 'trace, debug, info, warn, error, fatal, silent (default info)')
  .option('--log-format <format>', 'auto (pretty on a terminal, JSON otherwise), json or pretty')
  .option('--data <dir>', 'data directory: command log and snapshots; without it nothing survives a restart')
  .option('--durability <mode>', 'sync (answer after the log is on disk), async (log flushed every asyncFlushMs) or off (snapshots only); needs --data (default sync)')
  .option('--console', 'serve the web console and /metrics (default port 8080)')
  .option('--no-console', 'do not serve the web console, even if the deployment file asks for it')
  .option('--console-port <port>', 'web console HTTP port (0 picks a free one); implies --console', parseInteger)
  .option('--console-host <host>', 'interface the web console listens on (default 127.0.0.1)')
  .action(async (options: StartOptions) => {
    const deployment = options.deployment ? await readDeployment(options.deployment) : {};
    const schema = options.schema ?? deployment.schema;
    if (!schema) throw new UsageError('start needs --schema <file> (or "schema" in the deployment file)');
    const { createLogger } = await import('../engine/logger.ts');
    let logger;
    try {
      logger = createLogger({ level: options.logLevel ?? deployment.logLevel, format: options.logFormat ?? deployment.logFormat, redactPaths: redactedLogPaths });
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const data = options.data ?? deployment.data;
    const mode = options.durability ?? deployment.durability?.mode;
    if (mode !== undefined && mode !== 'sync' && mode !== 'async' && mode !== 'off') throw new UsageError(`--durability must be sync, async or off, got ${mode}`);
    if (mode !== undefined && data === undefined) throw new UsageError('--durability needs a data directory: --data <dir> (or "data" in the deployment file)');
    const { startServer } = await import('../engine/server/server.ts');
    const { createRecoveryProgressBar } = await import('../engine/durability/progress-bar.ts');
    // A bar only on a terminal: in a log file the structured summary line says it all.
    const bar = data !== undefined && process.stderr.isTTY ? createRecoveryProgressBar() : undefined;
    const server = await startServer({
      data,
      durability: data === undefined ? undefined : { ...deployment.durability, mode: mode ?? 'sync' },
      onRecoveryProgress: bar?.onProgress,
      schema,
      procedures: options.procedures ?? deployment.procedures,
      partitions: options.partitions ?? deployment.partitions,
      port: options.port ?? deployment.port,
      host: options.host ?? deployment.host,
      frameBytesMax: deployment.limits?.frameBytesMax,
      resultFrameBytesMax: deployment.limits?.resultFrameBytesMax,
      connectionCallsInFlightMax: deployment.limits?.connectionCallsInFlightMax,
      queueDepthMax: deployment.limits?.queueDepthMax,
      importers: deployment.importers,
      exports: deployment.exports,
      connectionsMax: deployment.limits?.connectionsMax,
      idleTimeoutMs: deployment.limits?.idleTimeoutMs,
      adhocRowsMax: deployment.limits?.adhocRowsMax,
      connectionBufferedBytesMax: deployment.limits?.connectionBufferedBytesMax,
      partitionCallsSentMax: deployment.limits?.partitionCallsSentMax,
      longRunningMs: deployment.limits?.longRunningMs,
      fragmentTimeoutMs: deployment.limits?.fragmentTimeoutMs,
      partitionYoungGenerationMb: deployment.limits?.partitionYoungGenerationMb,
      security: deployment.security,
      tls: deployment.tls,
      logger,
    });
    if (bar && server.recovery) bar.finish(server.recovery);
    const consoleSettings = deployment.console ?? {};
    const consoleWanted = options.console ?? (options.consolePort !== undefined || (deployment.console !== undefined && consoleSettings.enabled !== false));
    let webConsole: { close(): Promise<void> } | undefined;
    if (consoleWanted) {
      const { startConsole } = await import('../engine/console/console.ts');
      const alerts = consoleSettings.alerts;
      try {
        webConsole = await startConsole({
          server,
          port: options.consolePort ?? consoleSettings.port,
          host: options.consoleHost ?? consoleSettings.host,
          logger,
          alerts: alerts?.stream ? { stream: alerts.stream, where: alerts.where } : alerts?.sql ? { title: alerts.title ?? 'alert query', sql: alerts.sql, intervalMs: alerts.intervalMs } : undefined,
        });
      } catch (error) {
        await server.close();
        throw new UsageError(`cannot start the web console: ${(error as Error).message}`);
      }
    }
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      (webConsole?.close() ?? Promise.resolve()).then(() => server.close()).then(
        () => process.exit(0),
        (error: Error) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });

program
  .command('sql')
  .description('SQL shell: interactive, or run -c "statement" / -f file.sql')
  .option('--url <url>', 'server address', defaultUrl)
  .option('-c, --command <sql>', 'run these statements and exit')
  .option('-f, --file <file>', 'run the statements of a file and exit')
  .option('--user <name>', 'user name (default: $SLUICE_USER)')
  .option('--password <password>', 'password (default: $SLUICE_PASSWORD; prefer the variable: arguments show in ps)')
  .option('--ca <file>', 'PEM certificate(s) to trust for wss:// (a private or self-signed server certificate)')
  .action(async (options: { url: string; command?: string; file?: string } & ConnectionFlags) => {
    const client = await connect(options.url, await connectOptions(options));
    try {
      if (options.command !== undefined || options.file !== undefined) {
        const text = options.command ?? (await readFile(options.file!, 'utf8'));
        for (const statement of splitStatements(text)) printResult(await client.query(statement));
      } else {
        await shell(client, options.url);
      }
    } finally {
      await client.close();
    }
  });

program
  .command('call')
  .description('call a procedure: sluice call Vote 2015550123 3 2')
  .option('--url <url>', 'server address', defaultUrl)
  .option('--user <name>', 'user name (default: $SLUICE_USER)')
  .option('--password <password>', 'password (default: $SLUICE_PASSWORD; prefer the variable: arguments show in ps)')
  .option('--ca <file>', 'PEM certificate(s) to trust for wss://')
  .argument('<procedure>')
  .argument('[args...]', 'parameters: JSON where they parse (numbers, "text", [arrays], null), else text')
  .action(async (procedure: string, args: string[], options: { url: string } & ConnectionFlags) => {
    const client = await connect(options.url, await connectOptions(options));
    try {
      const result = await client.call(procedure, ...args.map(parseArgument));
      printValue(result);
    } finally {
      await client.close();
    }
  });

program
  .command('snapshot')
  .description('take a snapshot now (@SnapshotSave); prints where it went and the pause it caused')
  .option('--url <url>', 'server address', defaultUrl)
  .option('--user <name>', 'user name (default: $SLUICE_USER); the role needs admin')
  .option('--password <password>', 'password (default: $SLUICE_PASSWORD)')
  .option('--ca <file>', 'PEM certificate(s) to trust for wss://')
  .action(async (options: { url: string } & ConnectionFlags) => {
    const client = await connect(options.url, { ...(await connectOptions(options)), timeoutMs: 600_000 });
    try {
      printValue(await client.call('@SnapshotSave'));
    } finally {
      await client.close();
    }
  });

program
  .command('update')
  .description('change the running application without a restart (@UpdateApplication): add tables, indexes, views, streams and procedures, replace procedure code')
  .option('--procedures <dir>', 'the procedures folder: its code files replace the running ones')
  .option('--schema <file>', 'DDL to add to the running schema (.sql)')
  .option('--url <url>', 'server address', defaultUrl)
  .option('--user <name>', 'user name (default: $SLUICE_USER); the role needs admin')
  .option('--password <password>', 'password (default: $SLUICE_PASSWORD)')
  .option('--ca <file>', 'PEM certificate(s) to trust for wss://')
  .action(async (options: { procedures?: string; schema?: string; url: string } & ConnectionFlags) => {
    if (options.procedures === undefined && options.schema === undefined) throw new UsageError('update needs --procedures <dir>, --schema <file> or both');
    const { readProcedureFolder } = await import('../engine/durability/code-versions.ts');
    let procedures: Record<string, string> | undefined;
    let ddl: string | undefined;
    try {
      if (options.procedures !== undefined) procedures = readProcedureFolder(options.procedures);
      if (options.schema !== undefined) ddl = await readFile(options.schema, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read ${(error as NodeJS.ErrnoException).path ?? 'the update'}: ${(error as Error).message}`);
    }
    const client = await connect(options.url, { ...(await connectOptions(options)), timeoutMs: 600_000 });
    try {
      const result = await client.call('@UpdateApplication', { ddl, procedures });
      const added = [...result.tablesAdded, ...result.proceduresAdded];
      console.log(`version ${result.epoch} in force from transaction ${result.transactionId}` + (added.length > 0 ? `; added ${added.join(', ')}` : '') + (result.proceduresReplaced.length > 0 ? `; replaced ${result.proceduresReplaced.join(', ')}` : ''));
    } finally {
      await client.close();
    }
  });

const exportCommand = program.command('export').description('end-of-day exports');
exportCommand
  .command('run')
  .description('run an end-of-day export job for one finished day (@ExportRun): sluice export run daily_billing --day 2026-11-22')
  .argument('<job>', 'the job name from the deployment file (exports.daily)')
  .requiredOption('--day <YYYY-MM-DD>', 'the day, in the job\'s time zone')
  .option('--url <url>', 'server address', defaultUrl)
  .option('--user <name>', 'user name (default: $SLUICE_USER); the role needs admin')
  .option('--password <password>', 'password (default: $SLUICE_PASSWORD)')
  .option('--ca <file>', 'PEM certificate(s) to trust for wss://')
  .action(async (job: string, options: { day: string; url: string } & ConnectionFlags) => {
    const client = await connect(options.url, { ...(await connectOptions(options)), timeoutMs: 600_000 });
    try {
      const result = await client.call('@ExportRun', job, options.day);
      console.log(result.status === 'written' ? `${result.job} ${result.day}: exported ${result.rows} rows` : `${result.job} ${result.day}: already exported (${result.rows} rows); nothing changed`);
    } finally {
      await client.close();
    }
  });

program
program
  .command('hash-password')
  .alias('passwd')
  .description('print a scrypt hash of a password for the deployment file\'s security.users[].passwordHash')
  .option('--cost <N>', 'scrypt cost N, a power of two (default 32768)', parseInteger)
  .action(async (options: { cost?: number }) => {
    const { hashPassword } = await import('../engine/security/passwords.ts');
    let password = process.env.SLUICE_PASSWORD || undefined;
    if (password === undefined) {
      password = await readPassword();
      // At a terminal nobody sees what was typed: ask again so a typo does not become the password.
      if (process.stdin.isTTY && (await readPassword('again: ')) !== password) throw new UsageError('the two passwords differ');
    }
    console.log(await hashPassword(password, { cost: options.cost }));
  });

program
  .command('subscribe')
  .description('print a stream\'s rows as they commit, one JSON line each: {"partition","sequence","row"}')
  .option('--url <url>', 'server address', defaultUrl)
  .option('--user <name>', 'user name (default: $SLUICE_USER)')
  .option('--password <password>', 'password (default: $SLUICE_PASSWORD; prefer the variable: arguments show in ps)')
  .option('--ca <file>', 'PEM certificate(s) to trust for wss://')
  .argument('<stream>')
  .option('--where <condition>', 'only rows meeting it: column=value, != < <= > >= (value: JSON where it parses); repeat for AND, a column=value repeated for any of several values', collectWhere, {})
  .option('--from <position>', 'earliest, now, or a position printed by an earlier run: {"0":12,"1":40}', 'now')
  .option('--count <n>', 'exit after this many rows', parseInteger)
  .action(async (stream: string, options: { url: string; where: Record<string, WhereCondition>; from: string; count?: number } & ConnectionFlags) => {
    const from = options.from === 'earliest' || options.from === 'now' ? options.from : parsePosition(options.from);
    const client = await connect(options.url, { ...(await connectOptions(options)), reconnect: true });
    let printed = 0;
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    let failure: Error | undefined;
    const subscription = await client.subscribe(stream, { where: options.where, from, onEnd: (error) => ((failure = error), finish()) }, (row, at) => {
      console.log(JSON.stringify({ partition: at.partition, sequence: at.sequence, row }, jsonValue));
      if (options.count !== undefined && ++printed >= options.count) finish();
    });
    if (options.count === 0) finish();
    process.once('SIGINT', finish);
    await finished;
    // Where to pick up next time: `--from` takes this line.
    console.error(`position: ${JSON.stringify(subscription.position)}`);
    await client.close();
    if (failure !== undefined) throw failure;
  });

/**
 * `--where kwh>=5`, repeatable: every condition must hold, except that `column=value` given
 * twice for one column matches either value (an IN list).
 */
function collectWhere(text: string, where: Record<string, WhereCondition>): Record<string, WhereCondition> {
  const match = /^([^<>=!]+)(<=|>=|!=|=|<|>)(.*)$/s.exec(text);
  if (match === null) throw new UsageError(`--where takes column=value, or column!=, <, <=, >, >= value; got ${text}`);
  const [, column, operator, value] = match;
  const condition = (where[column] ??= {});
  if (operator === '=') (condition.in ??= []).push(parseArgument(value));
  else condition[operator as '!=' | '<' | '<=' | '>' | '>='] = parseArgument(value);
  return where;
}

function parsePosition(text: string): Record<number, number> {
  const position = parseArgument(text);
  if (typeof position !== 'object' || position === null || Array.isArray(position)) throw new UsageError(`--from takes earliest, now or a position such as {"0":12,"1":40}, got ${text}`);
  return position as Record<number, number>;
}

/** Binary values as base64 in JSON output (a Buffer reaches the replacer already as {type, data}). */
function jsonValue(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (typeof value === 'object' && value !== null && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) return Buffer.from((value as { data: number[] }).data).toString('base64');
  return value;
}

interface StartOptions {
  schema?: string;
  procedures?: string;
  partitions?: number;
  port?: number;
  host?: string;
  deployment?: string;
  logLevel?: string;
  logFormat?: string;
  data?: string;
  durability?: string;
  console?: boolean;
  consolePort?: number;
  consoleHost?: string;
}

program
  .command('load')
  .description('bulk-load a CSV file into a table (header names the columns) or a procedure (columns in parameter order); exit code 2 when lines were rejected')
  .option('--url <url>', 'server address', defaultUrl)
  .option('--no-header', 'the first line is data, not column names')
  .option('--delimiter <char>', 'field delimiter', ',')
  .option('--in-flight <n>', 'calls outstanding at once', parseInteger)
  .option('--rejects <file>', 'write every rejected line (line, reason, fields) to this CSV file')
  .option('--user <name>', 'user name (default: $SLUICE_USER)')
  .option('--password <password>', 'password (default: $SLUICE_PASSWORD; prefer the variable: arguments show in ps)')
  .option('--ca <file>', 'PEM certificate(s) to trust for wss://')
  .argument('<target>', 'table or procedure')
  .argument('<file>', 'CSV file')
  .action(async (target: string, file: string, options: { url: string; header: boolean; delimiter: string; inFlight?: number; rejects?: string } & ConnectionFlags) => {
    const { loadCsv } = await import('./load-cli.ts');
    const report = await loadCsv(options.url, await connectOptions(options), target, file, options);
    if (report.rejected > 0) process.exitCode = 2;
  });

class UsageError extends Error {}

interface ConnectionFlags {
  user?: string;
  password?: string;
  ca?: string;
}

async function connectOptions(flags: ConnectionFlags): Promise<ConnectOptions> {
  const options: ConnectOptions = {};
  const user = flags.user ?? (process.env.SLUICE_USER || undefined);
  if (user !== undefined) {
    options.user = user;
    options.password = flags.password ?? (process.env.SLUICE_PASSWORD || (await readPassword()));
  }
  if (flags.ca !== undefined) {
    try {
      options.ca = await readFile(flags.ca);
    } catch (error) {
      throw new UsageError(`cannot read --ca ${flags.ca}: ${(error as Error).message}`);
    }
  }
  return options;
}

/** Reads a password: typed at a terminal without echo, or the first line of standard input when piped. */
async function readPassword(prompt = 'password: '): Promise<string> {
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
    if (!password) throw new UsageError('no password on standard input');
    return password;
  }
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let password = '';
      const onData = (chunk: Buffer) => {
        for (const char of chunk.toString('utf8')) {
          if (char === '\r' || char === '\n') {
            stdin.off('data', onData);
            resolve(password);
            return;
          }
          if (char === '\u0003') {
            stdin.off('data', onData);
            reject(new UsageError('cancelled'));
            return;
          }
          password = char === '\u007f' ? password.slice(0, -1) : password + char;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}

function parseInteger(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value)) throw new UsageError(`not an integer: ${text}`);
  return value;
}

function parseArgument(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function readDeployment(file: string): Promise<Deployment> {
  let deployment: Deployment;
  try {
    deployment = JSON.parse(await readFile(file, 'utf8')) as Deployment;
  } catch (error) {
    throw new UsageError(`cannot read deployment file ${file}: ${(error as Error).message}`);
  }
  // Paths in the file are relative to the file, not to where sluice was started.
  const folder = path.dirname(path.resolve(file));
  if (deployment.schema) deployment.schema = path.resolve(folder, deployment.schema);
  if (deployment.procedures) deployment.procedures = path.resolve(folder, deployment.procedures);
  if (deployment.data) deployment.data = path.resolve(folder, deployment.data);
  if (deployment.tls && typeof deployment.tls === 'object') {
    const tls = deployment.tls;
    for (const key of ['cert', 'key', 'ca'] as const) if (typeof tls[key] === 'string') tls[key] = path.resolve(folder, tls[key]);
  }
  return deployment;
}

/** Splits a script at semicolons outside quotes and comments. */
function splitStatements(text: string): string[] {
  const statements: string[] = [];
  let current = '';
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quote) {
      current += char;
      if (char === quote) quote = undefined;
      continue;
    }
    if (char === '-' && text[i + 1] === '-') {
      while (i < text.length && text[i] !== '\n') i++;
      current += '\n';
      continue;
    }
    if (char === "'" || char === '"') quote = char;
    if (char === ';') {
      if (current.trim()) statements.push(current.trim());
      current = '';
      continue;
    }
    current += char;
  }
  if (current.trim()) statements.push(current.trim());
  return statements;
}

async function shell(client: Client, url: string): Promise<void> {
  let history: string[] = [];
  try {
    history = readFileSync(historyFile, 'utf8').split('\n').filter(Boolean).reverse().slice(0, historyLinesMax);
  } catch {
    // No history yet.
  }
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, history, historySize: historyLinesMax, prompt: 'sluice> ' });
  console.log(`connected to ${url} (${client.partitions} partitions). End statements with ;  —  exit with \\q or Ctrl-D.`);
  let buffer = '';
  rl.prompt();
  for await (const line of rl) {
    const trimmed = line.trim();
    if (buffer === '' && (trimmed === '\\q' || trimmed === 'exit' || trimmed === 'quit')) break;
    buffer += (buffer ? '\n' : '') + line;
    if (trimmed.endsWith(';')) {
      try {
        appendFileSync(historyFile, `${buffer.replace(/\n/g, ' ')}\n`);
      } catch {
        // History is a convenience: a read-only home folder must not stop the shell.
      }
      for (const statement of splitStatements(buffer)) {
        try {
          printResult(await client.query(statement));
        } catch (error) {
          console.log(oneLine(error));
        }
      }
      buffer = '';
    }
    rl.setPrompt(buffer ? '    -> ' : 'sluice> ');
    rl.prompt();
  }
  rl.close();
}

function formatValue(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (value instanceof Uint8Array) return `x'${Buffer.from(value).toString('hex')}'`;
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** Prints a result table with aligned columns (numbers right-aligned). */
function formatTable(result: QueryResult): string {
  const header = result.columns;
  const cells = result.rows.map((row) => row.map(formatValue));
  const widths = header.map((name, i) => Math.max(name.length, ...cells.map((row) => row[i].length)));
  const numeric = header.map((_, i) => result.rows.length > 0 && result.rows.every((row) => typeof row[i] === 'number' || row[i] === null));
  const line = (values: string[]) => values.map((value, i) => (numeric[i] ? value.padStart(widths[i]) : value.padEnd(widths[i]))).join(' | ').trimEnd();
  const out = [line(header), widths.map((width) => '-'.repeat(width)).join('-+-')];
  for (const row of cells) out.push(line(row));
  out.push(`(${result.rows.length} row${result.rows.length === 1 ? '' : 's'})`);
  return out.join('\n');
}

function printResult(result: QueryResult): void {
  console.log(formatTable(result));
}

function printValue(value: unknown): void {
  if (Array.isArray(value) && value.length > 0 && value.every((row) => row !== null && typeof row === 'object' && !Array.isArray(row))) {
    const columns = Object.keys(value[0] as object);
    console.log(formatTable({ columns, types: [], rows: value.map((row) => columns.map((column) => (row as Record<string, never>)[column])) }));
    return;
  }
  if (value !== null && typeof value === 'object' && 'columns' in value && 'rows' in value) {
    console.log(formatTable(value as QueryResult));
    return;
  }
  console.log(typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

function oneLine(error: unknown): string {
  if (error instanceof SluiceClientError) return `error: ${error.code} ${error.message}`;
  if (error instanceof Error && 'code' in error && typeof error.code === 'string' && !(error instanceof CommanderError)) return `error: ${error.code} ${error.message}`;
  return `error: ${error instanceof Error ? error.message : String(error)}`;
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  console.error(oneLine(error));
  process.exit(1);
}
