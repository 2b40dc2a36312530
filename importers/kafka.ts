/**
 * The Kafka importer: a consumer group member (@platformatic/kafka) that turns each message of
 * its topics into one call of a procedure, through the pipeline (pipeline.ts), and commits the
 * group's offsets only for messages that are finished (applied, skipped as duplicates, or
 * dead-lettered), contiguously per partition: a message still running holds back the commit of
 * every later one in its partition.
 *
 * Delivery:
 * - at-least-once (default): a message's offset is committed after its transaction answered. With
 *   the command log in sync mode an answer means the transaction is durable, so a crash loses
 *   nothing; messages answered but not yet committed are delivered again after a restart and run
 *   again (duplicates are possible, loss is not).
 * - exactly-once: every message runs as `@ImportOnce:<procedure>` (exactly-once.ts), which stores
 *   the offset in Sluice in the same transaction and skips a message already applied; redelivery
 *   after a crash, rebalance or broker restart therefore changes nothing twice.
 *
 * Rebalances and broker restarts: when the message stream fails (the group needs a rejoin, the
 * broker went away), the importer opens a new stream after a backoff; it resumes from the
 * committed offsets, so messages in flight at that moment are delivered again (see above).
 */
import { Consumer, type Message, type MessagesStream } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { ImportMessage } from './mapping.ts';
import type { ImportPipeline } from './pipeline.ts';
import type { ImporterCounters } from './statistics.ts';

export const commitIntervalMs = 200;
export const lagIntervalMs = 2000;
export const restartDelayInitialMs = 200;
export const restartDelayMaxMs = 10_000;
export const defaultSessionTimeoutMs = 10_000;
export const defaultHeartbeatIntervalMs = 1000;
/** Finished entries at the head of a partition's progress before they are cut off. */
const trimEntriesMin = 1024;

export interface KafkaSourceOptions {
  importer: string;
  brokers: string[];
  topics: string[];
  groupId: string;
  clientId: string;
  /** Where a partition without a committed offset starts. */
  startFrom: 'earliest' | 'latest';
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  logger: Logger | undefined;
  counters: ImporterCounters;
}

type KafkaMessage = Message<Buffer, Buffer, Buffer, Buffer>;

/**
 * One partition's messages in offset order: which are finished, the next offset this process has
 * not seen, and the commit point. Kept for the importer's whole life (not per message stream): a
 * stream that starts again (a rejoin, a broker restart, or the client re-reading from the
 * committed offsets at startup) delivers messages this process already holds, and those are
 * dropped here rather than run twice.
 */
class PartitionProgress {
  readonly topic: string;
  readonly partition: number;
  nextExpected = -1n;
  readonly offsets: bigint[] = [];
  readonly finished: boolean[] = [];
  head = 0;
  /** Entries removed from the front of offsets/finished (absolute index = trimmed + array index). */
  trimmed = 0;
  /** The next offset to commit (one past the last finished message at the head), and what is committed. */
  commitOffset = -1n;
  committed = -1n;
  leaderEpoch = -1;

  constructor(topic: string, partition: number) {
    this.topic = topic;
    this.partition = partition;
  }
}

export class KafkaSource {
  private readonly options: KafkaSourceOptions;
  private readonly consumer: Consumer<Buffer, Buffer, Buffer, Buffer>;
  private pipeline: ImportPipeline | undefined;
  private stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  /** Bumped for every new stream, so that only the current stream's failure restarts it. */
  private generation = 0;
  private readonly progress = new Map<string, PartitionProgress>();
  private commitTimer: NodeJS.Timeout | undefined;
  private commitInFlight: Promise<void> | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartDelayMs = restartDelayInitialMs;
  private stopping = false;
  /** Messages dropped because this process already had them (a stream re-reading). */
  redeliveriesDropped = 0;

  constructor(options: KafkaSourceOptions) {
    this.options = options;
    this.consumer = new Consumer({
      groupId: options.groupId,
      clientId: options.clientId,
      bootstrapBrokers: options.brokers,
      sessionTimeout: options.sessionTimeoutMs,
      heartbeatInterval: options.heartbeatIntervalMs,
      autocommit: false,
    });
    this.consumer.on('consumer:lag', (lag: Map<string, bigint[]>) => {
      let total = 0n;
      for (const partitions of lag.values()) for (const value of partitions) if (value > 0n) total += value;
      options.counters.lag = Number(total);
    });
    this.consumer.on('consumer:group:join', (payload: { memberId: string; generationId?: number; assignments?: unknown }) => {
      options.logger?.info({ importer: options.importer, memberId: payload.memberId, generation: payload.generationId, assignments: payload.assignments }, 'joined the consumer group');
    });
    this.consumer.on('consumer:group:rebalance', () => options.logger?.info({ importer: options.importer }, 'consumer group rebalance'));
    this.consumer.on('consumer:lag:error', (error: Error) => options.logger?.debug({ importer: options.importer, err: error }, 'lag not measured'));
  }

  async start(pipeline: ImportPipeline): Promise<void> {
    this.pipeline = pipeline;
    // Not awaited: a broker that is down (or slow) when Sluice starts must not hold the server's
    // start; the importer joins its group in the background and keeps trying.
    this.openStream().catch((error: Error) => this.onStreamFailure(error, this.generation));
    this.commitTimer = setInterval(() => void this.flushCommits(), commitIntervalMs);
    this.consumer.startLagMonitoring({ topics: this.options.topics }, lagIntervalMs);
  }

  /** The pipeline may take messages again. */
  resume(): void {
    this.stream?.resume();
  }

  private async openStream(): Promise<void> {
    const generation = ++this.generation;
    const stream = await this.consumer.consume({
      topics: this.options.topics,
      mode: 'committed',
      fallbackMode: this.options.startFrom,
      autocommit: false,
      sessionTimeout: this.options.sessionTimeoutMs,
      heartbeatInterval: this.options.heartbeatIntervalMs,
    });
    if (this.stopping) {
      await stream.close();
      return;
    }
    this.stream = stream;
    this.options.counters.state = 'running';
    this.restartDelayMs = restartDelayInitialMs;
    stream.on('data', (message: KafkaMessage) => this.onMessage(message, stream));
    stream.on('error', (error: Error) => this.onStreamFailure(error, generation));
    stream.on('close', () => this.onStreamFailure(undefined, generation));
  }

  private onMessage(message: KafkaMessage, stream: MessagesStream<Buffer, Buffer, Buffer, Buffer>): void {
    const key = `${message.topic}\u0000${message.partition}`;
    let progress = this.progress.get(key);
    if (progress === undefined) {
      progress = new PartitionProgress(message.topic, message.partition);
      this.progress.set(key, progress);
    }
    if (message.offset < progress.nextExpected) {
      this.redeliveriesDropped++;
      return;
    }
    progress.nextExpected = message.offset + 1n;
    const index = progress.trimmed + progress.offsets.length;
    progress.offsets.push(message.offset);
    progress.finished.push(false);
    const owner = progress;
    const leaderEpoch = message.leaderEpoch;
    const headers: Record<string, string> = {};
    for (const [name, value] of message.headers) headers[name.toString()] = value.toString();
    const imported: ImportMessage = {
      topic: message.topic,
      partition: message.partition,
      offset: Number(message.offset),
      key: message.key ?? null,
      value: message.value ?? Buffer.alloc(0),
      timestamp: Number(message.timestamp),
      headers,
      topicValues: {},
    };
    const keepGoing = this.pipeline!.offer(imported, () => {
      owner.finished[index - owner.trimmed] = true;
      this.advance(owner, leaderEpoch);
    });
    if (!keepGoing) stream.pause();
  }

  /** Moves the partition's commit point past every finished message at its head. */
  private advance(progress: PartitionProgress, leaderEpoch: number): void {
    let last = -1n;
    while (progress.head < progress.offsets.length && progress.finished[progress.head]) {
      last = progress.offsets[progress.head];
      progress.head++;
    }
    if (progress.head >= trimEntriesMin && progress.head * 2 >= progress.offsets.length) {
      progress.offsets.splice(0, progress.head);
      progress.finished.splice(0, progress.head);
      progress.trimmed += progress.head;
      progress.head = 0;
    }
    if (last >= 0n) {
      progress.commitOffset = last + 1n;
      progress.leaderEpoch = leaderEpoch;
    }
  }

  /** Commits every partition's new commit point; one commit request at a time, offsets only move forward. */
  private flushCommits(): Promise<void> {
    if (this.commitInFlight !== undefined) return this.commitInFlight;
    const offsets: { progress: PartitionProgress; offset: bigint; leaderEpoch: number }[] = [];
    for (const progress of this.progress.values()) {
      if (progress.commitOffset > progress.committed) offsets.push({ progress, offset: progress.commitOffset, leaderEpoch: progress.leaderEpoch });
    }
    if (offsets.length === 0) return Promise.resolve();
    this.commitInFlight = this.consumer
      .commit({ offsets: offsets.map(({ progress, offset, leaderEpoch }) => ({ topic: progress.topic, partition: progress.partition, offset, leaderEpoch })) })
      .then(
        () => {
          for (const { progress, offset } of offsets) if (offset > progress.committed) progress.committed = offset;
        },
        (error: Error) => {
          this.options.logger?.debug({ importer: this.options.importer, err: error }, 'offset commit failed; retried with the next one');
        },
      )
      .finally(() => {
        this.commitInFlight = undefined;
      });
    return this.commitInFlight;
  }

  private onStreamFailure(error: Error | undefined, generation: number): void {
    if (this.stopping || generation !== this.generation || this.restartTimer !== undefined) return;
    this.options.counters.errors++;
    this.options.counters.state = 'reconnecting';
    this.options.logger?.warn({ importer: this.options.importer, err: error }, `Kafka message stream ended; reopening in ${this.restartDelayMs} ms`);
    this.generation++;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.openStream().catch((reason: Error) => this.onStreamFailure(reason, this.generation));
    }, this.restartDelayMs);
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, restartDelayMaxMs);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.stream?.pause();
    await this.pipeline?.close();
    clearInterval(this.commitTimer);
    this.consumer.stopLagMonitoring();
    await this.flushCommits();
    await this.flushCommits();
    try {
      await this.stream?.close();
    } catch (error) {
      this.options.logger?.debug({ importer: this.options.importer, err: error }, 'closing the message stream');
    }
    await this.consumer.close(true);
    this.options.counters.state = 'stopped';
  }
}
