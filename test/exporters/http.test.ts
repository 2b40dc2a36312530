/**
 * The http export target against a local node:http receiver that can fail requests on purpose:
 * the JSON document and headers it posts, retries with backoff on 5xx / dropped connections /
 * timeouts, an immediate clear failure on 4xx, and nothing lost when the receiver is down for a
 * while (the pipeline's redelivery duplicates are visible to the receiver by sequence).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, SluiceError } from '../../engine/errors.ts';
import { HttpTarget, httpSettings } from '../../exporters/http.ts';
import { alertRow, batchOf, dedupe, deliverUntilAcknowledged, range, streamDef } from './helpers.ts';

interface Posted {
  headers: http.IncomingHttpHeaders;
  body: { stream: string; partition: number; firstSequence: number; lastSequence: number; rows: Record<string, unknown>[] };
}

/** How the receiver answers request number `n` (0-based): a status, 'drop' (destroy the socket) or 'hang'. */
type Behaviour = (n: number) => number | 'drop' | 'hang';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

async function receiver(behaviour: Behaviour): Promise<{ url: string; accepted: Posted[]; requests: () => number }> {
  const accepted: Posted[] = [];
  let requests = 0;
  const server = http.createServer((request, response) => {
    const n = requests++;
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const answer = behaviour(n);
      if (answer === 'drop') {
        request.socket.destroy();
        return;
      }
      if (answer === 'hang') return;
      if (answer >= 200 && answer < 300) accepted.push({ headers: request.headers, body: JSON.parse(Buffer.concat(chunks).toString()) });
      response.writeHead(answer, { 'content-type': 'text/plain' });
      response.end(answer >= 400 ? `receiver says no (${answer}): column kwh must be positive` : 'ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ingest`, accepted, requests: () => requests };
}

describe('http target', () => {
  const def = streamDef();

  function target(url: string, settings: Record<string, unknown> = {}, env: Record<string, string> = {}): HttpTarget {
    const created = new HttpTarget({ name: 'collector', type: 'http', url, retryDelayMinMs: 5, retryDelayMaxMs: 40, ...settings }, { env });
    cleanup.push(() => created.close());
    return created;
  }

  it('posts batches as JSON with stream, partition and sequences, split into requests of rowsPerRequestMax rows', async () => {
    const { url, accepted } = await receiver(() => 200);
    const collector = target(url, { rowsPerRequestMax: 40, bearerTokenEnv: 'SLUICE_T_TOKEN', headers: { 'x-tenant': '${SLUICE_T_TENANT}' } }, { SLUICE_T_TOKEN: 'sekret', SLUICE_T_TENANT: 'dk' });
    await collector.deliver(batchOf(def, 2, 101, range(101, 100).map((n) => alertRow(5, n))));
    expect(accepted.map((p) => [p.body.firstSequence, p.body.lastSequence, p.body.rows.length])).toEqual([[101, 140, 40], [141, 180, 40], [181, 200, 20]]);
    expect(accepted.every((p) => p.body.stream === 'meter_alerts' && p.body.partition === 2)).toBe(true);
    expect(accepted[0].headers['content-type']).toBe('application/json');
    expect(accepted[0].headers['idempotency-key']).toBe('meter_alerts/2/101-140');
    expect(accepted[0].headers.authorization).toBe('Bearer sekret');
    expect(accepted[0].headers['x-tenant']).toBe('dk');
    expect(accepted[0].body.rows[1]).toEqual({ meter_id: 5, region: 'north', kind: 'kind-102', kwh: 0.102, at: '2026-11-22T08:00:00.102Z', raw: Buffer.from([102, 1, 2]).toString('base64'), urgent: true });
  });

  it('retries 5xx answers, dropped connections and timeouts with backoff, then succeeds', async () => {
    const answers: (number | 'drop' | 'hang')[] = [503, 'drop', 'hang', 500];
    const { url, accepted, requests } = await receiver((n) => answers[n] ?? 200);
    const collector = target(url, { timeoutMs: 200 });
    await collector.deliver(batchOf(def, 0, 1, range(1, 10).map((n) => alertRow(1, n))));
    expect(requests()).toBe(5);
    expect(collector.requestsRetried).toBe(4);
    expect(accepted).toHaveLength(1);
    expect(accepted[0].body.rows).toHaveLength(10);
  });

  it('fails a 4xx at once, with the receiver\'s answer, and does not retry it', async () => {
    const { url, requests } = await receiver(() => 422);
    const collector = target(url);
    await expect(collector.deliver(batchOf(def, 0, 7, [alertRow(1, 7)]))).rejects.toThrow(
      `http target 'collector': POST ${url} (rows meter_alerts/0/7-7) answered 422 Unprocessable Entity: receiver says no (422): column kwh must be positive; not retried`,
    );
    expect(requests()).toBe(1);
  });

  it('gives up after retriesMax with a clear error; the pipeline\'s redelivery then loses nothing', async () => {
    let down = true;
    const { url, accepted, requests } = await receiver(() => (down ? 503 : 200));
    const collector = target(url, { retriesMax: 2 });
    const batches = range(0, 5).map((b) => batchOf(def, 0, 1 + b * 20, range(1 + b * 20, 20).map((n) => alertRow(1, n))));
    await collector.deliver(batches[0]).catch(() => undefined);
    await expect(collector.deliver(batches[0])).rejects.toThrow(/answered 503 Service Unavailable: .*; gave up after 3 tries$/);
    expect(requests()).toBe(6);
    setTimeout(() => (down = false), 100);
    for (const batch of batches) await deliverUntilAcknowledged(collector, batch, 20);
    const sequences = accepted.flatMap((p) => range(p.body.firstSequence, p.body.rows.length));
    const { unique, duplicates } = dedupe(sequences);
    expect(unique).toEqual(range(1, 100));
    expect(duplicates).toBe(0);
  });

  it('refuses bad settings, naming them', () => {
    const refusal = (config: Record<string, unknown>): string => {
      try {
        httpSettings({ name: 'collector', type: 'http', ...config });
      } catch (error) {
        expect(error).toBeInstanceOf(SluiceError);
        expect((error as SluiceError).code).toBe(ErrorCode.EXPORT_CONFIG);
        return (error as Error).message;
      }
      throw new Error('expected a refusal');
    };
    expect(refusal({})).toMatch(/export target 'collector' \(http\) setting 'url': is required/);
    expect(refusal({ url: 'ftp://x/y' })).toMatch(/setting 'url': "ftp:\/\/x\/y" is not an http:\/\/ or https:\/\/ URL/);
    expect(refusal({ url: 'http://x', retriesMax: -1 })).toMatch(/setting 'retriesMax': must be between 0 and 1000, got -1/);
    expect(refusal({ url: 'http://x', headers: { a: 1 } })).toMatch(/setting 'headers': value of 'a' must be a string, got 1/);
    expect(refusal({ url: 'http://x', retries: 3 })).toMatch(/setting 'retries': is not a setting of http targets; did you mean 'retriesMax'\?/);
  });
});
