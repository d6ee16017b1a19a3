import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { withoutInertTails } from './inert';
import { schedule } from './policy';
import { HOUR, T0, eightGpuNode as node, smallFleet } from './testing/harness';
import type { PendingExplanation, RunningJob, Snapshot } from './types';


describe('withoutInertTails', () => {
  // Tenants near their limits with long queues: most queued jobs are over the limit, some starve.
  const arb = fc.record({
    h100: fc.integer({ min: 1, max: 3 }),
    h800: fc.integer({ min: 0, max: 2 }),
    busy: fc.array(fc.record({ tenant: fc.nat(2), node: fc.nat(5), gpus: fc.constantFrom(1, 2, 4, 8), hours: fc.integer({ min: 1, max: 4 }) }), { maxLength: 8 }),
    queued: fc.array(
      fc.record({
        tenant: fc.nat(2),
        gpus: fc.constantFrom(1, 2, 4, 8, 16),
        type: fc.constantFrom('h100' as const, 'h800' as const, 'any' as const),
        prio: fc.integer({ min: 0, max: 2 }),
        ageMin: fc.integer({ min: 0, max: 180 }),
        requeuedMin: fc.option(fc.integer({ min: 0, max: 60 }), { nil: undefined }),
        hours: fc.integer({ min: 1, max: 4 }),
      }),
      { maxLength: 30 },
    ),
    guarantees: fc.array(fc.integer({ min: 0, max: 8 }), { minLength: 3, maxLength: 3 }),
    extra: fc.array(fc.integer({ min: 0, max: 8 }), { minLength: 3, maxLength: 3 }),
    usage: fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 3, maxLength: 3 }),
    until: fc.option(fc.nat(29), { nil: undefined }),
  });

  it('changes no start, preemption, reservation or kept job\'s explanation, and drops only jobs that wait for their limit (property)', () => {
    let dropped = 0;
    let keptBehind = 0;
    fc.assert(
      fc.property(arb, (w) => {
        const { nodes, running } = smallFleet(w.h100, w.h800, w.busy, { submittedAt: T0 - 4 * HOUR * 1000, stopping: (i) => i % 5 === 4 });
        const tenants = [0, 1, 2].map((i) => ({
          id: `t${i}`,
          name: `t${i}`,
          weight: 1 + (i % 2),
          decayedUsage: w.usage[i]!,
          quotas: { h100: { guaranteed: w.guarantees[i]!, limit: w.guarantees[i]! + w.extra[i]! }, h800: { guaranteed: w.guarantees[i]!, limit: w.guarantees[i]! + w.extra[i]! } },
        }));
        const pending = w.queued.map((q, i) => ({
          id: `q${String(i).padStart(2, '0')}`,
          tenantId: `t${q.tenant}`,
          gpus: q.gpus,
          gpuType: q.type,
          priority: q.prio,
          submittedAt: T0 - q.ageMin * 60_000,
          ...(q.requeuedMin !== undefined ? { queuedAt: T0 - q.requeuedMin * 60_000 } : {}),
          timeLimitSeconds: q.hours * HOUR,
        }));
        const s: Snapshot = {
          now: T0,
          config: { reservationDepth: 2, minRuntimeBeforePreemptSeconds: 600, preemptGraceSeconds: 60, preemption: true, starvationSeconds: 2 * HOUR, starvingPriorityFloor: 1 },
          tenants,
          nodes,
          running,
          pending,
        };
        const until = w.until !== undefined && pending.length ? new Set([pending[w.until % pending.length]!.id]) : undefined;
        const trimmed = withoutInertTails(s, (id) => until?.has(id) ?? false);
        const kept = new Set(trimmed.map((j) => j.id));
        dropped += pending.length - trimmed.length;
        const opts = until ? { until } : {};
        const full = schedule(s, opts);
        const part = schedule({ ...s, pending: trimmed }, opts);
        expect(part.starts).toEqual(full.starts);
        expect(part.preemptions).toEqual(full.preemptions);
        expect(part.reservations).toEqual(full.reservations);
        const noPos = (x: PendingExplanation) => ({ ...x, queuePosition: 0 });
        expect(part.pending.map(noPos)).toEqual(full.pending.filter((x) => kept.has(x.jobId)).map(noPos));
        for (const x of full.pending) if (!kept.has(x.jobId)) expect(['over_quota_limit', 'nodes_unavailable', 'no_node_of_type']).toContain(x.reason);
        // Inert jobs ahead of a tenant's live ones are kept (they charge its fair-share key).
        keptBehind += trimmed.filter((j) => j.priority === 0).length;
      }),
      { numRuns: Number(process.env.INERT_RUNS ?? 500) },
    );
    expect(dropped).toBeGreaterThan(100);
    expect(keptBehind).toBeGreaterThan(0);
  });

  it('keeps a tenant\'s inert jobs ranked ahead of one that may still start, and drops those after it', () => {
    const tenants = [{ id: 'a', name: 'a', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 0, limit: 4 } } }];
    const running: RunningJob[] = [{ id: 'r', tenantId: 'a', gpus: 2, gpuModel: 'h100', priority: 1, submittedAt: T0, startedAt: T0, timeLimitSeconds: HOUR, placement: [{ nodeId: 'n', gpuIndices: [0, 1] }], stopping: false }];
    const job = (id: string, gpus: number, minutesAgo: number, priority = 1) => ({ id, tenantId: 'a', gpus, gpuType: 'h100' as const, priority, submittedAt: T0 - minutesAgo * 60_000, timeLimitSeconds: HOUR });
    const pending = [job('big-old', 4, 30), job('small', 2, 20), job('big-new', 4, 10), job('big-low', 4, 40, 0)];
    const s: Snapshot = { now: T0, config: { reservationDepth: 2, minRuntimeBeforePreemptSeconds: 600, preemptGraceSeconds: 60, preemption: true }, tenants, nodes: [node('n', 'h100')], running, pending };
    expect(withoutInertTails(s).map((j) => j.id)).toEqual(['big-old', 'small']);
    // A starving job is never inert.
    expect(withoutInertTails({ ...s, now: T0 + 5 * HOUR * 1000 }).map((j) => j.id)).toEqual(['big-old', 'small', 'big-new', 'big-low']);
  });
});
