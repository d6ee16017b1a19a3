/**
 * The order in which one pass considers pending jobs.
 *  - fifo, greedy: submission time.
 *  - slurm: priority class, then submission time (no notion of tenants).
 *  - nuri: tenants interleaved, in tiers:
 *      0. jobs that have waited longer than the starvation threshold since they last entered
 *         the queue (submission or requeue), oldest submission first (a big job that waited
 *         that long gets the first reservation, and nothing ranked later may delay it);
 *      1. a tenant's first job, in its own order, that still fits within its guarantee (that
 *         capacity is the tenant's by right); only such jobs are charged to the guarantee and
 *         may reclaim (Columns.rankedWithin);
 *      2. fair share: the tenant with the lowest key goes next, key = (decayed usage +
 *         GPU-seconds it has committed: running jobs' remaining time and the jobs already
 *         ranked ahead of this one) / weight. Charging the ranked jobs makes tenants alternate
 *         within one pass instead of the least-used tenant taking every idle GPU.
 *    Within a tenant: priority class, then submission time; a job past the starvation
 *    threshold counts as at least PolicyConfig.starvingPriorityFloor (aging).
 *  Ties are broken by ids throughout.
 *
 * Sorting is the pass's only O(n log n) step, so it packs (group, priority rank, submission
 * time, index) into one float64 and uses the engine's native numeric sort; runs with equal
 * keys are then ordered by id. Results are identical to a comparator sort.
 */
import { cmp } from './cluster';
import { starvationMsOf, starvingPriorityFloorOf } from './config';
import { GpuModel, PendingJob, PolicyMode, RunningJob, Snapshot, SnapshotTenant } from './types';

export interface Usage {
  h100: number;
  h800: number;
}

/** GPUs each tenant's running jobs hold, by type (stopping ones too): what limits and guarantees count. */
export function usedByTenant(running: readonly RunningJob[]): Map<string, Usage> {
  const used = new Map<string, Usage>();
  for (const r of running) {
    let u = used.get(r.tenantId);
    if (!u) used.set(r.tenantId, (u = { h100: 0, h800: 0 }));
    u[r.gpuModel] += r.gpus;
  }
  return used;
}

/** Aging: a job that entered the queue at or before `starvedBy` ranks within its tenant with at least `floor`'s priority. */
export const agedPriority = (j: Pick<PendingJob, 'priority' | 'queuedAt' | 'submittedAt'>, floor: number, starvedBy: number): number =>
  j.priority < floor && (j.queuedAt ?? j.submittedAt) <= starvedBy ? floor : j.priority;

const ONLY_H100: readonly GpuModel[] = ['h100'];
const ONLY_H800: readonly GpuModel[] = ['h800'];
const MULTI_ANY: readonly GpuModel[] = ['h100', 'h800'];
const SINGLE_ANY: readonly GpuModel[] = ['h800', 'h100'];

/** Types a job may run on, in preference order (shared constant arrays: do not mutate). */
export function allowedModels(job: { gpus: number; gpuType: string }): readonly GpuModel[] {
  if (job.gpuType === 'h100') return ONLY_H100;
  if (job.gpuType === 'h800') return ONLY_H800;
  // Multi-node jobs prefer H100 (NVLink 900 GB/s); single-node ones H800, to keep H100 whole.
  return job.gpus > 8 ? MULTI_ANY : SINGLE_ANY;
}

const bitsFor = (n: number) => (n <= 1 ? 0 : Math.ceil(Math.log2(n)));

/** Type wish as a small code: 0 any, 1 h100, 2 h800. */
export const typeCode = (t: string) => (t === 'h100' ? 1 : t === 'h800' ? 2 : 0);
const TYPE_NAMES = ['any', 'h100', 'h800'] as const;
export const typeName = (c: number): (typeof TYPE_NAMES)[number] => TYPE_NAMES[c]!;

/** Allowed models by (type code, GPU count), without touching the job object. */
export function modelsOf(type: number, gpus: number): readonly GpuModel[] {
  return type === 1 ? ONLY_H100 : type === 2 ? ONLY_H800 : gpus > 8 ? MULTI_ANY : SINGLE_ANY;
}

/**
 * Pending jobs as columns, read once in input order. A pass visits jobs in rank order, which is
 * random with respect to where the job objects lie in memory; reading typed arrays instead of
 * chasing 100,000 objects keeps the pass in cache.
 */
export interface Columns {
  n: number;
  jobs: readonly PendingJob[];
  id: string[];
  /** Tenant index into `tenantIds`. */
  tenant: Int32Array;
  tenantIds: string[];
  gpus: Int32Array;
  type: Uint8Array;
  limit: Float64Array;
  sub: Float64Array;
  prio: Float64Array;
  /** The same fields as packed records (see REC and the R_ offsets). */
  rec: Float64Array;
  /** Set by rankPending: the records in rank order, with the job's index at R_INDEX. */
  ranked: Float64Array | null;
  /** Set by rankPending: job ids in rank order. */
  rankedIds: string[] | null;
  /**
   * Set by rankPending (nuri), in rank order: 1 where the job fitted in what was left of its
   * tenant's guarantee when it was ranked (running jobs plus the tenant's jobs ranked before it
   * that fitted). Only these may reclaim: they rank ahead of every borrower (tier 0 or 1), so
   * the GPUs they free are theirs in the next pass and not taken back by the victim's tenant.
   */
  rankedWithin: Uint8Array | null;
}

/** Ids in the given order. */
export function gatherIds(id: readonly string[], perm: Int32Array): string[] {
  const out: string[] = new Array(perm.length);
  for (let p = 0; p < perm.length; p++) out[p] = id[perm[p]!]!;
  return out;
}

/**
 * A packed job record: REC doubles a job, read through these offsets. The pass reads jobs in
 * rank order, i.e. at random positions: one cache line a job instead of one a column.
 */
export const REC = 8;
export const R_GPUS = 0;
/** Type wish as typeCode: 0 any, 1 h100, 2 h800. */
export const R_TYPE = 1;
/** Index into Columns.tenantIds. */
export const R_TENANT = 2;
export const R_LIMIT = 3;
export const R_SUBMITTED = 4;
/** Priority after aging (see buildColumns). */
export const R_PRIORITY = 5;
/** The job's index in the columns (input order): set by gather. */
export const R_INDEX = 6;
/** When the job last entered the queue (queuedAt, else submittedAt). */
export const R_QUEUED = 7;

/** Records in the given order, each with its index at R_INDEX. A tight loop of independent loads: the misses overlap. */
export function gather(rec: Float64Array, perm: Int32Array, name: string): Float64Array {
  const n = perm.length;
  const out = scratch(name, f64, n, REC);
  for (let p = 0; p < n; p++) {
    const a = perm[p]! * REC;
    const b = p * REC;
    out[b + R_GPUS] = rec[a + R_GPUS]!;
    out[b + R_TYPE] = rec[a + R_TYPE]!;
    out[b + R_TENANT] = rec[a + R_TENANT]!;
    out[b + R_LIMIT] = rec[a + R_LIMIT]!;
    out[b + R_SUBMITTED] = rec[a + R_SUBMITTED]!;
    out[b + R_PRIORITY] = rec[a + R_PRIORITY]!;
    out[b + R_INDEX] = perm[p]!;
    out[b + R_QUEUED] = rec[a + R_QUEUED]!;
  }
  return out;
}

/**
 * Per-pass scratch arrays, kept between passes and grown as needed: a 100,000-job pass used to
 * allocate (and zero) about 30 MB of typed arrays, which the collector then had to account for.
 * A pass is synchronous and nothing outside it keeps these arrays (the plan holds none of them),
 * so one set serves every pass. Contents are stale: callers write every element they read.
 * `perJob`: elements per pending job (what `reservePassMemory` sizes it by).
 */
type ScratchArray = Float64Array | Int32Array | Uint8Array;
const scratchPool = new Map<string, { a: ScratchArray; make: (n: number) => ScratchArray; perJob: number }>();
function scratch<T extends ScratchArray>(name: string, make: (n: number) => T, jobs: number, perJob = 1): T {
  const n = jobs * perJob;
  let e = scratchPool.get(name);
  if (e === undefined || e.a.length < n) {
    e = { a: make(Math.max(n, e === undefined ? 0 : Math.floor(e.a.length * 1.5))), make, perJob };
    scratchPool.set(name, e);
  }
  return e.a.subarray(0, n) as T;
}

/**
 * Grows the pass's scratch arrays (those a plan has made so far: a warm-up's) to hold `jobs`
 * pending jobs, and touches their memory: a new leader's first pass over 121,000 jobs otherwise
 * grew them from a warm-up's size to its own (~35 MB of fresh memory, first written in the pass)
 * and planned in 390-460 ms instead of 240-270. Done at a scheduler's start, before it leads,
 * and by a standby as its queue grows.
 */
export function reservePassMemory(jobs: number): void {
  for (const e of scratchPool.values()) {
    if (e.a.length >= jobs * e.perJob) continue;
    e.a = e.make(jobs * e.perJob);
    // (Zero already: the writes are to have the pages mapped now, not in the pass.)
    e.a.fill(0);
  }
}

/** How many pending jobs the scratch arrays hold without growing (0 before any plan). */
export function passMemoryJobs(): number {
  let jobs = Infinity;
  for (const e of scratchPool.values()) jobs = Math.min(jobs, Math.floor(e.a.length / e.perJob));
  return scratchPool.size ? jobs : 0;
}
const f64 = (n: number) => new Float64Array(n);
const i32 = (n: number) => new Int32Array(n);
const u8 = (n: number) => new Uint8Array(n);

export function buildColumns(snapshot: Snapshot): Columns {
  const jobs = snapshot.pending;
  const n = jobs.length;
  const id: string[] = new Array(n);
  const tname: string[] = new Array(n);
  const gpus = scratch('gpus', i32, n);
  const type = scratch('type', u8, n);
  const limit = scratch('limit', f64, n);
  const sub = scratch('sub', f64, n);
  const prio = scratch('prio', f64, n);
  const rec = scratch('rec', f64, n, REC);
  // Aging applies to nuri's ranking only: the baselines rank by the priority as given.
  const floor = (snapshot.config.mode ?? 'nuri') === 'nuri' ? starvingPriorityFloorOf(snapshot.config) : -Infinity;
  const starvedBy = snapshot.now - starvationMsOf(snapshot.config);
  for (let i = 0; i < n; i++) {
    const j = jobs[i]!;
    id[i] = j.id;
    tname[i] = j.tenantId;
    const b = i * REC;
    rec[b + R_GPUS] = gpus[i] = j.gpus;
    rec[b + R_TYPE] = type[i] = typeCode(j.gpuType);
    rec[b + R_LIMIT] = limit[i] = j.timeLimitSeconds;
    rec[b + R_SUBMITTED] = sub[i] = j.submittedAt;
    rec[b + R_PRIORITY] = prio[i] = agedPriority(j, floor, starvedBy);
    rec[b + R_QUEUED] = j.queuedAt ?? j.submittedAt;
  }
  // Tenants in id order: known ones from the snapshot plus any named only by a job.
  const tix = new Map<string, number>();
  for (const t of snapshot.tenants) tix.set(t.id, -1);
  let last = '';
  for (let i = 0; i < n; i++) {
    const t = tname[i]!;
    if (t !== last && !tix.has(t)) tix.set(t, -1);
    last = t;
  }
  const tenantIds = [...tix.keys()].sort(cmp);
  tenantIds.forEach((t, k) => tix.set(t, k));
  const tenant = scratch('tenant', i32, n);
  let lastK = -1;
  last = '\u0000none';
  for (let i = 0; i < n; i++) {
    const t = tname[i]!;
    if (t !== last) {
      lastK = tix.get(t)!;
      last = t;
    }
    tenant[i] = lastK;
    rec[i * REC + R_TENANT] = lastK;
  }
  return { n, jobs, id, tenant, tenantIds, gpus, type, limit, sub, prio, rec, ranked: null, rankedIds: null, rankedWithin: null };
}

/**
 * Order of jobs by (group asc, priority desc when byPriority, submittedAt asc, id asc).
 * Returns a permutation (indices into the columns).
 */
export function sortOrder(c: Columns, byGroup: boolean, byPriority: boolean): Int32Array {
  const n = c.n;
  const out = scratch('perm', i32, n);
  if (n === 0) return out;
  const { sub, prio, tenant, id } = c;
  let minSub = Infinity;
  let maxSub = -Infinity;
  let integral = true;
  let pmin = Infinity;
  let pmax = -Infinity;
  for (let i = 0; i < n; i++) {
    const s = sub[i]!;
    if (s < minSub) minSub = s;
    if (s > maxSub) maxSub = s;
    if (!Number.isInteger(s)) integral = false;
    const p = prio[i]!;
    if (p < pmin) pmin = p;
    if (p > pmax) pmax = p;
  }
  // Priority as a rank from the highest down (distinct values, so the key stays small).
  let prank: Map<number, number> | null = null;
  let pBits = 0;
  if (byPriority) {
    const ps = [...new Set(prio)].sort((a, b) => b - a);
    prank = new Map(ps.map((p, i) => [p, i]));
    pBits = bitsFor(ps.length);
  }
  const subBits = bitsFor(maxSub - minSub + 1);
  const gBits = byGroup ? bitsFor(c.tenantIds.length) : 0;
  const iBits = bitsFor(n);
  if (integral && Number.isFinite(minSub) && subBits + pBits + gBits + iBits <= 52) {
    const packed = scratch('packed', f64, n);
    const scale = 2 ** iBits;
    const pScale = 2 ** subBits;
    const gScale = 2 ** (subBits + pBits);
    const single = prank !== null && prank.size === 1;
    for (let i = 0; i < n; i++) {
      let k = sub[i]! - minSub;
      if (prank !== null && !single) k += prank.get(prio[i]!)! * pScale;
      if (byGroup) k += tenant[i]! * gScale;
      packed[i] = k * scale + i;
    }
    packed.sort();
    for (let i = 0; i < n; i++) out[i] = packed[i]! % scale;
    // Equal keys came out in index order: put each such run in id order.
    let a = 0;
    while (a < n) {
      const ka = Math.floor(packed[a]! / scale);
      let b = a + 1;
      while (b < n && Math.floor(packed[b]! / scale) === ka) b++;
      if (b - a > 1) {
        const run = Array.from(out.subarray(a, b)).sort((x, y) => cmp(id[x]!, id[y]!));
        out.set(run, a);
      }
      a = b;
    }
    return out;
  }
  // Fallback (fractional times or an extreme range): a comparator sort.
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort(
    (x, y) =>
      (byGroup ? tenant[x]! - tenant[y]! : 0) ||
      (byPriority ? prio[y]! - prio[x]! : 0) ||
      sub[x]! - sub[y]! ||
      cmp(id[x]!, id[y]!),
  );
  out.set(idx);
  return out;
}

/** Rank pending jobs: a permutation of the columns' indices in the order the pass considers them. */
export function rankPending(snapshot: Snapshot, mode: PolicyMode, used: Map<string, Usage>, c: Columns): Int32Array {
  const n = c.n;
  if (mode === 'fifo' || mode === 'greedy' || mode === 'slurm') {
    const o = sortOrder(c, false, mode === 'slurm');
    c.ranked = gather(c.rec, o, 'ranked');
    c.rankedIds = gatherIds(c.id, o);
    return o;
  }
  const perm = sortOrder(c, true, true);
  // Records in perm order: each tenant's queue below is read front to back.
  const pr = gather(c.rec, perm, 'pr');
  const ranked = scratch('ranked', f64, n, REC);
  c.ranked = ranked;
  const pids = gatherIds(c.id, perm);
  const rankedIds: string[] = new Array(n);
  c.rankedIds = rankedIds;
  const order = scratch('order', i32, n);
  // Positions ranked out of their tenant's order (a job that fits in the guarantee while the
  // head does not), so the head skips them.
  const done = scratch('done', u8, n);
  done.fill(0);
  const within = scratch('within', u8, n);
  c.rankedWithin = within;
  const r: Ranking = { pr, done, starving: snapshot.now - starvationMsOf(snapshot.config) };
  const qs = tenantQueues(snapshot, c, used, r);
  let live = qs.length;
  let o = 0;
  while (live > 0) {
    const q = nextQueue(qs, pr);
    const pos = q.next;
    done[pos] = 1;
    while (q.head < q.end && done[q.head] === 1) q.head++;
    const pb = pos * REC;
    const ob = o * REC;
    for (let f = 0; f < REC; f++) ranked[ob + f] = pr[pb + f]!;
    rankedIds[o] = pids[pos]!;
    const g = pr[pb + R_GPUS]!;
    // Only a job that fits in what is left of its tenant's guarantee is charged to it (and may
    // reclaim in the pass): a starving 64-GPU job of a tenant guaranteed 52 ranks first but
    // asks for borrowed capacity, and must not use up the guarantee of the tenant's smaller jobs.
    const inG = fits(pr, q, pos);
    within[o] = inG ? 1 : 0;
    order[o++] = perm[pos]!;
    if (inG) charge(q, g, pr[pb + R_TYPE]!);
    q.share += g * pr[pb + R_LIMIT]!;
    if (q.head < q.end) choose(r, q);
    else live--;
  }
  return order;
}

/** One nuri ranking in progress: records in (tenant, priority, submission) order and what is ranked. */
interface Ranking {
  pr: Float64Array;
  done: Uint8Array;
  /** Jobs that entered the queue at or before this time are starving. */
  starving: number;
}

/** A tenant's queue: one slice of the records in perm order. */
interface Queue {
  /** First position of the tenant's slice not yet ranked. */
  head: number;
  end: number;
  /** Guarantee pointer: no position before it (from head on) fits in what is left of the guarantee. */
  gp: number;
  /** The position this tenant would rank next, and in which tier. */
  next: number;
  tier: number;
  /** GPUs in use, plus those of the tenant's ranked jobs that fitted in its guarantee, per type. */
  v1: number;
  v8: number;
  g1: number;
  g8: number;
  share: number;
  weight: number;
}

/** Each tenant's queue (perm is grouped by tenant index), its fair-share key and next job chosen. */
function tenantQueues(snapshot: Snapshot, c: Columns, used: Map<string, Usage>, r: Ranking): Queue[] {
  const { tenantIds } = c;
  const pr = r.pr;
  const n = c.n;
  const now = snapshot.now;
  const tenants = new Map<string, SnapshotTenant>(snapshot.tenants.map((t) => [t.id, t]));
  const tix = new Map(tenantIds.map((t, k) => [t, k]));
  const committed = new Float64Array(tenantIds.length);
  for (const x of snapshot.running) {
    const k = tix.get(x.tenantId);
    if (k === undefined) continue;
    const left = Math.max(0, x.startedAt + x.timeLimitSeconds * 1000 - now) / 1000;
    committed[k]! += left * x.gpus;
  }
  const qs: Queue[] = [];
  let a = 0;
  while (a < n) {
    const k = pr[a * REC + R_TENANT]!;
    let b = a + 1;
    while (b < n && pr[b * REC + R_TENANT] === k) b++;
    const id = tenantIds[k]!;
    const t = tenants.get(id);
    const u = used.get(id) ?? { h100: 0, h800: 0 };
    const q: Queue = {
      head: a,
      end: b,
      gp: a,
      next: a,
      tier: 2,
      v1: u.h100,
      v8: u.h800,
      g1: t?.quotas.h100?.guaranteed ?? 0,
      g8: t?.quotas.h800?.guaranteed ?? 0,
      share: (t?.decayedUsage ?? 0) + committed[k]!,
      weight: Math.max(t?.weight ?? 1, 1e-9),
    };
    choose(r, q);
    qs.push(q);
    a = b;
  }
  return qs;
}

/** The queue whose next job ranks next: lowest tier; in tier 0 the oldest submission, else the lowest fair-share key. */
function nextQueue(qs: readonly Queue[], pr: Float64Array): Queue {
  let best: Queue | null = null;
  for (const q of qs) {
    if (q.head >= q.end) continue;
    if (
      !best ||
      q.tier < best.tier ||
      (q.tier === best.tier &&
        (q.tier === 0 ? pr[q.next * REC + R_SUBMITTED]! < pr[best.next * REC + R_SUBMITTED]! : q.share / q.weight < best.share / best.weight))
    )
      best = q;
  }
  return best!;
}

function fits(pr: Float64Array, q: Queue, pos: number): boolean {
  const g = pr[pos * REC + R_GPUS]!;
  const ty = pr[pos * REC + R_TYPE]!;
  return (ty !== 2 && q.v1 + g <= q.g1) || (ty !== 1 && q.v8 + g <= q.g8);
}

/**
 * Charge a job that fitted to the model with the most guaranteed headroom left (the one it would
 * reclaim on); on a tie the preferred type (H100 for multi-node `any`, H800 for single-node `any`).
 */
function charge(q: Queue, g: number, ty: number): void {
  let on1: boolean;
  if (ty === 1) on1 = true;
  else if (ty === 2) on1 = false;
  else if (g > 8) on1 = !(q.g8 - q.v8 > q.g1 - q.v1);
  else on1 = q.g1 - q.v1 > q.g8 - q.v8;
  if (on1) q.v1 += g;
  else q.v8 += g;
}

/**
 * The tenant's next job and its tier:
 *   0. its head has waited past the starvation threshold since it last entered the queue;
 *   1. otherwise its first job, in its own order, that fits in what is left of its guarantee.
 *      Not only the head: when the head is larger than the guarantee (a 64-GPU job of a tenant
 *      guaranteed 52), the tenant's smaller jobs still ask for capacity that is theirs by right,
 *      and the pass lets them reclaim it. Ranked after the borrowers, such a job reclaimed GPUs
 *      that the borrowers' next jobs took back in the following pass, and reclaimed again after
 *      the minimum runtime, every few minutes (seen in the simulator: one 1-GPU job preempted 11
 *      times for the same job);
 *   2. otherwise its head, by fair share.
 * Ranked jobs only add to v1/v8, so a job that does not fit now never fits later in the pass:
 * the pointer only moves forward.
 */
function choose(r: Ranking, q: Queue): void {
  const { pr, done } = r;
  const h = q.head;
  // Starving counts from when the job last entered the queue: a job just requeued after a
  // preemption is not starving, or it would jump ahead of the job it was preempted for.
  if (pr[h * REC + R_QUEUED]! <= r.starving) {
    q.next = h;
    q.tier = 0;
    return;
  }
  if (q.gp < h) q.gp = h;
  while (q.gp < q.end && (done[q.gp] === 1 || !fits(pr, q, q.gp))) q.gp++;
  if (q.gp < q.end) {
    q.next = q.gp;
    q.tier = 1;
    return;
  }
  q.next = h;
  q.tier = 2;
}
