import { describe, expect, it } from 'vitest';
import { buildSnapshot, decay, livePending } from './snapshot';

const now = new Date('2026-06-01T12:00:00Z');
const policy = { reservationDepth: 4, minRuntimeBeforePreemptSeconds: 300, preemptGraceSeconds: 10, preemption: true };
const tenant = (id: string) => ({ id, name: id, displayName: id, weight: 2, quotas: [{ gpuType: 'h100' as const, guaranteed: 8, limit: 16 }] });

describe('the snapshot the scheduler hands to the core', () => {
  it('halves usage per half-life', () => {
    expect(decay(100, new Date(now.getTime() - 3600_000), now, 3600)).toBeCloseTo(50);
    expect(decay(100, now, now, 3600)).toBe(100);
  });

  it('charges a tenant for finished work (decayed) and for what its running jobs have used so far', () => {
    const s = buildSnapshot({
      now,
      tenants: [tenant('a'), tenant('b')],
      usage: [{ tenantId: 'a', decayed: 1000, asOf: new Date(now.getTime() - 7200_000) }],
      nodes: [
        { id: 'n1', name: 'n1', gpuType: 'h100', rack: 'r', leafSwitch: 'l', state: 'draining', stateReason: '', lastHeartbeatAt: now, connected: true, gpus: [{ index: 0, uuid: null, model: null, healthy: false, healthReason: 'XID 79', jobId: null }] },
      ],
      pending: [],
      running: [
        { id: 'j', tenantId: 'b', gpus: 4, gpuModel: 'h100', priority: 'high', submittedAt: now, queuedAt: now, startedAt: new Date(now.getTime() - 60_000), timeLimitSeconds: 600, stopRequested: 'preempt', placement: [{ nodeId: 'n1', nodeName: 'n1', gpuIndices: [1, 2, 3, 4] }] },
      ],
      halfLifeSeconds: 3600,
      policy,
    });
    expect(s.now).toBe(now.getTime());
    expect(s.tenants.map((t) => [t.id, t.decayedUsage])).toEqual([
      ['a', 250],
      // 4 GPUs for a minute, decayed as finished work is (half-life one hour): a little under 240.
      ['b', expect.closeTo(238.619, 3)],
    ]);
    expect(s.tenants[0]!.quotas).toEqual({ h100: { guaranteed: 8, limit: 16 } });
    // A draining node takes nothing new; an unhealthy GPU is marked so.
    expect(s.nodes[0]).toMatchObject({ schedulable: false, gpus: [{ index: 0, healthy: false }] });
    expect(s.running[0]).toMatchObject({ priority: 2, stopping: true, placement: [{ nodeId: 'n1', gpuIndices: [1, 2, 3, 4] }] });
  });

  it('tells the core when each job last entered the queue, apart from when it was submitted', () => {
    const submitted = new Date(now.getTime() - 3600_000);
    const requeued = new Date(now.getTime() - 600_000);
    const s = buildSnapshot({
      now,
      tenants: [tenant('a')],
      usage: [],
      nodes: [],
      pending: [
        livePending({
          id: 'p',
          tenant_id: 'a',
          gpus: 1,
          gpu_type: 'h100',
          priority: 'normal',
          submitted_ms: submitted.getTime(),
          queued_ms: requeued.getTime(),
          time_limit_seconds: 60,
          array_id: null,
          array_task_id: null,
          array_max_running: null,
          attempts: 1,
        }),
      ],
      running: [
        { id: 'r', tenantId: 'a', gpus: 1, gpuModel: 'h100', priority: 'normal', submittedAt: submitted, queuedAt: requeued, startedAt: new Date(now.getTime() - 60_000), timeLimitSeconds: 600, stopRequested: null, placement: [] },
      ],
      halfLifeSeconds: 3600,
      policy,
    });
    expect(s.pending[0]).toMatchObject({ submittedAt: submitted.getTime(), queuedAt: requeued.getTime() });
    expect(s.running[0]).toMatchObject({ submittedAt: submitted.getTime(), queuedAt: requeued.getTime() });
  });
});
