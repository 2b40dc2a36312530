/**
 * Snapshots on disk (engine/durability/snapshot.ts): write, verify and read back every column
 * type across several chunks; a snapshot without a manifest is ignored in favour of an older
 * complete one; a damaged chunk stops reading with SNAPSHOT_CORRUPT naming it; older snapshots
 * are removed once a newer one is complete.
 */
import { existsSync } from 'node:fs';
import { open } from 'lmdb';
import { afterEach, describe, expect, it } from 'vitest';
import { captureAll } from '../../engine/durability/capture.ts';
import { DurabilityErrorCode, encodeFrame } from '../../engine/durability/framing.ts';
import {
  SnapshotWriter,
  latestComplete,
  listSnapshotFiles,
  readSnapshot,
  removeSnapshotsBefore,
  snapshotChunkRowsMax,
  type SnapshotChunk,
  type SnapshotInfo,
  type SnapshotReadProgress,
} from '../../engine/durability/snapshot.ts';
import { allTypesCatalog, allTypesDdl, allTypesValues, insertRow, newTable, plainValues, removeFolders, tableImage, temporaryFolder } from './tables.ts';

const folders: string[] = [];
afterEach(() => removeFolders(folders));

const baseHeader = { catalogDdl: allTypesDdl, catalogVersion: 1, proceduresVersion: 'sha256:test', lastTimestamp: 1_700_000_000_000, partitionCount: 2 };

async function writeSnapshot(dataDir: string, lastTransactionId: number, chunks: readonly SnapshotChunk[], createdAt = 1): Promise<SnapshotInfo> {
  const writer = await SnapshotWriter.create(dataDir, { ...baseHeader, lastTransactionId, createdAt });
  for (const chunk of chunks) await writer.writeChunk(chunk);
  return writer.complete();
}

async function readAll(info: SnapshotInfo, onProgress?: (progress: SnapshotReadProgress) => void): Promise<SnapshotChunk[]> {
  const chunks: SnapshotChunk[] = [];
  for await (const chunk of readSnapshot(info, onProgress)) chunks.push(chunk);
  return chunks;
}

function rowsOf(chunks: readonly SnapshotChunk[], partition: number): { values: unknown[]; rowId: number }[] {
  return chunks
    .filter((chunk) => chunk.partition === partition)
    .flatMap((chunk) => chunk.rows.map((values, i) => ({ values: plainValues(values), rowId: chunk.rowIds[i] })));
}

describe('snapshots', () => {
  it('write, verify and read back every column type across chunks and partitions', async () => {
    const dataDir = temporaryFolder(folders);
    const catalog = allTypesCatalog();
    const partition0 = newTable(catalog, 'everything');
    const partition1 = newTable(catalog, 'everything');
    const rowCount = snapshotChunkRowsMax + 500;
    for (let i = 1; i <= rowCount; i++) insertRow(i % 2 === 0 ? partition0 : partition1, allTypesValues(i));
    const captured = [...captureAll(0, [partition0], 10_000), ...captureAll(1, [partition1], 1000)];

    const written = await writeSnapshot(dataDir, 42, captured);
    expect(written.manifest.rowCount).toBe(rowCount);
    // Partition 0's single 10 000-row capture chunk is stored as pages of snapshotChunkRowsMax.
    expect(written.manifest.chunkCount).toBe(Math.ceil(partition0.rows.size / snapshotChunkRowsMax) + Math.ceil(partition1.rows.size / 1000));
    expect(written.manifest.tables).toEqual([
      { partition: 0, table: 'everything', rows: partition0.rows.size },
      { partition: 1, table: 'everything', rows: partition1.rows.size },
    ]);

    const found = await latestComplete(dataDir);
    expect(found?.path).toBe(written.path);
    expect(found?.header).toMatchObject({ ...baseHeader, lastTransactionId: 42, formatVersion: 1 });
    const progress: number[] = [];
    const chunks = await readAll(found!, (read) => progress.push(read.rows));
    expect(rowsOf(chunks, 0)).toEqual(tableImage(partition0));
    expect(rowsOf(chunks, 1)).toEqual(tableImage(partition1));
    expect(progress).toHaveLength(found!.manifest.chunkCount);
    expect(progress.at(-1)).toBe(rowCount);
  });

  it('ignores a snapshot without a manifest and finds the older complete one', async () => {
    const dataDir = temporaryFolder(folders);
    const catalog = allTypesCatalog();
    const table = newTable(catalog, 'everything');
    for (let i = 1; i <= 20; i++) insertRow(table, allTypesValues(i));
    const complete = await writeSnapshot(dataDir, 10, captureAll(0, [table]));

    // A newer snapshot interrupted before its manifest: header and chunks, as a crash leaves it.
    const interrupted = await SnapshotWriter.create(dataDir, { ...baseHeader, lastTransactionId: 20, createdAt: 2 });
    await interrupted.writeChunk(captureAll(0, [table])[0]);
    const skipped: string[] = [];
    const found = await latestComplete(dataDir, (file, reason) => skipped.push(`${file}: ${reason}`));
    expect(found?.path).toBe(complete.path);
    expect(skipped).toEqual([`${interrupted.path}: it has no manifest (unfinished or interrupted)`]);
    await interrupted.abort();
    expect(existsSync(interrupted.path)).toBe(false);
  });

  it('stops reading with SNAPSHOT_CORRUPT naming the damaged chunk', async () => {
    const dataDir = temporaryFolder(folders);
    const table = newTable(allTypesCatalog(), 'everything');
    for (let i = 1; i <= 30; i++) insertRow(table, allTypesValues(i));
    const info = await writeSnapshot(dataDir, 5, captureAll(0, [table], 10));
    // Replace chunk 1 with a well-formed frame of other rows: its own CRC passes, the manifest's does not.
    const raw = open<Buffer, number>({ path: info.path, noSubdir: true, encoding: 'binary', overlappingSync: true });
    await raw.put(1, encodeFrame([0, 'everything', [], []]));
    await raw.close();

    // The presence check of latestComplete already sees the swap; a full read names the chunk.
    expect(await latestComplete(dataDir)).toBeUndefined();
    const read = readAll(info);
    await expect(read).rejects.toMatchObject({ code: DurabilityErrorCode.SNAPSHOT_CORRUPT });
    await expect(readAll(info)).rejects.toThrow(/damaged at chunk 1 of 3: checksum 0x[0-9a-f]+ is not the listed/);
  });

  it('removes older and incomplete snapshots once a newer one is complete', async () => {
    const dataDir = temporaryFolder(folders);
    const table = newTable(allTypesCatalog(), 'everything');
    insertRow(table, allTypesValues(1));
    const old = await writeSnapshot(dataDir, 3, captureAll(0, [table]), 1);
    const interrupted = await SnapshotWriter.create(dataDir, { ...baseHeader, lastTransactionId: 4, createdAt: 2 });
    await interrupted.writeChunk(captureAll(0, [table])[0]);
    const newest = await writeSnapshot(dataDir, 9, captureAll(0, [table]), 3);
    const removed = await removeSnapshotsBefore(dataDir, newest);
    expect(removed.sort()).toEqual([old.path, interrupted.path].sort());
    expect(listSnapshotFiles(dataDir)).toEqual([newest.path]);
    expect((await latestComplete(dataDir))?.path).toBe(newest.path);
    await interrupted.abort();
  });
});
