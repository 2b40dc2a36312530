/**
 * The floor under every network number of bench/voter.ts: two Node processes on this machine, one
 * WebSocket between them, msgpack frames carrying many calls each (as the real protocol does),
 * and a server that answers each call without doing anything. With --hop the server passes each
 * batch to a worker thread and back first, as Sluice's router does with a partition.
 *
 *   node bench/transport-floor.ts [--seconds 10] [--warmup 3] [--rate N] [--window 3000] [--hop]
 *
 * Without --rate it keeps `window` calls outstanding and reports the most calls/s such a pair can
 * carry; with --rate it offers N calls/s and reports the latency that no server built on them can
 * beat here. The parameters and answers are Voter's (three numbers in, one number out). Ends
 * with one JSON line.
 */
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { createHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import { Packr } from 'msgpackr';
import { WebSocket, WebSocketServer } from 'ws';
import { machineDescription, sleep } from './load-generator.ts';

const packr = new Packr({ useRecords: false });
const callStride = 3;

if (!isMainThread) {
  // --hop's worker: answers a batch of call ids with a batch of results.
  parentPort!.on('message', (ids: Float64Array) => parentPort!.postMessage(ids));
} else if (process.argv[2] === '--serve') {
  serve(process.argv[3] === 'hop');
} else {
  await drive();
}

/** The server process: prints its port, then echoes. */
function serve(hop: boolean): void {
  const worker = hop ? new Worker(new URL(import.meta.url)) : undefined;
  const waiting: Array<(ids: Float64Array) => void> = [];
  worker?.on('message', (ids: Float64Array) => waiting.shift()!(ids));
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('connection', (socket) => {
    socket.on('message', (data: Buffer) => {
      const frame = packr.unpack(data) as unknown[];
      const calls = frame.length / callStride;
      const ids = new Float64Array(calls);
      for (let i = 0; i < calls; i++) ids[i] = frame[i * callStride] as number;
      const answer = (answered: Float64Array): void => {
        const results: unknown[] = new Array(answered.length * 2);
        for (let i = 0; i < answered.length; i++) {
          results[i * 2] = answered[i];
          results[i * 2 + 1] = 0;
        }
        socket.send(packr.pack(results));
      };
      if (worker === undefined) return answer(ids);
      waiting.push(answer);
      worker.postMessage(ids);
    });
  });
  server.on('listening', () => process.send!({ port: (server.address() as { port: number }).port }));
  process.on('disconnect', () => process.exit(0));
}

async function drive(): Promise<void> {
  const { values: options } = parseArgs({
    options: {
      seconds: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      rate: { type: 'string' },
      window: { type: 'string', default: '3000' },
      hop: { type: 'boolean', default: false },
    },
  });
  const seconds = Number(options.seconds);
  const warmupSeconds = Number(options.warmup);
  const rate = options.rate === undefined ? undefined : Number(options.rate);
  const windowSize = Number(options.window);

  console.log(`transport floor: ${options.hop ? 'one worker hop' : 'direct'}, ${rate === undefined ? `window ${windowSize}` : `fixed rate ${rate}/s`}; ${machineDescription()}`);
  const server = fork(new URL(import.meta.url), ['--serve', options.hop ? 'hop' : 'direct'], { stdio: 'inherit' });
  const port = await new Promise<number>((resolve) => server.once('message', (message: { port: number }) => resolve(message.port)));
  const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  await new Promise((resolve) => socket.once('open', resolve));

  const started = new Map<number, number>();
  const latency = createHistogram();
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  let measuring = false;
  let measured = 0;
  let nextId = 0;
  let issued = 0;
  let pending: unknown[] = [];
  let flushQueued = false;
  const flush = (): void => {
    flushQueued = false;
    socket.send(packr.pack(pending));
    pending = [];
  };
  const issue = (): void => {
    const id = nextId++;
    issued++;
    started.set(id, performance.now());
    // Voter's parameters: a phone number, a contestant, the vote limit.
    pending.push(id, 'Vote', [2_015_550_000 + (id % 10_000_000), 1 + (id % 6), 2]);
    if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(flush);
    }
  };
  const rateStart = performance.now();
  const pump = (): void => {
    const due = rate === undefined ? Number.POSITIVE_INFINITY : Math.floor(((performance.now() - rateStart) / 1000) * rate);
    while (started.size < windowSize && issued < due) issue();
  };
  socket.on('message', (data: Buffer) => {
    const results = packr.unpack(data) as number[];
    const now = performance.now();
    for (let i = 0; i < results.length; i += 2) {
      const start = started.get(results[i])!;
      started.delete(results[i]);
      if (measuring) {
        measured++;
        latency.record(Math.max(1, Math.round((now - start) * 1000)));
      }
    }
    if (rate === undefined) pump();
  });
  const timer = rate === undefined ? undefined : setInterval(pump, 1);
  pump();
  await sleep(warmupSeconds * 1000);
  measuring = true;
  loopDelay.enable();
  const measureStart = performance.now();
  await sleep(seconds * 1000);
  measuring = false;
  const elapsed = (performance.now() - measureStart) / 1000;
  loopDelay.disable();
  clearInterval(timer);
  socket.close();
  server.disconnect();

  const ms = (micros: number) => Math.round(micros) / 1000;
  const summary = {
    bench: 'transport-floor',
    hop: options.hop,
    rate: rate ?? null,
    seconds,
    calls_per_s: Math.round(measured / elapsed),
    p50_ms: ms(latency.percentile(50)),
    p95_ms: ms(latency.percentile(95)),
    p99_ms: ms(latency.percentile(99)),
    p999_ms: ms(latency.percentile(99.9)),
    client_loop_delay_p99_ms: Math.round(loopDelay.percentile(99) / 1e4) / 100,
  };
  console.log(`${summary.calls_per_s.toLocaleString('en-US')} calls/s; latency ms p50 ${summary.p50_ms} p95 ${summary.p95_ms} p99 ${summary.p99_ms} p99.9 ${summary.p999_ms}`);
  console.log(JSON.stringify(summary));
}
