import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ServerMessage, WIRE_VERSION, type GpuInventory, type GpuModel, type JobEvent, type StartJob, type StopJob } from '@nuri/contracts';
import { fullJitterDelay } from './backoff';
import { SimulatedCollector, type SimulatedFault } from './collector/simulated';
import type { Collector } from './collector/types';
import { FinishedAttempts, Journal, RunningState } from './journal';
import { Outbox, type SequencedMessage, type UnsequencedMessage } from './outbox';
import type { IsolationOptions } from './isolation';
import { LogServer } from './logs';
import { JobRunner, groupAlive, type RunAs } from './runner';

export const AGENT_VERSION = '0.1.0';

export interface AgentOptions {
  /** ws:// or wss:// URL of the gateway's agent endpoint, e.g. ws://127.0.0.1:8080/agent */
  gatewayUrl: string;
  nodeName: string;
  nodeToken: string;
  /** The address other nodes reach this one at (hello; a multi-node job's MASTER_ADDR when rank 0 runs here). */
  address?: string;
  /** Telemetry source; default a SimulatedCollector of `simulated.gpus` GPUs. */
  collector?: Collector;
  simulated?: { gpus?: number; model?: GpuModel };
  /** Job logs (`jobs/<id>/output.log`), the job-event journal and the running-jobs file. */
  workDir: string;
  /** Grace seconds used when the agent itself stops jobs (shutdown). Default 10. */
  graceSeconds?: number;
  sampleIntervalMs?: number;
  /** Until the gateway's welcome says otherwise. */
  heartbeatIntervalMs?: number;
  /** Reconnect when nothing was heard from the gateway for this long (min 3 heartbeats). Default 45 s. */
  silenceTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  maxBufferedSamples?: number;
  logCapBytes?: number;
  runAs?: RunAs;
  /** Job cgroups, a uid per job, devices (see IsolationOptions). Default: cgroups where writable. */
  isolation?: IsolationOptions;
  /** The jobs' own directories (default `<workDir>/jobs`). */
  jobsDir?: string;
  /** Output of jobs that ended longer ago than this is removed (hours, may be fractional). Default 168. */
  outputRetentionHours?: number;
  /** Kill running jobs on stop() (default true). */
  stopJobsOnStop?: boolean;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void;
  random?: () => number;
}

export interface AgentStats {
  connected: boolean;
  connects: number;
  pending: number;
  lastSeq: number;
  ackedSeq: number;
  droppedSamples: number;
  droppedFaults: number;
  collectErrors: number;
  serverErrors: number;
}

/**
 * The node agent: runs jobs the gateway places here, reports telemetry, job events and
 * GPU faults as sequenced messages kept until acknowledged, reconnects with exponential
 * backoff and full jitter. Usable in-process (the demo runs many) or from main.ts.
 */
export class Agent {
  /** Random per agent start: a restarted agent is a new stream and resends its journal in it. */
  readonly streamId = randomBytes(12).toString('hex');
  readonly collector: Collector;
  readonly runner: JobRunner;
  /** Serves job output to the gateway (logs_open) and applies the output retention. */
  readonly logs: LogServer;
  private readonly outbox: Outbox;
  private readonly journal: Journal;
  private readonly runningState: RunningState;
  private readonly finished: FinishedAttempts;
  /** seq -> journal entry id of job events in flight. */
  private readonly journalOfSeq = new Map<number, string>();
  /** Starts waiting for their GPUs to be freed or for the previous attempt's exit to be acked. */
  private readonly deferred = new Map<string, StartJob>();
  private ws: WebSocket | undefined;
  private ready = false;
  private stopping = false;
  private started = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private sampleTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private sampling = false;
  private crashed = false;
  private lastHeard = 0;
  private inventory: GpuInventory[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly s = { connects: 0, ackedSeq: 0, collectErrors: 0, serverErrors: 0 };

  constructor(private readonly opts: AgentOptions) {
    this.collector = opts.collector ?? new SimulatedCollector({ nodeName: opts.nodeName, gpus: opts.simulated?.gpus, model: opts.simulated?.model });
    this.outbox = new Outbox({ maxSamples: opts.maxBufferedSamples });
    this.journal = new Journal(join(opts.workDir, 'journal.jsonl'));
    this.runningState = new RunningState(join(opts.workDir, 'running.json'));
    this.finished = new FinishedAttempts(join(opts.workDir, 'finished.json'));
    this.runner = new JobRunner({
      workDir: opts.workDir,
      logCapBytes: opts.logCapBytes,
      defaultGraceSeconds: opts.graceSeconds ?? 10,
      runAs: opts.runAs,
      isolation: opts.isolation,
      jobsDir: opts.jobsDir,
      nodeName: opts.nodeName,
      onEvent: (e) => this.onJobEvent(e),
      log: (m) => this.log('warn', m),
    });
    this.logs = new LogServer({
      outputDir: this.runner.outputRoot,
      isRunning: (jobId) => this.runner.isRunning(jobId),
      retentionHours: opts.outputRetentionHours,
      log: (m) => this.log('warn', m),
    });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.stopping = false;
    // Resend what a previous run left unacknowledged, under this stream.
    for (const entry of this.journal.load()) this.enqueueJobEvent(entry.event, entry.at, entry.id);
    this.reapOrphans();
    this.logs.startSweeping();
    try {
      this.inventory = await this.collector.inventory();
    } catch (e) {
      this.s.collectErrors++;
      this.log('error', `inventory failed: ${(e as Error).message}`);
    }
    const every = this.opts.sampleIntervalMs ?? 1000;
    this.sampleTimer = setInterval(() => void this.collect(), every);
    this.connect();
  }

  /** Closes the connection and timers; stops jobs unless `stopJobsOnStop` is false. */
  async stop(): Promise<void> {
    if (!this.started) return;
    if (this.opts.stopJobsOnStop !== false) {
      await this.runner.stopAll('agent shutting down', this.opts.graceSeconds ?? 10);
      // Give the exits a moment to be acknowledged; the journal keeps them otherwise.
      await this.waitFor(() => this.outbox.pending().every((m) => m.type !== 'job_event'), 2000).catch(() => undefined);
    }
    this.halt();
    await this.collector.close?.();
  }

  /**
   * Abrupt end, as if the process were killed: no goodbye, jobs left running, journal kept.
   * For tests of crash recovery.
   */
  crash(): void {
    this.crashed = true;
    this.halt();
  }

  /** Injects a fault into the simulated collector (demo and tests). */
  injectFault(fault: SimulatedFault): void {
    if (!(this.collector instanceof SimulatedCollector)) throw new Error('fault injection needs the simulated collector');
    this.collector.inject(fault);
  }

  /** Drops the connection now (tests: network cut); it reconnects with backoff. */
  dropConnection(): void {
    this.ws?.terminate();
  }

  get connected(): boolean {
    return this.ready;
  }

  stats(): AgentStats {
    return {
      connected: this.ready,
      connects: this.s.connects,
      pending: this.outbox.size,
      lastSeq: this.outbox.lastSeq,
      ackedSeq: this.s.ackedSeq,
      droppedSamples: this.outbox.droppedSamples,
      droppedFaults: this.outbox.droppedFaults,
      collectErrors: this.s.collectErrors,
      serverErrors: this.s.serverErrors,
    };
  }

  /** Resolves when `pred` holds (re-checked on every protocol event and every 50 ms). */
  waitFor(pred: () => boolean, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (pred()) return resolve();
      const check = () => {
        if (pred()) done(resolve);
      };
      const poll = setInterval(check, 50);
      const to = setTimeout(() => done(() => reject(new Error('timeout waiting for agent condition'))), timeoutMs);
      const done = (f: () => void) => {
        clearInterval(poll);
        clearTimeout(to);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
    });
  }

  /** Runs one collection now (also called by the timer). */
  async collect(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const gpus = await this.collector.sample({ busyGpus: this.runner.busyGpus() });
      const msg: UnsequencedMessage = { v: WIRE_VERSION, type: 'samples', at: Date.now(), gpus };
      if (this.outbox.droppedSamples > 0) msg.droppedSamples = this.outbox.droppedSamples;
      this.enqueue(msg);
      for (const f of await this.collector.faults()) {
        this.enqueue({ v: WIRE_VERSION, type: 'gpu_fault', at: Date.now(), index: f.index, kind: f.kind, ...(f.code !== undefined ? { code: f.code } : {}), message: f.message.slice(0, 2000) });
      }
    } catch (e) {
      this.s.collectErrors++;
      this.log('warn', `collect failed: ${(e as Error).message}`);
    } finally {
      this.sampling = false;
    }
  }

  // ---- internals ----

  private halt(): void {
    this.stopping = true;
    this.started = false;
    this.ready = false;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.sampleTimer);
    clearInterval(this.heartbeatTimer);
    this.logs.stop();
    const ws = this.ws;
    this.ws = undefined;
    ws?.removeAllListeners();
    ws?.on('error', () => undefined);
    ws?.terminate();
  }

  private connect(): void {
    if (this.stopping) return;
    const ws = new WebSocket(this.opts.gatewayUrl, {
      headers: { Authorization: `Bearer ${this.opts.nodeToken}`, 'X-Nuri-Node': this.opts.nodeName },
      handshakeTimeout: 10_000,
      maxPayload: 16 * 1024 * 1024,
    });
    this.ws = ws;
    ws.on('open', () => void this.sendHello(ws));
    ws.on('message', (data) => {
      this.lastHeard = Date.now();
      this.onMessage(ws, data.toString());
    });
    ws.on('ping', () => (this.lastHeard = Date.now()));
    ws.on('unexpected-response', (_req, res) => {
      this.log('warn', `gateway refused the connection: HTTP ${res.statusCode}`);
      ws.terminate();
    });
    ws.on('error', (err) => this.log('debug', `connection error: ${err.message}`));
    ws.on('close', () => {
      if (this.ws !== ws) return;
      this.ready = false;
      this.ws = undefined;
      clearInterval(this.heartbeatTimer);
      this.logs.closeAll(); // output requests belong to the connection that asked
      this.notify();
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.stopping) return;
    const delay = fullJitterDelay(this.attempt++, this.opts.backoffBaseMs ?? 500, this.opts.backoffCapMs ?? 30_000, this.opts.random);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private async sendHello(ws: WebSocket): Promise<void> {
    try {
      this.inventory = await this.collector.inventory();
    } catch (e) {
      this.s.collectErrors++;
      this.log('warn', `inventory failed, sending the last known: ${(e as Error).message}`);
    }
    let gpuModel: GpuModel | undefined;
    try {
      gpuModel = await this.collector.gpuModel();
    } catch {
      gpuModel = undefined;
    }
    if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(
      JSON.stringify({
        v: WIRE_VERSION,
        type: 'hello',
        node: this.opts.nodeName,
        stream: this.streamId,
        agentVersion: AGENT_VERSION,
        ...(gpuModel ? { gpuModel } : {}),
        gpus: this.inventory,
        running: this.runner.running(),
        runningAttempts: this.runner.attempts(),
        isolation: this.runner.isolation,
        ...(this.opts.address ? { address: this.opts.address } : {}),
        outputDir: this.runner.outputRoot,
      }),
    );
  }

  private onMessage(ws: WebSocket, text: string): void {
    if (this.ws !== ws) return;
    let parsed: ServerMessage;
    try {
      parsed = ServerMessage.parse(JSON.parse(text));
    } catch (e) {
      this.s.serverErrors++;
      this.log('warn', `unreadable message from gateway: ${(e as Error).message.slice(0, 200)}`);
      return;
    }
    switch (parsed.type) {
      case 'welcome': {
        this.acked(parsed.ackedSeq);
        this.ready = true;
        this.attempt = 0;
        this.s.connects++;
        clearInterval(this.heartbeatTimer);
        const hb = parsed.heartbeatSeconds > 0 ? parsed.heartbeatSeconds * 1000 : (this.opts.heartbeatIntervalMs ?? 5000);
        this.heartbeatTimer = setInterval(() => {
          // A gateway that vanished without closing (host down, partition) is noticed here:
          // nothing heard (acks, pings, anything) for a long while means reconnect.
          if (Date.now() - this.lastHeard > Math.max(3 * hb, this.opts.silenceTimeoutMs ?? 45_000)) {
            this.log('warn', 'gateway silent, reconnecting');
            ws.terminate();
            return;
          }
          this.sendRaw({ v: WIRE_VERSION, type: 'heartbeat', at: Date.now() });
        }, hb);
        for (const m of this.outbox.pending()) this.sendRaw(m);
        break;
      }
      case 'ack':
        if (parsed.stream === this.streamId) this.acked(parsed.seq);
        break;
      case 'start':
        this.startJob(parsed);
        break;
      case 'stop':
        this.stopJob(parsed);
        break;
      case 'logs_open':
        this.logs.open(parsed, {
          send: (m) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(m)),
          buffered: () => ws.bufferedAmount,
          open: () => this.ws === ws && ws.readyState === WebSocket.OPEN,
        });
        break;
      case 'logs_close':
        this.logs.close(parsed.requestId);
        break;
      case 'logs_pause':
      case 'logs_resume':
        this.logs.pause(parsed.requestId, parsed.type === 'logs_pause');
        break;
      case 'error':
        this.s.serverErrors++;
        this.log('warn', `gateway error ${parsed.code}: ${parsed.message}`);
        break;
    }
    this.notify();
  }

  /**
   * Stops the attempt the server means. A stop for an attempt this agent does not run (a
   * start that never arrived, an agent restart, a stale read) is answered with an `exited`
   * of cause `lost` for that attempt, so the server never waits for an exit that cannot come.
   */
  private stopJob(msg: StopJob): void {
    const same = (a: number | undefined) => msg.attempt === undefined || a === undefined || a === msg.attempt;
    const deferred = this.deferred.get(msg.jobId);
    if (deferred && same(deferred.attempt)) {
      this.deferred.delete(msg.jobId);
      this.reportLost(msg.jobId, deferred.attempt ?? msg.attempt, `stopped (${msg.reason}) before it started`);
      return;
    }
    if (this.runner.isRunning(msg.jobId) && same(this.runner.attempts()[msg.jobId])) {
      this.runner.stop(msg);
      return;
    }
    const pendingExit = this.journal.pendingExitAttempt(msg.jobId);
    if (msg.attempt === undefined || (pendingExit !== undefined && pendingExit >= msg.attempt)) {
      this.log('info', `stop for ${msg.jobId}: not running here${pendingExit !== undefined ? ' (its exit is on its way)' : ''}`);
      return;
    }
    this.reportLost(msg.jobId, msg.attempt, `stop (${msg.reason}) for attempt ${msg.attempt}, which this agent does not run`);
  }

  /** An explicit word that this agent runs no such attempt (the server ignores it for any other attempt). */
  private reportLost(jobId: string, attempt: number | undefined, message: string): void {
    this.log('info', `job ${jobId}${attempt !== undefined ? ` attempt ${attempt}` : ''}: reported lost: ${message}`);
    this.onJobEvent({ kind: 'exited', jobId, exitCode: null, signal: null, cause: 'lost', message, ...(attempt !== undefined ? { attempt } : {}) });
  }

  private startJob(msg: StartJob): void {
    const running = this.runner.isRunning(msg.jobId) ? (this.runner.attempts()[msg.jobId] ?? 0) : undefined;
    if (running !== undefined) {
      if (msg.attempt === undefined || running === 0 || msg.attempt === running) return; // a repeat of what runs
      if (msg.attempt < running) {
        this.reportLost(msg.jobId, msg.attempt, `start of attempt ${msg.attempt} while attempt ${running} runs`);
        return;
      }
      // A later attempt while an earlier one is being stopped: it waits for that exit.
      this.deferred.set(msg.jobId, msg);
      return;
    }
    const finished = this.finished.get(msg.jobId);
    if (msg.attempt !== undefined && finished !== undefined && msg.attempt <= finished && this.journal.pendingExitAttempt(msg.jobId) === undefined) {
      // That attempt already ran here and its exit was acknowledged: never run it twice.
      this.reportLost(msg.jobId, msg.attempt, `start of attempt ${msg.attempt}, which already ran on this node`);
      return;
    }
    // A start for a job whose exit the server has not acknowledged yet is a reconcile race
    // (the exit is on its way); running it again would run the job twice. A start of a
    // later attempt waits until that exit is acknowledged instead.
    const pendingExit = this.journal.pendingExitAttempt(msg.jobId);
    if (pendingExit !== undefined && (msg.attempt === undefined || msg.attempt <= pendingExit)) {
      this.log('info', `start for ${msg.jobId} ignored: its exit is not yet acknowledged`);
      return;
    }
    // GPUs still held by a job being stopped (a requeue after a GPU fault, a preemption)
    // are not handed to the next job until that process group is gone.
    const busy = this.runner.busyGpus();
    if (pendingExit !== undefined || msg.gpuIndices.some((g) => busy.has(g))) {
      this.deferred.set(msg.jobId, msg);
      this.log('info', `start for ${msg.jobId} deferred until its GPUs or its previous attempt are released`);
      return;
    }
    this.deferred.delete(msg.jobId);
    this.runner.start(msg);
  }

  /** Starts deferred ones whose obstacles are gone (after any exit or ack). */
  private runDeferred(): void {
    for (const msg of [...this.deferred.values()]) {
      this.deferred.delete(msg.jobId);
      this.startJob(msg);
    }
  }

  private acked(seq: number): void {
    if (seq > this.s.ackedSeq) this.s.ackedSeq = seq;
    const ids: string[] = [];
    for (const m of this.outbox.ack(seq)) {
      const id = this.journalOfSeq.get(m.seq);
      if (id !== undefined) {
        ids.push(id);
        this.journalOfSeq.delete(m.seq);
      }
    }
    if (ids.length) {
      try {
        this.journal.remove(ids);
      } catch (e) {
        this.log('error', `journal prune failed: ${(e as Error).message}`);
      }
      if (this.deferred.size) this.runDeferred();
    }
  }

  private onJobEvent(event: JobEvent): void {
    if (this.crashed) return; // a dead agent writes nothing
    const at = Date.now();
    let id: string | undefined;
    try {
      id = this.journal.append(event, at).id;
    } catch (e) {
      this.log('error', `journal append failed (event still sent): ${(e as Error).message}`);
    }
    try {
      const state = this.runningState.load();
      const held = state[event.jobId];
      if (event.kind === 'started') state[event.jobId] = { pgid: event.pid, ...(event.attempt !== undefined ? { attempt: event.attempt } : {}) };
      // An exit (or a `lost` answer) of another attempt leaves the running one's entry alone.
      else if (held && (event.attempt === undefined || held.attempt === undefined || held.attempt === event.attempt)) delete state[event.jobId];
      this.runningState.save(state);
    } catch (e) {
      this.log('warn', `running-state write failed: ${(e as Error).message}`);
    }
    if (event.kind === 'exited') this.logs.ended(event.jobId);
    if (event.kind === 'exited' && event.attempt !== undefined) {
      try {
        this.finished.record(event.jobId, event.attempt);
      } catch (e) {
        this.log('warn', `finished-attempts write failed: ${(e as Error).message}`);
      }
    }
    this.enqueueJobEvent(event, at, id);
    if (event.kind === 'exited' && this.deferred.size) setImmediate(() => this.runDeferred());
  }

  private enqueueJobEvent(event: JobEvent, at: number, journalId: string | undefined): void {
    const m = this.enqueue({ v: WIRE_VERSION, type: 'job_event', at, event });
    if (journalId !== undefined) this.journalOfSeq.set(m.seq, journalId);
  }

  private enqueue(msg: UnsequencedMessage): SequencedMessage {
    const m = this.outbox.push(msg);
    if (this.ready) this.sendRaw(m);
    this.notify();
    return m;
  }

  private sendRaw(msg: object): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify(msg));
  }

  /**
   * Jobs a previous agent run started and never saw end: their process groups are killed
   * (we cannot wait on another process's children) and reported as exited, cause 'lost'.
   */
  private reapOrphans(): void {
    const state = this.runningState.load();
    const ids = Object.keys(state);
    if (ids.length === 0) return;
    const cgroups = this.runner.isolation.cgroup !== 'none';
    for (const jobId of ids) {
      const { pgid, attempt } = state[jobId]!;
      // With cgroups the runner already killed what the job's cgroup held (daemons too); a
      // process group id is only trusted without them (after a long downtime it may be reused).
      const alive = cgroups ? this.runner.leftovers.has(jobId) : groupAlive(pgid);
      if (alive && !cgroups) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      this.onJobEvent({
        kind: 'exited',
        jobId,
        exitCode: null,
        signal: alive ? 'SIGKILL' : null,
        cause: 'lost',
        message: alive ? `agent restarted while the job ran; its ${cgroups ? 'cgroup' : 'process group'} was killed` : 'agent restarted; the job ended while it was down, exit status unknown',
        ...(attempt !== undefined ? { attempt } : {}),
      });
    }
    this.runningState.save({});
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', msg: string): void {
    this.opts.log?.(level, `[agent ${this.opts.nodeName}] ${msg}`);
  }
}
