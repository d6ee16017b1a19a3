import { parseServerConfig } from '@nuri/config';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../apps/agent/src/agent';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { SchedulerService } from '../../apps/server/src/scheduler/scheduler.service';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from '../support/config';
import { apiClient } from '../support/http';
import { findSamples, parseExposition } from '@nuri/metrics';

const OPERATOR = 'nuri_operator-bootstrap-token-for-the-roles-test';

/**
 * Production shape: the roles in separate server instances (each its own connections,
 * as separate processes would have) on one PostgreSQL. Wake-ups cross between them as
 * NOTIFY; exactly one of two schedulers leads, and the standby takes over.
 */
describe('roles in separate processes', () => {
  let db: TestDatabase;
  let front: RunningServer;
  const schedulers: RunningServer[] = [];
  let agent: Agent;
  let work: string;
  let researcher: string;

  const api = apiClient(() => front.url);
  const call = async (token: string, method: string, path: string, body?: unknown) => (await api(token, method, path, body)).body;
  const config = (roles: string) => bareCenterConfig(db.url, OPERATOR, { NURI_ROLES: roles, NURI_SCHEDULER_TICK_MS: '300' });
  const runToCompletion = async (name: string) => {
    const job = await call(researcher, 'POST', '/v1/jobs', { name, gpus: 2, gpuType: 'h100', timeLimitSeconds: 30, command: ['sh', '-c', 'exit 0'] });
    for (let i = 0; i < 200; i++) {
      const j = await call(researcher, 'GET', `/v1/jobs/${job.id}`);
      if (j.state === 'completed') return j;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${name} did not complete`);
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    work = mkdtempSync(join(tmpdir(), 'nuri-roles-'));
    front = await startServer(config('api,gateway'));
    schedulers.push(await startServer(config('scheduler')), await startServer(config('scheduler')));
    await call(OPERATOR, 'POST', '/v1/tenants', { name: 'kakao', displayName: 'Kakao', quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 8 }] });
    await call(OPERATOR, 'POST', '/v1/users', { name: 'ryan', tenant: 'kakao', role: 'researcher' });
    researcher = (await call(OPERATOR, 'POST', '/v1/tokens', { user: 'ryan' })).token;
    const node = await call(OPERATOR, 'POST', '/v1/nodes', { name: 'gpu-a1', gpuType: 'h100', rack: 'r1', leafSwitch: 'l1' });
    agent = new Agent({ gatewayUrl: `ws://127.0.0.1:${front.port}/agent`, nodeName: 'gpu-a1', nodeToken: node.agentToken, workDir: work, simulated: { gpus: 8, model: 'h100' } });
    await agent.start();
    await agent.waitFor(() => agent.stats().connected);
  });
  afterAll(async () => {
    await agent?.stop();
    for (const s of schedulers) await s.close();
    await front?.close();
    await db?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('serves no user API from a process without the api role', async () => {
    const res = await fetch(`${schedulers[0]!.url}/v1/jobs`, { headers: { authorization: `Bearer ${OPERATOR}` } });
    expect(res.status).toBe(404);
    expect((await fetch(`${schedulers[0]!.url}/healthz`)).status).toBe(200);
  });

  it('elects exactly one scheduler, which runs the jobs the api process accepts', async () => {
    const leaders = schedulers.filter((s) => s.app.get(SchedulerService).isLeader);
    expect(leaders).toHaveLength(1);
    expect((await runToCompletion('first')).placement).toEqual([{ node: 'gpu-a1', gpus: expect.any(Array) }]);
  });

  it('fails over to the standby when the leader stops; the standby kept the queue current and does not read it all again', async () => {
    const leader = schedulers.find((s) => s.app.get(SchedulerService).isLeader)!;
    const standbyServer = schedulers.find((s) => s !== leader)!;
    const reloads = async () => findSamples(parseExposition(await (await fetch(`${standbyServer.url}/metrics`)).text()), 'nuri_scheduler_live_reloads_total')[0]?.value;
    expect(await reloads()).toBe(1); // its start
    await leader.close();
    schedulers.splice(schedulers.indexOf(leader), 1);
    const standby = standbyServer.app.get(SchedulerService);
    for (let i = 0; i < 50 && !standby.isLeader; i++) await new Promise((r) => setTimeout(r, 100));
    expect(standby.isLeader).toBe(true);
    await runToCompletion('second');
    expect(await reloads()).toBe(1);
  });
});

describe('scheduler leadership when the database session drops', () => {
  let db: TestDatabase;
  let a: RunningServer;
  let b: RunningServer;
  beforeAll(async () => {
    db = await createTestDatabase();
    const cfg = parseServerConfig({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: db.url, NURI_ROLES: 'scheduler', NURI_DEMO: '0', NURI_SCHEDULER_TICK_MS: '200', NURI_LOG_LEVEL: 'error' });
    a = await startServer(cfg);
    b = await startServer(cfg);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  it('steps down when its lock session is killed, and the standby takes over', async () => {
    const [leader, standby] = a.app.get(SchedulerService).isLeader ? [a, b] : [b, a];
    expect(standby.app.get(SchedulerService).isLeader).toBe(false);
    // Kill the leader's lock session from outside, as a database failover or network cut would.
    const { Client } = await import('pg');
    const admin = new Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and objid = $1 and granted`, [0x6e757269]);
    await admin.end();
    for (let i = 0; i < 50 && (leader.app.get(SchedulerService).isLeader || !standby.app.get(SchedulerService).isLeader); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(leader.app.get(SchedulerService).isLeader).toBe(false);
    expect(standby.app.get(SchedulerService).isLeader).toBe(true);
  });
});
