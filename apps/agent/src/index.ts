export { Agent, AGENT_VERSION, type AgentOptions, type AgentStats } from './agent';
export { SimulatedCollector, simulatedUuid, type SimulatedFault, type SimulatedCollectorOptions } from './collector/simulated';
export type { Collector, GpuFault, CollectContext } from './collector/types';
export { JobRunner, DEFAULT_PATH, type RunAs, type JobRunnerOptions } from './runner';
export { Journal, RunningState } from './journal';
export { Outbox } from './outbox';
export { fullJitterDelay } from './backoff';
export { blockedAncestor } from './isolation';
