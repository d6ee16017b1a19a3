import { accrueUsage, decayUsage } from '@nuri/scheduling';
import type { Db } from './tenants.repository';

/** A finished run: GPUs held for this many seconds. */
export interface UsageRun {
  gpus: number;
  seconds: number;
}

/**
 * Past GPU usage per tenant and type, decayed exponentially for fair share. The decay and the
 * accrual over a run are the scheduling core's (decayUsage, accrueUsage), the same the live
 * snapshot and the simulator use, so a GPU-second weighs the same wherever it is counted.
 */
export class UsageRepository {
  constructor(private readonly db: Db) {}

  /**
   * Adds a run that ended at `at`: what was stored is decayed to `at`, and the run adds its
   * usage accrued with the same decay (a GPU-second at the run's start has decayed by its end,
   * as it has in the live snapshot while the job ran). `total_gpu_seconds` counts plain
   * GPU-seconds. A run reported out of order (before `as_of`) is added undecayed.
   */
  async add(tenantId: string, gpuType: 'h100' | 'h800', run: UsageRun, at: Date, halfLifeSeconds: number): Promise<void> {
    const gpuSeconds = run.gpus * Math.max(0, run.seconds);
    const accrued = accrueUsage(0, run.gpus, run.seconds, halfLifeSeconds);
    await this.db.transaction().execute(async (tx) => {
      // The row first (a concurrent first add then waits on it), then read and write it under its lock.
      await tx
        .insertInto('tenant_usage')
        .values({ tenant_id: tenantId, gpu_type: gpuType, decayed_gpu_seconds: 0, total_gpu_seconds: 0, as_of: at })
        .onConflict((oc) => oc.columns(['tenant_id', 'gpu_type']).doNothing())
        .execute();
      const row = await tx
        .selectFrom('tenant_usage')
        .select(['decayed_gpu_seconds', 'total_gpu_seconds', 'as_of'])
        .where('tenant_id', '=', tenantId)
        .where('gpu_type', '=', gpuType)
        .forUpdate()
        .executeTakeFirstOrThrow();
      const asOf = row.as_of > at ? row.as_of : at;
      await tx
        .updateTable('tenant_usage')
        .set({
          decayed_gpu_seconds: decayUsage(row.decayed_gpu_seconds, (at.getTime() - row.as_of.getTime()) / 1000, halfLifeSeconds) + accrued,
          total_gpu_seconds: row.total_gpu_seconds + gpuSeconds,
          as_of: asOf,
        })
        .where('tenant_id', '=', tenantId)
        .where('gpu_type', '=', gpuType)
        .execute();
    });
  }

  async all(): Promise<{ tenantId: string; gpuType: 'h100' | 'h800'; decayed: number; total: number; asOf: Date }[]> {
    const rows = await this.db.selectFrom('tenant_usage').selectAll().execute();
    return rows.map((r) => ({ tenantId: r.tenant_id, gpuType: r.gpu_type, decayed: r.decayed_gpu_seconds, total: r.total_gpu_seconds, asOf: r.as_of }));
  }
}
