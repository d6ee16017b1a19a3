export * from './metrics';
export * from './nuri-metrics';
export * from './registry';
export * from './idle';
export { FleetState, gpuTypeFromModel, normalizeThrottleReason, type GpuIdentity, type GpuOwner, type GpuSampleValues } from './fleet';
export { escapeLabelValue, formatValue } from './exposition';
export * from './parse';
