/**
 * Pure computations behind derived metrics: no clock, no state, no I/O. Times are
 * milliseconds since the epoch; durations are seconds.
 */

export interface IdleConfig {
  /** Utilization (0..1) below which an allocated GPU counts as idle. */
  thresholdRatio: number;
  /** How long utilization must stay below the threshold before the GPU counts. */
  forSeconds: number;
}

export const DEFAULT_IDLE_CONFIG: IdleConfig = { thresholdRatio: 0.05, forSeconds: 30 * 60 };

export interface UtilizationSample {
  /** Sample time, ms since the epoch. */
  at: number;
  /** 0..1; undefined when the device did not report it (keeps the previous state). */
  utilization: number | undefined;
}

/**
 * One step of the idle fold: the time since which the GPU has been continuously below
 * the threshold, or undefined when it is busy. A sample without utilization changes
 * nothing; a sample older than the current idle start is ignored (late resend).
 */
export function nextIdleSince(idleSince: number | undefined, sample: UtilizationSample, thresholdRatio: number): number | undefined {
  if (sample.utilization === undefined || Number.isNaN(sample.utilization)) return idleSince;
  if (sample.utilization >= thresholdRatio) return undefined;
  if (idleSince === undefined) return sample.at;
  return Math.min(idleSince, sample.at);
}

/** Folds samples (in time order) into the idle start, from nothing. */
export function idleSinceOf(samples: Iterable<UtilizationSample>, thresholdRatio: number): number | undefined {
  let since: number | undefined;
  for (const s of samples) since = nextIdleSince(since, s, thresholdRatio);
  return since;
}

/** True when a GPU idle since `idleSince` has been idle for at least `forSeconds` at `now`. */
export function isIdleLongEnough(idleSince: number | undefined, now: number, forSeconds: number): boolean {
  return idleSince !== undefined && now - idleSince >= forSeconds * 1000;
}

export interface AllocatedGpuIdleState {
  tenant: string;
  /** Empty string when the GPU holds no job. */
  job: string;
  idleSince?: number | undefined;
}

/**
 * Allocated-but-idle GPUs per tenant. Every tenant holding at least one allocated GPU
 * appears (with 0 when none is idle) so dashboards show a flat line rather than a gap.
 */
export function idleAllocatedGpusByTenant(gpus: Iterable<AllocatedGpuIdleState>, now: number, config: IdleConfig): Map<string, number> {
  const out = new Map<string, number>();
  for (const g of gpus) {
    if (g.job === '' || g.tenant === '') continue;
    const idle = isIdleLongEnough(g.idleSince, now, config.forSeconds) ? 1 : 0;
    out.set(g.tenant, (out.get(g.tenant) ?? 0) + idle);
  }
  return out;
}

/** The same, from raw sample windows (each GPU's samples in time order). */
export function idleAllocatedGpusFromSamples(
  gpus: Iterable<{ tenant: string; job: string; samples: readonly UtilizationSample[] }>,
  now: number,
  config: IdleConfig,
): Map<string, number> {
  const states: AllocatedGpuIdleState[] = [];
  for (const g of gpus) states.push({ tenant: g.tenant, job: g.job, idleSince: idleSinceOf(g.samples, config.thresholdRatio) });
  return idleAllocatedGpusByTenant(states, now, config);
}

/**
 * GPUs a tenant is owed under its guarantee, wants (pending demand) and does not hold:
 * min(guaranteed, allocated + pending) − allocated, never negative. Positive for long
 * means the tenant is starved (the scheduler should have reclaimed borrowed capacity).
 */
export function guaranteeShortfall(guaranteed: number, allocated: number, pendingGpus: number): number {
  return Math.max(0, Math.min(guaranteed, allocated + pendingGpus) - allocated);
}
