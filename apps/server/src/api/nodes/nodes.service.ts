import { Injectable } from '@nestjs/common';
import { CreateNode, DrainNode, NodeView } from '@nuri/contracts';
import { JobsRepository, NodesRepository, NodeWithGpus, Principal } from '@nuri/db';
import { NuriMetrics } from '@nuri/metrics';
import { Clock } from '../../core/clock';
import { Wakeups } from '@nuri/db';
import { isOperator } from '../../auth/principal';
import { hashToken, newAgentToken } from '../../auth/tokens';
import { conflict, notFound, uniqueOr409 } from '../common/errors';
import { nodeView } from '../common/views';

/**
 * The fleet as users see it, and the operator's levers on it. Everyone reads nodes; a GPU's
 * job id shows only to the job's own tenant (and operators).
 */
@Injectable()
export class NodesService {
  constructor(
    private readonly nodes: NodesRepository,
    private readonly jobs: JobsRepository,
    private readonly wakeups: Wakeups,
    private readonly clock: Clock,
    private readonly metrics: NuriMetrics,
  ) {}

  /**
   * Registers a node (state `down` until its agent connects) and returns its view with the
   * agent's token, `nuri_node_…`, shown this once; only its sha256 is stored. 409 on a duplicate.
   */
  async register(input: CreateNode): Promise<NodeView & { agentToken: string }> {
    const agentToken = newAgentToken();
    await uniqueOr409(`node ${input.name}`, () => this.nodes.create({ ...input, tokenHash: hashToken(agentToken) }));
    this.wakeups.wake('node_change');
    const n = (await this.nodes.findByName(input.name))!;
    return { ...nodeView(n, () => true), agentToken };
  }

  async list(caller: Principal): Promise<NodeView[]> {
    return this.views(caller, await this.nodes.list());
  }

  async get(caller: Principal, name: string): Promise<NodeView> {
    return (await this.views(caller, [await this.find(name)]))[0]!;
  }

  /** Takes a node out of service: `draining` while jobs still run there, else `drained`. Running jobs keep running. */
  async drain(name: string, input: DrainNode): Promise<NodeView> {
    const n = await this.find(name);
    // Draining first, then drained in one statement if no live allocation is left: a job
    // placed meanwhile keeps the node draining (the lifecycle settles it when the job ends).
    await this.nodes.setState(n.id, 'draining', input.reason);
    await this.nodes.settleDraining(n.id);
    this.wakeups.wake('node_change');
    return this.viewAsOperator(name);
  }

  /**
   * Puts a drained or draining node back in service. A node without a connected agent
   * goes back to `down` (it comes up when its agent is back); a `down` node cannot be returned (409).
   */
  async return(name: string): Promise<NodeView> {
    const n = await this.find(name);
    if (n.state === 'down') throw conflict(`node ${name} is down; it comes up when its agent reconnects`);
    if (n.state !== 'up') {
      const ok = n.connected
        ? await this.nodes.setState(n.id, 'up', 'returned by operator', ['draining', 'drained'])
        : await this.nodes.setState(n.id, 'down', 'returned by operator; waiting for its agent', ['draining', 'drained']);
      if (!ok) throw conflict(`node ${name} changed state meanwhile; look again`);
      this.wakeups.wake('node_change');
    }
    return this.viewAsOperator(name);
  }

  /**
   * Puts a GPU that a fault took out of scheduling back in service, recorded as a health
   * event. 404 for an unknown node or GPU; a healthy GPU is left as it is (200).
   */
  async returnGpu(name: string, index: number): Promise<NodeView> {
    const n = await this.find(name);
    if (!n.gpus.some((g) => g.index === index)) throw notFound(`node ${name} has no GPU ${index}`);
    if (await this.nodes.setGpuHealth(n.id, index, true, 'returned by operator', this.clock.now())) {
      this.metrics.setGpuHealthy(name, index, true);
      this.wakeups.wake('node_change');
    }
    return this.viewAsOperator(name);
  }

  private async find(name: string): Promise<NodeWithGpus> {
    const n = await this.nodes.findByName(name);
    if (!n) throw notFound(`no node ${name}`);
    return n;
  }

  private async viewAsOperator(name: string): Promise<NodeView> {
    return nodeView(await this.find(name), () => true);
  }

  private async views(caller: Principal, nodes: NodeWithGpus[]): Promise<NodeView[]> {
    if (isOperator(caller)) return nodes.map((n) => nodeView(n, () => true));
    const jobIds = [...new Set(nodes.flatMap((n) => n.gpus.map((g) => g.jobId).filter((j): j is string => j !== null)))];
    const tenantOf = await this.jobs.tenantIdsOf(jobIds);
    return nodes.map((n) => nodeView(n, (j) => tenantOf.get(j) === caller.tenantId));
  }
}
