/**
 * Snapshots on disk: the image of every partition's tables after one transaction, with the
 * catalog (DDL text and version) it belongs to, so recovery rebuilds the schema the rows and the
 * following log records were written under. One LMDB file per snapshot under
 * `<dataDir>/snapshots/`, named by its last transaction id, so removing a snapshot is deleting
 * a file and writing one never holds the command log's write lock.
 *
 *   key 'header'     frame of SnapshotHeader (written first)
 *   key 0, 1, 2 …    frames of chunks: [partition, table, rows, rowIds], at most
 *                    snapshotChunkRowsMax rows each, rows as value arrays without the row-id and
 *                    position slots (capture.ts makes them)
 *   key 'manifest'   frame of SnapshotManifest: written last, only after a verification pass has
 *                    read every chunk back and checked its CRC and row count. A snapshot
 *                    without a valid manifest is incomplete and is never loaded.
 *
 * The capture (what the rows are) is capture.ts; this file only stores and reads them.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { assert } from '../assert.ts';
import type { Value } from '../types.ts';
import type { CapturedChunk } from './capture.ts';
import { DurabilityErrorCode, decodeFrame, durabilityError, durableLmdbOptions, encodeFrame, frameChecksum, frameDamage, hex } from './framing.ts';

/** Rows per stored chunk: bounds one LMDB value and the memory one read step holds. */
export const snapshotChunkRowsMax = 4096;
export const snapshotFormatVersion = 1;

export interface SnapshotHeader {
  readonly formatVersion: number;
  /** The catalog's DDL text and version: the schema the rows and following log records belong to. */
  readonly catalogDdl: string;
  readonly catalogVersion: number;
  /** A digest of the loaded procedures' code, for replay to check it runs what ran originally. */
  readonly proceduresVersion: string;
  /** The image is the state after this transaction; replay starts after it. */
  readonly lastTransactionId: number;
  readonly lastTimestamp: number;
  readonly partitionCount: number;
  /** Wall-clock time the snapshot started, for operators only. */
  readonly createdAt: number;
}

export interface SnapshotManifest {
  readonly chunkCount: number;
  readonly rowCount: number;
  /** CRC32 of each chunk's payload, in key order. */
  readonly chunkChecksums: number[];
  /** Row counts per partition and table, for operators and for a check at load. */
  readonly tables: { partition: number; table: string; rows: number }[];
  readonly headerChecksum: number;
  /**
   * Each partition's streams' next sequence numbers at the barrier: restored so that rows the log
   * replays get the sequence numbers they had, and exporters can drop the ones they delivered.
   */
  readonly streams?: { partition: number; stream: string; nextSequence: number }[];
}

export interface SnapshotInfo {
  readonly path: string;
  readonly header: SnapshotHeader;
  readonly manifest: SnapshotManifest;
}

export type SnapshotChunk = CapturedChunk;

export interface SnapshotReadProgress {
  chunks: number;
  chunkCount: number;
  rows: number;
  rowCount: number;
}

export function snapshotFolder(dataDir: string): string {
  return path.join(dataDir, 'snapshots');
}

const fileNamePattern = /^snapshot-(\d{16})-(\d{16})\.mdb$/;

/**
 * LMDB options for a snapshot file, chosen explicitly. Chunks are written without waiting for
 * the disk; `complete` waits for the flush of the manifest's commit, which with overlappingSync
 * covers every earlier commit (options shared with the command log: framing.ts).
 */
function openSnapshotFile(file: string): RootDatabase<Buffer, string | number> {
  return open<Buffer, string | number>({ ...durableLmdbOptions, path: file });
}

export class SnapshotWriter {
  readonly path: string;
  readonly header: SnapshotHeader;
  private readonly store: RootDatabase<Buffer, string | number>;
  private readonly checksums: number[] = [];
  private readonly rowsPerChunk: number[] = [];
  private readonly tableRows = new Map<string, { partition: number; table: string; rows: number }>();
  private lastWrite: Promise<boolean> = Promise.resolve(true);
  private state: 'writing' | 'complete' | 'aborted' = 'writing';

  private constructor(file: string, header: SnapshotHeader) {
    this.path = file;
    this.header = header;
    this.store = openSnapshotFile(file);
    this.lastWrite = this.store.put('header', encodeFrame(header));
  }

  /** Starts a snapshot file for the state after `header.lastTransactionId`. */
  static async create(dataDir: string, header: Omit<SnapshotHeader, 'formatVersion'>): Promise<SnapshotWriter> {
    assert(Number.isSafeInteger(header.lastTransactionId) && header.lastTransactionId >= 0, 'a snapshot names the transaction it follows');
    const folder = snapshotFolder(dataDir);
    await mkdir(folder, { recursive: true });
    // The start time in the name keeps two snapshots of one transaction apart (taken twice with
    // no transaction between): a complete one is never overwritten by a new, unfinished one.
    const name = `snapshot-${pad(header.lastTransactionId)}-${pad(header.createdAt)}.mdb`;
    return new SnapshotWriter(path.join(folder, name), { formatVersion: snapshotFormatVersion, ...header });
  }

  /**
   * Starts a snapshot file synchronously: the server calls it at the moment it places the
   * snapshot marker, so no call can slip between the marker and the header's transaction id.
   */
  static start(dataDir: string, header: Omit<SnapshotHeader, 'formatVersion'>): SnapshotWriter {
    assert(Number.isSafeInteger(header.lastTransactionId) && header.lastTransactionId >= 0, 'a snapshot names the transaction it follows');
    const folder = snapshotFolder(dataDir);
    mkdirSync(folder, { recursive: true });
    const name = `snapshot-${pad(header.lastTransactionId)}-${pad(header.createdAt)}.mdb`;
    return new SnapshotWriter(path.join(folder, name), { formatVersion: snapshotFormatVersion, ...header });
  }

  /**
   * Queues a chunk a partition worker has already framed (encodeChunkFrame), so the encoding
   * cost stays on the worker. Resolves when committed (not flushed).
   */
  writeFrame(partition: number, table: string, rowCount: number, frame: Uint8Array): Promise<boolean> {
    assert(this.state === 'writing', 'chunks are written before complete or abort');
    assert(rowCount <= snapshotChunkRowsMax, 'a framed chunk holds at most snapshotChunkRowsMax rows');
    const buffer = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.length);
    this.checksums.push(frameChecksum(buffer));
    this.rowsPerChunk.push(rowCount);
    this.lastWrite = this.store.put(this.checksums.length - 1, buffer);
    const key = `${partition}\u0000${table}`;
    const entry = this.tableRows.get(key) ?? { partition, table, rows: 0 };
    entry.rows += rowCount;
    this.tableRows.set(key, entry);
    return this.lastWrite;
  }

  /**
   * Queues a captured chunk, split into pages of snapshotChunkRowsMax rows. Resolves when the
   * pages are committed (not flushed); await it now and then to bound the memory held by writes.
   */
  writeChunk(chunk: CapturedChunk): Promise<boolean> {
    assert(this.state === 'writing', 'chunks are written before complete or abort');
    assert(chunk.rows.length === chunk.rowIds.length, 'a chunk has one row id per row');
    for (let start = 0; start < chunk.rows.length; start += snapshotChunkRowsMax) {
      const rows = chunk.rows.slice(start, start + snapshotChunkRowsMax);
      const rowIds = chunk.rowIds.slice(start, start + snapshotChunkRowsMax);
      const frame = encodeFrame([chunk.partition, chunk.table, rows, rowIds]);
      this.checksums.push(frameChecksum(frame));
      this.rowsPerChunk.push(rows.length);
      this.lastWrite = this.store.put(this.checksums.length - 1, frame);
    }
    const key = `${chunk.partition}\u0000${chunk.table}`;
    const entry = this.tableRows.get(key) ?? { partition: chunk.partition, table: chunk.table, rows: 0 };
    entry.rows += chunk.rows.length;
    this.tableRows.set(key, entry);
    return this.lastWrite;
  }

  /**
   * Finishes the snapshot: waits for the chunks, reads every one back and checks its checksum,
   * shape and row count (the verification pass), then writes the manifest and waits until it is
   * on disk. Only then is the snapshot complete. Throws SNAPSHOT_CORRUPT if the pass fails; the
   * file is then removed.
   */
  async complete(extra: Pick<SnapshotManifest, 'streams'> = {}): Promise<SnapshotInfo> {
    assert(this.state === 'writing', 'a snapshot completes once');
    await this.lastWrite;
    try {
      await this.verifyChunks();
    } catch (error) {
      await this.abort();
      throw error;
    }
    const headerFrame = this.store.getBinary('header');
    assert(headerFrame !== undefined && frameDamage(headerFrame) === undefined, 'a snapshot header reads back whole');
    let rowCount = 0;
    for (const rows of this.rowsPerChunk) rowCount += rows;
    const manifest: SnapshotManifest = {
      chunkCount: this.checksums.length,
      rowCount,
      chunkChecksums: this.checksums,
      tables: [...this.tableRows.values()],
      headerChecksum: frameChecksum(headerFrame),
      ...extra,
    };
    await this.store.put('manifest', encodeFrame(manifest));
    await this.store.flushed;
    await this.store.close();
    this.state = 'complete';
    return { path: this.path, header: this.header, manifest };
  }

  /** Drops an unfinished snapshot and its file. */
  async abort(): Promise<void> {
    if (this.state !== 'writing') return;
    this.state = 'aborted';
    await this.lastWrite.catch(() => false);
    await this.store.close();
    removeSnapshotFile(this.path);
  }

  /**
   * Reads every chunk back and checks its bytes against the checksum computed when it was framed
   * (on the partition's thread). Not decoded: the CRC already proves the bytes on disk are the
   * bytes framed, and decoding every row would cost the server's main thread as much as the
   * encoding cost the partitions. The event loop runs between groups of chunks.
   */
  private async verifyChunks(): Promise<void> {
    for (let i = 0; i < this.checksums.length; i++) {
      if (i % verifyChunksPerTurn === verifyChunksPerTurn - 1) await yieldTurn();
      const problem = chunkProblem(this.store.getBinary(i), this.checksums[i]);
      if (problem !== undefined) {
        throw durabilityError(
          DurabilityErrorCode.SNAPSHOT_CORRUPT,
          `snapshot ${this.path} failed verification at chunk ${i} of ${this.checksums.length}: ${problem}`,
          { object: `${this.path}#${i}` },
        );
      }
    }
  }
}

/**
 * Checks every chunk of a complete snapshot in full (CRC of the payload against its frame and the
 * manifest), without decoding: recovery runs it before loading anything, so a damaged snapshot is
 * passed over for the previous complete one instead of being half loaded. Returns the problem.
 */
export async function snapshotDamage(info: SnapshotInfo): Promise<string | undefined> {
  const store = openSnapshotFile(info.path);
  try {
    for (let i = 0; i < info.manifest.chunkCount; i++) {
      if (i % verifyChunksPerTurn === verifyChunksPerTurn - 1) await yieldTurn();
      const problem = chunkProblem(store.getBinary(i), info.manifest.chunkChecksums[i]);
      if (problem !== undefined) return `chunk ${i} of ${info.manifest.chunkCount}: ${problem}`;
    }
    return undefined;
  } finally {
    await store.close();
  }
}

/** Complete snapshots of `dataDir`, newest first; incomplete ones are reported through `onSkip`. */
export async function completeSnapshots(dataDir: string, onSkip?: (file: string, reason: string) => void): Promise<SnapshotInfo[]> {
  const found: SnapshotInfo[] = [];
  for (const file of listSnapshotFiles(dataDir).reverse()) {
    const store = openSnapshotFile(file);
    try {
      const info = completeSnapshot(file, store);
      if (typeof info === 'string') onSkip?.(file, info);
      else found.push(info);
    } finally {
      await store.close();
    }
  }
  return found;
}

/** Removes one snapshot file (and its lock file). */
export function removeSnapshot(file: string): void {
  removeSnapshotFile(file);
}

/** Frames a captured chunk for writeFrame: called on the partition's thread. */
export function encodeChunkFrame(chunk: CapturedChunk): Buffer {
  return encodeFrame([chunk.partition, chunk.table, chunk.rows, chunk.rowIds]);
}

const verifyChunksPerTurn = 64;

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The newest complete snapshot in `dataDir`, or undefined. A snapshot is complete when its header
 * and manifest frames are whole, the manifest names the header's checksum, and every chunk the
 * manifest lists is present with the checksum it lists (chunk payloads are checked again, in
 * full, when read). Incomplete ones are skipped and reported through `onSkip`.
 */
export async function latestComplete(dataDir: string, onSkip?: (file: string, reason: string) => void): Promise<SnapshotInfo | undefined> {
  for (const file of listSnapshotFiles(dataDir).reverse()) {
    const store = openSnapshotFile(file);
    try {
      const found = completeSnapshot(file, store);
      if (typeof found === 'string') onSkip?.(file, found);
      else return found;
    } finally {
      await store.close();
    }
  }
  return undefined;
}

function completeSnapshot(file: string, store: RootDatabase<Buffer, string | number>): SnapshotInfo | string {
  const manifestFrame = store.getBinary('manifest');
  if (manifestFrame === undefined) return 'it has no manifest (unfinished or interrupted)';
  if (frameDamage(manifestFrame) !== undefined) return `its manifest is damaged (${frameDamage(manifestFrame)})`;
  const headerFrame = store.getBinary('header');
  if (frameDamage(headerFrame) !== undefined) return `its header is damaged (${frameDamage(headerFrame)})`;
  const manifest = decodeFrame(manifestFrame) as SnapshotManifest;
  const header = decodeFrame(headerFrame!) as SnapshotHeader;
  if (header.formatVersion !== snapshotFormatVersion) return `it has format version ${header.formatVersion}, not ${snapshotFormatVersion}`;
  if (manifest.headerChecksum !== frameChecksum(headerFrame!)) return 'its manifest does not match its header';
  if (manifest.chunkChecksums.length !== manifest.chunkCount) return 'its manifest does not list every chunk';
  for (let i = 0; i < manifest.chunkCount; i++) {
    const frame = store.getBinary(i);
    if (frame === undefined) return `chunk ${i} of ${manifest.chunkCount} is missing`;
    if (frame.length < 5 || frameChecksum(frame) !== manifest.chunkChecksums[i]) return `chunk ${i} is not the one its manifest lists`;
  }
  return { path: file, header, manifest };
}

/**
 * The chunks of a complete snapshot in the order they were written, each checked in full
 * (checksum against the frame and the manifest, shape, row count). Throws SNAPSHOT_CORRUPT
 * naming the file and chunk: the log before the snapshot may be gone, so loading around damage
 * could silently lose rows. `onProgress` is told after each chunk.
 */
export async function* readSnapshot(info: SnapshotInfo, onProgress?: (progress: SnapshotReadProgress) => void): AsyncGenerator<SnapshotChunk> {
  const store = openSnapshotFile(info.path);
  const progress: SnapshotReadProgress = { chunks: 0, chunkCount: info.manifest.chunkCount, rows: 0, rowCount: info.manifest.rowCount };
  try {
    for (let i = 0; i < info.manifest.chunkCount; i++) {
      const frame = store.getBinary(i);
      const problem = chunkProblem(frame, info.manifest.chunkChecksums[i]);
      const chunk = problem === undefined ? decodeChunk(frame!) : undefined;
      if (chunk === undefined) {
        throw durabilityError(
          DurabilityErrorCode.SNAPSHOT_CORRUPT,
          `snapshot ${info.path} is damaged at chunk ${i} of ${info.manifest.chunkCount}: ${problem ?? 'it is not a chunk of rows'}`,
          { object: `${info.path}#${i}` },
        );
      }
      progress.chunks++;
      progress.rows += chunk.rows.length;
      yield chunk;
      onProgress?.(progress);
    }
    if (progress.rows !== info.manifest.rowCount) {
      throw durabilityError(DurabilityErrorCode.SNAPSHOT_CORRUPT, `snapshot ${info.path} holds ${progress.rows} rows, its manifest ${info.manifest.rowCount}`, { object: info.path });
    }
  } finally {
    await store.close();
  }
}

/**
 * Removes every snapshot file older than `keep` (complete or not) and every incomplete one
 * besides; call after `keep` completed, with no other snapshot being written. Returns the files.
 */
export async function removeSnapshotsBefore(dataDir: string, keep: SnapshotInfo): Promise<string[]> {
  const removed: string[] = [];
  for (const file of listSnapshotFiles(dataDir)) {
    if (file === keep.path) continue;
    if (path.basename(file) > path.basename(keep.path)) {
      // Newer than `keep`: only an incomplete leftover (a newer complete one would be `keep`).
      const store = openSnapshotFile(file);
      const complete = typeof completeSnapshot(file, store) !== 'string';
      await store.close();
      if (complete) continue;
    }
    removeSnapshotFile(file);
    removed.push(file);
  }
  return removed;
}

/** Snapshot files of `dataDir`, oldest first (names sort by last transaction id, then start time). */
export function listSnapshotFiles(dataDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(snapshotFolder(dataDir));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return names
    .filter((name) => fileNamePattern.test(name))
    .sort()
    .map((name) => path.join(snapshotFolder(dataDir), name));
}

function removeSnapshotFile(file: string): void {
  rmSync(file, { force: true });
  rmSync(`${file}-lock`, { force: true });
}

function chunkProblem(frame: Uint8Array | undefined, expectedChecksum: number): string | undefined {
  const damage = frameDamage(frame);
  if (damage !== undefined) return damage;
  const checksum = frameChecksum(frame!);
  if (checksum !== expectedChecksum) return `checksum ${hex(checksum)} is not the listed ${hex(expectedChecksum)}`;
  return undefined;
}

function decodeChunk(frame: Uint8Array): SnapshotChunk | undefined {
  let value: unknown;
  try {
    value = decodeFrame(frame);
  } catch {
    // A frame whose CRC matched but whose msgpack does not parse: reported by the caller as damage.
    return undefined;
  }
  if (!Array.isArray(value) || value.length !== 4) return undefined;
  const [partition, table, rows, rowIds] = value as [number, string, Value[][], number[]];
  if (!Number.isInteger(partition) || typeof table !== 'string' || !Array.isArray(rows) || !Array.isArray(rowIds)) return undefined;
  if (rows.length !== rowIds.length) return undefined;
  return { partition, table, rows, rowIds };
}

function pad(value: number): string {
  return String(value).padStart(16, '0');
}
