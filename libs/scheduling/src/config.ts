import { PolicyConfig, PolicyMode } from './types';

/** Defaults for the live scheduler and the simulator. */
export const DEFAULT_POLICY_CONFIG: PolicyConfig = {
  // Deep enough that the first few large jobs are protected, shallow enough to stay cheap.
  reservationDepth: 32,
  // Ten minutes of work before a job may be preempted (again): no thrashing.
  minRuntimeBeforePreemptSeconds: 600,
  preemptGraceSeconds: 120,
  preemption: true,
  mode: 'nuri',
  // A week, as Slurm's PriorityDecayHalfLife default.
  usageHalfLifeSeconds: 7 * 24 * 3600,
  starvationSeconds: 4 * 3600,
  // PRIORITY_RANK.normal: a low-priority job that has starved queues by age with normal work.
  starvingPriorityFloor: 1,
};

/**
 * The anti-starvation threshold in milliseconds (Infinity when turned off with 0). One place, so
 * ranking and the pass agree, and a caller that leaves it out gets DEFAULT_POLICY_CONFIG's.
 */
export function starvationMsOf(cfg: PolicyConfig): number {
  const s = cfg.starvationSeconds ?? DEFAULT_POLICY_CONFIG.starvationSeconds!;
  return s === 0 ? Infinity : s * 1000;
}

/** The priority a starving pending job ranks with at least (see PolicyConfig.starvingPriorityFloor). */
export function starvingPriorityFloorOf(cfg: PolicyConfig): number {
  return cfg.starvingPriorityFloor ?? DEFAULT_POLICY_CONFIG.starvingPriorityFloor!;
}

/** The configuration for one of the policy variants compared in the simulator. */
export function configFor(mode: PolicyMode, base: PolicyConfig = DEFAULT_POLICY_CONFIG): PolicyConfig {
  if (mode === 'nuri') return { ...base, mode };
  // Neither baseline knows about quotas, so neither reclaims.
  return { ...base, mode, preemption: false, reservationDepth: mode === 'fifo' ? 1 : mode === 'greedy' ? 0 : base.reservationDepth };
}

/**
 * Decay a usage figure over elapsed seconds with the given half-life (exponential decay,
 * as Slurm's fair share): callers keep `decayedUsage` current with this and pass it in. The
 * one decay of usage: the usage repository (stored usage), the live snapshot and the simulator
 * use it and accrueUsage, its integral over a run.
 */
export function decayUsage(usage: number, elapsedSeconds: number, halfLifeSeconds: number): number {
  if (!(halfLifeSeconds > 0) || elapsedSeconds <= 0) return usage;
  return usage * Math.pow(0.5, elapsedSeconds / halfLifeSeconds);
}

/**
 * Decayed usage after `elapsedSeconds` at a constant rate of `gpus` busy GPUs, starting from
 * `usage`: the integral of the rate with the same decay, so accrual is independent of step size.
 */
export function accrueUsage(usage: number, gpus: number, elapsedSeconds: number, halfLifeSeconds: number): number {
  if (elapsedSeconds <= 0) return usage;
  if (!(halfLifeSeconds > 0)) return usage + gpus * elapsedSeconds;
  const k = Math.LN2 / halfLifeSeconds;
  const f = Math.exp(-k * elapsedSeconds);
  return usage * f + (gpus * (1 - f)) / k;
}
