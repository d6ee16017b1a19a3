export * from './types';
export { schedule, borrowedJobs } from './policy';
export { Scheduler } from './scheduler';
export { DEFAULT_POLICY_CONFIG, configFor, decayUsage, accrueUsage } from './config';
export { allowedModels, passMemoryJobs, reservePassMemory } from './ranking';
export { StartCalibration, calibratedEstimate, MIN_ESTIMATE_SCALE, MAX_ESTIMATE_SCALE } from './estimates';
export { withoutInertTails } from './inert';
