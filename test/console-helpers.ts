/**
 * Helpers for the web console's tests: a Voter server with its console on free ports (closed
 * after each test), and Voter load driven through the client SDK until stopped.
 */
import { afterEach } from 'vitest';
import { contestantNames, maxVotesPerPhone, voterLoad } from '../bench/voter-load.ts';
import type { Client } from '../client/index.ts';
import { startConsole, type ConsoleOptions, type SluiceConsole } from '../engine/console/console.ts';
import type { SluiceServer } from '../engine/server/server.ts';
import type { App } from '../procedures/voter/app.ts';
import { client, serve } from './server-helpers.ts';

export const voterSchema = 'procedures/voter/ddl.sql';
/** Votes per round of the load loop: enough to keep both partitions busy, small enough to stop at once. */
const loadRoundCalls = 200;

const consoles: SluiceConsole[] = [];

afterEach(async () => {
  while (consoles.length > 0) await consoles.pop()!.close();
});

export interface VoterConsole {
  server: SluiceServer;
  console: SluiceConsole;
  db: Client<App>;
  /** GET a console path; the answer's JSON. */
  getJson(path: string): Promise<{ status: number; body: any }>;
  /** POST JSON (or a raw string) to a console path. */
  postJson(path: string, body: unknown): Promise<{ status: number; body: any }>;
}

/** A Voter server (2 partitions, contestants loaded) with its console; both closed after the test. */
export async function serveVoterConsole(options: Partial<ConsoleOptions> = {}): Promise<VoterConsole> {
  const server = await serve({ schema: voterSchema, partitions: 2 });
  const webConsole = await startConsole({ server, port: 0, host: '127.0.0.1', ...options });
  consoles.push(webConsole);
  const db = await client<App>(server);
  await db.call('Initialize', 6, contestantNames);
  const base = webConsole.url.replace(/\/$/, '');
  return {
    server,
    console: webConsole,
    db,
    async getJson(path) {
      const response = await fetch(base + path);
      return { status: response.status, body: await response.json() };
    },
    async postJson(path, body) {
      const response = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
      return { status: response.status, body: await response.json() };
    },
  };
}

/** Votes through `db` in rounds until `stop` is called; resolves with the number of votes answered. */
export function runVoterLoad(db: Client<App>, seed = 42): { stop(): Promise<number> } {
  const load = voterLoad(seed);
  let running = true;
  let answered = 0;
  const loop = (async () => {
    while (running) {
      const round: Promise<unknown>[] = [];
      for (let i = 0; i < loadRoundCalls; i++) {
        const [phone, contestant] = load.next();
        round.push(db.call('Vote', phone, contestant, maxVotesPerPhone));
      }
      await Promise.all(round);
      answered += round.length;
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return answered;
    },
  };
}
