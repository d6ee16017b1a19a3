/**
 * `nuri usage` (sreport-like), `nuri history` (sacct-like) and `nuri quota` over the usage
 * API. Dates are UTC days; --from is inclusive, --to exclusive, as the API takes them.
 */
import type { HistoryItem, QuotaView, UsageView } from '@nuri/contracts';
import type { Ctx } from './commands';
import { UsageError } from './errors';
import { clock, shortId, table } from './format';

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const BY = ['user', 'tenant', 'day', 'month', 'type', 'job'] as const;
/** The CLI's --by names to the API's groupBy keys. */
const KEY: Record<(typeof BY)[number], string> = { user: 'user', tenant: 'tenant', day: 'day', month: 'month', type: 'gpuType', job: 'job' };

const json = (ctx: Ctx, v: unknown) => ctx.out(JSON.stringify(v, null, 2));
const money = (usd: number) => `$${usd.toFixed(2)}`;
const hours = (h: number) => h.toFixed(h >= 100 ? 0 : 2);
const pct = (x: number | null) => (x === null ? '-' : `${Math.round(x * 100)}%`);

function dates(o: { from?: string; to?: string }, q: URLSearchParams): void {
  for (const k of ['from', 'to'] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (!DATE.test(v)) throw new UsageError(`--${k}: "${v}" is not a date as YYYY-MM-DD (UTC)`);
    q.set(k, v);
  }
}

/** RFC 4180: quoted when it holds a comma, quote or newline. */
const csvCell = (v: unknown) => {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};
const csv = (ctx: Ctx, rows: unknown[][]) => {
  for (const r of rows) ctx.out(r.map(csvCell).join(','));
};

export interface UsageOpts {
  by?: string;
  from?: string;
  to?: string;
  user?: string;
  tenant?: string;
  csv?: boolean;
  json?: boolean;
}

export async function usage(ctx: Ctx, o: UsageOpts): Promise<void> {
  const by = (o.by ?? 'user').split(',').map((s) => s.trim());
  for (const b of by) if (!(BY as readonly string[]).includes(b)) throw new UsageError(`--by: "${b}" is not one of ${BY.join(', ')} (comma-separated)`);
  const q = new URLSearchParams({ groupBy: by.map((b) => KEY[b as (typeof BY)[number]]).join(',') });
  dates(o, q);
  if (o.user) q.set('user', o.user);
  if (o.tenant) q.set('tenant', o.tenant);
  const v = await ctx.client().call<UsageView>('GET', `/v1/usage?${q}`);
  if (o.json) return json(ctx, v);
  const keyOf = (r: UsageView['rows'][number], b: string): string =>
    b === 'type' ? (r.gpuType ?? '') : b === 'job' ? `${shortId(r.job ?? '')} ${r.jobName ?? ''}` : String((r as Record<string, unknown>)[b] ?? '');
  const head = [...by.map((b) => b.toUpperCase()), 'GPU-HOURS', 'COST', 'IDLE GPU-HOURS', 'IDLE COST', 'IDLE %'];
  if (o.csv) {
    csv(ctx, [[...by, 'gpuHours', 'costUsd', 'idleGpuHours', 'idleCostUsd'], ...v.rows.map((r) => [...by.map((b) => keyOf(r, b)), r.gpuHours, r.cost, r.idleGpuHours, r.idleCost])]);
    return;
  }
  ctx.out(`Usage ${v.from} to ${v.to} (UTC, to exclusive; running jobs up to ${v.asOf.slice(0, 16).replace('T', ' ')}), in ${v.currency}`);
  const line = (keys: string[], t: { gpuHours: number; cost: number; idleGpuHours: number; idleCost: number }) => [
    ...keys,
    hours(t.gpuHours),
    money(t.cost),
    hours(t.idleGpuHours),
    money(t.idleCost),
    t.gpuHours > 0 ? pct(t.idleGpuHours / t.gpuHours) : '-',
  ];
  const rows = [head, ...v.rows.map((r) => line(by.map((b) => keyOf(r, b)), r)), line(['TOTAL', ...by.slice(1).map(() => '')], v.total)];
  for (const l of table(rows)) ctx.out(l);
  if (v.total.unpricedGpuHours > 0) ctx.err(`nuri: ${hours(v.total.unpricedGpuHours)} GPU-hours fell on days with no price set (counted at $0)`);
}

export interface HistoryOpts {
  from?: string;
  to?: string;
  user?: string;
  tenant?: string;
  limit?: string;
  csv?: boolean;
  json?: boolean;
}

export async function history(ctx: Ctx, o: HistoryOpts): Promise<void> {
  const q = new URLSearchParams();
  dates(o, q);
  if (o.user) q.set('user', o.user);
  if (o.tenant) q.set('tenant', o.tenant);
  if (o.limit !== undefined) {
    if (!/^\d+$/.test(o.limit) || Number(o.limit) < 1 || Number(o.limit) > 1000) throw new UsageError(`--limit: "${o.limit}" is not a whole number from 1 to 1000`);
    q.set('limit', o.limit);
  }
  const items = await ctx.client().call<HistoryItem[]>('GET', `/v1/usage/history?${q}`);
  if (o.json) return json(ctx, items);
  if (o.csv) {
    const cols = ['id', 'name', 'user', 'tenant', 'state', 'exitCode', 'endedAt', 'attempts', 'gpus', 'gpuType', 'elapsedSeconds', 'gpuHours', 'cost', 'meanUtilization'] as const;
    csv(ctx, [[...cols], ...items.map((i) => cols.map((c) => i[c]))]);
    return;
  }
  const rows = [['ID', 'NAME', 'USER', 'STATE', 'EXIT', 'END (UTC)', 'ELAPSED', 'GPUS', 'GPU-HOURS', 'COST', 'UTIL', 'TRIES']];
  for (const i of items)
    rows.push([
      shortId(i.id),
      i.name,
      i.user,
      i.state,
      i.exitCode === null ? '-' : String(i.exitCode),
      i.endedAt ? i.endedAt.slice(0, 16).replace('T', ' ') : '-',
      clock(i.elapsedSeconds),
      `${i.gpus}${i.gpuType ? ` ${i.gpuType}` : ''}`,
      hours(i.gpuHours),
      money(i.cost),
      pct(i.meanUtilization),
      String(i.attempts),
    ]);
  for (const l of table(rows)) ctx.out(l);
}

export async function quota(ctx: Ctx, o: { tenant?: string; json?: boolean }): Promise<void> {
  const q = new URLSearchParams(o.tenant ? { tenant: o.tenant } : {});
  const v = await ctx.client().call<QuotaView>('GET', `/v1/usage/quota?${q}`);
  if (o.json) return json(ctx, v);
  ctx.out(`Tenant ${v.tenant}; ${v.month} so far: ${v.monthOf === 'user' ? 'your own jobs' : 'all its jobs'}, in ${v.currency}`);
  const rows = [['TYPE', 'HELD', 'GUARANTEED', 'LIMIT', 'BORROWED', 'MONTH GPU-HOURS', 'MONTH COST']];
  for (const t of v.types) rows.push([t.gpuType, String(t.held), String(t.guaranteed), String(t.limit), String(Math.max(0, t.held - t.guaranteed)), hours(t.monthGpuHours), money(t.monthCost)]);
  for (const l of table(rows)) ctx.out(l);
}
