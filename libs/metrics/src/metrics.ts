/**
 * Every metric Nuri exports, declared in one place (in the style of Kueue's
 * pkg/metrics/metrics.go): name, help, type, label names and buckets. Call sites never
 * spell a metric name; they call the helpers on `NuriMetrics` (nuri-metrics.ts), and the
 * Grafana dashboards and the tests import the names from here, so renaming a metric
 * breaks the typecheck and the tests instead of silently breaking a panel.
 *
 * Naming follows Prometheus conventions: `nuri_` prefix, base units (seconds, bytes,
 * celsius, watts, joules, hertz, ratio), `_total` for counters, snake_case labels.
 * The DCGM-compatible families at the end deliberately copy dcgm-exporter's names,
 * units and labels instead (only rendered when `dcgmCompat` is on).
 */
import { CRITICAL_XIDS, GPU_MODELS, NVML_THROTTLE_BITS, THROTTLE_REASONS } from '@nuri/contracts/gpu';
import { z } from 'zod';

// ---------------------------------------------------------------------------------------
// Label values: closed sets are zod enums (validated at the boundary, typed at call sites).
// ---------------------------------------------------------------------------------------

export const GpuTypeLabel = z.enum(GPU_MODELS);
export type GpuTypeLabel = z.infer<typeof GpuTypeLabel>;
/** Job metrics use the GPU type a job asked for, which may be `any`. */
export const JobGpuTypeLabel = z.enum([...GPU_MODELS, 'any']);
export type JobGpuTypeLabel = z.infer<typeof JobGpuTypeLabel>;
export const JobStateLabel = z.enum(['pending', 'running', 'completed', 'failed', 'cancelled', 'timeout', 'node_failed']);
export type JobStateLabel = z.infer<typeof JobStateLabel>;
/** States a job sits in (the jobs gauge); the others are transitions' end points only. */
export const LIVE_JOB_STATES: readonly JobStateLabel[] = ['pending', 'running'];
export const NodeStateLabel = z.enum(['up', 'draining', 'drained', 'down']);
export type NodeStateLabel = z.infer<typeof NodeStateLabel>;
/** GPU states for the capacity gauge: allocated, free (schedulable), unhealthy, unavailable (node drained/down). */
export const GpuCapacityStateLabel = z.enum(['allocated', 'free', 'unhealthy', 'unavailable']);
export type GpuCapacityStateLabel = z.infer<typeof GpuCapacityStateLabel>;
export const PreemptionReasonLabel = z.enum(['guarantee_reclaim', 'priority', 'node_drain', 'operator']);
export type PreemptionReasonLabel = z.infer<typeof PreemptionReasonLabel>;
/** Why the server ended a running job without the agent's exit: its node went down, or its talking agent said nothing of it past its end. */
export const ServerEndReasonLabel = z.enum(['node_down', 'agent_silent_past_end']);
export type ServerEndReasonLabel = z.infer<typeof ServerEndReasonLabel>;
export const AgentMessageTypeLabel = z.enum(['hello', 'heartbeat', 'samples', 'job_event', 'gpu_fault', 'invalid']);
export type AgentMessageTypeLabel = z.infer<typeof AgentMessageTypeLabel>;
export const AgentMessageResultLabel = z.enum(['applied', 'duplicate', 'rejected']);
export type AgentMessageResultLabel = z.infer<typeof AgentMessageResultLabel>;
export const EccErrorTypeLabel = z.enum(['corrected', 'uncorrected']);
export type EccErrorTypeLabel = z.infer<typeof EccErrorTypeLabel>;
/**
 * NVML clock event (throttle) reasons, as nvidia-smi names them; anything else an agent
 * sends is exported as `other` so a buggy agent cannot blow up cardinality.
 */
export const ThrottleReasonLabel = z.enum([...THROTTLE_REASONS, 'other']);
export type ThrottleReasonLabel = z.infer<typeof ThrottleReasonLabel>;
/** NVML bit of each reason (see @nuri/contracts/gpu), for DCGM_FI_DEV_CLOCK_THROTTLE_REASONS. */
export const THROTTLE_REASON_BITS: Readonly<Record<ThrottleReasonLabel, number>> = { ...NVML_THROTTLE_BITS, other: 0 };
/** XID codes that mean the GPU (or its job) needs attention now; the alert rules use the same list. */
export { CRITICAL_XIDS };

// ---------------------------------------------------------------------------------------
// The catalog.
// ---------------------------------------------------------------------------------------

export type MetricType = 'gauge' | 'counter' | 'histogram';
/**
 * Where a family is rendered: `registry` = a prom-client metric in the registry;
 * `fleet` = hand-rendered at scrape time from the node/GPU state map; `dcgm` = the same,
 * only with `dcgmCompat`.
 */
export type MetricBlock = 'registry' | 'fleet' | 'dcgm';

export interface MetricDef {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly labels: readonly string[];
  readonly block: MetricBlock;
  readonly buckets?: readonly number[];
}

/**
 * Labels of every per-GPU series, in this order. tenant and job_id are '' when the GPU is idle.
 * `job_id`, not `job`: Prometheus sets `job` to the scrape job on every target.
 */
export const GPU_LABELS = ['node', 'gpu', 'uuid', 'model', 'gpu_type', 'tenant', 'job_id'] as const;
/**
 * dcgm-exporter's labels (camel case is theirs; `promtool check metrics` flags `modelName`),
 * plus the holder: `hpc_job` is the label dcgm-exporter gives the job id, and `tenant` ours.
 */
export const DCGM_LABELS = ['gpu', 'UUID', 'device', 'modelName', 'Hostname', 'tenant', 'hpc_job'] as const;

const def = <const T extends MetricDef>(d: T): T => d;

const WAIT_BUCKETS = [10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 172800, 345600, 604800];
const PASS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const METRICS = {
  // --- GPU (fleet block: one series per GPU, labels GPU_LABELS) -------------------------
  gpuUtilization: def({ name: 'nuri_gpu_utilization_ratio', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: 'GPU utilization (fraction of time a kernel was running), 0 to 1.' }),
  gpuMemoryUsed: def({ name: 'nuri_gpu_memory_used_bytes', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: 'GPU framebuffer memory in use, in bytes.' }),
  gpuMemoryTotal: def({ name: 'nuri_gpu_memory_total_bytes', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: 'GPU framebuffer memory in total, in bytes.' }),
  gpuTemperature: def({ name: 'nuri_gpu_temperature_celsius', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: 'GPU core temperature in degrees Celsius.' }),
  gpuTemperatureMargin: def({ name: 'nuri_gpu_temperature_margin_celsius', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: 'Degrees Celsius left before the GPU slows down for temperature (nvidia-smi temperature.gpu.tlimit).' }),
  gpuPower: def({ name: 'nuri_gpu_power_watts', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: 'GPU power draw in watts.' }),
  gpuEnergy: def({ name: 'nuri_gpu_energy_joules_total', type: 'counter', block: 'fleet', labels: GPU_LABELS, help: 'Energy the GPU consumed since the driver loaded, in joules (the device cumulative counter).' }),
  gpuSmClock: def({ name: 'nuri_gpu_sm_clock_hertz', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: 'GPU SM clock in hertz.' }),
  gpuEccErrors: def({ name: 'nuri_gpu_ecc_errors_total', type: 'counter', block: 'fleet', labels: [...GPU_LABELS, 'error_type'], help: 'ECC errors since the driver loaded (volatile totals), by error_type corrected or uncorrected.' }),
  gpuXidErrors: def({ name: 'nuri_gpu_xid_errors_total', type: 'counter', block: 'fleet', labels: [...GPU_LABELS, 'xid'], help: 'XID errors reported for the GPU while it carried these labels, by XID code.' }),
  gpuRemappedRowsFailure: def({ name: 'nuri_gpu_remapped_rows_failure', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: '1 when row remapping failed on the GPU (it needs a reset or replacement), else 0.' }),
  gpuThrottled: def({ name: 'nuri_gpu_throttled', type: 'gauge', block: 'fleet', labels: [...GPU_LABELS, 'reason'], help: '1 for each clock event (throttle) reason active on the GPU; reasons not active have no series.' }),
  gpuHealthy: def({ name: 'nuri_gpu_healthy', type: 'gauge', block: 'fleet', labels: GPU_LABELS, help: '1 when the GPU is healthy and schedulable, 0 when marked unhealthy. One series per GPU present on a reporting node.' }),

  // --- Node (fleet block) -------------------------------------------------------------
  nodeUp: def({ name: 'nuri_node_up', type: 'gauge', block: 'fleet', labels: ['node', 'gpu_type'], help: '1 when the node agent is connected and heartbeating, else 0.' }),
  nodeLastSeen: def({ name: 'nuri_node_last_seen_timestamp_seconds', type: 'gauge', block: 'fleet', labels: ['node', 'gpu_type'], help: 'Unix time of the last message from the node agent, in seconds.' }),
  nodeTelemetryTimestamp: def({ name: 'nuri_node_telemetry_timestamp_seconds', type: 'gauge', block: 'fleet', labels: ['node', 'gpu_type'], help: 'Unix time of the newest GPU sample applied for the node, in seconds.' }),
  nodeState: def({ name: 'nuri_node_state', type: 'gauge', block: 'fleet', labels: ['node', 'gpu_type', 'state'], help: 'Node state, one-hot: 1 for the current state (up, draining, drained, down), 0 for the others.' }),
  nodeGpusExpected: def({ name: 'nuri_node_gpus_expected', type: 'gauge', block: 'fleet', labels: ['node', 'gpu_type'], help: 'GPUs the node is registered with; fewer nuri_gpu_healthy series than this means a GPU is missing.' }),
  agentBufferDropped: def({ name: 'nuri_agent_buffer_dropped_messages_total', type: 'counter', block: 'fleet', labels: ['node', 'gpu_type'], help: 'Messages an agent dropped from its offline buffer (oldest first) because the buffer was full.' }),

  // --- Scheduler (registry) -----------------------------------------------------------
  schedulerJobs: def({ name: 'nuri_scheduler_jobs', type: 'gauge', block: 'registry', labels: ['state', 'tenant', 'gpu_type'], help: 'Jobs by state, tenant and requested GPU type.' }),
  schedulerJobTransitions: def({ name: 'nuri_scheduler_job_transitions_total', type: 'counter', block: 'registry', labels: ['tenant', 'gpu_type', 'from', 'to'], help: 'Job state transitions; from is "none" for a submission.' }),
  schedulerQueueWait: def({ name: 'nuri_scheduler_queue_wait_seconds', type: 'histogram', block: 'registry', labels: ['tenant', 'gpu_type'], buckets: WAIT_BUCKETS, help: 'Time jobs waited from submission (or requeue) to start, in seconds.' }),
  schedulerPendingGpus: def({ name: 'nuri_scheduler_pending_gpus', type: 'gauge', block: 'registry', labels: ['tenant', 'gpu_type'], help: 'GPUs requested by pending jobs.' }),
  schedulerOldestPending: def({ name: 'nuri_scheduler_oldest_pending_age_seconds', type: 'gauge', block: 'registry', labels: ['tenant', 'gpu_type'], help: 'Age of the oldest pending job, in seconds.' }),
  schedulerPassDuration: def({ name: 'nuri_scheduler_pass_duration_seconds', type: 'histogram', block: 'registry', labels: [], buckets: PASS_BUCKETS, help: 'Wall time of one scheduling pass (snapshot, plan, verify, commit), in seconds.' }),
  schedulerLiveReloads: def({ name: 'nuri_scheduler_live_reloads_total', type: 'counter', block: 'registry', labels: [], help: 'Full reads of every pending and running job by this scheduler process: once at start (a standby too, which then keeps them current) and after a failed pass or a lost lock; a steady rise means passes keep failing.' }),
  schedulerExpressStarts: def({ name: 'nuri_scheduler_express_starts_total', type: 'counter', block: 'registry', labels: [], help: 'Jobs started between full passes by an express start (a newcomer on free, unreserved GPUs the last pass left).' }),
  schedulerLastPass: def({ name: 'nuri_scheduler_last_pass_success_timestamp_seconds', type: 'gauge', block: 'registry', labels: [], help: 'Unix time at which the last scheduling pass completed successfully, in seconds.' }),
  schedulerStartEstimateScale: def({ name: 'nuri_scheduler_start_estimate_scale_ratio', type: 'gauge', block: 'registry', labels: [], help: 'Factor by which the scheduler multiplies waits predicted from time limits before showing them as estimated starts: the median of actual over predicted wait of recent starts (1 until enough starts were seen; 0 on a standby).' }),
  schedulerLeader: def({ name: 'nuri_scheduler_leader', type: 'gauge', block: 'registry', labels: [], help: '1 when this process holds the scheduler leader lock, else 0.' }),
  schedulerGpus: def({ name: 'nuri_scheduler_gpus', type: 'gauge', block: 'registry', labels: ['gpu_type', 'state'], help: 'GPUs by type and state (allocated, free, unhealthy, unavailable), as the scheduler last saw them.' }),
  schedulerJobsEndedByServer: def({ name: 'nuri_scheduler_jobs_ended_by_server_total', type: 'counter', block: 'registry', labels: ['tenant', 'gpu_type', 'reason'], help: 'Running jobs the server ended without an exit from their agent, by reason: node_down (requeued or failed) or agent_silent_past_end (the agent talks but reported nothing past the time limit or stop grace).' }),
  schedulerPreemptions: def({ name: 'nuri_scheduler_preemptions_total', type: 'counter', block: 'registry', labels: ['tenant', 'gpu_type', 'reason'], help: 'Jobs preempted, by the preempted job\'s tenant and GPU type and the reason.' }),

  // --- Tenants (registry, except the idle gauge which is derived from the GPU state) ---
  tenantQuotaGuaranteed: def({ name: 'nuri_tenant_quota_guaranteed_gpus', type: 'gauge', block: 'registry', labels: ['tenant', 'gpu_type'], help: 'GPUs guaranteed to the tenant.' }),
  tenantQuotaLimit: def({ name: 'nuri_tenant_quota_limit_gpus', type: 'gauge', block: 'registry', labels: ['tenant', 'gpu_type'], help: 'The most GPUs the tenant may hold, borrowing included.' }),
  tenantAllocated: def({ name: 'nuri_tenant_allocated_gpus', type: 'gauge', block: 'registry', labels: ['tenant', 'gpu_type'], help: 'GPUs allocated to the tenant\'s running jobs.' }),
  tenantGuaranteeShortfall: def({ name: 'nuri_tenant_guarantee_shortfall_gpus', type: 'gauge', block: 'registry', labels: ['tenant', 'gpu_type'], help: 'GPUs the tenant is waiting for within its guarantee: min(guaranteed, allocated + pending) - allocated.' }),
  tenantUsage: def({ name: 'nuri_tenant_gpu_seconds_total', type: 'counter', block: 'registry', labels: ['tenant', 'gpu_type'], help: 'GPU time consumed by the tenant\'s jobs, in GPU-seconds.' }),
  tenantIdleAllocated: def({ name: 'nuri_tenant_idle_allocated_gpus', type: 'gauge', block: 'registry', labels: ['tenant'], help: 'Allocated GPUs whose utilization stayed under the idle threshold for the idle time (see idle config).' }),
  tenantGpuPrice: def({ name: 'nuri_tenant_gpu_price_usd_per_gpu_hour', type: 'gauge', block: 'registry', labels: ['tenant', 'gpu_type'], help: 'Price of one GPU-hour for the tenant in effect today (its contract price, else the default), in USD; cost panels multiply GPU time by it.' }),

  // --- Gateway and API (registry) -----------------------------------------------------
  gatewayConnections: def({ name: 'nuri_gateway_agent_connections', type: 'gauge', block: 'registry', labels: [], help: 'Agent WebSocket connections open on this gateway.' }),
  gatewayMessages: def({ name: 'nuri_gateway_messages_total', type: 'counter', block: 'registry', labels: ['type', 'result'], help: 'Agent messages received, by type and result (applied, duplicate, rejected).' }),
  gatewayIngestLag: def({ name: 'nuri_gateway_ingest_lag_seconds', type: 'histogram', block: 'registry', labels: [], buckets: LAG_BUCKETS, help: 'Time from a sample\'s timestamp on the agent to its application on the server, in seconds.' }),
  httpRequestDuration: def({ name: 'nuri_http_request_duration_seconds', type: 'histogram', block: 'registry', labels: ['method', 'route', 'status'], buckets: HTTP_BUCKETS, help: 'HTTP API request duration by method, route template and status code, in seconds.' }),

  // --- dcgm-exporter compatible names (only with dcgmCompat) --------------------------
  dcgmGpuUtil: def({ name: 'DCGM_FI_DEV_GPU_UTIL', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'GPU utilization (in %).' }),
  dcgmFbUsed: def({ name: 'DCGM_FI_DEV_FB_USED', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'Framebuffer memory used (in MiB).' }),
  dcgmFbFree: def({ name: 'DCGM_FI_DEV_FB_FREE', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'Framebuffer memory free (in MiB).' }),
  dcgmGpuTemp: def({ name: 'DCGM_FI_DEV_GPU_TEMP', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'GPU temperature (in C).' }),
  dcgmPowerUsage: def({ name: 'DCGM_FI_DEV_POWER_USAGE', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'Power draw (in W).' }),
  dcgmTotalEnergy: def({ name: 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION', type: 'counter', block: 'dcgm', labels: DCGM_LABELS, help: 'Total energy consumption since boot (in mJ).' }),
  dcgmSmClock: def({ name: 'DCGM_FI_DEV_SM_CLOCK', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'SM clock frequency (in MHz).' }),
  dcgmXidErrors: def({ name: 'DCGM_FI_DEV_XID_ERRORS', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'Value of the last XID error encountered.' }),
  dcgmEccSbe: def({ name: 'DCGM_FI_DEV_ECC_SBE_VOL_TOTAL', type: 'counter', block: 'dcgm', labels: DCGM_LABELS, help: 'Total number of single-bit volatile ECC errors.' }),
  dcgmEccDbe: def({ name: 'DCGM_FI_DEV_ECC_DBE_VOL_TOTAL', type: 'counter', block: 'dcgm', labels: DCGM_LABELS, help: 'Total number of double-bit volatile ECC errors.' }),
  dcgmRowRemapFailure: def({ name: 'DCGM_FI_DEV_ROW_REMAP_FAILURE', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'Whether remapping of rows has failed.' }),
  dcgmThrottleReasons: def({ name: 'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS', type: 'gauge', block: 'dcgm', labels: DCGM_LABELS, help: 'Current clock throttle reasons (bitmask of DCGM_CLOCKS_THROTTLE_REASON_*).' }),
} as const;

export type MetricKey = keyof typeof METRICS;
export type MetricName = (typeof METRICS)[MetricKey]['name'];

/** Every name a PromQL expression may use: families plus histogram series suffixes. */
export function exposedSeriesNames(): Set<string> {
  const out = new Set<string>();
  for (const m of Object.values(METRICS) as MetricDef[]) {
    out.add(m.name);
    if (m.type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(m.name + s);
  }
  return out;
}
