/**
 * The importers' parts that need no broker: mappings (JSON paths, CSV columns, MQTT topic
 * variables, mapping functions, text → declared types) and their errors, deployment-file checks,
 * MQTT topic templates, and the exactly-once wrapper procedure run through a real router: a
 * message delivered twice takes effect once, on whichever partition its key routes to.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { Router } from '../engine/execution/router.ts';
import { SluiceError } from '../engine/errors.ts';
import { parseImporterConfigs } from '../importers/config.ts';
import { offsetsTableDdl, partitionKeyOf, wrapperName } from '../importers/exactly-once.ts';
import { buildMapping, fromText, type ImportMessage } from '../importers/mapping.ts';
import { matchTopic, parseTopicTemplate } from '../importers/mqtt.ts';
import { partitionOf } from '../engine/execution/hash.ts';
import { expectError } from './helpers.ts';
import { serve } from './server-helpers.ts';
import type { Statistics } from '../procedures/system.ts';

const fixtures = 'test/fixtures/importers';
const ingestTypes = [{ name: 'BIGINT' }, { name: 'BIGINT' }, { name: 'FLOAT' }, { name: 'VARCHAR', length: 32 }] as const;

function message(value: string, extra: Partial<ImportMessage> = {}): ImportMessage {
  return { topic: 'readings', partition: 2, offset: 41, key: Buffer.from('k1'), value: Buffer.from(value), timestamp: 1_700_000_000_000, headers: {}, topicValues: {}, ...extra };
}

const mappingBase = { where: 'importer t', procedure: 'Ingest', parameterCount: 4, parameterTypes: ingestTypes, proceduresDir: fixtures };

describe('mappings', () => {
  it('reads JSON fields by path, message properties and topic variables, converting text to the declared types', async () => {
    const map = await buildMapping({ format: 'json', params: ['meter.id', 'seq', 'readings[1].kwh', 'site'] }, { ...mappingBase, topicVariables: ['site'] });
    const values = map(message('{"meter":{"id":"7"},"seq":3,"readings":[{"kwh":0},{"kwh":"1.5"}]}', { topicValues: { site: 'north' } }));
    expect(values).toEqual([7, 3, 1.5, 'north']);
    const withProperties = await buildMapping({ format: 'json', params: ['$partition', '$offset', 'kwh', '$key'] }, mappingBase);
    expect(withProperties(message('{"kwh":2}'))).toEqual([2, 41, 2, 'k1']);
  });

  it('names the missing field, the bad JSON and the wrong type', async () => {
    const map = await buildMapping({ format: 'json', params: ['meter', 'seq', 'kwh', 'site'] }, mappingBase);
    expect(() => map(message('{"meter":1,"seq":2,"site":"x"}'))).toThrow(/no field kwh/);
    expect(() => map(message('not json'))).toThrow(/payload is not JSON/);
    expect(() => map(message('{"meter":"seven","seq":2,"kwh":1,"site":"x"}'))).toThrow(/parameter 1 of Ingest is BIGINT, but got "seven"/);
  });

  it('reads CSV records by column, with quotes, and an empty field as NULL', async () => {
    const map = await buildMapping({ format: 'csv', params: [1, 0, 2, 3] }, mappingBase);
    expect(map(message('9,"4",12.5,'))).toEqual([4, 9, 12.5, null]);
    const inOrder = await buildMapping({ format: 'csv', delimiter: ';' }, mappingBase);
    expect(inOrder(message('1;2;3.25;"a;b"'))).toEqual([1, 2, 3.25, 'a;b']);
    expect(() => inOrder(message('1;2'))).toThrow(/column 2 is missing/);
    expect(() => inOrder(message('1;2;3;"open'))).toThrow(/not one CSV record/);
  });

  it('calls a mapping function from the procedures folder and reports its failure', async () => {
    const map = await buildMapping({ format: 'function', module: 'map-reading.ts' }, mappingBase);
    expect(map(message('5:6:7.5'))).toEqual([5, 6, 7.5, 'readings']);
    expect(() => map(message('5:6'))).toThrow(/map-reading.ts failed: expected meter:seq:kwh/);
    await expect(buildMapping({ format: 'function', module: '../../../package.json' }, mappingBase)).rejects.toThrow(/outside the procedures folder/);
  });

  it('checks the parameter count against the procedure when the importer starts', async () => {
    await expect(buildMapping({ format: 'json', params: ['a', 'b'] }, mappingBase)).rejects.toThrow(/params maps 2 value\(s\), but procedure Ingest takes 4/);
    await expect(buildMapping({ format: 'csv', params: [0, 1, 2, 'nope'] }, mappingBase)).rejects.toThrow(/column numbers, topic variables/);
  });

  it('converts text to timestamps and booleans and refuses what does not fit', () => {
    expect(fromText('2026-12-01T10:00:00Z', { name: 'TIMESTAMP' }, 'p')).toBe(Date.parse('2026-12-01T10:00:00Z'));
    expect(fromText('1700000000000', { name: 'TIMESTAMP' }, 'p')).toBe(1_700_000_000_000);
    expect(fromText('TRUE', { name: 'BOOLEAN' }, 'p')).toBe(true);
    expect(() => fromText('99999999999999999999', { name: 'BIGINT' }, 'p')).toThrow(/outside/);
    expect(() => fromText('yesterday', { name: 'TIMESTAMP' }, 'p')).toThrow(/TIMESTAMP/);
  });
});

describe('MQTT topic templates', () => {
  it('turns {variables} into + and binds them from the concrete topic', () => {
    const template = parseTopicTemplate('plant/{site}/meter/{meter_id}/reading', 'importer m');
    expect(template.filter).toBe('plant/+/meter/+/reading');
    expect(matchTopic(template, 'plant/north/meter/42/reading')).toEqual({ site: 'north', meter_id: '42' });
    expect(matchTopic(template, 'plant/north/meter/42/status')).toBeUndefined();
    expect(matchTopic(parseTopicTemplate('plant/#', 'm'), 'plant/a/b')).toEqual({});
  });

  it('refuses malformed templates, naming them', () => {
    expect(() => parseTopicTemplate('plant/#/x', 'importer m')).toThrow(/'#' must be the last level/);
    expect(() => parseTopicTemplate('plant/{a}/{a}', 'importer m')).toThrow(/appears twice/);
    expect(() => parseTopicTemplate('plant/x{a}', 'importer m')).toThrow(/whole \{variable\}/);
  });
});

describe('deployment file importers', () => {
  const kafka = { name: 'k', type: 'kafka', brokers: ['127.0.0.1:9092'], topics: ['t'], procedure: 'Ingest', params: ['a', 'b', 'c', 'd'] };

  it('fills in defaults', () => {
    const [config] = parseImporterConfigs([kafka]);
    expect(config).toMatchObject({ format: 'json', delivery: 'at-least-once', startFrom: 'earliest', deadLetter: { table: true } });
    const [mqtt] = parseImporterConfigs([{ name: 'm', type: 'mqtt', url: 'mqtt://127.0.0.1:1883', topics: ['a/+'], procedure: 'Ingest', format: 'csv' }]);
    expect(mqtt).toMatchObject({ qos: 1, deadLetter: { table: true } });
  });

  it('names the entry and the field that is wrong', () => {
    const cases: [unknown, RegExp][] = [
      [{ importers: 1 }, /importers: must be an array/],
      [[{ ...kafka, type: 'amqp' }], /importers\[0\] \(k\): type must be one of "kafka", "mqtt"/],
      [[{ ...kafka, topics: [] }], /importers\[0\] \(k\): topics must be a non-empty array/],
      [[{ ...kafka, delivery: 'twice' }], /delivery must be one of/],
      [[kafka, { ...kafka }], /importers\[1\] \(k\): another importer is also named k/],
      [[{ ...kafka, colour: 'red' }], /unknown setting colour/],
      [[{ name: 'm', type: 'mqtt', url: 'http://x', topics: ['a'], procedure: 'P' }], /url must be mqtt:\/\//],
      [[{ name: 'm', type: 'mqtt', url: 'mqtt://x', topics: ['a'], procedure: 'P', deadLetter: { topic: 'd' } }], /deadLetter.topic is for Kafka importers/],
      [[{ ...kafka, format: 'function' }], /module must be a non-empty string \(missing\)/],
    ];
    for (const [raw, pattern] of cases) {
      const input = raw !== null && typeof raw === 'object' && 'importers' in raw ? (raw as { importers: unknown }).importers : raw;
      expect(() => parseImporterConfigs(input), JSON.stringify(raw)).toThrow(pattern);
      expect(() => parseImporterConfigs(input)).toThrow(SluiceError);
    }
  });
});

describe('the exactly-once wrapper procedure', () => {
  let router: Router | undefined;
  afterEach(async () => {
    await router?.close();
    router = undefined;
  });

  it('has a partition key for every partition that hashes to it', () => {
    for (const count of [1, 2, 3, 8, 16]) {
      for (let p = 0; p < count; p++) expect(partitionOf(partitionKeyOf(p, count), count)).toBe(p);
    }
  });

  it('applies a message once: a redelivery at or below the applied offset changes nothing', async () => {
    const ddl = (await readFile(`${fixtures}/meters.sql`, 'utf8')) + offsetsTableDdl;
    router = await Router.open({ ddl, proceduresDir: fixtures, partitions: 3 });
    const once = wrapperName('Ingest');
    expect(router.procedureNames).toContain(once);
    expect(router.procedureNames).not.toContain(wrapperName('Total'));
    // Offsets 0..9 of one source partition, keys spread over the three Sluice partitions.
    for (let offset = 0; offset < 10; offset++) expect(await router.call(once, 'imp', 'readings', 0, offset, 100 + offset, offset, 1.5, 'n')).toEqual([1, offset]);
    // Redelivered from offset 4: every one is recognized on its own partition.
    for (let offset = 4; offset < 10; offset++) expect(await router.call(once, 'imp', 'readings', 0, offset, 100 + offset, offset, 1.5, 'n')).toEqual([0, null]);
    // Another source partition or importer is independent.
    expect(await router.call(once, 'imp', 'readings', 1, 4, 104, 99, 1.5, 'n')).toEqual([1, 99]);
    expect(await router.call(once, 'other', 'readings', 0, 4, 104, 98, 1.5, 'n')).toEqual([1, 98]);
    const count = (await router.call('@AdHoc', 'SELECT COUNT(*) FROM readings')) as { rows: number[][] };
    expect(count.rows[0][0]).toBe(12);
    const offsets = (await router.call('@AdHoc', 'SELECT importer, source_partition, MAX(applied_offset) FROM sluice_importer_offsets GROUP BY importer, source_partition ORDER BY importer, source_partition')) as { rows: unknown[][] };
    expect(offsets.rows).toEqual([['imp', 0, 9], ['imp', 1, 4], ['other', 0, 4]]);
  });

  it('rolls the offset back with the procedure when it aborts, so the message can be tried again', async () => {
    const ddl = (await readFile(`${fixtures}/meters.sql`, 'utf8')) + offsetsTableDdl;
    router = await Router.open({ ddl, proceduresDir: fixtures, partitions: 2 });
    const once = wrapperName('Ingest');
    await expectError(() => router!.call(once, 'imp', 't', 0, 5, 1, 5, -1, 'n'), 'USER_ABORT', /negative reading/);
    expect(await router.call(once, 'imp', 't', 0, 5, 1, 5, 2, 'n')).toEqual([1, 5]);
  });
});

describe('importers whose brokers are down', () => {
  it('let the server start and serve, and say in @Statistics that they are not connected', async () => {
    const server = await serve({
      schema: `${fixtures}/meters.sql`,
      importers: [
        { name: 'kafka-down', type: 'kafka', brokers: ['127.0.0.1:1'], topics: ['readings'], procedure: 'Ingest', params: ['a', 'b', 'c', 'd'] },
        { name: 'mqtt-down', type: 'mqtt', url: 'mqtt://127.0.0.1:2', topics: ['readings/#'], procedure: 'Ingest', params: ['a', 'b', 'c', 'd'] },
      ],
    });
    expect(await server.router.call('Ingest', 1, 1, 1.5, 'direct')).toBe(1);
    const importers = ((await server.router.call('@Statistics')) as Statistics).importers!;
    expect(importers.map((importer) => importer.importer)).toEqual(['kafka-down', 'mqtt-down']);
    for (const importer of importers) expect(['starting', 'reconnecting']).toContain(importer.state);
  });
});
