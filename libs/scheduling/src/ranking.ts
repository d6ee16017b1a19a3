/**
 * The order in which one pass considers pending jobs.
 *  - fifo: submission time.
 *  - slurm: priority class, then submission time (no notion of tenants).
 *  - nuri: tenants interleaved. A tenant's next job that still fits within its guarantee goes
 *    first (that capacity is the tenant's by right); otherwise the tenant with the lowest
 *    fair-share key goes next, key = (decayed usage + GPU-seconds it has committed: running
 *    jobs' remaining time and the jobs already ranked ahead of this one) / weight. Charging
 *    the ranked jobs makes tenants alternate within one pass instead of the least-used tenant
 *    taking every idle GPU. Within a tenant: priority class, then submission time.
 *  Ties are broken by ids throughout.
 */
import { cmp } from './cluster';
import { GpuModel, PendingJob, PolicyMode, Snapshot, SnapshotTenant } from './types';

export interface Usage {
  h100: number;
  h800: number;
}

export function allowedModels(job: PendingJob): GpuModel[] {
  if (job.gpuType === 'h100' || job.gpuType === 'h800') return [job.gpuType];
  // Multi-node jobs prefer H100 (NVLink 900 GB/s); single-node ones H800, to keep H100 whole.
  return job.gpus > 8 ? ['h100', 'h800'] : ['h800', 'h100'];
}

const withinTenant = (a: PendingJob, b: PendingJob) =>
  b.priority - a.priority || a.submittedAt - b.submittedAt || cmp(a.id, b.id);

export function rankPending(snapshot: Snapshot, mode: PolicyMode, used: Map<string, Usage>): PendingJob[] {
  const starvationMs = (snapshot.config.starvationSeconds ?? 12 * 3600) * 1000;
  const starving = starvationMs > 0 ? snapshot.now - starvationMs : -Infinity;
  const jobs = [...snapshot.pending];
  if (mode === 'fifo') return jobs.sort((a, b) => a.submittedAt - b.submittedAt || cmp(a.id, b.id));
  if (mode === 'slurm') return jobs.sort(withinTenant);

  const now = snapshot.now;
  const tenants = new Map<string, SnapshotTenant>(snapshot.tenants.map((t) => [t.id, t]));
  const queues = new Map<string, PendingJob[]>();
  for (const j of jobs) {
    let q = queues.get(j.tenantId);
    if (!q) queues.set(j.tenantId, (q = []));
    q.push(j);
  }
  const committed = new Map<string, number>();
  for (const r of snapshot.running) {
    const left = Math.max(0, r.startedAt + r.timeLimitSeconds * 1000 - now) / 1000;
    committed.set(r.tenantId, (committed.get(r.tenantId) ?? 0) + left * r.gpus);
  }
  interface Q {
    id: string;
    jobs: PendingJob[];
    head: number;
    virt: Usage;
    guaranteed: Usage;
    share: number;
    weight: number;
    tier: number;
  }
  const qs: Q[] = [];
  for (const [id, list] of [...queues.entries()].sort((a, b) => cmp(a[0], b[0]))) {
    list.sort(withinTenant);
    const t = tenants.get(id);
    const u = used.get(id) ?? { h100: 0, h800: 0 };
    const q: Q = {
      id,
      jobs: list,
      head: 0,
      virt: { h100: u.h100, h800: u.h800 },
      guaranteed: { h100: t?.quotas.h100?.guaranteed ?? 0, h800: t?.quotas.h800?.guaranteed ?? 0 },
      share: (t?.decayedUsage ?? 0) + (committed.get(id) ?? 0),
      weight: Math.max(t?.weight ?? 1, 1e-9),
      tier: 2,
    };
    q.tier = tierOf(q, list[0]);
    qs.push(q);
  }
  // Tier 0: waited past the starvation threshold, oldest first: ahead even of guaranteed work,
  // or newcomers within their guarantee would push its reservation back pass after pass.
  // Tier 1: fits within the guarantee. Tier 2: fair share.
  function tierOf(q: Q, j: PendingJob): number {
    if (j.submittedAt <= starving) return 0;
    for (const m of allowedModels(j)) if (q.virt[m] + j.gpus <= q.guaranteed[m]) return 1;
    return 2;
  }
  const out: PendingJob[] = [];
  let live = qs.length;
  while (live > 0) {
    let best: Q | null = null;
    for (const q of qs) {
      if (q.head >= q.jobs.length) continue;
      if (
        !best ||
        q.tier < best.tier ||
        (q.tier === best.tier &&
          (q.tier === 0
            ? q.jobs[q.head].submittedAt < best.jobs[best.head].submittedAt
            : q.share / q.weight < best.share / best.weight))
      )
        best = q;
    }
    const q = best!;
    const j = q.jobs[q.head++];
    out.push(j);
    // Charge the model with the most guaranteed headroom left (the one it would reclaim on).
    const ms = allowedModels(j);
    let m = ms[0];
    for (const x of ms) if (q.guaranteed[x] - q.virt[x] > q.guaranteed[m] - q.virt[m]) m = x;
    q.virt[m] += j.gpus;
    q.share += j.gpus * j.timeLimitSeconds;
    if (q.head < q.jobs.length) q.tier = tierOf(q, q.jobs[q.head]);
    else live--;
  }
  return out;
}
