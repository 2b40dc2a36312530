/**
 * Ad-hoc SQL as a procedure: one planned statement wrapped as a nameless single-statement
 * procedure ('@AdHoc'), so that the router, the coordinator and the partition workers run it
 * through the same invoke path as every other transaction. Cached per plan, so a repeated
 * statement allocates nothing.
 */
import type { PlannedStatement } from '../sql/statement.ts';
import type { LoadedProcedure } from './procedures.ts';

const adhocProcedures = new WeakMap<PlannedStatement, LoadedProcedure>();

export function adhocProcedure(statement: PlannedStatement): LoadedProcedure {
  let procedure = adhocProcedures.get(statement);
  if (procedure === undefined) {
    procedure = {
      name: '@AdHoc',
      def: { name: '@AdHoc', partitioning: undefined, source: { kind: 'sql', sql: statement.sql }, sqlAt: undefined },
      run: undefined,
      statement,
      plans: new Map(),
      parameterTypes: undefined,
      parameterCount: statement.parameterCount,
      partitionParameter: undefined,
      partitionType: undefined,
      readOnly: statement.readOnly,
      source: statement.sql,
    };
    adhocProcedures.set(statement, procedure);
  }
  return procedure;
}
