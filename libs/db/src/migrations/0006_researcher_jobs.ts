import { Kysely, sql } from 'kysely';

/**
 * What researchers coming from Slurm need (issue 12):
 *   - nodes.address: where other nodes reach this one (its agent says so in hello); a
 *     multi-node job's MASTER_ADDR is its rank 0 node's;
 *   - jobs.master_port: chosen when the job starts, so two jobs with rank 0 on one node never
 *     share a port; jobs.script: a batch script the agent writes into the job's directory;
 *   - job arrays: array_id is the id of the array's first task (as Slurm's array job id), each
 *     task knows its index, the array's size and how many of it may run at once;
 *   - job_dependencies: afterok / afternotok / afterany on other jobs;
 *   - job_rank_exits: what each rank (node) of a multi-node run reported, so the job ends only
 *     when every rank exited 0, or at the first rank that failed, with that rank's cause.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table nodes add column address text;
    alter table jobs add column script text;
    alter table jobs add column master_port integer;
    alter table jobs add column array_id uuid;
    alter table jobs add column array_task_id integer;
    alter table jobs add column array_size integer;
    alter table jobs add column array_max_running integer;
    create index jobs_array on jobs (array_id, array_task_id) where array_id is not null;
    create index jobs_id_text on jobs ((id::text) text_pattern_ops);
    create table job_dependencies (
      job_id uuid not null references jobs (id) on delete cascade,
      depends_on uuid not null references jobs (id) on delete cascade,
      kind text not null check (kind in ('afterok', 'afternotok', 'afterany')),
      primary key (job_id, depends_on, kind)
    );
    create index job_dependencies_on on job_dependencies (depends_on);
    create table job_rank_exits (
      job_id uuid not null references jobs (id) on delete cascade,
      attempt integer not null,
      node_id uuid not null references nodes (id),
      rank integer not null,
      exit_code integer,
      signal text,
      cause text not null,
      at timestamptz not null,
      primary key (job_id, attempt, node_id)
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table if exists job_rank_exits;
    drop table if exists job_dependencies;
    drop index if exists jobs_id_text;
    drop index if exists jobs_array;
    alter table jobs drop column if exists array_max_running;
    alter table jobs drop column if exists array_size;
    alter table jobs drop column if exists array_task_id;
    alter table jobs drop column if exists array_id;
    alter table jobs drop column if exists master_port;
    alter table jobs drop column if exists script;
    alter table nodes drop column if exists address;
  `.execute(db);
}
