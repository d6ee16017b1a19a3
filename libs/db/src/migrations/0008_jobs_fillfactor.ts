import { Kysely, sql } from 'kysely';

/**
 * Room in each page of `jobs` for updated rows (issue 13): the scheduler rewrites pending
 * jobs' reason, estimate and position (tens of thousands of rows a pass at 100,000 pending),
 * none of them indexed, so with free space on the page PostgreSQL updates a row in place
 * (a HOT update) without touching the table's indexes. Applies to pages written from now on.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table jobs set (fillfactor = 70)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table jobs reset (fillfactor)`.execute(db);
}
