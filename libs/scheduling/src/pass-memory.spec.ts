import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_CONFIG } from './config';
import { schedule } from './policy';
import { passMemoryJobs, reservePassMemory } from './ranking';
import { Scheduler } from './scheduler';
import { HOUR, smallFleet, T0 } from './testing/harness';
import type { Snapshot } from './types';

/** A queue of n jobs over three tenants (one over its limit), of mixed sizes and types, on 16 nodes. */
function queue(n: number): Snapshot {
  const { nodes, running } = smallFleet(8, 8, [], { submittedAt: T0 });
  const types = ['h100', 'h800', 'any'] as const;
  return {
    now: T0,
    nodes,
    running,
    tenants: [0, 1, 2].map((t) => ({ id: `t${t}`, name: `tenant-${t}`, weight: 1, decayedUsage: t * 1000, quotas: { h100: { guaranteed: 16, limit: t === 2 ? 8 : 64 }, h800: { guaranteed: 16, limit: 64 } } })),
    pending: Array.from({ length: n }, (_, i) => ({ id: `j${String(i).padStart(7, '0')}`, tenantId: `t${i % 3}`, gpus: [1, 2, 8, 16][i % 4]!, gpuType: types[i % 3]!, priority: i % 5 === 0 ? 2 : 1, submittedAt: T0 - (n - i) * 1000, timeLimitSeconds: HOUR * (1 + (i % 7)) })),
    config: DEFAULT_POLICY_CONFIG,
  };
}

describe('reservePassMemory', () => {
  it('holds nothing before a plan made its arrays, then grows them to the queue asked for without changing a plan', () => {
    reservePassMemory(1000);
    expect(passMemoryJobs()).toBe(0);
    new Scheduler().plan(queue(300));
    const made = passMemoryJobs();
    expect(made).toBeGreaterThanOrEqual(300);
    // A queue the arrays do not hold yet: planned after the reservation, it grows nothing.
    const big = queue(made * 2);
    reservePassMemory(made * 3);
    const reserved = passMemoryJobs();
    expect(reserved).toBeGreaterThanOrEqual(made * 3);
    const plan = new Scheduler().plan(big);
    expect(passMemoryJobs()).toBe(reserved);
    // The same plan as from scratch (the arrays' contents are never read before written).
    expect(plan).toEqual(schedule(big));
    expect(plan.starts.length).toBeGreaterThan(0);
    expect(plan.pending.length).toBeGreaterThan(0);
    // A reservation below what is held changes nothing.
    reservePassMemory(10);
    expect(passMemoryJobs()).toBe(reserved);
  });
});
