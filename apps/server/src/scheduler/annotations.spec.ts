import { describe, expect, it } from 'vitest';
import { waitReasonHash } from '@nuri/db';
import { driftScore, FlickerDamper, isDrift, staleBecause, type Annotation, type StoredAnnotation } from './annotations';

const annotationStale = (old: Annotation | undefined, next: Annotation, now: number) => staleBecause(old, next, now) !== null;

const NOW = Date.UTC(2026, 0, 1);
const a = (position: number | null, eta: number | null = null, reason = 'Over quota', code: Annotation['code'] = 'over_quota_limit'): Annotation => ({ code, reason, eta, position });
const behind = (position: number, ahead: number): Annotation => ({
  code: 'behind_higher_ranked',
  reason: `Waiting for 8 GPUs: ${ahead <= 100 ? ahead : `about ${ahead}`} higher-ranked jobs wait for the same GPUs.`,
  eta: null,
  position,
});

describe('annotationStale', () => {
  it('always rewrites a new job, a changed reason or code, and a position appearing or going', () => {
    expect(annotationStale(undefined, a(5000), NOW)).toBe(true);
    expect(annotationStale(a(5000), a(5000, null, 'other'), NOW)).toBe(true);
    expect(annotationStale(a(5000), a(5000, null, 'Over quota', 'waiting_for_reclaim'), NOW)).toBe(true);
    expect(annotationStale(a(5000), a(null), NOW)).toBe(true);
    expect(annotationStale(a(null), a(5000), NOW)).toBe(true);
  });

  it('keeps the first 100 positions exact and lets later ones drift by up to 10%', () => {
    expect(annotationStale(a(101), a(100), NOW)).toBe(true);
    expect(annotationStale(a(5000), a(5000), NOW)).toBe(false);
    expect(annotationStale(a(5000), a(4600), NOW)).toBe(false);
    expect(annotationStale(a(5000), a(4400), NOW)).toBe(true);
  });

  it('rewrites a "behind higher-ranked jobs" count with its position: exact near the head, within 10% beyond', () => {
    expect(annotationStale(behind(50, 40), behind(49, 39), NOW)).toBe(true);
    expect(annotationStale(behind(5000, 4200), behind(4950, 4100), NOW)).toBe(false);
    expect(annotationStale(behind(5000, 4200), behind(4400, 3600), NOW)).toBe(true);
    // Any other reason's sentence is exact.
    expect(annotationStale(a(5000, null, 'held for job a'), a(5000, null, 'held for job b'), NOW)).toBe(true);
  });

  it('compares a sentence read back as its hash as it compares the sentence itself', () => {
    const readBack = ({ reason, ...rest }: Annotation): StoredAnnotation => ({ ...rest, reason: null, reasonHash: waitReasonHash(reason) });
    const pairs: [Annotation, Annotation][] = [
      [a(5000, null, 'held for job a'), a(5000, null, 'held for job a')],
      [a(5000, null, 'held for job a'), a(5000, null, 'held for job b')],
      [a(5000), a(4600)],
      [behind(50, 40), behind(49, 39)],
      [behind(5000, 4200), behind(4950, 4100)],
      [behind(5000, 4200), behind(5000, 4200)],
    ];
    for (const [old, next] of pairs) expect(staleBecause(readBack(old), next, NOW)).toBe(staleBecause(old, next, NOW));
    expect(staleBecause(readBack(a(5000, null, 'held for job a')), a(5000, null, 'held for job b'), NOW)).toBe('reason');
    expect(staleBecause(readBack(a(5000, null, 'held for job a')), a(5000, null, 'held for job a'), NOW)).toBeNull();
  });

  it('rewrites an estimate that moved by more than a minute and 10% of the wait left', () => {
    const hour = 3600_000;
    expect(annotationStale(a(1, NOW + hour), a(1, NOW + hour + 59_000), NOW)).toBe(false);
    expect(annotationStale(a(1, NOW + 5 * 60_000), a(1, NOW + 6 * 60_000 + 1), NOW)).toBe(true);
    expect(annotationStale(a(1, NOW + 10 * hour), a(1, NOW + 10.5 * hour), NOW)).toBe(false);
    expect(annotationStale(a(1, NOW + 10 * hour), a(1, NOW + 12 * hour), NOW)).toBe(true);
    expect(annotationStale(a(1, NOW + hour), a(1, null), NOW)).toBe(true);
  });
});

describe('FlickerDamper', () => {
  const held: Annotation = { code: 'reservation_for_larger_job', reason: 'Free GPUs are held for job j1.', eta: null, position: 40 };
  const behindNow: Annotation = { code: 'behind_higher_ranked', reason: 'Waiting for 8 GPUs: 39 higher-ranked jobs wait for the same GPUs.', eta: null, position: 40 };

  it('writes a flip between "held for a larger job" and "behind higher-ranked" once it held for two passes in a row', () => {
    const d = new FlickerDamper();
    expect(d.settled('x', behindNow, held)).toBe(false); // pass 1: GPUs freed, held for j1
    expect(d.settled('x', behindNow, held)).toBe(true); // pass 2: still held: shown
  });

  it('never writes a flip undone at the next pass, and starts counting again after it', () => {
    const d = new FlickerDamper();
    expect(d.settled('x', behindNow, held)).toBe(false);
    d.forget('x'); // pass 2: back to what is stored (nothing to write)
    expect(d.settled('x', behindNow, held)).toBe(false); // pass 3: flipped again: not yet
    expect(d.settled('y', behindNow, held)).toBe(false);
    d.retain((id) => id !== 'y'); // y left the queue
    expect(d.settled('y', behindNow, held)).toBe(false);
  });

  it('writes any other change of reason at once', () => {
    const d = new FlickerDamper();
    const over: Annotation = { code: 'over_quota_limit', reason: 'Over quota', eta: null, position: null };
    expect(d.settled('x', over, behindNow)).toBe(true);
    expect(d.settled('x', behindNow, over)).toBe(true);
    expect(d.settled('x', undefined, held)).toBe(true);
  });
});

describe('what counts as drift, and how wrong it is', () => {
  it('is a position or an estimate past its slack, or a count of higher-ranked jobs moving with the position; never a new wait or a new reason', () => {
    expect(isDrift('position', 'over_quota_limit')).toBe(true);
    expect(isDrift('estimate', 'waiting_for_resources')).toBe(true);
    expect(isDrift('reason', 'behind_higher_ranked')).toBe(true);
    expect(isDrift('reason', 'over_quota_limit')).toBe(false);
    expect(isDrift('new', 'behind_higher_ranked')).toBe(false);
    expect(isDrift('code', 'behind_higher_ranked')).toBe(false);
  });

  it('scores a drifted wait by its error over its slack: the most wrong first, exact positions and values that came or went before all', () => {
    // Off by 20 % of the true position: twice the 10 % a position may drift.
    expect(driftScore(a(6000), null, 5000, NOW)).toBeCloseTo(2);
    expect(driftScore(a(12_000), null, 5000, NOW)).toBeCloseTo(14);
    // A tail position off by half beats a nearer one off by a fifth.
    expect(driftScore(a(20_000), null, 40_000, NOW)).toBeGreaterThan(driftScore(a(6000), null, 5000, NOW));
    expect(driftScore(a(99), null, 100, NOW)).toBe(Infinity);
    expect(driftScore(a(null), null, 5000, NOW)).toBe(Infinity);
    // An estimate an hour out that moved 30 minutes: 30 over the 6 minutes (10 %) it may drift.
    const hour = NOW + 3_600_000;
    expect(driftScore(a(null, hour), hour + 1_800_000, null, NOW)).toBeCloseTo(1_800_000 / (0.1 * 5_400_000));
    // Near ones may drift by a minute.
    expect(driftScore(a(null, NOW + 60_000), NOW + 180_000, null, NOW)).toBeCloseTo(2);
    expect(driftScore(a(null, NOW + 60_000), null, null, NOW)).toBe(Infinity);
    // Both moved: the worse of the two.
    expect(driftScore(a(6000, hour), hour + 1_800_000, 5000, NOW)).toBeCloseTo(1_800_000 / (0.1 * 5_400_000));
    expect(driftScore(a(12_000, hour), hour + 1_800_000, 5000, NOW)).toBeCloseTo(14);
  });
});
