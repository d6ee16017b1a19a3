import { describe, expect, it } from 'vitest';
import { populateDemoControlPlane, populateDemoFleet } from './demo';
import { gpuTypeFromModel, normalizeThrottleReason } from './fleet';
import { METRICS, type MetricDef } from './metrics';
import { createMetrics, type NuriMetrics } from './nuri-metrics';
import { findSamples, parseExposition } from './parse';

const T0 = 1_750_000_000_000;

function clock(start = T0) {
  let now = start;
  return { now: () => now, advance: (seconds: number) => (now += seconds * 1000) };
}

async function scrape(m: NuriMetrics) {
  return parseExposition(await m.metrics());
}

const h100 = (i: number) => ({ index: i, uuid: `GPU-aaaa-${i}`, model: 'NVIDIA H100 80GB HBM3', memoryTotalBytes: 80e9 });

function node(m: NuriMetrics, name = 'n1', gpus = 2) {
  m.setNodeInfo(name, { gpuType: 'h100', state: 'up', expectedGpus: 8 });
  m.setNodeUp(name, true);
  m.setNodeInventory(name, Array.from({ length: gpus }, (_, i) => h100(i)));
}

describe('catalog', () => {
  const all = Object.values(METRICS) as MetricDef[];
  it('names are unique', () => {
    expect(new Set(all.map((m) => m.name)).size).toBe(all.length);
  });
  it('nuri metrics follow Prometheus naming', () => {
    for (const m of all.filter((d) => d.block !== 'dcgm')) {
      expect(m.name).toMatch(/^nuri_[a-z0-9_]+$/);
      if (m.type === 'counter') expect(m.name).toMatch(/_total$/);
      else expect(m.name).not.toMatch(/_total$/);
      for (const l of m.labels) expect(l).toMatch(/^[a-z][a-z0-9_]*$/);
      expect(m.name).not.toMatch(/_(ms|milliseconds|percent|mib|mhz|kb|mb)(_|$)/);
      if (m.type === 'histogram') expect(m.buckets?.length).toBeGreaterThan(3);
    }
  });
  it('every GPU family carries node, gpu, uuid, model, gpu_type, tenant and job_id', () => {
    for (const m of all.filter((d) => d.block === 'fleet' && d.name.startsWith('nuri_gpu_'))) {
      expect(m.labels.slice(0, 7)).toEqual(['node', 'gpu', 'uuid', 'model', 'gpu_type', 'tenant', 'job_id']);
    }
  });
  it('no family uses a label Prometheus sets on every target (job, instance)', () => {
    for (const m of all) for (const l of m.labels) expect(['job', 'instance'], `${m.name}: ${l}`).not.toContain(l);
  });
});

describe('exposition', () => {
  it('a populated registry exposes every nuri family once, each with HELP and TYPE', async () => {
    const c = clock();
    const m = createMetrics({ now: c.now });
    populateDemoFleet(m, { nodes: 20, atMs: T0 });
    populateDemoControlPlane(m, T0);
    m.recordGpuFault('gpu-00001', { index: 2, kind: 'remap_failure' });
    m.fleet.applySample('gpu-00001', T0, { index: 2, throttleReasons: ['hw_slowdown'] });
    const p = await scrape(m);
    for (const d of Object.values(METRICS) as MetricDef[]) {
      if (d.block === 'dcgm') expect(p.families.has(d.name)).toBe(false);
      else expect(p.families.get(d.name)?.type, d.name).toBe(d.type);
    }
  });

  it('each registry is independent (tests get a fresh one)', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.recordPreemption('t', 'h100', 'guarantee_reclaim');
    expect(findSamples(await scrape(a), 'nuri_scheduler_preemptions_total')).toHaveLength(1);
    expect(findSamples(await scrape(b), 'nuri_scheduler_preemptions_total')).toHaveLength(0);
  });

  it('escapes label values', async () => {
    const m = createMetrics();
    m.setNodeInfo('n1', { gpuType: 'h100' });
    m.setNodeInventory('n1', [{ index: 0, uuid: 'GPU-0', model: 'weird "model"\\ \nname' }]);
    const p = await scrape(m);
    expect(findSamples(p, 'nuri_gpu_healthy')[0]!.labels.model).toBe('weird "model"\\ \nname');
  });
});

describe('GPU series', () => {
  it('carries all labels, with tenant and job empty while idle', async () => {
    const m = createMetrics({ now: clock().now });
    node(m);
    m.applyGpuSamples('n1', T0, [{ index: 0, uuid: 'GPU-aaaa-0', utilization: 0.5, powerWatts: 300 }]);
    const [s] = findSamples(await scrape(m), 'nuri_gpu_utilization_ratio');
    expect(s).toEqual({
      name: 'nuri_gpu_utilization_ratio',
      labels: { node: 'n1', gpu: '0', uuid: 'GPU-aaaa-0', model: 'NVIDIA H100 80GB HBM3', gpu_type: 'h100', tenant: '', job_id: '' },
      value: 0.5,
    });
  });

  it('a job change replaces the series: the old labels are gone, not frozen', async () => {
    const m = createMetrics({ now: clock().now });
    node(m);
    m.assignJobGpus('job-a', 'naver', [{ node: 'n1', gpuIndices: [0, 1] }]);
    m.applyGpuSamples('n1', T0, [
      { index: 0, uuid: 'GPU-aaaa-0', utilization: 0.9 },
      { index: 1, uuid: 'GPU-aaaa-1', utilization: 0.8 },
    ]);
    m.recordXid('n1', 0, 13);
    let p = await scrape(m);
    expect(findSamples(p, 'nuri_gpu_utilization_ratio', { job_id: 'job-a', tenant: 'naver' })).toHaveLength(2);
    expect(findSamples(p, 'nuri_gpu_xid_errors_total', { job_id: 'job-a', xid: '13' })).toHaveLength(1);

    m.assignJobGpus('job-b', 'kakao', [{ node: 'n1', gpuIndices: [0] }]);
    p = await scrape(m);
    expect(findSamples(p, 'nuri_gpu_utilization_ratio', { gpu: '0', job_id: 'job-a' })).toHaveLength(0);
    expect(findSamples(p, 'nuri_gpu_utilization_ratio', { gpu: '0', job_id: 'job-b', tenant: 'kakao' })).toHaveLength(1);
    expect(findSamples(p, 'nuri_gpu_xid_errors_total')).toHaveLength(0); // counted per label set

    m.removeJobSeries('job-a');
    p = await scrape(m);
    expect(findSamples(p, 'nuri_gpu_utilization_ratio', { job_id: 'job-a' })).toHaveLength(0);
    expect(findSamples(p, 'nuri_gpu_utilization_ratio', { gpu: '1', job_id: '', tenant: '' })).toHaveLength(1);
    expect(p.samples.filter((s) => s.labels.job_id === 'job-a')).toHaveLength(0);
  });

  it('setGpuSample with full labels relabels when the job differs', async () => {
    const m = createMetrics({ now: clock().now });
    const labels = { node: 'n2', gpu: 3, uuid: 'GPU-x', model: 'NVIDIA H800', tenant: 'lg', job: 'j1' };
    m.setGpuSample(labels, { utilization: 0.4, temperatureCelsius: 60 }, T0);
    m.setGpuSample({ ...labels, job: 'j2' }, { utilization: 0.6 }, T0 + 1000);
    const p = await scrape(m);
    const util = findSamples(p, 'nuri_gpu_utilization_ratio');
    expect(util).toHaveLength(1);
    expect(util[0]!.labels).toMatchObject({ job_id: 'j2', gpu_type: 'h800', gpu: '3' });
    expect(findSamples(p, 'nuri_gpu_temperature_celsius', { job_id: 'j2' })[0]!.value).toBe(60);
  });

  it('removeNodeGpuSeries keeps the node series; removeNodeSeries removes everything', async () => {
    const m = createMetrics({ now: clock().now });
    node(m, 'n1');
    node(m, 'n2');
    m.applyGpuSamples('n1', T0, [{ index: 0, uuid: 'GPU-aaaa-0', utilization: 0.1 }]);
    m.setNodeUp('n1', false);
    m.setNodeInfo('n1', { state: 'down' });
    m.removeNodeGpuSeries('n1');
    let p = await scrape(m);
    expect(p.samples.filter((s) => s.name.startsWith('nuri_gpu_') && s.labels.node === 'n1')).toHaveLength(0);
    expect(findSamples(p, 'nuri_node_up', { node: 'n1' })[0]!.value).toBe(0);
    expect(findSamples(p, 'nuri_node_state', { node: 'n1', state: 'down' })[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_node_state', { node: 'n1' })).toHaveLength(4);
    m.removeNodeSeries('n1');
    p = await scrape(m);
    expect(p.samples.filter((s) => s.labels.node === 'n1')).toHaveLength(0);
    expect(p.samples.filter((s) => s.labels.node === 'n2').length).toBeGreaterThan(0);
  });

  it('a GPU not updated within the TTL stops being exported', async () => {
    const c = clock();
    const m = createMetrics({ now: c.now, gpuTtlSeconds: 60 });
    node(m);
    m.applyGpuSamples('n1', T0, [{ index: 0, uuid: 'GPU-aaaa-0', utilization: 0.1 }]);
    c.advance(30);
    m.applyGpuSamples('n1', T0 + 30_000, [{ index: 1, uuid: 'GPU-aaaa-1', utilization: 0.2 }]);
    c.advance(45);
    const p = await scrape(m);
    expect(findSamples(p, 'nuri_gpu_healthy').map((s) => s.labels.gpu)).toEqual(['1']);
    expect(findSamples(p, 'nuri_node_telemetry_timestamp_seconds', { node: 'n1' })[0]!.value).toBe((T0 + 30_000) / 1000);
  });

  it('ignores a late resend older than what it shows', async () => {
    const m = createMetrics({ now: clock().now });
    node(m);
    m.applyGpuSamples('n1', T0 + 5000, [{ index: 0, uuid: 'GPU-aaaa-0', utilization: 0.7 }]);
    m.applyGpuSamples('n1', T0, [{ index: 0, uuid: 'GPU-aaaa-0', utilization: 0.1 }]);
    expect(findSamples(await scrape(m), 'nuri_gpu_utilization_ratio')[0]!.value).toBe(0.7);
  });

  it('a hello without a GPU drops its series; a new UUID in a slot starts over', async () => {
    const m = createMetrics({ now: clock().now });
    node(m, 'n1', 3);
    m.recordXid('n1', 2, 79);
    m.setNodeInventory('n1', [h100(0), { ...h100(2), uuid: 'GPU-new' }]);
    const p = await scrape(m);
    expect(findSamples(p, 'nuri_gpu_healthy').map((s) => `${s.labels.gpu}:${s.labels.uuid}`)).toEqual(['0:GPU-aaaa-0', '2:GPU-new']);
    expect(findSamples(p, 'nuri_gpu_xid_errors_total')).toHaveLength(0);
    expect(findSamples(p, 'nuri_node_gpus_expected', { node: 'n1' })[0]!.value).toBe(8);
  });

  it('faults: XID counted by code, remap failure, vanished removes the GPU, health', async () => {
    const m = createMetrics({ now: clock().now });
    node(m, 'n1', 4);
    m.recordGpuFault('n1', { index: 0, kind: 'xid', code: 79 });
    m.recordGpuFault('n1', { index: 0, kind: 'xid', code: 79 });
    m.recordGpuFault('n1', { index: 0, kind: 'xid', code: 48 });
    m.recordGpuFault('n1', { index: 1, kind: 'remap_failure' });
    m.recordGpuFault('n1', { index: 3, kind: 'vanished' });
    m.setGpuHealthy('n1', 2, false);
    const p = await scrape(m);
    expect(findSamples(p, 'nuri_gpu_xid_errors_total', { gpu: '0', xid: '79' })[0]!.value).toBe(2);
    expect(findSamples(p, 'nuri_gpu_xid_errors_total', { gpu: '0', xid: '48' })[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_gpu_remapped_rows_failure', { gpu: '1' })[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_gpu_healthy').map((s) => [s.labels.gpu, s.value])).toEqual([
      ['0', 1],
      ['1', 1],
      ['2', 0],
    ]);
  });

  it('throttle reasons are normalized to a closed set and exported only while active', async () => {
    expect(normalizeThrottleReason('clocks_event_reasons.hw_thermal_slowdown')).toBe('hw_thermal_slowdown');
    expect(normalizeThrottleReason('SW Power Cap')).toBe('sw_power_cap');
    expect(normalizeThrottleReason('display_clocks_setting')).toBe('display_clock_setting');
    expect(normalizeThrottleReason('rm -rf')).toBe('other');
    const m = createMetrics({ now: clock().now });
    node(m);
    m.applyGpuSamples('n1', T0, [{ index: 0, uuid: 'GPU-aaaa-0', throttleReasons: ['hw_slowdown', 'HW Slowdown', 'sw_power_cap'] }]);
    expect(findSamples(await scrape(m), 'nuri_gpu_throttled').map((s) => s.labels.reason)).toEqual(['hw_slowdown', 'sw_power_cap']);
    m.applyGpuSamples('n1', T0 + 1, [{ index: 0, uuid: 'GPU-aaaa-0', throttleReasons: [] }]);
    expect(findSamples(await scrape(m), 'nuri_gpu_throttled')).toHaveLength(0);
  });

  it('gpu type from the model name', () => {
    expect(gpuTypeFromModel('NVIDIA H100 80GB HBM3')).toBe('h100');
    expect(gpuTypeFromModel('NVIDIA H800')).toBe('h800');
    expect(gpuTypeFromModel('NVIDIA GeForce RTX 2080 SUPER')).toBe('');
  });

  it('counts agent buffer drops from cumulative per-stream reports', async () => {
    const m = createMetrics({ now: clock().now });
    node(m);
    m.applySamplesMessage('n1', 's1', { at: T0, gpus: [], droppedSamples: 3 });
    m.applySamplesMessage('n1', 's1', { at: T0, gpus: [], droppedSamples: 5 });
    m.applySamplesMessage('n1', 's2', { at: T0, gpus: [], droppedSamples: 2 }); // agent restarted
    expect(findSamples(await scrape(m), 'nuri_agent_buffer_dropped_messages_total', { node: 'n1' })[0]!.value).toBe(7);
  });
});

describe('DCGM compatibility', () => {
  it('is off by default and converts units when on', async () => {
    const m = createMetrics({ now: clock().now, dcgmCompat: true });
    node(m, 'host-1', 1);
    m.applyGpuSamples('host-1', T0, [
      {
        index: 0,
        uuid: 'GPU-aaaa-0',
        utilization: 0.29,
        memoryUsedBytes: 2048 * 1024 * 1024,
        memoryTotalBytes: 4096 * 1024 * 1024,
        temperatureCelsius: 59,
        powerWatts: 631.95,
        energyJoules: 1234.5678,
        smClockHertz: 1_980_000_000,
        eccCorrected: 4,
        eccUncorrected: 1,
        throttleReasons: ['sw_power_cap', 'hw_slowdown'],
      },
    ]);
    m.recordXid('host-1', 0, 79);
    const p = await scrape(m);
    const v = (name: string) => findSamples(p, name)[0]!.value;
    expect(findSamples(p, 'DCGM_FI_DEV_GPU_UTIL')[0]!.labels).toEqual({
      gpu: '0',
      UUID: 'GPU-aaaa-0',
      device: 'nvidia0',
      modelName: 'NVIDIA H100 80GB HBM3',
      Hostname: 'host-1',
      tenant: '',
      hpc_job: '',
    });
    expect(v('DCGM_FI_DEV_GPU_UTIL')).toBe(29);
    expect(v('DCGM_FI_DEV_FB_USED')).toBe(2048);
    expect(v('DCGM_FI_DEV_FB_FREE')).toBe(2048);
    expect(v('DCGM_FI_DEV_GPU_TEMP')).toBe(59);
    expect(v('DCGM_FI_DEV_POWER_USAGE')).toBe(631.95);
    expect(v('DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION')).toBe(1234568);
    expect(v('DCGM_FI_DEV_SM_CLOCK')).toBe(1980);
    expect(v('DCGM_FI_DEV_XID_ERRORS')).toBe(79);
    expect(v('DCGM_FI_DEV_ECC_SBE_VOL_TOTAL')).toBe(4);
    expect(v('DCGM_FI_DEV_ECC_DBE_VOL_TOTAL')).toBe(1);
    expect(v('DCGM_FI_DEV_CLOCK_THROTTLE_REASONS')).toBe(0x4 | 0x8);
    expect(findSamples(p, 'nuri_gpu_utilization_ratio')).toHaveLength(1);
    const off = createMetrics({ now: clock().now });
    node(off, 'host-1', 1);
    expect([...(await scrape(off)).families.keys()].filter((n) => n.startsWith('DCGM_'))).toEqual([]);
  });
});

describe('scheduler, tenants, gateway, API', () => {
  it('snapshot gauges replace wholesale; a standby exports none', async () => {
    const m = createMetrics();
    m.setLeader(true);
    m.setTenants([
      { tenant: 'a', gpuType: 'h100', guaranteed: 16, limit: 32, allocated: 8, pendingGpus: 16, oldestPendingSeconds: 600 },
      { tenant: 'b', gpuType: 'h100', guaranteed: 16, limit: 32, allocated: 20, pendingGpus: 8 },
    ]);
    let p = await scrape(m);
    expect(findSamples(p, 'nuri_tenant_guarantee_shortfall_gpus', { tenant: 'a' })[0]!.value).toBe(8);
    expect(findSamples(p, 'nuri_tenant_guarantee_shortfall_gpus', { tenant: 'b' })[0]!.value).toBe(0);
    // b has nothing pending: its oldest pending age is 0, not absent.
    expect(Object.fromEntries(findSamples(p, 'nuri_scheduler_oldest_pending_age_seconds').map((s) => [s.labels.tenant, s.value]))).toEqual({ a: 600, b: 0 });
    m.setTenants([{ tenant: 'b', gpuType: 'h100', guaranteed: 16, limit: 32, allocated: 20, pendingGpus: 0 }]);
    p = await scrape(m);
    expect(findSamples(p, 'nuri_tenant_quota_guaranteed_gpus').map((s) => s.labels.tenant)).toEqual(['b']);
    expect(findSamples(p, 'nuri_scheduler_leader')[0]!.value).toBe(1);
    m.setStartEstimateScale(0.12);
    expect(findSamples(await scrape(m), 'nuri_scheduler_start_estimate_scale_ratio')[0]!.value).toBe(0.12);
    m.setLeader(false);
    p = await scrape(m);
    expect(findSamples(p, 'nuri_scheduler_leader')[0]!.value).toBe(0);
    // A standby's scale is not the leader's: 0, so max() across processes is the leader's.
    expect(findSamples(p, 'nuri_scheduler_start_estimate_scale_ratio')[0]!.value).toBe(0);
    expect(findSamples(p, 'nuri_tenant_quota_guaranteed_gpus')).toHaveLength(0);
  });

  it('a tenant named after the last job count gets its job series at 0 at once, the counts kept', async () => {
    const m = createMetrics();
    m.setLeader(true);
    const quota = (tenant: string) => ({ tenant, gpuType: 'h100' as const, guaranteed: 8, limit: 16, allocated: 0, pendingGpus: 0 });
    m.setTenants([quota('a')]);
    m.setJobCounts([{ tenant: 'a', state: 'pending', gpuType: 'h100', count: 3 }]);
    // The demo seeds b while the first pass ran; the next job count is seconds away.
    m.setTenants([quota('a'), quota('b')]);
    const p = await scrape(m);
    expect(findSamples(p, 'nuri_scheduler_jobs', { tenant: 'b', state: 'pending' }).map((s) => [s.labels.gpu_type, s.value]).sort()).toEqual([['any', 0], ['h100', 0], ['h800', 0]]);
    expect(findSamples(p, 'nuri_scheduler_jobs', { tenant: 'a', state: 'pending', gpu_type: 'h100' })[0]!.value).toBe(3);
  });

  it('transitions, waits, passes, usage, preemptions, gateway and HTTP', async () => {
    const m = createMetrics({ now: () => T0 });
    m.recordJobTransition('a', 'any', null, 'pending');
    m.recordJobTransition('a', 'any', 'pending', 'running');
    m.observeQueueWait('a', 'any', 42);
    const end = m.startPassTimer();
    expect(end(true)).toBeGreaterThanOrEqual(0);
    m.addUsage('a', 'h100', 3600);
    m.addUsage('a', 'h100', 1800);
    m.recordPreemption('b', 'h800', 'guarantee_reclaim');
    m.agentConnected();
    m.agentConnected();
    m.agentDisconnected();
    m.recordAgentMessage('samples', 'duplicate');
    m.observeIngestLag(T0 - 1500);
    m.startHttpTimer('get', '/jobs/:id')(404);
    const p = await scrape(m);
    expect(findSamples(p, 'nuri_scheduler_job_transitions_total', { from: 'none', to: 'pending' })[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_scheduler_queue_wait_seconds_count', { tenant: 'a', gpu_type: 'any' })[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_scheduler_pass_duration_seconds_count')[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_scheduler_last_pass_success_timestamp_seconds')[0]!.value).toBe(T0 / 1000);
    expect(findSamples(p, 'nuri_tenant_gpu_seconds_total', { tenant: 'a' })[0]!.value).toBe(5400);
    expect(findSamples(p, 'nuri_scheduler_preemptions_total', { reason: 'guarantee_reclaim' })[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_gateway_agent_connections')[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_gateway_messages_total', { type: 'samples', result: 'duplicate' })[0]!.value).toBe(1);
    expect(findSamples(p, 'nuri_gateway_ingest_lag_seconds_sum')[0]!.value).toBe(1.5);
    expect(findSamples(p, 'nuri_http_request_duration_seconds_count', { method: 'GET', route: '/jobs/:id', status: '404' })[0]!.value).toBe(1);
  });

  it('idle allocated GPUs by tenant come from the GPU state at scrape time', async () => {
    const c = clock();
    const m = createMetrics({ now: c.now, idle: { thresholdRatio: 0.05, forSeconds: 600 }, gpuTtlSeconds: 3600 });
    node(m, 'n1', 4);
    m.assignJobGpus('j1', 'naver', [{ node: 'n1', gpuIndices: [0, 1] }]);
    m.assignJobGpus('j2', 'kakao', [{ node: 'n1', gpuIndices: [2] }]);
    const sample = (u: number[]) => m.applyGpuSamples('n1', c.now(), u.map((utilization, index) => ({ index, uuid: `GPU-aaaa-${index}`, utilization })));
    sample([0.01, 0.5, 0.0, 0.0]);
    c.advance(300);
    sample([0.02, 0.01, 0.01, 0.0]);
    c.advance(301);
    sample([0.03, 0.02, 0.0, 0.0]);
    const idle = async () => Object.fromEntries(findSamples(await scrape(m), 'nuri_tenant_idle_allocated_gpus').map((s) => [s.labels.tenant, s.value]));
    // GPU 0 idle for 601 s, GPU 1 only 301 s, GPU 2 601 s, GPU 3 is not allocated.
    expect(await idle()).toEqual({ naver: 1, kakao: 1 });
    c.advance(300);
    expect(await idle()).toEqual({ naver: 2, kakao: 1 });
    m.assignJobGpus('j3', 'kakao', [{ node: 'n1', gpuIndices: [2] }]); // a new job starts the clock over
    expect(await idle()).toEqual({ naver: 2, kakao: 0 });
  });
});

describe('Prometheus and dcgm-exporter conventions', () => {
  it('DCGM-compatible series carry the holder: tenant and hpc_job (dcgm-exporter\'s job label), and change with it', async () => {
    const m = createMetrics({ now: clock().now, dcgmCompat: true });
    node(m, 'host-1', 2);
    m.assignJobGpus('j-77', 'naver', [{ node: 'host-1', gpuIndices: [1] }]);
    m.applyGpuSamples('host-1', T0, [0, 1].map((index) => ({ index, uuid: `GPU-aaaa-${index}`, utilization: 0.5 })));
    let p = await scrape(m);
    expect(findSamples(p, 'DCGM_FI_DEV_GPU_UTIL', { gpu: '1' })[0]!.labels).toMatchObject({ tenant: 'naver', hpc_job: 'j-77' });
    expect(findSamples(p, 'DCGM_FI_DEV_GPU_UTIL', { gpu: '0' })[0]!.labels).toMatchObject({ tenant: '', hpc_job: '' });
    expect(findSamples(p, 'nuri_gpu_utilization_ratio', { gpu: '1' })[0]!.labels).toMatchObject({ tenant: 'naver', job_id: 'j-77' });
    expect(p.samples.filter((s) => 'job' in s.labels)).toEqual([]);
    m.removeJobSeries('j-77');
    p = await scrape(m);
    expect(findSamples(p, 'DCGM_FI_DEV_GPU_UTIL', { hpc_job: 'j-77' })).toEqual([]);
  });

  it('gauges and counters with known tenants, states and types are exported at 0 before anything happened', async () => {
    const m = createMetrics({ now: () => T0 });
    // Before any scheduler pass: the gateway's message counters are there at 0.
    let p = await scrape(m);
    expect(findSamples(p, 'nuri_gateway_messages_total')).toHaveLength(6 * 3);
    expect(findSamples(p, 'nuri_gateway_messages_total').every((s) => s.value === 0)).toBe(true);
    // A pass over an idle center (nothing pending, nothing running, nothing used yet).
    m.setLeader(true);
    m.setSchedulerSnapshot({
      tenants: [
        { tenant: 'naver', gpuType: 'h100', guaranteed: 8, limit: 16, allocated: 0, pendingGpus: 0 },
        { tenant: 'kakao', gpuType: 'h800', guaranteed: 8, limit: 16, allocated: 0, pendingGpus: 0 },
      ],
      jobs: [],
      gpus: [{ gpuType: 'h100', state: 'free', count: 16 }],
    });
    p = await scrape(m);
    const zero = (name: string, labels: Record<string, string>) => {
      const found = findSamples(p, name, labels);
      expect(found.length, `${name} ${JSON.stringify(labels)}`).toBeGreaterThan(0);
      for (const s of found) expect(s.value, `${name} ${JSON.stringify(s.labels)}`).toBe(0);
    };
    for (const tenant of ['naver', 'kakao']) {
      for (const state of ['pending', 'running']) for (const gpuType of ['h100', 'h800', 'any']) zero('nuri_scheduler_jobs', { tenant, state, gpu_type: gpuType });
      zero('nuri_tenant_gpu_seconds_total', { tenant, gpu_type: 'h100' });
      zero('nuri_tenant_gpu_seconds_total', { tenant, gpu_type: 'h800' });
      zero('nuri_tenant_idle_allocated_gpus', { tenant });
      zero('nuri_scheduler_job_transitions_total', { tenant, from: 'none', to: 'pending', gpu_type: 'any' });
      zero('nuri_scheduler_job_transitions_total', { tenant, from: 'running', to: 'completed', gpu_type: 'h100' });
      zero('nuri_scheduler_preemptions_total', { tenant, reason: 'guarantee_reclaim' });
      zero('nuri_scheduler_jobs_ended_by_server_total', { tenant, reason: 'node_down' });
    }
    zero('nuri_scheduler_oldest_pending_age_seconds', { tenant: 'naver', gpu_type: 'h100' });
    zero('nuri_scheduler_gpus', { gpu_type: 'h100', state: 'allocated' });
    expect(findSamples(p, 'nuri_scheduler_gpus', { gpu_type: 'h100', state: 'free' })[0]!.value).toBe(16);

    // Real values replace the zeros; a counter started at 0 keeps counting from there.
    m.addUsage('naver', 'h100', 60);
    m.setSchedulerSnapshot({
      tenants: [{ tenant: 'naver', gpuType: 'h100', guaranteed: 8, limit: 16, allocated: 2, pendingGpus: 4, oldestPendingSeconds: 90 }],
      jobs: [{ state: 'pending', tenant: 'naver', gpuType: 'h100', count: 3 }],
    });
    p = await scrape(m);
    expect(findSamples(p, 'nuri_scheduler_jobs', { tenant: 'naver', state: 'pending', gpu_type: 'h100' })[0]!.value).toBe(3);
    expect(findSamples(p, 'nuri_scheduler_jobs', { tenant: 'naver', state: 'running', gpu_type: 'h100' })[0]!.value).toBe(0);
    expect(findSamples(p, 'nuri_scheduler_oldest_pending_age_seconds', { tenant: 'naver' })[0]!.value).toBe(90);
    expect(findSamples(p, 'nuri_tenant_gpu_seconds_total', { tenant: 'naver', gpu_type: 'h100' })[0]!.value).toBe(60);
    // A tenant the pass no longer names drops out of the gauges (its counters stay, as counters do).
    expect(findSamples(p, 'nuri_scheduler_jobs', { tenant: 'kakao' })).toEqual([]);
    expect(findSamples(p, 'nuri_tenant_gpu_seconds_total', { tenant: 'kakao' })).toHaveLength(2);
  });
});
