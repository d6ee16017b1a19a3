import { sql } from 'kysely';
import type { Db } from './tenants.repository';

/** Where one rank's output is and how to reach the gateway holding its node's agent. */
export interface OutputLocation {
  nodeId: string;
  nodeName: string;
  connected: boolean;
  /** The gateway instance the agent last said hello to, its internal URL, and when it was last alive. */
  gatewayId: string | null;
  gatewayUrl: string | null;
  gatewaySeenAt: Date | null;
  outputDir: string | null;
}

export interface LogGrant {
  jobId: string;
  nodeId: string;
  nodeName: string;
  rank: number;
  tail: number | null;
  follow: boolean;
}

/**
 * The job output relay's rows: where agents keep output (nodes.output_dir, written by
 * NodesRepository.hello), where gateway processes are reached (gateway_instances.internal_url),
 * and the single-use grants an api replica writes for the gateway that holds the agent
 * (log_grants, by token hash).
 */
export class LogRelayRepository {
  constructor(private readonly db: Db) {}

  /** Where api replicas reach this gateway process (its liveness row may be written before or after). */
  async setGatewayUrl(gatewayId: string, url: string, at: Date): Promise<void> {
    await this.db
      .insertInto('gateway_instances')
      .values({ id: gatewayId, started_at: at, seen_at: at, internal_url: url })
      .onConflict((oc) => oc.column('id').doUpdateSet({ internal_url: url }))
      .execute();
  }

  async locate(nodeName: string): Promise<OutputLocation | undefined> {
    const r = await this.db
      .selectFrom('nodes')
      .leftJoin('gateway_instances as g', 'g.id', 'nodes.gateway_id')
      .select(['nodes.id', 'nodes.name', 'nodes.connected', 'nodes.gateway_id', 'nodes.output_dir', 'g.internal_url', 'g.seen_at'])
      .where('nodes.name', '=', nodeName)
      .executeTakeFirst();
    if (!r) return undefined;
    return {
      nodeId: r.id,
      nodeName: r.name,
      connected: r.connected,
      gatewayId: r.gateway_id,
      gatewayUrl: r.internal_url ?? null,
      gatewaySeenAt: r.seen_at ?? null,
      outputDir: r.output_dir,
    };
  }

  /** Writes a grant (the token's hash only); expired grants are pruned on the way. */
  async grant(g: { tokenHash: string; jobId: string; nodeId: string; rank: number; tail: number | null; follow: boolean; expiresAt: Date }, now: Date): Promise<void> {
    await this.db.deleteFrom('log_grants').where('expires_at', '<', now).execute();
    await this.db
      .insertInto('log_grants')
      .values({ token_hash: g.tokenHash, job_id: g.jobId, node_id: g.nodeId, rank: g.rank, tail: g.tail, follow: g.follow, expires_at: g.expiresAt })
      .execute();
  }

  /** Takes a grant once: deleted as it is read, so a token works for one request only; expired ones never. */
  async consume(tokenHash: string, now: Date): Promise<LogGrant | undefined> {
    const r = await this.db
      .deleteFrom('log_grants')
      .where('token_hash', '=', tokenHash)
      .returning(['job_id', 'node_id', 'rank', 'tail', 'follow', 'expires_at'])
      .executeTakeFirst();
    if (!r || new Date(r.expires_at as unknown as string | Date).getTime() <= now.getTime()) return undefined;
    const node = await this.db.selectFrom('nodes').select('name').where('id', '=', r.node_id).executeTakeFirst();
    if (!node) return undefined;
    return { jobId: r.job_id, nodeId: r.node_id, nodeName: node.name, rank: r.rank, tail: r.tail, follow: r.follow };
  }

  /** Where each node of `nodeNames` keeps its output (for JobView.output). */
  async outputDirs(nodeNames: string[]): Promise<Map<string, string | null>> {
    if (!nodeNames.length) return new Map();
    const rows = await this.db.selectFrom('nodes').select(['name', 'output_dir']).where(sql<boolean>`name = any(${nodeNames}::text[])`).execute();
    return new Map(rows.map((r) => [r.name, r.output_dir]));
  }
}
