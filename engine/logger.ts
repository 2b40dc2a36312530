/**
 * The server's logger: pino, one JSON object per line with a numeric `level`, `time` and the
 * fields of the event (`service: "sluice"` on every line) — what log shippers expect. On a
 * terminal the same lines are pretty-printed (pino-pretty: coloured level, local time, fields
 * indented) because a person is reading them. `format` overrides the choice.
 *
 * ```ts
 * const logger = createLogger({ level: 'debug' });
 * logger.info({ port }, 'listening');
 * ```
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { ErrorCode, SluiceError } from './errors.ts';

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];
export type LogFormat = 'auto' | 'json' | 'pretty';
export const logFormats: readonly LogFormat[] = ['auto', 'json', 'pretty'];

export interface LoggerOptions {
  /** Default 'info'. */
  level?: string;
  /** 'auto' (default): pretty when the output is a terminal, JSON otherwise. */
  format?: string;
  /** Keys whose values never reach the log (pino redact paths, e.g. 'security.users[*].passwordHash'). */
  redactPaths?: string[];
  /** Where lines go; default standard output. */
  destination?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** Checks a level name from the command line or a deployment file; the error names the valid ones. */
export function parseLogLevel(text: string): LogLevel {
  const level = text.trim().toLowerCase();
  if (!(logLevels as readonly string[]).includes(level)) {
    throw new SluiceError(ErrorCode.INVALID_SCHEMA, `unknown log level '${text}': use one of ${logLevels.join(', ')}`);
  }
  return level as LogLevel;
}

export function parseLogFormat(text: string): LogFormat {
  const format = text.trim().toLowerCase();
  if (!(logFormats as readonly string[]).includes(format)) {
    throw new SluiceError(ErrorCode.INVALID_SCHEMA, `unknown log format '${text}': use one of ${logFormats.join(', ')}`);
  }
  return format as LogFormat;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = parseLogLevel(options.level ?? 'info');
  const format = parseLogFormat(options.format ?? 'auto');
  const destination = options.destination ?? process.stdout;
  const prettyPrint = format === 'pretty' || (format === 'auto' && destination.isTTY === true);
  const settings = {
    level,
    base: { service: 'sluice' },
    ...(options.redactPaths !== undefined && options.redactPaths.length > 0 ? { redact: { paths: options.redactPaths, censor: '[redacted]' } } : {}),
  };
  if (!prettyPrint) return pino(settings, destination);
  // Synchronous pretty-printing on the main thread: a terminal reader's volume is small, and a
  // transport thread would lose the last lines of a crash.
  const stream = pretty({ colorize: destination.isTTY === true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service', destination });
  return pino(settings, stream);
}
