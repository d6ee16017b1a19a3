import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { guaranteeShortfall, idleAllocatedGpusFromSamples, idleSinceOf, isIdleLongEnough, nextIdleSince } from './idle';

const cfg = { thresholdRatio: 0.05, forSeconds: 60 };

describe('idle allocated GPUs (pure)', () => {
  it('idle since the first sample of the current run under the threshold', () => {
    const s = (at: number, utilization?: number) => ({ at: at * 1000, utilization });
    expect(idleSinceOf([s(0, 0.01), s(10, 0.02)], 0.05)).toBe(0);
    expect(idleSinceOf([s(0, 0.01), s(10, 0.5), s(20, 0.0)], 0.05)).toBe(20_000);
    expect(idleSinceOf([s(0, 0.01), s(10, undefined)], 0.05)).toBe(0); // missing value keeps state
    expect(idleSinceOf([s(0, 0.05)], 0.05)).toBeUndefined(); // at the threshold is busy
    expect(nextIdleSince(10_000, { at: 5_000, utilization: 0 }, 0.05)).toBe(5_000);
  });

  it('counts per tenant, only allocated GPUs, only after the configured time', () => {
    const at = (sec: number, u: number) => ({ at: sec * 1000, utilization: u });
    const out = idleAllocatedGpusFromSamples(
      [
        { tenant: 'a', job: 'j1', samples: [at(0, 0), at(30, 0), at(60, 0)] },
        { tenant: 'a', job: 'j1', samples: [at(0, 0.9), at(30, 0), at(60, 0)] },
        { tenant: 'b', job: 'j2', samples: [at(0, 0), at(60, 0.2)] },
        { tenant: '', job: '', samples: [at(0, 0)] },
      ],
      60_000,
      cfg,
    );
    expect(Object.fromEntries(out)).toEqual({ a: 1, b: 0 });
  });

  it('property: idle iff every sample with a value since idleSince is under the threshold', () => {
    fc.assert(
      fc.property(fc.array(fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }), { maxLength: 40 }), (us) => {
        const samples = us.map((utilization, i) => ({ at: i * 1000, utilization }));
        const since = idleSinceOf(samples, 0.05);
        const valued = samples.filter((s) => s.utilization !== undefined);
        if (since === undefined) {
          expect(valued.length === 0 || valued[valued.length - 1]!.utilization! >= 0.05).toBe(true);
        } else {
          expect(valued.filter((s) => s.at >= since).every((s) => s.utilization! < 0.05)).toBe(true);
          const before = valued.filter((s) => s.at < since);
          if (before.length) expect(before[before.length - 1]!.utilization! >= 0.05).toBe(true);
        }
        const now = samples.length * 1000;
        expect(isIdleLongEnough(since, now, 0)).toBe(since !== undefined);
      }),
    );
  });

  it('guarantee shortfall', () => {
    expect(guaranteeShortfall(16, 8, 16)).toBe(8);
    expect(guaranteeShortfall(16, 8, 4)).toBe(4);
    expect(guaranteeShortfall(16, 20, 8)).toBe(0);
    expect(guaranteeShortfall(0, 0, 8)).toBe(0);
    fc.assert(
      fc.property(fc.nat(100), fc.nat(100), fc.nat(100), (g, a, p) => {
        const s = guaranteeShortfall(g, a, p);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThanOrEqual(p);
        expect(a + s).toBeLessThanOrEqual(Math.max(g, a));
      }),
    );
  });
});
