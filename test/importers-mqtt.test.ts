/**
 * The MQTT importer against the machine's Mosquitto, with a real publisher (the mqtt package):
 * topic templates bind levels to parameters; N readings in → N procedure effects; poison (not
 * JSON, or a reading the procedure aborts) lands in the dead-letter table with its reason while
 * the rest flow on; and a persistent session keeps QoS 1 readings published while Sluice is down
 * until it comes back.
 */
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { Statistics } from '../procedures/system.ts';
import { mqttUrl, uniqueName } from './services/env.ts';
import { serve } from './server-helpers.ts';
import { countRows, queryRows, waitUntil } from './importers-helpers.ts';

const url = mqttUrl();
const fixtures = 'test/fixtures/importers';

async function publish(topicsAndPayloads: [string, string][], qos: 0 | 1): Promise<void> {
  const client = await mqtt.connectAsync(url!, { clientId: uniqueName('publisher'), clean: true });
  try {
    for (const [topic, payload] of topicsAndPayloads) await client.publishAsync(topic, payload, { qos });
  } finally {
    await client.endAsync();
  }
}

function readingsFor(prefix: string, from: number, to: number): [string, string][] {
  const out: [string, string][] = [];
  for (let seq = from; seq < to; seq++) out.push([`${prefix}/plant/site${seq % 3}/meter/${500 + (seq % 11)}/reading`, JSON.stringify({ seq, kwh: seq / 10 })]);
  return out;
}

function importer(prefix: string, clientId: string, qos: 0 | 1) {
  return {
    name: 'plant',
    type: 'mqtt',
    url,
    qos,
    clientId,
    topics: [`${prefix}/plant/{site}/meter/{meter_id}/reading`],
    procedure: 'Ingest',
    format: 'json',
    params: ['meter_id', 'seq', 'kwh', 'site'],
  };
}

describe.skipIf(url === undefined)('MQTT importer', () => {
  const sessions: string[] = [];

  afterEach(async () => {
    // End the persistent sessions the tests left on the broker.
    while (sessions.length > 0) {
      const client = await mqtt.connectAsync(url!, { clientId: sessions.pop()!, clean: true, protocolVersion: 5, properties: { sessionExpiryInterval: 0 } });
      await client.endAsync();
    }
  });

  for (const qos of [0, 1] as const) {
    it(`QoS ${qos}: binds topic levels to parameters, applies N readings and dead-letters poison with its reason`, async () => {
      const prefix = uniqueName('sluice-test');
      const clientId = uniqueName('importer');
      sessions.push(clientId);
      const server = await serve({ schema: `${fixtures}/meters.sql`, importers: [importer(prefix, clientId, qos)] });
      const router = server.router;
      await waitUntil('the importer to subscribe', async () => ((await router.call('@Statistics')) as Statistics).importers?.[0].state === 'running');
      const n = 300;
      const messages = readingsFor(prefix, 0, n);
      messages.splice(100, 0, [`${prefix}/plant/site1/meter/501/reading`, '{"seq": oops']);
      messages.splice(200, 0, [`${prefix}/plant/site2/meter/502/reading`, JSON.stringify({ seq: 7777, kwh: -2 })]);
      await publish(messages, qos);
      await waitUntil(`${n} readings and 2 dead letters`, async () => (await countRows(router, 'readings')) === n && (await countRows(router, 'sluice_importer_dead_letters')) === 2);
      expect(await queryRows(router, 'SELECT seq, COUNT(*) FROM readings GROUP BY seq HAVING COUNT(*) > 1')).toEqual([]);
      expect(await queryRows(router, 'SELECT meter_id, site FROM readings WHERE seq = 13')).toEqual([[502, 'site1']]);
      const reasons = (await queryRows(router, 'SELECT reason FROM sluice_importer_dead_letters')).map((row) => String(row[0]));
      expect(reasons.some((reason) => /payload is not JSON/.test(reason))).toBe(true);
      expect(reasons.some((reason) => /negative reading -2 for meter 502/.test(reason))).toBe(true);
      const statistics = (await router.call('@Statistics')) as Statistics;
      expect(statistics.importers![0]).toMatchObject({ importer: 'plant', type: 'mqtt', applied: n, deadLettered: 2 });
    });
  }

  it('keeps QoS 1 readings published while Sluice is down and imports them when it is back', async () => {
    const prefix = uniqueName('sluice-test');
    const clientId = uniqueName('importer');
    sessions.push(clientId);
    const first = await serve({ schema: `${fixtures}/meters.sql`, importers: [importer(prefix, clientId, 1)] });
    await waitUntil('the importer to subscribe', async () => ((await first.router.call('@Statistics')) as Statistics).importers?.[0].state === 'running');
    await publish(readingsFor(prefix, 0, 50), 1);
    await waitUntil('the first 50 readings', async () => (await countRows(first.router, 'readings')) === 50);
    await first.close();

    // Sluice is down: the broker queues these for the importer's session.
    await publish(readingsFor(prefix, 50, 250), 1);

    const second = await serve({ schema: `${fixtures}/meters.sql`, importers: [importer(prefix, clientId, 1)] });
    // The first 50 were acknowledged before the stop; a redelivered one would be at-least-once's
    // right, but the 200 must all arrive, once each.
    const sentWhileDown = 'SELECT seq, COUNT(*) FROM readings WHERE seq >= 50 GROUP BY seq';
    await waitUntil('the 200 readings sent while Sluice was down', async () => (await queryRows(second.router, sentWhileDown)).length === 200);
    expect((await queryRows(second.router, sentWhileDown)).filter((row) => row[1] !== 1)).toEqual([]);
    expect(await queryRows(second.router, 'SELECT MIN(seq), MAX(seq) FROM readings WHERE seq >= 50')).toEqual([[50, 249]]);
  });

  it('refuses a malformed topic template at start, naming the importer and the template', async () => {
    const worse = { ...importer(uniqueName('sluice-test'), uniqueName('importer'), 1), topics: ['a/#/b'] };
    await expect(serve({ schema: `${fixtures}/meters.sql`, importers: [worse] })).rejects.toThrow(/importer plant: '#' must be the last level of a\/#\/b/);
  });
});
