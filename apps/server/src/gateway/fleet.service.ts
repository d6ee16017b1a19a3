import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import type { AgentHello, ServerMessage } from '@nuri/contracts';
import { WIRE_VERSION, isCriticalXid } from '@nuri/contracts';
import type { ServerConfig } from '@nuri/config';
import { DatabaseHandle, JobsRepository, LedgerRepository, NodesRepository, Wakeups, type JobPlacement, type LiveJob, type NodeGpu } from '@nuri/db';
import { Batched } from '../core/batched';
import { randomUUID, timingSafeEqual } from 'node:crypto';
import type { z } from 'zod';
import { Clock } from '../core/clock';
import { Coalesced } from '../core/coalesced';
import { CONFIG, DATABASE } from '../core/core.module';
import { NuriMetrics } from '@nuri/metrics';
import { hashToken } from '../auth/tokens';
import { JobLifecycle } from '../lifecycle/job-lifecycle';
import { AttemptTelemetry } from './attempt-telemetry';
import { IdlePolicyEnforcer } from './idle-policy';
import type { AgentLink, FleetPort, SequencedMessage } from './fleet-port';
import { MAX_HELLOS_IN_FLIGHT, type GatewayCounters } from './transport/agent-gateway';

interface Dispatch {
  nodeId: string;
  /** Jobs this connection's agent has been told to start, or reported running. */
  started: Set<string>;
  /** Attempt of each started job as far as this connection knows (absent: unknown). */
  attempts: Map<string, number>;
  /** Jobs this connection's agent was told to stop, and when (ms): sent again if unanswered for STOP_RESEND_MS. */
  stopsSent: Map<string, number>;
  /**
   * The latest attempt per job whose exit this connection applied, and when (ms). A reconcile
   * that read the job before that exit's effect (a requeue) must not record or send a start of
   * an attempt that is over here: the agent ignores it (its exit is on its way), and a later
   * attempt's start would then wait for ever on a stop of an attempt whose exit came already.
   */
  exited: Map<string, { attempt: number; at: number }>;
  /** Highest seq applied per stream, for messages that are not persisted (samples). */
  seqs: Map<string, number>;
}

/** How often a gateway says it is alive (the leader treats one unseen for GATEWAY_LIVE_MS as gone). */
const GATEWAY_ALIVE_EVERY_MS = 1000;
/** How often what the samples say of running attempts (utilization, idle GPU-seconds) is stored in the ledger. */
const TELEMETRY_STORE_EVERY_MS = 15_000;
/** Streams of a node unheard for this long are forgotten when it says hello again. */
const STREAM_RETENTION_MS = 10 * 60_000;
/**
 * Hellos whose database work goes in one batch (see `hellos`): as many as the transport lets in
 * at once, so that a storm's batches fill and go without lingering.
 */
const HELLO_BATCH = MAX_HELLOS_IN_FLIGHT;
/** How long a hello's database work waits for others' (see `hellos`): nothing next to an agent's reconnect backoff. */
const HELLO_LINGER_MS = 50;
/** Stream advances that go in one statement at most (see `advances`). */
const ADVANCE_BATCH = 1000;
/** How long a stream advance waits for others' (see `advances`); the agent's message is acknowledged after it. */
const ADVANCE_LINGER_MS = 20;
/**
 * A stop unanswered (no exit of that job applied on the connection) for this long is sent again.
 * The agent answers a stop of an attempt it does not run with a `lost` exit, except while its own
 * exit of it is unacknowledged (that exit is on its way), so a stop that crossed such an exit, or
 * any other lost word between the two, would otherwise leave the job waiting on an exit that never
 * comes. A second stop of a job being stopped changes nothing on the agent (its grace is kept).
 */
const STOP_RESEND_MS = 10_000;
/** How long a connection remembers an applied exit (see `Dispatch.exited`): far longer than any read in flight. */
const EXITED_RETENTION_MS = 10 * 60_000;
/** Entries in `Dispatch.exited` above which the ones past EXITED_RETENTION_MS are dropped. */
const EXITED_PRUNE_ABOVE = 256;
/** Nodes whose starts and stops are re-checked in one read at most (see `freshReads`). */
const FRESH_BATCH = 256;
/** Agents authenticated in one read at most (see `tokenReads`). */
const TOKEN_BATCH = 256;
/** How long an agent's token read waits for others' (see `tokenReads`): nothing next to an agent's reconnect backoff. */
const TOKEN_LINGER_MS = 20;

/** What a hello needs from the database about its node. */
interface HelloReads {
  up: boolean;
  stored: NodeGpu[];
  ackedSeq: number;
  here: JobPlacement[];
  pruned: number;
}

const REJECTED: ReadonlySet<keyof GatewayCounters> = new Set([
  'malformedMessages',
  'unknownMessages',
  'invalidMessages',
  'oversizedMessages',
  'protocolViolations',
  'nodeMismatches',
] as const);

/**
 * The database side of the agent gateway: authenticates nodes, applies what agents report
 * exactly once, and drives each connected agent towards the database's truth (start what
 * should run there, stop what should not).
 *
 * What touches the database per message: nothing for samples (they are in memory and in
 * the metrics); liveness (heartbeats and any other message) is batched into one statement
 * a second for all nodes; job events and faults are written (they must survive).
 */
@Injectable()
export class FleetService implements FleetPort, OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger('Fleet');
  private link?: AgentLink;
  private readonly nodes = new Map<string, Dispatch>();
  /** Node ids by name, learnt at authentication (names and ids never change). */
  private readonly ids = new Map<string, string>();
  /** Node ids heard from since the last liveness flush. */
  private seen = new Set<string>();
  private seenTimer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  /** Nodes whose agent left this gateway: their GPU series go if it is not back within the down timeout. */
  private readonly goneTimers = new Map<string, NodeJS.Timeout>();
  private timer?: NodeJS.Timeout;
  private unsubscribe?: () => void;
  private readonly reconciles = new Coalesced(() => this.reconcileRound());
  /**
   * Where the jobs' changes were last read up to (`JobsRepository.changeHorizon`): a round after a
   * dispatch or cancel wake-up looks only at the agents of jobs written since (see `reconcileRound`).
   * Null: the next round takes every agent.
   */
  private horizon: string | null = null;
  /** A round of every agent is asked for (the periodic one, a GPU fault, a failed round). */
  private wholeRound = true;
  private wakePending?: NodeJS.Timeout;
  private aliveTimer?: NodeJS.Timeout;
  /** This gateway process (gateway_instances.id; nodes.gateway_id of the agents it holds). */
  readonly instanceId = randomUUID();
  /** Utilization and idle time per running attempt, integrated from samples (issue 15). */
  private readonly telemetry: AttemptTelemetry;
  private readonly ledger: LedgerRepository;
  private telemetryTimer?: NodeJS.Timeout;
  private readonly idlePolicy: IdlePolicyEnforcer;

  constructor(
    @Inject(CONFIG) private readonly config: ServerConfig,
    private readonly clock: Clock,
    private readonly wakeups: Wakeups,
    private readonly nodeRepo: NodesRepository,
    private readonly jobs: JobsRepository,
    private readonly lifecycle: JobLifecycle,
    private readonly metrics: NuriMetrics,
    @Inject(DATABASE) database: DatabaseHandle,
  ) {
    this.ledger = new LedgerRepository(database.db);
    this.telemetry = new AttemptTelemetry(config.idle.thresholdRatio);
    this.idlePolicy = new IdlePolicyEnforcer(this.ledger);
  }

  attach(link: AgentLink): void {
    this.link = link;
  }

  async onApplicationBootstrap(): Promise<void> {
    // Say this gateway is alive, now and every second: the leader counts agents' silence only
    // while some gateway could hear them, and for a node whose gateway died, from that death.
    // Rows of gateways dead for an hour are dropped once, here (each start prunes; none is needed then).
    const startedAt = this.clock.now();
    const alive = () =>
      this.nodeRepo.gatewayAlive(this.instanceId, startedAt, this.clock.now()).catch((e: Error) => this.log.error(`gateway liveness write failed: ${e.message}`));
    await this.nodeRepo.forgetGateways(new Date(startedAt.getTime() - 3600_000)).catch((e: Error) => this.log.error(`pruning dead gateways failed: ${e.message}`));
    await alive();
    this.aliveTimer = setInterval(() => void alive(), GATEWAY_ALIVE_EVERY_MS);
    this.aliveTimer.unref?.();
    this.unsubscribe = this.wakeups.onWake((reason) => {
      if (reason === 'dispatch' || reason === 'cancel') this.reconcileChanged();
    });
    // A lost wake-up (another process, a dropped NOTIFY) only delays a start by one period.
    const loop = () => {
      this.reconcileAll();
      this.timer = setTimeout(loop, Math.min(this.config.schedulerTickMs, 5000));
    };
    this.timer = setTimeout(loop, 1000);
    this.seenTimer = setInterval(() => void this.flushSeen(), 1000);
    this.seenTimer.unref?.();
    this.telemetryTimer = setInterval(() => void this.storeTelemetry().then(() => this.applyIdlePolicy()), TELEMETRY_STORE_EVERY_MS);
    this.telemetryTimer.unref?.();
  }

  async onApplicationShutdown(): Promise<void> {
    clearTimeout(this.timer);
    clearInterval(this.seenTimer);
    clearInterval(this.aliveTimer);
    for (const t of this.goneTimers.values()) clearTimeout(t);
    this.unsubscribe?.();
    clearInterval(this.telemetryTimer);
    await this.flushSeen().catch((e: Error) => this.log.error(`recording agents last seen at shutdown failed: ${e.message}`));
    await this.storeTelemetry();
  }

  async authenticate(nodeName: string, token: string): Promise<boolean> {
    const stored = await this.tokenReads.run(nodeName);
    if (!stored) return false;
    const a = Buffer.from(hashToken(token), 'hex');
    const b = Buffer.from(stored.hash, 'hex');
    const ok = a.length === b.length && timingSafeEqual(a, b);
    if (ok) this.ids.set(nodeName, stored.id);
    return ok;
  }

  /** Transport counters: rejected messages show in the messages metric. */
  counted(counter: keyof GatewayCounters, _node: string | undefined): void {
    if (REJECTED.has(counter)) this.metrics.recordAgentMessage('invalid', 'rejected');
  }

  /**
   * What a hello reads and writes in the database, for many agents at once: a reconnect storm
   * of 4,000 agents behind a scheduler pass in the same process took about 600 ms a hello when
   * each made its own round trips (their awaits wait out the pass), and 90 s after a restart
   * under a quarter were back. Each batch is two statements, whatever its size. A batch that is
   * not full waits HELLO_LINGER_MS for more: the agents of a restart come back spread over
   * seconds (their backoff's jitter), and a batch each few milliseconds was 220 batches of three
   * or four in the first 3.3 s of `bench:live`'s restart, each statement a fixed cost to the
   * database that a new leader's first pass was reading from.
   */
  private readonly hellos = new Batched<{ nodeId: string; hello: z.infer<typeof AgentHello> }, HelloReads>((items) => this.helloReads(items), {
    max: HELLO_BATCH,
    key: (i) => i.nodeId,
    lingerMs: HELLO_LINGER_MS,
  });
  /**
   * Stream sequence numbers advanced after applying a message, many nodes' in one statement: a
   * restarted leader's first passes start thousands of jobs, each answered by a `started` event,
   * and one statement apiece was that many round trips through a database the passes need too.
   * (A connection applies its messages in order, so a stream has one advance in flight at most.)
   */
  private readonly advances = new Batched<{ nodeId: string; stream: string; seq: number }, boolean>(
    (items) => this.nodeRepo.advanceStreamMany(items, this.clock.now()),
    { max: ADVANCE_BATCH, key: (i) => `${i.nodeId}/${i.stream}`, lingerMs: ADVANCE_LINGER_MS },
  );

  /**
   * Agents' token hashes, many in one statement: 4,000 agents reconnecting after a restart were
   * 4,000 statements of their own, the gateway's busiest writes to the database in that minute.
   * Each read waits TOKEN_LINGER_MS for others: it takes well under a millisecond, so without it
   * a storm still went about one agent a statement (689-856 statements in the first 4 s after a
   * restart of `bench:live`), each about 0.1-0.2 ms of the gateway's CPU and 0.1 ms of PostgreSQL's
   * while a new leader's first pass needs them most.
   */
  private readonly tokenReads = new Batched<string, { id: string; hash: string } | undefined>(
    async (names) => {
      const found = await this.nodeRepo.tokenHashMany(names);
      return names.map((n) => found.get(n));
    },
    { max: TOKEN_BATCH, key: (n) => n, lingerMs: TOKEN_LINGER_MS },
  );

  /**
   * The fresh reads that every start and stop is re-checked with before it is sent, many nodes'
   * in one (two statements): a reconcile round asks for every node at once, and so do the
   * hellos of a reconnecting fleet. Each node's messages are built as its read comes back.
   */
  private readonly freshReads = new Batched<{ nodeId: string; ids: string[] }, Map<string, LiveJob>>((items) => this.jobs.liveStateMany(items), {
    max: FRESH_BATCH,
    key: (i) => i.nodeId,
  });

  private async helloReads(items: { nodeId: string; hello: z.infer<typeof AgentHello> }[]): Promise<HelloReads[]> {
    const now = this.clock.now();
    const nodeIds = items.map((i) => i.nodeId);
    const [hellos, running] = await Promise.all([
      // Connected here, up again if it was down, and what it reported: isolation (the node
      // view shows it), address (MASTER_ADDR of jobs with rank 0 here) and output directory
      // (JobView.output says where each rank's output is); old streams forgotten; its GPUs and
      // its stream's position read. One statement, with the jobs placed there another.
      this.nodeRepo.helloMany(
        items.map(({ nodeId, hello }) => ({ id: nodeId, isolation: hello.isolation ?? null, ...(hello.address ? { address: hello.address } : {}), outputDir: hello.outputDir ?? null, stream: hello.stream })),
        now,
        this.instanceId,
        new Date(now.getTime() - STREAM_RETENTION_MS),
      ),
      this.jobs.placements({ onNodes: nodeIds }),
    ]);
    const onNode = new Map<string, JobPlacement[]>();
    for (const j of running)
      for (const n of new Set(j.placement.map((p) => p.nodeId))) {
        const list = onNode.get(n);
        if (list) list.push(j);
        else onNode.set(n, [j]);
      }
    return items.map(({ nodeId }) => ({
      up: hellos.came.has(nodeId),
      stored: hellos.gpus.get(nodeId) ?? [],
      ackedSeq: hellos.seqs.get(nodeId) ?? -1,
      here: onNode.get(nodeId) ?? [],
      pruned: hellos.pruned.get(nodeId) ?? 0,
    }));
  }

  async hello(nodeName: string, hello: z.infer<typeof AgentHello>): Promise<{ ackedSeq: number; send: ServerMessage[] }> {
    const nodeId = await this.nodeId(nodeName);
    const now = this.clock.now();
    const { up, stored, ackedSeq, here, pruned } = await this.hellos.run({ nodeId, hello });
    if (up) this.log.log(`node ${nodeName} is up`);
    if (pruned) this.log.debug?.(`node ${nodeName}: forgot ${pruned} old agent stream(s)`);
    // Inventory: write only what changed.
    const byIndex = new Map(stored.map((g) => [g.index, g]));
    const changed = hello.gpus.filter((g) => byIndex.get(g.index)?.uuid !== g.uuid || byIndex.get(g.index)?.model !== g.model);
    if (changed.length) await this.nodeRepo.recordInventory(nodeId, changed.map((g) => ({ index: g.index, uuid: g.uuid, model: g.model })));
    // A GPU the node was registered with but the agent no longer sees is out of service.
    const seen = new Set(hello.gpus.map((g) => g.index));
    for (const g of stored)
      if (!seen.has(g.index) && (await this.nodeRepo.setGpuHealth(nodeId, g.index, false, 'GPU missing from the agent inventory', now))) {
        this.log.warn(`node ${nodeName} GPU ${g.index} unhealthy: missing from the agent inventory`);
        this.metrics.setGpuHealthy(nodeName, g.index, false);
      }
    const d: Dispatch = {
      nodeId,
      started: new Set(hello.running),
      attempts: new Map(Object.entries(hello.runningAttempts ?? {})),
      stopsSent: new Map(),
      exited: new Map(),
      seqs: new Map([[hello.stream, ackedSeq]]),
    };
    this.nodes.set(nodeName, d);
    clearTimeout(this.goneTimers.get(nodeName));
    this.goneTimers.delete(nodeName);
    this.metrics.setAgentConnections(this.nodes.size);
    this.metrics.setNodeUp(nodeName, true);
    this.metrics.setNodeInventory(nodeName, hello.gpus, hello.gpuModel);
    for (const g of stored) if (!g.healthy && seen.has(g.index)) this.metrics.setGpuHealthy(nodeName, g.index, false);
    this.metrics.recordAgentMessage('hello', 'applied');
    const send = await this.reconcileMessages(nodeName, d, here);
    this.wakeNodeChange();
    return { ackedSeq, send };
  }

  async apply(nodeName: string, stream: string, m: SequencedMessage): Promise<'applied' | 'duplicate'> {
    const d = this.nodes.get(nodeName);
    const nodeId = d?.nodeId ?? (await this.nodeId(nodeName));
    const last = d?.seqs.get(stream) ?? (await this.nodeRepo.streamSeq(nodeId, stream));
    if (m.seq <= last) {
      this.metrics.recordAgentMessage(m.type, 'duplicate');
      return 'duplicate';
    }
    this.seen.add(nodeId);
    const at = new Date(m.at);
    if (m.type === 'samples') {
      this.metrics.applySamplesMessage(nodeName, stream, m);
      this.telemetry.sample(nodeId, m.at, m.gpus);
    } else if (m.type === 'job_event') {
      // Effects are idempotent (state-guarded), so applying then advancing the stream is
      // exactly-once even if the process dies in between.
      const e = m.event;
      if (e.kind === 'exited') {
        const known = d?.attempts.get(e.jobId);
        // A stale exit (an earlier attempt) says nothing about what the agent runs now.
        if (d && (e.attempt === undefined || known === undefined || known === e.attempt)) this.forgetStart(d, e.jobId);
        // Remembered before its effect is written: a reconcile between the two reads the attempt as running.
        const over = e.attempt ?? known;
        if (d && over !== undefined) this.noteExited(d, e.jobId, over);
        await this.storeTelemetry(e.jobId); // the attempt's utilization up to its end, before the end is recorded
        if (await this.lifecycle.exited(nodeId, e, at)) this.metrics.removeJobSeries(e.jobId);
      } else if (d) {
        d.started.add(e.jobId);
        if (e.attempt !== undefined) d.attempts.set(e.jobId, e.attempt);
      }
      await this.advances.run({ nodeId, stream, seq: m.seq });
    } else {
      await this.gpuFault(nodeId, nodeName, m, at);
      await this.advances.run({ nodeId, stream, seq: m.seq });
    }
    d?.seqs.set(stream, m.seq);
    this.metrics.recordAgentMessage(m.type, 'applied');
    return 'applied';
  }

  async heartbeat(nodeName: string, at: number): Promise<void> {
    const id = this.nodes.get(nodeName)?.nodeId ?? this.ids.get(nodeName);
    if (id) this.seen.add(id);
    this.metrics.markNodeSeen(nodeName, Math.min(at, this.clock.now().getTime()));
    this.metrics.recordAgentMessage('heartbeat', 'applied');
  }

  async disconnected(nodeName: string): Promise<void> {
    const d = this.nodes.get(nodeName);
    this.nodes.delete(nodeName);
    this.metrics.setAgentConnections(this.nodes.size);
    if (!d) return;
    this.seen.delete(d.nodeId);
    this.telemetry.forget(d.nodeId);
    await this.nodeRepo.markConnected(d.nodeId, false, this.clock.now());
    clearTimeout(this.goneTimers.get(nodeName));
    const t = setTimeout(() => {
      this.goneTimers.delete(nodeName);
      if (this.nodes.has(nodeName)) return;
      this.metrics.setNodeUp(nodeName, false);
      this.metrics.removeNodeGpuSeries(nodeName);
    }, this.config.nodeDownAfterSeconds * 1000);
    t.unref?.();
    this.goneTimers.set(nodeName, t);
  }

  /** Writes the liveness of every node heard from since the last flush, in one statement. */
  flushSeen(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (!this.seen.size) return;
      const ids = [...this.seen];
      this.seen = new Set();
      try {
        await this.nodeRepo.heartbeatMany(ids, this.clock.now());
        // A node marked down while its agent froze (but kept its connection) is up again once
        // heard: only a new hello used to bring it back, so it could stay down for good.
        const connected = new Set([...this.nodes.values()].map((d) => d.nodeId));
        const back = await this.nodeRepo.markUpMany(ids.filter((id) => connected.has(id)), 'agent heard again');
        for (const name of back) {
          this.log.log(`node ${name} is up: its agent is heard again`);
          this.metrics.setNodeUp(name, true);
        }
        if (back.length) this.wakeNodeChange();
      } catch (e) {
        for (const id of ids) this.seen.add(id);
        this.log.error(`liveness flush failed: ${(e as Error).message}`);
      }
    });
    return this.flushing;
  }

  /** Brings every connected agent in line with the database; coalesces bursts. */
  reconcileAll(): void {
    this.wholeRound = true;
    this.reconciles.trigger();
  }

  /**
   * Brings in line the agents of the jobs written since the last round (started, asked to stop,
   * ended or requeued): a dispatch after an express start of one job read every running job and
   * walked all 4,000 agents. The periodic round still takes every agent (what a lost wake-up or
   * anything else missed waits for it, as before).
   */
  reconcileChanged(): void {
    this.reconciles.trigger();
  }

  private async reconcileRound(): Promise<void> {
    if (!this.nodes.size) return;
    const whole = this.wholeRound || this.horizon === null;
    this.wholeRound = false;
    let live: JobPlacement[];
    let only: Set<string> | null = null;
    let horizon: string | null;
    try {
      if (whole) {
        // Taken before the read: a job written after it is read (again) by the next round.
        horizon = await this.jobs.changeHorizon();
        live = await this.jobs.placements();
      } else {
        const changed = await this.jobs.changedPlacementsSince(this.horizon!);
        horizon = changed.horizon ?? this.horizon;
        if (!changed.jobs.length) return;
        // The nodes a changed job runs on now, and those whose agent was told to run it (it may
        // have ended or moved since): where a start or a stop may be due.
        only = new Set(changed.jobs.flatMap((j) => j.nodeIds));
        const ids = new Set(changed.jobs.map((j) => j.id));
        for (const d of this.nodes.values()) for (const id of d.started) if (ids.has(id)) only.add(d.nodeId);
        live = only.size ? await this.jobs.placements({ onNodes: [...only] }) : [];
      }
    } catch (e) {
      // The next round takes every agent (what this one would have seen is not lost).
      this.wholeRound = true;
      this.log.error(`reconcile: reading running jobs failed: ${(e as Error).message}`);
      return;
    }
    this.horizon = horizon;
    const byNode = new Map<string, JobPlacement[]>();
    for (const j of live)
      for (const p of j.placement) {
        const list = byNode.get(p.nodeId) ?? [];
        list.push(j);
        byNode.set(p.nodeId, list);
      }
    // Every node at once: their fresh reads go together (`freshReads`), not one round trip each.
    await Promise.all(
      [...this.nodes].filter(([, d]) => !only || only.has(d.nodeId)).map(async ([name, d]) => {
        try {
          for (const msg of await this.reconcileMessages(name, d, byNode.get(d.nodeId) ?? [])) this.link?.send(name, msg);
        } catch (e) {
          // Its changes are behind the horizon now: the next round takes every agent.
          this.wholeRound = true;
          this.log.error(`reconcile ${name}: ${(e as Error).message}`);
        }
      }),
    );
  }

  settled(): Promise<void> {
    return this.reconciles.idle();
  }

  /**
   * What to send an agent so it runs exactly what the database says runs on its node.
   * `here` (the running jobs with a GPU on this node) may be stale by the time it is used:
   * an exit applied meanwhile, a requeue, a new attempt. So every start and stop is
   * re-checked against a fresh read just before it is sent: a start only for the attempt
   * that runs now, a stop never for a job that does run here.
   */
  private async reconcileMessages(nodeName: string, d: Dispatch, here: JobPlacement[]): Promise<ServerMessage[]> {
    this.telemetry.placed(d.nodeId, here);
    const wanted = new Set<string>();
    const starts: JobPlacement[] = [];
    const stops: { jobId: string; kind: 'requested' | 'reconcile'; attempt?: number }[] = [];
    for (const job of here) {
      if (!job.placement.some((p) => p.nodeId === d.nodeId)) continue;
      wanted.add(job.id);
      if (job.stopRequested) {
        // Sent whether or not this connection saw it start: an agent that does not run it
        // answers `lost`, so a cancel never waits on a start that was never delivered.
        if (!this.stopAwaited(d, job.id)) stops.push({ jobId: job.id, kind: 'requested', attempt: job.attempts });
        continue;
      }
      const runs = d.attempts.get(job.id);
      if (d.started.has(job.id) && runs !== undefined && this.exitedHere(d, job.id, runs)) {
        // A start recorded from a read older than its attempt's exit (see `Dispatch.exited`):
        // nothing runs it here and no exit of it will come again, so the current attempt starts.
        this.forgetStart(d, job.id);
      }
      if (d.started.has(job.id)) {
        // The agent runs an earlier attempt of this job (it was requeued and placed here
        // again while the agent was away): stop that one; its exit (ignored as stale)
        // clears the way for the current attempt's start.
        if (runs !== undefined && job.attempts !== undefined && runs !== job.attempts && !this.stopAwaited(d, job.id))
          stops.push({ jobId: job.id, kind: 'reconcile', attempt: runs });
        continue;
      }
      starts.push(job);
    }
    for (const id of d.started) {
      if (wanted.has(id)) continue;
      const runs = d.attempts.get(id);
      if (runs !== undefined && this.exitedHere(d, id, runs)) {
        this.forgetStart(d, id); // its exit came already: there is nothing to stop
        continue;
      }
      if (this.stopAwaited(d, id)) continue;
      stops.push({ jobId: id, kind: 'reconcile', attempt: runs });
    }
    if (!starts.length && !stops.length) return [];
    const fresh = await this.freshReads.run({ nodeId: d.nodeId, ids: [...new Set([...starts.map((j) => j.id), ...stops.map((s) => s.jobId)])] });
    const out: ServerMessage[] = [];
    for (const s of stops) {
      const f = fresh.get(s.jobId);
      const runsHere = f?.state === 'running' && f.onNode;
      if (s.kind === 'requested') {
        // A rank that already exited here (its job runs on elsewhere) has nothing to stop.
        if (!runsHere || !f.stop_requested || f.rankExited || (s.attempt !== undefined && f.attempts !== s.attempt)) continue;
        const preempt = f.stop_requested === 'preempt';
        d.stopsSent.set(s.jobId, this.clock.now().getTime());
        out.push({
          v: WIRE_VERSION,
          type: 'stop',
          jobId: s.jobId,
          reason: preempt ? 'preempted' : 'cancelled',
          graceSeconds: preempt ? this.config.preemptGraceSeconds : this.config.timeoutGraceSeconds,
          attempt: f.attempts,
        });
        continue;
      }
      // A reconcile stop: the job should not run here. Not if a fresh read says it does
      // (with the attempt the agent runs): the snapshot was older than a start.
      if (runsHere && !f.stop_requested && (s.attempt === undefined || s.attempt === f.attempts)) continue;
      d.stopsSent.set(s.jobId, this.clock.now().getTime());
      // Ended, requeued (node down, GPU fault) or never meant to be here: its GPU series go, and the process is stopped.
      if (!runsHere) this.metrics.removeJobSeries(s.jobId);
      out.push({ v: WIRE_VERSION, type: 'stop', jobId: s.jobId, reason: 'reconcile', graceSeconds: this.config.timeoutGraceSeconds, ...(s.attempt !== undefined ? { attempt: s.attempt } : {}) });
    }
    for (const job of starts) {
      const row = fresh.get(job.id);
      // rankExited: this node's rank of a multi-node job ended (exit 0) while others run: never again.
      if (!row || row.state !== 'running' || !row.onNode || row.stop_requested || row.rankExited || (job.attempts !== undefined && row.attempts !== job.attempts)) continue;
      // The read came before the effect of an exit this connection applied meanwhile.
      if (this.exitedHere(d, job.id, row.attempts)) continue;
      const rank = row.rankNodes.findIndex((n) => n.name === nodeName);
      if (rank < 0) continue;
      d.started.add(job.id);
      d.attempts.set(job.id, row.attempts);
      const gpuIndices = job.placement.find((p) => p.nodeId === d.nodeId)!.gpuIndices;
      this.metrics.assignJobGpus(job.id, row.tenantName, [{ node: nodeName, gpuIndices }]);
      out.push({
        v: WIRE_VERSION,
        type: 'start',
        jobId: job.id,
        command: row.command,
        env: row.env,
        workingDir: row.working_dir,
        gpuIndices,
        timeLimitSeconds: row.time_limit_seconds,
        graceSeconds: this.config.timeoutGraceSeconds,
        attempt: row.attempts,
        // Rank order is the placement's by node name (as JobView shows it); rank 0's address is MASTER_ADDR.
        launch: {
          rank,
          nodes: row.rankNodes.map((n) => n.name),
          masterAddr: row.rankNodes[0]!.address ?? row.rankNodes[0]!.name,
          // Null only for a job started by a server from before master ports: the range's first.
          masterPort: row.master_port ?? this.config.masterPorts.first,
          gpusPerNode: Math.max(1, gpuIndices.length),
        },
        ...(row.script !== null ? { script: row.script } : {}),
        ...(row.array_id !== null && row.array_task_id !== null ? { array: { id: row.array_id, taskId: row.array_task_id } } : {}),
      });
    }
    return out;
  }

  private noteExited(d: Dispatch, jobId: string, attempt: number): void {
    const now = this.clock.now().getTime();
    const had = d.exited.get(jobId);
    d.exited.delete(jobId); // re-inserted last: the map stays in the order of the exits
    d.exited.set(jobId, { attempt: Math.max(attempt, had?.attempt ?? 0), at: now });
    if (d.exited.size <= EXITED_PRUNE_ABOVE) return;
    for (const [id, x] of d.exited) {
      if (now - x.at < EXITED_RETENTION_MS) break;
      d.exited.delete(id);
    }
  }

  /** A stop of the job went to this connection's agent less than STOP_RESEND_MS ago (its answer is awaited). */
  private stopAwaited(d: Dispatch, jobId: string): boolean {
    const at = d.stopsSent.get(jobId);
    return at !== undefined && this.clock.now().getTime() - at < STOP_RESEND_MS;
  }

  /** Whether this connection applied an exit of that attempt of the job (or a later one). */
  private exitedHere(d: Dispatch, jobId: string, attempt: number): boolean {
    const x = d.exited.get(jobId);
    return x !== undefined && x.attempt >= attempt;
  }

  /** The connection no longer takes the job to run on its agent (its exit came, or it never will). */
  private forgetStart(d: Dispatch, jobId: string): void {
    d.started.delete(jobId);
    d.attempts.delete(jobId);
    d.stopsSent.delete(jobId);
  }

  /** Stores the utilization and idle time integrated since the last store (of one job's attempts, or all); kept for the next try if it fails. */
  private async storeTelemetry(jobId?: string): Promise<void> {
    const deltas = this.telemetry.take(jobId);
    if (!deltas.length) return;
    try {
      await this.ledger.addTelemetry(deltas, this.clock.now());
    } catch (e) {
      this.telemetry.restore(deltas);
      this.log.error(`storing attempt telemetry failed: ${(e as Error).message}`);
    }
  }

  /** Tenants' idle policies on what the samples say (notices, then cancels: the stops go out with the next reconcile). */
  private async applyIdlePolicy(): Promise<void> {
    try {
      const { cancelled } = await this.idlePolicy.run(this.clock.now());
      if (cancelled.length) this.wakeups.wake('cancel');
    } catch (e) {
      this.log.error(`idle policy: ${(e as Error).message}`);
    }
  }

  /** One node_change wake-up for a burst of hellos (thousands of agents reconnecting), not one each. */
  private wakeNodeChange(): void {
    if (this.wakePending) return;
    this.wakePending = setTimeout(() => {
      this.wakePending = undefined;
      this.wakeups.wake('node_change');
    }, 100);
    this.wakePending.unref?.();
  }

  private async nodeId(nodeName: string): Promise<string> {
    let id = this.ids.get(nodeName);
    if (!id) {
      id = await this.nodeRepo.idByName(nodeName);
      if (!id) throw new Error(`unknown node ${nodeName}`);
      this.ids.set(nodeName, id);
    }
    return id;
  }

  private async gpuFault(nodeId: string, nodeName: string, m: Extract<SequencedMessage, { type: 'gpu_fault' }>, at: Date): Promise<void> {
    const fatal = m.kind === 'remap_failure' || m.kind === 'vanished' || (m.kind === 'xid' && m.code !== undefined && isCriticalXid(m.code));
    const cause = m.kind === 'xid' ? `XID ${m.code}: ${m.message}` : `${m.kind}: ${m.message}`;
    if (!fatal) {
      this.metrics.recordGpuFault(nodeName, { index: m.index, kind: m.kind, code: m.code });
      // Throttling, heat, a non-critical XID: recorded with its cause, the GPU stays in service.
      this.log.warn(`node ${nodeName} GPU ${m.index}: ${cause}`);
      await this.nodeRepo.recordGpuHealthEvent(nodeId, m.index, true, cause, at);
      return;
    }
    if (await this.nodeRepo.setGpuHealth(nodeId, m.index, false, cause, at)) this.log.warn(`node ${nodeName} GPU ${m.index} unhealthy: ${cause}`);
    this.metrics.setGpuHealthy(nodeName, m.index, false);
    const [placed, rows] = await Promise.all([this.jobs.placements({ onNode: nodeId }), this.jobs.runningOnNode(nodeId)]);
    for (const job of placed) {
      if (!job.placement.some((p) => p.nodeId === nodeId && p.gpuIndices.includes(m.index))) continue;
      const row = rows.find((j) => j.id === job.id);
      if (row && (await this.lifecycle.nodeFailed(row, `GPU ${m.index} on ${nodeName} failed (${cause})`, at))) this.metrics.removeJobSeries(job.id);
    }
    // Counted after the job left the GPU: a GPU's XID series lives with its labels, and the
    // (unhealthy, now idle) GPU keeps it for the alert to see.
    this.metrics.recordGpuFault(nodeName, { index: m.index, kind: m.kind, code: m.code });
    this.wakeups.wake('node_change');
    // The job's agent is told to stop it now (reconcile: it no longer runs there); the
    // agent keeps the job's other GPUs out of any new start until its process group is gone.
    this.reconcileAll();
  }
}
