import { Kysely, sql } from 'kysely';

/**
 * What isolation a node's agent enforces on its jobs (job cgroups, pids, memory and device
 * limits, a uid per job), as it last said in its hello; null until an agent that reports
 * it connects. The node view shows it, so an operator sees which nodes fall back.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table nodes add column isolation jsonb`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table nodes drop column if exists isolation`.execute(db);
}
