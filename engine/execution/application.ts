/**
 * The application: a schema (DDL) and its procedures, loaded the same way on the router and in
 * every partition worker. Both must hold the same procedures in the same order (calls carry a
 * procedure's index), so both build them here: at start, and for every live update
 * (docs/live-update.md), where each thread loads the new version itself because functions
 * cannot cross threads.
 */
import { addExactlyOnceProcedures } from '../../importers/exactly-once.ts';
import { applyDdl, emptyCatalog } from '../catalog/ddl.ts';
import type { Catalog } from '../catalog/schema.ts';
import { loadProcedures, type LoadedProcedure } from './procedures.ts';

export interface Application {
  readonly catalog: Catalog;
  readonly procedures: Map<string, LoadedProcedure>;
}

/** Builds the catalog from `ddl` and loads its procedures from `proceduresDir`. */
export async function loadApplication(ddl: string, proceduresDir: string, partitionCount: number): Promise<Application> {
  const catalog = applyDdl(ddl, emptyCatalog);
  const procedures = await loadProcedures(catalog, proceduresDir);
  addExactlyOnceProcedures(procedures, catalog, partitionCount);
  return { catalog, procedures };
}
