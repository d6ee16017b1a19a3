import { Inject, Injectable, Logger } from '@nestjs/common';
import type { JobEvent } from '@nuri/contracts';
import type { ServerConfig } from '@nuri/config';
import { GangState, JobRecord, JobRow, JobsRepository, NodesRepository, RunDecision, UsageRepository } from '@nuri/db';
import { NuriMetrics } from '@nuri/metrics';
import { Clock } from '../core/clock';
import { CONFIG } from '../core/core.module';
import { Wakeups } from '@nuri/db';

type Exited = Extract<JobEvent, { kind: 'exited' }>;
type Outcome = { to: JobRow['state']; reason: string };

/** The start of the reason of a job the tenant's idle policy cancelled (written on the job with the stop, kept at its end). */
export const IDLE_CANCEL_REASON = 'cancelled by the tenant idle policy';

/** A gateway that said it is alive this recently hears its agents (they say it every second). */
export const GATEWAY_LIVE_MS = 3_000;

/**
 * Decides what a job's end means: the one place exit codes, causes and requeue rules meet.
 * A cancel is final: once a user asked for it, the job ends `cancelled` however its
 * process ended (its exit code is still recorded), never requeued.
 */
export function outcomeOf(job: Pick<JobRow, 'stop_requested' | 'requeue' | 'time_limit_seconds'> & { reason?: string | null }, e: Exited): Outcome {
  const how = e.signal ? `killed by ${e.signal}` : `exit code ${e.exitCode}`;
  // A cancel the idle policy asked for keeps its reason (set with the stop).
  if (job.stop_requested === 'cancel' && job.reason?.startsWith(IDLE_CANCEL_REASON)) return { to: 'cancelled', reason: `${job.reason} (${e.cause === 'lost' ? 'the agent no longer ran it' : how})` };
  if (job.stop_requested === 'cancel') return { to: 'cancelled', reason: `cancelled by user (${e.cause === 'lost' ? 'the agent no longer ran it' : how})` };
  switch (e.cause) {
    case 'timeout':
      return { to: 'timeout', reason: `exceeded its time limit of ${job.time_limit_seconds}s (${how})` };
    case 'spawn_failed':
      return { to: 'failed', reason: `could not start: ${e.message ?? 'spawn failed'}` };
    case 'lost':
      if (job.stop_requested === 'preempt') return requeueOr(job, 'cancelled', 'preempted to reclaim guaranteed capacity (the agent no longer ran it)');
      return requeueOr(job, 'node_failed', `the agent lost the job${e.message ? ` (${e.message})` : ''}`);
    case 'cancelled':
      if (job.stop_requested === 'preempt') return requeueOr(job, 'cancelled', 'preempted to reclaim guaranteed capacity');
      return { to: 'cancelled', reason: `stopped by the server (${how})` };
    case 'exit':
      return e.exitCode === 0 ? { to: 'completed', reason: how } : { to: 'failed', reason: how };
  }
}

/**
 * What one rank's exit means for its run. A single-node job: outcomeOf. A job on N nodes
 * (gang, as read under the job's row lock): a rank that exits 0 while others still run is
 * recorded and the job runs on (its GPUs stay held); the last clean exit completes it; the
 * first rank to end otherwise ends it with that rank's cause and exit code, the reason naming
 * the rank and node (the others are then stopped by reconcile, their exits ignored). A stop
 * the server asked for (cancel, preemption) keeps outcomeOf's rules. Null: this rank already
 * reported (a resend, or a `lost` answer to a stop after its clean exit).
 */
export function rankExitDecision(job: Pick<JobRow, 'stop_requested' | 'requeue' | 'time_limit_seconds'>, e: Exited, gang?: GangState): RunDecision | null {
  const end = outcomeOf(job, e);
  if (!gang) return { ...end, exitCode: e.exitCode };
  const node = gang.nodes[gang.rank];
  if (!node || gang.exits.some((x) => x.nodeId === node.id)) return null;
  const mine = { exitCode: e.exitCode, signal: e.signal, cause: e.cause };
  if (job.stop_requested) return { ...end, exitCode: e.exitCode, rankExit: mine };
  if (e.cause === 'exit' && e.exitCode === 0 && !e.signal) {
    const clean = new Set(gang.exits.filter((x) => x.cause === 'exit' && x.exitCode === 0 && !x.signal).map((x) => x.rank)).add(gang.rank);
    if (clean.size < gang.nodes.length) return { keep: mine };
    return { to: 'completed', reason: `exit code 0 on all ${gang.nodes.length} nodes`, exitCode: 0, rankExit: mine };
  }
  return { ...end, reason: `rank ${gang.rank} on ${node.name}: ${end.reason}`, exitCode: e.exitCode, rankExit: mine };
}

function requeueOr(job: Pick<JobRow, 'requeue'>, otherwise: JobRow['state'], why: string): Outcome {
  return job.requeue ? { to: 'pending', reason: `${why}; requeued` } : { to: otherwise, reason: `${why}; requeue disabled` };
}

/** A job whose node or GPU failed: requeued when allowed, unless it was cancelled (a cancel is final). */
export function failedNodeOutcome(job: Pick<JobRow, 'stop_requested' | 'requeue'>, why: string): Outcome {
  if (job.stop_requested === 'cancel') return { to: 'cancelled', reason: `cancelled by user; ${why}` };
  return requeueOr(job, 'node_failed', why);
}

/**
 * A running job the agent said nothing about long after it should have ended (its time
 * limit or its stop's grace period, plus slack): the server ends it itself.
 */
export function overdueOutcome(job: Pick<JobRow, 'stop_requested' | 'requeue' | 'time_limit_seconds'>, slackSeconds: number): Outcome {
  const silent = `the agent reported no exit within ${slackSeconds}s`;
  if (job.stop_requested === 'cancel') return { to: 'cancelled', reason: `cancelled by user; ${silent} of the stop, ended by the server` };
  if (job.stop_requested === 'preempt') return requeueOr(job, 'cancelled', `preempted to reclaim guaranteed capacity; ${silent} of the stop`);
  return { to: 'timeout', reason: `exceeded its time limit of ${job.time_limit_seconds}s; ${silent} after it, ended by the server` };
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
   * already left `running` (a resent event, a raced cancel) is not moved again, an exit of
   * an earlier attempt (a restarted agent resending its journal after the job was requeued
   * and started again) never ends the current one, and a node speaks only for its own jobs.
   */
  async exited(nodeId: string, e: Exited, at: Date): Promise<boolean> {
    const job = await this.jobs.find(e.jobId);
    if (!job || job.state !== 'running') return false;
    if (e.attempt !== undefined && e.attempt !== job.attempts) {
      this.log.log(`job ${job.id}: ignored the exit of attempt ${e.attempt}; attempt ${job.attempts} runs`);
      return false;
    }
    const done = await this.jobs.finishRun(job.id, { attempt: e.attempt, onNode: nodeId }, (row, gang) => rankExitDecision(row, e, gang), at);
    if (!done) return false;
    if (done.to === 'running') {
      this.log.log(`job ${job.id}: a rank exited 0; it runs on until every rank has`);
      return false;
    }
    await this.afterEnd(job, done.before, done.to, at);
    // Every node of the run, not only the reporter: the other ranks' exits come after the end and are ignored.
    for (const n of await this.jobs.lastPlacement(job.id)) await this.nodes.settleDraining(n.id);
    return true;
  }

  /** A job whose node (or GPU) failed: back to pending when allowed, else node_failed; a cancelled one ends cancelled. True when it moved. */
  async nodeFailed(job: JobRecord, why: string, at: Date): Promise<boolean> {
    const done = await this.jobs.finishRun(job.id, { attempt: job.attempts }, (row) => failedNodeOutcome(row, why), at);
    if (!done) return false;
    await this.afterEnd(job, done.before, done.to, at);
    return true;
  }

  /**
   * Agents silent past the timeout: their nodes go down and their jobs are requeued.
   * Silence counts only from when it could have been heard, plus the time an agent backing
   * off needs to reconnect (the allowance): from `leaderSince` (this scheduler's
   * leadership), not at all while no gateway is alive, and for a node whose own gateway
   * died, from that gateway's death. So an outage of the control plane, whole or of one
   * gateway, marks no node down and requeues no healthy job.
   */
  async markSilentNodesDown(leaderSince: Date): Promise<number> {
    const now = this.clock.now();
    const downAfterMs = this.config.nodeDownAfterSeconds * 1000;
    const allowanceMs = this.config.reconnectAllowanceSeconds * 1000;
    const liveSince = new Date(now.getTime() - GATEWAY_LIVE_MS);
    if (!(await this.nodes.newestLiveGatewayStart(liveSince))) return 0; // no gateway hears the agents: their silence says nothing
    if (now.getTime() - (leaderSince.getTime() + allowanceMs) < downAfterMs) return 0;
    const silent = await this.nodes.silentSince(new Date(now.getTime() - downAfterMs), { liveSince, lostAfter: new Date(now.getTime() - downAfterMs - allowanceMs) });
    let marked = 0;
    for (const n of silent) {
      if (!(await this.nodes.setState(n.id, 'down', `agent silent for over ${this.config.nodeDownAfterSeconds}s`, ['up', 'draining']))) continue;
      marked++;
      this.log.warn(`node ${n.name} is down: agent silent`);
      this.metrics.setNodeUp(n.name, false);
      this.metrics.removeNodeGpuSeries(n.name);
      for (const job of await this.jobs.runningOnNode(n.id))
        if (await this.nodeFailed(job, `node ${n.name} went down`, now)) this.metrics.recordJobEndedByServer(job.tenantName, job.gpu_type, 'node_down');
    }
    if (marked) this.wakeups.wake('node_change');
    return marked;
  }

  /**
   * Ends running jobs whose agent, although heard from, reported nothing of them long after
   * they should have ended (time limit or stop grace, plus slack): the agent enforces both
   * itself, so such a job has no process, and its GPUs must not stay held for ever.
   */
  async endOverdue(): Promise<number> {
    const now = this.clock.now();
    const slack = this.overdueSlackSeconds();
    const heardSince = new Date(now.getTime() - this.config.nodeDownAfterSeconds * 1000);
    let ended = 0;
    for (const job of await this.jobs.overdue(now, slack, heardSince)) {
      const done = await this.jobs.finishRun(job.id, { attempt: job.attempts }, (r) => overdueOutcome(r, slack), now);
      if (!done) continue;
      ended++;
      this.log.warn(`job ${job.id}: no exit reported ${slack}s past its end; ended ${done.to} by the server`);
      this.metrics.recordJobEndedByServer(job.tenantName, job.gpu_type, 'agent_silent_past_end');
      await this.afterEnd(job, done.before, done.to, now);
      for (const n of await this.jobs.lastPlacement(job.id)) await this.nodes.settleDraining(n.id);
    }
    return ended;
  }

  /** Seconds past a job's time limit (or its stop) the server waits for the agent's word: grace, then two down-periods. */
  overdueSlackSeconds(): number {
    return Math.max(this.config.timeoutGraceSeconds, this.config.preemptGraceSeconds) + 2 * this.config.nodeDownAfterSeconds;
  }

  private async afterEnd(job: JobRecord, before: JobRow, to: JobRow['state'], at: Date): Promise<void> {
    this.ended(job, to);
    await this.account(before, at);
    this.wakeups.wake('job_end');
  }

  /** A job left its GPUs: its GPU series lose their job labels, and the transition is counted. */
  private ended(job: JobRecord, to: JobRow['state']): void {
    this.metrics.removeJobSeries(job.id);
    this.metrics.recordJobTransition(job.tenantName, job.gpu_type, 'running', to);
  }

  private async account(job: JobRow, at: Date): Promise<void> {
    if (!job.started_at || !job.gpu_model) return;
    const seconds = Math.max(0, (at.getTime() - job.started_at.getTime()) / 1000);
    await this.usage.add(job.tenant_id, job.gpu_model, { gpus: job.gpus, seconds }, at, this.config.fairShareHalfLifeSeconds);
  }
}
