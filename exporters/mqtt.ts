/**
 * The `mqtt` export target: every stream row becomes one MQTT message, published with QoS 1 (or
 * 2) to a topic built from the row (`alerts/{region}/{meter_id}`, exporters/topic-template.ts),
 * payload the row as JSON (exporters/row-json.ts). `deliver` resolves only when the broker has
 * acknowledged every message of the batch (PUBACK/PUBCOMP), so the pipeline's delivery position
 * never runs ahead of the broker.
 *
 * Delivery is at least once: when the connection drops in the middle of a batch, `deliver` fails
 * and the pipeline hands the whole batch again, so messages acknowledged before the drop arrive
 * twice. Under MQTT 5 every message carries user properties `sluice-stream`, `sluice-partition`
 * and `sluice-sequence`, which let a subscriber drop those duplicates.
 *
 * Connections are managed here, not by mqtt.js's fixed-period reconnect: after a drop the client
 * is discarded (so mqtt.js does not resend its own copies on top of the pipeline's redelivery) and
 * a new one connects after an exponential backoff.
 */
import mqtt, { type IClientPublishOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { ColumnDef, TableDef } from '../engine/catalog/schema.ts';
import type { Value } from '../engine/types.ts';
import { backoffDelayMs, sleep } from './backoff.ts';
import { rowToJson } from './row-json.ts';
import { TargetSettings, type NetworkTargetContext, type StreamShape } from './settings.ts';
import type { ExportBatch, ExportTarget, TargetConfig } from './target.ts';
import { TopicTemplate } from './topic-template.ts';

export const mqttReconnectDelayMinMs = 100;
export const mqttReconnectDelayMaxMs = 30_000;
/** A deliver fails when the broker acknowledges nothing for this long. */
export const mqttAckTimeoutMs = 30_000;
/** A deliver fails when no connection is up after waiting this long (the pipeline retries). */
export const mqttConnectWaitMs = 10_000;
/** Messages published and not yet acknowledged; also bounded by the broker's Receive Maximum. */
export const mqttInflightMax = 64;

interface MqttSettings {
  url: string;
  topic: TopicTemplate;
  qos: 1 | 2;
  retain: boolean;
  username: string | undefined;
  password: string | undefined;
  clientId: string;
  protocolVersion: 4 | 5;
  ackTimeoutMs: number;
  connectWaitMs: number;
  inflightMax: number;
  reconnectDelayMinMs: number;
  reconnectDelayMaxMs: number;
}

/** Reads and checks the settings; throws EXPORT_CONFIG naming the setting. */
export function mqttSettings(config: TargetConfig, context: NetworkTargetContext = {}): MqttSettings {
  const settings = new TargetSettings(config, context.env);
  const url = settings.requiredString('url', 'mqtt://127.0.0.1:1883');
  if (!/^(mqtts?|wss?|tcp|ssl):\/\//.test(url)) throw settings.error('url', `"${url}" is not an MQTT URL (mqtt://host:port, mqtts://, ws://, wss://)`);
  const templateText = settings.requiredString('topic', 'alerts/{region}/{meter_id}');
  let topic: TopicTemplate;
  try {
    topic = new TopicTemplate(templateText);
  } catch (error) {
    throw settings.error('topic', (error as Error).message);
  }
  for (const stream of context.streams ?? []) checkTopic(settings, topic, stream);
  const parsed: MqttSettings = {
    url,
    topic,
    qos: settings.oneOf('qos', [1, 2] as const, 1),
    retain: settings.boolean('retain', false),
    username: settings.string('username'),
    password: settings.string('password'),
    clientId: settings.string('clientId', `sluice-${config.name}-${process.pid}-${Math.floor(Math.random() * 1e9).toString(36)}`),
    protocolVersion: settings.oneOf('protocolVersion', [4, 5] as const, 5),
    ackTimeoutMs: settings.number('ackTimeoutMs', mqttAckTimeoutMs, { min: 1, max: 3_600_000 }),
    connectWaitMs: settings.number('connectWaitMs', mqttConnectWaitMs, { min: 0, max: 3_600_000 }),
    inflightMax: settings.number('inflightMax', mqttInflightMax, { min: 1, max: 65_535, integer: true }),
    reconnectDelayMinMs: settings.number('reconnectDelayMinMs', mqttReconnectDelayMinMs, { min: 1, max: 3_600_000 }),
    reconnectDelayMaxMs: settings.number('reconnectDelayMaxMs', mqttReconnectDelayMaxMs, { min: 1, max: 3_600_000 }),
  };
  settings.rejectUnknown();
  return parsed;
}

/** The topic template must name only columns every stream exporting to the target has. */
function checkTopic(settings: TargetSettings, topic: TopicTemplate, stream: StreamShape): void {
  try {
    topic.bind(stream.name, stream.columns);
  } catch (error) {
    throw settings.error('topic', (error as Error).message);
  }
}

export class MqttTarget implements ExportTarget {
  readonly name: string;
  private readonly config: TargetConfig;
  private readonly settings: MqttSettings;
  private readonly logger: Logger | undefined;
  private client: MqttClient | undefined;
  /** Receive Maximum of the current connection (MQTT 5 CONNACK), else 65535. */
  private brokerInflightMax = 65_535;
  private connectedWaiters: (() => void)[] = [];
  private lastConnectError = 'not connected yet';
  private attempt = 0;
  private readonly closed = new AbortController();
  private readonly topicsByStream = new Map<string, { columns: readonly ColumnDef[]; topicOf: (row: readonly Value[]) => string }>();
  /** Messages published since the target was created (a redelivered batch counts again). */
  published = 0;

  constructor(config: TargetConfig, context: NetworkTargetContext = {}) {
    this.name = config.name;
    this.config = config;
    this.settings = mqttSettings(config, context);
    this.logger = context.logger;
    this.connect();
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  /** A stream added live: the topic template must fit its columns. */
  addStream(stream: TableDef): void {
    checkTopic(new TargetSettings(this.config), this.settings.topic, stream);
  }

  async deliver(batch: ExportBatch): Promise<void> {
    const topicOf = this.topicFunction(batch);
    const topics = batch.rows.map(topicOf);
    const client = await this.connection();
    const window = Math.max(1, Math.min(this.settings.inflightMax, this.brokerInflightMax));
    await new Promise<void>((resolve, reject) => {
      let next = 0;
      let acknowledged = 0;
      let outstanding = 0;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (error?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.off('close', onClose);
        if (error === undefined) resolve();
        else reject(error);
      };
      const armTimer = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          finish(new Error(`mqtt target '${this.name}': no acknowledgement from ${this.settings.url} within ${this.settings.ackTimeoutMs} ms (${acknowledged} of ${batch.rows.length} messages of ${batch.stream} partition ${batch.partition} acknowledged)`));
          // The connection is suspect: start over with a fresh client.
          this.drop(client, 'acknowledgement timeout');
        }, this.settings.ackTimeoutMs);
      };
      const onClose = (): void => finish(new Error(`mqtt target '${this.name}': connection to ${this.settings.url} lost after ${acknowledged} of ${batch.rows.length} acknowledgements (${batch.stream} partition ${batch.partition} from sequence ${batch.firstSequence}); the batch will be sent again`));
      client.on('close', onClose);
      const pump = (): void => {
        while (!settled && outstanding < window && next < batch.rows.length) {
          const index = next++;
          outstanding++;
          const sequence = batch.firstSequence + index;
          const options: IClientPublishOptions = { qos: this.settings.qos, retain: this.settings.retain };
          if (this.settings.protocolVersion === 5) {
            options.properties = {
              contentType: 'application/json',
              userProperties: { 'sluice-stream': batch.stream, 'sluice-partition': String(batch.partition), 'sluice-sequence': String(sequence) },
            };
          }
          const payload = JSON.stringify(rowToJson(batch.columns, batch.rows[index]));
          client.publish(topics[index], payload, options, (error) => {
            outstanding--;
            if (error) {
              finish(new Error(`mqtt target '${this.name}': publishing to ${topics[index]} failed: ${error.message}`));
              return;
            }
            acknowledged++;
            this.published++;
            armTimer();
            if (acknowledged === batch.rows.length) finish();
            else pump();
          });
        }
      };
      if (batch.rows.length === 0) {
        finish();
        return;
      }
      armTimer();
      pump();
    });
  }

  async close(): Promise<void> {
    this.closed.abort();
    for (const wake of this.connectedWaiters.splice(0)) wake();
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await client.endAsync(true).catch(() => undefined);
  }

  // --- connection -----------------------------------------------------------------------------

  private topicFunction(batch: ExportBatch): (row: readonly Value[]) => string {
    const known = this.topicsByStream.get(batch.stream);
    if (known !== undefined && known.columns === batch.columns) return known.topicOf;
    let topicOf: (row: readonly Value[]) => string;
    try {
      topicOf = this.settings.topic.bind(batch.stream, batch.columns);
    } catch (error) {
      throw new Error(`mqtt target '${this.name}': ${(error as Error).message}`);
    }
    this.topicsByStream.set(batch.stream, { columns: batch.columns, topicOf });
    return topicOf;
  }

  /** The connected client, waiting up to connectWaitMs for one. */
  private async connection(): Promise<MqttClient> {
    const ready = this.readyClient();
    if (ready !== undefined) return ready;
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        const at = this.connectedWaiters.indexOf(wake);
        if (at >= 0) this.connectedWaiters.splice(at, 1);
        resolve();
      };
      const timer = setTimeout(wake, this.settings.connectWaitMs);
      this.connectedWaiters.push(wake);
    });
    const client = this.readyClient();
    if (client !== undefined) return client;
    throw new Error(`mqtt target '${this.name}': cannot reach the broker at ${this.settings.url}: ${this.lastConnectError}`);
  }

  private readyClient(): MqttClient | undefined {
    if (this.closed.signal.aborted) throw new Error(`mqtt target '${this.name}' is closed`);
    return this.client?.connected === true ? this.client : undefined;
  }

  private connect(): void {
    if (this.closed.signal.aborted) return;
    const s = this.settings;
    const client = mqtt.connect(s.url, {
      clientId: s.clientId,
      username: s.username,
      password: s.password,
      protocolVersion: s.protocolVersion,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: Math.max(1000, s.connectWaitMs),
      resubscribe: false,
    });
    this.client = client;
    client.on('connect', (connack) => {
      this.attempt = 0;
      this.brokerInflightMax = connack.properties?.receiveMaximum ?? 65_535;
      this.logger?.info({ target: this.name, url: s.url }, 'mqtt target connected');
      for (const wake of this.connectedWaiters.splice(0)) wake();
    });
    client.on('error', (error) => {
      this.lastConnectError = error.message;
    });
    client.on('close', () => this.drop(client, this.lastConnectError));
  }

  /** Discards a client whose connection ended or is suspect, and connects anew after a backoff. */
  private drop(client: MqttClient, reason: string): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.on('error', () => undefined);
    client.end(true);
    if (this.closed.signal.aborted) return;
    const delay = backoffDelayMs(this.attempt++, this.settings.reconnectDelayMinMs, this.settings.reconnectDelayMaxMs);
    this.logger?.warn({ target: this.name, url: this.settings.url, reason, delayMs: delay }, 'mqtt target disconnected; reconnecting');
    void sleep(delay, this.closed.signal).then(() => this.connect());
  }
}
