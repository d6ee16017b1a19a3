/**
 * Start estimates calibrated by what actually happened.
 *
 * The plan estimates starts from time limits: a reservation starts when running jobs reach
 * their limits, the fluid estimate drains the queued GPU-seconds of time limits. Users ask for
 * more time than they use (in the ITP traces' drawn limits, 1.2-4x the run time), so those
 * estimates are late: on the reference scenario half of them were more than 8 h off, and
 * "starts now" was closer. The plan cannot know run times, but the caller sees how long jobs
 * really waited against what the plan predicted, so it scales the predicted wait by the median
 * of (actual wait / predicted wait) over recent starts. The median makes the estimate a
 * coin flip: half of the jobs start before it, half after. Reservations, backfill and every
 * decision keep using time limits; only the estimate shown to users is scaled.
 *
 * Pure, no clock: `now` is always an argument. The live scheduler and the simulator each
 * hold one instance and call it after every pass.
 */
import { PendingExplanation, Plan } from './types';

export interface StartCalibrationOptions {
  /** Recent starts the median is taken over (default 500). */
  window?: number;
  /** Below this many observations the scale is 1: estimates by time limits (default 20). */
  minSamples?: number;
}

/** The scale is kept within these: a few odd starts must not promise "now" or "never". */
export const MIN_ESTIMATE_SCALE = 0.05;
export const MAX_ESTIMATE_SCALE = 4;

export class StartCalibration {
  private readonly ratios: Float64Array;
  private count = 0;
  private next = 0;
  private readonly minSamples: number;
  /** Per pending job: when it was first seen waiting this time in the queue, and the wait the plan predicted then. */
  private readonly first = new Map<string, { at: number; predicted: number; pass: number }>();
  private passNo = 0;
  /** The pending jobs of the pass `predicted` last saw. */
  private pendingInPass = 0;
  private cached: number | null = null;

  constructor(opts: StartCalibrationOptions = {}) {
    this.ratios = new Float64Array(Math.max(1, opts.window ?? 500));
    this.minSamples = Math.max(1, opts.minSamples ?? 20);
  }

  /**
   * Feed one pass: `started` are the jobs the caller actually started from this plan (the
   * live scheduler's commit may refuse some). Observes the started jobs' waits against their
   * first prediction, and records the first prediction of jobs newly waiting.
   */
  observe(now: number, plan: Plan, started: Iterable<string> = plan.starts.map((s) => s.jobId)): void {
    this.predicted(now, plan);
    this.started(now, started);
  }

  /**
   * The first half of `observe`: records the first prediction of jobs newly waiting in this
   * plan. It needs no start, so the live scheduler does it while its starts are being written
   * (a new leader's first pass records 100,000 of them); `started` must follow for the same pass.
   */
  predicted(now: number, plan: Plan): void {
    const pass = ++this.passNo;
    this.pendingInPass = plan.pending.length;
    for (const p of plan.pending) {
      const f = this.first.get(p.jobId);
      if (f !== undefined) {
        f.pass = pass;
        continue;
      }
      // Only predictions of a wait by time limits: a reclaim's grace period is exact.
      if (p.estimatedStartAt === null || p.reason === 'waiting_for_reclaim' || p.estimatedStartAt <= now) continue;
      this.first.set(p.jobId, { at: now, predicted: p.estimatedStartAt - now, pass });
    }
  }

  /** The second half of `observe`: the started jobs' waits against their first prediction. */
  started(now: number, started: Iterable<string>): void {
    for (const id of started) {
      const f = this.first.get(id);
      if (f === undefined) continue;
      this.first.delete(id);
      this.push((now - f.at) / f.predicted);
    }
    // Jobs that left the queue without starting here (cancelled, started by a plan the caller
    // did not report) are forgotten, so the map stays the size of the queue.
    const pass = this.passNo;
    if (this.first.size > this.pendingInPass) for (const [id, f] of this.first) if (f.pass !== pass) this.first.delete(id);
  }

  /** The factor predicted waits are multiplied by: 1 until enough starts were seen. */
  scale(): number {
    if (this.cached !== null) return this.cached;
    if (this.count < this.minSamples) return (this.cached = 1);
    const xs = Array.from(this.ratios.subarray(0, this.count)).sort((a, b) => a - b);
    const m = xs.length % 2 ? xs[(xs.length - 1) / 2]! : (xs[xs.length / 2 - 1]! + xs[xs.length / 2]!) / 2;
    // Two decimals: a new start moves the median a little, and every change of an estimate is
    // a write per pending job in the live scheduler.
    return (this.cached = Math.round(Math.min(MAX_ESTIMATE_SCALE, Math.max(MIN_ESTIMATE_SCALE, m)) * 100) / 100);
  }

  /** Starts observed so far (at most the window). */
  get samples(): number {
    return this.count;
  }

  private push(r: number): void {
    if (!Number.isFinite(r)) return;
    this.ratios[this.next] = Math.min(r, 100);
    this.next = (this.next + 1) % this.ratios.length;
    if (this.count < this.ratios.length) this.count++;
    this.cached = null;
  }
}

/** The estimate to show for a pending job: its predicted wait scaled (a reclaim's grace period as is). */
export function calibratedEstimate(p: PendingExplanation, now: number, scale: number): number | null {
  if (p.estimatedStartAt === null || p.reason === 'waiting_for_reclaim' || scale === 1) return p.estimatedStartAt;
  return now + Math.max(0, Math.round((p.estimatedStartAt - now) * scale));
}
