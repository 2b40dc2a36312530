/**
 * The one-command demo (`npm start`, procedures/smart-meter/demo.ts) as a user runs it: started
 * as its own process with small settings, it prints where to look and status lines with live
 * numbers; SIGINT makes it finish the simulated interval, reconcile and exit 0. Bad options get
 * a one-line error.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';

const folders: string[] = [];
afterEach(async () => {
  while (folders.length > 0) await rm(folders.pop()!, { recursive: true, force: true });
});

interface Finished {
  code: number | null;
  output: string;
}

/** Runs the demo; `until` decides from the output so far when to send SIGINT. */
function runDemo(args: string[], until?: (output: string) => boolean): Promise<Finished> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['procedures/smart-meter/demo.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let interrupted = false;
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      if (until && !interrupted && until(output)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('exit', (code) => resolve({ code, output }));
  });
}

describe('npm start (the demo)', () => {
  it('prints live numbers, then stops cleanly on SIGINT with the reconciliation ok', async () => {
    const data = await mkdtemp(path.join(os.tmpdir(), 'sluice-demo-'));
    folders.push(data);
    // Two status lines that counted readings, then Ctrl-C.
    const statusWithReadings = /\]\s+[\d,]+ readings\/s \| simulated .* \| accepted [1-9][\d,]* of/g;
    let consolePage: { status: number; body: string } | undefined;
    let fetching: Promise<void> | undefined;
    const { code, output } = await runDemo(['--meters', '400', '--rate', '2000', '--port', '0', '--console-port', '0', '--data', data, '--report-every', '0.5'], (text) => {
      // The web console answers while the demo runs.
      const consoleUrl = /console\s+(http:\/\/\S+)/.exec(text)?.[1];
      if (consoleUrl && !fetching) fetching = fetch(consoleUrl).then(async (response) => void (consolePage = { status: response.status, body: await response.text() }));
      return consolePage !== undefined && (text.match(statusWithReadings)?.length ?? 0) >= 2;
    });
    await fetching;
    expect(consolePage?.status).toBe(200);
    expect(consolePage?.body).toMatch(/<html/i);
    expect(output).toContain('Sluice smart-meter demo');
    expect(output).toMatch(/server\s+ws:\/\/127\.0\.0\.1:\d+ \(\d+ partitions\)/);
    expect(output).toMatch(/meters\s+400 from /);
    expect(output).toContain('SIGINT: finishing the simulated interval');
    expect(output).toMatch(/stopped after [\d,]+ readings/);
    expect(output).toMatch(/exported [\d,]+ enriched readings in [1-9]\d* Parquet files under /);
    expect(output).toMatch(/reconciliation: Parquet [\d.]+ kWh = exported .* → ok/);
    expect(code, output).toBe(0);
    expect(await readdir(path.join(data, 'dimensions'))).toEqual(['meters.csv', 'tariffs.csv']);
    expect(await readdir(data)).toEqual(expect.arrayContaining(['sluice.log', 'db', 'export']));
    expect(await readdir(path.join(data, 'export', 'analytics', 'readings_enriched'))).toContain('dt=2026-03-28');
    expect(output).toMatch(/database\s+.*db \(durability sync/);
  });

  it('refuses a bad option with a one-line error', async () => {
    const bad = await runDemo(['--meters', 'many', '--no-console']);
    expect(bad.code).toBe(2);
    expect(bad.output.trim()).toBe("error: --meters must be a whole number ≥ 0, got 'many'");
    const unknown = await runDemo(['--colour', 'blue']);
    expect(unknown.code).toBe(2);
    expect(unknown.output.trim().split('\n')).toHaveLength(1);
    expect(unknown.output).toMatch(/^error: .*--colour/);
  });
});

const mqttUrl = process.env.SLUICE_TEST_MQTT_URL;
const mqttMissing = !mqttUrl && process.env.CI !== 'true';
if (mqttMissing) console.warn('demo alerts to MQTT: skipped, SLUICE_TEST_MQTT_URL is not set (e.g. mqtt://127.0.0.1:1883)');

describe.skipIf(mqttMissing)('npm start -- --alerts-mqtt', () => {
  it('publishes alerts to alerts/{region}/{meter_id}-style topics', async () => {
    expect(mqttUrl, 'CI provides SLUICE_TEST_MQTT_URL').toBeDefined();
    const data = await mkdtemp(path.join(os.tmpdir(), 'sluice-demo-mqtt-'));
    folders.push(data);
    // A prefix of our own: other tests may publish to alerts/# on the same broker.
    const prefix = `sluice-demo-test-${process.pid}-${Date.now()}`;
    const subscriber = await mqtt.connectAsync(mqttUrl!);
    const messages: { topic: string; alert: Record<string, unknown> }[] = [];
    subscriber.on('message', (topic, payload) => messages.push({ topic, alert: JSON.parse(payload.toString()) as Record<string, unknown> }));
    await subscriber.subscribeAsync(`${prefix}/#`, { qos: 1 });
    try {
      const { code, output } = await runDemo(
        ['--meters', '400', '--rate', '2000', '--port', '0', '--console-port', '0', '--data', data, '--report-every', '0.5', '--alerts-mqtt', mqttUrl!, '--alerts-topic', `${prefix}/{region}/{meter_id}`],
        () => messages.some((message) => message.alert.kind === 'concentrator_outage'),
      );
      expect(code, output).toBe(0);
      expect(output).toContain(`alerts → MQTT ${mqttUrl}`);
      const outage = messages.find((message) => message.alert.kind === 'concentrator_outage')!;
      expect(outage.topic).toBe(`${prefix}/${outage.alert.region}/${outage.alert.meter_id}`);
      expect(outage.alert.detail).toMatch(/of \d+ meters silent/);
    } finally {
      await subscriber.endAsync();
    }
  });
});
