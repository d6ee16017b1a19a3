import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cmp } from './cluster';
import { buildColumns, sortOrder } from './ranking';
import { DEFAULT_POLICY_CONFIG } from './config';
import { PendingJob, Snapshot } from './types';

const job = fc.record({
  id: fc.string({ minLength: 1, maxLength: 4 }),
  tenantId: fc.constantFrom('a', 'b', 'c'),
  gpus: fc.constantFrom(1, 2, 8, 16),
  gpuType: fc.constantFrom('any' as const, 'h100' as const, 'h800' as const),
  priority: fc.integer({ min: -2, max: 3 }),
  submittedAt: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 2 ** 45 }), fc.double({ min: 0, max: 100, noNaN: true })),
  timeLimitSeconds: fc.constant(3600),
});

const snap = (pending: PendingJob[]): Snapshot => ({ now: 0, nodes: [], tenants: [], pending, running: [], config: DEFAULT_POLICY_CONFIG });

describe('sortOrder (packed numeric sort)', () => {
  it('orders exactly as the comparator (group, priority desc, submission, id)', () => {
    fc.assert(
      fc.property(fc.array(job, { maxLength: 60 }), fc.boolean(), fc.boolean(), (jobs, byGroup, byPriority) => {
        const unique = [...new Map(jobs.map((j) => [j.id, j])).values()];
        const c = buildColumns(snap(unique));
        const got = Array.from(sortOrder(c, byGroup, byPriority)).map((i) => unique[i]!.id);
        const want = [...unique]
          .sort(
            (a, b) =>
              (byGroup ? cmp(a.tenantId, b.tenantId) : 0) ||
              (byPriority ? b.priority - a.priority : 0) ||
              a.submittedAt - b.submittedAt ||
              cmp(a.id, b.id),
          )
          .map((j) => j.id);
        expect(got).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });
});
