import { accrueUsage } from '@nuri/scheduling';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_KINDS, TestDatabase } from '../testing';
import { TenantsRepository } from './tenants.repository';
import { UsageRepository } from './usage.repository';

const t0 = new Date('2026-01-01T00:00:00Z');
const HOUR = 3600;
const at = (h: number) => new Date(t0.getTime() + h * HOUR * 1000);

// Fair-share usage as stored: decayed with the scheduling core's functions, on both database kinds.
describe.each(DATABASE_KINDS)('usage on %s', (_kind, open) => {
  let tdb: TestDatabase;
  let usage: UsageRepository;
  let tenantId: string;
  beforeAll(async () => {
    tdb = await open();
    usage = new UsageRepository(tdb.handle.db);
    tenantId = await new TenantsRepository(tdb.handle.db).create({ name: 'kakao', displayName: 'Kakao', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 16 }] });
  });
  afterAll(() => tdb?.drop());

  const row = async () => (await usage.all()).find((u) => u.tenantId === tenantId && u.gpuType === 'h100')!;

  it('stores a run decayed over its own length, then halves what was stored per half-life', async () => {
    // 8 GPUs for 2 hours with a 1-hour half-life: the first hour has halved by the end.
    await usage.add(tenantId, 'h100', { gpus: 8, seconds: 2 * HOUR }, at(2), HOUR);
    const first = await row();
    expect(first.total).toBe(8 * 2 * HOUR);
    expect(first.decayed).toBeCloseTo(accrueUsage(0, 8, 2 * HOUR, HOUR), 6);
    expect(first.decayed).toBeLessThan(first.total);
    expect(first.asOf).toEqual(at(2));
    // One half-life later a 1-GPU run of an hour ends.
    await usage.add(tenantId, 'h100', { gpus: 1, seconds: HOUR }, at(3), HOUR);
    const second = await row();
    expect(second.decayed).toBeCloseTo(first.decayed / 2 + accrueUsage(0, 1, HOUR, HOUR), 6);
    expect(second.total).toBe(8 * 2 * HOUR + HOUR);
    expect(second.asOf).toEqual(at(3));
  });

  it('adds a run reported out of order undecayed and keeps the later time', async () => {
    const before = await row();
    await usage.add(tenantId, 'h100', { gpus: 2, seconds: 60 }, at(1), HOUR);
    const after = await row();
    expect(after.decayed).toBeCloseTo(before.decayed + accrueUsage(0, 2, 60, HOUR), 6);
    expect(after.asOf).toEqual(before.asOf);
  });

  it('loses no run when several end at once', async () => {
    const before = await row();
    await Promise.all(Array.from({ length: 6 }, () => usage.add(tenantId, 'h100', { gpus: 1, seconds: 10 }, at(3), HOUR)));
    const after = await row();
    expect(after.total).toBe(before.total + 60);
    expect(after.decayed).toBeCloseTo(before.decayed + 6 * accrueUsage(0, 1, 10, HOUR), 6);
  });
});
