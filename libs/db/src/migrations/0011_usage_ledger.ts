import { Kysely, sql } from 'kysely';

/**
 * The usage ledger (issue 15): one row per job attempt, opened in the transaction that starts
 * it and closed in the one that ends it (the same `at` as the job's transitions), so its
 * GPU-seconds are exact and each attempt is charged once (primary key, and a close only of a
 * row still open). Telemetry (mean utilization, idle GPU-seconds) is added by the gateways.
 *
 * usage_daily rolls the ledger up by tenant, user, GPU type and UTC day: closed attempts'
 * GPU-seconds split at midnight, idle GPU-seconds on the day a gateway stored them. Prices
 * change at most daily, so usage and cost over a million ledger rows read a few thousand
 * rollup rows (plus the open attempts, accrued up to now at read time).
 *
 * Attempts that ran before this migration are backfilled from job_transitions (their
 * running intervals, in order) and their allocations (the GPU type of each start).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table usage_ledger (
      job_id uuid not null references jobs (id) on delete cascade,
      attempt integer not null,
      tenant_id uuid not null references tenants (id) on delete cascade,
      user_id uuid not null references users (id) on delete cascade,
      gpu_type text not null check (gpu_type in ('h100', 'h800')),
      gpus integer not null check (gpus > 0),
      started_at timestamptz not null,
      ended_at timestamptz,
      end_state text,
      sampled_gpu_seconds double precision not null default 0,
      busy_gpu_seconds double precision not null default 0,
      idle_gpu_seconds double precision not null default 0,
      idle_since timestamptz,
      telemetry_at timestamptz,
      primary key (job_id, attempt),
      check (ended_at is null or ended_at >= started_at)
    );
    create index usage_ledger_open on usage_ledger (tenant_id) where ended_at is null;
    create index usage_ledger_tenant_ended on usage_ledger (tenant_id, ended_at);
    create index usage_ledger_ended on usage_ledger (ended_at);
    create table usage_daily (
      tenant_id uuid not null references tenants (id) on delete cascade,
      user_id uuid not null references users (id) on delete cascade,
      gpu_type text not null check (gpu_type in ('h100', 'h800')),
      day date not null,
      gpu_seconds double precision not null default 0,
      idle_gpu_seconds double precision not null default 0,
      primary key (tenant_id, user_id, gpu_type, day)
    );
    create index usage_daily_day on usage_daily (day);
  `.execute(db);
  await sql`
    with runs as (
      select t.job_id, t.at, t.to_state, lead(t.at) over w as next_at, lead(t.to_state) over w as next_state,
             count(*) filter (where t.to_state = 'running') over (partition by t.job_id order by t.id) as attempt
      from job_transitions t
      window w as (partition by t.job_id order by t.id)
    ), starts as (
      select a.job_id, n.gpu_type, dense_rank() over (partition by a.job_id order by a.created_at) as attempt
      from allocations a join nodes n on n.id = a.node_id
    )
    insert into usage_ledger (job_id, attempt, tenant_id, user_id, gpu_type, gpus, started_at, ended_at, end_state)
    select r.job_id, r.attempt, j.tenant_id, j.user_id, coalesce(s.gpu_type, j.gpu_model), j.gpus, r.at,
           case when r.next_at is null then null else greatest(r.next_at, r.at) end, r.next_state
    from runs r
    join jobs j on j.id = r.job_id
    left join lateral (select min(s.gpu_type) as gpu_type from starts s where s.job_id = r.job_id and s.attempt = r.attempt) s on true
    where r.to_state = 'running' and coalesce(s.gpu_type, j.gpu_model) is not null
    on conflict do nothing
  `.execute(db);
  await sql`
    insert into usage_daily (tenant_id, user_id, gpu_type, day, gpu_seconds)
    select l.tenant_id, l.user_id, l.gpu_type, d.day::date,
           sum(l.gpus * extract(epoch from least(l.ended_at, (d.day + interval '1 day') at time zone 'UTC') - greatest(l.started_at, d.day at time zone 'UTC')))
    from usage_ledger l
    cross join lateral generate_series(date_trunc('day', l.started_at at time zone 'UTC'), l.ended_at at time zone 'UTC', interval '1 day') as d(day)
    where l.ended_at is not null
    group by 1, 2, 3, 4
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table if exists usage_daily;
    drop table if exists usage_ledger;
  `.execute(db);
}
