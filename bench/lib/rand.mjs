// bench/lib/rand.mjs — the seeded generator of the benchmarks' workloads (mulberry32: small,
// fast, and the same sequence on every machine for a seed, so a workload is reproducible).

/* a function returning uniform numbers in [0, 1), seeded with the 32-bit integer a */
export function mulberry32(a) {
  return function () {
    a |= 0; a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
