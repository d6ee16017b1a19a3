import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_ESTIMATE_SCALE, MIN_ESTIMATE_SCALE, StartCalibration, calibratedEstimate } from './estimates';
import { PendingExplanation, PendingReasonCode, Plan } from './types';

const H = 3600_000;
const wait = (jobId: string, estimatedStartAt: number | null, reason: PendingReasonCode = 'waiting_for_resources'): PendingExplanation => ({
  jobId,
  job: { id: jobId, tenantId: 't', gpus: 1, gpuType: 'h100', priority: 1, submittedAt: 0, timeLimitSeconds: 3600 },
  tenantId: 't',
  reason,
  message: '',
  estimatedStartAt,
  queuePosition: 1,
});
const plan = (pending: PendingExplanation[], started: string[] = []): Plan => ({
  starts: started.map((jobId) => ({ jobId, gpuModel: 'h100', placement: [] })),
  preemptions: [],
  pending,
  reservations: [],
});

/** n jobs predicted to wait `predictedH` at t=0 that start after `actualH`. */
function feed(c: StartCalibration, n: number, predictedH: number, actualH: (i: number) => number, prefix = 'j'): void {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  c.observe(0, plan(ids.map((id) => wait(id, predictedH * H))));
  // Each starts at its own time; the others are still pending then.
  const order = ids.map((id, i) => ({ id, at: actualH(i) * H })).sort((a, b) => a.at - b.at);
  const left = new Set(ids);
  for (const { id, at } of order) {
    left.delete(id);
    c.observe(at, plan([...left].map((x) => wait(x, at + H)), [id]));
  }
}

describe('start estimate calibration', () => {
  it('keeps the time-limit estimate until enough starts were seen', () => {
    const c = new StartCalibration({ minSamples: 20 });
    feed(c, 19, 10, () => 2);
    expect(c.samples).toBe(19);
    expect(c.scale()).toBe(1);
    feed(c, 1, 10, () => 2, 'k');
    expect(c.scale()).toBe(0.2);
  });

  it('scales by the median of actual over predicted wait, so half the jobs start before the estimate', () => {
    const c = new StartCalibration({ minSamples: 5 });
    // Predicted 10 h; actual 1..9 h and one outlier that waited 100 h.
    feed(c, 10, 10, (i) => (i === 9 ? 100 : i + 1));
    expect(c.scale()).toBe(0.55); // median of 0.1..0.9 and 10
    const shown = calibratedEstimate(wait('x', 10 * H), 0, c.scale())!;
    const actual = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100];
    expect(actual.filter((a) => a * H <= shown).length).toBe(5);
  });

  it('keeps the scale within bounds and forgets old starts beyond the window', () => {
    const c = new StartCalibration({ minSamples: 1, window: 10 });
    feed(c, 10, 10, () => 0.001);
    expect(c.scale()).toBe(MIN_ESTIMATE_SCALE);
    feed(c, 10, 1, () => 50, 'late');
    expect(c.samples).toBe(10);
    expect(c.scale()).toBe(MAX_ESTIMATE_SCALE);
  });

  it('counts a job from when it was first seen waiting, with the first prediction, once', () => {
    const c = new StartCalibration({ minSamples: 1 });
    c.observe(0, plan([wait('a', 4 * H)]));
    c.observe(1 * H, plan([wait('a', 20 * H)])); // a later, different prediction is not the first
    c.observe(2 * H, plan([], ['a']));
    expect(c.scale()).toBe(0.5);
    c.observe(3 * H, plan([], ['a'])); // reported again: no second observation
    expect(c.samples).toBe(1);
  });

  it('learns nothing from reclaims, jobs without an estimate, or jobs that left without starting', () => {
    const c = new StartCalibration({ minSamples: 1 });
    c.observe(0, plan([wait('r', 60_000, 'waiting_for_reclaim'), wait('q', null, 'over_quota_limit'), wait('gone', 5 * H)]));
    c.observe(H, plan([])); // 'gone' was cancelled
    c.observe(2 * H, plan([], ['r', 'q', 'gone']));
    expect(c.samples).toBe(0);
    expect(c.scale()).toBe(1);
  });

  it('in two halves (new predictions while the starts are written, then the starts) learns what one observation of the pass learns', () => {
    // The reference: the starts first, then the new predictions and the pruning, as one step.
    class Reference {
      private readonly first = new Map<string, { at: number; predicted: number; pass: number }>();
      private pass = 0;
      readonly ratios: number[] = [];
      observe(now: number, p: Plan, started: readonly string[]): void {
        const pass = ++this.pass;
        for (const id of started) {
          const f = this.first.get(id);
          if (f === undefined) continue;
          this.first.delete(id);
          const r = (now - f.at) / f.predicted;
          if (Number.isFinite(r)) this.ratios.push(Math.min(r, 100));
        }
        for (const e of p.pending) {
          const f = this.first.get(e.jobId);
          if (f) f.pass = pass;
          else if (e.estimatedStartAt !== null && e.reason !== 'waiting_for_reclaim' && e.estimatedStartAt > now) this.first.set(e.jobId, { at: now, predicted: e.estimatedStartAt - now, pass });
        }
        if (this.first.size > p.pending.length) for (const [id, f] of this.first) if (f.pass !== pass) this.first.delete(id);
      }
    }
    const pass = fc.record({
      // Each job of a small pool is waiting (with an estimate in hours, or none), started, or gone.
      jobs: fc.array(fc.oneof(fc.constant('gone' as const), fc.constant('started' as const), fc.option(fc.integer({ min: 1, max: 30 }))), { minLength: 8, maxLength: 8 }),
      advanceH: fc.integer({ min: 0, max: 5 }),
    });
    fc.assert(
      fc.property(fc.array(pass, { minLength: 1, maxLength: 25 }), (passes) => {
        const c = new StartCalibration({ minSamples: 1, window: 1000 });
        const ref = new Reference();
        let now = 0;
        for (const p of passes) {
          now += p.advanceH * H;
          const pending = p.jobs.flatMap((j, i) => (j === 'gone' || j === 'started' ? [] : [wait(`j${i}`, j === null ? null : now + j * H)]));
          const started = p.jobs.flatMap((j, i) => (j === 'started' ? [`j${i}`] : []));
          const pl = plan(pending, started);
          c.predicted(now, pl);
          c.started(now, started);
          ref.observe(now, pl, started);
          expect(c.samples).toBe(ref.ratios.length);
          const xs = [...ref.ratios].sort((a, b) => a - b);
          const m = xs.length % 2 ? xs[(xs.length - 1) / 2]! : (xs[xs.length / 2 - 1]! + xs[xs.length / 2]!) / 2;
          expect(c.scale()).toBe(xs.length ? Math.round(Math.min(MAX_ESTIMATE_SCALE, Math.max(MIN_ESTIMATE_SCALE, m)) * 100) / 100 : 1);
        }
      }),
    );
  });

  it('shows scaled waits, never before now, and a reclaim grace period as it is', () => {
    const now = 100 * H;
    expect(calibratedEstimate(wait('a', now + 10 * H), now, 0.25)).toBe(now + 2.5 * H);
    expect(calibratedEstimate(wait('a', now - H), now, 0.25)).toBe(now);
    expect(calibratedEstimate(wait('a', null), now, 0.25)).toBeNull();
    expect(calibratedEstimate(wait('a', now + 120_000, 'waiting_for_reclaim'), now, 0.25)).toBe(now + 120_000);
  });
});
