/**
 * Pending jobs a pass can skip without changing anything for the others (issue 13: express
 * starts plan a moved tenant's whole queue, and ranking 90,000 queued jobs of tenants at their
 * limits was most of each one).
 *
 * A job is inert when, on every type it may run on, its tenant already uses more than its limit
 * and its guarantee allow with it (`used` counts every running job, as the pass does), and it is
 * not starving. Such a job never starts, reclaims or reserves in a pass (use only grows within
 * a pass), and never fits the guarantee, so the ranking never pulls it forward. It still charges
 * its tenant's fair-share key for the jobs after it in the tenant's own order (priority, then
 * submission, then id), so only each tenant's trailing inert jobs are dropped: every other job
 * keeps its rank relative to all others, and its decision in the plan.
 */
import { starvationMsOf, starvingPriorityFloorOf } from './config';
import { agedPriority, allowedModels, usedByTenant } from './ranking';
import { cmp } from './cluster';
import type { PendingJob, Snapshot } from './types';

/** `keep`: jobs never dropped (those a caller asks about). */
export function withoutInertTails(snapshot: Pick<Snapshot, 'now' | 'config' | 'tenants' | 'running' | 'pending'>, keep: (id: string) => boolean = () => false): PendingJob[] {
  const pending = snapshot.pending;
  if ((snapshot.config.mode ?? 'nuri') !== 'nuri') return [...pending];
  const used = usedByTenant(snapshot.running);
  const tenants = new Map(snapshot.tenants.map((t) => [t.id, t]));
  const starvedBy = snapshot.now - starvationMsOf(snapshot.config);
  const floor = starvingPriorityFloorOf(snapshot.config);
  const inert = (j: PendingJob): boolean => {
    if (keep(j.id) || (j.queuedAt ?? j.submittedAt) <= starvedBy) return false;
    const q = tenants.get(j.tenantId)?.quotas;
    const u = used.get(j.tenantId);
    for (const m of allowedModels(j)) {
      const have = (u?.[m] ?? 0) + j.gpus;
      if (have <= (q?.[m]?.limit ?? 0) || have <= (q?.[m]?.guaranteed ?? 0)) return false;
    }
    return true;
  };
  // Each tenant's last job that is not inert, in the tenant's order (as ranking.ts sorts it).
  const prio = (j: PendingJob) => agedPriority(j, floor, starvedBy);
  const before = (a: PendingJob, b: PendingJob) => prio(a) > prio(b) || (prio(a) === prio(b) && (a.submittedAt < b.submittedAt || (a.submittedAt === b.submittedAt && cmp(a.id, b.id) < 0)));
  const flags = pending.map(inert);
  const last = new Map<string, PendingJob>();
  pending.forEach((j, i) => {
    if (flags[i]) return;
    const l = last.get(j.tenantId);
    if (!l || before(l, j)) last.set(j.tenantId, j);
  });
  return pending.filter((j, i) => {
    if (!flags[i]) return true;
    const l = last.get(j.tenantId);
    return l !== undefined && before(j, l);
  });
}
