/**
 * The `kafka` export target: every stream row becomes one Kafka record on a topic, produced by
 * an idempotent producer with acks=all (@platformatic/kafka), so the broker keeps each record
 * once however often the client itself retries a request, and `deliver` resolves only when every
 * in-sync replica has the batch.
 *
 * - key: the value of the stream's partition column as text (exporters/row-json.ts), so all rows of
 *   one meter land on one Kafka partition in order. The `key` setting names another column; a
 *   stream without a partition column is keyed by its Sluice partition number.
 * - value: the row as JSON; timestamp: the row's commit time;
 * - headers `sluice-stream`, `sluice-partition`, `sluice-sequence`: delivery is at least once.
 *
 * A batch goes out as produce requests of at most `recordsPerSendMax` records, one after another;
 * each one the broker acknowledges is reported to the pipeline (ExportBatch.acknowledged), which
 * stores it as the stream partition's delivered position at once. So when `deliver` fails (broker
 * down, retries exhausted) the pipeline hands again only what follows the last acknowledged
 * request, and a restart resumes there too: requests that succeeded are not repeated.
 * The request that failed is sent again from a new producer (a new producer id, so the broker
 * cannot recognise a copy): when its failure leaves open whether the broker appended it (the
 * connection dropped after sending, a timeout), its records count as `duplicatesPossible`;
 * when it provably never got in (connection refused, the broker answered with an error) they do
 * not. Consumers drop real copies by the headers.
 */
import { Producer, type MessageToProduce } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { ColumnDef, TableDef } from '../engine/catalog/schema.ts';
import { rowToJson, valueToText } from './row-json.ts';
import { TargetSettings, type StreamShape, type NetworkTargetContext } from './settings.ts';
import type { ExportBatch, ExportTarget, TargetConfig } from './target.ts';

/** Records per produce request: bounds one request's size; requests of a batch go one after another. */
export const kafkaRecordsPerSendMax = 1000;
export const kafkaRequestTimeoutMs = 10_000;
/** The client's own retries of a failed request (it retries forever if left alone). */
export const kafkaRetriesMax = 5;
export const kafkaRetryDelayMs = 250;

const saslMechanisms = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;

interface KafkaSettings {
  brokers: string[];
  topic: string;
  key: string | undefined;
  clientId: string;
  requestTimeoutMs: number;
  retriesMax: number;
  retryDelayMs: number;
  recordsPerSendMax: number;
  tls: boolean;
  sasl: { mechanism: (typeof saslMechanisms)[number]; username: string; password: string } | undefined;
}

export function kafkaSettings(config: TargetConfig, context: NetworkTargetContext = {}): KafkaSettings {
  const settings = new TargetSettings(config, context.env);
  const brokers = settings.stringList('brokers');
  if (brokers === undefined || brokers.length === 0) throw settings.error('brokers', 'is required (for example "brokers": ["127.0.0.1:9092"])');
  for (const broker of brokers) if (!/^[^:\s]+:\d+$/.test(broker)) throw settings.error('brokers', `"${broker}" is not host:port`);
  const topic = settings.requiredString('topic', 'meter-alerts');
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(topic)) throw settings.error('topic', `"${topic}" is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)`);
  const key = settings.string('key')?.toLowerCase();
  for (const stream of context.streams ?? []) checkKey(settings, key, stream);
  const mechanism = settings.oneOf('saslMechanism', [...saslMechanisms, 'none'] as const, 'none');
  const username = settings.string('username');
  const password = settings.string('password');
  if (mechanism !== 'none' && (username === undefined || password === undefined)) throw settings.error('saslMechanism', `${mechanism} needs "username" and "password" (or "passwordEnv")`);
  const parsed: KafkaSettings = {
    brokers,
    topic,
    key,
    clientId: settings.string('clientId', `sluice-${config.name}`),
    requestTimeoutMs: settings.number('requestTimeoutMs', kafkaRequestTimeoutMs, { min: 100, max: 3_600_000 }),
    retriesMax: settings.number('retriesMax', kafkaRetriesMax, { min: 2, max: 1000, integer: true }),
    retryDelayMs: settings.number('retryDelayMs', kafkaRetryDelayMs, { min: 1, max: 600_000 }),
    recordsPerSendMax: settings.number('recordsPerSendMax', kafkaRecordsPerSendMax, { min: 1, max: 100_000, integer: true }),
    tls: settings.boolean('tls', false),
    sasl: mechanism === 'none' ? undefined : { mechanism, username: username!, password: password! },
  };
  settings.rejectUnknown();
  return parsed;
}

/** The `key` setting must name a column of every stream exporting to the target. */
function checkKey(settings: TargetSettings, key: string | undefined, stream: StreamShape): void {
  if (key !== undefined && !stream.columns.some((column) => column.name.toLowerCase() === key)) {
    throw settings.error('key', `names column ${key}, which stream ${stream.name} does not have (its columns: ${columnList(stream.columns)})`);
  }
}

function columnList(columns: readonly ColumnDef[]): string {
  return columns.filter((column) => !column.hidden).map((column) => column.name).join(', ');
}

export class KafkaTarget implements ExportTarget {
  readonly name: string;
  private readonly config: TargetConfig;
  private readonly settings: KafkaSettings;
  private readonly logger: Logger | undefined;
  private readonly streams = new Map<string, StreamShape>();
  private producer: Producer | undefined;
  private closed = false;
  /** Records acknowledged since the target was created. */
  produced = 0;
  /** Records sent again after a failed request that the broker may have appended (see above). */
  duplicatesPossible = 0;
  /** Per `stream\0partition`: the last sequence of a failed request the broker may have appended. */
  private readonly uncertain = new Map<string, number>();

  constructor(config: TargetConfig, context: NetworkTargetContext = {}) {
    this.name = config.name;
    this.config = config;
    this.settings = kafkaSettings(config, context);
    this.logger = context.logger;
    for (const stream of context.streams ?? []) this.streams.set(stream.name, stream);
  }

  /** A stream added live: keyed by its partition column (or the `key` column, which it must have). */
  addStream(stream: TableDef): void {
    checkKey(new TargetSettings(this.config), this.settings.key, stream);
    this.streams.set(stream.name, stream);
  }

  async deliver(batch: ExportBatch): Promise<void> {
    if (this.closed) throw new Error(`kafka target '${this.name}' is closed`);
    const keyColumn = this.keyColumn(batch);
    const producer = this.connection();
    const headersOf = (sequence: number): Map<Buffer, Buffer> =>
      new Map([
        [Buffer.from('sluice-stream'), Buffer.from(batch.stream)],
        [Buffer.from('sluice-partition'), Buffer.from(String(batch.partition))],
        [Buffer.from('sluice-sequence'), Buffer.from(String(sequence))],
      ]);
    const step = this.settings.recordsPerSendMax;
    const lane = `${batch.stream}\u0000${batch.partition}`;
    const uncertainLast = this.uncertain.get(lane) ?? 0;
    for (let start = 0; start < batch.rows.length; start += step) {
      const messages: MessageToProduce[] = [];
      for (let i = start; i < Math.min(batch.rows.length, start + step); i++) {
        const row = batch.rows[i];
        const key = keyColumn === undefined ? String(batch.partition) : valueToText(row[keyColumn.position] ?? null, keyColumn);
        const committedAt = batch.commitTimestamps[i];
        messages.push({
          topic: this.settings.topic,
          key: Buffer.from(key),
          value: Buffer.from(JSON.stringify(rowToJson(batch.columns, row))),
          headers: headersOf(batch.firstSequence + i),
          timestamp: committedAt === undefined ? undefined : BigInt(committedAt),
        });
      }
      const firstSequence = batch.firstSequence + start;
      const lastSequence = firstSequence + messages.length - 1;
      try {
        await producer.send({ messages });
      } catch (error) {
        // A fresh producer (new producer id) for the redelivery: this one's sequence state is unknown.
        this.discard(producer);
        if (!provablyNotAppended(error)) this.uncertain.set(lane, Math.max(uncertainLast, lastSequence));
        throw new Error(`kafka target '${this.name}': producing to topic ${this.settings.topic} at ${this.settings.brokers.join(',')} failed after ${start} of ${batch.rows.length} records of ${batch.stream} partition ${batch.partition} (from sequence ${batch.firstSequence}): ${describe(error)}`);
      }
      this.produced += messages.length;
      batch.acknowledged?.(lastSequence);
      if (uncertainLast >= firstSequence) {
        this.duplicatesPossible += Math.min(uncertainLast, lastSequence) - firstSequence + 1;
        if (uncertainLast <= lastSequence) this.uncertain.delete(lane);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const producer = this.producer;
    this.producer = undefined;
    if (producer !== undefined) await producer.close(true).catch(() => undefined);
  }

  /** The column whose value keys the records, or undefined to key by the Sluice partition. */
  private keyColumn(batch: ExportBatch): ColumnDef | undefined {
    const wanted = this.settings.key ?? partitionColumnName(this.streams.get(batch.stream));
    if (wanted === undefined) return undefined;
    const column = batch.columns.find((candidate) => candidate.name.toLowerCase() === wanted && !candidate.hidden);
    if (column === undefined) throw new Error(`kafka target '${this.name}': key column ${wanted} is not a column of stream ${batch.stream} (its columns: ${columnList(batch.columns)})`);
    return column;
  }

  private connection(): Producer {
    if (this.producer !== undefined) return this.producer;
    const s = this.settings;
    this.producer = new Producer({
      clientId: s.clientId,
      bootstrapBrokers: s.brokers,
      idempotent: true,
      acks: -1,
      retries: s.retriesMax,
      retryDelay: s.retryDelayMs,
      timeout: s.requestTimeoutMs,
      connectTimeout: s.requestTimeoutMs,
      requestTimeout: s.requestTimeoutMs,
      autocreateTopics: false,
      ...(s.tls ? { tls: {} } : {}),
      ...(s.sasl === undefined ? {} : { sasl: s.sasl }),
    });
    return this.producer;
  }

  private discard(producer: Producer): void {
    if (this.producer === producer) this.producer = undefined;
    producer.close(true).catch((error: unknown) => this.logger?.debug({ target: this.name, err: error }, 'closing a failed kafka producer'));
    this.logger?.warn({ target: this.name }, 'kafka target producer failed; the next delivery starts a new one');
  }
}

function partitionColumnName(stream: StreamShape | undefined): string | undefined {
  if (stream === undefined || stream.partitionColumn === undefined) return undefined;
  return stream.columns[stream.partitionColumn]?.name.toLowerCase();
}

/**
 * Whether a failed produce certainly left nothing at the broker: every attempt was refused a
 * connection or answered with an error. A dropped connection or a timeout after the request went
 * out leaves it open (the broker may have appended and its answer got lost).
 */
const brokerAnswersAfterAppend = new Set(['NOT_ENOUGH_REPLICAS_AFTER_APPEND', 'REQUEST_TIMED_OUT']);

function provablyNotAppended(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const nested = (error as Error & { errors?: unknown[] }).errors;
  if (Array.isArray(nested) && nested.length > 0) return nested.every(provablyNotAppended);
  const code = (error as Error & { code?: unknown }).code;
  if (code === 'ECONNREFUSED') return true;
  if (code === 'PLT_KFK_PROTOCOL') return !brokerAnswersAfterAppend.has(String((error as Error & { apiId?: unknown }).apiId));
  return error.cause !== undefined && provablyNotAppended(error.cause);
}

/** The library nests the real cause (a refused connection, an unknown topic) in `errors`/`cause`. */
function describe(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 4; depth++) {
    parts.push(current.message);
    const nested = (current as Error & { errors?: unknown[] }).errors;
    current = Array.isArray(nested) && nested.length > 0 ? nested[nested.length - 1] : current.cause;
  }
  return [...new Set(parts)].join(': ');
}
