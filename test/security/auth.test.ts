/**
 * Authentication: scrypt hashes, the deployment file's security section (every mistake named by
 * its place), logins in the handshake (wrong passwords refused; an unknown user gets the same
 * answer after the same work), the throttle that slows down addresses that keep failing, and
 * logs that never carry a password or hash.
 */
import { describe, expect, it } from 'vitest';
import { connect } from '../../client/index.ts';
import { ErrorCode } from '../../engine/errors.ts';
import { Authenticator, LoginThrottle } from '../../engine/security/authenticator.ts';
import { checkSecurity } from '../../engine/security/config.ts';
import { hashPassword, parseHash, verifyPassword } from '../../engine/security/passwords.ts';
import { CloseCode, FrameKind, ProtocolCode } from '../../engine/server/protocol.ts';
import { startServer } from '../../engine/server/server.ts';
import { expectError } from '../helpers.ts';
import { bankSchema, client, rejection, serve } from '../server-helpers.ts';
import { capturedLogger, codec, raw, securityFor, sendHello, serveSecure, testScryptCost, untilClosed } from './helpers.ts';

const users = [
  { name: 'alice', password: 'correct horse battery staple', roles: ['caller'] },
  { name: 'bob', password: 's3cret-bob', roles: ['caller'] },
];
const roles = { caller: { procedures: ['Touch'] } };

describe('password hashes', () => {
  it('hash, parse and verify; a wrong password does not verify', async () => {
    const stored = await hashPassword('hunter2', { cost: testScryptCost });
    expect(stored).toMatch(/^scrypt\$1024\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    const parsed = parseHash(stored, 'test');
    expect(await verifyPassword('hunter2', parsed)).toBe(true);
    expect(await verifyPassword('hunter3', parsed)).toBe(false);
    expect(await verifyPassword('', parsed)).toBe(false);
    // Two hashes of one password differ (a fresh salt each time).
    expect(await hashPassword('hunter2', { cost: testScryptCost })).not.toBe(stored);
  });

  it('refuses malformed hashes and unsafe parameters, naming where', async () => {
    await expectError(() => parseHash('plain-text', 'security.users[0].passwordHash'), ErrorCode.INVALID_CONFIG, /security\.users\[0\]\.passwordHash is not a scrypt hash/);
    await expectError(() => parseHash('scrypt$1000$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==', 'h'), ErrorCode.INVALID_CONFIG, /N must be a power of two/);
    await expectError(() => parseHash('scrypt$2097152$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==', 'h'), ErrorCode.INVALID_CONFIG, /N must be a power of two from 2 to/);
    await expectError(() => parseHash('scrypt$1024$99$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==', 'h'), ErrorCode.INVALID_CONFIG, /r must be/);
    await expectError(() => hashPassword(''), ErrorCode.INVALID_CONFIG, /empty/);
  });
});

describe('the security section', () => {
  it('names each mistake by its place in the deployment file', async () => {
    const hash = await hashPassword('x', { cost: testScryptCost });
    const cases: [unknown, RegExp][] = [
      ['on', /security must be an object/],
      [{ enabled: 'yes' }, /security\.enabled must be true or false/],
      [{ enabled: true, users: [] }, /no users are defined/],
      [{ enabled: true, users: [{ name: 'a', passwordHash: hash, roles: ['ghost'] }], roles: {} }, /security\.users\[0\]\.roles\[0\]: unknown role "ghost"/],
      [{ enabled: true, users: [{ name: 'a', password: 'x', roles: [] }] }, /security\.users\[0\]: unknown setting 'password'/],
      [{ enabled: true, users: [{ name: 'a', passwordHash: hash, roles: [] }, { name: 'a', passwordHash: hash, roles: [] }] }, /users\[1\]: user 'a' is listed twice/],
      [{ enabled: true, users: [{ name: 'a', passwordHash: hash }], roles: { r: { adhocRead: 'yes' } } }, /security\.roles\.r\.adhocRead must be true or false/],
      [{ enabled: true, users: [{ name: 'a', passwordHash: hash }], roles: { r: { procedures: 'Vote' } } }, /security\.roles\.r\.procedures must be a list/],
      [{ enabled: true, users: [{ name: 'a', passwordHash: hash }], roles: { r: { superuser: true } } }, /security\.roles\.r: unknown setting 'superuser'/],
    ];
    for (const [section, message] of cases) await expectError(() => checkSecurity(section), ErrorCode.INVALID_CONFIG, message);
  });

  it('a server with a bad security section does not start, and says why', async () => {
    const error = await rejection(startServer({ schema: bankSchema, partitions: 1, port: 0, host: '127.0.0.1', security: { enabled: true, users: [{ name: 'a', passwordHash: 'nope', roles: [] }] } }));
    expect(error.message).toContain('security.users[0].passwordHash is not a scrypt hash');
  });
});

describe('login', () => {
  it('the right password connects; a wrong one is refused with AUTHENTICATION_FAILED', async () => {
    const server = await serveSecure(users, roles);
    const alice = await client(server, { user: 'alice', password: users[0].password });
    expect(await alice.call('@Ping')).toBe(0);
    const wrong = await rejection(connect(server.url, { user: 'alice', password: 'Correct horse battery staple' }));
    expect(wrong).toMatchObject({ code: ProtocolCode.AUTHENTICATION_FAILED, status: 'FAILURE' });
    expect(wrong.message).toBe('authentication failed: unknown user or wrong password');
    // Another user's password is not this user's.
    expect((await rejection(connect(server.url, { user: 'alice', password: users[1].password }))).code).toBe(ProtocolCode.AUTHENTICATION_FAILED);
    const missing = await rejection(connect(server.url));
    expect(missing.code).toBe(ProtocolCode.AUTHENTICATION_FAILED);
    expect(missing.message).toContain('requires a user and password');
    // The refused logins left the server and the logged-in client untouched.
    expect(await alice.call('@Ping')).toBe(0);
  });

  it('an unknown user gets exactly the answer a wrong password gets', async () => {
    const server = await serveSecure(users, roles);
    const answers = [];
    for (const [user, password] of [['alice', 'wrong'], ['mallory', 'wrong'], ['mallory', users[0].password]]) {
      const ws = await raw(server.url);
      const closed = untilClosed(ws);
      const first = await sendHello(ws, { user, password });
      const { code } = await closed;
      answers.push({ first, code });
    }
    expect(answers[0].first).toEqual([FrameKind.ERROR, ProtocolCode.AUTHENTICATION_FAILED, 'authentication failed: unknown user or wrong password']);
    expect(answers[0].code).toBe(CloseCode.AUTHENTICATION_FAILED);
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[2]).toEqual(answers[0]);
  });

  it('an unknown user costs the same scrypt work as a known one', async () => {
    const security = checkSecurity(await securityFor(users, roles));
    const authenticator = new Authenticator(security, { baseMs: 0 });
    expect((await authenticator.login('alice', 'wrong', 'a')).ok).toBe(false);
    expect(authenticator.verifications).toBe(1);
    expect(await authenticator.login('nobody', 'wrong', 'b')).toEqual({ ok: false, reason: 'refused' });
    expect(authenticator.verifications).toBe(2);
    expect(await authenticator.login('nobody', 'x'.repeat(5000), 'c')).toEqual({ ok: false, reason: 'refused' });
    expect(authenticator.verifications).toBe(3);
    const good = await authenticator.login('bob', users[1].password, 'd');
    expect(good.ok && good.grant.user).toBe('bob');
    // Non-string credentials are refused before any work: nothing to guess with.
    expect(await authenticator.login(42, {}, 'e')).toEqual({ ok: false, reason: 'missing' });
    expect(authenticator.verifications).toBe(4);
  });

  it('security off ignores credentials; protocol version negotiation still works with them', async () => {
    const open = await serve();
    const db = await client(open, { user: 'anyone', password: 'anything' });
    expect(await db.call('@Ping')).toBe(0);
    const secure = await serveSecure(users, roles);
    const ws = await raw(secure.url);
    const closed = untilClosed(ws);
    ws.send(codec.pack([FrameKind.HELLO, { versions: [99], user: 'alice', password: users[0].password }]));
    expect((await closed).code).toBe(CloseCode.UNSUPPORTED_VERSION);
    const ok = await raw(secure.url);
    const welcome = await sendHello(ok, { versions: [7, 1], user: 'alice', password: users[0].password });
    expect(welcome[0]).toBe(FrameKind.WELCOME);
    expect(welcome[1]).toMatchObject({ version: 1, user: 'alice' });
    ok.close();
  });

  it('frames sent before WELCOME while the login is checked close the connection', async () => {
    const server = await serveSecure(users, roles);
    const ws = await raw(server.url);
    const closed = untilClosed(ws);
    ws.send(codec.pack([FrameKind.HELLO, { versions: [1], user: 'alice', password: users[0].password }]));
    ws.send(codec.pack([FrameKind.CALLS, 1, '@Ping', []]));
    const { code, frames } = await closed;
    expect(code).toBe(CloseCode.HANDSHAKE_EXPECTED);
    expect(frames.at(-1)).toEqual([FrameKind.ERROR, ProtocolCode.HANDSHAKE_EXPECTED, 'a frame arrived before WELCOME: wait for the handshake to finish']);
  });

  it('logs logins and refusals by user and address, never a password or hash', async () => {
    const { logger, lines } = capturedLogger();
    const security = await securityFor(users, roles);
    const server = await serveSecure(users, roles, { logger, security });
    await client(server, { user: 'alice', password: users[0].password });
    await rejection(connect(server.url, { user: 'bob', password: 'guess-one' }));
    await rejection(connect(server.url, { user: 'eve', password: 'guess-two' }));
    const log = lines.join('');
    expect(log).toContain('"msg":"login"');
    expect(log).toContain('"msg":"login refused"');
    expect(log).toContain('"user":"eve"');
    for (const secret of [users[0].password, 'guess-one', 'guess-two', ...security.users!.map((user) => user.passwordHash), ...security.users!.map((user) => user.passwordHash.split('$')[5])]) {
      expect(log).not.toContain(secret);
    }
  });
});

describe('the login throttle', () => {
  it('delays an address more after each failure, up to a maximum, and forgets it on success', () => {
    const now = 1_000_000;
    const throttle = new LoginThrottle({ baseMs: 100, maxMs: 1000, now: () => now });
    expect(throttle.reserve('10.0.0.1')).toBe(0);
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      throttle.failed('10.0.0.1');
      delays.push(throttle.delayFor('10.0.0.1'));
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    // Other addresses are not slowed down.
    expect(throttle.reserve('10.0.0.2')).toBe(0);
    throttle.succeeded('10.0.0.1');
    expect(throttle.reserve('10.0.0.1')).toBe(0);
  });

  it('spaces out attempts made in parallel from one address, and refuses a deep queue unchecked', () => {
    const now = 5_000;
    const throttle = new LoginThrottle({ baseMs: 100, maxMs: 100, queueWaitMaxMs: 1000, now: () => now });
    throttle.failed('x');
    const waits = Array.from({ length: 12 }, () => throttle.reserve('x'));
    expect(waits.slice(0, 10)).toEqual([100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
    expect(waits.slice(10)).toEqual([-1, -1]);
  });

  it('forgets failures after its memory span, and tracks a bounded number of addresses', () => {
    let now = 0;
    const throttle = new LoginThrottle({ baseMs: 100, memoryMs: 60_000, addressesMax: 3, now: () => now });
    throttle.failed('a');
    expect(throttle.failures('a')).toBe(1);
    now += 60_001;
    expect(throttle.failures('a')).toBe(0);
    for (const address of ['a', 'b', 'c', 'd']) throttle.failed(address);
    expect(throttle.trackedAddresses).toBe(3);
    expect(throttle.failures('a')).toBe(0);
    expect(throttle.failures('d')).toBe(1);
  });

  it('a server slows down repeated failures from one address (the log shows the count growing)', async () => {
    const { logger, lines } = capturedLogger();
    const server = await serveSecure(users, roles, { logger });
    for (let i = 0; i < 3; i++) await rejection(connect(server.url, { user: 'alice', password: `guess-${i}` }));
    const failures = lines.filter((line) => line.includes('"msg":"login refused"')).map((line) => (JSON.parse(line) as { failures: number }).failures);
    expect(failures).toEqual([1, 2, 3]);
    // The right password still works from that address afterwards (after its delay).
    const alice = await client(server, { user: 'alice', password: users[0].password });
    expect(await alice.call('@Ping')).toBe(0);
  });
});
