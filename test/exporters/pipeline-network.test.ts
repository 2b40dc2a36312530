/**
 * The network targets behind the real export pipeline in a running server: procedures insert
 * into a stream with EXPORT TO TARGET, the deployment's `exports.targets` names an mqtt or http
 * target, and what arrives downstream is every committed row — in order per partition, none of an
 * aborted transaction — also when the receiver is down for a while (the pipeline retries).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Admin, Consumer, type Message } from '@platformatic/kafka';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { kafkaBrokersVariable, mqttUrlVariable } from '../services/env.ts';
import type raiseAlert from '../fixtures/alerts/raise-alert.ts';
import { client, serve } from '../server-helpers.ts';
import { dedupe, describeWithService, eventually, range, uniqueName } from './helpers.ts';

type AlertsApp = { RaiseAlert: typeof raiseAlert };

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

/** The alerts fixture with its stream exported to target `alerts`. */
async function exportedSchema(): Promise<string> {
  const ddl = await readFile('test/fixtures/alerts/ddl.sql', 'utf8');
  return ddl.replace('CREATE STREAM meter_alerts PARTITION ON COLUMN meter_id (', 'CREATE STREAM meter_alerts PARTITION ON COLUMN meter_id EXPORT TO TARGET alerts (');
}

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-exportnet-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Raises alerts for meters first…first+count-1; every `abortEvery`-th one aborts. */
async function raise(sdk: Awaited<ReturnType<typeof client<AlertsApp>>>, first: number, count: number, abortEvery = 0): Promise<number> {
  const outcomes = await Promise.allSettled(range(first, count).map((meter) => sdk.call('RaiseAlert', meter, meter % 2 === 0 ? 'north' : 'south', abortEvery > 0 && meter % abortEvery === 0 ? 'abort' : 'k')));
  return outcomes.filter((outcome) => outcome.status === 'fulfilled').length;
}

describeWithService(mqttUrlVariable, 'mosquitto -d -c /etc/mosquitto/mosquitto.conf', 'mqtt target behind the export pipeline', (brokerUrl) => {
  it('publishes every committed stream row and none of aborted transactions', async () => {
    const prefix = uniqueName('sluice-pipeline');
    const subscriber = await mqtt.connectAsync(brokerUrl, { protocolVersion: 5, reconnectPeriod: 0 });
    cleanup.push(() => subscriber.endAsync(true));
    const received: { kind: string; partition: number; sequence: number }[] = [];
    subscriber.on('message', (_topic, payload, packet) => {
      const properties = (packet.properties?.userProperties ?? {}) as Record<string, string>;
      received.push({ kind: JSON.parse(payload.toString()).kind, partition: Number(properties['sluice-partition']), sequence: Number(properties['sluice-sequence']) });
    });
    await subscriber.subscribeAsync(`${prefix}/#`, { qos: 1 });
    const server = await serve({
      schema: await exportedSchema(),
      procedures: 'test/fixtures/alerts',
      partitions: 2,
      data: await dataDir(),
      exports: { targets: [{ name: 'alerts', type: 'mqtt', url: brokerUrl, topic: `${prefix}/{region}/{meter_id}` }] },
    });
    const sdk = await client<AlertsApp>(server);
    const committed = await raise(sdk, 1, 60, 5);
    expect(committed).toBe(48);
    expect(await eventually(() => received.length >= 48, 20_000), `received ${received.length} of 48`).toBe(true);
    expect(received.some((message) => message.kind === 'abort')).toBe(false);
    for (const partition of [0, 1]) {
      const sequences = received.filter((message) => message.partition === partition).map((message) => message.sequence);
      expect(sequences).toEqual(range(1, sequences.length));
    }
  });
});

describe('http target behind the export pipeline', () => {
  it('loses nothing while the receiver answers 503 for a while', async () => {
    let failing = true;
    const posted: { partition: number; firstSequence: number; rows: unknown[] }[] = [];
    const receiver = http.createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        if (failing) {
          response.writeHead(503).end('maintenance');
          return;
        }
        posted.push(JSON.parse(Buffer.concat(chunks).toString()));
        response.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => { receiver.closeAllConnections(); receiver.close(resolve); }));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/alerts`;
    const server = await serve({
      schema: await exportedSchema(),
      procedures: 'test/fixtures/alerts',
      partitions: 2,
      data: await dataDir(),
      exports: { targets: [{ name: 'alerts', type: 'http', url, retriesMax: 1, retryDelayMinMs: 5, backoffMsMin: 20, backoffMsMax: 100 }] },
    });
    const sdk = await client<AlertsApp>(server);
    expect(await raise(sdk, 1, 40)).toBe(40);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(posted).toHaveLength(0);
    failing = false;
    expect(await raise(sdk, 41, 20)).toBe(20);
    const sequences = (partition: number): number[] => posted.filter((p) => p.partition === partition).flatMap((p) => range(p.firstSequence, p.rows.length));
    expect(await eventually(() => sequences(0).length + sequences(1).length >= 60, 20_000)).toBe(true);
    for (const partition of [0, 1]) {
      const { unique, duplicates } = dedupe(sequences(partition));
      expect(unique).toEqual(range(1, unique.length));
      expect(duplicates).toBe(0);
    }
    expect(sequences(0).length + sequences(1).length).toBe(60);
  });
});

describeWithService(kafkaBrokersVariable, 'bash test/services/kafka.sh', 'kafka target behind the export pipeline', (address) => {
  it('produces every committed stream row keyed by meter, none of aborted transactions', async () => {
    const brokers = address.split(',');
    const topic = uniqueName('sluice-pipeline');
    const admin = new Admin({ clientId: uniqueName('exportnet-admin'), bootstrapBrokers: brokers });
    cleanup.push(async () => {
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.close();
    });
    await admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 });
    const server = await serve({
      schema: await exportedSchema(),
      procedures: 'test/fixtures/alerts',
      partitions: 2,
      data: await dataDir(),
      exports: { targets: [{ name: 'alerts', type: 'kafka', brokers, topic }] },
    });
    const sdk = await client<AlertsApp>(server);
    expect(await raise(sdk, 1, 30, 4)).toBe(23);
    const consumer = new Consumer({ groupId: uniqueName('exportnet-group'), clientId: uniqueName('exportnet-consumer'), bootstrapBrokers: brokers });
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, sessionTimeout: 10_000, heartbeatInterval: 500 });
    cleanup.push(async () => {
      await stream.close();
      await consumer.close(true);
    });
    const received: { key: string; meter: number; kind: string }[] = [];
    stream.on('data', (message: Message<Buffer, Buffer, Buffer, Buffer>) => {
      const value = JSON.parse(message.value.toString());
      received.push({ key: message.key.toString(), meter: value.meter_id, kind: value.kind });
    });
    expect(await eventually(() => received.length >= 23, 30_000), `received ${received.length} of 23`).toBe(true);
    expect(received.every((r) => r.key === String(r.meter) && r.kind === 'k')).toBe(true);
    expect(received.map((r) => r.meter).sort((a, b) => a - b)).toEqual(range(1, 30).filter((meter) => meter % 4 !== 0));
  });
});
