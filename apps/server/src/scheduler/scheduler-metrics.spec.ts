import type { NodeWithGpus, PendingJobRow, RunningWithPlacement, TenantWithQuotas } from '@nuri/db';
import { NuriMetrics, parseExposition } from '@nuri/metrics';
import { describe, expect, it } from 'vitest';
import { afterStarts, gpuCounts, jobCounts, SchedulerMetricsState, tenantRows } from './scheduler-metrics';
import { livePending } from './snapshot';

const T0 = Date.UTC(2025, 0, 1);
const at = (s: number) => new Date(T0 + s * 1000);

const node = (id: string, gpuType: 'h100' | 'h800', state: NodeWithGpus['state'], gpus: { healthy?: boolean; jobId?: string | null }[]): NodeWithGpus => ({
  id,
  name: `node-${id}`,
  gpuType,
  rack: 'r1',
  leafSwitch: 'l1',
  state,
  stateReason: '',
  lastHeartbeatAt: null,
  connected: state === 'up',
  gpus: gpus.map((g, index) => ({ index, uuid: null, model: null, healthy: g.healthy ?? true, healthReason: '', jobId: g.jobId ?? null })),
});
const tenants: TenantWithQuotas[] = [
  { id: 't1', name: 'naver', displayName: 'Naver', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 16 }, { gpuType: 'h800', guaranteed: 4, limit: 8 }] },
  { id: 't2', name: 'kakao', displayName: 'Kakao', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 2, limit: 4 }] },
];
const names = new Map(tenants.map((t) => [t.id, t.name]));
const pendingJob = (id: string, tenant: string, gpus: number, gpuType: PendingJobRow['gpu_type'], submitted: number, attempts = 0, queued = submitted) =>
  livePending({
    id,
    tenant_id: tenant,
    gpus,
    gpu_type: gpuType,
    submitted_ms: at(submitted).getTime(),
    queued_ms: at(queued).getTime(),
    attempts,
    priority: 'normal',
    time_limit_seconds: 60,
    array_id: null,
    array_task_id: null,
    array_max_running: null,
  });
const runningJob = (id: string, tenant: string, gpus: number, gpuModel: 'h100' | 'h800', started: number): RunningWithPlacement => ({
  id,
  tenantId: tenant,
  gpus,
  gpuModel,
  priority: 'normal',
  submittedAt: at(started - 10),
  queuedAt: at(started - 10),
  startedAt: at(started),
  timeLimitSeconds: 3600,
  stopRequested: null,
  placement: [],
});
const sample = async (m: NuriMetrics, name: string, labels: Record<string, string> = {}) => {
  const { samples } = parseExposition(await m.metrics());
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value;
};

describe('scheduler pass metrics', () => {
  it('counts GPUs as allocated, free, unhealthy or unavailable by type', () => {
    const rows = gpuCounts([
      node('a', 'h100', 'up', [{ jobId: 'j1' }, {}, { healthy: false }, {}]),
      node('b', 'h800', 'drained', [{}, { jobId: 'j2' }]),
    ]);
    const get = (t: string, s: string) => rows.find((r) => r.gpuType === t && r.state === s)?.count;
    expect([get('h100', 'allocated'), get('h100', 'free'), get('h100', 'unhealthy'), get('h100', 'unavailable')]).toEqual([1, 2, 1, 0]);
    expect([get('h800', 'allocated'), get('h800', 'free'), get('h800', 'unavailable')]).toEqual([1, 0, 1]);
  });

  it('fills tenant rows with quota, allocation, pending GPUs and oldest pending age; `any` counts once, where the guarantee is least met', () => {
    const rows = tenantRows(
      {
        now: at(100),
        tenants,
        nodes: [],
        running: [runningJob('r1', 't1', 8, 'h100', 0)],
        pending: [pendingJob('p1', 't1', 2, 'any', 40), pendingJob('p2', 't1', 1, 'h100', 90), pendingJob('p3', 't2', 1, 'h800', 70)],
      },
      (j) => j.submittedAt,
    );
    expect(rows).toEqual([
      { tenant: 'kakao', gpuType: 'h100', guaranteed: 2, limit: 4, allocated: 0, pendingGpus: 0 },
      { tenant: 'kakao', gpuType: 'h800', guaranteed: 0, limit: 0, allocated: 0, pendingGpus: 1, oldestPendingSeconds: 30 },
      { tenant: 'naver', gpuType: 'h100', guaranteed: 8, limit: 16, allocated: 8, pendingGpus: 1, oldestPendingSeconds: 10 },
      { tenant: 'naver', gpuType: 'h800', guaranteed: 4, limit: 8, allocated: 0, pendingGpus: 2, oldestPendingSeconds: 60 },
    ]);
  });

  it('exports live job counts only, with tenant names', () => {
    expect(
      jobCounts(
        [
          { tenantId: 't1', state: 'pending', gpuType: 'any', n: 3 },
          { tenantId: 't1', state: 'completed', gpuType: 'h100', n: 50 },
          { tenantId: 't2', state: 'running', gpuType: 'h100', n: 1 },
          { tenantId: 'gone', state: 'running', gpuType: 'h100', n: 1 },
        ],
        names,
      ),
    ).toEqual([
      { state: 'pending', tenant: 'naver', gpuType: 'any', count: 3 },
      { state: 'running', tenant: 'kakao', gpuType: 'h100', count: 1 },
    ]);
  });

  it('applies the committed starts: the jobs leave pending, join running and hold their GPUs', () => {
    const i = { nodes: [node('a', 'h100', 'up', [{}, {}])], pending: [pendingJob('p1', 't1', 1, 'any', 0), pendingJob('p2', 't1', 1, 'h100', 0)], running: [] };
    const plan = {
      starts: [
        { jobId: 'p1', gpuModel: 'h100' as const, placement: [{ nodeId: 'a', gpuIndices: [1] }] },
        { jobId: 'p2', gpuModel: 'h100' as const, placement: [{ nodeId: 'a', gpuIndices: [0] }] },
      ],
    };
    const after = afterStarts(i, plan, ['p1'], new Map(i.pending.map((j) => [j.id, j])), at(5));
    expect([...after.gone]).toEqual(['p1']);
    expect(after.running.map((r) => [r.id, r.gpuModel, r.gpus])).toEqual([['p1', 'h100', 1]]);
    expect(after.nodes[0]!.gpus.map((g) => g.jobId)).toEqual([null, 'p1']);
    // The tenant's row: p1's GPU is allocated now, only p2's is still pending (and its age is p2's).
    const rows = tenantRows({ now: at(10), tenants, nodes: after.nodes, pending: i.pending, running: after.running }, (j) => j.submittedAt + (j.id === 'p1' ? 0 : 4000), after.gone);
    expect(rows.find((r) => r.tenant === 'naver' && r.gpuType === 'h100')).toMatchObject({ allocated: 1, pendingGpus: 1, oldestPendingSeconds: 6 });
  });

  it('exports node type, state and registered GPUs from the database, and drops a node that left it', async () => {
    const m = new NuriMetrics({ now: () => T0 });
    const s = new SchedulerMetricsState(m);
    s.nodeInfo([node('a', 'h100', 'draining', [{}, {}]), node('b', 'h800', 'up', [{}])]);
    expect(await sample(m, 'nuri_node_state', { node: 'node-a', state: 'draining' })).toBe(1);
    expect(await sample(m, 'nuri_node_state', { node: 'node-a', state: 'up' })).toBe(0);
    expect(await sample(m, 'nuri_node_gpus_expected', { node: 'node-b', gpu_type: 'h800' })).toBe(1);
    s.nodeInfo([node('a', 'h100', 'up', [{}, {}])]);
    expect(await sample(m, 'nuri_node_state', { node: 'node-a', state: 'up' })).toBe(1);
    expect(await sample(m, 'nuri_node_gpus_expected', { node: 'node-b' })).toBeUndefined();
  });

  it('counts usage continuously: GPUs × time since last counted, ended jobs up to the pass that saw them gone', async () => {
    const m = new NuriMetrics({ now: () => T0 });
    const s = new SchedulerMetricsState(m);
    s.leader(T0 + 5_000);
    expect(await sample(m, 'nuri_scheduler_leader')).toBe(1);
    // Started before this leader: counted from leadership (5 s), not from its start.
    s.accountUsage(at(10), [runningJob('a', 't1', 4, 'h100', 0), runningJob('b', 't2', 2, 'h100', 8)], names);
    expect(await sample(m, 'nuri_tenant_gpu_seconds_total', { tenant: 'naver', gpu_type: 'h100' })).toBe(20);
    expect(await sample(m, 'nuri_tenant_gpu_seconds_total', { tenant: 'kakao', gpu_type: 'h100' })).toBe(4);
    s.accountUsage(at(12), [runningJob('a', 't1', 4, 'h100', 0)], names);
    s.accountUsage(at(13), [runningJob('a', 't1', 4, 'h100', 0)], names);
    expect(await sample(m, 'nuri_tenant_gpu_seconds_total', { tenant: 'naver', gpu_type: 'h100' })).toBe(32);
    expect(await sample(m, 'nuri_tenant_gpu_seconds_total', { tenant: 'kakao', gpu_type: 'h100' })).toBe(8);
    // b came back pending (requeued at 12 s): its wait counts from the requeue, not the submission.
    const b = pendingJob('b', 't2', 2, 'h100', -2, 1, 12);
    expect(s.pendingSince(b)).toBe(at(12).getTime());
    expect(s.pendingSince(pendingJob('c', 't2', 1, 'h100', 3))).toBe(at(3).getTime());
    s.leader(null);
    expect(await sample(m, 'nuri_scheduler_leader')).toBe(0);
  });

  it('counts a job started between passes (express) that ended before a pass saw it running', async () => {
    const m = new NuriMetrics({ now: () => T0 });
    const s = new SchedulerMetricsState(m);
    s.leader(T0);
    s.accountUsage(at(10), [], names);
    s.started('x', 'kakao', 'h800', 2, at(11).getTime());
    // The next pass no longer sees it: counted from its start to that pass (8 s × 2 GPUs).
    s.accountUsage(at(19), [], names);
    expect(await sample(m, 'nuri_tenant_gpu_seconds_total', { tenant: 'kakao', gpu_type: 'h800' })).toBe(16);
    s.accountUsage(at(25), [], names);
    expect(await sample(m, 'nuri_tenant_gpu_seconds_total', { tenant: 'kakao', gpu_type: 'h800' })).toBe(16);
  });

  it('counts a job a pass started that ended before the next pass, and one still running from its start', async () => {
    const m = new NuriMetrics({ now: () => T0 });
    const s = new SchedulerMetricsState(m);
    s.leader(T0);
    // The pass at 10 s accounts what ran before it, then its own starts.
    s.accountUsage(at(10), [], names);
    s.started('short', 'naver', 'h100', 1, at(10).getTime());
    s.started('long', 'kakao', 'h100', 4, at(10).getTime());
    // At 13 s: `short` has ended (counted to this pass, 3 s × 1 GPU), `long` runs (3 s × 4, from its start only).
    s.accountUsage(at(13), [runningJob('long', 't2', 4, 'h100', 10)], names);
    expect(await sample(m, 'nuri_tenant_gpu_seconds_total', { tenant: 'naver', gpu_type: 'h100' })).toBe(3);
    expect(await sample(m, 'nuri_tenant_gpu_seconds_total', { tenant: 'kakao', gpu_type: 'h100' })).toBe(12);
  });
});
