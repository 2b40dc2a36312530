/**
 * Roles: every role against every protected action over a real connection — refused with
 * PERMISSION_DENIED (and nothing run) where the role lacks the grant, allowed where it has it.
 * Ad-hoc SQL is judged by the planned statement (reads vs writes); system procedures by their
 * permission in procedures/system.ts, so new ones are covered here as they are added.
 */
import { describe, expect, it } from 'vitest';
import type { Client } from '../../client/index.ts';
import { systemProcedures, type SystemPermission } from '../../procedures/system.ts';
import { checkSecurity } from '../../engine/security/config.ts';
import { Decision, Grant } from '../../engine/security/grants.ts';
import { ProtocolCode, Status } from '../../engine/server/protocol.ts';
import type { SecurityConfig } from '../../engine/security/config.ts';
import { client, rejection, serve } from '../server-helpers.ts';
import { raw, securityFor, sendHello, serveSecure, untilClosed, type TestUser } from './helpers.ts';

const roles: SecurityConfig['roles'] = {
  admin: { admin: true },
  operator: { procedures: ['Touch', 'OpenAccount'], adhocRead: true },
  writer: { procedures: ['*'], adhocWrite: true },
  reader: { adhocRead: true },
  caller: { procedures: ['Touch'] },
  monitor: { procedures: ['@Statistics'] },
  none: {},
};
const users: TestUser[] = Object.keys(roles).map((role) => ({ name: `${role}-user`, password: `pw-${role}`, roles: role === 'none' ? [] : [role] }));

type Action = { label: string; run: (db: Client) => Promise<unknown>; allowed: string[] };

let nextId = 1000;
const actions: Action[] = [
  { label: 'call Touch', run: (db) => db.call('Touch', 1), allowed: ['admin', 'operator', 'writer', 'caller'] },
  { label: 'call Transfer', run: (db) => db.call('Transfer', 1, 2, 0), allowed: ['admin', 'writer'] },
  { label: 'call Total', run: (db) => db.call('Total'), allowed: ['admin', 'writer'] },
  { label: 'ad-hoc SELECT', run: (db) => db.query('SELECT COUNT(*) FROM accounts'), allowed: ['admin', 'operator', 'writer', 'reader'] },
  { label: 'ad-hoc keyed SELECT', run: (db) => db.query('SELECT balance FROM accounts WHERE id = ?', [1]), allowed: ['admin', 'operator', 'writer', 'reader'] },
  { label: 'ad-hoc EXPLAIN of a write', run: (db) => db.query('EXPLAIN DELETE FROM accounts'), allowed: ['admin', 'operator', 'writer', 'reader'] },
  { label: 'ad-hoc INSERT', run: (db) => db.query('INSERT INTO accounts (id, balance, touches) VALUES (?, 0, 0)', [nextId++]), allowed: ['admin', 'writer'] },
  { label: 'ad-hoc UPDATE', run: (db) => db.query('UPDATE accounts SET touches = touches + 1 WHERE id = 2'), allowed: ['admin', 'writer'] },
  { label: 'ad-hoc DELETE', run: (db) => db.query('DELETE FROM accounts WHERE id = 999999'), allowed: ['admin', 'writer'] },
  { label: '@Ping', run: (db) => db.call('@Ping'), allowed: Object.keys(roles) },
  { label: '@SystemInformation', run: (db) => db.call('@SystemInformation'), allowed: ['admin', 'operator', 'writer', 'reader'] },
  { label: '@Statistics', run: (db) => db.call('@Statistics'), allowed: ['admin', 'operator', 'writer', 'reader', 'monitor'] },
];

/** Which roles each system permission class lets through, by the rules of docs/security.md. */
const allowedByPermission: Record<SystemPermission, string[]> = {
  anyone: Object.keys(roles),
  read: ['admin', 'operator', 'writer', 'reader'],
  adhoc: ['admin', 'operator', 'writer', 'reader'],
  admin: ['admin'],
};

async function outcome(action: Promise<unknown>): Promise<'allowed' | 'denied'> {
  try {
    await action;
    return 'allowed';
  } catch (error) {
    const failure = error as { code: string; status: string; message: string };
    if (failure.code !== ProtocolCode.PERMISSION_DENIED) return 'allowed'; // It ran (or was judged on its merits) — not refused for rights.
    expect(failure.status).toBe('FAILURE');
    return 'denied';
  }
}

describe('roles', () => {
  it('each role is refused each protected action it lacks and allowed the ones it has', async () => {
    const server = await serveSecure(users, roles);
    const admin = await client(server, { user: 'admin-user', password: 'pw-admin' });
    await admin.query('INSERT INTO accounts (id, balance, touches) VALUES (1, 100, 0), (2, 100, 0)');
    for (const user of users) {
      const role = user.roles[0] ?? 'none';
      const db = await client(server, { user: user.name, password: user.password });
      for (const action of actions) {
        const expected = action.allowed.includes(role) ? 'allowed' : 'denied';
        expect(await outcome(action.run(db)), `${role}: ${action.label}`).toBe(expected);
      }
      // Every system procedure, by its class: procedures added later are held to their permission here.
      for (const entry of systemProcedures) {
        if (entry.name === '@AdHoc') continue;
        const expected = allowedByPermission[entry.permission].includes(role) || roles[role]?.procedures?.includes(entry.name) ? 'allowed' : 'denied';
        const loose = db as unknown as Client;
        expect(await outcome(loose.call(entry.name as never)), `${role}: ${entry.name} (${entry.permission})`).toBe(expected);
      }
    }
    // Refused writes wrote nothing: two accounts + one INSERT each from admin and writer; touches by the 2 UPDATE-allowed roles.
    expect((await admin.query('SELECT COUNT(*) FROM accounts')).rows).toEqual([[4]]);
    expect((await admin.query('SELECT touches FROM accounts WHERE id = 2')).rows).toEqual([[2]]);
    // Touch ran once per allowed role.
    expect((await admin.query('SELECT touches FROM accounts WHERE id = 1')).rows).toEqual([[4]]);
  });

  it('a refusal names the user, their roles and the call; the connection stays usable', async () => {
    const server = await serveSecure(users, roles);
    const db = await client(server, { user: 'reader-user', password: 'pw-reader' });
    const denied = await rejection(db.call('Transfer', 1, 2, 3));
    expect(denied).toMatchObject({ status: 'FAILURE', code: ProtocolCode.PERMISSION_DENIED });
    expect(denied.message).toBe("user 'reader-user' (roles: reader) may not call Transfer");
    const write = await rejection(db.query('INSERT INTO accounts (id, balance, touches) VALUES (5, 0, 0)'));
    expect(write.message).toBe("user 'reader-user' (roles: reader) may run read-only ad-hoc SQL only, and this statement writes");
    // A statement that does not plan is answered with its SQL error, not a permission error.
    const syntax = await rejection(db.query('SELEC 1'));
    expect(syntax.code).toBe('SYNTAX');
    expect(await db.call('@Ping')).toBe(Status.SUCCESS);
  });

  it('unknown procedures and unknown system procedures are denied unless the role is admin', async () => {
    const server = await serveSecure(users, roles);
    const caller = (await client(server, { user: 'caller-user', password: 'pw-caller' })) as unknown as Client;
    expect((await rejection(caller.call('NoSuchProcedure'))).code).toBe(ProtocolCode.PERMISSION_DENIED);
    expect((await rejection(caller.call('@Shutdown'))).code).toBe(ProtocolCode.PERMISSION_DENIED);
    const admin = (await client(server, { user: 'admin-user', password: 'pw-admin' })) as unknown as Client;
    expect((await rejection(admin.call('NoSuchProcedure'))).code).toBe('UNKNOWN_PROCEDURE');
    // The wildcard grants user procedures, not system ones.
    const writer = (await client(server, { user: 'writer-user', password: 'pw-writer' })) as unknown as Client;
    expect((await rejection(writer.call('@Shutdown'))).code).toBe(ProtocolCode.PERMISSION_DENIED);
  });

  it('grants combine across roles; every permission class decides as documented', async () => {
    const security = checkSecurity(await securityFor([{ name: 'u', password: 'p', roles: ['caller', 'reader'] }, { name: 'a', password: 'p', roles: ['admin'] }], roles));
    const both = new Grant(security.users.get('u')!);
    const table = new Map<string, { permission: SystemPermission }>([
      ['@Anyone', { permission: 'anyone' }],
      ['@Read', { permission: 'read' }],
      ['@Sql', { permission: 'adhoc' }],
      ['@Snapshot', { permission: 'admin' }],
    ]);
    expect(['Touch', 'Transfer', '@Anyone', '@Read', '@Sql', '@Snapshot'].map((name) => both.decide(name, table))).toEqual([
      Decision.ALLOW,
      Decision.DENY,
      Decision.ALLOW,
      Decision.ALLOW,
      Decision.READ_ONLY,
      Decision.DENY,
    ]);
    const admin = new Grant(security.users.get('a')!);
    expect(['Touch', '@Snapshot', '@Sql'].map((name) => admin.decide(name, table))).toEqual([Decision.ALLOW, Decision.ALLOW, Decision.ALLOW]);
  });

  it('every system procedure is classified', () => {
    for (const entry of systemProcedures) expect(['anyone', 'read', 'adhoc', 'admin'], entry.name).toContain(entry.permission);
  });
});

describe('stream subscriptions under security', () => {
  const alertsSchema = 'test/fixtures/alerts/ddl.sql';
  const row = [7, 'north', 'k1', Date.UTC(2026, 0, 1), new Uint8Array([1])];
  const listeners: TestUser[] = [
    { name: 'listener', password: 'pw-l', roles: ['listener'] },
    { name: 'reader', password: 'pw-r', roles: ['reader'] },
    { name: 'caller', password: 'pw-c', roles: ['caller'] },
  ];
  const listenerRoles: SecurityConfig['roles'] = {
    listener: { streams: ['METER_ALERTS'] },
    reader: { adhocRead: true },
    caller: { procedures: ['RaiseAlert'] },
  };

  it('a role subscribes to the streams it names, adhocRead to any; others are refused with PERMISSION_DENIED', async () => {
    const server = await serveSecure(listeners, listenerRoles, { schema: alertsSchema });
    const outcomes: Record<string, string> = {};
    const received: Record<string, number> = {};
    for (const user of listeners) {
      const db = await client(server, { user: user.name, password: user.password });
      received[user.name] = 0;
      outcomes[user.name] = await db.subscribe('meter_alerts', () => received[user.name]++).then(
        () => 'subscribed',
        (error: { code: string; message: string }) => `${error.code}: ${error.message}`,
      );
    }
    expect(outcomes).toEqual({
      listener: 'subscribed',
      reader: 'subscribed',
      caller: "PERMISSION_DENIED: user 'caller' (roles: caller) may not subscribe to meter_alerts",
    });
    server.subscriptions.publish('meter_alerts', 0, 1, [row as never]);
    const deadline = Date.now() + 10_000;
    while ((received.listener === 0 || received.reader === 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(received).toEqual({ listener: 1, reader: 1, caller: 0 });
  });

  it('the idle timeout spares a connection that holds a subscription', async () => {
    const server = await serve({ schema: alertsSchema, idleTimeoutMs: 100 });
    const listener = await client(server);
    let received = 0;
    await listener.subscribe('meter_alerts', () => received++);
    const idle = await raw(server.url);
    await sendHello(idle, { versions: [2, 1] });
    // Once the silent connection is closed for idling, the sweep has passed the listener too.
    expect((await untilClosed(idle)).code).toBe(4005);
    await new Promise((resolve) => setTimeout(resolve, 300));
    server.subscriptions.publish('meter_alerts', 1, 1, [row as never]);
    const deadline = Date.now() + 10_000;
    while (received === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(received).toBe(1);
  });
});
