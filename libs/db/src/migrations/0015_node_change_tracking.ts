import { Kysely, sql } from 'kysely';

/**
 * Change tracking for the nodes the leader schedules on (issue 13), as 0010 does for jobs:
 * reading every node with its GPUs aggregated was the longest read of each pass (about 65 ms at
 * 4,000 nodes, half of it in PostgreSQL), though nodes change rarely. A node stamps itself with
 * its transaction's id when a column the scheduler uses changes (not its heartbeat, connection,
 * gateway, address or token: heartbeats rewrite every node every few seconds), and so does a
 * GPU when it is added or its health or index changes. Nodes and GPUs are never deleted.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table nodes add column change_xid xid8;
    alter table gpus add column change_xid xid8;
    -- 0010's function stamps change_xid whatever the table: one function for jobs, nodes and GPUs.
    alter function nuri_job_changed() rename to nuri_stamp_change;
    create trigger nodes_inserted before insert on nodes for each row execute function nuri_stamp_change();
    create trigger nodes_changed before update on nodes for each row
      when (old.name is distinct from new.name or old.gpu_type is distinct from new.gpu_type or old.rack is distinct from new.rack
        or old.leaf_switch is distinct from new.leaf_switch or old.state is distinct from new.state
        or old.state_reason is distinct from new.state_reason or old.isolation is distinct from new.isolation)
      execute function nuri_stamp_change();
    create trigger gpus_inserted before insert on gpus for each row execute function nuri_stamp_change();
    create trigger gpus_changed before update on gpus for each row
      when (old.node_id is distinct from new.node_id or old.index is distinct from new.index or old.healthy is distinct from new.healthy)
      execute function nuri_stamp_change();
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop trigger if exists gpus_changed on gpus;
    drop trigger if exists gpus_inserted on gpus;
    drop trigger if exists nodes_changed on nodes;
    drop trigger if exists nodes_inserted on nodes;
    alter function nuri_stamp_change() rename to nuri_job_changed;
    alter table gpus drop column if exists change_xid;
    alter table nodes drop column if exists change_xid;
  `.execute(db);
}
