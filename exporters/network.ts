/**
 * Factories of the network export targets (`mqtt`, `kafka`, `http`) for the deployment file's
 * `exports.targets`: `type` picks the implementation, the target checks its own settings and
 * throws EXPORT_CONFIG naming the bad one. The pipeline's target registry registers these beside
 * its `file` and `postgresql` targets; `createNetworkTarget` serves callers that hold only a config.
 *
 * The context is structural (a catalog, a logger, an environment) so the pipeline can hand over
 * the context it gives every target. From the catalog a factory learns which streams export to
 * the target (`EXPORT TO TARGET name`), so a topic template or key naming a column one of them
 * lacks fails at start-up rather than at the first row.
 */
import type { Logger } from 'pino';
import type { Catalog } from '../engine/catalog/schema.ts';
import { ErrorCode, SluiceError } from '../engine/errors.ts';
import { HttpTarget } from './http.ts';
import { KafkaTarget } from './kafka.ts';
import { MqttTarget } from './mqtt.ts';
import type { Environment, NetworkTargetContext, StreamShape } from './settings.ts';
import type { ExportTarget, TargetConfig } from './target.ts';

export { HttpTarget, KafkaTarget, MqttTarget };

export interface NetworkFactoryContext {
  readonly catalog?: Catalog;
  readonly logger?: Logger;
  readonly env?: Environment;
}

export type NetworkTargetType = 'mqtt' | 'kafka' | 'http';
export type NetworkTargetFactory = (config: TargetConfig, context?: NetworkFactoryContext) => ExportTarget;

/** The streams of `catalog` whose rows go to the target named `target`. */
export function streamsExportingTo(catalog: Catalog | undefined, target: string): StreamShape[] {
  if (catalog === undefined) return [];
  const wanted = target.toLowerCase();
  return [...catalog.tables.values()].filter((def) => def.kind === 'stream' && def.exportTarget?.toLowerCase() === wanted);
}

function targetContext(config: TargetConfig, context: NetworkFactoryContext = {}): NetworkTargetContext {
  return { streams: streamsExportingTo(context.catalog, config.name), logger: context.logger, env: context.env };
}

export const networkTargetFactories: Readonly<Record<NetworkTargetType, NetworkTargetFactory>> = {
  mqtt: (config, context) => new MqttTarget(config, targetContext(config, context)),
  kafka: (config, context) => new KafkaTarget(config, targetContext(config, context)),
  http: (config, context) => new HttpTarget(config, targetContext(config, context)),
};

/** Builds a network target from its config; EXPORT_CONFIG for a bad config or another type. */
export function createNetworkTarget(config: TargetConfig, context?: NetworkFactoryContext): ExportTarget {
  if (typeof config !== 'object' || config === null) throw new SluiceError(ErrorCode.EXPORT_CONFIG, `an export target is an object with name and type, got ${JSON.stringify(config)}`);
  if (typeof config.name !== 'string' || config.name === '') throw new SluiceError(ErrorCode.EXPORT_CONFIG, `export target ${JSON.stringify(config)}: setting 'name' is required`);
  const factory = Object.hasOwn(networkTargetFactories, config.type) ? networkTargetFactories[config.type as NetworkTargetType] : undefined;
  if (factory === undefined) {
    throw new SluiceError(ErrorCode.EXPORT_CONFIG, `export target '${config.name}' setting 'type': ${JSON.stringify(config.type)} is not a network target type (mqtt, kafka, http)`, { object: config.name, path: ['targets', config.name, 'type'] });
  }
  return factory(config, context);
}
