import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthService, UsersService } from '../../apps/server/src/api';
import { DbKind, Harness, job } from './harness';

// Addressing jobs as researchers do: ids by prefix, bulk cancel by filters, listing filters.
describe.each<DbKind>(['postgres', 'pglite'])('job references, bulk cancel and list filters on %s', (kind) => {
  const h = new Harness(kind);
  beforeAll(async () => {
    await h.start();
    await h.seed();
  });
  afterAll(() => h.stop());

  /** A fresh user with a token, so counts in a test are not disturbed by the others' jobs. */
  async function user(name: string, tenant: string, role: 'researcher' | 'tenant-admin' = 'researcher'): Promise<string> {
    await h.service(UsersService).create({ name, tenant, role });
    const u = (await h.identity.findUser(name))!;
    h.tokens[name] = (await h.service(AuthService).issueToken(u.id, 'test', null)).token;
    return name;
  }

  /** A pending job with a chosen id (to make ids that share a prefix), inserted as a submit would. */
  async function insertJob(owner: string, id: string, over: { name?: string; array?: { id: string; task: number; size: number } } = {}): Promise<string> {
    const u = (await h.identity.findUser(owner))!;
    await sql`
      insert into jobs (id, tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, requeue, submitted_at, queued_at, array_id, array_task_id, array_size)
      values (${id}, ${u.tenantId}, ${u.id}, ${over.name ?? 'inserted'}, 'pending', 1, 'h100', 'normal', 3600, '["true"]', '{}', true, now(), now(),
              ${over.array?.id ?? null}, ${over.array?.task ?? null}, ${over.array?.size ?? null})`.execute(h.db.db);
    await sql`insert into job_transitions (job_id, at, from_state, to_state, reason) values (${id}, now(), null, 'pending', 'submitted')`.execute(h.db.db);
    return id;
  }

  /** An array of `size` tasks of `owner` (task 0's id is the array's id), inserted in two statements. */
  async function insertArray(owner: string, size: number, name = 'arr'): Promise<string> {
    const arrayId = randomUUID();
    await insertJob(owner, arrayId, { name, array: { id: arrayId, task: 0, size } });
    const u = (await h.identity.findUser(owner))!;
    await sql`
      with t as (
        insert into jobs (tenant_id, user_id, name, state, gpus, gpu_type, priority, time_limit_seconds, command, env, requeue, submitted_at, queued_at, array_id, array_task_id, array_size)
        select ${u.tenantId}, ${u.id}, ${name}, 'pending', 1, 'h100', 'normal', 3600, '["true"]', '{}', true, now(), now(), ${arrayId}::uuid, g, ${size}::int
        from generate_series(1, ${size - 1}::int) g
        returning id
      )
      insert into job_transitions (job_id, at, from_state, to_state, reason) select id, now(), null, 'pending', 'submitted' from t`.execute(h.db.db);
    return arrayId;
  }

  const submit = async (who: string, over: Record<string, unknown> = {}) => {
    const r = await h.call(who, 'POST', '/v1/jobs', job({ gpus: 1, ...over }));
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.id as string;
  };
  const stateOf = async (id: string) => (await h.jobs.find(id))!.state;

  it('shows and cancels a job by a 6- or 8-character prefix, in either case', async () => {
    const id = await submit('alice');
    expect((await h.call('alice', 'GET', `/v1/jobs/${id.slice(0, 6)}`)).body.id).toBe(id);
    expect((await h.call('ann', 'GET', `/v1/jobs/${id.slice(0, 8).toUpperCase()}`)).body.id).toBe(id);
    expect((await h.call('op', 'GET', `/v1/jobs/${id.slice(0, 13)}`)).body.id).toBe(id);
    expect((await h.call('alice', 'GET', `/v1/jobs/${id.toUpperCase()}`)).body.id).toBe(id);
    const r = await h.call('alice', 'POST', `/v1/jobs/${id.slice(0, 8)}/cancel`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id, state: 'cancelled' });
    expect(r.body.transitions.at(-1)).toMatchObject({ from: 'pending', to: 'cancelled', reason: 'cancelled by alice' });
  });

  it('refuses a prefix under 6 characters, or one that is no id, naming `id` and the rule', async () => {
    const id = await submit('alice');
    for (const ref of [id.slice(0, 5), 'xyz123', 'abc%12', 'abc_12']) {
      const r = await h.call('alice', 'GET', `/v1/jobs/${ref}`);
      expect(r.status, ref).toBe(400);
      expect(r.body.issues).toEqual([{ field: 'id', rule: 'a job id, or a unique prefix of at least 6 characters of one' }]);
    }
    expect((await h.call('alice', 'POST', `/v1/jobs/${id.slice(0, 5)}/cancel`)).status).toBe(400);
    expect(await stateOf(id)).toBe('pending');
  });

  it('answers an ambiguous prefix with 409 listing the candidates of the caller\'s tenant only', async () => {
    const a = await insertJob('alice', 'abc12301-0000-4000-8000-000000000001');
    const b = await insertJob('ann', 'abc12302-0000-4000-8000-000000000002');
    const bobs = await insertJob('bob', 'abc12303-0000-4000-8000-000000000003');
    const r = await h.call('alice', 'GET', '/v1/jobs/abc123');
    expect(r.status).toBe(409);
    expect(r.body).toEqual({ error: 'conflict', message: `ambiguous job id prefix abc123: matches ${a}, ${b}; give more characters` });
    // one more character settles it
    expect((await h.call('alice', 'GET', '/v1/jobs/abc12301')).body.id).toBe(a);
    // another tenant's job never counts, nor shows by prefix
    expect(await h.call('alice', 'GET', '/v1/jobs/abc12303')).toEqual({ status: 404, body: { error: 'not_found', message: 'no such job' } });
    expect((await h.call('alice', 'POST', '/v1/jobs/abc12303/cancel')).status).toBe(404);
    expect((await h.call('bob', 'GET', '/v1/jobs/abc123')).body.id).toBe(bobs);
    expect((await h.call('bob', 'POST', '/v1/jobs/abc123/cancel')).status).toBe(200);
    // an operator sees all three
    const op = await h.call('op', 'GET', '/v1/jobs/ABC123');
    expect(op.status).toBe(409);
    expect(op.body.message).toContain(bobs);
    // cancel by an ambiguous prefix changes nothing
    expect((await h.call('nadmin', 'POST', '/v1/jobs/abc123/cancel')).status).toBe(409);
    expect([await stateOf(a), await stateOf(b)]).toEqual(['pending', 'pending']);
    // at most ten candidates are listed
    for (let i = 0; i < 12; i++) await insertJob('ann', `dddddd${i.toString(16).padStart(2, '0')}-0000-4000-8000-000000000000`);
    const many = await h.call('ann', 'GET', '/v1/jobs/dddddd');
    expect(many.status).toBe(409);
    expect(many.body.message.match(/dddddd/g)).toHaveLength(11); // the prefix itself and ten ids
    expect(many.body.message).toMatch(/, …; give more characters$/);
  });

  it('cancels in bulk by name, only among the jobs the caller may cancel', async () => {
    await user('nina', 'naver');
    await user('nora', 'naver');
    const mine = [await submit('nina', { name: 'sweep' }), await submit('nina', { name: 'sweep' }), await submit('nina', { name: 'sweep' })];
    const other = await submit('nina', { name: 'other' });
    const noras = await submit('nora', { name: 'sweep' });
    const bobs = await submit('bob', { name: 'sweep' });
    const r = await h.call('nina', 'POST', '/v1/jobs/cancel', { name: 'sweep' });
    expect(r).toEqual({ status: 200, body: { cancelled: [...mine].sort(), stopping: [] } });
    expect(await Promise.all(mine.map(stateOf))).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect([await stateOf(other), await stateOf(noras), await stateOf(bobs)]).toEqual(['pending', 'pending', 'pending']);
    expect((await h.call('nina', 'GET', `/v1/jobs/${mine[0]}`)).body.transitions.at(-1)).toMatchObject({ from: 'pending', to: 'cancelled', reason: 'cancelled by nina' });
    // again: nothing left to cancel
    expect((await h.call('nina', 'POST', '/v1/jobs/cancel', { name: 'sweep' })).body).toEqual({ cancelled: [], stopping: [] });
    // the tenant admin cancels the tenant's, never another tenant's
    const admin = await h.call('nadmin', 'POST', '/v1/jobs/cancel', { name: 'sweep', user: 'nora' });
    expect(admin.body).toEqual({ cancelled: [noras], stopping: [] });
    expect(await stateOf(bobs)).toBe('pending');
  });

  it('cancels in bulk by state: pending ones at once, running ones told to stop', async () => {
    await user('sam', 'naver');
    const pending = [await submit('sam'), await submit('sam')];
    const running = await submit('sam');
    await h.start_(running, 'h100-1', [7]);
    const preempting = await submit('sam');
    await h.start_(preempting, 'h100-1', [6]);
    expect(await h.jobs.requestStop(preempting, 'preempt', new Date())).toBe(true);

    const p = await h.call('sam', 'POST', '/v1/jobs/cancel', { states: ['pending'] });
    expect(p.body).toEqual({ cancelled: [...pending].sort(), stopping: [] });
    expect((await h.jobs.find(running))!.stop_requested).toBeNull();

    const r = await h.call('sam', 'POST', '/v1/jobs/cancel', { states: ['running'] });
    expect(r.body).toEqual({ cancelled: [], stopping: [running, preempting].sort() });
    for (const id of [running, preempting]) expect(await h.jobs.find(id)).toMatchObject({ state: 'running', stop_requested: 'cancel' });
    // asking again is harmless and says the same
    expect((await h.call('sam', 'POST', '/v1/jobs/cancel', { states: ['running', 'pending'] })).body).toEqual(r.body);
    for (const id of [running, preempting]) await h.jobs.transition(id, ['running'], 'cancelled', 'agent reported exit', new Date(), { exit_code: 143 });
    expect((await h.call('sam', 'POST', '/v1/jobs/cancel', { states: ['running'] })).body).toEqual({ cancelled: [], stopping: [] });
  });

  it('cancels in bulk by user: a tenant admin any of the tenant\'s, a researcher only their own', async () => {
    await user('uma', 'naver');
    const umas = [await submit('uma'), await submit('uma')];
    const alices = await submit('alice');
    const before = await h.jobCount();
    const refused = await h.call('alice', 'POST', '/v1/jobs/cancel', { user: 'uma' });
    expect(refused.status).toBe(403);
    expect(refused.body.message).toContain('uma');
    expect(await h.call('alice', 'POST', '/v1/jobs/cancel', { user: 'bob' })).toEqual({ status: 404, body: { error: 'not_found', message: 'no user bob' } });
    expect(await h.call('nadmin', 'POST', '/v1/jobs/cancel', { user: 'bob' })).toMatchObject({ status: 404 });
    expect(await Promise.all(umas.map(stateOf))).toEqual(['pending', 'pending']);
    expect((await h.call('nadmin', 'POST', '/v1/jobs/cancel', { user: 'uma' })).body).toEqual({ cancelled: [...umas].sort(), stopping: [] });
    expect(await stateOf(alices)).toBe('pending');
    expect(await h.jobCount()).toBe(before);
  });

  it('cancels in bulk by ids (prefixes too); an id that is not the caller\'s to cancel changes nothing', async () => {
    const a1 = await submit('alice', { name: 'by-ids' });
    const a2 = await submit('alice', { name: 'by-ids' });
    const anns = await submit('ann', { name: 'by-ids' });
    const bobs = await submit('bob', { name: 'by-ids' });

    const forbidden = await h.call('alice', 'POST', '/v1/jobs/cancel', { ids: [a1, anns.slice(0, 8)] });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.message).toContain(anns);
    const unknown = await h.call('alice', 'POST', '/v1/jobs/cancel', { ids: [a1, bobs.slice(0, 10)] });
    expect(unknown).toEqual({ status: 404, body: { error: 'not_found', message: `no such job ${bobs.slice(0, 10)}` } });
    await insertJob('alice', 'beef0001-0000-4000-8000-000000000001');
    await insertJob('alice', 'beef0002-0000-4000-8000-000000000002');
    const ambiguous = await h.call('alice', 'POST', '/v1/jobs/cancel', { ids: [a1, 'beef00'] });
    expect(ambiguous.status).toBe(409);
    expect(ambiguous.body.message).toMatch(/^ambiguous job id prefix beef00: matches beef0001-.*, beef0002-/);
    const bad = await h.call('alice', 'POST', '/v1/jobs/cancel', { ids: [a1, 'abc'] });
    expect(bad.status).toBe(400);
    expect(bad.body.issues[0].field).toBe('ids.1');
    expect(await Promise.all([a1, a2, anns, bobs].map(stateOf))).toEqual(['pending', 'pending', 'pending', 'pending']);

    const ok = await h.call('alice', 'POST', '/v1/jobs/cancel', { ids: [a1.slice(0, 6), a2, a1] });
    expect(ok).toEqual({ status: 200, body: { cancelled: [a1, a2].sort(), stopping: [] } });
    // ids AND name: every filter must hold
    expect((await h.call('nadmin', 'POST', '/v1/jobs/cancel', { ids: [anns], name: 'not-it' })).body).toEqual({ cancelled: [], stopping: [] });
    expect((await h.call('nadmin', 'POST', '/v1/jobs/cancel', { ids: [anns], name: 'by-ids' })).body).toEqual({ cancelled: [anns], stopping: [] });
    // operators cancel anyone's
    expect((await h.call('op', 'POST', '/v1/jobs/cancel', { ids: [bobs] })).body).toEqual({ cancelled: [bobs], stopping: [] });
  });

  it('refuses a bulk cancel without a filter or with a state that is not live, naming the field', async () => {
    const before = await h.jobCount();
    const none = await h.call('alice', 'POST', '/v1/jobs/cancel', {});
    expect(none.status).toBe(400);
    expect(none.body.issues).toEqual([{ field: 'ids', rule: 'give at least one of ids, array, name, states, user' }]);
    const done = await h.call('alice', 'POST', '/v1/jobs/cancel', { states: ['completed'] });
    expect(done.status).toBe(400);
    expect(done.body.issues[0].field).toBe('states.0');
    const extra = await h.call('alice', 'POST', '/v1/jobs/cancel', { name: 'x', everything: true });
    expect(extra.body.issues).toEqual([{ field: 'everything', rule: 'unknown field' }]);
    expect(await h.jobCount()).toBe(before);
  });

  it('lists and cancels a job array by its id: tasks in index order, page by page', async () => {
    await user('ari', 'naver');
    const arrayId = await insertArray('ari', 7);
    const single = await submit('ari', { name: 'arr' });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: any = (await h.call('ari', 'GET', `/v1/jobs?array=${arrayId.slice(0, 8)}&limit=3${cursor ? `&cursor=${cursor}` : ''}`)).body;
      seen.push(...r.items.map((j: any) => j.id));
      cursor = r.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen[0]).toBe(arrayId);
    expect(await Promise.all(seen.map(async (id) => (await h.jobs.find(id))!.array_task_id))).toEqual([0, 1, 2, 3, 4, 5, 6]);
    // a cursor of the newest-first listing is not one of an array listing
    const newest = (await h.call('ari', 'GET', '/v1/jobs?limit=1')).body.nextCursor;
    expect((await h.call('ari', 'GET', `/v1/jobs?array=${arrayId}&cursor=${newest}`)).body.issues).toEqual([{ field: 'cursor', rule: 'not a cursor this API returned' }]);
    // a job that is not an array's id
    const notArray = await h.call('ari', 'GET', `/v1/jobs?array=${single}`);
    expect(notArray.status).toBe(400);
    expect(notArray.body.issues[0]).toEqual({ field: 'array', rule: `job ${single} is not a job array` });
    const task3 = (await h.jobs.list({ arrayId, limit: 10 }))[3]!.id;
    const wrongTask = await h.call('ari', 'POST', '/v1/jobs/cancel', { array: task3 });
    expect(wrongTask.body.issues[0]).toEqual({ field: 'array', rule: `job ${task3} is task 3 of array ${arrayId}: give the array's id` });
    // another tenant's array does not exist
    expect((await h.call('bob', 'POST', '/v1/jobs/cancel', { array: arrayId })).status).toBe(404);

    const r = await h.call('ari', 'POST', '/v1/jobs/cancel', { array: arrayId.slice(0, 6) });
    expect(r.status).toBe(200);
    expect(r.body.cancelled).toHaveLength(7);
    expect(r.body.cancelled).toContain(arrayId);
    expect(r.body.cancelled).not.toContain(single);
    expect(await stateOf(single)).toBe('pending');
    const after = (await h.call('ari', 'GET', `/v1/jobs?array=${arrayId}&state=pending,running`)).body;
    expect(after).toEqual({ items: [], nextCursor: null });
  });

  it('lists and cancels an array submitted through the API as one', async () => {
    await user('amy', 'naver');
    const first = (await h.call('amy', 'POST', '/v1/jobs', job({ gpus: 1, name: 'sub-arr', array: '1-9:2%2' }))).body;
    expect(first.array).toMatchObject({ id: first.id, taskId: 1, size: 5, maxRunning: 2 });
    const listed = (await h.call('amy', 'GET', `/v1/jobs?array=${first.id.slice(0, 7)}`)).body.items;
    expect(listed.map((j: any) => j.array.taskId)).toEqual([1, 3, 5, 7, 9]);
    const r = await h.call('amy', 'POST', '/v1/jobs/cancel', { array: first.id });
    expect(r.body.cancelled.sort()).toEqual(listed.map((j: any) => j.id).sort());
    expect((await h.call('amy', 'GET', `/v1/jobs?array=${first.id}&state=cancelled`)).body.items).toHaveLength(5);
  });

  it('filters the listing by several states and by name, keeping pagination', async () => {
    await user('lee', 'naver');
    const p1 = await submit('lee', { name: 'eval' });
    const p2 = await submit('lee', { name: 'eval' });
    const r1 = await submit('lee', { name: 'train-x' });
    await h.start_(r1, 'h100-2', [0]);
    const c1 = await submit('lee', { name: 'eval' });
    await h.call('lee', 'POST', `/v1/jobs/${c1}/cancel`);
    const ids = async (q: string) => (await h.call('lee', 'GET', `/v1/jobs?user=lee&${q}`)).body.items.map((j: any) => j.id);
    expect(await ids('state=pending,running')).toEqual([r1, p2, p1]);
    expect(await ids('state=running')).toEqual([r1]);
    expect(await ids('state=cancelled,pending')).toEqual([c1, p2, p1]);
    expect(await ids('name=eval')).toEqual([c1, p2, p1]);
    expect(await ids('name=eval&state=pending')).toEqual([p2, p1]);
    // page through a filtered listing: each once, in order
    const first = (await h.call('lee', 'GET', '/v1/jobs?user=lee&name=eval&limit=2')).body;
    expect(first.items.map((j: any) => j.id)).toEqual([c1, p2]);
    const second = (await h.call('lee', 'GET', `/v1/jobs?user=lee&name=eval&limit=2&cursor=${first.nextCursor}`)).body;
    expect(second).toMatchObject({ items: [{ id: p1 }], nextCursor: null });
    for (const bad of ['state=bogus', 'state=pending,PD', 'state=']) {
      const r = await h.call('lee', 'GET', `/v1/jobs?${bad}`);
      expect(r.status, bad).toBe(400);
      expect(r.body.issues[0].field).toBe('state');
    }
    expect((await h.call('lee', 'GET', '/v1/jobs?state=bogus')).body.issues[0].rule).toMatch(/"bogus" is not a job state \(pending, running/);
    await h.jobs.transition(r1, ['running'], 'completed', 'exit 0', new Date(), { exit_code: 0 });
  });

  it("shows another tenant's GPUs as allocated without their job id", async () => {
    const id = await submit('bob');
    await h.start_(id, 'h100-0', [3]);
    const gpu = async (who: string) => (await h.call(who, 'GET', '/v1/nodes')).body.find((n: any) => n.name === 'h100-0').gpus[3];
    expect(await gpu('alice')).toMatchObject({ index: 3, allocated: true, job: null });
    expect(await gpu('bob')).toMatchObject({ allocated: true, job: id });
    expect((await gpu('alice')).allocated && (await h.call('alice', 'GET', '/v1/nodes/h100-0')).body.gpus[4].allocated).toBe(false);
    await h.jobs.transition(id, ['running'], 'completed', 'exit 0', new Date(), { exit_code: 0 });
    expect(await gpu('alice')).toMatchObject({ allocated: false, job: null });
  });

  it('cancels every task of a 10,000-task array', async () => {
    await user('big', 'naver');
    const arrayId = await insertArray('big', 10_000, 'big');
    const t0 = performance.now();
    const r = await h.call('big', 'POST', '/v1/jobs/cancel', { array: arrayId });
    const ms = performance.now() - t0;
    expect(r.status).toBe(200);
    expect(r.body.cancelled).toHaveLength(10_000);
    const left = await sql<{ n: string }>`select count(*) as n from jobs where array_id = ${arrayId} and state <> 'cancelled'`.execute(h.db.db);
    expect(Number(left.rows[0]!.n)).toBe(0);
    const transitions = await sql<{ n: string }>`select count(*) as n from job_transitions t join jobs j on j.id = t.job_id where j.array_id = ${arrayId} and t.to_state = 'cancelled'`.execute(h.db.db);
    expect(Number(transitions.rows[0]!.n)).toBe(10_000);
    console.log(`bulk cancel of a 10,000-task array: ${ms.toFixed(0)} ms`);
  }, 120_000);
});
