/**
 * The kill -9 crash test (test/crash/crash-run.ts), short enough for CI: a server process in
 * sync mode under Voter load from this process, killed with SIGKILL 10 times at random moments
 * (some while it is still recovering), restarted each time on the same data directory. Every
 * acknowledged vote must be there, none twice, every view equal to a recount. Then async mode:
 * consistent, with loss only of votes acknowledged just before a kill (the flush window), never
 * of votes an earlier recovery had. `npm run test:crash` runs a longer version by itself.
 */
import { describe, expect, it } from 'vitest';
import { runCrashTest, type CrashOptions } from './crash/crash-run.ts';

const seed = Date.now() & 0x7fffffff;
const quick: Omit<CrashOptions, 'mode' | 'kills'> = {
  seed,
  loadMsMin: 100,
  loadMsMax: 500,
  window: 100,
  partitions: 2,
  snapshotIntervalMinutes: 0.01,
  segmentRecordsMax: 2000,
  startupKillShare: 0.3,
  log: () => {},
};

describe('crash: kill -9 under load', () => {
  it(`sync: 10 kills lose nothing acknowledged, duplicate nothing, keep views equal to their tables (seed ${seed})`, async () => {
    const result = await runCrashTest({ ...quick, mode: 'sync', kills: 10 });
    expect(result.problems).toEqual([]);
    expect(result.kills).toBe(10);
    expect(result.acknowledged).toBeGreaterThan(0);
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
    expect(result.phantom).toBe(0);
    expect(result.regressed).toBe(0);
    expect(result.views_ok).toBe(true);
  }, 300_000);

  it(`async: 3 kills keep the data consistent; only votes acknowledged in a kill's flush window may go (seed ${seed})`, async () => {
    // Load for at least ten flush intervals before each kill, so that some acknowledged votes are
    // always older than the last flush even when a loaded machine delays the flusher.
    const result = await runCrashTest({ ...quick, mode: 'async', kills: 3, loadMsMin: 1000, loadMsMax: 2000 });
    expect(result.kills).toBe(3);
    expect(result.acknowledged).toBeGreaterThan(0);
    expect(result.duplicated).toBe(0);
    expect(result.phantom).toBe(0);
    expect(result.regressed).toBe(0);
    expect(result.views_ok).toBe(true);
    expect(result.lost).toBeLessThan(result.acknowledged);
  }, 300_000);
});
