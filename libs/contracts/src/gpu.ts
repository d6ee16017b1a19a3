/**
 * Facts about GPUs that several parts read: the models a node can carry, the XID codes that
 * take a GPU out of service, and NVML's clock-event (throttle) reason bits. Declared once here,
 * without zod, so the schemas, the metric labels, the fleet's health rule, the agent's parser,
 * the scheduling core, the CLI and the tests all derive from the same lists.
 */

/** GPU models a node can carry, in the scheduler's type order. Lower-case on the wire and in the database. */
export const GPU_MODELS = ['h100', 'h800'] as const;
export type GpuModelName = (typeof GPU_MODELS)[number];

/**
 * XID codes that mean the GPU (or its job) needs attention now: the fleet takes the GPU out of
 * scheduling, and the alert rule pages on the same list.
 */
export const CRITICAL_XIDS: readonly number[] = [48, 62, 64, 74, 79, 95, 119, 120];

const criticalXids: ReadonlySet<number> = new Set(CRITICAL_XIDS);
export const isCriticalXid = (code: number): boolean => criticalXids.has(code);

/**
 * NVML clock event (throttle) reasons as nvidia-smi names them, and their bits in
 * clocks_event_reasons.active (nvml.h nvmlClocksEventReason*; DCGM_FI_DEV_CLOCK_THROTTLE_REASONS
 * uses the same mask).
 */
export const NVML_THROTTLE_BITS = {
  gpu_idle: 0x1,
  applications_clocks_setting: 0x2,
  sw_power_cap: 0x4,
  hw_slowdown: 0x8,
  sync_boost: 0x10,
  sw_thermal_slowdown: 0x20,
  hw_thermal_slowdown: 0x40,
  hw_power_brake_slowdown: 0x80,
  display_clock_setting: 0x100,
} as const;
export type ThrottleReason = keyof typeof NVML_THROTTLE_BITS;
export const THROTTLE_REASONS = Object.keys(NVML_THROTTLE_BITS) as [ThrottleReason, ...ThrottleReason[]];
