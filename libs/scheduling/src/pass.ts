/**
 * The state of one scheduling pass, shared by its steps: the configuration read once, per
 * (tenant, type) quota counters, the plan being built, and each step's own caches (limit-holds.ts,
 * place.ts, reclaim.ts, reserve.ts). policy.ts drives the pass job by job in rank order.
 */
import { Cluster, MODELS, NodeState, modelIndex } from './cluster';
import { starvationMsOf } from './config';
import { LimitHolds } from './limit-holds';
import { Placer } from './place';
import { Columns, REC, R_GPUS, R_INDEX, R_LIMIT, R_PRIORITY, R_QUEUED, R_SUBMITTED, R_TENANT, R_TYPE, buildColumns, modelsOf, rankPending, typeName, usedByTenant } from './ranking';
import { Reclaimer, borrowedJobs, splitOrder, starvedProtected } from './reclaim';
import { Reserver } from './reserve';
import {
  GpuModel,
  PendingExplanation,
  PendingJob,
  PendingReasonCode,
  Plan,
  PlannedPreemption,
  PlannedReservation,
  PlannedStart,
  PolicyConfig,
  PolicyMode,
  Snapshot,
  SnapshotTenant,
} from './types';

const EMPTY: ReadonlySet<string> = new Set();

export class Pass {
  readonly cfg: PolicyConfig;
  readonly mode: PolicyMode;
  /** Quotas apply (nuri); the baselines know no tenants. */
  readonly quotas: boolean;
  readonly reclaimOn: boolean;
  readonly now: number;
  readonly graceMs: number;
  readonly minRunMs: number;
  readonly starvationMs: number;
  readonly tenants: Map<string, SnapshotTenant>;
  readonly cols: Columns;
  /** Pending jobs' columns indices in rank order. */
  readonly order: Int32Array;
  /** Job records in rank order (the pass reads them front to back). */
  readonly rec: Float64Array;
  readonly tenantIds: string[];
  /** Tenant count: (tenant index, type index) pairs are addressed as x = t * 2 + type index. */
  readonly T: number;
  /**
   * Per (tenant, type): GPUs in use or claimed (updated as the pass starts and reclaims), limit,
   * guarantee (-1: no quota on that type). Typed arrays: the pass checks them for every job.
   */
  readonly use2: Float64Array;
  readonly lim2: Float64Array;
  readonly guar2: Float64Array;
  readonly tenantAt: (SnapshotTenant | undefined)[];
  /** Running jobs on borrowed capacity, and those of them reclaim leaves alone (starvedProtected). */
  readonly borrowed: ReadonlySet<string>;
  readonly protectedJobs: ReadonlySet<string>;

  readonly starts: PlannedStart[] = [];
  readonly preemptions: PlannedPreemption[] = [];
  readonly reservations: PlannedReservation[] = [];
  private readonly pending: PendingExplanation[];
  private np = 0;
  /** Jobs this pass preempts. */
  readonly victims = new Set<string>();
  reservationsLeft: number;
  /** fifo: the first blocked job blocks everything ranked after it. */
  strictBlocked = false;
  /** Jobs blocked so far per type (the "behind N jobs" count). */
  readonly blockedOn: Record<GpuModel, number> = { h100: 0, h800: 0 };
  /**
   * Per type: bumped only by changes that can make GPUs available sooner (preemption moves held
   * GPUs' end earlier). Starts and reservations only ever take availability away (free GPUs fall,
   * held ends stay, reserved windows grow), so a search that failed still fails after them.
   */
  readonly gainVersion: Record<GpuModel, number> = { h100: 0, h800: 0 };
  /** Types that exist and types that could ever host the job, by (GPUs, type wish). */
  private readonly feasibleCache = new Map<number, { existing: readonly GpuModel[]; feasible: readonly GpuModel[] }>();

  readonly holds: LimitHolds;
  readonly placer: Placer;
  readonly reclaimer: Reclaimer;
  readonly reserver: Reserver;

  /** The job being considered, filled from the records (one object for the whole pass). */
  readonly job: PendingJob = { id: '', tenantId: '', gpus: 0, gpuType: 'any', priority: 0, submittedAt: 0, timeLimitSeconds: 0 };
  /** The index in the snapshot's pending list of the job in `job` (an explanation names the snapshot's object). */
  private jobAt = -1;

  constructor(
    readonly cl: Cluster,
    readonly snapshot: Snapshot,
  ) {
    const cfg = (this.cfg = snapshot.config);
    this.mode = cfg.mode ?? 'nuri';
    this.quotas = this.mode === 'nuri';
    this.reclaimOn = this.quotas && cfg.preemption;
    this.now = snapshot.now;
    this.graceMs = cfg.preemptGraceSeconds * 1000;
    this.minRunMs = cfg.minRuntimeBeforePreemptSeconds * 1000;
    this.starvationMs = starvationMsOf(cfg);
    this.tenants = new Map<string, SnapshotTenant>(snapshot.tenants.map((t) => [t.id, t]));

    const used = usedByTenant(snapshot.running);
    this.cols = buildColumns(snapshot);
    this.order = rankPending(snapshot, this.mode, used, this.cols);
    this.rec = this.cols.ranked!;
    this.tenantIds = this.cols.tenantIds;
    const T = (this.T = this.tenantIds.length);
    this.use2 = new Float64Array(T * 2);
    this.lim2 = new Float64Array(T * 2);
    this.guar2 = new Float64Array(T * 2);
    this.tenantAt = this.tenantIds.map((id) => this.tenants.get(id));
    for (let t = 0; t < T; t++) {
      const u = used.get(this.tenantIds[t]!);
      const q = this.tenantAt[t]?.quotas;
      for (let x = 0; x < 2; x++) {
        const m = MODELS[x]!;
        this.use2[t * 2 + x] = u ? u[m] : 0;
        this.lim2[t * 2 + x] = q?.[m]?.limit ?? 0;
        this.guar2[t * 2 + x] = q?.[m] ? q[m]!.guaranteed : -1;
      }
    }
    this.borrowed = this.reclaimOn ? cl.borrowed(snapshot, this.tenants, { fromScratch: borrowedJobs, order: splitOrder }) : new Set<string>();
    this.protectedJobs = this.reclaimOn
      ? starvedProtected(snapshot, this.borrowed, this.guar2, T, this.starvationMs, (m) => cl.pools[m].capacity)
      : EMPTY;
    this.pending = new Array(this.cols.n);
    this.reservationsLeft = this.mode === 'greedy' ? 0 : Math.max(0, cfg.reservationDepth);

    this.holds = new LimitHolds(this);
    this.placer = new Placer(this);
    this.reclaimer = new Reclaimer(this);
    this.reserver = new Reserver(this);
    cl.onEarly = (st: NodeState) => {
      // GPUs free earlier: the steps' node lists and heaps learn of it.
      this.reserver.onEarly(st);
      this.reclaimer.onEarly(st);
    };
  }

  /** Fill `job` from the record at rank position oi; returns the job's tenant index. */
  readJob(oi: number): number {
    const rec = this.rec;
    const b = oi * REC;
    const ti = rec[b + R_TENANT]! | 0;
    const job = this.job;
    this.jobAt = rec[b + R_INDEX]! | 0;
    job.id = this.cols.rankedIds![oi]!;
    job.tenantId = this.tenantIds[ti]!;
    job.gpus = rec[b + R_GPUS]! | 0;
    job.gpuType = typeName(rec[b + R_TYPE]! | 0);
    job.priority = rec[b + R_PRIORITY]!;
    job.submittedAt = rec[b + R_SUBMITTED]!;
    job.queuedAt = rec[b + R_QUEUED]!;
    job.timeLimitSeconds = rec[b + R_LIMIT]!;
    return ti;
  }

  /** Types that exist for the job, and those of them with nodes enough to ever host it. */
  feasibility(ty: number, g: number): { existing: readonly GpuModel[]; feasible: readonly GpuModel[] } {
    const multi = g > 8;
    const k = Math.ceil(g / 8);
    const fkey = g * 3 + ty;
    let fe = this.feasibleCache.get(fkey);
    if (!fe) {
      const existing = modelsOf(ty, g).filter((m) => this.cl.pools[m].exists);
      const feasible = existing.filter((m) => (multi ? this.cl.pools[m].fullNodes >= k : this.cl.pools[m].maxNodeSize >= g));
      fe = { existing, feasible };
      this.feasibleCache.set(fkey, fe);
    }
    return fe;
  }

  /** Record why a job stays pending; queue positions follow the order of these calls. */
  explain(job: PendingJob, reason: PendingReasonCode, message: string, est: number | null, model?: GpuModel): void {
    const given = job === this.job ? this.snapshot.pending[this.jobAt]! : job;
    this.pending[this.np] = { jobId: job.id, job: given, tenantId: job.tenantId, reason, message, estimatedStartAt: est, queuePosition: this.np + 1, gpuModel: model };
    this.np++;
  }

  /** Waited past the starvation threshold since it last entered the queue. */
  starving(j: PendingJob): boolean {
    return (j.queuedAt ?? j.submittedAt) <= this.now - this.starvationMs;
  }

  /** (tenant, type) index of a tenant index and a type. */
  x(ti: number, m: GpuModel): number {
    return ti * 2 + modelIndex(m);
  }

  /**
   * Estimate beyond the reservation depth, capped at O(1) per job: the work held and queued
   * ahead on that type (GPU-seconds from time limits) drained at full capacity.
   */
  fluid(m: GpuModel): number {
    const pool = this.cl.pools[m];
    return this.now + Math.ceil((pool.workAhead / Math.max(1, pool.capacity)) * 1000);
  }

  /** The type with the least work ahead per GPU (the first on a tie). */
  fluidPick(models: readonly GpuModel[]): GpuModel {
    let best = models[0]!;
    for (const m of models) {
      const a = this.cl.pools[m];
      const b = this.cl.pools[best];
      if (a.workAhead / Math.max(1, a.capacity) < b.workAhead / Math.max(1, b.capacity)) best = m;
    }
    return best;
  }

  /** A job left pending adds its work to the queue ahead of later jobs on that type. */
  queueWork(job: PendingJob, m: GpuModel): void {
    this.cl.pools[m].workAhead += job.gpus * job.timeLimitSeconds;
  }

  plan(): Plan {
    this.pending.length = this.np;
    return { starts: this.starts, preemptions: this.preemptions, pending: this.pending, reservations: this.reservations };
  }
}
