import { Injectable } from '@nestjs/common';
import { CreateTenant, SetQuotas, TenantView, UpdateTenant } from '@nuri/contracts';
import { Principal, TenantsRepository, TenantWithQuotas } from '@nuri/db';
import { Wakeups } from '@nuri/db';
import { isOperator } from '../../auth/principal';
import { invalidField, notFound, uniqueOr409 } from '../common/errors';
import { tenantView } from '../common/views';

function refuseDuplicateTypes(quotas: { gpuType: string }[]): void {
  const seen = new Set<string>();
  quotas.forEach((q, i) => {
    if (seen.has(q.gpuType)) throw invalidField(`quotas.${i}.gpuType`, 'a GPU type appears once');
    seen.add(q.gpuType);
  });
}

/** Tenants and their quotas. Operators manage them; others see only their own tenant. */
@Injectable()
export class TenantsService {
  constructor(
    private readonly tenants: TenantsRepository,
    private readonly wakeups: Wakeups,
  ) {}

  /** Creates a tenant with its quotas (also used by the demo seeding). 409 on a duplicate name. */
  async create(input: CreateTenant): Promise<TenantView> {
    refuseDuplicateTypes(input.quotas);
    await uniqueOr409(`tenant ${input.name}`, () => this.tenants.create(input));
    this.wakeups.wake('node_change'); // capacity rules changed
    return this.view(input.name);
  }

  async list(caller: Principal): Promise<TenantView[]> {
    const all = await this.tenants.list();
    return all.filter((t) => isOperator(caller) || t.id === caller.tenantId).map(tenantView);
  }

  async get(caller: Principal, name: string): Promise<TenantView> {
    return tenantView(await this.visible(caller, name));
  }

  async update(name: string, patch: UpdateTenant): Promise<TenantView> {
    const t = await this.find(name);
    await this.tenants.update(t.id, patch);
    this.wakeups.wake('node_change');
    return this.view(name);
  }

  /** Upserts the given GPU types' quotas; types not named keep theirs. */
  async setQuotas(name: string, input: SetQuotas): Promise<TenantView> {
    refuseDuplicateTypes(input.quotas);
    const t = await this.find(name);
    await this.tenants.setQuotas(t.id, input.quotas);
    this.wakeups.wake('node_change');
    return this.view(name);
  }

  private async find(name: string): Promise<TenantWithQuotas> {
    const t = await this.tenants.findByName(name);
    if (!t) throw notFound(`no tenant ${name}`);
    return t;
  }

  private async visible(caller: Principal, name: string): Promise<TenantWithQuotas> {
    const t = await this.tenants.findByName(name);
    if (!t || !(isOperator(caller) || t.id === caller.tenantId)) throw notFound(`no tenant ${name}`);
    return t;
  }

  private async view(name: string): Promise<TenantView> {
    return tenantView(await this.find(name));
  }
}
