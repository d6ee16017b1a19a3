import type { DependencyKind, JobState } from '@nuri/contracts';
import type { NodeWithGpus, PendingJobRow } from '@nuri/db';
import { Scheduler } from '@nuri/scheduling';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dependencyStatus, gatePending, type GateDependency } from './gating';
import { buildSnapshot, livePending } from './snapshot';

const RUNS = Number(process.env.PROP_RUNS ?? 100);
const now = new Date('2026-06-01T12:00:00Z');
const policy = { reservationDepth: 2, minRuntimeBeforePreemptSeconds: 300, preemptGraceSeconds: 10, preemption: true };
const STATES: JobState[] = ['pending', 'running', 'completed', 'failed', 'cancelled', 'timeout', 'node_failed'];
const KINDS: DependencyKind[] = ['afterok', 'afternotok', 'afterany'];

const pendingJob = (id: string, over: Partial<PendingJobRow> = {}) =>
  livePending({
    id,
    tenant_id: 't',
    gpus: 1,
    gpu_type: 'h100',
    priority: 'normal',
    submitted_ms: now.getTime(),
    queued_ms: now.getTime(),
    time_limit_seconds: 600,
    array_id: null,
    array_task_id: null,
    array_max_running: null,
    attempts: 0,
    ...over,
  });

describe('what a dependency means', () => {
  it('waits while the job it names is live, and is decided for good once it ended', () => {
    for (const k of KINDS) {
      expect(dependencyStatus(k, 'pending')).toBe('waiting');
      expect(dependencyStatus(k, 'running')).toBe('waiting');
    }
    expect(dependencyStatus('afterok', 'completed')).toBe('met');
    expect(dependencyStatus('afterok', 'failed')).toBe('never');
    expect(dependencyStatus('afterok', 'timeout')).toBe('never');
    expect(dependencyStatus('afternotok', 'completed')).toBe('never');
    expect(dependencyStatus('afternotok', 'cancelled')).toBe('met');
    expect(dependencyStatus('afterany', 'failed')).toBe('met');
    expect(dependencyStatus('afterany', 'completed')).toBe('met');
  });
});

describe('the gate before the core', () => {
  it('names the first job waited for, cancels what can never run, and lets the lowest tasks of a capped array go first', () => {
    const a = 'aaaaaaaa-0000-4000-8000-000000000000';
    const tasks = [3, 0, 2, 1].map((i) => pendingJob(`t${i}`, { array_id: a, array_task_id: i, array_max_running: 2 }));
    const pending = [pendingJob('w'), pendingJob('d'), pendingJob('free'), ...tasks];
    const deps: GateDependency[] = [
      { jobId: 'w', kind: 'afterok', dependsOn: 'bbbbbbbb-1111-4000-8000-000000000000', state: 'running' },
      { jobId: 'w', kind: 'afterany', dependsOn: 'cccccccc-1111-4000-8000-000000000000', state: 'completed' },
      { jobId: 'd', kind: 'afterany', dependsOn: 'cccccccc-1111-4000-8000-000000000000', state: 'pending' },
      { jobId: 'd', kind: 'afterok', dependsOn: 'dddddddd-1111-4000-8000-000000000000', state: 'failed' },
    ];
    const g = gatePending(pending, deps, new Map([[a, 1]]));
    expect(g.eligible.map((j) => j.id)).toEqual(['free', 't0']);
    expect(g.withheld.map((w) => [w.job.id, w.reason])).toEqual([
      ['w', 'waiting for job bbbbbbbb (afterok)'],
      ['t3', 'array limit: at most 2 of its tasks run at once'],
      ['t2', 'array limit: at most 2 of its tasks run at once'],
      ['t1', 'array limit: at most 2 of its tasks run at once'],
    ]);
    expect(g.doomed.map((d) => [d.job.id, d.reason])).toEqual([['d', 'dependency afterok:dddddddd can never be met: job dddddddd ended failed']]);
  });

  it('passes nothing of an array already at its cap, and every task of an uncapped one', () => {
    const capped = [0, 1].map((i) => pendingJob(`c${i}`, { array_id: 'A', array_task_id: i, array_max_running: 3 }));
    const open = [0, 1, 2].map((i) => pendingJob(`o${i}`, { array_id: 'B', array_task_id: i }));
    const g = gatePending([...capped, ...open], [], new Map([['A', 3]]));
    expect(g.eligible.map((j) => j.id)).toEqual(['o0', 'o1', 'o2']);
    expect(g.withheld.map((w) => w.job.id)).toEqual(['c0', 'c1']);
  });

  it('passes every job on, in queue order, when nothing is gated (met dependencies, uncapped arrays), as a list of its own', () => {
    const queue = [pendingJob('a'), pendingJob('b', { array_id: 'B', array_task_id: 0 }), pendingJob('c')];
    const met: GateDependency[] = [{ jobId: 'c', kind: 'afterok', dependsOn: 'x', state: 'completed' }];
    const g = gatePending(queue, met, new Map());
    expect(g.eligible.map((j) => j.id)).toEqual(['a', 'b', 'c']);
    expect([g.withheld, g.doomed]).toEqual([[], []]);
    g.eligible.pop();
    expect(queue).toHaveLength(3);
  });

  // Random arrays, caps, running counts and dependencies, through the real core on a small
  // center: a pass never starts more of an array than its cap allows, nor a job waiting on another.
  it('never lets a pass start past an array cap or before a dependency is met (property)', () => {
    const arb = fc.record({
      nodes: fc.integer({ min: 1, max: 3 }),
      arrays: fc.array(fc.record({ cap: fc.option(fc.integer({ min: 1, max: 4 }), { nil: null }), running: fc.integer({ min: 0, max: 5 }), pending: fc.integer({ min: 1, max: 8 }), gpus: fc.constantFrom(1, 2, 4) }), { minLength: 1, maxLength: 3 }),
      singles: fc.integer({ min: 0, max: 6 }),
      deps: fc.array(fc.record({ on: fc.nat(), by: fc.nat(), kind: fc.constantFrom(...KINDS), state: fc.constantFrom(...STATES) }), { maxLength: 10 }),
    });
    fc.assert(
      fc.property(arb, (c) => {
        const pending: ReturnType<typeof pendingJob>[] = [];
        const running = new Map<string, number>();
        c.arrays.forEach((a, ai) => {
          const id = `array-${ai}`;
          running.set(id, a.running);
          for (let i = 0; i < a.pending; i++)
            pending.push(pendingJob(`a${ai}-task${String(i).padStart(2, '0')}`, { gpus: a.gpus, array_id: id, array_task_id: a.running + i, array_max_running: a.cap }));
        });
        for (let i = 0; i < c.singles; i++) pending.push(pendingJob(`single-${i}`, { gpus: 1 + (i % 3) }));
        const deps: GateDependency[] = c.deps.map((d) => ({ jobId: pending[d.by % pending.length]!.id, kind: d.kind, dependsOn: `other-${d.on % 5}`, state: d.state }));
        const gate = gatePending(pending, deps, running);

        // Every pending job lands in exactly one outcome.
        const ids = [...gate.eligible.map((j) => j.id), ...gate.withheld.map((w) => w.job.id), ...gate.doomed.map((d) => d.job.id)];
        expect(ids.sort()).toEqual(pending.map((j) => j.id).sort());
        for (const j of pending) {
          const statuses = deps.filter((d) => d.jobId === j.id).map((d) => dependencyStatus(d.kind, d.state));
          expect(gate.doomed.some((d) => d.job.id === j.id)).toBe(statuses.includes('never'));
        }

        const nodes: NodeWithGpus[] = Array.from({ length: c.nodes }, (_, n) => ({
          id: `n${n}`, name: `n${n}`, gpuType: 'h100', rack: 'r', leafSwitch: 'l', state: 'up', stateReason: '', lastHeartbeatAt: now, connected: true,
          gpus: Array.from({ length: 8 }, (_, index) => ({ index, uuid: null, model: null, healthy: true, healthReason: '', jobId: null })),
        }));
        const snapshot = buildSnapshot({
          now, tenants: [{ id: 't', name: 't', displayName: 't', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 64 }] }],
          usage: [], nodes, pending: gate.eligible, running: [], halfLifeSeconds: 3600, policy,
        });
        const started = new Set(new Scheduler().plan(snapshot).starts.map((s) => s.jobId));
        const byId = new Map(pending.map((j) => [j.id, j]));
        c.arrays.forEach((a, ai) => {
          if (a.cap === null) return;
          const n = [...started].filter((id) => byId.get(id)!.arrayId === `array-${ai}`).length;
          expect(n).toBeLessThanOrEqual(Math.max(0, a.cap - a.running));
        });
        for (const id of started) expect(deps.filter((d) => d.jobId === id).every((d) => dependencyStatus(d.kind, d.state) === 'met')).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });
});
