import { Kysely, sql } from 'kysely';

/**
 * Gateway processes say they are alive here, and each node records the gateway its agent
 * said hello to. The leader counts an agent's silence only from when a gateway could have
 * heard it: with no gateway up, or after the node's own gateway died (until its agent had
 * time to reconnect), old heartbeats mean nothing and no healthy job is requeued for them.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table gateway_instances (
      id text primary key,
      started_at timestamptz not null,
      seen_at timestamptz not null
    );
    create index agent_streams_node_updated on agent_streams (node_id, updated_at);
    alter table nodes add column gateway_id text;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table nodes drop column if exists gateway_id;
    drop index if exists agent_streams_node_updated;
    drop table if exists gateway_instances;
  `.execute(db);
}
