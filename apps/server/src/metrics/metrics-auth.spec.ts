import { parseServerConfig } from '@nuri/config';
import { migrateToLatest, openDatabase, type DatabaseHandle } from '@nuri/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../bootstrap';
import { metricsAuthorized, prefersGzip } from './metrics.controller';

const METRICS_TOKEN = 'metrics-token-for-tests-0123456789';
const OPERATOR_TOKEN = 'bootstrap-token-for-metrics-auth-0123456789';

describe('GET /metrics with NURI_METRICS_TOKEN', () => {
  const servers: RunningServer[] = [];
  let database: DatabaseHandle;

  beforeAll(async () => {
    database = await openDatabase({});
    await migrateToLatest(database.db);
    // An api process (behind the API's own token guard) and a gateway process (no API at all).
    for (const roles of ['api', 'gateway'])
      servers.push(
        await startServer(
          parseServerConfig({
            PORT: '0',
            HOST: '127.0.0.1',
            NURI_ROLES: roles,
            NURI_DEMO: '0',
            NURI_LOG_LEVEL: 'error',
            NURI_BOOTSTRAP_TOKEN: OPERATOR_TOKEN,
            NURI_METRICS_TOKEN: METRICS_TOKEN,
          }),
          { database },
        ),
      );
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await database?.close();
  });

  it('answers 401 on every process without the token, with another token or scheme, and 200 with it', async () => {
    for (const s of servers) {
      const scrape = (authorization?: string) => fetch(`${s.url}/metrics`, { headers: authorization ? { authorization } : {} });
      for (const header of [undefined, `Bearer ${METRICS_TOKEN}x`, `Bearer ${METRICS_TOKEN.slice(0, -1)}`, `Basic ${METRICS_TOKEN}`, METRICS_TOKEN, `Bearer ${OPERATOR_TOKEN}`, 'Bearer ']) {
        const r = await scrape(header);
        expect(r.status, `${s.url} with ${header}`).toBe(401);
        expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
        const body = await r.text();
        expect(body).not.toMatch(/nuri_/);
        expect(JSON.parse(body)).toMatchObject({ error: 'unauthorized' });
      }
      const ok = await scrape(`Bearer ${METRICS_TOKEN}`);
      expect(ok.status).toBe(200);
      expect(ok.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(await ok.text()).toMatch(/^# HELP nuri_/m);
      expect((await scrape(`bearer   ${METRICS_TOKEN}  `)).status).toBe(200);
      // Health stays open.
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    }
  });

  it('answers ?name= with those families alone, in every process, and refuses a name it does not export on its own', async () => {
    const auth = { authorization: `Bearer ${METRICS_TOKEN}` };
    for (const s of servers) {
      expect((await fetch(`${s.url}/metrics?name=nuri_scheduler_pass_duration_seconds`)).status).toBe(401);
      const r = await fetch(`${s.url}/metrics?name=nuri_scheduler_pass_duration_seconds&name=nuri_scheduler_leader`, { headers: auth });
      expect(r.status).toBe(200);
      const lines = (await r.text()).split('\n').filter(Boolean);
      const families = new Set(lines.map((l) => (l.startsWith('#') ? l.split(' ')[2] : l.split(/[{ ]/)[0]!.replace(/_(bucket|sum|count)$/, ''))));
      expect([...families].sort()).toEqual(['nuri_scheduler_leader', 'nuri_scheduler_pass_duration_seconds']);
      expect(lines).toContain('nuri_scheduler_pass_duration_seconds_count 0');
      for (const name of ['nuri_no_such_family', 'nuri_gpu_utilization_ratio']) {
        const bad = await fetch(`${s.url}/metrics?name=${name}`, { headers: auth });
        expect(bad.status).toBe(400);
        expect(((await bad.json()) as { message: string }).message).toMatch(new RegExp(`^name: .*${name}`));
      }
    }
  });

  it('does not make the metrics token an API token', async () => {
    const api = servers[0]!;
    expect((await fetch(`${api.url}/v1/me`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status).toBe(401);
    expect((await fetch(`${api.url}/v1/me`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } })).status).toBe(200);
  });
});

describe('metricsAuthorized', () => {
  it('accepts exactly `Bearer <token>`', () => {
    const t = 'x'.repeat(24);
    expect(metricsAuthorized(`Bearer ${t}`, t)).toBe(true);
    for (const h of [undefined, '', t, `Bearer ${t}y`, `Bearer y${t}`, `Bearer ${t} extra`, `Token ${t}`]) expect(metricsAuthorized(h, t)).toBe(false);
  });
});

describe('prefersGzip', () => {
  it('gzips for a client that takes gzip at least as gladly as plain text', () => {
    for (const h of ['gzip', 'gzip, deflate, br', 'deflate, GZIP', 'gzip;q=1.0, identity;q=0.5', '*', 'identity;q=0.5, *', 'gzip;q=0.8, identity;q=0.8', 'gzip;q=0.5', 'br, gzip;q=0.5']) expect(prefersGzip(h), h).toBe(true);
    for (const h of [undefined, '', 'identity', 'deflate, br', 'gzip;q=0', 'gzip;q=0.5, identity', '*;q=0', 'gzip;q=0.4, identity;q=0.9']) expect(prefersGzip(h), h).toBe(false);
  });
});
