import { Scheduler, type Plan, type RunningJob, type Snapshot } from '@nuri/scheduling';

/**
 * Express starts (issue 13): a job submitted between two full passes starts at once when the
 * policy would start it anyway, instead of waiting up to two passes (about 1.5 s at 100,000
 * pending jobs). The full pass stays the authority; this only decides for new jobs, on the
 * state the last full pass left behind:
 *  - nodes and running jobs as that pass saw them, plus what it and express starts since
 *    started (a job ended since still holds its GPUs here: capacity freed after the pass is
 *    left to the next full pass and its ranking, never given to a newcomer first);
 *  - the pass's preemption victims count as stopping (their GPUs are promised);
 *  - pending: the new jobs, the jobs that pass gave a reservation or is reclaiming for (so
 *    a newcomer only backfills around them), and every pending job of the newcomers' tenants
 *    (their limits and limit holds are per tenant).
 * Every other pending job was held back at that pass by something a newcomer cannot change:
 * GPUs busy or reserved, or its own tenant's limits; GPUs free and unreserved then were free
 * because no pending job could use them. So a newcomer the core starts here takes nothing
 * another job could have had, and the plan's ranking, quotas and reservations hold. Only the
 * newcomers' starts are taken; preemptions are left to the full pass. The commit still
 * verifies every start against the database.
 */
export interface ExpressBase {
  snapshot: Snapshot;
  plan: Plan;
  /** Jobs that pass started (committed). */
  started: ReadonlySet<string>;
}

export class ExpressState {
  private running: RunningJob[];
  private readonly known: Set<string>;
  private readonly keep: Set<string>;
  /** The core with its per-node state, reused between express plans on the same nodes. */
  private readonly core = new Scheduler();

  /** Express starts made on this state (carried into the next one if its pass did not see them). */
  private readonly expressed: RunningJob[] = [];

  /** `previous`: the state before this pass; its express starts this pass's snapshot missed are kept. */
  constructor(
    private readonly base: ExpressBase,
    previous?: ExpressState | null,
  ) {
    const pendingById = new Map(base.snapshot.pending.map((j) => [j.id, j]));
    const victims = new Set(base.plan.preemptions.map((p) => p.jobId));
    this.running = base.snapshot.running.map((r) => (victims.has(r.id) && !r.stopping ? { ...r, stopping: true } : r));
    for (const s of base.plan.starts) {
      const j = pendingById.get(s.jobId);
      if (j && base.started.has(s.jobId)) this.running.push(asRunning(j, s, base.snapshot.now));
    }
    const seen = new Set(this.running.map((r) => r.id));
    // Those started after this pass began reading may be missing from its snapshot; an earlier
    // one it does not show has ended since.
    for (const r of previous?.expressed ?? []) {
      if (seen.has(r.id) || base.started.has(r.id) || r.startedAt < base.snapshot.now) continue;
      this.running.push(r);
      this.expressed.push(r);
    }
    this.known = new Set(pendingById.keys());
    this.keep = new Set([...(base.plan.reservations ?? []).map((r) => r.jobId), ...base.plan.preemptions.map((p) => p.forJobId)]);
    for (const p of base.plan.pending) if (p.reason === 'waiting_for_reclaim') this.keep.add(p.jobId);
  }

  tenantName(id: string): string | undefined {
    return this.base.snapshot.tenants.find((t) => t.id === id)?.name;
  }

  /** Pending jobs the plan of newcomers must include besides their tenants' (reservations, reclaims). */
  kept(): ReadonlySet<string> {
    return this.keep;
  }

  /** Whether the job was in the queue the full pass planned on (then it is not new). */
  knows(id: string): boolean {
    return this.known.has(id);
  }

  /**
   * The core's plan for the newcomers at `now`; only their starts are meant to be taken. A
   * newcomer is planned once: one that cannot start now waits for the next full pass.
   * `pending`: the queue now, or any part of it holding the newcomers, `kept()` and every
   * pending job of the newcomers' tenants (the rest is not planned on).
   */
  plan(newcomers: readonly Snapshot['pending'][number][], pending: readonly Snapshot['pending'][number][], now: number): Plan {
    const tenants = new Set(newcomers.map((j) => j.tenantId));
    const fresh = new Set(newcomers.map((j) => j.id));
    for (const id of fresh) this.known.add(id);
    const queue = pending.filter((j) => fresh.has(j.id) || this.keep.has(j.id) || tenants.has(j.tenantId));
    const plan = this.core.plan({ ...this.base.snapshot, now, running: this.running, pending: queue });
    return { ...plan, starts: plan.starts.filter((s) => fresh.has(s.jobId)), preemptions: [] };
  }

  /** Records committed express starts: later newcomers plan around them. */
  started(jobs: readonly Snapshot['pending'][number][], starts: Plan['starts'], committed: ReadonlySet<string>, now: number): void {
    const byId = new Map(jobs.map((j) => [j.id, j]));
    for (const s of starts) {
      const j = byId.get(s.jobId);
      if (!j || !committed.has(s.jobId)) continue;
      const r = asRunning(j, s, now);
      this.running.push(r);
      this.expressed.push(r);
    }
  }
}

function asRunning(j: Snapshot['pending'][number], s: Plan['starts'][number], now: number): RunningJob {
  return {
    id: j.id,
    tenantId: j.tenantId,
    gpus: j.gpus,
    gpuModel: s.gpuModel,
    priority: j.priority,
    submittedAt: j.submittedAt,
    ...(j.queuedAt !== undefined ? { queuedAt: j.queuedAt } : {}),
    startedAt: now,
    timeLimitSeconds: j.timeLimitSeconds,
    placement: s.placement,
    stopping: false,
  };
}
