/**
 * The wire protocol between the client SDK (client/index.ts) and the server (server.ts): binary
 * WebSocket messages, each one msgpack-encoded frame. A frame is a flat array whose first element
 * is its kind; CALLS and RESULTS frames carry many calls back to back, so that one WebSocket
 * message (and one msgpack pass) pays for many transactions. docs/protocol.md is the reference for
 * frames, statuses, error codes and close codes; keep the two in step.
 *
 * Shared by both ends, so it imports nothing from the engine beyond the error codes.
 */
import { Packr } from 'msgpackr';

/** Protocol versions this build speaks; the handshake picks the highest both sides know. */
export const protocolVersion = 3;
/**
 * 2 adds stream subscriptions (SUBSCRIBE … SUBSCRIPTION_ENDED); 3 adds each call's timeout to the
 * CALLS frame (server-side deadlines). An older client sees no change.
 */
export const protocolVersionsSupported: readonly number[] = [1, 2, 3];
/** The first version with stream subscriptions. */
export const subscriptionsVersion = 2;
/** The first version whose CALLS frames carry a timeout per call (`callStrideOf`). */
export const callTimeoutsVersion = 3;

// --- limits (each one is also a server/client option) ----------------------------------------

/** Largest message the server accepts from a client; bigger ones close the connection (1009). */
export const frameBytesMax = 16 * 1024 * 1024;
/**
 * Largest message the server sends (and the SDK accepts): results can be large (a consistency
 * check reads millions of rows), requests should not be. A single larger result is answered with
 * FAILURE instead.
 */
export const resultFrameBytesMax = 256 * 1024 * 1024;
/**
 * Longest timeout a call may carry (one day). 0 means "no deadline"; anything negative, fractional
 * or longer is refused (BAD_CALL at the server, at once in the SDK): it is a bug, not a wish.
 */
export const callTimeoutMsMax = 86_400_000;
/** Most calls one CALLS frame may carry; the SDK splits larger bursts into several frames. */
export const frameCallsMax = 4096;
/** Calls a connection may have outstanding at the server; more get SERVER_BUSY. */
export const connectionCallsInFlightMax = 100_000;
/** Longest procedure name accepted. */
export const procedureNameLengthMax = 256;
/** Time a new connection has to send HELLO. */
export const helloTimeoutMs = 10_000;
/** Connections open at once (handshaking included); more are answered SERVER_BUSY and closed (1013). */
export const connectionsMax = 5000;
/** A connection that sends nothing and has no call outstanding for this long is closed (4005); 0 = never. */
export const idleTimeoutMsDefault = 0;
/**
 * Answers a connection may leave unread in the server's send buffer; beyond it the client is not
 * reading and the connection is closed (4006) instead of buffering without bound. As large as a
 * result frame, so one big answer never trips it by itself.
 */
export const connectionBufferedBytesMax = 256 * 1024 * 1024;
/** Rows an ad-hoc query may return; a larger result is answered FAILURE (RESULT_TOO_LARGE) instead. */
export const adhocRowsMax = 10_000_000;

// --- frames -----------------------------------------------------------------------------------

export const FrameKind = {
  /** client → server: [HELLO, { versions: number[], client: string, user?: string, password?: string }] */
  HELLO: 1,
  /** server → client: [WELCOME, { version, server, partitions }] */
  WELCOME: 2,
  /**
   * client → server: [CALLS, id, procedure, params[], id, procedure, params[], …]; from version 3
   * each call also carries its timeout: [CALLS, id, procedure, params[], timeoutMs, …]
   */
  CALLS: 3,
  /** server → client: [RESULTS, id, status, payload, timestamp, …] */
  RESULTS: 4,
  /** server → client, just before it closes the connection: [ERROR, code, message] */
  ERROR: 5,
  /** client → server (v2): [SUBSCRIBE, id, stream, { where?, from? }] */
  SUBSCRIBE: 6,
  /** server → client (v2): [SUBSCRIBED, id, { stream, columns, partitions, position, retainRowsMax }] */
  SUBSCRIBED: 7,
  /** server → client (v2): [ROWS, id, partition, nextSequence, sequence, row[], sequence, row[], …] */
  ROWS: 8,
  /** client → server (v2): [UNSUBSCRIBE, id] */
  UNSUBSCRIBE: 9,
  /** server → client (v2): [SUBSCRIPTION_ENDED, id, code, message, details] — refused, or ended by the server */
  SUBSCRIPTION_ENDED: 10,
} as const;
/** Elements per call in a CALLS frame, after the kind, before version 3. */
export const callStride = 3;

/** Elements per call in a CALLS frame, after the kind, under protocol `version`. */
export function callStrideOf(version: number): number {
  return version >= callTimeoutsVersion ? callStride + 1 : callStride;
}

/**
 * Why `timeoutMs` is not a call timeout (an integer from 0, "none", to callTimeoutMsMax), or
 * undefined when it is one. Both ends check with this, so they refuse the same values.
 */
export function callTimeoutProblem(timeoutMs: unknown): string | undefined {
  if (typeof timeoutMs === 'number' && Number.isInteger(timeoutMs) && timeoutMs >= 0 && timeoutMs <= callTimeoutMsMax) return undefined;
  const shown = typeof timeoutMs === 'number' || typeof timeoutMs === 'bigint' ? String(timeoutMs) : typeof timeoutMs;
  return `timeoutMs must be an integer number of milliseconds from 0 (no deadline) to ${callTimeoutMsMax}; got ${shown}`;
}
/** Elements per result in a RESULTS frame, after the kind. */
export const resultStride = 4;

// --- response statuses ------------------------------------------------------------------------

/**
 * How a call ended. SUCCESS carries the procedure's result; every other status carries an error
 * payload [code, message, details]. CONNECTION_LOST is produced by the client SDK, never sent by
 * the server; TIMEOUT comes from either (docs/protocol.md: the code says which).
 */
export const Status = {
  SUCCESS: 0,
  /** The procedure aborted (ctx.abort, a failed expectation): rolled back, nothing changed. */
  USER_ABORT: 1,
  /** A constraint (unique, NOT NULL, range, length) failed: rolled back. */
  CONSTRAINT_VIOLATION: 2,
  /** The request was wrong: unknown procedure, bad parameters, bad SQL. Nothing ran. */
  FAILURE: 3,
  /** The procedure threw an unexpected exception, or Sluice has a bug: rolled back. */
  UNEXPECTED_FAILURE: 4,
  /**
   * The call did not finish within its timeout. From the server (DEADLINE_EXPIRED,
   * PARTITION_TIMEOUT) nothing changed; from the SDK (TIMEOUT) it may still commit.
   */
  TIMEOUT: 5,
  /** The server is overloaded (queue or connection limit): the call was not run; retry later. */
  SERVER_BUSY: 6,
  /** The connection closed before the answer came: the call may or may not have committed. */
  CONNECTION_LOST: 7,
} as const;
export type Status = (typeof Status)[keyof typeof Status];
export type StatusName = keyof typeof Status;

const statusNames = Object.keys(Status) as StatusName[];
export function statusName(status: number): StatusName | 'UNKNOWN' {
  return statusNames[status] ?? 'UNKNOWN';
}

const abortCodes: ReadonlySet<string> = new Set(['USER_ABORT', 'EXPECTATION_FAILED']);
const constraintCodes: ReadonlySet<string> = new Set(['NOT_NULL_VIOLATION', 'UNIQUE_VIOLATION', 'VALUE_OUT_OF_RANGE', 'VALUE_TOO_LONG', 'NUMERIC_OVERFLOW']);
const unexpectedCodes: ReadonlySet<string> = new Set(['INTERNAL', 'PROCEDURE_FAILED']);
const timeoutCodes: ReadonlySet<string> = new Set(['DEADLINE_EXPIRED', 'PARTITION_TIMEOUT', 'TIMEOUT']);

/** The response status of an error code (engine/errors.ts codes plus the protocol's own). */
export function statusOfCode(code: string): Status {
  if (abortCodes.has(code)) return Status.USER_ABORT;
  if (constraintCodes.has(code)) return Status.CONSTRAINT_VIOLATION;
  if (unexpectedCodes.has(code)) return Status.UNEXPECTED_FAILURE;
  if (code === ProtocolCode.SERVER_BUSY) return Status.SERVER_BUSY;
  if (timeoutCodes.has(code)) return Status.TIMEOUT;
  return Status.FAILURE;
}

/** Error codes the protocol adds to engine/errors.ts's. */
export const ProtocolCode = {
  SERVER_BUSY: 'SERVER_BUSY',
  BAD_CALL: 'BAD_CALL',
  MALFORMED_FRAME: 'MALFORMED_FRAME',
  UNSUPPORTED_VERSION: 'UNSUPPORTED_VERSION',
  HANDSHAKE_EXPECTED: 'HANDSHAKE_EXPECTED',
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  TIMEOUT: 'TIMEOUT',
  CONNECTION_LOST: 'CONNECTION_LOST',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  /** A subscriber fell too far behind (its unsent rows passed the server's limit); it may resubscribe from its position. */
  SUBSCRIBER_TOO_SLOW: 'SUBSCRIBER_TOO_SLOW',
  /** A SUBSCRIBE or UNSUBSCRIBE frame of the wrong shape (its id is not an integer). */
  BAD_SUBSCRIPTION: 'BAD_SUBSCRIPTION',
  /** HELLO's user and password were missing or wrong (the same answer whether or not the user exists). */
  AUTHENTICATION_FAILED: 'AUTHENTICATION_FAILED',
  /** The user's roles do not grant this call. */
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  /** An ad-hoc query returned more than adhocRowsMax rows. */
  RESULT_TOO_LARGE: 'RESULT_TOO_LARGE',
  /** The connection was idle for longer than the server's idle timeout. */
  IDLE_TIMEOUT: 'IDLE_TIMEOUT',
  /** The client left more than connectionBufferedBytesMax of answers unread. */
  CLIENT_TOO_SLOW: 'CLIENT_TOO_SLOW',
} as const;

/** An error payload: [code, message, details]. */
export type ErrorPayload = [code: string, message: string, details: Record<string, unknown> | null];

// --- close codes ------------------------------------------------------------------------------

export const CloseCode = {
  NORMAL: 1000,
  /** The server is shutting down. */
  GOING_AWAY: 1001,
  /** A message was larger than frameBytesMax (sent by ws itself). */
  MESSAGE_TOO_BIG: 1009,
  /** HELLO named no protocol version this server speaks. */
  UNSUPPORTED_VERSION: 4000,
  /** The first frame was not HELLO, or none came within helloTimeoutMs. */
  HANDSHAKE_EXPECTED: 4001,
  /** A frame could not be decoded or had the wrong shape. */
  MALFORMED_FRAME: 4002,
  /** A CALLS frame carried more than frameCallsMax calls. */
  FRAME_LIMIT: 4003,
  /** Security is on and HELLO's credentials were missing or wrong. */
  AUTHENTICATION_FAILED: 4004,
  /** Nothing arrived and no call was outstanding for the idle timeout. */
  IDLE_TIMEOUT: 4005,
  /** The client did not read its answers: more than connectionBufferedBytesMax were waiting. */
  CLIENT_TOO_SLOW: 4006,
  /** The server has connectionsMax connections open; try again later. */
  TRY_AGAIN_LATER: 1013,
} as const;

// --- codec ------------------------------------------------------------------------------------

/**
 * One codec for both ends, every option chosen: plain arrays and maps (no record extension, so
 * any msgpack implementation can speak the protocol), int64 decoded as number (BIGINT values are
 * safe integers; larger ones arrive rounded and are rejected as out of range by the engine),
 * buffers copied out of the frame (a VARBINARY value stored in a table must not pin the whole
 * frame in memory).
 */
export function createCodec(): Packr {
  return new Packr({
    useRecords: false,
    structuredClone: false,
    moreTypes: false,
    mapsAsObjects: true,
    variableMapSize: true,
    bundleStrings: false,
    int64AsType: 'number',
    largeBigIntToFloat: false,
    encodeUndefinedAsNil: true,
    copyBuffers: true,
    useTimestamp32: false,
  });
}
