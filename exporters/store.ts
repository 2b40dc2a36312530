/**
 * The export pipeline's disk: one LMDB file, `<data>/export/buffer.mdb`, holding
 * - chunks of committed stream rows not yet acknowledged by their target, keyed
 *   ['c', stream, partition, firstSequence] → the encoded chunk (engine/storage/stream-chunk.ts);
 * - per stream partition, the last acknowledged sequence ['a', stream, partition] and, while a
 *   delivery is under way, its last sequence ['i', stream, partition] (so a retry after a crash
 *   re-sends exactly the same batch and a file target overwrites the same file);
 * - end-of-day jobs done: ['d', job, day] → {rows, at};
 * - per stream, the columns its stored chunks were written with ['s', stream] → ["name TYPE", …],
 *   so a schema changed across a restart is caught before old rows are read with the new shape.
 *
 * Writes go through lmdb-js's asynchronous batching (one LMDB transaction per event-loop turn),
 * off the main thread. A process crash loses at most the writes of the last turns; the command log
 * replays those transactions and the pipeline takes their rows again (pipeline.ts, `accept`).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { open, type Key, type RootDatabase } from 'lmdb';
import { decodeStreamChunk } from '../engine/storage/stream-chunk.ts';

export interface StoredChunk {
  readonly stream: string;
  readonly partition: number;
  readonly first: number;
  readonly data: Buffer;
}

export interface DayRecord {
  rows: number;
  at: number;
}

export class ExportStore {
  private readonly db: RootDatabase<unknown, Key>;
  readonly file: string;

  private constructor(db: RootDatabase<unknown, Key>, file: string) {
    this.db = db;
    this.file = file;
  }

  static open(dir: string): ExportStore {
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'buffer.mdb');
    const db = open<unknown, Key>({
      path: file,
      noSubdir: true,
      encoding: 'msgpack',
      keyEncoding: 'ordered-binary',
      compression: false,
      cache: false,
      useRecords: false,
    } as Parameters<typeof open>[0]);
    return new ExportStore(db as RootDatabase<unknown, Key>, file);
  }

  /**
   * Tests only: while set, chunk writes fail with this error before reaching LMDB, as on a full
   * disk, to show that a failing buffer loses nothing acknowledged.
   */
  failChunkWrites: Error | undefined;

  /** `data` is a chunk as engine/storage/stream-chunk.ts encodes it. */
  putChunk(stream: string, partition: number, first: number, data: Uint8Array): Promise<boolean> {
    if (this.failChunkWrites !== undefined) return Promise.reject(this.failChunkWrites);
    return this.db.put(['c', stream, partition, first], data);
  }

  removeChunk(stream: string, partition: number, first: number): Promise<boolean> {
    return this.db.remove(['c', stream, partition, first]);
  }

  getChunk(stream: string, partition: number, first: number): Buffer | undefined {
    return this.db.get(['c', stream, partition, first]) as Buffer | undefined;
  }

  /** Every stored chunk, ordered by stream, partition and sequence. */
  *chunks(): Generator<StoredChunk> {
    for (const { key, value } of this.db.getRange({ start: ['c'], end: ['c\u0000'] })) {
      const [, stream, partition, first] = key as [string, string, number, number];
      yield { stream, partition, first, data: value as Buffer };
    }
  }

  acked(stream: string, partition: number): number {
    return (this.db.get(['a', stream, partition]) as number | undefined) ?? 0;
  }

  putAcked(stream: string, partition: number, sequence: number): Promise<boolean> {
    return this.db.put(['a', stream, partition], sequence);
  }

  /** Stream partitions that have an acknowledged position (also those with no chunk left). */
  *positions(): Generator<{ stream: string; partition: number; acked: number }> {
    for (const { key, value } of this.db.getRange({ start: ['a'], end: ['a\u0000'] })) {
      const [, stream, partition] = key as [string, string, number];
      yield { stream, partition, acked: value as number };
    }
  }

  inflight(stream: string, partition: number): number {
    return (this.db.get(['i', stream, partition]) as number | undefined) ?? 0;
  }

  putInflight(stream: string, partition: number, last: number): Promise<boolean> {
    return this.db.put(['i', stream, partition], last);
  }

  removeInflight(stream: string, partition: number): Promise<boolean> {
    return this.db.remove(['i', stream, partition]);
  }

  /** The columns ("name TYPE") the stream's chunks were written with; undefined if never recorded. */
  shape(stream: string): string[] | undefined {
    return this.db.get(['s', stream]) as string[] | undefined;
  }

  putShape(stream: string, columns: readonly string[]): Promise<boolean> {
    return this.db.put(['s', stream], columns);
  }

  /** Rows of the stream stored and not yet acknowledged, counting `width` values per row. */
  rowsPending(stream: string, width: number): number {
    let pending = 0;
    for (const { key, value } of this.db.getRange({ start: ['c', stream], end: ['c', `${stream}\u0000`] })) {
      const [, , partition, first] = key as [string, string, number, number];
      const count = Math.floor(decodeStreamChunk(value as Uint8Array).values.length / width);
      pending += Math.max(0, Math.min(count, first + count - 1 - this.acked(stream, partition)));
    }
    return pending;
  }

  day(job: string, day: string): DayRecord | undefined {
    return this.db.get(['d', job, day]) as DayRecord | undefined;
  }

  putDay(job: string, day: string, record: DayRecord): Promise<boolean> {
    return this.db.put(['d', job, day], record);
  }

  /** Resolves when every write so far is committed. */
  flushed(): Promise<boolean> {
    return this.db.committed;
  }

  /** Resolves when every write so far is on disk (fsynced), not only committed. */
  async synced(): Promise<void> {
    await this.db.flushed;
  }

  async close(): Promise<void> {
    await this.db.committed;
    await this.db.close();
  }
}
