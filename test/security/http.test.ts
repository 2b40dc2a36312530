/**
 * HTTP endpoints beside the client port (the web console) under security: Basic authentication
 * with the same users and answers as the handshake (401, same message for an unknown user),
 * verified credentials remembered so a browser's every request does not pay for scrypt, and the
 * same per-call permission check (refusalOf) as the WebSocket server.
 */
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { authenticateRequest, refusalOf } from '../../engine/security/http.ts';
import { createHttpServer } from '../../engine/security/tls.ts';
import type { SluiceServer } from '../../engine/server/server.ts';
import { serve } from '../server-helpers.ts';
import { serveSecure } from './helpers.ts';

/** A tiny endpoint the way the console would write one: log in, check the call, answer. */
async function endpoint(server: SluiceServer): Promise<{ url: string; close: () => Promise<void> }> {
  const http = createHttpServer(server.tls, (request, response) => {
    void (async () => {
      const login = await authenticateRequest(server.authenticator, request);
      if (!login.ok) {
        response.writeHead(login.status, { ...login.headers, 'content-type': 'text/plain' });
        response.end(login.message);
        return;
      }
      const sql = decodeURIComponent(new URL(request.url ?? '/', 'http://x').searchParams.get('sql') ?? '');
      const refusal = login.grant === undefined ? undefined : refusalOf(login.grant, '@AdHoc', [sql, []], (text) => server.router.adhocReadOnly(text));
      if (refusal !== undefined) {
        response.writeHead(403, { 'content-type': 'text/plain' });
        response.end(refusal[1]);
        return;
      }
      const result = await server.router.call('@AdHoc', sql, []);
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(result));
    })();
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, close: () => new Promise((resolve) => http.close(() => resolve())) };
}

function basic(user: string, password: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}

describe('HTTP endpoints under security', () => {
  it('Basic authentication: 401 without or with wrong credentials (same for unknown users), 200 with good ones', async () => {
    const server = await serveSecure([{ name: 'reader', password: 'pw-reader', roles: ['reader'] }], { reader: { adhocRead: true } });
    const api = await endpoint(server);
    try {
      const query = `${api.url}/?sql=${encodeURIComponent('SELECT COUNT(*) FROM accounts')}`;
      const none = await fetch(query);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Basic realm="Sluice", charset="UTF-8"');
      const wrong = await fetch(query, { headers: basic('reader', 'nope') });
      const unknown = await fetch(query, { headers: basic('ghost', 'nope') });
      expect([wrong.status, await wrong.text()]).toEqual([401, 'authentication failed: unknown user or wrong password']);
      expect([unknown.status, await unknown.text()]).toEqual([401, 'authentication failed: unknown user or wrong password']);
      const good = await fetch(query, { headers: basic('reader', 'pw-reader') });
      expect(good.status).toBe(200);
      expect(((await good.json()) as { rows: unknown[][] }).rows).toEqual([[0]]);
      // Remembered: a second request does not run scrypt again.
      const checks = server.authenticator!.verifications;
      expect((await fetch(query, { headers: basic('reader', 'pw-reader') })).status).toBe(200);
      expect(server.authenticator!.verifications).toBe(checks);
      // The roles apply: a reader may not write.
      const write = await fetch(`${api.url}/?sql=${encodeURIComponent('DELETE FROM accounts')}`, { headers: basic('reader', 'pw-reader') });
      expect([write.status, await write.text()]).toEqual([403, "user 'reader' (roles: reader) may run read-only ad-hoc SQL only, and this statement writes"]);
    } finally {
      await api.close();
    }
  });

  it('security off: requests pass without credentials', async () => {
    const server = await serve();
    const api = await endpoint(server);
    try {
      const response = await fetch(`${api.url}/?sql=${encodeURIComponent('SELECT COUNT(*) FROM accounts')}`);
      expect(response.status).toBe(200);
    } finally {
      await api.close();
    }
  });
});
