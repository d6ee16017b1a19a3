import { Kysely, sql } from 'kysely';

/**
 * usage_daily by tenant only (issue 15): usage by tenant, type, day or month, and statements,
 * read rows per tenant, type and day (a few thousand a year) instead of one per active user
 * and day (hundreds of thousands at a large center): `GET /v1/usage?groupBy=tenant,month` over
 * a million attempts of 1,000 users read 180,000 rollup rows before this. Written with
 * usage_daily, in the same statements.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table usage_tenant_daily (
      tenant_id uuid not null references tenants (id) on delete cascade,
      gpu_type text not null check (gpu_type in ('h100', 'h800')),
      day date not null,
      gpu_seconds double precision not null default 0,
      idle_gpu_seconds double precision not null default 0,
      primary key (tenant_id, gpu_type, day)
    );
    create index usage_tenant_daily_day on usage_tenant_daily (day);
  `.execute(db);
  await sql`
    insert into usage_tenant_daily (tenant_id, gpu_type, day, gpu_seconds, idle_gpu_seconds)
    select tenant_id, gpu_type, day, sum(gpu_seconds), sum(idle_gpu_seconds) from usage_daily group by 1, 2, 3
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table if exists usage_tenant_daily`.execute(db);
}
