/**
 * The test Kafka broker (test/services/kafka.sh, started by .ci/run) answers: one message
 * produced to a fresh topic is consumed back by a consumer group, key, value and all. Other
 * suites (importers, exporters) build on this broker; when this fails, start here.
 */
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { afterAll, describe, expect, it } from 'vitest';
import { kafkaBrokers, uniqueName } from './services/env.ts';

const brokers = kafkaBrokers();

describe.skipIf(brokers === undefined)('the test Kafka broker', () => {
  const topic = uniqueName('sluice-smoke');
  const admin = brokers ? new Admin({ clientId: uniqueName('smoke-admin'), bootstrapBrokers: brokers }) : undefined;

  afterAll(async () => {
    await admin?.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin?.close();
  });

  it('carries one message from a producer to a consumer group', async () => {
    await admin!.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
    const producer = new Producer({ clientId: uniqueName('smoke-producer'), bootstrapBrokers: brokers!, serializers: stringSerializers });
    try {
      await producer.send({ messages: [{ topic, key: 'meter-7', value: '{"kwh":1.5}' }] });
    } finally {
      await producer.close();
    }
    const consumer = new Consumer({ groupId: uniqueName('smoke-group'), clientId: uniqueName('smoke-consumer'), bootstrapBrokers: brokers!, deserializers: stringDeserializers });
    try {
      const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, sessionTimeout: 10_000, heartbeatInterval: 500 });
      let received: { key: string; value: string } | undefined;
      for await (const message of stream) {
        received = { key: message.key, value: message.value };
        break;
      }
      await stream.close();
      expect(received).toEqual({ key: 'meter-7', value: '{"kwh":1.5}' });
    } finally {
      await consumer.close(true);
    }
  });
});
