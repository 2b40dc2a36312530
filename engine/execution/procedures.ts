/**
 * Loading procedures: each CREATE PROCEDURE of the catalog becomes a LoadedProcedure with its
 * statements planned once, its parameters' types, and where it runs. TypeScript procedures are
 * imported from the procedures folder (and only from there); their source is checked for the
 * calls that break determinism before it is imported.
 */
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ProcedureDefinition, Statement } from '../../procedures/api.ts';
import type { Catalog, ProcedureDef } from '../catalog/schema.ts';
import { ErrorCode, SluiceError, positionOf } from '../errors.ts';
import { planStatement, type PlannedStatement } from '../sql/statement.ts';
import type { SourcePosition } from '../errors.ts';
import type { SqlType, TypeName } from '../types.ts';
import { decimalDefaultPrecision, decimalDefaultScale, varbinaryDefaultLength, varcharDefaultLength } from '../types.ts';

export interface LoadedProcedure {
  readonly name: string;
  readonly def: ProcedureDef;
  readonly run: ProcedureDefinition['run'] | undefined;
  /** Set for single-statement procedures (CREATE PROCEDURE … AS <sql>). */
  readonly statement: PlannedStatement | undefined;
  readonly plans: ReadonlyMap<Statement<unknown>, PlannedStatement>;
  readonly parameterTypes: readonly SqlType[] | undefined;
  /** Expected parameter count, or undefined when only `run`'s arity is known. */
  readonly parameterCount: number;
  readonly partitionParameter: number | undefined;
  /** The partition column's type: the partition parameter is converted to it before routing, so
   * that '42' and 42 reach the same partition (or the call fails naming the parameter). */
  readonly partitionType: SqlType | undefined;
  readonly readOnly: boolean;
  /** Where the code came from, so replay can name it. */
  readonly source: string;
}

const forbidden: readonly [RegExp, string][] = [
  [/\bDate\s*\.\s*now\s*\(/, 'Date.now() reads the wall clock; use ctx.timestamp'],
  [/\bnew\s+Date\s*\(\s*\)/, 'new Date() reads the wall clock; use new Date(ctx.timestamp)'],
  [/\bMath\s*\.\s*random\s*\(/, 'Math.random() is not replayable; use ctx.random()'],
  [/\bperformance\s*\.\s*now\s*\(/, 'performance.now() reads a clock; use ctx.timestamp'],
  [/\bprocess\s*\.\s*(hrtime|env|uptime)\b/, 'process state differs between runs; pass values as parameters'],
  [/\bcrypto\s*\.\s*(randomUUID|getRandomValues|randomBytes)\b/, 'random values are not replayable; use ctx.random()'],
  [/\bfetch\s*\(/, 'a procedure must not do I/O'],
  [/\b(setTimeout|setInterval|setImmediate|queueMicrotask)\s*\(/, 'a procedure runs to completion; it must not schedule work'],
  [/\bfrom\s+['"](node:)?(fs|fs\/promises|net|http|https|http2|child_process|dgram|dns|worker_threads|os|tls|cluster)['"]/, 'a procedure must not import I/O modules'],
  [/\bimport\s*\(/, 'a procedure must not import modules at run time'],
  [/\brequire\s*\(/, 'a procedure must not load modules at run time'],
];

/** Reports the first non-deterministic construct in a procedure's source, naming its line. */
export function checkDeterminism(source: string, file: string): void {
  const code = source
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ' '))
    .replace(/\/\/[^\n]*/g, (comment) => ' '.repeat(comment.length));
  for (const [pattern, reason] of forbidden) {
    const match = pattern.exec(code);
    if (match) {
      const position = positionOf(source, match.index);
      throw new SluiceError(ErrorCode.NON_DETERMINISTIC, `${file}:${position.line}:${position.column}: ${reason}`, { position, object: file });
    }
  }
}

export async function loadProcedures(catalog: Catalog, proceduresDir: string): Promise<Map<string, LoadedProcedure>> {
  const loaded = new Map<string, LoadedProcedure>();
  for (const def of catalog.procedures.values()) loaded.set(def.name, await loadProcedure(def, catalog, proceduresDir));
  return loaded;
}

export async function loadProcedure(def: ProcedureDef, catalog: Catalog, proceduresDir: string): Promise<LoadedProcedure> {
  try {
    if (def.source.kind === 'sql') return planSqlProcedure(def, catalog);
    return await loadTypeScriptProcedure(def, def.source.path, catalog, proceduresDir);
  } catch (error) {
    if (error instanceof SluiceError) {
      if (error.summary.startsWith(`procedure ${def.name}`)) throw error;
      throw new SluiceError(error.code, `procedure ${def.name}: ${error.summary}`, { ...error.details, object: def.name });
    }
    throw new SluiceError(ErrorCode.PROCEDURE_LOAD, `procedure ${def.name} failed to load${syntaxLocation(error, proceduresDir)}: ${(error as Error).message}`, { object: def.name });
  }
}

/** Where Node found a syntax error in a module (type stripping puts `file:line` first in the stack). */
function syntaxLocation(error: unknown, proceduresDir: string): string {
  if (!(error instanceof SyntaxError)) return '';
  const match = /^(.+):(\d+)\n/.exec(error.stack ?? '');
  if (!match) return '';
  const file = match[1].startsWith('file://') ? fileURLToPath(match[1]) : match[1];
  return ` (${path.relative(path.resolve(proceduresDir), file)}:${match[2]})`;
}

function planSqlProcedure(def: ProcedureDef, catalog: Catalog): LoadedProcedure {
  const source = def.source as { kind: 'sql'; sql: string };
  let statement: PlannedStatement;
  try {
    statement = planStatement(source.sql, catalog);
  } catch (error) {
    // Positions count from the start of the SQL; the author needs them in the DDL script.
    if (error instanceof SluiceError && def.sqlAt) {
      const position: SourcePosition | undefined = error.position ? positionOf(def.sqlAt.script, def.sqlAt.offset + error.position.offset) : positionOf(def.sqlAt.script, def.sqlAt.offset);
      throw new SluiceError(error.code, `procedure ${def.name}: ${error.summary}`, { ...error.details, position, object: def.name });
    }
    throw error;
  }
  checkPartitioning(def, [statement]);
  checkPartitionParameter(def, statement.parameterCount);
  return {
    name: def.name,
    def,
    run: undefined,
    statement,
    plans: new Map(),
    parameterTypes: undefined,
    parameterCount: statement.parameterCount,
    partitionParameter: def.partitioning?.parameter,
    partitionType: partitionType(def, catalog),
    readOnly: statement.readOnly,
    source: source.sql,
  };
}

async function loadTypeScriptProcedure(def: ProcedureDef, file: string, catalog: Catalog, proceduresDir: string): Promise<LoadedProcedure> {
  const root = await realFolder(proceduresDir, def.name);
  const resolved = path.resolve(root, file.replace(/^procedures\//, ''));
  const fallback = path.resolve(root, file);
  const found = await firstExisting([resolved, fallback]);
  if (!found) {
    throw new SluiceError(ErrorCode.PROCEDURE_LOAD, `procedure ${def.name}: file ${file} not found in ${root}`, { object: def.name });
  }
  // Real paths, so neither '..' nor a symbolic link reaches outside the folder.
  const chosen = await realpath(found);
  if (!chosen.startsWith(root + path.sep)) {
    throw new SluiceError(ErrorCode.PROCEDURE_LOAD, `procedure ${def.name}: ${file} is outside the procedures folder ${root}`, { object: def.name });
  }
  await checkDeterminismOfFile(chosen, root, new Set());
  const module = (await import(pathToFileURL(chosen).href)) as { default?: ProcedureDefinition };
  const definition = module.default;
  if (!definition || definition.kind !== 'sluice-procedure') {
    throw new SluiceError(ErrorCode.PROCEDURE_LOAD, `procedure ${def.name}: ${file} must export default defineProcedure({...})`, { object: def.name });
  }
  const runKind = definition.run.constructor.name;
  if (runKind === 'AsyncFunction' || runKind === 'AsyncGeneratorFunction') {
    // An async body would go on running after its transaction ended: refuse it before it runs.
    throw new SluiceError(ErrorCode.NON_DETERMINISTIC, `procedure ${def.name}: run in ${file} is async; procedures run synchronously to completion and must not await`, { object: def.name });
  }
  const plans = new Map<Statement<unknown>, PlannedStatement>();
  for (const [name, statement] of Object.entries(definition.statements)) {
    try {
      plans.set(statement, planStatement(statement.sql, catalog));
    } catch (error) {
      if (error instanceof SluiceError) throw new SluiceError(error.code, `procedure ${def.name}, statement ${name}: ${error.summary}`, { ...error.details, object: def.name });
      throw error;
    }
  }
  checkPartitioning(def, [...plans.values()]);
  const parameterTypes = definition.parameters?.map(typeOfName);
  const parameterCount = parameterTypes?.length ?? definition.run.length - 1;
  checkPartitionParameter(def, parameterCount);
  return {
    name: def.name,
    def,
    run: definition.run,
    statement: undefined,
    plans,
    parameterTypes,
    parameterCount,
    partitionParameter: def.partitioning?.parameter,
    partitionType: partitionType(def, catalog),
    readOnly: [...plans.values()].every((plan) => plan.readOnly),
    source: chosen,
  };
}

function checkPartitionParameter(def: ProcedureDef, parameterCount: number): void {
  if (def.partitioning && def.partitioning.parameter >= parameterCount) {
    throw new SluiceError(ErrorCode.INVALID_SCHEMA, `procedure ${def.name} is partitioned on parameter ${def.partitioning.parameter}, but it takes ${parameterCount} parameter(s) (PARAMETER counts from 0)`, { object: def.name });
  }
}

function partitionType(def: ProcedureDef, catalog: Catalog): SqlType | undefined {
  if (!def.partitioning) return undefined;
  return catalog.tables.get(def.partitioning.table)!.columnsByName.get(def.partitioning.column)!.type;
}

async function realFolder(folder: string, procedure: string): Promise<string> {
  try {
    return await realpath(path.resolve(folder));
  } catch (error) {
    throw new SluiceError(ErrorCode.PROCEDURE_LOAD, `procedure ${procedure}: cannot read the procedures folder ${folder}: ${(error as Error).message}`, { object: procedure });
  }
}

/** Relative imports that bring code at run time (not `import type`). */
export const relativeImport = /\b(?:import|export)(?!\s+type\b)\s[^'";]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\s*['"](\.{1,2}\/[^'"]+)['"]/g;

/**
 * Scans a procedure file and, recursively, the files it imports from inside the procedures
 * folder (its own helpers). Imports from outside the folder (procedures/api.ts, packages) are not
 * scanned: they are the engine's or a library's code.
 */
async function checkDeterminismOfFile(file: string, root: string, seen: Set<string>): Promise<void> {
  if (seen.has(file)) return;
  seen.add(file);
  const text = await readFile(file, 'utf8');
  checkDeterminism(text, path.relative(root, file));
  for (const match of text.matchAll(relativeImport)) {
    const target = path.resolve(path.dirname(file), match[1] ?? match[2]);
    if (!target.startsWith(root + path.sep)) continue;
    let real: string;
    try {
      real = await realpath(target);
    } catch {
      continue; // A missing module fails the import itself, with Node's own message.
    }
    if (real.startsWith(root + path.sep)) await checkDeterminismOfFile(real, root, seen);
  }
}

async function firstExisting(candidates: string[]): Promise<string | undefined> {
  for (const candidate of candidates) {
    try {
      await readFile(candidate);
      return candidate;
    } catch {
      // Not there: try the next spelling of the path.
    }
  }
  return undefined;
}

/** A single-partition procedure may not write replicated tables: their copies would diverge. */
function checkPartitioning(def: ProcedureDef, statements: PlannedStatement[]): void {
  if (!def.partitioning) return;
  for (const statement of statements) {
    if (statement.routing.kind === 'replicated-write') {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, `procedure ${def.name} is single-partition but writes a replicated table: ${statement.sql.trim().slice(0, 80)}`, { object: def.name });
    }
  }
}

function typeOfName(name: TypeName): SqlType {
  switch (name) {
    case 'VARCHAR':
      return { name, length: varcharDefaultLength * 1024 };
    case 'VARBINARY':
      return { name, length: varbinaryDefaultLength * 1024 };
    case 'DECIMAL':
      return { name, precision: decimalDefaultPrecision, scale: decimalDefaultScale };
    default:
      return { name };
  }
}
