/**
 * The quota-limit step of a pass. A job whose tenant would go over its limit on every type stays
 * pending (over_quota_limit). Within a tenant, age decides: a job past the starvation threshold
 * that is over its limit gets a reservation from the time the tenant's running jobs (by their
 * time limits) leave room under the limit, and a hold on that room, so the tenant's later jobs
 * may not take it by running past that time (limit backfill).
 */
import { NODE_GPUS, heldUntil, modelIndex } from './cluster';
import { kindKey, messages } from './explain';
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
  let allowedCount = 0;
  let held = false;
  for (let i = 0; i < feasible.length; i++) {
    const x = p.x(ti, feasible[i]!);
    if (use2[x]! + g > lim2[x]!) continue;
    if (holds.room(x, g, endBy)) allowedCount++;
    else held = true;
  }
  if (allowedCount === feasible.length) return feasible;
  // (No array made for a job with no room: most of a queue over its limits.)
  if (allowedCount > 0)
    return feasible.filter((m) => {
      const x = p.x(ti, m);
      return use2[x]! + g <= lim2[x]! && holds.room(x, g, endBy);
    });
  const tenant = p.tenantAt[ti]?.name ?? job.tenantId;
  if (held) {
    // Within the limit, but the tenant's headroom is held for its own older, starving job.
    const { hold, model } = holds.blocking(ti, feasible, g, endBy)!;
    const said = sentence(heldSaid, tenant, job, () => ({ jobId: '', t: NaN, msg: '' }));
    if (said.jobId !== hold.jobId || said.t !== hold.t) {
      said.jobId = hold.jobId;
      said.t = hold.t;
      said.msg = messages.limitHeld(job, tenant, hold.jobId, hold.t);
    }
    p.explain(job, 'reservation_for_larger_job', said.msg, Math.max(hold.t, p.fluid(model)), model);
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
  // The figures the sentence names, per feasible type in order (at most two types).
  const x0 = p.x(ti, feasible[0]!);
  const x1 = feasible.length > 1 ? p.x(ti, feasible[1]!) : -1;
  const [u0, l0, u1, l1] = [use2[x0]!, lim2[x0]!, x1 < 0 ? 0 : use2[x1]!, x1 < 0 ? 0 : lim2[x1]!];
  const said = sentence(overSaid, tenant, job, () => ({ x0: -1, x1: -1, u0: NaN, l0: NaN, u1: NaN, l1: NaN, msg: '' }));
  if (said.x0 !== x0 || said.x1 !== x1 || said.u0 !== u0 || said.l0 !== l0 || said.u1 !== u1 || said.l1 !== l1) {
    Object.assign(said, { x0, x1, u0, l0, u1, l1 });
    const detail = feasible.map((m) => `${use2[p.x(ti, m)]!} of ${lim2[p.x(ti, m)]!} ${m.toUpperCase()} GPUs in use or claimed`).join(', ');
    said.msg = messages.overLimit(job, tenant, detail);
  }
  p.explain(job, 'over_quota_limit', said.msg, est, model);
  return null;
}

/**
 * The last over-limit and limit-held sentences, by tenant and job kind (GPUs and type), with the
 * figures they were built from; kept between passes. When every tenant is at its limit, most of a
 * big queue is explained by these two: a fresh sentence per job and pass (same words, another
 * string) cost a 100,000-job pass about as much as its plan, once to build and once more where
 * the server compares it with the stored one (issue 13). While the figures hold, the words are
 * the same string object, so that comparison is by reference.
 */
interface OverSaid {
  x0: number;
  x1: number;
  u0: number;
  l0: number;
  u1: number;
  l1: number;
  msg: string;
}
interface HeldSaid {
  jobId: string;
  t: number;
  msg: string;
}
const overSaid = new Map<string, Map<number, OverSaid>>();
const heldSaid = new Map<string, Map<number, HeldSaid>>();
/** Tenants kept at most (a bound, far above any center's). */
const SAID_TENANTS = 10_000;

function sentence<T>(cache: Map<string, Map<number, T>>, tenant: string, job: PendingJob, blank: () => T): T {
  let byKind = cache.get(tenant);
  if (!byKind) {
    if (cache.size >= SAID_TENANTS) cache.clear();
    cache.set(tenant, (byKind = new Map()));
  }
  const kind = kindKey(job);
  let said = byKind.get(kind);
  if (!said) byKind.set(kind, (said = blank()));
  return said;
}
