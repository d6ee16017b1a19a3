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
  /**
   * The address other nodes reach this one at (IP or host name; `--address`, default the
   * first non-internal IPv4): a multi-node job's MASTER_ADDR is its rank 0's. Optional, additive.
   */
  address: str().max(255).optional(),
  /** Where the agent keeps job output (`<outputDir>/<jobId>/output.log`), so a job's view can say so. Optional, additive. */
  outputDir: str().max(4096).optional(),
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
/**
 * A chunk of a job's output the gateway asked for (`logs_open`): not sequenced, not journaled
 * (output is read again from the file on a new request). `data` is base64 of raw bytes.
 */
export const AgentLogsData = z.object({ v, type: z.literal('logs_data'), requestId: str().max(64), data: z.string().max(96 * 1024) });
/** The end of a `logs_open` answer: all was sent (and, when following, the job ended), or `error` says why not. */
export const AgentLogsEnd = z.object({ v, type: z.literal('logs_end'), requestId: str().max(64), error: str().max(2000).optional() });
export const AgentMessage = z.discriminatedUnion('type', [AgentHello, AgentHeartbeat, AgentSamples, AgentJobEvent, AgentGpuFault, AgentLogsData, AgentLogsEnd]);
export type AgentMessage = z.infer<typeof AgentMessage>;

export const StartJob = z.object({
  v,
  type: z.literal('start'),
  jobId: z.string(),
  /** argv; with `script`, the script's arguments (may be empty). Without a script, empty fails the start. */
  command: z.array(z.string()),
  env: z.record(z.string(), z.string()),
  workingDir: z.string().nullable(),
  gpuIndices: z.array(z.number().int().min(0)),
  timeLimitSeconds: z.number().int().positive(),
  /** Seconds between SIGTERM and SIGKILL. */
  graceSeconds: z.number().int().min(0),
  /** Which start of the job this is (jobs.attempts); echoed in its job events. Optional, additive. */
  attempt: z.number().int().positive().optional(),
  /** A batch script: written into the job's directory (0500, the job's user) and run with `command` as its arguments. */
  script: z.string().optional(),
  /**
   * Where this rank stands in its job (every job has one; a single-node job is rank 0 of 1):
   * the agent sets NURI_NODE_RANK, NURI_NUM_NODES, NURI_NODELIST, NURI_GPUS_PER_NODE and the
   * torchrun variables (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, NNODES, NODE_RANK, LOCAL_WORLD_SIZE) from it.
   */
  launch: z
    .object({
      rank: z.number().int().min(0),
      /** Node names in rank order. */
      nodes: z.array(z.string()).min(1),
      masterAddr: z.string(),
      masterPort: z.number().int().min(1).max(65535),
      gpusPerNode: z.number().int().min(1),
    })
    .optional(),
  /** The job's array and index (NURI_ARRAY_JOB_ID, NURI_ARRAY_TASK_ID, SLURM_ARRAY_TASK_ID). */
  array: z.object({ id: z.string(), taskId: z.number().int().min(0) }).optional(),
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
/** Asks the agent for a job's output (one rank's: this node's): the last `tail` lines, or all; with `follow`, then what is written until the job ends. */
export const LogsOpen = z.object({
  v,
  type: z.literal('logs_open'),
  requestId: z.string(),
  jobId: z.string(),
  tail: z.number().int().min(0).optional(),
  follow: z.boolean(),
});
export type LogsOpen = z.infer<typeof LogsOpen>;
/** The reader went away: stop sending this request's output. */
export const LogsClose = z.object({ v, type: z.literal('logs_close'), requestId: z.string() });
export type LogsClose = z.infer<typeof LogsClose>;
/**
 * Flow control of one request (additive): the reader is slower than the node, so the agent
 * holds that request's output until `logs_resume`; the gateway then never buffers a whole log.
 */
export const LogsPause = z.object({ v, type: z.literal('logs_pause'), requestId: z.string() });
export const LogsResume = z.object({ v, type: z.literal('logs_resume'), requestId: z.string() });
export const ServerMessage = z.discriminatedUnion('type', [StartJob, StopJob, Ack, WireError, Welcome, LogsOpen, LogsClose, LogsPause, LogsResume]);
export type ServerMessage = z.infer<typeof ServerMessage>;
