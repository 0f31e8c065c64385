/**
 * mulberry32: tiny, fast, and identical on every JS engine. The seed's data, the tests' seeded
 * randomness and the benchmark's operation sequences all come from it (a module of its own so
 * the benchmark can use it without loading the database drivers the seed script needs).
 *
 * @example
 * const random = prng(42);
 * random(); // the same number in [0, 1) on every run
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
