/**
 * Reading an export target's settings (one entry of the deployment file's `exports.targets`) with
 * errors that name the target, the setting and what was wrong, and secrets taken from environment
 * variables so that passwords never sit in the deployment file:
 *
 * - `"password": "${MQTT_PASSWORD}"` — `${NAME}` inside any string setting is replaced by the
 *   environment variable NAME (an unset variable is an error, not an empty string);
 * - `"passwordEnv": "MQTT_PASSWORD"` — the setting `x` is read from the variable named by `xEnv`.
 *
 * Unknown settings are errors too (with a "did you mean"), because a misspelt `qos` that silently
 * falls back to a default is worse than a refusal to start.
 */
import type { Logger } from 'pino';
import type { ColumnDef } from '../engine/catalog/schema.ts';
import { ErrorCode, SluiceError, nearNames } from '../engine/errors.ts';
import type { TargetConfig } from './target.ts';

export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * Settings of every target that the export pipeline reads itself (batching, backoff between
 * redeliveries; exporters/config.ts checks them): a target accepts them without reading them.
 */
export const pipelineTargetSettings: readonly string[] = ['batchRowsMax', 'batchBytesMax', 'lingerMs', 'backoffMsMin', 'backoffMsMax'];

export class TargetSettings {
  readonly config: TargetConfig;
  private readonly env: Environment;
  private readonly read = new Set<string>(['name', 'type', ...pipelineTargetSettings]);

  constructor(config: TargetConfig, env: Environment = process.env) {
    this.config = config;
    this.env = env;
  }

  /** The error for a wrong setting: EXPORT_CONFIG naming target and setting. */
  error(key: string | undefined, problem: string): SluiceError {
    const where = key === undefined ? `export target '${this.config.name}' (${this.config.type})` : `export target '${this.config.name}' (${this.config.type}) setting '${key}'`;
    return new SluiceError(ErrorCode.EXPORT_CONFIG, `${where}: ${problem}`, { object: this.config.name, path: key === undefined ? ['targets', this.config.name] : ['targets', this.config.name, key] });
  }

  private raw(key: string): unknown {
    this.read.add(key);
    this.read.add(`${key}Env`);
    const fromEnv = this.config[`${key}Env`];
    if (fromEnv !== undefined) {
      if (typeof fromEnv !== 'string' || fromEnv === '') throw this.error(`${key}Env`, 'must name an environment variable');
      const value = this.env[fromEnv];
      if (value === undefined) throw this.error(`${key}Env`, `environment variable ${fromEnv} is not set`);
      return value;
    }
    const value = this.config[key];
    return typeof value === 'string' ? this.interpolate(key, value) : value;
  }

  private interpolate(key: string, text: string): string {
    return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const value = this.env[name];
      if (value === undefined) throw this.error(key, `environment variable ${name} (in "${text}") is not set`);
      return value;
    });
  }

  string(key: string): string | undefined;
  string(key: string, fallback: string): string;
  string(key: string, fallback?: string): string | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'string') throw this.error(key, `must be a string, got ${JSON.stringify(value)}`);
    return value;
  }

  requiredString(key: string, example: string): string {
    const value = this.string(key);
    if (value === undefined || value === '') throw this.error(key, `is required (for example "${key}": ${JSON.stringify(example)})`);
    return value;
  }

  number(key: string, fallback: number, range: { min: number; max: number; integer?: boolean }): number {
    let value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    // Settings from environment variables arrive as text.
    if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) value = Number(value);
    if (typeof value !== 'number' || !Number.isFinite(value) || (range.integer === true && !Number.isInteger(value))) {
      throw this.error(key, `must be ${range.integer === true ? 'an integer' : 'a number'}, got ${JSON.stringify(value)}`);
    }
    if (value < range.min || value > range.max) throw this.error(key, `must be between ${range.min} and ${range.max}, got ${value}`);
    return value;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    if (value === true || value === 'true') return true;
    if (value === false || value === 'false') return false;
    throw this.error(key, `must be true or false, got ${JSON.stringify(value)}`);
  }

  oneOf<T extends string | number>(key: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    const match = allowed.find((candidate) => candidate === value || String(candidate) === value);
    if (match === undefined) throw this.error(key, `must be one of ${allowed.map((candidate) => JSON.stringify(candidate)).join(', ')}, got ${JSON.stringify(value)}`);
    return match;
  }

  /** A list of strings: an array, or one comma-separated string. */
  stringList(key: string): string[] | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) return undefined;
    const list = typeof value === 'string' ? value.split(',').map((part) => part.trim()).filter((part) => part !== '') : value;
    if (!Array.isArray(list) || list.some((item) => typeof item !== 'string' || item === '')) throw this.error(key, `must be a list of strings, got ${JSON.stringify(value)}`);
    return list.map((item: string) => this.interpolate(key, item));
  }

  /** A map of string values (HTTP headers), each one interpolated. */
  stringMap(key: string): Record<string, string> {
    const value = this.raw(key);
    if (value === undefined || value === null) return {};
    if (typeof value !== 'object' || Array.isArray(value)) throw this.error(key, `must be an object of strings, got ${JSON.stringify(value)}`);
    const out: Record<string, string> = {};
    for (const [name, item] of Object.entries(value as Record<string, unknown>)) {
      if (typeof item !== 'string') throw this.error(key, `value of '${name}' must be a string, got ${JSON.stringify(item)}`);
      out[name] = this.interpolate(key, item);
    }
    return out;
  }

  /** Call once every setting has been read: refuses settings the target does not know. */
  rejectUnknown(): void {
    const known = [...this.read].filter((key) => key !== 'name' && key !== 'type' && !key.endsWith('Env') && !pipelineTargetSettings.includes(key));
    for (const key of Object.keys(this.config)) {
      if (this.read.has(key)) continue;
      const lower = key.toLowerCase();
      const suggestions = [...known.filter((candidate) => candidate.toLowerCase().startsWith(lower) || lower.startsWith(candidate.toLowerCase())), ...nearNames(key, known)];
      const hint = suggestions.length > 0 ? `; did you mean '${suggestions[0]}'?` : `; known settings: ${known.join(', ')}`;
      throw this.error(key, `is not a setting of ${this.config.type} targets${hint}`);
    }
  }
}

/** A stream exporting to a target, as the target needs to know it at creation. */
export interface StreamShape {
  readonly name: string;
  readonly columns: readonly ColumnDef[];
  /** Position of the partition column in `columns`; undefined when the stream has none. */
  readonly partitionColumn: number | undefined;
}

/** What a target factory gets besides its settings. */
export interface NetworkTargetContext {
  /** Streams that export to this target (the catalog's TableDefs fit): templates and keys are checked against them at creation. */
  readonly streams?: readonly StreamShape[];
  /** Where `${NAME}` and `xEnv` settings are looked up; default process.env. */
  readonly env?: Environment;
  /** Connection trouble is logged here (reconnects, retries); default: silent. */
  readonly logger?: Logger;
}
