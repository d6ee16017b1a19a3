/**
 * The quota-limit step of a pass. A job whose tenant would go over its limit on every type stays
 * pending (over_quota_limit). Within a tenant, age decides: a job past the starvation threshold
 * that is over its limit gets a reservation from the time the tenant's running jobs (by their
 * time limits) leave room under the limit, and a hold on that room, so the tenant's later jobs
 * may not take it by running past that time (limit backfill).
 */
import { NODE_GPUS, heldUntil, modelIndex } from './cluster';
import { messages } from './explain';
import type { Pass } from './pass';
import { GpuModel, PendingJob, PlannedReservation } from './types';

interface LimitHold {
  /** The held job's reservation: start, end, GPUs. */
  t: number;
  e: number;
  g: number;
  jobId: string;
  /** GPUs under the limit at t left for later jobs that run past t. */
  room: number;
}

/**
 * Per (tenant, type) x: the holds on limit headroom, and this pass's starts and claims (end, GPUs)
 * for the tenant's usage over time.
 */
export class LimitHolds {
  private readonly holds: (LimitHold[] | undefined)[];
  /**
   * Per x and job size g = 1..8: the earliest start of a hold with less than g room (a job of g
   * GPUs may start there only if it ends by then). Larger jobs scan the holds.
   */
  private readonly tight: Float64Array;
  private readonly passHeld: number[][];
  /** Running jobs' (end, GPUs) per x, read once a pass on first need. */
  private runHeld: number[][] | null = null;

  constructor(private readonly p: Pass) {
    this.holds = new Array<LimitHold[] | undefined>(p.T * 2).fill(undefined);
    this.tight = new Float64Array(p.T * 2 * 9).fill(Infinity);
    this.passHeld = Array.from({ length: p.T * 2 }, () => []);
  }

  /** May a job of g GPUs ending by endBy start under the holds on x? */
  room(x: number, g: number, endBy: number): boolean {
    if (g <= NODE_GPUS) return endBy <= this.tight[x * 9 + g]!;
    const hs = this.holds[x];
    if (hs !== undefined) for (const h of hs) if (endBy > h.t && h.room < g) return false;
    return true;
  }

  /** The earliest hold on any of the types that a job of g GPUs ending by endBy would run past, and its type. */
  blocking(ti: number, models: readonly GpuModel[], g: number, endBy: number): { hold: LimitHold; model: GpuModel } | null {
    let h: LimitHold | null = null;
    let hm: GpuModel = models[0]!;
    for (const m of models)
      for (const c of this.holds[this.p.x(ti, m)] ?? [])
        if (endBy > c.t && c.room < g && (!h || c.t < h.t)) {
          h = c;
          hm = m;
        }
    return h === null ? null : { hold: h, model: hm };
  }

  /** A start or claim on x until `end`: counts against a hold's room if it outlasts it. */
  hold(x: number, end: number, g: number): void {
    this.passHeld[x]!.push(end, g);
    const hs = this.holds[x];
    if (hs !== undefined) {
      for (const h of hs) if (end > h.t) h.room -= g;
      this.mins(x);
    }
  }

  /** Reserve for a starving job over its tenant's limit, from when the tenant's holdings leave room; set the hold. */
  reserveOverLimit(job: PendingJob, models: readonly GpuModel[], ti: number): PlannedReservation | null {
    const { lim2, use2 } = this.p;
    let best: GpuModel | null = null;
    let bestFrom = Infinity;
    for (const m of models) {
      const x = this.p.x(ti, m);
      if (job.gpus > lim2[x]!) continue;
      // What the tenant holds, and the jobs reserved under earlier holds (counted as held until
      // they end: they will be running then).
      let h = this.holdings(x);
      let u = use2[x]!;
      const hs = this.holds[x];
      if (hs !== undefined) {
        h = h.slice();
        for (const o of hs) {
          h.push(o.e, o.g);
          u += o.g;
        }
      }
      const idx = Array.from({ length: h.length / 2 }, (_, i) => i).sort((a, b) => h[2 * a]! - h[2 * b]!);
      let from = this.p.now;
      for (const i of idx) {
        if (u + job.gpus <= lim2[x]!) break;
        u -= h[2 * i + 1]!;
        from = Math.max(from, h[2 * i]!);
      }
      if (u + job.gpus > lim2[x]!) continue;
      if (from < bestFrom) {
        bestFrom = from;
        best = m;
      }
    }
    if (best === null) return null;
    const r = this.p.reserver.reserve(job, [best], bestFrom);
    if (!r) return null;
    this.setHold(this.p.x(ti, r.gpuModel), job, r.startAt);
    return r;
  }

  /**
   * Hold x's room under the limit at `at` for a job reserved from `at` to `end`: later jobs may
   * not run past `at` in that room. Earlier holds lose room if this job runs at their start. No
   * hold if the room is already gone (the reservation still stands).
   */
  setHold(x: number, job: PendingJob, at: number, end = at + job.timeLimitSeconds * 1000): void {
    let still = 0;
    const h = this.holdings(x);
    for (let i = 0; i < h.length; i += 2) if (h[i]! > at) still += h[i + 1]!;
    let hs = this.holds[x];
    if (hs !== undefined) for (const o of hs) if (o.t <= at && at < o.e) still += o.g;
    const room = this.p.lim2[x]! - job.gpus - still;
    if (room < 0) return;
    if (hs === undefined) hs = this.holds[x] = [];
    for (const o of hs) if (at <= o.t && o.t < end) o.room -= job.gpus;
    hs.push({ t: at, e: end, g: job.gpus, jobId: job.id, room });
    this.mins(x);
  }

  /** (end, GPUs) of what x holds: running jobs and this pass's starts and claims. */
  private holdings(x: number): number[] {
    const p = this.p;
    if (this.runHeld === null) {
      const runHeld: number[][] = Array.from({ length: p.T * 2 }, () => []);
      const tix = new Map(p.tenantIds.map((id, i) => [id, i]));
      for (const r of p.snapshot.running) {
        const ti = tix.get(r.tenantId);
        if (ti !== undefined) runHeld[ti * 2 + modelIndex(r.gpuModel)]!.push(heldUntil(r, p.now, p.graceMs), r.gpus);
      }
      this.runHeld = runHeld;
    }
    return this.passHeld[x]!.length === 0 ? this.runHeld[x]! : this.runHeld[x]!.concat(this.passHeld[x]!);
  }

  private mins(x: number): void {
    for (let g = 1; g <= NODE_GPUS; g++) {
      let t = Infinity;
      for (const h of this.holds[x]!) if (h.room < g && h.t < t) t = h.t;
      this.tight[x * 9 + g] = t;
    }
  }
}

/**
 * The types among `feasible` on which the job's tenant has room under its limit (and under the
 * holds for its older starving jobs), or null when there is none: the job is then explained
 * (held for an older job, or over the limit, with a reservation if it is starving).
 */
export function withinLimits(p: Pass, job: PendingJob, feasible: readonly GpuModel[], ti: number): readonly GpuModel[] | null {
  const { use2, lim2, holds } = p;
  const g = job.gpus;
  const endBy = p.now + p.graceMs + job.timeLimitSeconds * 1000;
  let all = true;
  let held = false;
  for (let i = 0; i < feasible.length; i++) {
    const x = p.x(ti, feasible[i]!);
    if (use2[x]! + g > lim2[x]!) all = false;
    else if (!holds.room(x, g, endBy)) {
      all = false;
      held = true;
    }
  }
  if (all) return feasible;
  const allowed = feasible.filter((m) => {
    const x = p.x(ti, m);
    return use2[x]! + g <= lim2[x]! && holds.room(x, g, endBy);
  });
  if (allowed.length > 0) return allowed;
  const tenant = p.tenantAt[ti]?.name ?? job.tenantId;
  if (held) {
    // Within the limit, but the tenant's headroom is held for its own older, starving job.
    const { hold, model } = holds.blocking(ti, feasible, g, endBy)!;
    p.explain(job, 'reservation_for_larger_job', messages.limitHeld(job, tenant, hold.jobId, hold.t), Math.max(hold.t, p.fluid(model)), model);
    return null;
  }
  let est: number | null = null;
  let model: GpuModel | undefined;
  if (p.starving(job) && p.reservationsLeft > 0) {
    const r = holds.reserveOverLimit(job, feasible, ti);
    if (r) {
      p.reservationsLeft--;
      p.reservations.push(r);
      est = r.startAt;
      model = r.gpuModel;
    }
  }
  const detail = feasible.map((m) => `${use2[p.x(ti, m)]!} of ${lim2[p.x(ti, m)]!} ${m.toUpperCase()} GPUs in use or claimed`).join(', ');
  p.explain(job, 'over_quota_limit', messages.overLimit(job, tenant, detail), est, model);
  return null;
}
