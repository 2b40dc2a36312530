/**
 * The command log's group value (format 2): one LMDB value per group commit, holding every record
 * of the group, each with its own length and CRC32, so a damaged record is still found and named
 * one by one (the reader tells a torn last record from damage in the middle, as with format 1).
 *
 *   byte 0   groupFrameVersion (2); format 1 values start with 1 (framing.ts, one record each)
 *   then, per record:
 *     bytes 0..3  payload length, big-endian
 *     bytes 4..7  CRC32 of the payload, big-endian (the same polynomial as node:zlib crc32)
 *     bytes 8..   payload: msgpack [transactionId, timestamp, partition, procedure,
 *                                   catalogVersion, parameters[]], exactly a format 1 payload
 *
 * A prefix of a group value that ends between two records is itself a valid group value: the
 * reader trims a torn tail by keeping such a prefix.
 *
 * Why not one Packr.pack and one LMDB put per record: on the router's thread (which parses client
 * frames, sequences and routes) those cost more than the rest of a Vote's routing
 * (docs/durability.md, "Record format"). `GroupEncoder` writes the payload's msgpack by hand into
 * one growing buffer (the values are canonical SQL values only: number, string, boolean, null,
 * Uint8Array), computes small CRCs in JavaScript (a native call costs more than the bytes), and
 * the group becomes one put. The reader decodes payloads with the durable msgpackr codec.
 */
import { crc32 } from 'node:zlib';
import { assert } from '../assert.ts';
import type { Value } from '../types.ts';
import { hex } from './framing.ts';

export const groupFrameVersion = 2;
/** Length and CRC32 in front of every record's payload. */
export const groupRecordHeaderBytes = 8;
/** First buffer of a group; it doubles when a group needs more (one Vote-sized record is ~35 bytes). */
const groupBytesInitial = 16 * 1024;
/** The smallest buffer a group starts in: below 4 KiB, Buffer.allocUnsafe slices Node's shared pool. */
const groupBytesMin = 1024;
/** Below this many bytes a CRC in JavaScript beats the native call (measured: docs/durability.md). */
const crcInlineBytesMax = 128;

/** A double's bytes, little-endian (every platform Node runs on); written out in reverse for msgpack's big-endian. */
const float64 = new Float64Array(1);
const float64Bytes = new Uint8Array(float64.buffer);
float64[0] = 1;
assert(float64Bytes[7] === 0x3f, 'doubles are stored little-endian on this platform');

const crcTable = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  crcTable[n] = c;
}

/** A power of two with half again `bytes` of room, at least groupBytesMin: a steady load seldom regrows. */
export function groupCapacityFor(bytes: number): number {
  let size = groupBytesMin;
  while (size < bytes * 1.5) size *= 2;
  return size;
}

/** CRC32 (IEEE, as node:zlib crc32) of `bytes[start, end)`, without making a view for short ranges. */
export function crc32Range(bytes: Uint8Array, start: number, end: number): number {
  if (end - start > crcInlineBytesMax) return crc32(bytes.subarray(start, end));
  let c = -1;
  for (let i = start; i < end; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/**
 * Builds one group value, record by record, on the sequencing thread. `take` hands the bytes
 * over and starts the next group in a new buffer: LMDB may keep a reference to a value until its
 * write is done, so a buffer is never reused.
 */
export class GroupEncoder {
  private buffer: Buffer = Buffer.allocUnsafe(groupBytesInitial);
  private position = 1;
  /** Records in the group being built. */
  records = 0;

  constructor() {
    this.buffer[0] = groupFrameVersion;
  }

  /** Bytes of the group being built, version byte included. */
  get bytes(): number {
    return this.position;
  }

  /** Appends one record. O(parameters); allocates nothing unless the buffer must grow. */
  add(transactionId: number, timestamp: number, partition: number, procedure: string, catalogVersion: number, parameters: readonly Value[]): void {
    const start = this.position;
    this.ensure(groupRecordHeaderBytes + 1 + 4 * 9 + 5 + procedure.length * 3 + 5);
    this.position = start + groupRecordHeaderBytes;
    this.buffer[this.position++] = 0x96; // fixarray of 6
    this.writeNumber(transactionId);
    this.writeNumber(timestamp);
    this.writeNumber(partition);
    this.writeString(procedure);
    this.writeNumber(catalogVersion);
    const count = parameters.length;
    this.ensure(5);
    if (count < 16) this.buffer[this.position++] = 0x90 | count;
    else if (count < 0x10000) this.writeHeader16(0xdc, count);
    else this.writeHeader32(0xdd, count);
    for (let i = 0; i < count; i++) this.writeValue(parameters[i]);
    const payloadStart = start + groupRecordHeaderBytes;
    const buffer = this.buffer;
    const length = this.position - payloadStart;
    writeUint32(buffer, start, length);
    writeUint32(buffer, start + 4, crc32Range(buffer, payloadStart, this.position));
    this.records++;
  }

  /**
   * The group's bytes (a view of a buffer nobody else writes to); the next group starts empty, in
   * a buffer sized for one like this one. Not the largest so far: after one bulk load's 512 KiB
   * group, every later 1 KiB group allocated 512 KiB (hundreds of MB/s of ArrayBuffers, and a
   * full GC of the router's heap every ~200 ms).
   */
  take(): Buffer {
    const group = this.buffer.subarray(0, this.position);
    this.buffer = Buffer.allocUnsafe(groupCapacityFor(this.position));
    this.buffer[0] = groupFrameVersion;
    this.position = 1;
    this.records = 0;
    return group;
  }

  /** Drops the group being built (the log failed: its records will never be written). */
  clear(): void {
    this.position = 1;
    this.records = 0;
  }

  private ensure(bytes: number): void {
    if (this.position + bytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.position + bytes) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buffer.copy(grown, 0, 0, this.position);
    this.buffer = grown;
  }

  private writeValue(value: Value): void {
    if (typeof value === 'number') {
      this.ensure(9);
      this.writeNumber(value);
    } else if (typeof value === 'string') {
      this.ensure(5 + value.length * 3);
      this.writeString(value);
    } else if (value === null) {
      this.ensure(1);
      this.buffer[this.position++] = 0xc0;
    } else if (typeof value === 'boolean') {
      this.ensure(1);
      this.buffer[this.position++] = value ? 0xc3 : 0xc2;
    } else {
      // The router hands over canonical values only (engine/types.ts); anything else is a bug.
      assert(value instanceof Uint8Array, 'a command-log parameter is a canonical value');
      const length = value.length;
      this.ensure(5 + length);
      if (length < 0x100) {
        this.buffer[this.position++] = 0xc4;
        this.buffer[this.position++] = length;
      } else if (length < 0x10000) this.writeHeader16(0xc5, length);
      else this.writeHeader32(0xc6, length);
      this.buffer.set(value, this.position);
      this.position += length;
    }
  }

  /**
   * Integers in int32 or uint32 range take msgpack's integer forms; every other number (larger
   * integers such as phone numbers or epoch milliseconds, fractions, −0) is a float64, which
   * keeps it bit-exact. The caller has made room for 9 bytes.
   */
  private writeNumber(value: number): void {
    const buffer = this.buffer;
    let p = this.position;
    if ((value | 0) === value && (value !== 0 || 1 / value > 0)) {
      if (value >= 0) {
        if (value < 0x80) buffer[p++] = value;
        else if (value < 0x100) {
          buffer[p++] = 0xcc;
          buffer[p++] = value;
        } else if (value < 0x10000) {
          buffer[p++] = 0xcd;
          buffer[p++] = value >>> 8;
          buffer[p++] = value & 0xff;
        } else {
          buffer[p++] = 0xce;
          writeUint32(buffer, p, value);
          p += 4;
        }
      } else if (value >= -0x20) buffer[p++] = value & 0xff;
      else if (value >= -0x80) {
        buffer[p++] = 0xd0;
        buffer[p++] = value & 0xff;
      } else if (value >= -0x8000) {
        buffer[p++] = 0xd1;
        buffer[p++] = (value >> 8) & 0xff;
        buffer[p++] = value & 0xff;
      } else {
        buffer[p++] = 0xd2;
        writeUint32(buffer, p, value >>> 0);
        p += 4;
      }
    } else if (value > 0 && value >>> 0 === value) {
      buffer[p++] = 0xce;
      writeUint32(buffer, p, value);
      p += 4;
    } else {
      // Through a scratch float64: ~4× cheaper than Buffer#writeDoubleBE (measured in a loop).
      buffer[p++] = 0xcb;
      float64[0] = value;
      for (let i = 7; i >= 0; i--) buffer[p++] = float64Bytes[i];
    }
    this.position = p;
  }

  /** A msgpack str; short ASCII is copied in a loop, the rest through Buffer.write. Room: 5 + 3 × length. */
  private writeString(value: string): void {
    const buffer = this.buffer;
    const length = value.length;
    if (length < 32) {
      let p = this.position + 1;
      let i = 0;
      for (; i < length; i++) {
        const code = value.charCodeAt(i);
        if (code >= 0x80) break;
        buffer[p++] = code;
      }
      if (i === length) {
        buffer[this.position] = 0xa0 | length;
        this.position = p;
        return;
      }
    }
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes < 32) buffer[this.position++] = 0xa0 | bytes;
    else if (bytes < 0x100) {
      buffer[this.position++] = 0xd9;
      buffer[this.position++] = bytes;
    } else if (bytes < 0x10000) this.writeHeader16(0xda, bytes);
    else this.writeHeader32(0xdb, bytes);
    this.position += buffer.write(value, this.position, 'utf8');
  }

  private writeHeader16(type: number, size: number): void {
    this.buffer[this.position++] = type;
    this.buffer[this.position++] = size >>> 8;
    this.buffer[this.position++] = size & 0xff;
  }

  private writeHeader32(type: number, size: number): void {
    this.buffer[this.position++] = type;
    writeUint32(this.buffer, this.position, size);
    this.position += 4;
  }
}

function writeUint32(buffer: Uint8Array, at: number, value: number): void {
  buffer[at] = value >>> 24;
  buffer[at + 1] = (value >>> 16) & 0xff;
  buffer[at + 2] = (value >>> 8) & 0xff;
  buffer[at + 3] = value & 0xff;
}

function readUint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

/** One record's place in a group value, or why it cannot be read. */
export interface GroupRecordSpan {
  /** Offset of the record's length field. */
  readonly start: number;
  /** The payload: `[payloadStart, end)`. */
  readonly payloadStart: number;
  readonly end: number;
  /** Why the record's bytes are not whole (cut short, checksum), or undefined. */
  readonly damage: string | undefined;
  /** Nothing follows it in the value (a damaged last record may be a torn write). */
  readonly last: boolean;
}

/**
 * The records of a group value, in order, each checked against its length and CRC (O(bytes)).
 * Stops after the first damaged one: past it, lengths cannot be trusted. `checksums` false skips
 * the CRCs (counting records).
 */
export function* groupRecordSpans(value: Uint8Array, checksums = true): Generator<GroupRecordSpan> {
  assert(value[0] === groupFrameVersion, 'group spans are read from a format 2 value');
  let offset = 1;
  if (value.length === 1) {
    yield { start: 1, payloadStart: 1, end: 1, damage: 'the group holds no record', last: true };
    return;
  }
  while (offset < value.length) {
    const payloadStart = offset + groupRecordHeaderBytes;
    if (payloadStart > value.length) {
      yield { start: offset, payloadStart, end: value.length, damage: `cut short in its header (${value.length - offset} of ${groupRecordHeaderBytes} bytes)`, last: true };
      return;
    }
    const length = readUint32(value, offset);
    const end = payloadStart + length;
    if (length === 0 || end > value.length) {
      const damage = length === 0 ? 'its length is 0' : `cut short (${value.length - payloadStart} of ${length} bytes)`;
      yield { start: offset, payloadStart, end: Math.min(end, value.length), damage, last: true };
      return;
    }
    let damage: string | undefined;
    if (checksums) {
      const stored = readUint32(value, offset + 4);
      const actual = crc32Range(value, payloadStart, end);
      if (stored !== actual) damage = `checksum mismatch (stored ${hex(stored)}, computed ${hex(actual)})`;
    }
    yield { start: offset, payloadStart, end, damage, last: end === value.length };
    if (damage !== undefined) return;
    offset = end;
  }
}
