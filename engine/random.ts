/**
 * mulberry32: a small, fast, seedable generator that yields the same sequence everywhere. Used
 * by procedures' ctx.random (engine/execution/transaction.ts keeps its state inline to avoid a
 * closure per transaction), the load generators and the seeded tests.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
