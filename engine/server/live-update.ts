/**
 * @UpdateApplication: changes the running application without a restart (docs/live-update.md).
 * An update carries DDL to add to the running schema and, optionally, the procedures folder's
 * files; it becomes a new version with its own number (the epoch):
 *
 *   1. check: the DDL applies to the running schema (errors name the statement, line and column
 *      of the update's text; what cannot be done live, such as ALTER, DROP or partitioning an
 *      existing table, is refused here);
 *   2. store: the version's whole schema and procedure files go to their own folder
 *      (durability/code-versions.ts), in the data directory when there is one;
 *   3. load: the router and every partition load the version beside the running one (a file that
 *      does not compile, a statement that does not plan against the new schema fails here), while
 *      calls keep running on the old version;
 *   4. switch: at one point of the global order (Router.switchVersion), logged in the command log.
 *
 * A failure at any step leaves the server on the old version with nothing lost; the caller gets
 * the error. One update at a time.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ApplicationUpdate, ApplicationUpdateResult } from '../../procedures/system.ts';
import { applyDdl } from '../catalog/ddl.ts';
import { checkProcedureFiles, codeRoot, hasCodeVersion, readProcedureFolder, removeCodeVersion, resolveOutsideImports, writeCodeVersion } from '../durability/code-versions.ts';
import { proceduresDigest } from '../durability/data-dir.ts';
import type { ServerDurability } from '../durability/server-durability.ts';
import { ErrorCode, SluiceError } from '../errors.ts';
import type { Router } from '../execution/router.ts';

export interface LiveUpdatesOptions {
  router: Router;
  /** The procedures folder the server was started with: imports leaving an update's folder resolve from it. */
  startupProceduresDir: string;
  /** With a data directory: versions are kept under <data>/code, and the switch is made durable. */
  durability: ServerDurability | undefined;
  logger?: Logger;
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
    const ddl = additions.trim() === '' ? router.ddl : checkDdl(additions, router);
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
      removeCodeVersion(root, epoch);
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
 * update's own text. Returns the new version's whole schema.
 */
function checkDdl(additions: string, router: Router): string {
  try {
    return applyDdl(additions, router.catalog).ddl;
  } catch (error) {
    if (error instanceof SluiceError && error.code === ErrorCode.UNSUPPORTED && /^\s*(ALTER|DROP|TRUNCATE|RENAME)\b/i.test(error.details.statement ?? '')) {
      throw new SluiceError(error.code, `${error.summary}; a live update only adds tables, indexes, views, streams and procedures and replaces procedure code (changing or removing what holds data needs a restart with the new schema)`, error.details);
    }
    throw error;
  }
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
