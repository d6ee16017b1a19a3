import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import type { ServerConfig } from '@nuri/config';
import {
  AdvisoryLock,
  DatabaseHandle,
  DependenciesRepository,
  JobsRepository,
  NodesRepository,
  TenantsRepository,
  UsageRepository,
  type NodeWithGpus,
  type RunningWithPlacement,
} from '@nuri/db';
import type { PendingReasonCodeName } from '@nuri/contracts';
import { NuriMetrics, type SchedulerSnapshotMetrics } from '@nuri/metrics';
import { passMemoryJobs, Plan, reservePassMemory, Scheduler, StartCalibration, type PolicyConfig } from '@nuri/scheduling';
import { Clock } from '../core/clock';
import { Coalesced } from '../core/coalesced';
import { CONFIG, SCHEDULER_DATABASE } from '../core/core.module';
import { Wakeups, type WakeReason } from '@nuri/db';
import { JobLifecycle } from '../lifecycle/job-lifecycle';
import { gatePending } from './gating';
import { afterStarts, gpuCounts, jobCounts, SchedulerMetricsState, tenantRows, type PassMetricsInputs } from './scheduler-metrics';
import { driftScore, FlickerDamper, isDrift, staleFields, type StaleCause } from './annotations';
import { isFresh, LiveJobs, type RefreshResult } from './live-jobs';
import { LiveNodes } from './live-nodes';
import { passPause } from './pacing';
import { ExpressState } from './express';
import { buildSnapshot, type LivePending } from './snapshot';
import { warmUpCore } from './warm-up';

/** Advisory lock key that elects the one active scheduler ("nuri" in ASCII). */
export const SCHEDULER_LOCK_KEY = 0x6e757269;
/** The pass memory a scheduler reserves at its start, per job queued then (the queue may grow before it leads). */
const PASS_MEMORY_HEADROOM = 1.25;
/** A pass slower than this logs its stages. */
const SLOW_PASS_MS = 2000;
/** An express start slower than this logs where its time went (one is meant to take tens of ms). */
const SLOW_EXPRESS_MS = 250;
/** How often a standby tries to take the lead, at most (see `tickOnce`). */
const STANDBY_TICK_MS = 1000;
/** The jobs-by-state gauge walks every live job: refreshed at most this often. */
const JOB_COUNTS_INTERVAL_MS = 5000;

export interface PassResult {
  plan: Plan;
  started: string[];
  skipped: { jobId: string; why: string }[];
  durationMs: number;
  /** Milliseconds by stage (reads: when each finished, from the pass's start), for the profile bench. */
  stages: Record<string, number>;
  /** Pending jobs whose reason, estimate or position was written this pass. */
  annotated: number;
  /** Why those waits were written (new, reason, position, estimate). */
  annotatedBecause: Partial<Record<StaleCause, number>>;
  /** Jobs with no wait yet left for the next passes (over NURI_NEW_WAITS_PER_PASS). */
  deferredWaits: number;
  /** Waits that drifted past their slack (see isDrift) over NURI_DRIFTED_WAITS_PER_PASS, left stale for later passes. */
  deferredDrift: number;
  /** Starts the plan made over NURI_MAX_STARTS_PER_PASS, left to the next pass. */
  deferredStarts: number;
}

/**
 * The live scheduler: one leader per center (PostgreSQL advisory lock), woken by
 * submits, job ends and node changes, and by a periodic tick. Each pass takes a
 * snapshot, asks the pure core for a plan, verifies and commits it in one transaction,
 * and wakes the gateways to carry out starts and stops.
 */
@Injectable()
export class SchedulerService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger('Scheduler');
  private lock: AdvisoryLock | null = null;
  /** When this process last became the leader: agents' silence counts from here at the earliest. */
  private leaderSince: Date | null = null;
  private standDownTicks = 0;
  private ticking: Promise<void> = Promise.resolve();
  /** The pure core, with what it may reuse between passes (plans are identical to schedule()). */
  private readonly core = new Scheduler();
  private timer?: NodeJS.Timeout;
  /**
   * Passes: on demand, coalescing bursts of wake-ups, spaced by at least their own duration,
   * so under a storm of submissions or reconnecting agents the scheduler takes at most about
   * half of a process it shares with the api or a gateway (with a 1 s cap, a 3 s pass under
   * load took three quarters and 4,000 agents' hellos waited it out). Alone in its process it
   * waits at most 1 s.
   * When only submissions woke it since a pass began, and express starts are on, the next pass
   * waits at least SUBMIT_PASS_SPACING_MS: newcomers that can start do so by express, and the
   * rest only wait for their reason. On a short queue a stream of submissions otherwise ran a
   * pass every few tens of milliseconds, most of the scheduler's share of the process.
   */
  private readonly passes = new Coalesced(
    () => {
      this.onlySubmits = true;
      return this.timedPass();
    },
    {
      stopped: () => this.stopped,
      pauseMs: (spent) =>
        passPause(spent, { sharesProcess: this.config.roles.has('api') || this.config.roles.has('gateway'), onlySubmits: this.onlySubmits, express: this.express !== null }),
    },
  );
  /** Whether every trigger since the current pass began was a submission (see `passes`). */
  private onlySubmits = true;
  private stopped = false;
  private unsubscribe?: () => void;
  /**
   * Scales the plan's estimates (by time limits) by how long jobs really waited against them
   * (median over recent starts). In memory: a scheduler that takes over starts from the time
   * limits again until it has seen enough starts.
   */
  private readonly calibration = new StartCalibration();
  /** The scale last stored for reads (null: not yet by this leader). */
  private writtenScale: number | null = null;
  private readonly flicker = new FlickerDamper();
  /**
   * Whether the waits remembered on the pending jobs (`LivePending.wait`, so a pass writes only
   * changes: see `annotations`) are what is stored (false after taking over: read them back first).
   */
  private annotationsKnown = false;
  private readonly passMetrics: SchedulerMetricsState;
  /** Pending and running jobs in memory, refreshed from the changes since the last pass. */
  private readonly live: LiveJobs;
  /** The nodes in memory, refreshed from their changes since the last pass. */
  private readonly liveNodes: LiveNodes;
  /** What the last full pass left, for starting newcomers before the next one (see express.ts). */
  private express: ExpressState | null = null;
  /** Express starts on submit wake-ups, one at a time, between full passes. */
  private readonly expresses = new Coalesced(() => this.serial(() => this.expressPass()).then(
    (r) => {
      if (r.leftPending) this.trigger('submit');
    },
    (e) => {
      this.log.error(`express start failed: ${(e as Error).message}`);
      this.trigger('submit');
    },
  // Under a stream of submissions, at most about half the time on express starts: the API in
  // the same process answers them meanwhile (the pause is only taken when asked again).
  ), { stopped: () => this.stopped, pauseMs: (spent) => Math.min(250, spent) });
  /** A full pass's reads and its commit never overlap an express start (they share the in-memory jobs and the GPUs). */
  private exclusive: Promise<unknown> = Promise.resolve();

  private readonly tenants: TenantsRepository;
  private readonly nodes: NodesRepository;
  private readonly jobs: JobsRepository;
  private readonly usage: UsageRepository;
  private readonly dependencies: DependenciesRepository;

  constructor(
    @Inject(CONFIG) private readonly config: ServerConfig,
    // Its own pool when other roles share the process (the lock's connection comes from it too).
    @Inject(SCHEDULER_DATABASE) private readonly database: DatabaseHandle,
    private readonly clock: Clock,
    private readonly wakeups: Wakeups,
    private readonly lifecycle: JobLifecycle,
    private readonly metrics: NuriMetrics,
  ) {
    const db = database.db;
    this.tenants = new TenantsRepository(db);
    this.nodes = new NodesRepository(db);
    this.jobs = new JobsRepository(db);
    this.usage = new UsageRepository(db);
    this.dependencies = new DependenciesRepository(db);
    this.passMetrics = new SchedulerMetricsState(metrics);
    this.live = new LiveJobs(this.jobs);
    this.liveNodes = new LiveNodes(this.nodes);
  }

  get isLeader(): boolean {
    return this.lock !== null;
  }

  async onApplicationBootstrap(): Promise<void> {
    // Before any pass, leader or standby: a new leader's first pass, the one it makes over the
    // whole queue with the fleet idle, would otherwise also be the one V8 compiles the core in.
    const t = performance.now();
    const warm = warmUpCore(this.policy(), this.config.fairShareHalfLifeSeconds);
    // And its scratch memory, for the queue there is now and a quarter more (see reservePassMemory).
    const queued = await this.jobs.countPending().catch((e: Error) => {
      this.log.warn(`could not count the queue to size the pass's memory: ${e.message}`);
      return 0;
    });
    reservePassMemory(Math.ceil(queued * PASS_MEMORY_HEADROOM));
    this.log.log(`core warmed up in ${(performance.now() - t).toFixed(0)} ms (${warm.pending} made-up jobs, ${warm.starts} started; pass memory for ${passMemoryJobs()} jobs)`);
    this.unsubscribe = this.wakeups.onWake((reason) => {
      // A submission goes to an express start first; a full pass is asked for only if that
      // leaves a newcomer pending (it needs its reason and position). Every submission asking
      // for a pass kept one running for jobs that had started already, and a newcomer landing
      // in its plan waited for it (issue 13).
      if (reason === 'submit' && this.lock && this.express && !this.stopped) this.expresses.trigger();
      else if (reason !== 'dispatch') this.trigger(reason);
    });
    await this.tick();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.unsubscribe?.();
    // A tick in flight could otherwise take the lock again after it was released here,
    // leaving a pooled connection checked out for ever (and the pool's close waiting on it).
    await this.ticking;
    await this.passes.idle();
    await this.expresses.idle();
    const held = this.lock;
    this.lock = null;
    await held?.release().catch(() => undefined);
    if (held) this.passMetrics.leader(null);
  }

  private tick(): Promise<void> {
    this.ticking = this.tickOnce();
    return this.ticking;
  }

  private async tickOnce(): Promise<void> {
    if (this.stopped) return;
    try {
      if (this.lock && !(await this.lock.alive())) {
        // The session holding the lock is gone, so the lock is too: stop leading at once;
        // a standby may already lead. Commits stay safe meanwhile (verified in the database).
        this.log.error('lost the scheduler lock (database session ended); standing by');
        const lost = this.lock;
        this.lock = null;
        await lost.release().catch(() => undefined);
        this.passMetrics.leader(null);
        this.invalidateLive();
        this.express = null;
        // Let a standby with a healthy session take over rather than racing it back.
        this.standDownTicks = 3;
      }
      if (!this.lock && this.standDownTicks > 0) this.standDownTicks--;
      else if (!this.lock) {
        this.lock = await this.database.tryAdvisoryLock(SCHEDULER_LOCK_KEY);
        if (this.lock) {
          // A new leader keeps the jobs it kept current while standing by (the same refresh
          // a leader's pass makes catches up on what changed since), and reads the stored
          // waits its first pass compares with: the old leader may have written any of them.
          this.annotationsKnown = false;
          this.liveNodes.invalidate();
          this.express = null;
          this.writtenScale = null;
          this.leaderSince = this.clock.now();
          this.log.log('became the active scheduler');
          this.passMetrics.leader(this.leaderSince.getTime());
        }
      }
      if (this.lock) {
        await this.lifecycle.markSilentNodesDown(this.leaderSince ?? this.clock.now());
        await this.lifecycle.endOverdue();
        this.trigger();
      } else await this.keepWarm();
    } catch (e) {
      this.log.error(`tick failed: ${(e as Error).message}`);
    }
    // A standby tries the lock at least every STANDBY_TICK_MS (one cheap query and what changed
    // since): with the 5 s tick, noticing a dead leader took 2.5 s on average of a 10 s takeover.
    const next = this.lock ? this.config.schedulerTickMs : Math.min(this.config.schedulerTickMs, STANDBY_TICK_MS);
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), next);
  }

  /**
   * A standby keeps the live jobs current (a full read once, then what changed each tick), so
   * taking over is one incremental refresh, not reading 100,000 pending jobs while no leader
   * schedules (a takeover took 18 s at that size, 7 s of it reading). A failed refresh is
   * forgotten: the next one reads everything again.
   */
  private async keepWarm(): Promise<void> {
    try {
      await this.serial(() => this.refreshLive());
      this.live.forgetArrivals(); // only a leader's express starts use them
      // The pass memory follows a queue that grew since the start (nothing to do while it holds it).
      reservePassMemory(Math.ceil(this.live.pendingCount * PASS_MEMORY_HEADROOM));
    } catch (e) {
      this.invalidateLive();
      throw e;
    }
  }

  private policy(): PolicyConfig {
    return {
      reservationDepth: this.config.reservationDepth,
      minRuntimeBeforePreemptSeconds: this.config.minRuntimeBeforePreemptSeconds,
      preemptGraceSeconds: this.config.preemptGraceSeconds,
      preemption: true,
      starvationSeconds: this.config.starvationSeconds,
    };
  }

  /** Forget the jobs and nodes in memory (taking leadership, losing it, a failed pass): the next pass reads them all. */
  private invalidateLive(): void {
    this.live.invalidate();
    this.liveNodes.invalidate();
  }

  private async refreshLive(): Promise<RefreshResult> {
    const r = await this.live.refresh();
    if (r.full) this.metrics.recordLiveReload();
    return r;
  }

  /** Runs a pass now, or right after the one in flight (see `passes`). */
  trigger(reason?: WakeReason): void {
    if (!this.lock || this.stopped) return;
    if (reason !== 'submit') this.onlySubmits = false;
    this.passes.trigger();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.exclusive.then(fn, fn);
    this.exclusive = run.catch(() => undefined);
    return run;
  }

  private async timedPass(): Promise<void> {
    const timed = this.metrics.startPassTimer();
    try {
      await this.pass();
      timed(true);
    } catch (e) {
      timed(false);
      // What the failed pass read may be half applied: read everything again next time.
      this.invalidateLive();
      this.express = null;
      this.log.error(`pass failed: ${(e as Error).stack ?? e}`);
    }
  }

  /** Waits until no pass is running or queued (tests, shutdown). */
  idle(): Promise<void> {
    return this.passes.idle();
  }

  async pass(): Promise<PassResult> {
    const { t0, stages, stage, summary } = stageClock();
    const read = <T>(name: string, p: Promise<T>) => p.then((v) => ((stages[`read.${name}`] = performance.now() - t0), v));
    const now = this.clock.now();
    const countJobs = this.passMetrics.jobCountsDue(now.getTime(), JOB_COUNTS_INTERVAL_MS);
    // A node whose agent was not heard from within the down timeout takes no new job, even
    // before the tick marks it down (or while an outage's allowance keeps it from being marked).
    const heardSince = new Date(now.getTime() - this.config.nodeDownAfterSeconds * 1000);
    // A new leader's first pass and a full reload (after a failed pass) also read what is stored
    // for each pending job, so this pass writes only what differs from it, not 100,000 rows: a
    // full reload reads it with the jobs; a leader that kept the jobs current while standing by
    // reads it on its own.
    const readStored = this.live.loaded && !this.annotationsKnown;
    const [tenants, usage, nodeRows, { refreshed, undecided }, runningPerArray, stored] = await Promise.all([
      read('tenants', this.tenants.list()),
      read('usage', this.usage.all()),
      // GPUs' jobs come from the running jobs below, not from reading every live allocation.
      read('nodes', this.liveNodes.refresh()),
      // Dependencies are read after the jobs: a job seen pending was committed with its
      // dependency rows, so none of them can be missed (and a met one stays met).
      // (Serialised with express starts, which refresh the same in-memory jobs.)
      read('jobs', this.serial(() => this.refreshLive())).then(async (refreshed) => ({ refreshed, undecided: await read('dependencies', this.dependencies.undecidedOfPending()) })),
      // Only this leader starts jobs, so no task starts between this count and the commit.
      read('throttled', this.dependencies.runningOfThrottledArrays()),
      readStored ? read('annotations', this.jobs.pendingAnnotations()) : null,
    ]);
    stage('reads');
    if (stored) this.live.setWaits(stored);
    if (stored || refreshed.full) {
      this.annotationsKnown = true;
      this.flicker.clear();
    }
    const queued = this.live.pending();
    const running = this.live.running();
    const jobsByState = countJobs ? this.live.countByState() : null;
    stage('live');
    const tenantNames = new Map(tenants.map((t) => [t.id, t.name]));
    // Dependencies and array throttles are decided here, before the core (which knows neither).
    const gate = gatePending(queued, undecided, runningPerArray);
    stage('gate');
    await this.cancelDoomed(gate.doomed, now, tenantNames);
    stage('cancelDoomed');
    const doomed = new Set(gate.doomed.map((d) => d.job.id));
    const pending = gate.eligible;
    const snapshot = buildSnapshot({
      now,
      tenants,
      usage,
      // Without the GPUs' jobs (the core places by running jobs): the same node and GPU rows as
      // the last pass while the node did not change, so their core form is reused.
      nodes: nodeRows,
      pending,
      running,
      heardSince,
      halfLifeSeconds: this.config.fairShareHalfLifeSeconds,
      policy: this.policy(),
    });
    stage('buildSnapshot');
    const plan = this.core.plan(snapshot);
    stage('plan');
    // The front of the plan's starts (they are in queue order); the next pass, asked for below,
    // plans the rest again: a restarted leader's first pass into an emptied fleet committed
    // 2,973 starts in one 2 s statement, and finished after them all.
    const toStart = plan.starts.slice(0, this.config.maxStartsPerPass);
    const deferredStarts = plan.starts.length - toStart.length;
    // Their rows, for the metrics (before any await: an express start may refresh the jobs), by id
    // among the starts rather than a walk of the whole queue.
    const startRows = new Map<string, LivePending>();
    for (const s of toStart) {
      const j = this.live.get(s.jobId);
      if (j) startRows.set(s.jobId, j);
    }
    // The waits are written beside the commit, on another connection: they are of jobs the plan
    // leaves pending (a planned start has none, committed or not), in a table the commit does not
    // touch. After a restart each of the first passes commits 1,000 starts and writes 10,000 new
    // waits, one after the other until now.
    const waits = this.annotations(plan, now.getTime(), gate.withheld);
    stage('annotate');
    const writingWaits = this.jobs.annotatePending(waits.rows, waits.gone);
    // Its failure is the pass's, reported below (never unhandled meanwhile); a pass failing before
    // then lets it land first, so it never lands after the next pass's waits.
    writingWaits.catch(() => undefined);
    const metricsInputs = { now, tenants, nodes: nodeRows, pending: doomed.size ? queued.filter((j) => !doomed.has(j.id)) : queued, running };
    // The gauges need only the starts that passed the commit's checks: prepared while the
    // database writes them (undefined: not prepared; null: not due this pass).
    let gauges: PassGauges | null | undefined;
    const { started, skipped } = await this.commitAndStop(plan, toStart, {
      snapshot,
      now,
      heardSince,
      running,
      tenantNames,
      stage,
      whileWriting: (ids) => (gauges = this.prepareGauges(metricsInputs, plan, ids, startRows, jobsByState, tenantNames)),
    }).catch(async (e: unknown) => {
      await writingWaits.catch(() => undefined);
      throw e;
    });
    await writingWaits;
    stage('waits');
    const { rows: { length: annotated }, causes, deferred, driftDeferred } = waits;
    // Waits and starts left for later are the next pass's, not the next wake-up's or tick's.
    if (deferred || deferredStarts) this.trigger();
    this.recordPassMetrics(metricsInputs, plan, { ids: started, rows: startRows }, tenantNames, gauges === undefined ? this.prepareGauges(metricsInputs, plan, started, startRows, jobsByState, tenantNames) : gauges);
    stage('metrics');
    if (started.length || plan.preemptions.length) this.wakeups.wake('dispatch');
    const durationMs = performance.now() - t0;
    // A slow pass says where its time went, so an operator can tell the database from the plan.
    if (durationMs > SLOW_PASS_MS)
      this.log.warn(
        `pass took ${(durationMs / 1000).toFixed(1)} s over ${queued.length} pending jobs (${started.length} started${deferredStarts ? `, ${deferredStarts} starts left for the next pass` : ''}, ${plan.preemptions.length} preempted, ${annotated} waits written${annotated ? ` [${Object.entries(causes).map(([k, n]) => `${k} ${n}`).join(', ')}]` : ''}${deferred ? `, ${deferred} new ones left for the next passes` : ''}${driftDeferred ? `, ${driftDeferred} drifted ones left for later passes` : ''}): ${summary()}`,
      );
    return { plan, started, skipped, durationMs, stages, annotated, annotatedBecause: causes, deferredWaits: deferred, deferredDrift: driftDeferred, deferredStarts };
  }

  /** Commits the plan's starts (the pass's share of them), asks its preemption victims to stop, and stores the estimate scale. */
  private async commitAndStop(
    plan: Plan,
    toStart: Plan['starts'],
    c: {
      snapshot: ReturnType<typeof buildSnapshot>;
      now: Date;
      heardSince: Date;
      running: RunningWithPlacement[];
      tenantNames: ReadonlyMap<string, string>;
      stage: (name: string) => void;
      /** The caller's work on the starts that passed the checks, done while they are written (see commitStarts). */
      whileWriting: (started: readonly string[]) => void;
    },
  ): Promise<{ started: string[]; skipped: { jobId: string; why: string }[] }> {
    const { snapshot, now, heardSince, running, tenantNames, stage } = c;
    // What needs only the starts that passed the checks is made while the database writes them,
    // its longest step: the next express state, the calibration's new predictions, the gauges (a
    // new leader's first pass spent about 0.25 s on them after its commit of 1,000 starts). Should
    // that work throw, it is forgotten and done again after the commit, where it failed before.
    let express: ExpressState | undefined;
    let predicted = false;
    const whileWriting = (ids: readonly string[]) => {
      try {
        express = new ExpressState({ snapshot, plan, started: new Set(ids) }, this.express, this.live.arrivalIds());
        this.calibration.predicted(now.getTime(), plan);
        predicted = true;
        c.whileWriting(ids);
      } catch (e) {
        express = undefined;
        this.log.warn(`work beside the commit failed, done after it: ${(e as Error).message}`);
      }
    };
    // Express starts may have run while this pass planned: the commit verifies every start
    // against the database (one that lost its GPUs to a newcomer waits for the next pass), and
    // the next express state keeps the newcomers this pass's snapshot did not see.
    const { started, skipped } = await this.serial(async () => {
      // Waiting for an express start in flight is its own stage: a slow commit is told from a slow queue.
      stage('commit.wait');
      const r = await this.jobs.commitStarts(
        toStart.map((s) => ({ jobId: s.jobId, gpuModel: s.gpuModel, placement: s.placement.map((p) => ({ nodeId: p.nodeId, gpuIndices: p.gpuIndices })) })),
        now,
        heardSince,
        this.config.masterPorts,
        whileWriting,
      );
      if (this.lock) {
        const next = (this.express = express ?? new ExpressState({ snapshot, plan, started: new Set(r.started) }, this.express, this.live.arrivalIds()));
        // Arrivals this pass planned are not new to express starts (and do not pile up when none come).
        this.live.settleArrivals((id) => next.knows(id));
      }
      return r;
    });
    stage('commit');
    for (const s of skipped) this.log.warn(`start of ${s.jobId} refused at commit: ${s.why}`);
    const runningById = new Map(running.map((r) => [r.id, r]));
    // One statement for all of them: a pass reclaiming for a tenant may preempt dozens.
    const told = new Set(await this.jobs.requestStops(plan.preemptions.map((p) => p.jobId), 'preempt', now));
    for (const p of plan.preemptions) {
      if (told.has(p.jobId)) {
        this.log.log(`preempting ${p.jobId} for ${p.forJobId}: ${p.reason}`);
        const victim = runningById.get(p.jobId);
        const tenant = victim && tenantNames.get(victim.tenantId);
        if (victim && tenant !== undefined) this.metrics.recordPreemption(tenant, victim.gpuModel, 'guarantee_reclaim');
      }
    }
    stage('preempt');
    if (!predicted) this.calibration.predicted(now.getTime(), plan);
    this.calibration.started(now.getTime(), started);
    const scale = this.calibration.scale();
    this.metrics.setStartEstimateScale(scale);
    // Waits store the plan's estimates; the scale is applied when they are read (one row).
    if (scale !== this.writtenScale) {
      await this.jobs.setEstimateScale(scale, now);
      this.writtenScale = scale;
    }
    return { started, skipped };
  }

  /**
   * Starts newcomers the policy would start anyway, on the state the last full pass left
   * (express.ts): a job submitted into a queue of 100,000 starts in tens of milliseconds
   * instead of after the next full pass. Jobs with dependencies and capped array tasks are
   * left to the full pass (their gates read the database).
   */
  async expressPass(): Promise<{ started: string[]; leftPending: boolean }> {
    const { t0, stage, summary } = stageClock();
    const r = await this.expressStages(stage);
    const ms = performance.now() - t0;
    if (ms > SLOW_EXPRESS_MS) this.log.warn(`express start took ${ms.toFixed(0)} ms (${r.started.length} started, ${r.planned} jobs planned): ${summary()}`);
    return r;
  }

  private async expressStages(stage: (name: string) => void): Promise<{ started: string[]; leftPending: boolean; planned: number }> {
    const express = this.express;
    // Not leading or nothing to start from: the full pass decides for the newcomers.
    if (!this.lock || !express || !this.live.loaded || this.stopped) return { started: [], leftPending: true, planned: 0 };
    // No GPU free since the last full pass: no newcomer can start, so nothing is read (the
    // arrivals wait for that pass, which plans them all).
    if (!express.anyFree()) return { started: [], leftPending: true, planned: 0 };
    await this.refreshLive();
    stage('refresh');
    // Only jobs that entered the queue since the last look, and only their tenants' queues:
    // at 100,000 pending jobs, walking all of them made each express start ~70 ms of CPU.
    // (One the last full pass planned is not new: it has its reason.)
    const arrivals = this.live.takeArrivals().filter((j) => !express.knows(j.id));
    // A requeued job waits for the full pass: it may have been in that pass's queue (see `knows`).
    const candidates = arrivals.filter((j) => j.arrayMaxRunning === null && isFresh(j));
    // A newcomer not started here waits for the full pass, which gives it its reason.
    const none = { started: [], leftPending: arrivals.length > 0, planned: 0 };
    if (!candidates.some((j) => express.mayStart(j))) return none;
    // Whether each has dependencies came with its row (no round trip); asked only for one the refresh did not read.
    const unknown = candidates.filter((j) => this.live.dependent(j.id) === undefined).map((j) => j.id);
    const waiting = unknown.length ? await this.dependencies.withDependencies(unknown) : new Set<string>();
    stage('dependencies');
    const newcomers = candidates.filter((j) => !waiting.has(j.id) && this.live.dependent(j.id) !== true);
    if (!newcomers.length) return none;
    const now = this.clock.now();
    const live = this.live;
    const plan = express.plan(newcomers, { ofTenants: (tenants) => live.pendingOf(tenants), get: (id) => live.get(id) }, now.getTime());
    stage('plan');
    const planned = plan.starts.length + plan.pending.length;
    if (!plan.starts.length) return { ...none, planned };
    const heardSince = new Date(now.getTime() - this.config.nodeDownAfterSeconds * 1000);
    const { started, skipped } = await this.jobs.commitStarts(
      plan.starts.map((s) => ({ jobId: s.jobId, gpuModel: s.gpuModel, placement: s.placement.map((p) => ({ nodeId: p.nodeId, gpuIndices: p.gpuIndices })) })),
      now,
      heardSince,
      this.config.masterPorts,
    );
    stage('commit');
    for (const s of skipped) this.log.warn(`express start of ${s.jobId} refused at commit: ${s.why}`);
    express.started(newcomers, plan.starts, new Set(started), now.getTime());
    for (const id of started) {
      const j = newcomers.find((n) => n.id === id);
      const tenant = j && express.tenantName(j.tenantId);
      const model = plan.starts.find((s) => s.jobId === id)?.gpuModel;
      if (!j || tenant === undefined || !model) continue;
      // Its GPU time is counted from now, even if it ends before a full pass sees it running.
      this.passMetrics.started(id, tenant, model, j.gpus, now.getTime());
      this.metrics.recordJobTransition(tenant, j.gpuType, 'pending', 'running');
      this.metrics.observeQueueWait(tenant, j.gpuType, (now.getTime() - this.passMetrics.pendingSince(j)) / 1000);
    }
    this.metrics.recordExpressStarts(started.length);
    if (started.length) this.wakeups.wake('dispatch');
    return { started, leftPending: started.length < arrivals.length, planned };
  }

  /**
   * The leader's view after a pass: queue waits of the jobs it started, usage, and the gauges
   * `prepareGauges` made (GPUs by state, tenants' quota/allocation/queue, jobs by state). Reflects
   * the snapshot the pass planned on, so it lags the commit by one pass.
   */
  private recordPassMetrics(
    i: PassMetricsInputs,
    plan: Plan,
    { ids: started, rows: startRows }: { ids: readonly string[]; rows: ReadonlyMap<string, LivePending> },
    tenantNames: ReadonlyMap<string, string>,
    gauges: PassGauges | null,
  ): void {
    const m = this.metrics;
    const { now } = i;
    // What ran before this pass is counted first; its own starts count from its time (the
    // commit's started_at), even if they end before the next pass.
    this.passMetrics.accountUsage(now, i.running, tenantNames);
    const models = started.length ? new Map(plan.starts.map((s) => [s.jobId, s.gpuModel])) : null;
    for (const id of started) {
      const j = startRows.get(id);
      const tenant = j && tenantNames.get(j.tenantId);
      if (!j || tenant === undefined) continue;
      m.recordJobTransition(tenant, j.gpuType, 'pending', 'running');
      m.observeQueueWait(tenant, j.gpuType, (now.getTime() - this.passMetrics.pendingSince(j)) / 1000);
      const model = models!.get(id);
      if (model) this.passMetrics.started(id, tenant, model, j.gpus, now.getTime());
    }
    if (gauges) m.setSchedulerSnapshot(gauges);
  }

  /**
   * The gauges the pass leaves (when due), with `started` applied, and each node's type and state
   * (which do not depend on the starts); null when not due. Sets nothing but the node info.
   */
  private prepareGauges(
    i: PassMetricsInputs,
    plan: Plan,
    started: readonly string[],
    startRows: ReadonlyMap<string, LivePending>,
    jobsByState: ReturnType<LiveJobs['countByState']> | null,
    tenantNames: ReadonlyMap<string, string>,
  ): PassGauges | null {
    // They walk every pending job and node: on a big queue at most every few seconds.
    if (!this.passMetrics.gaugesDue(i.now.getTime(), i.pending.length) && !jobsByState) return null;
    this.passMetrics.nodeInfo(i.nodes);
    // The GPUs' jobs, from the running jobs' placements, only when the gauges need them.
    const after = afterStarts({ nodes: withRunningJobs(i.nodes, i.running), running: i.running }, plan, started, startRows, i.now);
    return {
      gpus: gpuCounts(after.nodes),
      tenants: tenantRows({ now: i.now, tenants: i.tenants, nodes: after.nodes, pending: i.pending, running: after.running }, this.passMetrics.pendingSince, after.gone),
      ...(jobsByState ? { jobs: jobCounts(jobsByState, tenantNames) } : {}),
    };
  }

  /**
   * Ends pending jobs whose dependency can never be met, cancelled with the reason, and wakes
   * the scheduler again: jobs that depended on these may now be doomed in turn.
   */
  private async cancelDoomed(doomed: { job: LivePending; reason: string }[], now: Date, tenantNames: ReadonlyMap<string, string>): Promise<void> {
    if (!doomed.length) return;
    const cancelled = new Set(await this.dependencies.cancelWithReasons(doomed.map((d) => ({ id: d.job.id, reason: d.reason })), now));
    for (const d of doomed) {
      if (!cancelled.has(d.job.id)) continue;
      this.log.log(`job ${d.job.id} cancelled: ${d.reason}`);
      const tenant = tenantNames.get(d.job.tenantId);
      if (tenant !== undefined) this.metrics.recordJobTransition(tenant, d.job.gpuType, 'pending', 'cancelled');
    }
    if (cancelled.size) this.wakeups.wake('cancel');
  }

  /**
   * Each pending job's reason, estimate and position to store (the plan's, or for a job kept from
   * the core, why: no estimate, no position), only where it changed, and the jobs whose waits are
   * over. Taken as written: what is remembered here is what the next pass compares with.
   */
  private annotations(
    plan: Plan,
    now: number,
    withheld: { job: LivePending; reason: string; code: PendingReasonCodeName }[],
  ): { rows: WaitRow[]; gone: string[]; causes: Partial<Record<StaleCause, number>>; deferred: number; driftDeferred: number } {
    const rows: WaitRow[] = [];
    // Forget what was written for jobs written since (after a full reload every job's was read back
    // or is none). A changed job's new row has no wait remembered, but the plan may name its old
    // one: an express start can refresh the jobs while the pass plans.
    const touched = this.live.takeTouched();
    const forgotten = touched?.length ? new Set(touched) : null;
    if (touched)
      for (const id of touched) {
        // Its current row too (a new leader may just have put the stored wait on it), for later passes.
        const j = this.live.get(id);
        if (j) j.wait = undefined;
        this.flicker.forget(id);
      }
    const gone = touched ? touched.filter((id) => !this.live.isPending(id)) : [];
    const causes: Partial<Record<StaleCause, number>> = {};
    // Jobs with no wait yet get one, up to newWaitsPerPass a pass, the first met first (the plan
    // lists jobs in queue order): 100,000 jobs inserted while no scheduler ran made the first
    // pass after a restart write 97,000 rows (5-8 s under the agents' reconnections).
    let fresh = 0;
    let deferred = 0;
    // Drift (see isDrift) is written after the rest, up to driftedWaitsPerPass a pass, the most
    // wrong first (driftScore; ties in queue order, as met); the rest stay stale in the database
    // until a later pass (each compares with what is stored, so nothing is lost), which the next
    // wake-up or tick brings: no pass is asked for them.
    const drifting: { job: LivePending; code: PendingReasonCodeName; reason: string; eta: number | null; position: number | null; cause: StaleCause; score: number }[] = [];
    const write = (job: LivePending, code: PendingReasonCodeName, reason: string, eta: number | null, position: number | null, cause: StaleCause) => {
      causes[cause] = (causes[cause] ?? 0) + 1;
      job.wait = { code, reason, eta, position };
      rows.push({ id: job.id, reason, reasonCode: code, estimatedStartAt: eta === null ? null : new Date(eta), scaled: code !== 'waiting_for_reclaim', queuePosition: position });
    };
    // The new annotation by its fields: an object is made only for one that is written or held back.
    const note = (job: LivePending, code: PendingReasonCodeName, reason: string, eta: number | null, position: number | null) => {
      const id = job.id;
      const old = forgotten?.has(id) ? undefined : job.wait;
      const cause = staleFields(old, code, reason, eta, position, now);
      // A flip that does not hold for two passes in a row is never written.
      if (cause !== 'code') this.flicker.forget(id);
      if (cause === null || (cause === 'code' && !this.flicker.settled(id, old, { code }))) return;
      if (cause === 'new' && ++fresh > this.config.newWaitsPerPass) {
        deferred++;
        return;
      }
      if (isDrift(cause, code)) drifting.push({ job, code, reason, eta, position, cause, score: driftScore(old!, eta, position, now) });
      else write(job, code, reason, eta, position, cause);
    };
    for (const w of withheld) note(w.job, w.code, w.reason, null, null);
    // A planned start is never in plan.pending (the core either starts or explains a job).
    // The plan's own estimate: the scale is applied when it is read (a reclaim's grace period is not scaled).
    // (Every job of the pass's snapshot is a LivePending.)
    for (const p of plan.pending) note(p.job as LivePending, p.reason, p.message, p.estimatedStartAt, p.queuePosition);
    let driftDeferred = 0;
    if (drifting.length > this.config.driftedWaitsPerPass) {
      drifting.sort((a, b) => b.score - a.score); // stable: ties stay in queue order
      driftDeferred = drifting.length - this.config.driftedWaitsPerPass;
      drifting.length = this.config.driftedWaitsPerPass;
    }
    for (const d of drifting) write(d.job, d.code, d.reason, d.eta, d.position, d.cause);
    if (!touched) this.flicker.retain((id) => this.live.isPending(id));
    return { rows, gone, causes, deferred, driftDeferred };
  }
}

type WaitRow = Parameters<JobsRepository['annotatePending']>[0][number];
/** The snapshot gauges a pass sets (see `prepareGauges`). */
type PassGauges = SchedulerSnapshotMetrics;

/** Nodes as read without allocations, each GPU's job filled in from the running jobs' placements. */
function withRunningJobs(nodes: NodeWithGpus[], running: readonly RunningWithPlacement[]): NodeWithGpus[] {
  const held = new Map<string, Map<number, string>>();
  for (const r of running) {
    for (const p of r.placement) {
      let onNode = held.get(p.nodeId);
      if (!onNode) held.set(p.nodeId, (onNode = new Map()));
      for (const g of p.gpuIndices) onNode.set(g, r.id);
    }
  }
  return nodes.map((n) => {
    const onNode = held.get(n.id);
    return onNode ? { ...n, gpus: n.gpus.map((g) => ({ ...g, jobId: onNode.get(g.index) ?? null })) } : n;
  });
}

/**
 * Times the stages of a pass or an express start: `stage(name)` ends the stage running since
 * the last call; `summary()` lists them for a slow-run log (stages under 1 ms left out; the reads,
 * which overlap, by when each was done).
 */
function stageClock(): { t0: number; stages: Record<string, number>; stage: (name: string) => void; summary: () => string } {
  const t0 = performance.now();
  const stages: Record<string, number> = {};
  let mark = t0;
  return {
    t0,
    stages,
    stage: (name) => {
      const t = performance.now();
      stages[name] = t - mark;
      mark = t;
    },
    summary: () => {
      // The reads overlap: each is told by when it was done, after the stage they make up.
      const reads = Object.entries(stages)
        .filter(([k]) => k.startsWith('read.'))
        .map(([k, v]) => `${k.slice('read.'.length)} ${v.toFixed(0)}`)
        .join(', ');
      return Object.entries(stages)
        .filter(([k, v]) => !k.startsWith('read.') && v >= 1)
        .map(([k, v]) => `${k} ${v.toFixed(0)} ms${k === 'reads' && reads ? ` (done at: ${reads})` : ''}`)
        .join(', ');
    },
  };
}
