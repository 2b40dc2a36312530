/**
 * The deployment file's `security` section, checked once at start: users with scrypt password
 * hashes and the roles they hold, and what each role grants. Everything wrong is reported with
 * its place in the file (`security.users[1].roles[0]: unknown role 'ops'`), before the server
 * listens. The checked form feeds the authenticator (authenticator.ts) and the grants (grants.ts).
 *
 * ```json
 * "security": {
 *   "enabled": true,
 *   "users": [{ "name": "app", "passwordHash": "scrypt$32768$8$1$…", "roles": ["writer"] }],
 *   "roles": { "writer": { "procedures": ["Vote"], "adhocRead": true, "adhocWrite": false, "admin": false } }
 * }
 * ```
 */
import { ErrorCode, SluiceError } from '../errors.ts';
import { parseHash, type ScryptHash } from './passwords.ts';

export const userNameLengthMax = 256;

export interface RoleConfig {
  /** Procedures the role may call, by name; `"*"` grants every user procedure (not system ones). */
  procedures?: string[];
  /** Streams the role may subscribe to (live rows, protocol version 2); `"*"` = all. */
  streams?: string[];
  /** Ad-hoc statements whose plan is read-only, the 'read' system procedures, and subscribing to any stream. */
  adhocRead?: boolean;
  /** Every ad-hoc statement. */
  adhocWrite?: boolean;
  /** Everything, including the 'admin' system procedures. */
  admin?: boolean;
}

export interface UserConfig {
  name: string;
  passwordHash: string;
  roles: string[];
}

/** The section as written in the deployment file. */
export interface SecurityConfig {
  enabled: boolean;
  users?: UserConfig[];
  roles?: Record<string, RoleConfig>;
}

export interface CheckedRole {
  readonly name: string;
  readonly procedures: readonly string[];
  readonly streams: readonly string[];
  readonly adhocRead: boolean;
  readonly adhocWrite: boolean;
  readonly admin: boolean;
}

export interface CheckedUser {
  readonly name: string;
  readonly hash: ScryptHash;
  readonly roles: readonly CheckedRole[];
}

export interface CheckedSecurity {
  readonly enabled: boolean;
  readonly users: ReadonlyMap<string, CheckedUser>;
  readonly roles: ReadonlyMap<string, CheckedRole>;
}

function fail(message: string): never {
  throw new SluiceError(ErrorCode.INVALID_CONFIG, message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(value: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) fail(`${where}: unknown setting '${key}' (expected ${allowed.join(', ')})`);
  }
}

function optionalBoolean(value: unknown, where: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') fail(`${where} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

/** Checks the `security` section; `where` is its name in the error messages. */
export function checkSecurity(raw: unknown, where = 'security'): CheckedSecurity {
  if (!isObject(raw)) fail(`${where} must be an object { enabled, users, roles }`);
  checkKeys(raw, ['enabled', 'users', 'roles'], where);
  if (typeof raw.enabled !== 'boolean') fail(`${where}.enabled must be true or false`);
  const roles = new Map<string, CheckedRole>();
  const rawRoles = raw.roles ?? {};
  if (!isObject(rawRoles)) fail(`${where}.roles must be an object: role name → { procedures, adhocRead, adhocWrite, admin }`);
  for (const [name, role] of Object.entries(rawRoles)) {
    const at = `${where}.roles.${name}`;
    if (!isObject(role)) fail(`${at} must be an object { procedures, streams, adhocRead, adhocWrite, admin }`);
    checkKeys(role, ['procedures', 'streams', 'adhocRead', 'adhocWrite', 'admin'], at);
    const procedures = role.procedures ?? [];
    if (!Array.isArray(procedures) || procedures.some((procedure) => typeof procedure !== 'string' || procedure.length === 0)) {
      fail(`${at}.procedures must be a list of procedure names`);
    }
    const streams = role.streams ?? [];
    if (!Array.isArray(streams) || streams.some((stream) => typeof stream !== 'string' || stream.length === 0)) {
      fail(`${at}.streams must be a list of stream names`);
    }
    roles.set(name, {
      name,
      procedures: procedures as string[],
      streams: streams as string[],
      adhocRead: optionalBoolean(role.adhocRead, `${at}.adhocRead`),
      adhocWrite: optionalBoolean(role.adhocWrite, `${at}.adhocWrite`),
      admin: optionalBoolean(role.admin, `${at}.admin`),
    });
  }
  const users = new Map<string, CheckedUser>();
  const rawUsers = raw.users ?? [];
  if (!Array.isArray(rawUsers)) fail(`${where}.users must be a list of { name, passwordHash, roles }`);
  rawUsers.forEach((user: unknown, i) => {
    const at = `${where}.users[${i}]`;
    if (!isObject(user)) fail(`${at} must be an object { name, passwordHash, roles }`);
    checkKeys(user, ['name', 'passwordHash', 'roles'], at);
    if ('password' in user) fail(`${at}: write passwordHash (from \`sluice hash-password\`), never a password`);
    const name = user.name;
    if (typeof name !== 'string' || name.length === 0 || name.length > userNameLengthMax) fail(`${at}.name must be a name of 1 to ${userNameLengthMax} characters`);
    if (users.has(name)) fail(`${at}: user '${name}' is listed twice`);
    if (typeof user.passwordHash !== 'string') fail(`${at}.passwordHash must be a string (make one with \`sluice hash-password\`)`);
    const hash = parseHash(user.passwordHash, `${at}.passwordHash`);
    const roleNames = user.roles ?? [];
    if (!Array.isArray(roleNames)) fail(`${at}.roles must be a list of role names`);
    const held = roleNames.map((roleName: unknown, r) => {
      const role = typeof roleName === 'string' ? roles.get(roleName) : undefined;
      if (role === undefined) fail(`${at}.roles[${r}]: unknown role ${JSON.stringify(roleName)} (roles: ${[...roles.keys()].join(', ') || 'none defined'})`);
      return role;
    });
    users.set(name, { name, hash, roles: held });
  });
  if (raw.enabled && users.size === 0) fail(`${where}.enabled is true but no users are defined: nobody could connect`);
  return { enabled: raw.enabled, users, roles };
}
