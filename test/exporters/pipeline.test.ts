/**
 * The pipeline on its own, fed chunks the way partition workers send them: rows stored before a
 * restart go out after it; replayed rows (sequences the buffer already has) are dropped; an
 * interrupted delivery is repeated with the same range, so the file target rewrites the same file.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyDdl } from '../../engine/catalog/ddl.ts';
import { ExportPipeline } from '../../exporters/pipeline.ts';
import { encodeStreamChunk } from '../../engine/storage/stream-chunk.ts';
import { exportedFiles, jsonlRowsByPartition, temporaryFolder } from './file-helpers.ts';

const catalog = applyDdl('CREATE STREAM events PARTITION ON COLUMN id EXPORT TO TARGET out (id BIGINT NOT NULL, label VARCHAR(10));');
const committedAt = Date.UTC(2026, 10, 22, 12, 0, 0);

/** A worker chunk of rows first…first+count-1 of partition 0. */
function chunk(first: number, count: number): unknown[] {
  const values: unknown[] = [];
  for (let sequence = first; sequence < first + count; sequence++) values.push(sequence, `row ${sequence}`);
  return ['events', first, count, committedAt, encodeStreamChunk(committedAt, values)];
}

function open(exportDir: string, root: string, extra: Record<string, unknown> = {}): Promise<ExportPipeline> {
  return ExportPipeline.open({ exportDir, catalog, partitions: 1, config: { targets: [{ name: 'out', type: 'file', format: 'jsonl', path: root, lingerMs: 0, batchRowsMax: 4, backoffMsMin: 10, backoffMsMax: 20, ...extra }] } });
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 400 && !condition(); attempt++) await new Promise((resolve) => setTimeout(resolve, 25));
  expect(condition(), what).toBe(true);
}

describe('export pipeline restart', () => {
  it('delivers after a restart what it stored before, drops replayed rows, and repeats an interrupted range exactly', async () => {
    const folder = temporaryFolder();
    const exportDir = path.join(folder, 'export');
    const root = path.join(folder, 'out');
    // The target is down: its stream folder is a file.
    mkdirSync(root, { recursive: true });
    writeFileSync(path.join(root, 'events'), 'in the way');
    let pipeline = await open(exportDir, root);
    pipeline.accept(0, chunk(1, 6));
    pipeline.accept(0, chunk(7, 4));
    await waitFor(() => pipeline.statistics()[0].failures > 0, 'a failed delivery');
    expect(pipeline.statistics()[0]).toMatchObject({ rowsPending: 10, rowsDelivered: 0 });
    await pipeline.close();

    rmSync(path.join(root, 'events'));
    pipeline = await open(exportDir, root);
    expect(pipeline.statistics()[0].rowsPending).toBe(10);
    // Replay after a crash sends rows 1…10 again, then new ones.
    pipeline.accept(0, chunk(1, 10));
    pipeline.accept(0, chunk(11, 5));
    expect(await pipeline.idle()).toBe(true);
    const stats = pipeline.statistics()[0];
    expect(stats).toMatchObject({ rowsPending: 0, rowsDelivered: 15, duplicatesDropped: 10, lastError: null });
    await pipeline.close();

    const rows = jsonlRowsByPartition(root).get(0)!;
    expect(rows.map((row) => row.id)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    // The first range, tried before the restart, went out as the same file after it: rows 1…4.
    const ranges = exportedFiles(root, 'jsonl').map((file) => [file.first, file.last]).sort((a, b) => a[0] - b[0]);
    expect(ranges[0]).toEqual([1, 4]);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBe(ranges[i - 1][1] + 1);
  });

  it('numbers continue after the buffer: the floors it hands the partitions', async () => {
    const folder = temporaryFolder();
    const pipeline = await open(path.join(folder, 'export'), path.join(folder, 'out'));
    expect(pipeline.sequenceFloors()).toEqual({ events: [1] });
    pipeline.accept(0, chunk(1, 7));
    expect(pipeline.sequenceFloors()).toEqual({ events: [8] });
    await pipeline.close();
  });
});
