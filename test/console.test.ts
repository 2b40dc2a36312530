/**
 * The web console's HTTP side without a browser: /metrics is valid Prometheus text whose counts
 * equal @Statistics, the JSON endpoints describe the running server, the SQL endpoint answers bad
 * input with the database's error (not a 500, and the server keeps serving), the event stream
 * delivers samples, and the alerts panel's sources.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConsoleMetrics } from '../engine/console/metrics.ts';
import type { AlertFeed, AlertRow } from '../engine/console/alerts.ts';
import type { StatisticsSnapshot } from '../engine/console/sampler.ts';
import { createLogger } from '../engine/logger.ts';
import type { UntypedApp } from '../client/index.ts';
import { startConsole } from '../engine/console/console.ts';
import { runVoterLoad, serveVoterConsole } from './console-helpers.ts';
import { client, serve } from './server-helpers.ts';
import { parsePrometheusText } from './prometheus-text.ts';

describe('/metrics', () => {
  it('parses as Prometheus text format and its counts match @Statistics', async () => {
    const { console: webConsole, db } = await serveVoterConsole();
    const load = runVoterLoad(db);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const votes = await load.stop();
    await db.query('SELEC 1').catch(() => {}); // one failed @AdHoc, so failures are non-zero somewhere
    const statistics = await db.call('@Statistics');
    const response = await fetch(`${webConsole.url}metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const metrics = parsePrometheusText(await response.text());

    const vote = statistics.procedures.find((row) => row.procedure === 'Vote')!;
    expect(vote.calls).toBe(votes);
    for (const row of statistics.procedures) {
      if (row.procedure === '@Statistics') continue; // the scrape itself ran one more
      const labels = { procedure: row.procedure };
      expect(metrics.value('sluice_procedure_calls_total', labels), row.procedure).toBe(row.calls);
      expect(metrics.value('sluice_procedure_aborts_total', labels), row.procedure).toBe(row.aborts);
      expect(metrics.value('sluice_procedure_failures_total', labels), row.procedure).toBe(row.failures);
      expect(metrics.value('sluice_procedure_latency_seconds', { ...labels, quantile: '0.99' })).toBeCloseTo(row.p99_ms / 1000, 9);
    }
    expect(metrics.value('sluice_procedure_failures_total', { procedure: '@AdHoc' })).toBeGreaterThan(0);
    expect(metrics.value('sluice_procedure_calls_total', { procedure: '@Statistics' })).toBe((statistics.procedures.find((row) => row.procedure === '@Statistics')?.calls ?? 0) + 1);
    for (const row of statistics.partitions) {
      // @Statistics is a multi-partition transaction that every partition counts once it ended:
      // the test's own call is in the scrape's figure, not in its own answer.
      expect(metrics.value('sluice_partition_transactions_total', { partition: String(row.partition) })).toBe(row.transactions + 1);
      expect(metrics.value('sluice_partition_queue_depth', { partition: String(row.partition) })).toBe(0);
    }
    for (const row of statistics.tables) {
      expect(metrics.value('sluice_table_rows', { table: row.table, kind: row.kind }), row.table).toBe(row.rows);
    }
    expect(statistics.tables.find((row) => row.table === 'votes')!.rows).toBeGreaterThan(0);
    expect(metrics.types.get('sluice_procedure_calls_total')).toBe('counter');
    expect(metrics.types.get('sluice_partition_queue_depth')).toBe('gauge');
    expect(metrics.value('sluice_partitions')).toBe(2);
    expect(metrics.value('process_cpu_seconds_total')).toBeGreaterThan(0);
  });

  it('exports the export-target and importer sections when @Statistics has them', async () => {
    const metrics = new ConsoleMetrics(1);
    const snapshot: StatisticsSnapshot = {
      procedures: [],
      partitions: [],
      tables: [],
      exports: [{ target: 'parquet_feed', type: 'file', streams: ['readings'], rowsPending: 12, bytesPending: 900, rowsDelivered: 3400, deliveries: 40, failures: 2, duplicatesDropped: 0, lastError: 'disk full', lagSeconds: 1.5, partitionsFull: 0 }],
      importers: [{ importer: 'mqtt_readings', type: 'mqtt', state: 'running', received: 900, applied: 890, skipped: 0, deadLettered: 9, errors: 1, inFlight: 1, messagesPerSecond: 30, lag: 7, paused: false }],
    };
    metrics.update(snapshot);
    const text = parsePrometheusText(await metrics.render());
    expect(text.value('sluice_export_target_rows_pending', { target: 'parquet_feed' })).toBe(12);
    expect(text.value('sluice_export_target_rows_delivered_total', { target: 'parquet_feed' })).toBe(3400);
    expect(text.value('sluice_export_target_lag_seconds', { target: 'parquet_feed' })).toBe(1.5);
    expect(text.value('sluice_export_target_stat', { target: 'parquet_feed', stat: 'failures' })).toBe(2);
    expect(text.value('sluice_export_target_stat', { target: 'parquet_feed', stat: 'bytesPending' })).toBe(900);
    expect(text.value('sluice_importer_messages_total', { importer: 'mqtt_readings' })).toBe(900);
    expect(text.value('sluice_importer_lag', { importer: 'mqtt_readings' })).toBe(7);
    expect(text.value('sluice_importer_errors_total', { importer: 'mqtt_readings' })).toBe(1);
    expect(text.value('sluice_importer_stat', { importer: 'mqtt_readings', stat: 'messagesPerSecond' })).toBe(30);
    expect(text.value('sluice_importer_stat', { importer: 'mqtt_readings', stat: 'deadLettered' })).toBe(9);
    expect(text.value('sluice_importer_stat', { importer: 'mqtt_readings', stat: 'received' })).toBeUndefined();
    // A target gone from @Statistics disappears from the scrape.
    metrics.update({ procedures: [], partitions: [], tables: [] });
    expect(parsePrometheusText(await metrics.render()).value('sluice_export_target_rows_pending', { target: 'parquet_feed' })).toBeUndefined();
  });

  it('the strict reader rejects malformed exposition text', () => {
    expect(() => parsePrometheusText('# TYPE a counter\na{x="1"} 1\n')).not.toThrow();
    expect(() => parsePrometheusText('a 1\n')).toThrow(/undeclared/);
    expect(() => parsePrometheusText('# TYPE a counter\na{x=1} 1\n')).toThrow(/bad label/);
    expect(() => parsePrometheusText('# TYPE a counter\na one\n')).toThrow(/not a number/);
    expect(() => parsePrometheusText('# TYPE a counter\na 1')).toThrow(/newline/);
    expect(() => parsePrometheusText('# TYPE a counter\na 1\n# TYPE a gauge\n')).toThrow(/second TYPE/);
  });
});

describe('console JSON endpoints', () => {
  it('statistics: rates from two samples, procedures, partitions and tables', async () => {
    const { console: webConsole, db, getJson } = await serveVoterConsole({ sampleIntervalMs: 200 });
    const load = runVoterLoad(db);
    // Follow the event stream until a sample shows Vote traffic.
    const events = await fetch(`${webConsole.url}api/events`);
    expect(events.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = events.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    let moving: any;
    while (moving === undefined) {
      const { value, done } = await reader.read();
      expect(done).toBe(false);
      buffered += decoder.decode(value, { stream: true });
      for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
        const message = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = /^event: sample\ndata: (.*)$/m.exec(message);
        if (data === null) continue;
        const sample = JSON.parse(data[1]);
        if (sample.callsPerSecond > 0 && sample.procedures.some((row: any) => row.procedure === 'Vote' && row.callsPerSecond > 0)) moving = sample;
      }
    }
    await reader.cancel();
    await load.stop();
    expect(moving.intervalMs).toBeGreaterThan(0);
    expect(moving.latency.count).toBeGreaterThan(0);
    expect(moving.latency.p99_ms).toBeGreaterThanOrEqual(moving.latency.p50_ms);
    expect(moving.partitions.map((row: any) => row.partition)).toEqual([0, 1]);
    expect(moving.partitions.some((row: any) => row.transactionsPerSecond > 0)).toBe(true);
    expect(moving.tables.map((row: any) => row.table)).toContain('votes');
    // The console's own polls are not throughput: @Statistics is left out of callsTotal.
    const vote = moving.procedures.find((row: any) => row.procedure === 'Vote');
    const initialize = moving.procedures.find((row: any) => row.procedure === 'Initialize');
    expect(moving.callsTotal).toBe(vote.calls + initialize.calls);

    const statistics = await getJson('/api/statistics');
    expect(statistics.status).toBe(200);
    expect(statistics.body.procedures.find((row: any) => row.procedure === 'Vote').calls).toBeGreaterThanOrEqual(vote.calls);
    const history = await getJson('/api/history');
    expect(history.body.points.length).toBeGreaterThan(0);
    expect(history.body.points.some((point: any) => point.callsPerSecond > 0)).toBe(true);
  });

  it('schema and info describe the running database', async () => {
    const { getJson } = await serveVoterConsole();
    const schema = await getJson('/api/schema');
    expect(schema.status).toBe(200);
    const votes = schema.body.tables.find((table: any) => table.name === 'votes');
    expect(votes).toMatchObject({ kind: 'table', partitioning: 'partitioned', partitionColumn: 'phone_number' });
    expect(votes.columns[0]).toEqual({ name: 'phone_number', type: 'BIGINT', nullable: false });
    expect(schema.body.tables.find((table: any) => table.name === 'contestants')).toMatchObject({ partitioning: 'replicated', primaryKey: ['contestant_number'] });
    const view = schema.body.tables.find((table: any) => table.name === 'v_votes_by_phone_number');
    expect(view).toMatchObject({ kind: 'view', source: 'votes', partitioning: 'partitioned' });
    expect(view.columns.map((column: any) => column.name)).toEqual(['phone_number', 'num_votes']);
    expect(schema.body.procedures.find((procedure: any) => procedure.name === 'Vote')).toEqual({
      name: 'Vote',
      scope: 'single',
      partitioning: { table: 'votes', column: 'phone_number', parameter: 0 },
      source: { kind: 'file', path: 'vote.ts' },
    });
    expect(schema.body.procedures.find((procedure: any) => procedure.name === 'Results')).toMatchObject({ scope: 'multi', partitioning: null });
    const info = await getJson('/api/info');
    expect(info.body).toMatchObject({ partitions: 2, procedures: ['Vote', 'Initialize', 'Results', 'GetStateHeatmap'] });
    expect(info.body.schema).toBeUndefined();
  });

  it('serves the page, its script and uPlot; unknown paths and methods get JSON errors', async () => {
    const { console: webConsole, getJson, postJson } = await serveVoterConsole();
    const page = await fetch(webConsole.url);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain('<script type="module" src="/static/console.js">');
    const script = await fetch(`${webConsole.url}static/console.js`);
    expect(await script.text()).toContain("from '/vendor/uPlot.esm.js'");
    const uplot = await fetch(`${webConsole.url}vendor/uPlot.esm.js`);
    expect(uplot.status).toBe(200);
    expect(await uplot.text()).toMatch(/export \{\s*uPlot as default\s*\}|export default/);
    expect(await getJson('/static/../../package.json')).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
    expect(await getJson('/api/nothing')).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND', message: 'no such page or endpoint: /api/nothing' } } });
    expect(await postJson('/api/statistics', {})).toMatchObject({ status: 405, body: { error: { code: 'METHOD_NOT_ALLOWED' } } });
    expect((await fetch(`${webConsole.url}healthz`)).status).toBe(200);
  });
});

describe('console SQL endpoint', () => {
  it('returns rows as a table', async () => {
    const { postJson } = await serveVoterConsole();
    const answer = await postJson('/api/sql', { sql: 'SELECT contestant_number, contestant_name FROM contestants WHERE contestant_number <= ? ORDER BY contestant_number', params: [2] });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      columns: ['contestant_number', 'contestant_name'],
      rows: [[1, 'Edwina Burnam'], [2, 'Tabatha Gehling']],
      rowCount: 2,
      truncated: false,
    });
  });

  it('answers bad queries and bad requests with the error, and keeps serving', async () => {
    const { postJson, getJson, db } = await serveVoterConsole();
    const syntax = await postJson('/api/sql', { sql: 'SELECT *\nFROM contestants WHERE' });
    expect(syntax.status).toBe(400);
    expect(syntax.body.error.code).toBe('SYNTAX');
    expect(syntax.body.error.status).toBe('FAILURE');
    expect(syntax.body.error.position).toMatchObject({ line: 2 });
    const unknown = await postJson('/api/sql', { sql: 'SELECT nope FROM contestants' });
    expect(unknown.body.error).toMatchObject({ code: 'UNKNOWN_COLUMN', position: { line: 1, column: 8, offset: 7 } });
    expect(unknown.body.error.message).toContain('nope');
    const constraint = await postJson('/api/sql', { sql: "INSERT INTO contestants VALUES (1, 'again')" });
    expect(constraint.body.error).toMatchObject({ code: 'UNIQUE_VIOLATION', status: 'CONSTRAINT_VIOLATION' });
    const badParams = await postJson('/api/sql', { sql: 'SELECT * FROM contestants WHERE contestant_number = ?', params: [] });
    expect(badParams.body.error.code).toBe('PARAM_COUNT');
    expect(await postJson('/api/sql', 'SELECT 1')).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST' } } });
    expect((await postJson('/api/sql', 'SELECT 1')).body.error.message).toMatch(/not JSON/);
    expect(await postJson('/api/sql', { sql: '' })).toMatchObject({ status: 400, body: { error: { message: 'the request needs "sql": a non-empty string' } } });
    expect(await postJson('/api/sql', { sql: 'SELECT 1', params: 'x' })).toMatchObject({ status: 400, body: { error: { message: '"params" must be an array of values' } } });
    expect(await postJson('/api/sql', { sql: `SELECT '${'x'.repeat(1_100_000)}'` })).toMatchObject({ status: 413, body: { error: { code: 'TOO_LARGE' } } });
    expect(await getJson('/api/sql')).toMatchObject({ status: 405 });
    // Nothing was lost or broken: the database still answers, through the console and directly.
    expect((await postJson('/api/sql', { sql: 'SELECT COUNT(*) FROM contestants' })).body.rows).toEqual([[6]]);
    expect(await db.call('@Ping')).toBe(0);
  });

  it('cuts long results to the rows it shows and says so', async () => {
    const { postJson, db } = await serveVoterConsole();
    const inserts: Promise<unknown>[] = [];
    for (let i = 0; i < 1200; i++) inserts.push(db.call('Vote', 2015550000 + i, 1, 2));
    await Promise.all(inserts);
    const answer = await postJson('/api/sql', { sql: 'SELECT phone_number FROM votes' });
    expect(answer.body).toMatchObject({ rowCount: 1200, truncated: true });
    expect(answer.body.rows).toHaveLength(1000);
  });
});

describe('console alerts', () => {
  it('says there is no alert stream without a source', async () => {
    const { getJson } = await serveVoterConsole();
    expect((await getJson('/api/alerts')).body).toEqual({ available: false, title: null, rows: [], total: 0, error: null });
  });

  it('keeps the newest rows of a feed, newest first, bounded', async () => {
    let push: ((rows: readonly AlertRow[]) => void) | undefined;
    let unsubscribed = false;
    const feed: AlertFeed = {
      stream: 'meter_alerts',
      subscribe(onRows) {
        push = onRows;
        return () => {
          unsubscribed = true;
        };
      },
    };
    const { getJson, console: webConsole } = await serveVoterConsole({ alerts: feed });
    push!([{ meter_id: 1, kind: 'spike' }, { meter_id: 2, kind: 'silent' }]);
    push!(Array.from({ length: 60 }, (_, i) => ({ meter_id: 100 + i, kind: 'spike' })));
    const alerts = (await getJson('/api/alerts')).body;
    expect(alerts).toMatchObject({ available: true, title: 'meter_alerts', total: 62, error: null });
    expect(alerts.rows).toHaveLength(50);
    expect(alerts.rows[0]).toEqual({ meter_id: 159, kind: 'spike' });
    await webConsole.close();
    expect(unsubscribed).toBe(true);
  });

  it('follows an alert stream through the server\'s subscriptions: committed, matching rows only', async () => {
    const server = await serve({ schema: 'test/fixtures/alerts/ddl.sql', partitions: 2 });
    const webConsole = await startConsole({ server, port: 0, alerts: { stream: 'meter_alerts', where: { region: 'north' } } });
    try {
      const db = await client<UntypedApp>(server);
      await db.call('RaiseAlert', 1, 'north', 'spike');
      await db.call('RaiseAlert', 2, 'south', 'spike');
      await expect(db.call('RaiseAlert', 3, 'north', 'abort')).rejects.toThrow(/aborted on purpose/);
      await db.call('RaiseAlert', 4, 'north', 'silent');
      const alerts = async () => (await (await fetch(`${webConsole.url}api/alerts`)).json()) as { rows: Record<string, unknown>[]; total: number; title: string };
      await expect.poll(async () => (await alerts()).total).toBe(2);
      const state = await alerts();
      expect(state.title).toBe('meter_alerts');
      expect(state.rows.map((row) => [row.meter_id, row.kind, row.raw])).toEqual([[4, 'silent', "x'010203'"], [1, 'spike', "x'010203'"]]);
      // TIMESTAMP columns arrive as ISO text, the way an operator reads them.
      expect(state.rows[0].at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    } finally {
      await webConsole.close();
    }
  });

  it('refuses an alert stream that does not exist, naming the streams there are', async () => {
    const server = await serve({ schema: 'test/fixtures/alerts/ddl.sql', partitions: 1 });
    await expect(startConsole({ server, port: 0, alerts: { stream: 'meter_alert' } })).rejects.toThrow("cannot subscribe to meter_alert: no stream; did you mean 'meter_alerts'?");
    const router = server.router;
    await expect(startConsole({ router, port: 0, alerts: { stream: 'meter_alerts' } })).rejects.toThrow(/needs the server's stream subscriptions/);
  });

  it('shows the result of an alert query, and its error when it fails', async () => {
    const good = await serveVoterConsole({ alerts: { title: 'top contestants', sql: 'SELECT contestant_name FROM contestants ORDER BY contestant_number LIMIT 2', intervalMs: 50 } });
    await expect.poll(async () => (await good.getJson('/api/alerts')).body.rows).toEqual([{ contestant_name: 'Edwina Burnam' }, { contestant_name: 'Tabatha Gehling' }]);
    const bad = await serveVoterConsole({ alerts: { title: 'broken', sql: 'SELECT * FROM no_such_table', intervalMs: 50 } });
    await expect.poll(async () => (await bad.getJson('/api/alerts')).body.error).toMatch(/^alert query failed: .*no_such_table/);
  });
});

describe('logs', () => {
  function capture(isTTY: boolean): { stream: PassThrough & { isTTY?: boolean }; text(): string } {
    const stream: PassThrough & { isTTY?: boolean } = new PassThrough();
    stream.isTTY = isTTY;
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
  }

  it('writes JSON lines with levels when the output is not a terminal', async () => {
    const out = capture(false);
    const logger = createLogger({ level: 'debug', destination: out.stream });
    logger.debug({ partition: 3 }, 'hello');
    logger.trace('not at this level');
    await new Promise((resolve) => setImmediate(resolve));
    const lines = out.text().trim().split('\n').map((line) => JSON.parse(line));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 20, service: 'sluice', partition: 3, msg: 'hello' });
    expect(typeof lines[0].time).toBe('number');
  });

  it('pretty-prints on a terminal, and the format can be forced', async () => {
    const tty = capture(true);
    createLogger({ destination: tty.stream }).info({ port: 1 }, 'listening');
    await new Promise((resolve) => setImmediate(resolve));
    expect(tty.text()).toMatch(/INFO.*listening/);
    expect(() => JSON.parse(tty.text())).toThrow();
    const forced = capture(true);
    createLogger({ destination: forced.stream, format: 'json' }).warn('careful');
    await new Promise((resolve) => setImmediate(resolve));
    expect(JSON.parse(forced.text())).toMatchObject({ level: 40, msg: 'careful' });
  });

  it('redacts secrets in JSON and pretty output alike', async () => {
    for (const format of ['json', 'pretty']) {
      const out = capture(false);
      createLogger({ destination: out.stream, format, redactPaths: ['password', '*.password'] }).info({ password: 'hunter2', user: { name: 'ops', password: 'hunter3' } }, 'login');
      await new Promise((resolve) => setImmediate(resolve));
      expect(out.text()).toContain('[redacted]');
      expect(out.text()).not.toMatch(/hunter/);
    }
  });

  it('the console warns when it listens beyond this machine, having no login', async () => {
    const out = capture(false);
    const server = await serve({ partitions: 1 });
    const open = await startConsole({ server, port: 0, host: '0.0.0.0', logger: createLogger({ destination: out.stream }) });
    await open.close();
    const quiet = await startConsole({ server, port: 0, logger: createLogger({ destination: out.stream }) });
    await quiet.close();
    const lines = out.text().trim().split('\n').map((line) => JSON.parse(line));
    expect(lines.filter((line) => line.level === 40).map((line) => line.msg)).toEqual(['the web console listens on 0.0.0.0 with no login: anyone who reaches it can run SQL, writes included']);
  });

  it('refuses unknown levels and formats by name', () => {
    expect(() => createLogger({ level: 'loud' })).toThrow("unknown log level 'loud': use one of trace, debug, info, warn, error, fatal, silent");
    expect(() => createLogger({ format: 'xml' })).toThrow("unknown log format 'xml': use one of auto, json, pretty");
  });
});
