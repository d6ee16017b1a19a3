import { Injectable } from '@nestjs/common';
import type {
  HistoryItem,
  HistoryQuery,
  IdlePolicy,
  IdlePolicyView,
  IdleJobView,
  IdleJobsQuery,
  QuotaQuery,
  QuotaView,
  StatementView,
  UsageQuery,
  UsageRowView,
  UsageView,
} from '@nuri/contracts';
import { addDays, IdentityRepository, LedgerRepository, nextMonth, Principal, TenantsRepository, UsageRow } from '@nuri/db';
import { Clock } from '../../core/clock';
import { isOperator } from '../../auth/principal';
import { forbidden, invalidField, notFound } from '../common/errors';

const hours = (s: number) => s / 3600;
const today = (now: Date) => now.toISOString().slice(0, 10);

/** Whom a caller's usage read covers: operators anyone; tenant admins their tenant; researchers themselves. */
export interface UsageScopeIds {
  tenantId?: string;
  userId?: string;
}

/**
 * Usage, cost, statements, history, quota and idle jobs from the usage ledger. Another
 * tenant (or its user) is 404, as everywhere; a researcher asking for a colleague's usage is
 * 403: only tenant admins see what the tenant's people cost.
 */
@Injectable()
export class UsageService {
  constructor(
    private readonly ledger: LedgerRepository,
    private readonly tenants: TenantsRepository,
    private readonly identity: IdentityRepository,
    private readonly clock: Clock,
  ) {}

  async usage(caller: Principal, q: UsageQuery): Promise<UsageView> {
    const now = this.clock.now();
    const from = q.from ?? `${today(now).slice(0, 7)}-01`;
    const to = q.to ?? addDays(today(now), 1);
    if (from >= to) throw invalidField('to', `must be after from (${from})`);
    const scope = await this.scope(caller, q);
    if (q.job) {
      const attempts = await this.ledger.attemptsOf(q.job);
      const first = attempts[0];
      // A job the caller may not see is as absent as one that never ran.
      if (first && ((scope.tenantId && first.tenant_id !== scope.tenantId) || (scope.userId && first.user_id !== scope.userId))) throw notFound(`no job ${q.job}`);
    }
    const rows = await this.ledger.usage(q.groupBy, { from, to, ...scope, gpuType: q.gpuType, jobIds: q.job ? [q.job] : undefined }, now);
    return { from, to, groupBy: q.groupBy, currency: 'USD', asOf: now.toISOString(), rows: rows.map(rowView), total: totalOf(rows) };
  }

  async statement(caller: Principal, tenantName: string, month: string): Promise<StatementView> {
    const t = await this.tenants.findByName(tenantName);
    if (!t || !(isOperator(caller) || t.id === caller.tenantId)) throw notFound(`no tenant ${tenantName}`);
    if (caller.role === 'researcher') throw forbidden("a tenant's statement is for its tenant admins and operators");
    const now = this.clock.now();
    const lines = (await this.ledger.statement(t.id, month, now)).map((l) => ({
      gpuType: l.gpuType,
      from: l.from,
      to: l.to,
      usdPerGpuHour: l.usdPerGpuHour,
      priceEffectiveFrom: l.priceEffectiveFrom,
      contract: l.contract,
      gpuHours: hours(l.gpuSeconds),
      cost: l.cost,
      idleGpuHours: hours(l.idleGpuSeconds),
      idleCost: l.idleCost,
    }));
    const sum = (f: (l: (typeof lines)[number]) => number) => lines.reduce((a, l) => a + f(l), 0);
    return {
      tenant: t.name,
      month,
      currency: 'USD',
      asOf: now.toISOString(),
      lines,
      total: { gpuHours: sum((l) => l.gpuHours), cost: sum((l) => l.cost), idleGpuHours: sum((l) => l.idleGpuHours), idleCost: sum((l) => l.idleCost) },
    };
  }

  async history(caller: Principal, q: HistoryQuery): Promise<HistoryItem[]> {
    if (q.from && q.to && q.from >= q.to) throw invalidField('to', `must be after from (${q.from})`);
    const scope = await this.scope(caller, q);
    const rows = await this.ledger.history({ ...scope, from: q.from, to: q.to, limit: q.limit });
    const ran = rows.filter((r) => r.attempts > 0).map((r) => r.id);
    const costs = new Map(
      ran.length ? (await this.ledger.usage(['job'], { jobIds: ran }, this.clock.now())).map((c) => [c.job!, c.cost]) : [],
    );
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      tenant: r.tenant,
      user: r.user,
      state: r.state,
      exitCode: r.exitCode,
      submittedAt: r.submittedAt.toISOString(),
      endedAt: r.endedAt?.toISOString() ?? null,
      attempts: r.attempts,
      gpus: r.gpus,
      gpuType: r.gpuType,
      elapsedSeconds: r.elapsedSeconds,
      gpuHours: hours(r.gpuSeconds),
      cost: costs.get(r.id) ?? 0,
      idleGpuHours: hours(r.idleGpuSeconds),
      meanUtilization: r.meanUtilization,
    }));
  }

  /** What the tenant holds now against its quota, and this month's use (a researcher's own, others the tenant's). */
  async quota(caller: Principal, q: QuotaQuery): Promise<QuotaView> {
    const name = q.tenant ?? caller.tenantName;
    if (!name) throw invalidField('tenant', 'operators name the tenant (?tenant=)');
    const t = await this.tenants.findByName(name);
    if (!t || !(isOperator(caller) || t.id === caller.tenantId)) throw notFound(`no tenant ${name}`);
    const now = this.clock.now();
    const month = today(now).slice(0, 7);
    const own = caller.role === 'researcher';
    const [held, used] = await Promise.all([
      this.ledger.heldNow(t.id),
      this.ledger.usage(['gpuType'], { tenantId: t.id, userId: own ? caller.userId : undefined, from: `${month}-01`, to: nextMonth(month) }, now),
    ]);
    const types = [...new Set([...t.quotas.map((x) => x.gpuType), ...held.keys()])].sort();
    return {
      tenant: t.name,
      month,
      currency: 'USD',
      monthOf: own ? 'user' : 'tenant',
      types: types.map((gpuType) => {
        const quota = t.quotas.find((x) => x.gpuType === gpuType);
        const u = used.find((x) => x.gpuType === gpuType);
        return { gpuType, held: held.get(gpuType) ?? 0, guaranteed: quota?.guaranteed ?? 0, limit: quota?.limit ?? 0, monthGpuHours: hours(u?.gpuSeconds ?? 0), monthCost: u?.cost ?? 0 };
      }),
    };
  }

  /** Running jobs holding idle GPUs, idle longest first, with what they cost so far. */
  async idleJobs(caller: Principal, q: IdleJobsQuery): Promise<IdleJobView[]> {
    const scope = await this.scope(caller, { tenant: q.tenant });
    const now = this.clock.now();
    const rows = await this.ledger.idleAttempts({ tenantId: scope.tenantId, limit: q.limit }, now);
    const costs = new Map(
      rows.length ? (await this.ledger.usage(['job'], { jobIds: rows.map((r) => r.jobId) }, now)).map((c) => [c.job!, c]) : [],
    );
    return rows.map((r) => {
      const c = costs.get(r.jobId);
      const idleShare = r.sampledGpuSeconds > 0 ? r.idleGpuSeconds / r.sampledGpuSeconds : null;
      return {
        id: r.jobId,
        name: r.name,
        tenant: r.tenant,
        user: r.user,
        attempt: r.attempt,
        gpus: r.gpus,
        gpuType: r.gpuType,
        startedAt: r.startedAt.toISOString(),
        idleSince: r.idleSince?.toISOString() ?? null,
        idleSeconds: r.idleSince ? Math.max(0, (now.getTime() - r.idleSince.getTime()) / 1000) : 0,
        idleGpuHours: hours(r.idleGpuSeconds),
        idleShare,
        gpuHours: hours(r.gpuSeconds),
        // Cost of the job so far (every attempt); its idle part at the same prices, in proportion.
        costSoFar: c?.cost ?? 0,
        idleCostSoFar: c && c.gpuSeconds > 0 ? (c.cost * r.idleGpuSeconds) / c.gpuSeconds : 0,
      };
    });
  }

  /** A tenant's idle policy: its members see it. */
  async idlePolicy(caller: Principal, tenantName: string): Promise<IdlePolicyView> {
    const t = await this.tenants.findByName(tenantName);
    if (!t || !(isOperator(caller) || t.id === caller.tenantId)) throw notFound(`no tenant ${tenantName}`);
    return { tenant: t.name, ...(await this.ledger.idlePolicy(t.id)) };
  }

  /** Sets a tenant's idle policy: operators, or that tenant's admins. */
  async setIdlePolicy(caller: Principal, tenantName: string, p: IdlePolicy): Promise<IdlePolicyView> {
    const t = await this.tenants.findByName(tenantName);
    if (!t || !(isOperator(caller) || t.id === caller.tenantId)) throw notFound(`no tenant ${tenantName}`);
    if (caller.role === 'researcher') throw forbidden("a tenant's idle policy is set by its tenant admins and operators");
    await this.ledger.setIdlePolicy(t.id, p, this.clock.now());
    return { tenant: t.name, ...p };
  }

  /** The tenant and user a caller's read covers, from the names asked for (404 beyond the caller's tenant, 403 for a colleague). */
  async scope(caller: Principal, q: { tenant?: string; user?: string }): Promise<UsageScopeIds> {
    let tenantId: string | undefined;
    if (q.tenant) {
      const t = await this.tenants.findByName(q.tenant);
      if (!t || !(isOperator(caller) || t.id === caller.tenantId)) throw notFound(`no tenant ${q.tenant}`);
      tenantId = t.id;
    }
    if (!isOperator(caller)) tenantId = caller.tenantId ?? undefined;
    let userId: string | undefined;
    if (q.user) {
      const u = await this.identity.findUser(q.user);
      if (!u || !(isOperator(caller) || u.tenantId === caller.tenantId)) throw notFound(`no user ${q.user}`);
      if (caller.role === 'researcher' && u.id !== caller.userId) throw forbidden("researchers see their own usage only; a tenant admin sees the tenant's");
      userId = u.id;
    }
    if (caller.role === 'researcher') userId = caller.userId;
    return { tenantId, userId };
  }
}

function rowView(r: UsageRow): UsageRowView {
  return {
    ...(r.tenant !== undefined ? { tenant: r.tenant } : {}),
    ...(r.user !== undefined ? { user: r.user } : {}),
    ...(r.gpuType !== undefined ? { gpuType: r.gpuType } : {}),
    ...(r.job !== undefined ? { job: r.job, jobName: r.jobName ?? '' } : {}),
    ...(r.day !== undefined ? { day: r.day } : {}),
    ...(r.month !== undefined ? { month: r.month } : {}),
    gpuHours: hours(r.gpuSeconds),
    cost: r.cost,
    idleGpuHours: hours(r.idleGpuSeconds),
    idleCost: r.idleCost,
    unpricedGpuHours: hours(r.unpricedGpuSeconds),
  };
}

function totalOf(rows: UsageRow[]): UsageView['total'] {
  const sum = (f: (r: UsageRow) => number) => rows.reduce((a, r) => a + f(r), 0);
  return {
    gpuHours: hours(sum((r) => r.gpuSeconds)),
    cost: sum((r) => r.cost),
    idleGpuHours: hours(sum((r) => r.idleGpuSeconds)),
    idleCost: sum((r) => r.idleCost),
    unpricedGpuHours: hours(sum((r) => r.unpricedGpuSeconds)),
  };
}

/** RFC 4180 CSV: a header of the columns, a line per row; fields with a comma, quote or newline quoted. */
export function toCsv(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => {
    const s = v === null || v === undefined ? '' : typeof v === 'number' ? String(Math.round(v * 1e6) / 1e6) : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [columns.join(','), ...rows.map((r) => columns.map((c) => cell(r[c])).join(','))].join('\r\n') + '\r\n';
}
