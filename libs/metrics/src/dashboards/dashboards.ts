/**
 * Nuri's Grafana dashboards. Every metric name comes from METRICS, so renaming a metric
 * breaks the typecheck here and the committed-JSON test, not a panel in production.
 * `npm run grafana:generate` writes them to grafana/dashboards/.
 */
import { CRITICAL_XIDS, METRICS } from '../metrics';
import { buildDashboard, labelValues, type DashboardSpec, type VariableSpec } from './grafana';

const M = Object.fromEntries(Object.entries(METRICS).map(([k, v]) => [k, v.name])) as { [K in keyof typeof METRICS]: (typeof METRICS)[K]['name'] };
const bucket = (name: string) => `${name}_bucket`;

// --- variables ---------------------------------------------------------------------------
const gpuTypeVar: VariableSpec = { kind: 'query', name: 'gpu_type', label: 'GPU type', query: labelValues(M.nodeGpusExpected, 'gpu_type') };
const tenantVar: VariableSpec = { kind: 'query', name: 'tenant', label: 'Tenant', query: labelValues(M.tenantQuotaLimit, 'tenant') };
const nodeVar: VariableSpec = { kind: 'query', name: 'node', label: 'Node', query: labelValues(M.nodeUp, 'node', 'gpu_type=~"$gpu_type"') };
const jobVar: VariableSpec = {
  kind: 'query',
  name: 'job',
  label: 'Job',
  query: labelValues(M.gpuHealthy, 'job_id', 'job_id!="",tenant=~"$tenant"'),
  multi: false,
  includeAll: false,
};
/** A tenant's spend at the price in effect (exported per tenant and type: contract prices included), not a dashboard constant. */
const priced = (gpuSeconds: string) => `${gpuSeconds} * on (tenant, gpu_type) group_left max by (tenant, gpu_type) (${M.tenantGpuPrice})`;

/** Pending jobs may want `any` type: keep them when filtering by type. */
const jobType = 'gpu_type=~"$gpu_type|any"';
const gpuType = 'gpu_type=~"$gpu_type"';

export const CENTER: DashboardSpec = {
  uid: 'nuri-center',
  title: 'Nuri / Center',
  description: 'The whole center: GPUs by state and type, utilization, queues, waits and power.',
  variables: [gpuTypeVar],
  rows: [
    {
      title: 'Capacity',
      panels: [
        { kind: 'stat', title: 'GPUs allocated', queries: [{ expr: `sum(${M.schedulerGpus}{${gpuType},state="allocated"})` }] },
        { kind: 'stat', title: 'GPUs free', queries: [{ expr: `sum(${M.schedulerGpus}{${gpuType},state="free"})` }] },
        { kind: 'stat', title: 'GPUs unhealthy', queries: [{ expr: `sum(${M.schedulerGpus}{${gpuType},state="unhealthy"})` }], thresholds: [[1, 'red']] },
        { kind: 'stat', title: 'Nodes down', queries: [{ expr: `sum(${M.nodeState}{${gpuType},state="down"})` }], thresholds: [[1, 'red']] },
        { kind: 'timeseries', title: 'GPUs by state and type', stack: true, queries: [{ expr: `sum by (gpu_type, state) (${M.schedulerGpus}{${gpuType}})`, legend: '{{gpu_type}} {{state}}' }] },
        {
          kind: 'timeseries',
          title: 'GPU utilization by type',
          unit: 'percentunit',
          min: 0,
          max: 1,
          queries: [
            { expr: `avg by (gpu_type) (${M.gpuUtilization}{${gpuType}})`, legend: '{{gpu_type}} all GPUs' },
            { expr: `avg by (gpu_type) (${M.gpuUtilization}{${gpuType},job_id!=""})`, legend: '{{gpu_type}} allocated GPUs' },
          ],
        },
      ],
    },
    {
      title: 'Queue',
      panels: [
        { kind: 'timeseries', title: 'Pending GPUs by tenant', stack: true, queries: [{ expr: `sum by (tenant) (${M.schedulerPendingGpus}{${jobType}})`, legend: '{{tenant}}' }] },
        {
          kind: 'timeseries',
          title: 'Queue wait p95 by tenant',
          unit: 's',
          queries: [{ expr: `histogram_quantile(0.95, sum by (tenant, le) (rate(${bucket(M.schedulerQueueWait)}{${jobType}}[1h])))`, legend: '{{tenant}}' }],
        },
        { kind: 'timeseries', title: 'Jobs by state', queries: [{ expr: `sum by (state) (${M.schedulerJobs}{${jobType}})`, legend: '{{state}}' }] },
        { kind: 'timeseries', title: 'Oldest pending job by tenant', unit: 's', queries: [{ expr: `max by (tenant) (${M.schedulerOldestPending}{${jobType}})`, legend: '{{tenant}}' }] },
      ],
    },
    {
      title: 'Power',
      panels: [
        { kind: 'timeseries', title: 'Power draw by type', unit: 'watt', stack: true, queries: [{ expr: `sum by (gpu_type) (${M.gpuPower}{${gpuType}})`, legend: '{{gpu_type}}' }] },
        // kWh, as power is billed (the counter is in joules: 1 kWh = 3.6e6 J).
        { kind: 'timeseries', title: 'Energy per hour by type', unit: 'kwatth', queries: [{ expr: `sum by (gpu_type) (increase(${M.gpuEnergy}{${gpuType}}[1h])) / 3.6e6`, legend: '{{gpu_type}}' }] },
      ],
    },
  ],
};

const tenantSel = 'tenant=~"$tenant",gpu_type=~"$gpu_type"';

export const TENANTS: DashboardSpec = {
  uid: 'nuri-tenants',
  title: 'Nuri / Tenants',
  description: 'Per tenant: quota against allocation and usage, cost, waits and idle allocated GPUs.',
  variables: [tenantVar, gpuTypeVar],
  rows: [
    {
      title: 'Quota and allocation',
      panels: [
        {
          kind: 'timeseries',
          title: 'Quota and allocation',
          width: 24,
          queries: [
            { expr: `sum by (tenant) (${M.tenantAllocated}{${tenantSel}})`, legend: '{{tenant}} allocated' },
            { expr: `sum by (tenant) (${M.tenantQuotaGuaranteed}{${tenantSel}})`, legend: '{{tenant}} guaranteed' },
            { expr: `sum by (tenant) (${M.tenantQuotaLimit}{${tenantSel}})`, legend: '{{tenant}} limit' },
          ],
        },
        {
          kind: 'bargauge',
          title: 'Allocation / guarantee',
          unit: 'percentunit',
          min: 0,
          max: 2,
          thresholds: [[1, 'blue']],
          queries: [{ expr: `sum by (tenant) (${M.tenantAllocated}{${tenantSel}}) / sum by (tenant) (${M.tenantQuotaGuaranteed}{${tenantSel}} > 0)`, legend: '{{tenant}}' }],
        },
        {
          kind: 'timeseries',
          title: 'GPUs waited for within guarantee',
          description: 'min(guaranteed, allocated + pending) - allocated: should return to 0 within a few scheduling passes.',
          queries: [{ expr: `sum by (tenant) (${M.tenantGuaranteeShortfall}{${tenantSel}})`, legend: '{{tenant}}' }],
        },
      ],
    },
    {
      title: 'Usage and cost',
      panels: [
        { kind: 'timeseries', title: 'GPUs in use (usage rate)', stack: true, queries: [{ expr: `sum by (tenant) (rate(${M.tenantUsage}{${tenantSel}}[5m]))`, legend: '{{tenant}}' }] },
        {
          kind: 'bargauge',
          title: 'GPU-hours in range',
          queries: [{ expr: `sum by (tenant) (increase(${M.tenantUsage}{${tenantSel}}[$__range])) / 3600`, legend: '{{tenant}}', instant: true }],
        },
        {
          kind: 'table',
          title: 'Cost in range (GPU-hours × the price in effect, USD)',
          width: 24,
          decimals: 2,
          queries: [{ expr: `sum by (tenant, gpu_type) (${priced(`increase(${M.tenantUsage}{${tenantSel}}[$__range]) / 3600`)})` }],
        },
      ],
    },
    {
      title: 'Waits and waste',
      panels: [
        {
          kind: 'timeseries',
          title: 'Queue wait p50 / p95',
          unit: 's',
          queries: [
            { expr: `histogram_quantile(0.5, sum by (tenant, le) (rate(${bucket(M.schedulerQueueWait)}{tenant=~"$tenant",${jobType}}[1h])))`, legend: '{{tenant}} p50' },
            { expr: `histogram_quantile(0.95, sum by (tenant, le) (rate(${bucket(M.schedulerQueueWait)}{tenant=~"$tenant",${jobType}}[1h])))`, legend: '{{tenant}} p95' },
          ],
        },
        { kind: 'timeseries', title: 'Pending GPUs', queries: [{ expr: `sum by (tenant) (${M.schedulerPendingGpus}{tenant=~"$tenant",${jobType}})`, legend: '{{tenant}}' }] },
        {
          kind: 'timeseries',
          title: 'Allocated GPUs idle',
          description: 'Allocated GPUs under the idle threshold for the idle time (library idle config).',
          queries: [{ expr: `sum by (tenant) (${M.tenantIdleAllocated}{tenant=~"$tenant"})`, legend: '{{tenant}}' }],
        },
        {
          kind: 'timeseries',
          title: 'Preemptions suffered',
          queries: [{ expr: `sum by (tenant, reason) (increase(${M.schedulerPreemptions}{${tenantSel}}[1h]))`, legend: '{{tenant}} {{reason}}' }],
        },
      ],
    },
  ],
};

const nodeSel = 'node=~"$node",gpu_type=~"$gpu_type"';
const criticalXids = CRITICAL_XIDS.join('|');

export const NODES: DashboardSpec = {
  uid: 'nuri-nodes',
  title: 'Nuri / Nodes and GPU health',
  description: 'Nodes up and down, GPU temperature and power, XID and ECC errors, throttling and missing GPUs.',
  variables: [gpuTypeVar, nodeVar],
  rows: [
    {
      title: 'Nodes',
      panels: [
        { kind: 'stat', title: 'Nodes up', queries: [{ expr: `sum(${M.nodeUp}{${nodeSel}})` }] },
        { kind: 'stat', title: 'Nodes not connected', queries: [{ expr: `count(${M.nodeUp}{${nodeSel}} == 0) or vector(0)` }], thresholds: [[1, 'red']] },
        { kind: 'stat', title: 'Unhealthy GPUs', queries: [{ expr: `count(${M.gpuHealthy}{${nodeSel}} == 0) or vector(0)` }], thresholds: [[1, 'red']] },
        { kind: 'stat', title: 'Row-remap failures', queries: [{ expr: `sum(${M.gpuRemappedRowsFailure}{${nodeSel}}) or vector(0)` }], thresholds: [[1, 'red']] },
        { kind: 'timeseries', title: 'Nodes by state', stack: true, queries: [{ expr: `sum by (state) (${M.nodeState}{${nodeSel}})`, legend: '{{state}}' }] },
        {
          kind: 'table',
          title: 'Nodes down or missing GPUs',
          queries: [
            { expr: `max by (node, gpu_type) (${M.nodeUp}{${nodeSel}}) == 0` },
            { expr: `max by (node) (${M.nodeGpusExpected}{${nodeSel}}) - (count by (node) (${M.gpuHealthy}{${nodeSel}}) or on (node) 0 * max by (node) (${M.nodeGpusExpected}{${nodeSel}})) > 0` },
          ],
        },
        {
          kind: 'timeseries',
          title: 'Seconds since last GPU sample',
          unit: 's',
          queries: [{ expr: `topk(20, time() - max by (node) (${M.nodeTelemetryTimestamp}{${nodeSel}}))`, legend: '{{node}}' }],
        },
        { kind: 'timeseries', title: 'Agent buffer drops', queries: [{ expr: `sum by (node) (increase(${M.agentBufferDropped}{${nodeSel}}[1h]))`, legend: '{{node}}' }] },
      ],
    },
    {
      title: 'GPU temperature and power',
      panels: [
        {
          kind: 'timeseries',
          title: 'Hottest GPUs',
          unit: 'celsius',
          thresholds: [[85, 'red']],
          queries: [{ expr: `topk(20, max by (node, gpu) (${M.gpuTemperature}{${nodeSel}}))`, legend: '{{node}}/{{gpu}}' }],
        },
        { kind: 'timeseries', title: 'Power by node', unit: 'watt', queries: [{ expr: `topk(20, sum by (node) (${M.gpuPower}{${nodeSel}}))`, legend: '{{node}}' }] },
        { kind: 'timeseries', title: 'SM clock (min per node)', unit: 'hertz', queries: [{ expr: `bottomk(20, min by (node) (${M.gpuSmClock}{${nodeSel}}))`, legend: '{{node}}' }] },
        { kind: 'timeseries', title: 'Throttled GPUs by reason', queries: [{ expr: `sum by (reason) (${M.gpuThrottled}{${nodeSel}})`, legend: '{{reason}}' }] },
      ],
    },
    {
      title: 'Errors',
      panels: [
        {
          kind: 'table',
          title: `XID errors (critical: ${CRITICAL_XIDS.join(', ')})`,
          queries: [{ expr: `sum by (node, gpu, uuid, xid, tenant, job_id) (${M.gpuXidErrors}{${nodeSel}})` }],
        },
        { kind: 'timeseries', title: 'Critical XIDs', queries: [{ expr: `sum by (node, xid) (${M.gpuXidErrors}{${nodeSel},xid=~"${criticalXids}"})`, legend: '{{node}} XID {{xid}}' }] },
        { kind: 'table', title: 'ECC errors', queries: [{ expr: `sum by (node, gpu, uuid, error_type) (${M.gpuEccErrors}{${nodeSel}}) > 0` }] },
        { kind: 'timeseries', title: 'Uncorrected ECC errors per hour', queries: [{ expr: `sum by (node, gpu) (increase(${M.gpuEccErrors}{${nodeSel},error_type="uncorrected"}[1h])) > 0`, legend: '{{node}}/{{gpu}}' }] },
      ],
    },
  ],
};

const jobSel = 'job_id="$job"';

export const JOB: DashboardSpec = {
  uid: 'nuri-job',
  title: 'Nuri / Job',
  description: 'One job\'s GPUs over time: utilization, memory, power, temperature, clocks and errors.',
  variables: [tenantVar, jobVar],
  rows: [
    {
      title: 'Job',
      panels: [
        { kind: 'stat', title: 'GPUs', queries: [{ expr: `count(${M.gpuHealthy}{${jobSel}})` }] },
        { kind: 'stat', title: 'Mean utilization', unit: 'percentunit', queries: [{ expr: `avg(${M.gpuUtilization}{${jobSel}})` }] },
        { kind: 'stat', title: 'Power now', unit: 'watt', queries: [{ expr: `sum(${M.gpuPower}{${jobSel}})` }] },
        { kind: 'stat', title: 'Energy in range', unit: 'kwatth', decimals: 2, queries: [{ expr: `sum(increase(${M.gpuEnergy}{${jobSel}}[$__range])) / 3.6e6`, instant: true }] },
        { kind: 'table', title: 'Placement', width: 24, height: 6, queries: [{ expr: `max by (node, gpu, uuid, model, tenant) (${M.gpuHealthy}{${jobSel}})` }] },
      ],
    },
    {
      title: 'GPUs over time',
      panels: [
        { kind: 'timeseries', title: 'Utilization per GPU', unit: 'percentunit', min: 0, max: 1, queries: [{ expr: `${M.gpuUtilization}{${jobSel}}`, legend: '{{node}}/{{gpu}}' }] },
        { kind: 'timeseries', title: 'Memory used per GPU', unit: 'bytes', queries: [{ expr: `${M.gpuMemoryUsed}{${jobSel}}`, legend: '{{node}}/{{gpu}}' }] },
        { kind: 'timeseries', title: 'Power per GPU', unit: 'watt', queries: [{ expr: `${M.gpuPower}{${jobSel}}`, legend: '{{node}}/{{gpu}}' }] },
        { kind: 'timeseries', title: 'Temperature per GPU', unit: 'celsius', queries: [{ expr: `${M.gpuTemperature}{${jobSel}}`, legend: '{{node}}/{{gpu}}' }] },
        { kind: 'timeseries', title: 'SM clock per GPU', unit: 'hertz', queries: [{ expr: `${M.gpuSmClock}{${jobSel}}`, legend: '{{node}}/{{gpu}}' }] },
        {
          kind: 'timeseries',
          title: 'Throttle reasons and XIDs',
          queries: [
            { expr: `sum by (reason) (${M.gpuThrottled}{${jobSel}})`, legend: 'throttled: {{reason}}' },
            { expr: `sum by (xid) (${M.gpuXidErrors}{${jobSel}})`, legend: 'XID {{xid}}' },
          ],
        },
      ],
    },
  ],
};

export const SCHEDULER: DashboardSpec = {
  uid: 'nuri-scheduler',
  title: 'Nuri / Scheduler and control plane',
  description: 'Scheduling passes, leadership, preemptions and job flow; gateway ingest and API latency.',
  variables: [gpuTypeVar],
  rows: [
    {
      title: 'Scheduler',
      panels: [
        { kind: 'stat', title: 'Leaders', queries: [{ expr: `sum(${M.schedulerLeader})` }], thresholds: [[2, 'red']] },
        { kind: 'stat', title: 'Since last successful pass', unit: 's', queries: [{ expr: `time() - max(${M.schedulerLastPass})` }], thresholds: [[60, 'orange'], [120, 'red']] },
        { kind: 'stat', title: 'Pass p95 (5m)', unit: 's', queries: [{ expr: `histogram_quantile(0.95, sum by (le) (rate(${bucket(M.schedulerPassDuration)}[5m])))` }] },
        { kind: 'stat', title: 'Preemptions (1h)', queries: [{ expr: `sum(increase(${M.schedulerPreemptions}{${gpuType}}[1h])) or vector(0)` }] },
        {
          kind: 'timeseries',
          title: 'Pass duration',
          unit: 's',
          queries: [
            { expr: `histogram_quantile(0.5, sum by (le) (rate(${bucket(M.schedulerPassDuration)}[5m])))`, legend: 'p50' },
            { expr: `histogram_quantile(0.95, sum by (le) (rate(${bucket(M.schedulerPassDuration)}[5m])))`, legend: 'p95' },
            { expr: `histogram_quantile(0.99, sum by (le) (rate(${bucket(M.schedulerPassDuration)}[5m])))`, legend: 'p99' },
          ],
        },
        { kind: 'timeseries', title: 'Passes per second', unit: 'ops', queries: [{ expr: `sum(rate(${M.schedulerPassDuration}_count[5m]))`, legend: 'passes' }] },
        { kind: 'timeseries', title: 'Preemptions by reason', queries: [{ expr: `sum by (reason) (increase(${M.schedulerPreemptions}{${gpuType}}[1h]))`, legend: '{{reason}}' }] },
        // Jobs ended with no exit from their agent: a node that went down, or an agent that talks but stays silent about a job.
        { kind: 'timeseries', title: 'Jobs ended by the server (1h)', queries: [{ expr: `sum by (reason) (increase(${M.schedulerJobsEndedByServer}{${jobType}}[1h]))`, legend: '{{reason}}' }] },
        // Far below 1: users' time limits are far above their run times (estimates are scaled by it).
        { kind: 'timeseries', title: 'Start estimate scale (actual / predicted wait)', queries: [{ expr: `max(${M.schedulerStartEstimateScale})`, legend: 'scale' }] },
        { kind: 'timeseries', title: 'Job transitions per second', unit: 'ops', queries: [{ expr: `sum by (to) (rate(${M.schedulerJobTransitions}{${jobType}}[5m]))`, legend: '→ {{to}}' }] },
        { kind: 'timeseries', title: 'Leader by process', queries: [{ expr: `${M.schedulerLeader}`, legend: '{{instance}}' }] },
      ],
    },
    {
      title: 'Gateway and API',
      panels: [
        { kind: 'timeseries', title: 'Agent connections', queries: [{ expr: `sum by (instance) (${M.gatewayConnections})`, legend: '{{instance}}' }] },
        { kind: 'timeseries', title: 'Agent messages by type and result', unit: 'ops', queries: [{ expr: `sum by (type, result) (rate(${M.gatewayMessages}[5m]))`, legend: '{{type}} {{result}}' }] },
        {
          kind: 'timeseries',
          title: 'Ingest lag (sample to applied)',
          unit: 's',
          queries: [
            { expr: `histogram_quantile(0.5, sum by (le) (rate(${bucket(M.gatewayIngestLag)}[5m])))`, legend: 'p50' },
            { expr: `histogram_quantile(0.99, sum by (le) (rate(${bucket(M.gatewayIngestLag)}[5m])))`, legend: 'p99' },
          ],
        },
        {
          kind: 'timeseries',
          title: 'HTTP p95 by route',
          unit: 's',
          queries: [{ expr: `histogram_quantile(0.95, sum by (route, le) (rate(${bucket(M.httpRequestDuration)}[5m])))`, legend: '{{route}}' }],
        },
        { kind: 'timeseries', title: 'HTTP requests by status', unit: 'reqps', queries: [{ expr: `sum by (status) (rate(${M.httpRequestDuration}_count[5m]))`, legend: '{{status}}' }] },
      ],
    },
  ],
};

export const COST: DashboardSpec = {
  uid: 'nuri-cost',
  title: 'Nuri / Cost and efficiency',
  description:
    'Per tenant: what its GPU time costs at the price in effect (nuri_tenant_gpu_price_usd_per_gpu_hour, set with PUT /v1/prices), and how much of what it holds sits idle. Invoices come from GET /v1/tenants/:name/statement, exact from the usage ledger; these panels are the live view.',
  variables: [tenantVar, gpuTypeVar],
  rows: [
    {
      title: 'Spend',
      panels: [
        {
          kind: 'timeseries',
          title: 'Spend rate by GPU type (USD per hour)',
          unit: 'currencyUSD',
          stack: true,
          queries: [{ expr: `sum by (gpu_type) (${priced(`rate(${M.tenantUsage}{${tenantSel}}[5m])`)})`, legend: '{{gpu_type}}' }],
        },
        {
          kind: 'bargauge',
          title: 'Spend in range by tenant',
          unit: 'currencyUSD',
          decimals: 2,
          queries: [{ expr: `sum by (tenant) (${priced(`increase(${M.tenantUsage}{${tenantSel}}[$__range]) / 3600`)})`, legend: '{{tenant}}', instant: true }],
        },
        {
          kind: 'table',
          title: 'Spend in range by tenant and GPU type (USD)',
          decimals: 2,
          queries: [{ expr: `sum by (tenant, gpu_type) (${priced(`increase(${M.tenantUsage}{${tenantSel}}[$__range]) / 3600`)})`, instant: true }],
        },
        {
          kind: 'table',
          title: 'Price per GPU-hour in effect (USD)',
          decimals: 2,
          queries: [{ expr: `max by (tenant, gpu_type) (${M.tenantGpuPrice}{${tenantSel}})`, instant: true }],
        },
      ],
    },
    {
      title: 'Idle',
      panels: [
        {
          kind: 'timeseries',
          title: 'Idle share of allocated GPUs',
          unit: 'percentunit',
          min: 0,
          max: 1,
          description: 'Allocated GPUs under the idle threshold for the idle time, over all allocated GPUs.',
          queries: [{ expr: `sum by (tenant) (${M.tenantIdleAllocated}{tenant=~"$tenant"}) / sum by (tenant) (${M.tenantAllocated}{tenant=~"$tenant"} > 0)`, legend: '{{tenant}}' }],
        },
        {
          kind: 'timeseries',
          title: 'Idle cost rate (USD per hour)',
          unit: 'currencyUSD',
          description: "Idle allocated GPUs × the tenant's price per GPU-hour, weighted by what it holds of each type (the idle gauge has no type).",
          queries: [
            {
              expr: `sum by (tenant) (${M.tenantIdleAllocated}{tenant=~"$tenant"}) * sum by (tenant) (${priced(`${M.tenantAllocated}{tenant=~"$tenant"}`)}) / sum by (tenant) (${M.tenantAllocated}{tenant=~"$tenant"} > 0)`,
              legend: '{{tenant}}',
            },
          ],
        },
      ],
    },
  ],
};

export const DASHBOARD_SPECS: readonly DashboardSpec[] = [CENTER, TENANTS, NODES, JOB, SCHEDULER, COST];

/** File name (under grafana/dashboards/) → dashboard JSON. */
export function generateDashboards(): Map<string, Record<string, unknown>> {
  return new Map(DASHBOARD_SPECS.map((d) => [`${d.uid}.json`, buildDashboard(d)]));
}

/** The exact text written for a dashboard (stable, with a final newline). */
export const dashboardFileText = (json: Record<string, unknown>): string => `${JSON.stringify(json, null, 2)}\n`;
