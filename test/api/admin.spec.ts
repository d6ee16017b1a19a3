import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken } from '../../apps/server/src/auth/tokens';
import { Harness, job } from './harness';

describe('nodes, tenants and users', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.start();
    await h.seed();
  });
  afterAll(() => h.stop());

  it('registers a node for operators only, returning its agent token once', async () => {
    const body = { name: 'h800-0', gpuType: 'h800', rack: 'r2', leafSwitch: 'l9' };
    expect(await h.call('alice', 'POST', '/v1/nodes', body)).toMatchObject({ status: 403, body: { error: 'forbidden' } });
    expect((await h.call('nadmin', 'POST', '/v1/nodes', body)).status).toBe(403);
    const r = await h.call('op', 'POST', '/v1/nodes', body);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: 'h800-0', gpuType: 'h800', state: 'down', connected: false });
    expect(r.body.gpus).toHaveLength(8);
    expect(r.body.agentToken).toMatch(/^nuri_node_[A-Za-z0-9_-]{43}$/);
    expect((await h.nodes.tokenHash('h800-0'))!.hash).toBe(hashToken(r.body.agentToken));
    const again = await h.call('alice', 'GET', '/v1/nodes/h800-0');
    expect(again.status).toBe(200);
    expect(again.body.agentToken).toBeUndefined();
    expect(await h.call('op', 'POST', '/v1/nodes', body)).toMatchObject({ status: 409, body: { error: 'conflict' } });
    expect((await h.call('op', 'POST', '/v1/nodes', { ...body, name: 'Bad Name' })).body.issues[0].field).toBe('name');
    expect((await h.call('alice', 'GET', '/v1/nodes/nope')).status).toBe(404);
    // now an h800 job is admissible
    expect((await h.call('alice', 'POST', '/v1/jobs', job({ gpuType: 'h800' }))).status).toBe(201);
  });

  it('drains (draining while jobs run, else drained) and returns nodes', async () => {
    for (const who of ['alice', 'nadmin']) expect((await h.call(who, 'POST', '/v1/nodes/h100-0/drain', {})).status).toBe(403);
    const j = (await h.call('alice', 'POST', '/v1/jobs', job())).body;
    await h.start_(j.id, 'h100-0', [0, 1]);
    await h.nodes.markConnected((await h.nodes.idByName('h100-0'))!, true, new Date());
    const d = await h.call('op', 'POST', '/v1/nodes/h100-0/drain', { reason: 'firmware update' });
    expect(d).toMatchObject({ status: 200, body: { state: 'draining', stateReason: 'firmware update' } });
    expect((await h.jobs.find(j.id))!.state).toBe('running');
    expect((await h.call('op', 'POST', '/v1/nodes/h100-0/return')).body.state).toBe('up');
    await h.jobs.transition(j.id, ['running'], 'completed', 'exit 0', new Date(), { exit_code: 0 });
    expect((await h.call('op', 'POST', '/v1/nodes/h100-0/drain')).body.state).toBe('drained');
    expect((await h.call('op', 'POST', '/v1/nodes/h100-0/drain', { reason: '' })).body.issues[0].field).toBe('reason');
    expect((await h.call('op', 'POST', '/v1/nodes/h100-0/return')).body.state).toBe('up');
    // a node whose agent is away goes back to down, and a down node cannot be returned
    await h.call('op', 'POST', '/v1/nodes/h100-1/drain');
    expect((await h.call('op', 'POST', '/v1/nodes/h100-1/return')).body.state).toBe('down');
    expect(await h.call('op', 'POST', '/v1/nodes/h100-1/return')).toMatchObject({ status: 409, body: { error: 'conflict' } });
    expect((await h.call('op', 'POST', '/v1/nodes/ghost/drain')).status).toBe(404);
  });

  it('manages tenants: operators create, update and set quotas; others see only their own', async () => {
    const t = { name: 'lg-ai', displayName: 'LG AI Research', quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 24 }] };
    expect((await h.call('nadmin', 'POST', '/v1/tenants', t)).status).toBe(403);
    const c = await h.call('op', 'POST', '/v1/tenants', t);
    expect(c).toEqual({ status: 201, body: { name: 'lg-ai', displayName: 'LG AI Research', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 24 }] } });
    expect((await h.call('op', 'POST', '/v1/tenants', t)).status).toBe(409);
    const badQuota = await h.call('op', 'POST', '/v1/tenants', { ...t, name: 'x', quotas: [{ gpuType: 'h100', guaranteed: 9, limit: 8 }] });
    expect(badQuota.body.issues).toEqual([{ field: 'quotas.0.limit', rule: 'limit must be at least guaranteed' }]);
    const dup = await h.call('op', 'POST', '/v1/tenants', { ...t, name: 'y', quotas: [t.quotas[0], t.quotas[0]] });
    expect(dup.body.issues).toEqual([{ field: 'quotas.1.gpuType', rule: 'a GPU type appears once' }]);
    expect((await h.call('op', 'GET', '/v1/tenants/x')).status).toBe(404);
    expect((await h.call('op', 'PATCH', '/v1/tenants/lg-ai', { weight: 3 })).body.weight).toBe(3);
    expect((await h.call('op', 'PATCH', '/v1/tenants/lg-ai', { weight: -1 })).body.issues[0].field).toBe('weight');
    expect((await h.call('nadmin', 'PATCH', '/v1/tenants/naver', { weight: 9 })).status).toBe(403);
    const q = await h.call('op', 'PUT', '/v1/tenants/lg-ai/quotas', { quotas: [{ gpuType: 'h800', guaranteed: 0, limit: 8 }] });
    expect(q.body.quotas).toEqual([{ gpuType: 'h100', guaranteed: 8, limit: 24 }, { gpuType: 'h800', guaranteed: 0, limit: 8 }]);
    expect((await h.call('op', 'PUT', '/v1/tenants/ghost/quotas', { quotas: [{ gpuType: 'h800', guaranteed: 0, limit: 8 }] })).status).toBe(404);
    expect((await h.call('op', 'GET', '/v1/tenants')).body.map((x: any) => x.name)).toEqual(['kakao', 'lg-ai', 'naver']);
    expect((await h.call('alice', 'GET', '/v1/tenants')).body.map((x: any) => x.name)).toEqual(['naver']);
    expect((await h.call('alice', 'GET', '/v1/tenants/kakao')).status).toBe(404);
    expect((await h.call('alice', 'GET', '/v1/tenants/naver')).status).toBe(200);
  });

  it('manages users: tenant admins only in their tenant, researchers not at all', async () => {
    expect((await h.call('alice', 'GET', '/v1/users')).status).toBe(403);
    expect((await h.call('alice', 'POST', '/v1/users', { name: 'zed', tenant: 'naver', role: 'researcher' })).status).toBe(403);
    const c = await h.call('nadmin', 'POST', '/v1/users', { name: 'carol', tenant: 'naver', role: 'researcher' });
    expect(c).toMatchObject({ status: 201, body: { name: 'carol', tenant: 'naver', role: 'researcher' } });
    expect((await h.call('nadmin', 'POST', '/v1/users', { name: 'dave', tenant: 'kakao', role: 'researcher' })).status).toBe(404);
    expect((await h.call('nadmin', 'POST', '/v1/users', { name: 'eve', role: 'operator' })).status).toBe(403);
    expect((await h.call('nadmin', 'POST', '/v1/users', { name: 'carol', tenant: 'naver', role: 'researcher' })).status).toBe(409);
    const refine = await h.call('op', 'POST', '/v1/users', { name: 'frank', role: 'researcher' });
    expect(refine.body.issues[0].field).toBe('tenant');
    expect((await h.call('op', 'POST', '/v1/users', { name: 'ops2', role: 'operator' })).status).toBe(201);
    expect((await h.call('op', 'POST', '/v1/users', { name: 'gina', tenant: 'ghost', role: 'researcher' })).status).toBe(404);
    const mine = (await h.call('nadmin', 'GET', '/v1/users')).body.map((u: any) => u.name);
    expect(mine).toEqual(['alice', 'ann', 'carol', 'nadmin']);
    expect((await h.call('nadmin', 'GET', '/v1/users?tenant=kakao')).status).toBe(404);
    expect((await h.call('op', 'GET', '/v1/users?tenant=kakao')).body.map((u: any) => u.name)).toEqual(['bob', 'kadmin']);
    // a token for the new user, made by their admin, works
    const t = await h.call('nadmin', 'POST', '/v1/tokens', { user: 'carol' });
    expect((await h.call(t.body.token, 'GET', '/v1/me')).body).toEqual({ user: 'carol', tenant: 'naver', role: 'researcher' });
    // a tenant admin does not mint tokens for another tenant admin, nor for an operator
    await h.call('nadmin', 'POST', '/v1/users', { name: 'nadmin2', tenant: 'naver', role: 'tenant-admin' });
    expect((await h.call('nadmin', 'POST', '/v1/tokens', { user: 'nadmin2' })).status).toBe(403);
    expect((await h.call('nadmin', 'POST', '/v1/tokens', { user: 'admin' })).status).toBe(404);
    expect((await h.call('op', 'POST', '/v1/tokens', { user: 'bob', expiresInDays: 0 })).body.issues[0].field).toBe('expiresInDays');
  });

  it('answers unknown routes and internal errors as JSON without a stack', async () => {
    expect(await h.call('alice', 'GET', '/v1/nothing-here')).toMatchObject({ status: 404, body: { error: 'not_found' } });
  });
});
