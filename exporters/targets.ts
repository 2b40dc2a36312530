/**
 * The export target types, registered by name (registry.ts). Importing this module is what makes
 * `type: "file"`, `"postgresql"`, `"kafka"`, `"mqtt"` and `"http"` available to the pipeline.
 */
import { FileTarget } from './file-target.ts';
import { networkTargetFactories } from './network.ts';
import { PostgresTarget } from './postgres-target.ts';
import { registerTargetType } from './registry.ts';

registerTargetType('file', (config, context) => new FileTarget(config, context));
registerTargetType('postgresql', (config, context) => new PostgresTarget(config, context));
for (const [type, factory] of Object.entries(networkTargetFactories)) {
  registerTargetType(type, (config, context) => factory(config, { catalog: context.catalog, logger: context.logger }));
}
