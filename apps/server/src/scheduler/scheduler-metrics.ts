import type { NodeWithGpus, RunningWithPlacement, TenantWithQuotas } from '@nuri/db';
import {
  LIVE_JOB_STATES,
  type GpuCountRow,
  type GpuTypeLabel,
  type JobCountRow,
  type JobGpuTypeLabel,
  type JobStateLabel,
  type NuriMetrics,
  type TenantRow,
} from '@nuri/metrics';
import type { LivePending } from './snapshot';

const GPU_TYPES: readonly GpuTypeLabel[] = ['h100', 'h800'];

export interface PassMetricsInputs {
  now: Date;
  tenants: TenantWithQuotas[];
  nodes: NodeWithGpus[];
  pending: LivePending[];
  running: RunningWithPlacement[];
}

/**
 * The pass's inputs with the starts it committed applied: started jobs join `running` and hold
 * their GPUs, so the gauges show the state the pass left behind. `gone` names them for the
 * walks of the pending list to skip (`tenantRows`): copying 100,000 pending jobs into a new
 * list to leave out 1,000 took about 35 ms. `rows`: the started jobs' pending rows.
 */
export function afterStarts(
  i: { nodes: NodeWithGpus[]; running: RunningWithPlacement[] },
  plan: { starts: readonly { jobId: string; gpuModel: GpuTypeLabel; placement: readonly { nodeId: string; gpuIndices: readonly number[] }[] }[] },
  started: readonly string[],
  rows: ReadonlyMap<string, LivePending>,
  now: Date,
): { nodes: NodeWithGpus[]; running: RunningWithPlacement[]; gone: ReadonlySet<string> } {
  const gone = new Set(started);
  if (!started.length) return { ...i, gone };
  const taken = new Map<string, Map<number, string>>();
  const running = [...i.running];
  for (const s of plan.starts) {
    const j = rows.get(s.jobId);
    if (!gone.has(s.jobId) || !j) continue;
    for (const p of s.placement) {
      const onNode = taken.get(p.nodeId) ?? new Map<number, string>();
      for (const g of p.gpuIndices) onNode.set(g, s.jobId);
      taken.set(p.nodeId, onNode);
    }
    running.push({
      id: j.id,
      tenantId: j.tenantId,
      gpus: j.gpus,
      gpuModel: s.gpuModel,
      priority: j.priorityName,
      submittedAt: new Date(j.submittedAt),
      queuedAt: new Date(j.queuedAt),
      startedAt: now,
      timeLimitSeconds: j.timeLimitSeconds,
      stopRequested: null,
      placement: s.placement.map((p) => ({ nodeId: p.nodeId, nodeName: '', gpuIndices: [...p.gpuIndices] })),
    });
  }
  return {
    nodes: i.nodes.map((n) => {
      const onNode = taken.get(n.id);
      return onNode ? { ...n, gpus: n.gpus.map((g) => (onNode.has(g.index) ? { ...g, jobId: onNode.get(g.index)! } : g)) } : n;
    }),
    running,
    gone,
  };
}

/**
 * GPUs by type and capacity state, from the pass's node list. A GPU held by a live
 * allocation is `allocated` wherever it is; otherwise `unhealthy` when marked so, `free`
 * on an `up` node, and `unavailable` on a draining, drained or down node.
 */
export function gpuCounts(nodes: readonly NodeWithGpus[]): GpuCountRow[] {
  // Rows by type, then per node one row object per state: no key built per GPU (32,000 a pass).
  const states = ['allocated', 'free', 'unhealthy', 'unavailable'] as const;
  const byType = new Map(GPU_TYPES.map((t) => [t, states.map((state) => ({ gpuType: t, state, count: 0 }))] as const));
  for (const n of nodes) {
    const [allocated, free, unhealthy, unavailable] = byType.get(n.gpuType)!;
    const healthyState = n.state === 'up' ? free! : unavailable!;
    for (const g of n.gpus) (g.jobId !== null ? allocated! : !g.healthy ? unhealthy! : healthyState).count += 1;
  }
  return [...byType.values()].flat();
}

/**
 * Quota, allocation, pending GPUs and oldest pending age per tenant and GPU type. A
 * pending job asking for `any` type counts where its tenant is furthest below its
 * guarantee (ties: h100), so it is counted once and shows up in the shortfall gauge.
 * Rows exist for every type a tenant has a quota for, holds GPUs of, or waits for. `gone`:
 * pending jobs to leave out (those the pass started, see `afterStarts`).
 */
export function tenantRows(i: PassMetricsInputs, pendingSince: (job: LivePending) => number, gone?: ReadonlySet<string>): TenantRow[] {
  const nowMs = i.now.getTime();
  // Per tenant id, its row of each type, and the earliest wait start of each (ms): one Map
  // lookup per pending job, not a key string and two (100,000 jobs took 50-90 ms every 5 s).
  interface Rows {
    name: string;
    h100?: TenantRow;
    h800?: TenantRow;
    since: { h100: number; h800: number };
  }
  const byTenant = new Map<string, Rows>(i.tenants.map((t) => [t.id, { name: t.name, since: { h100: Infinity, h800: Infinity } }]));
  const all: TenantRow[] = [];
  const row = (of: Rows, t: GpuTypeLabel): TenantRow => {
    let r = of[t];
    if (!r) all.push((r = of[t] = { tenant: of.name, gpuType: t, guaranteed: 0, limit: 0, allocated: 0, pendingGpus: 0 }));
    return r;
  };
  for (const t of i.tenants) {
    const of = byTenant.get(t.id)!;
    for (const q of t.quotas) {
      const r = row(of, q.gpuType);
      r.guaranteed = q.guaranteed;
      r.limit = q.limit;
    }
  }
  for (const j of i.running) {
    const of = byTenant.get(j.tenantId);
    if (of) row(of, j.gpuModel).allocated += j.gpus;
  }
  const pend = (of: Rows, t: GpuTypeLabel, j: LivePending) => {
    row(of, t).pendingGpus += j.gpus;
    const since = pendingSince(j);
    if (since < of.since[t]) of.since[t] = since;
  };
  const pendingAny: LivePending[] = [];
  for (const j of i.pending) {
    if (gone?.has(j.id)) continue;
    if (j.gpuType === 'any') pendingAny.push(j);
    else {
      const of = byTenant.get(j.tenantId);
      if (of) pend(of, j.gpuType, j);
    }
  }
  for (const j of pendingAny) {
    const of = byTenant.get(j.tenantId);
    if (!of) continue;
    const headroom = (t: GpuTypeLabel) => {
      const r = of[t];
      return r ? r.guaranteed - r.allocated - r.pendingGpus : 0;
    };
    pend(of, headroom('h800') > headroom('h100') ? 'h800' : 'h100', j);
  }
  for (const of of byTenant.values())
    for (const t of GPU_TYPES) {
      const r = of[t];
      if (r && of.since[t] !== Infinity) r.oldestPendingSeconds = Math.max(0, (nowMs - of.since[t]) / 1000);
    }
  return all.sort((a, b) => a.tenant.localeCompare(b.tenant) || a.gpuType.localeCompare(b.gpuType));
}

/** Live jobs (pending, running) by state, tenant name and requested GPU type, from JobsRepository.countByState. */
export function jobCounts(rows: readonly { tenantId: string; state: string; gpuType: string; n: number }[], tenantNames: ReadonlyMap<string, string>): JobCountRow[] {
  const out: JobCountRow[] = [];
  for (const r of rows) {
    if (!LIVE_JOB_STATES.includes(r.state as JobStateLabel)) continue;
    const tenant = tenantNames.get(r.tenantId);
    if (tenant === undefined || r.n <= 0) continue;
    out.push({ state: r.state as JobStateLabel, tenant, gpuType: r.gpuType as JobGpuTypeLabel, count: r.n });
  }
  return out;
}

/**
 * What the leader remembers between passes for the metrics: up to when each running
 * job's GPU time has been counted (so the usage counter is continuous).
 */
export class SchedulerMetricsState {
  private readonly countedUntil = new Map<string, { until: number; tenant: string; gpuType: GpuTypeLabel; gpus: number }>();
  /** Nothing before this is counted (leadership start: the previous leader counted it). */
  private floorMs = 0;
  private lastJobCountsMs = -Infinity;
  private knownNodes = new Set<string>();

  constructor(private readonly metrics: NuriMetrics) {}

  /** Leadership acquired (`atMs`) or lost (null): state restarts. */
  leader(atMs: number | null): void {
    this.countedUntil.clear();
    this.floorMs = atMs ?? 0;
    this.lastJobCountsMs = -Infinity;
    this.lastGaugesMs = -Infinity;
    this.metrics.setLeader(atMs !== null);
  }

  /** Since when (epoch ms) the job has been waiting: its submission or its last requeue (recorded with the transition, so exact across leaders). */
  pendingSince = (j: LivePending): number => j.queuedAt;

  /**
   * Usage: every running job's GPUs × time since it was last counted (or started). A job
   * gone since the previous pass is counted up to now: the pass after a job ends runs on
   * the job-end wake-up, so this overcounts by about the wake-up latency only.
   */
  accountUsage(now: Date, running: readonly RunningWithPlacement[], tenantNames: ReadonlyMap<string, string>): void {
    const nowMs = now.getTime();
    const seen = new Set<string>();
    const byTenant = new Map<string, { tenant: string; gpuType: GpuTypeLabel; seconds: number }>();
    const add = (tenant: string, gpuType: GpuTypeLabel, seconds: number) => {
      if (seconds <= 0) return;
      const k = `${tenant}/${gpuType}`;
      const e = byTenant.get(k) ?? { tenant, gpuType, seconds: 0 };
      e.seconds += seconds;
      byTenant.set(k, e);
    };
    for (const j of running) {
      seen.add(j.id);
      const tenant = tenantNames.get(j.tenantId);
      if (tenant === undefined) continue;
      const prev = this.countedUntil.get(j.id);
      const from = Math.max(prev?.until ?? j.startedAt.getTime(), j.startedAt.getTime(), this.floorMs);
      if (nowMs > from) add(tenant, j.gpuModel, (j.gpus * (nowMs - from)) / 1000);
      this.countedUntil.set(j.id, { until: Math.max(from, nowMs), tenant, gpuType: j.gpuModel, gpus: j.gpus });
    }
    for (const [id, c] of this.countedUntil) {
      if (seen.has(id)) continue;
      if (nowMs > c.until) add(c.tenant, c.gpuType, (c.gpus * (nowMs - c.until)) / 1000);
      this.countedUntil.delete(id);
    }
    for (const e of byTenant.values()) this.metrics.addUsage(e.tenant, e.gpuType, e.seconds);
  }

  /**
   * A job started at `atMs`, by a pass (after its `accountUsage`) or an express start: its GPU
   * time counts from then, also when it ends before the next pass sees it running (a job a pass
   * started that ended within a pass was never counted at all).
   */
  started(jobId: string, tenant: string, gpuType: GpuTypeLabel, gpus: number, atMs: number): void {
    if (!this.countedUntil.has(jobId)) this.countedUntil.set(jobId, { until: Math.max(atMs, this.floorMs), tenant, gpuType, gpus });
  }

  /**
   * Each node's type, state and registered GPU count, from the database (the gateways set
   * up, last seen and inventory from the agents). A node no longer in the database loses
   * all its series.
   */
  nodeInfo(nodes: readonly NodeWithGpus[]): void {
    const now = new Set<string>();
    for (const n of nodes) {
      now.add(n.name);
      this.metrics.setNodeInfo(n.name, { gpuType: n.gpuType, state: n.state, expectedGpus: n.gpus.length });
    }
    for (const name of this.knownNodes) if (!now.has(name)) this.metrics.removeNodeSeries(name);
    this.knownNodes = now;
  }

  private lastGaugesMs = -Infinity;

  /**
   * Whether this pass sets the snapshot gauges (GPUs by state, tenants' rows, node info): every
   * pass below 10,000 pending jobs; above, at most every 5 s (they walk every pending job, about
   * 0.1 s a pass at 100,000, and a scrape every 15 s sees no difference).
   */
  gaugesDue(nowMs: number, pending: number): boolean {
    if (pending >= 10_000 && nowMs - this.lastGaugesMs < 5000) return false;
    this.lastGaugesMs = nowMs;
    return true;
  }

  /** The jobs gauge (live jobs by tenant, state and type): refreshed at most every `minIntervalMs`. */
  jobCountsDue(nowMs: number, minIntervalMs: number): boolean {
    if (nowMs - this.lastJobCountsMs < minIntervalMs) return false;
    this.lastJobCountsMs = nowMs;
    return true;
  }
}
