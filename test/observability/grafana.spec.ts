/**
 * The committed Grafana dashboards are exactly what the generator writes from the
 * metric catalog, and every query in them uses metrics the library exports and variables
 * the dashboard defines.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DATASOURCE_INPUT, DATASOURCE_UID, DATASOURCE_VARIABLE, dashboardExpressions, dashboardFileText, exposedSeriesNames, generateDashboards } from '@nuri/metrics';

const ROOT = resolve(__dirname, '../..');
const DIR = join(ROOT, 'grafana/dashboards');
const generated = generateDashboards();

describe('grafana dashboards', () => {
  it('committed JSON equals the generator output (run npm run grafana:generate)', () => {
    const committed = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
    expect(committed).toEqual([...generated.keys()].sort());
    for (const [name, json] of generated) {
      expect(readFileSync(join(DIR, name), 'utf8'), `${name} is stale: run npm run grafana:generate`).toBe(dashboardFileText(json));
    }
  });

  it('every query uses only exported metric names', () => {
    const known = exposedSeriesNames();
    for (const [name, json] of generated) {
      for (const { panel, expr } of dashboardExpressions(json)) {
        const used = [...expr.matchAll(/\b(nuri_[a-z0-9_]+|DCGM_FI_[A-Z0-9_]+)\b/g)].map((m) => m[1]!);
        expect(used.length, `${name} / ${panel}: ${expr}`).toBeGreaterThan(0);
        for (const u of used) expect(known.has(u), `${name} / ${panel}: unknown metric ${u}`).toBe(true);
      }
    }
  });

  it('every $variable is defined by the dashboard (or is a Grafana built-in)', () => {
    for (const [name, json] of generated) {
      const defined = new Set((json.templating as { list: Array<{ name: string }> }).list.map((v) => v.name));
      for (const { panel, expr } of dashboardExpressions(json)) {
        for (const [, v] of expr.matchAll(/\$(\w+)/g)) {
          if (v!.startsWith('__')) continue;
          expect(defined.has(v!), `${name} / ${panel}: $${v} not defined`).toBe(true);
        }
      }
    }
  });

  it('has the dashboards and template variables operators need', () => {
    const vars = (uid: string) => (generated.get(`${uid}.json`)!.templating as { list: Array<{ name: string; definition?: string }> }).list;
    expect([...generated.keys()].sort()).toEqual(['nuri-center.json', 'nuri-cost.json', 'nuri-job.json', 'nuri-nodes.json', 'nuri-scheduler.json', 'nuri-tenants.json']);
    // Cost per tenant from the exported price (contract prices included), not a dashboard constant.
    expect(vars('nuri-cost').map((v) => v.name)).toEqual(['datasource', 'tenant', 'gpu_type']);
    expect(JSON.stringify(generated.get('nuri-cost.json'))).toContain('nuri_tenant_gpu_price_usd_per_gpu_hour');
    expect(vars('nuri-tenants').map((v) => v.name)).toEqual(['datasource', 'tenant', 'gpu_type']);
    expect(vars('nuri-nodes').map((v) => v.name)).toEqual(['datasource', 'gpu_type', 'node']);
    expect(vars('nuri-job').map((v) => v.name)).toEqual(['datasource', 'tenant', 'job']);
    for (const v of [...vars('nuri-tenants'), ...vars('nuri-nodes'), ...vars('nuri-job')]) {
      if (v.name !== 'datasource') expect(v.definition).toMatch(/^label_values\(/);
    }
    // The job variable offers job ids from the job_id label (Prometheus' `job` is the scrape job).
    expect(vars('nuri-job').find((v) => v.name === 'job')!.definition).toMatch(/^label_values\(nuri_gpu_healthy\{job_id!="",.*\}, job_id\)$/);
  });

  it('panels have unique ids and fit the 24-column grid; every panel, query and variable follows the datasource variable', () => {
    for (const [name, json] of generated) {
      const panels = json.panels as Array<{ id: number; type: string; gridPos: { x: number; w: number }; datasource?: { uid: string }; targets?: Array<{ datasource?: { uid: string } }> }>;
      expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
      for (const p of panels) {
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
        if (p.type === 'row') continue;
        expect(p.datasource?.uid).toBe(`\${${DATASOURCE_VARIABLE}}`);
        for (const t of p.targets ?? []) expect(t.datasource?.uid).toBe(`\${${DATASOURCE_VARIABLE}}`);
      }
      // No datasource uid is hard-coded anywhere: importing into another Grafana needs no JSON edit.
      expect(dashboardFileText(json), name).not.toContain(DATASOURCE_UID);
    }
  });

  it('is importable: __inputs asks for a Prometheus datasource, which becomes the datasource variable', () => {
    for (const [name, json] of generated) {
      expect(json.__inputs, name).toEqual([expect.objectContaining({ name: DATASOURCE_INPUT, type: 'datasource', pluginId: 'prometheus' })]);
      const list = (json.templating as { list: Array<Record<string, any>> }).list;
      const ds = list[0]!;
      expect(ds).toMatchObject({ type: 'datasource', name: DATASOURCE_VARIABLE, query: 'prometheus' });
      // Grafana's import replaces every `${DS_PROMETHEUS}` with the chosen datasource's uid.
      expect(ds.current.value).toBe(`\${${DATASOURCE_INPUT}}`);
      for (const v of list.slice(1)) if (v.type === 'query') expect(v.datasource.uid).toBe(`\${${DATASOURCE_VARIABLE}}`);
    }
  });

  it('energy is shown in kWh, converted from the joule counter', () => {
    const energy = [...generated.values()].flatMap((json) =>
      (json.panels as Array<{ title: string; fieldConfig?: { defaults: { unit: string } }; targets?: Array<{ expr: string }> }>).filter((p) => p.targets?.some((t) => t.expr.includes('nuri_gpu_energy_joules_total'))),
    );
    expect(energy.length).toBeGreaterThanOrEqual(2);
    for (const p of energy) {
      expect(p.fieldConfig!.defaults.unit, p.title).toBe('kwatth');
      for (const t of p.targets!) expect(t.expr, p.title).toMatch(/\/ 3\.6e6$/);
    }
  });

  it('provisioning: datasource uid matches the dashboards, URL is configurable, dashboards provider exists', () => {
    const ds = readFileSync(join(ROOT, 'grafana/provisioning/datasources/nuri.yml'), 'utf8');
    expect(ds).toMatch(new RegExp(`uid: ${DATASOURCE_UID}\\b`));
    // Provisioned dashboards start from the default Prometheus datasource: this one.
    expect(ds).toMatch(/isDefault: true/);
    expect(ds).toMatch(/type: prometheus/);
    expect(ds).toMatch(/url: \$\{NURI_PROMETHEUS_URL\}/);
    const prov = readFileSync(join(ROOT, 'grafana/provisioning/dashboards/nuri.yml'), 'utf8');
    expect(prov).toMatch(/type: file/);
    expect(prov).toMatch(/path: \$\{NURI_GRAFANA_DASHBOARDS\}/);
  });
});
