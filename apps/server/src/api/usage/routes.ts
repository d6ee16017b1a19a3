import { HistoryItem, HistoryQuery, IdlePolicy, IdlePolicyView, IdleJobsQuery, IdleJobView, NameParams, PriceView, QuotaQuery, QuotaView, SetPrices, StatementQuery, StatementView, UsageQuery, UsageView } from '@nuri/contracts';
import { z } from 'zod';
import type { RouteDoc } from '../openapi/routes';

/** Accounting routes (issue 15), documented with the rest of the API. */
export const USAGE_ROUTES: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/usage',
    summary:
      'GPU-hours, cost, idle GPU-hours and idle cost over [from, to) (UTC dates; default this month), grouped by any of tenant, user, gpuType, job, day, month (?groupBy=tenant,month); running jobs count up to now. Operators: all; tenant admins: their tenant; researchers: their own jobs (a colleague: 403). CSV with Accept: text/csv',
    query: UsageQuery,
    responses: { 200: UsageView },
  },
  {
    method: 'get',
    path: '/v1/usage/history',
    summary: 'Finished jobs (sacct-like), newest end first: elapsed, GPU-hours, cost, mean utilization, exit code; scoped as /v1/usage. CSV with Accept: text/csv',
    query: HistoryQuery,
    responses: { 200: z.array(HistoryItem) },
  },
  { method: 'get', path: '/v1/usage/quota', summary: "GPUs held now against guarantee and limit per type, and this month's GPU-hours and cost (a researcher's own)", query: QuotaQuery, responses: { 200: QuotaView } },
  {
    method: 'get',
    path: '/v1/usage/idle-jobs',
    summary: 'Running jobs holding idle GPUs (under NURI_IDLE_UTILIZATION_RATIO), idle longest first, with their cost so far',
    auth: ['operator', 'tenant-admin'],
    query: IdleJobsQuery,
    responses: { 200: z.array(IdleJobView) },
  },
  {
    method: 'get',
    path: '/v1/tenants/:name/statement',
    summary: "A tenant's monthly statement (?month=YYYY-MM): lines per GPU type and price period; tenant admins and operators. CSV with Accept: text/csv",
    params: NameParams,
    query: StatementQuery,
    responses: { 200: StatementView },
  },
  { method: 'get', path: '/v1/tenants/:name/idle-policy', summary: "A tenant's idle policy (nulls: off, the default)", params: NameParams, responses: { 200: IdlePolicyView } },
  {
    method: 'put',
    path: '/v1/tenants/:name/idle-policy',
    summary: "Set a tenant's idle policy: a running job whose GPUs all sat under NURI_IDLE_UTILIZATION_RATIO for notifyAfterSeconds is told (its reason), for cancelAfterSeconds cancelled with that reason; null turns a step off",
    auth: ['operator', 'tenant-admin'],
    params: NameParams,
    body: IdlePolicy,
    responses: { 200: IdlePolicyView },
  },
  { method: 'get', path: '/v1/prices', summary: 'GPU prices per type (and contract prices per tenant), each from a UTC date on', responses: { 200: z.array(PriceView) } },
  {
    method: 'put',
    path: '/v1/prices',
    summary: 'Set prices: per GPU type, optionally per tenant, effective from a date (today or later: the past is never repriced)',
    auth: ['operator'],
    body: SetPrices,
    responses: { 200: z.array(PriceView) },
  },
];
