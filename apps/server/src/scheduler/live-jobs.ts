import type { JobsRepository, PendingJobRow, RunningWithPlacement } from '@nuri/db';

/** What `refresh` did: a full reload or the changes applied, and how many rows it read. */
export interface RefreshResult {
  full: boolean;
  /** Job rows read: every pending and running job on a full reload, else the changed ones. */
  rows: number;
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
 * update of a job fires the trigger (a job is never deleted).
 */
export class LiveJobs {
  private pendingById = new Map<string, PendingJobRow>();
  private runningById = new Map<string, RunningWithPlacement>();
  private horizon: string | null = null;
  /** Jobs written since `takeTouched`; null after a full reload (any may have been). */
  private touched: string[] | null = null;

  constructor(private readonly jobs: Pick<JobsRepository, 'changeHorizon' | 'changedSince' | 'pending' | 'running'>) {}

  /** Forget everything: the next refresh reloads. */
  invalidate(): void {
    this.horizon = null;
    this.touched = null;
    this.pendingById.clear();
    this.runningById.clear();
  }

  get loaded(): boolean {
    return this.horizon !== null;
  }

  async refresh(): Promise<RefreshResult> {
    const horizon = await this.jobs.changeHorizon();
    if (this.horizon === null) {
      const [pending, running] = await Promise.all([this.jobs.pending(), this.jobs.running()]);
      this.pendingById = new Map(pending.map((j) => [j.id, j]));
      this.runningById = new Map(running.map((j) => [j.id, j]));
      this.horizon = horizon;
      this.touched = null;
      return { full: true, rows: pending.length + running.length };
    }
    const changed = await this.jobs.changedSince(this.horizon);
    const nowRunning: string[] = [];
    for (const c of changed) {
      if (c.state === 'pending') {
        const { state: _state, ...row } = c;
        this.pendingById.set(c.id, row);
      } else this.pendingById.delete(c.id);
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
    this.horizon = horizon;
    return { full: false, rows: changed.length };
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

  isPending(id: string): boolean {
    return this.pendingById.has(id);
  }

  pending(): PendingJobRow[] {
    return [...this.pendingById.values()];
  }

  running(): RunningWithPlacement[] {
    return [...this.runningById.values()];
  }

  /** Live jobs by tenant, state and requested type: the jobs gauge, without a GROUP BY over the table. */
  countByState(): { tenantId: string; state: 'pending' | 'running'; gpuType: string; n: number }[] {
    const counts = new Map<string, { tenantId: string; state: 'pending' | 'running'; gpuType: string; n: number }>();
    const add = (tenantId: string, state: 'pending' | 'running', gpuType: string) => {
      const k = `${tenantId}/${state}/${gpuType}`;
      const c = counts.get(k);
      if (c) c.n++;
      else counts.set(k, { tenantId, state, gpuType, n: 1 });
    };
    for (const j of this.pendingById.values()) add(j.tenant_id, 'pending', j.gpu_type);
    for (const j of this.runningById.values()) add(j.tenantId, 'running', j.gpuType ?? j.gpuModel);
    return [...counts.values()];
  }
}
