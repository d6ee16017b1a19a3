import { DynamicModule, Module, Type } from '@nestjs/common';
import type { ServerConfig } from '@nuri/config';
import type { DatabaseHandle } from '@nuri/db';
import { ApiModule, HealthModule } from './api/api.module';
import { Clock } from './core/clock';
import { CoreModule } from './core/core.module';
import { Wakeups } from '@nuri/db';
import { GatewayModule } from './gateway/gateway.module';
import { MetricsModule } from './metrics/metrics.module';
import { SchedulerModule } from './scheduler/scheduler.module';

/** One process hosts any set of roles; each role is a module. */
@Module({})
export class AppModule {
  static forRoles(config: ServerConfig, database: DatabaseHandle, clock: Clock, wakeups: Wakeups, extra: Type[] = [], schedulerDatabase?: DatabaseHandle): DynamicModule {
    const imports: (Type | DynamicModule)[] = [CoreModule.forRoot(config, database, clock, wakeups, undefined, schedulerDatabase)];
    // /healthz and /metrics are in every process; the authenticated REST API only in `api`.
    imports.push(config.roles.has('api') ? ApiModule : HealthModule, MetricsModule);
    if (config.roles.has('scheduler')) imports.push(SchedulerModule);
    if (config.roles.has('gateway')) imports.push(GatewayModule);
    imports.push(...extra);
    return { module: AppModule, imports };
  }
}
