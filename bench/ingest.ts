/**
 * Ingest through the importers (docs/importers.md): messages/s from Kafka and from MQTT into the
 * smart-meter IngestReading procedure, and the end-to-end latency from produce to commit.
 * Starts `sluice start` as its own process with procedures/smart-meter and three importers, loads
 * the meters, then runs three phases:
 *
 * 1. kafka-burst: `--messages` readings produced as fast as the producer goes while the importer
 *    consumes them; measured from the first produce to the last applied reading.
 * 2. kafka-live: readings produced at `--rate`/s for `--seconds`; p50/p99 from the producer's
 *    timestamp to the transaction's answer (the importer's histogram, @Statistics).
 * 3. mqtt: the same through Mosquitto at QoS 1, each message stamped with a `timestamp` user
 *    property; messages/s over the phase and p50/p99 publish→commit.
 *
 *   npm run bench:ingest [-- --messages 200000 --seconds 20 --rate 5000 --meters 10000 --partitions N
 *                          --durability sync|async|off --brokers 127.0.0.1:9092 --mqtt mqtt://127.0.0.1:1883]
 *
 * Needs the test Kafka (`export "$(bash test/services/kafka.sh)"`) and Mosquitto. Ends with one
 * JSON line. Numbers are only meaningful on a quiet machine.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Admin, Producer } from '@platformatic/kafka';
import mqtt from 'mqtt';
import { connect, type Client } from '../client/index.ts';
import type { ImporterStatistics, Statistics } from '../procedures/system.ts';
import { defaultSeed } from '../procedures/smart-meter/dimensions.ts';
import { loadDimensions } from '../procedures/smart-meter/load.ts';
import { intervalMs } from '../procedures/smart-meter/local-time.ts';
import { simulationStart } from '../procedures/smart-meter/readings.ts';
import { machineDescription } from './load-generator.ts';
import { startServerProcess, type ServerProcess } from './server-process.ts';

const { values: options } = parseArgs({
  options: {
    messages: { type: 'string', default: '200000' },
    seconds: { type: 'string', default: '20' },
    rate: { type: 'string', default: '5000' },
    meters: { type: 'string', default: '10000' },
    partitions: { type: 'string' },
    durability: { type: 'string' },
    brokers: { type: 'string', default: process.env.SLUICE_TEST_KAFKA_BROKERS ?? '127.0.0.1:9092' },
    mqtt: { type: 'string', default: process.env.SLUICE_TEST_MQTT_URL ?? 'mqtt://127.0.0.1:1883' },
  },
});
const burstMessages = Number(options.messages);
const liveSeconds = Number(options.seconds);
const liveRate = Number(options.rate);
const meterCount = Number(options.meters);
for (const [name, value] of [['messages', burstMessages], ['seconds', liveSeconds], ['rate', liveRate], ['meters', meterCount]] as const) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`error: --${name} must be a positive integer, got '${options[name]}'`);
    process.exit(2);
  }
}
const brokers = options.brokers.split(',');
const topicPartitions = 4;
const produceBatch = 1000;
const statisticsPollMs = 250;
const drainTimeoutMs = 600_000;
const run = `${process.pid}-${Date.now().toString(36)}`;
const burstTopic = `bench-ingest-burst-${run}`;
const liveTopic = `bench-ingest-live-${run}`;
const mqttPrefix = `bench-ingest-${run}`;

/** Reading k of the run: meters in turn, each one interval later than its previous reading. */
class Readings {
  private next = 0;
  private readonly meterIds: number[];

  constructor(meterIds: number[]) {
    this.meterIds = meterIds;
  }

  take(): { meter_id: number; ts: number; kwh: number } {
    const k = this.next++;
    const round = Math.floor(k / this.meterIds.length);
    const meter = this.meterIds[k % this.meterIds.length];
    return { meter_id: meter, ts: simulationStart + (round + 1) * intervalMs, kwh: Math.round((round + 1) * 0.21 * 1000) / 1000 };
  }
}

async function importerStatistics(client: Client, name: string): Promise<ImporterStatistics> {
  const statistics = (await client.call('@Statistics')) as Statistics;
  const found = statistics.importers?.find((entry) => entry.importer === name);
  if (found === undefined) throw new Error(`the server reports no importer ${name}`);
  return found;
}

async function waitForApplied(client: Client, name: string, count: number): Promise<ImporterStatistics> {
  const deadline = Date.now() + drainTimeoutMs;
  for (;;) {
    const statistics = await importerStatistics(client, name);
    if (statistics.applied + statistics.deadLettered >= count) return statistics;
    if (Date.now() > deadline) throw new Error(`importer ${name} finished ${statistics.applied + statistics.deadLettered} of ${count} within ${drainTimeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, statisticsPollMs));
  }
}

const work = await mkdtemp(path.join(os.tmpdir(), 'sluice-bench-ingest-'));
const admin = new Admin({ clientId: `bench-ingest-admin-${run}`, bootstrapBrokers: brokers });
const producer = new Producer({ clientId: `bench-ingest-producer-${run}`, bootstrapBrokers: brokers, idempotent: true });
let server: ServerProcess | undefined;
let client: Client | undefined;
try {
  await admin.createTopics({ topics: [burstTopic, liveTopic], partitions: topicPartitions, replicas: 1 });
  const mapping = { procedure: 'IngestReading', format: 'json', params: ['meter_id', 'ts', 'kwh'] };
  const deployment = path.join(work, 'sluice.json');
  await writeFile(deployment, JSON.stringify({
    importers: [
      { name: 'kafka-burst', type: 'kafka', brokers, topics: [burstTopic], ...mapping },
      { name: 'kafka-live', type: 'kafka', brokers, topics: [liveTopic], ...mapping },
      { name: 'mqtt', type: 'mqtt', url: options.mqtt, qos: 1, clientId: `bench-ingest-${run}`, topics: [`${mqttPrefix}/meter/{meter_id}`], procedure: 'IngestReading', format: 'json', params: ['meter_id', 'ts', 'kwh'] },
    ],
  }));
  server = await startServerProcess({ schema: 'procedures/smart-meter/ddl.sql', partitions: options.partitions, durability: options.durability, args: ['--deployment', deployment], onOutput: () => {} });
  client = await connect(server.url, { timeoutMs: 120_000 });
  console.log(`ingest: ${server.url}, ${client.partitions} partitions; ${machineDescription()}; durability ${options.durability ?? 'none'}`);
  const dimensions = await loadDimensions(client, { meters: meterCount, seed: defaultSeed, folder: path.join(work, 'dimensions') });
  const readings = new Readings(dimensions.meters.map((meter) => meter.meter_id));

  // 1. Burst: produce everything, then measure how fast the importer drains it.
  const before = await importerStatistics(client, 'kafka-burst');
  const produceStart = performance.now();
  for (let sent = 0; sent < burstMessages; sent += produceBatch) {
    const messages = [];
    for (let i = sent; i < Math.min(burstMessages, sent + produceBatch); i++) {
      const reading = readings.take();
      messages.push({ topic: burstTopic, key: Buffer.from(String(reading.meter_id)), value: Buffer.from(JSON.stringify(reading)) });
    }
    await producer.send({ messages });
  }
  const produced = performance.now();
  const burst = await waitForApplied(client, 'kafka-burst', before.applied + burstMessages);
  const burstSeconds = (performance.now() - produceStart) / 1000;
  console.log(`kafka burst: ${burstMessages} readings produced in ${((produced - produceStart) / 1000).toFixed(1)} s, all applied after ${burstSeconds.toFixed(1)} s: ${Math.round(burstMessages / burstSeconds)}/s (dead-lettered ${burst.deadLettered})`);

  // 2. Live Kafka at a fixed rate: produce→commit latency.
  const liveCount = liveRate * liveSeconds;
  const tickMs = 50;
  const perTick = Math.max(1, Math.round((liveRate * tickMs) / 1000));
  const liveStart = performance.now();
  for (let sent = 0; sent < liveCount;) {
    const messages = [];
    for (let i = 0; i < perTick && sent < liveCount; i++, sent++) {
      const reading = readings.take();
      messages.push({ topic: liveTopic, key: Buffer.from(String(reading.meter_id)), value: Buffer.from(JSON.stringify(reading)) });
    }
    await producer.send({ messages });
    const due = liveStart + (sent / liveRate) * 1000;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  const live = await waitForApplied(client, 'kafka-live', liveCount);
  console.log(`kafka live: ${liveCount} readings at ${liveRate}/s: produce→commit p50 ${live.latencyP50Ms.toFixed(2)} ms, p99 ${live.latencyP99Ms.toFixed(2)} ms`);

  // 3. MQTT at QoS 1, as fast as one publisher goes (bounded by the rate): messages/s and latency.
  const publisher = await mqtt.connectAsync(options.mqtt, { clientId: `bench-ingest-publisher-${run}`, protocolVersion: 5 });
  const mqttStart = performance.now();
  const publishes: Promise<unknown>[] = [];
  for (let sent = 0; sent < liveCount; sent++) {
    const reading = readings.take();
    publishes.push(publisher.publishAsync(`${mqttPrefix}/meter/${reading.meter_id}`, JSON.stringify(reading), { qos: 1, properties: { userProperties: { timestamp: String(Date.now()) } } }));
    if (publishes.length >= produceBatch) await Promise.all(publishes.splice(0));
    const due = mqttStart + (sent / liveRate) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  await Promise.all(publishes);
  const viaMqtt = await waitForApplied(client, 'mqtt', liveCount);
  const mqttSeconds = (performance.now() - mqttStart) / 1000;
  await publisher.endAsync();
  console.log(`mqtt: ${liveCount} readings in ${mqttSeconds.toFixed(1)} s: ${Math.round(liveCount / mqttSeconds)}/s; publish→commit p50 ${viaMqtt.latencyP50Ms.toFixed(2)} ms, p99 ${viaMqtt.latencyP99Ms.toFixed(2)} ms`);

  console.log(JSON.stringify({
    workload: 'ingest',
    partitions: client.partitions,
    durability: options.durability ?? 'none',
    kafka_burst_per_s: Math.round(burstMessages / burstSeconds),
    kafka_live_rate: liveRate,
    kafka_p50_ms: live.latencyP50Ms,
    kafka_p99_ms: live.latencyP99Ms,
    mqtt_per_s: Math.round(liveCount / mqttSeconds),
    mqtt_p50_ms: viaMqtt.latencyP50Ms,
    mqtt_p99_ms: viaMqtt.latencyP99Ms,
    dead_lettered: burst.deadLettered + live.deadLettered + viaMqtt.deadLettered,
  }));
} finally {
  await client?.close();
  await server?.stop();
  await producer.close();
  await admin.deleteTopics({ topics: [burstTopic, liveTopic] }).catch(() => undefined);
  await admin.close();
  const cleanup = await mqtt.connectAsync(options.mqtt, { clientId: `bench-ingest-${run}`, clean: true, protocolVersion: 5, properties: { sessionExpiryInterval: 0 } }).catch(() => undefined);
  await cleanup?.endAsync();
  await rm(work, { recursive: true, force: true });
}
