/**
 * Every string and every integer a request carries is checked before it reaches PostgreSQL:
 * a NUL character (which `text` and `jsonb` refuse) or an integer outside an int column's
 * range is a 400 naming the field and the rule, never a 500, and changes nothing.
 *
 * Three layers: every leaf of every request schema in the route table refuses them (so a
 * field added later without the shared helpers fails here); every write route, fed a NUL or
 * a huge integer in each of its fields in turn, answers 400 naming that field; and a
 * property test throws arbitrary NUL-bearing strings and out-of-range numbers at random fields.
 */
import { INT32_MAX, NO_NUL_RULE } from '@nuri/contracts';
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { ROUTES } from '../../apps/server/src/api';
import { Harness, job } from './harness';

type Path = (string | number)[];

/** The leaves of a zod schema (strings, numbers…), with where they sit; wrappers are seen through. */
function leaves(schema: z.ZodType, at: string, out: { at: string; type: string; schema: z.ZodType }[] = []) {
  const def = (schema as unknown as { _zod: { def: Record<string, any> } })._zod.def;
  switch (def.type) {
    case 'object':
      for (const [k, v] of Object.entries(def.shape as Record<string, z.ZodType>)) leaves(v, `${at}.${k}`, out);
      break;
    case 'array':
      leaves(def.element, `${at}[]`, out);
      break;
    case 'record':
      leaves(def.keyType, `${at}{key}`, out);
      leaves(def.valueType, `${at}{value}`, out);
      break;
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
      leaves(def.innerType, at, out);
      break;
    case 'pipe':
      leaves(def.in, at, out);
      break;
    case 'union':
      for (const o of def.options) leaves(o, at, out);
      break;
    default:
      out.push({ at, type: def.type, schema });
  }
  return out;
}

/** Every schema a request is parsed with: params, query and body of each route. */
const requestSchemas = ROUTES.flatMap((r) =>
  (['params', 'query', 'body'] as const).flatMap((part) => (r[part] ? [{ route: `${r.method.toUpperCase()} ${r.path} ${part}`, schema: r[part]! }] : [])),
);

describe('request schemas: every leaf', () => {
  const all = requestSchemas.flatMap(({ route, schema }) => leaves(schema, route));

  it('are only of kinds this test knows how to check', () => {
    expect(all.length).toBeGreaterThan(20);
    expect(all.filter((l) => !['string', 'number', 'enum', 'boolean', 'literal', 'transform'].includes(l.type)).map((l) => `${l.at}: ${l.type}`)).toEqual([]);
  });

  it('refuse a string with a NUL character in it', () => {
    const strings = all.filter((l) => l.type === 'string');
    expect(strings.length).toBeGreaterThan(15);
    const accepting = strings.filter((l) => ['a\u0000', '\u0000', 'naver\u0000', '/tmp/\u0000x'].some((v) => l.schema.safeParse(v).success));
    expect(accepting.map((l) => l.at)).toEqual([]);
  });

  it('refuse numbers outside a 32-bit integer, and infinities', () => {
    const numbers = all.filter((l) => l.type === 'number');
    expect(numbers.length).toBeGreaterThan(8);
    const accepting = numbers.filter((l) => [2 ** 31, -(2 ** 31) - 1, 1e20, Infinity, -Infinity, Number.MAX_SAFE_INTEGER].some((v) => l.schema.safeParse(v).success));
    expect(accepting.map((l) => l.at)).toEqual([]);
  });
});

/** Write routes and GET queries, each with a request that would be accepted, to mutate one field at a time. */
interface Example {
  who: string;
  method: string;
  /** Path with `:params` filled in. */
  path: string;
  route: string;
  body?: Record<string, unknown>;
  query?: Record<string, string>;
}

const EXAMPLES: Example[] = [
  {
    who: 'alice',
    method: 'POST',
    route: '/v1/jobs',
    path: '/v1/jobs',
    body: job({ name: 'train', command: ['--lr', '3e-4'], script: '#!/bin/sh\npython train.py "$@"\n', array: '0-3%2', env: { LR: '3e-4' }, workingDir: '/scratch/alice', priority: 'high', gpuType: 'h100' }),
  },
  { who: 'op', method: 'POST', route: '/v1/nodes', path: '/v1/nodes', body: { name: 'h100-new', gpuType: 'h100', gpus: 8, rack: 'r9', leafSwitch: 'l9' } },
  { who: 'op', method: 'POST', route: '/v1/nodes/:name/drain', path: '/v1/nodes/h100-1/drain', body: { reason: 'firmware update' } },
  {
    who: 'op',
    method: 'POST',
    route: '/v1/tenants',
    path: '/v1/tenants',
    body: { name: 'lg-ai', displayName: 'LG AI Research', weight: 2, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 16 }] },
  },
  { who: 'op', method: 'PATCH', route: '/v1/tenants/:name', path: '/v1/tenants/naver', body: { displayName: 'NAVER Cloud', weight: 3 } },
  { who: 'op', method: 'PUT', route: '/v1/tenants/:name/quotas', path: '/v1/tenants/naver/quotas', body: { quotas: [{ gpuType: 'h800', guaranteed: 8, limit: 16 }] } },
  { who: 'op', method: 'POST', route: '/v1/users', path: '/v1/users', body: { name: 'carol', tenant: 'naver', role: 'researcher' } },
  { who: 'alice', method: 'POST', route: '/v1/tokens', path: '/v1/tokens', body: { user: 'alice', description: 'laptop', expiresInDays: 30 } },
  { who: 'alice', method: 'POST', route: '/v1/tokens', path: '/v1/tokens', body: { user: 'alice', description: 'ci', expiresInSeconds: 3600 } },
  { who: 'alice', method: 'POST', route: '/v1/jobs/cancel', path: '/v1/jobs/cancel', body: { ids: ['abcdef12'], array: 'abcdef', name: 'train', states: ['pending'], user: 'alice' } },
  { who: 'alice', method: 'GET', route: '/v1/jobs', path: '/v1/jobs', query: { state: 'pending,running', user: 'alice', name: 'train', array: 'abcdef', limit: '10' } },
  { who: 'alice', method: 'GET', route: '/v1/jobs/:id/logs', path: '/v1/jobs/00000000-0000-4000-8000-000000000000/logs', query: { rank: '0', tail: '10', follow: 'false' } },
  { who: 'op', method: 'GET', route: '/v1/users', path: '/v1/users', query: { tenant: 'naver' } },
  { who: 'nadmin', method: 'GET', route: '/v1/tokens', path: '/v1/tokens', query: { user: 'ann' } },
  {
    who: 'op',
    method: 'GET',
    route: '/v1/usage',
    path: '/v1/usage',
    query: { from: '2026-12-01', to: '2026-12-31', groupBy: 'tenant,month', tenant: 'naver', user: 'alice', gpuType: 'h100', job: '00000000-0000-4000-8000-000000000000' },
  },
  { who: 'op', method: 'GET', route: '/v1/usage/history', path: '/v1/usage/history', query: { from: '2026-12-01', to: '2026-12-31', tenant: 'naver', user: 'alice', limit: '10' } },
  { who: 'op', method: 'GET', route: '/v1/usage/quota', path: '/v1/usage/quota', query: { tenant: 'naver' } },
  { who: 'op', method: 'GET', route: '/v1/usage/idle-jobs', path: '/v1/usage/idle-jobs', query: { tenant: 'naver', limit: '10' } },
  { who: 'op', method: 'GET', route: '/v1/tenants/:name/statement', path: '/v1/tenants/naver/statement', query: { month: '2026-12' } },
  { who: 'nadmin', method: 'PUT', route: '/v1/tenants/:name/idle-policy', path: '/v1/tenants/naver/idle-policy', body: { notifyAfterSeconds: 1800, cancelAfterSeconds: 3600 } },
  { who: 'op', method: 'PUT', route: '/v1/prices', path: '/v1/prices', body: { prices: [{ gpuType: 'h100', tenant: 'naver', effectiveFrom: '2099-01-01', usdPerGpuHour: 2.5 }] } },
];

/** Fields of free text (route and top-level field): a NUL is refused by the NUL rule itself. */
const FREE_TEXT = new Set([
  '/v1/jobs name',
  '/v1/jobs command',
  '/v1/jobs env',
  '/v1/jobs workingDir',
  '/v1/jobs/cancel name',
  '/v1/nodes rack',
  '/v1/nodes leafSwitch',
  '/v1/nodes/:name/drain reason',
  '/v1/tenants displayName',
  '/v1/tenants/:name displayName',
  '/v1/tokens description',
]);

/** Every leaf of a JSON value with its path. */
function jsonLeaves(v: unknown, path: Path = []): { path: Path; value: unknown }[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => jsonLeaves(x, [...path, i]));
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => jsonLeaves(x, [...path, k]));
  return [{ path, value: v }];
}

function withLeaf<T>(v: T, path: Path, leaf: unknown): T {
  const copy = structuredClone(v) as any;
  let o = copy;
  for (const k of path.slice(0, -1)) o = o[k];
  o[path[path.length - 1]!] = leaf;
  return copy;
}

const stringLeaves = (e: Example) => jsonLeaves(e.body ?? e.query).filter((l) => typeof l.value === 'string');
const numberLeaves = (e: Example) => jsonLeaves(e.body).filter((l) => typeof l.value === 'number');

describe('NUL characters and out-of-range integers over HTTP', () => {
  const h = new Harness();
  let pendingJob: string;
  let aliceToken: string;

  /** A digest of every table but the migrations': equal before and after means nothing changed. */
  const digest = async (): Promise<Record<string, string>> => {
    const tables = await sql<{ t: string }>`select table_name as t from information_schema.tables
      where table_schema = 'public' and table_type = 'BASE TABLE' and table_name not like 'kysely_%' order by 1`.execute(h.db.db);
    const out: Record<string, string> = {};
    for (const { t } of tables.rows) {
      const r = await sql<{ d: string }>`select md5(coalesce(string_agg(x::text, ',' order by x::text), '')) as d from ${sql.table(t)} x`.execute(h.db.db);
      out[t] = r.rows[0]!.d;
    }
    return out;
  };

  const send = (e: Example, body: unknown, query?: Record<string, string>) =>
    h.call(e.who, e.method, query ? `${e.path}?${new URLSearchParams(query)}` : e.path, body);

  const expect400 = (r: { status: number; body: any }, field: string, what: string) => {
    expect(r.status, `${what}: ${JSON.stringify(r.body)}`).toBe(400);
    expect(r.body.error).toBe('invalid_request');
    const rules = (r.body.issues as { field: string; rule: string }[]).filter((i) => i.field === field).map((i) => i.rule);
    expect(rules.length, `${what}: no issue names ${field}: ${JSON.stringify(r.body.issues)}`).toBeGreaterThan(0);
    expect(rules.every((rule) => rule.length > 0)).toBe(true);
    return rules;
  };

  beforeAll(async () => {
    await h.start();
    await h.seed();
    pendingJob = (await h.call('alice', 'POST', '/v1/jobs', job())).body.id;
    aliceToken = (await h.call('alice', 'POST', '/v1/tokens', { user: 'alice', description: 'to revoke' })).body.id;
  });
  afterAll(() => h.stop());

  it('has an example for every route that takes a body or a query, each accepted as it stands', async () => {
    const covered = new Set(EXAMPLES.map((e) => `${e.method} ${e.route}`));
    const missing = ROUTES.filter((r) => (r.body || r.query) && !covered.has(`${r.method.toUpperCase()} ${r.path}`)).map((r) => `${r.method.toUpperCase()} ${r.path}`);
    // DELETE /v1/tokens/:id?cascade is a boolean flag: covered below with the path parameters.
    expect(missing).toEqual(['DELETE /v1/tokens/:id']);
    // The examples are valid (so the 400s below are the mutation's doing): parse them as the server does.
    for (const e of EXAMPLES) {
      const route = ROUTES.find((r) => r.method.toUpperCase() === e.method && r.path === e.route)!;
      const schema = (e.body ? route.body : route.query)!;
      expect(schema.safeParse(e.body ?? e.query).success, `${e.method} ${e.route}`).toBe(true);
    }
  });

  it('refuses a NUL in each string field of each request, naming it, and changes nothing', async () => {
    const before = await digest();
    let checked = 0;
    for (const e of EXAMPLES) {
      for (const leaf of stringLeaves(e)) {
        for (const bad of [`${leaf.value as string}\u0000`, `\u0000${leaf.value as string}`, 'a\u0000b']) {
          const mutated = withLeaf(e.body ?? e.query, leaf.path, bad);
          const r = await (e.body ? send(e, mutated) : send(e, undefined, mutated as Record<string, string>));
          const rules = expect400(r, leaf.path.join('.'), `${e.method} ${e.route} ${leaf.path.join('.')}=${JSON.stringify(bad)}`);
          checked++;
          // Free-text fields name the NUL rule itself; names, enums and ids fail their own pattern.
          if (FREE_TEXT.has(`${e.route} ${leaf.path[0]}`)) expect(rules).toContain(NO_NUL_RULE);
        }
      }
    }
    expect(checked).toBeGreaterThan(50);
    // A NUL in an environment variable's name, in a cursor, and in path parameters.
    expect400(await h.call('alice', 'POST', '/v1/jobs', job({ env: { 'A\u0000B': '1' } })), 'env.A\u0000B', 'env name');
    expect400(await h.call('alice', 'GET', `/v1/jobs?cursor=${encodeURIComponent('abc\u0000')}`), 'cursor', 'cursor');
    expect400(await h.call('alice', 'GET', `/v1/jobs/${pendingJob.slice(0, -1)}%00`), 'id', 'job id');
    expect400(await h.call('alice', 'POST', `/v1/jobs/${pendingJob}%00/cancel`), 'id', 'cancel id');
    expect400(await h.call('op', 'POST', '/v1/nodes/h100-1%00/drain', {}), 'name', 'node name');
    expect400(await h.call('op', 'PUT', '/v1/tenants/naver%00/quotas', { quotas: [{ gpuType: 'h100', guaranteed: 1, limit: 1 }] }), 'name', 'tenant name');
    expect400(await h.call('alice', 'DELETE', `/v1/tokens/${aliceToken}%00`), 'id', 'token id');
    expect400(await h.call('alice', 'DELETE', `/v1/tokens/${aliceToken}?cascade=true%00`), 'cascade', 'cascade flag');
    expect400(await h.call('op', 'POST', '/v1/users/alice%00/disable'), 'name', 'user name');
    expect(await digest()).toEqual(before);
  });

  it('refuses an integer out of a 32-bit column in each number field, naming it, and changes nothing', async () => {
    const before = await digest();
    let checked = 0;
    for (const e of EXAMPLES.filter((x) => x.body)) {
      for (const leaf of numberLeaves(e)) {
        for (const bad of [2 ** 31, 2 ** 53, -(2 ** 31) - 1, 1e300]) {
          const r = await send(e, withLeaf(e.body, leaf.path, bad));
          expect400(r, leaf.path.join('.'), `${e.method} ${e.route} ${leaf.path.join('.')}=${bad}`);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(40);
    // The case the issue found: a quota of 2^31 (guaranteed, limit, or both), and 1e400 (JSON's Infinity).
    const quota = (q: string) => h.call('op', 'PUT', '/v1/tenants/naver/quotas', q);
    const rules = expect400(await quota(`{"quotas":[{"gpuType":"h100","guaranteed":${2 ** 31},"limit":${2 ** 31}}]}`), 'quotas.0.guaranteed', 'quota');
    expect(rules).toEqual([`must be at most ${INT32_MAX} (a 32-bit integer)`]);
    expect400(await quota('{"quotas":[{"gpuType":"h100","guaranteed":1,"limit":1e400}]}'), 'quotas.0.limit', 'quota 1e400');
    expect400(await h.call('alice', 'GET', `/v1/jobs?limit=${2 ** 31}`), 'limit', 'page size');
    expect(await digest()).toEqual(before);
    // The largest allowed quota is stored and read back.
    const ok = await h.call('op', 'PUT', '/v1/tenants/kakao/quotas', { quotas: [{ gpuType: 'h800', guaranteed: INT32_MAX, limit: INT32_MAX }] });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.quotas).toContainEqual({ gpuType: 'h800', guaranteed: INT32_MAX, limit: INT32_MAX });
  });

  it('property: any string with a NUL, or any number out of int32, in any field of any write, is a 400 naming it', async () => {
    const writes = EXAMPLES.filter((e) => e.body);
    const targets = writes.flatMap((e) => [...stringLeaves(e), ...numberLeaves(e)].map((l) => ({ e, leaf: l })));
    const before = await digest();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...targets),
        fc.string({ maxLength: 20 }),
        fc.string({ maxLength: 20 }),
        fc.oneof(
          fc.double({ min: 2 ** 31, noNaN: true }),
          fc.double({ max: -(2 ** 31) - 1, noNaN: true }),
          fc.integer({ min: 0, max: 2 ** 30 }).map((n) => 2 ** 31 + n),
          fc.integer({ min: 0, max: 2 ** 30 }).map((n) => -(2 ** 31) - 1 - n),
        ),
        async ({ e, leaf }, pre, post, huge) => {
          const bad = typeof leaf.value === 'string' ? `${pre}\u0000${post}` : huge;
          const r = await send(e, withLeaf(e.body, leaf.path, bad));
          expect400(r, leaf.path.join('.'), `${e.method} ${e.route} ${leaf.path.join('.')}=${JSON.stringify(bad)}`);
        },
      ),
      { numRuns: 60 },
    );
    expect(await digest()).toEqual(before);
  });
});
