import { Kysely, sql } from 'kysely';

/**
 * allocations without its own foreign key to nodes (issue 13): the key on (node_id, gpu_index) to
 * gpus, whose node_id references nodes, already refuses an allocation on an unknown node and keeps
 * a node holding one from being deleted (its GPUs cannot go). The redundant check ran once per
 * allocated GPU: 34-50 ms of a 1,000-start commit (8,000-10,000 GPUs) in auto_explain.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table allocations drop constraint allocations_node_id_fkey`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table allocations add constraint allocations_node_id_fkey foreign key (node_id) references nodes (id)`.execute(db);
}
