/**
 * The MQTT importer: subscribes (mqtt.js, MQTT 5) to topic filters, which may name their levels
 * — `plant/{site}/meter/{meter_id}/reading` subscribes to `plant/+/meter/+/reading` and hands
 * `site` and `meter_id` to the mapping — and turns each message into one procedure call through
 * the pipeline (pipeline.ts).
 *
 * Acknowledgement: a QoS 1 message is acknowledged (PUBACK) only after its transaction committed
 * or it was dead-lettered. mqtt.js acknowledges inside its packet loop and would process one
 * message at a time if the acknowledgement were delayed there, so the importer tells the loop to
 * move on without acknowledging and sends the PUBACK itself when the message is finished — on the
 * same connection only: after a reconnect the broker delivers unacknowledged messages again.
 * The broker's in-flight window (our Receive Maximum) bounds how many are outstanding.
 *
 * Persistent session: a fixed client id with clean start off and a session expiry, so the broker
 * keeps the subscriptions and queues QoS 1 messages while Sluice is down, and delivers them when
 * it is back. QoS 0 messages are not queued by brokers for offline clients (at most once).
 *
 * Flow control: when the pipeline says pause, the importer holds back mqtt.js's packet loop, so
 * the client stops reading its socket and TCP pushes back to the broker. Reconnects back off
 * exponentially (reconnectDelayInitialMs … reconnectDelayMaxMs).
 */
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { ErrorCode, SluiceError } from '../engine/errors.ts';
import type { ImportMessage } from './mapping.ts';
import type { ImportPipeline } from './pipeline.ts';
import type { ImporterCounters } from './statistics.ts';

export const reconnectDelayInitialMs = 250;
export const reconnectDelayMaxMs = 30_000;
export const defaultSessionExpirySeconds = 7 * 24 * 3600;
export const defaultReceiveMaximum = 1000;
export const connectTimeoutMs = 10_000;
/** How long a stopping importer waits for its last acknowledgements to be sent. */
export const endWaitMs = 2000;

export interface MqttSourceOptions {
  importer: string;
  url: string;
  topics: string[];
  qos: 0 | 1;
  clientId: string;
  username?: string;
  password?: string;
  sessionExpirySeconds: number;
  receiveMaximum: number;
  logger: Logger | undefined;
  counters: ImporterCounters;
}

/** A subscription: the MQTT filter and, per level, the name of the variable it binds (or undefined). */
export interface TopicTemplate {
  readonly template: string;
  readonly filter: string;
  readonly levels: readonly (string | undefined)[];
}

/** Parses `plant/{site}/meter/+/reading` into a filter and variable positions; errors name the template. */
export function parseTopicTemplate(template: string, where: string): TopicTemplate {
  if (template === '') throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: a topic filter may not be empty`);
  const parts = template.split('/');
  const levels: (string | undefined)[] = [];
  const filter = parts.map((part, i) => {
    const variable = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(part);
    if (variable !== null) {
      if (levels.includes(variable[1])) throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: topic variable {${variable[1]}} appears twice in ${template}`);
      levels.push(variable[1]);
      return '+';
    }
    if (part === '#' && i !== parts.length - 1) throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: '#' must be the last level of ${template}`);
    if (/[{}]/.test(part) || (part.length > 1 && /[+#]/.test(part))) {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: level ${JSON.stringify(part)} of ${template} must be text, +, # or a whole {variable}`);
    }
    levels.push(undefined);
    return part;
  });
  return { template, filter: filter.join('/'), levels };
}

/** The variables of `topic` under `template`, or undefined when the topic does not match it. */
export function matchTopic(template: TopicTemplate, topic: string): Record<string, string> | undefined {
  const parts = topic.split('/');
  const filter = template.filter.split('/');
  const values: Record<string, string> = {};
  for (let i = 0; i < filter.length; i++) {
    if (filter[i] === '#') return values;
    if (i >= parts.length) return undefined;
    if (filter[i] === '+') {
      const name = template.levels[i];
      if (name !== undefined) values[name] = parts[i];
    } else if (filter[i] !== parts[i]) return undefined;
  }
  return parts.length === filter.length ? values : undefined;
}

/** Passed to mqtt.js's packet loop instead of finishing a QoS 1 message: go on, do not PUBACK yet. */
const acknowledgeLater = new Error('acknowledged by the Sluice importer after the transaction commits');

interface ClientInternals {
  _sendPacket(packet: { cmd: 'puback'; messageId: number; reasonCode?: number }, callback: () => void): void;
}

export class MqttSource {
  private readonly options: MqttSourceOptions;
  private readonly templates: TopicTemplate[];
  private client: MqttClient | undefined;
  private pipeline: ImportPipeline | undefined;
  /** Bumped on every (re)connect: a PUBACK belongs to the connection that delivered the message. */
  private connection = 0;
  /** mqtt.js packet-loop continuations held back while the pipeline is paused. */
  private readonly held: (() => void)[] = [];
  private pausedLoop = false;
  private reconnectDelayMs = reconnectDelayInitialMs;
  private subscribed = false;

  constructor(options: MqttSourceOptions, templates: TopicTemplate[]) {
    this.options = options;
    this.templates = templates;
  }

  async start(pipeline: ImportPipeline): Promise<void> {
    this.pipeline = pipeline;
    const options = this.options;
    const client = mqtt.connect(options.url, {
      protocolVersion: 5,
      clientId: options.clientId,
      clean: false,
      username: options.username,
      password: options.password,
      reconnectPeriod: reconnectDelayInitialMs,
      connectTimeout: connectTimeoutMs,
      properties: { sessionExpiryInterval: options.sessionExpirySeconds, receiveMaximum: options.receiveMaximum },
    });
    this.client = client;
    client.handleMessage = (packet, callback) => this.onPacket(packet as IPublishPacket, callback);
    client.on('connect', (connack) => {
      this.connection++;
      this.reconnectDelayMs = reconnectDelayInitialMs;
      client.options.reconnectPeriod = reconnectDelayInitialMs;
      options.logger?.info({ importer: options.importer, sessionPresent: connack.sessionPresent }, `MQTT connected to ${options.url}`);
      // Once per start: later reconnects resume the session, and mqtt.js resubscribes itself.
      // 'running' once the broker granted the subscriptions: from then on nothing published is missed.
      if (!this.subscribed) {
        this.subscribed = true;
        options.counters.state = 'subscribing';
        this.subscribe(client);
      } else options.counters.state = 'running';
    });
    client.on('offline', () => {
      options.counters.state = 'reconnecting';
      // Back off: mqtt.js reads the period each time it schedules the next attempt.
      client.options.reconnectPeriod = this.reconnectDelayMs;
      this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, reconnectDelayMaxMs);
    });
    client.on('error', (error) => {
      options.counters.errors++;
      options.logger?.warn({ importer: options.importer, err: error }, 'MQTT client error');
    });
    // Not waiting for the first connection: a broker that is down when Sluice starts must not
    // hold the server's start; mqtt.js keeps trying (with the backoff above).
  }

  private subscribe(client: MqttClient): void {
    const options = this.options;
    const filters = Object.fromEntries(this.templates.map((template) => [template.filter, { qos: options.qos }]));
    client.subscribe(filters, (error, granted) => {
      if (error) {
        options.counters.errors++;
        options.logger?.error({ importer: options.importer, err: error }, 'MQTT subscribe failed; trying again on the next connection');
        this.subscribed = false;
        return;
      }
      for (const grant of granted ?? []) {
        if (grant.qos > 2) {
          options.counters.errors++;
          options.logger?.error({ importer: options.importer, topic: grant.topic, code: grant.qos }, 'the broker refused the subscription');
        }
      }
      options.counters.state = 'running';
    });
  }

  private onPacket(packet: IPublishPacket, callback: (error?: Error) => void): void {
    const connection = this.connection;
    const qos = packet.qos;
    const messageId = packet.messageId;
    const topic = packet.topic;
    let topicValues: Record<string, string> = {};
    for (const template of this.templates) {
      const values = matchTopic(template, topic);
      if (values !== undefined) {
        topicValues = values;
        break;
      }
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : Buffer.from(packet.payload);
    const headers: Record<string, string> = {};
    const userProperties = packet.properties?.userProperties;
    if (userProperties !== undefined) for (const [name, value] of Object.entries(userProperties)) headers[name] = Array.isArray(value) ? value.join(',') : String(value);
    // A publisher that stamps its messages (user property `timestamp`, ms) gets publish→commit latency.
    const stamped = Number(headers.timestamp);
    const timestamp = Number.isFinite(stamped) && stamped > 0 ? stamped : Date.now();
    const message: ImportMessage = { topic, partition: 0, offset: -1, key: null, value: payload, timestamp, headers, topicValues };
    const finishLoop = qos === 1 ? () => callback(acknowledgeLater) : () => callback();
    const keepGoing = this.pipeline!.offer(message, () => {
      if (qos === 1 && messageId !== undefined && connection === this.connection && this.client?.connected) {
        (this.client as unknown as ClientInternals)._sendPacket({ cmd: 'puback', messageId }, () => {});
      }
    });
    if (keepGoing && !this.pausedLoop) finishLoop();
    else {
      this.pausedLoop = true;
      this.held.push(finishLoop);
    }
  }

  /** The pipeline may take messages again: let the packet loop go on. */
  resume(): void {
    this.pausedLoop = false;
    const held = this.held.splice(0);
    for (const go of held) go();
  }

  async stop(): Promise<void> {
    await this.pipeline?.close();
    const client = this.client;
    if (client === undefined) return;
    // Messages the pipeline still held are not acknowledged: the session delivers them again.
    // A clean end first, so the acknowledgements already written reach the broker.
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      client.endAsync(false).then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), endWaitMs);
      }),
    ]);
    clearTimeout(timer);
    if (!ended) await client.endAsync(true);
    this.options.counters.state = 'stopped';
  }
}
