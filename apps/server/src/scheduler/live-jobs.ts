import type { JobsRepository, PendingJobWithWait, RunningWithPlacement, StoredWaitColumns } from '@nuri/db';
import type { Annotation, StoredAnnotation } from './annotations';
import { livePending, type LivePending } from './snapshot';

/** What `refresh` did: a full reload or the changes applied, and how many rows it read. */
export interface RefreshResult {
  full: boolean;
  /** Job rows read: every pending and running job on a full reload, else the changed ones. */
  rows: number;
  /** Of the changed rows, those not applied before (absent on a full reload). */
  applied?: number;
}

/**
 * The leader's pending and running jobs, kept in memory between passes (issue 13). Reading all
 * 100,000 pending jobs took about a second a pass; instead each pass reads the jobs written
 * since the last one (`JobsRepository.changedSince`, stamped by migration 0010's trigger) and
 * applies them: a job now pending is put (new or changed), any other state leaves the queue;
 * a job now running is read again with its placement, any other state leaves the running set.
 *
 * Correct whatever order writers commit in: the horizon is the oldest transaction still open
 * when it is taken (before the read), and every row written by a transaction that commits
 * later carries a transaction id at or above it. Rows may come back twice; applying a row is
 * idempotent (it is the row's latest state). A full reload happens on the first refresh, after
 * `invalidate()` (taking leadership, a failed pass), and never otherwise: every insert and
 * update of a job fires the trigger (a job is never deleted). A full reload also reads the wait
 * stored for each job and puts it on the job (`LivePending.wait`).
 */
export class LiveJobs {
  private pendingById = new Map<string, LivePending>();
  /**
   * The same pending jobs by tenant: an express start reads its newcomers' tenants' queues, not
   * all 100,000. Sets of the objects (hashed by identity, not by their ids again: keying a
   * second map by id took a reload of 121,000 jobs 20-30 ms more CPU).
   */
  private pendingByTenant = new Map<string, Set<LivePending>>();
  /** Jobs that entered the queue (submitted, requeued) in an incremental refresh, until `takeArrivals`. */
  private arrivals = new Set<string>();
  /** Of the pending jobs read by an incremental refresh, whether each has dependencies (see `dependent`). */
  private readonly dependents = new Map<string, boolean>();
  private runningById = new Map<string, RunningWithPlacement>();
  private horizon: string | null = null;
  /** Jobs written since `takeTouched`; null after a full reload (any may have been). */
  private touched: string[] | null = null;
  /**
   * The writing transaction of each row an incremental refresh applied, while it may be read
   * again (at or above the horizon): while a long transaction anywhere in the cluster holds the
   * horizon back, every refresh reads the same rows again, and one already applied is neither
   * applied nor touched again (else the leader forgot and rewrote their waits every pass).
   */
  private seen = new Map<string, bigint>();

  constructor(private readonly jobs: Pick<JobsRepository, 'changeHorizon' | 'changedSince' | 'eachPending' | 'running'>) {}

  /** Forget everything: the next refresh reloads. */
  invalidate(): void {
    this.horizon = null;
    this.touched = null;
    this.seen.clear();
    this.pendingById.clear();
    this.pendingByTenant.clear();
    this.arrivals.clear();
    this.dependents.clear();
    this.runningById.clear();
  }

  get loaded(): boolean {
    return this.horizon !== null;
  }

  async refresh(): Promise<RefreshResult> {
    if (this.horizon === null) {
      const horizon = await this.jobs.changeHorizon();
      // Each row is turned into the leader's form as it arrives, into new maps swapped in once
      // all came: straight in (no job is in them yet), and a failed read leaves the old ones.
      const byId = new Map<string, LivePending>();
      const byTenant = new Map<string, Set<LivePending>>();
      const tenants = new FewStrings<string>();
      const types = new FewStrings<LivePending['gpuType']>();
      const priorities = new FewStrings<LivePending['priorityName']>();
      const [pending, running] = await Promise.all([
        this.jobs.eachPending((r) => {
          const j = livePending(r, storedWait(r));
          j.tenantId = tenants.of(j.tenantId);
          j.gpuType = types.of(j.gpuType);
          j.priorityName = priorities.of(j.priorityName);
          put(byId, byTenant, j);
        }),
        this.jobs.running(),
      ]);
      this.pendingById = byId;
      this.pendingByTenant = byTenant;
      this.arrivals.clear();
      this.dependents.clear();
      this.runningById = new Map(running.map((j) => [j.id, j]));
      this.horizon = horizon;
      this.touched = null;
      this.seen.clear();
      return { full: true, rows: pending + running.length };
    }
    const { rows: changed, horizon: next } = await this.jobs.changedSince(this.horizon);
    const horizon = next ?? this.horizon;
    const nowRunning: string[] = [];
    let applied = 0;
    for (const c of changed) {
      const xid = BigInt(c.xid);
      if (this.seen.get(c.id) === xid) continue;
      this.seen.set(c.id, xid);
      applied++;
      if (c.state === 'pending') {
        if (!this.pendingById.has(c.id)) this.arrivals.add(c.id);
        this.putPending(livePending(c));
        this.dependents.set(c.id, c.dependent);
      } else this.dropPending(c.id);
      this.touched?.push(c.id);
      if (c.state === 'running') nowRunning.push(c.id);
      else this.runningById.delete(c.id);
    }
    if (nowRunning.length) {
      const fresh = await this.jobs.running({ ids: nowRunning });
      // A job read as running but ended before its placement was read is gone from both reads'
      // point of view: its end is a later change, read again next time.
      for (const id of nowRunning) this.runningById.delete(id);
      for (const r of fresh) this.runningById.set(r.id, r);
    }
    if (horizon !== this.horizon) {
      // Rows below the new horizon are never read again.
      const h = BigInt(horizon);
      for (const [id, xid] of this.seen) if (xid < h) this.seen.delete(id);
    }
    this.horizon = horizon;
    return { full: false, rows: changed.length, applied };
  }

  /**
   * The jobs written since the last call (submitted, started, requeued, cancelled, changed),
   * so whoever remembers something per pending job forgets what may be out of date: a job
   * started and requeued between two passes is pending in both, but its row's annotation was
   * cleared on the way. Null when the last refresh was a full reload: compare with `pending()`.
   */
  takeTouched(): string[] | null {
    const d = this.touched;
    this.touched = [];
    return d;
  }

  /**
   * Jobs that entered the queue since the last call and are still in it (what an express
   * start considers). A full reload forgets them: the full pass that follows sees them all.
   */
  takeArrivals(): LivePending[] {
    const out: LivePending[] = [];
    for (const id of this.arrivals) {
      const j = this.pendingById.get(id);
      if (j) out.push(j);
    }
    this.arrivals.clear();
    return out;
  }

  /** The arrivals not yet taken or settled (ids; some may have left the queue since). */
  arrivalIds(): ReadonlySet<string> {
    return this.arrivals;
  }

  forgetArrivals(): void {
    this.arrivals.clear();
  }

  /** Forgets the arrivals `known` says were seen already. */
  settleArrivals(known: (id: string) => boolean): void {
    for (const id of this.arrivals) if (known(id) || !this.pendingById.has(id)) this.arrivals.delete(id);
  }

  /** The pending jobs of these tenants. */
  pendingOf(tenantIds: Iterable<string>): LivePending[] {
    const out: LivePending[] = [];
    for (const t of tenantIds) for (const j of this.pendingByTenant.get(t) ?? []) out.push(j);
    return out;
  }

  get(id: string): LivePending | undefined {
    return this.pendingById.get(id);
  }

  /** Puts these stored waits on the pending jobs, and none on the others (a new leader reads back what is stored). */
  setWaits(stored: readonly (StoredWaitColumns & { id: string })[]): void {
    for (const j of this.pendingById.values()) j.wait = undefined;
    for (const w of stored) {
      const j = this.pendingById.get(w.id);
      if (j) j.wait = storedWait(w);
    }
  }

  private putPending(j: LivePending): void {
    const before = this.pendingById.get(j.id);
    if (before) this.pendingByTenant.get(before.tenantId)?.delete(before);
    this.index(j);
  }

  private index(j: LivePending): void {
    put(this.pendingById, this.pendingByTenant, j);
  }

  /**
   * Whether a pending job has dependencies, as its last incremental refresh read it (an express
   * start leaves such a job to the full pass without asking the database again); undefined for a
   * job read by a full reload only.
   */
  dependent(id: string): boolean | undefined {
    return this.dependents.get(id);
  }

  private dropPending(id: string): void {
    this.dependents.delete(id);
    const j = this.pendingById.get(id);
    if (!j) return;
    this.pendingById.delete(id);
    this.pendingByTenant.get(j.tenantId)?.delete(j);
  }

  /** How many jobs are pending. */
  get pendingCount(): number {
    return this.pendingById.size;
  }

  isPending(id: string): boolean {
    return this.pendingById.has(id);
  }

  pending(): LivePending[] {
    return [...this.pendingById.values()];
  }

  running(): RunningWithPlacement[] {
    return [...this.runningById.values()];
  }

  /** Live jobs by tenant, state and requested type: the jobs gauge, without a GROUP BY over the table. */
  countByState(): { tenantId: string; state: 'pending' | 'running'; gpuType: string; n: number }[] {
    // By tenant, then by type per state: no key string built per job (100,000 every 5 s).
    const byTenant = new Map<string, { pending: Map<string, number>; running: Map<string, number> }>();
    const of = (tenantId: string) => {
      let t = byTenant.get(tenantId);
      if (!t) byTenant.set(tenantId, (t = { pending: new Map(), running: new Map() }));
      return t;
    };
    for (const j of this.pendingById.values()) {
      const m = of(j.tenantId).pending;
      m.set(j.gpuType, (m.get(j.gpuType) ?? 0) + 1);
    }
    for (const j of this.runningById.values()) {
      const m = of(j.tenantId).running;
      const type = j.gpuType ?? j.gpuModel;
      m.set(type, (m.get(type) ?? 0) + 1);
    }
    const out: { tenantId: string; state: 'pending' | 'running'; gpuType: string; n: number }[] = [];
    for (const [tenantId, t] of byTenant)
      for (const state of ['pending', 'running'] as const) for (const [gpuType, n] of t[state]) out.push({ tenantId, state, gpuType, n });
    return out;
  }
}

/** Never started, so never requeued: it cannot have been in an earlier pass's queue under another incarnation. */
export function isFresh(j: Pick<LivePending, 'attempts'>): boolean {
  return j.attempts === 0;
}

/** Puts a pending job in the maps by id and by tenant. */
function put(byId: Map<string, LivePending>, byTenant: Map<string, Set<LivePending>>, j: LivePending): void {
  byId.set(j.id, j);
  let t = byTenant.get(j.tenantId);
  if (!t) byTenant.set(j.tenantId, (t = new Set()));
  t.add(j);
}

/**
 * One string for each value of a column that holds few (tenants, GPU types, priorities): every
 * row read brings its own copy, so a reload of 100,000 jobs kept 100,000 copies of each, and
 * keying the tenants' queues by them hashed 100,000 fresh strings. Found by comparing (as
 * cheap as a hash of one); past `max` values, a row keeps its own.
 */
class FewStrings<S extends string> {
  private readonly known: S[] = [];
  constructor(private readonly max = 64) {}
  of(s: S): S {
    for (const k of this.known) if (k === s) return k;
    if (this.known.length < this.max) this.known.push(s);
    return s;
  }
}

/** The wait stored for a job as read (none: its columns are null), in the form a pass compares with (a stored code is one of the reason codes). */
function storedWait(r: Pick<PendingJobWithWait, keyof StoredWaitColumns>): StoredAnnotation | undefined {
  if (r.wait_code === null) return undefined;
  const code = r.wait_code as Annotation['code'];
  return r.wait_reason_hash === null
    ? { code, reason: r.wait_reason ?? '', eta: r.wait_eta_ms, position: r.wait_position }
    : { code, reason: null, reasonHash: r.wait_reason_hash, eta: r.wait_eta_ms, position: r.wait_position };
}
