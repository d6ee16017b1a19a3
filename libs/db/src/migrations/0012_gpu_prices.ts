import { Kysely, sql } from 'kysely';

/**
 * Prices per GPU type (issue 15), optionally per tenant (a contract price), each effective
 * from a UTC date until the next one: a change adds a row, so what was charged before it
 * stays as it was. A tenant's own price, once in effect, wins over the default one.
 * Dates, not instants: usage is rolled up by UTC day (usage_daily), so a day has one price.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table gpu_prices (
      id bigserial primary key,
      gpu_type text not null check (gpu_type in ('h100', 'h800')),
      tenant_id uuid references tenants (id) on delete cascade,
      effective_from date not null,
      usd_per_gpu_hour numeric(12, 4) not null check (usd_per_gpu_hour >= 0),
      created_at timestamptz not null default now()
    );
    create unique index gpu_prices_period on gpu_prices (gpu_type, coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), effective_from);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table if exists gpu_prices`.execute(db);
}
