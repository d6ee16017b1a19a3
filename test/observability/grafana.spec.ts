/**
 * The committed Grafana dashboards are exactly what the generator writes from the
 * metric catalog, and every query in them uses metrics the library exports and variables
 * the dashboard defines.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DATASOURCE_UID, dashboardExpressions, dashboardFileText, exposedSeriesNames, generateDashboards } from '@nuri/metrics';

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
    expect([...generated.keys()].sort()).toEqual(['nuri-center.json', 'nuri-job.json', 'nuri-nodes.json', 'nuri-scheduler.json', 'nuri-tenants.json']);
    expect(vars('nuri-tenants').map((v) => v.name)).toEqual(['tenant', 'gpu_type', 'price_per_gpu_hour']);
    expect(vars('nuri-nodes').map((v) => v.name)).toEqual(['gpu_type', 'node']);
    expect(vars('nuri-job').map((v) => v.name)).toEqual(['tenant', 'job']);
    for (const v of [...vars('nuri-tenants'), ...vars('nuri-nodes'), ...vars('nuri-job')]) {
      if (v.name !== 'price_per_gpu_hour') expect(v.definition).toMatch(/^label_values\(/);
    }
  });

  it('panels have unique ids and fit the 24-column grid; all use the provisioned datasource', () => {
    for (const [, json] of generated) {
      const panels = json.panels as Array<{ id: number; type: string; gridPos: { x: number; w: number }; datasource?: { uid: string } }>;
      expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
      for (const p of panels) {
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
        if (p.type !== 'row') expect(p.datasource?.uid).toBe(DATASOURCE_UID);
      }
    }
  });

  it('provisioning: datasource uid matches the dashboards, URL is configurable, dashboards provider exists', () => {
    const ds = readFileSync(join(ROOT, 'grafana/provisioning/datasources/nuri.yml'), 'utf8');
    expect(ds).toMatch(new RegExp(`uid: ${DATASOURCE_UID}\\b`));
    expect(ds).toMatch(/type: prometheus/);
    expect(ds).toMatch(/url: \$\{NURI_PROMETHEUS_URL\}/);
    const prov = readFileSync(join(ROOT, 'grafana/provisioning/dashboards/nuri.yml'), 'utf8');
    expect(prov).toMatch(/type: file/);
    expect(prov).toMatch(/path: \$\{NURI_GRAFANA_DASHBOARDS\}/);
  });
});
