import { z } from 'zod';
import { GpuModel, INT32_MAX, INT32_MIN, text } from './common';

/**
 * Every string an agent sends may reach PostgreSQL (job reasons, health causes, inventory),
 * which refuses NUL: such a message is rejected and counted at the gateway, never a
 * database error that would have the agent resend it for ever.
 */
const str = text;

/**
 * Agent <-> gateway protocol. Every message is JSON with `v` (protocol version) and `type`.
 * Agent -> gateway messages that matter carry `seq`, monotonically increasing per agent
 * process lifetime stream (`stream` identifies it, so a restarted agent starts a new one);
 * the gateway acknowledges the highest contiguous seq applied and ignores duplicates.
 */
export const WIRE_VERSION = 1;
const v = z.literal(WIRE_VERSION);

export const GpuInventory = z.object({
  index: z.number().int().min(0).max(63),
  uuid: str().min(1).max(128),
  model: str().max(128),
  memoryTotalBytes: z.number().nonnegative(),
  /** PCI bus id as nvidia-smi prints it (`00000000:3B:00.0`); optional, added for XID mapping. */
  pciBusId: str().max(32).optional(),
});
export type GpuInventory = z.infer<typeof GpuInventory>;

export const GpuSample = z.object({
  index: z.number().int().min(0).max(63),
  uuid: str().max(128),
  utilization: z.number().min(0).max(1).optional(),
  memoryUsedBytes: z.number().nonnegative().optional(),
  memoryTotalBytes: z.number().nonnegative().optional(),
  temperatureCelsius: z.number().optional(),
  temperatureMarginCelsius: z.number().optional(),
  powerWatts: z.number().nonnegative().optional(),
  energyJoules: z.number().nonnegative().optional(),
  smClockHertz: z.number().nonnegative().optional(),
  eccCorrected: z.number().nonnegative().optional(),
  eccUncorrected: z.number().nonnegative().optional(),
  remappedRowsFailure: z.boolean().optional(),
  throttleReasons: z.array(str().max(64)).max(32).optional(),
});
export type GpuSample = z.infer<typeof GpuSample>;

export const JobEvent = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('started'),
    jobId: str(),
    pid: z.number().int(),
    /** The start's `attempt` (optional: older agents omit it). */
    attempt: z.number().int().positive().optional(),
  }),
  z.object({
    kind: z.literal('exited'),
    jobId: str(),
    exitCode: z.number().int().min(INT32_MIN).max(INT32_MAX).nullable(),
    signal: str().nullable(),
    /** Why the agent ended it, if it did. */
    cause: z.enum(['exit', 'timeout', 'cancelled', 'spawn_failed', 'lost']),
    message: str().max(2000).optional(),
    /**
     * The start's `attempt`, so an exit resent late (a restarted agent's journal) can never
     * end a later attempt of the same job. Optional: older agents omit it.
     */
    attempt: z.number().int().positive().optional(),
  }),
]);
export type JobEvent = z.infer<typeof JobEvent>;

/**
 * What isolation the agent enforces on its jobs (it says so in hello; the node view shows
 * it): `cgroup` the job cgroups' version ('none': process groups only); `pids`, `memory`,
 * `devices` whether that limit is applied to every job (memory only when a per-GPU limit is
 * configured); `uids` whether each job runs as its own uid from a range, all as one
 * configured user, or as the agent's own.
 */
export const NodeIsolation = z.object({
  cgroup: z.enum(['v1', 'v2', 'none']),
  pids: z.boolean(),
  memory: z.boolean(),
  devices: z.boolean(),
  uids: z.enum(['range', 'single', 'none']),
  detail: str().max(2000).optional(),
});
export type NodeIsolation = z.infer<typeof NodeIsolation>;

export const AgentHello = z.object({
  v,
  type: z.literal('hello'),
  node: str(),
  stream: str().max(64),
  agentVersion: str().max(64),
  gpuModel: GpuModel.optional(),
  gpus: z.array(GpuInventory).max(64),
  /** Jobs the agent is running right now, so the server can reconcile after a reconnect. */
  running: z.array(str()).max(1024),
  /** Attempt of each running job that has one (jobId -> attempt); optional, additive. */
  runningAttempts: z.record(str(), z.number().int().positive()).optional(),
  /** The isolation the agent enforces on its jobs; optional, additive (older agents omit it). */
  isolation: NodeIsolation.optional(),
});
export const AgentHeartbeat = z.object({ v, type: z.literal('heartbeat'), at: z.number() });
export const AgentSamples = z.object({
  v,
  type: z.literal('samples'),
  seq: z.number().int().nonnegative(),
  at: z.number(),
  gpus: z.array(GpuSample).max(64),
  /**
   * Cumulative count of samples messages this stream dropped unsent because its bounded
   * buffer was full while cut off (oldest dropped first). Optional; absent means 0.
   */
  droppedSamples: z.number().int().nonnegative().optional(),
});
export const AgentJobEvent = z.object({ v, type: z.literal('job_event'), seq: z.number().int().nonnegative(), at: z.number(), event: JobEvent });
export const AgentGpuFault = z.object({
  v,
  type: z.literal('gpu_fault'),
  seq: z.number().int().nonnegative(),
  at: z.number(),
  index: z.number().int().min(0).max(63),
  kind: z.enum(['xid', 'remap_failure', 'vanished', 'hot', 'throttle']),
  code: z.number().int().optional(),
  message: str().max(2000),
});
export const AgentMessage = z.discriminatedUnion('type', [AgentHello, AgentHeartbeat, AgentSamples, AgentJobEvent, AgentGpuFault]);
export type AgentMessage = z.infer<typeof AgentMessage>;

export const StartJob = z.object({
  v,
  type: z.literal('start'),
  jobId: z.string(),
  command: z.array(z.string()).min(1),
  env: z.record(z.string(), z.string()),
  workingDir: z.string().nullable(),
  gpuIndices: z.array(z.number().int().min(0)),
  timeLimitSeconds: z.number().int().positive(),
  /** Seconds between SIGTERM and SIGKILL. */
  graceSeconds: z.number().int().min(0),
  /** Which start of the job this is (jobs.attempts); echoed in its job events. Optional, additive. */
  attempt: z.number().int().positive().optional(),
});
export type StartJob = z.infer<typeof StartJob>;
export const StopJob = z.object({
  v,
  type: z.literal('stop'),
  jobId: z.string(),
  reason: z.enum(['cancelled', 'preempted', 'reconcile']),
  graceSeconds: z.number().int().min(0),
  /**
   * The attempt the server means (optional, additive). An agent that runs no such attempt
   * answers with an `exited` of cause `lost` for it, so the server never waits on an exit
   * that will not come.
   */
  attempt: z.number().int().positive().optional(),
});
export type StopJob = z.infer<typeof StopJob>;
export const Ack = z.object({ v, type: z.literal('ack'), stream: z.string(), seq: z.number().int() });
export const WireError = z.object({ v, type: z.literal('error'), code: z.string(), message: z.string() });
export const Welcome = z.object({ v, type: z.literal('welcome'), node: z.string(), heartbeatSeconds: z.number(), ackedSeq: z.number().int() });
export const ServerMessage = z.discriminatedUnion('type', [StartJob, StopJob, Ack, WireError, Welcome]);
export type ServerMessage = z.infer<typeof ServerMessage>;
