/**
 * Literal values in the AST (numbers, strings, booleans, NULL, hex binaries). Shared by the
 * expression compiler and DDL DEFAULT clauses, so a literal means the same thing everywhere.
 */
import { ErrorCode, SluiceError } from '../errors.ts';
import type { Ast } from './parse.ts';
import type { Value } from '../types.ts';

export const noLiteral: unique symbol = Symbol('not a literal');

/** The value of a literal node, or `noLiteral` when the node is not a literal. */
export function literalValue(node: Ast): Value | typeof noLiteral {
  switch (node?.type) {
    case 'number':
    case 'bigint':
      return parseNumber(node.value);
    case 'single_quote_string':
    case 'double_quote_string':
    case 'string':
    case 'natural_string':
      return String(node.value).replace(/''/g, "'");
    case 'bool':
    case 'boolean':
      return Boolean(node.value);
    case 'null':
      return null;
    case 'hex_string':
    case 'full_hex_string':
      return Uint8Array.from(Buffer.from(String(node.value), 'hex'));
    case 'unary_expr':
      if (node.operator === '-') {
        const inner = literalValue(node.expr);
        if (typeof inner === 'number') return -inner;
      }
      return noLiteral;
    default:
      return noLiteral;
  }
}

function parseNumber(raw: unknown): number {
  if (typeof raw === 'number') return raw;
  const text = String(raw);
  const number = Number(text);
  if (/^-?\d+$/.test(text) && !Number.isSafeInteger(number)) {
    throw new SluiceError(
      ErrorCode.VALUE_OUT_OF_RANGE,
      `integer literal ${text} is outside the exact range ±${Number.MAX_SAFE_INTEGER}`,
    );
  }
  return number;
}
