import type { Kysely } from 'kysely';
import type { Database } from '../schema';

export type Db = Kysely<Database>;

export interface TenantWithQuotas {
  id: string;
  name: string;
  displayName: string;
  weight: number;
  quotas: { gpuType: 'h100' | 'h800'; guaranteed: number; limit: number }[];
}

export class TenantsRepository {
  constructor(private readonly db: Db) {}

  async create(t: { name: string; displayName: string; weight: number; quotas: TenantWithQuotas['quotas'] }): Promise<string> {
    return this.db.transaction().execute(async (tx) => {
      const { id } = await tx
        .insertInto('tenants')
        .values({ name: t.name, display_name: t.displayName, weight: t.weight })
        .returning('id')
        .executeTakeFirstOrThrow();
      if (t.quotas.length)
        await tx
          .insertInto('quotas')
          .values(t.quotas.map((q) => ({ tenant_id: id, gpu_type: q.gpuType, guaranteed: q.guaranteed, limit: q.limit })))
          .execute();
      return id;
    });
  }

  async list(): Promise<TenantWithQuotas[]> {
    const [tenants, quotas] = await Promise.all([
      this.db.selectFrom('tenants').selectAll().orderBy('name').execute(),
      this.db.selectFrom('quotas').selectAll().orderBy('gpu_type').execute(),
    ]);
    return tenants.map((t) => ({
      id: t.id,
      name: t.name,
      displayName: t.display_name,
      weight: t.weight,
      quotas: quotas
        .filter((q) => q.tenant_id === t.id)
        .map((q) => ({ gpuType: q.gpu_type, guaranteed: q.guaranteed, limit: q.limit })),
    }));
  }

  async findByName(name: string): Promise<TenantWithQuotas | undefined> {
    const rows = await this.db
      .selectFrom('tenants')
      .leftJoin('quotas', 'quotas.tenant_id', 'tenants.id')
      .select(['tenants.id', 'tenants.name', 'tenants.display_name', 'tenants.weight', 'quotas.gpu_type', 'quotas.guaranteed', 'quotas.limit'])
      .where('tenants.name', '=', name)
      .orderBy('quotas.gpu_type')
      .execute();
    const t = rows[0];
    if (!t) return undefined;
    return {
      id: t.id,
      name: t.name,
      displayName: t.display_name,
      weight: t.weight,
      quotas: rows.filter((r) => r.gpu_type !== null).map((r) => ({ gpuType: r.gpu_type!, guaranteed: r.guaranteed!, limit: r.limit! })),
    };
  }

  async update(id: string, patch: { displayName?: string; weight?: number }): Promise<void> {
    if (patch.displayName === undefined && patch.weight === undefined) return;
    await this.db
      .updateTable('tenants')
      .set({ display_name: patch.displayName, weight: patch.weight })
      .where('id', '=', id)
      .execute();
  }

  /** Upserts the given GPU types' quotas; others are left as they are. */
  async setQuotas(id: string, quotas: TenantWithQuotas['quotas']): Promise<void> {
    await this.db
      .insertInto('quotas')
      .values(quotas.map((q) => ({ tenant_id: id, gpu_type: q.gpuType, guaranteed: q.guaranteed, limit: q.limit })))
      .onConflict((oc) =>
        oc.columns(['tenant_id', 'gpu_type']).doUpdateSet((eb) => ({
          guaranteed: eb.ref('excluded.guaranteed'),
          limit: eb.ref('excluded.limit'),
        })),
      )
      .execute();
  }

  async count(): Promise<number> {
    const r = await this.db.selectFrom('tenants').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }
}
