import { GpuModel, PendingExplanation, Placement, Plan, PlannedStart, Snapshot } from './types';

const GPUS_PER_NODE = 8;

/**
 * Placeholder policy (to be replaced by the full one): priority then age order, gang
 * placement (one node for <= 8 GPUs, whole nodes beyond), GPU type honoured, quota limits.
 */
export function schedule(snapshot: Snapshot): Plan {
  const free = new Map<string, number[]>();
  for (const node of [...snapshot.nodes].sort((a, b) => a.id.localeCompare(b.id))) {
    if (!node.schedulable) continue;
    free.set(node.id, node.gpus.filter((g) => g.healthy).map((g) => g.index));
  }
  for (const job of snapshot.running) {
    for (const p of job.placement) {
      const f = free.get(p.nodeId);
      if (f) free.set(p.nodeId, f.filter((i) => !p.gpuIndices.includes(i)));
    }
  }
  const used = new Map<string, number>();
  const key = (tenantId: string, model: GpuModel) => `${tenantId}/${model}`;
  for (const job of snapshot.running) used.set(key(job.tenantId, job.gpuModel), (used.get(key(job.tenantId, job.gpuModel)) ?? 0) + job.gpus);
  const tenants = new Map(snapshot.tenants.map((t) => [t.id, t]));
  const nodes = snapshot.nodes.filter((n) => free.has(n.id));

  const order = [...snapshot.pending].sort(
    (a, b) => b.priority - a.priority || a.submittedAt - b.submittedAt || a.id.localeCompare(b.id),
  );
  const starts: PlannedStart[] = [];
  const pending: PendingExplanation[] = [];
  for (const job of order) {
    const models: GpuModel[] = job.gpuType === 'any' ? ['h100', 'h800'] : [job.gpuType];
    let placed: PlannedStart | null = null;
    let overQuota = true;
    for (const model of models) {
      const quota = tenants.get(job.tenantId)?.quotas[model];
      if (!quota || (used.get(key(job.tenantId, model)) ?? 0) + job.gpus > quota.limit) continue;
      overQuota = false;
      const candidates = nodes.filter((n) => n.gpuType === model);
      let placement: Placement[] | null = null;
      if (job.gpus <= GPUS_PER_NODE) {
        const node = candidates.find((n) => (free.get(n.id)?.length ?? 0) >= job.gpus);
        if (node) placement = [{ nodeId: node.id, gpuIndices: free.get(node.id)!.slice(0, job.gpus) }];
      } else {
        const whole = candidates.filter((n) => free.get(n.id)!.length === GPUS_PER_NODE).slice(0, job.gpus / GPUS_PER_NODE);
        if (whole.length === job.gpus / GPUS_PER_NODE) placement = whole.map((n) => ({ nodeId: n.id, gpuIndices: free.get(n.id)! }));
      }
      if (placement) {
        for (const p of placement) free.set(p.nodeId, free.get(p.nodeId)!.filter((i) => !p.gpuIndices.includes(i)));
        used.set(key(job.tenantId, model), (used.get(key(job.tenantId, model)) ?? 0) + job.gpus);
        placed = { jobId: job.id, gpuModel: model, placement };
        break;
      }
    }
    if (placed) starts.push(placed);
    else
      pending.push({
        jobId: job.id,
        reason: overQuota ? 'over_quota_limit' : 'waiting_for_resources',
        message: overQuota ? 'the tenant is at its quota limit for this GPU type' : 'waiting for free GPUs of that type',
        estimatedStartAt: null,
        queuePosition: pending.length + 1,
      });
  }
  return { starts, preemptions: [], pending };
}
