import { Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table tenants (
      id uuid primary key default gen_random_uuid(),
      name text not null unique,
      display_name text not null,
      weight double precision not null default 1 check (weight > 0),
      created_at timestamptz not null default now()
    );
    create table quotas (
      tenant_id uuid not null references tenants(id) on delete cascade,
      gpu_type text not null check (gpu_type in ('h100', 'h800')),
      guaranteed integer not null check (guaranteed >= 0),
      "limit" integer not null,
      primary key (tenant_id, gpu_type),
      check ("limit" >= guaranteed)
    );
    create table users (
      id uuid primary key default gen_random_uuid(),
      name text not null unique,
      tenant_id uuid references tenants(id),
      role text not null check (role in ('researcher', 'tenant-admin', 'operator')),
      created_at timestamptz not null default now(),
      check ((role = 'operator') = (tenant_id is null))
    );
    create table api_tokens (
      id uuid primary key default gen_random_uuid(),
      user_id uuid not null references users(id) on delete cascade,
      token_hash text not null unique,
      description text not null default '',
      created_at timestamptz not null default now(),
      expires_at timestamptz,
      revoked_at timestamptz
    );
    create table nodes (
      id uuid primary key default gen_random_uuid(),
      name text not null unique,
      gpu_type text not null check (gpu_type in ('h100', 'h800')),
      rack text not null,
      leaf_switch text not null,
      state text not null default 'down' check (state in ('up', 'draining', 'drained', 'down')),
      state_reason text not null default '',
      agent_token_hash text not null,
      last_heartbeat_at timestamptz,
      connected boolean not null default false,
      created_at timestamptz not null default now()
    );
    create table gpus (
      node_id uuid not null references nodes(id) on delete cascade,
      index integer not null check (index >= 0),
      uuid text,
      model text,
      healthy boolean not null default true,
      health_reason text not null default '',
      primary key (node_id, index)
    );
    create table gpu_health_events (
      id bigint generated always as identity primary key,
      node_id uuid not null references nodes(id) on delete cascade,
      gpu_index integer not null,
      at timestamptz not null,
      healthy boolean not null,
      cause text not null
    );
    create table jobs (
      id uuid primary key default gen_random_uuid(),
      tenant_id uuid not null references tenants(id),
      user_id uuid not null references users(id),
      name text not null,
      state text not null check (state in ('pending', 'running', 'completed', 'failed', 'cancelled', 'timeout', 'node_failed')),
      reason text,
      gpus integer not null check (gpus >= 1),
      gpu_type text not null check (gpu_type in ('h100', 'h800', 'any')),
      gpu_model text check (gpu_model in ('h100', 'h800')),
      priority text not null check (priority in ('low', 'normal', 'high')),
      time_limit_seconds integer not null check (time_limit_seconds > 0),
      command jsonb not null,
      env jsonb not null,
      working_dir text,
      requeue boolean not null default true,
      submitted_at timestamptz not null,
      started_at timestamptz,
      ended_at timestamptz,
      exit_code integer,
      stop_requested text check (stop_requested in ('cancel', 'preempt')),
      stop_requested_at timestamptz,
      estimated_start_at timestamptz,
      queue_position integer,
      attempts integer not null default 0
    );
    create index jobs_live on jobs (state) where state in ('pending', 'running');
    create index jobs_tenant_submitted on jobs (tenant_id, submitted_at desc, id desc);
    create index jobs_submitted on jobs (submitted_at desc, id desc);
    create table job_transitions (
      id bigint generated always as identity primary key,
      job_id uuid not null references jobs(id) on delete cascade,
      at timestamptz not null,
      from_state text,
      to_state text not null,
      reason text not null
    );
    create index job_transitions_job on job_transitions (job_id, id);
    create table allocations (
      id bigint generated always as identity primary key,
      job_id uuid not null references jobs(id) on delete cascade,
      node_id uuid not null references nodes(id),
      gpu_index integer not null,
      created_at timestamptz not null,
      released_at timestamptz,
      foreign key (node_id, gpu_index) references gpus(node_id, index)
    );
    -- The database itself refuses a GPU held by two live allocations, whatever any process believes.
    create unique index allocations_one_live_per_gpu on allocations (node_id, gpu_index) where released_at is null;
    create index allocations_job on allocations (job_id) where released_at is null;
    create table agent_streams (
      node_id uuid not null references nodes(id) on delete cascade,
      stream text not null,
      last_seq bigint not null,
      updated_at timestamptz not null,
      primary key (node_id, stream)
    );
    create table tenant_usage (
      tenant_id uuid not null references tenants(id) on delete cascade,
      gpu_type text not null check (gpu_type in ('h100', 'h800')),
      decayed_gpu_seconds double precision not null default 0,
      total_gpu_seconds double precision not null default 0,
      as_of timestamptz not null,
      primary key (tenant_id, gpu_type)
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table if exists tenant_usage, agent_streams, allocations, job_transitions, jobs,
      gpu_health_events, gpus, nodes, api_tokens, users, quotas, tenants cascade;
  `.execute(db);
}
