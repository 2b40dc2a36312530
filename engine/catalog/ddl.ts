/**
 * DDL: a schema script to a Catalog. Sluice-only statements (PARTITION TABLE, CREATE STREAM,
 * CREATE PROCEDURE, the USING TTL clause) are recognised here first; CREATE TABLE, CREATE INDEX
 * and CREATE VIEW go through node-sql-parser. Every error names the statement, line and column.
 * The script applies to a copy of the base catalog: on any error nothing changes.
 */
import { ErrorCode, SluiceError, nearNames, positionOf } from '../errors.ts';
import { firstLine, parseStatement, splitStatements, type Ast } from '../sql/parse.ts';
import { literalValue, noLiteral } from '../sql/literal.ts';
import {
  coerceValue,
  decimalDefaultPrecision,
  decimalDefaultScale,
  decimalPrecisionMax,
  varbinaryDefaultLength,
  varcharDefaultLength,
  type SqlType,
  type TypeName,
} from '../types.ts';
import type {
  AggregateFunction,
  Catalog,
  ColumnDef,
  IndexDef,
  IndexKind,
  ProcedureDef,
  TableDef,
  ViewAggregate,
  ViewDef,
} from './schema.ts';

interface MutableTable {
  name: string;
  kind: TableDef['kind'];
  columns: ColumnDef[];
  indexes: IndexDef[];
  partitionColumn: number | undefined;
  ttl: TableDef['ttl'];
  view: ViewDef | undefined;
  exportTarget: string | undefined;
  dependentViews: string[];
}

interface Draft {
  tables: Map<string, MutableTable>;
  procedures: Map<string, ProcedureDef>;
  /** Tables of the base catalog: they may hold rows, so changes that would move rows are refused. */
  existing: ReadonlySet<string>;
}

/** Where a statement sits in its script, for error positions. */
interface Located {
  text: string;
  offset: number;
  script: string;
  /** The statement as written, when `text` is a rewrite of it (CREATE STREAM): messages quote this. */
  written?: string;
}

const typeAliases: Record<string, TypeName> = {
  TINYINT: 'TINYINT',
  SMALLINT: 'SMALLINT',
  INT: 'INTEGER',
  INTEGER: 'INTEGER',
  BIGINT: 'BIGINT',
  FLOAT: 'FLOAT',
  DOUBLE: 'FLOAT',
  REAL: 'FLOAT',
  DECIMAL: 'DECIMAL',
  NUMERIC: 'DECIMAL',
  VARCHAR: 'VARCHAR',
  CHAR: 'VARCHAR',
  TEXT: 'VARCHAR',
  VARBINARY: 'VARBINARY',
  BINARY: 'VARBINARY',
  TIMESTAMP: 'TIMESTAMP',
  DATETIME: 'TIMESTAMP',
  BOOLEAN: 'BOOLEAN',
  BOOL: 'BOOLEAN',
};

export const emptyCatalog: Catalog = Object.freeze({
  tables: new Map(),
  procedures: new Map(),
  ddl: '',
  version: 0,
});

/** Applies a DDL script on top of `base` and returns the new catalog. Throws on the first error. */
export function applyDdl(script: string, base: Catalog = emptyCatalog): Catalog {
  const draft: Draft = {
    tables: new Map([...base.tables].map(([name, table]) => [name, thaw(table)])),
    procedures: new Map(base.procedures),
    existing: new Set(base.tables.keys()),
  };
  for (const { text, offset } of splitStatements(script)) {
    applyStatement(draft, { text: blankComments(text), offset, script });
  }
  for (const table of draft.tables.values()) validateTable(table);
  return freeze(draft, base.ddl === '' ? script : `${base.ddl}\n;\n${script}`, base.version + 1);
}

function applyStatement(draft: Draft, at: Located): void {
  const text = at.text;
  let match: RegExpExecArray | null;
  if ((match = /^\s*PARTITION\s+TABLE\s+(\w+)\s+ON\s+COLUMN\s+(\w+)\s*$/i.exec(text))) {
    const table = lookupTable(draft, match[1], at, text.indexOf(match[1]));
    const column = lookupColumn(table, match[2], at, text.lastIndexOf(match[2]));
    if (table.kind === 'view') fail(ErrorCode.INVALID_SCHEMA, `view ${table.name} cannot be partitioned`, at, 0);
    if (draft.existing.has(table.name)) {
      // Its rows are already copied to every partition; splitting them is a data migration.
      fail(ErrorCode.INVALID_SCHEMA, `table ${table.name} already exists; PARTITION TABLE must come in the same schema load as its CREATE TABLE`, at, text.indexOf(match[1]));
    }
    if (table.partitionColumn !== undefined && table.partitionColumn !== column.position) {
      fail(ErrorCode.INVALID_SCHEMA, `table ${table.name} is already partitioned on ${table.columns[table.partitionColumn].name}`, at, text.lastIndexOf(match[2]));
    }
    table.partitionColumn = column.position;
    for (const index of table.indexes) checkUniqueIncludesPartition(table, index, at, 0);
    return;
  }
  if ((match = /^\s*CREATE\s+PROCEDURE\s+/i.exec(text))) return createProcedure(draft, at);
  if ((match = /^\s*CREATE\s+STREAM\s+(\w+)((?:\s+PARTITION\s+ON\s+COLUMN\s+\w+)?)((?:\s+EXPORT\s+TO\s+TARGET\s+\w+)?)\s*\(/i.exec(text))) {
    const header = match[0].slice(0, -1);
    const rewritten = `CREATE TABLE ${match[1]}`.padEnd(header.length, ' ') + text.slice(header.length);
    const table = createTable(draft, { ...at, text: rewritten, written: text }, 'stream');
    const partition = /PARTITION\s+ON\s+COLUMN\s+(\w+)/i.exec(match[2]);
    if (partition) {
      table.partitionColumn = lookupColumn(table, partition[1], at, text.indexOf(partition[1], match[1].length)).position;
    }
    const target = /EXPORT\s+TO\s+TARGET\s+(\w+)/i.exec(match[3]);
    if (target) table.exportTarget = target[1].toLowerCase();
    return;
  }
  if (/^\s*CREATE\s+TABLE\s/i.test(text)) {
    createTable(draft, at, 'table');
    return;
  }
  if (/^\s*CREATE\s+(UNIQUE\s+)?(HASH\s+|ORDERED\s+)?INDEX\s/i.test(text)) return createIndex(draft, at);
  if (/^\s*CREATE\s+(OR\s+REPLACE\s+)?VIEW\s/i.test(text)) return createView(draft, at);
  const word = /^\s*(\S+(\s+\S+)?)/.exec(text)?.[1] ?? '';
  fail(ErrorCode.UNSUPPORTED, `unsupported DDL statement '${word}'`, at, text.length - text.trimStart().length);
}

function createTable(draft: Draft, at: Located, kind: 'table' | 'stream'): MutableTable {
  let text = at.text;
  let ttl: { minutes: number; columnName: string; offset: number } | undefined;
  const ttlMatch = /\)\s*USING\s+TTL\s+(\d+)\s+(SECONDS?|MINUTES?|HOURS?|DAYS?)\s+ON\s+COLUMN\s+(\w+)\s*$/i.exec(text);
  if (ttlMatch) {
    const unit = ttlMatch[2].toUpperCase()[0];
    const amount = Number(ttlMatch[1]);
    const minutes = unit === 'S' ? amount / 60 : unit === 'M' ? amount : unit === 'H' ? amount * 60 : amount * 1440;
    ttl = { minutes, columnName: ttlMatch[3], offset: ttlMatch.index + ttlMatch[0].lastIndexOf(ttlMatch[3]) };
    text = text.slice(0, ttlMatch.index + 1) + ' '.repeat(ttlMatch[0].length - 1);
  }
  const ast = parse({ ...at, text });
  if (ast.type !== 'create' || ast.keyword !== 'table') fail(ErrorCode.UNSUPPORTED, 'expected CREATE TABLE', at, 0);
  const name = normalize(ast.table[0].table);
  if (draft.tables.has(name)) fail(ErrorCode.DUPLICATE_OBJECT, `table ${name} already exists`, at, at.text.indexOf(ast.table[0].table));
  const table: MutableTable = {
    name,
    kind,
    columns: [],
    indexes: [],
    partitionColumn: undefined,
    ttl: undefined,
    view: undefined,
    exportTarget: undefined,
    dependentViews: [],
  };
  const constraints: Ast[] = [];
  for (const definition of ast.create_definitions ?? []) {
    if (definition.resource === 'column') {
      addColumn(table, definition, at);
    } else if (definition.resource === 'constraint') {
      constraints.push(definition);
    } else {
      fail(ErrorCode.UNSUPPORTED, `unsupported table element in ${name}`, at, 0);
    }
  }
  for (const definition of ast.create_definitions ?? []) {
    if (definition.resource !== 'column') continue;
    const columnName = normalize(definition.column.column);
    if (definition.primary_key) addConstraintIndex(table, [columnName], true, at);
    else if (definition.unique) addConstraintIndex(table, [columnName], false, at);
  }
  for (const constraint of constraints) {
    const type = String(constraint.constraint_type).toLowerCase();
    const columns = (constraint.definition as Ast[]).map((column) => normalize(column.column));
    if (type === 'primary key') addConstraintIndex(table, columns, true, at);
    else if (type.startsWith('unique')) addConstraintIndex(table, columns, false, at);
    else fail(ErrorCode.UNSUPPORTED, `unsupported constraint ${type} on ${name}`, at, 0);
  }
  if (kind === 'stream' && table.indexes.length > 0) {
    fail(ErrorCode.INVALID_SCHEMA, `stream ${name} cannot have a primary key or unique constraint`, at, 0);
  }
  if (ttl) {
    const using = ttlMatch!.index + ttlMatch![0].search(/USING/i);
    if (kind === 'stream') fail(ErrorCode.INVALID_SCHEMA, `stream ${name} keeps no rows, so it cannot have a TTL`, at, using);
    const column = lookupColumn(table, ttl.columnName, at, ttl.offset);
    // BIGINT holds milliseconds since the epoch, like TIMESTAMP; INTEGER cannot hold today's time.
    if (column.type.name !== 'TIMESTAMP' && column.type.name !== 'BIGINT') {
      fail(ErrorCode.INVALID_SCHEMA, `TTL column ${name}.${column.name} must be a TIMESTAMP (or a BIGINT of epoch milliseconds), not ${column.type.name}`, at, ttl.offset);
    }
    if (!(ttl.minutes > 0)) fail(ErrorCode.INVALID_SCHEMA, `TTL of ${name} must be more than 0`, at, using);
    table.ttl = { minutes: ttl.minutes, column: column.position };
  }
  draft.tables.set(name, table);
  return table;
}

function addColumn(table: MutableTable, definition: Ast, at: Located): void {
  const name = normalize(definition.column.column);
  const offset = findWord(at.text, definition.column.column);
  if (table.columns.some((column) => column.name === name)) {
    fail(ErrorCode.DUPLICATE_OBJECT, `column ${table.name}.${name} is declared twice`, at, offset);
  }
  const type = columnType(definition.definition, `${table.name}.${name}`, at, offset);
  const nullable = definition.nullable?.type !== 'not null' && !definition.primary_key;
  let defaultValue: ColumnDef['defaultValue'];
  if (definition.default_val) {
    const literal = literalValue(definition.default_val.value);
    if (literal === noLiteral) {
      fail(ErrorCode.UNSUPPORTED, `DEFAULT of ${table.name}.${name} must be a literal`, at, offset);
    }
    try {
      defaultValue = coerceValue(literal, type, { label: `default of column ${table.name}.${name}` });
    } catch (error) {
      rethrowAt(error, at, offset);
    }
  }
  table.columns.push({ name, type, nullable, defaultValue, position: table.columns.length, hidden: false });
}

function columnType(definition: Ast, label: string, at: Located, offset: number): SqlType {
  const raw = String(definition.dataType).toUpperCase();
  const name = typeAliases[raw];
  if (!name) fail(ErrorCode.UNSUPPORTED, `unsupported type ${raw} for column ${label}`, at, offset);
  if (name === 'VARCHAR') return { name, length: definition.length ?? varcharDefaultLength };
  if (name === 'VARBINARY') return { name, length: definition.length ?? varbinaryDefaultLength };
  if (name === 'DECIMAL') {
    const precision = definition.length ?? decimalDefaultPrecision;
    const scale = definition.scale ?? (definition.length === undefined ? decimalDefaultScale : 0);
    if (precision > decimalPrecisionMax || scale > precision) {
      fail(ErrorCode.UNSUPPORTED, `DECIMAL(${precision},${scale}) for column ${label}: precision is at most ${decimalPrecisionMax} and scale at most the precision`, at, offset);
    }
    return { name, precision, scale };
  }
  return { name };
}

function addConstraintIndex(table: MutableTable, columnNames: string[], primary: boolean, at: Located): void {
  const columns = columnNames.map((name) => lookupColumn(table, name, at, findWord(at.text, name)).position);
  if (primary) {
    if (table.indexes.some((index) => index.primary)) {
      fail(ErrorCode.INVALID_SCHEMA, `table ${table.name} has more than one primary key`, at, 0);
    }
    for (const position of columns) {
      const column = table.columns[position];
      table.columns[position] = { ...column, nullable: false };
    }
  }
  // A single-column key is looked up by equality: hash. A composite key also serves prefix and
  // range lookups, which need order.
  const kind: IndexKind = columns.length === 1 ? 'hash' : 'ordered';
  const name = primary ? `${table.name}_pkey` : `${table.name}_${columnNames.join('_')}_key`;
  const index: IndexDef = { name, table: table.name, columns, unique: true, kind, primary };
  if (primary) table.indexes.unshift(index);
  else table.indexes.push(index);
}

function createIndex(draft: Draft, at: Located): void {
  const kindMatch = /^\s*CREATE\s+(UNIQUE\s+)?(HASH|ORDERED)\s+INDEX/i.exec(at.text);
  let text = at.text;
  if (kindMatch) {
    const start = kindMatch[0].toUpperCase().lastIndexOf(kindMatch[2].toUpperCase());
    text = text.slice(0, start) + ' '.repeat(kindMatch[2].length) + text.slice(start + kindMatch[2].length);
  }
  const ast = parse({ ...at, text });
  const table = lookupTable(draft, ast.table.table, at, findWord(at.text, ast.table.table, findWord(at.text, 'ON')));
  if (table.kind === 'stream') fail(ErrorCode.INVALID_SCHEMA, `stream ${table.name} cannot be indexed`, at, 0);
  const name = normalize(ast.index);
  for (const other of draft.tables.values()) {
    if (other.indexes.some((index) => index.name === name)) {
      fail(ErrorCode.DUPLICATE_OBJECT, `index ${name} already exists`, at, findWord(at.text, ast.index));
    }
  }
  const columns = (ast.index_columns as Ast[]).map((column) => {
    if (column.type !== 'column_ref') fail(ErrorCode.UNSUPPORTED, `index ${name}: only columns can be indexed`, at, 0);
    return lookupColumn(table, column.column, at, findWord(at.text, column.column, findWord(at.text, '('))).position;
  });
  const using = ast.index_using?.type ?? ast.index_options?.find((option: Ast) => option.keyword === 'using')?.type;
  const kind: IndexKind = kindMatch?.[2].toUpperCase() === 'HASH' || String(using).toLowerCase() === 'hash' ? 'hash' : 'ordered';
  const index: IndexDef = { name, table: table.name, columns, unique: ast.index_type === 'unique', kind, primary: false };
  checkUniqueIncludesPartition(table, index, at, findWord(at.text, ast.index));
  table.indexes.push(index);
}

/** Uniqueness is enforced per partition, so a unique key must pin the partition. */
function checkUniqueIncludesPartition(table: MutableTable, index: IndexDef, at: Located, offset: number): void {
  if (table.partitionColumn === undefined || !index.unique || index.columns.includes(table.partitionColumn)) return;
  const what = index.primary ? 'primary key' : `unique index ${index.name}`;
  fail(
    ErrorCode.INVALID_SCHEMA,
    `${what} of partitioned table ${table.name} must include the partition column ${table.columns[table.partitionColumn].name}, since uniqueness is enforced per partition`,
    at,
    offset,
  );
}

const viewAggregates: ReadonlySet<string> = new Set(['COUNT', 'SUM', 'MIN', 'MAX']);

function createView(draft: Draft, at: Located): void {
  const ast = parse(at);
  const name = normalize(ast.view.view);
  if (draft.tables.has(name)) fail(ErrorCode.DUPLICATE_OBJECT, `table or view ${name} already exists`, at, findWord(at.text, ast.view.view));
  const select = ast.select;
  const shapeError = () =>
    fail(ErrorCode.UNSUPPORTED, `view ${name} must be SELECT <group columns>, COUNT/SUM/MIN/MAX(...) FROM <one table> [WHERE …] GROUP BY <group columns>`, at, 0);
  if (!select || select.type !== 'select' || !select.from || select.from.length !== 1 || select.from[0].join) shapeError();
  if (select.where || select.having || select.orderby || select.limit || select.distinct) {
    fail(ErrorCode.UNSUPPORTED, `view ${name}: WHERE, HAVING, ORDER BY, LIMIT and DISTINCT are not supported in a materialized view`, at, 0);
  }
  const source = lookupTable(draft, select.from[0].table, at, findWord(at.text, select.from[0].table, findWord(at.text, 'FROM')));
  if (source.kind === 'view') fail(ErrorCode.UNSUPPORTED, `view ${name}: a view cannot be built on another view`, at, 0);
  const groupNames: string[] = (select.groupby?.columns ?? []).map((column: Ast) => {
    if (column.type !== 'column_ref') shapeError();
    return normalize(column.column);
  });
  const groupBy = groupNames.map((column) => lookupColumn(source, column, at, findWord(at.text, column)).position);
  const explicitNames: string[] | undefined = ast.columns?.map((column: Ast) => normalize(typeof column === 'string' ? column : column.column ?? column.value));
  const columns: ColumnDef[] = [];
  const aggregates: ViewAggregate[] = [];
  let countColumn: number | undefined;
  let groupSeen = 0;
  (select.columns as Ast[]).forEach((item, index) => {
    const expr = item.expr;
    const columnName = explicitNames?.[index] ?? (item.as ? normalize(item.as) : undefined);
    if (expr.type === 'column_ref') {
      const sourceName = normalize(expr.column);
      const groupIndex = groupNames.indexOf(sourceName);
      if (groupIndex !== groupSeen) {
        fail(ErrorCode.UNSUPPORTED, `view ${name}: column ${sourceName} must be listed in GROUP BY order before the aggregates`, at, findWord(at.text, expr.column));
      }
      groupSeen++;
      const sourceColumn = source.columns[groupBy[groupIndex]];
      columns.push({ ...sourceColumn, name: columnName ?? sourceName, position: columns.length, nullable: true, defaultValue: undefined, hidden: false });
      return;
    }
    if (expr.type !== 'aggr_func' || !viewAggregates.has(String(expr.name).toUpperCase())) shapeError();
    if (groupSeen !== groupNames.length) fail(ErrorCode.UNSUPPORTED, `view ${name}: every GROUP BY column must be selected, before the aggregates`, at, 0);
    const fn = String(expr.name).toUpperCase() as AggregateFunction;
    if (expr.args?.distinct) fail(ErrorCode.UNSUPPORTED, `view ${name}: DISTINCT aggregates are not supported`, at, 0);
    const argument = expr.args?.expr;
    let sourceColumn: number | undefined;
    if (argument?.type === 'star') {
      if (fn !== 'COUNT') shapeError();
    } else if (argument?.type === 'column_ref') {
      sourceColumn = lookupColumn(source, argument.column, at, findWord(at.text, argument.column)).position;
    } else shapeError();
    const viewColumn = columns.length;
    const sourceType = sourceColumn === undefined ? undefined : source.columns[sourceColumn].type;
    const type: SqlType = fn === 'COUNT' ? { name: 'BIGINT' } : fn === 'SUM' && sourceType && ['TINYINT', 'SMALLINT', 'INTEGER'].includes(sourceType.name) ? { name: 'BIGINT' } : sourceType!;
    if (fn === 'SUM' && sourceType && !['TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'FLOAT', 'DECIMAL'].includes(sourceType.name)) {
      fail(ErrorCode.TYPE_MISMATCH, `view ${name}: SUM needs a numeric column`, at, findWord(at.text, argument.column));
    }
    const defaultName = fn === 'COUNT' && sourceColumn === undefined ? 'count' : `${fn.toLowerCase()}_${source.columns[sourceColumn!].name}`;
    columns.push({ name: columnName ?? defaultName, type, nullable: fn !== 'COUNT', defaultValue: undefined, position: viewColumn, hidden: false });
    if (fn === 'COUNT' && sourceColumn === undefined && countColumn === undefined) countColumn = viewColumn;
    aggregates.push({ fn, sourceColumn, viewColumn, nonNullColumn: undefined });
  });
  if (countColumn === undefined) {
    countColumn = columns.length;
    columns.push({ name: '__count', type: { name: 'BIGINT' }, nullable: false, defaultValue: undefined, position: countColumn, hidden: true });
  }
  // SUM over a nullable column turns NULL when the group's last non-NULL value leaves; a hidden
  // count of them tells a delete so without scanning the group's source rows.
  aggregates.forEach((aggregate, i) => {
    if (aggregate.fn !== 'SUM' || !source.columns[aggregate.sourceColumn!].nullable) return;
    const nonNullColumn = columns.length;
    columns.push({ name: `__nonnull_${i}`, type: { name: 'BIGINT' }, nullable: false, defaultValue: undefined, position: nonNullColumn, hidden: true });
    aggregates[i] = { ...aggregate, nonNullColumn };
  });
  const seen = new Set<string>();
  for (const column of columns) {
    if (seen.has(column.name)) fail(ErrorCode.DUPLICATE_OBJECT, `view ${name}: column name ${column.name} appears twice; use AS`, at, 0);
    seen.add(column.name);
  }
  let sourceGroupIndex: string | undefined;
  if (aggregates.some((aggregate) => aggregate.fn === 'MIN' || aggregate.fn === 'MAX') && groupBy.length > 0) {
    const existing = source.indexes.find((index) => index.columns.length >= groupBy.length && groupBy.every((column, i) => index.columns[i] === column) && (index.kind === 'ordered' || index.columns.length === groupBy.length));
    if (existing) sourceGroupIndex = existing.name;
    else {
      sourceGroupIndex = `${name}_source_group`;
      source.indexes.push({ name: sourceGroupIndex, table: source.name, columns: groupBy, unique: false, kind: 'hash', primary: false });
    }
  }
  // Maintenance looks groups up by their whole key on every source write: a hash index.
  const groupKey: IndexDef[] = groupBy.length > 0
    ? [{ name: `${name}_pkey`, table: name, columns: groupBy.map((_, i) => i), unique: true, kind: 'hash', primary: true }]
    : [];
  draft.tables.set(name, {
    name,
    kind: 'view',
    columns,
    indexes: groupKey,
    partitionColumn: undefined,
    ttl: undefined,
    view: { source: source.name, groupBy, aggregates, countColumn, sourceGroupIndex },
    exportTarget: undefined,
    dependentViews: [],
  });
  source.dependentViews.push(name);
}

function createProcedure(draft: Draft, at: Located): void {
  const pattern = /^\s*CREATE\s+PROCEDURE\s+([A-Za-z_@][\w.]*)(?:\s+PARTITION\s+ON\s+TABLE\s+(\w+)\s+COLUMN\s+(\w+)(?:\s+PARAMETER\s+(\d+))?)?\s+(?:FROM\s+(?:CLASS\s+)?'([^']+)'|AS\s+([\s\S]+))\s*$/i;
  const match = pattern.exec(at.text);
  if (!match) {
    fail(ErrorCode.SYNTAX, "expected CREATE PROCEDURE name [PARTITION ON TABLE t COLUMN c [PARAMETER n]] FROM 'file.ts' | AS <sql>", at, 0);
  }
  const [, name, tableName, columnName, parameter, file, sql] = match;
  if (draft.procedures.has(name)) fail(ErrorCode.DUPLICATE_OBJECT, `procedure ${name} already exists`, at, findWord(at.text, name));
  let partitioning: ProcedureDef['partitioning'];
  if (tableName) {
    const table = lookupTable(draft, tableName, at, findWord(at.text, tableName));
    const column = lookupColumn(table, columnName, at, findWord(at.text, columnName, findWord(at.text, tableName)));
    if (table.partitionColumn !== column.position) {
      fail(ErrorCode.INVALID_SCHEMA, `procedure ${name} is partitioned on ${table.name}.${column.name}, which is not the partition column of ${table.name}`, at, findWord(at.text, columnName));
    }
    partitioning = { table: table.name, column: column.name, parameter: parameter === undefined ? 0 : Number(parameter) };
  }
  let sqlAt: ProcedureDef['sqlAt'];
  if (sql !== undefined) {
    // Checked now for syntax; bound against the catalog when the procedure is planned.
    const offset = at.offset + at.text.lastIndexOf(sql) + (sql.length - sql.trimStart().length);
    parseStatement(sql, at.offset + at.text.lastIndexOf(sql), at.script);
    sqlAt = { script: at.script, offset };
  }
  draft.procedures.set(name, {
    name,
    partitioning,
    source: file !== undefined ? { kind: 'file', path: file } : { kind: 'sql', sql: sql!.trim() },
    sqlAt,
  });
}

/** Unique keys were checked against the partition column where they were declared. */
function validateTable(table: MutableTable): void {
  if (table.partitionColumn !== undefined) {
    // A row's partition key decides where it lives: it cannot be NULL.
    const column = table.columns[table.partitionColumn];
    if (column.nullable) table.columns[table.partitionColumn] = { ...column, nullable: false };
  }
}

function parse(at: Located): Ast {
  return parseStatement(at.text, at.offset, at.script).ast;
}

function lookupTable(draft: Draft, name: string, at: Located, offset: number): MutableTable {
  const table = draft.tables.get(normalize(name));
  if (!table) {
    throw new SluiceError(ErrorCode.UNKNOWN_TABLE, `unknown table ${name} in: ${firstLine(written(at))}`, {
      position: positionOf(at.script, at.offset + Math.max(0, offset)),
      object: name,
      suggestions: nearNames(name, draft.tables.keys()),
      statement: written(at).trim(),
    });
  }
  return table;
}

function lookupColumn(table: MutableTable, name: string, at: Located, offset: number): ColumnDef {
  const column = table.columns.find((candidate) => candidate.name === normalize(name));
  if (!column) {
    throw new SluiceError(ErrorCode.UNKNOWN_COLUMN, `unknown column ${name} in table ${table.name} in: ${firstLine(written(at))}`, {
      position: positionOf(at.script, at.offset + Math.max(0, offset)),
      object: `${table.name}.${name}`,
      suggestions: nearNames(name, table.columns.map((candidate) => candidate.name)),
      statement: written(at).trim(),
    });
  }
  return column;
}

function fail(code: ErrorCode, message: string, at: Located, offset: number): never {
  throw new SluiceError(code, `${message} in: ${firstLine(written(at))}`, {
    position: positionOf(at.script, at.offset + Math.max(0, offset)),
    statement: written(at).trim(),
  });
}

function written(at: Located): string {
  return at.written ?? at.text;
}

function rethrowAt(error: unknown, at: Located, offset: number): never {
  if (error instanceof SluiceError) fail(error.code, error.summary, at, offset);
  throw error;
}

/** Offset of `word` as a whole word in `text`, searching from `from`; -1 → 0. */
function findWord(text: string, word: string, from = 0): number {
  const pattern = new RegExp(`\\b${word.replace(/[^\w]/g, '\\$&')}\\b`, 'i');
  const match = pattern.exec(text.slice(Math.max(0, from)));
  return match ? Math.max(0, from) + match.index : 0;
}

/** Identifiers are case-insensitive: stored lower case, as PostgreSQL does. */
export function normalize(identifier: string): string {
  return identifier.toLowerCase();
}

function blankComments(text: string): string {
  return text.replace(/--[^\n]*/g, (comment) => ' '.repeat(comment.length)).replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ' '));
}

function thaw(table: TableDef): MutableTable {
  return {
    name: table.name,
    kind: table.kind,
    columns: [...table.columns],
    indexes: [...table.indexes],
    partitionColumn: table.partitionColumn,
    ttl: table.ttl,
    view: table.view,
    exportTarget: table.exportTarget,
    dependentViews: [...table.dependentViews],
  };
}

function freeze(draft: Draft, ddl: string, version: number): Catalog {
  const tables = new Map<string, TableDef>();
  for (const [name, table] of draft.tables) {
    const columns = Object.freeze(table.columns.map((column) => Object.freeze({ ...column })));
    tables.set(
      name,
      Object.freeze({
        ...table,
        columns,
        columnsByName: new Map(columns.map((column) => [column.name, column])),
        indexes: Object.freeze(table.indexes.map((index) => Object.freeze({ ...index }))),
        primaryKey: table.indexes.find((index) => index.primary),
        partitioned: table.partitionColumn !== undefined,
        dependentViews: Object.freeze([...table.dependentViews]),
      }),
    );
  }
  // Views over partitioned sources are partitioned alike: each partition aggregates its own rows.
  for (const table of tables.values()) {
    if (!table.view) continue;
    const source = tables.get(table.view.source)!;
    if (source.partitionColumn !== undefined) {
      const groupPosition = table.view.groupBy.indexOf(source.partitionColumn);
      tables.set(table.name, Object.freeze({ ...table, partitionColumn: groupPosition === -1 ? undefined : groupPosition, partitioned: true }));
    }
  }
  return Object.freeze({ tables, procedures: draft.procedures, ddl, version });
}
