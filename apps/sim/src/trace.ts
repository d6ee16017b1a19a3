/**
 * Workload input. Two formats:
 *  - ITP 2021 (one file per cluster = tenant): job_id,submission_time,duration,num_gpu.
 *  - Generic CSV with a header: submit,duration,gpus,tenant[,gpu_type][,time_limit][,priority]
 *    (seconds; gpu_type h100|h800|any; priority low|normal|high or 0..2).
 * What a trace lacks is drawn from a seeded source, per tenant (see ENRICHMENT).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { GpuTypeWanted } from '@nuri/scheduling';
import { streamFor } from './prng';

export interface TraceJob {
  id: string;
  tenant: string;
  /** Seconds from the start of the trace. */
  submit: number;
  /** Seconds the job runs when it is not interrupted. */
  duration: number;
  gpus: number;
  gpuType: GpuTypeWanted;
  timeLimit: number;
  priority: number;
}

export type GpuTypeWishes = 'any' | 'drawn';

export const ENRICHMENT = [
  'GPU counts above 8 that are not a multiple of 8 are rounded up to whole nodes.',
  'GPU type wish (when absent): with --gpu-types any (default) every job takes any type; with --gpu-types drawn, 1-8 GPUs: 60% any, 25% h100, 15% h800; multi-node: 50% any, 40% h100, 10% h800.',
  'Time limit (when absent): duration x U(1.2, 4) rounded up to 15 minutes (users over-estimate; no job hits its limit).',
  'Priority class (when absent): 10% high, 80% normal, 10% low.',
  'Draws come from mulberry32 seeded with --seed and the tenant name, so each tenant is repeatable on its own.',
];

interface Raw {
  id: string;
  tenant: string;
  submit: number;
  duration: number;
  gpus: number;
  gpuType?: GpuTypeWanted;
  timeLimit?: number;
  priority?: number;
}

export function tenantNameOf(file: string): string {
  return basename(file).replace(/\.csv$/i, '');
}

export function parseTrace(text: string, file: string): Raw[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim().length > 0);
  if (lines.length === 0) return [];
  const header = lines[0]!.split(',').map((h) => h.trim().toLowerCase());
  const col = (name: string) => header.indexOf(name);
  const out: Raw[] = [];
  if (col('submission_time') >= 0 && col('num_gpu') >= 0) {
    const [ci, cs, cd, cg] = [col('job_id'), col('submission_time'), col('duration'), col('num_gpu')];
    const tenant = tenantNameOf(file);
    for (let i = 1; i < lines.length; i++) {
      const f = lines[i]!.split(',');
      out.push({ id: `${tenant}/${ci >= 0 ? f[ci]! : i}`, tenant, submit: Number(f[cs]!), duration: Number(f[cd]!), gpus: Number(f[cg]!) });
    }
    return out.filter(valid);
  }
  if (col('submit') >= 0 && col('gpus') >= 0) {
    const c = { s: col('submit'), d: col('duration'), g: col('gpus'), t: col('tenant'), y: col('gpu_type'), l: col('time_limit'), p: col('priority') };
    for (let i = 1; i < lines.length; i++) {
      const f = lines[i]!.split(',').map((x) => x.trim());
      const tenant = c.t >= 0 && f[c.t] ? f[c.t]! : tenantNameOf(file);
      const type = c.y >= 0 ? (f[c.y]?.toLowerCase() as GpuTypeWanted) : undefined;
      const pr = c.p >= 0 ? f[c.p]! : undefined;
      out.push({
        id: `${tenant}/${i}`,
        tenant,
        submit: Number(f[c.s]!),
        duration: Number(f[c.d]!),
        gpus: Number(f[c.g]!),
        gpuType: type === 'h100' || type === 'h800' || type === 'any' ? type : undefined,
        timeLimit: c.l >= 0 && f[c.l] ? Number(f[c.l]!) : undefined,
        priority: pr === undefined || pr === '' ? undefined : pr === 'low' ? 0 : pr === 'high' ? 2 : pr === 'normal' ? 1 : Number(pr),
      });
    }
    return out.filter(valid);
  }
  throw new Error(`${file}: unknown trace format (header ${lines[0]!})`);
}

function valid(r: Raw): boolean {
  return Number.isFinite(r.submit) && Number.isFinite(r.duration) && Number.isFinite(r.gpus) && r.gpus >= 1;
}

/** Fill in what the trace lacks, repeatably; keep jobs submitted within [0, days). */
export function enrich(raw: Raw[], seed: number, days: number | null, wishes: GpuTypeWishes = 'drawn'): TraceJob[] {
  const byTenant = new Map<string, Raw[]>();
  for (const r of raw) {
    let l = byTenant.get(r.tenant);
    if (!l) byTenant.set(r.tenant, (l = []));
    l.push(r);
  }
  const out: TraceJob[] = [];
  for (const [tenant, list] of [...byTenant.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const rnd = streamFor(seed, tenant);
    list.sort((a, b) => a.submit - b.submit || (a.id < b.id ? -1 : 1));
    for (const r of list) {
      // Always draw all three, so a column present in one file does not shift the others.
      const uType = rnd();
      const uLimit = rnd();
      const uPrio = rnd();
      if (days !== null && r.submit >= days * 86400) continue;
      const gpus = r.gpus <= 8 ? Math.round(r.gpus) : Math.ceil(r.gpus / 8) * 8;
      const duration = Math.max(1, Math.round(r.duration));
      const gpuType: GpuTypeWanted =
        r.gpuType ??
        (wishes === 'any' ? 'any' : gpus > 8 ? (uType < 0.5 ? 'any' : uType < 0.9 ? 'h100' : 'h800') : uType < 0.6 ? 'any' : uType < 0.85 ? 'h100' : 'h800');
      const timeLimit = r.timeLimit ?? Math.ceil((duration * (1.2 + 2.8 * uLimit)) / 900) * 900;
      const priority = r.priority ?? (uPrio < 0.1 ? 2 : uPrio < 0.9 ? 1 : 0);
      out.push({ id: r.id, tenant, submit: r.submit, duration, gpus, gpuType, timeLimit, priority });
    }
  }
  return out.sort((a, b) => a.submit - b.submit || (a.id < b.id ? -1 : 1));
}

export function loadTraces(files: string[], seed: number, days: number | null, wishes: GpuTypeWishes = 'drawn'): TraceJob[] {
  const raw = files.flatMap((f) => parseTrace(readFileSync(f, 'utf8'), f));
  return enrich(raw, seed, days, wishes);
}
