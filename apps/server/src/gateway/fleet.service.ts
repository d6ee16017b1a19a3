import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import type { AgentHello, GpuSample, ServerMessage } from '@nuri/contracts';
import { WIRE_VERSION } from '@nuri/contracts';
import type { ServerConfig } from '@nuri/config';
import { JobsRepository, NodesRepository, RunningWithPlacement } from '@nuri/db';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { z } from 'zod';
import { Clock } from '../core/clock';
import { CONFIG } from '../core/core.module';
import { Wakeups } from '../core/wakeups';
import { JobLifecycle } from '../lifecycle/job-lifecycle';
import type { AgentLink, FleetPort, SequencedMessage } from './fleet-port';

/** XIDs that mean the GPU can no longer be trusted with work (NVIDIA's XID catalogue). */
export const CRITICAL_XIDS = new Set([48, 62, 64, 74, 79, 95, 119, 120]);

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

interface Dispatch {
  nodeId: string;
  /** Jobs this connection's agent has been told to start, or reported running. */
  started: Set<string>;
  stopsSent: Set<string>;
  /** Highest seq applied per stream, for messages that are not persisted (samples). */
  seqs: Map<string, number>;
}

/**
 * The database side of the agent gateway: authenticates nodes, applies what agents report
 * exactly once, and drives each connected agent towards the database's truth (start what
 * should run there, stop what should not).
 */
@Injectable()
export class FleetService implements FleetPort, OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger('Fleet');
  private link?: AgentLink;
  private readonly nodes = new Map<string, Dispatch>();
  /** Latest GPU sample per node, as reported. */
  readonly samples = new Map<string, { at: number; gpus: GpuSample[] }>();
  private timer?: NodeJS.Timeout;
  private unsubscribe?: () => void;
  private reconciling: Promise<void> | null = null;
  private reconcileAgain = false;

  constructor(
    @Inject(CONFIG) private readonly config: ServerConfig,
    private readonly clock: Clock,
    private readonly wakeups: Wakeups,
    private readonly nodeRepo: NodesRepository,
    private readonly jobs: JobsRepository,
    private readonly lifecycle: JobLifecycle,
  ) {}

  attach(link: AgentLink): void {
    this.link = link;
  }

  onApplicationBootstrap(): void {
    this.unsubscribe = this.wakeups.onWake((reason) => {
      if (reason === 'dispatch' || reason === 'cancel') this.reconcileAll();
    });
    // A lost wake-up (another process, a dropped NOTIFY) only delays a start by one period.
    const loop = () => {
      this.reconcileAll();
      this.timer = setTimeout(loop, Math.min(this.config.schedulerTickMs, 5000));
    };
    this.timer = setTimeout(loop, 1000);
  }

  onApplicationShutdown(): void {
    clearTimeout(this.timer);
    this.unsubscribe?.();
  }

  async authenticate(nodeName: string, token: string): Promise<boolean> {
    const stored = await this.nodeRepo.tokenHash(nodeName);
    if (!stored) return false;
    const a = Buffer.from(sha256(token), 'hex');
    const b = Buffer.from(stored.hash, 'hex');
    return a.length === b.length && timingSafeEqual(a, b);
  }

  async hello(nodeName: string, hello: z.infer<typeof AgentHello>): Promise<{ ackedSeq: number; send: ServerMessage[] }> {
    const nodeId = await this.nodeRepo.idByName(nodeName);
    if (!nodeId) throw new Error(`unknown node ${nodeName}`);
    const now = this.clock.now();
    await this.nodeRepo.markConnected(nodeId, true, now);
    if (await this.nodeRepo.setState(nodeId, 'up', 'agent connected', ['down'])) this.log.log(`node ${nodeName} is up`);
    await this.nodeRepo.recordInventory(nodeId, hello.gpus.map((g) => ({ index: g.index, uuid: g.uuid, model: g.model })));
    // A GPU the node was registered with but the agent no longer sees is out of service.
    const node = await this.nodeRepo.findByName(nodeName);
    const seen = new Set(hello.gpus.map((g) => g.index));
    for (const g of node?.gpus ?? [])
      if (!seen.has(g.index)) await this.nodeRepo.setGpuHealth(nodeId, g.index, false, 'GPU missing from the agent inventory', now);
    const ackedSeq = await this.nodeRepo.streamSeq(nodeId, hello.stream);
    const d: Dispatch = { nodeId, started: new Set(hello.running), stopsSent: new Set(), seqs: new Map([[hello.stream, ackedSeq]]) };
    this.nodes.set(nodeName, d);
    const send = await this.reconcileMessages(nodeName, d);
    this.wakeups.wake('node_change');
    return { ackedSeq, send };
  }

  async apply(nodeName: string, stream: string, m: SequencedMessage): Promise<'applied' | 'duplicate'> {
    const d = this.nodes.get(nodeName);
    const nodeId = d?.nodeId ?? (await this.nodeRepo.idByName(nodeName));
    if (!nodeId) throw new Error(`unknown node ${nodeName}`);
    const last = d?.seqs.get(stream) ?? (await this.nodeRepo.streamSeq(nodeId, stream));
    if (m.seq <= last) return 'duplicate';
    const at = new Date(m.at);
    if (m.type === 'samples') {
      this.samples.set(nodeName, { at: m.at, gpus: m.gpus });
    } else if (m.type === 'job_event') {
      // Effects are idempotent (state-guarded), so applying then advancing the stream is
      // exactly-once even if the process dies in between.
      if (m.event.kind === 'exited') {
        d?.started.delete(m.event.jobId);
        d?.stopsSent.delete(m.event.jobId);
        await this.lifecycle.exited(nodeId, m.event, at);
      }
      await this.nodeRepo.advanceStream(nodeId, stream, m.seq, this.clock.now());
    } else {
      await this.gpuFault(nodeId, nodeName, m, at);
      await this.nodeRepo.advanceStream(nodeId, stream, m.seq, this.clock.now());
    }
    d?.seqs.set(stream, m.seq);
    return 'applied';
  }

  async heartbeat(nodeName: string, _at: number): Promise<void> {
    const id = this.nodes.get(nodeName)?.nodeId ?? (await this.nodeRepo.idByName(nodeName));
    if (id) await this.nodeRepo.heartbeat(id, this.clock.now());
  }

  async disconnected(nodeName: string): Promise<void> {
    const d = this.nodes.get(nodeName);
    this.nodes.delete(nodeName);
    this.samples.delete(nodeName);
    if (d) await this.nodeRepo.markConnected(d.nodeId, false, this.clock.now());
  }

  /** Brings every connected agent in line with the database; coalesces bursts. */
  reconcileAll(): void {
    if (this.reconciling) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = (async () => {
      do {
        this.reconcileAgain = false;
        if (!this.nodes.size) continue;
        const live = await this.jobs.running().catch(() => null);
        if (!live) continue;
        for (const [name, d] of this.nodes) {
          try {
            for (const msg of await this.reconcileMessages(name, d, live)) this.link?.send(name, msg);
          } catch (e) {
            this.log.error(`reconcile ${name}: ${(e as Error).message}`);
          }
        }
      } while (this.reconcileAgain);
      this.reconciling = null;
    })();
  }

  async settled(): Promise<void> {
    while (this.reconciling) await this.reconciling;
  }

  private async reconcileMessages(nodeName: string, d: Dispatch, live?: RunningWithPlacement[]): Promise<ServerMessage[]> {
    const out: ServerMessage[] = [];
    live ??= await this.jobs.running();
    const here = live.filter((j) => j.placement.some((p) => p.nodeId === d.nodeId));
    const wanted = new Set(here.map((j) => j.id));
    for (const job of here) {
      if (job.stopRequested) {
        if (d.started.has(job.id) && !d.stopsSent.has(job.id)) {
          d.stopsSent.add(job.id);
          const grace = job.stopRequested === 'preempt' ? this.config.preemptGraceSeconds : this.config.timeoutGraceSeconds;
          out.push({ v: WIRE_VERSION, type: 'stop', jobId: job.id, reason: job.stopRequested === 'preempt' ? 'preempted' : 'cancelled', graceSeconds: grace });
        }
        continue;
      }
      if (d.started.has(job.id)) continue;
      const row = await this.jobs.find(job.id);
      if (!row) continue;
      d.started.add(job.id);
      out.push({
        v: WIRE_VERSION,
        type: 'start',
        jobId: job.id,
        command: row.command,
        env: row.env,
        workingDir: row.working_dir,
        gpuIndices: job.placement.find((p) => p.nodeId === d.nodeId)!.gpuIndices,
        timeLimitSeconds: row.time_limit_seconds,
        graceSeconds: this.config.timeoutGraceSeconds,
      });
    }
    for (const id of d.started) {
      if (wanted.has(id) || d.stopsSent.has(id)) continue;
      d.stopsSent.add(id);
      out.push({ v: WIRE_VERSION, type: 'stop', jobId: id, reason: 'reconcile', graceSeconds: this.config.timeoutGraceSeconds });
    }
    return out;
  }

  private async gpuFault(nodeId: string, nodeName: string, m: Extract<SequencedMessage, { type: 'gpu_fault' }>, at: Date): Promise<void> {
    const fatal = m.kind === 'remap_failure' || m.kind === 'vanished' || (m.kind === 'xid' && m.code !== undefined && CRITICAL_XIDS.has(m.code));
    const cause = m.kind === 'xid' ? `XID ${m.code}: ${m.message}` : `${m.kind}: ${m.message}`;
    if (!fatal) {
      this.log.warn(`node ${nodeName} GPU ${m.index}: ${cause}`);
      return;
    }
    if (await this.nodeRepo.setGpuHealth(nodeId, m.index, false, cause, at)) this.log.warn(`node ${nodeName} GPU ${m.index} unhealthy: ${cause}`);
    const running = await this.jobs.running();
    for (const job of await this.jobs.runningOnNode(nodeId)) {
      const onGpu = running.find((j) => j.id === job.id)?.placement.some((p) => p.nodeId === nodeId && p.gpuIndices.includes(m.index));
      if (onGpu) await this.lifecycle.nodeFailed(job, `GPU ${m.index} on ${nodeName} failed (${cause})`, at);
    }
    this.wakeups.wake('node_change');
    this.reconcileAll();
  }
}
