import { JobsRepository } from '@nuri/db';
import { sql } from 'kysely';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { SCHEDULER_LOCK_KEY, SchedulerService } from '../../apps/server/src/scheduler/scheduler.service';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from '../support/config';
import { apiClient } from '../support/http';

const OPERATOR = 'nuri_operator-bootstrap-token-for-the-new-waits-test';

/**
 * Jobs inserted while no scheduler ran (a restart after a bulk load) have no wait. A pass writes
 * at most NURI_NEW_WAITS_PER_PASS of them, front of the queue first, and the next passes the
 * rest. The passes here are this test's own: another session holds the leader's lock, so the
 * server never passes on its own and what each pass wrote can be read between them.
 */
describe('waits of jobs that have none yet', () => {
  let db: TestDatabase;
  let server: RunningServer;
  let holder: Client;
  const api = apiClient(() => server.url);

  beforeAll(async () => {
    db = await createTestDatabase();
    holder = new Client({ connectionString: db.url });
    await holder.connect();
    await holder.query('select pg_advisory_lock($1)', [SCHEDULER_LOCK_KEY]);
    server = await startServer(bareCenterConfig(db.url, OPERATOR, { NURI_ROLES: 'api,scheduler', NURI_SCHEDULER_TICK_MS: '600000', NURI_NEW_WAITS_PER_PASS: '5' }));
    await api(OPERATOR, 'POST', '/v1/tenants', { name: 'kakao', displayName: 'Kakao', quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 8 }] });
    await api(OPERATOR, 'POST', '/v1/users', { name: 'ryan', tenant: 'kakao', role: 'researcher' });
  });
  afterAll(async () => {
    await server?.close();
    await holder?.end();
    await db?.drop();
  });

  it('are written up to the limit a pass, the oldest first, and the rest by the next passes', async () => {
    const { rows } = await holder.query<{ tenant_id: string; user_id: string }>(`select t.id as tenant_id, u.id as user_id from tenants t join users u on u.tenant_id = t.id where u.name = 'ryan'`);
    const who = rows[0]!;
    const scheduler = server.app.get(SchedulerService);
    await scheduler.pass(); // loads the (empty) queue: the jobs below come as changes
    const jobs = new JobsRepository(server.database.db);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++)
      ids.push(
        await jobs.insert({ ...who, name: `bulk-${i}`, gpus: 8, gpu_type: 'h100', priority: 'normal', time_limit_seconds: 3600, command: ['true'], env: {}, working_dir: null, requeue: false, submitted_at: new Date(Date.UTC(2026, 0, 1, 0, i)) }),
      );
    const waits = async () => (await sql<{ job_id: string }>`select job_id from job_waits`.execute(server.database.db)).rows.map((r) => r.job_id).sort();
    const first = await scheduler.pass();
    expect(first.annotated).toBe(5);
    expect(first.deferredWaits).toBe(7);
    expect(await waits()).toEqual(ids.slice(0, 5).sort());
    const second = await scheduler.pass();
    expect([second.annotated, second.deferredWaits]).toEqual([5, 2]);
    expect(await waits()).toEqual(ids.slice(0, 10).sort());
    const third = await scheduler.pass();
    expect([third.annotated, third.deferredWaits]).toEqual([2, 0]);
    // Every job now says why it waits; nothing more to write.
    for (const id of ids) expect((await api(OPERATOR, 'GET', `/v1/jobs/${id}`)).body.reason).toMatch(/\w/);
    expect((await scheduler.pass()).annotated).toBe(0);
  });
});
