/**
 * The deployment file's `exports` section: targets, the buffer bound and its backpressure mode,
 * and the end-of-day jobs. `parseExportsConfig` checks every setting the pipeline reads and
 * substitutes secrets from the environment, so a mistake stops the start with one message that
 * names the setting (`exports.targets[1].type: …`) instead of surfacing at the first delivery.
 * Each target type checks its own settings when it is created (exporters/targets.ts).
 *
 * Secrets: any string setting may contain `${NAME}` (replaced by the environment variable), and a
 * setting `xEnv: "NAME"` sets `x` from the variable NAME (`passwordEnv: "PGPASSWORD"`). A missing
 * variable is an error, never an empty password.
 */
import { ErrorCode, SluiceError } from '../engine/errors.ts';
import type { TargetConfig } from './target.ts';

export const targetTypes = ['file', 'postgresql', 'kafka', 'mqtt', 'http'] as const;

/** Pending bytes per stream partition before backpressure, by default. */
export const bufferBytesMaxDefault = 256 * 1024 * 1024;
/** Rows per delivery unless the target says otherwise. */
export const batchRowsMaxDefault = 10_000;
export const batchBytesMaxDefault = 16 * 1024 * 1024;
export const backoffMsMinDefault = 100;
export const backoffMsMaxDefault = 30_000;

export type OnFull = 'wait' | 'fail';

export interface BufferConfig {
  /** Bytes (as stored, msgpack) of undelivered rows per stream partition before backpressure. */
  readonly bytesMax: number;
  readonly onFull: OnFull;
}

export interface DailyJobConfig {
  readonly name: string;
  /** Time of day and IANA time zone, "00:05 Europe/Copenhagen"; omitted: run by hand only. */
  readonly daily: string | undefined;
  readonly target: string;
  /** SQL run over the day: its `?` parameters get the day's start and end (ms, end exclusive). */
  readonly query: string | undefined;
  /** Or a procedure called with (dayStart, dayEnd) that returns rows (objects) or a result table. */
  readonly procedure: string | undefined;
  /** Time zone that defines the day, taken from `daily` or set alone; default UTC. */
  readonly timeZone: string;
  /** Minutes after midnight at which the job runs, when `daily` is set. */
  readonly minuteOfDay: number | undefined;
  /** Where the target writes the result: a table for postgresql, a folder name for file. */
  readonly table: string | undefined;
}

export interface ExportsConfig {
  readonly targets: readonly TargetConfig[];
  readonly buffer: BufferConfig;
  readonly daily: readonly DailyJobConfig[];
  /** True when the deployment configured nothing (embedded defaults apply). */
  readonly empty: boolean;
}

export function configError(path: (string | number)[], message: string): SluiceError {
  return new SluiceError(ErrorCode.EXPORT_CONFIG, `${renderPath(path)}: ${message}`, { path });
}

function renderPath(path: (string | number)[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks `raw` (the `exports` value of a deployment file, or undefined) and resolves secrets. */
export function parseExportsConfig(raw: unknown, env: Record<string, string | undefined> = process.env): ExportsConfig {
  if (raw === undefined || raw === null) return { targets: [], buffer: { bytesMax: bufferBytesMaxDefault, onFull: 'wait' }, daily: [], empty: true };
  if (!isObject(raw)) throw configError(['exports'], `expected an object with targets, buffer and daily, got ${describe(raw)}`);
  for (const key of Object.keys(raw)) {
    if (!['targets', 'buffer', 'daily'].includes(key)) throw configError(['exports', key], 'unknown setting; expected targets, buffer or daily');
  }
  const targets = parseTargets(raw.targets, env);
  const buffer = parseBuffer(raw.buffer);
  const daily = parseDaily(raw.daily, targets);
  return { targets, buffer, daily, empty: targets.length === 0 && daily.length === 0 && raw.buffer === undefined };
}

function parseTargets(raw: unknown, env: Record<string, string | undefined>): TargetConfig[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw configError(['exports', 'targets'], `expected a list of targets, got ${describe(raw)}`);
  const names = new Set<string>();
  return raw.map((entry, i) => {
    const path = ['exports', 'targets', i];
    if (!isObject(entry)) throw configError(path, `expected an object {name, type, …}, got ${describe(entry)}`);
    const resolved = resolveSecrets(entry, path, env);
    const name = resolved.name;
    if (typeof name !== 'string' || !/^\w+$/.test(name)) throw configError([...path, 'name'], `expected a name of letters, digits and _ (as EXPORT TO TARGET spells it), got ${describe(name)}`);
    const lower = name.toLowerCase();
    if (names.has(lower)) throw configError([...path, 'name'], `target ${name} is configured twice`);
    names.add(lower);
    const type = resolved.type;
    if (typeof type !== 'string' || !(targetTypes as readonly string[]).includes(type)) {
      throw configError([...path, 'type'], `expected one of ${targetTypes.join(', ')}, got ${describe(type)}`);
    }
    positiveInteger(resolved.batchRowsMax, [...path, 'batchRowsMax']);
    positiveInteger(resolved.batchBytesMax, [...path, 'batchBytesMax']);
    nonNegativeInteger(resolved.lingerMs, [...path, 'lingerMs']);
    positiveInteger(resolved.backoffMsMin, [...path, 'backoffMsMin']);
    positiveInteger(resolved.backoffMsMax, [...path, 'backoffMsMax']);
    return { ...resolved, name: lower, type } as TargetConfig;
  });
}

function parseBuffer(raw: unknown): BufferConfig {
  if (raw === undefined) return { bytesMax: bufferBytesMaxDefault, onFull: 'wait' };
  if (!isObject(raw)) throw configError(['exports', 'buffer'], `expected {bytesMax, onFull}, got ${describe(raw)}`);
  for (const key of Object.keys(raw)) {
    if (key !== 'bytesMax' && key !== 'onFull') throw configError(['exports', 'buffer', key], 'unknown setting; expected bytesMax or onFull');
  }
  positiveInteger(raw.bytesMax, ['exports', 'buffer', 'bytesMax']);
  if (raw.onFull !== undefined && raw.onFull !== 'wait' && raw.onFull !== 'fail') {
    throw configError(['exports', 'buffer', 'onFull'], `expected "wait" or "fail", got ${describe(raw.onFull)}`);
  }
  return { bytesMax: (raw.bytesMax as number | undefined) ?? bufferBytesMaxDefault, onFull: (raw.onFull as OnFull | undefined) ?? 'wait' };
}

function parseDaily(raw: unknown, targets: readonly TargetConfig[]): DailyJobConfig[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw configError(['exports', 'daily'], `expected a list of daily jobs, got ${describe(raw)}`);
  const names = new Set<string>();
  return raw.map((entry, i) => {
    const path = ['exports', 'daily', i];
    if (!isObject(entry)) throw configError(path, `expected an object {name, daily, target, query}, got ${describe(entry)}`);
    const name = entry.name;
    if (typeof name !== 'string' || !/^\w+$/.test(name)) throw configError([...path, 'name'], `expected a name of letters, digits and _, got ${describe(name)}`);
    if (names.has(name)) throw configError([...path, 'name'], `daily job ${name} is configured twice`);
    names.add(name);
    const target = entry.target;
    if (typeof target !== 'string' || !targets.some((t) => t.name === target.toLowerCase())) {
      throw configError([...path, 'target'], `expected the name of a configured target (${targets.map((t) => t.name).join(', ') || 'none configured'}), got ${describe(target)}`);
    }
    const query = entry.query;
    const procedure = entry.procedure;
    if ((query === undefined) === (procedure === undefined)) throw configError(path, 'give exactly one of query (SQL) or procedure');
    if (query !== undefined && typeof query !== 'string') throw configError([...path, 'query'], `expected SQL text, got ${describe(query)}`);
    if (procedure !== undefined && typeof procedure !== 'string') throw configError([...path, 'procedure'], `expected a procedure name, got ${describe(procedure)}`);
    let timeZone = 'UTC';
    let minuteOfDay: number | undefined;
    if (entry.daily !== undefined) {
      const match = typeof entry.daily === 'string' ? /^\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$/.exec(entry.daily) : null;
      if (!match || Number(match[1]) > 23 || Number(match[2]) > 59) {
        throw configError([...path, 'daily'], `expected "HH:MM Area/City" such as "00:05 Europe/Copenhagen", got ${describe(entry.daily)}`);
      }
      minuteOfDay = Number(match[1]) * 60 + Number(match[2]);
      if (match[3]) timeZone = match[3];
    }
    if (entry.timeZone !== undefined) {
      if (typeof entry.timeZone !== 'string') throw configError([...path, 'timeZone'], `expected an IANA time zone, got ${describe(entry.timeZone)}`);
      timeZone = entry.timeZone;
    }
    if (!validTimeZone(timeZone)) throw configError([...path, entry.daily !== undefined ? 'daily' : 'timeZone'], `unknown time zone ${JSON.stringify(timeZone)}; expected an IANA name such as Europe/Copenhagen`);
    if (entry.table !== undefined && (typeof entry.table !== 'string' || !/^[\w.]+$/.test(entry.table))) {
      throw configError([...path, 'table'], `expected a table name, got ${describe(entry.table)}`);
    }
    return {
      name,
      daily: entry.daily as string | undefined,
      target: target.toLowerCase(),
      query: query as string | undefined,
      procedure: procedure as string | undefined,
      timeZone,
      minuteOfDay,
      table: entry.table as string | undefined,
    };
  });
}

export function validTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** `${NAME}` in strings and `xEnv: "NAME"` settings, resolved from `env`. */
function resolveSecrets(entry: Record<string, unknown>, path: (string | number)[], env: Record<string, string | undefined>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entry)) {
    if (key.endsWith('Env') && key.length > 3 && typeof value === 'string') {
      const variable = env[value];
      if (variable === undefined) throw configError([...path, key], `environment variable ${value} is not set`);
      out[key.slice(0, -3)] = variable;
      continue;
    }
    out[key] = typeof value === 'string' ? substitute(value, [...path, key], env) : value;
  }
  return out;
}

function substitute(text: string, path: (string | number)[], env: Record<string, string | undefined>): string {
  return text.replace(/\$\{(\w+)\}/g, (_, name: string) => {
    const variable = env[name];
    if (variable === undefined) throw configError(path, `environment variable ${name} is not set`);
    return variable;
  });
}

export function positiveInteger(value: unknown, path: (string | number)[]): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) <= 0)) throw configError(path, `expected a positive integer, got ${describe(value)}`);
}

export function nonNegativeInteger(value: unknown, path: (string | number)[]): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) < 0)) throw configError(path, `expected an integer ≥ 0, got ${describe(value)}`);
}

export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}
