/**
 * What an authenticated user may call: the union of their roles, decided per call by the server
 * (engine/server/server.ts) before the call reaches the router. Default deny: a name no role
 * grants is refused. System procedures are granted by their `permission` in
 * procedures/system.ts, so a new system procedure is classified where it is declared.
 */
import { systemProcedureTable, type SystemProcedureInfo } from '../../procedures/system.ts';
import type { CheckedUser } from './config.ts';

/** The answer for one call name: run it, refuse it, or (ad-hoc SQL) run it only if its plan is read-only. */
export const Decision = {
  ALLOW: 0,
  DENY: 1,
  READ_ONLY: 2,
} as const;
export type Decision = (typeof Decision)[keyof typeof Decision];

/** Grants every user procedure when it appears in a role's `procedures`. */
export const allProceduresWildcard = '*';

export class Grant {
  readonly user: string;
  readonly roles: readonly string[];
  readonly admin: boolean;
  readonly adhocRead: boolean;
  readonly adhocWrite: boolean;
  readonly allProcedures: boolean;
  private readonly procedures: ReadonlySet<string>;
  private readonly streams: ReadonlySet<string>;

  constructor(user: CheckedUser) {
    this.user = user.name;
    this.roles = user.roles.map((role) => role.name);
    this.admin = user.roles.some((role) => role.admin);
    this.adhocRead = user.roles.some((role) => role.adhocRead || role.adhocWrite);
    this.adhocWrite = user.roles.some((role) => role.adhocWrite);
    const procedures = new Set(user.roles.flatMap((role) => role.procedures));
    this.allProcedures = procedures.has(allProceduresWildcard);
    this.procedures = procedures;
    this.streams = new Set(user.roles.flatMap((role) => role.streams.map((stream) => stream.toLowerCase())));
  }

  /** Subscribing reads a stream's rows: `adhocRead` (or admin) allows every stream, `streams` the ones named. */
  maySubscribe(stream: unknown): boolean {
    if (this.admin || this.adhocRead || this.streams.has(allProceduresWildcard)) return true;
    return typeof stream === 'string' && this.streams.has(stream.toLowerCase());
  }

  /** `systemTable` is procedures/system.ts's table; tests pass their own to cover every permission. */
  decide(name: string, systemTable: ReadonlyMap<string, Pick<SystemProcedureInfo, 'permission'>> = systemProcedureTable): Decision {
    if (this.admin || this.procedures.has(name)) return Decision.ALLOW;
    const system = systemTable.get(name);
    if (system !== undefined) {
      switch (system.permission) {
        case 'anyone':
          return Decision.ALLOW;
        case 'read':
          return this.adhocRead ? Decision.ALLOW : Decision.DENY;
        case 'adhoc':
          return this.adhocWrite ? Decision.ALLOW : this.adhocRead ? Decision.READ_ONLY : Decision.DENY;
        case 'admin':
          return Decision.DENY;
      }
    }
    if (name.startsWith('@')) return Decision.DENY;
    return this.allProcedures ? Decision.ALLOW : Decision.DENY;
  }

  /** What the refusal says: the user and their roles, never anything about other users. */
  describe(): string {
    return `user '${this.user}' (roles: ${this.roles.join(', ') || 'none'})`;
  }
}
