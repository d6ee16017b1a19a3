import { sql } from 'kysely';
import type { NodeIsolationJson, NodeRow } from '../schema';
import { changedFrom } from './changed-from';
import { epochMs } from './epoch-ms';
import type { Db } from './tenants.repository';

/** A node's GPU as stored (inventory and health), as a hello answers with it. */
export interface NodeGpu {
  index: number;
  uuid: string | null;
  model: string | null;
  healthy: boolean;
}

export interface NodeWithGpus {
  id: string;
  name: string;
  gpuType: 'h100' | 'h800';
  rack: string;
  leafSwitch: string;
  state: NodeRow['state'];
  stateReason: string;
  lastHeartbeatAt: Date | null;
  connected: boolean;
  /** The job isolation its agent last reported; null: never reported. */
  isolation?: NodeIsolationJson | null;
  gpus: (NodeGpu & { healthReason: string; jobId: string | null })[];
}

/** What `forScheduling` reads: every node's liveness, the nodes changed since the horizon given, the next horizon. */
export interface FleetRead {
  liveness: { id: string; heardMs: number | null; connected: boolean }[];
  changed: NodeWithGpus[];
  horizon: string;
}

/** A changed node as `forScheduling` aggregates it: NODE_VIEW's columns in order (the heartbeat in epoch ms), then its GPUs' indices and health. */
type ChangedNodeJson = [string, string, NodeRow['gpu_type'], string, string, NodeRow['state'], string, number | null, boolean, NodeIsolationJson | null, number[] | null, boolean[] | null];

/** The columns a node's view is made of (not its token hash and the rest: the scheduler reads 4,000 every pass). */
const NODE_VIEW = ['id', 'name', 'gpu_type', 'rack', 'leaf_switch', 'state', 'state_reason', 'last_heartbeat_at', 'connected', 'isolation'] as const;

/** A node's row as the API and the scheduler see it, with the GPUs read for it. */
function nodeWithGpus(n: Pick<NodeRow, (typeof NODE_VIEW)[number]>, gpus: NodeWithGpus['gpus']): NodeWithGpus {
  return {
    id: n.id,
    name: n.name,
    gpuType: n.gpu_type,
    rack: n.rack,
    leafSwitch: n.leaf_switch,
    state: n.state,
    stateReason: n.state_reason,
    lastHeartbeatAt: n.last_heartbeat_at,
    connected: n.connected,
    isolation: n.isolation ?? null,
    gpus,
  };
}

export class NodesRepository {
  constructor(private readonly db: Db) {}

  async create(n: { name: string; gpuType: 'h100' | 'h800'; gpus: number; rack: string; leafSwitch: string; tokenHash: string }): Promise<string> {
    return this.db.transaction().execute(async (tx) => {
      const { id } = await tx
        .insertInto('nodes')
        .values({ name: n.name, gpu_type: n.gpuType, rack: n.rack, leaf_switch: n.leafSwitch, agent_token_hash: n.tokenHash, state: 'down', state_reason: 'agent never connected' })
        .returning('id')
        .executeTakeFirstOrThrow();
      await tx
        .insertInto('gpus')
        .values(Array.from({ length: n.gpus }, (_, index) => ({ node_id: id, index, uuid: null, model: null })))
        .execute();
      return id;
    });
  }

  /**
   * The fleet as the scheduler's pass reads it, in one statement: every node's liveness (last
   * heartbeat, connected), and the view of each node changed since `since` (a horizon an earlier
   * call returned; null: every node), with its GPU indices and health (uuid, model and reason
   * empty, jobs null: the leader fills in the jobs from its running ones), in name order, and the
   * horizon for the next call. Migration 0015 stamps what the view is made of; the horizon is the
   * oldest transaction still running, so whatever order writers commit in, a change is read at
   * least once (maybe twice).
   */
  async forScheduling(since: string | null = null): Promise<FleetRead> {
    const { rows } = await sql<{ liveness: [string, number | null, boolean][]; changed: ChangedNodeJson[]; horizon: string }>`
      with c as materialized (${
        since === null
          ? sql`select id from nodes`
          : // Two index range scans (migration 0019), not an OR on a parameter, which scanned every node and GPU each pass.
            sql`select id from nodes where ${changedFrom(since)} union select node_id from gpus where ${changedFrom(since)}`
      }), g as (
        select node_id, array_agg(index order by index) as idx, array_agg(healthy order by index) as ok
        from gpus where node_id in (select id from c) group by node_id
      )
      select
        (select coalesce(json_agg(json_build_array(id, ${epochMs(sql.ref('last_heartbeat_at'))}, connected)), '[]') from nodes) as liveness,
        (select coalesce(json_agg(json_build_array(n.id, n.name, n.gpu_type, n.rack, n.leaf_switch, n.state, n.state_reason,
           ${epochMs(sql.ref('n.last_heartbeat_at'))}, n.connected, n.isolation, g.idx, g.ok) order by n.name), '[]')
         from nodes n join c on c.id = n.id left join g on g.node_id = n.id) as changed,
        pg_snapshot_xmin(pg_current_snapshot())::text as horizon`.execute(this.db);
    const r = rows[0]!;
    return {
      liveness: r.liveness.map(([id, heardMs, connected]) => ({ id, heardMs, connected })),
      changed: r.changed.map(([id, name, gpu_type, rack, leaf_switch, state, state_reason, heardMs, connected, isolation, idx, ok]) =>
        nodeWithGpus(
          { id, name, gpu_type, rack, leaf_switch, state, state_reason, last_heartbeat_at: heardMs === null ? null : new Date(heardMs), connected, isolation },
          (idx ?? []).map((index, k) => ({ index, uuid: null, model: null, healthy: ok?.[k] ?? false, healthReason: '', jobId: null })),
        ),
      ),
      horizon: r.horizon,
    };
  }

  async list(filter: { names?: string[] } = {}): Promise<NodeWithGpus[]> {
    let nq = this.db.selectFrom('nodes').select(NODE_VIEW).orderBy('name');
    if (filter.names) nq = nq.where('name', 'in', filter.names.length ? filter.names : ['']);
    const nodes = await nq.execute();
    if (!nodes.length) return [];
    // Unfiltered (every node), no list of 4,000 ids to send and match: rows of a node added
    // since are left out below.
    const ids = filter.names ? nodes.map((n) => n.id) : null;
    let gq = this.db.selectFrom('gpus').selectAll().orderBy('node_id').orderBy('index');
    let aq = this.db.selectFrom('allocations').select(['node_id', 'gpu_index', 'job_id']).where('released_at', 'is', null);
    if (ids) {
      gq = gq.where('node_id', 'in', ids);
      aq = aq.where('node_id', 'in', ids);
    }
    const [gpus, allocs] = await Promise.all([gq.execute(), aq.execute()]);
    const jobOn = new Map(allocs.map((a) => [`${a.node_id}/${a.gpu_index}`, a.job_id]));
    const byNode = new Map<string, NodeWithGpus['gpus']>();
    for (const g of gpus) {
      const list = byNode.get(g.node_id) ?? [];
      list.push({ index: g.index, uuid: g.uuid, model: g.model, healthy: g.healthy, healthReason: g.health_reason, jobId: jobOn.get(`${g.node_id}/${g.index}`) ?? null });
      byNode.set(g.node_id, list);
    }
    return nodes.map((n) => nodeWithGpus(n, byNode.get(n.id) ?? []));
  }

  /** Stores the job isolation a node's agent reported in its hello (null: it reported none). */
  async setIsolation(id: string, isolation: NodeIsolationJson | null): Promise<void> {
    await this.db
      .updateTable('nodes')
      .set({ isolation: isolation === null ? null : JSON.stringify(isolation) })
      .where('id', '=', id)
      .execute();
  }

  /** Stores the address a node's agent reported (a multi-node job's MASTER_ADDR); no write when it is unchanged. */
  async setAddress(id: string, address: string): Promise<void> {
    await this.db.updateTable('nodes').set({ address }).where('id', '=', id).where('address', 'is distinct from', address).execute();
  }

  /** How many nodes of each GPU type exist, whatever their state (admission checks at submit). */
  async countByType(): Promise<Record<'h100' | 'h800', number>> {
    const rows = await this.db.selectFrom('nodes').select(['gpu_type', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('gpu_type').execute();
    const out = { h100: 0, h800: 0 };
    for (const r of rows) out[r.gpu_type] = Number(r.n);
    return out;
  }

  async findByName(name: string): Promise<NodeWithGpus | undefined> {
    return (await this.list({ names: [name] }))[0];
  }

  async tokenHash(name: string): Promise<{ id: string; hash: string } | undefined> {
    return (await this.tokenHashMany([name])).get(name);
  }

  /** Many nodes' agent token hashes by name, in one statement (a fleet reconnecting authenticates thousands at once); unknown names are absent. */
  async tokenHashMany(names: readonly string[]): Promise<Map<string, { id: string; hash: string }>> {
    if (!names.length) return new Map();
    const rows = await this.db
      .selectFrom('nodes')
      .select(['name', 'id', 'agent_token_hash'])
      .where(sql<boolean>`name = any(${[...names]}::text[])`)
      .execute();
    return new Map(rows.map((r) => [r.name, { id: r.id, hash: r.agent_token_hash }]));
  }

  /** A draining node whose last job ended becomes drained. */
  async settleDraining(id: string): Promise<boolean> {
    const r = await this.db
      .updateTable('nodes')
      .set({ state: 'drained' })
      .where('id', '=', id)
      .where('state', '=', 'draining')
      .where((eb) => eb.not(eb.exists(eb.selectFrom('allocations').select('id').where('node_id', '=', id).where('released_at', 'is', null))))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async setAgentTokenHash(id: string, hash: string): Promise<void> {
    await this.db.updateTable('nodes').set({ agent_token_hash: hash }).where('id', '=', id).execute();
  }

  async idByName(name: string): Promise<string | undefined> {
    return (await this.db.selectFrom('nodes').select('id').where('name', '=', name).executeTakeFirst())?.id;
  }

  /**
   * Operator and liveness state changes. `from` guards the change (e.g. only a `down`
   * node comes `up` on reconnect, a drained node stays drained). Returns whether it changed.
   */
  async setState(id: string, to: NodeRow['state'], reason: string, from?: NodeRow['state'][]): Promise<boolean> {
    let q = this.db.updateTable('nodes').set({ state: to, state_reason: reason }).where('id', '=', id);
    if (from) q = q.where('state', 'in', from);
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /**
   * What agents' hellos write and read, in one statement for many (a reconnect storm of 4,000
   * agents made five single-column updates of each row, then five statements a batch; agents
   * come back a few at a time, so a batch holds about five and the statements were most of what
   * a reconnect cost): each node connected to this gateway and heard now, `up` again if it was
   * `down`, and the isolation, address (kept when not reported) and output directory each
   * reported; its other agent streams not heard from since `pruneBefore` forgotten (each agent
   * start opens a new stream, and a row per restart would pile up; one still in use is younger);
   * and what the hello answers with: the node's GPUs as stored (in index order) and its stream's
   * last acknowledged sequence (-1: never seen). Rows are locked in id order; an unknown id is
   * ignored. One entry per node.
   */
  async helloMany(
    hellos: readonly { id: string; isolation: NodeIsolationJson | null; address?: string; outputDir: string | null; stream: string }[],
    at: Date,
    gatewayId: string,
    pruneBefore: Date,
  ): Promise<{ came: Set<string>; gpus: Map<string, NodeGpu[]>; seqs: Map<string, number>; pruned: Map<string, number> }> {
    const out = { came: new Set<string>(), gpus: new Map<string, NodeGpu[]>(), seqs: new Map<string, number>(), pruned: new Map<string, number>() };
    if (!hellos.length) return out;
    const rows = JSON.stringify(hellos.map((h) => ({ id: h.id, isolation: h.isolation, address: h.address ?? null, output_dir: h.outputDir, stream: h.stream })));
    // The ids again as an array, for the nodes, GPUs and streams to be taken by their keys:
    // PostgreSQL guesses 100 rows for any jsonb_to_recordset, and hashed every node (twice), all
    // 32,000 GPUs of a 4,000-node fleet and every stream (twice) for each batch: about 4-5 ms of
    // its CPU whatever the batch's size, most of a reconnect storm's cost to it.
    const ids = hellos.map((h) => h.id);
    const r = await sql<{ came: string[]; gpus: [string, number, string | null, string | null, boolean][]; seqs: [string, number][]; pruned: string[] }>`
      with u as (select * from jsonb_to_recordset(${rows}::jsonb) as u(id uuid, isolation jsonb, address text, output_dir text, stream text)),
      o as (select n.id, n.state as was from nodes n join u on u.id = n.id where n.id = any(${ids}::uuid[]) order by n.id for update of n),
      up as (
        update nodes n set connected = true, last_heartbeat_at = ${at}::timestamptz, gateway_id = ${gatewayId},
          state = case when o.was = 'down' then 'up' else n.state end,
          state_reason = case when o.was = 'down' then 'agent connected' else n.state_reason end,
          isolation = case when jsonb_typeof(u.isolation) = 'object' then u.isolation end,
          address = coalesce(u.address, n.address),
          output_dir = u.output_dir
        from u join o on o.id = u.id
        where n.id = u.id and n.id = any(${ids}::uuid[])
        returning n.id, o.was
      ), pruned as (
        delete from agent_streams a using u
        where a.node_id = u.id and a.node_id = any(${ids}::uuid[]) and a.stream <> u.stream and a.updated_at < ${pruneBefore}::timestamptz
        returning a.node_id
      )
      select
        (select coalesce(json_agg(id), '[]') from up where was = 'down') as came,
        (select coalesce(json_agg(json_build_array(g.node_id, g.index, g.uuid, g.model, g.healthy) order by g.node_id, g.index), '[]')
         from gpus g where g.node_id = any(${ids}::uuid[])) as gpus,
        (select coalesce(json_agg(json_build_array(a.node_id, a.last_seq)), '[]') from agent_streams a join u on a.node_id = u.id and a.stream = u.stream
         where a.node_id = any(${ids}::uuid[])) as seqs,
        (select coalesce(json_agg(node_id), '[]') from pruned) as pruned`.execute(this.db);
    const x = r.rows[0]!;
    for (const id of x.came) out.came.add(id);
    for (const [nodeId, index, uuid, model, healthy] of x.gpus) {
      const g = { index, uuid, model, healthy };
      const list = out.gpus.get(nodeId);
      if (list) list.push(g);
      else out.gpus.set(nodeId, [g]);
    }
    for (const h of hellos) out.seqs.set(h.id, -1);
    for (const [nodeId, seq] of x.seqs) out.seqs.set(nodeId, Number(seq));
    for (const nodeId of x.pruned) out.pruned.set(nodeId, (out.pruned.get(nodeId) ?? 0) + 1);
    return out;
  }

  /** `gatewayId`: the gateway instance the agent said hello to (kept on disconnect: it says where the agent was). */
  async markConnected(id: string, connected: boolean, at: Date, gatewayId?: string): Promise<void> {
    await this.db
      .updateTable('nodes')
      .set({ connected, last_heartbeat_at: at, ...(gatewayId ? { gateway_id: gatewayId } : {}) })
      .where('id', '=', id)
      .execute();
  }

  /** Nodes heard from again while marked down (an agent that froze, then resumed on the same connection) are up again. */
  async markUpMany(ids: readonly string[], reason: string): Promise<string[]> {
    if (!ids.length) return [];
    // Locked in id order (see heartbeatMany).
    const rows = (
      await sql<{ name: string }>`
        update nodes n set state = 'up', state_reason = ${reason}
        from (select id from nodes where id = any(${[...ids]}::uuid[]) and state = 'down' order by id for update) o
        where n.id = o.id and n.state = 'down'
        returning n.name`.execute(this.db)
    ).rows;
    return rows.map((r) => r.name);
  }

  async heartbeat(id: string, at: Date): Promise<void> {
    await this.db.updateTable('nodes').set({ last_heartbeat_at: at }).where('id', '=', id).execute();
  }

  /**
   * Liveness of many nodes in one statement (the gateway batches what its agents said). Rows are
   * locked in id order, as every statement that writes or locks many nodes does (`helloMany`,
   * `markUpMany`, the commit's read): in the table's order, a flush and a batch of hellos
   * deadlocked while 4,000 agents came back after a restart.
   */
  async heartbeatMany(ids: readonly string[], at: Date): Promise<void> {
    if (!ids.length) return;
    await sql`
      update nodes n set last_heartbeat_at = ${at}::timestamptz
      from (select id from nodes where id = any(${[...ids]}::uuid[]) order by id for update) o
      where n.id = o.id`.execute(this.db);
  }

  /** A health observation that changes nothing (throttling, a non-critical XID): recorded with its cause. */
  async recordGpuHealthEvent(nodeId: string, index: number, healthy: boolean, cause: string, at: Date): Promise<void> {
    await this.db.insertInto('gpu_health_events').values({ node_id: nodeId, gpu_index: index, at, healthy, cause }).execute();
  }

  /** Health events of a node, oldest first (operators, tests). */
  async gpuHealthEvents(nodeId: string): Promise<{ gpuIndex: number; at: Date; healthy: boolean; cause: string }[]> {
    return this.db
      .selectFrom('gpu_health_events')
      .select(['gpu_index as gpuIndex', 'at', 'healthy', 'cause'])
      .where('node_id', '=', nodeId)
      .orderBy('id')
      .execute();
  }

  /**
   * Nodes in service whose agent has not been heard from since `before`. Drained nodes
   * are left alone: an operator took them out, and they keep that state.
   */
  async silentSince(before: Date, gateways?: { liveSince: Date; lostAfter: Date }): Promise<{ id: string; name: string }[]> {
    let q = this.db
      .selectFrom('nodes')
      .leftJoin('gateway_instances as g', 'g.id', 'nodes.gateway_id')
      .select(['nodes.id', 'nodes.name'])
      .where('nodes.state', 'in', ['up', 'draining'])
      .where((eb) => eb.or([eb('nodes.last_heartbeat_at', 'is', null), eb('nodes.last_heartbeat_at', '<', before)]));
    // `gateways`: a node whose gateway died (not seen since `liveSince`) after `lostAfter`
    // is not silent yet: its agent lost its gateway, not its life, and is reconnecting.
    if (gateways)
      q = q.where((eb) => eb.not(eb.and([eb('g.id', 'is not', null), eb('g.seen_at', '<', gateways.liveSince), eb('g.seen_at', '>', gateways.lostAfter)])));
    return q.orderBy('nodes.name').execute();
  }

  /** Stores what the agent reports for its GPUs, in one statement. */
  async recordInventory(id: string, gpus: { index: number; uuid: string; model: string }[]): Promise<void> {
    if (!gpus.length) return;
    const values = sql.join(gpus.map((g) => sql`(${g.index}::int, ${g.uuid}::text, ${g.model}::text)`));
    await sql`
      update gpus set uuid = v.uuid, model = v.model
      from (values ${values}) as v(idx, uuid, model)
      where gpus.node_id = ${id} and gpus.index = v.idx`.execute(this.db);
  }

  /** Records a health change with its cause; returns false when the GPU already had that health. */
  async setGpuHealth(nodeId: string, index: number, healthy: boolean, cause: string, at: Date): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      const r = await tx
        .updateTable('gpus')
        .set({ healthy, health_reason: healthy ? '' : cause })
        .where('node_id', '=', nodeId)
        .where('index', '=', index)
        .where('healthy', '=', !healthy)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) return false;
      await tx.insertInto('gpu_health_events').values({ node_id: nodeId, gpu_index: index, at, healthy, cause }).execute();
      return true;
    });
  }

  /**
   * Applies an agent stream's sequence number exactly once: true when `seq` is new for
   * this node and stream, false for a duplicate (one item of `advanceStreamMany`).
   */
  async advanceStream(nodeId: string, stream: string, seq: number, at: Date): Promise<boolean> {
    return (await this.advanceStreamMany([{ nodeId, stream, seq }], at))[0]!;
  }

  /**
   * Many streams' sequence numbers in one statement (the gateway batches them: a restarted
   * leader's first passes start thousands of jobs, each acked by a `started` event); for each,
   * whether it advanced. Each (node, stream) at most once per call. Rows go in in node id order:
   * each new one takes a key-share lock on its node (the foreign key), and the liveness flush
   * locks nodes FOR UPDATE in id order, so in any other order the two deadlocked (seen in
   * bench:live, a few times a run).
   */
  async advanceStreamMany(items: readonly { nodeId: string; stream: string; seq: number }[], at: Date): Promise<boolean[]> {
    if (!items.length) return [];
    const r = await sql<{ node_id: string; stream: string }>`
      insert into agent_streams (node_id, stream, last_seq, updated_at)
      select n, s, q, ${at}::timestamptz from unnest(${items.map((i) => i.nodeId)}::uuid[], ${items.map((i) => i.stream)}::text[], ${items.map((i) => i.seq)}::bigint[]) as v(n, s, q)
      order by n, s
      on conflict (node_id, stream) do update set last_seq = excluded.last_seq, updated_at = excluded.updated_at
      where agent_streams.last_seq < excluded.last_seq
      returning node_id, stream`.execute(this.db);
    const advanced = new Set(r.rows.map((x) => `${x.node_id}/${x.stream}`));
    return items.map((i) => advanced.has(`${i.nodeId}/${i.stream}`));
  }

  /** A gateway process says it is alive (and since when it runs). */
  async gatewayAlive(id: string, startedAt: Date, at: Date): Promise<void> {
    await this.db
      .insertInto('gateway_instances')
      .values({ id, started_at: startedAt, seen_at: at })
      .onConflict((oc) => oc.column('id').doUpdateSet({ seen_at: at }))
      .execute();
  }

  /** Drops the rows of gateways not seen since `before` (long dead: a gateway's start prunes them). */
  async forgetGateways(before: Date): Promise<number> {
    const r = await this.db.deleteFrom('gateway_instances').where('seen_at', '<', before).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** When the most recently started gateway still alive (seen since `liveSince`) came up; null: none alive. */
  async newestLiveGatewayStart(liveSince: Date): Promise<Date | null> {
    const r = await this.db
      .selectFrom('gateway_instances')
      .select((eb) => eb.fn.max('started_at').as('started'))
      .where('seen_at', '>=', liveSince)
      .executeTakeFirst();
    return r?.started ? new Date(r.started as unknown as string | Date) : null;
  }

  async streamSeq(nodeId: string, stream: string): Promise<number> {
    const r = await this.db.selectFrom('agent_streams').select('last_seq').where('node_id', '=', nodeId).where('stream', '=', stream).executeTakeFirst();
    return r ? Number(r.last_seq) : -1;
  }
}
