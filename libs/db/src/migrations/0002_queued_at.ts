import { Kysely, sql } from 'kysely';

/**
 * When a job last entered the queue: its submission, or its requeue after a preemption or
 * a node failure. The scheduler counts starvation from it, so a requeued job is not
 * "starving" the moment it returns. Existing jobs take their latest move to 'pending'.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table jobs add column queued_at timestamptz;
    update jobs set queued_at = coalesce(
      (select t.at from job_transitions t where t.job_id = jobs.id and t.to_state = 'pending' order by t.id desc limit 1),
      jobs.submitted_at
    );
    alter table jobs alter column queued_at set not null;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table jobs drop column if exists queued_at`.execute(db);
}
