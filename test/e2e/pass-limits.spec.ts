import { JobsRepository, NodesRepository, waitReasonHash } from '@nuri/db';
import { passMemoryJobs } from '@nuri/scheduling';
import { sql } from 'kysely';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunningServer, startServer } from '../../apps/server/src/bootstrap';
import { SCHEDULER_LOCK_KEY, SchedulerService } from '../../apps/server/src/scheduler/scheduler.service';
import { createTestDatabase, TestDatabase } from '../../libs/db/src/testing';
import { bareCenterConfig } from '../support/config';
import { apiClient } from '../support/http';

const OPERATOR = 'nuri_operator-bootstrap-token-for-the-pass-limits-test';

/**
 * What a pass leaves for the next one. The passes here are each test's own: another session
 * holds the leader's lock, so the server never passes on its own and what each pass wrote can
 * be read between them. Tenant kakao (h100 quota `limit`), researcher ryan; jobs go in by SQL
 * (as a bulk load while no scheduler ran), each `minute` after 2026-01-01.
 */
function passesByHand(vars: Record<string, string>, quota: { guaranteed: number; limit: number }) {
  const t = {} as { db: TestDatabase; server: RunningServer; holder: Client; scheduler: SchedulerService; jobs: JobsRepository; submit: (name: string, gpus: number, minute: number) => Promise<string> };
  const api = apiClient(() => t.server.url);
  beforeAll(async () => {
    t.db = await createTestDatabase();
    t.holder = new Client({ connectionString: t.db.url });
    await t.holder.connect();
    await t.holder.query('select pg_advisory_lock($1)', [SCHEDULER_LOCK_KEY]);
    t.server = await startServer(bareCenterConfig(t.db.url, OPERATOR, { NURI_ROLES: 'api,scheduler', NURI_SCHEDULER_TICK_MS: '600000', ...vars }));
    await api(OPERATOR, 'POST', '/v1/tenants', { name: 'kakao', displayName: 'Kakao', quotas: [{ gpuType: 'h100', ...quota }] });
    await api(OPERATOR, 'POST', '/v1/users', { name: 'ryan', tenant: 'kakao', role: 'researcher' });
    const { rows } = await t.holder.query<{ tenant_id: string; user_id: string }>(`select t.id as tenant_id, u.id as user_id from tenants t join users u on u.tenant_id = t.id where u.name = 'ryan'`);
    const who = rows[0]!;
    t.scheduler = t.server.app.get(SchedulerService);
    t.jobs = new JobsRepository(t.server.database.db);
    t.submit = (name, gpus, minute) =>
      t.jobs.insert({ ...who, name, gpus, gpu_type: 'h100', priority: 'normal', time_limit_seconds: 3600, command: ['true'], env: {}, working_dir: null, requeue: false, submitted_at: new Date(Date.UTC(2026, 0, 1, 0, minute)) });
  });
  afterAll(async () => {
    await t.server?.close();
    await t.holder?.end();
    await t.db?.drop();
  });
  return { t, api };
}

/**
 * Jobs inserted while no scheduler ran (a restart after a bulk load) have no wait. A pass writes
 * at most NURI_NEW_WAITS_PER_PASS of them, front of the queue first, and the next passes the rest.
 */
describe('waits of jobs that have none yet', () => {
  const { t, api } = passesByHand({ NURI_NEW_WAITS_PER_PASS: '5' }, { guaranteed: 8, limit: 8 });

  it('are written up to the limit a pass, the oldest first, and the rest by the next passes', async () => {
    await t.scheduler.pass(); // loads the (empty) queue: the jobs below come as changes
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await t.submit(`bulk-${i}`, 8, i));
    const waits = async () => (await sql<{ job_id: string }>`select job_id from job_waits`.execute(t.server.database.db)).rows.map((r) => r.job_id).sort();
    const first = await t.scheduler.pass();
    expect(first.annotated).toBe(5);
    expect(first.deferredWaits).toBe(7);
    expect(await waits()).toEqual(ids.slice(0, 5).sort());
    const second = await t.scheduler.pass();
    expect([second.annotated, second.deferredWaits]).toEqual([5, 2]);
    expect(await waits()).toEqual(ids.slice(0, 10).sort());
    const third = await t.scheduler.pass();
    expect([third.annotated, third.deferredWaits]).toEqual([2, 0]);
    // Every job now says why it waits; nothing more to write.
    for (const id of ids) expect((await api(OPERATOR, 'GET', `/v1/jobs/${id}`)).body.reason).toMatch(/\w/);
    expect((await t.scheduler.pass()).annotated).toBe(0);
  });
});

/**
 * A wait that only drifted (a position or an estimate past its slack) is rewritten up to
 * NURI_DRIFTED_WAITS_PER_PASS a pass (exact positions, as here, in queue order): a burst ranked
 * mid-queue moves every position behind it. New waits are not held back by that bound, and what was held back is
 * written by the next passes, which compare with what is stored.
 */
describe('waits that only drifted', () => {
  const { t, api } = passesByHand({ NURI_DRIFTED_WAITS_PER_PASS: '5' }, { guaranteed: 8, limit: 8 });

  it('are rewritten up to the limit a pass, exact positions in queue order, and the rest by the next passes', async () => {
    await t.scheduler.pass(); // loads the (empty) queue
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await t.submit(`queued-${i}`, 8, 10 + i));
    const first = await t.scheduler.pass();
    expect([first.annotated, first.deferredDrift]).toEqual([12, 0]); // all new: not drift
    const stored = async () => {
      const rows = (await sql<{ job_id: string; queue_position: number }>`select job_id, queue_position from job_waits`.execute(t.server.database.db)).rows;
      const at = new Map(rows.map((r) => [r.job_id, r.queue_position]));
      return ids.map((id) => at.get(id));
    };
    expect(await stored()).toEqual(ids.map((_, i) => i + 1));
    expect((await t.scheduler.pass()).annotated).toBe(0);

    // One submitted before them all ranks first: each of the twelve is one further back (exact
    // positions, within the first 100, so every one drifted).
    const early = await t.submit('early', 8, 0);
    const second = await t.scheduler.pass();
    expect([second.annotated, second.deferredDrift]).toEqual([6, 7]);
    expect(second.annotatedBecause.new).toBe(1);
    expect(await stored()).toEqual([2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 11, 12]);
    expect((await api(OPERATOR, 'GET', `/v1/jobs/${early}`)).body.queuePosition).toBe(1);
    const third = await t.scheduler.pass();
    expect([third.annotated, third.deferredDrift]).toEqual([5, 2]);
    const fourth = await t.scheduler.pass();
    expect([fourth.annotated, fourth.deferredDrift]).toEqual([2, 0]);
    expect(await stored()).toEqual(ids.map((_, i) => i + 2));
    expect((await api(OPERATOR, 'GET', `/v1/jobs/${ids[11]}`)).body.queuePosition).toBe(13);
    expect((await t.scheduler.pass()).annotated).toBe(0);
  });
});

/**
 * With more drifted than a pass rewrites, the most wrong go first (their error over their slack),
 * not the front of the queue: under a burst, front-first would rewrite the same jobs every pass and
 * leave the rest of the queue as wrong as the burst is long.
 */
describe('drifted waits over the limit', () => {
  const { t } = passesByHand({ NURI_DRIFTED_WAITS_PER_PASS: '110' }, { guaranteed: 8, limit: 8 });

  it('are rewritten the most wrong first, and all are exact once the passes caught up', async () => {
    await t.scheduler.pass(); // loads the (empty) queue
    const jobs: string[] = [];
    for (let i = 0; i < 300; i++) jobs.push(await t.submit(`queued-${i}`, 8, 10 + i));
    expect((await t.scheduler.pass()).annotated).toBe(300);
    const stored = async (ids: string[]) => {
      const rows = (await sql<{ job_id: string; queue_position: number }>`select job_id, queue_position from job_waits`.execute(t.server.database.db)).rows;
      const at = new Map(rows.map((r) => [r.job_id, r.queue_position]));
      return ids.map((id) => at.get(id));
    };

    // 60 ahead of them all: the first 100 (exact positions) and the next 10, the most wrong, are rewritten.
    const ahead60: string[] = [];
    for (let i = 0; i < 60; i++) ahead60.push(await t.submit(`ahead-${i}`, 8, -70 + i));
    const second = await t.scheduler.pass();
    expect([second.annotated, second.deferredDrift]).toEqual([170, 190]);
    expect(await stored([jobs[99]!, jobs[109]!, jobs[110]!])).toEqual([160, 170, 111]);

    // 20 more ahead: jobs[40..109] are now 20 behind what is stored (12-17 % of their position),
    // jobs[110..] 80 behind (21-42 %): after the 100 that must be exact, those are rewritten first.
    const ahead20: string[] = [];
    for (let i = 0; i < 20; i++) ahead20.push(await t.submit(`first-${i}`, 8, -100 + i));
    const third = await t.scheduler.pass();
    expect([third.annotated, third.deferredDrift]).toEqual([130, 250]);
    expect(await stored(jobs.slice(110, 121))).toEqual([...Array.from({ length: 10 }, (_, k) => 191 + k), 121]);
    expect(await stored([jobs[40]!, jobs[100]!])).toEqual([101, 161]); // still as written before

    // No more changes: a few passes write the rest, and every position is exact.
    let passes = 0;
    while ((await t.scheduler.pass()).annotated > 0) expect(++passes).toBeLessThan(10);
    const order = [...ahead20, ...ahead60, ...jobs];
    expect(await stored(order)).toEqual(order.map((_, k) => k + 1));
  });
});

/**
 * A pass commits at most NURI_MAX_STARTS_PER_PASS starts, the front of the queue first, and asks
 * for the next pass for the rest (a leader restarted into an emptied fleet otherwise committed
 * thousands in one statement before its first pass ended). No express start meanwhile:
 * express.spec.ts, 'a start the pass planned was not committed'.
 */
describe('starts over the most a pass commits', () => {
  const { t, api } = passesByHand({ NURI_MAX_STARTS_PER_PASS: '3' }, { guaranteed: 40, limit: 48 });

  it('are committed up to the limit, the front of the queue first, the rest by the next pass', async () => {
    const nodes = new NodesRepository(t.server.database.db);
    for (let i = 0; i < 5; i++) {
      const id = await nodes.create({ name: `gpu-${i}`, gpuType: 'h100', gpus: 8, rack: 'r1', leafSwitch: 'l1', tokenHash: `t${i}` });
      await nodes.setState(id, 'up', 'test');
    }
    // Heard from just now (no agents here): schedulable.
    await sql`update nodes set last_heartbeat_at = now(), connected = true`.execute(t.server.database.db);
    await t.scheduler.pass(); // loads the (empty) queue
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await t.submit(`whole-node-${i}`, 8, i));
    const state = async (id: string) => (await t.jobs.detail(id))!.state;

    const first = await t.scheduler.pass();
    expect(first.plan.starts).toHaveLength(5); // the plan is the policy's, whole
    expect([first.started, first.deferredStarts]).toEqual([ids.slice(0, 3), 2]);
    expect(await Promise.all(ids.map(state))).toEqual(['running', 'running', 'running', 'pending', 'pending']);
    // The gauges it left (made while its starts were written) show the committed starts only.
    const text = await (await fetch(`${t.server.url}/metrics`)).text();
    const gauge = (series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ')[1]);
    expect(gauge('nuri_scheduler_gpus{gpu_type="h100",state="allocated"}')).toBe(24);
    expect(gauge('nuri_scheduler_gpus{gpu_type="h100",state="free"}')).toBe(16);
    expect(gauge('nuri_tenant_allocated_gpus{tenant="kakao",gpu_type="h100"}')).toBe(24);
    expect(gauge('nuri_scheduler_pending_gpus{tenant="kakao",gpu_type="h100"}')).toBe(16);

    const newcomer = await t.submit('newcomer', 1, 10);
    const second = await t.scheduler.pass();
    expect([second.started, second.deferredStarts]).toEqual([ids.slice(3), 0]);
    expect(await state(newcomer)).toBe('pending'); // every GPU is taken now
    expect((await api(OPERATOR, 'GET', `/v1/jobs/${newcomer}`)).body.reasonCode).toBe('waiting_for_resources');
  });
});

/**
 * What a leader remembers of each pending job's wait, so that a pass writes only what changed:
 * read back from the database by a scheduler that takes over, and forgotten for a job whose row
 * changed while it waited.
 */
describe('waits already stored', () => {
  const { t, api } = passesByHand({}, { guaranteed: 8, limit: 8 });

  it('are read back by a scheduler that takes over, which rewrites none that still hold', async () => {
    await t.scheduler.pass(); // loads the (empty) queue
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await t.submit(`held-${i}`, 8, i));
    expect((await t.scheduler.pass()).annotated).toBe(4);
    expect((await t.scheduler.pass()).annotated).toBe(0);
    // Another scheduler process, as a standby that takes over: its first pass reads every job and every stored wait.
    const other = await startServer(bareCenterConfig(t.db.url, OPERATOR, { NURI_ROLES: 'scheduler', NURI_SCHEDULER_TICK_MS: '600000' }));
    try {
      const first = await other.app.get(SchedulerService).pass();
      expect(first.plan.pending.map((p) => p.jobId).sort()).toEqual([...ids].sort());
      expect(first.annotated).toBe(0);
      // A wait that no longer holds is still written: one removed behind its back is new to nobody.
      await sql`delete from job_waits where job_id = ${ids[0]!}::uuid`.execute(t.server.database.db);
      const other2 = await startServer(bareCenterConfig(t.db.url, OPERATOR, { NURI_ROLES: 'scheduler', NURI_SCHEDULER_TICK_MS: '600000' }));
      try {
        const again = await other2.app.get(SchedulerService).pass();
        expect([again.annotated, again.annotatedBecause]).toEqual([1, { new: 1 }]);
      } finally {
        await other2.close();
      }
      // Waits are read back by the hash stored with their sentence: one whose sentence changed
      // behind its back is rewritten, sentence and hash; one stored without a hash (before
      // migration 0018) is compared by its sentence, which still holds.
      const db = t.server.database.db;
      const sentence = async (id: string) => (await sql<{ reason: string; hash: string | null }>`select reason, reason_hash::text as hash from job_waits where job_id = ${id}::uuid`.execute(db)).rows[0]!;
      const real = await sentence(ids[1]!);
      expect(real.hash).toBe(String(waitReasonHash(real.reason)));
      await sql`update job_waits set reason = 'A stale sentence.', reason_hash = ${waitReasonHash('A stale sentence.')} where job_id = ${ids[1]!}::uuid`.execute(db);
      await sql`update job_waits set reason_hash = null where job_id = ${ids[2]!}::uuid`.execute(db);
      const other3 = await startServer(bareCenterConfig(t.db.url, OPERATOR, { NURI_ROLES: 'scheduler', NURI_SCHEDULER_TICK_MS: '600000' }));
      try {
        const third = await other3.app.get(SchedulerService).pass();
        expect([third.annotated, third.annotatedBecause]).toEqual([1, { reason: 1 }]);
        expect(await sentence(ids[1]!)).toEqual(real);
      } finally {
        await other3.close();
      }
    } finally {
      await other.close();
    }
  });

  it('are written again for a job whose row changed while it waited (started and requeued between two passes)', async () => {
    const id = await t.submit('requeued', 8, 30);
    expect((await t.scheduler.pass()).annotated).toBe(1);
    expect((await t.scheduler.pass()).annotated).toBe(0);
    // As a start and a requeue between two passes leave it: pending again, its wait cleared on the way.
    await sql`delete from job_waits where job_id = ${id}::uuid`.execute(t.server.database.db);
    await sql`update jobs set attempts = attempts + 1 where id = ${id}::uuid`.execute(t.server.database.db);
    const again = await t.scheduler.pass();
    expect([again.annotated, again.annotatedBecause]).toEqual([1, { new: 1 }]);
    expect((await api(OPERATOR, 'GET', `/v1/jobs/${id}`)).body.reason).toMatch(/\w/);
    expect((await t.scheduler.pass()).annotated).toBe(0);
  });
});

describe("a scheduler's pass memory", () => {
  /** n pending jobs by SQL, as a bulk load does. */
  const bulk = async (db: Client, n: number) => {
    const { rows } = await db.query<{ tenant_id: string; user_id: string }>(`select tenant_id, id as user_id from users where name = 'bulk-user'`);
    await db.query(
      `insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, requeue, submitted_at, queued_at)
       select $1, $2, 'bulk', 'pending', 1, 'h100', 'normal', 3600, '["true"]', '{}', true, now(), now() from generate_series(1, $3::int)`,
      [rows[0]!.tenant_id, rows[0]!.user_id, n],
    );
  };
  const owner = async (db: Client) => {
    const t = await db.query<{ id: string }>(`insert into tenants (name, display_name) values ('bulk', 'Bulk') returning id`);
    await db.query(`insert into users (name, tenant_id, role) values ('bulk-user', $1, 'researcher')`, [t.rows[0]!.id]);
  };

  it('is reserved at start for the queue there and a quarter more, by a scheduler that leads at once', async () => {
    const db = await createTestDatabase();
    const c = new Client({ connectionString: db.url });
    await c.connect();
    try {
      await owner(c);
      await bulk(c, 30_000);
      const server = await startServer(bareCenterConfig(db.url, OPERATOR, { NURI_ROLES: 'scheduler', NURI_SCHEDULER_TICK_MS: '600000' }));
      try {
        expect(server.app.get(SchedulerService).isLeader).toBe(true);
        // (Its passes grow the arrays to the queue only: the quarter more is the reservation's.)
        expect(passMemoryJobs()).toBeGreaterThanOrEqual(30_000 * 1.25);
      } finally {
        await server.close();
      }
    } finally {
      await c.end();
      await db.drop();
    }
  });

  describe('of a standby', () => {
    const { t } = passesByHand({}, { guaranteed: 8, limit: 8 });

    it('follows the queue as it grows', async () => {
      await owner(t.holder);
      // Larger than any reservation before in this file.
      await bulk(t.holder, 60_000);
      expect(t.scheduler.isLeader).toBe(false);
      const deadline = Date.now() + 15_000;
      while (passMemoryJobs() < 60_000 * 1.25 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(passMemoryJobs()).toBeGreaterThanOrEqual(60_000 * 1.25);
    });
  });
});
