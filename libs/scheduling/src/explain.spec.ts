import { describe, expect, it } from 'vitest';
import { messages } from './explain';
import type { PendingJob } from './types';

/** What researchers read in `nuri show` and the API's `reason`: the exact words, one case per sentence. */
const job = (gpus: number, gpuType: PendingJob['gpuType'] = 'h100'): PendingJob => ({ id: 'j1', tenantId: 't', gpus, gpuType, priority: 1, submittedAt: 0, timeLimitSeconds: 3600 });
const AT = Date.UTC(2026, 11, 3, 15, 0, 0);

describe('pending reasons, word for word', () => {
  it('has a case below for every sentence (a new one needs its own)', () => {
    expect(Object.keys(messages).sort()).toEqual(
      ['behind', 'heldForLarger', 'limitHeld', 'nextInLine', 'noNodeOfType', 'nodesUnavailable', 'overLimit', 'preempted', 'reclaim', 'strictOrder'].sort(),
    );
  });

  it('no node of the type', () => {
    expect(messages.noNodeOfType(job(8, 'h800'))).toBe('No H800 node exists in this cluster; resubmit with gpuType "any" or another type.');
  });

  it('nodes unavailable, for one node and for whole nodes', () => {
    expect(messages.nodesUnavailable(job(4))).toBe(
      'No H100 node in service has 4 healthy GPUs (nodes are drained, down or have failed GPUs); ask an operator or request fewer GPUs.',
    );
    expect(messages.nodesUnavailable(job(16, 'any'))).toBe(
      'Not enough nodes with all 8 GPUs healthy are in service (others are drained, down or have failed GPUs) for 2 whole nodes; ask an operator or request fewer GPUs.',
    );
  });

  it('over the quota limit', () => {
    expect(messages.overLimit(job(8), 'kakao', 'H100: 60 of 64 GPUs held')).toBe(
      "Tenant kakao is at its quota limit (H100: 60 of 64 GPUs held); this job needs 8 H100 GPUs and starts when the tenant's running jobs free enough, or when an operator raises the limit.",
    );
  });

  it('reclaiming the guarantee: preempting, then waiting for the preempted to stop', () => {
    expect(messages.reclaim(job(8), 'h100', 2, 30)).toBe(
      "Within the tenant's guaranteed H100 capacity: preempting 2 jobs running on borrowed capacity; starts after their 30s grace period.",
    );
    expect(messages.reclaim(job(8), 'h100', 1, 30)).toBe(
      "Within the tenant's guaranteed H100 capacity: preempting 1 job running on borrowed capacity; starts after their 30s grace period.",
    );
    expect(messages.reclaim(job(8), 'h800', 0, 30)).toBe("Within the tenant's guaranteed H800 capacity: waiting for preempted jobs to stop (at most 30s).");
  });

  it('next in line, with the reservation time', () => {
    expect(messages.nextInLine(job(1), 'h100', AT)).toBe(
      'Next in line for 1 H100 GPU: GPUs are reserved on H100 from 2026-12-03T15:00:00Z, when running jobs reach their time limits (earlier if they finish sooner).',
    );
  });

  it('behind higher-ranked jobs: exact up to 100, then two significant figures', () => {
    const tail = 'higher-ranked jobs (priority, fair share or age) wait for the same GPUs. A lower GPU count or shorter time limit may let it start sooner by backfill.';
    expect(messages.behind(job(2, 'any'), 1)).toBe(
      'Waiting for 2 GPUs: 1 higher-ranked job (priority, fair share or age) waits for the same GPUs. A lower GPU count or shorter time limit may let it start sooner by backfill.',
    );
    expect(messages.behind(job(2), 100)).toBe(`Waiting for 2 H100 GPUs: 100 ${tail}`);
    expect(messages.behind(job(2), 12_345)).toBe(`Waiting for 2 H100 GPUs: about 12000 ${tail}`);
  });

  it('held for a larger job, with and without a backfill window', () => {
    expect(messages.heldForLarger(job(1), 'big-job', AT, 1800)).toBe(
      'Free GPUs are held for job big-job, which starts at 2026-12-03T15:00:00Z; this job would delay it. With a time limit under 30 minutes it could start now by backfill.',
    );
    expect(messages.heldForLarger(job(1), 'big-job', AT, 30)).toBe(
      'Free GPUs are held for job big-job, which starts at 2026-12-03T15:00:00Z; this job would delay it. A shorter time limit would let it start by backfill.',
    );
  });

  it("the tenant's limit held for its older job", () => {
    expect(messages.limitHeld(job(4), 'naver', 'old-job', AT)).toBe(
      "Tenant naver's room under its quota limit is held for its older job old-job, which starts at 2026-12-03T15:00:00Z; this job (4 H100 GPUs) would run past that. With a shorter time limit it could start now.",
    );
  });

  it('strict submission order', () => {
    expect(messages.strictOrder(job(1), 1)).toBe('Strict submission order: waiting for 1 earlier job to start first.');
    expect(messages.strictOrder(job(1), 3)).toBe('Strict submission order: waiting for 3 earlier jobs to start first.');
  });

  it("a preempted job's reason", () => {
    expect(messages.preempted('h800', 'skt', 'urgent')).toBe(
      "Preempted: it ran on borrowed H800 capacity that tenant skt needs within its guarantee (job urgent); it goes back to the queue.",
    );
  });
});
