import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type CreatedAt = ColumnType<Date, Date | string | undefined, never>;
/** JSON columns: written as a JSON string (both drivers), read back parsed. */
type Json<T> = ColumnType<T, string, string>;
/** A node's reported job isolation, as stored (see NodeIsolation in @nuri/contracts). */
export interface NodeIsolationJson {
  cgroup: 'v1' | 'v2' | 'none';
  pids: boolean;
  memory: boolean;
  devices: boolean;
  uids: 'range' | 'single' | 'none';
  detail?: string;
}

export interface TenantsTable {
  id: Generated<string>;
  name: string;
  display_name: string;
  weight: number;
  created_at: CreatedAt;
}

export interface QuotasTable {
  tenant_id: string;
  gpu_type: 'h100' | 'h800';
  guaranteed: number;
  limit: number;
}

export interface UsersTable {
  id: Generated<string>;
  name: string;
  tenant_id: string | null;
  role: 'researcher' | 'tenant-admin' | 'operator';
  created_at: CreatedAt;
  /** Set while the user is disabled: none of their tokens authenticates. */
  disabled_at: Timestamp | null;
}

export interface ApiTokensTable {
  id: Generated<string>;
  user_id: string;
  token_hash: string;
  description: string;
  created_at: CreatedAt;
  expires_at: Timestamp | null;
  revoked_at: Timestamp | null;
  /** The token whose caller created this one; null for tokens the server made (bootstrap, demo). */
  issued_by: string | null;
}

export interface NodesTable {
  id: Generated<string>;
  name: string;
  gpu_type: 'h100' | 'h800';
  rack: string;
  leaf_switch: string;
  state: 'up' | 'draining' | 'drained' | 'down';
  state_reason: string;
  agent_token_hash: string;
  last_heartbeat_at: Timestamp | null;
  connected: Generated<boolean>;
  /** The gateway instance the node's agent last said hello to. */
  gateway_id: string | null;
  created_at: CreatedAt;
  /** The isolation its agent reported in its last hello (NodeIsolation of the wire protocol); null: not reported. */
  isolation: ColumnType<NodeIsolationJson | null, string | null | undefined, string | null>;
  /** Where other nodes reach this one (its agent's hello); a multi-node job's MASTER_ADDR is its rank 0's. */
  address: string | null;
  /** Where its agent keeps job output (`<output_dir>/<jobId>/output.log`; its hello says so); null: not reported. */
  output_dir: ColumnType<string | null, string | null | undefined, string | null>;
  /** The transaction that last wrote a column the scheduler uses (migration 0015's trigger). */
  change_xid: ColumnType<string | null, never, never>;
}

export interface GpusTable {
  node_id: string;
  index: number;
  uuid: string | null;
  model: string | null;
  healthy: Generated<boolean>;
  health_reason: Generated<string>;
  /** The transaction that added it or last changed its health (migration 0015's trigger). */
  change_xid: ColumnType<string | null, never, never>;
}

export interface GpuHealthEventsTable {
  id: Generated<string>;
  node_id: string;
  gpu_index: number;
  at: Timestamp;
  healthy: boolean;
  cause: string;
}

export interface JobsTable {
  id: Generated<string>;
  tenant_id: string;
  user_id: string;
  name: string;
  state: 'pending' | 'running' | 'completed' | 'failed' | 'cancelled' | 'timeout' | 'node_failed';
  reason: string | null;
  gpus: number;
  gpu_type: 'h100' | 'h800' | 'any';
  gpu_model: 'h100' | 'h800' | null;
  priority: 'low' | 'normal' | 'high';
  time_limit_seconds: number;
  command: Json<string[]>;
  env: Json<Record<string, string>>;
  working_dir: string | null;
  requeue: boolean;
  submitted_at: Timestamp;
  /** When the job last entered the queue: its submission, or its requeue after a preemption or node failure. */
  queued_at: Timestamp;
  started_at: Timestamp | null;
  ended_at: Timestamp | null;
  exit_code: number | null;
  /** Set when the job was told to stop: 'cancel' or 'preempt'. Cleared when it is pending again. */
  stop_requested: 'cancel' | 'preempt' | null;
  stop_requested_at: Timestamp | null;
  attempts: Generated<number>;
  /** A batch script the agent writes into the job's directory and runs (with `command` as its arguments). */
  script: string | null;
  /** MASTER_PORT of the current run, chosen at its start (unique among running jobs with rank 0 on that node). */
  master_port: number | null;
  /** The array's id (its first task's job id), this task's index, the array's size and its cap on running tasks. */
  array_id: string | null;
  array_task_id: number | null;
  array_size: number | null;
  array_max_running: number | null;
  /** The id (xid8, as text) of the transaction that last wrote a scheduling column (migration 0010's trigger). */
  change_xid: ColumnType<string | null, never, never>;
}

/** What a pending job shows while it waits, written by the leader's passes (a row may outlive the wait: read it only for a pending job). */
export interface JobWaitsTable {
  job_id: string;
  /** The pending reason as data (PENDING_REASON_CODES). */
  reason_code: string;
  reason: string;
  /** waitReasonHash(reason), what a leader reading the queue back compares; null in rows written before migration 0018. */
  reason_hash: string | null;
  /** The plan's estimate by time limits; shown scaled by scheduler_estimates when `scaled`. */
  estimated_start_at: Timestamp | null;
  scaled: Generated<boolean>;
  queue_position: number | null;
}

/** One row: the leader's start estimate scale (StartCalibration), applied to waits when read. */
export interface SchedulerEstimatesTable {
  id: Generated<boolean>;
  start_estimate_scale: number;
  updated_at: Timestamp;
}

export interface JobDependenciesTable {
  job_id: string;
  depends_on: string;
  kind: 'afterok' | 'afternotok' | 'afterany';
}

/** What each rank (node) of a run reported when it exited; the job ends when all did (or one failed). */
export interface JobRankExitsTable {
  job_id: string;
  attempt: number;
  node_id: string;
  rank: number;
  exit_code: number | null;
  signal: string | null;
  cause: string;
  at: Timestamp;
}

export interface JobTransitionsTable {
  id: Generated<string>;
  job_id: string;
  at: Timestamp;
  from_state: JobsTable['state'] | null;
  to_state: JobsTable['state'];
  reason: string;
}

export interface AllocationsTable {
  id: Generated<string>;
  job_id: string;
  node_id: string;
  gpu_index: number;
  created_at: Timestamp;
  released_at: Timestamp | null;
}

export interface AgentStreamsTable {
  node_id: string;
  stream: string;
  last_seq: number;
  updated_at: Timestamp;
}

export interface GatewayInstancesTable {
  id: string;
  started_at: Timestamp;
  seen_at: Timestamp;
  /** Base URL api replicas reach this gateway process at (job output relay); null: not known yet. */
  internal_url: ColumnType<string | null, string | null | undefined, string | null>;
}

/** A single-use permission to read one rank's output: written by the api, consumed by the gateway. */
export interface LogGrantsTable {
  /** sha256 of the random token the api hands the gateway (the token itself is never stored). */
  token_hash: string;
  job_id: string;
  node_id: string;
  rank: number;
  tail: number | null;
  follow: boolean;
  expires_at: Timestamp;
}

export interface TenantUsageTable {
  tenant_id: string;
  gpu_type: 'h100' | 'h800';
  /** GPU-seconds, decayed to `as_of` with the configured half-life. */
  decayed_gpu_seconds: number;
  total_gpu_seconds: number;
  as_of: Timestamp;
}

/** One job attempt's use of GPUs (migration 0011): opened at its start, closed at its end, in those transactions. */
export interface UsageLedgerTable {
  job_id: string;
  attempt: number;
  tenant_id: string;
  user_id: string;
  gpu_type: 'h100' | 'h800';
  gpus: number;
  started_at: Timestamp;
  /** Null while the attempt runs (it accrues up to now). */
  ended_at: Timestamp | null;
  end_state: JobsTable['state'] | null;
  /** GPU-seconds covered by utilization samples, of them the utilization-weighted ones, and those under the idle ratio. */
  sampled_gpu_seconds: Generated<number>;
  busy_gpu_seconds: Generated<number>;
  idle_gpu_seconds: Generated<number>;
  /** Since when every GPU of the attempt (on the node last reported) has been under the idle ratio; null: busy. */
  idle_since: Timestamp | null;
  telemetry_at: Timestamp | null;
  /** When the tenant's idle policy told the attempt it was idle (once; migration 0013). */
  idle_notified_at: Timestamp | null;
}

/** A tenant's idle policy (migration 0013): no row, or nulls, is off. */
export interface IdlePoliciesTable {
  tenant_id: string;
  notify_after_seconds: number | null;
  cancel_after_seconds: number | null;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

/** usage_ledger rolled up by UTC day (closed attempts split at midnight; idle on the day stored). */
export interface UsageDailyTable {
  tenant_id: string;
  user_id: string;
  gpu_type: 'h100' | 'h800';
  day: ColumnType<string, string, string>;
  gpu_seconds: number;
  idle_gpu_seconds: number;
}

/** usage_daily summed over users (migration 0013): what reads without a user key or filter use. */
export interface UsageTenantDailyTable {
  tenant_id: string;
  gpu_type: 'h100' | 'h800';
  day: ColumnType<string, string, string>;
  gpu_seconds: number;
  idle_gpu_seconds: number;
}

/** A price per GPU-hour from a UTC date on, for a GPU type, and a tenant (contract) or all (null). */
export interface GpuPricesTable {
  id: Generated<string>;
  gpu_type: 'h100' | 'h800';
  tenant_id: string | null;
  effective_from: ColumnType<string, string, string>;
  usd_per_gpu_hour: ColumnType<string, string | number, string | number>;
  created_at: CreatedAt;
}

export interface Database {
  tenants: TenantsTable;
  quotas: QuotasTable;
  users: UsersTable;
  api_tokens: ApiTokensTable;
  nodes: NodesTable;
  gpus: GpusTable;
  gpu_health_events: GpuHealthEventsTable;
  jobs: JobsTable;
  job_waits: JobWaitsTable;
  scheduler_estimates: SchedulerEstimatesTable;
  job_transitions: JobTransitionsTable;
  job_dependencies: JobDependenciesTable;
  job_rank_exits: JobRankExitsTable;
  allocations: AllocationsTable;
  agent_streams: AgentStreamsTable;
  gateway_instances: GatewayInstancesTable;
  log_grants: LogGrantsTable;
  tenant_usage: TenantUsageTable;
  usage_ledger: UsageLedgerTable;
  usage_daily: UsageDailyTable;
  usage_tenant_daily: UsageTenantDailyTable;
  idle_policies: IdlePoliciesTable;
  gpu_prices: GpuPricesTable;
}

export type JobRow = Selectable<JobsTable>;
export type NewJob = Insertable<JobsTable>;
export type NodeRow = Selectable<NodesTable>;
export type TenantRow = Selectable<TenantsTable>;
export type UserRow = Selectable<UsersTable>;
