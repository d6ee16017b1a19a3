/**
 * One scheduling pass: rank pending jobs, start what fits now (gang, topology-aware), reclaim
 * guaranteed capacity from borrowers, hold backfill reservations for the first blocked jobs,
 * and explain every job left pending with an estimated start. Pure: snapshot in, plan out.
 */
import { Cluster, FitHeap, LeafState, MODELS, NodeState, Pool, cmp, earliestFit, fitTime, heldUntil, minFree, splitOrder, wholeFit, wholeFreeDuring } from './cluster';
import { starvationMsOf } from './config';
import { messages } from './explain';
import { REC, Usage, buildColumns, modelsOf, rankPending, typeName } from './ranking';
import {
  GpuModel,
  PendingExplanation,
  PendingJob,
  PendingReasonCode,
  Placement,
  Plan,
  PlannedPreemption,
  PlannedReservation,
  PlannedStart,
  RunningJob,
  Snapshot,
  SnapshotTenant,
} from './types';

const NODE_GPUS = 8;
/** Type index: 0 h100, 1 h800. */
const mi = (m: GpuModel) => (m === 'h100' ? 0 : 1);

export function schedule(snapshot: Snapshot): Plan {
  return planOn(new Cluster(snapshot, graceOf(snapshot)), snapshot);
}

export const graceOf = (snapshot: Snapshot) => snapshot.config.preemptGraceSeconds * 1000;

/** One pass over a cluster already in the state the snapshot gives (fresh, or synced to it). */
export function planOn(cl: Cluster, snapshot: Snapshot): Plan {
  const cfg = snapshot.config;
  const mode = cfg.mode ?? 'nuri';
  const quotas = mode === 'nuri';
  const reclaimOn = quotas && cfg.preemption;
  const now = snapshot.now;
  const graceMs = cfg.preemptGraceSeconds * 1000;
  const minRunMs = cfg.minRuntimeBeforePreemptSeconds * 1000;
  const starvationMs = starvationMsOf(cfg);
  const tenants = new Map<string, SnapshotTenant>(snapshot.tenants.map((t) => [t.id, t]));

  const used = new Map<string, Usage>();
  for (const r of snapshot.running) {
    let u = used.get(r.tenantId);
    if (!u) used.set(r.tenantId, (u = { h100: 0, h800: 0 }));
    u[r.gpuModel] += r.gpus;
  }
  const cols = buildColumns(snapshot);
  const order = rankPending(snapshot, mode, used, cols);
  // Job records in rank order (the pass reads them front to back).
  const rec = cols.ranked!;
  const tenantIds = cols.tenantIds;
  // Per tenant index: GPUs in use or claimed (updated as the pass starts and reclaims), and the tenant.
  // Per (tenant index, type index: 0 h100, 1 h800): GPUs in use or claimed, limit, guarantee
  // (-1: no quota on that type). Typed arrays: the pass checks them for every job.
  const T = tenantIds.length;
  const use2 = new Float64Array(T * 2);
  const lim2 = new Float64Array(T * 2);
  const guar2 = new Float64Array(T * 2);
  const tenantAt: (SnapshotTenant | undefined)[] = tenantIds.map((id) => tenants.get(id));
  for (let t = 0; t < T; t++) {
    const u = used.get(tenantIds[t]);
    const q = tenantAt[t]?.quotas;
    for (let mi = 0; mi < 2; mi++) {
      const m = MODELS[mi];
      use2[t * 2 + mi] = u ? u[m] : 0;
      lim2[t * 2 + mi] = q?.[m]?.limit ?? 0;
      guar2[t * 2 + mi] = q?.[m] ? q[m]!.guaranteed : -1;
    }
  }
  const borrowed = reclaimOn ? cl.borrowed(snapshot, tenants, borrowedJobs) : new Set<string>();
  const protectedJobs = reclaimOn ? starvedProtected(snapshot, borrowed, guar2, T, starvationMs, (m) => cl.pools[m].capacity) : EMPTY;

  const starts: PlannedStart[] = [];
  const preemptions: PlannedPreemption[] = [];
  const pending: PendingExplanation[] = new Array(cols.n);
  let np = 0;
  const reservations: PlannedReservation[] = [];
  const victims = new Set<string>();
  let reservationsLeft = mode === 'greedy' ? 0 : Math.max(0, cfg.reservationDepth);
  let strictBlocked = false;
  const blockedOn: Record<GpuModel, number> = { h100: 0, h800: 0 };
  // Reclaim of g GPUs of a type that found nothing: larger asks in this pass will not either.
  // Per (tenant, type): a hold on limit headroom for the tenant's oldest starving job over its
  // limit (reservation start, job, GPUs of headroom left at that time for later jobs ending after
  // it), and this pass's starts and claims (end, GPUs) for the tenant's usage over time.
  interface LimitHold {
    /** The held job's reservation: start, end, GPUs. */
    t: number;
    e: number;
    g: number;
    jobId: string;
    /** GPUs under the limit at t left for later jobs that run past t. */
    room: number;
  }
  const holds: (LimitHold[] | null)[] = new Array(T * 2).fill(null);
  // Per (tenant, type) and job size g = 1..8: the earliest start of a hold with less than g room
  // (a job of g GPUs may start there only if it ends by then). Larger jobs scan the holds.
  const holdTight = new Float64Array(T * 2 * 9).fill(Infinity);
  const passHeld: number[][] = Array.from({ length: T * 2 }, () => []);
  let runHeld: number[][] | null = null;
  // Per type: reclaims that found nothing, as (GPUs, time limit), valid while gainVersion is
  // unchanged: a reclaim for as many GPUs or more, as long or longer, fails too (the candidates
  // do not depend on the tenant: a tenant that may reclaim is within its guarantee, so none of
  // its own jobs is borrowed). A few entries per type.
  const fails: { g: number; dur: number; v: number }[][] = [[], []];
  // Reserved-node scans that failed for (g, duration) stay failed until the pool changes.
  const poolVersion: Record<GpuModel, number> = { h100: 0, h800: 0 };
  // Bumped only by changes that can make GPUs available sooner (preemption moves held GPUs'
  // end earlier). Starts and reservations only ever take availability away (free GPUs fall,
  // held ends stay, reserved windows grow), so a start that failed still fails after them.
  const gainVersion: Record<GpuModel, number> = { h100: 0, h800: 0 };
  const reservedMiss: { v: number; dur: number }[] = [];

  // Upper bounds on what reclaim could free per node; GPUs only get taken within a pass.
  const boundCache: (number | undefined)[] = [];
  const feasibleCache = new Map<number, { existing: readonly GpuModel[]; feasible: readonly GpuModel[] }>();
  // A start that failed for (type, g, duration) fails for any longer job of that size until
  // the pool changes: most of a long queue is decided in O(1).
  const startMiss: { v: number; dur: number }[] = [];
  // Per type: nodes with GPUs free or freeing within the grace period (built on first reclaim);
  // a preemption adds the victims' nodes.
  const soon: Record<GpuModel, NodeState[] | null> = { h100: null, h800: null };
  const inSoon = new Set<NodeState>();
  // Per node: the earliest job end E for which it could not host n GPUs from S without
  // preemption (row of 9 per node), valid while the node's version is zeroVer.
  const zeroFail = new Float64Array(cl.byIdx.length * 9);
  const zeroVer = new Int32Array(cl.byIdx.length).fill(-1);
  // Per (type, g): unreserved nodes by earliest time g GPUs are free (built on the first
  // single-node reservation of that size; lazily refreshed as nodes change).
  const fitHeaps: (FitHeap | undefined)[] = [];
  const fitPushed: (Int32Array | undefined)[] = [];
  cl.onEarly = (st) => {
    // GPUs free earlier: the node's heap entries may now be too late; add a fresh one.
    for (let g = 1; g <= NODE_GPUS; g++) {
      const h = fitHeaps[g * 2 + (st.model === 'h100' ? 0 : 1)];
      if (h && !st.reserved) {
        h.push(Math.max(now, fitTime(st, g)), st.idx, st.ver);
        fitPushed[g * 2 + (st.model === 'h100' ? 0 : 1)]![st.idx] = st.ver;
      }
    }
    const l = soon[st.model];
    if (l && !inSoon.has(st)) {
      // Keep node order: insert in place (preemptions are few).
      let i = l.length;
      while (i > 0 && l[i - 1].idx > st.idx) i--;
      l.splice(i, 0, st);
      inSoon.add(st);
    }
  };
  // Per type: whole nodes without reservations by the time they are wholly free (built on the
  // first multi-node reservation; entries of nodes changed since are recomputed).
  // Candidate marks for multi-node reservations (a stamp per query).
  const candMark = new Float64Array(cl.byIdx.length);
  let candStamp = 0;
  const wholeCache: Record<GpuModel, { st: NodeState; t: number; ver: number }[] | null> = { h100: null, h800: null };
  // The job being considered, filled from the columns (one object for the whole pass).
  const job: PendingJob = { id: '', tenantId: '', gpus: 0, gpuType: 'any', priority: 0, submittedAt: 0, timeLimitSeconds: 0 };
  for (let oi = 0; oi < order.length; oi++) {
    const b = oi * REC;
    const g = rec[b] | 0;
    const ty = rec[b + 1] | 0;
    const ti = rec[b + 2] | 0;
    job.id = cols.rankedIds![oi];
    job.tenantId = tenantIds[ti];
    job.gpus = g;
    job.gpuType = typeName(ty);
    job.priority = rec[b + 5];
    job.submittedAt = rec[b + 4];
    job.queuedAt = rec[b + 7];
    job.timeLimitSeconds = rec[b + 3];
    const multi = g > NODE_GPUS;
    const k = Math.ceil(g / NODE_GPUS);
    const fkey = g * 3 + ty;
    let fe = feasibleCache.get(fkey);
    if (!fe) {
      const existing = modelsOf(ty, g).filter((m) => cl.pools[m].exists);
      const feasible = existing.filter((m) => (multi ? cl.pools[m].fullNodes >= k : cl.pools[m].maxNodeSize >= g));
      fe = { existing, feasible };
      feasibleCache.set(fkey, fe);
    }
    const { existing, feasible } = fe;
    if (existing.length === 0) {
      explain(job, 'no_node_of_type', messages.noNodeOfType(job), null);
      continue;
    }
    if (feasible.length === 0) {
      explain(job, 'nodes_unavailable', messages.nodesUnavailable(job), null);
      continue;
    }
    if (strictBlocked) {
      const m = fluidPick(feasible);
      explain(job, 'behind_higher_ranked', messages.strictOrder(job, blockedOn.h100 + blockedOn.h800), fluid(m), m);
      queueWork(job, m);
      continue;
    }
    let allowed = feasible;
    const tenant = tenantAt[ti];
    const t2 = ti * 2;
    if (quotas) {
      const endBy = now + graceMs + job.timeLimitSeconds * 1000;
      let all = true;
      let held = false;
      for (let i = 0; i < feasible.length; i++) {
        const x = t2 + (feasible[i] === 'h100' ? 0 : 1);
        if (use2[x] + g > lim2[x]) all = false;
        else if (!limitRoom(x, g, endBy)) {
          all = false;
          held = true;
        }
      }
      if (!all) {
        allowed = feasible.filter((m) => use2[t2 + mi(m)] + g <= lim2[t2 + mi(m)] && limitRoom(t2 + mi(m), g, endBy));
        if (allowed.length === 0) {
          if (held) {
            // Within the limit, but the tenant's headroom is held for its own older, starving job.
            let h: LimitHold | null = null;
            let hm: GpuModel = feasible[0];
            for (const m of feasible)
              for (const c of holds[t2 + mi(m)] ?? []) if (endBy > c.t && c.room < g && (!h || c.t < h.t)) (h = c), (hm = m);
            explain(job, 'reservation_for_larger_job', messages.limitHeld(job, tenant?.name ?? job.tenantId, h!.jobId, h!.t), Math.max(h!.t, fluid(hm)), hm);
            continue;
          }
          let est: number | null = null;
          let model: GpuModel | undefined;
          // A job past the starvation threshold gets a reservation from the time its tenant's
          // running jobs (by their time limits) leave room under the limit, and the tenant's
          // later jobs may not take that room (limit backfill: within a tenant, age decides).
          if (starvingJob(job) && reservationsLeft > 0) {
            const r = reserveOverLimit(job, feasible, t2);
            if (r) {
              reservationsLeft--;
              reservations.push(r);
              est = r.startAt;
              model = r.gpuModel;
            }
          }
          const detail = feasible.map((m) => `${use2[t2 + mi(m)]} of ${lim2[t2 + mi(m)]} ${m.toUpperCase()} GPUs in use or claimed`).join(', ');
          explain(job, 'over_quota_limit', messages.overLimit(job, tenant?.name ?? job.tenantId, detail), est, model);
          continue;
        }
      }
    }

    // A job that may run on either type starts, if it can, on one where it is within its
    // tenant's guarantee: elsewhere it would run on borrowed capacity and be the first victim of
    // the reclaim it was ranked ahead of (a single-node `any` job otherwise prefers H800).
    let start: PlannedStart | null;
    const inG = quotas && allowed.length > 1 ? allowed.filter((m) => use2[t2 + mi(m)] + g <= guar2[t2 + mi(m)]) : allowed;
    if (inG.length > 0 && inG.length < allowed.length) start = tryStart(job, inG) ?? tryStart(job, allowed.filter((m) => !inG.includes(m)));
    else start = tryStart(job, allowed);
    if (start) {
      starts.push(start);
      use2[t2 + mi(start.gpuModel)] += g;
      hold(t2 + mi(start.gpuModel), now + job.timeLimitSeconds * 1000, g);
      continue;
    }

    // Only a job ranked within its tenant's guarantee reclaims (see Columns.rankedWithin).
    if (reclaimOn && tenant && cols.rankedWithin![oi] === 1) {
      let done = false;
      for (const m of allowed) {
        const gq = guar2[t2 + mi(m)];
        if (gq < 0 || use2[t2 + mi(m)] + g > gq || reclaimFails(mi(m), g, job.timeLimitSeconds)) continue;
        const r = reclaim(job, m);
        if (r === null) {
          const f = fails[mi(m)];
          if (f.length > 0 && f[0].v !== gainVersion[m]) f.length = 0;
          if (f.length >= 4) f.shift();
          f.push({ g, dur: job.timeLimitSeconds, v: gainVersion[m] });
          continue;
        }
        hold(t2 + mi(m), now + graceMs + job.timeLimitSeconds * 1000, g);
        use2[t2 + mi(m)] += g; // claimed: counts against the tenant's guarantee and limit for its later jobs
        cl.pools[m].workAhead += g * job.timeLimitSeconds;
        explain(job, 'waiting_for_reclaim', messages.reclaim(job, m, r, cfg.preemptGraceSeconds), now + graceMs, m);
        done = true;
        break;
      }
      if (done) continue;
    }

    // Blocked: maybe a reservation, then a reason and an estimate.
    if (mode === 'fifo') strictBlocked = true;
    let ahead = 0;
    for (const m of allowed) ahead += blockedOn[m];
    const heldFor = heldByReservation(job, allowed);
    let est: number | null = null;
    let model: GpuModel = allowed[0];
    if (reservationsLeft > 0) {
      const r = reserve(job, allowed);
      if (r) {
        // A starving job's reservation also holds its tenant's room under the limit at its start.
        if (quotas && starvingJob(job)) setHold(t2 + mi(r.gpuModel), job, r.startAt);
        reservationsLeft--;
        est = r.startAt;
        model = r.gpuModel;
        reservations.push(r);
      }
    }
    if (est === null) {
      model = fluidPick(allowed);
      est = fluid(model);
    }
    queueWork(job, model);
    blockedOn[model]++;
    if (heldFor) {
      const f = cl.pools[heldFor].firstReservation!;
      explain(job, 'reservation_for_larger_job', messages.heldForLarger(job, f.jobId, f.s, (f.s - now) / 1000), est, model);
    } else if (ahead > 0) explain(job, 'behind_higher_ranked', messages.behind(job, ahead), est, model);
    else explain(job, 'waiting_for_resources', messages.nextInLine(job, model, est), est, model);
  }
  pending.length = np;

  return { starts, preemptions, pending, reservations };

  function reclaimFails(x: number, g: number, dur: number): boolean {
    for (const f of fails[x]) if (f.v === gainVersion[MODELS[x]] && g >= f.g && dur >= f.dur) return true;
    return false;
  }

  function starvingJob(j: PendingJob): boolean {
    return (j.queuedAt ?? j.submittedAt) <= now - starvationMs;
  }

  /** May a job of g GPUs ending by endBy start under a hold on (tenant, type) x? */
  function limitRoom(x: number, g: number, endBy: number): boolean {
    if (g <= NODE_GPUS) return endBy <= holdTight[x * 9 + g];
    const hs = holds[x];
    if (hs !== null) for (const h of hs) if (endBy > h.t && h.room < g) return false;
    return true;
  }

  /** A start or claim on (tenant, type) x until `end`: counts against a hold's room if it outlasts it. */
  function hold(x: number, end: number, g: number): void {
    passHeld[x].push(end, g);
    const hs = holds[x];
    if (hs !== null) {
      for (const h of hs) if (end > h.t) h.room -= g;
      holdMins(x);
    }
  }

  /** (end, GPUs) of what tenant-type x holds: running jobs and this pass's starts and claims. */
  function holdings(x: number): number[] {
    if (runHeld === null) {
      // Running jobs' (end, GPUs) per (tenant, type), read once a pass on first need.
      runHeld = Array.from({ length: T * 2 }, () => []);
      const tix = new Map(tenantIds.map((id, i) => [id, i]));
      for (const r of snapshot.running) {
        const ti = tix.get(r.tenantId);
        if (ti !== undefined) runHeld[ti * 2 + mi(r.gpuModel)].push(heldUntil(r, now, graceMs), r.gpus);
      }
    }
    return passHeld[x].length === 0 ? runHeld[x] : runHeld[x].concat(passHeld[x]);
  }

  /** Reserve for a starving job over its tenant's limit, from when the tenant's holdings leave room; set the hold. */
  function reserveOverLimit(job: PendingJob, models: readonly GpuModel[], t2: number): PlannedReservation | null {
    let best: PlannedReservation | null = null;
    let bestFrom = Infinity;
    for (const m of models) {
      const x = t2 + mi(m);
      if (job.gpus > lim2[x]) continue;
      // What the tenant holds, and the jobs reserved under earlier holds (counted as held until
      // they end: they will be running then).
      let h = holdings(x);
      let u = use2[x];
      const hs = holds[x];
      if (hs !== null) {
        h = h.slice();
        for (const o of hs) {
          h.push(o.e, o.g);
          u += o.g;
        }
      }
      const idx = Array.from({ length: h.length / 2 }, (_, i) => i).sort((a, b) => h[2 * a] - h[2 * b]);
      let from = now;
      for (const i of idx) {
        if (u + job.gpus <= lim2[x]) break;
        u -= h[2 * i + 1];
        from = Math.max(from, h[2 * i]);
      }
      if (u + job.gpus > lim2[x]) continue;
      if (from < bestFrom) {
        bestFrom = from;
        best = { jobId: job.id, gpuModel: m, startAt: from, nodeIds: [] };
      }
    }
    if (!best) return null;
    const r = reserve(job, [best.gpuModel], bestFrom);
    if (!r) return null;
    setHold(t2 + mi(r.gpuModel), job, r.startAt);
    return r;
  }

  /**
   * Hold (tenant, type) x's room under the limit at `at` for a job reserved from `at` to `end`:
   * later jobs may not run past `at` in that room. Earlier holds lose room if this job runs at
   * their start. No hold if the room is already gone (the reservation still stands).
   */
  function setHold(x: number, job: PendingJob, at: number, end = at + job.timeLimitSeconds * 1000): void {
    let still = 0;
    const h = holdings(x);
    for (let i = 0; i < h.length; i += 2) if (h[i] > at) still += h[i + 1];
    let hs = holds[x];
    if (hs !== null) for (const o of hs) if (o.t <= at && at < o.e) still += o.g;
    const room = lim2[x] - job.gpus - still;
    if (room < 0) return;
    if (hs === null) hs = holds[x] = [];
    for (const o of hs) if (at <= o.t && o.t < end) o.room -= job.gpus;
    hs.push({ t: at, e: end, g: job.gpus, jobId: job.id, room });
    holdMins(x);
  }

  function holdMins(x: number): void {
    for (let g = 1; g <= NODE_GPUS; g++) {
      let t = Infinity;
      for (const h of holds[x]!) if (h.room < g && h.t < t) t = h.t;
      holdTight[x * 9 + g] = t;
    }
  }

  function explain(job: PendingJob, reason: PendingReasonCode, message: string, est: number | null, model?: GpuModel): void {
    pending[np] = { jobId: job.id, reason, message, estimatedStartAt: est, queuePosition: np + 1, gpuModel: model };
    np++;
  }

  // ---- start now ----------------------------------------------------------------------

  function tryStart(job: PendingJob, models: readonly GpuModel[]): PlannedStart | null {
    const g = job.gpus;
    const until = now + job.timeLimitSeconds * 1000;
    if (g <= NODE_GPUS) {
      // Best fit across the allowed types (fewest GPUs left over keeps whole nodes free);
      // on a tie the earlier type in preference order wins.
      let best: NodeState | null = null;
      for (const m of models) {
        const pool = cl.pools[m];
        if (pool.totalFree < g || missed(m, g, until - now)) continue;
        let cand = cl.bestFitUnreserved(pool, g);
        if (pool.reservedNodes.length > 0 && !reservedMissed(m, g, until - now)) {
          let hit = false;
          for (const st of pool.reservedNodes) {
            if (st.free.length < g || minFree(st, now, until) < g) continue;
            hit = true;
            if (!cand || st.free.length < cand.free.length || (st.free.length === cand.free.length && st.idx < cand.idx)) cand = st;
          }
          if (!hit) reservedMiss[g * 2 + (m === 'h100' ? 0 : 1)] = { v: gainVersion[m], dur: until - now };
        }
        if (cand && (!best || cand.free.length < best.free.length)) best = cand;
        if (!cand) startMiss[g * 2 + (m === 'h100' ? 0 : 1)] = { v: gainVersion[m], dur: until - now };
      }
      if (!best) return null;
      poolVersion[best.model]++;
      const idx = cl.take(best, g, until, job.id, now);
      return { jobId: job.id, gpuModel: best.model, placement: [{ nodeId: best.node.id, gpuIndices: idx }] };
    }
    const k = Math.ceil(g / NODE_GPUS);
    for (const m of models) {
      const pool = cl.pools[m];
      if (pool.totalFree < k * NODE_GPUS || missed(m, g, until - now)) continue;
      const nodes = pickWholeNow(pool, k, until);
      if (!nodes) {
        startMiss[g * 2 + (m === 'h100' ? 0 : 1)] = { v: gainVersion[m], dur: until - now };
        continue;
      }
      poolVersion[m]++;
      const placement: Placement[] = nodes.map((st) => ({
        nodeId: st.node.id,
        gpuIndices: cl.take(st, st.free.length, until, job.id, now),
      }));
      return { jobId: job.id, gpuModel: m, placement };
    }
    return null;
  }

  function missed(m: GpuModel, g: number, dur: number): boolean {
    const miss = startMiss[g * 2 + (m === 'h100' ? 0 : 1)];
    return !!miss && miss.v === gainVersion[m] && dur >= miss.dur;
  }

  function reservedMissed(m: GpuModel, g: number, dur: number): boolean {
    const miss = reservedMiss[g * 2 + (m === 'h100' ? 0 : 1)];
    return !!miss && miss.v === gainVersion[m] && dur >= miss.dur;
  }

  /** k whole nodes free now, not delaying reservations, within as few leaf switches as possible. */
  function pickWholeNow(pool: Pool, k: number, until: number): NodeState[] | null {
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
    const counts = pool.leaves
      .map((leaf) => ({ leaf, n: leaf.whole + (extra.get(leaf)?.size ?? 0) }))
      .filter((x) => x.n > 0);
    const chosen = chooseLeaves(counts, k);
    const out: NodeState[] = [];
    for (const { leaf, take } of chosen) {
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

  function soonNodes(pool: Pool): NodeState[] {
    let l = soon[pool.model];
    if (!l) {
      const S = now + graceMs;
      l = [];
      for (const st of pool.nodes)
        if (fitTime(st, 1) <= S) {
          l.push(st);
          inSoon.add(st);
        }
      soon[pool.model] = l;
    }
    return l;
  }

  function reclaimBound(st: NodeState, S: number): number {
    let b = boundCache[st.idx];
    if (b === undefined) {
      b = st.free.length;
      for (const x of st.jobs) {
        const r = x.job;
        const end = heldUntil(r, now, graceMs);
        if (end <= S || r.stopping || (borrowed.has(r.id) && now - r.startedAt >= minRunMs && !protectedJobs.has(r.id))) b += x.g;
      }
      boundCache[st.idx] = b;
    }
    return b;
  }

  // ---- reclaim ------------------------------------------------------------------------

  /** Plan preemptions so that `job` starts after the grace period; returns the victim count or null. */
  function reclaim(job: PendingJob, m: GpuModel): number | null {
    const pool = cl.pools[m];
    const g = job.gpus;
    const multi = g > NODE_GPUS;
    const S = now + graceMs;
    const E = S + job.timeLimitSeconds * 1000;
    const candidate = (r: RunningJob) =>
      borrowed.has(r.id) &&
      // Anti-starvation: a job that waited past the threshold before it started runs to the end
      // (as far as the capacity nobody is guaranteed allows; see starvedProtected).
      !protectedJobs.has(r.id) &&
      !victims.has(r.id) &&
      !r.stopping &&
      r.tenantId !== job.tenantId &&
      now - r.startedAt >= minRunMs;

    interface Option {
      st: NodeState;
      victims: RunningJob[];
      cost: [number, number, number, number];
    }
    let options: Option[] = [];
    // First, nodes that can host the job at S without preempting anyone (the cheapest option,
    // lowest node index first): only nodes with GPUs free or freeing by S can be such.
    {
      // The soon list is in node order, so the first k hits are the cheapest options.
      const want = multi ? Math.ceil(g / NODE_GPUS) : 1;
      const zero: NodeState[] = [];
      for (const st of soonNodes(pool)) {
        const need = multi ? st.size : g;
        if (multi ? !st.full : st.size < g) continue;
        const row = st.idx * 9;
        // Failed before for no more GPUs and no later end, and the node has not changed since.
        if (zeroVer[st.idx] === st.ver && zeroFail[row + need] <= E) continue;
        if (fitTime(st, need) > S || minFree(st, S, E) < need) {
          if (zeroVer[st.idx] !== st.ver) {
            zeroVer[st.idx] = st.ver;
            zeroFail.fill(Infinity, row, row + 9);
          }
          for (let n = need; n <= NODE_GPUS; n++) if (E < zeroFail[row + n]) zeroFail[row + n] = E;
          continue;
        }
        zero.push(st);
        if (zero.length === want) break;
      }
      if (zero.length === want) options = zero.map((st) => ({ st, victims: [], cost: [0, 0, -Infinity, st.idx] }));
    }
    if (options.length === 0) {
    for (const st of pool.nodes) {
      const need = multi ? st.size : g;
      if (multi ? !st.full : st.size < g) continue;
      // Cheap bound first (computed once a pass): free now + GPUs that could be free by S.
      if (reclaimBound(st, S) < need) continue;
      const base = minFree(st, S, E);
      if (base >= need) {
        options.push({ st, victims: [], cost: [0, 0, -Infinity, st.idx] });
        if (!multi) break; // cannot do better than no victims at all
        continue;
      }
      const vs = st.jobs.filter((x) => candidate(x.job) && heldUntil(x.job, now, graceMs) > S);
      if (vs.length === 0) continue;
      // Lowest priority first, then most recently started (least work lost), then id.
      vs.sort((a, b) => a.job.priority - b.job.priority || b.job.startedAt - a.job.startedAt || cmp(a.job.id, b.job.id));
      const want = need - base;
      let acc = 0;
      const chosen: typeof vs = [];
      for (const v of vs) {
        if (acc >= want) break;
        chosen.push(v);
        acc += v.g;
      }
      if (acc < want) continue;
      // Fewer victims first: one job that covers the need alone and is no more protected
      // than the greedy set replaces it.
      if (chosen.length > 1) {
        const maxP = chosen.reduce((s, v) => Math.max(s, v.job.priority), -Infinity);
        const one = vs.find((v) => v.g >= want && v.job.priority <= maxP);
        if (one) {
          chosen.length = 0;
          chosen.push(one);
          acc = one.g;
        }
      }
      // Minimal set: drop any victim (most protected first) whose GPUs turn out not to be needed.
      for (let i = chosen.length - 1; i >= 0; i--) {
        if (acc - chosen[i].g >= want) {
          acc -= chosen[i].g;
          chosen.splice(i, 1);
        }
      }
      // The node must hold the job for its whole window once the victims are gone. Victims add
      // GPUs only until they would have ended anyway: a reservation on the node that starts
      // later (a larger job's backfill reservation) still takes its GPUs then. Without this a
      // long job reclaimed GPUs it could not keep, was refused them in the next pass
      // (reservation_for_larger_job), and reclaimed again once the victim had restarted
      // and run its minimum runtime: the same victim preempted every few minutes.
      if (minFree(st, S, E, chosen.map((v) => ({ g: v.g, until: heldUntil(v.job, now, graceMs) }))) < need) continue;
      // Cost counts whole victim jobs: stopping a 64-GPU job to free 8 GPUs on one node wastes
      // far more work than stopping a few small ones.
      const gpus = chosen.reduce((s, v) => s + v.job.gpus, 0);
      const maxPrio = chosen.reduce((s, v) => Math.max(s, v.job.priority), -Infinity);
      options.push({ st, victims: chosen.map((v) => v.job), cost: [gpus, chosen.length, maxPrio, st.idx] });
    }
    }
    const k = multi ? Math.ceil(g / NODE_GPUS) : 1;
    if (options.length < k) return null;
    options.sort((a, b) => a.cost[0] - b.cost[0] || a.cost[1] - b.cost[1] || a.cost[2] - b.cost[2] || a.cost[3] - b.cost[3]);
    const picked = options.slice(0, k);
    const vset = new Map<string, RunningJob>();
    for (const o of picked) for (const v of o.victims) vset.set(v.id, v);
    const tenantName = tenants.get(job.tenantId)?.name ?? job.tenantId;
    for (const v of [...vset.values()].sort((a, b) => cmp(a.id, b.id))) {
      victims.add(v.id);
      preemptions.push({
        jobId: v.id,
        forJobId: job.id,
        reason: `Preempted: it ran on borrowed ${m.toUpperCase()} capacity that tenant ${tenantName} needs within its guarantee (job ${job.id}); it goes back to the queue.`,
      });
      cl.endEarly(v.id, v.placement.map((p) => p.nodeId), S);
    }
    poolVersion[m]++;
    if (vset.size > 0) gainVersion[m]++;
    for (const o of picked) cl.reserve(o.st, { s: S, e: E, g: multi ? o.st.size : g, jobId: job.id });
    return vset.size;
  }

  // ---- reservations and estimates -------------------------------------------------------

  function reserve(job: PendingJob, models: readonly GpuModel[], from = now): PlannedReservation | null {
    const g = job.gpus;
    const durMs = job.timeLimitSeconds * 1000;
    let best: { t: number; m: GpuModel; nodes: NodeState[] } | null = null;
    for (const m of models) {
      const pool = cl.pools[m];
      let r: { t: number; nodes: NodeState[] } | null = null;
      if (g <= NODE_GPUS) {
        // Earliest (time, node order) over unreserved nodes from the heap, and over reserved
        // nodes one by one (few): the same node a scan of every node would pick.
        let bt = Infinity;
        let bn: NodeState | null = null;
        const top = earliestUnreserved(pool, g);
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
        if (bn && bt < Infinity) r = { t: bt, nodes: [bn] };
      } else r = earliestWhole(pool, Math.ceil(g / NODE_GPUS), durMs, from);
      // Strictly earlier wins, so ties keep the preferred type (H100 for multi-node).
      if (r && (!best || r.t < best.t)) best = { t: r.t, m, nodes: r.nodes };
    }
    if (!best) return null;
    poolVersion[best.m]++;
    for (const st of best.nodes)
      cl.reserve(st, { s: best.t, e: best.t + durMs, g: g <= NODE_GPUS ? g : st.size, jobId: job.id });
    return { jobId: job.id, gpuModel: best.m, startAt: best.t, nodeIds: best.nodes.map((s) => s.node.id) };
  }

  /** The unreserved node of a pool where g GPUs are free earliest (ties: node order), or null. */
  function earliestUnreserved(pool: Pool, g: number): NodeState | null {
    const key = g * 2 + (pool.model === 'h100' ? 0 : 1);
    let h = fitHeaps[key];
    let pushed = fitPushed[key]!;
    if (!h) {
      h = new FitHeap();
      pushed = new Int32Array(cl.byIdx.length).fill(-1);
      for (const st of pool.nodes) {
        if (st.reserved || st.size < g) continue;
        h.push(Math.max(now, fitTime(st, g)), st.idx, st.ver);
        pushed[st.idx] = st.ver;
      }
      fitHeaps[key] = h;
      fitPushed[key] = pushed;
    }
    while (h.size > 0) {
      const st = cl.byIdx[h.idx[0]];
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
      return h.t[0] < Infinity ? st : null;
    }
    return null;
  }

  /** Earliest time k whole nodes stay free for durMs; nodes without reservations only ever free up. */
  function earliestWhole(pool: Pool, k: number, durMs: number, from: number): { t: number; nodes: NodeState[] } | null {
    let base = wholeCache[pool.model];
    if (!base) {
      base = [];
      for (const st of pool.nodes) if (st.full && st.resv.length === 0) base.push({ st, t: Math.max(now, fitTime(st, st.size)), ver: st.ver });
      base.sort((a, b) => a.t - b.t || a.st.idx - b.st.idx);
      wholeCache[pool.model] = base;
    }
    // Plain (unreserved) nodes in (time, index) order: cached entries still valid, merged with
    // the few that changed since the cache was built.
    const valid: { st: NodeState; t: number }[] = [];
    const changed: { st: NodeState; t: number }[] = [];
    for (const e of base) {
      if (e.st.resv.length > 0) continue;
      if (e.st.ver === e.ver) valid.push(e);
      else changed.push({ st: e.st, t: Math.max(now, fitTime(e.st, e.st.size)) });
    }
    let plain = valid;
    if (changed.length > 0) {
      changed.sort((a, b) => a.t - b.t || a.st.idx - b.st.idx);
      plain = [];
      let i = 0;
      let j = 0;
      while (i < valid.length || j < changed.length) {
        if (j >= changed.length || (i < valid.length && (valid[i].t - changed[j].t || valid[i].st.idx - changed[j].st.idx) < 0)) plain.push(valid[i++]);
        else plain.push(changed[j++]);
      }
    }
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
      const T = Math.max(from, Math.min(p < plain.length ? plain[p].t : Infinity, j < rt.length ? rt[j] : Infinity));
      while (p < plain.length && plain[p].t <= T) p++;
      while (j < rt.length && rt[j] <= T) j++;
      // A reserved node fits at T only if its earliest fit is at or before T (j of them).
      if (p + j < k) continue;
      const fit = resv.filter((st) => wholeFreeDuring(st, T, T + durMs));
      if (p + fit.length < k) continue;
      // k of these candidates within as few leaves as possible: count per leaf (leaves are
      // contiguous in node order, so pool order is the order of their first candidates).
      const stamp = ++candStamp;
      for (let i = 0; i < p; i++) candMark[plain[i].st.idx] = stamp;
      for (const st of fit) candMark[st.idx] = stamp;
      const counts: { leaf: LeafState; n: number }[] = [];
      for (const leaf of pool.leaves) {
        let n = 0;
        for (const st of leaf.nodes) if (candMark[st.idx] === stamp) n++;
        if (n > 0) counts.push({ leaf, n });
      }
      const nodes: NodeState[] = [];
      for (const { leaf, take } of chooseLeaves(counts, k)) {
        let left = take;
        for (const st of leaf.nodes) {
          if (left === 0) break;
          if (candMark[st.idx] === stamp) {
            nodes.push(st);
            left--;
          }
        }
      }
      return { t: T, nodes };
    }
    return null;
  }

  /** Could the job start now but for a reservation? Returns the type whose reservation holds it. O(1) from pool counts. */
  function heldByReservation(job: PendingJob, models: readonly GpuModel[]): GpuModel | null {
    const g = job.gpus;
    for (const m of models) {
      const pool = cl.pools[m];
      if (!pool.firstReservation || pool.totalFree < g) continue;
      if (g <= NODE_GPUS) {
        if (pool.resvFreeAtLeast[g] > 0) return m;
      } else if (pool.wholeFree + pool.resvWhole >= Math.ceil(g / NODE_GPUS)) return m;
    }
    return null;
  }

  /**
   * Estimate beyond the reservation depth, capped at O(1) per job: the work held and queued
   * ahead on that type (GPU-seconds from time limits) drained at full capacity.
   */
  function fluid(m: GpuModel): number {
    const pool = cl.pools[m];
    return now + Math.ceil((pool.workAhead / Math.max(1, pool.capacity)) * 1000);
  }
  function fluidPick(models: readonly GpuModel[]): GpuModel {
    let best = models[0];
    for (const m of models) {
      const a = cl.pools[m];
      const b = cl.pools[best];
      if (a.workAhead / Math.max(1, a.capacity) < b.workAhead / Math.max(1, b.capacity)) best = m;
    }
    return best;
  }
  function queueWork(job: PendingJob, m: GpuModel): void {
    cl.pools[m].workAhead += job.gpus * job.timeLimitSeconds;
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
    for (let t = 0; t < tenantCount; t++) if (guar2[t * 2 + x] > 0) c -= guar2[t * 2 + x];
    return c;
  });
  starved.sort((a, b) => a.startedAt - b.startedAt || cmp(a.id, b.id));
  const out = new Set<string>();
  for (const r of starved) {
    const x = mi(r.gpuModel);
    if (r.gpus <= room[x]) {
      room[x] -= r.gpus;
      out.add(r.id);
    }
  }
  return out;
}

/**
 * Running jobs on borrowed capacity, the only ones reclaim may preempt. Per tenant and type,
 * jobs fill the guarantee in splitOrder (multi-node jobs first, then the oldest); a job is
 * borrowed once the running total passes the guarantee.
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
    const r0 = list[0];
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

export { MODELS };
