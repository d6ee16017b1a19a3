import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTES } from '../../apps/server/src/api';
import { Harness } from './harness';

/** The routes Fastify actually maps, as "get /v1/jobs/{id}" (from its route tree; HEAD is Fastify's own twin of each GET). */
function mappedRoutes(h: Harness): string[] {
  const tree = h.server.app.getHttpAdapter().getInstance().printRoutes({ commonPrefix: false });
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^((?:│ {3}| {4})*)[├└]── (\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (!m) continue;
    const depth = [...m[1]!].length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const path = stack.join('');
    for (const method of (m[3] ?? '').split(',').map((x) => x.trim().toLowerCase()))
      if (method && method !== 'head') out.push(`${method} ${path.replace(/:(\w+)/g, '{$1}')}`);
  }
  return out;
}

describe('OpenAPI document', () => {
  const h = new Harness('pglite');
  beforeAll(() => h.start());
  afterAll(() => h.stop());

  it('documents every route the app maps, and maps every API route it documents', async () => {
    const doc = (await h.call(null, 'GET', '/v1/openapi.json')).body;
    expect(doc.openapi).toBe('3.1.0');
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
    const mapped = mappedRoutes(h);
    expect(mapped.length).toBeGreaterThan(15);
    for (const r of mapped) expect(documented, r).toContain(r);
    for (const r of ROUTES.filter((r) => !r.external)) expect(mapped).toContain(`${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
  });

  it('takes request schemas from the zod contracts', async () => {
    const doc = (await h.call(null, 'GET', '/v1/openapi.json')).body;
    const submit = doc.paths['/v1/jobs'].post;
    const body = submit.requestBody.content['application/json'].schema;
    expect(body.properties.gpus).toMatchObject({ type: 'integer', minimum: 1, maximum: 4096 });
    expect(body.additionalProperties).toBe(false);
    expect(body.required).toEqual(expect.arrayContaining(['name', 'gpus', 'timeLimitSeconds']));
    // A job is a command or a batch script (whose arguments `command` then holds).
    expect(Object.keys(body.properties)).toEqual(expect.arrayContaining(['command', 'script', 'array', 'dependency']));
    expect(submit.responses['201']).toBeDefined();
    expect(submit.responses['400'].content['application/json'].schema.$ref).toBe('#/components/schemas/ApiError');
    const list = doc.paths['/v1/jobs'].get.parameters.map((p: any) => `${p.in}:${p.name}`);
    expect(list).toEqual(expect.arrayContaining(['query:state', 'query:tenant', 'query:cursor', 'query:limit']));
    expect(doc.paths['/v1/jobs/{id}'].get.parameters[0]).toMatchObject({ name: 'id', in: 'path', required: true });
    expect(doc.paths['/v1/nodes'].post['x-roles']).toEqual(['operator']);
    expect(doc.paths['/healthz'].get.security).toEqual([]);
  });
});
