/**
 * The Kafka importer against the real test broker (test/services/kafka.sh), with a real producer:
 * N messages in → exactly N procedure effects; a poison message (undecodable, or whose procedure
 * aborts) lands in the dead-letter place with its reason while the rest flow on; consumed offsets
 * are committed; exactly-once recognizes every message of a full redelivery as applied.
 */
import { Consumer } from '@platformatic/kafka';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import type { Statistics } from '../procedures/system.ts';
import { Router } from '../engine/execution/router.ts';
import { importerSchemaDdl, parseImporterConfigs, startImporters, type RunningImporters } from '../importers/index.ts';
import { kafkaBrokers, uniqueName } from './services/env.ts';
import { serve } from './server-helpers.ts';
import { countRows, createTopic, deleteTopics, produce, queryRows, readings, topicSize, waitUntil } from './importers-helpers.ts';

const brokers = kafkaBrokers();
const fixtures = 'test/fixtures/importers';
const topicPartitions = 3;

describe.skipIf(brokers === undefined)('Kafka importer', () => {
  const topics: string[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });
  afterAll(async () => {
    if (topics.length > 0) await deleteTopics(brokers!, topics);
  });

  async function freshTopic(prefix: string): Promise<string> {
    const topic = uniqueName(prefix);
    topics.push(topic);
    await createTopic(brokers!, topic, topicPartitions);
    return topic;
  }

  it('applies N messages exactly N times and dead-letters poison with its reason, then commits the offsets', async () => {
    const topic = await freshTopic('readings');
    const groupId = uniqueName('group');
    const n = 600;
    const messages = readings(0, n);
    // Poison in the middle of the stream: not JSON, and a reading the procedure aborts.
    messages.splice(200, 0, { key: '1001', value: 'this is not json' });
    messages.splice(400, 0, { key: '1002', value: JSON.stringify({ meter: 1002, seq: 9999, kwh: -4, site: 'x' }) });
    await produce(brokers!, topic, messages);
    expect(await topicSize(brokers!, topic)).toBe(messages.length);

    const server = await serve({
      schema: `${fixtures}/meters.sql`,
      importers: [{ name: 'meters', type: 'kafka', brokers, topics: [topic], groupId, procedure: 'Ingest', format: 'json', params: ['meter', 'seq', 'kwh', 'site'], sessionTimeoutMs: 6000 }],
    });
    const router = server.router;
    await waitUntil(`${n} readings and 2 dead letters`, async () => (await countRows(router, 'readings')) === n && (await countRows(router, 'sluice_importer_dead_letters')) === 2);
    const duplicates = await queryRows(router, 'SELECT seq, COUNT(*) FROM readings GROUP BY seq HAVING COUNT(*) > 1');
    expect(duplicates).toEqual([]);
    const dead = await queryRows(router, 'SELECT topic, payload, reason FROM sluice_importer_dead_letters ORDER BY source_offset');
    expect(dead.map((row) => row[0])).toEqual([topic, topic]);
    const reasons = dead.map((row) => String(row[2])).sort();
    expect(reasons.some((reason) => /payload is not JSON/.test(reason))).toBe(true);
    expect(reasons.some((reason) => /USER_ABORT.*negative reading -4 for meter 1002/.test(reason))).toBe(true);
    expect(dead.map((row) => row[1])).toContain('this is not json');

    const statistics = (await router.call('@Statistics')) as Statistics;
    expect(statistics.importers).toHaveLength(1);
    expect(statistics.importers![0]).toMatchObject({ importer: 'meters', type: 'kafka', received: n + 2, applied: n, deadLettered: 2, skipped: 0 });

    // Every message is finished, so the group's committed offsets reach the end of each partition.
    const consumer = new Consumer({ groupId, clientId: uniqueName('check'), bootstrapBrokers: brokers! });
    cleanups.push(() => consumer.close(true));
    const ends = await consumer.listOffsets({ topics: [topic] });
    await waitUntil('the committed offsets to reach the ends of the partitions', async () => {
      const committed = await consumer.listCommittedOffsets({ topics: [{ topic, partitions: [0, 1, 2] }] });
      return JSON.stringify(committed.get(topic)?.map(String)) === JSON.stringify(ends.get(topic)?.map(String));
    });
  });

  it('exactly-once: a complete redelivery of the topic is recognized and applies nothing again', async () => {
    const topic = await freshTopic('readings-once');
    const n = 400;
    // CSV this time: meter,seq,kwh,site.
    await produce(brokers!, topic, Array.from({ length: n }, (_, seq) => ({ key: String(seq % 13), value: `${2000 + (seq % 13)},${seq},1.25,s${seq % 4}` })));
    expect(await topicSize(brokers!, topic)).toBe(n);
    const configs = (groupId: string) => parseImporterConfigs([{
      name: 'meters-once', type: 'kafka', brokers, topics: [topic], groupId, procedure: 'Ingest', delivery: 'exactly-once', format: 'csv', sessionTimeoutMs: 6000,
    }]);
    const ddl = await readFile(`${fixtures}/meters.sql`, 'utf8');
    const router = await Router.open({ ddl: ddl + importerSchemaDdl(configs('any')), proceduresDir: fixtures, partitions: 2 });
    cleanups.push(() => router.close());
    let importers: RunningImporters | undefined;
    cleanups.push(async () => importers?.stop());

    importers = await startImporters(router, configs(uniqueName('first')), { proceduresDir: fixtures });
    await waitUntil(`${n} readings`, async () => (await countRows(router, 'readings')) === n);
    expect(importers.statistics()[0]).toMatchObject({ applied: n, skipped: 0, deadLettered: 0 });
    await importers.stop();

    // A new consumer group starts from the beginning: every message is delivered again.
    importers = await startImporters(router, configs(uniqueName('second')), { proceduresDir: fixtures });
    await waitUntil(`${n} redelivered messages recognized`, () => importers!.statistics()[0].skipped === n);
    expect(await countRows(router, 'readings')).toBe(n);
    expect(importers.statistics()[0]).toMatchObject({ applied: 0, skipped: n, deadLettered: 0 });
    const offsets = await queryRows(router, 'SELECT source_partition, MAX(applied_offset) FROM sluice_importer_offsets GROUP BY source_partition ORDER BY source_partition');
    expect(offsets.length).toBe(topicPartitions);
  });

  it('dead-letters to a Kafka topic: the original message with the reason and its origin in headers', async () => {
    const topic = await freshTopic('readings-dlq-source');
    const deadTopic = await freshTopic('readings-dlq');
    const good = Array.from({ length: 50 }, (_, seq) => ({ key: String(seq), value: `${3000 + seq},${seq},2,d` }));
    await produce(brokers!, topic, [...good.slice(0, 25), { key: 'bad', value: '3100,not-a-number,2,d', partition: 1 }, ...good.slice(25)]);
    const server = await serve({
      schema: `${fixtures}/meters.sql`,
      importers: [{ name: 'dlq', type: 'kafka', brokers, topics: [topic], groupId: uniqueName('group'), procedure: 'Ingest', format: 'csv', deadLetter: { topic: deadTopic }, sessionTimeoutMs: 6000 }],
    });
    await waitUntil('50 readings and one dead letter', async () => {
      const statistics = ((await server.router.call('@Statistics')) as Statistics).importers![0];
      return statistics.applied === 50 && statistics.deadLettered === 1;
    });
    const consumer = new Consumer({ groupId: uniqueName('dlq-reader'), clientId: uniqueName('dlq-reader'), bootstrapBrokers: brokers! });
    cleanups.push(() => consumer.close(true));
    const stream = await consumer.consume({ topics: [deadTopic], mode: 'earliest', autocommit: false });
    let dead: { key: string; value: string; headers: Record<string, string> } | undefined;
    for await (const message of stream) {
      const headers: Record<string, string> = {};
      for (const [name, value] of message.headers) headers[name.toString()] = value.toString();
      dead = { key: message.key.toString(), value: message.value.toString(), headers };
      break;
    }
    await stream.close();
    expect(dead).toMatchObject({ key: 'bad', value: '3100,not-a-number,2,d', headers: { 'sluice-importer': 'dlq', 'sluice-topic': topic, 'sluice-partition': '1', 'sluice-offset': expect.stringMatching(/^\d+$/) } });
    expect(dead!.headers['sluice-reason']).toMatch(/parameter 2 of Ingest is BIGINT, but got "not-a-number"/);
  });

  it('refuses to start an exactly-once importer on a multi-partition procedure, naming it', async () => {
    const configs = parseImporterConfigs([{ name: 'bad', type: 'kafka', brokers, topics: ['unused'], procedure: 'Total', delivery: 'exactly-once', params: [] }]);
    const ddl = await readFile(`${fixtures}/meters.sql`, 'utf8');
    const router = await Router.open({ ddl: ddl + importerSchemaDdl(configs), proceduresDir: fixtures, partitions: 1 });
    cleanups.push(() => router.close());
    await expect(startImporters(router, configs, { proceduresDir: fixtures })).rejects.toThrow(/importer bad: exactly-once needs a single-partition procedure that writes; Total is read-only/);
  });
});
