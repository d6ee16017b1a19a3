import { Kysely, sql } from 'kysely';

/**
 * job_waits without its foreign key to jobs (issue 13). A wait is the leader's explanation of a
 * pending job, written only for jobs it read, read only joined to its job, and deleted when the
 * job leaves the queue; jobs are never deleted. The key's check made each stored wait lock its
 * job's row (FOR KEY SHARE: a write to the jobs heap, and a wait for any commit starting that
 * job): 10,000 first waits took 170-250 ms with it and 70-120 ms without, and a restart into a
 * queue of 100,000 jobs without waits writes 100,000 of them while thousands of jobs start.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table job_waits drop constraint job_waits_job_id_fkey`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    delete from job_waits w where not exists (select 1 from jobs j where j.id = w.job_id);
    alter table job_waits add constraint job_waits_job_id_fkey foreign key (job_id) references jobs (id) on delete cascade;
  `.execute(db);
}
