/**
 * A small typed builder for Grafana dashboard JSON (schema 39), just what Nuri's
 * dashboards use: time series, stat, bar gauge and table panels over Prometheus, query
 * and textbox variables, and a flowing 24-column layout.
 */

/** The Prometheus datasource uid the provisioning file (grafana/provisioning) creates. */
export const DATASOURCE_UID = 'nuri-prometheus';
/**
 * What Grafana's import asks for (`__inputs`): the chosen datasource replaces `${DS_PROMETHEUS}`,
 * the `datasource` variable's starting value. A provisioned copy has no import step: the
 * unknown value falls back to the default Prometheus datasource, which the provisioning file
 * makes Nuri's. Panels and queries follow the variable, so switching it needs no JSON edit.
 */
export const DATASOURCE_INPUT = 'DS_PROMETHEUS';
export const DATASOURCE_VARIABLE = 'datasource';
export const DATASOURCE = { type: 'prometheus', uid: `\${${DATASOURCE_VARIABLE}}` } as const;

export type Unit =
  | 'none'
  | 'short'
  | 'percentunit'
  | 'bytes'
  | 'celsius'
  | 'watt'
  | 'joule'
  | 'kwatth'
  | 'hertz'
  | 's'
  | 'dtdurations'
  | 'reqps'
  | 'ops'
  | 'currencyUSD';

export interface Query {
  expr: string;
  legend?: string;
  /** Instant query (tables, stats of a current value). */
  instant?: boolean;
}

export interface PanelSpec {
  kind: 'timeseries' | 'stat' | 'bargauge' | 'table';
  title: string;
  description?: string;
  queries: Query[];
  unit?: Unit;
  /** Columns of 24; default 12 (timeseries/table), 6 (stat), 12 (bargauge). */
  width?: number;
  height?: number;
  /** Stacked areas (time series). */
  stack?: boolean;
  min?: number;
  max?: number;
  decimals?: number;
  /** Thresholds: [value, color] steps after the base green. */
  thresholds?: ReadonlyArray<readonly [number, string]>;
}

export interface QueryVariable {
  kind: 'query';
  name: string;
  label: string;
  /** `label_values(metric{...}, label)` */
  query: string;
  multi?: boolean;
  includeAll?: boolean;
}
export interface TextVariable {
  kind: 'textbox';
  name: string;
  label: string;
  value: string;
  description?: string;
}
export type VariableSpec = QueryVariable | TextVariable;

export interface DashboardSpec {
  uid: string;
  title: string;
  description: string;
  tags?: string[];
  variables: VariableSpec[];
  /** Rows of panels: each row starts a new line of the layout under a collapsible header. */
  rows: Array<{ title: string; panels: PanelSpec[] }>;
  time?: { from: string; to: string };
}

export const labelValues = (metric: string, label: string, matchers = ''): string =>
  `label_values(${metric}${matchers ? `{${matchers}}` : ''}, ${label})`;

function variable(v: VariableSpec): Record<string, unknown> {
  if (v.kind === 'textbox') {
    return {
      type: 'textbox',
      name: v.name,
      label: v.label,
      description: v.description ?? '',
      query: v.value,
      current: { selected: false, text: v.value, value: v.value },
      options: [{ selected: true, text: v.value, value: v.value }],
      hide: 0,
    };
  }
  const multi = v.multi ?? true;
  const includeAll = v.includeAll ?? true;
  return {
    type: 'query',
    name: v.name,
    label: v.label,
    datasource: DATASOURCE,
    definition: v.query,
    query: { query: v.query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    refresh: 2,
    regex: '',
    sort: 1,
    multi,
    includeAll,
    ...(includeAll ? { allValue: '.*' } : {}),
    current: includeAll ? { selected: true, text: ['All'], value: ['$__all'] } : {},
    options: [],
    hide: 0,
  };
}

function panel(p: PanelSpec, id: number, gridPos: { x: number; y: number; w: number; h: number }): Record<string, unknown> {
  const steps = [{ color: 'green', value: null as number | null }, ...(p.thresholds ?? []).map(([value, color]) => ({ color, value }))];
  const defaults: Record<string, unknown> = {
    unit: p.unit ?? 'short',
    thresholds: { mode: 'absolute', steps },
    color: { mode: p.kind === 'timeseries' ? 'palette-classic' : 'thresholds' },
  };
  if (p.min !== undefined) defaults.min = p.min;
  if (p.max !== undefined) defaults.max = p.max;
  if (p.decimals !== undefined) defaults.decimals = p.decimals;
  if (p.kind === 'timeseries') {
    defaults.custom = {
      drawStyle: 'line',
      lineWidth: 1,
      fillOpacity: p.stack ? 30 : 10,
      showPoints: 'never',
      spanNulls: false,
      stacking: { mode: p.stack ? 'normal' : 'none', group: 'A' },
    };
  }
  const options: Record<string, unknown> =
    p.kind === 'timeseries'
      ? { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } }
      : p.kind === 'stat'
        ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'area', justifyMode: 'auto', textMode: 'auto', orientation: 'auto' }
        : p.kind === 'bargauge'
          ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, orientation: 'horizontal', displayMode: 'gradient', showUnfilled: true }
          : { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], fields: '' } };
  return {
    id,
    type: p.kind,
    title: p.title,
    description: p.description ?? '',
    datasource: DATASOURCE,
    gridPos,
    fieldConfig: { defaults, overrides: [] },
    options,
    targets: p.queries.map((q, i) => ({
      refId: String.fromCharCode(65 + i),
      datasource: DATASOURCE,
      expr: q.expr,
      legendFormat: q.legend ?? '__auto',
      range: !(q.instant ?? p.kind === 'table'),
      instant: q.instant ?? p.kind === 'table',
      ...(p.kind === 'table' ? { format: 'table' } : {}),
    })),
    ...(p.kind === 'table' ? { transformations: [{ id: 'organize', options: { excludeByName: { Time: true } } }] } : {}),
  };
}

/** The dashboard JSON Grafana imports (ids and layout are deterministic). */
export function buildDashboard(d: DashboardSpec): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of d.rows) {
    panels.push({ id: id++, type: 'row', title: row.title, collapsed: false, gridPos: { x: 0, y, w: 24, h: 1 }, panels: [] });
    y += 1;
    let x = 0;
    let rowHeight = 0;
    for (const p of row.panels) {
      const w = p.width ?? (p.kind === 'stat' ? 6 : 12);
      const h = p.height ?? (p.kind === 'stat' ? 4 : 8);
      if (x + w > 24) {
        x = 0;
        y += rowHeight;
        rowHeight = 0;
      }
      panels.push(panel(p, id++, { x, y, w, h }));
      x += w;
      rowHeight = Math.max(rowHeight, h);
    }
    y += rowHeight;
  }
  return {
    uid: d.uid,
    title: d.title,
    description: d.description,
    tags: ['nuri', ...(d.tags ?? [])],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    timezone: 'browser',
    time: d.time ?? { from: 'now-6h', to: 'now' },
    timepicker: {},
    fiscalYearStartMonth: 0,
    liveNow: false,
    weekStart: '',
    annotations: { list: [] },
    links: [{ type: 'dashboards', tags: ['nuri'], asDropdown: true, title: 'Nuri', includeVars: false, keepTime: true }],
    __inputs: [
      { name: DATASOURCE_INPUT, label: 'Prometheus', description: 'The Prometheus that scrapes Nuri', type: 'datasource', pluginId: 'prometheus', pluginName: 'Prometheus' },
    ],
    __requires: [
      { type: 'grafana', id: 'grafana', name: 'Grafana', version: '10.0.0' },
      { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
    ],
    templating: {
      list: [
        {
          type: 'datasource',
          name: DATASOURCE_VARIABLE,
          label: 'Data source',
          query: 'prometheus',
          current: { selected: false, text: `\${${DATASOURCE_INPUT}}`, value: `\${${DATASOURCE_INPUT}}` },
          options: [],
          refresh: 1,
          regex: '',
          hide: 0,
        },
        ...d.variables.map(variable),
      ],
    },
    panels,
  };
}

/** Every PromQL expression in a built dashboard: panel targets and variable queries. */
export function dashboardExpressions(json: Record<string, unknown>): { panel: string; expr: string }[] {
  const out: { panel: string; expr: string }[] = [];
  for (const p of json.panels as Array<{ title: string; targets?: Array<{ expr: string }> }>) {
    for (const t of p.targets ?? []) out.push({ panel: p.title, expr: t.expr });
  }
  for (const v of (json.templating as { list: Array<{ name: string; definition?: string }> }).list) {
    if (v.definition) out.push({ panel: `$${v.name}`, expr: v.definition });
  }
  return out;
}
