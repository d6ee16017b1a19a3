import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import type { ServerConfig } from '@nuri/config';
import { DatabaseHandle, JobsRepository, NodesRepository, TenantsRepository, UsageRepository } from '@nuri/db';
import { Plan, schedule } from '@nuri/scheduling';
import { Clock } from '../core/clock';
import { CONFIG, DATABASE } from '../core/core.module';
import { Wakeups } from '../core/wakeups';
import { JobLifecycle } from '../lifecycle/job-lifecycle';
import { buildSnapshot } from './snapshot';

/** Advisory lock key that elects the one active scheduler ("nuri" in ASCII). */
export const SCHEDULER_LOCK_KEY = 0x6e757269;

export interface PassResult {
  plan: Plan;
  started: string[];
  skipped: { jobId: string; why: string }[];
  durationMs: number;
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
  private lock: { release(): Promise<void> } | null = null;
  private timer?: NodeJS.Timeout;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private unsubscribe?: () => void;
  /** What was last written for each pending job, so a pass writes only changes. */
  private readonly lastAnnotation = new Map<string, string>();
  lastPass?: PassResult;

  constructor(
    @Inject(CONFIG) private readonly config: ServerConfig,
    @Inject(DATABASE) private readonly database: DatabaseHandle,
    private readonly clock: Clock,
    private readonly wakeups: Wakeups,
    private readonly tenants: TenantsRepository,
    private readonly nodes: NodesRepository,
    private readonly jobs: JobsRepository,
    private readonly usage: UsageRepository,
    private readonly lifecycle: JobLifecycle,
  ) {}

  get isLeader(): boolean {
    return this.lock !== null;
  }

  async onApplicationBootstrap(): Promise<void> {
    this.unsubscribe = this.wakeups.onWake((reason) => {
      if (reason !== 'dispatch') this.trigger();
    });
    await this.tick();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.unsubscribe?.();
    await this.running;
    await this.lock?.release().catch(() => undefined);
    this.lock = null;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      if (!this.lock) {
        this.lock = await this.database.tryAdvisoryLock(SCHEDULER_LOCK_KEY);
        if (this.lock) this.log.log('became the active scheduler');
      }
      if (this.lock) {
        await this.lifecycle.markSilentNodesDown();
        this.trigger();
      }
    } catch (e) {
      this.log.error(`tick failed: ${(e as Error).message}`);
    }
    this.timer = setTimeout(() => void this.tick(), this.config.schedulerTickMs);
  }

  /**
   * Runs a pass now, or right after the one in flight (coalescing bursts of wake-ups).
   * Passes are spaced by at least their own duration, so under a storm of submissions
   * the scheduler takes at most about half a core and the API keeps the rest.
   */
  trigger(): void {
    if (!this.lock || this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        const t0 = performance.now();
        try {
          await this.pass();
        } catch (e) {
          this.log.error(`pass failed: ${(e as Error).stack ?? e}`);
        }
        const spent = performance.now() - t0;
        if (this.again && !this.stopped) await new Promise((r) => setTimeout(r, Math.min(1000, spent)));
      } while (this.again && !this.stopped);
      this.running = null;
    })();
  }

  /** Waits until no pass is running or queued (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async pass(): Promise<PassResult> {
    const t0 = performance.now();
    const now = this.clock.now();
    const [tenants, usage, nodes, pending, running] = await Promise.all([
      this.tenants.list(),
      this.usage.all(),
      this.nodes.list(),
      this.jobs.pending(),
      this.jobs.running(),
    ]);
    const snapshot = buildSnapshot({
      now,
      tenants,
      usage,
      nodes,
      pending,
      running,
      halfLifeSeconds: this.config.fairShareHalfLifeSeconds,
      policy: {
        reservationDepth: this.config.reservationDepth,
        minRuntimeBeforePreemptSeconds: this.config.minRuntimeBeforePreemptSeconds,
        preemptGraceSeconds: this.config.preemptGraceSeconds,
        preemption: true,
      },
    });
    const plan = schedule(snapshot);
    const { started, skipped } = await this.jobs.commitStarts(
      plan.starts.map((s) => ({ jobId: s.jobId, gpuModel: s.gpuModel, placement: s.placement.map((p) => ({ nodeId: p.nodeId, gpuIndices: p.gpuIndices })) })),
      now,
    );
    for (const s of skipped) this.log.warn(`start of ${s.jobId} refused at commit: ${s.why}`);
    for (const p of plan.preemptions) {
      if (await this.jobs.requestStop(p.jobId, 'preempt', now)) this.log.log(`preempting ${p.jobId} for ${p.forJobId}: ${p.reason}`);
    }
    await this.annotate(plan, new Set(started));
    if (started.length || plan.preemptions.length) this.wakeups.wake('dispatch');
    const result = { plan, started, skipped, durationMs: performance.now() - t0 };
    this.lastPass = result;
    return result;
  }

  private async annotate(plan: Plan, started: Set<string>): Promise<void> {
    const rows = [];
    const live = new Set<string>();
    for (const p of plan.pending) {
      if (started.has(p.jobId)) continue;
      live.add(p.jobId);
      const eta = p.estimatedStartAt === null ? null : new Date(p.estimatedStartAt);
      const key = `${p.message}|${eta?.getTime() ?? ''}|${p.queuePosition}`;
      if (this.lastAnnotation.get(p.jobId) === key) continue;
      this.lastAnnotation.set(p.jobId, key);
      rows.push({ id: p.jobId, reason: p.message, estimatedStartAt: eta, queuePosition: p.queuePosition });
    }
    for (const id of this.lastAnnotation.keys()) if (!live.has(id)) this.lastAnnotation.delete(id);
    await this.jobs.annotatePending(rows);
  }
}
