/**
 * The CSV bulk loader (`sluice load`, client/load.ts) against a running server: header mapping
 * into a table, column order into a procedure, many calls in flight, and every bad line rejected
 * with its line number and reason while the rest load; the CLI exits 2 when lines were rejected.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCsv, LoadError } from '../client/load.ts';
import { client, serve } from './server-helpers.ts';
import { countRows, queryRows } from './importers-helpers.ts';

const run = promisify(execFile);
const schema = 'test/fixtures/importers/meters.sql';
const goodLines = 500;
let folder = '';

function goodRows(from: number): string[] {
  return Array.from({ length: goodLines }, (_, i) => `${1000 + (i % 23)},${from + i},${(i % 40) / 8},s${i % 5}`);
}

beforeAll(async () => {
  folder = await mkdtemp(path.join(os.tmpdir(), 'sluice-load-'));
});
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

describe('sluice load', () => {
  it('loads a table by header name and rejects bad lines with their line numbers and reasons', async () => {
    const server = await serve({ schema });
    const file = path.join(folder, 'readings.csv');
    const lines = [
      'site,kwh,seq,meter_id', // columns in another order than the table's
      'a,1.5,1,1',
      'b,abc,2,2', // line 3: not a number
      'c,2.5,3', // line 4: a field missing
      'd,,4,4', // line 5: kwh is NOT NULL
      '"e, quoted",2.0,5,5',
      'f,1,6x,6', // line 7: not an integer
      ...goodRows(100).map((row) => row.split(',').reverse().join(',')),
    ];
    await writeFile(file, `${lines.join('\n')}\n`);
    const rejects = path.join(folder, 'rejects.csv');
    const report = await loadCsv(await client(server), 'readings', file, { inFlightMax: 64, rejectsFile: rejects });
    expect(report).toMatchObject({ kind: 'table', loaded: goodLines + 2, rejected: 4 });
    expect(report.rejections.map((rejection) => rejection.line)).toEqual([3, 4, 5, 7]);
    expect(report.rejections[0].reason).toMatch(/column kwh is FLOAT, but got "abc"/);
    expect(report.rejections[1].reason).toMatch(/3 field\(s\), expected 4/);
    expect(report.rejections[2].reason).toMatch(/NOT_NULL/);
    expect(report.rejections[3].reason).toMatch(/column seq is BIGINT, but got "6x"/);
    expect(await countRows(server.router, 'readings')).toBe(goodLines + 2);
    expect(await queryRows(server.router, 'SELECT meter_id, kwh, site FROM readings WHERE seq = 5')).toEqual([[5, 2, 'e, quoted']]);
    const written = (await readFile(rejects, 'utf8')).trim().split('\n');
    expect(written).toHaveLength(5);
    expect(written[1]).toMatch(/^3,.*abc/);
  });

  it('calls a procedure per line in column order, and a failing transaction is a rejection', async () => {
    const server = await serve({ schema });
    const file = path.join(folder, 'calls.csv');
    await writeFile(file, [...goodRows(0), '7,9999,-1,x', '8,10000,1'].join('\n'));
    const report = await loadCsv(await client(server), 'Ingest', file, { header: false });
    expect(report).toMatchObject({ kind: 'procedure', loaded: goodLines, rejected: 2 });
    expect(report.rejections[0]).toMatchObject({ line: goodLines + 1 });
    expect(report.rejections[0].reason).toMatch(/USER_ABORT: negative reading -1 for meter 7/);
    expect(report.rejections[1].reason).toMatch(/3 field\(s\), but procedure Ingest takes 4 parameter\(s\)/);
    expect(await countRows(server.router, 'readings')).toBe(goodLines);
  });

  it('stops before sending anything when the target or the header is wrong', async () => {
    const server = await serve({ schema });
    const file = path.join(folder, 'header.csv');
    await writeFile(file, 'meter_id,seq,kwh,colour\n1,1,1,red\n');
    await expect(loadCsv(await client(server), 'readings', file)).rejects.toThrow(LoadError);
    await expect(loadCsv(await client(server), 'readings', file)).rejects.toThrow(/header names column "colour", which table readings does not have/);
    await expect(loadCsv(await client(server), 'nothing_here', file)).rejects.toThrow(/nothing_here is neither a procedure nor a table/);
    expect(await countRows(server.router, 'readings')).toBe(0);
  });

  it('the CLI prints a summary and the rejected lines, and exits 2 when lines were rejected', async () => {
    const server = await serve({ schema });
    const file = path.join(folder, 'cli.csv');
    await writeFile(file, ['meter_id,seq,kwh,site', '1,1,1,a', '2,2,x,b', '3,3,3,c'].join('\n'));
    let failure: { code: number; stdout: string; stderr: string } | undefined;
    try {
      await run(process.execPath, ['client/cli.ts', 'load', 'readings', file, '--url', server.url]);
    } catch (error) {
      failure = error as { code: number; stdout: string; stderr: string };
    }
    expect(failure?.code).toBe(2);
    expect(failure?.stdout).toMatch(/^loaded 2 row\(s\) into table readings in [\d.]+ s \(\d+\/s\); rejected 1\n$/);
    expect(failure?.stderr).toBe('line 3: column kwh is FLOAT, but got "x"\n');
    const clean = path.join(folder, 'clean.csv');
    await writeFile(clean, ['meter_id,seq,kwh,site', '4,4,4,d'].join('\n'));
    const ok = await run(process.execPath, ['client/cli.ts', 'load', 'readings', clean, '--url', server.url]);
    expect(ok.stdout).toMatch(/loaded 1 row\(s\)/);
  });
});
