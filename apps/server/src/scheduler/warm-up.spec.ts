import { schedule, type Snapshot } from '@nuri/scheduling';
import { eightGpuNode, smallFleet } from '@nuri/scheduling/testing/harness';
import { describe, expect, it } from 'vitest';
import { warmUpCore } from './warm-up';

const T0 = Date.UTC(2026, 0, 1);
const POLICY = { reservationDepth: 3, minRuntimeBeforePreemptSeconds: 600, preemptGraceSeconds: 60, preemption: true };

describe('warming the core up at boot', () => {
  it('plans a made-up center where jobs start and others wait, the same way every time', () => {
    const a = warmUpCore(POLICY, 3600);
    expect(a.pending).toBe(10_000);
    expect(a.starts).toBeGreaterThan(0);
    expect(a.waiting).toBeGreaterThan(a.starts);
    expect(warmUpCore(POLICY, 3600)).toEqual(a);
  });

  it('leaves nothing a later plan sees: the same snapshot gets the same plan before and after', () => {
    const { nodes, running } = smallFleet(3, 2, [{ tenant: 0, node: 0, gpus: 4, hours: 1 }, { tenant: 1, node: 3, gpus: 8, hours: 2 }], { submittedAt: T0 - 7_200_000 });
    const s: Snapshot = {
      now: T0,
      config: POLICY,
      tenants: [
        { id: 't0', name: 'a', weight: 1, decayedUsage: 0, quotas: { h100: { guaranteed: 8, limit: 24 } } },
        { id: 't1', name: 'b', weight: 2, decayedUsage: 0, quotas: { h800: { guaranteed: 8, limit: 16 } } },
      ],
      nodes: [...nodes, { ...eightGpuNode('h100-spare', 'h100'), schedulable: false }],
      running,
      pending: Array.from({ length: 40 }, (_, i) => ({ id: `p${i}`, tenantId: `t${i % 2}`, gpus: [1, 2, 4, 8, 16][i % 5]!, gpuType: (['h100', 'h800', 'any'] as const)[i % 3]!, priority: i % 4 === 0 ? 2 : 1, submittedAt: T0 - 60_000 + i * 1000, timeLimitSeconds: 3600 })),
    };
    const before = schedule(s);
    warmUpCore(POLICY, 3600);
    expect(schedule(s)).toEqual(before);
  });
});
