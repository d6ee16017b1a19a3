import { sql } from 'kysely';
import type { Db } from './tenants.repository';

type GpuType = 'h100' | 'h800';

export interface PriceRow {
  gpuType: GpuType;
  /** Null: the default price of the type; else a tenant's contract price. */
  tenantId: string | null;
  tenantName: string | null;
  effectiveFrom: string;
  usdPerGpuHour: number;
}

/** GPU prices per type (and optionally tenant), effective from a UTC date: a change is a new row. */
export class PricesRepository {
  constructor(private readonly db: Db) {}

  /** Sets prices (one per type, tenant and date; setting the same period again replaces its price), in one transaction. */
  async set(prices: { gpuType: GpuType; tenantId: string | null; effectiveFrom: string; usdPerGpuHour: number }[]): Promise<void> {
    if (!prices.length) return;
    await this.db.transaction().execute(async (tx) => {
      for (const p of prices)
        await sql`
          insert into gpu_prices (gpu_type, tenant_id, effective_from, usd_per_gpu_hour)
          values (${p.gpuType}, ${p.tenantId}::uuid, ${p.effectiveFrom}::date, ${p.usdPerGpuHour})
          on conflict (gpu_type, coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), effective_from)
          do update set usd_per_gpu_hour = excluded.usd_per_gpu_hour, created_at = now()`.execute(tx);
    });
  }

  /** Every price period, by type, tenant (defaults first) and date; `tenantId`: the defaults and that tenant's. */
  async list(scope: { tenantId?: string } = {}): Promise<PriceRow[]> {
    let q = this.db
      .selectFrom('gpu_prices as p')
      .leftJoin('tenants', 'tenants.id', 'p.tenant_id')
      .select(['p.gpu_type as gpuType', 'p.tenant_id as tenantId', 'tenants.name as tenantName', sql<string>`to_char(p.effective_from, 'YYYY-MM-DD')`.as('effectiveFrom'), 'p.usd_per_gpu_hour as usd'])
      .orderBy('p.gpu_type')
      .orderBy(sql`tenants.name nulls first`)
      .orderBy('p.effective_from');
    if (scope.tenantId) q = q.where((eb) => eb.or([eb('p.tenant_id', 'is', null), eb('p.tenant_id', '=', scope.tenantId!)]));
    const rows = await q.execute();
    return rows.map(({ usd, ...r }) => ({ ...r, usdPerGpuHour: Number(usd) }));
  }

  /** The price in effect on `day` for each tenant and type (the tenant's own once in effect, else the default); for the price metric. */
  async inEffect(day: string): Promise<{ tenant: string; gpuType: GpuType; usdPerGpuHour: number }[]> {
    const r = await sql<{ tenant: string; gpu_type: GpuType; usd: string }>`
      select t.name as tenant, g.gpu_type, pr.usd from tenants t
      cross join (values ('h100'), ('h800')) as g(gpu_type)
      join lateral (
        select p.usd_per_gpu_hour as usd from gpu_prices p
        where p.gpu_type = g.gpu_type and (p.tenant_id = t.id or p.tenant_id is null) and p.effective_from <= ${day}::date
        order by p.tenant_id is null, p.effective_from desc limit 1
      ) pr on true
      order by 1, 2`.execute(this.db);
    return r.rows.map((x) => ({ tenant: x.tenant, gpuType: x.gpu_type, usdPerGpuHour: Number(x.usd) }));
  }
}
