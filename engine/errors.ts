/**
 * The one error shape of Sluice. Every failure a user can cause is a SluiceError with a stable
 * `code` (first word on the wire), a message rendered from its data, and where it applies the
 * `position` in the SQL/DDL text or the `path` of a bad parameter. Broken invariants are not
 * SluiceErrors: they are assertions (engine/assert.ts) and crash the partition.
 */

export const ErrorCode = {
  SYNTAX: 'SYNTAX',
  UNSUPPORTED: 'UNSUPPORTED',
  UNKNOWN_TABLE: 'UNKNOWN_TABLE',
  UNKNOWN_COLUMN: 'UNKNOWN_COLUMN',
  UNKNOWN_INDEX: 'UNKNOWN_INDEX',
  UNKNOWN_PROCEDURE: 'UNKNOWN_PROCEDURE',
  UNKNOWN_FUNCTION: 'UNKNOWN_FUNCTION',
  DUPLICATE_OBJECT: 'DUPLICATE_OBJECT',
  AMBIGUOUS_COLUMN: 'AMBIGUOUS_COLUMN',
  INVALID_SCHEMA: 'INVALID_SCHEMA',
  /** A selected column is neither grouped nor aggregated. */
  NOT_GROUPED: 'NOT_GROUPED',
  /** A deployment file (or server option) is wrong: security, TLS, limits. */
  INVALID_CONFIG: 'INVALID_CONFIG',
  PARAM_COUNT: 'PARAM_COUNT',
  PARAM_TYPE: 'PARAM_TYPE',
  TYPE_MISMATCH: 'TYPE_MISMATCH',
  VALUE_OUT_OF_RANGE: 'VALUE_OUT_OF_RANGE',
  VALUE_TOO_LONG: 'VALUE_TOO_LONG',
  NUMERIC_OVERFLOW: 'NUMERIC_OVERFLOW',
  NOT_NULL_VIOLATION: 'NOT_NULL_VIOLATION',
  UNIQUE_VIOLATION: 'UNIQUE_VIOLATION',
  EXPECTATION_FAILED: 'EXPECTATION_FAILED',
  USER_ABORT: 'USER_ABORT',
  PROCEDURE_FAILED: 'PROCEDURE_FAILED',
  PROCEDURE_LOAD: 'PROCEDURE_LOAD',
  NON_DETERMINISTIC: 'NON_DETERMINISTIC',
  READ_ONLY: 'READ_ONLY',
  WRONG_PARTITION: 'WRONG_PARTITION',
  CLOSED: 'CLOSED',
  LOG_CORRUPT: 'LOG_CORRUPT',
  SNAPSHOT_CORRUPT: 'SNAPSHOT_CORRUPT',
  DURABILITY_FAILED: 'DURABILITY_FAILED',
  LOG_CLOSED: 'LOG_CLOSED',
  /** A stream partition's export buffer is full and the deployment says `onFull: 'fail'`. */
  EXPORT_BUFFER_FULL: 'EXPORT_BUFFER_FULL',
  /** The deployment file's `exports` section is wrong (names the setting). */
  EXPORT_CONFIG: 'EXPORT_CONFIG',
  /** An export target refused a write or a daily job failed. */
  EXPORT_FAILED: 'EXPORT_FAILED',
  /** A subscription's resume position is older than the rows the server still holds. */
  POSITION_TOO_OLD: 'POSITION_TOO_OLD',
  /** A subscription's resume position is beyond the stream's last row. */
  POSITION_AHEAD: 'POSITION_AHEAD',
  /**
   * A call waited in the server past its timeout and was answered without running: nothing
   * changed, retrying is safe (status TIMEOUT).
   */
  DEADLINE_EXPIRED: 'DEADLINE_EXPIRED',
  /**
   * A partition did not answer a multi-partition transaction's fragment within the fragment
   * timeout: the transaction was rolled back everywhere (status TIMEOUT).
   */
  PARTITION_TIMEOUT: 'PARTITION_TIMEOUT',
  INTERNAL: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** How a failure is reported to a caller: the response status families of the protocol. */
export type ErrorKind = 'user' | 'constraint' | 'abort' | 'internal';

const constraintCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.NOT_NULL_VIOLATION,
  ErrorCode.UNIQUE_VIOLATION,
  ErrorCode.VALUE_OUT_OF_RANGE,
  ErrorCode.VALUE_TOO_LONG,
  ErrorCode.NUMERIC_OVERFLOW,
]);

export interface SourcePosition {
  /** 0-based character offset into the whole text. */
  offset: number;
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  column: number;
}

export interface ErrorDetails {
  position?: SourcePosition;
  /** For parameters: ['params', 2] or ['readings', 3, 'kwh']. */
  path?: (string | number)[];
  /** The statement text (or its first line) the error belongs to. */
  statement?: string;
  /** The object (table, column, procedure…) the error names. */
  object?: string;
  /** Near names, for unknown-object errors. */
  suggestions?: string[];
  expected?: string;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;
  /** The message before position and suggestions were rendered into it: for wrapping an error
   * in a new one with more context, without rendering them twice. */
  readonly summary: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(renderMessage(message, details));
    this.name = 'SluiceError';
    this.code = code;
    this.details = details;
    this.summary = message;
  }

  get kind(): ErrorKind {
    if (this.code === ErrorCode.USER_ABORT || this.code === ErrorCode.EXPECTATION_FAILED) return 'abort';
    if (this.code === ErrorCode.INTERNAL) return 'internal';
    if (constraintCodes.has(this.code)) return 'constraint';
    return 'user';
  }

  get position(): SourcePosition | undefined {
    return this.details.position;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.details };
  }
}

function renderMessage(message: string, details: ErrorDetails): string {
  let text = message;
  if (details.position) text += ` (line ${details.position.line}, column ${details.position.column})`;
  if (details.suggestions && details.suggestions.length > 0) {
    text += `; did you mean ${details.suggestions.map((name) => `'${name}'`).join(' or ')}?`;
  }
  return text;
}

/** Computes line and column of an offset in text. */
export function positionOf(text: string, offset: number): SourcePosition {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { offset, line, column: offset - lineStart + 1 };
}

/** Names within a small edit distance of `name`, for "did you mean" hints. */
export function nearNames(name: string, candidates: Iterable<string>): string[] {
  const wanted = name.toLowerCase();
  const scored: [number, string][] = [];
  for (const candidate of candidates) {
    const distance = editDistance(wanted, candidate.toLowerCase());
    if (distance <= Math.max(2, Math.floor(wanted.length / 3))) scored.push([distance, candidate]);
  }
  scored.sort((a, b) => a[0] - b[0]);
  return scored.slice(0, 2).map(([, candidate]) => candidate);
}

function editDistance(a: string, b: string): number {
  const previous = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) previous[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diagonal = previous[0];
    previous[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = previous[j];
      previous[j] = Math.min(above + 1, previous[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return previous[b.length];
}
