/** Per-policy, per-tenant figures from a simulation result. */
import { SimResult } from './engine';

export interface Row {
  policy: string;
  tenant: string;
  jobs: number;
  started: number;
  waitMeanH: number;
  waitP50H: number;
  waitP95H: number;
  waitP99H: number;
  /** Mean job completion time (submit to finish). */
  jctMeanH: number;
  /** Mean bounded slowdown: (wait + run) / max(run, 10 min). */
  boundedSlowdown: number;
  gpuHours: number;
  /** GPU-hours its guarantee would give over the window. */
  guaranteedGpuHours: number;
  /**
   * While its demand was at least its guarantee: GPU-time held (capped at the entitlement) over
   * GPU-time its guarantee entitled it to (1 = all). See docs/scheduling.md for the definition.
   */
  guaranteeMet: number | null;
  preemptions: number;
  /** Share of the whole cluster's GPU-time in the window (all rows: utilization). */
  utilization: number;
  /** Median |actual start - first estimate| in hours, over jobs that waited at their first pass. */
  estimateErrorP50H: number | null;
  /** p99 wait of jobs of 32 GPUs or more. */
  bigWaitP99H: number | null;
}

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

const H = 3600;

/** One policy's per-tenant rows that have a guarantee share (tenants whose demand reached their guarantee). */
export function guaranteeRows(all: readonly Row[], policy: string): Row[] {
  return all.filter((r) => r.policy === policy && r.tenant !== 'all' && r.guaranteeMet !== null);
}

export function rows(r: SimResult): Row[] {
  const tenants = [...new Set(r.jobs.map((j) => j.tenant))].sort();
  const out: Row[] = [];
  for (const tenant of [...tenants, 'all']) {
    const js = r.jobs.filter((j) => tenant === 'all' || j.tenant === tenant);
    const done = js.filter((j) => j.finish !== null);
    const waits = done.map((j) => j.wait).sort((a, b) => a - b);
    const big = done.filter((j) => j.gpus >= 32).map((j) => j.wait).sort((a, b) => a - b);
    const errs = done
      .filter((j) => j.waitedAtFirstPass && j.estimate !== null && j.firstStart !== null)
      .map((j) => Math.abs(j.firstStart! - j.estimate!))
      .sort((a, b) => a - b);
    const tts = tenant === 'all' ? Object.values(r.tenantTime) : [r.tenantTime[tenant]].filter((x) => x !== undefined);
    const contended = tts.reduce((s, t) => s + t.entitled, 0);
    const got = tts.reduce((s, t) => s + t.receivedCapped, 0);
    const gpuSeconds = tts.reduce((s, t) => s + t.gpuSeconds, 0);
    const mean = (a: number[]) => (a.length ? a.reduce((s, x) => s + x, 0) / a.length : NaN);
    out.push({
      policy: r.label,
      tenant,
      jobs: js.length,
      started: done.length,
      waitMeanH: mean(waits) / H,
      waitP50H: quantile(waits, 0.5) / H,
      waitP95H: quantile(waits, 0.95) / H,
      waitP99H: quantile(waits, 0.99) / H,
      jctMeanH: mean(done.map((j) => j.finish! - j.submit)) / H,
      boundedSlowdown: mean(done.map((j) => (j.finish! - j.submit) / Math.max(j.duration, 600))),
      gpuHours: gpuSeconds / H,
      guaranteedGpuHours: (tts.reduce((s, t) => s + t.guaranteed, 0) * r.windowSeconds) / H,
      guaranteeMet: contended > 0 ? got / contended : null,
      preemptions: js.reduce((s, j) => s + j.preemptions, 0),
      utilization:
        tenant === 'all'
          ? r.busyInWindow / (r.capacity * r.windowSeconds)
          : r.busyInWindow > 0
            ? (r.tenantTime[tenant]?.gpuSeconds ?? 0) / (r.capacity * r.windowSeconds)
            : 0,
      estimateErrorP50H: errs.length ? quantile(errs, 0.5) / H : null,
      bigWaitP99H: big.length ? quantile(big, 0.99) / H : null,
    });
  }
  return out;
}

const f = (x: number | null, d = 2) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(d));

export function table(all: Row[]): string {
  const head = ['policy', 'tenant', 'jobs', 'wait mean h', 'p50', 'p95', 'p99', 'JCT h', 'bsld', 'GPU-h', 'guar GPU-h', 'guar met', 'preempt', 'util', 'est err p50 h', '>=32 p99 h'];
  const body = all.map((r) => [
    r.policy, r.tenant, String(r.jobs), f(r.waitMeanH), f(r.waitP50H), f(r.waitP95H), f(r.waitP99H), f(r.jctMeanH), f(r.boundedSlowdown, 1),
    f(r.gpuHours, 0), f(r.guaranteedGpuHours, 0), r.guaranteeMet === null ? '-' : f(r.guaranteeMet, 3), String(r.preemptions), f(r.utilization, 3),
    f(r.estimateErrorP50H), f(r.bigWaitP99H),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i < 2 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ');
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...body.map(line)].join('\n');
}
