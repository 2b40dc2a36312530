/**
 * Exactly-once import: the consumed offset is written in the same single-partition transaction
 * as the procedure's effects, so a message either took effect together with its offset or not at
 * all, and a message delivered again (after a crash, a rebalance, a broker restart) is recognized
 * and skipped inside the transaction that would have applied it twice.
 *
 * How: for every single-partition procedure P the schema has, the router and every partition
 * worker add a wrapper procedure `@ImportOnce:P` (addExactlyOnceProcedures, called right after
 * loadProcedures on both sides, so both hold the same procedures in the same order). Its
 * parameters are (importer, topic, source partition, offset, ...P's parameters); it is routed by
 * P's partition parameter like P itself, so it runs on the partition P would run on, and:
 *   1. reads the highest offset applied on this Sluice partition for (importer, topic, source
 *      partition) from sluice_importer_offsets; if the message's offset is at or below it, the
 *      message was applied before: it returns [0, null] and changes nothing;
 *   2. runs P's body with P's parameters in the same transaction context;
 *   3. upserts the offset row, and returns [1, P's result].
 * A failure anywhere rolls back all three. The wrapper is an ordinary procedure to the rest of the
 * engine: the command log records it by name and replay runs it again, offsets included.
 *
 * Why per Sluice partition: the messages of one Kafka partition are routed by their keys to
 * different Sluice partitions, and each Sluice partition runs its transactions in arrival order.
 * The importer submits each source partition's messages in offset order, so on every Sluice
 * partition they are applied in increasing offset order: "the highest offset applied here" says
 * exactly which of the messages routed here have been applied. The offsets row lives on the
 * partition it describes, keyed by a small integer that hashes to that partition
 * (partitionKeyOf), so the read and the upsert are local to the transaction.
 */
import type { Statement } from '../procedures/api.ts';
import { sql } from '../procedures/api.ts';
import type { Catalog } from '../engine/catalog/schema.ts';
import { partitionOf } from '../engine/execution/hash.ts';
import type { LoadedProcedure } from '../engine/execution/procedures.ts';
import { planStatement, type PlannedStatement } from '../engine/sql/statement.ts';
import type { SqlType } from '../engine/types.ts';

export const offsetsTable = 'sluice_importer_offsets';
export const wrapperPrefix = '@ImportOnce:';
/** Parameters the wrapper takes before the wrapped procedure's own. */
export const wrapperPrefixParams = 4;
export const importerNameLengthMax = 128;
export const topicLengthMax = 512;

/** DDL of the offsets table; added to the schema when an exactly-once importer is configured. */
export const offsetsTableDdl = `
CREATE TABLE ${offsetsTable} (
  partition_key BIGINT NOT NULL,
  importer VARCHAR(${importerNameLengthMax}) NOT NULL,
  topic VARCHAR(${topicLengthMax}) NOT NULL,
  source_partition INTEGER NOT NULL,
  applied_offset BIGINT NOT NULL,
  PRIMARY KEY (partition_key, importer, topic, source_partition)
);
PARTITION TABLE ${offsetsTable} ON COLUMN partition_key;
`;

const readOffset = sql<{ applied_offset: number }>(
  `SELECT applied_offset FROM ${offsetsTable} WHERE partition_key = ? AND importer = ? AND topic = ? AND source_partition = ?`,
);
const writeOffset = sql(`UPSERT INTO ${offsetsTable} (partition_key, importer, topic, source_partition, applied_offset) VALUES (?, ?, ?, ?, ?)`);

export function wrapperName(procedure: string): string {
  return wrapperPrefix + procedure;
}

const partitionKeys = new Map<number, number[]>();

/** The smallest non-negative integer that hashes to `partition` of `partitionCount`. */
export function partitionKeyOf(partition: number, partitionCount: number): number {
  let keys = partitionKeys.get(partitionCount);
  if (keys === undefined) {
    keys = new Array<number>(partitionCount).fill(-1);
    let found = 0;
    for (let candidate = 0; found < partitionCount; candidate++) {
      const owner = partitionOf(candidate, partitionCount);
      if (keys[owner] === -1) {
        keys[owner] = candidate;
        found++;
      }
    }
    partitionKeys.set(partitionCount, keys);
  }
  return keys[partition];
}

const importerTypes: readonly SqlType[] = [
  { name: 'VARCHAR', length: importerNameLengthMax },
  { name: 'VARCHAR', length: topicLengthMax },
  { name: 'INTEGER' },
  { name: 'BIGINT' },
];

/**
 * Adds `@ImportOnce:P` for every single-partition procedure P, when the schema has the offsets
 * table (that is, when an exactly-once importer is configured). Call it with the same inputs on
 * the router and in every worker.
 */
export function addExactlyOnceProcedures(procedures: Map<string, LoadedProcedure>, catalog: Catalog, partitionCount: number): void {
  if (!catalog.tables.has(offsetsTable)) return;
  const offsetPlans: [Statement<unknown>, PlannedStatement][] = [
    [readOffset, planStatement(readOffset.sql, catalog)],
    [writeOffset, planStatement(writeOffset.sql, catalog)],
  ];
  for (const target of [...procedures.values()]) {
    if (target.partitionParameter === undefined || target.readOnly) continue;
    procedures.set(wrapperName(target.name), wrap(target, offsetPlans, partitionCount));
  }
}

function wrap(target: LoadedProcedure, offsetPlans: [Statement<unknown>, PlannedStatement][], partitionCount: number): LoadedProcedure {
  const plans = new Map<Statement<unknown>, PlannedStatement>([...target.plans, ...offsetPlans]);
  // A single-statement procedure (AS <sql>) runs through the context like any declared statement.
  const body = target.statement !== undefined ? sql(target.statement.sql) : undefined;
  if (body !== undefined) plans.set(body, target.statement!);
  const targetRun = target.run;
  const name = wrapperName(target.name);
  return {
    name,
    def: { ...target.def, name },
    run(ctx, ...params) {
      const [importer, topic, sourcePartition, offset] = params as unknown as [string, string, number, number];
      const key = partitionKeyOf(ctx.partition, partitionCount);
      const applied = ctx.queryOne(readOffset, key, importer, topic, sourcePartition);
      if (applied !== undefined && applied.applied_offset >= offset) return [0, null];
      const own = params.slice(wrapperPrefixParams);
      const result = body !== undefined ? ctx.query(body, ...own) : targetRun!(ctx, ...own);
      ctx.execute(writeOffset, key, importer, topic, sourcePartition, offset);
      return [1, result];
    },
    statement: undefined,
    plans,
    parameterTypes: target.parameterTypes === undefined ? undefined : [...importerTypes, ...target.parameterTypes],
    parameterCount: wrapperPrefixParams + target.parameterCount,
    partitionParameter: target.partitionParameter! + wrapperPrefixParams,
    partitionType: target.partitionType,
    readOnly: false,
    source: target.source,
  };
}
