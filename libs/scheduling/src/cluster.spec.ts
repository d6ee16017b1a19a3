import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NodeState, earliestFit, minFree, wholeFit, wholeFreeDuring } from './cluster';

/** A node state with some GPUs held until given times and some reservations. */
const arbNode = fc
  .record({
    size: fc.integer({ min: 1, max: 8 }),
    held: fc.array(fc.record({ t: fc.integer({ min: -5, max: 40 }), g: fc.integer({ min: 1, max: 3 }) }), { maxLength: 4 }),
    resv: fc.array(fc.record({ s: fc.integer({ min: 0, max: 40 }), len: fc.integer({ min: 1, max: 15 }), g: fc.integer({ min: 1, max: 8 }) }), { maxLength: 4 }),
  })
  .map(({ size, held, resv }) => {
    const hs: NodeState['held'] = [];
    let used = 0;
    for (const [i, h] of held.entries()) {
      const g = Math.min(h.g, size - used);
      if (g <= 0) break;
      hs.push({ t: h.t, g, jobId: `j${i}` });
      used += g;
    }
    const st = {
      idx: 0, size, full: true, free: Array.from({ length: size - used }, (_, i) => i), held: hs, heldSorted: false,
      resv: resv.map((r, i) => ({ s: r.s, e: r.s + r.len, g: Math.min(r.g, size), jobId: `r${i}` })),
      reserved: resv.length > 0, jobs: [], ver: 1, fit: null, fitVer: -1,
    } as unknown as NodeState;
    return st;
  });

describe('whole-node fit', () => {
  it('wholeFit equals earliestFit for the whole node, and wholeFreeDuring equals minFree >= size', () => {
    fc.assert(
      fc.property(arbNode, fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 30 }), (st, dur, from) => {
        expect(wholeFit(st, dur, from)).toBe(earliestFit(st, st.size, dur, from));
        expect(wholeFreeDuring(st, from, from + dur)).toBe(minFree(st, from, from + dur) >= st.size);
      }),
      { numRuns: 2000 },
    );
  });
});
