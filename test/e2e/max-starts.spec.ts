import { JobsRepository, NodesRepository } from '@nuri/db';
import { sql } from 'kysely';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { SCHEDULER_LOCK_KEY, SchedulerService } from '../../apps/server/src/scheduler/scheduler.service';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from '../support/config';
import { apiClient } from '../support/http';

const OPERATOR = 'nuri_operator-bootstrap-token-for-the-max-starts-test';

/**
 * A pass commits at most NURI_MAX_STARTS_PER_PASS starts, the front of the queue first, and asks
 * for the next pass for the rest (a leader restarted into an emptied fleet otherwise committed
 * thousands in one statement before its first pass ended). The passes here are this test's own:
 * another session holds the leader's lock, so the server never passes on its own.
 */
describe('starts over the most a pass commits', () => {
  let db: TestDatabase;
  let server: RunningServer;
  let holder: Client;
  const api = apiClient(() => server.url);

  beforeAll(async () => {
    db = await createTestDatabase();
    holder = new Client({ connectionString: db.url });
    await holder.connect();
    await holder.query('select pg_advisory_lock($1)', [SCHEDULER_LOCK_KEY]);
    server = await startServer(bareCenterConfig(db.url, OPERATOR, { NURI_ROLES: 'api,scheduler', NURI_SCHEDULER_TICK_MS: '600000', NURI_MAX_STARTS_PER_PASS: '3' }));
    await api(OPERATOR, 'POST', '/v1/tenants', { name: 'kakao', displayName: 'Kakao', quotas: [{ gpuType: 'h100', guaranteed: 40, limit: 48 }] });
    await api(OPERATOR, 'POST', '/v1/users', { name: 'ryan', tenant: 'kakao', role: 'researcher' });
    const nodes = new NodesRepository(server.database.db);
    for (let i = 0; i < 5; i++) {
      const id = await nodes.create({ name: `gpu-${i}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: `t${i}` });
      await nodes.setState(id, 'up', 'test');
    }
    // Heard from just now (no agents here): schedulable.
    await sql`update nodes set last_heartbeat_at = now(), connected = true`.execute(server.database.db);
  });
  afterAll(async () => {
    await server?.close();
    await holder?.end();
    await db?.drop();
  });

  it('are committed up to the limit, the front of the queue first, the rest by the next pass', async () => {
    const { rows } = await holder.query<{ tenant_id: string; user_id: string }>(`select t.id as tenant_id, u.id as user_id from tenants t join users u on u.tenant_id = t.id where u.name = 'ryan'`);
    const who = rows[0]!;
    const scheduler = server.app.get(SchedulerService);
    await scheduler.pass(); // loads the (empty) queue
    const jobs = new JobsRepository(server.database.db);
    const submit = (name: string, gpus: number, minute: number) =>
      jobs.insert({ ...who, name, gpus, gpu_type: 'h100', priority: 'normal', time_limit_seconds: 3600, command: ['true'], env: {}, working_dir: null, requeue: false, submitted_at: new Date(Date.UTC(2026, 0, 1, 0, minute)) });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await submit(`whole-node-${i}`, 8, i));
    const state = async (id: string) => (await jobs.detail(id))!.state;

    const first = await scheduler.pass();
    expect(first.plan.starts).toHaveLength(5); // the plan is the policy's, whole
    expect([first.started.length, first.deferredStarts]).toEqual([3, 2]);
    expect(first.started).toEqual(ids.slice(0, 3));
    expect(await Promise.all(ids.map(state))).toEqual(['running', 'running', 'running', 'pending', 'pending']);

    // (No express start meanwhile: express.spec.ts, 'a start the pass planned was not committed'.)
    const newcomer = await submit('newcomer', 1, 10);
    const second = await scheduler.pass();
    expect([second.started, second.deferredStarts]).toEqual([ids.slice(3), 0]);
    expect(await state(newcomer)).toBe('pending'); // every GPU is taken now
    expect((await api(OPERATOR, 'GET', `/v1/jobs/${newcomer}`)).body.reasonCode).toBe('waiting_for_resources');
  });
});
