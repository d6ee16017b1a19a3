/**
 * Quotas from a file, so an operator can replay a past workload against the quotas they are
 * thinking of setting (the brief's "replays past workload against new quotas"). The file maps
 * tenant names to the same shape the API takes (POST /v1/tenants, PUT .../quotas):
 *   { "cluster02": { "weight": 1, "quotas": [{ "gpuType": "h100", "guaranteed": 40, "limit": 160 }] } }
 * Tenants the file does not name keep the quotas derived from offered load.
 */
import { readFileSync } from 'node:fs';
import { Quota } from '@nuri/contracts';
import { GpuModel, TenantQuota } from '@nuri/scheduling';
import { z } from 'zod';
import { TenantSpec } from './engine';

export const QuotaFile = z.record(
  z.string().min(1),
  z
    .object({
      weight: z.number().positive().max(1000).optional(),
      quotas: z.array(Quota).min(1),
    })
    .strict()
    .refine((t) => new Set(t.quotas.map((q) => q.gpuType)).size === t.quotas.length, { message: 'one entry per GPU type', path: ['quotas'] }),
);
export type QuotaFile = z.infer<typeof QuotaFile>;

/** Parses and checks a quota file's text; errors name the file, the field and the rule. */
export function parseQuotaFile(text: string, name: string): QuotaFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${name}: not JSON (${(e as Error).message})`, { cause: e });
  }
  const r = QuotaFile.safeParse(raw);
  if (!r.success) {
    const first = r.error.issues[0]!;
    throw new Error(`${name}: ${first.path.join('.') || '(top level)'}: ${first.message}`);
  }
  return r.data;
}

export function loadQuotaFile(path: string): QuotaFile {
  return parseQuotaFile(readFileSync(path, 'utf8'), path);
}

/** The derived tenants with the file's tenants replaced; a file tenant missing from the trace is an error. */
export function applyQuotaFile(derived: TenantSpec[], file: QuotaFile, name: string): TenantSpec[] {
  const known = new Set(derived.map((t) => t.id));
  for (const id of Object.keys(file)) if (!known.has(id)) throw new Error(`${name}: tenant ${id} has no jobs in the trace (tenants: ${[...known].join(', ')})`);
  return derived.map((t) => {
    const f = file[t.id]!;
    if (!f) return t;
    const quotas: Partial<Record<GpuModel, TenantQuota>> = {};
    for (const q of f.quotas) quotas[q.gpuType] = { guaranteed: q.guaranteed, limit: q.limit };
    return { id: t.id, weight: f.weight ?? t.weight, quotas };
  });
}
