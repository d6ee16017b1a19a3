import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { apiClient } from '../support/http';
import { demoCenterConfig } from '../support/config';

/**
 * The product as a user meets it: the whole center in one process (API, scheduler,
 * gateway, simulated fleet over real WebSocket) on a real PostgreSQL, driven over HTTP
 * with tokens, running real processes.
 */
describe('a running center', () => {
  let db: TestDatabase;
  let server: RunningServer;
  let work: string;
  let naver: string;
  let kakao: string;

  const api = apiClient(() => server.url);
  const submit = (token: string, spec: Record<string, unknown>) =>
    api(token, 'POST', '/v1/jobs', { name: 'e2e', gpus: 1, gpuType: 'h100', timeLimitSeconds: 60, ...spec });
  const waitFor = async (token: string, id: string, pred: (j: any) => boolean, ms = 20_000) => {
    const until = Date.now() + ms;
    for (;;) {
      const { body } = await api(token, 'GET', `/v1/jobs/${id}`);
      if (pred(body)) return body;
      if (Date.now() > until) throw new Error(`job ${id} stuck in ${body.state}: ${JSON.stringify(body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    work = mkdtempSync(join(tmpdir(), 'nuri-e2e-'));
    const config = demoCenterConfig(db.url, work, { NURI_SCHEDULER_TICK_MS: '500', NURI_SAMPLE_INTERVAL_MS: '500', NURI_TIMEOUT_GRACE_SECONDS: '1' });
    server = await startServer(config);
    naver = server.demo!.researcherToken;
    const issued = await api(server.demo!.operatorToken, 'POST', '/v1/tokens', { user: 'kakao-researcher' });
    expect(issued.status).toBe(201);
    kakao = issued.body.token;
    await server.demo!.agents[0]!.waitFor(() => server.demo!.agents.every((a) => a.stats().connected));
  });
  afterAll(async () => {
    await server?.close();
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('runs a job as a real process on an agent and records its exit code', async () => {
    const { status, body } = await submit(naver, { command: ['sh', '-c', 'test -n "$CUDA_VISIBLE_DEVICES" && sleep 0.3'] });
    expect(status).toBe(201);
    const done = await waitFor(naver, body.id, (j) => j.state === 'completed');
    expect(done).toMatchObject({ exitCode: 0, placement: [{ node: expect.stringMatching(/^h100-/), gpus: [expect.any(Number)] }] });
    expect(done.transitions.map((t: any) => t.to)).toEqual(['pending', 'running', 'completed']);
  });

  it('marks a non-zero exit failed with its code', async () => {
    const { body } = await submit(naver, { command: ['sh', '-c', 'exit 3'] });
    const done = await waitFor(naver, body.id, (j) => j.state === 'failed');
    expect(done.exitCode).toBe(3);
  });

  it('ends a job past its time limit as timeout', async () => {
    const { body } = await submit(naver, { command: ['sleep', '30'], timeLimitSeconds: 1 });
    const done = await waitFor(naver, body.id, (j) => j.state === 'timeout');
    expect(done.reason).toMatch(/time limit of 1s/);
  });

  it('cancels a running job through its agent', async () => {
    const { body } = await submit(naver, { command: ['sleep', '30'] });
    await waitFor(naver, body.id, (j) => j.state === 'running');
    const c = await api(naver, 'POST', `/v1/jobs/${body.id}/cancel`);
    expect(c.status).toBe(202);
    const done = await waitFor(naver, body.id, (j) => j.state === 'cancelled');
    expect(done.reason).toMatch(/cancelled by user/);
    expect((await api(naver, 'POST', `/v1/jobs/${body.id}/cancel`)).status).toBe(409);
  });

  it('runs an 8-GPU gang on one node and a 16-GPU job on two whole nodes', async () => {
    const eight = await submit(naver, { gpus: 8, command: ['sleep', '0.2'] });
    const done8 = await waitFor(naver, eight.body.id, (j) => j.state === 'completed');
    expect(done8.placement).toEqual([{ node: expect.any(String), gpus: [0, 1, 2, 3, 4, 5, 6, 7] }]);
    const sixteen = await submit(naver, { gpus: 16, command: ['sleep', '0.2'] });
    const done16 = await waitFor(naver, sixteen.body.id, (j) => j.state === 'completed');
    expect(done16.placement).toHaveLength(2);
  });

  it('keeps tenants apart', async () => {
    const { body } = await submit(naver, { command: ['true'] });
    expect((await api(kakao, 'GET', `/v1/jobs/${body.id}`)).status).toBe(404);
    expect((await api(kakao, 'POST', `/v1/jobs/${body.id}/cancel`)).status).toBe(404);
    const list = await api(kakao, 'GET', '/v1/jobs?limit=500');
    expect(list.body.items.every((j: any) => j.tenant === 'kakao')).toBe(true);
  });

  it('rejects bad input naming the field, and changes nothing', async () => {
    const before = (await api(naver, 'GET', '/v1/jobs?limit=500')).body.items.length;
    const bad = await submit(naver, { gpus: 12, command: [] });
    expect(bad.status).toBe(400);
    expect(bad.body.issues.map((i: any) => i.field).sort()).toEqual(['command', 'gpus']);
    expect((await api('nuri_not-a-token', 'GET', '/v1/jobs')).status).toBe(401);
    expect((await api(naver, 'GET', '/v1/jobs?limit=500')).body.items.length).toBe(before);
  });
});
