/**
 * Export target types by name: the deployment file's `type` picks a factory here. The file and
 * PostgreSQL targets register themselves in exporters/targets.ts; other target types (Kafka, MQTT,
 * HTTP) register theirs the same way, so the pipeline never names an implementation.
 */
import type { Catalog } from '../engine/catalog/schema.ts';
import type { Logger } from 'pino';
import type { ExportTarget, TargetConfig } from './target.ts';

export interface TargetContext {
  /** `<data>/export`: where a file target writes when its config names no path. */
  readonly exportDir: string;
  readonly catalog: Catalog;
  readonly logger: Logger | undefined;
}

/**
 * Checks the config (throwing EXPORT_CONFIG errors that name the setting) and builds the target,
 * synchronously: a version switch that adds a stream may build one (the default file target)
 * between two transactions. Targets connect on first use.
 */
export type TargetFactory = (config: TargetConfig, context: TargetContext) => ExportTarget;

const factories = new Map<string, TargetFactory>();

export function registerTargetType(type: string, factory: TargetFactory): void {
  factories.set(type, factory);
}

export function targetFactory(type: string): TargetFactory | undefined {
  return factories.get(type);
}
