/**
 * The `importers` entries of the deployment file, checked before anything starts: every mistake
 * is reported as one INVALID_SCHEMA error naming the entry (`importers[1] (meters)`) and the
 * field, so a server never half-starts with a misread importer.
 *
 * ```json
 * "importers": [
 *   { "name": "readings", "type": "kafka", "brokers": ["127.0.0.1:9092"], "topics": ["readings"],
 *     "procedure": "IngestReading", "format": "json", "params": ["meter_id", "ts", "kwh"],
 *     "delivery": "exactly-once", "deadLetter": { "topic": "readings-dead" } },
 *   { "name": "plant", "type": "mqtt", "url": "mqtt://127.0.0.1:1883", "qos": 1,
 *     "topics": ["plant/{site}/meter/{meter_id}/reading"],
 *     "procedure": "IngestReading", "format": "json", "params": ["meter_id", "ts", "kwh"] }
 * ]
 * ```
 */
import { ErrorCode, SluiceError } from '../engine/errors.ts';
import type { DeadLetterConfig } from './dead-letter.ts';
import { importerNameLengthMax } from './exactly-once.ts';
import type { MappingConfig } from './mapping.ts';
import type { Delivery } from './pipeline.ts';

interface CommonConfig extends MappingConfig {
  name: string;
  procedure: string;
  deadLetter: DeadLetterConfig;
  inFlightMax?: number;
}

export interface KafkaImporterConfig extends CommonConfig {
  type: 'kafka';
  brokers: string[];
  topics: string[];
  delivery: Delivery;
  groupId?: string;
  clientId?: string;
  startFrom: 'earliest' | 'latest';
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
}

export interface MqttImporterConfig extends CommonConfig {
  type: 'mqtt';
  url: string;
  topics: string[];
  qos: 0 | 1;
  clientId?: string;
  username?: string;
  password?: string;
  sessionExpirySeconds?: number;
  receiveMaximum?: number;
}

export type ImporterConfig = KafkaImporterConfig | MqttImporterConfig;

const commonKeys = ['name', 'type', 'procedure', 'format', 'params', 'module', 'delimiter', 'deadLetter', 'inFlightMax'];
const kafkaKeys = [...commonKeys, 'brokers', 'topics', 'delivery', 'groupId', 'clientId', 'startFrom', 'sessionTimeoutMs', 'heartbeatIntervalMs'];
const mqttKeys = [...commonKeys, 'url', 'topics', 'qos', 'clientId', 'username', 'password', 'sessionExpirySeconds', 'receiveMaximum'];

function invalid(where: string, message: string): SluiceError {
  return new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: ${message}`);
}

function text(entry: Record<string, unknown>, key: string, where: string, required: boolean): string | undefined {
  const value = entry[key];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value === '') throw invalid(where, `${key} must be a non-empty string${value === undefined ? ' (missing)' : `, got ${JSON.stringify(value)}`}`);
  return value;
}

function texts(entry: Record<string, unknown>, key: string, where: string): string[] {
  const value = entry[key];
  if (!Array.isArray(value) || value.length === 0 || value.some((item) => typeof item !== 'string' || item === '')) {
    throw invalid(where, `${key} must be a non-empty array of strings${value === undefined ? ' (missing)' : `, got ${JSON.stringify(value)}`}`);
  }
  return value as string[];
}

function positive(entry: Record<string, unknown>, key: string, where: string): number | undefined {
  const value = entry[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) throw invalid(where, `${key} must be a positive integer, got ${JSON.stringify(value)}`);
  return value;
}

function oneOf<T extends string | number>(entry: Record<string, unknown>, key: string, allowed: readonly T[], fallback: T, where: string): T {
  const value = entry[key];
  if (value === undefined) return fallback;
  if (!allowed.includes(value as T)) throw invalid(where, `${key} must be one of ${allowed.map((item) => JSON.stringify(item)).join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

/** Validates the deployment file's `importers` value. */
export function parseImporterConfigs(raw: unknown): ImporterConfig[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw invalid('importers', `must be an array of importer definitions, got ${JSON.stringify(raw)}`);
  const names = new Set<string>();
  return raw.map((item, index) => {
    let where = `importers[${index}]`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw invalid(where, `must be an object, got ${JSON.stringify(item)}`);
    const entry = item as Record<string, unknown>;
    const name = text(entry, 'name', where, true)!;
    where = `importers[${index}] (${name})`;
    if (name.length > importerNameLengthMax || !/^[A-Za-z0-9_.-]+$/.test(name)) throw invalid(where, `name must be letters, digits, '_', '.' or '-', at most ${importerNameLengthMax} characters`);
    if (names.has(name)) throw invalid(where, `another importer is also named ${name}`);
    names.add(name);
    const type = oneOf(entry, 'type', ['kafka', 'mqtt'] as const, undefined as unknown as 'kafka', where);
    if (type === undefined) throw invalid(where, `type must be "kafka" or "mqtt" (missing)`);
    const known = type === 'kafka' ? kafkaKeys : mqttKeys;
    for (const key of Object.keys(entry)) if (!known.includes(key)) throw invalid(where, `unknown setting ${key} for a ${type} importer (known: ${known.join(', ')})`);
    const format = oneOf(entry, 'format', ['json', 'csv', 'function'] as const, 'json', where);
    const params = entry.params;
    if (params !== undefined && (!Array.isArray(params) || params.some((param) => typeof param !== 'string' && typeof param !== 'number'))) {
      throw invalid(where, `params must be an array of field paths or column numbers, got ${JSON.stringify(params)}`);
    }
    let deadLetter: DeadLetterConfig = { table: true };
    const dead = entry.deadLetter;
    if (dead !== undefined) {
      const spec = dead as Record<string, unknown>;
      if (spec !== null && typeof spec === 'object' && spec.table === true && Object.keys(spec).length === 1) deadLetter = { table: true };
      else if (spec !== null && typeof spec === 'object' && typeof spec.topic === 'string' && spec.topic !== '' && Object.keys(spec).length === 1) {
        if (type !== 'kafka') throw invalid(where, 'deadLetter.topic is for Kafka importers; use { "table": true }');
        deadLetter = { topic: spec.topic };
      } else throw invalid(where, `deadLetter must be { "table": true } or { "topic": "name" }, got ${JSON.stringify(dead)}`);
    }
    const common: CommonConfig = {
      name,
      procedure: text(entry, 'procedure', where, true)!,
      format,
      params: params as (string | number)[] | undefined,
      module: text(entry, 'module', where, format === 'function'),
      delimiter: text(entry, 'delimiter', where, false),
      deadLetter,
      inFlightMax: positive(entry, 'inFlightMax', where),
    };
    if (type === 'kafka') {
      return {
        ...common,
        type,
        brokers: texts(entry, 'brokers', where),
        topics: texts(entry, 'topics', where),
        delivery: oneOf(entry, 'delivery', ['at-least-once', 'exactly-once'] as const, 'at-least-once', where),
        groupId: text(entry, 'groupId', where, false),
        clientId: text(entry, 'clientId', where, false),
        startFrom: oneOf(entry, 'startFrom', ['earliest', 'latest'] as const, 'earliest', where),
        sessionTimeoutMs: positive(entry, 'sessionTimeoutMs', where),
        heartbeatIntervalMs: positive(entry, 'heartbeatIntervalMs', where),
      } satisfies KafkaImporterConfig;
    }
    const url = text(entry, 'url', where, true)!;
    if (!/^(mqtts?|wss?|tcp|ssl):\/\//.test(url)) throw invalid(where, `url must be mqtt://host:port (or mqtts://, ws://, wss://), got ${JSON.stringify(url)}`);
    return {
      ...common,
      type,
      url,
      topics: texts(entry, 'topics', where),
      qos: oneOf(entry, 'qos', [0, 1] as const, 1, where),
      clientId: text(entry, 'clientId', where, false),
      username: text(entry, 'username', where, false),
      password: text(entry, 'password', where, false),
      sessionExpirySeconds: positive(entry, 'sessionExpirySeconds', where),
      receiveMaximum: positive(entry, 'receiveMaximum', where),
    } satisfies MqttImporterConfig;
  });
}
