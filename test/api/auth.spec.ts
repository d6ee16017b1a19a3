import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthService } from '../../apps/server/src/api';
import { hashToken } from '../../apps/server/src/auth/tokens';
import { Harness } from './harness';

describe('authentication', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.start();
    await h.seed();
  });
  afterAll(() => h.stop());

  it('serves /healthz and the OpenAPI document without a token', async () => {
    expect(await h.call(null, 'GET', '/healthz')).toEqual({ status: 200, body: { status: 'ok' } });
    const doc = await h.call(null, 'GET', '/v1/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe('3.1.0');
  });

  it('answers 401 JSON without a token, with a malformed header and with an unknown token', async () => {
    for (const [who, headers] of [
      [null, {}],
      [null, { authorization: 'Basic abc' }],
      ['nuri_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', {}],
    ] as const) {
      const r = await h.call(who, 'GET', '/v1/jobs', undefined, headers);
      expect(r.status).toBe(401);
      expect(r.body).toMatchObject({ error: 'unauthorized' });
      expect(typeof r.body.message).toBe('string');
    }
  });

  it('identifies the caller', async () => {
    expect((await h.call('alice', 'GET', '/v1/me')).body).toEqual({ user: 'alice', tenant: 'naver', role: 'researcher' });
    expect((await h.call('op', 'GET', '/v1/me')).body).toEqual({ user: 'admin', tenant: null, role: 'operator' });
  });

  it('issues tokens shaped nuri_<43 base64url> and stores only their hash', async () => {
    const alice = (await h.identity.findUser('alice'))!;
    const t = await h.service(AuthService).issueToken(alice.id, 'shape', null);
    expect(t.token).toMatch(/^nuri_[A-Za-z0-9_-]{43}$/);
    const rows = await h.db.db.selectFrom('api_tokens').select('token_hash').execute();
    expect(rows.some((r) => r.token_hash === t.token)).toBe(false);
    expect(rows.some((r) => r.token_hash === hashToken(t.token))).toBe(true);
  });

  it('refuses an expired token', async () => {
    const alice = (await h.identity.findUser('alice'))!;
    const t = await h.service(AuthService).issueToken(alice.id, 'expired', new Date(Date.now() - 1000));
    expect((await h.call(t.token, 'GET', '/v1/me')).status).toBe(401);
  });

  it('refuses a revoked token, and the owner can revoke via the API', async () => {
    const created = await h.call('alice', 'POST', '/v1/tokens', { user: 'alice', description: 'laptop', expiresInDays: 30 });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^nuri_/);
    expect((await h.call(created.body.token, 'GET', '/v1/me')).status).toBe(200);
    const listed = await h.call('alice', 'GET', '/v1/tokens');
    expect(listed.body.map((t: any) => t.id)).toContain(created.body.id);
    expect(listed.body.every((t: any) => t.token === undefined)).toBe(true);
    expect((await h.call('alice', 'DELETE', `/v1/tokens/${created.body.id}`)).status).toBe(204);
    expect((await h.call(created.body.token, 'GET', '/v1/me')).status).toBe(401);
    expect((await h.call('alice', 'DELETE', `/v1/tokens/${created.body.id}`)).status).toBe(404);
  });

  it('lets a tenant admin manage researchers of the tenant, not others', async () => {
    const forAnn = await h.call('nadmin', 'POST', '/v1/tokens', { user: 'ann' });
    expect(forAnn.status).toBe(201);
    expect((await h.call(forAnn.body.token, 'GET', '/v1/me')).body.user).toBe('ann');
    expect((await h.call('nadmin', 'GET', '/v1/tokens?user=ann')).status).toBe(200);
    // another tenant's user does not exist for them; a researcher manages only themselves
    expect((await h.call('nadmin', 'POST', '/v1/tokens', { user: 'bob' })).status).toBe(404);
    expect((await h.call('kadmin', 'DELETE', `/v1/tokens/${forAnn.body.id}`)).status).toBe(404);
    expect((await h.call('alice', 'POST', '/v1/tokens', { user: 'ann' })).status).toBe(403);
    expect((await h.call('alice', 'POST', '/v1/tokens', { user: 'bob' })).status).toBe(404);
    expect((await h.call('nadmin', 'DELETE', `/v1/tokens/${forAnn.body.id}`)).status).toBe(204);
  });

  it('refuses a token revoked, or a user disabled, by another replica within NURI_AUTH_CACHE_MS', async () => {
    // Another replica's change is only in the database: this replica's cached check lasts its bound.
    const c = new Harness('pglite', { env: { NURI_AUTH_CACHE_MS: '300' } });
    await c.start();
    try {
      await c.seed();
      const bound = async (who: string, change: () => Promise<unknown>) => {
        expect((await c.call(who, 'GET', '/v1/me')).status).toBe(200);
        await change();
        const t = Date.now();
        while ((await c.call(who, 'GET', '/v1/me')).status === 200) {
          expect(Date.now() - t).toBeLessThan(300 + 200);
          await new Promise((r) => setTimeout(r, 20));
        }
        expect((await c.call(who, 'GET', '/v1/me')).status).toBe(401);
      };
      const alice = (await c.identity.findUser('alice'))!;
      await bound('alice', () => c.db.db.updateTable('api_tokens').set({ revoked_at: new Date() }).where('user_id', '=', alice.id).execute());
      const bob = (await c.identity.findUser('bob'))!;
      await bound('bob', () => c.identity.setUserDisabled(bob.id, new Date()));
      // Through this replica a disable takes effect at once.
      expect((await c.call('ann', 'GET', '/v1/me')).status).toBe(200);
      expect((await c.call('nadmin', 'POST', '/v1/users/ann/disable')).status).toBe(200);
      expect((await c.call('ann', 'GET', '/v1/me')).status).toBe(401);
    } finally {
      await c.stop();
    }
  });

  it('bootstraps the operator idempotently', async () => {
    const auth = h.service(AuthService);
    await auth.ensureBootstrapOperator('bootstrap-token-for-tests-0123456789');
    await auth.ensureBootstrapOperator('bootstrap-token-for-tests-0123456789');
    const admin = (await h.identity.findUser('admin'))!;
    expect(admin.role).toBe('operator');
    expect((await h.identity.listTokens(admin.id)).length).toBe(1);
    expect((await h.call('op', 'GET', '/v1/me')).status).toBe(200);
  });
});
