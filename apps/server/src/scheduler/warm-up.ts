import type { NodeWithGpus, RunningWithPlacement, TenantWithQuotas } from '@nuri/db';
import { Scheduler, type PolicyConfig } from '@nuri/scheduling';
import { buildSnapshot, livePending, type LivePending } from './snapshot';

/**
 * The made-up center's size: loops long enough for V8 to optimize them, about 0.1 s of a boot
 * (20,000 jobs or three plans did no better on the first pass; one plan, or none, worse).
 */
const WARM_UP = { tenants: 8, nodes: 512, pending: 10_000, plans: 2 };

/** An id shaped as the database's (a uuid string: the core compares and hashes such ids). */
const uuid = (kind: number, i: number) => `0000000${kind}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;

/**
 * Runs the core on a made-up center of the same shapes as a pass's (pending jobs made by
 * `livePending`, nodes, tenants and running jobs through `buildSnapshot`), in a core of its own,
 * so that a new leader's first pass runs optimized code: on a queue of 145,000 jobs the core's
 * first plan took 330-360 ms, the same plan again 170 ms, then 120 ms (V8 compiles what runs
 * hot); after this, the first took 180-220 ms. Nothing of it is kept but the compiled code (and
 * the core's scratch arrays, which every pass overwrites, sized for this center: the scheduler
 * then grows them for its real queue, `reservePassMemory`). Deterministic; returns what the last
 * plan did, for tests.
 */
export function warmUpCore(policy: PolicyConfig, halfLifeSeconds: number): { pending: number; starts: number; waiting: number } {
  const now = new Date(Date.UTC(2026, 0, 1));
  const tenants: TenantWithQuotas[] = Array.from({ length: WARM_UP.tenants }, (_, t) => ({
    id: uuid(1, t),
    name: `warm-up-${t}`,
    displayName: `Warm-up ${t}`,
    weight: 1 + (t % 3),
    quotas: [
      { gpuType: 'h100' as const, guaranteed: 64 * (t % 4), limit: 512 },
      { gpuType: 'h800' as const, guaranteed: 32 * (t % 3), limit: 256 },
    ],
  }));
  const nodes: NodeWithGpus[] = Array.from({ length: WARM_UP.nodes }, (_, n) => ({
    id: uuid(2, n),
    name: `warm-up-${n}`,
    gpuType: n % 2 ? 'h800' : 'h100',
    rack: `r${n >> 5}`,
    leafSwitch: `l${n >> 4}`,
    state: n % 61 === 7 ? 'draining' : 'up',
    stateReason: '',
    lastHeartbeatAt: now,
    connected: true,
    gpus: Array.from({ length: 8 }, (_, index) => ({ index, uuid: null, model: null, healthy: !(n % 37 === 3 && index === 5), healthReason: '', jobId: null })),
  }));
  // Half the nodes busy, whole-node jobs and shared ones, some asked to stop.
  const running: RunningWithPlacement[] = [];
  for (let n = 0; n < WARM_UP.nodes / 2; n++) {
    const whole = n % 3 !== 0;
    running.push({
      id: uuid(3, n),
      tenantId: tenants[n % WARM_UP.tenants]!.id,
      gpus: whole ? 8 : 4,
      gpuType: n % 2 ? 'h800' : 'h100',
      gpuModel: n % 2 ? 'h800' : 'h100',
      priority: 'normal',
      submittedAt: new Date(now.getTime() - 7_200_000),
      queuedAt: new Date(now.getTime() - 7_200_000),
      startedAt: new Date(now.getTime() - 3_600_000 + n * 1000),
      timeLimitSeconds: 3600 * (1 + (n % 5)),
      stopRequested: n % 50 === 0 ? 'cancel' : null,
      attempts: 1,
      placement: [{ nodeId: nodes[n]!.id, nodeName: nodes[n]!.name, gpuIndices: whole ? [0, 1, 2, 3, 4, 5, 6, 7] : [0, 1, 2, 3] }],
    });
  }
  const sizes = [1, 1, 2, 4, 8, 8, 16, 32];
  const types = ['h100', 'h800', 'any'] as const;
  const priorities = ['normal', 'normal', 'low', 'high'] as const;
  const pending: LivePending[] = Array.from({ length: WARM_UP.pending }, (_, i) =>
    livePending({
      id: uuid(4, i),
      tenant_id: tenants[(i * 7) % WARM_UP.tenants]!.id,
      gpus: sizes[i % sizes.length]!,
      gpu_type: types[i % types.length]!,
      priority: priorities[(i >> 3) % priorities.length]!,
      time_limit_seconds: 600 * (1 + (i % 12)),
      array_id: null,
      array_task_id: null,
      array_max_running: null,
      attempts: i % 97 === 0 ? 1 : 0,
      submitted_ms: now.getTime() - 86_400_000 + i * 4000,
      queued_ms: now.getTime() - 86_400_000 + i * 4000,
    }),
  );
  let last = { pending: 0, starts: 0, waiting: 0 };
  const core = new Scheduler();
  for (let k = 0; k < WARM_UP.plans; k++) {
    const snapshot = buildSnapshot({ now: new Date(now.getTime() + k * 1000), tenants, usage: [], nodes, pending, running, heardSince: now, halfLifeSeconds, policy });
    const plan = core.plan(snapshot);
    last = { pending: snapshot.pending.length, starts: plan.starts.length, waiting: plan.pending.length };
  }
  return last;
}
