import { GPUS_PER_NODE } from '@nuri/contracts';
import { Scheduler, withoutInertTails, type GpuModel, type PendingJob, type Plan, type RunningJob, type Snapshot } from '@nuri/scheduling';

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
 *
 * That holds while the jobs ranked first are still the kept ones, and the ranking moves with
 * what tenants hold (see `plan`). So the full pass decides, and nothing starts by express,
 * for a newcomer of a tenant with a kept job, while a tenant that started jobs in that pass
 * has a kept job or a start of that pass was not committed, and once a kept job has left the
 * queue (cancelled); a tenant that started
 * jobs since the ranking is planned with its whole queue. The property test in express.spec.ts
 * is the arbiter: every case it found is among its examples.
 *
 * Most newcomers into a busy center cannot start: no node has the GPUs free, or their tenant
 * is at its limit. `mayStart` tells so from the free GPUs and the limits alone (a bound no plan
 * can beat): newcomers none of which may start cost no plan, and while no GPU is free an
 * express start reads nothing (issue 13: planning a tenant's 20,000 queued jobs for each
 * submission that could never start was most of what the scheduler spent on a stream of them).
 */
export interface ExpressBase {
  snapshot: Snapshot;
  plan: Plan;
  /** Jobs that pass started (committed). */
  started: ReadonlySet<string>;
}

/** The pending jobs now, as an express plan reads them. */
export interface PendingSource {
  /** Every pending job of these tenants (a new array). */
  ofTenants(tenants: ReadonlySet<string>): PendingJob[];
  get(id: string): PendingJob | undefined;
}

/** Per GPU type, the free healthy GPUs of schedulable nodes; per tenant, the GPUs its running jobs hold by type. */
interface Capacity {
  free: Record<GpuModel, { mostOnANode: number; onWholeNodes: number }>;
  used: Map<string, Record<GpuModel, number>>;
}

export class ExpressState {
  private running: RunningJob[];
  private readonly known: Set<string>;
  private readonly keep: Set<string>;
  /** Tenants with a kept job: their newcomers are left to the full pass (see `plan`). */
  private readonly keptTenants = new Set<string>();
  /**
   * Tenants whose running jobs changed since the ranking that pass made: its starts, and express
   * starts since. Their queues rank differently now (see `plan`), so they are planned whole.
   */
  private readonly moved = new Set<string>();
  /** A moved tenant has a kept job: no express start until the next full pass. */
  private halted = false;
  /** The core with its per-node state, reused between express plans on the same nodes. */
  private readonly core = new Scheduler();

  /** Express starts made on this state (carried into the next one if its pass did not see them). */
  private readonly expressed: RunningJob[] = [];
  /** What `mayStart` needs of the running jobs and the nodes, counted once (null: again after a start). */
  private capacity: Capacity | null = null;

  /**
   * `previous`: the state before this pass; its express starts this pass's snapshot missed are kept.
   * `arrivals`: the queue's arrivals not yet settled, the only jobs of this snapshot `knows` is
   * asked about (see there).
   */
  constructor(
    private readonly base: ExpressBase,
    previous?: ExpressState | null,
    arrivals: ReadonlySet<string> = new Set(),
  ) {
    // One walk of the queue, with small sets only: the arrivals this pass planned, and the rows
    // of the jobs it started. (A set of all 100,000 ids and a map of one tenant's jobs were
    // 50-90 ms of every pass, in the section express starts wait for.)
    this.known = new Set<string>();
    const startedRows = new Map<string, Snapshot['pending'][number]>();
    if (arrivals.size || base.started.size)
      for (const j of base.snapshot.pending) {
        if (arrivals.has(j.id)) this.known.add(j.id);
        if (base.started.has(j.id)) startedRows.set(j.id, j);
      }
    const victims = new Set(base.plan.preemptions.map((p) => p.jobId));
    this.running = base.snapshot.running.map((r) => (victims.has(r.id) && !r.stopping ? { ...r, stopping: true } : r));
    for (const s of base.plan.starts) {
      const j = startedRows.get(s.jobId);
      if (!j) continue;
      this.running.push(asRunning(j, s, base.snapshot.now));
      this.moved.add(j.tenantId);
    }
    const seen = new Set(this.running.map((r) => r.id));
    // Those started after this pass began reading may be missing from its snapshot; an earlier
    // one it does not show has ended since.
    for (const r of previous?.expressed ?? []) {
      if (seen.has(r.id) || base.started.has(r.id) || r.startedAt < base.snapshot.now) continue;
      this.running.push(r);
      this.expressed.push(r);
      this.moved.add(r.tenantId);
    }
    this.keep = new Set([...(base.plan.reservations ?? []).map((r) => r.jobId), ...base.plan.preemptions.map((p) => p.forJobId)]);
    for (const p of base.plan.pending) if (p.reason === 'waiting_for_reclaim') this.keep.add(p.jobId);
    // A kept job's rank depends on its tenant's jobs ranked ahead of it (they are charged to its
    // tenant's guarantee and fair-share key first): without them it moved up, started in the
    // newcomers' plan, and the GPUs it had been held off let a newcomer start that the full pass
    // would have held (the property test's counterexample). Those jobs are planned too. Other
    // tenants' jobs ahead of it do not move it: the order among the planned tenants' jobs
    // depends on their own keys only, and those jobs neither started nor hold anything.
    if (this.keep.size) {
      const deepest = new Map<string, number>();
      for (const p of base.plan.pending)
        if (this.keep.has(p.jobId)) {
          this.keptTenants.add(p.tenantId);
          deepest.set(p.tenantId, Math.max(deepest.get(p.tenantId) ?? 0, p.queuePosition));
        }
      for (const p of base.plan.pending) if (p.queuePosition < (deepest.get(p.tenantId) ?? 0)) this.keep.add(p.jobId);
    }
    for (const t of this.moved) if (this.keptTenants.has(t)) this.halted = true;
    // A start the pass planned but did not commit (left for the next pass over
    // NURI_MAX_STARTS_PER_PASS, or refused at commit): its GPUs look free here, but the full pass
    // gives them to it or to the jobs ranked after it, never first to a newcomer.
    if (base.plan.starts.some((st) => !base.started.has(st.jobId))) this.halted = true;
  }

  /**
   * Whether any placement could start the job now: its tenant's limit for the type has room for
   * it, and some schedulable node of the type has that many healthy GPUs free, or (more than a
   * node's worth) there are enough wholly free healthy nodes. Reservations, guarantees and
   * ranking only take starts away, so false means no plan would start it.
   */
  mayStart(job: Pick<PendingJob, 'gpus' | 'gpuType' | 'tenantId'>): boolean {
    const { free, used } = (this.capacity ??= this.countCapacity());
    const quotas = (this.base.snapshot.config.mode ?? 'nuri') === 'nuri';
    const fits = (m: GpuModel) => {
      if (quotas) {
        // The tenant's limit for the type (none: 0), against all it holds there, stopping jobs too.
        const limit = this.base.snapshot.tenants.find((t) => t.id === job.tenantId)?.quotas[m]?.limit ?? 0;
        if ((used.get(job.tenantId)?.[m] ?? 0) + job.gpus > limit) return false;
      }
      return job.gpus <= GPUS_PER_NODE ? free[m].mostOnANode >= job.gpus : free[m].onWholeNodes >= job.gpus;
    };
    return job.gpuType === 'any' ? fits('h100') || fits('h800') : fits(job.gpuType);
  }

  /** Whether some GPU is free anywhere (none: no newcomer can start until the next full pass). */
  anyFree(): boolean {
    const { free } = (this.capacity ??= this.countCapacity());
    return free.h100.mostOnANode > 0 || free.h800.mostOnANode > 0;
  }

  private countCapacity(): Capacity {
    const held = new Map<string, Set<number>>();
    const used = new Map<string, Record<GpuModel, number>>();
    for (const r of this.running) {
      let u = used.get(r.tenantId);
      if (!u) used.set(r.tenantId, (u = { h100: 0, h800: 0 }));
      u[r.gpuModel] += r.gpus;
      for (const p of r.placement) {
        let s = held.get(p.nodeId);
        if (!s) held.set(p.nodeId, (s = new Set()));
        for (const g of p.gpuIndices) s.add(g);
      }
    }
    const free: Capacity['free'] = { h100: { mostOnANode: 0, onWholeNodes: 0 }, h800: { mostOnANode: 0, onWholeNodes: 0 } };
    for (const n of this.base.snapshot.nodes) {
      if (!n.schedulable) continue;
      const h = held.get(n.id);
      let count = 0;
      for (const g of n.gpus) if (g.healthy && !h?.has(g.index)) count++;
      const f = free[n.gpuType];
      f.mostOnANode = Math.max(f.mostOnANode, count);
      if (count === n.gpus.length) f.onWholeNodes += count;
    }
    return { free, used };
  }

  tenantName(id: string): string | undefined {
    return this.base.snapshot.tenants.find((t) => t.id === id)?.name;
  }

  /**
   * Whether the job was in the queue the full pass planned on (then it is not new), or was
   * planned here. Exact for the arrivals given at construction and for jobs that enter the queue
   * later, the only ones asked: a job in the snapshot that was not an arrival then can enter it
   * again only after starting, and a requeued job is never an express newcomer (`isFresh`).
   */
  knows(id: string): boolean {
    return this.known.has(id);
  }

  /**
   * The core's plan for the newcomers at `now`; only their starts are meant to be taken. A
   * newcomer is planned once: one that cannot start now waits for the next full pass. `queue`
   * reads the pending jobs now (the newcomers among them): only those of some tenants and the
   * kept ones are planned on, and read.
   */
  plan(newcomers: readonly PendingJob[], queue: PendingSource, now: number): Plan {
    for (const j of newcomers) this.known.add(j.id);
    // None can start: no plan. Otherwise all are planned: one that cannot start may still hold
    // a reservation another must not delay.
    const none: Plan = { starts: [], preemptions: [], pending: [] };
    if (this.halted || !newcomers.some((j) => this.mayStart(j))) return none;
    // The ranking interleaves tenants by what each holds and has ranked (its guarantee, its
    // fair-share key). A newcomer is ranked and charged ahead of its tenant's later jobs, and
    // jobs started since count as held: such a tenant's jobs rank elsewhere than in the pass.
    // Those of a tenant with a kept job may rank lower, and a job of another tenant left out of
    // this plan move ahead of them, into the reservation depth, and hold a newcomer the plan
    // below would start; a job of a moved tenant may newly fit its guarantee and rank first
    // (the property test's counterexamples). The order among the other tenants' jobs does not
    // depend on these tenants', so with their whole queues planned and none of them holding a
    // kept job, the kept jobs are still the ones ranked first.
    const tenants = new Set(newcomers.map((j) => j.tenantId));
    for (const t of tenants) if (this.keptTenants.has(t)) return none;
    for (const t of this.moved) tenants.add(t);
    const pending = queue.ofTenants(tenants);
    for (const id of this.keep) {
      const j = queue.get(id);
      // A kept job gone since (cancelled) frees its reservation or the GPUs it reclaims for, and
      // the depth it held: a job this plan leaves out may take them, which is the full pass's to give.
      if (!j) return none;
      pending.push(j);
    }
    const fresh = new Set(newcomers.map((j) => j.id));
    // Only up to the last newcomer in rank order: the jobs ranked after it change nothing for it
    // (when a pass started jobs of big tenants, walking their whole queues was most of each
    // express start: 100-400 ms for one newcomer in bench:live). And without each tenant's
    // trailing jobs over its limit, which change nothing for any other (inert.ts): ranking a
    // tenant's 20,000 such jobs was most of what was left.
    const snapshot = { ...this.base.snapshot, now, running: this.running, pending };
    const keep = (id: string) => fresh.has(id) || this.keep.has(id);
    const plan = this.core.plan({ ...snapshot, pending: withoutInertTails(snapshot, keep) }, { until: fresh });
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
      this.moved.add(r.tenantId);
      this.capacity = null;
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
