/**
 * The schema browser's data (`GET /api/schema`): the running catalog described as plain JSON —
 * tables, views and streams with their columns, keys, indexes and partitioning; procedures with
 * where they run. Hidden columns (a view's internal count) are left out, as SELECT * leaves them.
 */
import { visibleColumns, type Catalog, type TableDef } from '../catalog/schema.ts';
import { typeToString } from '../types.ts';

export interface SchemaColumn {
  name: string;
  type: string;
  nullable: boolean;
}

export interface SchemaTable {
  name: string;
  kind: 'table' | 'view' | 'stream';
  /** 'partitioned' (split by `partitionColumn`) or 'replicated' (a copy on every partition). */
  partitioning: 'partitioned' | 'replicated';
  partitionColumn: string | null;
  columns: SchemaColumn[];
  primaryKey: string[] | null;
  indexes: { name: string; columns: string[]; unique: boolean; kind: string }[];
  /** Views: the table they aggregate. */
  source: string | null;
  /** Streams: the export target their rows go to. */
  exportTarget: string | null;
  ttl: { minutes: number; column: string } | null;
}

export interface SchemaProcedure {
  name: string;
  /** 'single' runs on the partition of its partition parameter; 'multi' on all of them. */
  scope: 'single' | 'multi';
  partitioning: { table: string; column: string; parameter: number } | null;
  /** `FROM 'file.ts'` or the SQL text of `AS <statement>`. */
  source: { kind: 'file'; path: string } | { kind: 'sql'; sql: string };
}

export interface SchemaDescription {
  tables: SchemaTable[];
  procedures: SchemaProcedure[];
}

export function describeSchema(catalog: Catalog): SchemaDescription {
  const tables = [...catalog.tables.values()].map(describeTable).sort((a, b) => kindOrder[a.kind] - kindOrder[b.kind] || a.name.localeCompare(b.name));
  const procedures: SchemaProcedure[] = [...catalog.procedures.values()]
    .map((procedure) => ({
      name: procedure.name,
      scope: procedure.partitioning === undefined ? ('multi' as const) : ('single' as const),
      partitioning: procedure.partitioning === undefined ? null : { ...procedure.partitioning },
      source: procedure.source.kind === 'file' ? { kind: 'file' as const, path: procedure.source.path } : { kind: 'sql' as const, sql: procedure.source.sql },
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { tables, procedures };
}

const kindOrder: Record<SchemaTable['kind'], number> = { table: 0, view: 1, stream: 2 };

function describeTable(table: TableDef): SchemaTable {
  const name = (position: number) => table.columns[position].name;
  return {
    name: table.name,
    kind: table.kind,
    partitioning: table.partitioned ? 'partitioned' : 'replicated',
    partitionColumn: table.partitionColumn === undefined ? null : name(table.partitionColumn),
    columns: visibleColumns(table).map((column) => ({ name: column.name, type: typeToString(column.type), nullable: column.nullable })),
    primaryKey: table.primaryKey === undefined ? null : table.primaryKey.columns.map(name),
    indexes: table.indexes
      .filter((index) => !index.primary && !index.columns.some((position) => table.columns[position].hidden))
      .map((index) => ({ name: index.name, columns: index.columns.map(name), unique: index.unique, kind: index.kind })),
    source: table.view?.source ?? null,
    exportTarget: table.exportTarget ?? null,
    ttl: table.ttl === undefined ? null : { minutes: table.ttl.minutes, column: name(table.ttl.column) },
  };
}
