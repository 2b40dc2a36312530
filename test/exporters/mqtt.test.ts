/**
 * The mqtt export target against the real Mosquitto (SLUICE_TEST_MQTT_URL): a real subscriber
 * reads back what the target published — topics from the template, JSON payloads, sequence user
 * properties, order per partition — and a TCP proxy in front of the broker takes it down and
 * brings it back mid-export: nothing is lost, duplicates are counted. Bad settings are refused
 * with errors that name the setting.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { applyDdl } from '../../engine/catalog/ddl.ts';
import { ErrorCode, SluiceError } from '../../engine/errors.ts';
import { MqttTarget, mqttSettings } from '../../exporters/mqtt.ts';
import type { TargetConfig } from '../../exporters/target.ts';
import { mqttUrlVariable } from '../services/env.ts';
import { alertRow, batchOf, dedupe, deliverUntilAcknowledged, describeWithService, eventually, range, startTcpProxy, streamDef, uniqueName, type TcpProxy } from './helpers.ts';

interface Received {
  topic: string;
  payload: Record<string, unknown>;
  partition: number;
  sequence: number;
}

const startMosquitto = 'mosquitto -d -c /etc/mosquitto/mosquitto.conf';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

describeWithService(mqttUrlVariable, startMosquitto, 'mqtt target against Mosquitto', (brokerUrl) => {
  const def = streamDef();

  async function subscriber(filter: string): Promise<{ client: MqttClient; received: Received[] }> {
    const client = await mqtt.connectAsync(brokerUrl, { protocolVersion: 5, clean: true, reconnectPeriod: 0 });
    cleanup.push(() => client.endAsync(true));
    const received: Received[] = [];
    client.on('message', (topic, payload, packet) => {
      const properties = (packet.properties?.userProperties ?? {}) as Record<string, string>;
      received.push({ topic, payload: JSON.parse(payload.toString()), partition: Number(properties['sluice-partition']), sequence: Number(properties['sluice-sequence']) });
    });
    await client.subscribeAsync(filter, { qos: 1 });
    return { client, received };
  }

  function target(config: Partial<TargetConfig> & Record<string, unknown>): MqttTarget {
    const created = new MqttTarget({ name: 'alerts', type: 'mqtt', url: brokerUrl, ...config }, { streams: [def] });
    cleanup.push(() => created.close());
    return created;
  }

  it('publishes every row to its templated topic with the row as JSON, acknowledged and in order per partition', async () => {
    const prefix = uniqueName("sluice-test");
    const { received } = await subscriber(`${prefix}/#`);
    const alerts = target({ topic: `${prefix}/{region}/{meter_id}` });
    await alerts.deliver(batchOf(def, 0, 1, range(1, 300).map((n) => alertRow(7, n, 'north'))));
    await alerts.deliver(batchOf(def, 1, 1, range(1, 200).map((n) => alertRow(8, n, 'south'))));
    await alerts.deliver(batchOf(def, 0, 301, range(301, 100).map((n) => alertRow(7, n, 'north'))));
    expect(await eventually(() => received.length >= 600), `received ${received.length} of 600`).toBe(true);
    expect(received).toHaveLength(600);
    expect(received.filter((m) => m.partition === 0).map((m) => m.sequence)).toEqual(range(1, 400));
    expect(received.filter((m) => m.partition === 1).map((m) => m.sequence)).toEqual(range(1, 200));
    expect(new Set(received.filter((m) => m.partition === 0).map((m) => m.topic))).toEqual(new Set([`${prefix}/north/7`]));
    expect(new Set(received.filter((m) => m.partition === 1).map((m) => m.topic))).toEqual(new Set([`${prefix}/south/8`]));
    const first = received.find((m) => m.partition === 0 && m.sequence === 2)!;
    expect(first.payload).toEqual({ meter_id: 7, region: 'north', kind: 'kind-2', kwh: 0.002, at: '2026-11-22T08:00:00.002Z', raw: Buffer.from([2, 1, 2]).toString('base64'), urgent: true });
    expect(alerts.published).toBe(600);
  });

  it('keeps a value from changing the topic shape and renders NULL as an empty level', async () => {
    const prefix = uniqueName("sluice-test");
    const { received } = await subscriber(`${prefix}/#`);
    const alerts = target({ topic: `${prefix}/{region}/{meter_id}/x` });
    const rows = [alertRow(1, 1, 'a/b+c#d%e'), alertRow(2, 2, 'plain')];
    rows[1][1] = null;
    await alerts.deliver(batchOf(def, 0, 1, rows));
    expect(await eventually(() => received.length >= 2)).toBe(true);
    expect(received.map((m) => m.topic)).toEqual([`${prefix}/a%2Fb%2Bc%23d%25e/1/x`, `${prefix}//2/x`]);
    expect(received[0].payload.region).toBe('a/b+c#d%e');
    expect(received[1].payload.region).toBeNull();
  });

  it('loses nothing when the broker goes away mid-export and comes back; duplicates are counted by sequence', async () => {
    const prefix = uniqueName("sluice-test");
    const { received } = await subscriber(`${prefix}/#`);
    const url = new URL(brokerUrl);
    const proxy: TcpProxy = await startTcpProxy(url.hostname, Number(url.port || 1883));
    cleanup.push(() => proxy.close());
    const alerts = target({ url: `mqtt://127.0.0.1:${proxy.port}`, topic: `${prefix}/{meter_id}`, reconnectDelayMinMs: 20, reconnectDelayMaxMs: 200, connectWaitMs: 300, ackTimeoutMs: 2000 });
    const batches = range(0, 20).map((b) => batchOf(def, 0, 1 + b * 50, range(1 + b * 50, 50).map((n) => alertRow(3, n))));
    const failures: Error[] = [];
    for (let b = 0; b < batches.length; b++) {
      if (b === 8) {
        // The broker "goes down" with the next deliveries in flight, and stays down for a while.
        await proxy.cut();
        setTimeout(() => void proxy.restore(), 500);
      }
      failures.push(...(await deliverUntilAcknowledged(alerts, batches[b], 50)));
    }
    expect(failures.length, 'deliveries failed while the broker was away').toBeGreaterThan(0);
    expect(failures[0].message).toMatch(/mqtt target 'alerts'/);
    expect(await eventually(() => new Set(received.map((m) => m.sequence)).size >= 1000), `received ${new Set(received.map((m) => m.sequence)).size} distinct of 1000`).toBe(true);
    const { unique, duplicates } = dedupe(received.map((m) => m.sequence));
    expect(unique).toEqual(range(1, 1000));
    expect(duplicates).toBe(received.length - 1000);
    expect(alerts.connected).toBe(true);
  });

  it('fails a delivery with a clear error while the broker cannot be reached, and keeps trying', async () => {
    const proxy = await startTcpProxy('127.0.0.1', 1);
    cleanup.push(() => proxy.close());
    await proxy.cut();
    const alerts = target({ url: `mqtt://127.0.0.1:${proxy.port}`, topic: 'never/{meter_id}', connectWaitMs: 100, reconnectDelayMinMs: 20, reconnectDelayMaxMs: 50 });
    await expect(alerts.deliver(batchOf(def, 0, 1, [alertRow(1, 1)]))).rejects.toThrow(/mqtt target 'alerts': cannot reach the broker at mqtt:\/\/127\.0\.0\.1:\d+/);
    expect(alerts.connected).toBe(false);
  });

  it('refuses a batch of a stream that lacks a placeholder column, naming it', async () => {
    const alerts = target({ topic: 'x/{region}' });
    const other = applyDdl('CREATE STREAM readings (meter_id BIGINT NOT NULL, kwh FLOAT);').tables.get('readings')!;
    await expect(alerts.deliver(batchOf(other, 0, 1, [[1, 2.5]]))).rejects.toThrow("topic template \"x/{region}\" names column {region}, which stream readings does not have (its columns: meter_id, kwh)");
  });
});

describe('mqtt target settings', () => {
  const def = streamDef();
  const brokerUrl = 'mqtt://127.0.0.1:1883';

  function refusal(config: Record<string, unknown>, env: Record<string, string> = {}): SluiceError {
    try {
      mqttSettings({ name: 'alerts', type: 'mqtt', url: brokerUrl, ...config }, { streams: [def], env });
    } catch (error) {
      expect(error).toBeInstanceOf(SluiceError);
      expect((error as SluiceError).code).toBe(ErrorCode.EXPORT_CONFIG);
      return error as SluiceError;
    }
    throw new Error('expected the settings to be refused');
  }

  it('names what is wrong', () => {
    expect(refusal({}).message).toBe(`export target 'alerts' (mqtt) setting 'topic': is required (for example "topic": "alerts/{region}/{meter_id}")`);
    expect(refusal({ topic: 'a/{zone}' }).message).toMatch(/setting 'topic': topic template "a\/\{zone\}" names column \{zone\}, which stream meter_alerts does not have \(its columns: meter_id, region, kind, kwh, at, raw, urgent\)/);
    expect(refusal({ topic: 'a/+/{region}' }).message).toMatch(/wildcard/);
    expect(refusal({ topic: 'a/{region' }).message).toMatch(/unmatched brace/);
    expect(refusal({ topic: 'a', qos: 0 }).message).toMatch(/setting 'qos': must be one of 1, 2, got 0/);
    expect(refusal({ topic: 'a', tpoic: 'b' }).message).toMatch(/setting 'tpoic': is not a setting of mqtt targets; did you mean 'topic'\?/);
    expect(refusal({ topic: 'a', url: 'http://x' }).message).toMatch(/setting 'url': "http:\/\/x" is not an MQTT URL/);
    expect(refusal({ topic: 'a', password: '${SLUICE_NO_SUCH_SECRET}' }).message).toMatch(/setting 'password': environment variable SLUICE_NO_SUCH_SECRET .* is not set/);
    expect(refusal({ topic: 'a', passwordEnv: 'SLUICE_NO_SUCH_SECRET' }).message).toMatch(/setting 'passwordEnv': environment variable SLUICE_NO_SUCH_SECRET is not set/);
  });

  it('takes secrets from the environment', () => {
    const settings = mqttSettings({ name: 'alerts', type: 'mqtt', url: brokerUrl, topic: 't', username: '${SLUICE_T_USER}', passwordEnv: 'SLUICE_T_PASS' }, { env: { SLUICE_T_USER: 'u', SLUICE_T_PASS: 'p' } });
    expect([settings.username, settings.password]).toEqual(['u', 'p']);
  });
});
