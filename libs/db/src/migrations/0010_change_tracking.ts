import { Kysely, sql } from 'kysely';

/**
 * Change tracking for the leader's in-memory scheduling state (issue 13). Every insert or
 * update of a job stamps the row with its transaction's id (`change_xid`, 64-bit, never
 * wraps). The leader remembers the oldest transaction still running when it last read
 * (`pg_snapshot_xmin`): every job written by a transaction that could have committed since
 * carries an id at or above it, so "change_xid >= that" returns every change since, whatever
 * order transactions committed in (a plain sequence would not: numbers are taken at write
 * time, not at commit).
 *
 * What a pending job shows while it waits (its reason and the reason's code, estimated start,
 * queue position) moves out of `jobs` into `job_waits`: the leader rewrites those for tens of
 * thousands of jobs in some passes, and in `jobs` each such write was a change (or, without
 * the trigger, still a wide row rewritten with its eight indexes: about 1.3 s for 17,000 jobs).
 * `jobs.reason` keeps the reasons of transitions (requeued, failed, cancelled). A wait stores
 * the plan's estimate by time limits; the scale learned from real waits (StartCalibration) is
 * one number in `scheduler_estimates`, applied when read: a calibrated estimate moves with
 * the clock and with every change of the scale, and stored per job that was up to 100,000
 * rewrites a pass. Half of each
 * job_waits page is left free so a rewrite stays on its page (no index entry to add).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table jobs add column change_xid xid8;
    create function nuri_job_changed() returns trigger language plpgsql as $$
    begin
      new.change_xid := pg_current_xact_id();
      return new;
    end $$;
    create trigger jobs_changed before insert or update on jobs for each row execute function nuri_job_changed();
    create index jobs_change_xid on jobs (change_xid) where change_xid is not null;
    create table job_waits (
      job_id uuid primary key references jobs (id) on delete cascade,
      reason_code text not null,
      reason text not null,
      estimated_start_at timestamptz,
      -- Whether the start estimate scale applies (not to a reclaim's grace period).
      scaled boolean not null default true,
      queue_position int
    ) with (fillfactor = 50);
    create table scheduler_estimates (
      id boolean primary key default true check (id),
      start_estimate_scale double precision not null,
      updated_at timestamptz not null
    );
    insert into job_waits (job_id, reason_code, reason, estimated_start_at, queue_position)
      select id, 'waiting_for_resources', reason, estimated_start_at, queue_position from jobs where state = 'pending' and reason is not null;
    alter table jobs drop column estimated_start_at, drop column queue_position;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table jobs add column estimated_start_at timestamptz, add column queue_position int;
    update jobs set reason = w.reason, estimated_start_at = w.estimated_start_at, queue_position = w.queue_position
      from job_waits w where w.job_id = jobs.id and jobs.state = 'pending';
    drop table job_waits;
    drop table scheduler_estimates;
    drop trigger if exists jobs_changed on jobs;
    drop function if exists nuri_job_changed();
    drop index if exists jobs_change_xid;
    alter table jobs drop column if exists change_xid;
  `.execute(db);
}
