/**
 * The kafka export target against the real broker (SLUICE_TEST_KAFKA_BROKERS, test/services/
 * kafka.sh): a consumer group reads back what the target produced — count, keys (the partition
 * column), JSON values, sequence headers, order per key — and a target whose topic is not there
 * yet fails with a clear error and loses nothing once it is. Behind the export pipeline, every
 * request the broker acknowledged is the stored position: a retry and a restart send only what
 * follows it. Bad settings are refused by name.
 */
import path from 'node:path';
import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { applyDdl } from '../../engine/catalog/ddl.ts';
import { ErrorCode, SluiceError } from '../../engine/errors.ts';
import { KafkaTarget, kafkaSettings } from '../../exporters/kafka.ts';
import { ExportPipeline } from '../../exporters/pipeline.ts';
import { encodeStreamChunk } from '../../engine/storage/stream-chunk.ts';
import { temporaryFolder } from './file-helpers.ts';
import { kafkaBrokersVariable } from '../services/env.ts';
import { alertRow, batchOf, consumeTopic, dedupe, deliverUntilAcknowledged, describeWithService, eventually, range, startTcpProxy, streamDef, uniqueName, type KafkaRecord } from './helpers.ts';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

describeWithService(kafkaBrokersVariable, 'bash test/services/kafka.sh', 'kafka target against a real broker', (address) => {
  const brokers = address.split(',');
  const def = streamDef();
  const admin = new Admin({ clientId: uniqueName('exportnet-admin'), bootstrapBrokers: brokers });
  const topics: string[] = [];

  afterAll(async () => {
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.close();
  });

  async function topic(create = true): Promise<string> {
    const name = uniqueName('sluice-export');
    topics.push(name);
    if (create) await admin.createTopics({ topics: [name], partitions: 3, replicas: 1 });
    return name;
  }

  const consume = (name: string): Promise<KafkaRecord[]> => consumeTopic(brokers, name, (close) => cleanup.push(close));

  function target(name: string, settings: { [key: string]: unknown } = {}): KafkaTarget {
    const created = new KafkaTarget({ name: 'alerts-kafka', type: 'kafka', brokers, topic: name, ...settings }, { streams: [def] });
    cleanup.push(() => created.close());
    return created;
  }

  it('produces every row keyed by the partition column, as JSON with sequence headers, in order per key', async () => {
    const name = await topic();
    const alerts = target(name, { recordsPerSendMax: 70 });
    await alerts.deliver(batchOf(def, 0, 1, range(1, 300).map((n) => alertRow(100 + (n % 3), n))));
    await alerts.deliver(batchOf(def, 1, 1, range(1, 200).map((n) => alertRow(200 + (n % 2), n))));
    expect(alerts.produced).toBe(500);
    const records = await consume(name);
    // The file's first consumer group: a fresh broker creates its offsets topic first, which took
    // over 30 s once in CI under full load.
    expect(await eventually(() => records.length >= 500, 50_000), `consumed ${records.length} of 500`).toBe(true);
    expect(records).toHaveLength(500);
    for (const record of records) {
      expect(record.key).toBe(String(record.value.meter_id));
      expect(record.stream).toBe('meter_alerts');
    }
    for (const meter of [100, 101, 102, 200, 201]) {
      const partition = meter < 200 ? 0 : 1;
      const expected = range(1, 300).filter((n) => (partition === 0 ? 100 + (n % 3) : 200 + (n % 2)) === meter && (partition === 0 || n <= 200));
      expect(records.filter((r) => r.key === String(meter)).map((r) => r.sequence), `meter ${meter}`).toEqual(expected);
    }
    const sample = records.find((r) => r.partition === 0 && r.sequence === 4)!;
    expect(sample.value).toEqual({ meter_id: 101, region: 'north', kind: 'kind-4', kwh: 0.004, at: '2026-11-22T08:00:00.004Z', raw: Buffer.from([4, 1, 2]).toString('base64'), urgent: true });
    expect(sample.timestamp).toBe(BigInt(Date.UTC(2026, 10, 22, 9, 0, 0)));
  });

  it('keys a stream without a partition column by its Sluice partition, or by the `key` column', async () => {
    const plain = applyDdl('CREATE STREAM events (device VARCHAR(16) NOT NULL, n INTEGER);').tables.get('events')!;
    const name = await topic();
    const byPartition = new KafkaTarget({ name: 't1', type: 'kafka', brokers, topic: name }, { streams: [plain] });
    cleanup.push(() => byPartition.close());
    await byPartition.deliver(batchOf(plain, 2, 1, [['d1', 1], ['d2', 2]]));
    const byDevice = new KafkaTarget({ name: 't2', type: 'kafka', brokers, topic: name, key: 'device' }, { streams: [plain] });
    cleanup.push(() => byDevice.close());
    await byDevice.deliver(batchOf(plain, 2, 3, [['d3', 3]]));
    const records = await consume(name);
    expect(await eventually(() => records.length >= 3, 30_000)).toBe(true);
    expect(records.map((r) => [r.sequence, r.key]).sort()).toEqual([[1, '2'], [2, '2'], [3, 'd3']]);
  });

  it('fails clearly while the topic is missing and loses nothing once it exists', async () => {
    const name = await topic(false);
    const alerts = target(name, { retriesMax: 2, retryDelayMs: 20, requestTimeoutMs: 2000 });
    const batches = range(0, 4).map((b) => batchOf(def, 0, 1 + b * 25, range(1 + b * 25, 25).map((n) => alertRow(9, n))));
    await expect(alerts.deliver(batches[0])).rejects.toThrow(new RegExp(`kafka target 'alerts-kafka': producing to topic ${name} at .* failed after 0 of 25 records of meter_alerts partition 0 \\(from sequence 1\\)`));
    setTimeout(() => void admin.createTopics({ topics: [name], partitions: 1, replicas: 1 }), 300);
    const failures = [];
    for (const batch of batches) failures.push(...(await deliverUntilAcknowledged(alerts, batch, 100, 300)));
    const records = await consume(name);
    expect(await eventually(() => new Set(records.map((r) => r.sequence)).size >= 100, 30_000)).toBe(true);
    const { unique, duplicates } = dedupe(records.map((r) => r.sequence));
    expect(unique).toEqual(range(1, 100));
    expect(duplicates).toBe(records.length - 100);
  });

  it('stores each acknowledged request as the delivered position: a retry and a restart resume after it, nothing twice', async () => {
    // The topic refuses record batches over 8000 bytes and row 50 carries a longer note, so of
    // the pipeline's batch 1…100 (requests of 20) the first two requests are acknowledged and the
    // third (41…60) fails until the limit is raised.
    const name = uniqueName('sluice-export');
    topics.push(name);
    await admin.createTopics({ topics: [name], partitions: 1, replicas: 1, configs: [{ name: 'max.message.bytes', value: '8000' }] });
    const catalog = applyDdl('CREATE STREAM events PARTITION ON COLUMN id EXPORT TO TARGET bus (id BIGINT NOT NULL, note VARCHAR(20000));');
    const exportDir = path.join(temporaryFolder(), 'export');
    const config = { targets: [{ name: 'bus', type: 'kafka', brokers, topic: name, recordsPerSendMax: 20, batchRowsMax: 100, retriesMax: 2, retryDelayMs: 10, requestTimeoutMs: 5000, backoffMsMin: 50, backoffMsMax: 200 }] };
    const open = (): Promise<ExportPipeline> => ExportPipeline.open({ exportDir, catalog, partitions: 1, config });
    let pipeline = await open();
    const values: unknown[] = [];
    for (let id = 1; id <= 100; id++) values.push(id, id === 50 ? 'x'.repeat(10_000) : `note ${id}`);
    const committedAt = Date.UTC(2026, 10, 22, 12, 0, 0);
    pipeline.accept(0, ['events', 1, 100, committedAt, encodeStreamChunk(committedAt, values)]);
    expect(await eventually(() => pipeline.statistics()[0].failures >= 2, 30_000)).toBe(true);
    // Every retry sent 41…100 only, and the position survives the restart.
    const failing = pipeline.statistics()[0];
    expect(failing).toMatchObject({ rowsDelivered: 40, rowsPending: 60 });
    expect(failing.rowsRedelivered % 60 === 0 && failing.rowsRedelivered > 0, `${failing.rowsRedelivered} rows redelivered`).toBe(true);
    await pipeline.close();

    await admin.alterConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: name, configs: [{ name: 'max.message.bytes', value: '1048588' }] }] });
    pipeline = await open();
    cleanup.push(() => pipeline.close());
    expect(pipeline.statistics()[0].rowsPending).toBe(60);
    expect(await pipeline.idle(30_000)).toBe(true);
    expect(pipeline.statistics()[0]).toMatchObject({ rowsDelivered: 60, rowsPending: 0, duplicatesPossible: 0 });
    const records = await consume(name);
    expect(await eventually(() => records.length >= 100, 30_000), `consumed ${records.length} of 100`).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(records.map((r) => r.sequence)).toEqual(range(1, 100));
  });

  it('fails clearly when no broker answers', async () => {
    const proxy = await startTcpProxy('127.0.0.1', 1);
    cleanup.push(() => proxy.close());
    await proxy.cut();
    const alerts = new KafkaTarget({ name: 'nowhere', type: 'kafka', brokers: [`127.0.0.1:${proxy.port}`], topic: 'x', retriesMax: 2, retryDelayMs: 10, requestTimeoutMs: 500 });
    cleanup.push(() => alerts.close());
    await expect(alerts.deliver(batchOf(def, 0, 1, [alertRow(1, 1)]))).rejects.toThrow(new RegExp(`kafka target 'nowhere': producing to topic x at 127\\.0\\.0\\.1:${proxy.port} failed after 0 of 1 records`));
  });
});

describe('kafka target settings', () => {
  const def = streamDef();
  const refusal = (config: { [key: string]: unknown }): string => {
    try {
      kafkaSettings({ name: 'k', type: 'kafka', ...config }, { streams: [def], env: {} });
    } catch (error) {
      expect(error).toBeInstanceOf(SluiceError);
      expect((error as SluiceError).code).toBe(ErrorCode.EXPORT_CONFIG);
      return (error as Error).message;
    }
    throw new Error('expected a refusal');
  };

  it('names what is wrong', () => {
    expect(refusal({ topic: 't' })).toMatch(/export target 'k' \(kafka\) setting 'brokers': is required/);
    expect(refusal({ brokers: ['localhost'], topic: 't' })).toMatch(/setting 'brokers': "localhost" is not host:port/);
    expect(refusal({ brokers: 'a:1' })).toMatch(/setting 'topic': is required/);
    expect(refusal({ brokers: 'a:1', topic: 'bad topic' })).toMatch(/setting 'topic': "bad topic" is not a Kafka topic name/);
    expect(refusal({ brokers: 'a:1', topic: 't', key: 'meter' })).toMatch(/setting 'key': names column meter, which stream meter_alerts does not have/);
    expect(refusal({ brokers: 'a:1', topic: 't', saslMechanism: 'PLAIN', username: 'u' })).toMatch(/setting 'saslMechanism': PLAIN needs "username" and "password"/);
    expect(refusal({ brokers: 'a:1', topic: 't', passwordEnv: 'SLUICE_NOPE' })).toMatch(/setting 'passwordEnv': environment variable SLUICE_NOPE is not set/);
    expect(refusal({ brokers: 'a:1', topic: 't', acks: 1 })).toMatch(/setting 'acks': is not a setting of kafka targets/);
  });

  it('reads brokers as a list or a comma-separated string, and secrets from the environment', () => {
    const settings = kafkaSettings({ name: 'k', type: 'kafka', brokers: 'a:1, b:2', topic: 't', saslMechanism: 'SCRAM-SHA-256', username: 'u', passwordEnv: 'K_PASS' }, { env: { K_PASS: 'pw' } });
    expect(settings.brokers).toEqual(['a:1', 'b:2']);
    expect(settings.sasl).toEqual({ mechanism: 'SCRAM-SHA-256', username: 'u', password: 'pw' });
  });
});
