import type { GpuInventory, GpuModel, GpuSample } from '@nuri/contracts';

export type FaultKind = 'xid' | 'remap_failure' | 'vanished' | 'hot' | 'throttle';

/** A GPU fault detected by a collector, sent as a sequenced `gpu_fault` message. */
export interface GpuFault {
  index: number;
  kind: FaultKind;
  code?: number;
  message: string;
}

export interface CollectContext {
  /** GPU indices that a running job holds right now. */
  busyGpus: ReadonlySet<number>;
}

/** Where telemetry comes from: a simulation or the real nvidia-smi. */
export interface Collector {
  readonly name: string;
  inventory(): Promise<GpuInventory[]>;
  /** The node's GPU model for hello, when all GPUs are of a known one. */
  gpuModel(): Promise<GpuModel | undefined>;
  sample(ctx: CollectContext): Promise<GpuSample[]>;
  /** Faults detected since the last call (drained). */
  faults(): Promise<GpuFault[]>;
  close?(): Promise<void> | void;
}

/** Maps a marketing name to the wire's GPU model. */
export function modelOf(name: string): GpuModel | undefined {
  const n = name.toUpperCase();
  if (n.includes('H800')) return 'h800';
  if (n.includes('H100')) return 'h100';
  return undefined;
}
