/**
 * Addresses of the external services integration tests talk to (Kafka, MQTT, ...), read from
 * SLUICE_TEST_* environment variables. Locally a missing variable skips the suite with a printed
 * reason; under CI=true, which starts every service (.ci/run), a missing one is a failure.
 *
 * ```ts
 * const brokers = serviceAddress('SLUICE_TEST_KAFKA_BROKERS', 'bash test/services/kafka.sh');
 * describe.skipIf(brokers === undefined)('kafka importer', () => { ... });
 * ```
 */

export const inCi = process.env.CI === 'true';

/**
 * The variable's value, or undefined (after a console.warn naming how to start the service) when
 * it is absent outside CI. Under CI an absent variable throws, so the suite fails loudly.
 */
export function serviceAddress(variable: string, howToStart: string): string | undefined {
  const value = process.env[variable];
  if (value !== undefined && value !== '') return value;
  const reason = `${variable} is not set; start the service with \`${howToStart}\` and export the line it prints`;
  if (inCi) throw new Error(`CI provides every service, but ${reason}`);
  console.warn(`skipping: ${reason}`);
  return undefined;
}

export const kafkaBrokersVariable = 'SLUICE_TEST_KAFKA_BROKERS';
export const mqttUrlVariable = 'SLUICE_TEST_MQTT_URL';

/** Kafka bootstrap brokers (host:port list), or undefined when the suite must be skipped. */
export function kafkaBrokers(): string[] | undefined {
  return serviceAddress(kafkaBrokersVariable, 'bash test/services/kafka.sh')?.split(',');
}

/** The MQTT broker's URL (mqtt://host:port), or undefined when the suite must be skipped. */
export function mqttUrl(): string | undefined {
  return serviceAddress(mqttUrlVariable, 'mosquitto -d -c /etc/mosquitto/mosquitto.conf; export SLUICE_TEST_MQTT_URL=mqtt://127.0.0.1:1883');
}

/** A name no other test run on this machine uses (topics, groups, client ids). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
