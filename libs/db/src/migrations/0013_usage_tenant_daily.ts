import { Kysely, sql } from 'kysely';

/**
 * usage_daily by tenant only (issue 15): usage by tenant, type, day or month, and statements,
 * read rows per tenant, type and day (a few thousand a year) instead of one per active user
 * and day (hundreds of thousands at a large center): `GET /v1/usage?groupBy=tenant,month` over
 * a million attempts of 1,000 users read 180,000 rollup rows before this. Written with
 * usage_daily, in the same statements.
 *
 * idle_policies: a tenant's rule for jobs holding idle GPUs (off unless a row says otherwise):
 * after notify_after_seconds all idle the job is told (its reason says when it will be
 * cancelled), after cancel_after_seconds it is cancelled with that reason.
 * usage_ledger.idle_notified_at: when the attempt was told (once).
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
    create table idle_policies (
      tenant_id uuid primary key references tenants (id) on delete cascade,
      notify_after_seconds integer check (notify_after_seconds > 0),
      cancel_after_seconds integer check (cancel_after_seconds > 0),
      updated_at timestamptz not null default now(),
      check (notify_after_seconds is null or cancel_after_seconds is null or notify_after_seconds < cancel_after_seconds)
    );
    alter table usage_ledger add column idle_notified_at timestamptz;
  `.execute(db);
  await sql`
    insert into usage_tenant_daily (tenant_id, gpu_type, day, gpu_seconds, idle_gpu_seconds)
    select tenant_id, gpu_type, day, sum(gpu_seconds), sum(idle_gpu_seconds) from usage_daily group by 1, 2, 3
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table usage_ledger drop column if exists idle_notified_at;
    drop table if exists idle_policies;
    drop table if exists usage_tenant_daily;
  `.execute(db);
}
