/**
 * The kill -9 crash test's harness, shared by test/crash.test.ts (short, for CI) and
 * test/crash/run.ts (`npm run test:crash`, more kills). The server runs as its own process
 * (`sluice start --data … --durability …`); Voter load comes from this process through the client
 * SDK; at random moments the server is killed with SIGKILL and started again on the same data
 * directory. After every restart the data is checked against what the client was told:
 *
 * - every acknowledged vote is present (sync), or missing only if it was acknowledged in the round
 *   that ended in the kill (async: the flush window), and a vote seen after one recovery is never
 *   missing after a later one;
 * - no vote is present twice (each vote has its own phone number), none that was never sent;
 * - every view equals a recount from its table.
 *
 * Votes whose call was in flight at the kill have an unknown outcome: present or not, once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../../client/index.ts';
import { seededRandom } from '../../engine/random.ts';
import { areaCodes } from '../../procedures/voter/area-codes.ts';
import { voteAccepted } from '../../procedures/voter/vote.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const contestantNames = 'Edwina Burnam,Tabatha Gehling,Kelly Clauss,Jessie Alloway,Alana Bregman,Jessie Eichman';
/** Votes per phone the Vote call allows; each vote has its own phone, so never reached. */
const votesPerPhoneMax = 1000;
export const serverStartTimeoutMs = 60_000;

export interface CrashOptions {
  mode: 'sync' | 'async';
  kills: number;
  seed: number;
  /** The load runs this long (a random time between the two) before the kill. */
  loadMsMin: number;
  loadMsMax: number;
  /** Calls outstanding at a time. */
  window: number;
  partitions: number;
  /** Minutes between scheduled snapshots, so some kills land during or right after one. */
  snapshotIntervalMinutes: number;
  /** Records per command-log segment: small, so kills also land while segments roll and are deleted. */
  segmentRecordsMax?: number;
  /** Share of rounds whose kill lands while the server is still starting (recovering). */
  startupKillShare: number;
  log: (line: string) => void;
}

export interface CrashResult {
  mode: 'sync' | 'async';
  kills: number;
  acknowledged: number;
  /** Acknowledged votes missing after the last restart. */
  lost: number;
  /** Votes present more than once (any check). */
  duplicated: number;
  views_ok: boolean;
  /** Votes whose outcome was unknown (in flight at a kill). */
  unknown: number;
  /** Votes present at the end that were never sent (must be 0). */
  phantom: number;
  /** Votes seen after one recovery and missing after a later one (must be 0 in every mode). */
  regressed: number;
  /** async: acknowledged votes lost in total over all kills, and the largest count in one kill. */
  lostOverRounds: number;
  lostInOneKillMax: number;
  /** Transactions each recovery replayed. */
  replayed: number[];
  problems: string[];
}

interface RunningServer {
  child: ChildProcess;
  url: Promise<string>;
  exited: Promise<number | null>;
  /** Transactions its recovery replayed (from its "listening" log line). */
  replayed: number;
}

/** kill -9, then wait until the process is gone (its pid is then free of the data-dir lock). */
async function kill(server: RunningServer, client: Client | undefined): Promise<RunningServer> {
  server.child.kill('SIGKILL');
  await server.exited;
  // Calls in flight fail with CONNECTION_LOST: their outcome is unknown.
  await client?.close().catch(() => undefined);
  return server;
}

export async function runCrashTest(options: CrashOptions): Promise<CrashResult> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sluice-crash-'));
  const deployment = path.join(dataDir, 'deployment.json');
  writeFileSync(
    deployment,
    JSON.stringify({
      schema: path.join(root, 'procedures/voter/ddl.sql'),
      partitions: options.partitions,
      host: '127.0.0.1',
      port: 0,
      data: path.join(dataDir, 'data'),
      durability: { mode: options.mode, snapshotIntervalMinutes: options.snapshotIntervalMinutes, segmentRecordsMax: options.segmentRecordsMax },
    }),
  );
  const random = seededRandom(options.seed >>> 0 || 1);
  const result: CrashResult = {
    mode: options.mode,
    kills: 0,
    acknowledged: 0,
    lost: 0,
    duplicated: 0,
    views_ok: true,
    unknown: 0,
    phantom: 0,
    regressed: 0,
    lostOverRounds: 0,
    lostInOneKillMax: 0,
    replayed: [],
    problems: [],
  };
  // phone → state: 'sent' (outcome unknown), 'acked' (this round), 'durable' (seen after a recovery)
  const votes = new Map<number, 'sent' | 'acked' | 'seen'>();
  const ackedEver = new Set<number>();
  let nextVote = 0;
  let server: RunningServer | undefined;
  let client: Client | undefined;
  try {
    server = startServer(deployment, options.log);
    client = await connectTo(server);
    await client.call('Initialize', 6, contestantNames);
    while (result.kills < options.kills) {
      const loadMs = options.loadMsMin + Math.floor(random() * (options.loadMsMax - options.loadMsMin));
      await runLoad(client, loadMs, options.window, votes, ackedEver, () => nextVote++);
      server = await kill(server, client);
      result.kills++;
      if (result.kills < options.kills && random() < options.startupKillShare) {
        // The next server dies while it starts: loading its snapshot or replaying the log.
        server = startServer(deployment, options.log);
        await sleep(Math.floor(random() * 400));
        server = await kill(server, undefined);
        result.kills++;
        options.log(`kill ${result.kills}: during startup`);
      }
      server = startServer(deployment, options.log);
      client = await connectTo(server);
      const check = await checkState(client, votes, options.mode);
      result.replayed.push(server.replayed);
      result.duplicated += check.duplicated;
      result.phantom += check.phantom;
      result.regressed += check.regressed;
      result.lostOverRounds += check.lost;
      result.lostInOneKillMax = Math.max(result.lostInOneKillMax, check.lost);
      if (!check.viewsOk) result.views_ok = false;
      result.problems.push(...check.problems.map((problem) => `after kill ${result.kills}: ${problem}`));
      options.log(`kill ${result.kills}: ${votes.size} votes sent, ${ackedEver.size} acknowledged, lost at this kill ${check.lost}, replayed ${server.replayed} transactions`);
    }
    const present = await presentVotes(client!);
    for (const phone of ackedEver) if (!present.has(phone)) result.lost++;
    for (const state of votes.values()) if (state === 'sent') result.unknown++;
    result.acknowledged = ackedEver.size;
    return result;
  } finally {
    await client?.close().catch(() => undefined);
    if (server && server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function startServer(deployment: string, log: (line: string) => void): RunningServer {
  const child = spawn(process.execPath, [path.join(root, 'client/cli.ts'), 'start', '--deployment', deployment, '--log-level', 'info'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SLUICE_VERIFY: '0' },
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.on('data', (data: Buffer) => (stderr += data.toString()));
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start in time')), serverStartTimeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code ?? 'killed'}) before listening${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`));
    });
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: { url?: string; msg?: string; level?: number; transactionsReplayed?: number };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      if (entry.level !== undefined && entry.level >= 40) log(`server: ${entry.msg}`);
      if (entry.url) {
        running.replayed = entry.transactionsReplayed ?? 0;
        clearTimeout(timer);
        resolve(entry.url);
      }
    });
  });
  url.catch(() => undefined);
  const running: RunningServer = { child, url, exited, replayed: 0 };
  return running;
}

async function connectTo(server: RunningServer): Promise<Client> {
  return connect(await server.url, { timeoutMs: 60_000 });
}

/** Keeps `window` votes outstanding for `loadMs`, then lets the kill find whatever is in flight. */
async function runLoad(client: Client, loadMs: number, window: number, votes: Map<number, 'sent' | 'acked' | 'seen'>, ackedEver: Set<number>, next: () => number): Promise<void> {
  let running = true;
  let outstanding = 0;
  const issue = (): void => {
    const n = next();
    const [areaCode] = areaCodes[n % areaCodes.length];
    const phone = areaCode * 10_000_000 + Math.floor(n / areaCodes.length);
    votes.set(phone, 'sent');
    outstanding++;
    client.call('Vote', phone, 1 + (n % 6), votesPerPhoneMax).then(
      (outcome) => {
        if (outcome === voteAccepted) {
          votes.set(phone, 'acked');
          ackedEver.add(phone);
        }
        done();
      },
      () => done(),
    );
  };
  const done = (): void => {
    outstanding--;
    if (running) issue();
  };
  for (let i = 0; i < window; i++) issue();
  await sleep(loadMs);
  // The kill comes now, with the window still full: calls in flight fail when it closes.
  running = false;
}

async function presentVotes(client: Client): Promise<Map<number, number>> {
  const rows = (await client.query('SELECT phone_number, COUNT(*) FROM votes GROUP BY phone_number')).rows;
  return new Map(rows.map((row) => [row[0] as number, row[1] as number]));
}

async function checkState(client: Client, votes: Map<number, 'sent' | 'acked' | 'seen'>, mode: 'sync' | 'async'): Promise<{ lost: number; duplicated: number; phantom: number; regressed: number; viewsOk: boolean; replayed: number; problems: string[] }> {
  const problems: string[] = [];
  const present = await presentVotes(client);
  let lost = 0;
  let duplicated = 0;
  let phantom = 0;
  let regressed = 0;
  for (const [phone, count] of present) {
    if (count > 1) duplicated++;
    if (!votes.has(phone)) phantom++;
  }
  for (const [phone, state] of votes) {
    const here = present.has(phone);
    if (state === 'seen' && !here) regressed++;
    if (state === 'acked' && !here) lost++;
    if (here) votes.set(phone, 'seen');
    else if (state === 'acked') votes.set(phone, 'sent');
  }
  if (duplicated > 0) problems.push(`${duplicated} votes present more than once`);
  if (phantom > 0) problems.push(`${phantom} votes present that were never sent`);
  if (regressed > 0) problems.push(`${regressed} votes present after an earlier recovery are gone`);
  if (mode === 'sync' && lost > 0) problems.push(`${lost} acknowledged votes are missing`);
  const byPhone = await client.query('SELECT phone_number, COUNT(*) AS n FROM votes GROUP BY phone_number ORDER BY phone_number');
  const viewByPhone = await client.query('SELECT phone_number, num_votes AS n FROM v_votes_by_phone_number ORDER BY phone_number');
  const byState = await client.query('SELECT contestant_number, state, COUNT(*) AS n FROM votes GROUP BY contestant_number, state ORDER BY contestant_number, state');
  const viewByState = await client.query('SELECT contestant_number, state, SUM(num_votes) AS n FROM v_votes_by_contestant_number_state GROUP BY contestant_number, state ORDER BY contestant_number, state');
  const results = (await client.call('Results')) as { total_votes: number }[];
  const total = results.reduce((sum, row) => sum + Number(row.total_votes), 0);
  let viewsOk = true;
  if (JSON.stringify(byPhone.rows) !== JSON.stringify(viewByPhone.rows)) {
    viewsOk = false;
    problems.push('v_votes_by_phone_number differs from a recount of votes');
  }
  if (JSON.stringify(byState.rows) !== JSON.stringify(viewByState.rows)) {
    viewsOk = false;
    problems.push('v_votes_by_contestant_number_state differs from a recount of votes');
  }
  let rows = 0;
  for (const count of present.values()) rows += count;
  if (total !== rows) {
    viewsOk = false;
    problems.push(`Results sum to ${total}, votes has ${rows} rows`);
  }
  const information = (await client.call('@Statistics')) as { partitions: { transactions: number }[] };
  const replayed = information.partitions.reduce((sum, partition) => sum + partition.transactions, 0);
  return { lost, duplicated, phantom, regressed, viewsOk, replayed, problems };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
