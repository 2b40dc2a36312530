/**
 * The load generator shared by the network benchmarks (Voter, smart meter): drives a server
 * through client connections, either keeping a window of calls outstanding (as fast as the
 * server accepts) or offering a fixed rate, for a warm-up and a measured period; prints a
 * progress line every few seconds and returns throughput and latency percentiles from an HDR
 * histogram (perf_hooks.createHistogram).
 *
 * A workload supplies the calls: `next(stopping)` returns the next call, `undefined` when none is
 * ready yet (the workload calls `wake` when one is), or `null` when it is finished. After the
 * measured period the generator asks with `stopping = true`, so a workload can end at a clean
 * boundary (the smart meter finishes its simulated interval); a workload that returns `null`
 * earlier ends the run early. Calls naming the same connection
 * are sent in order on it, which keeps one meter's readings in order.
 */
import os from 'node:os';
import { createHistogram, monitorEventLoopDelay, type RecordableHistogram } from 'node:perf_hooks';
import type { Client } from '../client/index.ts';

export interface LoadCall {
  /** Connection index (taken modulo the number of connections). */
  connection: number;
  procedure: string;
  params: unknown[];
  /** Called with the answer, or with the error of a failed call. */
  done?: (result: unknown, error: Error | undefined) => void;
}

export interface Workload {
  next(stopping: boolean): LoadCall | undefined | null;
  /** Called once before the first `next`: the workload calls `wake` after answering undefined. */
  start?(wake: () => void): void;
  /** Extra text for the progress line. */
  progress?(): string;
}

export interface LoadOptions {
  clients: readonly Client<any>[];
  /** Calls outstanding at most, over all connections. */
  window: number;
  warmupSeconds: number;
  seconds: number;
  /** Calls per second offered; undefined: as many as the window allows. */
  rate?: number;
  reportEverySeconds: number;
  /** What a call is called in the progress line ("votes", "readings"). */
  unit: string;
  log?: (line: string) => void;
  /** Ends the run early (Ctrl-C in the demo): the workload is asked to stop as after `seconds`. */
  signal?: AbortSignal;
}

export interface LoadResult {
  /** Calls answered during the measured period. */
  calls: number;
  /** Calls answered in all, warm-up and the finish included. */
  answered: number;
  elapsedSeconds: number;
  perSecond: number;
  failed: number;
  firstFailure: string | undefined;
  latencyMs: { p50: number; p95: number; p99: number; p999: number; max: number };
  /**
   * How late this process's event loop ran during the measured period: answers that arrive while
   * it is blocked (its own garbage collection, say) wait that long, so this part of the latency is
   * the load generator's, not the server's.
   */
  clientLoopDelayMs: { p99: number; max: number };
}

/** Latency histograms count microseconds: the percentiles we print are tenths of milliseconds. */
const microsPerMs = 1000;
const rateTickMs = 1;

export async function runLoad(workload: Workload, options: LoadOptions): Promise<LoadResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const clients = options.clients;
  const latency: RecordableHistogram = createHistogram();
  let measuring = false;
  let stopping = false;
  let finished = false;
  let outstanding = 0;
  let answered = 0;
  let measuredCalls = 0;
  let intervalCalls = 0;
  let intervalFailed = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  let issued = 0;
  let drained: () => void = () => {};
  const rateStart = performance.now();

  const issue = (call: LoadCall): void => {
    const start = performance.now();
    outstanding++;
    issued++;
    const client = clients[call.connection % clients.length];
    client.call(call.procedure as never, ...(call.params as never[])).then(
      (result: unknown) => {
        answered++;
        if (measuring) {
          measuredCalls++;
          intervalCalls++;
          const micros = Math.round((performance.now() - start) * microsPerMs);
          latency.record(micros > 0 ? micros : 1);
        }
        call.done?.(result, undefined);
        settle();
      },
      (error: Error) => {
        answered++;
        failed++;
        intervalFailed++;
        firstFailure ??= error.message;
        call.done?.(undefined, error);
        settle();
      },
    );
  };

  const settle = (): void => {
    outstanding--;
    if (options.rate === undefined) pump();
    if (finished && outstanding === 0) drained();
  };

  /** Issues what the window (or the rate) allows now. */
  const pump = (): void => {
    if (finished) return;
    const due = options.rate === undefined ? Number.POSITIVE_INFINITY : Math.floor(((performance.now() - rateStart) / 1000) * options.rate);
    while (outstanding < options.window && issued < due) {
      const call = workload.next(stopping);
      if (call === undefined) return;
      if (call === null) {
        finished = true;
        if (outstanding === 0) drained();
        return;
      }
      issue(call);
    }
  };

  const done = new Promise<void>((resolve) => (drained = resolve));
  const ended = options.signal === undefined ? done : Promise.race([done, aborted(options.signal)]);
  workload.start?.(pump);
  const rateTimer = options.rate === undefined ? undefined : setInterval(pump, rateTickMs);
  pump();

  // A workload may finish on its own (a fixed number of intervals) before the time is up.
  await sleepUnless(options.warmupSeconds * 1000, ended);
  measuring = !finished;
  intervalCalls = 0;
  intervalFailed = 0;
  const measureStart = performance.now();
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  let lastReport = measureStart;
  const report = (): void => {
    const now = performance.now();
    const perSecond = intervalCalls / ((now - lastReport) / 1000);
    const extra = workload.progress?.() ?? '';
    log(`${((now - measureStart) / 1000).toFixed(0).padStart(4)}s ${Math.round(perSecond).toLocaleString('en-US').padStart(10)} ${options.unit}/s   failed ${intervalFailed}   outstanding ${outstanding}${extra ? `   ${extra}` : ''}`);
    intervalCalls = 0;
    intervalFailed = 0;
    lastReport = now;
  };
  // Without a finite period, no progress lines (the demo prints its own).
  const reporter = Number.isFinite(options.reportEverySeconds) ? setInterval(report, options.reportEverySeconds * 1000) : undefined;
  await sleepUnless(options.seconds * 1000, ended);
  measuring = false;
  loopDelay.disable();
  const elapsedSeconds = (performance.now() - measureStart) / 1000;
  clearInterval(reporter);
  stopping = true;
  pump();
  await done;
  clearInterval(rateTimer);

  const ms = (percentile: number) => Number((latency.count === 0 ? 0 : latency.percentile(percentile) / microsPerMs).toFixed(3));
  return {
    calls: measuredCalls,
    answered,
    elapsedSeconds,
    perSecond: elapsedSeconds > 0 ? Math.round(measuredCalls / elapsedSeconds) : 0,
    failed,
    firstFailure,
    latencyMs: { p50: ms(50), p95: ms(95), p99: ms(99), p999: ms(99.9), max: Number(((latency.count === 0 ? 0 : latency.max) / microsPerMs).toFixed(3)) },
    clientLoopDelayMs: { p99: Number((loopDelay.percentile(99) / 1e6).toFixed(3)), max: Number((loopDelay.max / 1e6).toFixed(3)) },
  };
}

/** The machine the numbers came from, for the first line of every benchmark. */
export function machineDescription(): string {
  return `${os.cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${os.cpus().length} cores, Node ${process.version}, load ${os.loadavg()[0].toFixed(2)}`;
}

/** Waits `ms` (forever when not finite), or less if `early` settles first; leaves no timer behind. */
async function sleepUnless(ms: number, early: Promise<void>): Promise<void> {
  if (!Number.isFinite(ms)) return early;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), early]);
  clearTimeout(timer);
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
