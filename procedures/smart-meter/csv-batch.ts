/**
 * Parsing a batch of dimension-data CSV inside a loading procedure (LoadMeters, LoadTariffs).
 * The loader (load.ts) sends a file in chunks, each with the header line and the number of its
 * first data line, so an error names the file's line and column as the user sees them.
 * The files are the generator's own simple CSV: no quoting, no commas inside fields.
 */

export type CsvColumnKind = 'integer' | 'number' | 'text';

export interface CsvColumn {
  readonly name: string;
  readonly kind: CsvColumnKind;
}

/** Parses `csv` (header + rows) into value rows; throws an Error naming file, line and column. */
export function parseCsvBatch(file: string, csv: string, firstLine: number, columns: readonly CsvColumn[]): (number | string)[][] {
  const lines = csv.split(/\r?\n/);
  const header = lines[0].trim();
  const expected = columns.map((column) => column.name).join(',');
  if (header !== expected) throw new Error(`${file}: header is '${header}', expected '${expected}'`);
  const rows: (number | string)[][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '') continue;
    const lineNumber = firstLine + i - 1;
    const fields = line.split(',');
    if (fields.length !== columns.length) throw new Error(`${file} line ${lineNumber}: ${fields.length} fields, expected ${columns.length} (${expected})`);
    const row: (number | string)[] = new Array(columns.length);
    for (let c = 0; c < columns.length; c++) {
      const text = fields[c].trim();
      const column = columns[c];
      if (column.kind === 'text') {
        if (text === '') throw new Error(`${file} line ${lineNumber}, column ${column.name}: empty`);
        row[c] = text;
        continue;
      }
      const value = Number(text);
      if (text === '' || !Number.isFinite(value) || (column.kind === 'integer' && !Number.isInteger(value))) {
        throw new Error(`${file} line ${lineNumber}, column ${column.name}: '${text}' is not ${column.kind === 'integer' ? 'an integer' : 'a number'}`);
      }
      row[c] = value;
    }
    rows.push(row);
  }
  return rows;
}

/** Rows per multi-row UPSERT: one statement reaches every partition in one round trip. */
export const upsertRowsMax = 100;

/** `UPSERT INTO table (cols) VALUES (?, …), …` with `rows` rows of placeholders. */
export function multiRowUpsert(table: string, columns: readonly CsvColumn[], rows: number): string {
  const tuple = `(${columns.map(() => '?').join(', ')})`;
  return `UPSERT INTO ${table} (${columns.map((column) => column.name).join(', ')}) VALUES ${Array.from({ length: rows }, () => tuple).join(', ')}`;
}
