/**
 * @UpdateApplication: changes the running application without a restart (docs/live-update.md).
 * An update carries DDL to add to the running schema and, optionally, the procedures folder's
 * files; it becomes a new version with its own number (the epoch):
 *
 *   1. check: the DDL applies to the running schema (errors name the statement, line and column
 *      of the update's text; what cannot be done live, such as ALTER, DROP or partitioning an
 *      existing table, is refused here), and the streams it adds fit the export configuration
 *      (a target that is configured, settings that fit their columns);
 *   2. store: the version's whole schema and procedure files go to their own folder
 *      (durability/code-versions.ts), in the data directory when there is one;
 *   3. load: the router and every partition load the version beside the running one (a file that
 *      does not compile, a statement that does not plan against the new schema fails here), while
 *      calls keep running on the old version;
 *   4. switch: at one point of the global order (Router.switchVersion), logged in the command log.
 *
 * A failure at any step leaves the server on the old version with nothing lost; the caller gets
 * the error. One update at a time. From the switch on, the export pipeline and the subscriptions
 * follow the router's catalog (exporters/exports.ts streamRowsOptions, subscriptions.ts), so a
 * stream the update adds is exported and can be subscribed to without a restart.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ApplicationUpdate, ApplicationUpdateResult } from '../../procedures/system.ts';
import { applyDdl } from '../catalog/ddl.ts';
import type { Catalog } from '../catalog/schema.ts';
import { checkProcedureFiles, codeRoot, hasCodeVersion, readProcedureFolder, removeCodeVersion, resolveOutsideImports, writeCodeVersion } from '../durability/code-versions.ts';
import { proceduresDigest } from '../durability/data-dir.ts';
import type { ServerDurability } from '../durability/server-durability.ts';
import { ErrorCode, SluiceError, positionOf, type SourcePosition } from '../errors.ts';
import { firstLine, splitStatements } from '../sql/parse.ts';
import type { Router } from '../execution/router.ts';

export interface LiveUpdatesOptions {
  router: Router;
  /** The procedures folder the server was started with: imports leaving an update's folder resolve from it. */
  startupProceduresDir: string;
  /** With a data directory: versions are kept under <data>/code, and the switch is made durable. */
  durability: ServerDurability | undefined;
  /** The export pipeline (with a data directory): the streams an update adds must fit it. */
  exports?: ExportsCheck;
  logger?: Logger;
}

/** What checks, before the switch, that an update's new streams can be exported (exporters/pipeline.ts). */
export interface ExportsCheck {
  /** Throws a SluiceError whose `object` is the stream at fault. */
  checkCatalog(catalog: Catalog): void;
}

export class LiveUpdates {
  private readonly options: LiveUpdatesOptions;
  private running = false;
  /** Without a data directory: a temporary folder for the versions, removed at close. */
  private temporaryRoot: string | undefined;

  constructor(options: LiveUpdatesOptions) {
    this.options = options;
  }

  /** The @UpdateApplication handler: `params` is `[update]`. */
  async apply(params: readonly unknown[]): Promise<ApplicationUpdateResult> {
    const update = checkUpdate(params);
    if (this.running) throw new SluiceError(ErrorCode.UNSUPPORTED, '@UpdateApplication: another update is being applied; send this one when it has finished', { object: '@UpdateApplication' });
    this.running = true;
    const started = performance.now();
    try {
      const result = await this.update(update);
      this.options.logger?.info({ ...result, seconds: Number(((performance.now() - started) / 1000).toFixed(3)) }, `application updated live to version ${result.epoch} at transaction ${result.transactionId}`);
      return result;
    } catch (error) {
      this.options.logger?.warn({ err: error, epoch: this.options.router.epoch }, 'live update refused; the server goes on with the version it runs');
      throw error;
    } finally {
      this.running = false;
    }
  }

  private async update(update: ApplicationUpdate): Promise<ApplicationUpdateResult> {
    const { router, durability, startupProceduresDir } = this.options;
    const before = { catalog: router.catalog, procedures: router.procedureNames, code: procedureCode(router, startupProceduresDir) };
    const additions = update.ddl ?? '';
    const catalog = additions.trim() === '' ? router.catalog : checkDdl(additions, router);
    if (catalog !== router.catalog) this.checkExports(catalog, additions);
    const ddl = catalog.ddl;
    const epoch = router.epoch + 1;
    const root = durability === undefined ? this.temporaryFolder() : codeRoot(durability.dataDir);
    // The running version too, the first time: the log's records of it replay with this copy.
    if (durability !== undefined && !hasCodeVersion(root, router.epoch)) writeCodeVersion(root, router.epoch, router.ddl, readProcedureFolder(router.proceduresDir), startupProceduresDir);
    const stored = writeCodeVersion(root, epoch, ddl, update.procedures ?? readProcedureFolder(router.proceduresDir), startupProceduresDir);
    let transactionId: number;
    try {
      const version = await router.loadVersion(epoch, ddl, stored.proceduresDir);
      transactionId = router.switchVersion(version);
    } catch (error) {
      // Switched, then a follower of the switch failed: the version runs and its code must stay.
      if (router.epoch !== epoch) removeCodeVersion(root, epoch);
      throw error;
    }
    await durability?.versionAdopted(router);
    const after = procedureCode(router, startupProceduresDir);
    return {
      epoch,
      transactionId,
      tablesAdded: [...router.catalog.tables.keys()].filter((name) => !before.catalog.tables.has(name)),
      proceduresAdded: router.procedureNames.filter((name) => !before.procedures.includes(name)),
      proceduresReplaced: [...after].filter(([name, code]) => before.code.has(name) && before.code.get(name) !== code).map(([name]) => name),
    };
  }

  /**
   * The streams the update adds must fit the export configuration: errors point at their
   * CREATE STREAM statement. Without a data directory nothing is exported, as at start.
   */
  private checkExports(catalog: Catalog, additions: string): void {
    const exports = this.options.exports;
    if (exports === undefined) {
      const exported = [...catalog.tables.values()].filter((def) => def.kind === 'stream' && def.exportTarget !== undefined && !this.options.router.catalog.tables.has(def.name));
      if (exported.length > 0) this.options.logger?.warn({ streams: exported.map((def) => def.name) }, 'streams with EXPORT TO TARGET added without a data directory: their rows reach subscriptions only and are not exported; start with --data to export them');
      return;
    }
    try {
      exports.checkCatalog(catalog);
    } catch (error) {
      const at = error instanceof SluiceError && error.details.object !== undefined && error.position === undefined ? streamStatement(additions, error.details.object) : undefined;
      if (at === undefined) throw error;
      const located = error as SluiceError;
      throw new SluiceError(located.code, `${located.summary} in: ${firstLine(at.text)}`, { ...located.details, position: at.position, statement: at.text.trim() });
    }
  }

  private temporaryFolder(): string {
    this.temporaryRoot ??= mkdtempSync(path.join(os.tmpdir(), 'sluice-code-'));
    return this.temporaryRoot;
  }

  /** Removes the temporary versions (without a data directory nothing needs them after a stop). */
  close(): void {
    if (this.temporaryRoot !== undefined) rmSync(this.temporaryRoot, { recursive: true, force: true });
    this.temporaryRoot = undefined;
  }
}

function checkUpdate(params: readonly unknown[]): ApplicationUpdate {
  const update = params[0];
  if (params.length !== 1 || update === null || typeof update !== 'object' || Array.isArray(update)) {
    throw new SluiceError(ErrorCode.PARAM_TYPE, '@UpdateApplication takes one object: { ddl?: string, procedures?: { "file.ts": "its text", … } }', { path: ['params'] });
  }
  const { ddl, procedures, ...unknown } = update as Record<string, unknown>;
  const extra = Object.keys(unknown);
  if (extra.length > 0) throw new SluiceError(ErrorCode.PARAM_TYPE, `@UpdateApplication: unknown field ${extra[0]} (it takes ddl and procedures)`, { path: [extra[0]] });
  if (ddl !== undefined && ddl !== null && typeof ddl !== 'string') throw new SluiceError(ErrorCode.PARAM_TYPE, '@UpdateApplication: ddl must be the text of DDL statements', { path: ['ddl'] });
  const files = procedures === undefined || procedures === null ? undefined : checkProcedureFiles(procedures);
  if ((ddl ?? '').trim() === '' && files === undefined) throw new SluiceError(ErrorCode.PARAM_TYPE, '@UpdateApplication: nothing to update (give ddl, procedures or both)', { path: ['params'] });
  return { ddl: (ddl ?? undefined) as string | undefined, procedures: files };
}

/**
 * The additions applied to the running schema: their errors name the line and column of the
 * update's own text. Returns the new version's catalog (its `ddl` is the whole schema).
 */
function checkDdl(additions: string, router: Router): Catalog {
  try {
    return applyDdl(additions, router.catalog);
  } catch (error) {
    if (error instanceof SluiceError && error.code === ErrorCode.UNSUPPORTED && /^\s*(ALTER|DROP|TRUNCATE|RENAME)\b/i.test(error.details.statement ?? '')) {
      throw new SluiceError(error.code, `${error.summary}; a live update only adds tables, indexes, views, streams and procedures and replaces procedure code (changing or removing what holds data needs a restart with the new schema)`, error.details);
    }
    throw error;
  }
}

/**
 * The `CREATE STREAM name` statement of the update's DDL, and the position of its target name
 * (or of the stream's name when it has none).
 */
function streamStatement(ddl: string, name: string): { text: string; position: SourcePosition } | undefined {
  for (const { text, offset } of splitStatements(ddl)) {
    const match = /^((?:\s|--[^\n]*\n|\/\*[\s\S]*?\*\/)*CREATE\s+STREAM\s+)(\w+)/i.exec(text);
    if (match === null || match[2].toLowerCase() !== name) continue;
    const target = /EXPORT\s+TO\s+TARGET\s+(\w+)/i.exec(text);
    const at = target === null ? match[1].length : target.index + target[0].length - target[1].length;
    return { text: text.replace(/^(?:\s|--[^\n]*\n|\/\*[\s\S]*?\*\/)*/, ''), position: positionOf(ddl, offset + at) };
  }
  return undefined;
}

/**
 * A digest of each TypeScript procedure's code: its file and the helpers it imports, as a stored
 * version holds them (imports leaving the folder resolved), so a copy of unchanged code compares
 * equal to the original.
 */
function procedureCode(router: Router, startupDir: string): Map<string, string> {
  const root = realpathSync(router.proceduresDir);
  const code = new Map<string, string>();
  for (const name of router.procedureNames) {
    const procedure = router.procedure(name)!;
    if (procedure.def.source.kind !== 'file') continue;
    const hash = createHash('sha256');
    for (const file of Object.keys(proceduresDigest([procedure.source], root).files)) {
      hash.update(`${file}\u0000${resolveOutsideImports(readFileSync(path.join(root, file), 'utf8'), file, startupDir)}\u0000`);
    }
    code.set(name, hash.digest('hex'));
  }
  return code;
}
