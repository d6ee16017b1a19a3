/**
 * The start-now step of a pass: place a job on GPUs free now without delaying any reservation.
 * Single-node jobs go to the best fit (fewest GPUs left over keeps whole nodes free); multi-node
 * jobs take whole nodes within as few leaf switches as possible.
 */
import { LeafState, NODE_GPUS, NodeState, Pool, minFree, modelIndex } from './cluster';
import type { Pass } from './pass';
import { GpuModel, PendingJob, Placement, PlannedStart } from './types';

export class Placer {
  /**
   * Per (GPUs, type): a start that failed for a duration fails for any longer job of that size
   * while the type's gainVersion is unchanged: most of a long queue is decided in O(1).
   */
  private readonly startMiss: { v: number; dur: number }[] = [];
  /** The same for the scan of reserved nodes. */
  private readonly reservedMiss: { v: number; dur: number }[] = [];

  constructor(private readonly p: Pass) {}

  /**
   * Start the job now if it fits; a job that may run on either type starts, if it can, on one
   * where it is within its tenant's guarantee: elsewhere it would run on borrowed capacity and be
   * the first victim of the reclaim it was ranked ahead of (a single-node `any` job otherwise
   * prefers H800). A start counts against the tenant's quota at once.
   */
  startWithin(job: PendingJob, allowed: readonly GpuModel[], ti: number): PlannedStart | null {
    const p = this.p;
    const g = job.gpus;
    let start: PlannedStart | null;
    const inG = p.quotas && allowed.length > 1 ? allowed.filter((m) => p.use2[p.x(ti, m)]! + g <= p.guar2[p.x(ti, m)]!) : allowed;
    if (inG.length > 0 && inG.length < allowed.length) start = this.tryStart(job, inG) ?? this.tryStart(job, allowed.filter((m) => !inG.includes(m)));
    else start = this.tryStart(job, allowed);
    if (start) {
      const x = p.x(ti, start.gpuModel);
      p.starts.push(start);
      p.use2[x]! += g;
      p.holds.hold(x, p.now + job.timeLimitSeconds * 1000, g);
    }
    return start;
  }

  /** Place the job on the first of `models` where it fits now (single-node: best fit across them). */
  tryStart(job: PendingJob, models: readonly GpuModel[]): PlannedStart | null {
    const g = job.gpus;
    return g <= NODE_GPUS ? this.startSingle(job, models) : this.startWhole(job, models);
  }

  private startSingle(job: PendingJob, models: readonly GpuModel[]): PlannedStart | null {
    const { cl, now, gainVersion } = this.p;
    const g = job.gpus;
    const until = now + job.timeLimitSeconds * 1000;
    // Best fit across the allowed types; on a tie the earlier type in preference order wins.
    let best: NodeState | null = null;
    for (const m of models) {
      const pool = cl.pools[m];
      if (pool.totalFree < g || this.missed(this.startMiss, m, g, until - now)) continue;
      let cand = cl.bestFitUnreserved(pool, g);
      if (pool.reservedNodes.length > 0 && !this.missed(this.reservedMiss, m, g, until - now)) {
        let hit = false;
        for (const st of pool.reservedNodes) {
          if (st.free.length < g || minFree(st, now, until) < g) continue;
          hit = true;
          if (!cand || st.free.length < cand.free.length || (st.free.length === cand.free.length && st.idx < cand.idx)) cand = st;
        }
        if (!hit) this.reservedMiss[g * 2 + modelIndex(m)] = { v: gainVersion[m], dur: until - now };
      }
      if (cand && (!best || cand.free.length < best.free.length)) best = cand;
      if (!cand) this.startMiss[g * 2 + modelIndex(m)] = { v: gainVersion[m], dur: until - now };
    }
    if (!best) return null;
    const idx = cl.take(best, g, until, job.id, now);
    return { jobId: job.id, gpuModel: best.model, placement: [{ nodeId: best.node.id, gpuIndices: idx }] };
  }

  private startWhole(job: PendingJob, models: readonly GpuModel[]): PlannedStart | null {
    const { cl, now, gainVersion } = this.p;
    const g = job.gpus;
    const until = now + job.timeLimitSeconds * 1000;
    const k = Math.ceil(g / NODE_GPUS);
    for (const m of models) {
      const pool = cl.pools[m];
      if (pool.totalFree < k * NODE_GPUS || this.missed(this.startMiss, m, g, until - now)) continue;
      const nodes = this.pickWholeNow(pool, k, until);
      if (!nodes) {
        this.startMiss[g * 2 + modelIndex(m)] = { v: gainVersion[m], dur: until - now };
        continue;
      }
      const placement: Placement[] = nodes.map((st) => ({
        nodeId: st.node.id,
        gpuIndices: cl.take(st, st.free.length, until, job.id, now),
      }));
      return { jobId: job.id, gpuModel: m, placement };
    }
    return null;
  }

  private missed(misses: readonly ({ v: number; dur: number } | undefined)[], m: GpuModel, g: number, dur: number): boolean {
    const miss = misses[g * 2 + modelIndex(m)];
    return !!miss && miss.v === this.p.gainVersion[m] && dur >= miss.dur;
  }

  /** k whole nodes free now, not delaying reservations, within as few leaf switches as possible. */
  private pickWholeNow(pool: Pool, k: number, until: number): NodeState[] | null {
    const { cl, now } = this.p;
    const extra = new Map<LeafState, Set<NodeState>>();
    let total = pool.wholeFree;
    for (const st of pool.reservedNodes) {
      if (!cl.isWholeFree(st) || minFree(st, now, until) < st.size) continue;
      let s = extra.get(st.leaf);
      if (!s) extra.set(st.leaf, (s = new Set()));
      s.add(st);
      total++;
    }
    if (total < k) return null;
    const counts = pool.leaves.map((leaf) => ({ leaf, n: leaf.whole + (extra.get(leaf)?.size ?? 0) })).filter((x) => x.n > 0);
    const out: NodeState[] = [];
    for (const { leaf, take } of chooseLeaves(counts, k)) {
      let left = take;
      const ex = extra.get(leaf);
      for (const st of leaf.nodes) {
        if (left === 0) break;
        if ((cl.isWholeFree(st) && !st.reserved) || ex?.has(st)) {
          out.push(st);
          left--;
        }
      }
    }
    return out.length === k ? out : null;
  }
}

/** Choose leaves for k nodes: one leaf if any holds k (the tightest such), else the fullest first. */
export function chooseLeaves<T extends { n: number }>(counts: T[], k: number): (T & { take: number })[] {
  let single: T | null = null;
  for (const c of counts) if (c.n >= k && (!single || c.n < single.n)) single = c;
  if (single) return [{ ...single, take: k }];
  const sorted = counts.map((c, i) => ({ c, i })).sort((a, b) => b.c.n - a.c.n || a.i - b.i);
  const out: (T & { take: number })[] = [];
  let left = k;
  for (const { c } of sorted) {
    if (left === 0) break;
    const take = Math.min(left, c.n);
    out.push({ ...c, take });
    left -= take;
  }
  return out;
}
