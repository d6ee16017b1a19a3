import { Kysely, sql } from 'kysely';

/**
 * Indexes for the leader's reads of changed nodes and GPUs (0015 added their change_xid, not
 * these): each pass looked for changes by scanning every node and GPU, about 4 ms of
 * PostgreSQL a pass at 4,000 nodes and 32,000 GPUs, for the few that changed. Partial, as
 * jobs_change_xid is: rows written before 0015 have none. Heartbeats do not stamp a node, so
 * its heartbeat updates stay HOT.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create index nodes_change_xid on nodes (change_xid) where change_xid is not null;
    create index gpus_change_xid on gpus (change_xid) where change_xid is not null;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index if exists gpus_change_xid;
    drop index if exists nodes_change_xid;
  `.execute(db);
}
