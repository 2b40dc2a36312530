/**
 * Importers as the server runs them: the schema additions they need (the exactly-once offsets
 * table, the dead-letter table), and starting and stopping every configured importer with the
 * server (engine/server/server.ts). Each importer is a source (kafka.ts, mqtt.ts) feeding a
 * pipeline (pipeline.ts) with a mapping (mapping.ts) and a dead-letter sink (dead-letter.ts).
 * @Statistics gets an `importers` section from here.
 */
import type { Logger } from 'pino';
import { ErrorCode, SluiceError } from '../engine/errors.ts';
import type { Router } from '../engine/execution/router.ts';
import type { ImporterStatistics } from '../procedures/system.ts';
import { parseImporterConfigs, type ImporterConfig } from './config.ts';
import { KafkaDeadLetterSink, TableDeadLetterSink, deadLettersTableDdl, type DeadLetterSink } from './dead-letter.ts';
import { offsetsTableDdl } from './exactly-once.ts';
import { KafkaSource, defaultHeartbeatIntervalMs, defaultSessionTimeoutMs } from './kafka.ts';
import { buildMapping } from './mapping.ts';
import { MqttSource, defaultReceiveMaximum, defaultSessionExpirySeconds, parseTopicTemplate } from './mqtt.ts';
import { ImportPipeline } from './pipeline.ts';
import { ImporterCounters } from './statistics.ts';

export { parseImporterConfigs, type ImporterConfig };

/** DDL the configured importers need, appended to the schema before the router loads it. */
export function importerSchemaDdl(configs: readonly ImporterConfig[]): string {
  let ddl = '';
  if (configs.some((config) => config.type === 'kafka' && config.delivery === 'exactly-once')) ddl += offsetsTableDdl;
  if (configs.some((config) => 'table' in config.deadLetter)) ddl += deadLettersTableDdl;
  return ddl;
}

interface Running {
  config: ImporterConfig;
  counters: ImporterCounters;
  pipeline: ImportPipeline;
  source: KafkaSource | MqttSource;
  deadLetter: DeadLetterSink;
}

export interface RunningImporters {
  statistics(): ImporterStatistics[];
  stop(): Promise<void>;
}

export interface StartImportersOptions {
  proceduresDir: string;
  logger?: Logger;
}

/** Starts every importer; a mapping or procedure mistake stops them all and throws, naming the importer. */
export async function startImporters(router: Router, configs: readonly ImporterConfig[], options: StartImportersOptions): Promise<RunningImporters> {
  const running: Running[] = [];
  const logger = options.logger;
  const stopAll = async (): Promise<void> => {
    await Promise.all(running.map(async (importer) => {
      try {
        await importer.source.stop();
      } catch (error) {
        logger?.warn({ importer: importer.config.name, err: error }, 'importer did not stop cleanly');
      }
      await importer.deadLetter.close().catch(() => undefined);
      importer.counters.close();
    }));
    router.statisticsSections.delete('importers');
  };
  try {
    for (const config of configs) running.push(await startOne(router, config, options));
  } catch (error) {
    await stopAll();
    throw error;
  }
  const statistics = (): ImporterStatistics[] => running.map((importer) => importer.counters.snapshot(importer.pipeline.inFlight, importer.pipeline.paused));
  if (running.length > 0) router.statisticsSections.set('importers', statistics);
  for (const importer of running) logger?.info({ importer: importer.config.name, type: importer.config.type, procedure: importer.config.procedure }, 'importer started');
  return { statistics, stop: stopAll };
}

async function startOne(router: Router, config: ImporterConfig, options: StartImportersOptions): Promise<Running> {
  const where = `importer ${config.name}`;
  const procedure = router.procedure(config.procedure);
  if (procedure === undefined) {
    throw new SluiceError(ErrorCode.UNKNOWN_PROCEDURE, `${where}: procedure ${config.procedure} is not in the schema`, { object: config.procedure });
  }
  if (config.type === 'kafka' && config.delivery === 'exactly-once' && (procedure.partitionParameter === undefined || procedure.readOnly)) {
    throw new SluiceError(ErrorCode.INVALID_SCHEMA, `${where}: exactly-once needs a single-partition procedure that writes; ${config.procedure} is ${procedure.readOnly ? 'read-only' : 'multi-partition'}`);
  }
  const templates = config.type === 'mqtt' ? config.topics.map((topic) => parseTopicTemplate(topic, where)) : [];
  const mapping = await buildMapping(config, {
    where,
    procedure: config.procedure,
    parameterCount: procedure.parameterCount,
    parameterTypes: procedure.parameterTypes,
    proceduresDir: options.proceduresDir,
    topicVariables: templates.flatMap((template) => template.levels.filter((level): level is string => level !== undefined)),
  });
  const logger = options.logger?.child({ importer: config.name });
  const counters = new ImporterCounters(config.name, config.type);
  const clientId = config.clientId ?? `sluice-${config.name}`;
  const deadLetter: DeadLetterSink = 'topic' in config.deadLetter
    ? new KafkaDeadLetterSink(config.deadLetter.topic, { bootstrapBrokers: (config as { brokers: string[] }).brokers, clientId: `${clientId}-dead-letters` }, logger)
    : new TableDeadLetterSink(router, logger);
  let source: KafkaSource | MqttSource;
  if (config.type === 'kafka') {
    source = new KafkaSource({
      importer: config.name,
      brokers: config.brokers,
      topics: config.topics,
      groupId: config.groupId ?? `sluice-${config.name}`,
      clientId,
      startFrom: config.startFrom,
      sessionTimeoutMs: config.sessionTimeoutMs ?? defaultSessionTimeoutMs,
      heartbeatIntervalMs: config.heartbeatIntervalMs ?? defaultHeartbeatIntervalMs,
      logger,
      counters,
    });
  } else {
    source = new MqttSource({
      importer: config.name,
      url: config.url,
      topics: config.topics,
      qos: config.qos,
      clientId,
      username: config.username,
      password: config.password,
      sessionExpirySeconds: config.sessionExpirySeconds ?? defaultSessionExpirySeconds,
      receiveMaximum: config.receiveMaximum ?? defaultReceiveMaximum,
      logger,
      counters,
    }, templates);
  }
  const pipeline = new ImportPipeline({
    importer: config.name,
    procedure: config.procedure,
    delivery: config.type === 'kafka' ? config.delivery : 'at-least-once',
    mapping,
    deadLetter,
    router,
    logger,
    counters,
    inFlightMax: config.inFlightMax,
    resume: () => source.resume(),
  });
  await source.start(pipeline);
  return { config, counters, pipeline, source, deadLetter };
}
