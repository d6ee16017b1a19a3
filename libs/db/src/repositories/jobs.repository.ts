import { sql } from 'kysely';
import type { JobRow, JobsTable } from '../schema';
import type { Db } from './tenants.repository';

type State = JobsTable['state'];
const LIVE: State[] = ['pending', 'running'];

export interface JobRecord extends JobRow {
  tenantName: string;
  userName: string;
}

export interface JobDetail extends JobRecord {
  transitions: { at: Date; from: State | null; to: State; reason: string }[];
  placement: { node: string; gpus: number[] }[];
}

export interface RunningWithPlacement {
  id: string;
  tenantId: string;
  gpus: number;
  gpuModel: 'h100' | 'h800';
  priority: JobRow['priority'];
  submittedAt: Date;
  /** When this run's job last entered the queue (submission or requeue). */
  queuedAt: Date;
  startedAt: Date;
  timeLimitSeconds: number;
  stopRequested: JobRow['stop_requested'];
  /** Starts so far: the current attempt's number (optional for hand-built values). */
  attempts?: number;
  placement: { nodeId: string; nodeName: string; gpuIndices: number[] }[];
}

export interface StartToCommit {
  jobId: string;
  gpuModel: 'h100' | 'h800';
  placement: { nodeId: string; gpuIndices: readonly number[] }[];
}

export interface NewJobInput {
  tenant_id: string;
  user_id: string;
  name: string;
  gpus: number;
  gpu_type: JobRow['gpu_type'];
  priority: JobRow['priority'];
  time_limit_seconds: number;
  command: string[];
  env: Record<string, string>;
  working_dir: string | null;
  requeue: boolean;
  submitted_at: Date;
}

export interface ListFilter {
  tenantId?: string;
  userId?: string;
  states?: State[];
  limit: number;
  after?: { submittedAt: Date; id: string };
}

export class JobsRepository {
  constructor(private readonly db: Db) {}

  /** Inserts the job and its first transition in one statement: one round trip, atomic. */
  async insert(job: NewJobInput): Promise<string> {
    const r = await this.db
      .with('j', (db) =>
        db
          .insertInto('jobs')
          .values({ ...job, state: 'pending', queued_at: job.submitted_at, command: JSON.stringify(job.command), env: JSON.stringify(job.env) })
          .returning(['id', 'submitted_at']),
      )
      .insertInto('job_transitions')
      .columns(['job_id', 'at', 'from_state', 'to_state', 'reason'])
      .expression((eb) =>
        eb.selectFrom('j').select((s) => ['j.id', 'j.submitted_at', sql<null>`null`.as('from_state'), sql.lit('pending').as('to_state'), sql.lit('submitted').as('reason')]),
      )
      .returning('job_id')
      .executeTakeFirstOrThrow();
    return r.job_id;
  }

  private withNames(db: Db = this.db) {
    return db
      .selectFrom('jobs')
      .innerJoin('tenants', 'tenants.id', 'jobs.tenant_id')
      .innerJoin('users', 'users.id', 'jobs.user_id')
      .selectAll('jobs')
      .select(['tenants.name as tenantName', 'users.name as userName']);
  }

  async find(id: string): Promise<JobRecord | undefined> {
    if (!isUuid(id)) return undefined;
    return this.withNames().where('jobs.id', '=', id).executeTakeFirst();
  }

  async detail(id: string): Promise<JobDetail | undefined> {
    const job = await this.find(id);
    if (!job) return undefined;
    const [transitions, allocs] = await Promise.all([
      this.db
        .selectFrom('job_transitions')
        .select(['at', 'from_state as from', 'to_state as to', 'reason'])
        .where('job_id', '=', id)
        .orderBy('id')
        .execute(),
      // The latest attempt's GPUs: live ones while running, the last ones after it ended.
      job.state === 'pending' && job.attempts === 0 ? Promise.resolve([]) : this.db
        .selectFrom('allocations')
        .innerJoin('nodes', 'nodes.id', 'allocations.node_id')
        .select(['nodes.name as node', 'allocations.gpu_index as gpu', 'allocations.created_at as at'])
        .where('job_id', '=', id)
        .orderBy('allocations.created_at', 'desc')
        .orderBy('nodes.name')
        .orderBy('allocations.gpu_index')
        .execute(),
    ]);
    const latest = allocs[0]?.at.getTime();
    const placement = new Map<string, number[]>();
    if (job.state !== 'pending')
      for (const a of allocs.filter((a) => a.at.getTime() === latest)) placement.set(a.node, [...(placement.get(a.node) ?? []), a.gpu]);
    return {
      ...job,
      transitions,
      placement: [...placement].sort(([a], [b]) => a.localeCompare(b)).map(([node, gpus]) => ({ node, gpus: gpus.sort((x, y) => x - y) })),
    };
  }

  /** Transitions and latest placement of many jobs in two queries (a page of a listing). */
  async detailsOf(jobs: JobRecord[]): Promise<JobDetail[]> {
    if (!jobs.length) return [];
    const ids = jobs.map((j) => j.id);
    const [transitions, allocs] = await Promise.all([
      this.db
        .selectFrom('job_transitions')
        .select(['job_id', 'at', 'from_state as from', 'to_state as to', 'reason'])
        .where('job_id', 'in', ids)
        .orderBy('id')
        .execute(),
      this.db
        .selectFrom('allocations')
        .innerJoin('nodes', 'nodes.id', 'allocations.node_id')
        .select(['allocations.job_id', 'nodes.name as node', 'allocations.gpu_index as gpu', 'allocations.created_at as at'])
        .where('job_id', 'in', ids)
        .execute(),
    ]);
    return jobs.map((job) => {
      const mine = allocs.filter((a) => a.job_id === job.id);
      const latest = Math.max(...mine.map((a) => a.at.getTime()));
      const placement = new Map<string, number[]>();
      if (job.state !== 'pending')
        for (const a of mine.filter((a) => a.at.getTime() === latest)) placement.set(a.node, [...(placement.get(a.node) ?? []), a.gpu]);
      return {
        ...job,
        transitions: transitions.filter((t) => t.job_id === job.id).map(({ job_id: _, ...t }) => t),
        placement: [...placement].sort(([a], [b]) => a.localeCompare(b)).map(([node, gpus]) => ({ node, gpus: gpus.sort((x, y) => x - y) })),
      };
    });
  }

  /** The tenant of each of the given jobs (to show a GPU's job only to its own tenant). */
  async tenantIdsOf(ids: string[]): Promise<Map<string, string>> {
    if (!ids.length) return new Map();
    const rows = await this.db.selectFrom('jobs').select(['id', 'tenant_id']).where('id', 'in', ids).execute();
    return new Map(rows.map((r) => [r.id, r.tenant_id]));
  }

  /**
   * A cancel that arrives while a preemption stop is under way turns it into a cancel,
   * so the job ends cancelled instead of being requeued. False when there was nothing to turn.
   */
  async turnStopIntoCancel(id: string): Promise<boolean> {
    // stop_requested_at stays: the grace period runs from the first stop.
    const r = await this.db
      .updateTable('jobs')
      .set({ stop_requested: 'cancel' })
      .where('id', '=', id)
      .where('state', '=', 'running')
      .where('stop_requested', '=', 'preempt')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Newest first, keyset-paginated on (submitted_at, id). */
  async list(f: ListFilter): Promise<JobRecord[]> {
    let q = this.withNames().orderBy('jobs.submitted_at', 'desc').orderBy('jobs.id', 'desc').limit(f.limit);
    if (f.tenantId) q = q.where('jobs.tenant_id', '=', f.tenantId);
    if (f.userId) q = q.where('jobs.user_id', '=', f.userId);
    if (f.states?.length) q = q.where('jobs.state', 'in', f.states);
    if (f.after) {
      const { submittedAt, id } = f.after;
      q = q.where((eb) => eb.or([eb('jobs.submitted_at', '<', submittedAt), eb.and([eb('jobs.submitted_at', '=', submittedAt), eb('jobs.id', '<', id)])]));
    }
    return q.execute();
  }

  async pending(): Promise<JobRow[]> {
    return this.db.selectFrom('jobs').selectAll().where('state', '=', 'pending').execute();
  }

  /** Running jobs with their live placement; `onNode`: only jobs with a GPU on that node (whole placement still returned). */
  async running(filter: { onNode?: string } = {}): Promise<RunningWithPlacement[]> {
    let q = this.db
      .selectFrom('jobs')
      .innerJoin('allocations', (j) => j.onRef('allocations.job_id', '=', 'jobs.id').on('allocations.released_at', 'is', null))
      .innerJoin('nodes', 'nodes.id', 'allocations.node_id')
      .select([
        'jobs.id',
        'jobs.tenant_id',
        'jobs.gpus',
        'jobs.gpu_model',
        'jobs.priority',
        'jobs.submitted_at',
        'jobs.queued_at',
        'jobs.started_at',
        'jobs.time_limit_seconds',
        'jobs.stop_requested',
        'jobs.attempts',
        'allocations.node_id',
        'nodes.name as node_name',
        'allocations.gpu_index',
      ])
      .where('jobs.state', '=', 'running')
      .orderBy('jobs.id')
      .orderBy('nodes.name')
      .orderBy('allocations.gpu_index');
    if (filter.onNode)
      q = q.where('jobs.id', 'in', (eb) => eb.selectFrom('allocations as a').select('a.job_id').where('a.node_id', '=', filter.onNode!).where('a.released_at', 'is', null));
    const rows = await q.execute();
    const byJob = new Map<string, RunningWithPlacement>();
    for (const r of rows) {
      let j = byJob.get(r.id);
      if (!j) {
        j = {
          id: r.id,
          tenantId: r.tenant_id,
          gpus: r.gpus,
          gpuModel: r.gpu_model!,
          priority: r.priority,
          submittedAt: r.submitted_at,
          queuedAt: r.queued_at,
          startedAt: r.started_at!,
          timeLimitSeconds: r.time_limit_seconds,
          stopRequested: r.stop_requested,
          attempts: r.attempts,
          placement: [],
        };
        byJob.set(r.id, j);
      }
      let p = j.placement.find((x) => x.nodeId === r.node_id);
      if (!p) j.placement.push((p = { nodeId: r.node_id, nodeName: r.node_name, gpuIndices: [] }));
      p.gpuIndices.push(r.gpu_index);
    }
    return [...byJob.values()];
  }

  /** Running jobs with a GPU on the node: what a node failure or an agent's report touches. */
  async runningOnNode(nodeId: string): Promise<JobRecord[]> {
    return this.withNames()
      .where('jobs.state', '=', 'running')
      .where('jobs.id', 'in', (eb) => eb.selectFrom('allocations').select('job_id').where('node_id', '=', nodeId).where('released_at', 'is', null))
      .execute();
  }

  /**
   * Moves a job between states if it is still in one of `from`; records the transition,
   * and releases its GPUs when it leaves `running`. False when another actor got there first.
   */
  async transition(
    id: string,
    from: State[],
    to: State,
    reason: string,
    at: Date,
    patch: Partial<Pick<JobRow, 'exit_code' | 'ended_at' | 'started_at' | 'stop_requested' | 'stop_requested_at' | 'gpu_model'>> = {},
    db: Db = this.db,
  ): Promise<boolean> {
    const run = async (tx: Db) => {
      const before = await tx.selectFrom('jobs').select('state').where('id', '=', id).where('state', 'in', from).forUpdate().executeTakeFirst();
      if (!before) return false;
      const terminal = !LIVE.includes(to);
      await tx
        .updateTable('jobs')
        .set({
          ...patch,
          state: to,
          reason: to === 'pending' ? reason : terminal ? reason : null,
          ...(terminal ? { ended_at: patch.ended_at ?? at, estimated_start_at: null, queue_position: null } : {}),
          // A requeue re-enters the queue now: starvation counts from here, not from submission.
          ...(to === 'pending' ? { stop_requested: null, stop_requested_at: null, started_at: null, gpu_model: null, queued_at: at } : {}),
        })
        .where('id', '=', id)
        .execute();
      await tx.insertInto('job_transitions').values({ job_id: id, at, from_state: before.state, to_state: to, reason }).execute();
      if (before.state === 'running' && to !== 'running')
        // Allocation times come from the database's clock, the one clock every process shares:
        // a GPU is released before the commit that hands it on creates its next allocation,
        // so allocation history never overlaps (an agent's exit time or a pass's start could).
        await tx.updateTable('allocations').set({ released_at: sql<Date>`statement_timestamp()` }).where('job_id', '=', id).where('released_at', 'is', null).execute();
      return true;
    };
    return db === this.db ? this.db.transaction().execute(run) : run(db);
  }

  /**
   * Ends the current run of a job, deciding what its end means from the row as locked in
   * the same transaction, so a cancel that lands while an exit or a node failure is being
   * recorded is never lost (the decision sees it, or the cancel sees the job ended).
   * Refused (null) when the job no longer runs, runs another attempt than `attempt`, has no
   * live GPU on `onNode`, or `decide` returns null. Returns the row as it was before.
   */
  async finishRun(
    id: string,
    guard: { attempt?: number; onNode?: string },
    decide: (job: JobRow) => { to: State; reason: string; exitCode?: number | null } | null,
    at: Date,
  ): Promise<{ before: JobRow; to: State } | null> {
    if (!isUuid(id)) return null;
    return this.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom('jobs').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
      if (!row || row.state !== 'running') return null;
      if (guard.attempt !== undefined && guard.attempt !== row.attempts) return null;
      if (guard.onNode !== undefined) {
        const here = await tx
          .selectFrom('allocations')
          .select('id')
          .where('job_id', '=', id)
          .where('node_id', '=', guard.onNode)
          .where('released_at', 'is', null)
          .executeTakeFirst();
        if (!here) return null;
      }
      const d = decide(row);
      if (!d) return null;
      await this.transition(id, ['running'], d.to, d.reason, at, { exit_code: d.exitCode ?? null, ...(d.to === 'pending' ? { ended_at: null } : {}) }, tx);
      return { before: row, to: d.to };
    });
  }

  /**
   * Running jobs that should long have ended: past their time limit plus `slackSeconds`,
   * or asked to stop more than `slackSeconds` ago, on a node whose agent was heard from
   * since `heardSince` (an agent that talks but reports nothing of them).
   */
  async overdue(now: Date, slackSeconds: number, heardSince: Date): Promise<JobRecord[]> {
    return this.withNames()
      .where('jobs.state', '=', 'running')
      .where((eb) =>
        eb.or([
          eb('jobs.started_at', '<', sql<Date>`${now}::timestamptz - make_interval(secs => time_limit_seconds + ${slackSeconds})`),
          eb('jobs.stop_requested_at', '<', sql<Date>`${now}::timestamptz - make_interval(secs => ${slackSeconds})`),
        ]),
      )
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('allocations')
              .innerJoin('nodes', 'nodes.id', 'allocations.node_id')
              .select('allocations.id')
              .whereRef('allocations.job_id', '=', 'jobs.id')
              .where('allocations.released_at', 'is', null)
              .where((n) => n.or([n('nodes.last_heartbeat_at', 'is', null), n('nodes.last_heartbeat_at', '<', heardSince)])),
          ),
        ),
      )
      .orderBy('jobs.id')
      .execute();
  }

  /** The nodes of a job's latest placement (live or just released). */
  async lastPlacementNodes(id: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('allocations')
      .select('node_id')
      .distinct()
      .where('job_id', '=', id)
      .where('created_at', '=', (eb) => eb.selectFrom('allocations as a').select((a) => a.fn.max('a.created_at').as('m')).where('a.job_id', '=', id))
      .execute();
    return rows.map((r) => r.node_id);
  }

  /** Fresh rows of some jobs, and whether each holds a live GPU on `nodeId`: the gateway re-checks a start or stop with it just before sending. */
  async liveState(ids: string[], nodeId: string): Promise<Map<string, JobRecord & { onNode: boolean }>> {
    // An agent may name anything (a job of an older install, garbage): only ids can exist.
    ids = ids.filter(isUuid);
    if (!ids.length) return new Map();
    const rows = await this.withNames()
      .select((eb) =>
        eb
          .exists(
            eb
              .selectFrom('allocations')
              .select('allocations.id')
              .whereRef('allocations.job_id', '=', 'jobs.id')
              .where('allocations.node_id', '=', nodeId)
              .where('allocations.released_at', 'is', null),
          )
          .as('on_node'),
      )
      .where('jobs.id', 'in', ids)
      .execute();
    return new Map(rows.map(({ on_node, ...r }) => [r.id, { ...r, onNode: Boolean(on_node) }]));
  }

  async requestStop(id: string, kind: 'cancel' | 'preempt', at: Date): Promise<boolean> {
    const r = await this.db
      .updateTable('jobs')
      .set({ stop_requested: kind, stop_requested_at: at })
      .where('id', '=', id)
      .where('state', '=', 'running')
      .where('stop_requested', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /**
   * Commits the starts of a plan in one transaction after verifying each against the
   * database: the job is still pending, its nodes are up and its GPUs healthy and free.
   * A start that fails verification is skipped (the next pass re-plans it); the unique
   * index on live allocations is the last word if anything raced past the checks.
   */
  async commitStarts(
    starts: StartToCommit[],
    at: Date,
    /** A node whose agent was last heard before this is silent: no new start there, even before it is marked down. */
    heardSince?: Date,
  ): Promise<{ started: string[]; skipped: { jobId: string; why: string }[] }> {
    if (!starts.length) return { started: [], skipped: [] };
    return this.db.transaction().execute(async (tx) => {
      const jobIds = starts.map((s) => s.jobId);
      const nodeIds = [...new Set(starts.flatMap((s) => s.placement.map((p) => p.nodeId)))];
      const [jobs, nodes, gpus, live] = await Promise.all([
        tx.selectFrom('jobs').select(['id', 'state', 'gpus']).where('id', 'in', jobIds).forUpdate().execute(),
        // FOR SHARE: a drain (an UPDATE of the node) waits for this commit, then sees its allocations.
        tx.selectFrom('nodes').select(['id', 'state', 'gpu_type', 'last_heartbeat_at']).where('id', 'in', nodeIds).forShare().execute(),
        tx.selectFrom('gpus').select(['node_id', 'index', 'healthy']).where('node_id', 'in', nodeIds).execute(),
        tx.selectFrom('allocations').select(['node_id', 'gpu_index']).where('node_id', 'in', nodeIds).where('released_at', 'is', null).execute(),
      ]);
      const jobState = new Map(jobs.map((j) => [j.id, j]));
      const nodeById = new Map(nodes.map((n) => [n.id, n]));
      const healthy = new Set(gpus.filter((g) => g.healthy).map((g) => `${g.node_id}/${g.index}`));
      const taken = new Set(live.map((a) => `${a.node_id}/${a.gpu_index}`));
      const started: string[] = [];
      const skipped: { jobId: string; why: string }[] = [];
      for (const s of starts) {
        const keys = s.placement.flatMap((p) => p.gpuIndices.map((i) => `${p.nodeId}/${i}`));
        const job = jobState.get(s.jobId);
        const why =
          !job || job.state !== 'pending'
            ? 'job is no longer pending'
            : keys.length !== job.gpus
              ? 'placement does not match the GPU count'
              : s.placement.some((p) => nodeById.get(p.nodeId)?.state !== 'up' || nodeById.get(p.nodeId)?.gpu_type !== s.gpuModel)
                ? 'node not up or of another type'
                : heardSince && s.placement.some((p) => !nodeById.get(p.nodeId)!.last_heartbeat_at || nodeById.get(p.nodeId)!.last_heartbeat_at! < heardSince)
                  ? 'node agent silent'
                : keys.some((k) => !healthy.has(k))
                  ? 'GPU unhealthy'
                  : keys.some((k) => taken.has(k))
                    ? 'GPU already allocated'
                    : null;
        if (why) {
          skipped.push({ jobId: s.jobId, why });
          continue;
        }
        for (const k of keys) taken.add(k);
        await tx
          .updateTable('jobs')
          .set({ state: 'running', reason: null, started_at: at, gpu_model: s.gpuModel, estimated_start_at: null, queue_position: null, attempts: sql`attempts + 1` })
          .where('id', '=', s.jobId)
          .execute();
        await tx.insertInto('job_transitions').values({ job_id: s.jobId, at, from_state: 'pending', to_state: 'running', reason: `placed on ${s.placement.length} node(s)` }).execute();
        await tx
          .insertInto('allocations')
          .values(s.placement.flatMap((p) => p.gpuIndices.map((i) => ({ job_id: s.jobId, node_id: p.nodeId, gpu_index: i, created_at: sql<Date>`statement_timestamp()` }))))
          .execute();
        started.push(s.jobId);
      }
      return { started, skipped };
    });
  }

  /** Stores the plan's explanation for pending jobs (only rows that changed are passed in). */
  async annotatePending(rows: { id: string; reason: string; estimatedStartAt: Date | null; queuePosition: number }[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      const values = sql.join(chunk.map((r) => sql`(${r.id}::uuid, ${r.reason}, ${r.estimatedStartAt}::timestamptz, ${r.queuePosition}::int)`));
      await sql`
        update jobs set reason = v.reason, estimated_start_at = v.eta, queue_position = v.pos
        from (values ${values}) as v(id, reason, eta, pos)
        where jobs.id = v.id and jobs.state = 'pending'`.execute(this.db);
    }
  }

  /** Live jobs (pending and running) by tenant, state and requested type; served by the jobs_live index. */
  async countByState(): Promise<{ tenantId: string; state: State; gpuType: string; n: number }[]> {
    const rows = await this.db
      .selectFrom('jobs')
      .select(['tenant_id as tenantId', 'state', 'gpu_type as gpuType', (eb) => eb.fn.countAll<number>().as('n')])
      .where('state', 'in', LIVE)
      .groupBy(['tenant_id', 'state', 'gpu_type'])
      .execute();
    return rows.map((r) => ({ ...r, n: Number(r.n) }));
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string) => UUID.test(s);
