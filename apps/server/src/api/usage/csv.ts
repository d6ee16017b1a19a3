import type { HistoryItem, StatementView, UsageView } from '@nuri/contracts';
import type { FastifyReply } from 'fastify';
import { toCsv } from './usage.service';

/** `Accept: text/csv` gets CSV (a spreadsheet or an invoice system reads it), anything else JSON. */
export function negotiate<T>(res: FastifyReply, accept: string | undefined, view: T, csv: (v: T) => string): T | string {
  if (!accept || !/\btext\/csv\b/i.test(accept)) return view;
  res.type('text/csv; charset=utf-8');
  return csv(view);
}

export const usageCsv = (v: UsageView) =>
  toCsv(
    v.rows,
    [...v.groupBy.flatMap((k) => (k === 'job' ? ['job', 'jobName'] : [k])), 'gpuHours', 'cost', 'idleGpuHours', 'idleCost', 'unpricedGpuHours'],
  );

export const statementCsv = (v: StatementView) =>
  toCsv(
    v.lines.map((l) => ({ tenant: v.tenant, month: v.month, currency: v.currency, ...l })),
    ['tenant', 'month', 'gpuType', 'from', 'to', 'usdPerGpuHour', 'priceEffectiveFrom', 'contract', 'gpuHours', 'cost', 'idleGpuHours', 'idleCost', 'currency'],
  );

export const historyCsv = (v: HistoryItem[]) =>
  toCsv(v, ['id', 'name', 'tenant', 'user', 'state', 'exitCode', 'submittedAt', 'endedAt', 'attempts', 'gpus', 'gpuType', 'elapsedSeconds', 'gpuHours', 'cost', 'idleGpuHours', 'meanUtilization']);
