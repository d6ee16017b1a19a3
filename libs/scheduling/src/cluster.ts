/**
 * The cluster as one pass sees it: free GPUs per node now, when held GPUs free up (from
 * time limits), and the reservations made so far. Nodes sit in per-type pools, bucketed by
 * free-GPU count (best fit in O(log n)) and grouped by leaf switch (gang placement), so a
 * pass costs about O(jobs log nodes) rather than O(jobs x nodes).
 */
import { GPU_MODELS } from '@nuri/contracts/gpu';
import { GpuModel, Placement, RunningJob, Snapshot, SnapshotNode, SnapshotTenant } from './types';

export const MODELS: readonly GpuModel[] = GPU_MODELS;
/** Type index, as in MODELS and per-(tenant, type) arrays: 0 h100, 1 h800. */
export const modelIndex = (m: GpuModel) => (m === 'h100' ? 0 : 1);
/** GPUs on a whole node: a job of more is a multi-node job on whole nodes. */
export const NODE_GPUS = 8;

export interface HeldGpus {
  /** When these GPUs free up (ms), from the holder's time limit or its grace period. */
  t: number;
  g: number;
  jobId: string;
}

export interface NodeReservation {
  s: number;
  e: number;
  g: number;
  jobId: string;
}

export interface NodeState {
  /** Position in the deterministic node order (leaf switch, rack, id). */
  idx: number;
  node: SnapshotNode;
  model: GpuModel;
  leaf: LeafState;
  /** Healthy GPUs on the node. */
  size: number;
  /** All GPUs healthy: may be given whole to a multi-node job. */
  full: boolean;
  /** Healthy GPU indices, ascending. */
  healthy: readonly number[];
  /** Free healthy GPU indices, ascending. */
  free: number[];
  held: HeldGpus[];
  heldSorted: boolean;
  resv: NodeReservation[];
  /** Has a reservation: kept out of the buckets, checked one by one against it. */
  reserved: boolean;
  /** Running jobs with GPUs here (for reclaim), and how many healthy GPUs each holds here. */
  jobs: { job: RunningJob; g: number }[];
  /** Changed on every change to free, held or reservations (invalidates per-node caches); unique over all nodes and passes. */
  ver: number;
  /** fit[g]: earliest time g GPUs are free (ignoring reservations), valid while fitVer === ver. */
  fit: number[] | null;
  fitVer: number;
  /** The node as the running jobs leave it, before a pass changes anything (free, held). */
  bfree: number[];
  bheld: HeldGpus[];
  /** Changed since it was last reset to the base (by a pass, or by running jobs coming and going). */
  dirty: boolean;
}

export interface LeafState {
  key: string;
  name: string;
  /** Nodes with all GPUs healthy, in node order. */
  nodes: NodeState[];
  /** Of those, wholly free and unreserved. */
  whole: number;
}

export class MinHeap {
  private a: number[] = [];
  get length(): number {
    return this.a.length;
  }
  push(v: number): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= v) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = v;
  }
  peek(): number | undefined {
    return this.a[0];
  }
  pop(): number | undefined {
    const a = this.a;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      const n = a.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && a[r]! < a[l]! ? r : l;
        if (a[c]! >= last) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

export interface Pool {
  model: GpuModel;
  /** Some node of this type exists at all (even if not schedulable). */
  exists: boolean;
  /** Schedulable nodes of this type, in node order. */
  nodes: NodeState[];
  /** buckets[c]: unreserved nodes with exactly c free GPUs (lazy: stale entries skipped). */
  buckets: MinHeap[];
  reservedNodes: NodeState[];
  /** resvFreeAtLeast[c]: reserved nodes with at least c free GPUs now (c = 1..8). */
  resvFreeAtLeast: Int32Array;
  /** Reserved nodes that are wholly free now. */
  resvWhole: number;
  leaves: LeafState[];
  capacity: number;
  maxNodeSize: number;
  fullNodes: number;
  totalFree: number;
  wholeFree: number;
  /** GPU-seconds of work ahead (held time + queued time), for the fluid start estimate. */
  workAhead: number;
  /** Earliest reservation start on this type, for explanations. */
  firstReservation: { jobId: string; s: number } | null;
}

/** Versions of node states: one counter for all nodes and passes, so a reset node never reuses a version. */
let verSeq = 0;
const nextVer = () => ++verSeq;

/** A running job as applied to the base: the GPUs it holds per node. */
interface RunRec {
  job: RunningJob;
  stamp: number;
  /** When its GPUs free (heldUntil at the last sync). */
  t: number;
  parts: { st: NodeState; idx: number[]; h: HeldGpus; je: { job: RunningJob; g: number } }[];
  /** Its (tenant, type) group for the borrowed split. */
  group: BorrowGroup;
}

/** A tenant's running jobs on one type, oldest first once sorted; those past the guarantee are borrowed. */
interface BorrowGroup {
  key: string;
  tenantId: string;
  model: GpuModel;
  list: RunRec[];
  dirty: boolean;
  guaranteed: number;
  borrowed: string[];
}

/**
 * The cluster for one pass. Built from a snapshot (`new Cluster`), or carried from the previous
 * pass and brought up to date with `sync(snapshot)`: running jobs are diffed by id and content,
 * only the nodes they or the previous pass touched are reset, so a pass after one event does not
 * rebuild thousands of nodes. Either way the state a pass starts from is the same.
 */
export class Cluster {
  readonly pools: Record<GpuModel, Pool>;
  readonly byIdx: NodeState[] = [];
  readonly byId = new Map<string, NodeState>();
  /** Called when a node's held GPUs free earlier (preemption), for callers' node lists. */
  onEarly: ((st: NodeState) => void) | null = null;
  private readonly runs = new Map<string, RunRec>();
  private dirtyList: NodeState[] = [];
  private stampSeq = 0;
  /** Two running jobs claimed one GPU, or one id appeared twice: only a rebuild gives the from-scratch result. */
  private conflicted = false;
  private graceMs = 0;
  private readonly groups = new Map<string, BorrowGroup>();
  private readonly borrowedIds = new Set<string>();

  constructor(snapshot: Snapshot, graceMs: number) {
    const mk = (model: GpuModel): Pool => ({
      model,
      exists: false,
      nodes: [],
      buckets: [],
      reservedNodes: [],
      resvFreeAtLeast: new Int32Array(9),
      resvWhole: 0,
      leaves: [],
      capacity: 0,
      maxNodeSize: 0,
      fullNodes: 0,
      totalFree: 0,
      wholeFree: 0,
      workAhead: 0,
      firstReservation: null,
    });
    this.pools = { h100: mk('h100'), h800: mk('h800') };
    // Node order groups leaf switches, so best fit fills one leaf's fragments before another's
    // and whole leaves stay free for multi-node jobs.
    const leaves = new Map<string, LeafState>();
    for (const { n, healthy } of nodeOrder(snapshot.nodes)) {
      const pool = this.pools[n.gpuType];
      if (!pool) continue;
      pool.exists = true;
      if (!n.schedulable) continue;
      if (healthy.length === 0) continue;
      const key = `${n.gpuType}\u0000${n.leafSwitch}`;
      let leaf = leaves.get(key);
      if (!leaf) {
        leaf = { key, name: n.leafSwitch, nodes: [], whole: 0 };
        leaves.set(key, leaf);
        pool.leaves.push(leaf);
      }
      const st: NodeState = {
        idx: this.byIdx.length,
        node: n,
        model: n.gpuType,
        leaf,
        size: healthy.length,
        full: healthy.length === n.gpus.length,
        healthy,
        free: [],
        held: [],
        heldSorted: true,
        resv: [],
        reserved: false,
        jobs: [],
        ver: nextVer(),
        fit: null,
        fitVer: -1,
        bfree: healthy.slice(),
        bheld: [],
        dirty: true,
      };
      this.byIdx.push(st);
      this.byId.set(n.id, st);
      this.dirtyList.push(st);
      pool.nodes.push(st);
      pool.capacity += st.size;
      pool.maxNodeSize = Math.max(pool.maxNodeSize, st.size);
      if (st.full) {
        pool.fullNodes++;
        leaf.nodes.push(st);
      }
    }
    for (const pool of [this.pools.h100, this.pools.h800]) for (let c = 0; c <= pool.maxNodeSize; c++) pool.buckets.push(new MinHeap());
    this.sync(snapshot, graceMs, false);
  }

  /**
   * Bring the cluster to the state a pass over `snapshot` starts from (same nodes as when it was
   * built: the caller checks). Returns false when only a rebuild can give that state exactly.
   */
  sync(snapshot: Snapshot, graceMs: number, incremental = true): boolean {
    if (incremental && this.conflicted) return false;
    const now = snapshot.now;
    this.graceMs = graceMs;
    const stamp = ++this.stampSeq;
    const running = snapshot.running;
    const recs: (RunRec | null)[] = new Array(running.length);
    let adds = 0;
    for (let i = 0; i < running.length; i++) {
      const r = running[i]!;
      const rec = this.runs.get(r.id);
      if (rec !== undefined && rec.stamp !== stamp && sameRun(rec.job, r)) {
        rec.stamp = stamp;
        if (rec.job !== r) {
          rec.job = r;
          for (const p of rec.parts) p.je.job = r;
        }
        const t = heldUntil(r, now, graceMs);
        if (t !== rec.t) {
          rec.t = t;
          for (const p of rec.parts) {
            const k = p.st.bheld.indexOf(p.h);
            p.h = { t, g: p.h.g, jobId: r.id };
            p.st.bheld[k] = p.h;
            this.markDirty(p.st);
          }
        }
        recs[i] = rec;
      } else {
        if (rec !== undefined && rec.stamp === stamp) {
          // The same id twice: from scratch both hold GPUs; do that, and rebuild from now on.
          if (incremental) return false;
          this.conflicted = true;
        }
        recs[i] = null;
        adds++;
      }
    }
    // Jobs gone (or changed): give their GPUs back first, so a new job on them finds them free.
    if (this.runs.size + adds > running.length || adds > 0) {
      for (const rec of this.runs.values()) {
        if (rec.stamp === stamp) continue;
        const gr = rec.group;
        gr.list.splice(gr.list.indexOf(rec), 1);
        gr.dirty = true;
        for (const p of rec.parts) {
          const st = p.st;
          for (const i of p.idx) insertSorted(st.bfree, i);
          st.bheld.splice(st.bheld.indexOf(p.h), 1);
          st.jobs.splice(st.jobs.indexOf(p.je), 1);
          this.markDirty(st);
        }
        this.runs.delete(rec.job.id);
      }
    }
    if (adds > 0)
      for (let i = 0; i < running.length; i++) {
        if (recs[i] !== null) continue;
        const r = running[i]!;
        const t = heldUntil(r, now, graceMs);
        const key = `${r.tenantId}\u0000${r.gpuModel}`;
        let gr = this.groups.get(key);
        if (!gr) this.groups.set(key, (gr = { key, tenantId: r.tenantId, model: r.gpuModel, list: [], dirty: true, guaranteed: NaN, borrowed: [] }));
        const rec: RunRec = { job: r, stamp, t, parts: [], group: gr };
        gr.list.push(rec);
        gr.dirty = true;
        for (const p of r.placement) {
          const st = this.byId.get(p.nodeId);
          if (!st) continue;
          const idx: number[] = [];
          for (const i of p.gpuIndices) {
            const k = st.bfree.indexOf(i);
            if (k >= 0) {
              st.bfree.splice(k, 1);
              idx.push(i);
            } else if (st.healthy.includes(i)) {
              if (incremental) return false;
              this.conflicted = true;
            }
          }
          if (idx.length > 0) {
            const h = { t, g: idx.length, jobId: r.id };
            const je = { job: r, g: idx.length };
            st.bheld.push(h);
            st.jobs.push(je);
            rec.parts.push({ st, idx, h, je });
            this.markDirty(st);
          }
        }
        if (this.runs.has(r.id)) this.conflicted = true; // a second job with this id
        else this.runs.set(r.id, rec);
        recs[i] = rec;
      }
    // Reset what changed to the base; pool totals from scratch (cheap), work ahead in job order.
    const h100 = this.pools.h100;
    const h800 = this.pools.h800;
    h100.workAhead = 0;
    h800.workAhead = 0;
    for (let i = 0; i < running.length; i++) {
      const rec = recs[i]!;
      for (const p of rec.parts) this.pools[p.st.model].workAhead += ((rec.t - now) / 1000) * p.h.g;
    }
    for (const pool of [h100, h800]) {
      let pushes = 0;
      for (const b of pool.buckets) pushes += b.length;
      if (pushes > 4 * pool.nodes.length + 64) {
        for (let c = 0; c < pool.buckets.length; c++) pool.buckets[c] = new MinHeap();
        for (const st of pool.nodes) if (!st.dirty && st.free.length > 0) pool.buckets[st.free.length]!.push(st.idx);
      }
    }
    for (const st of this.dirtyList) {
      st.free = st.bfree.slice();
      st.held = st.bheld.slice();
      st.heldSorted = false;
      st.resv = [];
      st.reserved = false;
      st.ver = nextVer();
      st.dirty = false;
      if (st.free.length > 0) this.pools[st.model].buckets[st.free.length]!.push(st.idx);
    }
    this.dirtyList = [];
    for (const pool of [h100, h800]) {
      pool.reservedNodes = [];
      pool.resvFreeAtLeast.fill(0);
      pool.resvWhole = 0;
      pool.firstReservation = null;
      let total = 0;
      let whole = 0;
      for (const leaf of pool.leaves) leaf.whole = 0;
      for (const st of pool.nodes) {
        total += st.free.length;
        if (st.full && st.free.length === st.size) {
          st.leaf.whole++;
          whole++;
        }
      }
      pool.totalFree = total;
      pool.wholeFree = whole;
    }
    return true;
  }

  /**
   * Running jobs on borrowed capacity (see borrowedJobs in reclaim.ts), kept per (tenant, type)
   * group and recomputed only for groups whose jobs or guarantee changed. `split` gives the
   * order in which jobs fill the guarantee and the from-scratch answer (passed in, so that the
   * rule is written once, in reclaim.ts).
   */
  borrowed(
    snapshot: Snapshot,
    tenants: Map<string, SnapshotTenant>,
    split: { fromScratch: (s: Snapshot, t: Map<string, SnapshotTenant>) => Set<string>; order: (a: RunningJob, b: RunningJob) => number },
  ): Set<string> {
    const fromScratch = split.fromScratch;
    if (this.conflicted) return fromScratch(snapshot, tenants);
    for (const gr of this.groups.values()) {
      const guaranteed = tenants.get(gr.tenantId)?.quotas[gr.model]?.guaranteed ?? 0;
      if (!gr.dirty && guaranteed === gr.guaranteed) continue;
      for (const id of gr.borrowed) this.borrowedIds.delete(id);
      gr.borrowed = [];
      gr.dirty = false;
      gr.guaranteed = guaranteed;
      if (gr.list.length === 0) {
        this.groups.delete(gr.key);
        continue;
      }
      gr.list.sort((a, b) => split.order(a.job, b.job));
      let cum = 0;
      for (const rec of gr.list) {
        cum += rec.job.gpus;
        if (cum > guaranteed) {
          gr.borrowed.push(rec.job.id);
          this.borrowedIds.add(rec.job.id);
        }
      }
    }
    return this.borrowedIds;
  }

  private markDirty(st: NodeState): void {
    if (!st.dirty) {
      st.dirty = true;
      this.dirtyList.push(st);
    }
  }

  isWholeFree(st: NodeState): boolean {
    return st.full && st.free.length === st.size;
  }

  /** Best-fit unreserved node of a pool with at least g free GPUs (fewest free, then node order). */
  bestFitUnreserved(pool: Pool, g: number): NodeState | null {
    for (let c = g; c < pool.buckets.length; c++) {
      const h = pool.buckets[c]!;
      for (;;) {
        const top = h.peek();
        if (top === undefined) break;
        const st = this.byIdx[top]!;
        if (st.reserved || st.free.length !== c) {
          h.pop();
          continue;
        }
        return st;
      }
    }
    return null;
  }

  /** Take g GPUs (lowest indices) on a node for a job that starts now and holds them until `until`. */
  take(st: NodeState, g: number, until: number, jobId: string, now: number): number[] {
    const pool = this.pools[st.model];
    const wasWhole = this.isWholeFree(st) && !st.reserved;
    if (st.reserved) {
      if (this.isWholeFree(st)) pool.resvWhole--;
      for (let c = Math.max(1, st.free.length - g + 1); c <= Math.min(st.free.length, 8); c++) pool.resvFreeAtLeast[c]!--;
    }
    const got = st.free.splice(0, g);
    pool.totalFree -= got.length;
    if (wasWhole) {
      st.leaf.whole--;
      pool.wholeFree--;
    }
    if (!st.reserved && st.free.length > 0) pool.buckets[st.free.length]!.push(st.idx);
    st.held.push({ t: until, g: got.length, jobId });
    st.heldSorted = false;
    st.ver = nextVer();
    this.markDirty(st);
    pool.workAhead += ((until - now) / 1000) * got.length;
    return got;
  }

  reserve(st: NodeState, r: NodeReservation): void {
    const pool = this.pools[st.model];
    st.resv.push(r);
    st.ver = nextVer();
    this.markDirty(st);
    if (!pool.firstReservation || r.s < pool.firstReservation.s) pool.firstReservation = { jobId: r.jobId, s: r.s };
    if (st.reserved) return;
    if (this.isWholeFree(st)) {
      st.leaf.whole--;
      pool.wholeFree--;
      pool.resvWhole++;
    }
    for (let c = 1; c <= Math.min(st.free.length, 8); c++) pool.resvFreeAtLeast[c]!++;
    st.reserved = true;
    pool.reservedNodes.push(st);
  }

  /** Move a held entry's end earlier (a job being preempted frees its GPUs after the grace period). */
  endEarly(jobId: string, nodeIds: Iterable<string>, t: number): void {
    for (const id of nodeIds) {
      const st = this.byId.get(id);
      if (!st) continue;
      // New entries, not edits: the base shares the entry objects.
      for (let i = 0; i < st.held.length; i++) {
        const h = st.held[i]!;
        if (h.jobId === jobId && h.t > t) st.held[i] = { t, g: h.g, jobId };
      }
      st.heldSorted = false;
      st.ver = nextVer();
      this.markDirty(st);
      this.onEarly?.(st);
    }
  }
}

function insertSorted(a: number[], v: number): void {
  let i = a.length;
  a.push(v);
  while (i > 0 && a[i - 1]! > v) {
    a[i] = a[i - 1]!;
    i--;
  }
  a[i] = v;
}

function samePlacement(a: readonly Placement[], b: readonly Placement[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.nodeId !== y.nodeId || x.gpuIndices.length !== y.gpuIndices.length) return false;
    for (let k = 0; k < x.gpuIndices.length; k++) if (x.gpuIndices[k] !== y.gpuIndices[k]) return false;
  }
  return true;
}

/** Same running job for the core: every field a pass reads. */
function sameRun(a: RunningJob, b: RunningJob): boolean {
  return (
    a === b ||
    (a.id === b.id &&
      a.tenantId === b.tenantId &&
      a.gpus === b.gpus &&
      a.gpuModel === b.gpuModel &&
      a.priority === b.priority &&
      a.submittedAt === b.submittedAt &&
      a.queuedAt === b.queuedAt &&
      a.startedAt === b.startedAt &&
      a.timeLimitSeconds === b.timeLimitSeconds &&
      a.stopping === b.stopping &&
      samePlacement(a.placement, b.placement))
  );
}

/**
 * Node order and healthy GPU lists depend only on the node array: cached per array (the
 * caller that keeps its node array between passes skips the sort; results are identical).
 */
const orderCache = new WeakMap<readonly SnapshotNode[], { n: SnapshotNode; healthy: number[] }[]>();
function nodeOrder(nodes: readonly SnapshotNode[]): { n: SnapshotNode; healthy: number[] }[] {
  let o = orderCache.get(nodes);
  if (!o) {
    o = [...nodes]
      .sort((a, b) => cmp(a.leafSwitch, b.leafSwitch) || cmp(a.rack, b.rack) || cmp(a.id, b.id))
      .map((n) => ({ n, healthy: [...new Set(n.gpus.filter((g) => g.healthy).map((g) => g.index))].sort((a, b) => a - b) }));
    orderCache.set(nodes, o);
  }
  return o;
}

export function heldUntil(job: RunningJob, now: number, graceMs: number): number {
  let end = job.startedAt + job.timeLimitSeconds * 1000;
  // A job past its limit is about to be killed: count it as freeing now.
  if (end < now) end = now;
  if (job.stopping) end = Math.min(end, now + graceMs);
  return end;
}

function sortHeld(st: NodeState): void {
  if (!st.heldSorted) {
    st.held.sort((a, b) => a.t - b.t || cmp(a.jobId, b.jobId));
    st.heldSorted = true;
  }
}

/** Earliest time `need` GPUs are free on a node without reservations (cached per node version). */
export function fitTime(st: NodeState, need: number): number {
  if (need > st.size) return Infinity;
  if (st.fitVer !== st.ver || st.fit === null) {
    sortHeld(st);
    const fit: number[] = new Array(st.size + 1);
    let f = st.free.length;
    for (let g = 0; g <= Math.min(f, st.size); g++) fit[g] = -Infinity;
    for (const h of st.held) {
      const from = f + 1;
      f += h.g;
      for (let g = from; g <= Math.min(f, st.size); g++) fit[g] = h.t;
    }
    for (let g = f + 1; g <= st.size; g++) fit[g] = Infinity;
    st.fit = fit;
    st.fitVer = st.ver;
  }
  return st.fit[need]!;
}

/** Free GPUs on a node at time t, given held GPUs' ends and reservations. */
export function freeAt(st: NodeState, t: number): number {
  let f = st.free.length;
  for (const h of st.held) if (h.t <= t) f += h.g;
  for (const r of st.resv) if (r.s <= t && t < r.e) f -= r.g;
  return f;
}

const NONE_GONE: readonly { g: number; until: number }[] = [];

/**
 * The least free over [t0, t1): frees only ever add, so only t0 and reservation starts matter.
 * `gone`: jobs on this node stopped at t0 (reclaim victims); each gives its GPUs back only for
 * the part of the window it would still have held them (until `until`), so a victim that would
 * have ended anyway before a reservation on the node starts frees nothing then.
 */
export function minFree(st: NodeState, t0: number, t1: number, gone = NONE_GONE): number {
  let m = freeAt(st, t0) + stillHeld(gone, t0);
  for (const r of st.resv) if (r.s > t0 && r.s < t1) m = Math.min(m, freeAt(st, r.s) + stillHeld(gone, r.s));
  return m;
}

/** GPUs the stopped jobs would still have held at t. */
function stillHeld(gone: readonly { g: number; until: number }[], t: number): number {
  let f = 0;
  for (const v of gone) if (v.until > t) f += v.g;
  return f;
}

/**
 * earliestFit for the whole node (need = size), in O(r log r): the node is wholly free from the
 * end of its last held GPUs on, except while a reservation is active, so the answer is the
 * first gap between reservations, from max(from, that end), that is durMs long.
 */
export function wholeFit(st: NodeState, durMs: number, from: number): number {
  let t = Math.max(from, fitTime(st, st.size));
  if (t === Infinity || st.resv.length === 0) return t;
  const rs = st.resv.length === 1 ? st.resv : st.resv.slice().sort((a, b) => a.s - b.s);
  for (const r of rs) {
    if (r.e <= t) continue;
    if (r.s >= t + durMs) break;
    t = r.e;
  }
  return t;
}

/** minFree(st, t0, t1) >= st.size: wholly free over [t0, t1) (all held GPUs back, no reservation active). */
export function wholeFreeDuring(st: NodeState, t0: number, t1: number): boolean {
  if (fitTime(st, st.size) > t0) return false;
  for (const r of st.resv) if (r.s < t1 && r.e > t0) return false;
  return true;
}

/** Earliest t >= from at which `need` GPUs stay free on this node for `durMs`; Infinity if never. */
export function earliestFit(st: NodeState, need: number, durMs: number, from: number): number {
  if (need > st.size) return Infinity;
  if (st.resv.length === 0) return Math.max(from, fitTime(st, need));
  sortHeld(st);
  const cands = [from];
  for (const h of st.held) if (h.t > from) cands.push(h.t);
  for (const r of st.resv) if (r.e > from) cands.push(r.e);
  cands.sort((a, b) => a - b);
  for (const t of cands) if (minFree(st, t, t + durMs) >= need) return t;
  return Infinity;
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Min-heap of (time, node index) pairs with the node version each entry was computed at, for
 * "earliest node that fits g GPUs" queries. Entries go stale when their node changes; callers
 * drop or refresh stale entries when they reach the top (see reserve.ts earliestUnreserved).
 */
export class FitHeap {
  t: number[] = [];
  idx: number[] = [];
  ver: number[] = [];
  get size(): number {
    return this.t.length;
  }
  private less(i: number, j: number): boolean {
    return this.t[i]! < this.t[j]! || (this.t[i] === this.t[j] && this.idx[i]! < this.idx[j]!);
  }
  private swap(i: number, j: number): void {
    const { t, idx, ver } = this;
    let x = t[i]!;
    t[i] = t[j]!;
    t[j] = x;
    x = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = x;
    x = ver[i]!;
    ver[i] = ver[j]!;
    ver[j] = x;
  }
  push(t: number, idx: number, ver: number): void {
    this.t.push(t);
    this.idx.push(idx);
    this.ver.push(ver);
    let i = this.t.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): void {
    const n = this.t.length - 1;
    if (n < 0) return;
    this.swap(0, n);
    this.t.pop();
    this.idx.pop();
    this.ver.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(r, l) ? r : l;
      if (!this.less(c, i)) break;
      this.swap(c, i);
      i = c;
    }
  }
}
