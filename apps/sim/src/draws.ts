/**
 * Several draws of one scenario (`--seeds 1-10`). The ITP traces have no time limits,
 * priorities or GPU types, so the simulator draws them from `--seed`; a single draw's
 * big-job p99 is decided by one or two jobs (with 39 jobs of 32 GPUs or more it is the
 * largest wait), so a policy comparison on one draw can turn on which job got which time
 * limit. This runs the same scenario once per seed and reports each draw's headline
 * checks and, over the draws, how often each check passed and the mean ratio of nuri's
 * figures to slurm's.
 */
import type { RunOutput } from './main';
import { Row, guaranteeRows } from './metrics';

export interface DrawSummary {
  seed: number;
  /** The 'all' row of each policy. */
  all: Record<string, Pick<Row, 'waitMeanH' | 'waitP99H' | 'bigWaitP99H' | 'preemptions' | 'utilization'>>;
  /** Lowest guarantee share held by a contended tenant under nuri (null: none contended, or nuri not run). */
  nuriGuaranteeMin: number | null;
  checks: { name: string; ok: boolean; detail: string }[];
}

export interface DrawsOutput {
  seeds: number[];
  draws: DrawSummary[];
  /** Per check (by name): draws on which it passed, of those on which it was made. */
  passed: Record<string, { passed: number; of: number }>;
  /** Draws on which every check passed. */
  allPassed: number;
  /** Mean over the draws of nuri's figure / slurm's (null: a policy missing, or slurm's figure 0). */
  ratios: { waitMean: number | null; bigWaitP99: number | null };
}

/** `1-10`, `1,3,7` or a mix (`1-3,9`): distinct non-negative integers, in the order given. */
export function parseSeeds(s: string): number[] {
  const out: number[] = [];
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`--seeds: "${part}" is not a seed or a range like 1-10`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`--seeds: range ${part} runs backwards`);
    if (b - a >= 1000) throw new Error(`--seeds: range ${part} has more than 1000 seeds`);
    for (let x = a; x <= b; x++) if (!out.includes(x)) out.push(x);
  }
  return out;
}

/** `runOne(seed)`: the scenario's run with that seed (main.ts passes its `run`; no import cycle). */
export function runDraws(seeds: number[], runOne: (seed: number) => Pick<RunOutput, 'rows' | 'checks'>, onDraw?: (d: DrawSummary, i: number) => void): DrawsOutput {
  const draws: DrawSummary[] = [];
  for (const seed of seeds) {
    const out = runOne(seed);
    const all: DrawSummary['all'] = {};
    for (const r of out.rows.filter((x) => x.tenant === 'all'))
      all[r.policy] = { waitMeanH: r.waitMeanH, waitP99H: r.waitP99H, bigWaitP99H: r.bigWaitP99H, preemptions: r.preemptions, utilization: r.utilization };
    const held = guaranteeRows(out.rows, 'nuri').map((r) => r.guaranteeMet!);
    const d: DrawSummary = { seed, all, nuriGuaranteeMin: held.length ? Math.min(...held) : null, checks: out.checks };
    draws.push(d);
    onDraw?.(d, draws.length - 1);
  }
  const passed: DrawsOutput['passed'] = {};
  for (const d of draws)
    for (const c of d.checks) {
      const p = (passed[c.name] ??= { passed: 0, of: 0 });
      p.of++;
      if (c.ok) p.passed++;
    }
  const ratio = (f: (r: DrawSummary['all'][string]) => number | null): number | null => {
    const xs: number[] = [];
    for (const d of draws) {
      const n = d.all.nuri ? f(d.all.nuri) : null;
      const s = d.all.slurm ? f(d.all.slurm) : null;
      if (n === null || s === null || !(s > 0)) return null;
      xs.push(n / s);
    }
    return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
  };
  return {
    seeds,
    draws,
    passed,
    allPassed: draws.filter((d) => d.checks.length > 0 && d.checks.every((c) => c.ok)).length,
    ratios: { waitMean: ratio((r) => r.waitMeanH), bigWaitP99: ratio((r) => r.bigWaitP99H) },
  };
}

const f2 = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x.toFixed(2));
const f1 = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x.toFixed(1));

/** One line a draw: each policy's mean wait and big-job p99, nuri's lowest guarantee held, the checks. */
export function drawLine(d: DrawSummary, policies: readonly string[]): string {
  const cols = policies.map((p) => `${p} ${f2(d.all[p]?.waitMeanH).padStart(6)} ${f1(d.all[p]?.bigWaitP99H).padStart(6)}`);
  const g = d.nuriGuaranteeMin === null ? '' : `  guar min ${(d.nuriGuaranteeMin * 100).toFixed(1)}%`;
  const failed = d.checks.filter((c) => !c.ok).map((c) => c.name);
  const verdict = d.checks.length === 0 ? '' : failed.length === 0 ? '  all checks pass' : `  FAIL ${failed.join('; ')}`;
  return `seed ${String(d.seed).padStart(4)}  ${cols.join('  ')}${g}  preempt ${d.all.nuri?.preemptions ?? '-'}${verdict}`;
}

export function drawsReport(o: DrawsOutput): string[] {
  const lines = ['', `over ${o.draws.length} draws (seeds ${o.seeds.join(',')}):`];
  for (const [name, p] of Object.entries(o.passed)) lines.push(`  ${String(p.passed).padStart(3)} of ${p.of}  ${name}`);
  lines.push(`  ${String(o.allPassed).padStart(3)} of ${o.draws.length}  every check`);
  if (o.ratios.waitMean !== null) lines.push(`  nuri / slurm, mean over draws: mean wait ${o.ratios.waitMean.toFixed(3)}, >=32-GPU p99 ${f2(o.ratios.bigWaitP99)}`);
  return lines;
}
