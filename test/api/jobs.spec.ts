import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCRIPT_MAX_BYTES } from '@nuri/contracts';
import { BODY_LIMIT_BYTES } from '../../apps/server/src/api/common/limits';
import { DbKind, Harness, job } from './harness';

// The core of the API against both database kinds users meet: a real PostgreSQL and the embedded PGlite.
describe.each<DbKind>(['postgres', 'pglite'])('jobs API on %s', (kind) => {
  const h = new Harness(kind);
  beforeAll(async () => {
    await h.start();
    await h.seed();
  });
  afterAll(() => h.stop());

  it("submits a job into the caller's tenant and shows it back", async () => {
    const r = await h.call('alice', 'POST', '/v1/jobs', job({ env: { SEED: '1' } }));
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ tenant: 'naver', user: 'alice', state: 'pending', gpus: 2, gpuType: 'h100', priority: 'normal', requeue: true, env: { SEED: '1' }, placement: [] });
    expect(r.body.transitions).toEqual([{ at: r.body.submittedAt, from: null, to: 'pending', reason: 'submitted' }]);
    const got = await h.call('alice', 'GET', `/v1/jobs/${r.body.id}`);
    expect(got).toEqual({ status: 200, body: r.body });
    // everyone of the tenant reads it; the operator too
    expect((await h.call('ann', 'GET', `/v1/jobs/${r.body.id}`)).status).toBe(200);
    expect((await h.call('op', 'GET', `/v1/jobs/${r.body.id}`)).status).toBe(200);
  });

  it('answers concurrent submissions (committed together) each with its own job, as stored', async () => {
    const before = await h.jobCount();
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => h.call(i % 2 ? 'alice' : 'bob', 'POST', '/v1/jobs', job({ name: `many-${i}`, env: { I: String(i) } }))));
    expect(new Set(rs.map((r) => r.body.id)).size).toBe(40);
    for (const [i, r] of rs.entries()) {
      expect(r.status).toBe(201);
      expect(r.body).toMatchObject({ name: `many-${i}`, env: { I: String(i) }, user: i % 2 ? 'alice' : 'bob', tenant: i % 2 ? 'naver' : 'kakao' });
      const got = await h.call('op', 'GET', `/v1/jobs/${r.body.id}`);
      expect({ ...got.body, reason: null, estimatedStartAt: null, queuePosition: null }).toEqual({ ...r.body, reason: null, estimatedStartAt: null, queuePosition: null });
    }
    expect(await h.jobCount()).toBe(before + 40);
  });

  it('rejects invalid input naming field and rule, and changes nothing', async () => {
    const before = await h.jobCount();
    const cases: [unknown, string, RegExp][] = [
      [job({ gpus: 0 }), 'gpus', /.+/],
      [job({ gpus: 12 }), 'gpus', /multiple of 8/],
      [job({ gpus: 'two' }), 'gpus', /number/],
      [job({ command: [] }), 'command', /.+/],
      [job({ env: { CUDA_VISIBLE_DEVICES: '0' } }), 'env', /CUDA_VISIBLE_DEVICES/],
      [job({ env: { 'bad-name': 'x' } }), 'env', /.+/],
      [job({ workingDir: 'relative' }), 'workingDir', /absolute/],
      [job({ gpuType: 'a100' }), 'gpuType', /.+/],
      [job({ tenant: 'kakao' }), 'tenant', /unknown field/],
      [{ ...job(), timeLimitSeconds: undefined }, 'timeLimitSeconds', /.+/],
    ];
    for (const [body, field, rule] of cases) {
      const r = await h.call('alice', 'POST', '/v1/jobs', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error).toBe('invalid_request');
      const issue = r.body.issues.find((i: any) => i.field === field || i.field.startsWith(`${field}.`));
      expect(issue, JSON.stringify(r.body)).toBeDefined();
      expect(issue.rule).toMatch(rule);
    }
    const bad = await h.call('alice', 'POST', '/v1/jobs', '{"name":');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('invalid_request');
    expect(JSON.stringify(bad.body)).not.toMatch(/at .*\.js/);
    expect((await h.call('alice', 'GET', '/v1/jobs?limit=0')).body.issues[0].field).toBe('limit');
    expect((await h.call('alice', 'GET', '/v1/jobs?bogus=1')).body.issues).toEqual([{ field: 'bogus', rule: 'unknown field' }]);
    expect((await h.call('alice', 'GET', '/v1/jobs/not-a-uuid')).body.issues[0].field).toBe('id');
    expect(await h.jobCount()).toBe(before);
  });

  it('takes the largest script even written out in escapes, refuses a body over the limit with 413 naming it, reads a path with a trailing slash as without, and an empty JSON body as none', async () => {
    const before = await h.jobCount();
    // Every byte an escape in JSON (six bytes each): the body is about 1.5 MiB.
    const script = `#!/bin/sh\n${'\x1b'.repeat(SCRIPT_MAX_BYTES - 10)}`;
    const ok = await h.call('alice', 'POST', '/v1/jobs', job({ name: 'largest-script', script }));
    expect(ok.status, JSON.stringify(ok.body).slice(0, 300)).toBe(201);
    const big = await h.call('alice', 'POST', '/v1/jobs', job({ name: 'too-big', env: { BIG: 'x'.repeat(BODY_LIMIT_BYTES) } }));
    expect(big).toEqual({ status: 413, body: { error: 'payload_too_large', message: `the body is larger than the ${BODY_LIMIT_BYTES / 1024 / 1024} MiB the API takes` } });
    expect(await h.jobCount()).toBe(before + 1);
    const slash = await h.call('alice', 'GET', `/v1/jobs/${ok.body.id}/`);
    expect(slash.status).toBe(200);
    expect(slash.body.id).toBe(ok.body.id);
    // A client that says JSON and sends nothing: no body, not a malformed one.
    const cancel = await h.call('alice', 'POST', `/v1/jobs/${ok.body.id}/cancel`, undefined, { 'content-type': 'application/json' });
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
    expect(cancel.body.state).toBe('cancelled');
    const empty = await h.call('alice', 'POST', '/v1/jobs', undefined, { 'content-type': 'application/json' });
    expect(empty.status).toBe(400);
    expect(empty.body.issues.map((i: { field: string }) => i.field)).toEqual(expect.arrayContaining(['name', 'gpus', 'timeLimitSeconds']));
  });

  it('refuses at submission what could never run', async () => {
    const before = await h.jobCount();
    // no H800 node exists (only H100s were registered)
    const noNode = await h.call('alice', 'POST', '/v1/jobs', job({ gpuType: 'h800' }));
    expect(noNode.status).toBe(400);
    expect(noNode.body.issues).toEqual([{ field: 'gpuType', rule: 'no node of that type exists' }]);
    // kakao's H100 limit is 16
    const overLimit = await h.call('bob', 'POST', '/v1/jobs', job({ gpus: 24 }));
    expect(overLimit.status).toBe(400);
    expect(overLimit.body.issues[0].field).toBe('gpus');
    expect(overLimit.body.issues[0].rule).toMatch(/limit of 16/);
    const anyOver = await h.call('bob', 'POST', '/v1/jobs', job({ gpus: 24, gpuType: 'any' }));
    expect(anyOver.status).toBe(400);
    expect(anyOver.body.issues[0].field).toBe('gpus');
    // naver may hold 32 H100 GPUs, but only 4 nodes (32 GPUs) exist: 40 could never run
    const tooBig = await h.call('alice', 'POST', '/v1/jobs', job({ gpus: 40 }));
    expect(tooBig.status).toBe(400);
    expect(await h.jobCount()).toBe(before);
    expect((await h.call('bob', 'POST', '/v1/jobs', job({ gpus: 16 }))).status).toBe(201);
  });

  it('operators read everything but submit nothing', async () => {
    const r = await h.call('op', 'POST', '/v1/jobs', job());
    expect(r.status).toBe(403);
    expect(r.body.error).toBe('forbidden');
    expect(r.body.message).toMatch(/tenant/);
    const all = await h.call('op', 'GET', '/v1/jobs?limit=500');
    const tenants = new Set(all.body.items.map((j: any) => j.tenant));
    expect(tenants).toEqual(new Set(['naver', 'kakao']));
    const kakao = await h.call('op', 'GET', '/v1/jobs?tenant=kakao&limit=500');
    expect(kakao.body.items.every((j: any) => j.tenant === 'kakao')).toBe(true);
  });

  it('isolates tenants: another tenant\'s job is 404 and never listed', async () => {
    const bobs = await h.call('bob', 'POST', '/v1/jobs', job({ name: 'secret' }));
    expect(bobs.status).toBe(201);
    expect(await h.call('alice', 'GET', `/v1/jobs/${bobs.body.id}`)).toEqual({ status: 404, body: { error: 'not_found', message: 'no such job' } });
    expect((await h.call('nadmin', 'GET', `/v1/jobs/${bobs.body.id}`)).status).toBe(404);
    expect((await h.call('alice', 'POST', `/v1/jobs/${bobs.body.id}/cancel`)).status).toBe(404);
    expect((await h.call('nadmin', 'POST', `/v1/jobs/${bobs.body.id}/cancel`)).status).toBe(404);
    const list = await h.call('alice', 'GET', '/v1/jobs?limit=500');
    expect(list.body.items.length).toBeGreaterThan(0);
    expect(list.body.items.every((j: any) => j.tenant === 'naver')).toBe(true);
    expect((await h.call('alice', 'GET', '/v1/jobs?tenant=kakao')).status).toBe(404);
    expect((await h.call('alice', 'GET', '/v1/jobs?user=bob')).status).toBe(404);
    expect((await h.call('bob', 'GET', `/v1/jobs/${bobs.body.id}`)).body.state).toBe('pending');
  });

  it('cancels a pending job at once, with a transition', async () => {
    const j = (await h.call('alice', 'POST', '/v1/jobs', job())).body;
    // a researcher cancels only their own jobs; the tenant admin any of the tenant's
    expect((await h.call('ann', 'POST', `/v1/jobs/${j.id}/cancel`)).status).toBe(403);
    const r = await h.call('alice', 'POST', `/v1/jobs/${j.id}/cancel`);
    expect(r.status).toBe(200);
    expect(r.body.state).toBe('cancelled');
    expect(r.body.endedAt).not.toBeNull();
    expect(r.body.transitions.map((t: any) => [t.from, t.to])).toEqual([[null, 'pending'], ['pending', 'cancelled']]);
    expect(r.body.transitions[1].reason).toBe('cancelled by alice');
    expect(await h.call('alice', 'POST', `/v1/jobs/${j.id}/cancel`)).toMatchObject({ status: 409, body: { error: 'conflict', message: 'job is already cancelled' } });
    const k = (await h.call('ann', 'POST', '/v1/jobs', job())).body;
    expect((await h.call('nadmin', 'POST', `/v1/jobs/${k.id}/cancel`)).body.state).toBe('cancelled');
  });

  it('asks a running job to stop (202), and refuses to cancel a finished one (409)', async () => {
    const j = (await h.call('alice', 'POST', '/v1/jobs', job())).body;
    await h.start_(j.id, 'h100-3', [0, 1]);
    const r = await h.call('alice', 'POST', `/v1/jobs/${j.id}/cancel`);
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ state: 'running', placement: [{ node: 'h100-3', gpus: [0, 1] }] });
    expect((await h.jobs.find(j.id))!.stop_requested).toBe('cancel');
    expect((await h.call('alice', 'POST', `/v1/jobs/${j.id}/cancel`)).status).toBe(202); // idempotent
    await h.jobs.transition(j.id, ['running'], 'cancelled', 'agent reported exit', new Date(), { exit_code: 143 });
    const done = await h.call('alice', 'GET', `/v1/jobs/${j.id}`);
    expect(done.body).toMatchObject({ state: 'cancelled', exitCode: 143, placement: [{ node: 'h100-3', gpus: [0, 1] }] });
    expect((await h.call('alice', 'POST', `/v1/jobs/${j.id}/cancel`)).status).toBe(409);
  });

  it('turns a preemption under way into a cancel, so the job is not requeued', async () => {
    const j = (await h.call('alice', 'POST', '/v1/jobs', job({ gpus: 1 }))).body;
    await h.start_(j.id, 'h100-3', [4]);
    expect(await h.jobs.requestStop(j.id, 'preempt', new Date())).toBe(true);
    expect((await h.call('alice', 'POST', `/v1/jobs/${j.id}/cancel`)).status).toBe(202);
    expect((await h.jobs.find(j.id))!.stop_requested).toBe('cancel');
    await h.jobs.transition(j.id, ['running'], 'cancelled', 'agent reported exit', new Date(), { exit_code: 143 });
  });

  it('shows a GPU\'s job only to the job\'s own tenant', async () => {
    const j = (await h.call('alice', 'POST', '/v1/jobs', job({ gpus: 1 }))).body;
    await h.start_(j.id, 'h100-2', [5]);
    const gpuJob = async (who: string) => (await h.call(who, 'GET', '/v1/nodes/h100-2')).body.gpus[5].job;
    expect(await gpuJob('alice')).toBe(j.id);
    expect(await gpuJob('op')).toBe(j.id);
    expect(await gpuJob('bob')).toBeNull();
    const list = await h.call('bob', 'GET', '/v1/nodes');
    expect(list.body.flatMap((n: any) => n.gpus.map((g: any) => g.job)).filter(Boolean)).toEqual(
      expect.not.arrayContaining([j.id]),
    );
    await h.jobs.transition(j.id, ['running'], 'completed', 'exit 0', new Date(), { exit_code: 0 });
  });

  it('paginates with a cursor, covering every job exactly once, newest first', async () => {
    for (let i = 0; i < 7; i++) expect((await h.call('ann', 'POST', '/v1/jobs', job({ name: `p${i}`, gpus: 1 }))).status).toBe(201);
    const all = (await h.call('nadmin', 'GET', '/v1/jobs?limit=500')).body.items.map((j: any) => j.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = cursor ? `&cursor=${cursor}` : '';
      const page: any = (await h.call('nadmin', 'GET', `/v1/jobs?limit=3${q}`)).body;
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...page.items.map((j: any) => j.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor && pages < 100);
    expect(seen).toEqual(all);
    expect(new Set(seen).size).toBe(seen.length);
    const annOnly = (await h.call('nadmin', 'GET', '/v1/jobs?user=ann&state=pending&limit=500')).body.items;
    expect(annOnly.length).toBeGreaterThanOrEqual(7);
    expect(annOnly.every((j: any) => j.user === 'ann' && j.state === 'pending')).toBe(true);
    const bad = await h.call('nadmin', 'GET', '/v1/jobs?cursor=garbage');
    expect(bad.status).toBe(400);
    expect(bad.body.issues).toEqual([{ field: 'cursor', rule: 'not a cursor this API returned' }]);
  });

  it('rejects arbitrary malformed SubmitJob bodies with 400 and creates nothing', async () => {
    const before = await h.jobCount();
    const valid = job();
    // Each body breaks the schema in at least one way: a wrong type, a bound, an unknown field, a missing field.
    const broken = fc.oneof(
      fc.record({ key: fc.constantFrom('name', 'gpus', 'gpuType', 'timeLimitSeconds', 'command', 'env', 'workingDir', 'priority', 'requeue'), value: fc.oneof(fc.constant(null), fc.object(), fc.array(fc.integer()), fc.constant(-1), fc.constant(''), fc.constant(1.5)) })
        // An object is a valid env (string values under variable names), so it breaks nothing there.
        .filter(({ key, value }) => !(key === 'workingDir' && value === undefined) && !(key === 'env' && value !== null && typeof value === 'object' && !Array.isArray(value)))
        .map(({ key, value }) => ({ ...valid, [key]: value })),
      fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !(k in valid) && !['gpuType', 'env', 'workingDir', 'priority', 'requeue', '__proto__'].includes(k)).map((k) => ({ ...valid, [k]: 1 })),
      fc.constantFrom('name', 'gpus', 'timeLimitSeconds', 'command').map((k) => {
        const { [k as keyof typeof valid]: _, ...rest } = valid;
        return rest;
      }),
      fc.integer({ min: 9, max: 4096 }).filter((n) => n % 8 !== 0).map((gpus) => ({ ...valid, gpus })),
      fc.oneof(fc.integer(), fc.string(), fc.array(fc.anything(), { maxLength: 3 }), fc.constant(null)),
    );
    await fc.assert(
      fc.asyncProperty(broken, async (body) => {
        const r = await h.call('alice', 'POST', '/v1/jobs', body);
        expect(r.status, JSON.stringify(body)).toBe(400);
        expect(r.body.error).toBe('invalid_request');
        expect(Array.isArray(r.body.issues) && r.body.issues.length > 0).toBe(true);
      }),
      { numRuns: kind === 'postgres' ? 150 : 60 },
    );
    expect(await h.jobCount()).toBe(before);
  });
});
