import { parseServerConfig } from '@nuri/config';
import { migrateToLatest, openDatabase, type DatabaseHandle } from '@nuri/db';
import { parseExposition, type ParsedSample } from '@nuri/metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../bootstrap';

const TOKEN = 'bootstrap-token-for-http-metrics-0123456789';

describe('HTTP request duration', () => {
  let server: RunningServer;
  let database: DatabaseHandle;

  beforeAll(async () => {
    database = await openDatabase({});
    await migrateToLatest(database.db);
    server = await startServer(
      parseServerConfig({ PORT: '0', HOST: '127.0.0.1', NURI_ROLES: 'api', NURI_DEMO: '0', NURI_LOG_LEVEL: 'error', NURI_BOOTSTRAP_TOKEN: TOKEN }),
      { database },
    );
  });
  afterAll(async () => {
    await server?.close();
    await database?.close();
  });

  const counts = async (): Promise<ParsedSample[]> => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    return parseExposition(text).samples.filter((s) => s.name === 'nuri_http_request_duration_seconds_count');
  };
  const count = (samples: ParsedSample[], method: string, route: string, status: string) =>
    samples.find((s) => s.labels.method === method && s.labels.route === route && s.labels.status === status)?.value ?? 0;

  it('labels every request with its route template and status, including 401s, 400s, 404s and unknown paths', async () => {
    const id = '00000000-0000-4000-8000-000000000001';
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await fetch(`${server.url}/v1/jobs/${id}`)).status).toBe(401);
    expect((await fetch(`${server.url}/v1/jobs/${id}`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${server.url}/v1/jobs`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' })).status).toBe(400);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/no/such/path/${id}`)).status).toBe(404);
    // The response is sent before the timer's 'finish' listener runs; give it a tick.
    await new Promise((r) => setTimeout(r, 50));
    const samples = await counts();
    expect(count(samples, 'GET', '/v1/jobs/:id', '401')).toBe(1);
    expect(count(samples, 'GET', '/v1/jobs/:id', '404')).toBe(1);
    expect(count(samples, 'POST', '/v1/jobs', '400')).toBe(1);
    expect(count(samples, 'GET', '/healthz', '200')).toBe(1);
    expect(count(samples, 'GET', 'unmatched', '404')).toBe(1);
    // No raw path (ids) ever becomes a label value.
    expect(samples.every((s) => !s.labels.route!.includes(id))).toBe(true);
    // The scrape itself is timed too.
    expect(count(await counts(), 'GET', '/metrics', '200')).toBeGreaterThanOrEqual(1);
  });
});
