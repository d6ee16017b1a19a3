import { Kysely, sql } from 'kysely';

/**
 * Change tracking for the leader's in-memory scheduling state (issue 13). Every insert or
 * update of a job that the scheduler reads stamps the row with its transaction's id
 * (`change_xid`, 64-bit, never wraps). The leader remembers the oldest transaction still
 * running when it last read (`pg_snapshot_xmin`): every job written by a transaction that
 * could have committed since carries an id at or above it, so "change_xid >= that" returns
 * every change since, whatever order transactions committed in (a plain sequence would not:
 * numbers are taken at write time, not at commit).
 *
 * The trigger fires for the columns the scheduler reads, not for the pass's own annotations
 * (reason, reason_code, estimated_start_at, queue_position): those would otherwise come back
 * as 100,000 "changes". A reason written with a state change fires through `state`.
 * A new jobs column the scheduler reads must be added to the list.
 *
 * `reason_code`: the pending reason as data (the core's code, beside the sentence).
 */
export const TRACKED_JOB_COLUMNS = [
  'tenant_id', 'user_id', 'name', 'state', 'gpus', 'gpu_type', 'gpu_model', 'priority', 'time_limit_seconds',
  'command', 'env', 'working_dir', 'requeue', 'submitted_at', 'queued_at', 'started_at', 'ended_at', 'exit_code',
  'stop_requested', 'stop_requested_at', 'attempts', 'script', 'master_port',
  'array_id', 'array_task_id', 'array_size', 'array_max_running',
] as const;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table jobs add column change_xid xid8, add column reason_code text;
    create function nuri_job_changed() returns trigger language plpgsql as $$
    begin
      new.change_xid := pg_current_xact_id();
      return new;
    end $$;
    create index jobs_change_xid on jobs (change_xid) where change_xid is not null;
  `.execute(db);
  await sql`
    create trigger jobs_changed before insert or update of ${sql.raw(TRACKED_JOB_COLUMNS.join(', '))} on jobs
    for each row execute function nuri_job_changed()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop trigger if exists jobs_changed on jobs;
    drop function if exists nuri_job_changed();
    drop index if exists jobs_change_xid;
    alter table jobs drop column if exists change_xid, drop column if exists reason_code;
  `.execute(db);
}
