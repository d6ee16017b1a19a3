import { PRIORITY_RANK } from '@nuri/contracts';
import type { NodeWithGpus, PendingJobRow, RunningWithPlacement, TenantWithQuotas } from '@nuri/db';
import { accrueUsage, decayUsage, type PendingJob, type PolicyConfig, type Snapshot } from '@nuri/scheduling';
import type { Annotation } from './annotations';

export interface SnapshotInputs {
  now: Date;
  tenants: TenantWithQuotas[];
  usage: { tenantId: string; decayed: number; asOf: Date }[];
  nodes: NodeWithGpus[];
  pending: PendingJobRow[];
  running: RunningWithPlacement[];
  /** Nodes whose agent was last heard before this take no new job (absent: no such check). */
  heardSince?: Date;
  halfLifeSeconds: number;
  policy: PolicyConfig;
}

/** Decays a usage figure recorded at `asOf` to `now`. */
export function decay(value: number, asOf: Date, now: Date, halfLifeSeconds: number): number {
  return decayUsage(value, (now.getTime() - asOf.getTime()) / 1000, halfLifeSeconds);
}

/**
 * A pending job in the core's form, with the wait the leader last stored for it (`wait`, which
 * the core never reads): a pass compares each of 100,000 jobs' new wait with it, and looking it
 * up by id in a map that size was the largest item of a steady pass's profile.
 */
export interface LivePending extends PendingJob {
  wait: Annotation | undefined;
}

/**
 * The core's view of a pending row, made once per row object: the leader keeps its pending
 * rows between passes (LiveJobs) and replaces a row when the job changes, so 100,000 jobs are
 * not converted again every pass, and a changed job's remembered wait goes with its old row.
 * The core never mutates its snapshot.
 */
const corePendingOf = new WeakMap<PendingJobRow, LivePending>();
export function corePending(j: PendingJobRow): LivePending {
  let c = corePendingOf.get(j);
  if (!c) {
    c = {
      id: j.id,
      tenantId: j.tenant_id,
      gpus: j.gpus,
      gpuType: j.gpu_type,
      priority: PRIORITY_RANK[j.priority],
      submittedAt: j.submitted_at.getTime(),
      queuedAt: j.queued_at.getTime(),
      timeLimitSeconds: j.time_limit_seconds,
      wait: undefined,
    };
    corePendingOf.set(j, c);
  }
  return c;
}

/** The core's form of a node's GPUs, made once per list (LiveNodes keeps a node's list while it does not change). */
const coreGpusOf = new WeakMap<NodeWithGpus['gpus'], Snapshot['nodes'][number]['gpus']>();
function coreGpus(gpus: NodeWithGpus['gpus']): Snapshot['nodes'][number]['gpus'] {
  let c = coreGpusOf.get(gpus);
  if (!c) coreGpusOf.set(gpus, (c = gpus.map((g) => ({ index: g.index, healthy: g.healthy }))));
  return c;
}

/**
 * Turns database rows into the core's snapshot. Usage counts finished work (decayed)
 * plus the GPU-seconds running jobs have used so far, so a tenant hogging the center
 * right now ranks behind one that is not.
 */
export function buildSnapshot(i: SnapshotInputs): Snapshot {
  const nowMs = i.now.getTime();
  const usage = new Map<string, number>();
  for (const u of i.usage) usage.set(u.tenantId, (usage.get(u.tenantId) ?? 0) + decay(u.decayed, u.asOf, i.now, i.halfLifeSeconds));
  for (const r of i.running) usage.set(r.tenantId, (usage.get(r.tenantId) ?? 0) + accrueUsage(0, r.gpus, (nowMs - r.startedAt.getTime()) / 1000, i.halfLifeSeconds));
  return {
    now: nowMs,
    config: i.policy,
    tenants: i.tenants.map((t) => ({
      id: t.id,
      name: t.name,
      weight: t.weight,
      quotas: Object.fromEntries(t.quotas.map((q) => [q.gpuType, { guaranteed: q.guaranteed, limit: q.limit }])),
      decayedUsage: usage.get(t.id) ?? 0,
    })),
    nodes: i.nodes.map((n) => ({
      id: n.id,
      name: n.name,
      gpuType: n.gpuType,
      rack: n.rack,
      leafSwitch: n.leafSwitch,
      schedulable: n.state === 'up' && (!i.heardSince || (n.lastHeartbeatAt !== null && n.lastHeartbeatAt >= i.heardSince)),
      gpus: coreGpus(n.gpus),
    })),
    pending: i.pending.map(corePending),
    running: i.running.map((r) => ({
      id: r.id,
      tenantId: r.tenantId,
      gpus: r.gpus,
      gpuModel: r.gpuModel,
      priority: PRIORITY_RANK[r.priority],
      submittedAt: r.submittedAt.getTime(),
      queuedAt: r.queuedAt.getTime(),
      startedAt: r.startedAt.getTime(),
      timeLimitSeconds: r.timeLimitSeconds,
      placement: r.placement.map((p) => ({ nodeId: p.nodeId, gpuIndices: p.gpuIndices })),
      stopping: r.stopRequested !== null,
    })),
  };
}
