import { Kysely, sql } from 'kysely';

/**
 * A stored wait's sentence by its hash (issue 13): a new leader reads every pending job's wait
 * back to write only the ones that differ, and the sentences were most of those bytes (about
 * 200 characters each, 25 MB for 120,000 jobs that shared 60 sentences; ~150 ms of a 1.2 s
 * reload decoding and collecting them). The leader compares the hash instead (waitReasonHash);
 * the sentence stays for the API. Rows written before this have none and are read in full.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table job_waits add column reason_hash bigint`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table job_waits drop column reason_hash`.execute(db);
}
