/**
 * How long the single slowest insert takes while a table's storage grows: the pauses no GC trace
 * shows, because the partition is busy copying or rehashing inside one statement. Fills, one
 * insert at a time, a NumberMap (unique index on a number column) against a JavaScript Map (what
 * indexes on other keys still use), and a RowSet (a table's rows) against the one array it used
 * to be, and prints each one's cost per insert, its slowest insert, and every insert over 3 ms
 * with its position.
 *
 *   npm run bench:growth [-- --rows 2200000 --rounds 2]
 *
 * A slow insert may also be a garbage collection that happened to fall into it; run with
 * `node --trace-gc` to tell them apart.
 */
import { parseArgs } from 'node:util';
import { machineDescription } from './load-generator.ts';
import { NumberMap } from '../engine/storage/number-map.ts';
import { RowSet } from '../engine/storage/row-set.ts';
import type { Row } from '../engine/types.ts';

const { values: options } = parseArgs({ options: { rows: { type: 'string', default: '2200000' }, rounds: { type: 'string', default: '2' } } });
const rowCount = Number(options.rows);
const positionSlot = 2;
const slowMs = 3;

interface Growable {
  insert(row: Row): void;
}

const candidates: Record<string, () => Growable> = {
  'NumberMap': () => {
    const map = new NumberMap();
    return { insert: (row) => map.set(row[0] as number, row) };
  },
  'Map': () => {
    const map = new Map<number, Row>();
    return { insert: (row) => map.set(row[0] as number, row) };
  },
  'RowSet': () => {
    const set = new RowSet(positionSlot);
    return { insert: (row) => set.add(row) };
  },
  'one array (before)': () => {
    const items: Row[] = [];
    return {
      insert: (row) => {
        row[positionSlot] = items.length;
        items.push(row);
      },
    };
  },
};

console.log(`growth pauses: ${rowCount.toLocaleString('en')} inserts per structure; ${machineDescription()}`);
// Phone-number-like keys, made before timing so that only the inserts are measured.
const rows: Row[] = Array.from({ length: rowCount }, (_, i) => [2_000_000_000 + i * 7, i, null]);
for (let round = 1; round <= Number(options.rounds); round++) {
  for (const [name, make] of Object.entries(candidates)) {
    const structure = make();
    const slow: string[] = [];
    let slowest = 0;
    const started = performance.now();
    for (let i = 0; i < rows.length; i++) {
      const t = performance.now();
      structure.insert(rows[i]);
      const took = performance.now() - t;
      if (took > slowest) slowest = took;
      if (took > slowMs) slow.push(`#${(i + 1).toLocaleString('en')} ${took.toFixed(1)}`);
    }
    const perInsertNs = ((performance.now() - started) / rows.length) * 1e6;
    console.log(`round ${round}  ${name.padEnd(18)} ${perInsertNs.toFixed(0).padStart(4)} ns/insert, slowest ${slowest.toFixed(1).padStart(6)} ms; over ${slowMs} ms: ${slow.join(', ') || 'none'}`);
    for (const row of rows) row[positionSlot] = null;
  }
}
