/**
 * A Kafka broker outage, for the kafka target alone and behind the export pipeline of a running
 * server. The shared test broker
 * (test/services/kafka.sh) has an OUTAGE listener that advertises a port only this test's TCP
 * proxy listens on: the export target bootstraps through the proxy and is told to stay on it, so
 * cutting the proxy takes the broker away from the target — metadata and produce alike — while
 * the test's consumer and every other test keep reaching it directly. After the broker returns,
 * every committed row is in the topic once, in order per key, and @Statistics tells the failures,
 * the redelivered rows, and that none of them can be a copy. A request the broker appended but
 * whose answer was lost is the one source of copies, and the target counts it.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { afterEach, describe, expect, it } from 'vitest';
import type { TargetStatistics } from '../../exporters/pipeline.ts';
import type raiseAlert from '../fixtures/alerts/raise-alert.ts';
import { inCi, kafkaBrokers } from '../services/env.ts';
import { client, serve } from '../server-helpers.ts';
import { KafkaTarget } from '../../exporters/kafka.ts';
import { alertRow, batchOf, consumeTopic, dedupe, eventually, range, startTcpProxy, streamDef, uniqueName, type KafkaRecord } from './helpers.ts';

type AlertsApp = { RaiseAlert: typeof raiseAlert };

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

/** The OUTAGE listener's real port and the port it advertises, from the broker's own config. */
async function outageListener(brokers: string[]): Promise<{ port: number; advertisedPort: number } | undefined> {
  const admin = new Admin({ clientId: uniqueName('outage-probe'), bootstrapBrokers: brokers });
  try {
    const metadata = await admin.metadata({ topics: [] });
    const [nodeId] = metadata.brokers.keys();
    const [description] = await admin.describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.BROKER, resourceName: String(nodeId), configurationKeys: ['listeners', 'advertised.listeners'] }] });
    const portOf = (key: string): number | undefined => {
      const value = description.configs.find((config) => config.name === key)?.value ?? '';
      const match = /OUTAGE:\/\/[^,:]+:(\d+)/.exec(value);
      return match === null ? undefined : Number(match[1]);
    };
    const port = portOf('listeners');
    const advertisedPort = portOf('advertised.listeners');
    return port === undefined || advertisedPort === undefined ? undefined : { port, advertisedPort };
  } finally {
    await admin.close();
  }
}

const brokers = kafkaBrokers();
const outage = brokers === undefined ? undefined : await outageListener(brokers);
if (brokers !== undefined && outage === undefined) {
  const reason = `the Kafka broker at ${brokers.join(',')} has no OUTAGE listener (started by an older test/services/kafka.sh); run \`bash test/services/kafka.sh\` again, it restarts the broker with one`;
  if (inCi) throw new Error(reason);
  console.warn(`skipping: ${reason}`);
}

/** Reads the topic from the start, straight from the broker (not through the proxy). */
function consume(topic: string): Promise<KafkaRecord[]> {
  return consumeTopic(brokers!, topic, (close) => cleanup.push(close));
}

/** A new topic, and how many records its partitions hold now (the sum of their end offsets). */
async function createTopic(partitions: number): Promise<{ topic: string; recordCount: () => Promise<number> }> {
  const topic = uniqueName('sluice-outage');
  const admin = new Admin({ clientId: uniqueName('outage-admin'), bootstrapBrokers: brokers! });
  cleanup.push(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.close();
  });
  await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
  const recordCount = async (): Promise<number> => {
    const [listed] = await admin.listOffsets({ topics: [{ name: topic, partitions: range(0, partitions).map((partitionIndex) => ({ partitionIndex, timestamp: -1n })) }] });
    return listed.partitions.reduce((sum, partition) => sum + Number(partition.offset), 0);
  };
  return { topic, recordCount };
}

/** Polls `condition` (which may ask the server) every 50 ms for up to `timeoutMs`; whether it held. */
async function until(condition: () => Promise<boolean>, timeoutMs = 30_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

// Both tests listen on the one advertised port, so they run one after the other, in this file.
describe.skipIf(outage === undefined)('kafka broker outage', () => {
  it('counts a request whose answer was lost as possible copies, and the copies are there', async () => {
    const { port, advertisedPort } = outage!;
    const { topic } = await createTopic(1);
    const proxy = await startTcpProxy('127.0.0.1', port, advertisedPort);
    cleanup.push(() => proxy.close());
    const def = streamDef();
    const alerts = new KafkaTarget({ name: 'lossy', type: 'kafka', brokers: [`127.0.0.1:${advertisedPort}`], topic, retriesMax: 2, retryDelayMs: 50, requestTimeoutMs: 2000 }, { streams: [def] });
    cleanup.push(() => alerts.close());
    await alerts.deliver(batchOf(def, 0, 1, range(1, 10).map((n) => alertRow(3, n))));
    // The broker appends the next request, but its acknowledgement never comes back.
    proxy.muteAnswers(true);
    const lost = batchOf(def, 0, 11, range(11, 5).map((n) => alertRow(3, n)));
    await expect(alerts.deliver(lost)).rejects.toThrow(/kafka target 'lossy': producing to topic .* failed after 0 of 5 records/);
    await proxy.cut();
    proxy.muteAnswers(false);
    await proxy.restore();
    await alerts.deliver(lost);
    expect(alerts.duplicatesPossible).toBe(5);
    const received = await consume(topic);
    expect(await eventually(() => received.length >= 20, 30_000), `consumed ${received.length} of 20`).toBe(true);
    const { unique, duplicates } = dedupe(received.map((r) => r.sequence));
    expect(unique).toEqual(range(1, 15));
    expect(duplicates).toBe(5);
  });

  it('delivers every row once and in order after the broker returns, and counts redeliveries and possible copies', async () => {
    const { port, advertisedPort } = outage!;
    const { topic, recordCount } = await createTopic(2);
    const proxy = await startTcpProxy('127.0.0.1', port, advertisedPort);
    cleanup.push(() => proxy.close());

    const data = await mkdtemp(path.join(os.tmpdir(), 'sluice-outage-'));
    cleanup.push(() => rm(data, { recursive: true, force: true }));
    const schema = (await readFile('test/fixtures/alerts/ddl.sql', 'utf8')).replace('CREATE STREAM meter_alerts PARTITION ON COLUMN meter_id (', 'CREATE STREAM meter_alerts PARTITION ON COLUMN meter_id EXPORT TO TARGET alerts (');
    const server = await serve({
      schema,
      procedures: 'test/fixtures/alerts',
      partitions: 2,
      data,
      exports: { targets: [{ name: 'alerts', type: 'kafka', brokers: [`127.0.0.1:${advertisedPort}`], topic, retriesMax: 2, retryDelayMs: 50, backoffMsMin: 50, backoffMsMax: 300 }] },
    });
    const sdk = await client<AlertsApp>(server);
    const statistics = async (): Promise<TargetStatistics> => ((await server.router.call('@Statistics')) as { exports: TargetStatistics[] }).exports[0];
    const raise = async (first: number, count: number): Promise<void> => {
      // Six meters, so each key carries rows of every phase and its order can be checked.
      await Promise.all(range(first, count).map((n) => sdk.call('RaiseAlert', (n % 6) + 1, 'north', `k${n}`)));
    };

    const received = await consume(topic);
    let stats = await statistics();
    const statisticsShow = (condition: (stats: TargetStatistics) => boolean, timeoutMs?: number): Promise<boolean> =>
      until(async () => condition((stats = await statistics())), timeoutMs);

    await raise(1, 20);
    // Every acknowledgement is in before the cut: a request in flight then would be a lost answer.
    expect(await statisticsShow((s) => s.rowsDelivered === 20 && s.rowsPending === 0), JSON.stringify(stats)).toBe(true);

    await proxy.cut();
    await raise(21, 20);
    expect(await statisticsShow((s) => s.failures >= 2), 'deliveries failed while the broker was away').toBe(true);
    expect(stats.rowsPending).toBe(20);
    expect(stats.lastError).toMatch(new RegExp(`kafka target 'alerts': producing to topic ${topic} at 127\\.0\\.0\\.1:${advertisedPort} failed`));
    expect(await recordCount()).toBe(20);

    await proxy.restore();
    await raise(41, 20);
    expect(await statisticsShow((s) => s.rowsPending === 0 && s.rowsDelivered === 60, 60_000), JSON.stringify(stats)).toBe(true);
    const inTopic = await recordCount();
    expect(await eventually(() => received.length >= inTopic, 30_000), `consumed ${received.length} of ${inTopic}`).toBe(true);

    const after = await statistics();
    expect(after).toMatchObject({ rowsPending: 0, rowsDelivered: 60, lastError: null });
    // Only rows raised during the outage can be possible copies. Usually none are: the producer
    // sees its connection closed and every later attempt is refused, which proves nothing was
    // appended. But a produce written to the dying socket before the client noticed the close
    // cannot be proven unappended (seen once in CI, under load: 6), and then counts.
    expect(after.duplicatesPossible).toBeLessThanOrEqual(20);
    expect(inTopic).toBe(60);
    expect(after.failures).toBeGreaterThanOrEqual(2);
    expect(after.rowsRedelivered).toBeGreaterThanOrEqual(1);
    let total = 0;
    for (const partition of [0, 1]) {
      const { unique, duplicates } = dedupe(received.filter((r) => r.partition === partition).map((r) => r.sequence));
      expect(unique.toSorted((a, b) => a - b)).toEqual(range(1, unique.length));
      expect(duplicates, `copies of partition ${partition}'s rows`).toBe(0);
      total += unique.length;
    }
    expect(total).toBe(60);
    // Kafka keeps order per key (a meter lives on one Sluice partition and one Kafka partition).
    for (const meter of range(1, 6)) {
      const sequences = received.filter((r) => r.key === String(meter)).map((r) => r.sequence);
      expect(sequences, `meter ${meter}`).toHaveLength(10);
      expect(sequences, `meter ${meter}`).toEqual(sequences.toSorted((a, b) => a - b));
    }
  });
});
