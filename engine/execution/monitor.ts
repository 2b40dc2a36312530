/**
 * Watching busy partitions from outside. A partition worker runs one transaction at a time and
 * cannot answer questions while it does, so each worker publishes what it is running in a
 * SharedArrayBuffer (two Int32 cells per partition: a tag of the transaction id and the call's
 * router slot) and the router samples those cells on a timer (`PartitionMonitor.sample`).
 *
 * The worker pays two plain stores when a transaction starts and one when it ends, and reads no
 * clock: the router times a transaction from the first sample that saw it, so durations are exact
 * to within one sample interval. Plain (non-Atomics) stores are enough for a monitor: a stale
 * read costs one sample, and `sample` reads the tag twice so it never pairs a tag with the slot of
 * another transaction.
 *
 * What the router does with it (router.ts): report long-running transactions (log line,
 * @Statistics), hold new calls for a stalled partition in the router, where their deadlines are
 * still checked, and fail multi-partition transactions at once while a partition that made an
 * earlier one time out is still stuck in the same transaction.
 */

/** Int32 cells per partition: [transaction tag, router slot]. */
const cellsPerPartition = 2;
/** Slot published while a partition serves a multi-partition transaction (it has no router slot). */
export const multiPartitionSlot = -1;
/** The router samples the cells this often; it is also the grain of every duration measured here. */
export const partitionSampleIntervalMs = 20;

/**
 * A transaction's tag in the cells: its id cut to 32 bits. Ids are unique and only grow, so two
 * samples with the same tag saw the same transaction. The tag 0 means idle; the one id in 2^32
 * whose tag is 0 goes unwatched.
 */
export function transactionTag(transactionId: number): number {
  return transactionId | 0;
}

/** The worker's side: where it publishes the transaction it runs. */
export class RunningCell {
  private readonly cells: Int32Array;
  private readonly index: number;

  constructor(buffer: SharedArrayBuffer, partition: number) {
    this.cells = new Int32Array(buffer);
    this.index = partition * cellsPerPartition;
  }

  start(transactionId: number, slot: number): void {
    // Slot first: a sampler that reads the new tag then finds the slot that belongs to it.
    this.cells[this.index + 1] = slot;
    this.cells[this.index] = transactionTag(transactionId);
  }

  end(): void {
    this.cells[this.index] = 0;
  }
}

/** What a partition was running at the last sample. */
export interface RunningTransaction {
  readonly tag: number;
  readonly slot: number;
  /** performance.now() of the first sample that saw it: it started at most one interval before. */
  readonly since: number;
}

/** The router's side: samples every partition's cell and remembers what each one was running. */
export class PartitionMonitor {
  readonly buffer: SharedArrayBuffer;
  private readonly cells: Int32Array;
  private readonly tags: number[];
  private readonly slots: number[];
  private readonly since: number[];
  /**
   * True while a partition has been seen in the same transaction on two samples in a row, i.e.
   * for at least one interval: the router then holds new calls for it (router.ts enqueue).
   */
  readonly stalled: boolean[];

  constructor(partitionCount: number) {
    this.buffer = new SharedArrayBuffer(4 * cellsPerPartition * partitionCount);
    this.cells = new Int32Array(this.buffer);
    this.tags = new Array<number>(partitionCount).fill(0);
    this.slots = new Array<number>(partitionCount).fill(0);
    this.since = new Array<number>(partitionCount).fill(0);
    this.stalled = new Array<boolean>(partitionCount).fill(false);
  }

  /**
   * Samples partition `partition` at `now`: returns how long its current transaction has run as
   * far as the samples know (0 when it started since the last sample), or -1 when it is idle.
   */
  sample(partition: number, now: number): number {
    const index = partition * cellsPerPartition;
    const tag = this.cells[index];
    const slot = this.cells[index + 1];
    if (tag === 0 || this.cells[index] !== tag) {
      // Idle, or the worker moved on between the two reads: nothing is known to be running.
      this.tags[partition] = 0;
      this.stalled[partition] = false;
      return -1;
    }
    if (tag !== this.tags[partition]) {
      this.tags[partition] = tag;
      this.slots[partition] = slot;
      this.since[partition] = now;
      this.stalled[partition] = false;
      return 0;
    }
    this.stalled[partition] = true;
    return now - this.since[partition];
  }

  /**
   * Clears the stall of a partition that has moved past the transaction it was stalled in
   * (the router calls this when the partition answers, between samples). Returns whether it is
   * still stalled.
   */
  refresh(partition: number): boolean {
    if (this.stalled[partition] && this.cells[partition * cellsPerPartition] !== this.tags[partition]) this.stalled[partition] = false;
    return this.stalled[partition];
  }

  /** The transaction partition `partition` was running at the last sample, if any. */
  running(partition: number): RunningTransaction | undefined {
    const tag = this.tags[partition];
    if (tag === 0) return undefined;
    return { tag, slot: this.slots[partition], since: this.since[partition] };
  }

  /** Whether partition `partition` is still running the transaction tagged `tag` (read now, not at the last sample). */
  stillRunning(partition: number, tag: number): boolean {
    return tag !== 0 && this.cells[partition * cellsPerPartition] === tag;
  }
}
