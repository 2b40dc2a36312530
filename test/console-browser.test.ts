/**
 * The web console in a real browser: headless Chromium (Debian's `chromium` package) driven by
 * playwright-core opens the console of a Voter server under load from the client SDK, watches the
 * throughput figure move, runs SQL from the SQL box (rows, then an error with its position),
 * browses the schema, and saves a screenshot to test-output/console.png. Skipped with a reason
 * when Chromium is not installed, except under CI=true, where that is a failure.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { chromium, type Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { runVoterLoad, serveVoterConsole } from './console-helpers.ts';

const chromiumPath = process.env.SLUICE_TEST_CHROMIUM ?? '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const haveChromium = existsSync(chromiumPath);
const inCi = process.env.CI === 'true';
const screenshotFile = 'test-output/console.png';

if (!haveChromium && !inCi) console.warn(`console browser test skipped: no Chromium at ${chromiumPath} (apt-get install chromium, or set SLUICE_TEST_CHROMIUM)`);

let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  browser = undefined;
});

describe.skipIf(!haveChromium && !inCi)('web console in Chromium', () => {
  it('shows live throughput under Voter load, runs SQL and browses the schema', async () => {
    expect(haveChromium, `Chromium is required under CI=true: nothing at ${chromiumPath}`).toBe(true);
    // Four samples a second: the throughput moves and the charts fill in sooner.
    const { console: webConsole, db } = await serveVoterConsole({ sampleIntervalMs: 250 });
    const load = runVoterLoad(db);
    try {
      browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
      const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
      const pageErrors: string[] = [];
      page.on('pageerror', (error) => pageErrors.push(error.message));
      page.on('console', (message) => {
        // The bad query below is answered 400 on purpose; Chromium logs every 4xx as an error.
        const expected = message.location().url.endsWith('/api/sql') && message.text().includes('status of 400');
        if (message.type() === 'error' && !expected) pageErrors.push(`${message.text()} (${message.location().url})`);
      });
      await page.goto(webConsole.url);

      // Throughput: a positive figure, and then a different one — the page follows live samples.
      const throughput = page.locator('#kpi-throughput');
      await expect.poll(async () => parseRate(await throughput.textContent()), { timeout: 20_000 }).toBeGreaterThan(0);
      const first = await throughput.textContent();
      await expect.poll(async () => await throughput.textContent(), { timeout: 20_000 }).not.toBe(first);
      expect(parseRate(await throughput.textContent())).toBeGreaterThan(0);
      await expect.poll(async () => await page.locator('#live').getAttribute('data-state')).toBe('live');
      await expect.poll(async () => await page.locator('#procedures td.name').allTextContents()).toContain('Vote');
      expect(await page.locator('#partitions .partition').count()).toBe(2);
      expect(await page.locator('#chart-throughput canvas').count()).toBe(1);

      // SQL box: rows as a table.
      await page.locator('#sql-input').fill('SELECT contestant_number, contestant_name FROM contestants ORDER BY contestant_number');
      await page.locator('#sql-run').click();
      await page.locator('#sql-table tbody tr').first().waitFor();
      expect(await page.locator('#sql-table tbody tr').count()).toBe(6);
      expect(await page.locator('#sql-table thead th').allTextContents()).toEqual(['contestant_number', 'contestant_name']);
      expect(await page.locator('#sql-table tbody tr').first().locator('td').allTextContents()).toEqual(['1', 'Edwina Burnam']);
      expect(await page.locator('#sql-status').textContent()).toMatch(/^6 rows/);

      // A bad query: the database's error with its position, and the page still works after.
      await page.locator('#sql-input').fill('SELECT contestant_nme FROM contestants');
      await page.locator('#sql-run').click();
      const error = page.locator('#sql-error');
      await error.waitFor();
      expect(await error.textContent()).toContain('UNKNOWN_COLUMN');
      expect(await error.locator('pre').textContent()).toBe('SELECT contestant_nme FROM contestants\n       ^');

      // Schema browser: partitioning of tables and procedures; clicking a table queries it.
      const votes = page.locator('#schema details[data-object="votes"]');
      expect(await votes.locator('summary').textContent()).toContain('partitioned on phone_number');
      expect(await page.locator('#schema details[data-object="contestants"] summary').textContent()).toContain('replicated');
      expect(await page.locator('#schema details[data-object="Vote"] summary').textContent()).toContain('single-partition: votes.phone_number = param 0');
      expect(await page.locator('#schema details[data-object="Results"] summary').textContent()).toContain('multi-partition');
      await page.locator('#schema details[data-object="contestants"] .object').click();
      await expect.poll(async () => await page.locator('#sql-table tbody tr').count()).toBe(6);
      await votes.locator('.count').click();
      expect(await votes.locator('li').first().textContent()).toBe('phone_numberBIGINT NOT NULL');
      expect(await page.locator('#alerts').textContent()).toContain('no alert stream');

      await mkdir('test-output', { recursive: true });
      await page.screenshot({ path: screenshotFile, fullPage: true });
      expect(existsSync(screenshotFile)).toBe(true);
      expect(pageErrors).toEqual([]);
    } finally {
      await load.stop();
    }
  });
});

function parseRate(text: string | null): number {
  const value = Number((text ?? '').replace(/,/g, ''));
  return Number.isFinite(value) ? value : 0;
}
