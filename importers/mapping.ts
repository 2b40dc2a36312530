/**
 * Message → procedure parameters, for every importer (Kafka, MQTT). A mapping is built once when
 * the importer starts, checked against the procedure it feeds (parameter count), and then applied
 * to each message; a message it cannot map throws a SluiceError naming what was wrong, and the
 * importer sends that message to its dead-letter place.
 *
 * Formats:
 * - json: `params` lists one path per parameter into the JSON payload (`meter_id`,
 *   `reading.kwh`, `items[0].sku`), a topic variable of an MQTT topic template (`{site}` in
 *   `plant/{site}/meter/{meter_id}/reading` is the parameter `site`), or a message property
 *   (`$key`, `$topic`, `$partition`, `$offset`, `$timestamp`, `$value`).
 * - csv: the payload is one CSV record (csv-parse); `params` lists 0-based column numbers or
 *   message properties; without `params`, the columns in order.
 * - function: `module` names a file in the procedures folder whose default export maps an
 *   ImportMessage to the parameter array. It runs on the router thread, outside any transaction,
 *   so it may do whatever a mapping needs (its output is what the command log records).
 *
 * Text values (CSV fields, topic levels, JSON strings) are converted to the procedure's declared
 * parameter types (BIGINT '42' → 42, TIMESTAMP '2026-12-01T10:00:00Z' → ms); an empty CSV field
 * is NULL.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseCsv } from 'csv-parse/sync';
import { ErrorCode, SluiceError } from '../engine/errors.ts';
import { isIntegerType, type SqlType } from '../engine/types.ts';

/** One message as every importer hands it to its mapping. */
export interface ImportMessage {
  /** Kafka topic or MQTT topic (the concrete one, not the filter). */
  readonly topic: string;
  /** Kafka partition; 0 for MQTT. */
  readonly partition: number;
  /** Kafka offset; -1 for MQTT. */
  readonly offset: number;
  readonly key: Buffer | null;
  readonly value: Buffer;
  /** Producer (Kafka) or arrival (MQTT) time, ms since the epoch. */
  readonly timestamp: number;
  readonly headers: Readonly<Record<string, string>>;
  /** Values of an MQTT topic template's {variables}; empty for Kafka. */
  readonly topicValues: Readonly<Record<string, string>>;
}

export type MappingFunction = (message: ImportMessage) => unknown[];

export type MappingFormat = 'json' | 'csv' | 'function';

export interface MappingConfig {
  format: MappingFormat;
  params?: (string | number)[];
  /** format 'function': file in the procedures folder. */
  module?: string;
  /** format 'csv': field delimiter, default ','. */
  delimiter?: string;
}

export interface Mapping {
  (message: ImportMessage): unknown[];
}

const messageProperties = ['$key', '$topic', '$partition', '$offset', '$timestamp', '$value'] as const;
type MessageProperty = (typeof messageProperties)[number];

/** The largest payload a mapping parses; bigger messages are dead-lettered, not parsed. */
export const payloadBytesMax = 4 * 1024 * 1024;

/**
 * Builds the mapping of one importer. `where` names the importer in error messages;
 * `parameterTypes` are the procedure's declared types (undefined: pass values through);
 * `topicVariables` are the MQTT template's variable names.
 */
export async function buildMapping(config: MappingConfig, options: {
  where: string;
  procedure: string;
  parameterCount: number;
  parameterTypes: readonly SqlType[] | undefined;
  proceduresDir: string;
  topicVariables?: readonly string[];
}): Promise<Mapping> {
  const { where, procedure, parameterCount, parameterTypes } = options;
  const convert = (values: unknown[]): unknown[] => {
    if (values.length !== parameterCount) {
      throw new SluiceError(ErrorCode.PARAM_COUNT, `${where}: the mapping gave ${values.length} value(s), procedure ${procedure} takes ${parameterCount}`, { object: procedure });
    }
    if (parameterTypes === undefined) return values;
    return values.map((value, i) => fromText(value, parameterTypes[i], `parameter ${i + 1} of ${procedure}`));
  };

  if (config.format === 'function') {
    const fn = await loadMappingFunction(config.module, options.proceduresDir, where);
    return (message) => {
      let values: unknown;
      try {
        values = fn(message);
      } catch (error) {
        throw new SluiceError(ErrorCode.PARAM_TYPE, `${where}: the mapping function ${config.module} failed: ${(error as Error)?.message ?? String(error)}`);
      }
      if (!Array.isArray(values)) throw new SluiceError(ErrorCode.PARAM_TYPE, `${where}: the mapping function ${config.module} must return an array of parameters, got ${typeof values}`);
      return convert(values);
    };
  }

  const topicVariables = new Set(options.topicVariables ?? []);
  if (config.format === 'csv') {
    const fields = config.params ?? Array.from({ length: parameterCount }, (_, i) => i);
    checkParamCount(fields.length, parameterCount, where, procedure);
    for (const field of fields) {
      if (typeof field === 'number' ? !Number.isInteger(field) || field < 0 : !isProperty(field) && !topicVariables.has(field)) {
        throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: csv params are 0-based column numbers, topic variables or one of ${messageProperties.join(', ')}; got ${JSON.stringify(field)}`);
      }
    }
    const delimiter = config.delimiter ?? ',';
    return (message) => {
      const record = parseRecord(payloadText(message, where), delimiter, where);
      return convert(fields.map((field) => {
        if (typeof field === 'number') {
          if (field >= record.length) throw new SluiceError(ErrorCode.PARAM_COUNT, `${where}: the CSV record has ${record.length} field(s); column ${field} is missing`);
          return record[field] === '' ? null : record[field];
        }
        return topicVariables.has(field) ? message.topicValues[field] : propertyOf(message, field as MessageProperty);
      }));
    };
  }

  if (config.format !== 'json') {
    throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: format must be 'json', 'csv' or 'function', got ${JSON.stringify(config.format)}`);
  }
  const paths = config.params;
  if (paths === undefined) throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: format 'json' needs params: one field path per parameter of ${procedure}`);
  checkParamCount(paths.length, parameterCount, where, procedure);
  const getters = paths.map((entry) => {
    if (typeof entry !== 'string' || entry === '') throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: json params are field paths (text), got ${JSON.stringify(entry)}`);
    if (topicVariables.has(entry)) return (message: ImportMessage) => message.topicValues[entry];
    if (isProperty(entry)) return (message: ImportMessage) => propertyOf(message, entry);
    const steps = parsePath(entry, where);
    return (message: ImportMessage, document: unknown) => {
      let current = document;
      for (const step of steps) {
        if (current === null || typeof current !== 'object' || !(step in current)) {
          throw new SluiceError(ErrorCode.PARAM_COUNT, `${where}: the JSON payload has no field ${entry}`, { path: steps });
        }
        current = (current as Record<string | number, unknown>)[step];
      }
      return current;
    };
  });
  const needsDocument = paths.some((entry) => typeof entry === 'string' && !topicVariables.has(entry) && !isProperty(entry));
  return (message) => {
    let document: unknown;
    if (needsDocument) {
      const text = payloadText(message, where);
      try {
        document = JSON.parse(text);
      } catch (error) {
        throw new SluiceError(ErrorCode.SYNTAX, `${where}: the payload is not JSON: ${(error as Error).message}`);
      }
    }
    return convert(getters.map((get) => get(message, document)));
  };
}

function checkParamCount(count: number, parameterCount: number, where: string, procedure: string): void {
  if (count !== parameterCount) {
    throw new SluiceError(ErrorCode.PARAM_COUNT, `${where}: params maps ${count} value(s), but procedure ${procedure} takes ${parameterCount}`, { object: procedure });
  }
}

function isProperty(name: string): name is MessageProperty {
  return (messageProperties as readonly string[]).includes(name);
}

function propertyOf(message: ImportMessage, property: MessageProperty): unknown {
  switch (property) {
    case '$key':
      return message.key === null ? null : message.key.toString('utf8');
    case '$topic':
      return message.topic;
    case '$partition':
      return message.partition;
    case '$offset':
      return message.offset;
    case '$timestamp':
      return message.timestamp;
    case '$value':
      return message.value.toString('utf8');
  }
}

/** `a.b[2].c` → ['a', 'b', 2, 'c']. */
function parsePath(text: string, where: string): (string | number)[] {
  const steps: (string | number)[] = [];
  for (const part of text.split('.')) {
    const match = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (match === null || (match[1] === '' && match[2] === '')) throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: cannot read the field path ${JSON.stringify(text)}`);
    if (match[1] !== '') steps.push(match[1]);
    for (const index of match[2].matchAll(/\[(\d+)\]/g)) steps.push(Number(index[1]));
  }
  return steps;
}

function payloadText(message: ImportMessage, where: string): string {
  if (message.value.length > payloadBytesMax) throw new SluiceError(ErrorCode.VALUE_TOO_LONG, `${where}: the payload has ${message.value.length} bytes, more than ${payloadBytesMax}`);
  return message.value.toString('utf8');
}

function parseRecord(text: string, delimiter: string, where: string): string[] {
  let records: string[][];
  try {
    records = parseCsv(text, { delimiter, relax_column_count: true, trim: false }) as string[][];
  } catch (error) {
    throw new SluiceError(ErrorCode.SYNTAX, `${where}: the payload is not one CSV record: ${(error as Error).message}`);
  }
  if (records.length !== 1) throw new SluiceError(ErrorCode.SYNTAX, `${where}: the payload holds ${records.length} CSV records; one message is one record`);
  return records[0];
}

const integerText = /^\s*[-+]?\d+\s*$/;
const numberText = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;

/**
 * Text in, the declared type's value out: numbers for numeric types and numeric or ISO text for
 * TIMESTAMP, true/false/1/0 for BOOLEAN. Anything else passes through, so the router's own type
 * check names the parameter when it does not fit.
 */
export function fromText(value: unknown, type: SqlType | undefined, label: string): unknown {
  if (typeof value !== 'string' || type === undefined) return value;
  if (isIntegerType(type.name)) {
    if (!integerText.test(value)) throw new SluiceError(ErrorCode.TYPE_MISMATCH, `${label} is ${type.name}, but got ${JSON.stringify(shorten(value))}`);
    const number = Number(value);
    if (!Number.isSafeInteger(number)) throw new SluiceError(ErrorCode.VALUE_OUT_OF_RANGE, `${label}: ${shorten(value)} is outside ±(2^53−1)`);
    return number;
  }
  if (type.name === 'FLOAT' || type.name === 'DECIMAL') {
    if (!numberText.test(value)) throw new SluiceError(ErrorCode.TYPE_MISMATCH, `${label} is ${type.name}, but got ${JSON.stringify(shorten(value))}`);
    return Number(value);
  }
  if (type.name === 'TIMESTAMP') {
    if (integerText.test(value)) return Number(value);
    const ms = Date.parse(value);
    if (Number.isNaN(ms)) throw new SluiceError(ErrorCode.TYPE_MISMATCH, `${label} is TIMESTAMP (ms since the epoch or ISO 8601), but got ${JSON.stringify(shorten(value))}`);
    return ms;
  }
  if (type.name === 'BOOLEAN') {
    const lower = value.trim().toLowerCase();
    if (lower === 'true' || lower === '1') return true;
    if (lower === 'false' || lower === '0') return false;
    throw new SluiceError(ErrorCode.TYPE_MISMATCH, `${label} is BOOLEAN (true/false/1/0), but got ${JSON.stringify(shorten(value))}`);
  }
  return value;
}

function shorten(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

async function loadMappingFunction(module: string | undefined, proceduresDir: string, where: string): Promise<MappingFunction> {
  if (!module) throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: format 'function' needs module: a file in the procedures folder`);
  let root: string;
  let file: string;
  try {
    root = await realpath(path.resolve(proceduresDir));
    file = await realpath(path.resolve(root, module));
  } catch (error) {
    throw new SluiceError(ErrorCode.PROCEDURE_LOAD, `${where}: cannot find the mapping module ${module} in ${proceduresDir}: ${(error as Error).message}`);
  }
  if (!file.startsWith(root + path.sep)) throw new SluiceError(ErrorCode.PROCEDURE_LOAD, `${where}: the mapping module ${module} is outside the procedures folder ${root}`);
  const loaded = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (typeof loaded.default !== 'function') throw new SluiceError(ErrorCode.PROCEDURE_LOAD, `${where}: ${module} must export default a function (message) => parameters`);
  return loaded.default as MappingFunction;
}
