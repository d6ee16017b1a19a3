/**
 * One scheduling pass: rank pending jobs, start what fits now (gang, topology-aware), reclaim
 * guaranteed capacity from borrowers, hold backfill reservations for the first blocked jobs,
 * and explain every job left pending with an estimated start. Pure: snapshot in, plan out.
 *
 * The pass's state is a Pass (pass.ts); each step is a module of its own: limit-holds.ts (quota
 * limits), place.ts (start now), reclaim.ts (preempt borrowers), reserve.ts (reservations and
 * estimates). This file walks the ranked jobs through them in that order.
 */
import { Cluster } from './cluster';
import { messages } from './explain';
import { withinLimits } from './limit-holds';
import { Pass } from './pass';
import { REC, R_TYPE } from './ranking';
import { Plan, PlanOptions, Snapshot } from './types';

/**
 * `until`: stop once these jobs have been planned (see PlanOptions); the plan is then the
 * full plan's prefix, in rank order, up to the last of them.
 */
export function schedule(snapshot: Snapshot, opts: PlanOptions = {}): Plan {
  return planOn(new Cluster(snapshot, graceOf(snapshot)), snapshot, opts);
}

export const graceOf = (snapshot: Snapshot) => snapshot.config.preemptGraceSeconds * 1000;

/** One pass over a cluster already in the state the snapshot gives (fresh, or synced to it). */
export function planOn(cl: Cluster, snapshot: Snapshot, opts: PlanOptions = {}): Plan {
  const p = new Pass(cl, snapshot);
  const until = opts.until;
  // A job's decision depends only on the jobs ranked ahead of it: past the last job asked
  // about, the walk changes nothing it was asked for.
  let left = until ? until.size : -1;
  for (let oi = 0; oi < p.order.length && left !== 0; oi++) {
    planJob(p, oi);
    if (until && until.has(p.job.id)) left--;
  }
  return p.plan();
}

/** The job at rank position oi: start it, reclaim for it, or reserve for it and say why it waits. */
function planJob(p: Pass, oi: number): void {
  const ti = p.readJob(oi);
  const job = p.job;
  const { existing, feasible } = p.feasibility(p.rec[oi * REC + R_TYPE]! | 0, job.gpus);
  if (existing.length === 0) return p.explain(job, 'no_node_of_type', messages.noNodeOfType(job), null);
  if (feasible.length === 0) return p.explain(job, 'nodes_unavailable', messages.nodesUnavailable(job), null);
  if (p.strictBlocked) {
    const m = p.fluidPick(feasible);
    p.explain(job, 'behind_higher_ranked', messages.strictOrder(job, p.blockedOn.h100 + p.blockedOn.h800), p.fluid(m), m);
    return p.queueWork(job, m);
  }
  const allowed = p.quotas ? withinLimits(p, job, feasible, ti) : feasible;
  if (allowed === null) return;
  if (p.placer.startWithin(job, allowed, ti)) return;
  if (p.reclaimer.tryReclaim(job, allowed, ti, oi)) return;
  p.reserver.block(job, allowed, ti);
}

export { borrowedJobs } from './reclaim';
