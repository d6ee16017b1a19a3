/**
 * Fills a NuriMetrics with a plausible fleet: nodes × GPUs with identities, samples,
 * tenants and jobs, plus every scheduler/gateway/API metric. Used by the benchmark, by
 * the promtool exposition check and by tests; deterministic (no random source).
 */
import type { GpuTypeLabel, JobGpuTypeLabel } from './metrics';
import type { NuriMetrics } from './nuri-metrics';

export interface DemoFleetOptions {
  nodes: number;
  gpusPerNode?: number;
  tenants?: readonly string[];
  /** Fraction of GPUs allocated to jobs (0..1). */
  allocatedRatio?: number;
  /** Sample time, ms since the epoch. */
  atMs: number;
}

export const DEMO_TENANTS = ['naver', 'kakao', 'lg-ai', 'skt', 'kt', 'snu'] as const;

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0').slice(-width);
export const demoUuid = (node: number, gpu: number) => `GPU-${hex(node, 8)}-${hex(gpu, 4)}-4${hex(node * 7 + gpu, 3)}-8${hex(node * 13, 3)}-${hex(node * 8 + gpu, 12)}`;
export const demoNodeName = (i: number) => `gpu-${String(i).padStart(5, '0')}`;
export const demoJobId = (node: number, slot: number) => `${hex(node, 8)}-${hex(slot, 4)}-4000-8000-${hex(node * 4 + slot, 12)}`;

/** Populates telemetry for `nodes` nodes; returns the jobs created. */
export function populateDemoFleet(m: NuriMetrics, o: DemoFleetOptions): { jobs: number; gpus: number } {
  const perNode = o.gpusPerNode ?? 8;
  const tenants = o.tenants ?? DEMO_TENANTS;
  const allocated = o.allocatedRatio ?? 0.85;
  let jobs = 0;
  for (let n = 0; n < o.nodes; n++) {
    const node = demoNodeName(n);
    const gpuType: GpuTypeLabel = n % 4 === 3 ? 'h800' : 'h100';
    const model = gpuType === 'h100' ? 'NVIDIA H100 80GB HBM3' : 'NVIDIA H800';
    m.setNodeInfo(node, { gpuType, state: n % 97 === 5 ? 'draining' : 'up', expectedGpus: perNode });
    m.setNodeUp(node, true);
    m.setNodeInventory(
      node,
      Array.from({ length: perNode }, (_, i) => ({ index: i, uuid: demoUuid(n, i), model, memoryTotalBytes: 85_520_809_984 })),
      gpuType,
    );
    m.markNodeSeen(node, o.atMs);
    // Two 4-GPU jobs or one 8-GPU job per node, on `allocated` of the nodes.
    if ((n * 7919) % 100 < allocated * 100) {
      const tenant = tenants[n % tenants.length]!;
      if (n % 3 === 0) {
        m.assignJobGpus(demoJobId(n, 0), tenant, [{ node, gpuIndices: Array.from({ length: perNode }, (_, i) => i) }]);
        jobs += 1;
      } else {
        const half = Math.floor(perNode / 2);
        m.assignJobGpus(demoJobId(n, 0), tenant, [{ node, gpuIndices: Array.from({ length: half }, (_, i) => i) }]);
        m.assignJobGpus(demoJobId(n, 1), tenants[(n + 1) % tenants.length]!, [{ node, gpuIndices: Array.from({ length: perNode - half }, (_, i) => half + i) }]);
        jobs += 2;
      }
    }
    m.applyGpuSamples(
      node,
      o.atMs,
      Array.from({ length: perNode }, (_, i) => {
        const k = (n * 31 + i * 17) % 100;
        return {
          index: i,
          uuid: demoUuid(n, i),
          utilization: k / 100,
          memoryUsedBytes: k * 800_000_000,
          memoryTotalBytes: 85_520_809_984,
          temperatureCelsius: 30 + (k % 50),
          temperatureMarginCelsius: 60 - (k % 50),
          powerWatts: 70 + k * 6.3,
          energyJoules: 1_000_000_000 + n * 1000 + i,
          smClockHertz: 1_980_000_000,
          eccCorrected: k % 11 === 0 ? 2 : 0,
          eccUncorrected: 0,
          remappedRowsFailure: false,
          throttleReasons: k > 95 ? ['sw_power_cap'] : k < 3 ? ['gpu_idle'] : [],
        };
      }),
    );
    if (n % 500 === 7) m.recordXid(node, 3, 79);
    if (n % 300 === 11) m.recordXid(node, 1, 13);
  }
  return { jobs, gpus: o.nodes * perNode };
}

/** Every non-fleet metric with a few values, so an exposition shows every family. */
export function populateDemoControlPlane(m: NuriMetrics, atMs: number): void {
  const tenants = DEMO_TENANTS;
  m.setLeader(true);
  m.setStartEstimateScale(0.25);
  const wanted: JobGpuTypeLabel[] = ['h100', 'h800', 'any'];
  m.setSchedulerSnapshot({
    jobs: tenants.flatMap((tenant, i) => [
      { state: 'pending' as const, tenant, gpuType: wanted[i % 3]!, count: i + 1 },
      { state: 'running' as const, tenant, gpuType: wanted[i % 3]!, count: 10 * (i + 1) },
    ]),
    gpus: [
      { gpuType: 'h100', state: 'allocated', count: 200 },
      { gpuType: 'h100', state: 'free', count: 30 },
      { gpuType: 'h100', state: 'unhealthy', count: 2 },
      { gpuType: 'h100', state: 'unavailable', count: 8 },
      { gpuType: 'h800', state: 'allocated', count: 70 },
      { gpuType: 'h800', state: 'free', count: 10 },
    ],
    tenants: tenants.map((tenant, i) => ({
      tenant,
      gpuType: 'h100' as const,
      guaranteed: 32,
      limit: 96,
      allocated: 16 + 8 * i,
      pendingGpus: i * 4,
      oldestPendingSeconds: i ? 120 * i : undefined,
    })),
  });
  tenants.forEach((tenant, i) => {
    m.recordJobTransition(tenant, 'h100', null, 'pending');
    m.recordJobTransition(tenant, 'h100', 'pending', 'running');
    m.recordJobTransition(tenant, 'h100', 'running', 'completed');
    m.observeQueueWait(tenant, 'h100', 30 * (i + 1));
    m.addUsage(tenant, 'h100', 3600 * (i + 1));
  });
  m.setGpuPrices(tenants.flatMap((tenant) => [{ tenant, gpuType: 'h100' as const, usdPerGpuHour: 2.5 }, { tenant, gpuType: 'h800' as const, usdPerGpuHour: 2 }]));
  m.recordPreemption('kakao', 'h100', 'guarantee_reclaim');
  m.recordJobEndedByServer('kakao', 'h100', 'node_down');
  m.observePassDuration(0.042);
  m.markPassSucceeded(atMs);
  m.setAgentConnections(3);
  m.recordAgentMessage('samples', 'applied');
  m.recordAgentMessage('samples', 'duplicate');
  m.recordAgentMessage('invalid', 'rejected');
  m.observeIngestLag(atMs - 250, atMs);
  m.observeHttpRequest('GET', '/jobs/:id', 200, 0.004);
  m.observeHttpRequest('POST', '/jobs', 422, 0.002);
  m.addAgentBufferDrops(demoNodeName(0), 5);
}
