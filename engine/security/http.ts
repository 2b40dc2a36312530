/**
 * Security for HTTP endpoints beside the client port (the web console, /metrics): the same users,
 * roles, throttle and answers as the WebSocket handshake, through HTTP Basic authentication
 * (serve it over https: createHttpServer in tls.ts). Also the one per-call permission check,
 * `refusalOf`, that the WebSocket server and any HTTP endpoint running calls both use.
 *
 * ```ts
 * const login = await authenticateRequest(server.authenticator, request);
 * if (!login.ok) return send(response, login.status, login.headers, login.message);
 * const refusal = login.grant && refusalOf(login.grant, '@AdHoc', [sql, []], (text) => router.adhocReadOnly(text));
 * ```
 *
 * A browser sends the credentials with every request, and scrypt is meant to be slow, so a
 * successful check is remembered for a few minutes under an HMAC of the credentials (keyed by a
 * random per-process secret: the cache holds nothing a reader of memory could replay elsewhere).
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ProtocolCode, type ErrorPayload } from '../server/protocol.ts';
import type { Authenticator } from './authenticator.ts';
import { Decision, type Grant } from './grants.ts';

/** How long a verified Basic credential is taken without running scrypt again. */
export const httpLoginCacheMs = 5 * 60_000;
/** Verified credentials remembered at once; the oldest is dropped first. */
export const httpLoginCacheEntriesMax = 1000;
export const basicRealm = 'Sluice';

export type HttpLogin =
  | { ok: true; grant: Grant | undefined }
  | { ok: false; status: 401; headers: Record<string, string>; message: string };

const cacheKey = randomBytes(32);
const verified = new Map<string, { grant: Grant; until: number }>();

function refused(message: string): HttpLogin {
  return { ok: false, status: 401, headers: { 'www-authenticate': `Basic realm="${basicRealm}", charset="UTF-8"` }, message };
}

/**
 * Checks a request's Basic credentials. Security off (no authenticator): every request passes
 * with no grant. Missing or wrong credentials: 401 with the same message whether or not the user
 * exists, after the throttle's delay for the address.
 */
export async function authenticateRequest(authenticator: Authenticator | undefined, request: IncomingMessage): Promise<HttpLogin> {
  if (authenticator === undefined) return { ok: true, grant: undefined };
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (match === null) return refused('this server requires a user and password (HTTP Basic authentication)');
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return refused('authentication failed: unknown user or wrong password');
  const user = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  const key = createHmac('sha256', cacheKey).update(decoded).digest('base64');
  const now = Date.now();
  const cached = verified.get(key);
  if (cached !== undefined && cached.until > now) return { ok: true, grant: cached.grant };
  verified.delete(key);
  const outcome = await authenticator.login(user, password, request.socket.remoteAddress ?? '?');
  if (!outcome.ok) {
    return refused(outcome.reason === 'throttled' ? 'authentication failed: too many failed attempts from this address; try again later' : 'authentication failed: unknown user or wrong password');
  }
  if (verified.size >= httpLoginCacheEntriesMax) verified.delete(verified.keys().next().value!);
  verified.set(key, { grant: outcome.grant, until: now + httpLoginCacheMs });
  return { ok: true, grant: outcome.grant };
}

/**
 * Why `grant` may not make this call, as an error payload (PERMISSION_DENIED), or undefined when
 * it may. Ad-hoc SQL for a read-only grant is judged by its plan: `adhocReadOnly(sql)` answers
 * whether it only reads, or undefined when it does not plan (then it runs nothing and the caller
 * gets the planning error from the router).
 */
export function refusalOf(grant: Grant, name: string, params: readonly unknown[], adhocReadOnly: (sql: string) => boolean | undefined): ErrorPayload | undefined {
  const decision = grant.decide(name);
  if (decision === Decision.ALLOW) return undefined;
  if (decision === Decision.READ_ONLY) {
    const sql = params[0];
    if (typeof sql !== 'string' || adhocReadOnly(sql) !== false) return undefined;
    return [ProtocolCode.PERMISSION_DENIED, `${grant.describe()} may run read-only ad-hoc SQL only, and this statement writes`, { object: name }];
  }
  return [ProtocolCode.PERMISSION_DENIED, `${grant.describe()} may not call ${name}`, { object: name }];
}
