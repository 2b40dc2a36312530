/**
 * The built-in export target types, registered by name (registry.ts). Importing this module is
 * what makes `type: "file"` and `type: "postgresql"` available to the pipeline; other target
 * types register here too.
 */
import { FileTarget } from './file-target.ts';
import { registerTargetType } from './registry.ts';

registerTargetType('file', (config, context) => new FileTarget(config, context));
