/**
 * Where a schema comes from: the path of a .sql file, or the DDL text itself (tests, the embedded
 * Database, a catch-up start with stored code). `folder` is where procedure files named by the
 * DDL are looked up when no procedures folder is given: the file's folder, or the working one.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, SluiceError } from '../errors.ts';

export async function readSchema(schema: string): Promise<{ ddl: string; folder: string }> {
  const trimmed = schema.trim();
  if (/\.sql$/i.test(trimmed) && !/\s/.test(trimmed)) {
    const file = path.resolve(trimmed);
    try {
      return { ddl: await readFile(file, 'utf8'), folder: path.dirname(file) };
    } catch (error) {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, `cannot read schema file ${file}: ${(error as Error).message}`);
    }
  }
  return { ddl: schema, folder: process.cwd() };
}
