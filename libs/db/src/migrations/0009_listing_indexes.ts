import { Kysely, sql } from 'kysely';

/**
 * Listings at the national plan's size (issue 13): `GET /v1/jobs?state=pending` read the
 * newest-first index and filtered on state, so a page cost as many rows as there were jobs
 * of other states newer than it (a page behind 400,000 finished jobs: tens of ms, growing).
 * With state in the index after the tenant, a page of one state is a range scan of 100 rows.
 * allocations_job covers only live allocations; a page's view reads every allocation of its
 * jobs (the latest attempt's GPUs, also once ended), which was a scan of the whole table.
 * None of these columns is written by the scheduler's annotations, so those stay HOT updates.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create index jobs_state_submitted on jobs (state, submitted_at desc, id desc);
    create index jobs_tenant_state_submitted on jobs (tenant_id, state, submitted_at desc, id desc);
    create index allocations_job_created on allocations (job_id, created_at desc);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index if exists allocations_job_created;
    drop index if exists jobs_tenant_state_submitted;
    drop index if exists jobs_state_submitted;
  `.execute(db);
}
