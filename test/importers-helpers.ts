/**
 * Helpers for the importer integration tests: wait for a condition (bounded, with a message that
 * says what never happened), count rows through a router, produce test messages to Kafka, and run
 * a server in a child process that can be killed.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { Admin, Consumer, Producer } from '@platformatic/kafka';
import type { Router } from '../engine/execution/router.ts';

export const waitTimeoutMs = 45_000;
const pollIntervalMs = 100;

/** Polls `check` until it returns true; throws naming `what` after `timeoutMs`. */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = waitTimeoutMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
}

/** Rows of an ad-hoc query, run through the router. */
export async function queryRows(router: Router, sql: string, params: unknown[] = []): Promise<unknown[][]> {
  const result = (await router.call('@AdHoc', sql, params)) as { rows: unknown[][] };
  return result.rows;
}

export async function countRows(router: Router, table: string): Promise<number> {
  return (await queryRows(router, `SELECT COUNT(*) FROM ${table}`))[0][0] as number;
}

export async function createTopic(brokers: string[], topic: string, partitions: number): Promise<void> {
  const admin = new Admin({ clientId: `${topic}-admin`, bootstrapBrokers: brokers });
  try {
    await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
  } finally {
    await admin.close();
  }
}

/** Messages stored in the topic (the sum of its partitions' end offsets; the tests never delete records). */
export async function topicSize(brokers: string[], topic: string): Promise<number> {
  const consumer = new Consumer({ groupId: `${topic}-size`, clientId: `${topic}-size`, bootstrapBrokers: brokers });
  try {
    const ends = await consumer.listOffsets({ topics: [topic] });
    return (ends.get(topic) ?? []).reduce((sum, offset) => sum + Number(offset), 0);
  } finally {
    await consumer.close(true);
  }
}

export async function deleteTopics(brokers: string[], topics: string[]): Promise<void> {
  const admin = new Admin({ clientId: `cleanup-admin-${process.pid}`, bootstrapBrokers: brokers });
  try {
    await admin.deleteTopics({ topics });
  } catch {
    // Best effort: a topic left behind only costs disk in the test broker.
  } finally {
    await admin.close();
  }
}

export interface TestMessage {
  key?: string;
  value: string;
  partition?: number;
}

/**
 * Sends messages in order, in batches, with an idempotent producer: a batch retried after a slow
 * acknowledgement (a busy machine) must not land twice, or the tests would count duplicates that
 * the importer never made.
 */
export async function produce(brokers: string[], topic: string, messages: TestMessage[], batchSize = 500): Promise<void> {
  const producer = new Producer({ clientId: `${topic}-producer`, bootstrapBrokers: brokers, idempotent: true });
  try {
    for (let i = 0; i < messages.length; i += batchSize) {
      await producer.send({
        messages: messages.slice(i, i + batchSize).map((message) => ({
          topic,
          key: message.key === undefined ? undefined : Buffer.from(message.key),
          value: Buffer.from(message.value),
          partition: message.partition,
        })),
      });
    }
  } finally {
    await producer.close();
  }
}

/** One JSON reading per sequence number; keys (meter ids) spread readings over partitions. */
export function readings(from: number, to: number, meters = 17): TestMessage[] {
  const messages: TestMessage[] = [];
  for (let seq = from; seq < to; seq++) {
    const meter = 1000 + (seq % meters);
    messages.push({ key: String(meter), value: JSON.stringify({ meter, seq, kwh: (seq % 50) / 4, site: `site-${seq % 3}` }) });
  }
  return messages;
}

/** A Sluice server in a child process (`sluice start --deployment`), so a test can kill -9 it. */
export interface ServerProcess {
  readonly url: string;
  readonly output: string[];
  /** SIGKILL: no shutdown, no flush, no goodbye to the brokers. */
  kill(): Promise<void>;
  /** SIGTERM and wait for a clean exit. */
  stop(): Promise<void>;
}

export async function startServerProcess(deployment: Record<string, unknown>, folder: string): Promise<ServerProcess> {
  const file = path.join(folder, 'sluice.json');
  await writeFile(file, JSON.stringify(deployment));
  const child = spawn(process.execPath, ['client/cli.ts', 'start', '--deployment', file, '--port', '0', '--host', '127.0.0.1', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the server exited with ${code} before listening:\n${output.join('')}`)));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      try {
        const entry = JSON.parse(line) as { url?: unknown };
        if (typeof entry.url === 'string') resolve(entry.url);
      } catch {
        // Not a log line (a progress bar): keep it for the failure message only.
      }
    });
  });
  return {
    url,
    output,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
