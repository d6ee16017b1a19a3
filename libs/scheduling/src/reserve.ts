/**
 * The blocked step of a pass: a job that can neither start nor reclaim gets, while the
 * reservation depth lasts, a backfill reservation at the earliest time it fits (later jobs may
 * use those GPUs only if they end by then), and in any case a reason and an estimated start.
 */
import { FitHeap, LeafState, NODE_GPUS, NodeState, Pool, earliestFit, fitTime, wholeFit, wholeFreeDuring } from './cluster';
import { messages } from './explain';
import type { Pass } from './pass';
import { chooseLeaves } from './place';
import { GpuModel, PendingJob, PlannedReservation } from './types';

export class Reserver {
  /**
   * Per (GPUs, type): unreserved nodes by earliest time g GPUs are free (built on the first
   * single-node reservation of that size; lazily refreshed as nodes change), and the node
   * version each node was last pushed at.
   */
  private readonly fitHeaps: (FitHeap | undefined)[] = [];
  private readonly fitPushed: (Int32Array | undefined)[] = [];
  /** Candidate marks for multi-node reservations (a stamp per query). */
  private readonly candMark: Float64Array;
  private candStamp = 0;
  /**
   * Per type: whole nodes without reservations by the time they are wholly free (built on the
   * first multi-node reservation; entries of nodes changed since are recomputed).
   */
  private readonly wholeCache: Record<GpuModel, { st: NodeState; t: number; ver: number }[] | null> = { h100: null, h800: null };

  constructor(private readonly p: Pass) {
    this.candMark = new Float64Array(p.cl.byIdx.length);
  }

  /** Reserve if the depth allows, then explain the job with its estimated start. */
  block(job: PendingJob, allowed: readonly GpuModel[], ti: number): void {
    const p = this.p;
    if (p.mode === 'fifo') p.strictBlocked = true;
    let ahead = 0;
    for (const m of allowed) ahead += p.blockedOn[m];
    const heldFor = this.heldByReservation(job, allowed);
    let est: number | null = null;
    let model: GpuModel = allowed[0]!;
    if (p.reservationsLeft > 0) {
      const r = this.reserve(job, allowed);
      if (r) {
        // A starving job's reservation also holds its tenant's room under the limit at its start.
        if (p.quotas && p.starving(job)) p.holds.setHold(p.x(ti, r.gpuModel), job, r.startAt);
        p.reservationsLeft--;
        est = r.startAt;
        model = r.gpuModel;
        p.reservations.push(r);
      }
    }
    if (est === null) {
      model = p.fluidPick(allowed);
      est = p.fluid(model);
    }
    p.queueWork(job, model);
    p.blockedOn[model]++;
    if (heldFor) {
      const f = p.cl.pools[heldFor].firstReservation!;
      p.explain(job, 'reservation_for_larger_job', messages.heldForLarger(job, f.jobId, f.s, (f.s - p.now) / 1000), est, model);
    } else if (ahead > 0) p.explain(job, 'behind_higher_ranked', messages.behind(job, ahead), est, model);
    else p.explain(job, 'waiting_for_resources', messages.nextInLine(job, model, est), est, model);
  }

  /** Reserve the earliest window from `from` on any of the types (ties: the earlier type). */
  reserve(job: PendingJob, models: readonly GpuModel[], from = this.p.now): PlannedReservation | null {
    const cl = this.p.cl;
    const g = job.gpus;
    const durMs = job.timeLimitSeconds * 1000;
    let best: { t: number; m: GpuModel; nodes: NodeState[] } | null = null;
    for (const m of models) {
      const pool = cl.pools[m];
      const r = g <= NODE_GPUS ? this.earliestSingle(pool, g, durMs, from) : this.earliestWhole(pool, Math.ceil(g / NODE_GPUS), durMs, from);
      // Strictly earlier wins, so ties keep the preferred type (H100 for multi-node).
      if (r && (!best || r.t < best.t)) best = { t: r.t, m, nodes: r.nodes };
    }
    if (!best) return null;
    for (const st of best.nodes) cl.reserve(st, { s: best.t, e: best.t + durMs, g: g <= NODE_GPUS ? g : st.size, jobId: job.id });
    return { jobId: job.id, gpuModel: best.m, startAt: best.t, nodeIds: best.nodes.map((s) => s.node.id) };
  }

  /** GPUs free earlier on a node: its heap entries may now be too late; add a fresh one. */
  onEarly(st: NodeState): void {
    for (let g = 1; g <= NODE_GPUS; g++) {
      const key = g * 2 + (st.model === 'h100' ? 0 : 1);
      const h = this.fitHeaps[key];
      if (h && !st.reserved) {
        h.push(Math.max(this.p.now, fitTime(st, g)), st.idx, st.ver);
        this.fitPushed[key]![st.idx] = st.ver;
      }
    }
  }

  /**
   * Earliest (time, node order) over unreserved nodes from the heap, and over reserved nodes one
   * by one (few): the same node a scan of every node would pick.
   */
  private earliestSingle(pool: Pool, g: number, durMs: number, from: number): { t: number; nodes: NodeState[] } | null {
    let bt = Infinity;
    let bn: NodeState | null = null;
    const top = this.earliestUnreserved(pool, g);
    if (top) {
      bt = Math.max(from, fitTime(top, g));
      bn = top;
    }
    for (const st of pool.reservedNodes) {
      const t = earliestFit(st, g, durMs, from);
      if (t < bt || (t === bt && t < Infinity && bn !== null && st.idx < bn.idx)) {
        bt = t;
        bn = st;
      }
    }
    return bn && bt < Infinity ? { t: bt, nodes: [bn] } : null;
  }

  /** The unreserved node of a pool where g GPUs are free earliest (ties: node order), or null. */
  private earliestUnreserved(pool: Pool, g: number): NodeState | null {
    const { cl, now } = this.p;
    const key = g * 2 + (pool.model === 'h100' ? 0 : 1);
    let h = this.fitHeaps[key];
    let pushed = this.fitPushed[key]!;
    if (!h) {
      h = new FitHeap();
      pushed = new Int32Array(cl.byIdx.length).fill(-1);
      for (const st of pool.nodes) {
        if (st.reserved || st.size < g) continue;
        h.push(Math.max(now, fitTime(st, g)), st.idx, st.ver);
        pushed[st.idx] = st.ver;
      }
      this.fitHeaps[key] = h;
      this.fitPushed[key] = pushed;
    }
    while (h.size > 0) {
      const st = cl.byIdx[h.idx[0]!]!;
      if (st.reserved) {
        h.pop();
        continue;
      }
      if (h.ver[0] !== st.ver) {
        // Stale: GPUs were taken since (later fit) or freed early (a fresh entry exists).
        h.pop();
        if (pushed[st.idx] !== st.ver) {
          h.push(Math.max(now, fitTime(st, g)), st.idx, st.ver);
          pushed[st.idx] = st.ver;
        }
        continue;
      }
      return h.t[0]! < Infinity ? st : null;
    }
    return null;
  }

  /** Plain (unreserved) whole nodes in (time wholly free, index) order: the cache, merged with the few changed since. */
  private plainWhole(pool: Pool): { st: NodeState; t: number }[] {
    const now = this.p.now;
    let base = this.wholeCache[pool.model];
    if (!base) {
      base = [];
      for (const st of pool.nodes) if (st.full && st.resv.length === 0) base.push({ st, t: Math.max(now, fitTime(st, st.size)), ver: st.ver });
      base.sort((a, b) => a.t - b.t || a.st.idx - b.st.idx);
      this.wholeCache[pool.model] = base;
    }
    const valid: { st: NodeState; t: number }[] = [];
    const changed: { st: NodeState; t: number }[] = [];
    for (const e of base) {
      if (e.st.resv.length > 0) continue;
      if (e.st.ver === e.ver) valid.push(e);
      else changed.push({ st: e.st, t: Math.max(now, fitTime(e.st, e.st.size)) });
    }
    if (changed.length === 0) return valid;
    changed.sort((a, b) => a.t - b.t || a.st.idx - b.st.idx);
    const plain: { st: NodeState; t: number }[] = [];
    let i = 0;
    let j = 0;
    while (i < valid.length || j < changed.length) {
      if (j >= changed.length || (i < valid.length && (valid[i]!.t - changed[j]!.t || valid[i]!.st.idx - changed[j]!.st.idx) < 0)) plain.push(valid[i++]!);
      else plain.push(changed[j++]!);
    }
    return plain;
  }

  /** Earliest time k whole nodes stay free for durMs; nodes without reservations only ever free up. */
  private earliestWhole(pool: Pool, k: number, durMs: number, from: number): { t: number; nodes: NodeState[] } | null {
    const plain = this.plainWhole(pool);
    const resv: NodeState[] = [];
    const rt: number[] = [];
    for (const st of pool.reservedNodes) {
      if (!st.full) continue;
      resv.push(st);
      const t = wholeFit(st, durMs, from);
      if (t < Infinity) rt.push(t);
    }
    if (plain.length + resv.length < k) return null;
    rt.sort((a, b) => a - b);
    let p = 0;
    let j = 0;
    while (p < plain.length || j < rt.length) {
      const T = Math.max(from, Math.min(p < plain.length ? plain[p]!.t : Infinity, j < rt.length ? rt[j]! : Infinity));
      while (p < plain.length && plain[p]!.t <= T) p++;
      while (j < rt.length && rt[j]! <= T) j++;
      // A reserved node fits at T only if its earliest fit is at or before T (j of them).
      if (p + j < k) continue;
      const fit = resv.filter((st) => wholeFreeDuring(st, T, T + durMs));
      if (p + fit.length < k) continue;
      return { t: T, nodes: this.fewestLeaves(pool, plain.slice(0, p).map((e) => e.st).concat(fit), k) };
    }
    return null;
  }

  /**
   * k of the candidate nodes within as few leaves as possible: count per leaf (leaves are
   * contiguous in node order, so pool order is the order of their first candidates).
   */
  private fewestLeaves(pool: Pool, cands: readonly NodeState[], k: number): NodeState[] {
    const stamp = ++this.candStamp;
    const mark = this.candMark;
    for (const st of cands) mark[st.idx] = stamp;
    const counts: { leaf: LeafState; n: number }[] = [];
    for (const leaf of pool.leaves) {
      let n = 0;
      for (const st of leaf.nodes) if (mark[st.idx] === stamp) n++;
      if (n > 0) counts.push({ leaf, n });
    }
    const nodes: NodeState[] = [];
    for (const { leaf, take } of chooseLeaves(counts, k)) {
      let left = take;
      for (const st of leaf.nodes) {
        if (left === 0) break;
        if (mark[st.idx] === stamp) {
          nodes.push(st);
          left--;
        }
      }
    }
    return nodes;
  }

  /** Could the job start now but for a reservation? Returns the type whose reservation holds it. O(1) from pool counts. */
  private heldByReservation(job: PendingJob, models: readonly GpuModel[]): GpuModel | null {
    const g = job.gpus;
    for (const m of models) {
      const pool = this.p.cl.pools[m];
      if (!pool.firstReservation || pool.totalFree < g) continue;
      if (g <= NODE_GPUS) {
        if (pool.resvFreeAtLeast[g]! > 0) return m;
      } else if (pool.wholeFree + pool.resvWhole >= Math.ceil(g / NODE_GPUS)) return m;
    }
    return null;
  }
}
