/**
 * The code of live-updated application versions (docs/live-update.md), one folder per version:
 *
 *   <root>/<epoch>/schema.sql      the version's whole schema (DDL)
 *   <root>/<epoch>/procedures/…    its procedure files (the code files of its procedures folder)
 *   <root>/<epoch>/version.json    written last: a folder without it is an update that never
 *                                  took effect (a crash while writing it) and is ignored
 *
 * Why a folder per version: Node caches a module per URL, so replaced procedure code must live at
 * a path of its own to be loaded at all; and recovery replays each logged call with the code that
 * originally ran it, so every version the log or a snapshot may still need is kept. The root is
 * `<data>/code` with a data directory, a temporary folder without one. Each version is whole:
 * an update without procedures gets a copy of the running version's folder, and the first update
 * in a data directory also stores the version the server was started with, so replay never
 * depends on the procedures folder a later start is given.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ErrorCode, SluiceError } from '../errors.ts';
import { relativeImport } from '../execution/procedures.ts';
import { readJson, writeFileAtomically, writeJsonAtomically } from './data-dir.ts';

/** Most files one update may carry, and their total size in UTF-16 code units (about bytes). */
export const updateFilesMax = 1000;
export const updateCharsMax = 16 * 1024 * 1024;
/** The files a procedures folder is made of: code the procedures import. */
export const procedureFilePattern = /\.(ts|mts|cts|js|mjs|cjs)$/;

interface VersionFile {
  readonly epoch: number;
  readonly createdAt: string;
}

/** A stored version, ready for Router.loadVersion. */
export interface CodeVersion {
  readonly epoch: number;
  readonly ddl: string;
  readonly proceduresDir: string;
}

export function codeRoot(dataDir: string): string {
  return path.join(dataDir, 'code');
}

/**
 * Checks the `procedures` of an update: file paths inside the folder ('vote.ts', 'lib/fees.ts';
 * no '..', no absolute paths), code files only, within the limits. Each error names the file.
 */
export function checkProcedureFiles(files: unknown): Record<string, string> {
  const fail = (message: string, file?: string): never => {
    throw new SluiceError(ErrorCode.PARAM_TYPE, `@UpdateApplication: ${message}`, { path: file === undefined ? ['procedures'] : ['procedures', file] });
  };
  if (files === null || typeof files !== 'object' || Array.isArray(files)) return fail('procedures must be an object of file texts keyed by their paths inside the procedures folder');
  const entries = Object.entries(files as Record<string, unknown>);
  if (entries.length > updateFilesMax) fail(`${entries.length} procedure files, more than the ${updateFilesMax} an update may carry`);
  let chars = 0;
  for (const [file, text] of entries) {
    if (typeof text !== 'string') fail(`procedure file ${file} must be its text (a string)`, file);
    chars += (text as string).length;
    const segments = file.split('/');
    if (file.startsWith('/') || /^[A-Za-z]:/.test(file) || file.includes('\\') || file.includes('\0') || segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
      fail(`procedure file path ${JSON.stringify(file)} must be relative to the procedures folder and stay inside it`, file);
    }
    if (!procedureFilePattern.test(file)) fail(`procedure file ${file} is not a code file (.ts, .mts, .cts, .js, .mjs, .cjs)`, file);
  }
  if (chars > updateCharsMax) fail(`the procedure files hold ${chars} characters, more than the ${updateCharsMax} an update may carry`);
  return files as Record<string, string>;
}

/**
 * The code files of a procedures folder, keyed by their paths inside it, as an update carries
 * them (the CLI reads the folder given to `sluice update` with it). Folders named node_modules
 * or starting with a dot are left out.
 */
export function readProcedureFolder(folder: string): Record<string, string> {
  const files: Record<string, string> = {};
  const visit = (relative: string): void => {
    for (const entry of readdirSync(path.join(folder, relative), { withFileTypes: true })) {
      const name = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) visit(name);
      } else if (entry.isFile() && procedureFilePattern.test(entry.name)) {
        files[name] = readFileSync(path.join(folder, name), 'utf8');
      }
    }
  };
  visit('');
  return files;
}

/** Whether `root` holds a complete version `epoch`. */
export function hasCodeVersion(root: string, epoch: number): boolean {
  return existsSync(path.join(root, String(epoch), 'version.json'));
}

/**
 * Writes version `epoch`: its whole schema and its procedure files, every file fsynced before
 * version.json marks the version complete. An import that leaves the procedures folder
 * ('../api.ts') is resolved as it would be from `startupDir`, the folder the server was started
 * with: the version's files stand in for that folder's.
 */
export function writeCodeVersion(root: string, epoch: number, ddl: string, files: Record<string, string>, startupDir: string): CodeVersion {
  const folder = path.join(root, String(epoch));
  rmSync(folder, { recursive: true, force: true });
  const proceduresDir = path.join(folder, 'procedures');
  mkdirSync(proceduresDir, { recursive: true });
  writeFileAtomically(path.join(folder, 'schema.sql'), ddl);
  for (const [file, text] of Object.entries(files)) {
    const target = path.join(proceduresDir, file);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileAtomically(target, resolveOutsideImports(text, file, startupDir));
  }
  writeJsonAtomically(path.join(folder, 'version.json'), { epoch, createdAt: new Date().toISOString() } satisfies VersionFile);
  return { epoch, ddl, proceduresDir };
}

/** A stored version, or undefined when `root` has no complete version `epoch`. */
export function readCodeVersion(root: string, epoch: number): CodeVersion | undefined {
  const folder = path.join(root, String(epoch));
  if (readJson(path.join(folder, 'version.json')) === undefined) return undefined;
  return { epoch, ddl: readFileSync(path.join(folder, 'schema.sql'), 'utf8'), proceduresDir: path.join(folder, 'procedures') };
}

/** Removes versions older than `epoch` (no log record or kept snapshot needs them); returns their numbers. */
export function removeCodeVersionsBefore(root: string, epoch: number): number[] {
  if (!existsSync(root)) return [];
  const removed: number[] = [];
  for (const name of readdirSync(root)) {
    const number = Number(name);
    if (!Number.isInteger(number) || number >= epoch) continue;
    rmSync(path.join(root, name), { recursive: true, force: true });
    removed.push(number);
  }
  return removed;
}

/** Removes one version's folder: an update that was refused before it took effect. */
export function removeCodeVersion(root: string, epoch: number): void {
  rmSync(path.join(root, String(epoch)), { recursive: true, force: true });
}

/**
 * Rewrites the relative imports of `file` (its path inside the procedures folder) that leave the
 * folder to file URLs under `startupDir`; an already rewritten text comes back unchanged.
 */
export function resolveOutsideImports(text: string, file: string, startupDir: string): string {
  return text.replace(relativeImport, (statement: string, from: string | undefined, bare: string | undefined) => {
    const specifier = (from ?? bare)!;
    const inFolder = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
    if (!inFolder.startsWith('../')) return statement;
    const url = pathToFileURL(path.resolve(startupDir, path.dirname(file), specifier)).href;
    const at = statement.lastIndexOf(specifier);
    return statement.slice(0, at) + url + statement.slice(at + specifier.length);
  });
}
