/**
 * The network targets' factory: `type` picks the implementation, and the catalog's streams that
 * export to the target (EXPORT TO TARGET name) are what its topic template and key are checked
 * against, so a template naming a missing column fails at start-up.
 */
import { describe, expect, it } from 'vitest';
import { applyDdl } from '../../engine/catalog/ddl.ts';
import { ErrorCode } from '../../engine/errors.ts';
import { HttpTarget, KafkaTarget, MqttTarget, createNetworkTarget, streamsExportingTo } from '../../exporters/network.ts';
import { expectError } from '../helpers.ts';
import { alertsDdl } from './helpers.ts';

const catalog = applyDdl(`${alertsDdl}
CREATE STREAM readings PARTITION ON COLUMN meter_id EXPORT TO TARGET Feed (meter_id BIGINT NOT NULL, kwh FLOAT);
CREATE STREAM other EXPORT TO TARGET elsewhere (n INTEGER);`);

describe('network target factory', () => {
  it('finds the streams exporting to a target, whatever the case of its name', () => {
    expect(streamsExportingTo(catalog, 'feed').map((s) => s.name)).toEqual(['readings']);
    expect(streamsExportingTo(catalog, 'ALERTS').map((s) => s.name)).toEqual(['meter_alerts']);
    expect(streamsExportingTo(undefined, 'alerts')).toEqual([]);
  });

  it('builds each type', async () => {
    const targets = [
      createNetworkTarget({ name: 'alerts', type: 'mqtt', url: 'mqtt://127.0.0.1:1', topic: 'a/{meter_id}', connectWaitMs: 0 }, { catalog }),
      createNetworkTarget({ name: 'alerts', type: 'kafka', brokers: ['127.0.0.1:1'], topic: 'alerts' }, { catalog }),
      createNetworkTarget({ name: 'alerts', type: 'http', url: 'http://127.0.0.1:1/x' }, { catalog }),
    ];
    expect(targets.map((t) => t.constructor)).toEqual([MqttTarget, KafkaTarget, HttpTarget]);
    for (const target of targets) await target.close();
  });

  it('checks templates and keys against the streams of the catalog at creation', async () => {
    await expectError(() => createNetworkTarget({ name: 'feed', type: 'mqtt', url: 'mqtt://h:1', topic: 'r/{region}' }, { catalog }), ErrorCode.EXPORT_CONFIG, /export target 'feed' \(mqtt\) setting 'topic': .* names column \{region\}, which stream readings does not have \(its columns: meter_id, kwh\)/);
    await expectError(() => createNetworkTarget({ name: 'feed', type: 'kafka', brokers: 'h:1', topic: 't', key: 'region' }, { catalog }), ErrorCode.EXPORT_CONFIG, /setting 'key': names column region, which stream readings does not have/);
  });

  it('accepts the settings the export pipeline reads from every target (batching, backoff)', async () => {
    const pipelineSettings = { batchRowsMax: 500, batchBytesMax: 1 << 20, lingerMs: 5, backoffMsMin: 10, backoffMsMax: 1000 };
    const target = createNetworkTarget({ name: 'alerts', type: 'http', url: 'http://127.0.0.1:1/x', ...pipelineSettings }, { catalog });
    expect(target).toBeInstanceOf(HttpTarget);
    await target.close();
  });

  it('refuses a type it does not build, and a config without a name', async () => {
    await expectError(() => createNetworkTarget({ name: 'x', type: 'file' }), ErrorCode.EXPORT_CONFIG, /export target 'x' setting 'type': "file" is not a network target type \(mqtt, kafka, http\)/);
    await expectError(() => createNetworkTarget({ name: '', type: 'mqtt' }), ErrorCode.EXPORT_CONFIG, /setting 'name' is required/);
  });
});
