/**
 * nuri trace simulator.
 *   npm run sim -- --trace ../shared/traces/itp-2021/cluster0{2,3,5,6}.csv ../shared/traces/itp-2021/cluster10.csv \
 *     --nodes 20 --days 14 --seed 1 --policy fifo,greedy,slurm,nuri [--json out.json] [--html out.html]
 * --nodes N (N H100 nodes: one homogeneous pool, as the brief's reference scenario) or
 * h100:N,h800:M (two pools); --gpu-types any|drawn (type wishes for traces without them:
 * all `any` (default), or drawn as ENRICHMENT says); --per-leaf nodes per leaf switch (8);
 * --requeue restart|resume (what a preempted job loses); --depth reservation depth.
 */
import { writeFileSync } from 'node:fs';
import { DEFAULT_POLICY_CONFIG, PolicyMode, configFor } from '@nuri/scheduling';
import { drawLine, drawsReport, parseSeeds, runDraws } from './draws';
import { DEFAULT_GUARANTEE_SHARE, NodeSpec, SimResult, autoQuotas, buildNodes, simulate } from './engine';
import { Row, guaranteeRows, rows, table } from './metrics';
import { Progress } from './progress';
import { applyQuotaFile, loadQuotaFile } from './quotas';
import { htmlReport } from './report';
import { ENRICHMENT, GpuTypeWishes, loadTraces } from './trace';

export interface Args {
  trace: string[];
  nodes: NodeSpec;
  days: number | null;
  seed: number;
  policies: PolicyMode[];
  json: string | null;
  html: string | null;
  requeue: 'restart' | 'resume';
  depth: number;
  quiet: boolean;
  gpuTypes: GpuTypeWishes;
  /** Tenant limit = guarantee + this share of the type capacity (default 0.5); >= 1: the whole capacity. */
  limitShare: number;
  /** Share of each type's capacity the derived guarantees split by offered load (default 0.8). */
  guaranteeShare: number;
  /** Anti-starvation threshold in hours (PolicyConfig.starvationSeconds); null = the default. */
  starvationHours: number | null;
  /** A JSON file of quotas per tenant (see quotas.ts); tenants it does not name keep derived quotas. */
  quotas: string | null;
  /** Print why each tenant's guarantee was not held (GPU-hours below entitlement by reason). */
  explainShortfall: boolean;
  /** Print the reasons, starts and preemptions of jobs whose id starts with this. */
  traceJob: string | null;
  /** Print each tenant's running and demanded GPUs every this many hours. */
  timelineHours: number | null;
  /** Run once per seed and summarize the draws (draws.ts); null: one run with `seed`. */
  seeds: number[] | null;
}

export const POLICIES: readonly PolicyMode[] = ['fifo', 'greedy', 'slurm', 'nuri'];

export function parseArgs(argv: string[]): Args {
  const a: Args = {
    trace: [],
    nodes: { h100: 10, h800: 10, perLeaf: 8 },
    days: null,
    seed: 1,
    policies: [...POLICIES],
    json: null,
    html: null,
    requeue: 'resume',
    depth: DEFAULT_POLICY_CONFIG.reservationDepth,
    quiet: false,
    gpuTypes: 'any',
    limitShare: 0.5,
    guaranteeShare: DEFAULT_GUARANTEE_SHARE,
    starvationHours: null,
    explainShortfall: false,
    quotas: null,
    traceJob: null,
    timelineHours: null,
    seeds: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = () => {
      const x = argv[++i]!;
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    switch (k) {
      case '--trace':
        while (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) a.trace.push(argv[++i]!);
        break;
      case '--nodes': {
        const s = v();
        if (/^\d+$/.test(s)) {
          const n = Number(s);
          // One homogeneous pool: the ITP traces have no GPU types, and the brief's reference
          // figures (FCFS about 12 h, greedy about 2 h) are for one pool of 20 x 8 GPUs.
          a.nodes = { ...a.nodes, h100: n, h800: 0 };
        } else {
          const spec = { ...a.nodes, h100: 0, h800: 0 };
          for (const part of s.split(',')) {
            const [m, n] = part.split(':');
            if (m !== 'h100' && m !== 'h800') throw new Error(`--nodes: unknown type ${m}`);
            spec[m] = Number(n);
          }
          a.nodes = spec;
        }
        break;
      }
      case '--per-leaf':
        a.nodes = { ...a.nodes, perLeaf: Number(v()) };
        break;
      case '--days':
        a.days = Number(v());
        break;
      case '--seed':
        a.seed = Number(v());
        break;
      case '--seeds':
        a.seeds = parseSeeds(v());
        break;
      case '--policy':
        a.policies = v().split(',').map((p) => {
          if (!POLICIES.includes(p as PolicyMode)) throw new Error(`unknown policy ${p}`);
          return p as PolicyMode;
        });
        break;
      case '--json':
        a.json = v();
        break;
      case '--html':
        a.html = v();
        break;
      case '--requeue': {
        const r = v();
        if (r !== 'restart' && r !== 'resume') throw new Error('--requeue restart|resume');
        a.requeue = r;
        break;
      }
      case '--depth':
        a.depth = Number(v());
        break;
      case '--gpu-types': {
        const t = v();
        if (t !== 'any' && t !== 'drawn') throw new Error('--gpu-types any|drawn');
        a.gpuTypes = t;
        break;
      }
      case '--limit-share':
        a.limitShare = Number(v());
        if (!(a.limitShare > 0)) throw new Error('--limit-share needs a positive number');
        break;
      case '--guarantee-share':
        a.guaranteeShare = Number(v());
        if (!(a.guaranteeShare > 0 && a.guaranteeShare <= 1)) throw new Error('--guarantee-share needs a number in (0, 1]');
        break;
      case '--starvation-hours':
        a.starvationHours = Number(v());
        break;
      case '--quotas':
        a.quotas = v();
        break;
      case '--explain-shortfall':
        a.explainShortfall = true;
        break;
      case '--trace-job':
        a.traceJob = v();
        break;
      case '--timeline':
        a.timelineHours = Number(v());
        if (!(a.timelineHours > 0)) throw new Error('--timeline needs a positive number of hours');
        break;
      case '--quiet':
        a.quiet = true;
        break;
      default:
        throw new Error(`unknown argument ${k}`);
    }
  }
  if (a.trace.length === 0) throw new Error('--trace <files...> is required');
  if (a.seeds !== null) {
    // These print one run's details; with several draws, rerun the draw of interest with --seed.
    const perRun = [a.html && '--html', a.traceJob !== null && '--trace-job', a.timelineHours !== null && '--timeline', a.explainShortfall && '--explain-shortfall'].filter(Boolean);
    if (perRun.length) throw new Error(`--seeds: ${perRun.join(', ')} describe one run; use --seed S for the draw you want to look at`);
  }
  return a;
}

export interface RunOutput {
  args: Args;
  scenario: { jobs: number; tenants: { id: string; offeredLoadGpus: number; quotas: unknown; weight: number }[]; capacity: number; windowDays: number; enrichment: string[]; quotaRule: string };
  results: SimResult[];
  rows: Row[];
  checks: { name: string; ok: boolean; detail: string }[];
}

export function run(args: Args, progress = false): RunOutput {
  const jobs = loadTraces(args.trace, args.seed, args.days, args.gpuTypes);
  const nodes = buildNodes(args.nodes);
  const windowSeconds = args.days !== null ? args.days * 86400 : Math.max(1, ...jobs.map((j) => j.submit));
  const derived = autoQuotas(jobs, nodes, args.limitShare, args.guaranteeShare);
  const load = derived.load;
  const quotaFile = args.quotas ? loadQuotaFile(args.quotas) : null;
  const tenants = quotaFile ? applyQuotaFile(derived.tenants, quotaFile, args.quotas!) : derived.tenants;
  const results: SimResult[] = [];
  for (const p of args.policies) {
    const bar = progress ? new Progress(p) : null;
    const config = configFor(p, {
      ...DEFAULT_POLICY_CONFIG,
      reservationDepth: args.depth,
      ...(args.starvationHours !== null ? { starvationSeconds: args.starvationHours * 3600 } : {}),
    });
    const r = simulate({
      label: p, config, nodes, tenants, jobs, windowSeconds, requeue: args.requeue, onProgress: bar ? (f) => bar.update(f) : undefined,
      traceJob: args.traceJob ?? undefined, timelineHours: args.timelineHours ?? undefined,
    });
    bar?.done(`${(r.wallMs / 1000).toFixed(1)}s, ${r.passes} passes`);
    results.push(r);
  }
  const all = results.flatMap(rows);
  return {
    args,
    scenario: {
      jobs: jobs.length,
      tenants: tenants.map((t) => ({ id: t.id, offeredLoadGpus: (load.get(t.id) ?? 0) / windowSeconds, quotas: t.quotas, weight: t.weight })),
      capacity: nodes.length * 8,
      windowDays: windowSeconds / 86400,
      enrichment: ENRICHMENT,
      quotaRule:
        (quotaFile ? `from ${args.quotas} for ${Object.keys(quotaFile).sort().join(', ') || 'no tenant'}; otherwise ` : '') +
        (args.limitShare >= 1
          ? `${guaranteeRule(args.guaranteeShare)}; limit = the type capacity; weight 1`
          : `${guaranteeRule(args.guaranteeShare)}; limit = guarantee + ${args.limitShare} x type capacity, at least the largest job, at most the type capacity; weight 1`),
    },
    results,
    rows: all,
    checks: checks(all),
  };
}

const guaranteeRule = (share: number) =>
  `guarantee per type = floor(${share} x type capacity x tenant share of offered GPU-seconds)` +
  (share < 1 ? `; the other ${Math.round((1 - share) * 100)}% is guaranteed to nobody (anyone borrows it; the only capacity where a job that started after starving is safe from reclaim)` : '');

/** The headline comparisons of nuri against slurm. */
export function checks(all: Row[]): { name: string; ok: boolean; detail: string }[] {
  const get = (p: string, t = 'all') => all.find((r) => r.policy === p && r.tenant === t);
  const n = get('nuri');
  const s = get('slurm');
  if (!n || !s) return [];
  const out = [
    { name: 'nuri mean wait <= slurm', ok: n.waitMeanH <= s.waitMeanH, detail: `${n.waitMeanH.toFixed(2)} h vs ${s.waitMeanH.toFixed(2)} h` },
    {
      name: 'nuri p99 wait of >=32-GPU jobs <= slurm',
      ok: (n.bigWaitP99H ?? 0) <= (s.bigWaitP99H ?? 0),
      detail: `${n.bigWaitP99H?.toFixed(2)} h vs ${s.bigWaitP99H?.toFixed(2)} h`,
    },
  ];
  for (const r of guaranteeRows(all, 'nuri')) {
    const sr = get('slurm', r.tenant);
    out.push({
      name: `nuri: ${r.tenant} holds its guarantee while its demand exceeds it`,
      ok: r.guaranteeMet! >= 0.95,
      detail: `${(r.guaranteeMet! * 100).toFixed(1)}% of guarantee held (slurm ${sr?.guaranteeMet === null || !sr ? '-' : (sr.guaranteeMet! * 100).toFixed(1) + '%'})`,
    });
  }
  return out;
}

function main(): void {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\nusage: npm run sim -- --trace <files...> [--nodes 20|h100:N,h800:M] [--days N] [--seed S | --seeds 1-10] [--policy fifo,greedy,slurm,nuri] [--gpu-types any|drawn] [--limit-share X] [--guarantee-share X] [--quotas FILE] [--json FILE|-] [--html FILE] [--requeue restart|resume] [--depth N] [--starvation-hours H] [--explain-shortfall] [--trace-job ID] [--timeline H]\n`);
    process.exit(2);
  }
  const t0 = performance.now();
  if (args.seeds !== null) return mainDraws(args, args.seeds, t0);
  let out: RunOutput;
  try {
    out = run(args, true);
  } catch (e) {
    // Bad input (a trace or quota file): say what and where, no stack.
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(2);
  }
  const secs = (performance.now() - t0) / 1000;
  if (args.json === '-') {
    process.stdout.write(JSON.stringify(jsonOf(out), null, 2) + '\n');
    return;
  }
  const sc = out.scenario;
  console.log(`${sc.jobs} jobs, ${sc.tenants.length} tenants, ${sc.capacity} GPUs (${args.nodes.h100} H100 + ${args.nodes.h800} H800 nodes), ${sc.windowDays.toFixed(1)} days, seed ${args.seed}, requeue ${args.requeue}, GPU type wishes ${args.gpuTypes}`);
  for (const t of sc.tenants) console.log(`  ${t.id.padEnd(12)} offered ${t.offeredLoadGpus.toFixed(1).padStart(6)} GPUs  quotas ${JSON.stringify(t.quotas)}${t.weight !== 1 ? `  weight ${t.weight}` : ''}`);
  console.log(`  quotas: ${sc.quotaRule}`);
  for (const e of sc.enrichment) console.log(`  drawn: ${e}`);
  console.log('');
  console.log(table(out.rows));
  console.log('');
  for (const c of out.checks) console.log(`${c.ok ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
  if (args.explainShortfall) console.log('\n' + shortfallReport(out.results));
  if (args.traceJob !== null) for (const r of out.results) console.log(`\n${r.label}: job ${args.traceJob}\n${r.jobTrace.join('\n') || '  (no such job)'}`);
  if (args.timelineHours !== null) console.log('\n' + timelineReport(out.results));
  for (const r of out.results)
    console.log(
      `${r.label}: ${r.passes} passes in ${(r.wallMs / 1000).toFixed(2)} s${r.stuck ? `, ${r.stuck} jobs never started` : ''}` +
        (r.estimateScale ? `; start estimates: predicted waits x ${r.estimateScale.scale} (median of the last ${r.estimateScale.samples} starts)` : ''),
    );
  console.log(`total ${secs.toFixed(2)} s`);
  if (args.json) writeFileSync(args.json, JSON.stringify(jsonOf(out), null, 2));
  if (args.html) writeFileSync(args.html, htmlReport(out));
  if (args.json) console.log(`JSON: ${args.json}`);
  if (args.html) console.log(`HTML: ${args.html}`);
}

function mainDraws(args: Args, seeds: number[], t0: number): void {
  const quietOut = args.json === '-';
  if (!quietOut) console.log(`${seeds.length} draws; per draw and policy: mean wait h, >=32-GPU p99 wait h`);
  let o;
  try {
    o = runDraws(seeds, (seed) => run({ ...args, seed }), (d) => {
      if (!quietOut) console.log(drawLine(d, args.policies));
    });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(2);
  }
  if (quietOut) {
    process.stdout.write(JSON.stringify(o, null, 2) + '\n');
    return;
  }
  for (const l of drawsReport(o)) console.log(l);
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  if (args.json) {
    writeFileSync(args.json, JSON.stringify(o, null, 2));
    console.log(`JSON: ${args.json}`);
  }
}

/** GPU-hours each tenant held below its entitlement, by the reason its smallest fitting pending job had. */
export function shortfallGpuHours(r: SimResult): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [t, tt] of Object.entries(r.tenantTime)) {
    const e = Object.entries(tt.shortBy).filter(([, v]) => v >= 1800);
    if (e.length > 0) out[t] = Object.fromEntries(e.sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Math.round(v / 3600)]));
  }
  return out;
}

export function shortfallReport(results: SimResult[]): string {
  const lines = ["Guarantee not held: GPU-hours below entitlement, by the reason the tenant's smallest fitting pending job was given"];
  for (const r of results) {
    for (const [t, by] of Object.entries(shortfallGpuHours(r))) {
      const total = Object.values(by).reduce((a, b) => a + b, 0);
      lines.push(`  ${r.label.padEnd(6)} ${t.padEnd(10)} ${String(total).padStart(5)} GPU-h: ${Object.entries(by).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    }
  }
  return lines.join('\n');
}

export function timelineReport(results: SimResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    if (r.timeline.length === 0) continue;
    const ts = Object.keys(r.timeline[0]!.tenants);
    lines.push(`${r.label}: running/demand GPUs per tenant`, `  hour  ${ts.map((t) => t.padStart(11)).join(' ')}`);
    for (const p of r.timeline) lines.push(`  ${p.h.toFixed(0).padStart(4)}  ${ts.map((t) => `${p.tenants[t]!.running}/${p.tenants[t]!.demand}`.padStart(11)).join(' ')}`);
  }
  return lines.join('\n');
}

export function jsonOf(out: RunOutput) {
  return {
    scenario: out.scenario,
    rows: out.rows,
    checks: out.checks,
    runs: out.results.map((r) => ({
      policy: r.label, passes: r.passes, wallMs: Math.round(r.wallMs), stuck: r.stuck, estimateScale: r.estimateScale,
      guaranteeShortfallGpuHours: shortfallGpuHours(r),
      ...(r.jobTrace.length > 0 ? { jobTrace: r.jobTrace } : {}),
      ...(r.timeline.length > 0 ? { timeline: r.timeline } : {}),
    })),
  };
}

if (require.main === module) main();
