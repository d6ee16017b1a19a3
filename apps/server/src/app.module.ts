import { DynamicModule, Module, Type } from '@nestjs/common';
import type { ServerConfig } from '@nuri/config';
import type { DatabaseHandle } from '@nuri/db';
import { ApiModule } from './api/api.module';
import { Clock } from './core/clock';
import { CoreModule } from './core/core.module';
import { Wakeups } from './core/wakeups';

/** One process hosts any set of roles; each role is a module. */
@Module({})
export class AppModule {
  static forRoles(config: ServerConfig, database: DatabaseHandle, clock: Clock, wakeups: Wakeups, extra: Type[] = []): DynamicModule {
    const imports: (Type | DynamicModule)[] = [CoreModule.forRoot(config, database, clock, wakeups)];
    // /healthz and /metrics are served by every role; the rest of the API only by `api`.
    imports.push(ApiModule);
    imports.push(...extra);
    return { module: AppModule, imports };
  }
}
