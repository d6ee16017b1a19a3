/**
 * The helpers call sites use. One `NuriMetrics` per process (the server creates it and
 * serves `metrics()` on GET /metrics); tests create their own. Metric names, help and
 * labels all come from METRICS in metrics.ts.
 *
 * Units at this API: durations in seconds, points in time in milliseconds since the
 * epoch (`atMs`), ratios 0..1, memory in bytes, as on the agent wire.
 */
import type { GpuSample } from '@nuri/contracts';
import { collectDefaultMetrics, Counter, Gauge, Histogram } from 'prom-client';
import { FleetState, gpuTypeFromModel, type GpuIdentity, type GpuSampleValues } from './fleet';
import { DEFAULT_IDLE_CONFIG, guaranteeShortfall, type IdleConfig } from './idle';
import {
  AgentMessageResultLabel,
  AgentMessageTypeLabel,
  GpuCapacityStateLabel,
  GpuTypeLabel,
  JobGpuTypeLabel,
  LIVE_JOB_STATES,
  METRICS,
  PreemptionReasonLabel,
  ServerEndReasonLabel,
  type JobStateLabel,
  type MetricDef,
  type NodeStateLabel,
} from './metrics';
import { createRegistry, type NuriRegistry } from './registry';

export interface NuriMetricsOptions {
  /** Defaults to a fresh registry. */
  registry?: NuriRegistry;
  /** Also export dcgm-exporter names and labels for the GPU families. */
  dcgmCompat?: boolean;
  /** Allocated-but-idle definition (defaults: under 5 % for 30 minutes). */
  idle?: Partial<IdleConfig>;
  /** A GPU not updated for this long stops being exported (no frozen values). Default 120 s. */
  gpuTtlSeconds?: number;
  /** Clock in ms since the epoch (tests inject one). */
  now?: () => number;
  /** Node.js process metrics (process_*, nodejs_*) from prom-client. Default false. */
  processMetrics?: boolean;
}

/** Every label of a GPU series, as setGpuSample takes them. tenant/job '' when idle. */
export interface GpuSeriesLabels {
  node: string;
  gpu: number;
  uuid: string;
  model: string;
  gpuType?: GpuTypeLabel;
  tenant: string;
  job: string;
}

export interface JobCountRow {
  state: JobStateLabel;
  tenant: string;
  gpuType: JobGpuTypeLabel;
  count: number;
}
export interface GpuCountRow {
  gpuType: GpuTypeLabel;
  state: GpuCapacityStateLabel;
  count: number;
}
export interface TenantRow {
  tenant: string;
  gpuType: GpuTypeLabel;
  guaranteed: number;
  limit: number;
  allocated: number;
  /** GPUs requested by the tenant's pending jobs of this type (jobs asking for `any` count where the caller decides). */
  pendingGpus: number;
  /** Age of the oldest pending job, seconds; omit when none is pending. */
  oldestPendingSeconds?: number;
}
/** What the scheduler leader knows after a pass; each present part replaces its gauges wholesale. */
export interface SchedulerSnapshotMetrics {
  jobs?: readonly JobCountRow[];
  gpus?: readonly GpuCountRow[];
  tenants?: readonly TenantRow[];
}
export interface GpuFault {
  index: number;
  kind: 'xid' | 'remap_failure' | 'vanished' | 'hot' | 'throttle';
  code?: number;
}

/** prom-client default metrics that break Prometheus naming rules; not exported. */
const PROCESS_METRICS_PROMTOOL_REJECTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

type Labels<D extends MetricDef> = D['labels'][number];

/**
 * Job transitions that happen (a submission is from `none`), exported at 0 for every tenant so
 * rate() panels show 0, not "No data", before the first one.
 */
const JOB_TRANSITIONS: ReadonlyArray<readonly [string, JobStateLabel]> = [
  ['none', 'pending'],
  ['pending', 'running'],
  ['pending', 'cancelled'],
  ['running', 'pending'],
  ['running', 'completed'],
  ['running', 'failed'],
  ['running', 'cancelled'],
  ['running', 'timeout'],
  ['running', 'node_failed'],
];

export class NuriMetrics {
  readonly registry: NuriRegistry;
  readonly fleet: FleetState;
  readonly idle: IdleConfig;
  private readonly now: () => number;

  private readonly jobs: Gauge<Labels<typeof METRICS.schedulerJobs>>;
  private readonly jobTransitions: Counter<Labels<typeof METRICS.schedulerJobTransitions>>;
  private readonly queueWait: Histogram<Labels<typeof METRICS.schedulerQueueWait>>;
  private readonly pendingGpus: Gauge<Labels<typeof METRICS.schedulerPendingGpus>>;
  private readonly oldestPending: Gauge<Labels<typeof METRICS.schedulerOldestPending>>;
  private readonly passDuration: Histogram;
  private readonly expressStarts: Counter;
  private readonly liveReloads: Counter;
  private readonly lastPass: Gauge;
  private readonly leader: Gauge;
  private readonly estimateScale: Gauge;
  private readonly gpus: Gauge<Labels<typeof METRICS.schedulerGpus>>;
  private readonly preemptions: Counter<Labels<typeof METRICS.schedulerPreemptions>>;
  private readonly endedByServer: Counter<Labels<typeof METRICS.schedulerJobsEndedByServer>>;
  private readonly quotaGuaranteed: Gauge<Labels<typeof METRICS.tenantQuotaGuaranteed>>;
  private readonly quotaLimit: Gauge<Labels<typeof METRICS.tenantQuotaLimit>>;
  private readonly allocated: Gauge<Labels<typeof METRICS.tenantAllocated>>;
  private readonly shortfall: Gauge<Labels<typeof METRICS.tenantGuaranteeShortfall>>;
  private readonly usage: Counter<Labels<typeof METRICS.tenantUsage>>;
  private readonly price: Gauge<Labels<typeof METRICS.tenantGpuPrice>>;
  private readonly connections: Gauge;
  private readonly messages: Counter<Labels<typeof METRICS.gatewayMessages>>;
  private readonly ingestLag: Histogram;
  private readonly http: Histogram<Labels<typeof METRICS.httpRequestDuration>>;
  /** Tenants of the leader's last snapshot: their series are exported at 0 when they have no value. */
  private tenantNames: readonly string[] = [];
  private jobRows: readonly JobCountRow[] = [];
  /** Tenants whose counters were already started at 0 (a counter is never reset). */
  private readonly countedTenants = new Set<string>();

  constructor(options: NuriMetricsOptions = {}) {
    this.registry = options.registry ?? createRegistry();
    this.now = options.now ?? Date.now;
    this.idle = { ...DEFAULT_IDLE_CONFIG, ...options.idle };
    this.fleet = new FleetState({
      now: this.now,
      gpuTtlSeconds: options.gpuTtlSeconds ?? 120,
      idle: this.idle,
      dcgmCompat: options.dcgmCompat ?? false,
    });
    const registers = [this.registry];
    const gauge = <D extends MetricDef>(d: D, collect?: (g: Gauge<Labels<D>>) => void) =>
      new Gauge<Labels<D>>({
        name: d.name,
        help: d.help,
        labelNames: d.labels as Labels<D>[],
        registers,
        ...(collect ? { collect() { collect(this); } } : {}),
      });
    const counter = <D extends MetricDef>(d: D) => new Counter<Labels<D>>({ name: d.name, help: d.help, labelNames: d.labels as Labels<D>[], registers });
    const histogram = <D extends MetricDef>(d: D) =>
      new Histogram<Labels<D>>({ name: d.name, help: d.help, labelNames: d.labels as Labels<D>[], buckets: [...(d.buckets ?? [])], registers });

    this.jobs = gauge(METRICS.schedulerJobs);
    this.jobTransitions = counter(METRICS.schedulerJobTransitions);
    this.queueWait = histogram(METRICS.schedulerQueueWait);
    this.pendingGpus = gauge(METRICS.schedulerPendingGpus);
    this.oldestPending = gauge(METRICS.schedulerOldestPending);
    this.passDuration = histogram(METRICS.schedulerPassDuration);
    this.expressStarts = counter(METRICS.schedulerExpressStarts);
    this.expressStarts.inc(0);
    this.liveReloads = counter(METRICS.schedulerLiveReloads);
    this.liveReloads.inc(0);
    this.lastPass = gauge(METRICS.schedulerLastPass);
    this.leader = gauge(METRICS.schedulerLeader);
    this.leader.set(0);
    this.estimateScale = gauge(METRICS.schedulerStartEstimateScale);
    this.gpus = gauge(METRICS.schedulerGpus);
    this.preemptions = counter(METRICS.schedulerPreemptions);
    this.endedByServer = counter(METRICS.schedulerJobsEndedByServer);
    this.quotaGuaranteed = gauge(METRICS.tenantQuotaGuaranteed);
    this.quotaLimit = gauge(METRICS.tenantQuotaLimit);
    this.allocated = gauge(METRICS.tenantAllocated);
    this.shortfall = gauge(METRICS.tenantGuaranteeShortfall);
    this.usage = counter(METRICS.tenantUsage);
    this.price = gauge(METRICS.tenantGpuPrice);
    gauge(METRICS.tenantIdleAllocated, (g) => {
      g.reset();
      for (const tenant of this.tenantNames) g.set({ tenant }, 0);
      for (const [tenant, count] of this.fleet.idleAllocatedByTenant()) g.set({ tenant }, count);
    });
    this.connections = gauge(METRICS.gatewayConnections);
    this.connections.set(0);
    this.messages = counter(METRICS.gatewayMessages);
    for (const type of AgentMessageTypeLabel.options) for (const result of AgentMessageResultLabel.options) this.messages.inc({ type, result }, 0);
    this.ingestLag = histogram(METRICS.gatewayIngestLag);
    this.http = histogram(METRICS.httpRequestDuration);

    if (options.processMetrics) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges that prom-client names `_total`, which `promtool check metrics` rejects.
      for (const name of PROCESS_METRICS_PROMTOOL_REJECTS) this.registry.removeSingleMetric(name);
    }
    this.registry.addTextBlock((w) => this.fleet.renderInto(this.now(), w));
  }

  /** The whole exposition (Prometheus text 0.0.4), for GET /metrics. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * The same as bytes, written into one buffer: what GET /metrics should send
   * (`res.type(m.contentType).send(await m.metricsBuffer())`).
   */
  metricsBuffer(): Promise<Buffer> {
    return this.registry.metricsBuffer();
  }

  /** Only the named families of the prom-client registry (`GET /metrics?name=…`); RangeError naming any it does not hold. */
  familiesBuffer(names: readonly string[]): Promise<Buffer> {
    return this.registry.familiesBuffer(names);
  }

  /** Content-Type header for GET /metrics. */
  get contentType(): string {
    return this.registry.contentType;
  }

  // =====================================================================================
  // Nodes and GPUs (gateway: agent messages; scheduler/fleet: registration and state)
  // =====================================================================================

  /** Node registered or changed (state, drain, type): from the database side. */
  setNodeInfo(node: string, info: { gpuType?: GpuTypeLabel; state?: NodeStateLabel; expectedGpus?: number }): void {
    this.fleet.setNodeInfo(node, info);
  }

  /** Agent connected (true) or its connection/heartbeat timed out (false). */
  setNodeUp(node: string, up: boolean): void {
    this.fleet.setNodeInfo(node, { up });
  }

  /** Any message or heartbeat from the node's agent. */
  markNodeSeen(node: string, atMs: number = this.now()): void {
    this.fleet.markNodeSeen(node, atMs);
  }

  /**
   * Agent hello: the GPUs the node has now. GPUs it no longer lists lose their series;
   * a different UUID in a slot starts that GPU's series over.
   */
  setNodeInventory(node: string, gpus: ReadonlyArray<GpuIdentity & { index: number }>, gpuType?: GpuTypeLabel): void {
    const type = gpuType ?? (gpus.length ? gpuTypeFromModel(gpus[0]!.model) : '');
    if (type) this.fleet.setNodeInfo(node, { gpuType: type });
    this.fleet.setInventory(node, gpus);
    this.fleet.markNodeSeen(node, this.now());
  }

  /** A `samples` message applied: `atMs` is the sample time on the agent. */
  applyGpuSamples(node: string, atMs: number, samples: readonly GpuSample[]): void {
    for (const s of samples) this.fleet.applySample(node, atMs, s);
  }

  /**
   * A whole `samples` message applied (after de-duplication): GPU values, node telemetry
   * time, the agent's dropped-samples count, and the ingest lag.
   */
  applySamplesMessage(node: string, stream: string, msg: { at: number; gpus: readonly GpuSample[]; droppedSamples?: number }): void {
    this.applyGpuSamples(node, msg.at, msg.gpus);
    if (msg.droppedSamples !== undefined) this.fleet.observeStreamDrops(node, stream, msg.droppedSamples);
    this.observeIngestLag(msg.at);
    this.markNodeSeen(node);
  }

  /**
   * One GPU's sample with its full current labels. When tenant/job differ from what the
   * GPU had, the old series are replaced (removed) by the new ones.
   */
  setGpuSample(labels: GpuSeriesLabels, sample: GpuSampleValues, atMs: number = this.now()): void {
    if (labels.gpuType) this.fleet.setNodeInfo(labels.node, { gpuType: labels.gpuType });
    this.fleet.setIdentity(labels.node, labels.gpu, { uuid: labels.uuid, model: labels.model });
    this.fleet.setOwner(labels.node, labels.gpu, labels.tenant || labels.job ? { tenant: labels.tenant, job: labels.job } : null);
    this.fleet.applySample(labels.node, atMs, { ...sample, index: labels.gpu, uuid: labels.uuid });
  }

  /** A job started on these GPUs: their series get tenant/job labels (old ones disappear). */
  assignJobGpus(job: string, tenant: string, placements: ReadonlyArray<{ node: string; gpuIndices: readonly number[] }>): void {
    for (const p of placements) for (const i of p.gpuIndices) this.fleet.setOwner(p.node, i, { tenant, job });
  }

  /** A job ended (any terminal state, or preempted/requeued): its GPU series go, the GPUs continue unlabelled. */
  removeJobSeries(job: string): void {
    this.fleet.releaseJob(job);
  }

  /** A `gpu_fault` message applied. XIDs are counted by code; `vanished` removes the GPU's series. */
  recordGpuFault(node: string, fault: GpuFault): void {
    switch (fault.kind) {
      case 'xid':
        if (fault.code !== undefined) this.fleet.recordXid(node, fault.index, fault.code);
        break;
      case 'remap_failure':
        this.fleet.setRemapFailure(node, fault.index, true);
        break;
      case 'vanished':
        this.fleet.removeGpu(node, fault.index);
        break;
      default:
        break; // hot and throttle show in the samples' temperature and throttle reasons
    }
  }

  recordXid(node: string, gpu: number, code: number): void {
    this.fleet.recordXid(node, gpu, code);
  }

  /** The server marked a GPU unhealthy (or healthy again). */
  setGpuHealthy(node: string, gpu: number, healthy: boolean): void {
    this.fleet.setHealthy(node, gpu, healthy);
  }

  removeGpuSeries(node: string, gpu: number): void {
    this.fleet.removeGpu(node, gpu);
  }

  /** Agent gone (disconnect timeout, node down): GPU series go, node series (up=0, state) stay. */
  removeNodeGpuSeries(node: string): void {
    this.fleet.removeNodeGpus(node);
  }

  /** Node deleted from the fleet: every series of it goes. */
  removeNodeSeries(node: string): void {
    this.fleet.removeNode(node);
  }

  /** Messages the agent dropped from its offline buffer (a delta; applySamplesMessage handles the wire's cumulative count). */
  addAgentBufferDrops(node: string, count: number): void {
    this.fleet.addBufferDrops(node, count);
  }

  // =====================================================================================
  // Scheduler
  // =====================================================================================

  /** Every job state change (from = null for a submission). */
  recordJobTransition(tenant: string, gpuType: JobGpuTypeLabel, from: JobStateLabel | null, to: JobStateLabel): void {
    this.jobTransitions.inc({ tenant, gpu_type: gpuType, from: from ?? 'none', to });
  }

  /** A job started: seconds from submission (or requeue) to start. */
  observeQueueWait(tenant: string, gpuType: JobGpuTypeLabel, seconds: number): void {
    this.queueWait.observe({ tenant, gpu_type: gpuType }, Math.max(0, seconds));
  }

  observePassDuration(seconds: number): void {
    this.passDuration.observe(seconds);
  }

  /** A pass committed (or found nothing to do) without error. */
  markPassSucceeded(atMs: number = this.now()): void {
    this.lastPass.set(atMs / 1000);
  }

  /** The scheduler read every live job again (LiveJobs full reload). */
  recordLiveReload(): void {
    this.liveReloads.inc();
  }

  /** Jobs an express start committed between full passes. */
  recordExpressStarts(n: number): void {
    if (n > 0) this.expressStarts.inc(n);
  }

  /** Times one pass: call the returned function when it ends; `ok` marks it successful. */
  startPassTimer(): (ok: boolean) => number {
    const start = process.hrtime.bigint();
    return (ok) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.observePassDuration(seconds);
      if (ok) this.markPassSucceeded();
      return seconds;
    };
  }

  /** Leader lock acquired (true) or lost (false). Losing it clears the snapshot gauges, so a standby exports no stale view. */
  setLeader(isLeader: boolean): void {
    this.leader.set(isLeader ? 1 : 0);
    if (!isLeader) {
      for (const g of [this.jobs, this.gpus, this.pendingGpus, this.oldestPending, this.quotaGuaranteed, this.quotaLimit, this.allocated, this.shortfall, this.estimateScale]) g.reset();
      this.jobRows = [];
    }
  }

  /** After each pass, by the leader: the factor applied to predicted waits (StartCalibration). */
  setStartEstimateScale(scale: number): void {
    this.estimateScale.set(scale);
  }

  /** Every live state, requested type and known tenant is exported, at 0 when no job is in it. */
  setJobCounts(rows: readonly JobCountRow[]): void {
    this.jobRows = rows;
    this.jobs.reset();
    for (const tenant of this.tenantNames)
      for (const state of LIVE_JOB_STATES) for (const gpuType of JobGpuTypeLabel.options) this.jobs.set({ state, tenant, gpu_type: gpuType }, 0);
    for (const r of rows) this.jobs.set({ state: r.state, tenant: r.tenant, gpu_type: r.gpuType }, r.count);
  }

  setGpuCounts(rows: readonly GpuCountRow[]): void {
    this.gpus.reset();
    const types = new Set(rows.map((r) => r.gpuType));
    for (const gpuType of types) for (const state of GpuCapacityStateLabel.options) this.gpus.set({ gpu_type: gpuType, state }, 0);
    for (const r of rows) this.gpus.set({ gpu_type: r.gpuType, state: r.state }, r.count);
  }

  /** Quotas, allocation, queue and guarantee shortfall per tenant and GPU type. */
  setTenants(rows: readonly TenantRow[]): void {
    for (const g of [this.quotaGuaranteed, this.quotaLimit, this.allocated, this.shortfall, this.pendingGpus, this.oldestPending]) g.reset();
    const before = this.tenantNames;
    this.tenantNames = [...new Set(rows.map((r) => r.tenant))];
    for (const tenant of this.tenantNames) this.startTenantCounters(tenant);
    // Job counts are refreshed less often than tenants: a tenant named since the last count
    // (the demo seeding while the first pass ran) gets its job series at 0 now, not 5 s later.
    if (this.tenantNames.some((t) => !before.includes(t))) this.setJobCounts(this.jobRows);
    for (const r of rows) {
      const l = { tenant: r.tenant, gpu_type: r.gpuType };
      this.quotaGuaranteed.set(l, r.guaranteed);
      this.quotaLimit.set(l, r.limit);
      this.allocated.set(l, r.allocated);
      this.pendingGpus.set(l, r.pendingGpus);
      this.shortfall.set(l, guaranteeShortfall(r.guaranteed, r.allocated, r.pendingGpus));
      // 0 when nothing is pending: a panel shows 0, an age alert stays quiet.
      this.oldestPending.set(l, r.oldestPendingSeconds ?? 0);
    }
  }

  /** The tenant's counters at 0 for every known label value, once (the first pass that names it). */
  private startTenantCounters(tenant: string): void {
    if (this.countedTenants.has(tenant)) return;
    this.countedTenants.add(tenant);
    for (const gpuType of GpuTypeLabel.options) {
      this.usage.inc({ tenant, gpu_type: gpuType }, 0);
      for (const reason of PreemptionReasonLabel.options) this.preemptions.inc({ tenant, gpu_type: gpuType, reason }, 0);
    }
    for (const gpuType of JobGpuTypeLabel.options) {
      for (const [from, to] of JOB_TRANSITIONS) this.jobTransitions.inc({ tenant, gpu_type: gpuType, from, to }, 0);
      for (const reason of ServerEndReasonLabel.options) this.endedByServer.inc({ tenant, gpu_type: gpuType, reason }, 0);
    }
  }

  /** After each pass, by the leader: replaces the jobs, GPU and tenant gauges. */
  setSchedulerSnapshot(s: SchedulerSnapshotMetrics): void {
    // Tenants first: they name the job series exported at 0.
    if (s.tenants) this.setTenants(s.tenants);
    if (s.jobs) this.setJobCounts(s.jobs);
    if (s.gpus) this.setGpuCounts(s.gpus);
  }

  /** GPU time used since the last call (allocated GPUs × elapsed seconds). */
  addUsage(tenant: string, gpuType: GpuTypeLabel, gpuSeconds: number): void {
    if (gpuSeconds > 0) this.usage.inc({ tenant, gpu_type: gpuType }, gpuSeconds);
  }

  /** The price per GPU-hour in effect for each tenant and type (replaces what was set: a tenant gone loses its series). */
  setGpuPrices(prices: ReadonlyArray<{ tenant: string; gpuType: GpuTypeLabel; usdPerGpuHour: number }>): void {
    this.price.reset();
    for (const p of prices) this.price.set({ tenant: p.tenant, gpu_type: p.gpuType }, p.usdPerGpuHour);
  }

  /** A job was told to stop to make room: labels are the preempted job's. */
  recordPreemption(tenant: string, gpuType: GpuTypeLabel, reason: PreemptionReasonLabel): void {
    this.preemptions.inc({ tenant, gpu_type: gpuType, reason });
  }

  recordJobEndedByServer(tenant: string, gpuType: JobGpuTypeLabel, reason: ServerEndReasonLabel): void {
    this.endedByServer.inc({ tenant, gpu_type: gpuType, reason });
  }

  // =====================================================================================
  // Gateway and API
  // =====================================================================================

  setAgentConnections(count: number): void {
    this.connections.set(count);
  }
  agentConnected(): void {
    this.connections.inc();
  }
  agentDisconnected(): void {
    this.connections.dec();
  }

  recordAgentMessage(type: AgentMessageTypeLabel, result: AgentMessageResultLabel): void {
    this.messages.inc({ type, result });
  }

  /** A sample applied: agent time `sampleAtMs` to now. */
  observeIngestLag(sampleAtMs: number, appliedAtMs: number = this.now()): void {
    this.ingestLag.observe(Math.max(0, (appliedAtMs - sampleAtMs) / 1000));
  }

  /** `route` must be the route template (`/jobs/:id`), never the raw path. */
  observeHttpRequest(method: string, route: string, status: number, seconds: number): void {
    this.http.observe({ method: method.toUpperCase(), route, status: String(status) }, seconds);
  }

  /** Starts timing a request; call the result with the status code when it ends. */
  startHttpTimer(method: string, route: string): (status: number) => void {
    const start = process.hrtime.bigint();
    return (status) => this.observeHttpRequest(method, route, status, Number(process.hrtime.bigint() - start) / 1e9);
  }
}

export function createMetrics(options: NuriMetricsOptions = {}): NuriMetrics {
  return new NuriMetrics(options);
}
