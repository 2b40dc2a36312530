/**
 * A stream's columns changed across a restart while its export buffer still holds rows stored
 * with the old columns: the start is refused with an error naming the stream, the old and new
 * columns and what to do. Once those rows have drained under the old schema, the new schema
 * starts and its rows leave with the new columns.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Database } from '../../engine/database.ts';
import { ErrorCode } from '../../engine/errors.ts';
import { expectError } from '../helpers.ts';
import { jsonlRowsByPartition, temporaryFolder } from './file-helpers.ts';

const oldSchema = 'CREATE STREAM events EXPORT TO TARGET feed (id BIGINT NOT NULL, note VARCHAR(10));';
const newSchema = 'CREATE STREAM events EXPORT TO TARGET feed (id BIGINT NOT NULL, note VARCHAR(10), level INTEGER);';

/** A target nobody answers for: rows stay in the buffer. */
const unreachable = { targets: [{ name: 'feed', type: 'http', url: 'http://127.0.0.1:1/events', retriesMax: 1, retryDelayMinMs: 5, backoffMsMin: 1000 }] };

function files(root: string): unknown {
  return { targets: [{ name: 'feed', type: 'file', format: 'jsonl', path: root, lingerMs: 0 }] };
}

async function open(data: string, schema: string, exports: unknown): Promise<Database> {
  return Database.open({ schema, partitions: 2, ttlIntervalMs: 0, data, exports });
}

describe('export buffer across a schema change', () => {
  it('refuses to start while rows of the old columns are pending, and starts once they drained', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const first = await open(data, oldSchema, unreachable);
    for (let id = 1; id <= 6; id++) await first.query('INSERT INTO events VALUES (?, ?)', [id, `n${id}`]);
    const statistics = first.exports!.statistics();
    expect(statistics[0].rowsPending).toBe(6);
    await first.close();

    await expectError(
      () => open(data, newSchema, files(root)),
      ErrorCode.EXPORT_CONFIG,
      /stream events changed while its export buffer holds 6 undelivered rows written with its old columns \(id BIGINT, note VARCHAR\(10\)\); its columns are now \(id BIGINT, note VARCHAR\(10\), level INTEGER\)\. Start once more with the old schema and let target feed take those rows/,
    );

    // The refused start left the buffer as it was: the old schema delivers every row.
    const draining = await open(data, oldSchema, files(root));
    expect(await draining.exports!.idle()).toBe(true);
    await draining.close();
    const drained = [...jsonlRowsByPartition(root).values()].flat();
    expect(drained.map((row) => row.id).sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(drained.every((row) => Object.keys(row).join() === 'id,note')).toBe(true);

    const changed = await open(data, newSchema, files(root));
    await changed.query('INSERT INTO events VALUES (?, ?, ?)', [7, 'n7', 3]);
    expect(await changed.exports!.idle()).toBe(true);
    await changed.close();
    const rows = [...jsonlRowsByPartition(root).values()].flat();
    expect(rows).toHaveLength(7);
    expect(rows.find((row) => row.id === 7)).toEqual({ id: 7, note: 'n7', level: 3 });
  });

  it('starts with changed columns when nothing of the old ones is pending', async () => {
    const data = temporaryFolder();
    const root = path.join(data, 'out');
    const first = await open(data, oldSchema, files(root));
    await first.query('INSERT INTO events VALUES (?, ?)', [1, 'n1']);
    expect(await first.exports!.idle()).toBe(true);
    await first.close();
    const changed = await open(data, newSchema, files(root));
    await changed.query('INSERT INTO events VALUES (?, ?, ?)', [2, 'n2', 5]);
    expect(await changed.exports!.idle()).toBe(true);
    await changed.close();
    const rows = [...jsonlRowsByPartition(root).values()].flat();
    expect(rows.toSorted((a, b) => (a.id as number) - (b.id as number))).toEqual([{ id: 1, note: 'n1' }, { id: 2, note: 'n2', level: 5 }]);
  });
});
