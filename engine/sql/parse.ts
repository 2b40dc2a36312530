/**
 * Stage 1 of the SQL path (parse → bind/plan → execute): text to node-sql-parser's AST.
 *
 * node-sql-parser (mysql dialect) does the grammar. Around it, this file: numbers the `?`
 * placeholders (the parser leaves them unnumbered) by rewriting them to `:pN`, turns UPSERT into
 * INSERT plus a flag, and maps the parser's error locations back to the caller's original text,
 * so every syntax error names a line and column of what the user wrote.
 */
import parserPackage from 'node-sql-parser';
import { ErrorCode, SluiceError, positionOf } from '../errors.ts';

// node-sql-parser's types describe its AST loosely; Sluice reads it through this one alias.
// biome-ignore lint: the AST is untyped JSON from the parser
export type Ast = any;

const parser = new parserPackage.Parser();
// Locations put line and column on the binder's errors (unknown column, ambiguous name, …).
const parserOptions = { database: 'mysql', parseOptions: { includeLocations: true } } as const;

export interface ParsedStatement {
  ast: Ast;
  /** Number of `?` placeholders, numbered 0..n-1 in text order. */
  parameterCount: number;
  upsert: boolean;
  explain: boolean;
  text: string;
}

/**
 * Parses one SQL statement. `baseOffset` and `fullText` place it in a larger script (a schema
 * file), so error positions count from the start of that script.
 */
export function parseStatement(text: string, baseOffset = 0, fullText = text): ParsedStatement {
  let working = text;
  let explain = false;
  const explainMatch = /^\s*EXPLAIN\s+/i.exec(working);
  if (explainMatch) {
    explain = true;
    working = ' '.repeat(explainMatch[0].length) + working.slice(explainMatch[0].length);
  }
  let upsert = false;
  const upsertMatch = /^(\s*)UPSERT(\s)/i.exec(working);
  if (upsertMatch) {
    upsert = true;
    working = `${upsertMatch[1]}INSERT${upsertMatch[2]}${working.slice(upsertMatch[0].length)}`;
  }
  const { rewritten, count, shifts } = numberPlaceholders(working);
  let ast: Ast;
  try {
    ast = parser.astify(rewritten, parserOptions);
  } catch (error) {
    const location = (error as { location?: { start: { offset: number } } }).location;
    const localOffset = location ? unshift(location.start.offset, shifts) : 0;
    const found = describeFound(working, localOffset);
    throw new SluiceError(ErrorCode.SYNTAX, `syntax error ${found} in: ${firstLine(text)}`, {
      position: positionOf(fullText, baseOffset + localOffset),
      statement: text.trim(),
    });
  }
  if (Array.isArray(ast)) {
    if (ast.length !== 1) {
      throw new SluiceError(ErrorCode.SYNTAX, `expected one statement, found ${ast.length}`, {
        position: positionOf(fullText, baseOffset),
        statement: text.trim(),
      });
    }
    ast = ast[0];
  }
  reassociateLogic(ast, new Set());
  // Placeholder numbering lengthened the text: move node locations back onto what the user wrote.
  if (shifts.length > 0) relocate(ast, text, shifts, new Set());
  return { ast, parameterCount: count, upsert, explain, text };
}

function relocate(node: Ast, text: string, shifts: Shift[], seen: Set<object>): void {
  if (node === null || typeof node !== 'object' || seen.has(node)) return;
  seen.add(node);
  if (Array.isArray(node)) {
    for (const item of node) relocate(item, text, shifts, seen);
    return;
  }
  for (const key of Object.keys(node)) {
    const value = node[key];
    if (key === 'loc' && value?.start && typeof value.start.offset === 'number') {
      node[key] = { start: positionOf(text, unshift(value.start.offset, shifts)), end: positionOf(text, unshift(value.end.offset, shifts)) };
    } else relocate(value, text, shifts, seen);
  }
}

/**
 * Rebuilds every chain of unparenthesized AND/OR with SQL precedence (AND binds tighter than OR).
 * node-sql-parser (5.x, mysql) nests what follows `x IN (…)` wrongly: `a = 1 AND b IN (2) OR
 * c = 3` comes back as `a = 1 AND (b IN (2) OR c = 3)`. A binary tree keeps its operands and
 * operators in text order whatever its shape, and the parser marks written parentheses
 * (`parentheses: true`), so flattening each chain in order and regrouping it is exact.
 */
function reassociateLogic(node: Ast, seen: Set<object>): void {
  if (node === null || typeof node !== 'object' || seen.has(node)) return;
  seen.add(node);
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      if (isLogic(node[i])) node[i] = regroup(node[i], seen);
      else reassociateLogic(node[i], seen);
    }
    return;
  }
  for (const key of Object.keys(node)) {
    if (key === 'loc') continue;
    if (isLogic(node[key])) node[key] = regroup(node[key], seen);
    else reassociateLogic(node[key], seen);
  }
}

function isLogic(node: Ast): boolean {
  if (node?.type !== 'binary_expr') return false;
  const operator = String(node.operator).toUpperCase();
  return operator === 'AND' || operator === 'OR';
}

/** A chain continues through AND/OR nodes; written parentheses start a chain of their own. */
function isLogicChain(node: Ast): boolean {
  return isLogic(node) && !node.parentheses;
}

function regroup(chain: Ast, seen: Set<object>): Ast {
  const operands: Ast[] = [];
  const operators: string[] = [];
  const flatten = (node: Ast, root: boolean): void => {
    if (root || isLogicChain(node)) {
      flatten(node.left, false);
      operators.push(String(node.operator).toUpperCase());
      flatten(node.right, false);
      return;
    }
    if (isLogic(node)) node = regroup(node, seen);
    else reassociateLogic(node, seen);
    operands.push(node);
  };
  flatten(chain, true);
  const join = (operator: string, left: Ast, right: Ast): Ast => ({ type: 'binary_expr', operator, left, right, ...(left.loc && right.loc ? { loc: { start: left.loc.start, end: right.loc.end } } : {}) });
  let result: Ast | undefined;
  let term = operands[0];
  for (let i = 0; i < operators.length; i++) {
    if (operators[i] === 'AND') term = join('AND', term, operands[i + 1]);
    else {
      result = result === undefined ? term : join('OR', result, term);
      term = operands[i + 1];
    }
  }
  const regrouped = result === undefined ? term : join('OR', result, term);
  if (chain.parentheses) regrouped.parentheses = true;
  return regrouped;
}

/** The source position of an AST node (offset within its statement), when the parser kept one. */
export function nodeOffset(node: Ast): number | undefined {
  const offset = node?.loc?.start?.offset;
  return typeof offset === 'number' ? offset : undefined;
}

function describeFound(text: string, offset: number): string {
  if (offset >= text.trimEnd().length) return 'at end of statement';
  const token = /^\S+/.exec(text.slice(offset))?.[0] ?? '';
  return `near '${token.length > 20 ? token.slice(0, 20) : token}'`;
}

export function firstLine(text: string): string {
  const line = text.trim().split('\n')[0];
  return line.length > 80 ? `${line.slice(0, 80)}…` : line;
}

interface Shift {
  /** Offset in the rewritten text after which `extra` characters were added. */
  at: number;
  extra: number;
}

/** Rewrites each `?` outside strings, identifiers and comments to `:pN`. */
function numberPlaceholders(text: string): { rewritten: string; count: number; shifts: Shift[] } {
  let out = '';
  let count = 0;
  const shifts: Shift[] = [];
  let i = 0;
  while (i < text.length) {
    const char = text[i];
    if (char === "'" || char === '"' || char === '`') {
      const end = skipQuoted(text, i, char);
      out += text.slice(i, end);
      i = end;
    } else if (char === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      const stop = end === -1 ? text.length : end;
      out += text.slice(i, stop);
      i = stop;
    } else if (char === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end === -1 ? text.length : end + 2;
      out += text.slice(i, stop);
      i = stop;
    } else if (char === '?') {
      const replacement = `:p${count}`;
      shifts.push({ at: out.length + 1, extra: replacement.length - 1 });
      out += replacement;
      count++;
      i++;
    } else {
      out += char;
      i++;
    }
  }
  return { rewritten: out, count, shifts };
}

function skipQuoted(text: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < text.length) {
    if (text[i] === quote) {
      if (text[i + 1] === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return text.length;
}

function unshift(offset: number, shifts: Shift[]): number {
  let original = offset;
  for (const shift of shifts) if (offset >= shift.at) original -= shift.extra;
  return Math.max(0, original);
}

/** Splits a script into statements at `;` outside strings and comments, keeping offsets. */
export function splitStatements(script: string): { text: string; offset: number }[] {
  const statements: { text: string; offset: number }[] = [];
  let start = 0;
  let i = 0;
  while (i < script.length) {
    const char = script[i];
    if (char === "'" || char === '"' || char === '`') i = skipQuoted(script, i, char);
    else if (char === '-' && script[i + 1] === '-') {
      const end = script.indexOf('\n', i);
      i = end === -1 ? script.length : end;
    } else if (char === '/' && script[i + 1] === '*') {
      const end = script.indexOf('*/', i + 2);
      i = end === -1 ? script.length : end + 2;
    } else if (char === ';') {
      pushStatement(statements, script, start, i);
      start = i + 1;
      i++;
    } else i++;
  }
  pushStatement(statements, script, start, script.length);
  return statements;
}

function pushStatement(statements: { text: string; offset: number }[], script: string, start: number, end: number) {
  const text = script.slice(start, end);
  if (stripComments(text).trim() === '') return;
  const leading = text.length - text.trimStart().length;
  statements.push({ text: text.trimStart(), offset: start + leading });
}

export function stripComments(text: string): string {
  return text.replace(/--[^\n]*/g, '').replace(/\/\*[\s\S]*?\*\//g, '');
}
