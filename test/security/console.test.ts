/**
 * The web console under the server's security and TLS: https with the server's certificate,
 * HTTP Basic logins with the same users (401 otherwise, same words for an unknown user), each
 * endpoint needing the rights of the system procedure it stands for, /api/sql judged per
 * statement, and /healthz open for load balancers.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type SluiceConsole } from '../../engine/console/console.ts';
import { serveSecure } from './helpers.ts';

const run = promisify(execFile);
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl) {
  if (process.env.CI === 'true') throw new Error('openssl is required for the console TLS test under CI (.ci/run installs it)');
  console.warn('skipping the console security test: openssl is not installed (it makes a self-signed certificate)');
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function request(url: string, ca: Buffer, options: { method?: string; auth?: [string, string]; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (options.auth) headers.authorization = `Basic ${Buffer.from(`${options.auth[0]}:${options.auth[1]}`).toString('base64')}`;
    const req = https.request(url, { method: options.method ?? 'GET', ca, headers }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe.skipIf(!hasOpenssl)('web console under security', () => {
  let folder = '';
  let cert = '';
  let key = '';

  beforeAll(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-console-tls-'));
    cert = path.join(folder, 'cert.pem');
    key = path.join(folder, 'key.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
  });

  afterAll(async () => {
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  it('serves https, logs in with Basic credentials, and grants each endpoint by role', async () => {
    const server = await serveSecure(
      [
        { name: 'reader', password: 'pw-reader', roles: ['reader'] },
        { name: 'writer', password: 'pw-writer', roles: ['writer'] },
        { name: 'caller', password: 'pw-caller', roles: ['caller'] },
      ],
      { reader: { adhocRead: true }, writer: { adhocWrite: true }, caller: { procedures: ['Touch'] } },
      { tls: { cert, key } },
    );
    let web: SluiceConsole | undefined;
    try {
      web = await startConsole({ server, port: 0, sampleIntervalMs: 200 });
      expect(web.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      const ca = await readFile(cert);
      const api = (route: string) => new URL(route, web!.url).href;
      const anonymous = await request(api('/api/statistics'), ca);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers['www-authenticate']).toBe('Basic realm="Sluice", charset="UTF-8"');
      const wrong = await request(api('/api/info'), ca, { auth: ['reader', 'nope'] });
      const ghost = await request(api('/api/info'), ca, { auth: ['ghost', 'nope'] });
      expect([wrong.status, JSON.parse(wrong.body)]).toEqual([401, { error: { code: 'AUTHENTICATION_FAILED', message: 'authentication failed: unknown user or wrong password' } }]);
      expect([ghost.status, ghost.body]).toEqual([wrong.status, wrong.body]);
      expect((await request(api('/healthz'), ca)).status).toBe(200);
      // The page itself: any logged-in user.
      expect((await request(api('/'), ca, { auth: ['caller', 'pw-caller'] })).status).toBe(200);
      // Statistics and schema need read rights.
      expect((await request(api('/api/info'), ca, { auth: ['reader', 'pw-reader'] })).status).toBe(200);
      const callerInfo = await request(api('/api/info'), ca, { auth: ['caller', 'pw-caller'] });
      expect([callerInfo.status, JSON.parse(callerInfo.body).error.message]).toEqual([403, "user 'caller' (roles: caller) may not call @SystemInformation"]);
      expect((await request(api('/metrics'), ca, { auth: ['caller', 'pw-caller'] })).status).toBe(403);
      // SQL: judged by the statement.
      const sql = (auth: [string, string], text: string) => request(api('/api/sql'), ca, { method: 'POST', auth, body: JSON.stringify({ sql: text }) });
      const read = await sql(['reader', 'pw-reader'], 'SELECT COUNT(*) FROM accounts');
      expect([read.status, JSON.parse(read.body).rows]).toEqual([200, [[0]]]);
      const write = await sql(['reader', 'pw-reader'], 'INSERT INTO accounts (id, balance, touches) VALUES (1, 1, 0)');
      expect([write.status, JSON.parse(write.body).error]).toEqual([403, { code: 'PERMISSION_DENIED', message: "user 'reader' (roles: reader) may run read-only ad-hoc SQL only, and this statement writes" }]);
      expect((await sql(['writer', 'pw-writer'], 'INSERT INTO accounts (id, balance, touches) VALUES (1, 1, 0)')).status).toBe(200);
      expect((await sql(['caller', 'pw-caller'], 'SELECT 1')).status).toBe(403);
      const after = await sql(['reader', 'pw-reader'], 'SELECT COUNT(*) FROM accounts');
      expect(JSON.parse(after.body).rows).toEqual([[1]]);
    } finally {
      await web?.close();
    }
  });
});
