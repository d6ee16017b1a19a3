/**
 * The usage ledger on real processes (issue 15): a server, two agents whose jobs are real
 * child processes, a restart of the server while a job runs, a borrowed job preempted and
 * requeued by a tenant claiming its guarantee. The ledger must agree exactly with the jobs'
 * runtimes × GPUs (from their recorded transitions), charge each attempt once, carry the
 * utilization the agents reported (an idle job shows idle GPU-seconds), and agree with the
 * Prometheus counter nuri_tenant_gpu_seconds_total within 1%.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LedgerRepository } from '@nuri/db';
import { Agent } from '../../apps/agent/src/agent';
import { SimulatedCollector } from '../../apps/agent/src/collector/simulated';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from '../support/config';
import { apiClient, until } from '../support/http';

const OPERATOR = 'nuri_operator-bootstrap-token-for-accounting';

const freePort = () =>
  new Promise<number>((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => r(p));
    });
  });

/** Running intervals of a job from its transitions: [to running, next transition). */
function runs(j: any): { from: number; to: number }[] {
  const out: { from: number; to: number }[] = [];
  j.transitions.forEach((t: any, i: number) => {
    if (t.to !== 'running') return;
    const next = j.transitions[i + 1];
    if (next) out.push({ from: Date.parse(t.at), to: Date.parse(next.at) });
  });
  return out;
}

describe('the usage ledger on real processes', () => {
  let db: TestDatabase;
  let server: RunningServer | undefined;
  let port = 0;
  let work: string;
  const agents: Agent[] = [];
  const tokens: Record<string, string> = {};
  /** GPUs (`node/index`) the agents report as idle whatever runs there. */
  const idle = new Set<string>();
  const api = apiClient(() => server!.url);
  const call = async (token: string, method: string, path: string, body?: unknown) => (await api(token, method, path, body)).body;
  const jobIn = (token: string, id: string, pred: (j: any) => boolean, ms = 30_000) =>
    until(`job ${id}`, async () => { const j = await call(token, 'GET', `/v1/jobs/${id}`); return pred(j) && j; }, ms);
  const start = async () => {
    server = await startServer(
      bareCenterConfig(db.url, OPERATOR, {
        PORT: String(port),
        NURI_SCHEDULER_TICK_MS: '300',
        NURI_PREEMPT_GRACE_SECONDS: '1',
        NURI_MIN_RUNTIME_BEFORE_PREEMPT_SECONDS: '0',
        NURI_RECONNECT_ALLOWANCE_SECONDS: '5',
      }),
    );
  };
  const counter = async () => {
    const text = await (await fetch(`${server!.url}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^nuri_tenant_gpu_seconds_total\{tenant="([^"]+)",gpu_type="h100"\} (\S+)$/gm)) out[m[1]!] = Number(m[2]);
    return out;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    port = await freePort();
    work = mkdtempSync(join(tmpdir(), 'nuri-accounting-'));
    await start();
    for (const t of ['alpha', 'beta']) {
      await call(OPERATOR, 'POST', '/v1/tenants', { name: t, displayName: t, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 16 }] });
      await call(OPERATOR, 'POST', '/v1/users', { name: `${t}-user`, tenant: t, role: 'researcher' });
      tokens[t] = (await call(OPERATOR, 'POST', '/v1/tokens', { user: `${t}-user` })).token;
    }
    const today = new Date().toISOString().slice(0, 10);
    expect((await api(OPERATOR, 'PUT', '/v1/prices', { prices: [{ gpuType: 'h100', effectiveFrom: today, usdPerGpuHour: 2.5 }] })).status).toBe(200);
    for (const name of ['n1', 'n2']) {
      const node = await call(OPERATOR, 'POST', '/v1/nodes', { name, gpuType: 'h100', rack: 'r1', leafSwitch: 'l1' });
      const sim = new SimulatedCollector({ nodeName: name, gpus: 8, model: 'h100' });
      const sample = sim.sample.bind(sim);
      sim.sample = async (ctx) => (await sample(ctx)).map((g) => (idle.has(`${name}/${g.index}`) ? { ...g, utilization: 0.01 } : g));
      const a = new Agent({ gatewayUrl: `ws://127.0.0.1:${port}/agent`, nodeName: name, nodeToken: node.agentToken, workDir: join(work, name), collector: sim, sampleIntervalMs: 200 });
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

  it('charges every attempt exactly once, across a server restart and a preemption with requeue', async () => {
    const beta = tokens.beta!;
    const alpha = tokens.alpha!;
    const spec = (name: string, seconds: number) => ({ name, gpus: 8, gpuType: 'h100', timeLimitSeconds: 120, requeue: true, command: ['sleep', String(seconds)] });
    const b1 = await call(beta, 'POST', '/v1/jobs', spec('b1', 14));
    await jobIn(beta, b1.id, (j) => j.state === 'running');
    await new Promise((r) => setTimeout(r, 1500));

    // The server goes away while b1 runs, and comes back on the same address.
    await server!.close();
    server = undefined;
    await new Promise((r) => setTimeout(r, 1500));
    const restartedAt = Date.now();
    await start();
    await Promise.all(agents.map((a) => a.waitFor(() => a.stats().connected, 20_000)));
    // Leadership (the usage counter's start) is taken by the new server's first pass.
    await until('a leader', async () => /^nuri_scheduler_leader 1$/m.test(await (await fetch(`${server!.url}/metrics`)).text()));
    const leaderBy = Date.now();

    // beta borrows the other node; its job reports idle GPUs.
    const b2 = await call(beta, 'POST', '/v1/jobs', spec('b2', 6));
    const b2run = await jobIn(beta, b2.id, (j) => j.state === 'running');
    for (const p of b2run.placement) for (const g of p.gpus) idle.add(`${p.node}/${g}`);
    await new Promise((r) => setTimeout(r, 2000));
    // alpha claims its guarantee: b2 is preempted and requeued, then runs again once a1 is done.
    const a1 = await call(alpha, 'POST', '/v1/jobs', spec('a1', 25)); // the counter counts a job to the pass after its end (~0.2 s late on a loaded machine): long enough to stay within 1%
    await jobIn(beta, b2.id, (j) => j.transitions.some((t: any, i: number) => i > 0 && t.to === 'pending'));
    idle.clear();
    const done = (j: any) => j.state === 'completed';
    const [jb1, ja1, jb2] = [await jobIn(beta, b1.id, done), await jobIn(alpha, a1.id, done, 60_000), await jobIn(beta, b2.id, done, 60_000)];
    expect(jb2.transitions.map((t: any) => t.to)).toEqual(['pending', 'running', 'pending', 'running', 'completed']);

    const ledger = new LedgerRepository(db.handle.db);
    const byJob = (await call(OPERATOR, 'GET', '/v1/usage?groupBy=job')).rows;
    let total = 0;
    for (const j of [jb1, ja1, jb2]) {
      const intervals = runs(j);
      const attempts = await ledger.attemptsOf(j.id);
      // One ledger row per start, each closed exactly where its transitions say.
      expect(attempts.map((a) => [a.started_at.getTime(), a.ended_at?.getTime()])).toEqual(intervals.map((r) => [r.from, r.to]));
      expect(attempts.map((a) => a.attempt)).toEqual(intervals.map((_, i) => i + 1));
      const runtimeGpuSeconds = intervals.reduce((s, r) => s + ((r.to - r.from) / 1000) * j.gpus, 0);
      const ledgerGpuSeconds = attempts.reduce((s, a) => s + ((a.ended_at!.getTime() - a.started_at.getTime()) / 1000) * a.gpus, 0);
      expect(ledgerGpuSeconds).toBe(runtimeGpuSeconds);
      const row = byJob.find((r: any) => r.job === j.id);
      expect(row.gpuHours * 3600).toBeCloseTo(runtimeGpuSeconds, 6);
      expect(row.cost).toBeCloseTo((runtimeGpuSeconds / 3600) * 2.5, 9);
      total += runtimeGpuSeconds;
    }
    // b1 ran through the restart as one attempt.
    expect((await ledger.attemptsOf(b1.id)).map((a) => a.end_state)).toEqual(['completed']);
    expect((await ledger.attemptsOf(b2.id)).map((a) => a.end_state)).toEqual(['pending', 'completed']);
    const byTenant = await call(OPERATOR, 'GET', '/v1/usage?groupBy=tenant');
    expect(byTenant.total.gpuHours * 3600).toBeCloseTo(total, 6);

    // Telemetry: b2's first attempt sat idle; a1 was busy; samples covered most of each run.
    const [b2first] = await ledger.attemptsOf(b2.id);
    expect(b2first!.idle_gpu_seconds).toBeGreaterThan(8);
    const [a1only] = await ledger.attemptsOf(a1.id);
    expect(a1only!.sampled_gpu_seconds).toBeGreaterThan(0.6 * 5 * 8);
    expect(a1only!.busy_gpu_seconds / a1only!.sampled_gpu_seconds).toBeGreaterThan(0.3);
    const hist = await call(tokens.beta!, 'GET', '/v1/usage/history');
    const h2 = hist.find((x: any) => x.id === b2.id);
    expect(h2).toMatchObject({ attempts: 2, exitCode: 0, state: 'completed' });
    expect(h2.idleGpuHours).toBeGreaterThan(0);
    expect(h2.meanUtilization).toBeGreaterThan(0);
    expect(h2.meanUtilization).toBeLessThan(1);

    // The new leader's counter counts from its leadership: the ledger clipped there, within 1%.
    await new Promise((r) => setTimeout(r, 1000)); // a pass after the last end
    const c = await counter();
    const all = [...(await ledger.attemptsOf(b1.id)), ...(await ledger.attemptsOf(a1.id)), ...(await ledger.attemptsOf(b2.id))];
    const since = (from: number, tenant: string) =>
      all.filter((a) => (tenant === 'alpha') === (a.job_id === a1.id)).reduce((s, a) => s + (Math.max(0, a.ended_at!.getTime() - Math.max(from, a.started_at.getTime())) / 1000) * a.gpus, 0);
    expect(c.alpha! / since(restartedAt, 'alpha')).toBeGreaterThan(0.99);
    expect(c.alpha! / since(restartedAt, 'alpha')).toBeLessThan(1.01);
    // beta's jobs straddle the leadership start (known only within [restart, first pass]) and end
    // three times in a few seconds: within 1% of that bracket, plus the counter's end latency
    // (up to a scheduler tick, 0.3 s, of 8 GPUs per end).
    expect(c.beta!).toBeGreaterThan(0.99 * since(leaderBy, 'beta'));
    expect(c.beta!).toBeLessThan(1.01 * since(restartedAt, 'beta') + 3 * 0.3 * 8);
  }, 120_000);
});
