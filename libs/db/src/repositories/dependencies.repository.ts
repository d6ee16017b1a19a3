import { sql } from 'kysely';
import type { JobDependenciesTable, JobsTable } from '../schema';
import type { Db } from './tenants.repository';

type State = JobsTable['state'];
export type DependencyKindValue = JobDependenciesTable['kind'];

/** One dependency of a job, with the state of the job it waits for. */
export interface DependencyRow {
  jobId: string;
  kind: DependencyKindValue;
  dependsOn: string;
  state: State;
  /** How many jobs the entry stands for: an array's tasks, else 1. */
  tasks?: number;
}

/**
 * Job dependencies and job arrays as the scheduler and the API need them, each in a bounded
 * number of queries however many jobs are pending (the scheduler runs them every pass).
 */
export class DependenciesRepository {
  constructor(private readonly db: Db) {}

  /** Every task of these arrays, in task order. */
  async tasksOf(arrayIds: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (!arrayIds.length) return out;
    const rows = await this.db
      .selectFrom('jobs')
      .select(['id', 'array_id'])
      .where('array_id', 'in', arrayIds)
      .orderBy('array_id')
      .orderBy('array_task_id')
      .execute();
    for (const r of rows) {
      const tasks = out.get(r.array_id!);
      if (tasks) tasks.push(r.id);
      else out.set(r.array_id!, [r.id]);
    }
    return out;
  }

  /**
   * For each pending job that has a dependency not met yet, the one that decides what happens
   * to it: one that can never be met (afterok on a job that ended otherwise than completed,
   * afternotok on one that completed) before one still waiting, then the earliest job waited
   * for. One query, one row per such job, whatever the size of the arrays it waits on.
   */
  async undecidedOfPending(): Promise<DependencyRow[]> {
    const rows = await sql<{ job_id: string; kind: DependencyKindValue; depends_on: string; state: State }>`
      select distinct on (d.job_id) d.job_id, d.kind, d.depends_on, t.state
      from job_dependencies d
      join jobs p on p.id = d.job_id
      join jobs t on t.id = d.depends_on
      where p.state = 'pending'
        and not (
          (d.kind = 'afterok' and t.state = 'completed')
          or (d.kind = 'afternotok' and t.state not in ('pending', 'running', 'completed'))
          or (d.kind = 'afterany' and t.state not in ('pending', 'running'))
        )
      order by d.job_id,
        case when (d.kind = 'afterok' and t.state not in ('pending', 'running', 'completed'))
               or (d.kind = 'afternotok' and t.state = 'completed') then 0 else 1 end,
        t.submitted_at, t.array_task_id nulls first, t.id`.execute(this.db);
    return rows.rows.map((r) => ({ jobId: r.job_id, kind: r.kind, dependsOn: r.depends_on, state: r.state }));
  }

  /** Which of these jobs wait on others at all (met or not): an express start leaves them to the full pass. */
  async withDependencies(ids: readonly string[]): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const rows = await sql<{ job_id: string }>`select distinct job_id from job_dependencies where job_id = any(${[...ids]}::uuid[])`.execute(this.db);
    return new Set(rows.rows.map((r) => r.job_id));
  }

  /** Running tasks of each array that caps its running tasks (one grouped query). */
  async runningOfThrottledArrays(): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom('jobs')
      .select(['array_id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('state', '=', 'running')
      .where('array_max_running', 'is not', null)
      .groupBy('array_id')
      .execute();
    return new Map(rows.map((r) => [r.array_id!, Number(r.n)]));
  }

  /**
   * The dependencies of these jobs as views show them (a page of views: one query). A
   * dependency on every task of an array is one entry named by the array's id, with its task
   * count and the state of the task that decides it (one that never will be met, else one
   * still waited on, else any), so a job waiting on a 10,000-task array is not 10,000 entries.
   */
  async ofJobs(ids: string[]): Promise<DependencyRow[]> {
    if (!ids.length) return [];
    const rows = await sql<{ job_id: string; kind: DependencyKindValue; dep: string; state: State; tasks: string }>`
      with deps as (
        select d.job_id, d.kind, t.id, t.state, t.array_id, t.array_size, t.array_task_id, t.submitted_at,
          count(*) over (partition by d.job_id, d.kind, t.array_id) as in_array
        from job_dependencies d
        join jobs t on t.id = d.depends_on
        where d.job_id in (${sql.join(ids.map((id) => sql`${id}::uuid`))})
      ), grouped as (
        select deps.*, case when array_id is not null and in_array = array_size then array_id else id end as dep
        from deps
      )
      select * from (
        select distinct on (job_id, kind, dep) job_id, kind, dep, state,
          count(*) over (partition by job_id, kind, dep) as tasks,
          min(submitted_at) over (partition by job_id, kind, dep) as first_at
        from grouped
        order by job_id, kind, dep,
          case
            when state in ('pending', 'running') then 1
            when (kind = 'afterok' and state = 'completed') or (kind = 'afternotok' and state <> 'completed') or kind = 'afterany' then 2
            else 0
          end,
          array_task_id
      ) decided
      order by job_id, kind, first_at, dep`.execute(this.db);
    return rows.rows.map((r) => ({ jobId: r.job_id, kind: r.kind, dependsOn: r.dep, state: r.state, tasks: Number(r.tasks) }));
  }

  /**
   * Cancels pending jobs, each with its own reason and a transition, in one statement.
   * Returns the ids it cancelled (a job that left `pending` meanwhile is left alone).
   */
  async cancelWithReasons(rows: { id: string; reason: string }[], at: Date): Promise<string[]> {
    if (!rows.length) return [];
    // One statement (a data-modifying CTE): no parameter per row, however many are cancelled.
    const values = JSON.stringify(rows.map((r) => ({ id: r.id, reason: r.reason })));
    const done = await sql<{ job_id: string }>`
      with done as (
        update jobs set state = 'cancelled', reason = v.reason, ended_at = ${at}::timestamptz
        from jsonb_to_recordset(${values}::jsonb) as v(id uuid, reason text)
        where jobs.id = v.id and jobs.state = 'pending'
        returning jobs.id, v.reason
      )
      insert into job_transitions (job_id, at, from_state, to_state, reason)
      select id, ${at}::timestamptz, 'pending', 'cancelled', reason from done
      returning job_id`.execute(this.db);
    return done.rows.map((r) => r.job_id);
  }
}
