/**
 * The reclaim step of a pass: a job ranked within its tenant's guarantee that cannot start now
 * preempts jobs running on borrowed capacity, so that it starts after the grace period.
 *
 * Who may be preempted: jobs on borrowed capacity (borrowedJobs: per tenant and type, the jobs past
 * the guarantee in splitOrder), not protected for having started after starving
 * (starvedProtected), of another tenant, not already stopping, past the minimum runtime.
 * Which of them: on each node, in victimOrder, the fewest that free enough (chooseVictims);
 * across nodes, the cheapest in optionOrder.
 */
import { NODE_GPUS, NodeState, Pool, cmp, fitTime, heldUntil, minFree, modelIndex, MODELS } from './cluster';
import { messages } from './explain';
import type { Pass } from './pass';
import { GpuModel, PendingJob, RunningJob, Snapshot, SnapshotTenant } from './types';

/**
 * The order in which reclaim considers a node's candidate victims; the first are preempted first.
 *  1. Lower priority first: the user marked that work as the one to give way.
 *  2. Most recently started first: the least work lost (a preempted job restarts or resumes from
 *     its last checkpoint).
 *  3. Job id: a deterministic order, so a pass is reproducible.
 */
export function victimOrder(a: RunningJob, b: RunningJob): number {
  return a.priority - b.priority || b.startedAt - a.startedAt || cmp(a.id, b.id);
}

/** A running job's share of one node: the GPUs it holds there. */
export interface VictimCandidate {
  job: RunningJob;
  g: number;
}

/**
 * The victims to stop on one node to free `want` GPUs, from candidates in victimOrder; null when
 * all of them together free too few.
 *  - Take candidates in order until they free enough.
 *  - Fewer victims first: one job that covers the need alone and is no more protected (priority)
 *    than the set taken replaces it.
 *  - Minimal set: drop any victim (the last taken, the most protected, first) whose GPUs turn out
 *    not to be needed.
 */
export function chooseVictims<V extends VictimCandidate>(ordered: readonly V[], want: number): V[] | null {
  let acc = 0;
  const chosen: V[] = [];
  for (const v of ordered) {
    if (acc >= want) break;
    chosen.push(v);
    acc += v.g;
  }
  if (acc < want) return null;
  if (chosen.length > 1) {
    const maxP = chosen.reduce((s, v) => Math.max(s, v.job.priority), -Infinity);
    const one = ordered.find((v) => v.g >= want && v.job.priority <= maxP);
    if (one) {
      chosen.length = 0;
      chosen.push(one);
      acc = one.g;
    }
  }
  for (let i = chosen.length - 1; i >= 0; i--) {
    if (acc - chosen[i]!.g >= want) {
      acc -= chosen[i]!.g;
      chosen.splice(i, 1);
    }
  }
  return chosen;
}

/** A node where the job could start after the grace period, and what that costs. */
export interface ReclaimOption {
  st: NodeState;
  victims: RunningJob[];
  /** GPUs of the victim jobs, whole (all their nodes). */
  gpus: number;
  count: number;
  /** The highest victim priority (-Infinity: no victim). */
  maxPriority: number;
}

/**
 * The order of the nodes reclaim may use; the job takes the first (k first for k whole nodes).
 *  1. Fewest GPUs of whole victim jobs: stopping a 64-GPU job to free 8 GPUs on one node wastes
 *     far more work than stopping a few small ones.
 *  2. Fewest victims.
 *  3. Lowest highest victim priority.
 *  4. Node order (leaf switch, rack, id): keeps a gang's nodes together and the pass deterministic.
 */
export function optionOrder(a: ReclaimOption, b: ReclaimOption): number {
  return a.gpus - b.gpus || a.count - b.count || a.maxPriority - b.maxPriority || a.st.idx - b.st.idx;
}

const zeroOption = (st: NodeState): ReclaimOption => ({ st, victims: [], gpus: 0, count: 0, maxPriority: -Infinity });

export class Reclaimer {
  /**
   * Per type: reclaims that found nothing, as (GPUs, time limit), valid while gainVersion is
   * unchanged: a reclaim for as many GPUs or more, as long or longer, fails too (the candidates
   * do not depend on the tenant: a tenant that may reclaim is within its guarantee, so none of
   * its own jobs is borrowed). A few entries per type.
   */
  private readonly fails: { g: number; dur: number; v: number }[][] = [[], []];
  /** Upper bounds on what reclaim could free per node; GPUs only get taken within a pass. */
  private readonly boundCache: (number | undefined)[] = [];
  /**
   * Per type: nodes with GPUs free or freeing within the grace period (built on first reclaim);
   * a preemption adds the victims' nodes.
   */
  private readonly soon: Record<GpuModel, NodeState[] | null> = { h100: null, h800: null };
  private readonly inSoon = new Set<NodeState>();
  /**
   * Per node: the earliest job end E for which it could not host n GPUs from S without
   * preemption (row of 9 per node), valid while the node's version is zeroVer.
   */
  private readonly zeroFail: Float64Array;
  private readonly zeroVer: Int32Array;

  constructor(private readonly p: Pass) {
    this.zeroFail = new Float64Array(p.cl.byIdx.length * 9);
    this.zeroVer = new Int32Array(p.cl.byIdx.length).fill(-1);
  }

  /**
   * Reclaim for a job that could not start. Only a job ranked within its tenant's guarantee
   * reclaims (see Columns.rankedWithin), on a type where it fits in what is left of the
   * guarantee. Returns true when it did: the job is explained, its GPUs claimed.
   */
  tryReclaim(job: PendingJob, allowed: readonly GpuModel[], ti: number, oi: number): boolean {
    const p = this.p;
    if (!p.reclaimOn || !p.tenantAt[ti] || p.cols.rankedWithin![oi] !== 1) return false;
    const g = job.gpus;
    for (const m of allowed) {
      const x = p.x(ti, m);
      const gq = p.guar2[x]!;
      if (gq < 0 || p.use2[x]! + g > gq || this.knownToFail(modelIndex(m), g, job.timeLimitSeconds)) continue;
      const r = this.reclaim(job, m);
      if (r === null) {
        const f = this.fails[modelIndex(m)]!;
        if (f.length > 0 && f[0]!.v !== p.gainVersion[m]) f.length = 0;
        if (f.length >= 4) f.shift();
        f.push({ g, dur: job.timeLimitSeconds, v: p.gainVersion[m] });
        continue;
      }
      p.holds.hold(x, p.now + p.graceMs + job.timeLimitSeconds * 1000, g);
      p.use2[x]! += g; // claimed: counts against the tenant's guarantee and limit for its later jobs
      p.cl.pools[m].workAhead += g * job.timeLimitSeconds;
      p.explain(job, 'waiting_for_reclaim', messages.reclaim(job, m, r, p.cfg.preemptGraceSeconds), p.now + p.graceMs, m);
      return true;
    }
    return false;
  }

  /** A node's held GPUs free earlier (a preemption): it joins the type's soon list, in node order. */
  onEarly(st: NodeState): void {
    const l = this.soon[st.model];
    if (l && !this.inSoon.has(st)) {
      // Keep node order: insert in place (preemptions are few).
      let i = l.length;
      while (i > 0 && l[i - 1]!.idx > st.idx) i--;
      l.splice(i, 0, st);
      this.inSoon.add(st);
    }
  }

  private knownToFail(x: number, g: number, dur: number): boolean {
    for (const f of this.fails[x]!) if (f.v === this.p.gainVersion[MODELS[x]!] && g >= f.g && dur >= f.dur) return true;
    return false;
  }

  /** Plan preemptions so that `job` starts after the grace period; returns the victim count or null. */
  private reclaim(job: PendingJob, m: GpuModel): number | null {
    const p = this.p;
    const pool = p.cl.pools[m];
    const g = job.gpus;
    const S = p.now + p.graceMs;
    const E = S + job.timeLimitSeconds * 1000;
    const k = g > NODE_GPUS ? Math.ceil(g / NODE_GPUS) : 1;
    let options = this.withoutVictims(pool, g, k, S, E);
    if (options.length === 0) options = this.withVictims(pool, job, S, E);
    if (options.length < k) return null;
    options.sort(optionOrder);
    return this.preempt(job, m, options.slice(0, k), S, E);
  }

  /**
   * The first k nodes (node order) that can host the job at S without preempting anyone, or none
   * if there are fewer: only nodes with GPUs free or freeing by S can be such.
   */
  private withoutVictims(pool: Pool, g: number, k: number, S: number, E: number): ReclaimOption[] {
    const multi = g > NODE_GPUS;
    const { zeroFail, zeroVer } = this;
    const zero: NodeState[] = [];
    for (const st of this.soonNodes(pool)) {
      const need = multi ? st.size : g;
      if (multi ? !st.full : st.size < g) continue;
      const row = st.idx * 9;
      // Failed before for no more GPUs and no later end, and the node has not changed since.
      if (zeroVer[st.idx] === st.ver && zeroFail[row + need]! <= E) continue;
      if (fitTime(st, need) > S || minFree(st, S, E) < need) {
        if (zeroVer[st.idx] !== st.ver) {
          zeroVer[st.idx] = st.ver;
          zeroFail.fill(Infinity, row, row + 9);
        }
        for (let n = need; n <= NODE_GPUS; n++) if (E < zeroFail[row + n]!) zeroFail[row + n] = E;
        continue;
      }
      zero.push(st);
      if (zero.length === k) break;
    }
    return zero.length === k ? zero.map(zeroOption) : [];
  }

  /** Every node where the job could start at S, with the victims that takes. */
  private withVictims(pool: Pool, job: PendingJob, S: number, E: number): ReclaimOption[] {
    const g = job.gpus;
    const multi = g > NODE_GPUS;
    const options: ReclaimOption[] = [];
    for (const st of pool.nodes) {
      const need = multi ? st.size : g;
      if (multi ? !st.full : st.size < g) continue;
      // Cheap bound first (computed once a pass): free now + GPUs that could be free by S.
      if (this.bound(st, S) < need) continue;
      const base = minFree(st, S, E);
      if (base >= need) {
        options.push(zeroOption(st));
        if (!multi) break; // cannot do better than no victims at all
        continue;
      }
      const o = this.victimsOn(st, job, need - base, need, S, E);
      if (o) options.push(o);
    }
    return options;
  }

  /** The victims that free `want` GPUs on a node for the job's whole window [S, E), or null. */
  private victimsOn(st: NodeState, job: PendingJob, want: number, need: number, S: number, E: number): ReclaimOption | null {
    const p = this.p;
    const vs = st.jobs.filter((x) => this.candidate(x.job, job) && heldUntil(x.job, p.now, p.graceMs) > S);
    if (vs.length === 0) return null;
    vs.sort((a, b) => victimOrder(a.job, b.job));
    const chosen = chooseVictims(vs, want);
    if (chosen === null) return null;
    // The node must hold the job for its whole window once the victims are gone. Victims add
    // GPUs only until they would have ended anyway: a reservation on the node that starts
    // later (a larger job's backfill reservation) still takes its GPUs then. Without this a
    // long job reclaimed GPUs it could not keep, was refused them in the next pass
    // (reservation_for_larger_job), and reclaimed again once the victim had restarted
    // and run its minimum runtime: the same victim preempted every few minutes.
    if (minFree(st, S, E, chosen.map((v) => ({ g: v.g, until: heldUntil(v.job, p.now, p.graceMs) }))) < need) return null;
    const gpus = chosen.reduce((s, v) => s + v.job.gpus, 0);
    const maxPriority = chosen.reduce((s, v) => Math.max(s, v.job.priority), -Infinity);
    return { st, victims: chosen.map((v) => v.job), gpus, count: chosen.length, maxPriority };
  }

  /** May reclaim for `job` preempt running job r? */
  private candidate(r: RunningJob, job: PendingJob): boolean {
    const p = this.p;
    return (
      p.borrowed.has(r.id) &&
      // Anti-starvation: a job that waited past the threshold before it started runs to the end
      // (as far as the capacity nobody is guaranteed allows; see starvedProtected).
      !p.protectedJobs.has(r.id) &&
      !p.victims.has(r.id) &&
      !r.stopping &&
      r.tenantId !== job.tenantId &&
      p.now - r.startedAt >= p.minRunMs
    );
  }

  /** Preempt the picked nodes' victims (in id order) and reserve the nodes for the job from S. */
  private preempt(job: PendingJob, m: GpuModel, picked: readonly ReclaimOption[], S: number, E: number): number {
    const p = this.p;
    const vset = new Map<string, RunningJob>();
    for (const o of picked) for (const v of o.victims) vset.set(v.id, v);
    const tenantName = p.tenants.get(job.tenantId)?.name ?? job.tenantId;
    for (const v of [...vset.values()].sort((a, b) => cmp(a.id, b.id))) {
      p.victims.add(v.id);
      p.preemptions.push({
        jobId: v.id,
        forJobId: job.id,
        reason: messages.preempted(m, tenantName, job.id),
      });
      p.cl.endEarly(
        v.id,
        v.placement.map((x) => x.nodeId),
        S,
      );
    }
    if (vset.size > 0) p.gainVersion[m]++;
    const multi = job.gpus > NODE_GPUS;
    for (const o of picked) p.cl.reserve(o.st, { s: S, e: E, g: multi ? o.st.size : job.gpus, jobId: job.id });
    return vset.size;
  }

  private soonNodes(pool: Pool): NodeState[] {
    let l = this.soon[pool.model];
    if (!l) {
      const S = this.p.now + this.p.graceMs;
      l = [];
      for (const st of pool.nodes)
        if (fitTime(st, 1) <= S) {
          l.push(st);
          this.inSoon.add(st);
        }
      this.soon[pool.model] = l;
    }
    return l;
  }

  /** GPUs free on the node now plus those that could be free by S (ending, stopping or preemptible). */
  private bound(st: NodeState, S: number): number {
    const p = this.p;
    let b = this.boundCache[st.idx];
    if (b === undefined) {
      b = st.free.length;
      for (const x of st.jobs) {
        const r = x.job;
        const end = heldUntil(r, p.now, p.graceMs);
        if (end <= S || r.stopping || (p.borrowed.has(r.id) && p.now - r.startedAt >= p.minRunMs && !p.protectedJobs.has(r.id))) b += x.g;
      }
      this.boundCache[st.idx] = b;
    }
    return b;
  }
}

/**
 * The order in which a tenant's running jobs on one type fill its guarantee (the rest are
 * borrowed, and only borrowed jobs can be preempted for another tenant): multi-node jobs first,
 * then by start time, then id. Multi-node first because preempting a gang job is the costliest
 * preemption there is (all its nodes, the most work, and it must gather whole nodes again): with
 * the oldest jobs first a 64-GPU job that started after the tenant's small jobs was always
 * borrowed and, as the most recently started, the first victim of every reclaim (the simulator
 * showed one preempted five times in a day, 17 minutes to 2 hours after each start, to free 8
 * GPUs each time). Now the tenant's single-node jobs are the borrowed ones and a reclaim takes
 * them, the cheaper victims. Still no preemption cycles: a tenant reclaims only while all it
 * runs plus the job fits in its guarantee, so none of its jobs is borrowed and the tenant it
 * took the GPUs from cannot take them back, whatever the order.
 */
export function splitOrder(a: RunningJob, b: RunningJob): number {
  return +(b.gpus > 8) - +(a.gpus > 8) || a.startedAt - b.startedAt || cmp(a.id, b.id);
}

/**
 * Running jobs on borrowed capacity, the only ones reclaim may preempt. Per tenant and type,
 * jobs fill the guarantee in splitOrder; a job is borrowed once the running total passes the
 * guarantee. (Cluster.borrowed keeps the same split between passes.)
 */
export function borrowedJobs(snapshot: Snapshot, tenants: Map<string, SnapshotTenant>): Set<string> {
  const groups = new Map<string, RunningJob[]>();
  for (const r of snapshot.running) {
    const key = `${r.tenantId}\u0000${r.gpuModel}`;
    let l = groups.get(key);
    if (!l) groups.set(key, (l = []));
    l.push(r);
  }
  const out = new Set<string>();
  for (const list of groups.values()) {
    const r0 = list[0]!;
    const guaranteed = tenants.get(r0.tenantId)?.quotas[r0.gpuModel]?.guaranteed ?? 0;
    list.sort(splitOrder);
    let cum = 0;
    for (const r of list) {
      cum += r.gpus;
      if (cum > guaranteed) out.add(r.id);
    }
  }
  return out;
}

const EMPTY: ReadonlySet<string> = new Set();

/**
 * Borrowed jobs that reclaim leaves alone because they started after starving (waiting past the
 * threshold since they last entered the queue): anti-starvation, so a large job that finally
 * started is not sent back. They are protected only within the capacity of each type that no
 * tenant is guaranteed (capacity minus the sum of guarantees), earliest start first: a
 * guarantee is "always available" (the brief), so protection may never stand in its way.
 * With guarantees summing to the whole capacity nothing is protected and reclaim may take any
 * borrowed job. Stateless, so the plan depends on the snapshot only; the earliest-started jobs
 * keep the room, so a protected job loses it only when that room shrinks (a node drained, a
 * guarantee raised) or an earlier-started job that did not fit before fits after another ends.
 */
export function starvedProtected(
  snapshot: Snapshot,
  borrowed: ReadonlySet<string>,
  guar2: Float64Array,
  tenantCount: number,
  starvationMs: number,
  capacity: (m: GpuModel) => number,
): ReadonlySet<string> {
  const starved = snapshot.running.filter((r) => borrowed.has(r.id) && r.startedAt - (r.queuedAt ?? r.submittedAt) >= starvationMs);
  if (starved.length === 0) return EMPTY;
  const room = MODELS.map((m, x) => {
    let c = capacity(m);
    for (let t = 0; t < tenantCount; t++) if (guar2[t * 2 + x]! > 0) c -= guar2[t * 2 + x]!;
    return c;
  });
  starved.sort((a, b) => a.startedAt - b.startedAt || cmp(a.id, b.id));
  const out = new Set<string>();
  for (const r of starved) {
    const x = modelIndex(r.gpuModel);
    if (r.gpus <= room[x]!) {
      room[x]! -= r.gpus;
      out.add(r.id);
    }
  }
  return out;
}
