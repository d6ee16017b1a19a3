import { sql, type RawBuilder } from 'kysely';
import type { JobsTable } from '../schema';
import type { Db } from './tenants.repository';

type GpuType = 'h100' | 'h800';
export type UsageKey = 'tenant' | 'user' | 'gpuType' | 'job' | 'day' | 'month';

/** What usage is read over: UTC dates (`from` inclusive, `to` exclusive) and filters, all optional. */
export interface UsageScope {
  from?: string;
  to?: string;
  tenantId?: string;
  userId?: string;
  gpuType?: GpuType;
  jobIds?: string[];
}

/** One group of usage: its keys (those asked for) and its totals. Cost in USD; unpriced time costs 0 and is counted apart. */
export interface UsageRow {
  tenant?: string;
  user?: string;
  gpuType?: GpuType;
  job?: string;
  jobName?: string;
  day?: string;
  month?: string;
  gpuSeconds: number;
  idleGpuSeconds: number;
  cost: number;
  idleCost: number;
  unpricedGpuSeconds: number;
}

/** A statement line: one GPU type at one price (the period it was in effect within the month). */
export interface StatementLine {
  gpuType: GpuType;
  /** First day and the day after the last day of the line's usage within the month. */
  from: string;
  to: string;
  /** Null: no price was in effect (the line costs 0). */
  usdPerGpuHour: number | null;
  priceEffectiveFrom: string | null;
  contract: boolean;
  gpuSeconds: number;
  idleGpuSeconds: number;
  cost: number;
  idleCost: number;
}

/** A finished job as `nuri history` lists it: its attempts summed. */
export interface HistoryRow {
  id: string;
  name: string;
  tenant: string;
  user: string;
  state: JobsTable['state'];
  exitCode: number | null;
  submittedAt: Date;
  endedAt: Date | null;
  attempts: number;
  gpus: number;
  gpuType: GpuType | null;
  elapsedSeconds: number;
  gpuSeconds: number;
  idleGpuSeconds: number;
  /** Utilization-weighted over the GPU-seconds sampled; null when no sample arrived. */
  meanUtilization: number | null;
}

/** A running attempt with its idle time, for the operators' idle list. */
export interface IdleAttempt {
  jobId: string;
  name: string;
  tenant: string;
  user: string;
  attempt: number;
  gpus: number;
  gpuType: GpuType;
  startedAt: Date;
  idleSince: Date | null;
  idleGpuSeconds: number;
  sampledGpuSeconds: number;
  gpuSeconds: number;
}

/** What a gateway integrated from one attempt's samples since its last store (deltas). */
export interface TelemetryDelta {
  jobId: string;
  attempt: number;
  sampledGpuSeconds: number;
  busyGpuSeconds: number;
  idleGpuSeconds: number;
  /** Since when every GPU of the attempt on that node has been idle; null: one is busy. */
  idleSince: Date | null;
}

const KEY_SQL: Record<UsageKey, string> = {
  tenant: 'x.tenant_id',
  user: 'x.user_id',
  gpuType: 'x.gpu_type',
  job: 'x.job_id',
  day: "to_char(x.day, 'YYYY-MM-DD')",
  month: "to_char(x.day, 'YYYY-MM')",
};

/** GPU-seconds of [s, e) that fall on UTC day `d` (a timestamp without time zone at midnight). */
const onDay = (s: string, e: string, d: string) =>
  `extract(epoch from least(${e}, (${d} + interval '1 day') at time zone 'UTC') - greatest(${s}, ${d} at time zone 'UTC'))`;

/**
 * The statement that opens the ledger row of each attempt just started, from `started`: the
 * started jobs' rows as written (id, attempts, tenant_id, user_id, gpu_model, gpus, started_at),
 * e.g. an UPDATE's RETURNING in the statement that starts them (JobsRepository.commitStarts).
 */
export function openAttemptsOf(started: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`
    insert into usage_ledger (job_id, attempt, tenant_id, user_id, gpu_type, gpus, started_at)
    select id, attempts, tenant_id, user_id, gpu_model, gpus, started_at from ${started}
    where gpu_model is not null and started_at is not null
    on conflict do nothing`;
}

/**
 * The usage ledger (usage_ledger, usage_daily, gpu_prices). Written in the transactions of
 * the job transitions it records (a start's statement opens an attempt with `openAttemptsOf`;
 * JobsRepository calls `close` with its transaction); read for usage, statements, history and idle lists, priced at read time by UTC day.
 */
export class LedgerRepository {
  constructor(private readonly db: Db) {}

  /**
   * Closes the job's open attempt at `at` (call in the transaction that ends the run) and
   * adds its GPU-seconds to the daily rollup, split at UTC midnights. A row already closed
   * is never closed again: an attempt is charged once.
   */
  async close(jobId: string, at: Date, to: JobsTable['state']): Promise<void> {
    await sql`
      with e as (
        update usage_ledger set ended_at = greatest(started_at, ${at}::timestamptz), end_state = ${to}::text
        where job_id = ${jobId}::uuid and ended_at is null
        returning tenant_id, user_id, gpu_type, gpus, started_at, ended_at
      ), p as (
        -- No zero piece (an attempt ending at midnight): a day with no use is no row.
        select * from (
          select e.tenant_id, e.user_id, e.gpu_type, d.day::date as day, e.gpus * ${sql.raw(onDay('e.started_at', 'e.ended_at', 'd.day'))} as gs
          from e cross join lateral generate_series(date_trunc('day', e.started_at at time zone 'UTC'), e.ended_at at time zone 'UTC', interval '1 day') as d(day)
        ) q where gs > 0
      ), byUser as (
        insert into usage_daily (tenant_id, user_id, gpu_type, day, gpu_seconds)
        select tenant_id, user_id, gpu_type, day, gs from p order by day
        on conflict (tenant_id, user_id, gpu_type, day) do update set gpu_seconds = usage_daily.gpu_seconds + excluded.gpu_seconds
      )
      insert into usage_tenant_daily (tenant_id, gpu_type, day, gpu_seconds)
      select tenant_id, gpu_type, day, gs from p order by day
      on conflict (tenant_id, gpu_type, day) do update set gpu_seconds = usage_tenant_daily.gpu_seconds + excluded.gpu_seconds`.execute(this.db);
  }

  /**
   * Adds what gateways integrated from samples, in one statement: to each attempt's row (also
   * once it ended: another node's last samples may come after the end) and, as idle time, to
   * the rollup on the day of `at` (a gateway stores at least every minute).
   */
  async addTelemetry(deltas: TelemetryDelta[], at: Date): Promise<void> {
    if (!deltas.length) return;
    const rows = JSON.stringify(
      deltas.map((d) => ({ job_id: d.jobId, attempt: d.attempt, sampled: d.sampledGpuSeconds, busy: d.busyGpuSeconds, idle: d.idleGpuSeconds, idle_since: d.idleSince?.toISOString() ?? null })),
    );
    await sql`
      with v as (
        select * from jsonb_to_recordset(${rows}::jsonb) as v(job_id uuid, attempt int, sampled float8, busy float8, idle float8, idle_since timestamptz)
      ), u as (
        update usage_ledger l set
          sampled_gpu_seconds = l.sampled_gpu_seconds + v.sampled,
          busy_gpu_seconds = l.busy_gpu_seconds + v.busy,
          idle_gpu_seconds = l.idle_gpu_seconds + v.idle,
          idle_since = case when l.ended_at is not null then l.idle_since when v.idle_since is null then null else least(coalesce(l.idle_since, v.idle_since), v.idle_since) end,
          telemetry_at = ${at}::timestamptz
        from v where l.job_id = v.job_id and l.attempt = v.attempt
        returning l.tenant_id, l.user_id, l.gpu_type, v.idle
      )
      , byUser as (
        insert into usage_daily (tenant_id, user_id, gpu_type, day, gpu_seconds, idle_gpu_seconds)
        select tenant_id, user_id, gpu_type, (${at}::timestamptz at time zone 'UTC')::date, 0, sum(idle) from u where idle > 0
        group by 1, 2, 3 order by 1, 2, 3
        on conflict (tenant_id, user_id, gpu_type, day) do update set idle_gpu_seconds = usage_daily.idle_gpu_seconds + excluded.idle_gpu_seconds
      )
      insert into usage_tenant_daily (tenant_id, gpu_type, day, gpu_seconds, idle_gpu_seconds)
      select tenant_id, gpu_type, (${at}::timestamptz at time zone 'UTC')::date, 0, sum(idle) from u where idle > 0
      group by 1, 2 order by 1, 2
      on conflict (tenant_id, gpu_type, day) do update set idle_gpu_seconds = usage_tenant_daily.idle_gpu_seconds + excluded.idle_gpu_seconds`.execute(this.db);
  }

  /**
   * Usage grouped by `keys`, priced by the price in effect each UTC day. Without `job` (and
   * without a job filter) it reads the daily rollup plus the open attempts accrued to `now`:
   * a few thousand rows however many attempts. By job it reads the attempts themselves (their
   * idle time spread over their days in proportion).
   */
  async usage(keys: UsageKey[], scope: UsageScope, now: Date): Promise<UsageRow[]> {
    const group = keys.map((k) => KEY_SQL[k]);
    const g = group.length ? `${group.join(', ')}, ` : '';
    const pieces = keys.includes('job') || scope.jobIds ? this.attemptPieces(scope, now) : this.dailyPieces(scope, now, keys.includes('user'));
    const outKeys = keys.map((k, i) => `k${i}`);
    const r = await this.report((tx) => sql<Record<string, unknown>>`
      with x as (${pieces}),
      g as (
        select ${sql.raw(keys.map((k, i) => `${KEY_SQL[k]} as k${i}, `).join(''))} x.tenant_id, x.gpu_type, x.day,
               sum(x.gpu_seconds) as gs, sum(x.idle_gpu_seconds) as ids
        from x group by ${sql.raw(g)} x.tenant_id, x.gpu_type, x.day
      ),
      ${this.dayPrices(scope, 'g')},
      -- Priced once per tenant, type and day (a few thousand lookups), not per group row.
      p as (select g.*, pd.usd from g left join pd using (tenant_id, gpu_type, day))
      select ${sql.raw(outKeys.map((k) => `${k}, `).join(''))}
             sum(gs)::float8 as gpu_seconds, sum(ids)::float8 as idle_gpu_seconds,
             coalesce(sum(gs * usd) / 3600, 0)::float8 as cost, coalesce(sum(ids * usd) / 3600, 0)::float8 as idle_cost,
             coalesce(sum(gs) filter (where usd is null), 0)::float8 as unpriced
      from p ${sql.raw(outKeys.length ? `group by ${outKeys.join(', ')} order by ${outKeys.join(', ')}` : '')}`.execute(tx));
    const names = await this.names(keys, r.rows);
    return r.rows.map((row) => {
      const out: UsageRow = {
        gpuSeconds: Number(row.gpu_seconds),
        idleGpuSeconds: Number(row.idle_gpu_seconds),
        cost: Number(row.cost),
        idleCost: Number(row.idle_cost),
        unpricedGpuSeconds: Number(row.unpriced),
      };
      keys.forEach((k, i) => {
        const v = row[`k${i}`];
        if (k === 'tenant') out.tenant = names.tenants.get(String(v)) ?? String(v);
        else if (k === 'user') out.user = names.users.get(String(v)) ?? String(v);
        else if (k === 'gpuType') out.gpuType = v as GpuType;
        else if (k === 'job') {
          out.job = String(v);
          out.jobName = names.jobs.get(String(v)) ?? '';
        } else if (k === 'day') out.day = String(v);
        else out.month = String(v);
      });
      return out;
    });
  }

  /** A tenant's month by GPU type and price period: what an invoice is made from. */
  async statement(tenantId: string, month: string, now: Date): Promise<StatementLine[]> {
    const from = `${month}-01`;
    const to = nextMonth(month);
    const r = await this.report((tx) => sql<{
      gpu_type: GpuType;
      first_day: string;
      last_day: string;
      usd: string | null;
      effective_from: string | null;
      contract: boolean | null;
      gpu_seconds: number;
      idle_gpu_seconds: number;
    }>`
      with x as (${this.dailyPieces({ tenantId, from, to }, now, false)}),
      g as (select x.tenant_id, x.gpu_type, x.day, sum(x.gpu_seconds) as gs, sum(x.idle_gpu_seconds) as ids from x group by 1, 2, 3),
      p as (select g.*, pr.usd, pr.effective_from, pr.contract from g left join lateral (${this.priceOf('g')}) pr on true)
      select gpu_type, to_char(min(day), 'YYYY-MM-DD') as first_day, to_char(max(day), 'YYYY-MM-DD') as last_day, usd, to_char(effective_from, 'YYYY-MM-DD') as effective_from, bool_or(contract) as contract,
             sum(gs)::float8 as gpu_seconds, sum(ids)::float8 as idle_gpu_seconds
      from p group by gpu_type, usd, effective_from, contract order by gpu_type, min(day)`.execute(tx));
    return r.rows
      .filter((l) => l.gpu_seconds > 0 || l.idle_gpu_seconds > 0)
      .map((l) => {
        const usd = l.usd === null ? null : Number(l.usd);
        return {
          gpuType: l.gpu_type,
          from: l.first_day,
          to: addDays(l.last_day, 1),
          usdPerGpuHour: usd,
          priceEffectiveFrom: l.effective_from,
          contract: Boolean(l.contract),
          gpuSeconds: l.gpu_seconds,
          idleGpuSeconds: l.idle_gpu_seconds,
          cost: ((usd ?? 0) * l.gpu_seconds) / 3600,
          idleCost: ((usd ?? 0) * l.idle_gpu_seconds) / 3600,
        };
      });
  }

  /** Finished jobs ended in [from, to), newest end first, with their attempts summed. */
  async history(scope: { from?: string; to?: string; tenantId?: string; userId?: string; limit: number }): Promise<HistoryRow[]> {
    let q = this.db
      .selectFrom('jobs')
      .innerJoin('tenants', 'tenants.id', 'jobs.tenant_id')
      .innerJoin('users', 'users.id', 'jobs.user_id')
      .leftJoin('usage_ledger as l', 'l.job_id', 'jobs.id')
      .select([
        'jobs.id',
        'jobs.name',
        'tenants.name as tenant',
        'users.name as user',
        'jobs.state',
        'jobs.exit_code as exitCode',
        'jobs.submitted_at as submittedAt',
        'jobs.ended_at as endedAt',
        'jobs.gpus',
        sql<number>`count(l.attempt)::int`.as('attempts'),
        sql<GpuType | null>`max(l.gpu_type)`.as('gpuType'),
        sql<number>`coalesce(sum(extract(epoch from l.ended_at - l.started_at)), 0)::float8`.as('elapsedSeconds'),
        sql<number>`coalesce(sum(l.gpus * extract(epoch from l.ended_at - l.started_at)), 0)::float8`.as('gpuSeconds'),
        sql<number>`coalesce(sum(l.idle_gpu_seconds), 0)::float8`.as('idleGpuSeconds'),
        sql<number | null>`(sum(l.busy_gpu_seconds) / nullif(sum(l.sampled_gpu_seconds), 0))::float8`.as('meanUtilization'),
      ])
      .where('jobs.state', 'not in', ['pending', 'running'])
      .groupBy(['jobs.id', 'tenants.name', 'users.name'])
      .orderBy('jobs.ended_at', 'desc')
      .orderBy('jobs.id', 'desc')
      .limit(scope.limit);
    if (scope.from) q = q.where('jobs.ended_at', '>=', sql<Date>`(${scope.from}::date)::timestamp at time zone 'UTC'`);
    if (scope.to) q = q.where('jobs.ended_at', '<', sql<Date>`(${scope.to}::date)::timestamp at time zone 'UTC'`);
    if (scope.tenantId) q = q.where('jobs.tenant_id', '=', scope.tenantId);
    if (scope.userId) q = q.where('jobs.user_id', '=', scope.userId);
    return q.execute();
  }

  /** Running attempts, those idle longest first (then by idle GPU-seconds), with what they used so far. */
  async idleAttempts(scope: { tenantId?: string; limit: number }, now: Date): Promise<IdleAttempt[]> {
    let q = this.db
      .selectFrom('usage_ledger as l')
      .innerJoin('jobs', 'jobs.id', 'l.job_id')
      .innerJoin('tenants', 'tenants.id', 'l.tenant_id')
      .innerJoin('users', 'users.id', 'l.user_id')
      .select([
        'l.job_id as jobId',
        'jobs.name',
        'tenants.name as tenant',
        'users.name as user',
        'l.attempt',
        'l.gpus',
        'l.gpu_type as gpuType',
        'l.started_at as startedAt',
        'l.idle_since as idleSince',
        'l.idle_gpu_seconds as idleGpuSeconds',
        'l.sampled_gpu_seconds as sampledGpuSeconds',
        sql<number>`(l.gpus * extract(epoch from greatest(${now}::timestamptz, l.started_at) - l.started_at))::float8`.as('gpuSeconds'),
      ])
      .where('l.ended_at', 'is', null)
      .where((eb) => eb.or([eb('l.idle_since', 'is not', null), eb('l.idle_gpu_seconds', '>', 0)]))
      .orderBy(sql`l.idle_since asc nulls last`)
      .orderBy('l.idle_gpu_seconds', 'desc')
      .orderBy('l.job_id')
      .limit(scope.limit);
    if (scope.tenantId) q = q.where('l.tenant_id', '=', scope.tenantId);
    return q.execute();
  }

  /** GPUs held now by the tenant's open attempts, by type (the ledger's open rows are its running jobs). */
  async heldNow(tenantId: string): Promise<Map<GpuType, number>> {
    const rows = await this.db
      .selectFrom('usage_ledger')
      .select(['gpu_type', sql<number>`sum(gpus)::int`.as('n')])
      .where('tenant_id', '=', tenantId)
      .where('ended_at', 'is', null)
      .groupBy('gpu_type')
      .execute();
    return new Map(rows.map((r) => [r.gpu_type, r.n]));
  }

  /** A tenant's idle policy (nulls: off). */
  async idlePolicy(tenantId: string): Promise<{ notifyAfterSeconds: number | null; cancelAfterSeconds: number | null }> {
    const r = await this.db.selectFrom('idle_policies').select(['notify_after_seconds', 'cancel_after_seconds']).where('tenant_id', '=', tenantId).executeTakeFirst();
    return { notifyAfterSeconds: r?.notify_after_seconds ?? null, cancelAfterSeconds: r?.cancel_after_seconds ?? null };
  }

  async setIdlePolicy(tenantId: string, p: { notifyAfterSeconds: number | null; cancelAfterSeconds: number | null }, at: Date): Promise<void> {
    await this.db
      .insertInto('idle_policies')
      .values({ tenant_id: tenantId, notify_after_seconds: p.notifyAfterSeconds, cancel_after_seconds: p.cancelAfterSeconds, updated_at: at })
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ notify_after_seconds: p.notifyAfterSeconds, cancel_after_seconds: p.cancelAfterSeconds, updated_at: at }))
      .execute();
  }

  /**
   * Running attempts idle (every GPU under the ratio) past their tenant's policy at `now`:
   * `notify` those past the notice not yet told, `cancel` those past the cancel threshold
   * whose job was not asked to stop yet.
   */
  async idlePastPolicy(now: Date): Promise<{ jobId: string; attempt: number; idleSince: Date; action: 'notify' | 'cancel'; notifyAfterSeconds: number | null; cancelAfterSeconds: number | null }[]> {
    const r = await sql<{ job_id: string; attempt: number; idle_since: Date; action: 'notify' | 'cancel'; notify: number | null; cancel: number | null }>`
      select l.job_id, l.attempt, l.idle_since, p.notify_after_seconds as notify, p.cancel_after_seconds as cancel,
             case when p.cancel_after_seconds is not null and l.idle_since <= ${now}::timestamptz - make_interval(secs => p.cancel_after_seconds) then 'cancel' else 'notify' end as action
      from usage_ledger l
      join idle_policies p on p.tenant_id = l.tenant_id
      join jobs j on j.id = l.job_id and j.attempts = l.attempt and j.state = 'running' and j.stop_requested is null
      where l.ended_at is null and l.idle_since is not null
        and ((p.cancel_after_seconds is not null and l.idle_since <= ${now}::timestamptz - make_interval(secs => p.cancel_after_seconds))
          or (p.notify_after_seconds is not null and l.idle_notified_at is null and l.idle_since <= ${now}::timestamptz - make_interval(secs => p.notify_after_seconds)))
      order by l.idle_since, l.job_id`.execute(this.db);
    return r.rows.map((x) => ({ jobId: x.job_id, attempt: x.attempt, idleSince: x.idle_since, action: x.action, notifyAfterSeconds: x.notify, cancelAfterSeconds: x.cancel }));
  }

  /**
   * Tells a running attempt it is idle: its job's reason says so (what `nuri show` prints),
   * once. False when it no longer runs that attempt or was told already.
   */
  async markIdleNotified(jobId: string, attempt: number, reason: string, at: Date): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      const told = await tx
        .updateTable('usage_ledger')
        .set({ idle_notified_at: at })
        .where('job_id', '=', jobId)
        .where('attempt', '=', attempt)
        .where('ended_at', 'is', null)
        .where('idle_notified_at', 'is', null)
        .executeTakeFirst();
      if (!Number(told.numUpdatedRows)) return false;
      await tx.updateTable('jobs').set({ reason }).where('id', '=', jobId).where('state', '=', 'running').where('attempts', '=', attempt).execute();
      return true;
    });
  }

  /**
   * Takes the idle notice back from running attempts whose GPUs are busy again (no longer all
   * idle): the job's reason stops saying it will be cancelled, and a later idle spell is told
   * again. Returns the jobs concerned.
   */
  async clearIdleNotices(): Promise<string[]> {
    return this.db.transaction().execute(async (tx) => {
      const busy = await tx
        .updateTable('usage_ledger')
        .set({ idle_notified_at: null })
        .where('ended_at', 'is', null)
        .where('idle_notified_at', 'is not', null)
        .where('idle_since', 'is', null)
        .returning(['job_id', 'attempt'])
        .execute();
      for (const b of busy)
        await tx
          .updateTable('jobs')
          .set({ reason: null })
          .where('id', '=', b.job_id)
          .where('state', '=', 'running')
          .where('attempts', '=', b.attempt)
          .where('reason', 'like', 'idle: %')
          .execute();
      return busy.map((b) => b.job_id);
    });
  }

  /**
   * Asks a running attempt's job to stop for its idleness, the reason on the job (the end
   * records it: outcomeOf). False when it no longer runs that attempt or already stops.
   */
  async cancelIdle(jobId: string, attempt: number, reason: string, at: Date): Promise<boolean> {
    const r = await this.db
      .updateTable('jobs')
      .set({ stop_requested: 'cancel', stop_requested_at: at, reason })
      .where('id', '=', jobId)
      .where('state', '=', 'running')
      .where('attempts', '=', attempt)
      .where('stop_requested', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Every attempt of a job, in order (its record as the ledger keeps it). */
  async attemptsOf(jobId: string) {
    return this.db.selectFrom('usage_ledger').selectAll().where('job_id', '=', jobId).orderBy('attempt').execute();
  }

  /**
   * Rebuilds the daily rollup from the ledger (closed attempts split at midnight; idle time on
   * each attempt's last day): for rows written by SQL (the bench) or a repair.
   */
  async rebuildDaily(): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await sql`delete from usage_daily`.execute(tx);
      await sql`
        insert into usage_daily (tenant_id, user_id, gpu_type, day, gpu_seconds, idle_gpu_seconds)
        select l.tenant_id, l.user_id, l.gpu_type, d.day::date, sum(l.gpus * ${sql.raw(onDay('l.started_at', 'l.ended_at', 'd.day'))}),
               sum(case when d.day = date_trunc('day', l.ended_at at time zone 'UTC') then l.idle_gpu_seconds else 0 end)
        from usage_ledger l
        cross join lateral generate_series(date_trunc('day', l.started_at at time zone 'UTC'), l.ended_at at time zone 'UTC', interval '1 day') as d(day)
        where l.ended_at is not null and (${sql.raw(onDay('l.started_at', 'l.ended_at', 'd.day'))} > 0 or d.day = date_trunc('day', l.ended_at at time zone 'UTC'))
        group by 1, 2, 3, 4`.execute(tx);
      await sql`delete from usage_tenant_daily`.execute(tx);
      await sql`
        insert into usage_tenant_daily (tenant_id, gpu_type, day, gpu_seconds, idle_gpu_seconds)
        select tenant_id, gpu_type, day, sum(gpu_seconds), sum(idle_gpu_seconds) from usage_daily group by 1, 2, 3`.execute(tx);
    });
  }

  /**
   * A report query in its own read transaction with settings for it: the planner's guess of
   * generate_series' rows (1,000 a call) makes it JIT-compile a query that runs in tens of
   * ms (40 ms of JIT), its hash aggregates over ~100,000 rollup rows spilled to disk, and
   * (below) it chose a merge join.
   */
  private report<T>(run: (tx: Db) => Promise<T>): Promise<T> {
    return this.db.transaction().execute(async (tx) => {
      await sql`set local jit = off`.execute(tx);
      await sql`set local work_mem = '64MB'`.execute(tx);
      // It underestimates the groups by 2-3x and merge-joins them to the day prices after
      // sorting 180,000 rows (0.3 s); a hash of the few thousand day prices is what fits.
      await sql`set local enable_mergejoin = off`.execute(tx);
      return run(tx);
    });
  }

  /**
   * `d` and `pd`: the price of every (tenant, type, day) of the scope. With both bounds, from
   * a calendar of the range (tenants × types × days: known before `g`, so `g` is read once and
   * hash-joined to it; 180,000 rollup rows by user took a 0.3 s sort to merge-join otherwise);
   * without, from the days `g` holds.
   */
  private dayPrices(s: UsageScope, g: string): RawBuilder<unknown> {
    const days =
      s.from && s.to
        ? sql`select t.id as tenant_id, ty.gpu_type, c.day::date as day from tenants t
               cross join (values ('h100'), ('h800')) as ty(gpu_type)
               cross join generate_series(${s.from}::date, ${s.to}::date - 1, interval '1 day') as c(day)
               ${s.tenantId ? sql`where t.id = ${s.tenantId}::uuid` : sql``}`
        : sql`select distinct tenant_id, gpu_type, day from ${sql.raw(g)}`;
    return sql`d as (${days}), pd as (select d.*, pr.usd, pr.effective_from, pr.contract from d left join lateral (${this.priceOf('d')}) pr on true)`;
  }

  /** The price in effect for row `g` (tenant_id, gpu_type, day): the tenant's own once in effect, else the default. */
  private priceOf(g: string): RawBuilder<unknown> {
    return sql.raw(`
      select p.usd_per_gpu_hour as usd, p.effective_from, p.tenant_id is not null as contract from gpu_prices p
      where p.gpu_type = ${g}.gpu_type and (p.tenant_id = ${g}.tenant_id or p.tenant_id is null) and p.effective_from <= ${g}.day
      order by p.tenant_id is null, p.effective_from desc limit 1`);
  }

  /** Filters of a scope on alias `a` (a usage_daily or usage_ledger row). */
  private filters(a: string, s: UsageScope): RawBuilder<unknown> {
    const parts = [sql`true`];
    if (s.tenantId) parts.push(sql`${sql.raw(a)}.tenant_id = ${s.tenantId}::uuid`);
    if (s.userId) parts.push(sql`${sql.raw(a)}.user_id = ${s.userId}::uuid`);
    if (s.gpuType) parts.push(sql`${sql.raw(a)}.gpu_type = ${s.gpuType}::text`);
    if (s.jobIds) parts.push(sql`${sql.raw(a)}.job_id = any(${s.jobIds}::uuid[])`);
    return sql.join(parts, sql` and `);
  }

  /** [from, to) as instants (UTC midnights); unbounded sides as ±infinity. */
  private bounds(s: UsageScope) {
    return {
      lo: s.from ? sql`((${s.from}::date)::timestamp at time zone 'UTC')` : sql`'-infinity'::timestamptz`,
      hi: s.to ? sql`((${s.to}::date)::timestamp at time zone 'UTC')` : sql`'infinity'::timestamptz`,
    };
  }

  /** Open attempts (or every attempt with `all`) cut into UTC days within the scope, ending at `now` while open. */
  private ledgerPieces(s: UsageScope, now: Date, all: boolean): RawBuilder<unknown> {
    const { lo, hi } = this.bounds(s);
    const end = sql`least(coalesce(l.ended_at, greatest(${now}::timestamptz, l.started_at)), ${hi})`;
    const start = sql`greatest(l.started_at, ${lo})`;
    return sql`
      select l.tenant_id, l.user_id, l.gpu_type, l.job_id, d.day::date as day,
             l.gpus * extract(epoch from least(c.e, (d.day + interval '1 day') at time zone 'UTC') - greatest(c.s, d.day at time zone 'UTC')) as gpu_seconds,
             ${all ? sql`l.idle_gpu_seconds * extract(epoch from least(c.e, (d.day + interval '1 day') at time zone 'UTC') - greatest(c.s, d.day at time zone 'UTC')) / nullif(extract(epoch from c.whole), 0)` : sql`0`} as idle_gpu_seconds
      from usage_ledger l
      cross join lateral (select ${start} as s, ${end} as e, coalesce(l.ended_at, greatest(${now}::timestamptz, l.started_at)) - l.started_at as whole) c
      cross join lateral generate_series(date_trunc('day', c.s at time zone 'UTC'), c.e at time zone 'UTC', interval '1 day') as d(day)
      where ${this.filters('l', s)} and l.started_at < ${hi} and (l.ended_at is null or l.ended_at > ${lo}) and c.e > c.s
        and least(c.e, (d.day + interval '1 day') at time zone 'UTC') > greatest(c.s, d.day at time zone 'UTC')
        ${all ? sql`` : sql`and l.ended_at is null`}`;
  }

  private attemptPieces(s: UsageScope, now: Date): RawBuilder<unknown> {
    return this.ledgerPieces(s, now, true);
  }

  /** The rollup's days within the scope, plus the open attempts (not in the rollup until they end). */
  private dailyPieces(s: UsageScope, now: Date, byUser: boolean): RawBuilder<unknown> {
    const range = [s.from ? sql`u.day >= ${s.from}::date` : sql`true`, s.to ? sql`u.day < ${s.to}::date` : sql`true`];
    // Without a user key or filter, the rollup by tenant: rows per tenant, type and day only.
    const rollup = byUser || s.userId ? sql`usage_daily u` : sql`(select *, null::uuid as user_id from usage_tenant_daily) u`;
    return sql`
      select u.tenant_id, u.user_id, u.gpu_type, null::uuid as job_id, u.day, u.gpu_seconds, u.idle_gpu_seconds
      from ${rollup} where ${this.filters('u', s)} and ${sql.join(range, sql` and `)}
      union all
      ${this.ledgerPieces(s, now, false)}`;
  }

  private async names(keys: UsageKey[], rows: Record<string, unknown>[]) {
    const ids = (k: UsageKey) => {
      const i = keys.indexOf(k);
      return i < 0 ? [] : [...new Set(rows.map((r) => String(r[`k${i}`])))];
    };
    const [tenants, users, jobs] = await Promise.all([
      ids('tenant').length ? this.db.selectFrom('tenants').select(['id', 'name']).where('id', 'in', ids('tenant')).execute() : [],
      ids('user').length ? this.db.selectFrom('users').select(['id', 'name']).where('id', 'in', ids('user')).execute() : [],
      ids('job').length ? this.db.selectFrom('jobs').select(['id', 'name']).where('id', 'in', ids('job')).execute() : [],
    ]);
    return {
      tenants: new Map(tenants.map((t) => [t.id, t.name])),
      users: new Map(users.map((u) => [u.id, u.name])),
      jobs: new Map(jobs.map((j) => [j.id, j.name])),
    };
  }
}

const pad = (n: number) => String(n).padStart(2, '0');

export function nextMonth(month: string): string {
  const [y, m] = month.split('-').map(Number) as [number, number];
  return m === 12 ? `${y + 1}-01-01` : `${y}-${pad(m + 1)}-01`;
}

export function addDays(day: string, n: number): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + n * 86_400_000).toISOString().slice(0, 10);
}
