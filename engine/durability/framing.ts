/**
 * The byte framing shared by the command log and snapshots: a msgpack payload behind a small
 * header that carries a format version and a CRC32 of the payload. Both sides of the disk
 * boundary check the frame (style.md, "check both sides of a boundary"): the writer just before
 * the bytes go to LMDB, the reader just after they come back.
 *
 *   byte 0      format version (frameVersion)
 *   bytes 1..4  CRC32 of the payload, big-endian (node:zlib crc32)
 *   bytes 5..   msgpack payload
 *
 * Durability failures carry the durability codes of engine/errors.ts (ErrorCode), grouped here
 * as DurabilityErrorCode so this module's callers can only raise those.
 */
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { ErrorCode, SluiceError, type ErrorDetails } from '../errors.ts';

export const DurabilityErrorCode = {
  /** A command-log record in the middle of the log fails its checksum or shape check. */
  LOG_CORRUPT: ErrorCode.LOG_CORRUPT,
  /** A snapshot chunk or manifest fails its checksum, or the manifest does not match the chunks. */
  SNAPSHOT_CORRUPT: ErrorCode.SNAPSHOT_CORRUPT,
  /** LMDB refused a write (disk full, permissions): the log stops taking records. */
  DURABILITY_FAILED: ErrorCode.DURABILITY_FAILED,
  /** The log is closed, or was opened in a way that cannot take this request. */
  LOG_CLOSED: ErrorCode.LOG_CLOSED,
} as const;
export type DurabilityErrorCode = (typeof DurabilityErrorCode)[keyof typeof DurabilityErrorCode];

/** A SluiceError with a durability code. */
export function durabilityError(code: DurabilityErrorCode, message: string, details: ErrorDetails = {}): SluiceError {
  return new SluiceError(code, message, details);
}

export const frameVersion = 1;
export const frameHeaderBytes = 5;

/**
 * One msgpack codec for everything durable, every option chosen rather than inherited:
 * - useRecords false: plain msgpack maps and arrays; a record can be read without the structure
 *   table of the process that wrote it (records would tie each frame to earlier frames).
 * - moreTypes / structuredClone false: values are canonical SQL values only (number, string,
 *   boolean, null, Uint8Array); Uint8Array travels as msgpack bin and comes back as a Buffer.
 * - int64AsType 'number': integers beyond 32 bits come back as numbers; canonical values are
 *   always within ±(2^53−1), so nothing is rounded.
 * - copyBuffers true: decoded binaries own their bytes instead of viewing LMDB's memory map,
 *   which LMDB may reuse once the read transaction ends.
 * - useFloat32 0: doubles stay 64-bit; FLOAT and DECIMAL values must come back bit-exact
 *   (except −0, which msgpack writes as the integer 0; docs/durability.md notes it).
 * - bundleStrings false, encodeUndefinedAsNil false: standard msgpack; undefined is not a value.
 */
export function createDurableCodec(): Packr {
  return new Packr({
    useRecords: false,
    moreTypes: false,
    structuredClone: false,
    mapsAsObjects: true,
    int64AsType: 'number',
    largeBigIntToFloat: false,
    copyBuffers: true,
    useFloat32: 0,
    bundleStrings: false,
    encodeUndefinedAsNil: false,
    variableMapSize: false,
  });
}

const codec = createDurableCodec();

/** Encodes `value` into a new frame buffer (owned by the caller; LMDB may keep a reference). */
export function encodeFrame(value: unknown): Buffer {
  const payload = codec.pack(value);
  const frame = Buffer.allocUnsafe(frameHeaderBytes + payload.length);
  frame[0] = frameVersion;
  frame.writeUInt32BE(crc32(payload), 1);
  payload.copy(frame, frameHeaderBytes);
  return frame;
}

/** Why a frame was rejected, or undefined when it is whole. O(bytes): one CRC pass. */
export function frameDamage(frame: Uint8Array | undefined): string | undefined {
  if (frame === undefined) return 'missing';
  if (frame.length < frameHeaderBytes + 1) return `too short (${frame.length} bytes)`;
  if (frame[0] !== frameVersion) return `unknown format version ${frame[0]}`;
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
  const stored = view.readUInt32BE(1);
  const actual = crc32(view.subarray(frameHeaderBytes));
  if (stored !== actual) return `checksum mismatch (stored ${hex(stored)}, computed ${hex(actual)})`;
  return undefined;
}

/** The CRC32 recorded in a frame's header (valid only after frameDamage said it is whole). */
export function frameChecksum(frame: Uint8Array): number {
  return Buffer.from(frame.buffer, frame.byteOffset, frame.length).readUInt32BE(1);
}

/** Decodes a frame that frameDamage has accepted. A msgpack error here means damage the CRC missed. */
export function decodeFrame(frame: Uint8Array): unknown {
  return decodePayload(frame, frameHeaderBytes, frame.length);
}

/** Decodes the msgpack payload at `bytes[start, end)` (a checked record of a command-log group, group-frame.ts). */
export function decodePayload(bytes: Uint8Array, start: number, end: number): unknown {
  return codec.unpack(Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start));
}

export function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

/**
 * LMDB options shared by the command log and snapshot files, chosen explicitly rather than left
 * to lmdb-js defaults: values are our own frames (binary, uncompressed, uncached), keys sort in
 * order, and commits are synced (noSync false) with overlappingSync, so a commit's `flushed`
 * promise resolves only once it and every earlier commit are on disk.
 */
export const durableLmdbOptions = {
  noSubdir: true,
  encoding: 'binary',
  keyEncoding: 'ordered-binary',
  compression: false,
  cache: false,
  noSync: false,
  overlappingSync: true,
  eventTurnBatching: true,
  commitDelay: 0,
  noMetaSync: false,
  useWritemap: false,
} as const;
