import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../apps/agent/src/agent';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from '../support/config';
import { apiClient } from '../support/http';

const OPERATOR = 'nuri_operator-bootstrap-token-for-preemption';

/**
 * Reclaim in the live system: a tenant within its guarantee gets its GPUs back from a
 * borrower, whose job is stopped through its agent (SIGTERM, grace) and requeued.
 */
describe('guaranteed capacity is reclaimed from a borrower', () => {
  let db: TestDatabase;
  let server: RunningServer;
  const agents: Agent[] = [];
  let work: string;
  const tokens: Record<string, string> = {};

  const api = apiClient(() => server.url);
  const call = async (token: string, method: string, path: string, body?: unknown) => (await api(token, method, path, body)).body;
  const until = async (token: string, id: string, pred: (j: any) => boolean) => {
    for (let i = 0; i < 300; i++) {
      const j = await call(token, 'GET', `/v1/jobs/${id}`);
      if (pred(j)) return j;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`job ${id} never got there: ${JSON.stringify(await call(token, 'GET', `/v1/jobs/${id}`))}`);
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    work = mkdtempSync(join(tmpdir(), 'nuri-preempt-'));
    server = await startServer(
      bareCenterConfig(db.url, OPERATOR, { NURI_SCHEDULER_TICK_MS: '300', NURI_PREEMPT_GRACE_SECONDS: '1', NURI_MIN_RUNTIME_BEFORE_PREEMPT_SECONDS: '0' }),
    );
    for (const t of ['alpha', 'beta']) {
      await call(OPERATOR, 'POST', '/v1/tenants', { name: t, displayName: t, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 16 }] });
      await call(OPERATOR, 'POST', '/v1/users', { name: `${t}-user`, tenant: t, role: 'researcher' });
      tokens[t] = (await call(OPERATOR, 'POST', '/v1/tokens', { user: `${t}-user` })).token;
    }
    for (const name of ['n1', 'n2']) {
      const node = await call(OPERATOR, 'POST', '/v1/nodes', { name, gpuType: 'h100', rack: 'r1', leafSwitch: 'l1' });
      const a = new Agent({ gatewayUrl: `ws://127.0.0.1:${server.port}/agent`, nodeName: name, nodeToken: node.agentToken, workDir: join(work, name), simulated: { gpus: 8, model: 'h100' } });
      agents.push(a);
      await a.start();
      await a.waitFor(() => a.stats().connected);
    }
  });
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.close();
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('preempts the borrowing job, requeues it, and starts the guaranteed one', async () => {
    const long = { gpus: 8, gpuType: 'h100', timeLimitSeconds: 600, command: ['sleep', '600'] };
    const b1 = await call(tokens.beta!, 'POST', '/v1/jobs', { ...long, name: 'b1' });
    await until(tokens.beta!, b1.id, (j) => j.state === 'running');
    const b2 = await call(tokens.beta!, 'POST', '/v1/jobs', { ...long, name: 'b2' });
    await until(tokens.beta!, b2.id, (j) => j.state === 'running');
    // beta now holds all 16 GPUs, 8 of them borrowed; alpha asks for its guarantee.
    const a1 = await call(tokens.alpha!, 'POST', '/v1/jobs', { ...long, name: 'a1', command: ['sleep', '1'] });
    const started = await until(tokens.alpha!, a1.id, (j) => j.state !== 'pending');
    expect(started.state).toMatch(/running|completed/);
    const victim = await call(tokens.beta!, 'GET', `/v1/jobs/${b2.id}`);
    expect(victim.transitions.map((t: any) => t.to)).toEqual(['pending', 'running', 'pending']);
    expect(victim.transitions[2].reason).toMatch(/preempted/);
    // Waiting (and the starvation clock) counts again from the requeue; the submission stays.
    expect(victim.queuedAt).toBe(victim.transitions[2].at);
    expect(victim.submittedAt).toBe(b2.submittedAt);
    expect(victim.queuedAt > victim.submittedAt).toBe(true);
    expect(b2.queuedAt).toBe(b2.submittedAt);
    // The job beta started first ran within its guarantee and was left alone.
    expect((await call(tokens.beta!, 'GET', `/v1/jobs/${b1.id}`)).state).toBe('running');
    // Once alpha's job is done, the requeued job runs again.
    await until(tokens.beta!, b2.id, (j) => j.state === 'running');
  });
});
