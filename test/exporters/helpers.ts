/**
 * Helpers for the network export targets' tests: a stream's definition from DDL, batches of rows
 * shaped as the pipeline hands them (exporters/target.ts), and the rule for tests that need an
 * external service — skip with a printed reason when its address is not set, fail under CI=true.
 */
import net from 'node:net';
import { Consumer, type Message } from '@platformatic/kafka';
import { describe } from 'vitest';
import { serviceAddress, uniqueName } from '../services/env.ts';
import { applyDdl } from '../../engine/catalog/ddl.ts';
import type { TableDef } from '../../engine/catalog/schema.ts';
import type { Value } from '../../engine/types.ts';
import type { ExportBatch, ExportTarget } from '../../exporters/target.ts';

/** The alert stream the tests export: partitioned by meter, with every JSON-relevant type. */
export const alertsDdl = `
CREATE STREAM meter_alerts PARTITION ON COLUMN meter_id EXPORT TO TARGET alerts (
  meter_id BIGINT NOT NULL,
  region VARCHAR(32),
  kind VARCHAR(32) NOT NULL,
  kwh DECIMAL(12,3),
  at TIMESTAMP NOT NULL,
  raw VARBINARY(16),
  urgent BOOLEAN
);`;

export function streamDef(ddl = alertsDdl, name = 'meter_alerts'): TableDef {
  const def = applyDdl(ddl).tables.get(name);
  if (def === undefined) throw new Error(`no stream ${name} in the test DDL`);
  return def;
}

/** A row of meter_alerts for meter `meter` with a recognisable sequence-derived payload. */
export function alertRow(meter: number, n: number, region = 'north'): Value[] {
  return [meter, region, `kind-${n}`, n / 1000, Date.UTC(2026, 10, 22, 8, 0, 0) + n, new Uint8Array([n & 0xff, 1, 2]), n % 2 === 0];
}

export function batchOf(def: TableDef, partition: number, firstSequence: number, rows: Value[][]): ExportBatch {
  const committedAt = Date.UTC(2026, 10, 22, 9, 0, 0);
  return { stream: def.name, partition, columns: def.columns.filter((column) => !column.hidden), firstSequence, rows, commitTimestamps: rows.map(() => committedAt) };
}

/**
 * `describe` for tests needing the service at env var `variable` (test/services/env.ts): skipped
 * with a printed reason when it is unset, and failing under CI=true, which starts every service.
 */
export function describeWithService(variable: string, howToStart: string, title: string, body: (address: string) => void): void {
  const address = serviceAddress(variable, howToStart);
  describe.skipIf(address === undefined)(title, () => body(address ?? ''));
}

/** Polls `condition` every 10 ms until it holds or `timeoutMs` passes; returns whether it held. */
export async function eventually(condition: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

export { uniqueName } from '../services/env.ts';

/**
 * A TCP proxy in front of a real service, so a test can take "the service" down and bring it back
 * without touching the shared broker other tests use: `cut()` drops every connection and stops
 * listening, `restore()` listens on the same port again.
 */
export interface TcpProxy {
  readonly port: number;
  /** While on, the service's answers are thrown away: requests arrive, nobody hears back. */
  muteAnswers(on: boolean): void;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** `listenPort` 0 takes a free port; a fixed one is for a port a broker advertises (kafka.sh OUTAGE). */
export async function startTcpProxy(host: string, port: number, listenPort = 0): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let muted = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    sockets.add(client);
    sockets.add(upstream);
    const forget = (): void => {
      sockets.delete(client);
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', forget).on('close', forget);
    upstream.on('error', forget).on('close', forget);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (!muted) client.write(chunk);
    });
  });
  const listen = (at: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(at, '127.0.0.1', () => {
        server.off('error', reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  const proxyPort = await listen(listenPort);
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      if (!server.listening) resolve();
      else server.close(() => resolve());
    });
  return { port: proxyPort, muteAnswers: (on) => void (muted = on), cut: stop, restore: async () => void (await listen(proxyPort)), close: stop };
}

/**
 * What the export pipeline does with a target, reduced to a loop: deliver, and on failure retry
 * the same batch after `delayMs` until it is acknowledged. Returns the failures it saw.
 */
export async function deliverUntilAcknowledged(target: ExportTarget, batch: ExportBatch, delayMs = 50, attemptsMax = 400): Promise<Error[]> {
  const failures: Error[] = [];
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    try {
      await target.deliver(batch);
      return failures;
    } catch (error) {
      failures.push(error as Error);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
  throw new Error(`batch from ${batch.firstSequence} never acknowledged; last error: ${failures.at(-1)?.message}`);
}

/** Sequences in the order they arrived → first occurrences in order, and how many repeats. */
export function dedupe(sequences: readonly number[]): { unique: number[]; duplicates: number } {
  const seen = new Set<number>();
  const unique: number[] = [];
  for (const sequence of sequences) {
    if (seen.has(sequence)) continue;
    seen.add(sequence);
    unique.push(sequence);
  }
  return { unique, duplicates: sequences.length - unique.length };
}

export function range(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

/** A record the kafka target produced, as a consumer reads it back. */
export interface KafkaRecord {
  key: string;
  value: { [column: string]: unknown };
  stream: string;
  partition: number;
  sequence: number;
  timestamp: bigint;
}

/**
 * Reads `topic` from its start with a consumer group of its own; the array fills as records
 * arrive. `onCleanup` receives what closes the consumer.
 */
export async function consumeTopic(brokers: string[], topic: string, onCleanup: (close: () => Promise<unknown>) => void): Promise<KafkaRecord[]> {
  const consumer = new Consumer({ groupId: uniqueName('exportnet-group'), clientId: uniqueName('exportnet-consumer'), bootstrapBrokers: brokers });
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, sessionTimeout: 10_000, heartbeatInterval: 500 });
  onCleanup(async () => {
    await stream.close();
    await consumer.close(true);
  });
  const records: KafkaRecord[] = [];
  stream.on('data', (message: Message<Buffer, Buffer, Buffer, Buffer>) => {
    const header = (name: string): string => {
      for (const [key, value] of message.headers) if (key.toString() === name) return value.toString();
      return '';
    };
    records.push({ key: message.key.toString(), value: JSON.parse(message.value.toString()), stream: header('sluice-stream'), partition: Number(header('sluice-partition')), sequence: Number(header('sluice-sequence')), timestamp: message.timestamp });
  });
  return records;
}
