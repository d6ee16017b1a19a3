/**
 * Replays a workload through the scheduling core in simulated time: no HTTP, no database,
 * the same core the live scheduler runs. Event driven: a pass after every instant
 * at which jobs arrive, finish or stop after preemption. Passes go through one `Scheduler`, as in
 * the live scheduler; its plans are those of `schedule()`.
 */
import {
  GpuModel,
  PendingJob,
  PolicyConfig,
  RunningJob,
  SnapshotNode,
  SnapshotTenant,
  TenantQuota,
  Scheduler,
  StartCalibration,
  accrueUsage,
  calibratedEstimate,
} from '@nuri/scheduling';
import { TraceJob } from './trace';
import { GPU_MODELS } from '@nuri/contracts/gpu';

export interface NodeSpec {
  h100: number;
  h800: number;
  perLeaf: number;
}

export function buildNodes(spec: NodeSpec): SnapshotNode[] {
  const nodes: SnapshotNode[] = [];
  for (const m of GPU_MODELS)
    for (let i = 0; i < spec[m]; i++) {
      const leaf = `${m}-leaf${String(Math.floor(i / spec.perLeaf)).padStart(3, '0')}`;
      nodes.push({
        id: `${m}-${String(i).padStart(4, '0')}`,
        name: `${m}-${String(i).padStart(4, '0')}`,
        gpuType: m,
        rack: leaf,
        leafSwitch: leaf,
        schedulable: true,
        gpus: Array.from({ length: 8 }, (_, index) => ({ index, healthy: true })),
      });
    }
  return nodes;
}

/** Share of each type's capacity the derived guarantees split between tenants. */
export const DEFAULT_GUARANTEE_SHARE = 0.8;

export interface TenantSpec {
  id: string;
  weight: number;
  quotas: Partial<Record<GpuModel, TenantQuota>>;
}

/**
 * Quotas for a replay: the guarantees split guaranteeShare (default 0.8) of each type's
 * capacity between tenants by their share of the offered load (GPU-seconds submitted in the
 * window), rounded down; the rest is guaranteed to nobody: anyone may borrow it, and it is the
 * only capacity a job that started after starving may hold without being reclaimable (see
 * starvedProtected in the scheduling library). A limit is the guarantee plus limitShare
 * (default 0.5) of the type capacity, at least the tenant's largest job, at most the capacity;
 * limitShare >= 1 gives the whole capacity. See docs/scheduling.md.
 */
export function autoQuotas(
  jobs: TraceJob[],
  nodes: SnapshotNode[],
  limitShare = 0.5,
  guaranteeShare = DEFAULT_GUARANTEE_SHARE,
): { tenants: TenantSpec[]; load: Map<string, number> } {
  const load = new Map<string, number>();
  const largest = new Map<string, number>();
  for (const j of jobs) {
    load.set(j.tenant, (load.get(j.tenant) ?? 0) + j.gpus * j.duration);
    largest.set(j.tenant, Math.max(largest.get(j.tenant) ?? 0, j.gpus));
  }
  const total = [...load.values()].reduce((a, b) => a + b, 0) || 1;
  const cap = (m: GpuModel) => nodes.filter((n) => n.gpuType === m).length * 8;
  const tenants = [...load.keys()].sort().map((id) => {
    const quotas: Partial<Record<GpuModel, TenantQuota>> = {};
    for (const m of GPU_MODELS) {
      const c = cap(m);
      if (c === 0) continue;
      const guaranteed = Math.floor((c * guaranteeShare * load.get(id)!) / total);
      const limit = limitShare >= 1 ? c : Math.min(c, Math.max(guaranteed + Math.floor(c * limitShare), largest.get(id)!));
      quotas[m] = { guaranteed, limit };
    }
    return { id, weight: 1, quotas };
  });
  return { tenants, load };
}

export interface SimOptions {
  label: string;
  config: PolicyConfig;
  nodes: SnapshotNode[];
  tenants: TenantSpec[];
  jobs: TraceJob[];
  /** Length of the submission window in seconds (utilization is measured over it). */
  windowSeconds: number;
  /** What a preempted job loses: everything (restart) or nothing since its last checkpoint (resume). */
  requeue: 'restart' | 'resume';
  bucketSeconds?: number;
  onProgress?: (fraction: number) => void;
  /** Record the reasons, starts and preemptions of jobs whose id starts with this (SimResult.jobTrace). */
  traceJob?: string;
  /** Record each tenant's running and demanded GPUs every this many hours (SimResult.timeline). */
  timelineHours?: number;
  /**
   * Show start estimates calibrated by the waits seen so far, as the live scheduler does
   * (StartCalibration; default true). False: the plan's estimates by time limits.
   */
  calibrateEstimates?: boolean;
}

export interface TimelinePoint {
  /** Hours since the start of the trace. */
  h: number;
  /** Per tenant: GPUs running and GPUs running or pending. */
  tenants: Record<string, { running: number; demand: number }>;
}

export interface JobOutcome {
  id: string;
  tenant: string;
  gpus: number;
  submit: number;
  start: number | null;
  finish: number | null;
  /** Seconds spent pending, over all attempts. */
  wait: number;
  duration: number;
  preemptions: number;
  /** Start estimate given at the job's first pass, when it did not start then (seconds). */
  estimate: number | null;
  waitedAtFirstPass: boolean;
  firstStart: number | null;
}

export interface TenantTime {
  /** Seconds during which the tenant's demand (running + pending GPUs) was at least its guarantee. */
  contendedSeconds: number;
  /**
   * GPU-seconds the tenant was entitled to in those periods: at each instant
   * E = min(guarantee, running + pending jobs that fit in the guarantee and have waited at least
   * the preemption grace period), and E = running when no such pending job fits in what is left
   * of the guarantee (gang granularity). See docs/scheduling.md.
   */
  entitled: number;
  /** GPU-seconds received in those periods, capped at the entitlement: integral of min(running, E). */
  receivedCapped: number;
  /** GPU-seconds received in those periods. */
  received: number;
  guaranteed: number;
  gpuSeconds: number;
  /**
   * GPU-seconds below the entitlement, by the reason the last plan gave the tenant's smallest
   * pending job that fits in what is left of its guarantee (why the guarantee was not held).
   */
  shortBy: Record<string, number>;
}

export interface SimResult {
  label: string;
  jobs: JobOutcome[];
  passes: number;
  wallMs: number;
  capacity: number;
  windowSeconds: number;
  busyInWindow: number;
  bucketSeconds: number;
  /** Mean busy GPUs per bucket. */
  busySeries: number[];
  /** Mean pending jobs per tenant per bucket. */
  queueSeries: Record<string, number[]>;
  tenantTime: Record<string, TenantTime>;
  stuck: number;
  jobTrace: string[];
  timeline: TimelinePoint[];
  /** The factor predicted waits were scaled by at the end, and the starts it came from (null: not calibrated). */
  estimateScale: { scale: number; samples: number } | null;
}

interface Live {
  trace: TraceJob;
  pending: PendingJob;
  remaining: number;
  pendingSince: number;
  out: JobOutcome;
  passesSeen: number;
}

export function simulate(opts: SimOptions): SimResult {
  const t0 = performance.now();
  const bucket = opts.bucketSeconds ?? 3600;
  const { config, nodes } = opts;
  const capacity = nodes.reduce((s, n) => s + n.gpus.length, 0);
  const graceMs = config.preemptGraceSeconds * 1000;
  const halfLife = config.usageHalfLifeSeconds ?? 7 * 86400;
  const calibration = opts.calibrateEstimates === false ? null : new StartCalibration();
  const tenantIds = opts.tenants.map((t) => t.id);
  const usage = new Map<string, number>(tenantIds.map((t) => [t, 0]));
  const runG = new Map<string, number>(tenantIds.map((t) => [t, 0]));
  const pendG = new Map<string, number>(tenantIds.map((t) => [t, 0]));
  const pendN = new Map<string, number>(tenantIds.map((t) => [t, 0]));
  const gTotal = new Map(opts.tenants.map((t) => [t.id, (t.quotas.h100?.guaranteed ?? 0) + (t.quotas.h800?.guaranteed ?? 0)]));
  const tenantTime: Record<string, TenantTime> = Object.fromEntries(
    tenantIds.map((t) => [t, { contendedSeconds: 0, entitled: 0, receivedCapped: 0, received: 0, guaranteed: gTotal.get(t)!, gpuSeconds: 0, shortBy: {} }]),
  );
  const busySeries: number[] = [];
  const queueSeries: Record<string, number[]> = Object.fromEntries(tenantIds.map((t) => [t, []]));

  // One stateful core for the whole replay, as the live scheduler keeps one (plans equal schedule()).
  const core = new Scheduler();
  const live = new Map<string, Live>();
  const pending = new Map<string, Live>();
  const pendingBy = new Map<string, Set<Live>>(tenantIds.map((t) => [t, new Set()]));
  const running = new Map<string, { job: RunningJob; l: Live; end: number; stopAt: number }>();
  const outcomes: JobOutcome[] = [];
  let busy = 0;
  let busyInWindow = 0;
  let now = 0;
  let next = 0;
  let passes = 0;
  const jobs = opts.jobs;
  const lastSubmit = jobs.length ? jobs[jobs.length - 1]!.submit * 1000 : 0;

  const addSeries = (arr: number[], a: number, b: number, v: number) => {
    // Spread a constant value over [a, b) seconds into buckets, as a time-weighted mean.
    let s = a;
    while (s < b) {
      const i = Math.floor(s / bucket);
      const e = Math.min(b, (i + 1) * bucket);
      while (arr.length <= i) arr.push(0);
      arr[i]! += (v * (e - s)) / bucket;
      s = e;
    }
  };

  function integrate(to: number): void {
    const a = now / 1000;
    const b = to / 1000;
    const dt = b - a;
    if (dt <= 0) return;
    addSeries(busySeries, a, b, busy);
    busyInWindow += busy * Math.max(0, Math.min(b, opts.windowSeconds) - Math.min(a, opts.windowSeconds));
    for (const t of tenantIds) {
      const r = runG.get(t)!;
      usage.set(t, accrueUsage(usage.get(t)!, r, dt, halfLife));
      addSeries(queueSeries[t]!, a, b, pendN.get(t)!);
      const tt = tenantTime[t]!;
      tt.gpuSeconds += r * dt;
      const g = tt.guaranteed;
      if (g > 0 && r + pendG.get(t)! >= g) {
        tt.contendedSeconds += dt;
        tt.received += r * dt;
        // Entitlement changes when a pending job passes the grace period: integrate piecewise.
        const cuts = [a];
        for (const l of pendingBy.get(t)!) {
          const e = (l.pendingSince + graceMs) / 1000;
          if (e > a && e < b) cuts.push(e);
        }
        cuts.sort((x, y) => x - y);
        cuts.push(b);
        for (let i = 0; i + 1 < cuts.length; i++) {
          const { e, smallest } = entitlement(t, r, g, cuts[i]! * 1000);
          const d = cuts[i + 1]! - cuts[i]!;
          tt.entitled += e * d;
          tt.receivedCapped += Math.min(r, e) * d;
          if (e > r) chargeShort(tt, smallest!, (e - r) * d);
        }
      }
    }
  }

  /**
   * What the tenant's guarantee entitles it to hold at time `at` (see TenantTime.entitled), and
   * its smallest (then oldest) pending job that counts: when e > r, the job the tenant is short for.
   */
  function entitlement(t: string, r: number, g: number, at: number): { e: number; smallest: Live | null } {
    let fit = 0;
    let smallest: Live | null = null;
    for (const l of pendingBy.get(t)!) {
      const n = l.trace.gpus;
      if (n > g || l.pendingSince + graceMs > at) continue;
      fit += n;
      if (!smallest || n < smallest.trace.gpus || (n === smallest.trace.gpus && l.trace.submit < smallest.trace.submit)) smallest = l;
    }
    const e = Math.min(g, r + fit);
    return { e: e > r && smallest!.trace.gpus > g - r ? r : e, smallest };
  }

  // The reason each pending job got in the last plan, to say why a guarantee was not held.
  const lastReason = new Map<string, string>();
  function chargeShort(tt: TenantTime, short: Live, gpuSeconds: number): void {
    const why = lastReason.get(short.pending.id) ?? 'not yet planned';
    tt.shortBy[why] = (tt.shortBy[why] ?? 0) + gpuSeconds;
  }
  const jobTrace: string[] = [];
  const traced = (id: string) => opts.traceJob !== undefined && id.startsWith(opts.traceJob);
  const lastTraced = new Map<string, string>();
  const hours = (ms: number) => (ms / 3600000).toFixed(2).padStart(7);
  const timeline: TimelinePoint[] = [];
  let nextTimeline = 0;

  function enqueue(l: Live): void {
    pending.set(l.pending.id, l);
    pendingBy.get(l.trace.tenant)!.add(l);
    l.pendingSince = now;
    pendG.set(l.trace.tenant, pendG.get(l.trace.tenant)! + l.trace.gpus);
    pendN.set(l.trace.tenant, pendN.get(l.trace.tenant)! + 1);
  }
  function dequeue(l: Live): void {
    pending.delete(l.pending.id);
    pendingBy.get(l.trace.tenant)!.delete(l);
    l.out.wait += (now - l.pendingSince) / 1000;
    pendG.set(l.trace.tenant, pendG.get(l.trace.tenant)! - l.trace.gpus);
    pendN.set(l.trace.tenant, pendN.get(l.trace.tenant)! - 1);
  }

  for (;;) {
    const nextSubmit = next < jobs.length ? jobs[next]!.submit * 1000 : Infinity;
    let nextEnd = Infinity;
    for (const r of running.values()) nextEnd = Math.min(nextEnd, r.end, r.stopAt);
    const t = Math.min(nextSubmit, nextEnd);
    if (t === Infinity) break;
    integrate(t);
    now = t;
    // Jobs that finish or stop now.
    for (const [id, r] of [...running.entries()]) {
      if (r.end <= now) {
        running.delete(id);
        busy -= r.job.gpus;
        runG.set(r.l.trace.tenant, runG.get(r.l.trace.tenant)! - r.job.gpus);
        r.l.out.finish = now / 1000;
        if (traced(id)) jobTrace.push(`${hours(now)} h  ${id}  finished`);
      } else if (r.stopAt <= now) {
        running.delete(id);
        busy -= r.job.gpus;
        runG.set(r.l.trace.tenant, runG.get(r.l.trace.tenant)! - r.job.gpus);
        if (opts.requeue === 'resume') r.l.remaining = Math.max(1, (r.end - now) / 1000);
        // Back in the queue: starvation counts from now (as the live scheduler records queued_at).
        r.l.pending = { ...r.l.pending, queuedAt: now };
        enqueue(r.l);
      }
    }
    while (next < jobs.length && jobs[next]!.submit * 1000 <= now) {
      const tj = jobs[next++]!;
      const out: JobOutcome = {
        id: tj.id, tenant: tj.tenant, gpus: tj.gpus, submit: tj.submit, start: null, finish: null, wait: 0,
        duration: tj.duration, preemptions: 0, estimate: null, waitedAtFirstPass: false, firstStart: null,
      };
      outcomes.push(out);
      const l: Live = {
        trace: tj,
        pending: { id: tj.id, tenantId: tj.tenant, gpus: tj.gpus, gpuType: tj.gpuType, priority: tj.priority, submittedAt: tj.submit * 1000, timeLimitSeconds: tj.timeLimit },
        remaining: tj.duration,
        pendingSince: now,
        out,
        passesSeen: 0,
      };
      live.set(tj.id, l);
      enqueue(l);
    }

    if (opts.timelineHours && now >= nextTimeline) {
      timeline.push({ h: now / 3600000, tenants: Object.fromEntries(tenantIds.map((t) => [t, { running: runG.get(t)!, demand: runG.get(t)! + pendG.get(t)! }])) });
      nextTimeline = (Math.floor(now / 3600000 / opts.timelineHours) + 1) * opts.timelineHours * 3600000;
    }
    // One pass.
    const tenants: SnapshotTenant[] = opts.tenants.map((t) => ({ id: t.id, name: t.id, weight: t.weight, quotas: t.quotas, decayedUsage: usage.get(t.id)! }));
    const plan = core.plan({
      now,
      nodes,
      tenants,
      pending: [...pending.values()].map((l) => l.pending),
      running: [...running.values()].map((r) => r.job),
      config,
    });
    passes++;
    for (const s of plan.starts) {
      const l = pending.get(s.jobId)!;
      if (traced(s.jobId)) jobTrace.push(`${hours(now)} h  ${s.jobId}  started on ${s.placement.map((p) => p.nodeId).join(',')}`);
      dequeue(l);
      if (l.out.firstStart === null) l.out.firstStart = now / 1000;
      l.out.start = now / 1000;
      l.passesSeen++;
      const job: RunningJob = {
        id: l.pending.id, tenantId: l.pending.tenantId, gpus: l.pending.gpus, gpuModel: s.gpuModel, priority: l.pending.priority,
        submittedAt: l.pending.submittedAt, queuedAt: l.pending.queuedAt, startedAt: now, timeLimitSeconds: l.pending.timeLimitSeconds, placement: s.placement, stopping: false,
      };
      // A job runs its (remaining) duration, or until its time limit.
      const end = now + Math.min(l.remaining, l.trace.timeLimit) * 1000;
      running.set(job.id, { job, l, end, stopAt: Infinity });
      busy += job.gpus;
      runG.set(l.trace.tenant, runG.get(l.trace.tenant)! + job.gpus);
    }
    calibration?.observe(now, plan);
    const scale = calibration?.scale() ?? 1;
    for (const p of plan.pending) {
      const l = pending.get(p.jobId)!;
      lastReason.set(p.jobId, p.reason);
      const estimate = calibratedEstimate(p, now, scale);
      // A line when the reason or queue position changes (messages change with every count).
      if (traced(p.jobId) && lastTraced.get(p.jobId) !== `${p.reason} ${p.queuePosition}`) {
        lastTraced.set(p.jobId, `${p.reason} ${p.queuePosition}`);
        const est = estimate === null ? 'no estimate' : `estimate ${hours(estimate).trim()} h`;
        jobTrace.push(`${hours(now)} h  ${p.jobId}  #${p.queuePosition} ${p.reason} (${est}): ${p.message}`);
      }
      if (l.passesSeen++ === 0) {
        l.out.waitedAtFirstPass = true;
        l.out.estimate = estimate === null ? null : estimate / 1000;
      }
    }
    for (const p of plan.preemptions) {
      const r = running.get(p.jobId)!;
      r.job = { ...r.job, stopping: true };
      r.stopAt = now + graceMs;
      r.l.out.preemptions++;
      if (traced(p.jobId)) jobTrace.push(`${hours(now)} h  ${p.jobId}  preempted: ${p.reason}`);
    }
    opts.onProgress?.(Math.min(1, now / Math.max(1, lastSubmit)));
  }
  integrate(now);
  return {
    label: opts.label,
    jobs: outcomes,
    passes,
    wallMs: performance.now() - t0,
    capacity,
    windowSeconds: opts.windowSeconds,
    busyInWindow,
    bucketSeconds: bucket,
    busySeries,
    queueSeries,
    tenantTime,
    stuck: pending.size,
    jobTrace,
    timeline,
    estimateScale: calibration ? { scale: calibration.scale(), samples: calibration.samples } : null,
  };
}
