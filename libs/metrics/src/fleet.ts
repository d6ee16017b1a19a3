/**
 * Current state of every node and GPU this process knows, rendered to Prometheus text at
 * scrape time. Updates only touch a map entry (no label-set bookkeeping), and a series
 * exists exactly as long as its state does: when a GPU's job changes its label string is
 * rebuilt, so the old series is simply not rendered any more; GPUs not updated within the
 * TTL are not rendered (no frozen values); removing a node or job removes its series.
 */
import type { GpuSample } from '@nuri/contracts';
import { ExpositionWriter, familyHeader, labelPairs } from './exposition';
import { idleAllocatedGpusByTenant, nextIdleSince, type IdleConfig } from './idle';
import {
  GpuTypeLabel,
  METRICS,
  NodeStateLabel,
  THROTTLE_REASON_BITS,
  ThrottleReasonLabel,
  type MetricDef,
} from './metrics';

export interface GpuIdentity {
  uuid: string;
  /** Marketing name as the driver reports it, e.g. "NVIDIA H100 80GB HBM3". */
  model: string;
  memoryTotalBytes?: number;
}

export interface GpuOwner {
  tenant: string;
  job: string;
}

/** The values of one GPU sample (the wire's GpuSample without index/uuid is fine). */
export type GpuSampleValues = Omit<GpuSample, 'index' | 'uuid'> & { index?: number; uuid?: string };

interface GpuState {
  readonly node: NodeEntry;
  readonly index: number;
  uuid: string;
  model: string;
  tenant: string;
  job: string;
  labels: string;
  labelBytes: number;
  /** Only built with dcgmCompat. */
  dcgmLabels: string;
  dcgmLabelBytes: number;
  /** Server time (ms) of the last update, for the TTL. */
  touchedAt: number;
  /** Agent time (ms) of the newest sample applied, to ignore late resends. */
  sampleAt: number;
  utilization?: number;
  memoryUsedBytes?: number;
  memoryTotalBytes?: number;
  temperatureCelsius?: number;
  temperatureMarginCelsius?: number;
  powerWatts?: number;
  energyJoules?: number;
  smClockHertz?: number;
  eccCorrected?: number;
  eccUncorrected?: number;
  remappedRowsFailure?: boolean;
  throttle: readonly ThrottleReasonLabel[];
  healthy: boolean;
  /** XIDs seen while the GPU carried its current labels, by code (undefined: none). */
  xid?: Map<number, number>;
  lastXid: number;
  idleSince?: number;
}

interface NodeEntry {
  readonly name: string;
  gpuType: GpuTypeLabel | '';
  labels: string;
  labelBytes: number;
  state?: NodeStateLabel;
  up?: boolean;
  lastSeenMs?: number;
  telemetryMs?: number;
  expectedGpus?: number;
  bufferDropped: number;
  /** The agent stream whose cumulative drop count we last saw, and that count. */
  dropStream?: string;
  dropSeen: number;
  readonly gpus: Map<number, GpuState>;
}

export interface FleetOptions {
  now: () => number;
  gpuTtlSeconds: number;
  idle: IdleConfig;
  dcgmCompat: boolean;
}

/** h100/h800 from a model name such as "NVIDIA H100 80GB HBM3"; '' when unknown. */
export function gpuTypeFromModel(model: string): GpuTypeLabel | '' {
  const m = /\bh(100|800)\b/i.exec(model);
  return m ? (`h${m[1]}` as GpuTypeLabel) : '';
}

/** Maps what an agent calls a clock event reason to the closed label set. */
export function normalizeThrottleReason(raw: string): ThrottleReasonLabel {
  let s = raw.trim().toLowerCase();
  const dot = s.lastIndexOf('.');
  if (dot >= 0) s = s.slice(dot + 1);
  s = s.replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  if (s === 'display_clocks_setting') s = 'display_clock_setting';
  if (s === 'hw_power_brake') s = 'hw_power_brake_slowdown';
  const parsed = ThrottleReasonLabel.safeParse(s);
  return parsed.success ? parsed.data : 'other';
}

const round = (v: number, digits = 0): number => {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
};
const MIB = 1024 * 1024;
/** Per-GPU bytes besides labels: each line's `name{`, `} `, value (~12 chars) and newline. */
const lineOverhead = (names: string[]) => names.reduce((sum, n) => sum + n.length + 16, 0);
const GPU_LINE_OVERHEAD = lineOverhead(
  [METRICS.gpuUtilization, METRICS.gpuMemoryUsed, METRICS.gpuMemoryTotal, METRICS.gpuTemperature, METRICS.gpuTemperatureMargin, METRICS.gpuPower, METRICS.gpuEnergy, METRICS.gpuSmClock, METRICS.gpuEccErrors, METRICS.gpuEccErrors, METRICS.gpuRemappedRowsFailure, METRICS.gpuHealthy].map((m) => m.name),
) + 50;
const DCGM_LINE_OVERHEAD = lineOverhead((Object.values(METRICS) as MetricDef[]).filter((m) => m.block === 'dcgm').map((m) => m.name));
const NO_THROTTLE: readonly ThrottleReasonLabel[] = Object.freeze([]);

export class FleetState {
  private readonly nodes = new Map<string, NodeEntry>();
  private readonly jobs = new Map<string, Set<GpuState>>();

  constructor(private readonly opts: FleetOptions) {}

  // --- nodes --------------------------------------------------------------------------

  private node(name: string): NodeEntry {
    let n = this.nodes.get(name);
    if (!n) {
      n = { name, gpuType: '', labels: '', labelBytes: 0, bufferDropped: 0, dropSeen: 0, gpus: new Map() };
      this.setNodeLabels(n);
      this.nodes.set(name, n);
    }
    return n;
  }

  private setNodeLabels(n: NodeEntry): void {
    n.labels = labelPairs([['node', n.name], ['gpu_type', n.gpuType]]);
    n.labelBytes = Buffer.byteLength(n.labels);
  }

  private setNodeGpuType(n: NodeEntry, gpuType: GpuTypeLabel | ''): void {
    if (n.gpuType === gpuType) return;
    n.gpuType = gpuType;
    this.setNodeLabels(n);
    for (const g of n.gpus.values()) this.relabel(g);
  }

  setNodeInfo(name: string, info: { gpuType?: GpuTypeLabel; state?: NodeStateLabel; expectedGpus?: number; up?: boolean }): void {
    const n = this.node(name);
    if (info.gpuType !== undefined) this.setNodeGpuType(n, info.gpuType);
    if (info.state !== undefined) n.state = info.state;
    if (info.expectedGpus !== undefined) n.expectedGpus = info.expectedGpus;
    if (info.up !== undefined) n.up = info.up;
  }

  markNodeSeen(name: string, atMs: number): void {
    const n = this.node(name);
    n.lastSeenMs = Math.max(n.lastSeenMs ?? 0, atMs);
  }

  addBufferDrops(name: string, count: number): void {
    if (count > 0) this.node(name).bufferDropped += count;
  }

  /**
   * An agent stream's cumulative dropped-samples count (wire `droppedSamples`): adds what
   * is new since the last report of the same stream; a new stream (agent restart) counts
   * from zero.
   */
  observeStreamDrops(name: string, stream: string, cumulative: number): void {
    const n = this.node(name);
    if (n.dropStream !== stream) {
      n.dropStream = stream;
      n.dropSeen = 0;
    }
    if (cumulative > n.dropSeen) {
      n.bufferDropped += cumulative - n.dropSeen;
      n.dropSeen = cumulative;
    }
  }

  hasNode(name: string): boolean {
    return this.nodes.has(name);
  }

  // --- GPUs ---------------------------------------------------------------------------

  private relabel(g: GpuState): void {
    const gpuType = g.node.gpuType || gpuTypeFromModel(g.model);
    g.labels = labelPairs([
      ['node', g.node.name],
      ['gpu', String(g.index)],
      ['uuid', g.uuid],
      ['model', g.model],
      ['gpu_type', gpuType],
      ['tenant', g.tenant],
      ['job_id', g.job],
    ]);
    g.labelBytes = Buffer.byteLength(g.labels);
    if (!this.opts.dcgmCompat) return;
    g.dcgmLabels = labelPairs([
      ['gpu', String(g.index)],
      ['UUID', g.uuid],
      ['device', `nvidia${g.index}`],
      ['modelName', g.model],
      ['Hostname', g.node.name],
      ['tenant', g.tenant],
      ['hpc_job', g.job],
    ]);
    g.dcgmLabelBytes = Buffer.byteLength(g.dcgmLabels);
  }

  private gpu(nodeName: string, index: number, uuid?: string): GpuState {
    const n = this.node(nodeName);
    let g = n.gpus.get(index);
    if (g && uuid !== undefined && uuid !== '' && g.uuid !== '' && g.uuid !== uuid) {
      // A different device in the same slot: start over (its counters are not the old one's).
      this.removeGpu(nodeName, index);
      g = undefined;
    }
    if (!g) {
      g = {
        node: n,
        index,
        uuid: uuid ?? '',
        model: '',
        tenant: '',
        job: '',
        labels: '',
        labelBytes: 0,
        dcgmLabels: '',
        dcgmLabelBytes: 0,
        touchedAt: this.opts.now(),
        sampleAt: -Infinity,
        throttle: NO_THROTTLE,
        healthy: true,
        lastXid: 0,
      };
      this.relabel(g);
      n.gpus.set(index, g);
    } else if (uuid && !g.uuid) {
      g.uuid = uuid;
      this.relabel(g);
    }
    return g;
  }

  /** The GPUs a node reports (agent hello): GPUs not listed are dropped. */
  setInventory(nodeName: string, gpus: ReadonlyArray<GpuIdentity & { index: number }>): void {
    const n = this.node(nodeName);
    const keep = new Set(gpus.map((g) => g.index));
    for (const index of [...n.gpus.keys()]) if (!keep.has(index)) this.removeGpu(nodeName, index);
    for (const inv of gpus) this.setIdentity(nodeName, inv.index, inv);
  }

  setIdentity(nodeName: string, index: number, id: GpuIdentity): void {
    const g = this.gpu(nodeName, index, id.uuid);
    if (g.uuid !== id.uuid || g.model !== id.model) {
      g.uuid = id.uuid;
      g.model = id.model;
      this.relabel(g);
    }
    if (id.memoryTotalBytes !== undefined) g.memoryTotalBytes = id.memoryTotalBytes;
    g.touchedAt = this.opts.now();
  }

  /** Sets who holds the GPU (null: nobody). A change replaces every series of the GPU. */
  setOwner(nodeName: string, index: number, owner: GpuOwner | null): void {
    const g = this.gpu(nodeName, index);
    const tenant = owner?.tenant ?? '';
    const job = owner?.job ?? '';
    if (g.tenant === tenant && g.job === job) return;
    if (g.job) {
      const set = this.jobs.get(g.job);
      set?.delete(g);
      if (set && set.size === 0) this.jobs.delete(g.job);
    }
    g.tenant = tenant;
    g.job = job;
    g.xid = undefined;
    g.idleSince = undefined;
    if (job) {
      let set = this.jobs.get(job);
      if (!set) this.jobs.set(job, (set = new Set()));
      set.add(g);
    }
    this.relabel(g);
  }

  /** Clears the job from every GPU holding it (they become idle: tenant and job ''). */
  releaseJob(job: string): void {
    const set = this.jobs.get(job);
    if (!set) return;
    for (const g of [...set]) this.setOwner(g.node.name, g.index, null);
    this.jobs.delete(job);
  }

  applySample(nodeName: string, atMs: number, s: GpuSampleValues & { index: number }): void {
    const g = this.gpu(nodeName, s.index, s.uuid);
    const n = g.node;
    n.telemetryMs = Math.max(n.telemetryMs ?? 0, atMs);
    if (atMs < g.sampleAt) return; // a late resend of something older than what we show
    g.sampleAt = atMs;
    g.touchedAt = this.opts.now();
    if (s.utilization !== undefined) g.utilization = s.utilization;
    if (s.memoryUsedBytes !== undefined) g.memoryUsedBytes = s.memoryUsedBytes;
    if (s.memoryTotalBytes !== undefined) g.memoryTotalBytes = s.memoryTotalBytes;
    if (s.temperatureCelsius !== undefined) g.temperatureCelsius = s.temperatureCelsius;
    if (s.temperatureMarginCelsius !== undefined) g.temperatureMarginCelsius = s.temperatureMarginCelsius;
    if (s.powerWatts !== undefined) g.powerWatts = s.powerWatts;
    if (s.energyJoules !== undefined) g.energyJoules = s.energyJoules;
    if (s.smClockHertz !== undefined) g.smClockHertz = s.smClockHertz;
    if (s.eccCorrected !== undefined) g.eccCorrected = s.eccCorrected;
    if (s.eccUncorrected !== undefined) g.eccUncorrected = s.eccUncorrected;
    if (s.remappedRowsFailure !== undefined) g.remappedRowsFailure = s.remappedRowsFailure;
    if (s.throttleReasons !== undefined) {
      g.throttle = s.throttleReasons.length === 0 ? NO_THROTTLE : [...new Set(s.throttleReasons.map(normalizeThrottleReason))].sort();
    }
    g.idleSince = nextIdleSince(g.idleSince, { at: atMs, utilization: s.utilization }, this.opts.idle.thresholdRatio);
  }

  recordXid(nodeName: string, index: number, code: number): void {
    const g = this.gpu(nodeName, index);
    g.xid ??= new Map();
    g.xid.set(code, (g.xid.get(code) ?? 0) + 1);
    g.lastXid = code;
    g.touchedAt = this.opts.now();
  }

  setRemapFailure(nodeName: string, index: number, failed: boolean): void {
    this.gpu(nodeName, index).remappedRowsFailure = failed;
  }

  setHealthy(nodeName: string, index: number, healthy: boolean): void {
    this.gpu(nodeName, index).healthy = healthy;
  }

  removeGpu(nodeName: string, index: number): void {
    const n = this.nodes.get(nodeName);
    const g = n?.gpus.get(index);
    if (!n || !g) return;
    if (g.job) {
      const set = this.jobs.get(g.job);
      set?.delete(g);
      if (set && set.size === 0) this.jobs.delete(g.job);
    }
    n.gpus.delete(index);
  }

  /** Drops the node's GPU series (agent gone), keeping its node series. */
  removeNodeGpus(nodeName: string): void {
    const n = this.nodes.get(nodeName);
    if (!n) return;
    for (const index of [...n.gpus.keys()]) this.removeGpu(nodeName, index);
    n.telemetryMs = undefined;
  }

  /** Drops everything about the node. */
  removeNode(nodeName: string): void {
    this.removeNodeGpus(nodeName);
    this.nodes.delete(nodeName);
  }

  /** GPUs whose state is current (updated within the TTL). */
  private liveGpus(now: number): GpuState[] {
    const ttlMs = this.opts.gpuTtlSeconds * 1000;
    const out: GpuState[] = [];
    for (const n of this.nodes.values()) for (const g of n.gpus.values()) if (now - g.touchedAt <= ttlMs) out.push(g);
    return out;
  }

  idleAllocatedByTenant(now = this.opts.now()): Map<string, number> {
    return idleAllocatedGpusByTenant(this.liveGpus(now), now, this.opts.idle);
  }

  counts(): { nodes: number; gpus: number; jobs: number } {
    let gpus = 0;
    for (const n of this.nodes.values()) gpus += n.gpus.size;
    return { nodes: this.nodes.size, gpus, jobs: this.jobs.size };
  }

  // --- rendering ----------------------------------------------------------------------

  /** Prometheus text for every fleet (and, if enabled, DCGM) family. */
  render(now = this.opts.now()): string {
    const w = new ExpositionWriter();
    this.renderInto(now, w);
    return w.finish().toString('utf8');
  }

  /** Writes every fleet (and, if enabled, DCGM) family into `w`. */
  renderInto(now: number, w: ExpositionWriter): void {
    const nodes = [...this.nodes.values()];
    const gpus = this.liveGpus(now);

    // Size the buffer once, close to the real size (an over-estimate is held until the
    // response is sent): per GPU ~12 lines of name{labels} value.
    let labelBytes = 0;
    for (const g of gpus) labelBytes += g.labelBytes + (this.opts.dcgmCompat ? g.dcgmLabelBytes : 0);
    let nodeBytes = 0;
    for (const n of nodes) nodeBytes += n.labelBytes;
    const perGpu = GPU_LINE_OVERHEAD + (this.opts.dcgmCompat ? DCGM_LINE_OVERHEAD : 0);
    w.reserve(labelBytes * 12 + gpus.length * perGpu + nodeBytes * 9 + nodes.length * 9 * 60 + 32 * 1024);

    const header = (m: MetricDef) => w.text(familyHeader(m.name, m.help, m.type));

    const nodeFamily = (m: MetricDef, value: (n: NodeEntry) => number | undefined) => {
      let any = false;
      const prefix = `${m.name}{`;
      for (const n of nodes) {
        const v = value(n);
        if (v === undefined) continue;
        if (!any) header(m);
        any = true;
        w.sample(prefix, n.labels, n.labelBytes, v);
      }
    };
    nodeFamily(METRICS.nodeUp, (n) => (n.up === undefined ? undefined : n.up ? 1 : 0));
    nodeFamily(METRICS.nodeLastSeen, (n) => (n.lastSeenMs === undefined ? undefined : n.lastSeenMs / 1000));
    nodeFamily(METRICS.nodeTelemetryTimestamp, (n) => (n.telemetryMs === undefined ? undefined : n.telemetryMs / 1000));
    nodeFamily(METRICS.nodeGpusExpected, (n) => n.expectedGpus);
    nodeFamily(METRICS.agentBufferDropped, (n) => (n.bufferDropped > 0 ? n.bufferDropped : undefined));
    {
      const m = METRICS.nodeState;
      let any = false;
      const prefix = `${m.name}{`;
      for (const n of nodes) {
        if (!n.state) continue;
        if (!any) header(m);
        any = true;
        for (const s of NodeStateLabel.options) w.sample(prefix, `${n.labels},state="${s}"`, n.labelBytes + 9 + s.length, s === n.state ? 1 : 0);
      }
    }

    const gpuFamily = (m: MetricDef, value: (g: GpuState) => number | undefined, dcgm = false) => {
      let any = false;
      const prefix = `${m.name}{`;
      for (const g of gpus) {
        const v = value(g);
        if (v === undefined) continue;
        if (!any) header(m);
        any = true;
        if (dcgm) w.sample(prefix, g.dcgmLabels, g.dcgmLabelBytes, v);
        else w.sample(prefix, g.labels, g.labelBytes, v);
      }
    };
    /** A family with an extra label per sample (few samples: rare events or two values). */
    const gpuFamilyExtra = (m: MetricDef, each: (g: GpuState, emit: (extra: string, v: number) => void) => void) => {
      let any = false;
      const prefix = `${m.name}{`;
      for (const g of gpus) {
        each(g, (extra, v) => {
          if (!any) header(m);
          any = true;
          w.sample(prefix, `${g.labels},${extra}`, g.labelBytes + 1 + Buffer.byteLength(extra), v);
        });
      }
    };
    gpuFamily(METRICS.gpuUtilization, (g) => g.utilization);
    gpuFamily(METRICS.gpuMemoryUsed, (g) => g.memoryUsedBytes);
    gpuFamily(METRICS.gpuMemoryTotal, (g) => g.memoryTotalBytes);
    gpuFamily(METRICS.gpuTemperature, (g) => g.temperatureCelsius);
    gpuFamily(METRICS.gpuTemperatureMargin, (g) => g.temperatureMarginCelsius);
    gpuFamily(METRICS.gpuPower, (g) => g.powerWatts);
    gpuFamily(METRICS.gpuEnergy, (g) => g.energyJoules);
    gpuFamily(METRICS.gpuSmClock, (g) => g.smClockHertz);
    gpuFamilyExtra(METRICS.gpuEccErrors, (g, emit) => {
      if (g.eccCorrected !== undefined) emit('error_type="corrected"', g.eccCorrected);
      if (g.eccUncorrected !== undefined) emit('error_type="uncorrected"', g.eccUncorrected);
    });
    gpuFamilyExtra(METRICS.gpuXidErrors, (g, emit) => {
      if (g.xid) for (const [code, count] of g.xid) emit(`xid="${code}"`, count);
    });
    gpuFamily(METRICS.gpuRemappedRowsFailure, (g) => (g.remappedRowsFailure === undefined ? undefined : g.remappedRowsFailure ? 1 : 0));
    gpuFamilyExtra(METRICS.gpuThrottled, (g, emit) => {
      for (const r of g.throttle) emit(`reason="${r}"`, 1);
    });
    gpuFamily(METRICS.gpuHealthy, (g) => (g.healthy ? 1 : 0));

    if (!this.opts.dcgmCompat) return;
    gpuFamily(METRICS.dcgmGpuUtil, (g) => (g.utilization === undefined ? undefined : round(g.utilization * 100)), true);
    gpuFamily(METRICS.dcgmFbUsed, (g) => (g.memoryUsedBytes === undefined ? undefined : round(g.memoryUsedBytes / MIB)), true);
    gpuFamily(
      METRICS.dcgmFbFree,
      (g) => (g.memoryUsedBytes === undefined || g.memoryTotalBytes === undefined ? undefined : Math.max(0, round((g.memoryTotalBytes - g.memoryUsedBytes) / MIB))),
      true,
    );
    gpuFamily(METRICS.dcgmGpuTemp, (g) => g.temperatureCelsius, true);
    gpuFamily(METRICS.dcgmPowerUsage, (g) => (g.powerWatts === undefined ? undefined : round(g.powerWatts, 3)), true);
    gpuFamily(METRICS.dcgmTotalEnergy, (g) => (g.energyJoules === undefined ? undefined : round(g.energyJoules * 1000)), true);
    gpuFamily(METRICS.dcgmSmClock, (g) => (g.smClockHertz === undefined ? undefined : round(g.smClockHertz / 1e6)), true);
    gpuFamily(METRICS.dcgmXidErrors, (g) => g.lastXid, true);
    gpuFamily(METRICS.dcgmEccSbe, (g) => g.eccCorrected, true);
    gpuFamily(METRICS.dcgmEccDbe, (g) => g.eccUncorrected, true);
    gpuFamily(METRICS.dcgmRowRemapFailure, (g) => (g.remappedRowsFailure === undefined ? undefined : g.remappedRowsFailure ? 1 : 0), true);
    gpuFamily(METRICS.dcgmThrottleReasons, (g) => g.throttle.reduce((mask, r) => mask | THROTTLE_REASON_BITS[r], 0), true);
  }
}
