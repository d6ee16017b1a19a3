import { createHash } from 'node:crypto';
import type { GpuInventory, GpuModel, GpuSample } from '@nuri/contracts';
import type { CollectContext, Collector, GpuFault } from './types';

export type SimulatedFault =
  | { kind: 'xid'; index: number; code: number; message?: string }
  | { kind: 'hot'; index: number; temperatureCelsius?: number }
  | { kind: 'cool'; index: number }
  | { kind: 'vanished'; index: number }
  | { kind: 'remap_failure'; index: number };

export interface SimulatedCollectorOptions {
  nodeName: string;
  gpus?: number;
  model?: GpuModel;
  /** Clock for energy integration; injectable for tests. */
  now?: () => number;
}

const MODEL_NAME: Record<GpuModel, string> = { h100: 'NVIDIA H100 80GB HBM3', h800: 'NVIDIA H800' };
const MEMORY_BYTES = 81559 * 1024 * 1024;
const IDLE_W = 70;
const MAX_W = 700;
const IDLE_C = 32;
const SLOWDOWN_C = 87;

interface SimGpu {
  inv: GpuInventory;
  util: number;
  tempC: number;
  energyJ: number;
  hot?: number;
  vanished: boolean;
  remapFailure: boolean;
}

/** Deterministic UUID-shaped id from node name and GPU index. */
export function simulatedUuid(nodeName: string, index: number): string {
  const h = createHash('sha256').update(`${nodeName}/${index}`).digest('hex');
  return `GPU-${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * A node of N GPUs whose utilization follows whether a job runs on each GPU; power and
 * temperature follow utilization; energy accumulates. Faults are injected by tests and
 * the demo through `inject`.
 */
export class SimulatedCollector implements Collector {
  readonly name = 'simulated';
  private readonly gpus: SimGpu[];
  private readonly pending: GpuFault[] = [];
  private readonly now: () => number;
  private last: number | undefined;

  constructor(private readonly opts: SimulatedCollectorOptions) {
    this.now = opts.now ?? Date.now;
    const model = opts.model ?? 'h100';
    this.gpus = Array.from({ length: opts.gpus ?? 8 }, (_, index) => ({
      inv: {
        index,
        uuid: simulatedUuid(opts.nodeName, index),
        model: MODEL_NAME[model],
        memoryTotalBytes: MEMORY_BYTES,
        pciBusId: `00000000:${(0x18 + index * 0x10).toString(16).toUpperCase().padStart(2, '0')}:00.0`,
      },
      util: 0,
      tempC: IDLE_C,
      energyJ: 0,
      vanished: false,
      remapFailure: false,
    }));
  }

  async inventory(): Promise<GpuInventory[]> {
    return this.gpus.filter((g) => !g.vanished).map((g) => ({ ...g.inv }));
  }

  async gpuModel(): Promise<GpuModel | undefined> {
    return this.opts.model ?? 'h100';
  }

  inject(fault: SimulatedFault): void {
    const g = this.gpus[fault.index];
    if (!g) throw new Error(`no GPU ${fault.index}`);
    switch (fault.kind) {
      case 'xid':
        this.pending.push({ index: fault.index, kind: 'xid', code: fault.code, message: fault.message ?? `simulated Xid ${fault.code}` });
        break;
      case 'hot':
        g.hot = fault.temperatureCelsius ?? 95;
        this.pending.push({ index: fault.index, kind: 'hot', message: `temperature ${g.hot} C over slowdown ${SLOWDOWN_C} C` });
        break;
      case 'cool':
        g.hot = undefined;
        break;
      case 'vanished':
        if (!g.vanished) this.pending.push({ index: fault.index, kind: 'vanished', message: 'GPU no longer visible' });
        g.vanished = true;
        break;
      case 'remap_failure':
        g.remapFailure = true;
        this.pending.push({ index: fault.index, kind: 'remap_failure', message: 'row remapping failure' });
        break;
    }
  }

  async sample(ctx: CollectContext): Promise<GpuSample[]> {
    const t = this.now();
    const dt = this.last === undefined ? 0 : Math.max(0, (t - this.last) / 1000);
    this.last = t;
    const out: GpuSample[] = [];
    for (const g of this.gpus) {
      if (g.vanished) continue;
      const target = ctx.busyGpus.has(g.inv.index) ? 0.9 + 0.1 * wobble(g.inv.index, t) : 0;
      // First-order approach to the target so the curve looks like a real GPU.
      g.util = dt === 0 ? target : g.util + (target - g.util) * Math.min(1, dt / 2);
      const power = IDLE_W + (MAX_W - IDLE_W) * g.util;
      const tempTarget = g.hot ?? IDLE_C + 40 * g.util;
      g.tempC = dt === 0 ? tempTarget : g.tempC + (tempTarget - g.tempC) * Math.min(1, dt / 5);
      if (g.hot !== undefined) g.tempC = g.hot;
      g.energyJ += power * dt;
      const throttle = g.tempC >= SLOWDOWN_C ? ['hw_thermal_slowdown'] : g.util < 0.01 ? ['gpu_idle'] : [];
      out.push({
        index: g.inv.index,
        uuid: g.inv.uuid,
        utilization: clamp01(g.util),
        memoryUsedBytes: Math.round(g.util * 0.8 * MEMORY_BYTES),
        memoryTotalBytes: MEMORY_BYTES,
        temperatureCelsius: round1(g.tempC),
        temperatureMarginCelsius: round1(SLOWDOWN_C - g.tempC),
        powerWatts: round1(power),
        energyJoules: Math.round(g.energyJ),
        smClockHertz: (g.util > 0.01 ? 1980 : 345) * 1e6,
        eccCorrected: 0,
        eccUncorrected: 0,
        remappedRowsFailure: g.remapFailure,
        throttleReasons: throttle,
      });
    }
    return out;
  }

  async faults(): Promise<GpuFault[]> {
    return this.pending.splice(0);
  }
}

const clamp01 = (x: number) => Math.min(1, Math.max(0, x));
const round1 = (x: number) => Math.round(x * 10) / 10;
const wobble = (i: number, t: number) => (Math.sin(t / 1000 + i) + 1) / 2;
