/**
 * TLS: a self-signed certificate made with openssl for the test; the server serves wss:// from
 * PEM files, the SDK and the CLI trust it through `ca`, clients that do not trust it (or speak
 * plain ws://) are refused without harming the server, a bad certificate section stops the start
 * with a message naming the file, and createHttpServer gives the console https from the same
 * section.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../client/index.ts';
import { ErrorCode } from '../../engine/errors.ts';
import { createHttpServer, loadTls } from '../../engine/security/tls.ts';
import { expectError } from '../helpers.ts';
import { client, rejection, serve } from '../server-helpers.ts';
import { serveSecure } from './helpers.ts';

const run = promisify(execFile);
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl) {
  if (process.env.CI === 'true') throw new Error('openssl is required for the TLS tests under CI (.ci/run installs it)');
  console.warn('skipping the TLS tests: openssl is not installed (they need it to make a self-signed certificate)');
}

describe.skipIf(!hasOpenssl)('TLS', () => {
  let folder = '';
  let cert = '';
  let key = '';
  let otherKey = '';

  beforeAll(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-tls-'));
    cert = path.join(folder, 'cert.pem');
    key = path.join(folder, 'key.pem');
    otherKey = path.join(folder, 'other-key.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
    await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', otherKey]);
  });

  afterAll(async () => {
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  it('round trip over wss:// with a self-signed certificate trusted through ca', async () => {
    const server = await serve({ tls: { cert, key } });
    expect(server.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    const db = await client(server, { ca: await readFile(cert) });
    await db.query('INSERT INTO accounts (id, balance, touches) VALUES (1, 10, 0)');
    expect(await db.call('Touch', 1)).toBe(10);
    expect((await db.query('SELECT touches FROM accounts')).rows).toEqual([[1]]);
  });

  it('a client that does not trust the certificate, or speaks plain ws://, is refused; the server carries on', async () => {
    const server = await serve({ tls: { cert, key } });
    const untrusted = await rejection(connect(server.url));
    expect(untrusted.status).toBe('CONNECTION_LOST');
    expect(untrusted.message).toMatch(/self[- ]signed certificate/);
    const plain = await rejection(connect(server.url.replace('wss://', 'ws://'), { connectTimeoutMs: 5000 }));
    expect(plain.status).toBe('CONNECTION_LOST');
    const db = await client(server, { ca: await readFile(cert) });
    expect(await db.call('@Ping')).toBe(0);
  });

  it('TLS and logins together: credentials travel encrypted, roles apply', async () => {
    const server = await serveSecure([{ name: 'u', password: 'pw', roles: ['r'] }], { r: { adhocRead: true } }, { tls: { cert, key } });
    const db = await client(server, { ca: await readFile(cert), user: 'u', password: 'pw' });
    expect((await db.query('SELECT COUNT(*) FROM accounts')).rows).toEqual([[0]]);
    expect((await rejection(db.call('Touch', 1))).code).toBe('PERMISSION_DENIED');
  });

  it('a bad tls section stops the start, naming the file and the problem', async () => {
    await expectError(() => loadTls({ cert: path.join(folder, 'missing.pem'), key }), ErrorCode.INVALID_CONFIG, /tls\.cert: cannot read .*missing\.pem/);
    const notPem = path.join(folder, 'not.pem');
    await writeFile(notPem, 'hello');
    await expectError(() => loadTls({ cert, key: notPem }), ErrorCode.INVALID_CONFIG, /tls\.key: .*not\.pem is not a PEM file/);
    await expectError(() => loadTls({ cert, key: otherKey }), ErrorCode.INVALID_CONFIG, /tls: the certificate and key do not form a usable TLS identity/);
    const error = await rejection(serve({ tls: { cert, key: otherKey } }));
    expect(error.message).toMatch(/do not form a usable TLS identity/);
  });

  it('createHttpServer serves https from the same section (for the console)', async () => {
    const material = await loadTls({ cert, key });
    const server = createHttpServer(material, (_request, response) => response.end('console'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const body = await new Promise<string>((resolve, reject) => {
        https.get({ host: '127.0.0.1', port, path: '/', ca: material.cert }, (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => (text += chunk.toString()));
          response.on('end', () => resolve(text));
        }).on('error', reject);
      });
      expect(body).toBe('console');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('the CLI connects to wss:// with --ca', async () => {
    const server = await serve({ tls: { cert, key } });
    const { stdout } = await run(process.execPath, ['client/cli.ts', 'call', '--url', server.url, '--ca', cert, '@Ping']);
    expect(stdout.trim()).toBe('0');
    const failed = await run(process.execPath, ['client/cli.ts', 'call', '--url', server.url, '@Ping']).catch((error: { stderr: string; code: number }) => error);
    expect('code' in failed && failed.code).toBe(1);
    expect('stderr' in failed && failed.stderr).toMatch(/^error: CONNECTION_LOST cannot connect to wss:.*self[- ]signed certificate/);
  });
});
