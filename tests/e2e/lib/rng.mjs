// The seeded PRNG of the randomized tests (mulberry32): the same seed gives
// the same data on every machine, so a printed seed replays a failure.
export function mulberry32(a) {
  return () => {
    a |= 0; a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Helpers over one generator.
export function rng(seed) {
  const r = mulberry32(seed);
  return {
    f: r,
    int: (lo, hi) => lo + Math.floor(r() * (hi - lo + 1)), // inclusive
    chance: (p) => r() < p,
    pick: (a) => a[Math.floor(r() * a.length)],
    weighted: (pairs) => { // [[value, weight], ...]
      let t = r() * pairs.reduce((s, p) => s + p[1], 0);
      for (const [v, w] of pairs) { if ((t -= w) < 0) return v; }
      return pairs[pairs.length - 1][0];
    },
    shuffle: (a) => { for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; } return a; },
    sample: (a, n) => { const c = [...a]; const out = []; while (out.length < n && c.length) out.push(c.splice(Math.floor(r() * c.length), 1)[0]); return out; },
  };
}
