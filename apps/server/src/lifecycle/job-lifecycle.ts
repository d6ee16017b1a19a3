import { Inject, Injectable, Logger } from '@nestjs/common';
import type { JobEvent } from '@nuri/contracts';
import type { ServerConfig } from '@nuri/config';
import { Db, JobRecord, JobRow, JobsRepository, NodesRepository, UsageRepository } from '@nuri/db';
import { NuriMetrics } from '@nuri/metrics';
import { Clock } from '../core/clock';
import { CONFIG } from '../core/core.module';
import { Wakeups } from '../core/wakeups';

type Exited = Extract<JobEvent, { kind: 'exited' }>;
type Outcome = { to: JobRow['state']; reason: string };

/** Decides what a job's end means: the one place exit codes, causes and requeue rules meet. */
export function outcomeOf(job: Pick<JobRow, 'stop_requested' | 'requeue' | 'time_limit_seconds'>, e: Exited): Outcome {
  const how = e.signal ? `killed by ${e.signal}` : `exit code ${e.exitCode}`;
  switch (e.cause) {
    case 'timeout':
      return { to: 'timeout', reason: `exceeded its time limit of ${job.time_limit_seconds}s (${how})` };
    case 'spawn_failed':
      return { to: 'failed', reason: `could not start: ${e.message ?? 'spawn failed'}` };
    case 'lost':
      return requeueOr(job, 'node_failed', 'the agent lost the job');
    case 'cancelled':
      if (job.stop_requested === 'preempt') return requeueOr(job, 'cancelled', 'preempted to reclaim guaranteed capacity');
      return { to: 'cancelled', reason: job.stop_requested === 'cancel' ? `cancelled by user (${how})` : `stopped by the server (${how})` };
    case 'exit':
      if (job.stop_requested === 'cancel') return { to: 'cancelled', reason: `cancelled by user (${how})` };
      return e.exitCode === 0 ? { to: 'completed', reason: how } : { to: 'failed', reason: how };
  }
}

function requeueOr(job: Pick<JobRow, 'requeue'>, otherwise: JobRow['state'], why: string): Outcome {
  return job.requeue ? { to: 'pending', reason: `${why}; requeued` } : { to: otherwise, reason: `${why}; requeue disabled` };
}

@Injectable()
export class JobLifecycle {
  private readonly log = new Logger('JobLifecycle');

  constructor(
    @Inject(CONFIG) private readonly config: ServerConfig,
    private readonly clock: Clock,
    private readonly wakeups: Wakeups,
    private readonly jobs: JobsRepository,
    private readonly nodes: NodesRepository,
    private readonly usage: UsageRepository,
    private readonly metrics: NuriMetrics,
  ) {}

  /**
   * Records a job's exit as reported by the agent of `nodeId`. Idempotent: a job that
   * already left `running` (a resent event, a raced cancel) is not moved again, and an
   * exit of an earlier attempt (a restarted agent resending its journal after the job was
   * requeued and started again) never ends the current one.
   */
  async exited(nodeId: string, e: Exited, at: Date, db?: Db): Promise<boolean> {
    const job = await this.jobs.find(e.jobId);
    if (!job || job.state !== 'running') return false;
    if (e.attempt !== undefined && e.attempt !== job.attempts) {
      this.log.log(`job ${job.id}: ignored the exit of attempt ${e.attempt}; attempt ${job.attempts} runs`);
      return false;
    }
    const onNode = await this.jobs.runningOnNode(nodeId);
    if (!onNode.some((j) => j.id === job.id)) return false; // a node speaks only for its own jobs
    const { to, reason } = outcomeOf(job, e);
    const moved = await this.jobs.transition(job.id, ['running'], to, reason, at, { exit_code: e.exitCode ?? null, ended_at: to === 'pending' ? null : at }, db);
    if (moved) {
      this.ended(job, to);
      await this.account(job, at);
      await this.nodes.settleDraining(nodeId);
      this.wakeups.wake('job_end');
    }
    return moved;
  }

  /** A job whose node (or GPU) failed: back to pending when allowed, else node_failed. True when it moved. */
  async nodeFailed(job: JobRecord, why: string, at: Date): Promise<boolean> {
    const { to, reason } = requeueOr(job, 'node_failed', why);
    if (!(await this.jobs.transition(job.id, ['running'], to, reason, at))) return false;
    this.ended(job, to);
    await this.account(job, at);
    this.wakeups.wake('job_end');
    return true;
  }

  /** Agents silent past the timeout: their nodes go down and their jobs are requeued. */
  async markSilentNodesDown(): Promise<number> {
    const now = this.clock.now();
    const silent = await this.nodes.silentSince(new Date(now.getTime() - this.config.nodeDownAfterSeconds * 1000));
    for (const n of silent) {
      if (!(await this.nodes.setState(n.id, 'down', `agent silent for over ${this.config.nodeDownAfterSeconds}s`, ['up', 'draining']))) continue;
      this.log.warn(`node ${n.name} is down: agent silent`);
      this.metrics.setNodeUp(n.name, false);
      this.metrics.removeNodeGpuSeries(n.name);
      for (const job of await this.jobs.runningOnNode(n.id)) await this.nodeFailed(job, `node ${n.name} went down`, now);
    }
    if (silent.length) this.wakeups.wake('node_change');
    return silent.length;
  }

  /** A job left its GPUs: its GPU series lose their job labels, and the transition is counted. */
  private ended(job: JobRecord, to: JobRow['state']): void {
    this.metrics.removeJobSeries(job.id);
    this.metrics.recordJobTransition(job.tenantName, job.gpu_type, 'running', to);
  }

  private async account(job: JobRow, at: Date): Promise<void> {
    if (!job.started_at || !job.gpu_model) return;
    const seconds = Math.max(0, (at.getTime() - job.started_at.getTime()) / 1000);
    await this.usage.add(job.tenant_id, job.gpu_model, seconds * job.gpus, at, this.config.fairShareHalfLifeSeconds);
  }
}
