/**
 * Test harness in the style of Nomad's scheduler tests: seed nodes, tenants and jobs, run a
 * pass, assert on the recorded plan. `World` also drives passes in simulated time (apply a
 * plan, let preempted jobs stop after the grace period, finish jobs) for multi-pass properties.
 */
import { DEFAULT_POLICY_CONFIG } from '../config';
import { schedule } from '../policy';
import {
  GpuModel,
  GpuTypeWanted,
  PendingJob,
  Plan,
  PolicyConfig,
  RunningJob,
  Snapshot,
  SnapshotNode,
  SnapshotTenant,
} from '../types';

export const HOUR = 3600;
export const T0 = Date.UTC(2026, 0, 1);

export interface NodeOpts {
  leaf?: string;
  rack?: string;
  schedulable?: boolean;
  unhealthy?: number[];
  gpus?: number;
}

/** What a property test draws for a job already running: its tenant (t0, t1, ...), a node (modulo the fleet), GPUs and hours. */
export interface BusySpec {
  tenant: number;
  node: number;
  gpus: number;
  hours: number;
}

/** A node of 8 healthy GPUs on one rack and leaf switch. */
export const eightGpuNode = (id: string, gpuType: GpuModel): SnapshotNode => ({ id, name: id, gpuType, rack: 'r', leafSwitch: 'l', schedulable: true, gpus: Array.from({ length: 8 }, (_, index) => ({ index, healthy: true })) });

/**
 * A small fleet for property tests: `h100` then `h800` nodes of 8 healthy GPUs (ids `h100-0`,
 * ...), and the drawn running jobs placed on their node's lowest free GPUs (those that do not
 * fit are left out), started an hour before T0.
 */
export function smallFleet(h100: number, h800: number, busy: readonly BusySpec[], opts: { submittedAt: number; stopping?: (i: number) => boolean }): { nodes: SnapshotNode[]; running: RunningJob[] } {
  const nodes = [...Array.from({ length: h100 }, (_, i) => eightGpuNode(`h100-${i}`, 'h100')), ...Array.from({ length: h800 }, (_, i) => eightGpuNode(`h800-${i}`, 'h800'))];
  const free = new Map(nodes.map((n) => [n.id, [0, 1, 2, 3, 4, 5, 6, 7]]));
  const running: RunningJob[] = [];
  busy.forEach((b, i) => {
    const n = nodes[b.node % nodes.length]!;
    const f = free.get(n.id)!;
    if (f.length < b.gpus) return;
    running.push({ id: `r${i}`, tenantId: `t${b.tenant}`, gpus: b.gpus, gpuModel: n.gpuType, priority: 1, submittedAt: opts.submittedAt, startedAt: T0 - HOUR * 1000, timeLimitSeconds: b.hours * HOUR, placement: [{ nodeId: n.id, gpuIndices: f.splice(0, b.gpus) }], stopping: opts.stopping?.(i) ?? false });
  });
  return { nodes, running };
}

export class Harness {
  now = T0;
  nodes: SnapshotNode[] = [];
  tenants: SnapshotTenant[] = [];
  pending: PendingJob[] = [];
  running: RunningJob[] = [];
  config: PolicyConfig = { ...DEFAULT_POLICY_CONFIG };
  plan: Plan | null = null;
  private seq = 0;

  /** Nodes named `${model}-${i}`, `perLeaf` to a leaf switch. */
  addNodes(model: GpuModel, count: number, opts: NodeOpts & { perLeaf?: number } = {}): this {
    const start = this.nodes.filter((n) => n.gpuType === model).length;
    for (let i = start; i < start + count; i++) {
      const leaf = opts.leaf ?? `${model}-leaf${Math.floor(i / (opts.perLeaf ?? 4))}`;
      this.addNode(`${model}-${String(i).padStart(3, '0')}`, model, { ...opts, leaf });
    }
    return this;
  }

  addNode(id: string, model: GpuModel, opts: NodeOpts = {}): this {
    const unhealthy = new Set(opts.unhealthy ?? []);
    this.nodes.push({
      id,
      name: id,
      gpuType: model,
      rack: opts.rack ?? opts.leaf ?? 'rack0',
      leafSwitch: opts.leaf ?? 'leaf0',
      schedulable: opts.schedulable ?? true,
      gpus: Array.from({ length: opts.gpus ?? 8 }, (_, index) => ({ index, healthy: !unhealthy.has(index) })),
    });
    return this;
  }

  /** quotas: per type [guaranteed, limit]. */
  addTenant(
    id: string,
    quotas: Partial<Record<GpuModel, [number, number]>>,
    opts: { weight?: number; usage?: number } = {},
  ): this {
    const q: Partial<Record<GpuModel, { guaranteed: number; limit: number }>> = {};
    for (const [m, v] of Object.entries(quotas) as [GpuModel, [number, number]][]) q[m] = { guaranteed: v[0], limit: v[1] };
    this.tenants.push({ id, name: id, weight: opts.weight ?? 1, quotas: q, decayedUsage: opts.usage ?? 0 });
    return this;
  }

  submit(
    tenantId: string,
    gpus: number,
    opts: { id?: string; type?: GpuTypeWanted; priority?: number; at?: number; limitH?: number; queuedAgoH?: number } = {},
  ): string {
    const id = opts.id ?? `j${String(++this.seq).padStart(4, '0')}`;
    this.pending.push({
      id,
      tenantId,
      gpus,
      gpuType: opts.type ?? 'any',
      priority: opts.priority ?? 1,
      submittedAt: opts.at ?? this.now - 1000 * (10_000 - this.seq),
      // Back in the queue since then (a requeue after preemption); absent: since submission.
      ...(opts.queuedAgoH !== undefined ? { queuedAt: this.now - opts.queuedAgoH * HOUR * 1000 } : {}),
      timeLimitSeconds: (opts.limitH ?? 4) * HOUR,
    });
    return id;
  }

  /** A running job on given nodes (whole nodes when gpus > 8; lowest free indices otherwise). */
  run(
    tenantId: string,
    gpus: number,
    nodeIds: string[],
    opts: { id?: string; priority?: number; startedAgoH?: number; limitH?: number; stopping?: boolean; waitedH?: number } = {},
  ): string {
    const id = opts.id ?? `r${String(++this.seq).padStart(4, '0')}`;
    const node0 = this.nodes.find((n) => n.id === nodeIds[0]);
    if (!node0) throw new Error(`no node ${nodeIds[0]}`);
    const taken = (nodeId: string) => new Set(this.running.flatMap((r) => r.placement.filter((p) => p.nodeId === nodeId).flatMap((p) => p.gpuIndices)));
    const placement = nodeIds.map((nodeId) => {
      const t = taken(nodeId);
      const want = gpus > 8 ? 8 : gpus;
      const free = [0, 1, 2, 3, 4, 5, 6, 7].filter((i) => !t.has(i)).slice(0, want);
      if (free.length < want) throw new Error(`node ${nodeId} has no room for ${want}`);
      return { nodeId, gpuIndices: free };
    });
    const startedAt = this.now - (opts.startedAgoH ?? 1) * HOUR * 1000;
    this.running.push({
      id,
      tenantId,
      gpus,
      gpuModel: node0.gpuType,
      priority: opts.priority ?? 1,
      // waitedH: how long it waited in the queue before this start (default 1 s).
      submittedAt: startedAt - (opts.waitedH ?? 1 / 3600) * HOUR * 1000,
      startedAt,
      timeLimitSeconds: (opts.limitH ?? 24) * HOUR,
      placement,
      stopping: opts.stopping ?? false,
    });
    return id;
  }

  snapshot(): Snapshot {
    return {
      now: this.now,
      nodes: this.nodes,
      tenants: this.tenants,
      pending: this.pending,
      running: this.running,
      config: this.config,
    };
  }

  pass(): Plan {
    this.plan = schedule(this.snapshot());
    return this.plan;
  }

  started(jobId: string) {
    return this.plan!.starts.find((s) => s.jobId === jobId);
  }
  explanation(jobId: string) {
    return this.plan!.pending.find((p) => p.jobId === jobId);
  }
  reason(jobId: string) {
    return this.explanation(jobId)?.reason ?? (this.started(jobId) ? 'started' : 'missing');
  }
  preempted(): string[] {
    return this.plan!.preemptions.map((p) => p.jobId).sort();
  }
}

/** Multi-pass driver in simulated time: durations are known to the world, not to the policy. */
export class World {
  now: number;
  running: RunningJob[] = [];
  pending: PendingJob[] = [];
  finished = new Map<string, number>();
  startedAt = new Map<string, number>();
  /** Seconds of work each job still has (reset on preemption: no checkpoints). */
  duration = new Map<string, number>();
  /** Every preemption: when, victim, beneficiary. */
  preemptions: { at: number; jobId: string; forJobId: string }[] = [];
  /** Beneficiaries of reclaim (started within their guarantee). */
  stopAt = new Map<string, number>();
  plans = 0;

  constructor(
    readonly nodes: SnapshotNode[],
    readonly tenants: SnapshotTenant[],
    readonly config: PolicyConfig,
    now = T0,
  ) {
    this.now = now;
  }

  private original = new Map<string, PendingJob>();

  submit(job: PendingJob, durationSeconds: number): void {
    this.pending.push(job);
    this.original.set(job.id, job);
    this.duration.set(job.id, durationSeconds);
  }

  snapshot(): Snapshot {
    // Copies: step() changes the world's arrays, and a snapshot must stay what it was.
    return { now: this.now, nodes: this.nodes, tenants: this.tenants, pending: [...this.pending], running: [...this.running], config: this.config };
  }

  /** Run one pass and apply it. */
  step(): Plan {
    const plan = schedule(this.snapshot());
    this.plans++;
    const byId = new Map(this.pending.map((j) => [j.id, j]));
    for (const s of plan.starts) {
      const j = byId.get(s.jobId)!;
      this.pending = this.pending.filter((p) => p.id !== s.jobId);
      this.running.push({
        id: j.id,
        tenantId: j.tenantId,
        gpus: j.gpus,
        gpuModel: s.gpuModel,
        priority: j.priority,
        submittedAt: j.submittedAt,
        queuedAt: j.queuedAt,
        startedAt: this.now,
        timeLimitSeconds: j.timeLimitSeconds,
        placement: s.placement,
        stopping: false,
      });
      this.startedAt.set(j.id, this.now);
    }
    for (const p of plan.preemptions) {
      const r = this.running.find((x) => x.id === p.jobId)!;
      this.running = this.running.map((x) => (x.id === p.jobId ? { ...x, stopping: true } : x));
      this.stopAt.set(r.id, this.now + this.config.preemptGraceSeconds * 1000);
      this.preemptions.push({ at: this.now, jobId: p.jobId, forJobId: p.forJobId });
    }
    return plan;
  }

  /** The next time something happens (a job ends or a preempted job stops), or null. */
  nextEvent(): number | null {
    let t = Infinity;
    for (const r of this.running) {
      const end = Math.min(
        r.startedAt + Math.min(this.duration.get(r.id)!, r.timeLimitSeconds) * 1000,
        this.stopAt.get(r.id) ?? Infinity,
      );
      t = Math.min(t, end);
    }
    return t === Infinity ? null : Math.max(t, this.now);
  }

  /** Advance to t: finished jobs leave, preempted ones go back to pending. */
  advance(t: number): void {
    this.now = t;
    const keep: RunningJob[] = [];
    for (const r of this.running) {
      const stop = this.stopAt.get(r.id);
      const end = r.startedAt + Math.min(this.duration.get(r.id)!, r.timeLimitSeconds) * 1000;
      if (stop !== undefined && stop <= t && stop < end) {
        this.stopAt.delete(r.id);
        // Back in the queue: starvation counts from now, as the live scheduler records it.
        this.pending.push({ ...this.original.get(r.id)!, queuedAt: t });
      } else if (end <= t) {
        this.stopAt.delete(r.id);
        this.finished.set(r.id, t);
      } else keep.push(r);
    }
    this.running = keep;
  }
}
