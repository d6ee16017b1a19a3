import { JobsRepository, NodesRepository } from '@nuri/db';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Agent } from '../../apps/agent/src/agent';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from '../support/config';
import { apiClient, until } from '../support/http';

/**
 * The control loop under faults, in the production shape: a real PostgreSQL, no demo,
 * agents that come and go on their own. Each case is a defect found when Nuri was tried
 * this way (a job `running` with nothing running, a cancel never delivered or undone, an
 * outage that requeued every healthy job), kept as a regression test.
 */
const OPERATOR = 'nuri_operator-bootstrap-token-for-the-faults-test';

describe('control loop under faults (real PostgreSQL, no demo)', () => {
  let db: TestDatabase;
  let server: RunningServer | undefined;
  let work: string;
  let researcher = '';
  const agents: Agent[] = [];
  const sockets: WebSocket[] = [];
  let base = '';
  const api = apiClient(() => base);
  const call = async (token: string, method: string, path: string, body?: unknown) => (await api(token, method, path, body)).body;
  const job = (id: string) => call(researcher, 'GET', `/v1/jobs/${id}`);
  const jobIn = (id: string, pred: (j: any) => boolean, ms = 20_000) => until(`job ${id}`, async () => { const j = await job(id); return pred(j) && j; }, ms);
  const submit = (spec: Record<string, unknown>) =>
    call(researcher, 'POST', '/v1/jobs', { name: 'faults', gpus: 1, gpuType: 'h100', timeLimitSeconds: 60, command: ['sleep', '30'], ...spec });
  const start = async (vars: Record<string, string> = {}) => {
    server = await startServer(
      bareCenterConfig(db.url, OPERATOR, {
        NURI_SCHEDULER_TICK_MS: '200',
        NURI_NODE_DOWN_AFTER_SECONDS: '2',
        NURI_AGENT_HEARTBEAT_SECONDS: '1',
        NURI_TIMEOUT_GRACE_SECONDS: '1',
        NURI_PREEMPT_GRACE_SECONDS: '1',
        ...vars,
      }),
    );
    base = server.url;
    return server;
  };
  const stop = async () => {
    await server?.close();
    server = undefined;
  };
  /** Registers a node and returns its agent token. */
  const register = async (name: string) => (await call(OPERATOR, 'POST', '/v1/nodes', { name, gpuType: 'h100', rack: 'r1', leafSwitch: 'l1' })).agentToken as string;
  const agent = (name: string, token: string) => {
    const a = new Agent({
      gatewayUrl: `ws://127.0.0.1:${server!.port}/agent`,
      nodeName: name,
      nodeToken: token,
      workDir: join(work, name),
      sampleIntervalMs: 500,
      heartbeatIntervalMs: 1000,
      backoffBaseMs: 50,
      backoffCapMs: 300,
      graceSeconds: 1,
      simulated: { gpus: 8, model: 'h100' },
    });
    agents.push(a);
    return a;
  };
  /** An agent that connects, says hello and heartbeats, but never runs or reports anything (unless the test sends for it). */
  const mute = async (name: string, token: string, running: string[] = []) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server!.port}/agent`, { headers: { authorization: `Bearer ${token}`, 'x-nuri-node': name } });
    sockets.push(ws);
    const got: any[] = [];
    ws.on('message', (d) => got.push(JSON.parse(d.toString())));
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    const gpus = Array.from({ length: 8 }, (_, index) => ({ index, uuid: `GPU-${name}-${index}`, model: 'NVIDIA H100 80GB HBM3', memoryTotalBytes: 80e9 }));
    ws.send(JSON.stringify({ v: 1, type: 'hello', node: name, stream: 'mute', agentVersion: 't', gpuModel: 'h100', gpus, running }));
    const beat = { on: true };
    const hb = setInterval(() => beat.on && ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ v: 1, type: 'heartbeat', at: Date.now() })), 500);
    ws.on('close', () => clearInterval(hb));
    return Object.assign(got, { send: (m: object) => ws.send(JSON.stringify(m)), beat });
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    work = mkdtempSync(join(tmpdir(), 'nuri-faults-'));
    await start();
    await call(OPERATOR, 'POST', '/v1/tenants', { name: 'kakao', displayName: 'Kakao', quotas: [{ gpuType: 'h100', guaranteed: 16, limit: 32 }] });
    await call(OPERATOR, 'POST', '/v1/users', { name: 'ryan', tenant: 'kakao', role: 'researcher' });
    researcher = (await call(OPERATOR, 'POST', '/v1/tokens', { user: 'ryan' })).token;
    await stop();
  });
  afterEach(async () => {
    // Each case sees only the nodes it registers: the earlier ones are drained.
    if (server) for (const n of await call(OPERATOR, 'GET', '/v1/nodes')) await call(OPERATOR, 'POST', `/v1/nodes/${n.name}/drain`, { reason: 'next case' });
    for (const s of sockets.splice(0)) s.terminate();
    for (const a of agents.splice(0)) await a.stop().catch(() => undefined);
    await stop();
  });
  afterAll(async () => {
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('keeps dispatching when agents connect only after the server ran a while with none', async () => {
    await start();
    // Several fleet reconcile periods with no agent connected (the loop used to stop for good here).
    await new Promise((r) => setTimeout(r, 1500));
    const a = agent('late-1', await register('late-1'));
    await a.start();
    await a.waitFor(() => a.connected);
    const quick = await submit({ command: ['sh', '-c', 'exit 0'] });
    const long = await submit({});
    expect((await jobIn(quick.id, (j) => j.state !== 'pending' && j.state !== 'running')).state).toBe('completed');
    await jobIn(long.id, (j) => j.state === 'running');
    await a.waitFor(() => a.runner.isRunning(long.id));
    expect((await api(researcher, 'POST', `/v1/jobs/${long.id}/cancel`)).status).toBe(202);
    const done = await jobIn(long.id, (j) => j.state === 'cancelled');
    expect(done.transitions.at(-1).reason).toMatch(/cancelled by user/);
    await a.waitFor(() => !a.runner.isRunning(long.id));
  });

  it('ends a job itself when its agent talks but never reports it: a cancel, and a time limit', async () => {
    await start();
    const got = await mute('mute-1', await register('mute-1'));
    const cancelled = await submit({});
    const limited = await submit({ timeLimitSeconds: 2 });
    await jobIn(cancelled.id, (j) => j.state === 'running');
    await jobIn(limited.id, (j) => j.state === 'running');
    await until('starts sent to the mute agent', async () => got.filter((m) => m.type === 'start').length >= 2);
    expect((await api(researcher, 'POST', `/v1/jobs/${cancelled.id}/cancel`)).status).toBe(202);
    await until('stop sent', async () => got.some((m) => m.type === 'stop' && m.jobId === cancelled.id && m.attempt === 1));
    // Slack: grace (1 s) and two down periods (2 × 2 s) past the stop or the time limit.
    const c = await jobIn(cancelled.id, (j) => j.state !== 'running', 15_000);
    expect(c.state).toBe('cancelled');
    expect(c.reason).toMatch(/ended by the server/);
    const l = await jobIn(limited.id, (j) => j.state !== 'running', 15_000);
    expect(l.state).toBe('timeout');
    expect(l.reason).toMatch(/ended by the server/);
    // Operators see it (and are alerted on it): two jobs ended with no word from a talking agent.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/nuri_scheduler_jobs_ended_by_server_total\{tenant="kakao",gpu_type="h100",reason="agent_silent_past_end"\} 2/);
    // Their GPUs are free again.
    const node = await call(OPERATOR, 'GET', '/v1/nodes/mute-1');
    expect(node.gpus.map((g: any) => g.jobId ?? null)).toEqual(Array(8).fill(null));
  });

  it("rejects and counts agent messages the database could not store, instead of failing on them for ever", async () => {
    await start();
    const got = await mute('poison-1', await register('poison-1'), ['not-a-job-id']);
    const j = await submit({});
    await until('start sent', async () => got.some((m) => m.type === 'start' && m.jobId === j.id));
    // A job id that cannot exist is told to stop, not a reason to fail the hello or the reconcile.
    expect(got.some((m) => m.type === 'stop' && m.jobId === 'not-a-job-id')).toBe(true);
    const exited = (seq: number, extra: object) => ({ v: 1, type: 'job_event', seq, at: Date.now(), event: { kind: 'exited', jobId: j.id, exitCode: 0, signal: null, cause: 'exit', attempt: 1, ...extra } });
    got.send(exited(1, { cause: 'lost', exitCode: null, message: 'nul \u0000 byte' }));
    got.send(exited(2, { exitCode: 2 ** 40 }));
    await until('two rejections', async () => got.filter((m) => m.type === 'error' && m.code === 'invalid_message').length === 2);
    expect((await job(j.id)).state).toBe('running');
    got.send(exited(3, { exitCode: 7 }));
    const done = await jobIn(j.id, (x) => x.state !== 'running');
    expect([done.state, done.exitCode]).toEqual(['failed', 7]);
    expect(got.some((m) => m.type === 'ack' && m.seq === 3)).toBe(true);
  });

  it('brings a node back up when its frozen agent is heard again on the same connection', async () => {
    await start();
    const got = await mute('freeze-1', await register('freeze-1'));
    await until('node up', async () => (await call(OPERATOR, 'GET', '/v1/nodes/freeze-1')).state === 'up');
    got.beat.on = false; // frozen: the connection stays, nothing is said
    await until('node down', async () => (await call(OPERATOR, 'GET', '/v1/nodes/freeze-1')).state === 'down', 10_000);
    got.beat.on = true;
    const back = await until('node up again', async () => { const n = await call(OPERATOR, 'GET', '/v1/nodes/freeze-1'); return n.state === 'up' && n; }, 10_000);
    expect(back.stateReason).toBe('agent heard again');
    expect(got.filter((m) => m.type === 'welcome')).toHaveLength(1); // no new hello was needed
  });

  it('keeps a cancel final when the node fails before the stop reaches the agent', async () => {
    await start();
    const a = agent('cut-1', await register('cut-1'));
    await a.start();
    await a.waitFor(() => a.connected);
    const j = await submit({ requeue: true });
    await jobIn(j.id, (x) => x.state === 'running');
    await a.waitFor(() => a.runner.isRunning(j.id) && a.stats().pending === 0);
    a.crash(); // gone without a word; the job's process is left behind (killed below)
    expect((await api(researcher, 'POST', `/v1/jobs/${j.id}/cancel`)).status).toBe(202);
    const done = await jobIn(j.id, (x) => x.state !== 'running', 15_000);
    expect(done.state).toBe('cancelled');
    expect(done.transitions.map((t: any) => t.to)).toEqual(['pending', 'running', 'cancelled']);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await job(j.id)).state).toBe('cancelled');
    await a.runner.stopAll('test cleanup', 0);
  });

  it('kills no healthy job when the whole control plane was down longer than the node timeout', async () => {
    // The same port after the restart, as a real deployment's address.
    const port = await new Promise<number>((r) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => r(p));
      });
    });
    await start({ PORT: String(port) });
    const a = agent('outage-1', await register('outage-1'));
    await a.start();
    await a.waitFor(() => a.connected);
    const during = await submit({ command: ['sh', '-c', 'sleep 4; exit 5'], requeue: true });
    const after = await submit({ command: ['sh', '-c', 'sleep 12; exit 0'], requeue: true });
    await jobIn(during.id, (j) => j.state === 'running');
    await jobIn(after.id, (j) => j.state === 'running');
    await a.waitFor(() => a.runner.isRunning(during.id) && a.runner.isRunning(after.id) && a.stats().pending === 0);
    await stop();
    // Down three times the node timeout; one job ends meanwhile (its exit waits in the journal).
    await new Promise((r) => setTimeout(r, 6500));
    expect(a.runner.isRunning(after.id)).toBe(true);
    expect(a.runner.isRunning(during.id)).toBe(false);
    await start({ PORT: String(port), NURI_RECONNECT_ALLOWANCE_SECONDS: '3' });
    const d = await jobIn(during.id, (j) => j.state !== 'running');
    expect(d.state).toBe('failed');
    expect(d.exitCode).toBe(5);
    const r = await jobIn(after.id, (j) => j.state !== 'running', 20_000);
    expect(r.state).toBe('completed');
    expect(r.transitions.map((t: any) => t.to)).toEqual(['pending', 'running', 'completed']);
    expect((await call(OPERATOR, 'GET', '/v1/nodes/outage-1')).state).toBe('up');
  }, 45_000);

  it('places nothing on a node whose agent fell silent, even before the node is marked down', async () => {
    await start({ NURI_NODE_DOWN_AFTER_SECONDS: '2', NURI_RECONNECT_ALLOWANCE_SECONDS: '600' });
    const a = agent('silent-1', await register('silent-1'));
    await a.start();
    await a.waitFor(() => a.connected);
    await new Promise((r) => setTimeout(r, 500));
    a.crash();
    // The allowance keeps the node from being marked down; its silence alone keeps jobs off it.
    await new Promise((r) => setTimeout(r, 3000));
    const j = await submit({});
    await new Promise((r) => setTimeout(r, 1500));
    const p = await job(j.id);
    expect(p.state).toBe('pending');
    expect((await call(OPERATOR, 'GET', '/v1/nodes/silent-1')).state).toBe('up');
    // The repository refuses such a start too, whatever a plan says.
    const nodeId = (await server!.app.get(NodesRepository).idByName('silent-1'))!;
    const now = new Date();
    const r = await server!.app.get(JobsRepository).commitStarts([{ jobId: j.id, gpuModel: 'h100', placement: [{ nodeId, gpuIndices: [0] }] }], now, new Date(now.getTime() - 2000));
    expect(r).toEqual({ started: [], skipped: [{ jobId: j.id, why: 'node agent silent' }] });
  });
});
