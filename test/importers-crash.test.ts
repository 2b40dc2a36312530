/**
 * Sluice killed (kill -9 of the server process) and restarted while messages stream in, with the
 * command log in sync mode: nothing is lost, and with exactly-once nothing is applied twice.
 * Real brokers (test/services/kafka.sh, Mosquitto), real producers, a real server process.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connect, type Client } from '../client/index.ts';
import mqtt from 'mqtt';
import { kafkaBrokers, mqttUrl, uniqueName } from './services/env.ts';
import { createTopic, deleteTopics, produce, readings, startServerProcess, topicSize, waitUntil, type ServerProcess } from './importers-helpers.ts';

const brokers = kafkaBrokers();
const url = mqttUrl();
const schema = path.resolve('test/fixtures/importers/meters.sql');
/** Long enough to stream while the server dies and comes back. */
const producedTotal = 3000;
const produceBatch = 100;
const killAfterRows = 600;
const rowsWaitMs = 90_000;

interface Counts {
  rows: number;
  distinct: number;
  duplicates: number;
}

async function counts(client: Client): Promise<Counts> {
  const rows = (await client.query('SELECT COUNT(*) FROM readings')).rows[0][0] as number;
  const bySeq = (await client.query('SELECT seq, COUNT(*) FROM readings GROUP BY seq')).rows;
  return { rows, distinct: bySeq.length, duplicates: bySeq.filter((row) => (row[1] as number) > 1).length };
}

async function rowCount(client: Client): Promise<number> {
  return (await client.query('SELECT COUNT(*) FROM readings')).rows[0][0] as number;
}

describe('importers across a kill -9 of Sluice', () => {
  const folders: string[] = [];
  const servers: ServerProcess[] = [];
  const clients: Client[] = [];
  const topics: string[] = [];

  afterEach(async () => {
    while (clients.length > 0) await clients.pop()!.close();
    while (servers.length > 0) await servers.pop()!.kill();
    while (folders.length > 0) await rm(folders.pop()!, { recursive: true, force: true });
  });
  afterAll(async () => {
    if (brokers !== undefined && topics.length > 0) await deleteTopics(brokers, topics);
  });

  async function deployment(importer: Record<string, unknown>): Promise<{ folder: string; config: Record<string, unknown> }> {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-importer-crash-'));
    folders.push(folder);
    return { folder, config: { schema, partitions: 2, data: path.join(folder, 'data'), durability: { mode: 'sync' }, importers: [importer] } };
  }

  async function start(folder: string, config: Record<string, unknown>): Promise<Client> {
    const server = await startServerProcess(config, folder);
    servers.push(server);
    const client = await connect(server.url);
    clients.push(client);
    return client;
  }

  async function killAndRestart(folder: string, config: Record<string, unknown>): Promise<Client> {
    await clients.pop()!.close();
    await servers.pop()!.kill();
    return start(folder, config);
  }

  for (const delivery of ['exactly-once', 'at-least-once'] as const) {
    it.runIf(brokers !== undefined)(`Kafka, ${delivery}: nothing lost${delivery === 'exactly-once' ? ', nothing applied twice' : ''}`, async () => {
      const topic = uniqueName(`crash-${delivery}`);
      topics.push(topic);
      await createTopic(brokers!, topic, 3);
      const { folder, config } = await deployment({
        name: 'meters', type: 'kafka', brokers, topics: [topic], groupId: uniqueName('crash-group'), procedure: 'Ingest',
        delivery, format: 'json', params: ['meter', 'seq', 'kwh', 'site'], sessionTimeoutMs: 6000, heartbeatIntervalMs: 500,
      });
      let client = await start(folder, config);
      // Produce in the background while the server is killed and restarted.
      const producing = (async () => {
        for (let from = 0; from < producedTotal; from += produceBatch) {
          await produce(brokers!, topic, readings(from, from + produceBatch));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      await waitUntil(`${killAfterRows} readings before the kill`, async () => (await rowCount(client)) >= killAfterRows, rowsWaitMs);
      client = await killAndRestart(folder, config);
      await producing;
      expect(await topicSize(brokers!, topic)).toBe(producedTotal);
      const final = client;
      await waitUntil(`all ${producedTotal} readings after the restart`, async () => (await counts(final)).distinct === producedTotal, rowsWaitMs);
      const result = await counts(client);
      expect(result.distinct).toBe(producedTotal);
      if (delivery === 'exactly-once') expect(result).toEqual({ rows: producedTotal, distinct: producedTotal, duplicates: 0 });
      else expect(result.rows).toBeGreaterThanOrEqual(producedTotal);
    });
  }

  it.runIf(url !== undefined)('MQTT QoS 1 with a persistent session: nothing lost', async () => {
    const prefix = uniqueName('sluice-crash');
    const clientId = uniqueName('crash-importer');
    const total = 900;
    const { folder, config } = await deployment({
      name: 'plant', type: 'mqtt', url, qos: 1, clientId, topics: [`${prefix}/meter/{meter_id}/reading`],
      procedure: 'Ingest', format: 'json', params: ['meter_id', 'seq', 'kwh', 'site'],
    });
    let client = await start(folder, config);
    await waitUntil('the importer to subscribe', async () => ((await client.call('@Statistics')) as { importers?: { state: string }[] }).importers?.[0].state === 'running');
    const publisher = await mqtt.connectAsync(url!, { clientId: uniqueName('crash-publisher') });
    try {
      const publishing = (async () => {
        for (let seq = 0; seq < total; seq++) {
          await publisher.publishAsync(`${prefix}/meter/${seq % 7}/reading`, JSON.stringify({ seq, kwh: 1, site: 's' }), { qos: 1 });
          if (seq % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      await waitUntil('readings before the kill', async () => (await rowCount(client)) >= 200, rowsWaitMs);
      client = await killAndRestart(folder, config);
      await publishing;
      const final = client;
      await waitUntil(`all ${total} readings after the restart`, async () => (await counts(final)).distinct === total, rowsWaitMs);
      expect((await counts(client)).distinct).toBe(total);
    } finally {
      await publisher.endAsync();
      const cleanup = await mqtt.connectAsync(url!, { clientId, clean: true, protocolVersion: 5, properties: { sessionExpiryInterval: 0 } });
      await cleanup.endAsync();
    }
  });
});
