/**
 * A fresh demo, a job run to its end, then /metrics: every per-tenant family a dashboard
 * panel reads is there, at 0 where nothing is happening, instead of absent ("No data").
 * The issue as an operator met it: nuri_scheduler_jobs, nuri_scheduler_oldest_pending_age_seconds,
 * nuri_tenant_gpu_seconds_total and nuri_tenant_idle_allocated_gpus missing after a job ran.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findSamples, parseExposition } from '@nuri/metrics';
import { startServer, type RunningServer } from '../../apps/server/src/bootstrap';
import { createTestDatabase, type TestDatabase } from '../../libs/db/src/testing';
import { demoCenterConfig } from '../support/config';
import { apiClient, until } from '../support/http';

const TENANTS = ['naver', 'kakao', 'lg-ai', 'skt', 'kt'];

describe('/metrics after a job ran on a fresh demo: zeros, not gaps', () => {
  let db: TestDatabase;
  let server: RunningServer;
  let work: string;
  const api = apiClient(() => server.url);

  beforeAll(async () => {
    db = await createTestDatabase();
    work = mkdtempSync(join(tmpdir(), 'nuri-zero-series-'));
    server = await startServer(demoCenterConfig(db.url, join(work, 'agents'), { NURI_SCHEDULER_TICK_MS: '300', NURI_SAMPLE_INTERVAL_MS: '500' }));
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('exports every tenant\'s jobs, oldest pending age, GPU-seconds and idle allocated GPUs, 0 where idle', async () => {
    const token = server.demo!.researcherToken;
    const r = await api(token, 'POST', '/v1/jobs', { name: 'zero', gpus: 1, gpuType: 'h100', timeLimitSeconds: 60, command: ['true'] });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    await until('the job completed', async () => (await api(token, 'GET', `/v1/jobs/${r.body.id}`)).body.state === 'completed', 30_000);
    // A few passes after the end (the live jobs gauge refreshes at most every 5 s).
    const scrape = async () => parseExposition(await (await fetch(`${server.url}/metrics`)).text());
    const p = await until(
      'a pass after the end with no running job',
      async () => {
        const s = await scrape();
        const running = findSamples(s, 'nuri_scheduler_jobs', { tenant: 'naver', state: 'running', gpu_type: 'h100' });
        // The gauges start at 0: wait for the pass that counted the job's GPU time too.
        const used = findSamples(s, 'nuri_tenant_gpu_seconds_total', { tenant: 'naver', gpu_type: 'h100' });
        return running.length === 1 && running[0]!.value === 0 && (used[0]?.value ?? 0) > 0 ? s : undefined;
      },
      20_000,
      300,
    );
    for (const tenant of TENANTS) {
      for (const state of ['pending', 'running']) {
        const s = findSamples(p, 'nuri_scheduler_jobs', { tenant, state });
        expect(s.map((x) => x.labels.gpu_type).sort(), `${tenant} ${state}`).toEqual(['any', 'h100', 'h800']);
        for (const x of s) expect(x.value).toBe(0);
      }
      const oldest = findSamples(p, 'nuri_scheduler_oldest_pending_age_seconds', { tenant });
      expect(oldest.length, `${tenant} oldest pending`).toBeGreaterThan(0);
      for (const x of oldest) expect(x.value).toBe(0);
      expect(findSamples(p, 'nuri_tenant_gpu_seconds_total', { tenant }).map((x) => x.labels.gpu_type).sort(), `${tenant} GPU-seconds`).toEqual(['h100', 'h800']);
      expect(findSamples(p, 'nuri_tenant_idle_allocated_gpus', { tenant }).map((x) => x.value), `${tenant} idle allocated`).toEqual([0]);
    }
    // The tenant whose job ran has its GPU time counted; the others stay at 0.
    expect(findSamples(p, 'nuri_tenant_gpu_seconds_total', { tenant: 'naver', gpu_type: 'h100' })[0]!.value).toBeGreaterThan(0);
    expect(findSamples(p, 'nuri_tenant_gpu_seconds_total', { tenant: 'kt', gpu_type: 'h100' })[0]!.value).toBe(0);
    // The transition that happened is counted, the ones that did not are there at 0.
    expect(findSamples(p, 'nuri_scheduler_job_transitions_total', { tenant: 'naver', gpu_type: 'h100', from: 'running', to: 'completed' })[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_scheduler_job_transitions_total', { tenant: 'kt', gpu_type: 'h100', from: 'running', to: 'completed' })[0]!.value).toBe(0);
  }, 90_000);
});
