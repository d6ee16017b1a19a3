import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import type { PriceView, SetPrices } from '@nuri/contracts';
import { Principal, PricesRepository, TenantsRepository } from '@nuri/db';
import { NuriMetrics } from '@nuri/metrics';
import { Clock } from '../../core/clock';
import { isOperator } from '../../auth/principal';
import { invalidField } from '../common/errors';

/**
 * GPU prices: per type, optionally per tenant (a contract price), each from a UTC date on.
 * A price takes effect today at the earliest: what was already charged is never repriced.
 */
/** How often the price metric is re-read (a price takes effect at a midnight, or another replica set one). */
const PRICE_METRIC_EVERY_MS = 60_000;

@Injectable()
export class PricesService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger('Prices');
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly prices: PricesRepository,
    private readonly tenants: TenantsRepository,
    private readonly clock: Clock,
    private readonly metrics: NuriMetrics,
  ) {}

  onApplicationBootstrap(): void {
    void this.exportPrices();
    this.timer = setInterval(() => void this.exportPrices(), PRICE_METRIC_EVERY_MS);
    this.timer.unref?.();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** The price in effect today per tenant and type, as nuri_tenant_gpu_price_usd_per_gpu_hour (the cost dashboard's). */
  async exportPrices(): Promise<void> {
    try {
      this.metrics.setGpuPrices(await this.prices.inEffect(this.clock.now().toISOString().slice(0, 10)));
    } catch (e) {
      this.log.error(`exporting prices failed: ${(e as Error).message}`);
    }
  }

  /** Operators see every price; others the defaults and their own tenant's contract prices. */
  async list(caller: Principal): Promise<PriceView[]> {
    const rows = await this.prices.list(isOperator(caller) ? {} : { tenantId: caller.tenantId ?? '00000000-0000-0000-0000-000000000000' });
    return rows.map((r) => ({ gpuType: r.gpuType, tenant: r.tenantName, effectiveFrom: r.effectiveFrom, usdPerGpuHour: r.usdPerGpuHour }));
  }

  /** Seeding (the demo): sets these prices, backdated as given, only where no price was ever set. True when it did. */
  async seedIfNone(input: SetPrices): Promise<boolean> {
    if ((await this.prices.list()).length) return false;
    await this.set(null, input, { backdate: true });
    return true;
  }

  /** Sets prices, all or none. `backdate` only for seeding (the demo, tests): the API never passes it. */
  async set(caller: Principal | null, input: SetPrices, opts: { backdate?: boolean } = {}): Promise<PriceView[]> {
    const today = this.clock.now().toISOString().slice(0, 10);
    const seen = new Set<string>();
    const rows = [];
    for (const [i, p] of input.prices.entries()) {
      if (!opts.backdate && p.effectiveFrom < today)
        throw invalidField(`prices.${i}.effectiveFrom`, `must be today (${today}) or later: a price never changes what was already charged`);
      const key = `${p.gpuType}/${p.tenant ?? ''}/${p.effectiveFrom}`;
      if (seen.has(key)) throw invalidField(`prices.${i}`, 'one price per GPU type, tenant and date');
      seen.add(key);
      let tenantId: string | null = null;
      if (p.tenant) {
        const t = await this.tenants.findByName(p.tenant);
        if (!t) throw invalidField(`prices.${i}.tenant`, `no tenant ${p.tenant}`);
        tenantId = t.id;
      }
      rows.push({ gpuType: p.gpuType, tenantId, effectiveFrom: p.effectiveFrom, usdPerGpuHour: p.usdPerGpuHour });
    }
    await this.prices.set(rows);
    await this.exportPrices();
    return caller ? this.list(caller) : [];
  }
}
