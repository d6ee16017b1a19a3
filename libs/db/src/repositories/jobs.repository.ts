import { randomUUID } from 'node:crypto';
import { sql, type RawBuilder } from 'kysely';
import type { JobDependenciesTable, JobRow, JobsTable } from '../schema';
import { waitReasonHash } from '../wait-reason-hash';
import { DependenciesRepository } from './dependencies.repository';
import { changedFrom } from './changed-from';
import { epochMs } from './epoch-ms';
import { openAttemptsOf, LedgerRepository } from './ledger.repository';
import type { Db } from './tenants.repository';

type State = JobsTable['state'];
const LIVE: State[] = ['pending', 'running'];

/**
 * Rank order of a multi-node job: its nodes sorted by name (rank 0 first), as JobView.placement
 * lists them. By code point, not locale: every process must agree whatever its locale.
 */
export const compareNodeNames = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Where MASTER_PORT is chosen from when the caller passes no range (the server's NURI_MASTER_PORTS default). */
export const DEFAULT_MASTER_PORTS = { first: 29500, last: 30499 } as const;

/** The lowest port of the range not in `used`, or undefined when all are taken. */
export function lowestFreePort(range: { first: number; last: number }, used: ReadonlySet<number> | undefined): number | undefined {
  for (let p = range.first; p <= range.last; p++) if (!used?.has(p)) return p;
  return undefined;
}

/** What one rank (node) of a multi-node run reported when it ended. */
export interface RankExit {
  nodeId: string;
  rank: number;
  exitCode: number | null;
  signal: string | null;
  cause: string;
}

/** A multi-node run as seen from the row lock in finishRun: nodes in rank order, this node's rank, earlier rank exits. */
export interface GangState {
  nodes: { id: string; name: string }[];
  /** The reporting node's rank (`guard.onNode`). */
  rank: number;
  exits: RankExit[];
}

/** What ends a run, or (multi-node) `keep`: record this rank's exit, the job runs on. */
export type RunDecision =
  | { to: State; reason: string; exitCode?: number | null; /** The reporting rank's exit, recorded with the end. */ rankExit?: Omit<RankExit, 'nodeId' | 'rank'> }
  | { keep: Omit<RankExit, 'nodeId' | 'rank'> };

export interface JobRecord extends JobRow {
  tenantName: string;
  userName: string;
  /** The leader's latest word on a pending job's wait (job_waits); null when none (or not pending). */
  wait: { reasonCode: string; reason: string; estimatedStartAt: string | null; queuePosition: number | null } | null;
}

export interface JobDetail extends JobRecord {
  transitions: { at: Date; from: State | null; to: State; reason: string }[];
  placement: { node: string; gpus: number[] }[];
  /** What the job waits for, with the state of each job waited on. */
  dependencies: { kind: JobDependenciesTable['kind']; job: string; state: State; tasks: number }[];
  /** Where each rank of its latest start keeps its output (also once requeued); empty: never started. */
  output: { rank: number; node: string; path: string }[];
}

/**
 * Rank r's output is on the r-th node of the latest start (by name), in its agent's output
 * directory; '' when that agent never said where (an agent from before the output relay).
 */
function outputOf(jobId: string, latest: { node: string; outputDir: string | null }[]): JobDetail['output'] {
  const dirs = new Map(latest.map((a) => [a.node, a.outputDir]));
  return [...dirs.keys()].sort(compareNodeNames).map((node, rank) => {
    const dir = dirs.get(node);
    return { rank, node, path: dir ? `${dir}/${jobId}/output.log` : '' };
  });
}

/** A job as the gateway re-reads it just before a start or stop to one node (liveStateMany). */
export interface LiveJob extends JobRecord {
  /** It holds a live GPU on that node. */
  onNode: boolean;
  /** That node's rank of the current attempt already exited (recorded in job_rank_exits). */
  rankExited: boolean;
  /** The live placement's nodes in rank order, with the address each agent reported. */
  rankNodes: { name: string; address: string | null }[];
}

const PENDING_COLUMNS = [
  'id',
  'tenant_id',
  'gpus',
  'gpu_type',
  'priority',
  'time_limit_seconds',
  'array_id',
  'array_task_id',
  'array_max_running',
  // 0 until the job first starts: a requeued job is not an express start's newcomer.
  'attempts',
] as const satisfies readonly (keyof JobRow)[];
/**
 * A pending job as the scheduler reads it (`JobsRepository.pending`, `changedSince`): the row as
 * the driver made it, with its submission and last queueing as epoch milliseconds (the scheduler
 * keeps 100,000 of them in its own form: no Date nor second object made per job on the way).
 */
export type PendingJobRow = Pick<JobRow, (typeof PENDING_COLUMNS)[number]> & { submitted_ms: number; queued_ms: number };

/** The most rows `eachPending` hands on at once (a chunk is what one read of the socket brought, usually fewer). */
const PENDING_CHUNK = 4096;

/**
 * The wait stored for a pending job (job_waits), as the scheduler reads it: its estimate in epoch
 * ms, and its sentence by the hash stored with it (`waitReasonHash`), in full only for a row
 * written without one (before migration 0018). One of the two is null.
 */
export interface StoredWaitColumns {
  wait_code: string;
  wait_reason: string | null;
  wait_reason_hash: number | null;
  wait_position: number | null;
  wait_eta_ms: number | null;
}

/** A pending job with the wait stored for it, as one read (`pending`): its columns null when none is. */
export type PendingJobWithWait = PendingJobRow & { [K in keyof StoredWaitColumns]: StoredWaitColumns[K] | null };

/** A pending job's row of job_waits (left-joined on the job while it is pending) as JobRecord.wait. */
const WAIT = sql<JobRecord['wait']>`case when job_waits.job_id is null then null
  else json_build_object('reasonCode', job_waits.reason_code, 'reason', job_waits.reason, 'queuePosition', job_waits.queue_position,
    'estimatedStartAt', case when job_waits.scaled and job_waits.estimated_start_at > now()
      then now() + (job_waits.estimated_start_at - now()) * coalesce((select start_estimate_scale from scheduler_estimates), 1)
      else job_waits.estimated_start_at end) end`;

/** The stored wait's columns as `StoredWaitColumns` names them (job_waits joined): one definition for both reads of them. */
const STORED_WAIT_COLUMNS = [
  'job_waits.reason_code as wait_code',
  sql<string | null>`case when job_waits.reason_hash is null then job_waits.reason end`.as('wait_reason'),
  // Below 2^53 (waitReasonHash): exact as a double, which the driver parses as a number, not a string.
  sql<number | null>`job_waits.reason_hash::float8`.as('wait_reason_hash'),
  'job_waits.queue_position as wait_position',
  epochMs<number | null>(sql.ref('job_waits.estimated_start_at')).as('wait_eta_ms'),
] as const;

/** What an array literal holds unquoted: no separator, brace, quote, backslash or space (uuids, numbers, codes, ISO times). */
const PLAIN_ELEMENT = /^[\w.:+-]+$/;

/**
 * A big array parameter of values that need no quoting (ids, numbers, booleans, reason codes,
 * ISO times) as one array literal, joined once: the driver escapes and quotes each element
 * apart, about 40 ms of CPU for the six arrays of 10,000 waits a restarted leader writes per
 * pass. A value that would need quoting is refused (a caller's mistake, never data's).
 */
export function plainArray(values: readonly (string | number | boolean | null)[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null) parts[i] = 'NULL';
    // A number or boolean always reads as itself (digits, '.', '-', 'e+', NaN, Infinity, true, false).
    else if (typeof v !== 'string') parts[i] = String(v);
    else {
      // (The case-blind NULL test only for four letters: a new string per element was most of its cost.)
      if (!PLAIN_ELEMENT.test(v) || (v.length === 4 && v.toUpperCase() === 'NULL')) throw new Error(`plainArray: ${JSON.stringify(v)} needs quoting`);
      parts[i] = v;
    }
  }
  return `{${parts.join(',')}}`;
}

/** Which running jobs: with a GPU on that node or one of those (whole placement still read), or these ids (those still running); none: all. */
export interface RunningFilter {
  onNode?: string;
  onNodes?: readonly string[];
  ids?: readonly string[];
}

/**
 * `g`: the live allocations a RunningFilter selects, one row per job and node (not per GPU: 8
 * times fewer rows for whole-node jobs), read on their own so that the jobs can then be read
 * by key (see `JobsRepository.running`).
 */
const liveAllocations = (which: RawBuilder<unknown>) => sql`
  with g as materialized (
    select a.job_id, a.node_id, array_agg(a.gpu_index order by a.gpu_index) as gpu_indices
    from allocations a where a.released_at is null ${which}
    group by a.job_id, a.node_id
  )`;

/** The allocations' condition for a RunningFilter; null when it selects nothing. */
function runningFilter(filter: RunningFilter): RawBuilder<unknown> | null {
  const onNodes = filter.onNodes ?? (filter.onNode ? [filter.onNode] : undefined);
  if ((filter.ids && !filter.ids.length) || (onNodes && !onNodes.length)) return null;
  return onNodes
    ? sql`and a.job_id = any(array(select h.job_id from allocations h where h.node_id = any(${[...onNodes]}::uuid[]) and h.released_at is null))`
    : filter.ids
      ? sql`and a.job_id = any(${[...filter.ids]}::uuid[])`
      : sql``;
}

export interface RunningWithPlacement {
  id: string;
  tenantId: string;
  gpus: number;
  /** The type asked for (`any` or a model); optional for hand-built values. */
  gpuType?: JobRow['gpu_type'];
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

/** What the gateway needs of a running job to bring an agent in line (see `JobsRepository.placements`). */
export interface JobPlacement {
  id: string;
  attempts: number;
  stopRequested: JobRow['stop_requested'];
  placement: { nodeId: string; gpuIndices: number[] }[];
}

export interface StartToCommit {
  jobId: string;
  gpuModel: 'h100' | 'h800';
  placement: { nodeId: string; gpuIndices: readonly number[] }[];
}

/** The columns of a new job that its submission does not give: set by the database (`insertPlainMany` reads back only these). */
const INSERT_SET = [
  'id',
  'reason',
  'gpu_model',
  'started_at',
  'ended_at',
  'exit_code',
  'stop_requested',
  'stop_requested_at',
  'attempts',
  'master_port',
  'array_id',
  'array_task_id',
  'array_size',
  'array_max_running',
  'change_xid',
] as const satisfies readonly (keyof JobRow)[];
/** The same list as SQL (constant column names), made once. */
const INSERT_SET_SQL = sql.raw(INSERT_SET.join(', '));

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
  /** A batch script the agent writes and runs with `command` as its arguments. */
  script?: string | null;
}

/** What else a submission may bring: an array (one task per index) and the jobs it waits for. */
export interface NewJobExtras {
  array?: { indices: number[]; maxRunning: number | null };
  dependencies?: { dependsOn: string; kind: JobDependenciesTable['kind'] }[];
}

/** The columns an array's tasks copy from its first task (all but id and the task's index). */
const TASK_COPIED = sql.raw(
  'tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, working_dir, requeue, submitted_at, queued_at, script, array_id, array_size, array_max_running',
);

export interface ListFilter {
  tenantId?: string;
  userId?: string;
  states?: State[];
  /** Exactly this name. */
  name?: string;
  /** Tasks of this array, ordered by task index instead of newest first. */
  arrayId?: string;
  limit: number;
  /** Keyset position: newest-first listings after (submitted_at, id); array listings after a task index. */
  after?: { submittedAt: Date; id: string } | { taskId: number };
}

/** What a bulk cancel matches: live jobs meeting every given filter. */
export interface CancelFilter {
  tenantId?: string;
  userId?: string;
  ids?: string[];
  arrayId?: string;
  name?: string;
  states: ('pending' | 'running')[];
}

/** A live job as a cancel needs it: its state, stop request and metric labels. */
export type CancelCandidate = Pick<JobRow, 'id' | 'user_id' | 'state' | 'stop_requested' | 'gpu_type'> & { tenantName: string };

export class JobsRepository {
  constructor(private readonly db: Db) {}

  /**
   * Inserts the job and its first transition, atomically. An array inserts one task per index
   * (the first task's id is the array's, like Slurm's array job id), each with its transition
   * and the dependencies: a fixed number of statements however many tasks. Returns the (first)
   * job's id. A plain job is one statement: one round trip.
   */
  async insert(job: NewJobInput, extras: NewJobExtras = {}): Promise<string> {
    if (extras.array || extras.dependencies?.length) return this.insertWithExtras(job, extras);
    return (await this.insertPlain(job, { tenantName: '', userName: '' })).id;
  }

  /**
   * A plain job (no array, no dependency) and its first transition in one statement, returned
   * as `detail` would read it back: a fresh job has no placement, dependency or output, so the
   * submit's answer needs no second round trip. The names are the caller's (not re-read).
   */
  async insertPlain(job: NewJobInput, names: { tenantName: string; userName: string }): Promise<JobDetail> {
    return (await this.insertPlainMany([{ job, names }]))[0]!;
  }

  /**
   * Many plain jobs, each with its first transition, in one statement (one commit): concurrent
   * submissions grouped. Returned in the order given. The rows travel as one JSON parameter. What
   * the caller gave is not read back (its command and env were most of the bytes and of the
   * parsing of each answer): only what the database sets, its defaults and stamps.
   */
  async insertPlainMany(items: { job: NewJobInput; names: { tenantName: string; userName: string } }[]): Promise<JobDetail[]> {
    // The columns written, each named (no spread: see below).
    const rows = items.map(({ job: j }) => ({
      id: randomUUID(),
      tenant_id: j.tenant_id,
      user_id: j.user_id,
      name: j.name,
      gpus: j.gpus,
      gpu_type: j.gpu_type,
      priority: j.priority,
      time_limit_seconds: j.time_limit_seconds,
      command: j.command,
      env: j.env,
      working_dir: j.working_dir,
      requeue: j.requeue,
      submitted_at: j.submitted_at.toISOString(),
      script: j.script ?? null,
    }));
    const r = await sql<Pick<JobRow, (typeof INSERT_SET)[number]>>`
      with j as (
        insert into jobs (id, tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, working_dir, requeue, submitted_at, queued_at, script)
        select id, tenant_id, user_id, name, 'pending', gpus, gpu_type, priority, time_limit_seconds, command, env, working_dir, requeue, submitted_at, submitted_at, script
        from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(id uuid, tenant_id uuid, user_id uuid, name text, gpus int, gpu_type text, priority text,
          time_limit_seconds int, command jsonb, env jsonb, working_dir text, requeue boolean, submitted_at timestamptz, script text)
        returning submitted_at, ${INSERT_SET_SQL}
      ), t as (
        insert into job_transitions (job_id, at, from_state, to_state, reason) select id, submitted_at, null, 'pending', 'submitted' from j
      )
      select ${INSERT_SET_SQL} from j`.execute(this.db);
    const byId = new Map(r.rows.map((row) => [row.id, row]));
    return rows.map(({ id }, i) => {
      const { job, names } = items[i]!;
      const d = byId.get(id)!;
      const at = job.submitted_at;
      // Every field written out, no spread: an object spread and then given 24 more properties
      // fell back to a slow dictionary object, 20 µs each.
      return {
        id,
        tenant_id: job.tenant_id,
        user_id: job.user_id,
        name: job.name,
        state: 'pending' as const,
        reason: d.reason,
        gpus: job.gpus,
        gpu_type: job.gpu_type,
        gpu_model: d.gpu_model,
        priority: job.priority,
        time_limit_seconds: job.time_limit_seconds,
        command: job.command,
        env: job.env,
        working_dir: job.working_dir,
        requeue: job.requeue,
        submitted_at: at,
        queued_at: at,
        started_at: d.started_at,
        ended_at: d.ended_at,
        exit_code: d.exit_code,
        stop_requested: d.stop_requested,
        stop_requested_at: d.stop_requested_at,
        attempts: d.attempts,
        script: job.script ?? null,
        master_port: d.master_port,
        array_id: d.array_id,
        array_task_id: d.array_task_id,
        array_size: d.array_size,
        array_max_running: d.array_max_running,
        change_xid: d.change_xid,
        tenantName: names.tenantName,
        userName: names.userName,
        wait: null,
        transitions: [{ at, from: null, to: 'pending' as const, reason: 'submitted' }],
        placement: [],
        dependencies: [],
        output: [],
      };
    });
  }

  private insertWithExtras(job: NewJobInput, { array, dependencies = [] }: NewJobExtras): Promise<string> {
    return this.db.transaction().execute(async (tx) => {
      // The id is made here so the first task can carry it as its array's id from the start.
      const id = randomUUID();
      const [first, ...rest] = array?.indices ?? [];
      await tx
        .insertInto('jobs')
        .values({
          ...job,
          id,
          state: 'pending',
          queued_at: job.submitted_at,
          command: JSON.stringify(job.command),
          env: JSON.stringify(job.env),
          ...(array ? { array_id: id, array_task_id: first!, array_size: array.indices.length, array_max_running: array.maxRunning } : {}),
        })
        .execute();
      if (rest.length)
        await sql`
          insert into jobs (${TASK_COPIED}, array_task_id)
          select ${TASK_COPIED}, t.i::int from jobs cross join jsonb_array_elements_text(${JSON.stringify(rest)}::jsonb) as t(i)
          where jobs.id = ${id}::uuid`.execute(tx);
      const mine = array ? sql`jobs.array_id = ${id}::uuid` : sql`jobs.id = ${id}::uuid`;
      await sql`
        insert into job_transitions (job_id, at, from_state, to_state, reason)
        select jobs.id, jobs.submitted_at, null, 'pending', 'submitted' from jobs where ${mine}`.execute(tx);
      if (dependencies.length)
        await sql`
          insert into job_dependencies (job_id, depends_on, kind)
          select jobs.id, d.depends_on, d.kind from jobs cross join jsonb_to_recordset(${JSON.stringify(dependencies.map((d) => ({ depends_on: d.dependsOn, kind: d.kind })))}::jsonb) as d(depends_on uuid, kind text)
          where ${mine}
          on conflict do nothing`.execute(tx);
      return id;
    });
  }

  private withNames(db: Db = this.db) {
    return db
      .selectFrom('jobs')
      .innerJoin('tenants', 'tenants.id', 'jobs.tenant_id')
      .innerJoin('users', 'users.id', 'jobs.user_id')
      .leftJoin('job_waits', (j) => j.onRef('job_waits.job_id', '=', 'jobs.id').on('jobs.state', '=', 'pending'))
      .selectAll('jobs')
      .select(['tenants.name as tenantName', 'users.name as userName'])
      .select(WAIT.as('wait'))
      .$castTo<JobRecord>();
  }

  async find(id: string): Promise<JobRecord | undefined> {
    if (!isUuid(id)) return undefined;
    return this.withNames().where('jobs.id', '=', id).executeTakeFirst();
  }

  /**
   * The jobs whose id starts with each prefix (lower-case), at most `limit` per prefix, within a
   * tenant when given: one statement for any number of prefixes. The bounds are the prefix and
   * the prefix followed by 'g' (every character of an id sorts below it), compared bytewise with
   * text_pattern_ops operators so each prefix is a range scan of jobs_id_text.
   */
  async byIdPrefixes(prefixes: string[], scope: { tenantId?: string }, limit = 11): Promise<Map<string, JobRecord[]>> {
    const out = new Map<string, JobRecord[]>(prefixes.map((p) => [p, []]));
    const valid = [...out.keys()].filter((p) => /^[0-9a-f-]{1,36}$/.test(p));
    if (!valid.length) return out;
    const rows = await this.db
      .selectFrom(sql<{ p: string }>`unnest(${valid}::text[])`.as('p'))
      .innerJoinLateral(
        (eb) => {
          let q = eb
            .selectFrom('jobs')
            .select('jobs.id')
            .where(sql<boolean>`(jobs.id::text) ~>=~ p.p`)
            .where(sql<boolean>`(jobs.id::text) ~<~ (p.p || 'g')`)
            .orderBy(sql`jobs.id::text`)
            .limit(limit);
          if (scope.tenantId) q = q.where('jobs.tenant_id', '=', scope.tenantId);
          return q.as('m');
        },
        (j) => j.onTrue(),
      )
      .innerJoin('jobs', 'jobs.id', 'm.id')
      .innerJoin('tenants', 'tenants.id', 'jobs.tenant_id')
      .innerJoin('users', 'users.id', 'jobs.user_id')
      .leftJoin('job_waits', (j) => j.onRef('job_waits.job_id', '=', 'jobs.id').on('jobs.state', '=', 'pending'))
      .selectAll('jobs')
      .select(['p.p as prefix', 'tenants.name as tenantName', 'users.name as userName', WAIT.as('wait')])
      .orderBy('jobs.id')
      .execute();
    for (const { prefix, ...job } of rows) out.get(prefix)!.push(job);
    return out;
  }

  /** Live jobs matching every filter of a bulk cancel, in one query (ids travel as one array). */
  async cancelCandidates(f: CancelFilter): Promise<CancelCandidate[]> {
    let q = this.db
      .selectFrom('jobs')
      .innerJoin('tenants', 'tenants.id', 'jobs.tenant_id')
      .select(['jobs.id', 'jobs.user_id', 'jobs.state', 'jobs.stop_requested', 'jobs.gpu_type', 'tenants.name as tenantName'])
      .where('jobs.state', 'in', f.states);
    if (f.tenantId) q = q.where('jobs.tenant_id', '=', f.tenantId);
    if (f.userId) q = q.where('jobs.user_id', '=', f.userId);
    if (f.ids) q = q.where(sql<boolean>`jobs.id = any(${f.ids.filter(isUuid)}::uuid[])`);
    if (f.arrayId) q = q.where('jobs.array_id', '=', f.arrayId);
    if (f.name) q = q.where('jobs.name', '=', f.name);
    return q.orderBy('jobs.id').execute();
  }

  /**
   * Cancels the given jobs that are still pending, each with its transition, in one statement;
   * returns those it cancelled (one that started meanwhile is left to `requestCancel`).
   */
  async cancelPending(ids: string[], reason: string, at: Date): Promise<string[]> {
    if (!ids.length) return [];
    const r = await sql<{ job_id: string }>`
      with c as (
        update jobs set state = 'cancelled', reason = ${reason}::text, ended_at = ${at}::timestamptz
        where id = any(${ids}::uuid[]) and state = 'pending'
        returning id
      )
      insert into job_transitions (job_id, at, from_state, to_state, reason)
      select id, ${at}::timestamptz, 'pending', 'cancelled', ${reason}::text from c
      returning job_id`.execute(this.db);
    return r.rows.map((x) => x.job_id);
  }

  /**
   * Asks the given running jobs to stop for a cancel, in one statement: a preemption stop under
   * way turns into a cancel (keeping its grace period's start), one already cancelling stays.
   * Returns every given job now running with a cancel requested.
   */
  async requestCancel(ids: string[], at: Date): Promise<string[]> {
    if (!ids.length) return [];
    const r = await this.db
      .updateTable('jobs')
      .set({ stop_requested: 'cancel', stop_requested_at: sql<Date>`coalesce(stop_requested_at, ${at}::timestamptz)` })
      .where(sql<boolean>`id = any(${ids}::uuid[])`)
      .where('state', '=', 'running')
      .returning('id')
      .execute();
    return r.map((x) => x.id);
  }

  async detail(id: string): Promise<JobDetail | undefined> {
    const job = await this.find(id);
    if (!job) return undefined;
    const [transitions, allocs, dependencies] = await Promise.all([
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
        .select(['nodes.name as node', 'allocations.gpu_index as gpu', 'allocations.created_at as at', 'nodes.output_dir as outputDir'])
        .where('job_id', '=', id)
        .orderBy('allocations.created_at', 'desc')
        .orderBy('nodes.name')
        .orderBy('allocations.gpu_index')
        .execute(),
      new DependenciesRepository(this.db).ofJobs([id]),
    ]);
    const latest = allocs[0]?.at.getTime();
    const placement = new Map<string, number[]>();
    if (job.state !== 'pending')
      for (const a of allocs.filter((a) => a.at.getTime() === latest)) placement.set(a.node, [...(placement.get(a.node) ?? []), a.gpu]);
    return {
      ...job,
      transitions,
      placement: [...placement].sort(([a], [b]) => compareNodeNames(a, b)).map(([node, gpus]) => ({ node, gpus: gpus.sort((x, y) => x - y) })),
      dependencies: dependencies.map((d) => ({ kind: d.kind, job: d.dependsOn, state: d.state, tasks: d.tasks ?? 1 })),
      output: outputOf(id, allocs.filter((a) => a.at.getTime() === latest)),
    };
  }

  /** Transitions, latest placement and dependencies of many jobs in three queries (a page of a listing). */
  async detailsOf(jobs: JobRecord[]): Promise<JobDetail[]> {
    if (!jobs.length) return [];
    const ids = jobs.map((j) => j.id);
    const [transitions, allocs, dependencies] = await Promise.all([
      this.db
        .selectFrom('job_transitions')
        .select(['job_id', 'at', 'from_state as from', 'to_state as to', 'reason'])
        .where('job_id', 'in', ids)
        .orderBy('id')
        .execute(),
      this.db
        .selectFrom('allocations')
        .innerJoin('nodes', 'nodes.id', 'allocations.node_id')
        .select(['allocations.job_id', 'nodes.name as node', 'allocations.gpu_index as gpu', 'allocations.created_at as at', 'nodes.output_dir as outputDir'])
        .where('job_id', 'in', ids)
        .execute(),
      new DependenciesRepository(this.db).ofJobs(ids),
    ]);
    const depsOf = new Map<string, JobDetail['dependencies']>();
    for (const d of dependencies) {
      const list = depsOf.get(d.jobId);
      const dep = { kind: d.kind, job: d.dependsOn, state: d.state, tasks: d.tasks ?? 1 };
      if (list) list.push(dep);
      else depsOf.set(d.jobId, [dep]);
    }
    return jobs.map((job) => {
      const mine = allocs.filter((a) => a.job_id === job.id);
      const latest = Math.max(...mine.map((a) => a.at.getTime()));
      const placement = new Map<string, number[]>();
      if (job.state !== 'pending')
        for (const a of mine.filter((a) => a.at.getTime() === latest)) placement.set(a.node, [...(placement.get(a.node) ?? []), a.gpu]);
      return {
        ...job,
        transitions: transitions.filter((t) => t.job_id === job.id).map(({ job_id: _, ...t }) => t),
        placement: [...placement].sort(([a], [b]) => compareNodeNames(a, b)).map(([node, gpus]) => ({ node, gpus: gpus.sort((x, y) => x - y) })),
        dependencies: depsOf.get(job.id) ?? [],
        output: outputOf(job.id, mine.filter((a) => a.at.getTime() === latest)),
      };
    });
  }

  /** The tenant of each of the given jobs (to show a GPU's job only to its own tenant). */
  async tenantIdsOf(ids: string[]): Promise<Map<string, string>> {
    if (!ids.length) return new Map();
    const rows = await this.db.selectFrom('jobs').select(['id', 'tenant_id']).where('id', 'in', ids).execute();
    return new Map(rows.map((r) => [r.id, r.tenant_id]));
  }

  /** Newest first, keyset-paginated on (submitted_at, id). */
  async list(f: ListFilter): Promise<JobRecord[]> {
    let q = this.withNames().limit(f.limit);
    if (f.tenantId) q = q.where('jobs.tenant_id', '=', f.tenantId);
    if (f.userId) q = q.where('jobs.user_id', '=', f.userId);
    if (f.states?.length) q = q.where('jobs.state', 'in', f.states);
    if (f.name) q = q.where('jobs.name', '=', f.name);
    if (f.arrayId) {
      // An array's tasks in index order (served by jobs_array); indices are unique within it.
      q = q.where('jobs.array_id', '=', f.arrayId).orderBy('jobs.array_task_id');
      if (f.after && 'taskId' in f.after) q = q.where('jobs.array_task_id', '>', f.after.taskId);
      return q.execute();
    }
    q = q.orderBy('jobs.submitted_at', 'desc').orderBy('jobs.id', 'desc');
    if (f.after && 'submittedAt' in f.after) {
      const { submittedAt, id } = f.after;
      // A row comparison, not the equivalent or/and: PostgreSQL uses it as the index scan's bound.
      q = q.where((eb) => eb(eb.refTuple('jobs.submitted_at', 'jobs.id'), '<', eb.tuple(submittedAt, id)));
    }
    return q.execute();
  }

  /**
   * Every pending job, with only what the scheduler uses (not command, env or script: most of a
   * row's bytes), and the wait stored for it: a leader reading the whole queue writes only the
   * waits that differ, and reading them with the jobs is one statement and no lookup by id.
   */
  async pending(): Promise<PendingJobWithWait[]> {
    const all: PendingJobWithWait[] = [];
    await this.eachPending((r) => all.push(r));
    return all;
  }

  /**
   * `pending`, each row handed to `each` as it arrives (in chunks, see RowStream): a leader
   * reloading 100,000 jobs turns them into its own form at once instead of holding every row
   * until the last came, and those rows no longer outlive two young-generation collections.
   * Resolves to the number of rows.
   */
  async eachPending(each: (r: PendingJobWithWait) => void): Promise<number> {
    const query = this.pendingColumns()
      .leftJoin('job_waits', 'job_waits.job_id', 'jobs.id')
      .select(STORED_WAIT_COLUMNS)
      .where('jobs.state', '=', 'pending')
      .compile();
    let n = 0;
    // The executor's stream yields whole chunks; the builder's yields a row at a time, each an await.
    for await (const chunk of this.db.getExecutor().stream(query, PENDING_CHUNK)) {
      for (const r of chunk.rows) each(r);
      n += chunk.rows.length;
    }
    return n;
  }

  /**
   * The oldest transaction still running, as text (xid8): every job row written by a
   * transaction that commits after this call carries a `change_xid` at or above it
   * (migration 0010). Taken before a read, it is where the next `changedSince` starts.
   */
  async changeHorizon(): Promise<string> {
    const r = await sql<{ x: string }>`select pg_snapshot_xmin(pg_current_snapshot())::text as x`.execute(this.db);
    return r.rows[0]!.x;
  }

  /**
   * Jobs written since `horizon` (from `changeHorizon`, or from the last call), whatever their
   * state now, with the columns the scheduler reads of a pending job: the leader's in-memory
   * queue applies them instead of reading every pending job each pass. Served by the
   * jobs_change_xid index. `xid`: the transaction that last wrote the row (a row read again with
   * the same one has not changed). `horizon`: where the next call starts, taken by this same
   * statement (a write it cannot see is at or above it), so one round trip, not two; null when
   * nothing changed (start from the same one again).
   */
  async changedSince(horizon: string): Promise<{ rows: (PendingJobRow & { state: State; xid: string; dependent: boolean })[]; horizon: string | null }> {
    const rows = await this.pendingColumns()
      .select([
        'state',
        sql<string>`change_xid::text`.as('xid'),
        sql<string>`pg_snapshot_xmin(pg_current_snapshot())::text`.as('horizon'),
        // Dependencies are written with their job, in its transaction: exact for as long as it lives.
        sql<boolean>`exists (select 1 from job_dependencies d where d.job_id = jobs.id)`.as('dependent'),
      ])
      .where(changedFrom(horizon))
      .execute();
    return {
      rows: rows.map(({ horizon: _h, dependent, ...r }) => Object.assign(r, { dependent: Boolean(dependent) })),
      horizon: rows[0]?.horizon ?? null,
    };
  }

  /**
   * The jobs written since `horizon` (from `changeHorizon`, or from the last call) that ever
   * started, whatever their state now, each with the nodes of its live GPUs (none once it ended or
   * was requeued): which agents a reconcile after a dispatch wake-up must look at, instead of
   * every node of the fleet. `horizon` for the next call (null when no job changed: keep the last one).
   */
  async changedPlacementsSince(horizon: string): Promise<{ jobs: { id: string; nodeIds: string[] }[]; horizon: string | null }> {
    const rows = (
      await sql<{ id: string; node_ids: string[]; horizon: string }>`
        select j.id, pg_snapshot_xmin(pg_current_snapshot())::text as horizon,
               array(select distinct a.node_id from allocations a where a.job_id = j.id and a.released_at is null) as node_ids
        from jobs j
        -- Not a job that never started (a submission): no agent has anything to do with it.
        where ${changedFrom(horizon, 'j')} and (j.state <> 'pending' or j.attempts > 0)`.execute(this.db)
    ).rows;
    return { jobs: rows.map((r) => ({ id: r.id, nodeIds: r.node_ids })), horizon: rows[0]?.horizon ?? null };
  }

  /** What is stored for each pending job's wait (a new leader that kept the jobs current while standing by writes only what differs). */
  async pendingAnnotations(): Promise<(StoredWaitColumns & { id: string })[]> {
    return this.db
      .selectFrom('job_waits')
      .innerJoin('jobs', 'jobs.id', 'job_waits.job_id')
      .select('job_waits.job_id as id')
      .select(STORED_WAIT_COLUMNS)
      .where('jobs.state', '=', 'pending')
      .execute();
  }

  private pendingColumns() {
    // Times as epoch milliseconds: pg's timestamptz parser took about 150 ms for the 200,000
    // times of 100,000 pending jobs, and the scheduler compares numbers.
    return this.db
      .selectFrom('jobs')
      .select(PENDING_COLUMNS.map((c) => `jobs.${c}` as const))
      .select([epochMs(sql.ref('jobs.submitted_at')).as('submitted_ms'), epochMs(sql.ref('jobs.queued_at')).as('queued_ms')]);
  }


  /**
   * Running jobs with their live placement; `onNode`/`onNodes`: only jobs with a GPU on that
   * node or one of those (whole placement still returned); `ids`: only these jobs (those still running).
   *
   * Written so that no plan is worse than linear in the live allocations, whatever the planner's
   * statistics say: the allocations are read on their own (one table), then each job by its
   * primary key (the `offset 0` keeps that lookup its own plan). As one join it was planned on
   * statistics taken while few jobs ran: right after a restart into an emptied fleet (a queue
   * seeded, analysed, then thousands of starts) it became nested loops of every live allocation
   * over every running job, 90 ms a gateway hello batch on average and 400 ms at worst, most of
   * the database's time in bench:live's restart (140 s for 3,600 running jobs when reproduced).
   */
  async running(filter: RunningFilter = {}): Promise<RunningWithPlacement[]> {
    const which = runningFilter(filter);
    if (!which) return [];
    const rows = (
      await sql<
        Pick<JobRow, 'id' | 'tenant_id' | 'gpus' | 'gpu_type' | 'gpu_model' | 'priority' | 'submitted_at' | 'queued_at' | 'started_at' | 'time_limit_seconds' | 'stop_requested' | 'attempts'> & {
          node_id: string;
          node_name: string;
          gpu_indices: number[];
        }
      >`
        ${liveAllocations(which)}
        select j.id, j.tenant_id, j.gpus, j.gpu_type, j.gpu_model, j.priority, j.submitted_at, j.queued_at, j.started_at,
               j.time_limit_seconds, j.stop_requested, j.attempts, g.node_id, n.name as node_name, g.gpu_indices
        from g
        cross join lateral (select * from jobs where jobs.id = g.job_id offset 0) j
        join nodes n on n.id = g.node_id
        where j.state = 'running'
        order by j.id, n.name`.execute(this.db)
    ).rows;
    const byJob = new Map<string, RunningWithPlacement>();
    for (const r of rows) {
      let j = byJob.get(r.id);
      if (!j) {
        j = {
          id: r.id,
          tenantId: r.tenant_id,
          gpus: r.gpus,
          gpuType: r.gpu_type,
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
      j.placement.push({ nodeId: r.node_id, nodeName: r.node_name, gpuIndices: r.gpu_indices });
    }
    return [...byJob.values()];
  }

  /**
   * What the gateway needs of running jobs (`running`'s filters, the same plan): each one's
   * attempt, whether it was asked to stop, and its live GPUs by node id, in no particular order.
   * No times, names or tenants: a reconcile round reads every running job after each dispatch,
   * and parsing three timestamps a row of 4,000 running jobs was most of its time.
   */
  async placements(filter: RunningFilter = {}): Promise<JobPlacement[]> {
    const which = runningFilter(filter);
    if (!which) return [];
    const rows = (
      await sql<{ id: string; stop_requested: JobRow['stop_requested']; attempts: number; node_id: string; gpu_indices: number[] }>`
        ${liveAllocations(which)}
        select j.id, j.stop_requested, j.attempts, g.node_id, g.gpu_indices
        from g
        cross join lateral (select id, state, stop_requested, attempts from jobs where jobs.id = g.job_id offset 0) j
        where j.state = 'running'`.execute(this.db)
    ).rows;
    const byJob = new Map<string, JobPlacement>();
    for (const r of rows) {
      let j = byJob.get(r.id);
      if (!j) byJob.set(r.id, (j = { id: r.id, attempts: r.attempts, stopRequested: r.stop_requested, placement: [] }));
      j.placement.push({ nodeId: r.node_id, gpuIndices: r.gpu_indices });
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
          ...(terminal ? { ended_at: patch.ended_at ?? at } : {}),
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
      // The attempt's ledger row closes at the transition's own time, in its transaction: charged exactly, once.
      if (before.state === 'running' && to !== 'running') await new LedgerRepository(tx).close(id, at, to);
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
    decide: (job: JobRow, gang?: GangState) => RunDecision | null,
    at: Date,
  ): Promise<{ before: JobRow; to: State } | null> {
    if (!isUuid(id)) return null;
    return this.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom('jobs').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
      if (!row || row.state !== 'running') return null;
      if (guard.attempt !== undefined && guard.attempt !== row.attempts) return null;
      let gang: GangState | undefined;
      if (guard.onNode !== undefined) {
        const nodes = await tx
          .selectFrom('allocations')
          .innerJoin('nodes', 'nodes.id', 'allocations.node_id')
          .select(['nodes.id', 'nodes.name'])
          .distinct()
          .where('allocations.job_id', '=', id)
          .where('allocations.released_at', 'is', null)
          .execute();
        if (!nodes.some((n) => n.id === guard.onNode)) return null;
        if (nodes.length > 1) {
          // Read after the row lock: a rank exit another gateway recorded just before is seen here.
          nodes.sort((a, b) => compareNodeNames(a.name, b.name));
          const exits = await tx
            .selectFrom('job_rank_exits')
            .select(['node_id as nodeId', 'rank', 'exit_code as exitCode', 'signal', 'cause'])
            .where('job_id', '=', id)
            .where('attempt', '=', row.attempts)
            .execute();
          gang = { nodes, rank: nodes.findIndex((n) => n.id === guard.onNode), exits };
        }
      }
      const d = decide(row, gang);
      if (!d) return null;
      const e = 'keep' in d ? d.keep : d.rankExit;
      if (gang && e) {
        await tx
          .insertInto('job_rank_exits')
          .values({ job_id: id, attempt: row.attempts, node_id: guard.onNode!, rank: gang.rank, exit_code: e.exitCode, signal: e.signal, cause: e.cause, at })
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
      if ('keep' in d) return { before: row, to: 'running' };
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

  /**
   * The nodes of a job's latest placement (its last start's, live or released, also once
   * requeued), in rank order: by name, as JobView.placement lists them.
   */
  async lastPlacement(id: string): Promise<{ id: string; name: string }[]> {
    const rows = await this.db
      .selectFrom('allocations')
      .innerJoin('nodes', 'nodes.id', 'allocations.node_id')
      .select(['nodes.id', 'nodes.name'])
      .distinct()
      .where('allocations.job_id', '=', id)
      .where('allocations.created_at', '=', (eb) => eb.selectFrom('allocations as a').select((a) => a.fn.max('a.created_at').as('m')).where('a.job_id', '=', id))
      .execute();
    return rows.sort((a, b) => compareNodeNames(a.name, b.name));
  }

  /**
   * Fresh rows of some jobs for each of many nodes, and whether each job holds a live GPU on
   * that node: the gateway re-checks a start or stop with it just before sending. Also what a
   * start needs: the live placement's nodes in rank order with their addresses, and whether that
   * node's rank of the current attempt already exited (a multi-node job runs on: never start it
   * again). Two statements whatever the number of nodes: a reconcile round after a pass that
   * started 1,000 jobs asked once per node (two statements each), most of the gateway's round
   * trips in the minute after a restart.
   */
  async liveStateMany(requests: readonly { nodeId: string; ids: readonly string[] }[]): Promise<Map<string, LiveJob>[]> {
    // An agent may name anything (a job of an older install, garbage): only ids can exist.
    const ids = [...new Set(requests.flatMap((r) => r.ids.filter(isUuid)))];
    if (!ids.length) return requests.map(() => new Map());
    const [rows, placed] = await Promise.all([
      this.withNames()
        // The nodes whose rank of the current attempt exited.
        .select(sql<string[]>`array(select e.node_id::text from job_rank_exits e where e.job_id = jobs.id and e.attempt = jobs.attempts)`.as('exited_on'))
        .where(sql<boolean>`jobs.id = any(${ids}::uuid[])`)
        .execute(),
      this.db
        .selectFrom('allocations')
        .innerJoin('nodes', 'nodes.id', 'allocations.node_id')
        .select(['allocations.job_id', 'allocations.node_id', 'nodes.name', 'nodes.address'])
        .distinct()
        .where(sql<boolean>`allocations.job_id = any(${ids}::uuid[])`)
        .where('allocations.released_at', 'is', null)
        .execute(),
    ]);
    const nodesOf = new Map<string, { nodeId: string; name: string; address: string | null }[]>();
    for (const p of placed) {
      const list = nodesOf.get(p.job_id);
      const n = { nodeId: p.node_id, name: p.name, address: p.address };
      if (list) list.push(n);
      else nodesOf.set(p.job_id, [n]);
    }
    for (const list of nodesOf.values()) list.sort((a, b) => compareNodeNames(a.name, b.name));
    const byId = new Map(rows.map((r) => [r.id, r]));
    return requests.map(({ nodeId, ids: wanted }) => {
      const out = new Map<string, LiveJob>();
      for (const id of wanted) {
        const row = byId.get(id);
        if (!row || out.has(id)) continue;
        const { exited_on, ...r } = row;
        const on = nodesOf.get(id) ?? [];
        out.set(id, {
          ...r,
          onNode: on.some((n) => n.nodeId === nodeId),
          rankExited: exited_on.includes(nodeId),
          rankNodes: on.map((n) => ({ name: n.name, address: n.address })),
        });
      }
      return out;
    });
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

  /** `requestStop` for many jobs in one statement (a pass's preemptions); returns those told now. */
  async requestStops(ids: readonly string[], kind: 'cancel' | 'preempt', at: Date): Promise<string[]> {
    if (!ids.length) return [];
    const r = await this.db
      .updateTable('jobs')
      .set({ stop_requested: kind, stop_requested_at: at })
      .where(sql<boolean>`id = any(${[...ids]}::uuid[])`)
      .where('state', '=', 'running')
      .where('stop_requested', 'is', null)
      .returning('id')
      .execute();
    return r.map((x) => x.id);
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
    /** MASTER_PORT range (NURI_MASTER_PORTS). */
    masterPorts: { first: number; last: number } = DEFAULT_MASTER_PORTS,
    /**
     * Called with the starts that passed the checks once their rows are on the way to the
     * database, and before that write is awaited: the caller's work that needs only them runs
     * while the database does its longest step. Not called when none passed. It must not throw.
     */
    whileWriting?: (started: readonly string[]) => void,
  ): Promise<{ started: string[]; skipped: { jobId: string; why: string }[] }> {
    if (!starts.length) return { started: [], skipped: [] };
    return this.db.transaction().execute(async (tx) => {
      const jobIds = starts.map((s) => s.jobId);
      const nodeIds = [...new Set(starts.flatMap((s) => s.placement.map((p) => p.nodeId)))];
      const { jobs, nodes, healthy, taken, portsUsed } = await this.startChecks(tx, jobIds, nodeIds);
      const jobState = new Map(jobs.map((j) => [j.id, j]));
      const nodeById = new Map(nodes.map((n) => [n.id, n]));
      const started: string[] = [];
      const accepted: { s: StartToCommit; port: number }[] = [];
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
                : heardSince && s.placement.some((p) => { const heard = nodeById.get(p.nodeId)!.heardMs; return heard === null || heard < heardSince.getTime(); })
                  ? 'node agent silent'
                : keys.some((k) => !healthy.has(k))
                  ? 'GPU unhealthy'
                  : keys.some((k) => taken.has(k))
                    ? 'GPU already allocated'
                    : null;
        // MASTER_PORT: the lowest of the range no other running job with rank 0 on the same node uses.
        const rank0 = why ? undefined : s.placement.map((p) => nodeById.get(p.nodeId)!.name).sort(compareNodeNames)[0];
        const port = rank0 === undefined ? undefined : lowestFreePort(masterPorts, portsUsed.get(rank0));
        const refused = why ?? (port === undefined ? `no free MASTER_PORT in ${masterPorts.first}-${masterPorts.last} on ${rank0}` : null);
        if (refused) {
          skipped.push({ jobId: s.jobId, why: refused });
          continue;
        }
        for (const k of keys) taken.add(k);
        portsUsed.set(rank0!, new Set([...(portsUsed.get(rank0!) ?? []), port!]));
        accepted.push({ s, port: port! });
        started.push(s.jobId);
      }
      // One statement for all the starts (per 5,000), not one per start (the first pass of a
      // restarted leader starts thousands: 2,973 took 7 s one round trip at a time), nor four:
      // each round trip waits its turn on the event loop.
      for (let i = 0; i < accepted.length; i += 5000) {
        const writing = this.writeStarts(tx, accepted.slice(i, i + 5000), at);
        if (i === 0 && whileWriting) {
          // After the statement went out: the driver sends it within the promise chain that
          // `writeStarts` began, which runs to the end before an immediate callback. (Its failure
          // is awaited below, not unhandled meanwhile.)
          writing.catch(() => undefined);
          await new Promise((r) => setImmediate(r));
          whileWriting(started);
        }
        await writing;
      }
      return { started, skipped };
    });
  }

  /**
   * The verified starts' rows, in one statement: jobs running, their transitions (in the order
   * given), their allocations (the unique live index has the last word), and the usage ledger's
   * row for each attempt (issue 15), opened from the jobs as this statement wrote them.
   */
  private async writeStarts(tx: Db, starts: readonly { s: StartToCommit; port: number }[], at: Date): Promise<void> {
    const ids = plainArray(starts.map((a) => a.s.jobId));
    const gpus = starts.flatMap((a) => a.s.placement.flatMap((p) => p.gpuIndices.map((i) => ({ job: a.s.jobId, node: p.nodeId, index: i }))));
    await sql`
      with v as (
        select * from unnest(${ids}::uuid[], ${plainArray(starts.map((a) => a.s.gpuModel))}::text[], ${plainArray(starts.map((a) => a.port))}::int[],
                             ${plainArray(starts.map((a) => a.s.placement.length))}::int[])
          with ordinality as v(id, model, port, n, k)
      ), started as (
        update jobs set state = 'running', reason = null, started_at = ${at}::timestamptz, gpu_model = v.model, master_port = v.port, attempts = attempts + 1
        -- The ids again as an array: joined to v alone, PostgreSQL hashed every job (a seq scan of
        -- 107,000 rows, 140 of a 1,000-start commit's 220 ms); this way it takes them by the key.
        from v where jobs.id = v.id and jobs.id = any(${ids}::uuid[])
        returning jobs.id, jobs.attempts, jobs.tenant_id, jobs.user_id, jobs.gpu_model, jobs.gpus, jobs.started_at
      ), transitions as (
        insert into job_transitions (job_id, at, from_state, to_state, reason)
        select v.id, ${at}::timestamptz, 'pending', 'running', 'placed on ' || v.n || ' node(s)' from v order by v.k
      ), held as (
        insert into allocations (job_id, node_id, gpu_index, created_at)
        select g.job, g.node, g.index, statement_timestamp()
        from unnest(${plainArray(gpus.map((g) => g.job))}::uuid[], ${plainArray(gpus.map((g) => g.node))}::uuid[], ${plainArray(gpus.map((g) => g.index))}::int[]) as g(job, node, index)
      ), ledger as (${openAttemptsOf(sql.table('started'))})
      select count(*) from started`.execute(tx);
  }

  /**
   * What a commit checks its starts against, in one statement (one round trip, where five took
   * five: with every role in one process each waited its turn on a busy event loop, most of an
   * express start's 40-130 ms commit): the jobs locked FOR UPDATE, then their nodes FOR SHARE in
   * id order (a drain, an UPDATE of the node, waits for this commit and then sees its
   * allocations), the healthy and the allocated GPUs of those nodes, and the MASTER_PORTs of the
   * running jobs there by the name of each one's rank 0 node (computed here, so the order is the
   * one JobView.placement shows).
   */
  private async startChecks(
    tx: Db,
    jobIds: readonly string[],
    nodeIds: readonly string[],
  ): Promise<{
    jobs: { id: string; state: State; gpus: number }[];
    nodes: { id: string; name: string; state: string; gpu_type: string; heardMs: number | null }[];
    healthy: Set<string>;
    taken: Set<string>;
    portsUsed: Map<string, Set<number>>;
  }> {
    // The jobs on these nodes first (a few), then their allocations on any node: as one join,
    // PostgreSQL hashed every live allocation and running job (24,000 and 3,000 at 4,000 nodes),
    // 80-330 ms of every commit.
    const { rows } = await sql<{
      jobs: [string, State, number][];
      nodes: [string, string, string, string, number | null][];
      healthy: [string, number][];
      taken: [string, number][];
      ports: [string, number, string][];
    }>`
      with j as materialized (
        select id, state, gpus from jobs where id = any(${jobIds}::uuid[]) for update
      ), n as materialized (
        select id, name, state, gpu_type, ${epochMs(sql.ref('last_heartbeat_at'))} as heard
        from nodes where id = any(${nodeIds}::uuid[]) order by id for share
      ), held as materialized (
        select distinct a.job_id from allocations a where a.node_id = any(${nodeIds}::uuid[]) and a.released_at is null
      ), ranks as (
        select al.job_id, jobs.master_port, nodes.name
        from held
        join jobs on jobs.id = held.job_id and jobs.state = 'running' and jobs.master_port is not null
        join allocations al on al.job_id = held.job_id and al.released_at is null
        join nodes on nodes.id = al.node_id
      )
      select
        (select coalesce(json_agg(json_build_array(id, state, gpus)), '[]') from j) as jobs,
        (select coalesce(json_agg(json_build_array(id, name, state, gpu_type, heard)), '[]') from n) as nodes,
        (select coalesce(json_agg(json_build_array(node_id, index)), '[]') from gpus where node_id = any(${nodeIds}::uuid[]) and healthy) as healthy,
        (select coalesce(json_agg(json_build_array(node_id, gpu_index)), '[]')
         from allocations where node_id = any(${nodeIds}::uuid[]) and released_at is null) as taken,
        (select coalesce(json_agg(json_build_array(job_id, master_port, name)), '[]') from ranks) as ports`.execute(tx);
    const r = rows[0]!;
    const jobs = new Map<string, { port: number; rank0: string }>();
    for (const [jobId, port, name] of r.ports) {
      const j = jobs.get(jobId);
      if (!j) jobs.set(jobId, { port, rank0: name });
      else if (compareNodeNames(name, j.rank0) < 0) j.rank0 = name;
    }
    const portsUsed = new Map<string, Set<number>>();
    for (const j of jobs.values()) portsUsed.set(j.rank0, (portsUsed.get(j.rank0) ?? new Set()).add(j.port));
    return {
      jobs: r.jobs.map(([id, state, gpus]) => ({ id, state, gpus })),
      nodes: r.nodes.map(([id, name, state, gpu_type, heardMs]) => ({ id, name, state, gpu_type, heardMs })),
      healthy: new Set(r.healthy.map(([node, index]) => `${node}/${index}`)),
      taken: new Set(r.taken.map(([node, index]) => `${node}/${index}`)),
      portsUsed,
    };
  }

  /**
   * Stores what pending jobs show while they wait (job_waits); `gone`: jobs whose wait is over
   * (their rows are dropped). A row written for a job that has just left the queue is harmless
   * (the view reads it only while the job is pending) and goes with the next `gone`. One
   * statement per 20,000 rows, each column one array parameter, each distinct sentence sent
   * once (thousands of jobs share "Free GPUs are held for job …": 3 MB of text became 0.1 MB)
   * with its hash, which a leader reading the waits back compares (`StoredWaitColumns`).
   */
  async annotatePending(
    rows: { id: string; reason: string; reasonCode: string; estimatedStartAt: Date | null; scaled?: boolean; queuePosition: number | null }[],
    gone: readonly string[] = [],
  ): Promise<void> {
    for (let i = 0; i < gone.length; i += 20_000) await sql`delete from job_waits where job_id = any(${gone.slice(i, i + 20_000)}::uuid[])`.execute(this.db);
    for (let i = 0; i < rows.length; i += 20_000) {
      const chunk = rows.slice(i, i + 20_000);
      const sentences = new Map<string, number>();
      const which = chunk.map((r) => {
        let k = sentences.get(r.reason);
        if (k === undefined) sentences.set(r.reason, (k = sentences.size + 1));
        return k;
      });
      await sql`
        insert into job_waits (job_id, reason_code, reason, reason_hash, estimated_start_at, scaled, queue_position)
        select v.id, v.code, s.reason, s.hash, v.eta, v.scaled, v.pos
        from unnest(${plainArray(chunk.map((r) => r.id))}::uuid[], ${plainArray(chunk.map((r) => r.reasonCode))}::text[], ${plainArray(which)}::int[],
                    ${plainArray(chunk.map((r) => r.estimatedStartAt?.toISOString() ?? null))}::timestamptz[], ${plainArray(chunk.map((r) => r.scaled ?? true))}::boolean[],
                    ${plainArray(chunk.map((r) => r.queuePosition))}::int[]) as v(id, code, k, eta, scaled, pos)
        join unnest(${[...sentences.keys()]}::text[], ${plainArray([...sentences.keys()].map(waitReasonHash))}::bigint[]) with ordinality as s(reason, hash, k) on s.k = v.k
        on conflict (job_id) do update set reason_code = excluded.reason_code, reason = excluded.reason, reason_hash = excluded.reason_hash,
          estimated_start_at = excluded.estimated_start_at, scaled = excluded.scaled, queue_position = excluded.queue_position`.execute(this.db);
    }
  }

  /** Stores the start estimate scale that waits' estimates are shown with (see migration 0010). */
  async setEstimateScale(scale: number, at: Date): Promise<void> {
    await sql`
      insert into scheduler_estimates (id, start_estimate_scale, updated_at) values (true, ${scale}, ${at}::timestamptz)
      on conflict (id) do update set start_estimate_scale = excluded.start_estimate_scale, updated_at = excluded.updated_at`.execute(this.db);
  }

  /** How many jobs are pending (served by the jobs_live index): a scheduler's start sizes its pass memory by it, never a pass. */
  async countPending(): Promise<number> {
    const r = await this.db.selectFrom('jobs').select((eb) => eb.fn.countAll<string | number>().as('n')).where('state', '=', 'pending').executeTakeFirstOrThrow();
    return Number(r.n);
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
