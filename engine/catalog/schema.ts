/**
 * The catalog: what a schema declares. Built from DDL by engine/catalog/ddl.ts, then frozen and
 * shared read-only by every partition, plan and procedure. A schema change builds a new Catalog;
 * nothing mutates one in place, so a failed change leaves the old one untouched.
 */
import type { SqlType, Value } from '../types.ts';

export interface ColumnDef {
  readonly name: string;
  readonly type: SqlType;
  readonly nullable: boolean;
  /** Canonical default value; undefined means no DEFAULT clause (NULL when nullable). */
  readonly defaultValue: Value | undefined;
  readonly position: number;
  /** Hidden columns (a view's internal row count) are left out of SELECT *. */
  readonly hidden: boolean;
}

export type IndexKind = 'hash' | 'ordered';

export interface IndexDef {
  readonly name: string;
  readonly table: string;
  readonly columns: readonly number[];
  readonly unique: boolean;
  readonly kind: IndexKind;
  readonly primary: boolean;
}

export type AggregateFunction = 'COUNT' | 'SUM' | 'MIN' | 'MAX';

export interface ViewAggregate {
  readonly fn: AggregateFunction;
  /** Source column; undefined for COUNT(*). */
  readonly sourceColumn: number | undefined;
  /** Column of the view that holds the value. */
  readonly viewColumn: number;
  /**
   * For SUM over a nullable column: the hidden view column counting the group's non-NULL values,
   * so a delete knows when SUM turns back to NULL without scanning the group. Undefined when the
   * source column is NOT NULL (the group count serves) and for the other functions.
   */
  readonly nonNullColumn: number | undefined;
}

export interface ViewDef {
  readonly source: string;
  /** Source columns grouped by, in view column order (view columns 0..n-1). */
  readonly groupBy: readonly number[];
  readonly aggregates: readonly ViewAggregate[];
  /** View column holding COUNT(*) of the group (added hidden when the view has none). */
  readonly countColumn: number;
  /** Source index on the group columns, used to recompute MIN/MAX after a delete. */
  readonly sourceGroupIndex: string | undefined;
}

export type TableKind = 'table' | 'stream' | 'view';

export interface TableDef {
  readonly name: string;
  readonly kind: TableKind;
  readonly columns: readonly ColumnDef[];
  readonly columnsByName: ReadonlyMap<string, ColumnDef>;
  readonly indexes: readonly IndexDef[];
  readonly primaryKey: IndexDef | undefined;
  /** Column position of the partition column; undefined for replicated tables and for views
   * whose GROUP BY leaves the source's partition column out. */
  readonly partitionColumn: number | undefined;
  /** Rows are split across partitions (a partitioned table or stream, or a view over one): a
   * query over all of them must gather from every partition. Otherwise each partition has a copy. */
  readonly partitioned: boolean;
  readonly ttl: { readonly minutes: number; readonly column: number } | undefined;
  readonly view: ViewDef | undefined;
  /** Export target of a stream (delivery comes with the exporters). */
  readonly exportTarget: string | undefined;
  /** Views maintained from this table, in declaration order. */
  readonly dependentViews: readonly string[];
}

export interface ProcedurePartitioning {
  readonly table: string;
  readonly column: string;
  /** Index of the parameter holding the partition key. */
  readonly parameter: number;
}

export type ProcedureSource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'sql'; readonly sql: string };

export interface ProcedureDef {
  readonly name: string;
  readonly partitioning: ProcedurePartitioning | undefined;
  readonly source: ProcedureSource;
  /**
   * Where the procedure's SQL (AS <sql>) starts in the DDL script that declared it, so an error
   * found when it is planned at load names the script's line and column. Undefined for FROM files.
   */
  readonly sqlAt: { readonly script: string; readonly offset: number } | undefined;
}

export interface Catalog {
  readonly tables: ReadonlyMap<string, TableDef>;
  readonly procedures: ReadonlyMap<string, ProcedureDef>;
  /** The DDL text, kept so snapshots and logs can name the schema that produced them. */
  readonly ddl: string;
  readonly version: number;
}


export function visibleColumns(table: TableDef): ColumnDef[] {
  return table.columns.filter((column) => !column.hidden);
}
