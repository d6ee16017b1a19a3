import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../apps/agent/src/agent';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from '../support/config';
import { apiClient, until } from '../support/http';

const OPERATOR = 'nuri_operator-bootstrap-token-for-the-logs-test';

/**
 * Job output through the API in the production shape: the api (with the scheduler) and the
 * gateway are separate server instances on one PostgreSQL, the agents connected to the
 * gateway, so every read crosses from the api replica to the gateway process holding the agent.
 */
describe('job output (GET /v1/jobs/:id/logs)', () => {
  let db: TestDatabase;
  let api: RunningServer;
  let gateway: RunningServer;
  let keeper: Agent; // h100 node, default retention
  let forgetter: Agent; // h800 node, output kept one second
  const work: string[] = [];
  let researcher: string;
  let stranger: string;

  const call = apiClient(() => api.url);
  const json = async (token: string, method: string, path: string, body?: unknown) => (await call(token, method, path, body)).body;
  const logs = (token: string, id: string, query = '') => fetch(`${api.url}/v1/jobs/${id}/logs${query}`, { headers: { authorization: `Bearer ${token}` } });
  const submit = (name: string, gpuType: 'h100' | 'h800', script: string, gpus = 2) =>
    json(researcher, 'POST', '/v1/jobs', { name, gpus, gpuType, timeLimitSeconds: 120, command: ['sh', '-c', script] });
  const state = (id: string, want: string) => until(`job ${id} ${want}`, async () => ((await json(researcher, 'GET', `/v1/jobs/${id}`)).state === want ? true : undefined), 60_000);
  const agentOn = async (name: string, gpuType: 'h100' | 'h800', extra: { outputRetentionHours?: number } = {}) => {
    const node = await json(OPERATOR, 'POST', '/v1/nodes', { name, gpuType, rack: 'r1', leafSwitch: 'l1' });
    const dir = mkdtempSync(join(tmpdir(), `nuri-logs-${name}-`));
    work.push(dir);
    const a = new Agent({ gatewayUrl: `ws://127.0.0.1:${gateway.port}/agent`, nodeName: name, nodeToken: node.agentToken, workDir: dir, simulated: { gpus: 8, model: gpuType }, ...extra });
    await a.start();
    await a.waitFor(() => a.stats().connected, 20_000);
    return a;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startServer(bareCenterConfig(db.url, OPERATOR, { NURI_ROLES: 'api,scheduler', NURI_SCHEDULER_TICK_MS: '300' }));
    gateway = await startServer(bareCenterConfig(db.url, OPERATOR, { NURI_ROLES: 'gateway', NURI_SCHEDULER_TICK_MS: '300' }));
    for (const [t, who] of [
      ['kakao', 'ryan'],
      ['naver', 'brown'],
    ]) {
      await json(OPERATOR, 'POST', '/v1/tenants', { name: t, displayName: t, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 8 }, { gpuType: 'h800', guaranteed: 8, limit: 8 }] });
      await json(OPERATOR, 'POST', '/v1/users', { name: who, tenant: t, role: 'researcher' });
    }
    researcher = (await json(OPERATOR, 'POST', '/v1/tokens', { user: 'ryan' })).token;
    stranger = (await json(OPERATOR, 'POST', '/v1/tokens', { user: 'brown' })).token;
    keeper = await agentOn('gpu-a1', 'h100');
    forgetter = await agentOn('gpu-b1', 'h800', { outputRetentionHours: 1 / 3600 });
  }, 60_000);
  afterAll(async () => {
    await keeper?.stop();
    await forgetter?.stop();
    await gateway?.close();
    await api?.close();
    await db?.drop();
    for (const d of work) rmSync(d, { recursive: true, force: true });
  });

  let done: { id: string };

  it('returns the output of an ended job as text/plain, stdout and stderr interleaved as written, and its last lines with tail', async () => {
    // Pauses between the streams: two pipes read at once have no order of their own.
    done = await submit('talker', 'h100', 'echo out1; echo out2; sleep 1; echo err1 >&2; sleep 1; echo out3');
    await state(done.id, 'completed');
    const view = await json(researcher, 'GET', `/v1/jobs/${done.id}`);
    expect(view.output).toEqual([{ rank: 0, node: 'gpu-a1', path: keeper.runner.logPath(done.id) }]);

    const res = await logs(researcher, done.id);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await res.text()).toBe('out1\nout2\nerr1\nout3\n');

    const tail = await logs(researcher, done.id.slice(0, 8), '?tail=2');
    expect(tail.status).toBe(200);
    expect(await tail.text()).toBe('err1\nout3\n');
  }, 90_000);

  it('follow=true streams lines written after the request and ends when the job ends; a job that never started has no output yet', async () => {
    const job = await submit('follower', 'h100', 'echo started; while [ ! -e "$HOME/go" ]; do sleep 0.1; done; echo after the request; sleep 0.3; echo bye', 8);
    await state(job.id, 'running');
    // The node is full now: a second job stays pending, never started.
    const waiting = await submit('waiting', 'h100', 'true', 8);
    const r409 = await logs(researcher, waiting.id);
    expect(r409.status).toBe(409);
    expect(((await r409.json()) as { message: string }).message).toBe('no output yet: the job has not started');

    const res = await logs(researcher, job.id, '?follow=true');
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const read = async (until: (t: string) => boolean) => {
      while (!until(text)) {
        const { value, done } = await reader.read();
        if (done) return true;
        text += decoder.decode(value, { stream: true });
      }
      return false;
    };
    await read((t) => t.includes('started\n'));
    expect(text).toBe('started\n');

    // A second reader that goes away: the agent stops reading for it (logs_close through the gateway).
    const ac = new AbortController();
    const gone = await fetch(`${api.url}/v1/jobs/${job.id}/logs?follow=true`, { headers: { authorization: `Bearer ${researcher}` }, signal: ac.signal });
    await gone.body!.getReader().read();
    expect(keeper.logs.active).toBe(2);
    ac.abort();
    await until('the abandoned follow to stop on the agent', async () => keeper.logs.active === 1);

    writeFileSync(join(keeper.runner.jobDir(job.id), 'go'), '');
    // Everything after the request arrives, then the response ends by itself.
    expect(await read(() => false)).toBe(true);
    expect(text).toBe('started\nafter the request\nbye\n');
    await state(job.id, 'completed');
    await json(researcher, 'POST', `/v1/jobs/${waiting.id}/cancel`);
  }, 90_000);

  it('relays a large output whole, in order', async () => {
    const job = await submit('chatty', 'h100', 'i=0; while [ $i -lt 40000 ]; do echo "line $i of a long output"; i=$((i+1)); done');
    await state(job.id, 'completed');
    const text = await (await logs(researcher, job.id)).text();
    const lines = text.split('\n');
    expect(lines).toHaveLength(40001);
    expect(lines[39999]).toBe('line 39999 of a long output');
    expect(lines.every((l, i) => i === 40000 || l === `line ${i} of a long output`)).toBe(true);
  }, 90_000);

  it('answers 404 for another tenant, for a rank the job does not have, and 400 naming a bad query', async () => {
    const other = await logs(stranger, done.id);
    expect(other.status).toBe(404);
    expect(await other.text()).not.toContain('out1');
    const rank = await logs(researcher, done.id, '?rank=1');
    expect(rank.status).toBe(404);
    expect(((await rank.json()) as { message: string }).message).toMatch(/no rank 1: the job ran on 1 node/);
    const bad = await logs(researcher, done.id, '?tail=-1');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { issues: unknown }).issues).toEqual([{ field: 'tail', rule: 'must be at least 0' }]);
  });

  it('refuses a bogus grant at the gateway with 401 and streams nothing', async () => {
    const res = await fetch(`${gateway.url}/internal/v1/logs`, { headers: { authorization: `Bearer ${'x'.repeat(43)}` } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toBe('unauthorized');
    const none = await fetch(`${gateway.url}/internal/v1/logs`);
    expect(none.status).toBe(401);
  });

  it('says the output expired once the agent removed it after its retention', async () => {
    const job = await submit('short-lived', 'h800', 'echo soon gone');
    await state(job.id, 'completed');
    const gone = await until(
      'the output to expire',
      async () => {
        const r = await logs(researcher, job.id);
        return r.status === 404 ? ((await r.json()) as { message: string }) : undefined;
      },
      30_000,
      250,
    );
    expect(gone.message).toMatch(/output of rank 0 \(node gpu-b1\): the output of job .* on this node expired: it is kept .* hours after the job ends/);
  }, 60_000);

  it('answers 503 naming the node when its agent is not connected', async () => {
    const job = await submit('orphaned', 'h800', 'echo hi');
    await state(job.id, 'completed');
    forgetter.crash();
    const r = await until(
      'the agent to count as gone',
      async () => {
        const res = await logs(researcher, job.id);
        return res.status === 503 ? ((await res.json()) as { message: string }) : undefined;
      },
      20_000,
      200,
    );
    expect(r.message).toBe('output of rank 0 is on node gpu-b1, whose agent is not connected');
  }, 60_000);

  it('counts the streamed responses by route template', async () => {
    const text = await (await fetch(`${api.url}/metrics`)).text();
    expect(text).toMatch(/nuri_http_requests?[a-z_]*\{[^}]*route="\/v1\/jobs\/:id\/logs"[^}]*status="200"/);
  });
});
