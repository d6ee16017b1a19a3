import { NodesRepository } from '@nuri/db';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../apps/agent/src/agent';
import { JobLifecycle } from '../../apps/server/src/lifecycle/job-lifecycle';
import { hashToken, newAgentToken } from '../../apps/server/src/auth/tokens';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { apiClient, until } from '../support/http';
import { demoCenterConfig } from '../support/config';

/**
 * The fleet side against a real PostgreSQL and real agents over loopback WebSocket: node
 * timeouts, reconcile after return, stale exits of earlier attempts, GPU health.
 */
describe('fleet: node failures, reconcile, GPU health', () => {
  let db: TestDatabase;
  let server: RunningServer;
  let work: string;
  let researcher: string;
  let operator: string;
  const extra: Agent[] = [];

  const api = apiClient(() => server.url);
  const submit = (spec: Record<string, unknown>) =>
    api(researcher, 'POST', '/v1/jobs', { name: 'fleet', gpus: 8, gpuType: 'h100', timeLimitSeconds: 120, command: ['sleep', '60'], ...spec });
  const job = async (id: string) => (await api(researcher, 'GET', `/v1/jobs/${id}`)).body;
  const node = async (name: string) => (await api(operator, 'GET', `/v1/nodes/${name}`)).body;
  const jobIn = (id: string, pred: (j: any) => boolean) => until(`job ${id}`, async () => { const j = await job(id); return pred(j) && j; });
  const agentOf = (name: string) => server.demo!.agents.find((a) => (a as any).opts.nodeName === name)!;
  /** A new agent process for the node on the same work dir (as after a restart), with a fresh token. */
  const restartAgent = async (name: string, opts: Record<string, unknown> = {}) => {
    const token = newAgentToken();
    const repo = server.app.get(NodesRepository);
    await repo.setAgentTokenHash((await repo.idByName(name))!, hashToken(token));
    const a = new Agent({
      gatewayUrl: `ws://127.0.0.1:${server.port}/agent`,
      nodeName: name,
      nodeToken: token,
      workDir: join(work, name),
      sampleIntervalMs: 200,
      backoffBaseMs: 50,
      backoffCapMs: 500,
      graceSeconds: 1,
      simulated: { gpus: 8, model: name.startsWith('h800') ? 'h800' : 'h100' },
      ...opts,
    });
    extra.push(a);
    await a.start();
    await a.waitFor(() => a.connected);
    return a;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    work = mkdtempSync(join(tmpdir(), 'nuri-fleet-'));
    server = await startServer(
      demoCenterConfig(db.url, work, { NURI_SCHEDULER_TICK_MS: '200', NURI_SAMPLE_INTERVAL_MS: '200', NURI_TIMEOUT_GRACE_SECONDS: '1', NURI_NODE_DOWN_AFTER_SECONDS: '2', NURI_AGENT_HEARTBEAT_SECONDS: '1' }),
    );
    researcher = server.demo!.researcherToken;
    operator = server.demo!.operatorToken;
    await server.demo!.agents[0]!.waitFor(() => server.demo!.agents.every((a) => a.stats().connected));
  }, 60_000);
  afterAll(async () => {
    for (const a of extra) await a.stop().catch(() => undefined);
    await server?.close();
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('requeues (or fails) the jobs of a node whose agent went silent, and a restarted agent cannot end the later attempt with a stale exit', async () => {
    const nodes = (await api(operator, 'GET', '/v1/nodes')).body as any[];
    const h100 = nodes.filter((n) => n.gpuType === 'h100').map((n) => n.name);
    const h800 = nodes.filter((n) => n.gpuType === 'h800').map((n) => n.name);
    // One node of each type left, so a requeued job can only come back to the same node.
    expect((await api(operator, 'POST', `/v1/nodes/${h100[1]}/drain`, { reason: 'test' })).status).toBe(200);
    expect((await api(operator, 'POST', `/v1/nodes/${h800[1]}/drain`, { reason: 'test' })).status).toBe(200);
    const a = (await submit({ requeue: true })).body.id as string;
    const b = (await submit({ gpuType: 'h800', requeue: false })).body.id as string;
    const ra = await jobIn(a, (j) => j.state === 'running');
    await jobIn(b, (j) => j.state === 'running');
    expect(ra.placement).toEqual([{ node: h100[0], gpus: [0, 1, 2, 3, 4, 5, 6, 7] }]);
    await until('started events acked', async () => agentOf(h100[0]).runner.isRunning(a) && agentOf(h800[0]).runner.isRunning(b) && agentOf(h100[0]).stats().pending === 0);

    agentOf(h100[0]).crash();
    agentOf(h800[0]).crash();
    await until('both nodes down', async () => (await node(h100[0])).state === 'down' && (await node(h800[0])).state === 'down');
    const pa = await jobIn(a, (j) => j.state === 'pending');
    expect(pa.transitions.at(-1).reason).toMatch(new RegExp(`node ${h100[0]} went down; requeued`));
    const fb = await jobIn(b, (j) => j.state === 'node_failed');
    expect(fb.reason).toMatch(/went down; requeue disabled/);

    // The agent of the h100 node restarts on the same work dir: it kills the orphaned
    // attempt 1 and resends its exit (cause lost, attempt 1) while the scheduler places
    // attempt 2 on the same node. The stale exit must not end attempt 2.
    const back = await restartAgent(h100[0]);
    const r2 = await jobIn(a, (j) => j.state === 'running');
    expect(r2.placement).toEqual([{ node: h100[0], gpus: [0, 1, 2, 3, 4, 5, 6, 7] }]);
    await back.waitFor(() => back.runner.isRunning(a) && back.stats().pending === 0, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    const still = await job(a);
    expect(still.state).toBe('running');
    expect(still.transitions.map((t: any) => t.to)).toEqual(['pending', 'running', 'pending', 'running']);
    // Whatever the timing above, an exit of attempt 1 arriving now (as the fleet applies a
    // job event) must not end attempt 2.
    const nodeId = (await server.app.get(NodesRepository).idByName(h100[0]))!;
    const stale = { kind: 'exited' as const, jobId: a, exitCode: null, signal: 'SIGKILL', cause: 'lost' as const, attempt: 1 };
    expect(await server.app.get(JobLifecycle).exited(nodeId, stale, new Date())).toBe(false);
    expect((await job(a)).state).toBe('running');
    // The h800 agent comes back too: its lost exit of the failed job changes nothing.
    const z = await restartAgent(h800[0]);
    await z.waitFor(() => z.stats().pending === 0, 10_000);
    expect((await job(b)).state).toBe('node_failed');
    expect((await node(h800[0])).state).toBe('up');

    await api(researcher, 'POST', `/v1/jobs/${a}/cancel`);
    await jobIn(a, (j) => j.state === 'cancelled');
  }, 60_000);

  it('has an agent that was cut off past the timeout kill the job that was requeued meanwhile, and then runs its new attempt', async () => {
    const nodes = (await api(operator, 'GET', '/v1/nodes')).body as any[];
    const name = nodes.find((n) => n.gpuType === 'h800' && n.state === 'up').name;
    const a = extra.find((x) => (x as any).opts.nodeName === name)!;
    const id = (await submit({ gpuType: 'h800', requeue: true })).body.id as string;
    await jobIn(id, (j) => j.state === 'running' && j.placement[0].node === name);
    await a.waitFor(() => a.runner.isRunning(id) && a.stats().pending === 0);
    // Cut the connection; the next attempt to reconnect comes only after the node is down.
    (a as any).opts.random = () => 1;
    (a as any).opts.backoffBaseMs = 4000;
    (a as any).opts.backoffCapMs = 4000;
    a.dropConnection();
    await jobIn(id, (j) => j.state === 'pending');
    expect(a.runner.isRunning(id)).toBe(true); // the agent does not know yet
    // Back: the server has it stop attempt 1, then starts attempt 2 once that exit is in.
    await a.waitFor(() => a.connected, 10_000);
    const r = await jobIn(id, (j) => j.state === 'running');
    expect(r.transitions.map((t: any) => t.to)).toEqual(['pending', 'running', 'pending', 'running']);
    await a.waitFor(() => a.runner.isRunning(id) && a.stats().pending === 0, 10_000);
    expect((a.runner as any).jobs.get(id).attempt).toBe(2);
    (a as any).opts.backoffBaseMs = 50;
    (a as any).opts.backoffCapMs = 500;
    await api(researcher, 'POST', `/v1/jobs/${id}/cancel`);
    await jobIn(id, (j) => j.state === 'cancelled');
  }, 60_000);

  it('takes a GPU with a critical XID out of scheduling, requeues and stops its job, and puts it back when an operator returns it', async () => {
    const nodes = (await api(operator, 'GET', '/v1/nodes')).body as any[];
    const name = nodes.find((n) => n.gpuType === 'h100' && n.state === 'up').name;
    const agent = extra.find((x) => (x as any).opts.nodeName === name)!;
    const id = (await submit({ gpus: 2, requeue: true })).body.id as string;
    const r = await jobIn(id, (j) => j.state === 'running');
    const [g0, g1] = r.placement[0].gpus as number[];
    await agent.waitFor(() => agent.runner.isRunning(id));

    agent.injectFault({ kind: 'xid', index: g0!, code: 79, message: 'GPU has fallen off the bus' });
    await until('GPU unhealthy', async () => (await node(name)).gpus.find((g: any) => g.index === g0).healthy === false);
    // The job is requeued, its process told to stop; it never runs on that GPU again.
    await agent.waitFor(() => !agent.runner.isRunning(id) || (agent.runner as any).jobs.get(id)?.attempt === 2, 10_000);
    const again = await jobIn(id, (j) => j.state === 'running' && j.transitions.length >= 4);
    expect(again.transitions.map((t: any) => t.to)).toEqual(['pending', 'running', 'pending', 'running']);
    expect(again.transitions[2].reason).toMatch(new RegExp(`GPU ${g0} on ${name} failed \\(XID 79`));
    expect(again.placement[0].gpus).not.toContain(g0);
    // Eight-GPU jobs cannot fit on that node any more; more 1-GPU jobs never land on the GPU.
    const ones = await Promise.all(Array.from({ length: 6 }, () => submit({ gpus: 1 })));
    for (const o of ones) {
      const j = await jobIn(o.body.id, (x) => x.state === 'running' || x.state === 'pending');
      if (j.state === 'running' && j.placement[0].node === name) expect(j.placement[0].gpus).not.toContain(g0);
    }
    const repo = server.app.get(NodesRepository);
    const events = await repo.gpuHealthEvents((await repo.idByName(name))!);
    expect(events).toContainEqual(expect.objectContaining({ gpuIndex: g0, healthy: false, cause: expect.stringMatching(/^XID 79/) }));

    // Throttling is recorded and changes nothing.
    agent.injectFault({ kind: 'hot', index: g1!, temperatureCelsius: 96 });
    await until('hot event', async () => (await repo.gpuHealthEvents((await repo.idByName(name))!)).some((e) => e.gpuIndex === g1 && e.healthy && /hot/.test(e.cause)));
    expect((await node(name)).gpus.find((g: any) => g.index === g1).healthy).toBe(true);

    // The XID counter is on /metrics.
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const xid = text.split('\n').filter((l) => /^nuri_\w*xid\w*\{/.test(l) && l.includes(`node="${name}"`) && l.includes(`gpu="${g0}"`) && l.includes('xid="79"'));
    expect(xid.length, text.split('\n').filter((l) => l.includes('xid')).join('\n')).toBeGreaterThan(0);

    // Only operators return a GPU; then it is schedulable again.
    expect((await api(researcher, 'POST', `/v1/nodes/${name}/gpus/${g0}/return`)).status).toBe(403);
    expect((await api(operator, 'POST', `/v1/nodes/${name}/gpus/99/return`)).status).toBe(400);
    const back = await api(operator, 'POST', `/v1/nodes/${name}/gpus/${g0}/return`);
    expect(back.status).toBe(200);
    expect(back.body.gpus.find((g: any) => g.index === g0).healthy).toBe(true);
    for (const o of ones) await api(researcher, 'POST', `/v1/jobs/${o.body.id}/cancel`);
    await api(researcher, 'POST', `/v1/jobs/${id}/cancel`);
    await until('node idle', async () => (await node(name)).gpus.every((g: any) => !g.jobId));
    const eight = (await submit({ gpus: 8, command: ['sleep', '0.2'] })).body.id as string;
    const done = await jobIn(eight, (j) => j.state === 'completed', );
    expect(done.placement[0].gpus).toContain(g0);
    expect((await repo.gpuHealthEvents((await repo.idByName(name))!)).at(-1)).toMatchObject({ gpuIndex: g0, healthy: true, cause: 'returned by operator' });
  }, 60_000);
});
