/**
 * Cutting access: a token never makes a token that outlives it, a maximum lifetime can be
 * configured, a revoke can take every token made with a leaked one along, and an operator or
 * a tenant admin can disable a user, which stops all of that user's tokens at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clock } from '../../apps/server/src/core/clock';
import { Harness } from './harness';

class ManualClock extends Clock {
  constructor(public t = Date.parse('2026-03-01T00:00:00Z')) {
    super();
  }
  now(): Date {
    return new Date(this.t);
  }
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
}

const DAY = 24 * 3600;
const iso = (ms: number) => new Date(ms).toISOString();

describe('token lifetimes, without a configured maximum', () => {
  const clock = new ManualClock();
  const h = new Harness('postgres', { clock });
  beforeAll(async () => {
    await h.start();
    await h.seed();
  });
  afterAll(() => h.stop());

  /** A token for `user` made by `by` (a token or a harness name), or the failed reply. */
  const mint = (by: string, body: Record<string, unknown>) => h.call(by, 'POST', '/v1/tokens', body);
  const liveTokens = async () => (await h.db.db.selectFrom('api_tokens').select('id').where('revoked_at', 'is', null).execute()).length;

  it('lets a token that never expires make one that never expires', async () => {
    const r = await mint('alice', { user: 'alice', description: 'forever' });
    expect(r.status).toBe(201);
    expect(r.body.expiresAt).toBeNull();
    expect(r.body.issuedBy).toEqual(expect.any(String));
  });

  it('never lets a token make one that outlives it: longer is a 400 naming the field, none asked is "expires with it"', async () => {
    const parent = await mint('op', { user: 'alice', description: 'one day', expiresInDays: 1 });
    expect(parent.status).toBe(201);
    const ends = clock.t + DAY * 1000;
    expect(parent.body.expiresAt).toBe(iso(ends));
    const before = await liveTokens();

    for (const body of [{ expiresInDays: 2 }, { expiresInSeconds: DAY + 1 }, { expiresInDays: 3650 }]) {
      const r = await mint(parent.body.token, { user: 'alice', ...body });
      const field = Object.keys(body)[0]!;
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.issues).toEqual([{ field, rule: `must not outlive the token you call with, which expires at ${iso(ends)}; leave it out for a token that expires with it` }]);
    }
    expect(await liveTokens()).toBe(before);

    clock.advance(3600);
    const shorter = await mint(parent.body.token, { user: 'alice', description: 'an hour', expiresInSeconds: 3600 });
    expect(shorter.status).toBe(201);
    expect(shorter.body.expiresAt).toBe(iso(clock.t + 3600 * 1000));
    const same = await mint(parent.body.token, { user: 'alice', description: 'as long as it may' });
    expect(same.status).toBe(201);
    expect(same.body.expiresAt).toBe(iso(ends));
    // ...and a child of the child is bounded the same way.
    expect((await mint(same.body.token, { user: 'alice', expiresInDays: 1 })).status).toBe(400);

    // When the parent expires, everything it made has expired too.
    clock.advance(DAY);
    for (const t of [parent.body.token, shorter.body.token, same.body.token]) expect((await h.call(t, 'GET', '/v1/me')).status).toBe(401);
  });

  it('applies to an operator minting for someone else as well', async () => {
    const opShort = await mint('op', { user: 'admin', description: 'op for a day', expiresInDays: 1 });
    const r = await mint(opShort.body.token, { user: 'bob', expiresInDays: 30 });
    expect(r.status).toBe(400);
    expect(r.body.issues[0].field).toBe('expiresInDays');
    const ok = await mint(opShort.body.token, { user: 'bob' });
    expect(ok.body.expiresAt).toBe(opShort.body.expiresAt);
  });

  it('refuses a lifetime given twice, and a cascade flag that is not a boolean', async () => {
    const r = await mint('alice', { user: 'alice', expiresInDays: 1, expiresInSeconds: 60 });
    expect(r).toMatchObject({ status: 400, body: { issues: [{ field: 'expiresInSeconds', rule: 'give expiresInDays or expiresInSeconds, not both' }] } });
    expect((await mint('alice', { user: 'alice', expiresInSeconds: 59 })).body.issues[0]).toEqual({ field: 'expiresInSeconds', rule: 'must be at least 60' });
    const t = await mint('alice', { user: 'alice' });
    const d = await h.call('alice', 'DELETE', `/v1/tokens/${t.body.id}?cascade=yes`);
    expect(d.status).toBe(400);
    expect(d.body.issues[0].field).toBe('cascade');
    expect((await h.call(t.body.token, 'GET', '/v1/me')).status).toBe(200);
  });

  it('revokes a token alone, or with ?cascade=true every token made with it, and theirs', async () => {
    const leaked = await mint('nadmin', { user: 'nadmin', description: 'leaked' });
    const unrelated = await mint('nadmin', { user: 'nadmin', description: 'laptop' });
    // What the holder of the leaked token made: one for themselves, one for a researcher, and one made by that.
    const self = await mint(leaked.body.token, { user: 'nadmin', description: 'made with the leaked one' });
    const forAnn = await mint(leaked.body.token, { user: 'ann', description: 'made with the leaked one' });
    const grand = await mint(forAnn.body.token, { user: 'ann', description: 'made with a token made with the leaked one' });
    expect([self, forAnn, grand].map((r) => r.status)).toEqual([201, 201, 201]);
    expect(forAnn.body.issuedBy).toBe(leaked.body.id);
    expect(grand.body.issuedBy).toBe(forAnn.body.id);
    const listed = (await h.call('nadmin', 'GET', '/v1/tokens?user=ann')).body as { id: string; issuedBy: string | null }[];
    expect(listed.find((t) => t.id === forAnn.body.id)!.issuedBy).toBe(leaked.body.id);

    // A plain revoke cuts the one token only.
    const plain = await mint(leaked.body.token, { user: 'nadmin', description: 'plain' });
    const plainChild = await mint(plain.body.token, { user: 'nadmin' });
    expect((await h.call('nadmin', 'DELETE', `/v1/tokens/${plain.body.id}`)).status).toBe(204);
    expect((await h.call(plain.body.token, 'GET', '/v1/me')).status).toBe(401);
    expect((await h.call(plainChild.body.token, 'GET', '/v1/me')).status).toBe(200);

    // Another tenant's admin cannot reach it, with or without cascade.
    expect((await h.call('kadmin', 'DELETE', `/v1/tokens/${leaked.body.id}?cascade=true`)).status).toBe(404);
    expect((await h.call(leaked.body.token, 'GET', '/v1/me')).status).toBe(200);

    expect((await h.call('nadmin', 'DELETE', `/v1/tokens/${leaked.body.id}?cascade=true`)).status).toBe(204);
    for (const t of [leaked, self, forAnn, grand, plainChild]) expect((await h.call(t.body.token, 'GET', '/v1/me')).status).toBe(401);
    expect((await h.call(unrelated.body.token, 'GET', '/v1/me')).status).toBe(200);
    expect((await h.call('ann', 'GET', '/v1/me')).status).toBe(200);
    // Nothing left to revoke: 404, as for any revoked token.
    expect((await h.call('nadmin', 'DELETE', `/v1/tokens/${leaked.body.id}?cascade=true`)).status).toBe(404);
  });
});

describe('token lifetimes under NURI_TOKEN_MAX_LIFETIME_SECONDS', () => {
  const clock = new ManualClock();
  const h = new Harness('postgres', { clock, env: { NURI_TOKEN_MAX_LIFETIME_SECONDS: String(7 * DAY) } });
  beforeAll(async () => {
    await h.start();
    await h.seed();
  });
  afterAll(() => h.stop());

  it('gives a token asked without a lifetime the maximum, and refuses a longer one naming the field and the variable', async () => {
    const r = await h.call('alice', 'POST', '/v1/tokens', { user: 'alice' });
    expect(r.status).toBe(201);
    expect(r.body.expiresAt).toBe(iso(clock.t + 7 * DAY * 1000));
    for (const [field, value] of [['expiresInDays', 8], ['expiresInSeconds', 7 * DAY + 1]] as const) {
      const bad = await h.call('alice', 'POST', '/v1/tokens', { user: 'alice', [field]: value });
      expect(bad.status).toBe(400);
      expect(bad.body.issues).toEqual([
        { field, rule: `must not exceed the maximum token lifetime, ${7 * DAY} seconds (NURI_TOKEN_MAX_LIFETIME_SECONDS); leave it out for the longest allowed` },
      ]);
    }
    expect((await h.call('alice', 'POST', '/v1/tokens', { user: 'alice', expiresInDays: 7 })).status).toBe(201);
    // The caller's own expiry bounds it further: a token with two days left makes two-day tokens.
    clock.advance(5 * DAY);
    const child = await h.call(r.body.token, 'POST', '/v1/tokens', { user: 'alice' });
    expect(child.body.expiresAt).toBe(r.body.expiresAt);
    expect((await h.call(r.body.token, 'POST', '/v1/tokens', { user: 'alice', expiresInDays: 3 })).body.issues[0].rule).toMatch(/^must not outlive the token you call with/);
  });
});

describe('disabling a user', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.start();
    await h.seed();
    // A second tenant admin at naver, and a second token of alice's.
    expect((await h.call('op', 'POST', '/v1/users', { name: 'nadmin2', tenant: 'naver', role: 'tenant-admin' })).status).toBe(201);
    h.tokens.nadmin2 = (await h.call('op', 'POST', '/v1/tokens', { user: 'nadmin2' })).body.token;
    h.tokens.alice2 = (await h.call('alice', 'POST', '/v1/tokens', { user: 'alice', description: 'second' })).body.token;
  });
  afterAll(() => h.stop());

  const disable = (who: string, user: string) => h.call(who, 'POST', `/v1/users/${user}/disable`);
  const enable = (who: string, user: string) => h.call(who, 'POST', `/v1/users/${user}/enable`);

  it('stops every token of the user at once (401 saying so), and enabling brings them back', async () => {
    expect((await h.call('alice', 'GET', '/v1/me')).status).toBe(200);
    const r = await disable('nadmin', 'alice');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ name: 'alice', tenant: 'naver', role: 'researcher', disabledAt: expect.any(String) });
    for (const t of ['alice', 'alice2']) {
      const me = await h.call(t, 'GET', '/v1/me');
      expect(me.status).toBe(401);
      expect(me.body.message).toBe("the token's user is disabled");
      expect((await h.call(t, 'POST', '/v1/jobs', { name: 'x', gpus: 1, timeLimitSeconds: 60, command: ['true'] })).status).toBe(401);
    }
    // Others are untouched; the listing shows who is disabled.
    expect((await h.call('ann', 'GET', '/v1/me')).status).toBe(200);
    const users = (await h.call('nadmin', 'GET', '/v1/users')).body as { name: string; disabledAt: string | null }[];
    expect(users.find((u) => u.name === 'alice')!.disabledAt).toBe(r.body.disabledAt);
    expect(users.find((u) => u.name === 'ann')!.disabledAt).toBeNull();
    // Disabling again changes nothing; no token can be made for a disabled user.
    expect((await disable('op', 'alice')).body.disabledAt).toBe(r.body.disabledAt);
    expect(await h.call('nadmin', 'POST', '/v1/tokens', { user: 'alice' })).toMatchObject({ status: 409, body: { error: 'conflict' } });

    const back = await enable('nadmin', 'alice');
    expect(back).toMatchObject({ status: 200, body: { name: 'alice', disabledAt: null } });
    for (const t of ['alice', 'alice2']) expect((await h.call(t, 'GET', '/v1/me')).status).toBe(200);
  });

  it('keeps a revoked token revoked across disable and enable', async () => {
    const t = await h.call('ann', 'POST', '/v1/tokens', { user: 'ann' });
    expect((await h.call('ann', 'DELETE', `/v1/tokens/${t.body.id}`)).status).toBe(204);
    await disable('nadmin', 'ann');
    await enable('nadmin', 'ann');
    expect((await h.call(t.body.token, 'GET', '/v1/me')).status).toBe(401);
    expect((await h.call('ann', 'GET', '/v1/me')).status).toBe(200);
  });

  it('is for operators (anyone but themselves) and tenant admins (their own tenant\'s researchers)', async () => {
    // Researchers disable no one, themselves included.
    expect((await disable('alice', 'ann')).status).toBe(403);
    expect((await disable('alice', 'alice')).status).toBe(403);
    // Another tenant's users do not exist for a tenant admin; tenant admins are the operators' to disable.
    expect((await disable('nadmin', 'bob')).status).toBe(404);
    expect((await disable('nadmin', 'kadmin')).status).toBe(404);
    expect((await disable('nadmin', 'nadmin2')).status).toBe(403);
    expect((await disable('nadmin', 'admin')).status).toBe(404);
    // Nobody disables themselves, so an operator always remains to enable others.
    const self = await disable('op', 'admin');
    expect(self.status).toBe(403);
    expect(self.body.message).toMatch(/cannot disable or enable yourself/);
    expect((await disable('nadmin', 'nadmin')).status).toBe(403);
    expect((await disable('op', 'nobody')).status).toBe(404);
    // Refusals changed nothing.
    for (const t of ['ann', 'bob', 'kadmin', 'nadmin', 'nadmin2', 'op']) expect((await h.call(t, 'GET', '/v1/me')).status).toBe(200);

    // An operator disables a tenant admin; that admin's tokens stop, and what they made for others stays.
    const madeByNadmin2 = await h.call('nadmin2', 'POST', '/v1/tokens', { user: 'ann' });
    expect((await disable('op', 'nadmin2')).status).toBe(200);
    expect((await h.call('nadmin2', 'GET', '/v1/me')).status).toBe(401);
    expect((await h.call(madeByNadmin2.body.token, 'GET', '/v1/me')).status).toBe(200);
    expect((await enable('nadmin', 'nadmin2')).status).toBe(403);
    expect((await enable('op', 'nadmin2')).status).toBe(200);
    expect((await h.call('nadmin2', 'GET', '/v1/me')).status).toBe(200);
  });
});
