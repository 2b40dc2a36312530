/**
 * Exponential backoff for the network targets' reconnects and retries: the delay doubles from a
 * minimum to a maximum, and a sleep can be cut short when the target closes, so `close()` never
 * waits out a long retry delay.
 */

/** Delay before attempt `attempt` (0 for the first retry): min · 2^attempt, capped at max. */
export function backoffDelayMs(attempt: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
