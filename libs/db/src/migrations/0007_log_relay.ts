import { Kysely, sql } from 'kysely';

/**
 * Job output through the API (issue 12):
 *   - nodes.output_dir: where the node's agent keeps job output (its hello says so), so a
 *     job's view can say where each rank's output is;
 *   - gateway_instances.internal_url: where an api replica reaches that gateway process to
 *     relay a node's output (the agent is connected to one gateway only);
 *   - log_grants: single-use permissions an api replica writes for the gateway: the api has
 *     checked the caller and the job, the gateway consumes the row (by the token's hash) and
 *     only then asks the agent, so no secret shared between processes has to be configured.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table nodes add column output_dir text;
    alter table gateway_instances add column internal_url text;
    create table log_grants (
      token_hash text primary key,
      job_id uuid not null references jobs (id) on delete cascade,
      node_id uuid not null references nodes (id) on delete cascade,
      rank integer not null,
      tail integer,
      follow boolean not null,
      expires_at timestamptz not null
    );
    create index log_grants_expiry on log_grants (expires_at);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table if exists log_grants;
    alter table gateway_instances drop column if exists internal_url;
    alter table nodes drop column if exists output_dir;
  `.execute(db);
}
