import { Kysely, sql } from 'kysely';

/**
 * `nuri history` (GET /v1/usage/history) lists finished jobs newest end first, for a tenant or
 * everyone: without an index on ended_at every page sorted all finished jobs (millions, over a
 * center's months). Only ended jobs are indexed.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create index jobs_ended on jobs (ended_at desc, id desc) where ended_at is not null;
    create index jobs_tenant_ended on jobs (tenant_id, ended_at desc, id desc) where ended_at is not null;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index if exists jobs_tenant_ended;
    drop index if exists jobs_ended;
  `.execute(db);
}
