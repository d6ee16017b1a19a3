/**
 * The scheduling core's whole world: an immutable snapshot in, a plan out.
 * Nothing here reads a clock, a database or a random source: `now` is an input,
 * and ties are broken by ids so the same snapshot always yields the same plan.
 * Times are milliseconds since the epoch (or since the start of a simulation).
 */
import type { GpuModelName } from '@nuri/contracts/gpu';

export type GpuModel = GpuModelName;
export type GpuTypeWanted = GpuModel | 'any';

export interface SnapshotGpu {
  index: number;
  healthy: boolean;
}

export interface SnapshotNode {
  id: string;
  name: string;
  gpuType: GpuModel;
  rack: string;
  leafSwitch: string;
  /** False when draining, drained or down: nothing new is placed there. */
  schedulable: boolean;
  gpus: readonly SnapshotGpu[];
}

export interface TenantQuota {
  guaranteed: number;
  limit: number;
}

export interface SnapshotTenant {
  id: string;
  name: string;
  weight: number;
  quotas: Readonly<Partial<Record<GpuModel, TenantQuota>>>;
  /** GPU-seconds of past usage, decayed with the configured half-life (the caller decays it). */
  decayedUsage: number;
}

export interface PendingJob {
  id: string;
  tenantId: string;
  gpus: number;
  gpuType: GpuTypeWanted;
  /** Higher runs first within a tenant. */
  priority: number;
  submittedAt: number;
  /**
   * When the job last entered the queue: its submission, or its requeue after a preemption or
   * a node failure (absent: submittedAt). Starvation counts from here, so a job sent back to
   * the queue is not "starving" the moment it returns (it would jump the queue and be
   * protected from reclaim again). Order within a tenant stays by submission.
   */
  queuedAt?: number;
  timeLimitSeconds: number;
}

export interface Placement {
  nodeId: string;
  gpuIndices: readonly number[];
}

export interface RunningJob {
  id: string;
  tenantId: string;
  gpus: number;
  gpuModel: GpuModel;
  priority: number;
  submittedAt: number;
  /** When the job last entered the queue before this run (absent: submittedAt); see PendingJob.queuedAt. */
  queuedAt?: number;
  startedAt: number;
  timeLimitSeconds: number;
  placement: readonly Placement[];
  /** Already told to stop (cancel or preemption in progress): its GPUs free soon, do not preempt again. */
  stopping: boolean;
}

export interface PolicyConfig {
  /** How many blocked jobs get a backfill reservation. */
  reservationDepth: number;
  /** Seconds a job runs before it may be preempted (again). */
  minRuntimeBeforePreemptSeconds: number;
  /** Seconds between SIGTERM and SIGKILL when preempting. */
  preemptGraceSeconds: number;
  /** Whether reclaiming guaranteed capacity by preemption is allowed at all. */
  preemption: boolean;
  /**
   * Policy variant (default 'nuri'). 'slurm': priority then age, backfill, no quotas, no
   * preemption. 'fifo': submission order, no backfill (the first blocked job blocks all).
   * 'greedy': submission order, every job that fits starts (first fit, no reservations).
   * The baselines exist for side-by-side comparison in the simulator.
   */
  mode?: PolicyMode;
  /**
   * Half-life of usage decay in seconds. The core does not decay (the caller does, see
   * decayUsage); carried here so callers and the simulator share one setting.
   */
  usageHalfLifeSeconds?: number;
  /**
   * Anti-starvation: a tenant's next job pending longer than this (since it last entered the
   * queue) ranks first, ahead of work within guarantees and of fair-share order, oldest first, so
   * it gets a reservation. Default 4 h (DEFAULT_POLICY_CONFIG); 0 disables.
   */
  starvationSeconds?: number;
  /**
   * Aging (nuri): within its tenant, a pending job that has waited past starvationSeconds since
   * it last entered the queue ranks as if its priority were at least this (default 1, the
   * `normal` class; 0 turns aging off). Anti-starvation works on each tenant's next job, and the
   * next job is the highest class: without aging a low-priority job waits until its tenant has
   * no normal work pending, which during a backlog is days. With it, low priority means "after
   * normal work for the first starvationSeconds, then by age with it". Running jobs keep their
   * own priority (preemption still takes the lowest class first).
   */
  starvingPriorityFloor?: number;
}

export type PolicyMode = 'nuri' | 'slurm' | 'fifo' | 'greedy';

export interface Snapshot {
  now: number;
  nodes: readonly SnapshotNode[];
  tenants: readonly SnapshotTenant[];
  pending: readonly PendingJob[];
  running: readonly RunningJob[];
  config: PolicyConfig;
}

export interface PlannedStart {
  jobId: string;
  gpuModel: GpuModel;
  placement: readonly Placement[];
}

export interface PlannedPreemption {
  jobId: string;
  /** The pending job whose guarantee this reclaims. */
  forJobId: string;
  reason: string;
}

export type PendingReasonCode =
  | 'over_quota_limit'
  | 'waiting_for_reclaim'
  | 'waiting_for_resources'
  | 'behind_higher_ranked'
  | 'reservation_for_larger_job'
  | 'no_node_of_type'
  | 'nodes_unavailable';

export interface PendingExplanation {
  jobId: string;
  /** The job as the snapshot gave it: a reader keeping something per job between passes needs no lookup by id in a map of 100,000. */
  job: PendingJob;
  /** The job's tenant (so a reader of the plan needs no map from 100,000 ids to their jobs). */
  tenantId: string;
  reason: PendingReasonCode;
  /** A sentence a researcher can act on. */
  message: string;
  /** Earliest start this plan expects, or null when it cannot tell (e.g. over quota). */
  estimatedStartAt: number | null;
  /** 1-based rank among pending jobs in the order the policy considers them. */
  queuePosition: number;
  /** The GPU type the estimate refers to (for `any` jobs, the type expected to free first). */
  gpuModel?: GpuModel;
}

/** A backfill reservation: the nodes a blocked job will get at startAt; later jobs may not delay it. */
export interface PlannedReservation {
  jobId: string;
  gpuModel: GpuModel;
  startAt: number;
  nodeIds: readonly string[];
}

export interface PlanOptions {
  /**
   * Plan only until every one of these pending jobs has been planned: the plan is the full
   * plan's prefix in rank order (starts, preemptions, reservations and explanations of the jobs
   * ranked up to the last of them). Express starts ask about their newcomers only; the jobs
   * ranked after them cannot change what happens to them.
   */
  until?: ReadonlySet<string>;
}

export interface Plan {
  starts: PlannedStart[];
  preemptions: PlannedPreemption[];
  pending: PendingExplanation[];
  /** Reservations held in this plan (informational; the next pass recomputes them). */
  reservations?: PlannedReservation[];
}
