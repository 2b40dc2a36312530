/**
 * What a planned statement needs from the partition it runs on: its tables and streams, and
 * the write operations that keep indexes, views, streams and the undo log in step. Implemented by
 * the partition (engine/execution/partition.ts); plans never touch storage any other way.
 */
import type { TableDef } from '../catalog/schema.ts';
import type { Table } from '../storage/table.ts';
import type { Row, SqlType, Value } from '../types.ts';

/** Where a plan reads its tables: a partition, or the coordinator's merged rows (view-merge.ts). */
export interface TableSource {
  table(name: string): Table;
}

export interface StorageAccess extends TableSource {
  /** The partition's number: a multi-partition read takes replicated rows from partition 0 only. */
  readonly id: number;
  /** Changes whenever the partition's tables are replaced (a schema change): compiled statements
   * cache the index they probe per partition and generation (sql/compiled.ts). */
  readonly catalogGeneration: number;
  insert(def: TableDef, values: Value[]): void;
  delete(table: Table, row: Row): void;
  update(table: Table, row: Row, columns: readonly number[], values: readonly Value[]): void;
}

export interface ResultTable {
  readonly columns: readonly string[];
  readonly types: readonly (SqlType | undefined)[];
  readonly rows: Value[][];
}

export const modifiedColumns = ['modified_tuples'] as const;
export const modifiedTypes: readonly SqlType[] = [{ name: 'BIGINT' }];
