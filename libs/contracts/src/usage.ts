import { z } from 'zod';
import { GpuModel, JobState, Slug, text } from './common';

/**
 * Accounting (issue 15): usage, prices, statements, history, quota and idle jobs. Times are
 * UTC; dates `YYYY-MM-DD`, `from` inclusive and `to` exclusive; money in USD.
 */
const isRealDate = (s: string) => {
  const t = Date.parse(`${s}T00:00:00Z`);
  return Number.isFinite(t) && new Date(t).toISOString().slice(0, 10) === s;
};
export const IsoDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'a date as YYYY-MM-DD').refine(isRealDate, 'a date that exists');
export const IsoMonth = z
  .string()
  .regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'a month as YYYY-MM')
  .refine((m) => isRealDate(`${m}-01`), 'a month that exists');

export const USAGE_KEYS = ['tenant', 'user', 'gpuType', 'job', 'day', 'month'] as const;
export const UsageKey = z.enum(USAGE_KEYS);
export type UsageKey = z.infer<typeof UsageKey>;

/** `groupBy=tenant,month`: keys comma-separated, each once. */
const GroupBy = text()
  .max(100)
  .transform((s, ctx) => {
    const keys = s.split(',').map((k) => k.trim()).filter(Boolean);
    for (const k of keys)
      if (!(USAGE_KEYS as readonly string[]).includes(k)) {
        ctx.addIssue({ code: 'custom', message: `unknown key ${JSON.stringify(k)}: one or more of ${USAGE_KEYS.join(', ')}, comma-separated` });
        return z.NEVER;
      }
    if (new Set(keys).size !== keys.length) {
      ctx.addIssue({ code: 'custom', message: 'a key appears once' });
      return z.NEVER;
    }
    return keys as UsageKey[];
  });

const Uuid = z.string().uuid('a full job id');

export const UsageQuery = z
  .object({
    /** Default: the first day of the current month. */
    from: IsoDate.optional(),
    /** Default: tomorrow (today included). */
    to: IsoDate.optional(),
    groupBy: GroupBy.default([]),
    tenant: Slug.optional(),
    user: Slug.optional(),
    gpuType: GpuModel.optional(),
    job: Uuid.optional(),
  })
  .strict();
export type UsageQuery = z.infer<typeof UsageQuery>;

const Totals = {
  gpuHours: z.number(),
  cost: z.number(),
  idleGpuHours: z.number(),
  idleCost: z.number(),
  /** GPU-hours on days no price was in effect for (they cost 0 here). */
  unpricedGpuHours: z.number(),
};
export const UsageRowView = z.object({
  tenant: z.string().optional(),
  user: z.string().optional(),
  gpuType: GpuModel.optional(),
  job: z.string().optional(),
  jobName: z.string().optional(),
  day: z.string().optional(),
  month: z.string().optional(),
  ...Totals,
});
export type UsageRowView = z.infer<typeof UsageRowView>;

export const UsageView = z.object({
  from: z.string(),
  to: z.string(),
  groupBy: z.array(UsageKey),
  currency: z.literal('USD'),
  /** Running attempts are counted up to this instant. */
  asOf: z.string(),
  rows: z.array(UsageRowView),
  total: z.object(Totals),
});
export type UsageView = z.infer<typeof UsageView>;

export const PriceInput = z
  .object({
    gpuType: GpuModel,
    /** A contract price for this tenant; omitted: the default price of the type. */
    tenant: Slug.optional(),
    /** From this UTC date on (until the next price of the same type and tenant); today or later. */
    effectiveFrom: IsoDate,
    usdPerGpuHour: z.number().min(0).max(10_000),
  })
  .strict();
export const SetPrices = z.object({ prices: z.array(PriceInput).min(1).max(100) }).strict();
export type SetPrices = z.infer<typeof SetPrices>;

export const PriceView = z.object({
  gpuType: GpuModel,
  tenant: z.string().nullable(),
  effectiveFrom: z.string(),
  usdPerGpuHour: z.number(),
});
export type PriceView = z.infer<typeof PriceView>;

export const StatementQuery = z.object({ month: IsoMonth }).strict();
export type StatementQuery = z.infer<typeof StatementQuery>;

export const StatementLineView = z.object({
  gpuType: GpuModel,
  from: z.string(),
  to: z.string(),
  usdPerGpuHour: z.number().nullable(),
  priceEffectiveFrom: z.string().nullable(),
  contract: z.boolean(),
  gpuHours: z.number(),
  cost: z.number(),
  idleGpuHours: z.number(),
  idleCost: z.number(),
});
export const StatementView = z.object({
  tenant: z.string(),
  month: z.string(),
  currency: z.literal('USD'),
  asOf: z.string(),
  lines: z.array(StatementLineView),
  total: z.object({ gpuHours: z.number(), cost: z.number(), idleGpuHours: z.number(), idleCost: z.number() }),
});
export type StatementView = z.infer<typeof StatementView>;

export const HistoryQuery = z
  .object({
    from: IsoDate.optional(),
    to: IsoDate.optional(),
    tenant: Slug.optional(),
    user: Slug.optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();
export type HistoryQuery = z.infer<typeof HistoryQuery>;

export const HistoryItem = z.object({
  id: z.string(),
  name: z.string(),
  tenant: z.string(),
  user: z.string(),
  state: JobState,
  exitCode: z.number().nullable(),
  submittedAt: z.string(),
  endedAt: z.string().nullable(),
  attempts: z.number(),
  gpus: z.number(),
  gpuType: GpuModel.nullable(),
  elapsedSeconds: z.number(),
  gpuHours: z.number(),
  cost: z.number(),
  idleGpuHours: z.number(),
  meanUtilization: z.number().nullable(),
});
export type HistoryItem = z.infer<typeof HistoryItem>;

export const QuotaQuery = z.object({ tenant: Slug.optional() }).strict();
export type QuotaQuery = z.infer<typeof QuotaQuery>;
export const QuotaView = z.object({
  tenant: z.string(),
  month: z.string(),
  currency: z.literal('USD'),
  /** Whose use this month's figures are: the tenant's, or (for a researcher) the caller's own. */
  monthOf: z.enum(['tenant', 'user']),
  types: z.array(
    z.object({ gpuType: GpuModel, held: z.number(), guaranteed: z.number(), limit: z.number(), monthGpuHours: z.number(), monthCost: z.number() }),
  ),
});
export type QuotaView = z.infer<typeof QuotaView>;

export const IdleJobsQuery = z
  .object({
    tenant: Slug.optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(50),
  })
  .strict();
export type IdleJobsQuery = z.infer<typeof IdleJobsQuery>;
export const IdleJobView = z.object({
  id: z.string(),
  name: z.string(),
  tenant: z.string(),
  user: z.string(),
  attempt: z.number(),
  gpus: z.number(),
  gpuType: GpuModel,
  startedAt: z.string(),
  /** Since when all its GPUs have been under the idle ratio (null: one is busy now). */
  idleSince: z.string().nullable(),
  idleSeconds: z.number(),
  idleGpuHours: z.number(),
  /** Share of its sampled GPU time under the idle ratio. */
  idleShare: z.number().nullable(),
  gpuHours: z.number(),
  costSoFar: z.number(),
  idleCostSoFar: z.number(),
});
export type IdleJobView = z.infer<typeof IdleJobView>;

/** A tenant's idle policy: off unless set; null turns a step off. */
export const IdlePolicy = z
  .object({
    /** Seconds a running job's GPUs may all sit idle before its reason says so (and when it will be cancelled). */
    notifyAfterSeconds: z.number().int().min(60).max(30 * 24 * 3600).nullable(),
    /** Seconds all idle after which it is cancelled, the reason recorded on the job. */
    cancelAfterSeconds: z.number().int().min(60).max(30 * 24 * 3600).nullable(),
  })
  .strict()
  .refine((p) => p.notifyAfterSeconds === null || p.cancelAfterSeconds === null || p.notifyAfterSeconds < p.cancelAfterSeconds, {
    message: 'must be more than notifyAfterSeconds: the notice comes first',
    path: ['cancelAfterSeconds'],
  });
export type IdlePolicy = z.infer<typeof IdlePolicy>;
export const IdlePolicyView = z.object({ tenant: z.string(), notifyAfterSeconds: z.number().nullable(), cancelAfterSeconds: z.number().nullable() });
export type IdlePolicyView = z.infer<typeof IdlePolicyView>;
