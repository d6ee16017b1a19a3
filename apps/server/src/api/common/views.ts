import type { JobView, NodeView, TenantView, TokenView, UserView } from '@nuri/contracts';
import type { JobDetail, NodeWithGpus, TenantWithQuotas, UserRecord } from '@nuri/db';
import { dependencyStatus } from '../../scheduler/gating';

const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);

/** Database records to the views of libs/contracts: one place for the wire shape. */
export function jobView(j: JobDetail): JobView {
  return {
    id: j.id,
    tenant: j.tenantName,
    user: j.userName,
    name: j.name,
    state: j.state,
    // A pending job shows the leader's latest word on its wait; before its first pass, why it
    // entered the queue (submitted, requeued after a preemption).
    reason: j.state === 'pending' && j.wait ? j.wait.reason : j.reason,
    reasonCode: j.state === 'pending' && j.wait ? (j.wait.reasonCode as JobView['reasonCode']) : null,
    gpus: j.gpus,
    gpuType: j.gpu_type,
    priority: j.priority,
    timeLimitSeconds: j.time_limit_seconds,
    command: j.command,
    env: j.env,
    workingDir: j.working_dir,
    requeue: j.requeue,
    submittedAt: j.submitted_at.toISOString(),
    queuedAt: j.queued_at.toISOString(),
    startedAt: iso(j.started_at),
    endedAt: iso(j.ended_at),
    exitCode: j.exit_code,
    estimatedStartAt: j.state === 'pending' && j.wait?.estimatedStartAt ? new Date(j.wait.estimatedStartAt).toISOString() : null,
    queuePosition: j.state === 'pending' ? (j.wait?.queuePosition ?? null) : null,
    placement: j.placement,
    transitions: j.transitions.map((t) => ({ at: t.at.toISOString(), from: t.from, to: t.to, reason: t.reason })),
    script: j.script !== null,
    array: j.array_id === null ? null : { id: j.array_id, taskId: j.array_task_id!, size: j.array_size!, maxRunning: j.array_max_running },
    dependencies: j.dependencies.map((d) => ({ kind: d.kind, job: d.job, tasks: d.tasks, state: d.state, satisfied: dependencyStatus(d.kind, d.state) === 'met' })),
    output: j.output,
  };
}

export function tenantView(t: TenantWithQuotas): TenantView {
  return { name: t.name, displayName: t.displayName, weight: t.weight, quotas: t.quotas };
}

export function userView(u: UserRecord): UserView {
  return { name: u.name, tenant: u.tenantName, role: u.role, createdAt: u.createdAt.toISOString(), disabledAt: iso(u.disabledAt) };
}

/** `showJob` decides per job id whether the caller may see it (its own tenant's, or an operator). */
export function nodeView(n: NodeWithGpus, showJob: (jobId: string) => boolean): NodeView {
  return {
    name: n.name,
    gpuType: n.gpuType,
    state: n.state,
    stateReason: n.stateReason,
    rack: n.rack,
    leafSwitch: n.leafSwitch,
    lastHeartbeatAt: iso(n.lastHeartbeatAt),
    connected: n.connected,
    isolation: n.isolation ?? null,
    gpus: n.gpus.map((g) => ({ index: g.index, uuid: g.uuid, healthy: g.healthy, allocated: g.jobId !== null, job: g.jobId && showJob(g.jobId) ? g.jobId : null })),
  };
}

export function tokenView(
  t: { id: string; description: string; createdAt: Date; expiresAt: Date | null; issuedBy: string | null },
  user: string,
  token?: string,
): TokenView {
  return {
    id: t.id,
    user,
    description: t.description,
    createdAt: t.createdAt.toISOString(),
    expiresAt: iso(t.expiresAt),
    issuedBy: t.issuedBy,
    ...(token ? { token } : {}),
  };
}
