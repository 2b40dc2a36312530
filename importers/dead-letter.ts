/**
 * Dead-letter places: where a message goes when it cannot be mapped to parameters or its
 * transaction fails, with the reason, so that the stream goes on and nothing is silently lost.
 *
 * - table (default): a row in sluice_importer_dead_letters (added to the schema when an importer
 *   uses it), written through the router like any ad-hoc INSERT; query it with SQL.
 * - Kafka topic (Kafka importers): the original key, value and headers, plus headers
 *   sluice-reason, sluice-importer, sluice-topic, sluice-partition, sluice-offset.
 *
 * A write that fails (a partition queue full, the broker away) is retried with backoff until it
 * succeeds or the sink closes; only then is the message acknowledged at its source.
 */
import { Producer, type ProducerOptions } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { Router } from '../engine/execution/router.ts';
import { Status } from '../engine/server/protocol.ts';
import type { ImportMessage } from './mapping.ts';
import { importerNameLengthMax, topicLengthMax } from './exactly-once.ts';

export const deadLettersTable = 'sluice_importer_dead_letters';
export const deadLetterPayloadLengthMax = 65_536;
export const deadLetterReasonLengthMax = 4096;
export const deadLetterKeyLengthMax = 1024;
const retryDelayInitialMs = 20;
const retryDelayMaxMs = 2000;

export const deadLettersTableDdl = `
CREATE TABLE ${deadLettersTable} (
  id BIGINT NOT NULL PRIMARY KEY,
  importer VARCHAR(${importerNameLengthMax}) NOT NULL,
  topic VARCHAR(${topicLengthMax}) NOT NULL,
  source_partition INTEGER NOT NULL,
  source_offset BIGINT NOT NULL,
  message_key VARCHAR(${deadLetterKeyLengthMax}),
  payload VARCHAR(${deadLetterPayloadLengthMax}),
  reason VARCHAR(${deadLetterReasonLengthMax}) NOT NULL,
  failed_at TIMESTAMP NOT NULL
);
PARTITION TABLE ${deadLettersTable} ON COLUMN id;
`;

const insertDeadLetter = `INSERT INTO ${deadLettersTable} (id, importer, topic, source_partition, source_offset, message_key, payload, reason, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;

export interface DeadLetter {
  importer: string;
  message: ImportMessage;
  reason: string;
}

export interface DeadLetterSink {
  write(entry: DeadLetter): Promise<void>;
  close(): Promise<void>;
}

export type DeadLetterConfig = { table: true } | { topic: string };

/** Ids: milliseconds × 1024 + a counter, unique across restarts and within the 2^53 range. */
let lastIdMs = 0;
let idCounter = 0;
function nextId(): number {
  const now = Date.now();
  if (now > lastIdMs) {
    lastIdMs = now;
    idCounter = 0;
  } else if (++idCounter >= 1024) {
    lastIdMs++;
    idCounter = 0;
  }
  return lastIdMs * 1024 + idCounter;
}

function clip(text: string, lengthMax: number): string {
  return text.length <= lengthMax ? text : `${text.slice(0, lengthMax - 1)}…`;
}

/** The payload as text: UTF-8 when it is, else base64 with a 'base64:' prefix. */
export function payloadAsText(value: Buffer): string {
  const text = value.toString('utf8');
  return Buffer.from(text, 'utf8').equals(value) ? text : `base64:${value.toString('base64')}`;
}

async function retrying(what: () => Promise<void>, isClosed: () => boolean, logger: Logger | undefined, label: string): Promise<void> {
  let delay = retryDelayInitialMs;
  for (;;) {
    try {
      await what();
      return;
    } catch (error) {
      if (isClosed()) throw error;
      logger?.warn({ err: error }, `${label}: retrying in ${delay} ms`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, retryDelayMaxMs);
    }
  }
}

export class TableDeadLetterSink implements DeadLetterSink {
  private readonly router: Router;
  private readonly logger: Logger | undefined;
  private closed = false;

  constructor(router: Router, logger: Logger | undefined) {
    this.router = router;
    this.logger = logger;
  }

  write(entry: DeadLetter): Promise<void> {
    const message = entry.message;
    const params = [
      nextId(),
      entry.importer,
      message.topic,
      message.partition,
      message.offset,
      message.key === null ? null : clip(payloadAsText(message.key), deadLetterKeyLengthMax),
      clip(payloadAsText(message.value), deadLetterPayloadLengthMax),
      clip(entry.reason, deadLetterReasonLengthMax),
      Date.now(),
    ];
    return retrying(
      () => new Promise<void>((resolve, reject) => {
        this.router.submit('@AdHoc', [insertDeadLetter, params], {
          deliver: (_token, status, payload) => (status === Status.SUCCESS ? resolve() : reject(new Error(`dead-letter insert failed: ${JSON.stringify(payload)}`))),
        }, 0);
      }),
      () => this.closed,
      this.logger,
      `importer ${entry.importer}: dead letter to ${deadLettersTable}`,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export class KafkaDeadLetterSink implements DeadLetterSink {
  private readonly producer: Producer;
  private readonly topic: string;
  private readonly logger: Logger | undefined;
  private closed = false;

  constructor(topic: string, options: Pick<ProducerOptions<Buffer, Buffer, string, string>, 'bootstrapBrokers' | 'clientId'>, logger: Logger | undefined) {
    this.topic = topic;
    this.logger = logger;
    this.producer = new Producer({ ...options, autocreateTopics: true });
  }

  write(entry: DeadLetter): Promise<void> {
    const message = entry.message;
    const headers = new Map<Buffer, Buffer>();
    for (const [name, value] of Object.entries(message.headers)) headers.set(Buffer.from(name), Buffer.from(value));
    headers.set(Buffer.from('sluice-reason'), Buffer.from(clip(entry.reason, deadLetterReasonLengthMax)));
    headers.set(Buffer.from('sluice-importer'), Buffer.from(entry.importer));
    headers.set(Buffer.from('sluice-topic'), Buffer.from(message.topic));
    headers.set(Buffer.from('sluice-partition'), Buffer.from(String(message.partition)));
    headers.set(Buffer.from('sluice-offset'), Buffer.from(String(message.offset)));
    return retrying(
      async () => {
        await this.producer.send({ messages: [{ topic: this.topic, key: message.key ?? undefined, value: message.value, headers }] });
      },
      () => this.closed,
      this.logger,
      `importer ${entry.importer}: dead letter to topic ${this.topic}`,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.producer.close();
  }
}
