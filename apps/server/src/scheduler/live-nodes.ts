import { compareNodeNames, type FleetRead, type NodesRepository, type NodeWithGpus } from '@nuri/db';

/**
 * The leader's nodes, kept in memory between passes (issue 13), as LiveJobs keeps the jobs:
 * reading all 4,000 nodes with their GPUs was the longest read of each pass (about 65 ms),
 * though nodes rarely change. Each refresh reads every node's liveness (its heartbeat moves
 * every few seconds) and the whole view of the nodes changed since the last one only
 * (`NodesRepository.forScheduling`, stamped by migration 0015's trigger). A full read happens
 * on the first refresh and after `invalidate()` (taking leadership, a failed pass).
 */
export class LiveNodes {
  private byId = new Map<string, NodeWithGpus>();
  /** The nodes in name order (as the commit orders ranks; plans break ties by it). */
  private ordered: NodeWithGpus[] = [];
  private horizon: string | null = null;

  constructor(private readonly nodes: Pick<NodesRepository, 'forScheduling'>) {}

  invalidate(): void {
    this.horizon = null;
    this.byId.clear();
    this.ordered = [];
  }

  /** Every node as it is now: the same as a full read (`forScheduling(null).changed`). */
  async refresh(): Promise<NodeWithGpus[]> {
    const read: FleetRead = await this.nodes.forScheduling(this.horizon);
    let added = false;
    for (const n of read.changed) {
      if (!this.byId.has(n.id)) added = true;
      this.byId.set(n.id, n);
    }
    if (added || this.horizon === null) this.ordered = [...this.byId.values()].sort((a, b) => compareNodeNames(a.name, b.name));
    else if (read.changed.length) this.ordered = this.ordered.map((n) => this.byId.get(n.id)!);
    this.horizon = read.horizon;
    // Liveness moves every few seconds for every node: applied to each pass's copies, read every time.
    const live = new Map(read.liveness.map((l) => [l.id, l]));
    return this.ordered.map((n) => {
      const l = live.get(n.id);
      const heard = l?.heardMs ?? null;
      if ((n.lastHeartbeatAt?.getTime() ?? null) === heard && n.connected === (l?.connected ?? false)) return n;
      return { ...n, lastHeartbeatAt: heard === null ? null : new Date(heard), connected: l?.connected ?? false };
    });
  }
}
