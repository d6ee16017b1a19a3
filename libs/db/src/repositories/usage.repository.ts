import { sql } from 'kysely';
import type { Db } from './tenants.repository';

/** Past GPU usage per tenant and type, decayed exponentially for fair share. */
export class UsageRepository {
  constructor(private readonly db: Db) {}

  /** Adds GPU-seconds at `at`, first decaying what was there with the half-life. */
  async add(tenantId: string, gpuType: 'h100' | 'h800', gpuSeconds: number, at: Date, halfLifeSeconds: number): Promise<void> {
    await sql`
      insert into tenant_usage (tenant_id, gpu_type, decayed_gpu_seconds, total_gpu_seconds, as_of)
      values (${tenantId}, ${gpuType}, ${gpuSeconds}, ${gpuSeconds}, ${at})
      on conflict (tenant_id, gpu_type) do update set
        decayed_gpu_seconds = tenant_usage.decayed_gpu_seconds
          * power(0.5, greatest(0, extract(epoch from (excluded.as_of - tenant_usage.as_of))) / ${halfLifeSeconds}::float8)
          + excluded.decayed_gpu_seconds,
        total_gpu_seconds = tenant_usage.total_gpu_seconds + excluded.total_gpu_seconds,
        as_of = greatest(tenant_usage.as_of, excluded.as_of)`.execute(this.db);
  }

  async all(): Promise<{ tenantId: string; gpuType: 'h100' | 'h800'; decayed: number; total: number; asOf: Date }[]> {
    const rows = await this.db.selectFrom('tenant_usage').selectAll().execute();
    return rows.map((r) => ({ tenantId: r.tenant_id, gpuType: r.gpu_type, decayed: r.decayed_gpu_seconds, total: r.total_gpu_seconds, asOf: r.as_of }));
  }
}
