/**
 * Calls awaiting their answers, by call id: a ring of slots indexed by the id's low bits, with a
 * Map for the rare call still waiting when its slot comes round again (a slow call overtaken by
 * a whole ring of faster ones).
 *
 * Why not a Map alone: a Map that takes and drops 100,000 entries a second rehashes into a new
 * table every few hundred operations, and each discarded table keeps its entries and a link to
 * its successor. Once one of them is promoted to the old generation, the scavenger treats it as
 * live and everything it references survives too, so every call object of the load was promoted
 * and died in the old generation: at 100,000 calls/s the SDK's process ran a 15–30 ms scavenge
 * every 300 ms and a full mark-compact every second — the largest part of Voter's p95 at a fixed
 * rate. The ring never reallocates while the calls in flight fit, and a slot is cleared when its
 * call is answered, so an answered call is garbage at once.
 */
export interface IdentifiedCall {
  readonly id: number;
}

const initialSlots = 1 << 12;

export class PendingCalls<Call extends IdentifiedCall> {
  private slots: (Call | undefined)[] = new Array<Call | undefined>(initialSlots).fill(undefined);
  private mask = initialSlots - 1;
  private readonly overflow = new Map<number, Call>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Ids must be integers that grow with each call (the SDK's own counter). */
  add(call: Call): void {
    // Many overtaken calls mean the ring is too small for what is in flight: double it.
    if (this.overflow.size * 4 > this.slots.length) this.grow();
    this.place(call);
    this.count++;
  }

  get(id: number): Call | undefined {
    const call = this.slots[id & this.mask];
    if (call !== undefined && call.id === id) return call;
    return this.overflow.size === 0 ? undefined : this.overflow.get(id);
  }

  delete(id: number): boolean {
    const slot = id & this.mask;
    const call = this.slots[slot];
    if (call !== undefined && call.id === id) {
      this.slots[slot] = undefined;
      this.count--;
      return true;
    }
    if (this.overflow.delete(id)) {
      this.count--;
      return true;
    }
    return false;
  }

  /** A copy, so callers may delete while they walk it. */
  values(): Call[] {
    const calls: Call[] = [];
    for (const call of this.slots) if (call !== undefined) calls.push(call);
    for (const call of this.overflow.values()) calls.push(call);
    return calls.sort((a, b) => a.id - b.id);
  }

  private place(call: Call): void {
    const slot = call.id & this.mask;
    const occupant = this.slots[slot];
    if (occupant !== undefined) this.overflow.set(occupant.id, occupant);
    this.slots[slot] = call;
  }

  private grow(): void {
    const calls = this.values();
    const size = this.slots.length * 2;
    this.slots = new Array<Call | undefined>(size).fill(undefined);
    this.mask = size - 1;
    this.overflow.clear();
    for (const call of calls) this.place(call);
  }
}
