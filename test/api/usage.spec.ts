/**
 * Accounting through the API (issue 15): prices by period (a job spanning a price change is
 * charged each side at its own price; a tenant's contract price wins), usage by any grouping
 * in JSON and CSV, running jobs accruing up to now, monthly statements, history, quota, and
 * who may see what (another tenant: 404; a colleague's cost: only for tenant admins).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LedgerRepository } from '@nuri/db';
import { Clock } from '../../apps/server/src/core/clock';
import { PricesService } from '../../apps/server/src/api';
import { IdlePolicyEnforcer } from '../../apps/server/src/gateway/idle-policy';
import { outcomeOf } from '../../apps/server/src/lifecycle/job-lifecycle';
import { Harness, job } from './harness';

class ManualClock extends Clock {
  constructor(public t = Date.parse('2026-11-29T09:00:00Z')) {
    super();
  }
  now(): Date {
    return new Date(this.t);
  }
  set(iso: string): void {
    this.t = Date.parse(iso);
  }
}

const at = (iso: string) => new Date(iso);

describe('usage, prices and statements', () => {
  const clock = new ManualClock();
  const h = new Harness('postgres', { clock });
  const ids: Record<string, string> = {};
  let ledger: LedgerRepository;

  /** Submits as `who`, runs on `node` GPUs from `start` to `end` (ISO), ending `state`. */
  async function ran(who: string, node: string, gpus: number[], start: string, end: string | null, state: 'completed' | 'failed' = 'completed') {
    const j = (await h.call(who, 'POST', '/v1/jobs', job({ gpus: gpus.length, name: `${who}-job` }))).body;
    await h.start_(j.id, node, gpus, at(start));
    if (end) expect(await h.jobs.transition(j.id, ['running'], state, 'exit', at(end), { exit_code: state === 'completed' ? 0 : 3 })).toBe(true);
    return j.id as string;
  }

  beforeAll(async () => {
    await h.start();
    await h.seed();
    ledger = new LedgerRepository(h.db.db);
    const prices = [
      { gpuType: 'h100', effectiveFrom: '2026-11-29', usdPerGpuHour: 3 },
      { gpuType: 'h100', effectiveFrom: '2026-12-01', usdPerGpuHour: 4 },
      { gpuType: 'h100', tenant: 'kakao', effectiveFrom: '2026-11-29', usdPerGpuHour: 2.5 },
    ];
    expect((await h.call('op', 'PUT', '/v1/prices', { prices })).status).toBe(200);
    // alice: 2 GPUs from Nov 30 12:00 to Dec 1 06:00 — 12 h at 3.00, 6 h at 4.00.
    ids.alice = await ran('alice', 'h100-0', [0, 1], '2026-11-30T12:00:00Z', '2026-12-01T06:00:00Z');
    // ann: 1 GPU, Dec 1 00:00 to 02:00, failed with exit 3.
    ids.ann = await ran('ann', 'h100-1', [0], '2026-12-01T00:00:00Z', '2026-12-01T02:00:00Z', 'failed');
    // bob (kakao, contract 2.50 on both sides of the default's change): 4 GPUs, Nov 30 18:00 to Dec 1 06:00.
    ids.bob = await ran('bob', 'h100-2', [0, 1, 2, 3], '2026-11-30T18:00:00Z', '2026-12-01T06:00:00Z');
    clock.set('2026-12-01T10:00:00Z');
  });
  afterAll(() => h.stop());

  it('refuses a price that would reprice the past, naming the field', async () => {
    const r = await h.call('op', 'PUT', '/v1/prices', { prices: [{ gpuType: 'h800', effectiveFrom: '2026-11-30', usdPerGpuHour: 2 }] });
    expect(r.status).toBe(400);
    expect(r.body.issues[0]).toMatchObject({ field: 'prices.0.effectiveFrom' });
    expect((await h.call('op', 'PUT', '/v1/prices', { prices: [{ gpuType: 'h800', effectiveFrom: '2026-12-01', usdPerGpuHour: -1 }] })).body.issues[0].field).toBe('prices.0.usdPerGpuHour');
    expect((await h.call('op', 'PUT', '/v1/prices', { prices: [{ gpuType: 'h800', tenant: 'nope', effectiveFrom: '2026-12-02', usdPerGpuHour: 1 }] })).body.issues[0].field).toBe('prices.0.tenant');
    expect((await h.call('nadmin', 'PUT', '/v1/prices', { prices: [{ gpuType: 'h800', effectiveFrom: '2026-12-02', usdPerGpuHour: 1 }] })).status).toBe(403);
    // A tenant sees the defaults and its own contract, not another tenant's.
    const naver = (await h.call('alice', 'GET', '/v1/prices')).body;
    expect(naver.map((p: any) => p.tenant)).not.toContain('kakao');
    expect((await h.call('bob', 'GET', '/v1/prices')).body.map((p: any) => p.tenant)).toContain('kakao');
  });

  it('charges each side of a price change at its own price, and a contract price over the default', async () => {
    const r = await h.call('op', 'GET', '/v1/usage?from=2026-11-01&to=2027-01-01&groupBy=tenant,month');
    expect(r.status).toBe(200);
    const row = (t: string, m: string) => r.body.rows.find((x: any) => x.tenant === t && x.month === m);
    expect(row('naver', '2026-11')).toMatchObject({ gpuHours: 24 });
    expect(row('naver', '2026-11').cost).toBeCloseTo(72, 9);
    expect(row('naver', '2026-12').gpuHours).toBeCloseTo(12 + 2, 9);
    expect(row('naver', '2026-12').cost).toBeCloseTo(14 * 4, 9);
    expect(row('kakao', '2026-11').gpuHours).toBeCloseTo(24, 9);
    expect(row('kakao', '2026-11').cost).toBeCloseTo(24 * 2.5, 9);
    expect(row('kakao', '2026-12').cost).toBeCloseTo(24 * 2.5, 9);
    expect(r.body.total.gpuHours).toBeCloseTo(24 + 14 + 48, 9);

    const s = await h.call('nadmin', 'GET', '/v1/tenants/naver/statement?month=2026-12');
    expect(s.status).toBe(200);
    expect(s.body.lines).toEqual([
      expect.objectContaining({ gpuType: 'h100', from: '2026-12-01', to: '2026-12-02', usdPerGpuHour: 4, priceEffectiveFrom: '2026-12-01', contract: false }),
    ]);
    expect(s.body.total.cost).toBeCloseTo(56, 9);
    const nov = (await h.call('op', 'GET', '/v1/tenants/kakao/statement?month=2026-11')).body;
    expect(nov.lines).toEqual([expect.objectContaining({ usdPerGpuHour: 2.5, contract: true, from: '2026-11-30', to: '2026-12-01' })]);
    expect(nov.total.gpuHours).toBeCloseTo(24, 9);
  });

  it('groups by job from the attempts themselves, and agrees with the daily rollup', async () => {
    const byJob = (await h.call('op', 'GET', '/v1/usage?from=2026-11-01&to=2027-01-01&groupBy=job')).body;
    const byTenant = (await h.call('op', 'GET', '/v1/usage?from=2026-11-01&to=2027-01-01&groupBy=tenant')).body;
    expect(byJob.total.gpuHours).toBeCloseTo(byTenant.total.gpuHours, 9);
    expect(byJob.total.cost).toBeCloseTo(byTenant.total.cost, 9);
    expect(byJob.rows.find((x: any) => x.job === ids.alice)).toMatchObject({ jobName: 'alice-job', gpuHours: 36 });
    expect(byJob.rows.find((x: any) => x.job === ids.alice).cost).toBeCloseTo(24 * 3 + 12 * 4, 9);
    // A range cuts attempts at its bounds.
    const day = (await h.call('op', 'GET', '/v1/usage?from=2026-12-01&to=2026-12-02&groupBy=job,day')).body;
    expect(day.rows.find((x: any) => x.job === ids.alice)).toMatchObject({ day: '2026-12-01', gpuHours: 12 });
  });

  it('counts a running job up to now, and answers CSV', async () => {
    const id = await ran('ann', 'h100-3', [0, 1, 2], '2026-12-01T09:00:00Z', null);
    const r = (await h.call('nadmin', 'GET', '/v1/usage?from=2026-12-01&to=2026-12-02&groupBy=user')).body;
    expect(r.asOf).toBe('2026-12-01T10:00:00.000Z');
    expect(r.rows.find((x: any) => x.user === 'ann').gpuHours).toBeCloseTo(2 + 3, 9);
    clock.set('2026-12-01T11:00:00Z');
    expect((await h.call('nadmin', 'GET', '/v1/usage?from=2026-12-01&to=2026-12-02&groupBy=user')).body.rows.find((x: any) => x.user === 'ann').gpuHours).toBeCloseTo(2 + 6, 9);
    const q = (await h.call('nadmin', 'GET', '/v1/usage/quota')).body;
    expect(q).toMatchObject({ tenant: 'naver', month: '2026-12', monthOf: 'tenant' });
    expect(q.types.find((t: any) => t.gpuType === 'h100')).toMatchObject({ held: 3, guaranteed: 16, limit: 32 });
    expect(q.types.find((t: any) => t.gpuType === 'h100').monthGpuHours).toBeCloseTo(12 + 2 + 6, 9);
    expect((await h.call('alice', 'GET', '/v1/usage/quota')).body).toMatchObject({ monthOf: 'user' });
    expect((await h.call('alice', 'GET', '/v1/usage/quota')).body.types[0].monthGpuHours).toBeCloseTo(12, 9);
    await h.jobs.transition(id, ['running'], 'completed', 'exit', at('2026-12-01T11:00:00Z'), { exit_code: 0 });

    const csv = await h.call('nadmin', 'GET', '/v1/usage?from=2026-11-01&to=2027-01-01&groupBy=user,month', undefined, { accept: 'text/csv' });
    expect(csv.status).toBe(200);
    const lines = String(csv.body).trim().split('\r\n');
    expect(lines[0]).toBe('user,month,gpuHours,cost,idleGpuHours,idleCost,unpricedGpuHours');
    expect(lines).toContain('alice,2026-11,24,72,0,0,0');
    const st = await h.call('nadmin', 'GET', '/v1/tenants/naver/statement?month=2026-11', undefined, { accept: 'text/csv' });
    expect(String(st.body).split('\r\n')[1]).toBe('naver,2026-11,h100,2026-11-30,2026-12-01,3,2026-11-29,false,24,72,0,0,USD');
  });

  it('lists finished jobs with elapsed, GPU-hours, cost and exit code, and counts a requeued job once per attempt', async () => {
    const j = (await h.call('alice', 'POST', '/v1/jobs', job({ gpus: 1, name: 'requeued' }))).body;
    await h.start_(j.id, 'h100-0', [4], at('2026-12-01T08:00:00Z'));
    expect(await h.jobs.transition(j.id, ['running'], 'pending', 'preempted; requeued', at('2026-12-01T08:30:00Z'))).toBe(true);
    // The transition closed attempt 1; a second close (a resent exit) charges nothing more.
    expect(await h.jobs.transition(j.id, ['running'], 'failed', 'late', at('2026-12-01T09:00:00Z'))).toBe(false);
    await h.start_(j.id, 'h100-0', [5], at('2026-12-01T09:00:00Z'));
    await h.jobs.transition(j.id, ['running'], 'completed', 'exit code 0', at('2026-12-01T10:00:00Z'), { exit_code: 0 });
    const attempts = await ledger.attemptsOf(j.id);
    expect(attempts.map((a) => [a.attempt, a.started_at.toISOString(), a.ended_at?.toISOString(), a.end_state])).toEqual([
      [1, '2026-12-01T08:00:00.000Z', '2026-12-01T08:30:00.000Z', 'pending'],
      [2, '2026-12-01T09:00:00.000Z', '2026-12-01T10:00:00.000Z', 'completed'],
    ]);
    const hist = (await h.call('alice', 'GET', '/v1/usage/history?from=2026-11-01')).body;
    const row = hist.find((x: any) => x.id === j.id);
    expect(row).toMatchObject({ name: 'requeued', state: 'completed', exitCode: 0, attempts: 2, elapsedSeconds: 5400, gpuHours: 1.5 });
    expect(row.cost).toBeCloseTo(1.5 * 4, 9);
    expect(hist.find((x: any) => x.id === ids.alice)).toMatchObject({ elapsedSeconds: 18 * 3600, gpuHours: 36, exitCode: 0 });
    // alice sees her own jobs only; her tenant admin sees ann's too.
    expect(hist.every((x: any) => x.user === 'alice')).toBe(true);
    const all = (await h.call('nadmin', 'GET', '/v1/usage/history')).body;
    expect(all.find((x: any) => x.id === ids.ann)).toMatchObject({ state: 'failed', exitCode: 3, gpuHours: 2 });
  });

  it('exports the price in effect per tenant and type for the cost dashboard', async () => {
    await h.service(PricesService).exportPrices();
    const text = await (await fetch(`${h.server.url}/metrics`)).text();
    expect(text).toMatch(/^nuri_tenant_gpu_price_usd_per_gpu_hour\{tenant="naver",gpu_type="h100"\} 4$/m);
    expect(text).toMatch(/^nuri_tenant_gpu_price_usd_per_gpu_hour\{tenant="kakao",gpu_type="h100"\} 2.5$/m);
  });

  it('lists running jobs holding idle GPUs, idle longest first, with their cost so far', async () => {
    const busy = await ran('alice', 'h100-1', [6], '2026-12-01T10:00:00Z', null);
    const idle = await ran('ann', 'h100-2', [6, 7], '2026-12-01T10:00:00Z', null);
    clock.set('2026-12-01T12:00:00Z');
    await ledger.addTelemetry(
      [
        { jobId: idle, attempt: 1, sampledGpuSeconds: 2 * 7200, busyGpuSeconds: 100, idleGpuSeconds: 2 * 5400, idleSince: at('2026-12-01T10:30:00Z') },
        { jobId: busy, attempt: 1, sampledGpuSeconds: 7200, busyGpuSeconds: 6800, idleGpuSeconds: 0, idleSince: null },
      ],
      at('2026-12-01T12:00:00Z'),
    );
    const list = (await h.call('op', 'GET', '/v1/usage/idle-jobs')).body;
    expect(list.map((j: any) => j.id)).toEqual([idle]);
    expect(list[0]).toMatchObject({ user: 'ann', tenant: 'naver', gpus: 2, idleSince: '2026-12-01T10:30:00.000Z', idleSeconds: 5400, idleGpuHours: 3, idleShare: 0.75, gpuHours: 4 });
    expect(list[0].costSoFar).toBeCloseTo(4 * 4, 9);
    expect(list[0].idleCostSoFar).toBeCloseTo(3 * 4, 9);
    expect((await h.call('kadmin', 'GET', '/v1/usage/idle-jobs')).body).toEqual([]);
    // Idle time reaches usage on the day it was stored.
    const u = (await h.call('nadmin', 'GET', '/v1/usage?from=2026-12-01&to=2026-12-02&groupBy=user')).body;
    expect(u.rows.find((r: any) => r.user === 'ann').idleGpuHours).toBeCloseTo(3, 9);
    expect(u.rows.find((r: any) => r.user === 'ann').idleCost).toBeCloseTo(12, 9);
    // The history shows the mean utilization once the job ends.
    await h.jobs.transition(busy, ['running'], 'completed', 'exit', at('2026-12-01T12:00:00Z'), { exit_code: 0 });
    const hist = (await h.call('alice', 'GET', '/v1/usage/history')).body;
    expect(hist.find((x: any) => x.id === busy).meanUtilization).toBeCloseTo(6800 / 7200, 9);
    await h.jobs.transition(idle, ['running'], 'cancelled', 'test', at('2026-12-01T12:00:00Z'));
  });

  it("applies a tenant's idle policy: a notice on the job, then a cancel whose reason the end keeps", async () => {
    expect((await h.call('nadmin', 'GET', '/v1/tenants/naver/idle-policy')).body).toEqual({ tenant: 'naver', notifyAfterSeconds: null, cancelAfterSeconds: null });
    const policy = { notifyAfterSeconds: 1800, cancelAfterSeconds: 3600 };
    expect((await h.call('alice', 'PUT', '/v1/tenants/naver/idle-policy', policy)).status).toBe(403);
    expect((await h.call('kadmin', 'PUT', '/v1/tenants/naver/idle-policy', policy)).status).toBe(404);
    const bad = await h.call('nadmin', 'PUT', '/v1/tenants/naver/idle-policy', { notifyAfterSeconds: 3600, cancelAfterSeconds: 1800 });
    expect(bad.body.issues[0].field).toBe('cancelAfterSeconds');
    expect((await h.call('nadmin', 'PUT', '/v1/tenants/naver/idle-policy', policy)).status).toBe(200);
    expect((await h.call('alice', 'GET', '/v1/tenants/naver/idle-policy')).body).toMatchObject(policy);

    const idle = await ran('ann', 'h100-3', [4], '2026-12-01T11:00:00Z', null);
    const elsewhere = await ran('bob', 'h100-3', [5], '2026-12-01T11:00:00Z', null); // kakao: no policy
    const enforcer = new IdlePolicyEnforcer(ledger);
    const told = (id: string) => ({ jobId: id, attempt: 1, sampledGpuSeconds: 60, busyGpuSeconds: 0, idleGpuSeconds: 60, idleSince: at('2026-12-01T11:20:00Z') });
    await ledger.addTelemetry([told(idle), told(elsewhere)], at('2026-12-01T12:00:00Z'));
    expect(await enforcer.run(at('2026-12-01T12:00:00Z'))).toEqual({ notified: [idle], cancelled: [], busyAgain: [] });
    const noticed = (await h.call('ann', 'GET', `/v1/jobs/${idle}`)).body;
    expect(noticed.state).toBe('running');
    expect(noticed.reason).toMatch(/idle.*since 2026-12-01T11:20:00.000Z; it will be cancelled at 2026-12-01T12:20:00.000Z/);
    // Busy again: the notice is taken back, and the job no longer says it will be cancelled.
    await ledger.addTelemetry([{ ...told(idle), busyGpuSeconds: 60, idleGpuSeconds: 0, idleSince: null }], at('2026-12-01T12:02:00Z'));
    expect(await enforcer.run(at('2026-12-01T12:03:00Z'))).toEqual({ notified: [], cancelled: [], busyAgain: [idle] });
    expect((await h.call('ann', 'GET', `/v1/jobs/${idle}`)).body.reason).toBeNull();
    // Idle again (since 11:20 as before, for the cancel below): told again, once.
    await ledger.addTelemetry([told(idle)], at('2026-12-01T12:04:00Z'));
    expect(await enforcer.run(at('2026-12-01T12:05:00Z'))).toEqual({ notified: [idle], cancelled: [], busyAgain: [] });
    expect(await enforcer.run(at('2026-12-01T12:10:00Z'))).toEqual({ notified: [], cancelled: [], busyAgain: [] });
    expect(await enforcer.run(at('2026-12-01T12:21:00Z'))).toEqual({ notified: [], cancelled: [idle], busyAgain: [] });
    expect(await h.jobs.find(idle)).toMatchObject({ state: 'running', stop_requested: 'cancel' });
    // The agent's exit after the stop ends it cancelled, with the policy's reason.
    const exit = { kind: 'exited' as const, jobId: idle, exitCode: null, signal: 'SIGTERM', cause: 'cancelled' as const, attempt: 1 };
    await h.jobs.finishRun(idle, { attempt: 1 }, (row) => outcomeOf(row, exit), at('2026-12-01T12:21:05Z'));
    const ended = (await h.call('ann', 'GET', `/v1/jobs/${idle}`)).body;
    expect(ended.state).toBe('cancelled');
    expect(ended.reason).toMatch(/^cancelled by the tenant idle policy after every GPU sat idle for 61 min \(the tenant's limit: 60 min\) \(killed by SIGTERM\)$/);
    expect((await h.jobs.find(elsewhere))!.stop_requested).toBeNull();
    await h.jobs.transition(elsewhere, ['running'], 'completed', 'exit', at('2026-12-01T12:21:05Z'));
  });

  it('keeps other tenants and colleagues out', async () => {
    expect((await h.call('kadmin', 'GET', '/v1/tenants/naver/statement?month=2026-12')).status).toBe(404);
    expect((await h.call('bob', 'GET', '/v1/tenants/naver/statement?month=2026-12')).status).toBe(404);
    expect((await h.call('kadmin', 'GET', '/v1/usage?tenant=naver')).status).toBe(404);
    expect((await h.call('kadmin', 'GET', '/v1/usage?user=alice')).status).toBe(404);
    expect((await h.call('bob', 'GET', '/v1/usage/history?user=alice')).status).toBe(404);
    expect((await h.call('kadmin', 'GET', `/v1/usage?job=${ids.alice}`)).status).toBe(404);
    expect((await h.call('kadmin', 'GET', '/v1/usage/quota?tenant=naver')).status).toBe(404);
    // A researcher: not a colleague's usage, not the tenant's statement.
    expect((await h.call('alice', 'GET', '/v1/usage?user=ann')).status).toBe(403);
    expect((await h.call('alice', 'GET', '/v1/usage/history?user=ann')).status).toBe(403);
    expect((await h.call('alice', 'GET', '/v1/tenants/naver/statement?month=2026-12')).status).toBe(403);
    expect((await h.call('alice', 'GET', '/v1/usage/idle-jobs')).status).toBe(403);
    const mine = (await h.call('alice', 'GET', '/v1/usage?from=2026-11-01&to=2027-01-01&groupBy=user')).body;
    expect(mine.rows.map((r: any) => r.user)).toEqual(['alice']);
    // Tenant-wide reads of a kakao admin hold only kakao.
    const k = (await h.call('kadmin', 'GET', '/v1/usage?from=2026-11-01&to=2027-01-01&groupBy=tenant')).body;
    expect(k.rows.map((r: any) => r.tenant)).toEqual(['kakao']);
    expect((await h.call('nadmin', 'GET', '/v1/usage?user=ann&from=2026-12-01')).status).toBe(200);
  });

  it('answers bad input with the field and the rule', async () => {
    const bad = async (q: string, field: string) => {
      const r = await h.call('op', 'GET', `/v1/usage?${q}`);
      expect(r.status).toBe(400);
      expect(r.body.issues[0].field).toBe(field);
    };
    await bad('groupBy=tenant,colour', 'groupBy');
    await bad('groupBy=day,day', 'groupBy');
    await bad('from=2026-02-30', 'from');
    await bad('from=2026-12-05&to=2026-12-01', 'to');
    await bad('gpuType=a100', 'gpuType');
    expect((await h.call('op', 'GET', '/v1/tenants/naver/statement?month=2026-13')).body.issues[0].field).toBe('month');
  });
});
