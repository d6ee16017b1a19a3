import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../apps/server/src/bootstrap';
import type { TestDatabase } from '../../libs/db/src/testing';
import { startCenter, type TestCenter } from '../support/center';
import { apiClient, until } from '../support/http';
import { Harness, job } from './harness';

const WAIT_MS = 60_000;

/**
 * `--dependency` in the live system: a scheduler and an agent running real processes. A job
 * waits (its reason naming the job) until its dependencies ended as asked, and one that can
 * never run is cancelled saying why.
 */
describe('job dependencies', () => {
  let db: TestDatabase;
  let server: RunningServer;
  let c: TestCenter;
  const tokens: Record<string, string> = {};

  const api = apiClient(() => server.url);
  const submit = async (over: Record<string, unknown>, who = 'alice') => {
    const r = await api(tokens[who]!, 'POST', '/v1/jobs', { name: 'dep', gpus: 1, gpuType: 'h100', timeLimitSeconds: 600, command: ['true'], ...over });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body;
  };
  const get = async (id: string, who = 'alice') => (await api(tokens[who]!, 'GET', `/v1/jobs/${id}`)).body;
  const when = (id: string, what: string, pred: (j: any) => boolean) => until(`${id.slice(0, 8)} ${what}`, async () => { const j = await get(id); return pred(j) && j; }, WAIT_MS);
  const ended = (id: string) => when(id, 'ended', (j) => !['pending', 'running'].includes(j.state));
  const jobCount = async () => Number((await sql<{ n: string }>`select count(*) as n from jobs`.execute(db.handle.db)).rows[0]!.n);

  beforeAll(async () => {
    c = await startCenter({
      name: 'dependencies',
      vars: { NURI_SCHEDULER_TICK_MS: '300' },
      tenants: [
        { name: 'naver', user: 'alice', guaranteed: 8, limit: 8 },
        { name: 'kakao', user: 'bob', guaranteed: 8, limit: 8 },
      ],
      nodes: ['n1'],
    });
    ({ db, server } = c);
    Object.assign(tokens, c.tokens);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('afterok: the dependent job waits, naming the job, until it completed, then runs', async () => {
    const a = await submit({ name: 'a', command: ['sleep', '2'] });
    const b = await submit({ name: 'b', dependency: `afterok:${a.id}` });
    expect(b.dependencies).toEqual([{ kind: 'afterok', job: a.id, tasks: 1, state: expect.stringMatching(/^(pending|running)$/), satisfied: false }]);
    const waiting = await when(b.id, 'says what it waits for', (j) => j.reason !== null);
    expect(waiting.state).toBe('pending');
    expect(waiting.reason).toBe(`waiting for job ${a.id.slice(0, 8)} (afterok)`);
    expect(waiting.estimatedStartAt).toBeNull();
    const done = await ended(b.id);
    const aDone = await get(a.id);
    expect(aDone.state).toBe('completed');
    expect(done.state).toBe('completed');
    // It ran only after A ended.
    expect(done.startedAt >= aDone.endedAt).toBe(true);
    expect(done.dependencies).toEqual([{ kind: 'afterok', job: a.id, tasks: 1, state: 'completed', satisfied: true }]);
  });

  it('afterok on a job that fails: the dependent is cancelled saying why, and so is what depends on it', async () => {
    const a = await submit({ name: 'a', command: ['sh', '-c', 'sleep 1; exit 3'] });
    const b = await submit({ name: 'b', dependency: `afterok:${a.id}` });
    const c = await submit({ name: 'c', dependency: `afterok:${b.id}` });
    const bEnd = await ended(b.id);
    expect((await get(a.id)).state).toBe('failed');
    expect(bEnd.state).toBe('cancelled');
    const a8 = a.id.slice(0, 8);
    expect(bEnd.reason).toBe(`dependency afterok:${a8} can never be met: job ${a8} ended failed`);
    expect(bEnd.transitions.map((t: any) => [t.from, t.to, t.reason])).toEqual([
      [null, 'pending', 'submitted'],
      ['pending', 'cancelled', bEnd.reason],
    ]);
    expect(bEnd.startedAt).toBeNull();
    const cEnd = await ended(c.id);
    expect(cEnd.state).toBe('cancelled');
    expect(cEnd.reason).toBe(`dependency afterok:${b.id.slice(0, 8)} can never be met: job ${b.id.slice(0, 8)} ended cancelled`);
  });

  it('afternotok runs after a failure and is cancelled after a success; afterany runs after either', async () => {
    const bad = await submit({ name: 'bad', command: ['false'] });
    const good = await submit({ name: 'good', command: ['true'] });
    const onFail = await submit({ name: 'on-fail', dependency: `afternotok:${bad.id}` });
    const onSuccess = await submit({ name: 'on-success', dependency: `afternotok:${good.id}` });
    const anyway = await submit({ name: 'anyway', dependency: `afterany:${bad.id}:${good.id}` });
    expect((await ended(onFail.id)).state).toBe('completed');
    const cancelled = await ended(onSuccess.id);
    expect(cancelled.state).toBe('cancelled');
    expect(cancelled.reason).toBe(`dependency afternotok:${good.id.slice(0, 8)} can never be met: job ${good.id.slice(0, 8)} ended completed`);
    const any = await ended(anyway.id);
    expect(any.state).toBe('completed');
    expect(any.dependencies.map((d: any) => [d.job, d.state, d.satisfied]).sort()).toEqual(
      [[bad.id, 'failed', true], [good.id, 'completed', true]].sort(),
    );
  });

  it("a dependency on an array's id waits for every task of it", async () => {
    // One task at a time, so the array takes several seconds and its tasks end apart.
    const arr = await submit({ name: 'arr', command: ['sleep', '1'], array: '0-2%1' });
    const after = await submit({ name: 'after', dependency: `afterany:${arr.id}` });
    // One entry for the whole array, named by its id; a dependency on one task of it is that task alone.
    expect(after.dependencies).toEqual([{ kind: 'afterany', job: arr.id, tasks: 3, state: expect.stringMatching(/^(pending|running)$/), satisfied: false }]);
    const tasks = ((await api(tokens.alice!, 'GET', `/v1/jobs?array=${arr.id}`)).body.items as any[]).map((j) => j.id as string);
    expect(tasks).toHaveLength(3);
    const one = await submit({ name: 'one-task', dependency: `afterany:${tasks[1]}` });
    expect(one.dependencies).toEqual([{ kind: 'afterany', job: tasks[1], tasks: 1, state: expect.stringMatching(/^(pending|running)$/), satisfied: false }]);
    let sawWaitingOnLater = false;
    const done = await until('the dependent of the array ended', async () => {
      const j = await get(after.id);
      const states = await Promise.all(tasks.map(async (t: string) => (await get(t)).state));
      // Never running while a task of the array is live.
      if (j.state === 'running') expect(states.every((s) => s === 'completed')).toBe(true);
      if (j.state === 'pending' && j.reason && j.reason !== `waiting for job ${tasks[0]!.slice(0, 8)} (afterany)`) sawWaitingOnLater = true;
      return !['pending', 'running'].includes(j.state) && j;
    }, WAIT_MS);
    expect(done.state).toBe('completed');
    expect(done.dependencies).toEqual([{ kind: 'afterany', job: arr.id, tasks: 3, state: 'completed', satisfied: true }]);
    const ends = await Promise.all(tasks.map(async (t: string) => (await get(t)).endedAt as string));
    for (const e of ends) expect(done.startedAt >= e).toBe(true);
    // Its reason followed the array: it named a later task once the first had ended.
    expect(sawWaitingOnLater).toBe(true);
  });

  it('takes unique prefixes of at least 6 characters, in either case', async () => {
    const a = await submit({ name: 'a', command: ['sleep', '1'] });
    const b = await submit({ name: 'b', dependency: `afterok:${a.id.slice(0, 6).toUpperCase()},afterany:${a.id.slice(0, 10)}` });
    expect(b.dependencies.map((d: any) => [d.kind, d.job]).sort()).toEqual([['afterany', a.id], ['afterok', a.id]]);
    expect((await ended(b.id)).state).toBe('completed');
  });

  it('refuses a reference that names no job of the tenant, or several, naming `dependency`, and changes nothing', async () => {
    const own = await submit({ name: 'own', command: ['true'] });
    const theirs = await submit({ name: 'theirs', command: ['true'] }, 'bob');
    // Two jobs of alice whose ids share a 7-character prefix (a copy of hers under a chosen id).
    const [p1, p2] = ['abcdef01-0000-4000-8000-000000000001', 'abcdef02-0000-4000-8000-000000000002'];
    for (const id of [p1, p2])
      await sql`
        insert into jobs (id, tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, submitted_at, queued_at)
        select ${id}::uuid, tenant_id, user_id, name, 'completed', gpus, gpu_type, priority, time_limit_seconds, command, env, submitted_at, queued_at
        from jobs where id = ${own.id}::uuid`.execute(db.handle.db);
    const before = await jobCount();
    const cases: [string, RegExp][] = [
      [`afterok:${theirs.id}`, new RegExp(`${theirs.id}: no such job`)],
      ['afterok:0000000f', /0000000f: no such job/],
      ['afterok:abcdef0', /abcdef0: ambiguous, matches abcdef01-.*, abcdef02-/],
      [`afterok:${own.id}:abcdef0`, /abcdef0: ambiguous/],
      ['afterok:abc', /at least 6/],
      [`after:${own.id}`, /not a dependency type/],
      ['', /.+/],
    ];
    for (const [dependency, rule] of cases) {
      const r = await api(tokens.alice!, 'POST', '/v1/jobs', { name: 'x', gpus: 1, gpuType: 'h100', timeLimitSeconds: 60, command: ['true'], dependency, array: '0-3' });
      expect(r.status, dependency).toBe(400);
      expect(r.body.issues, dependency).toHaveLength(1);
      expect(r.body.issues[0].field).toBe('dependency');
      expect(r.body.issues[0].rule).toMatch(rule);
    }
    expect(await jobCount()).toBe(before);
    // The full id of one of the two resolves.
    expect((await submit({ name: 'ok', dependency: `afterok:${p1}` })).dependencies).toEqual([{ kind: 'afterok', job: p1, tasks: 1, state: 'completed', satisfied: true }]);
  });
});

// The embedded default (PGlite) runs the same statements: a waiting job, one doomed by a
// cancel, and an array's dependents, with the scheduler but no agent (nothing starts).
describe('job dependencies on the embedded database', () => {
  const h = new Harness('pglite', { env: { NURI_ROLES: 'api,scheduler', NURI_SCHEDULER_TICK_MS: '200' } });
  beforeAll(async () => {
    await h.start();
    await h.seed();
  });
  afterAll(() => h.stop());
  const get = async (id: string) => (await h.call('alice', 'GET', `/v1/jobs/${id}`)).body;

  it('withholds, names and cancels as on PostgreSQL', async () => {
    const a = (await h.call('alice', 'POST', '/v1/jobs', job({ array: '0-2%1' }))).body;
    const b = (await h.call('ann', 'POST', '/v1/jobs', job({ dependency: `afterok:${a.id.slice(0, 7)}` }))).body;
    expect(b.dependencies).toEqual([{ kind: 'afterok', job: a.id, tasks: 3, state: 'pending', satisfied: false }]);
    const waiting = await until('b waits', async () => { const j = await get(b.id); return j.reason?.startsWith('waiting') && j; }, WAIT_MS);
    expect(waiting.reason).toBe(`waiting for job ${a.id.slice(0, 8)} (afterok)`);
    const task2 = ((await h.call('alice', 'GET', `/v1/jobs?array=${a.id}`)).body.items as any[])[2].id as string;
    expect((await get(task2)).reason).toBe('array limit: at most 1 of its tasks run at once');
    expect((await h.call('alice', 'POST', `/v1/jobs/${task2}/cancel`)).status).toBe(200);
    const cancelled = await until('b cancelled', async () => { const j = await get(b.id); return j.state === 'cancelled' && j; }, WAIT_MS);
    expect(cancelled.reason).toBe(`dependency afterok:${task2.slice(0, 8)} can never be met: job ${task2.slice(0, 8)} ended cancelled`);
  });
});
