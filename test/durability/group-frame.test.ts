/**
 * The command log's group value (engine/durability/group-frame.ts): the hand-written msgpack of
 * GroupEncoder decodes with the durable msgpackr codec to exactly the values given (every integer
 * width, −0, large integers, fractions, unicode, binaries, long parameter lists), the JavaScript
 * CRC equals node:zlib's, and every kind of damage is found record by record.
 */
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodePayload } from '../../engine/durability/framing.ts';
import { crc32Range, GroupEncoder, groupCapacityFor, groupFrameVersion, groupRecordSpans } from '../../engine/durability/group-frame.ts';
import type { Value } from '../../engine/types.ts';

function decodeAll(group: Uint8Array): unknown[] {
  return [...groupRecordSpans(group)].map((span) => {
    expect(span.damage).toBeUndefined();
    return decodePayload(group, span.payloadStart, span.end);
  });
}

const numbers = [
  0, -0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 5_551_234_567,
  2 ** 53 - 1, -1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53 - 1), 1.5, -0.1, 1e300, Number.MIN_VALUE,
];
const strings = ['', 'a', 'x'.repeat(31), 'x'.repeat(32), 'x'.repeat(255), 'x'.repeat(256), 'x'.repeat(70_000), 'ünïcødé', '日本語'.repeat(20), '😀 emoji'];
const binaries = [new Uint8Array(0), new Uint8Array([0, 1, 255]), new Uint8Array(300).fill(7), new Uint8Array(70_000).fill(9)];

describe('command-log group values', () => {
  it('decode to exactly the values encoded', () => {
    const encoder = new GroupEncoder();
    const records: [number, number, number, string, number, Value[]][] = [
      [1, 1_700_000_000_000, 0, 'Vote', 0, numbers],
      [2, 1_700_000_000_001, -1, '@AdHoc', 3, strings],
      [3, 1_700_000_000_002, 7, 'Prozedür', 2 ** 31, [...binaries, true, false, null]],
      [2 ** 40, 0, 1, 'x'.repeat(40), 1, Array.from({ length: 70_000 }, (_, i) => i)],
      [2 ** 40 + 1, 5, 1, 'Empty', 1, []],
    ];
    for (const [id, timestamp, partition, procedure, version, parameters] of records) encoder.add(id, timestamp, partition, procedure, version, parameters);
    expect(encoder.records).toBe(records.length);
    const group = encoder.take();
    expect(group[0]).toBe(groupFrameVersion);
    expect(encoder.records).toBe(0);
    const decoded = decodeAll(group) as unknown[][];
    expect(decoded).toHaveLength(records.length);
    for (let r = 0; r < records.length; r++) {
      const expected = records[r];
      const actual = decoded[r];
      expect(actual.slice(0, 5)).toEqual(expected.slice(0, 5));
      const parameters = actual[5] as unknown[];
      expect(parameters).toHaveLength(expected[5].length);
      for (let i = 0; i < parameters.length; i++) {
        const want = expected[5][i];
        if (want instanceof Uint8Array) expect(Array.from(parameters[i] as Uint8Array)).toEqual(Array.from(want));
        // Object.is: −0 comes back as −0, every other number bit-exact.
        else expect(Object.is(parameters[i], want), `parameter ${i} of record ${r}: ${String(parameters[i])} for ${String(want)}`).toBe(true);
      }
    }
    // The next group starts empty in a fresh buffer.
    encoder.add(9, 9, 0, 'Vote', 0, [1]);
    expect(decodeAll(encoder.take())).toEqual([[9, 9, 0, 'Vote', 0, [1]]]);
  });

  it('starts each group in a buffer sized by the group before it, not by the largest so far', () => {
    const encoder = new GroupEncoder();
    // A bulk load's group: ~700 KB.
    for (let id = 1; id <= 2000; id++) encoder.add(id, 0, 0, 'LoadMeters', 1, ['x'.repeat(300), id]);
    const bulk = encoder.take();
    expect(bulk.length).toBeGreaterThan(600_000);
    // Then small groups, as under a steady trickle of calls: their buffers come back down.
    let small: Buffer | undefined;
    for (let round = 0; round < 3; round++) {
      encoder.add(10_000 + round, 0, 0, 'Vote', 1, [5_551_234_567, 3]);
      small = encoder.take();
    }
    // A small group's buffer is a slice of Node's shared pool (or its own, at most 16 KiB).
    expect(small!.buffer.byteLength).toBeLessThanOrEqual(Math.max(Buffer.poolSize, 16 * 1024));
    expect(small!.buffer.byteLength).toBeLessThan(bulk.buffer.byteLength);
    expect(decodeAll(small!)).toEqual([[10_002, 0, 0, 'Vote', 1, [5_551_234_567, 3]]]);
    // A steady size fits its buffer with room to spare: no regrowth while the group fills.
    for (const bytes of [1, 1000, 14_000, 100_000]) {
      expect(groupCapacityFor(bytes)).toBeGreaterThanOrEqual(bytes * 1.5);
      expect(groupCapacityFor(bytes)).toBeLessThanOrEqual(Math.max(1024, bytes * 3));
    }
  });

  it('computes the same CRC32 as node:zlib at every length', () => {
    const bytes = Buffer.alloc(600);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + 7) & 0xff;
    for (let length = 0; length <= 300; length++) expect(crc32Range(bytes, 3, 3 + length)).toBe(crc32(bytes.subarray(3, 3 + length)));
  });

  it('finds a record cut short, a wrong length and a flipped byte, and stops there', () => {
    const encoder = new GroupEncoder();
    for (let id = 1; id <= 3; id++) encoder.add(id, 100 + id, 0, 'Vote', 0, [id, `p${id}`]);
    const group = Buffer.from(encoder.take());
    const spans = [...groupRecordSpans(group)];
    expect(spans.map((span) => [span.damage, span.last])).toEqual([[undefined, false], [undefined, false], [undefined, true]]);

    const cut = group.subarray(0, group.length - 2);
    expect([...groupRecordSpans(cut)].map((span) => span.damage)).toEqual([undefined, undefined, expect.stringMatching(/^cut short/)]);
    const headerCut = group.subarray(0, spans[2].start + 3);
    expect([...groupRecordSpans(headerCut)].at(-1)).toMatchObject({ damage: expect.stringMatching(/cut short in its header/), last: true });

    const flipped = Buffer.from(group);
    flipped[spans[1].payloadStart + 2] ^= 0x10;
    expect([...groupRecordSpans(flipped)].map((span) => [span.damage, span.last])).toEqual([[undefined, false], [expect.stringMatching(/^checksum mismatch/), false]]);

    const longer = Buffer.from(group);
    longer.writeUInt32BE(10_000, spans[0].start);
    expect([...groupRecordSpans(longer)]).toMatchObject([{ damage: expect.stringMatching(/cut short/), last: true }]);
    expect([...groupRecordSpans(Buffer.from([groupFrameVersion]))]).toMatchObject([{ damage: 'the group holds no record' }]);
  });
});
