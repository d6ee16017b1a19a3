import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { DatabaseHandle, LedgerRepository, LogRelayRepository, PricesRepository } from '@nuri/db';
import { AuthModule } from '../auth/auth.module';
import { DATABASE } from '../core/core.module';
import { ApiExceptionFilter } from './common/exception.filter';
import { HealthController } from './health.controller';
import { JobsController } from './jobs/jobs.controller';
import { JobsService } from './jobs/jobs.service';
import { LogsController } from './jobs/logs.controller';
import { LogsService } from './jobs/logs.service';
import { MeController } from './me/me.controller';
import { NodesController } from './nodes/nodes.controller';
import { NodesService } from './nodes/nodes.service';
import { OpenApiController } from './openapi/openapi.controller';
import { OpenApiService } from './openapi/openapi.service';
import { TenantsController } from './tenants/tenants.controller';
import { TenantsService } from './tenants/tenants.service';
import { TokensController } from './tokens/tokens.controller';
import { TokensService } from './tokens/tokens.service';
import { UsersController } from './users/users.controller';
import { UsersService } from './users/users.service';
import { PricesController } from './prices/prices.controller';
import { PricesService } from './prices/prices.service';
import { StatementController, UsageController } from './usage/usage.controller';
import { UsageService } from './usage/usage.service';

const SERVICES = [JobsService, NodesService, TenantsService, UsersService, TokensService, OpenApiService, UsageService, PricesService];

/**
 * The REST API under /v1, and GET /healthz. A global guard (AuthModule) wants a bearer
 * token on every route but health, metrics and the OpenAPI document; a global filter
 * answers every error as JSON `{error, message, issues?}`.
 */
@Module({
  imports: [AuthModule],
  controllers: [
    HealthController,
    MeController,
    JobsController,
    LogsController,
    NodesController,
    TenantsController,
    UsersController,
    TokensController,
    OpenApiController,
    UsageController,
    StatementController,
    PricesController,
  ],
  providers: [
    ...SERVICES,
    LogsService,
    { provide: LogRelayRepository, useFactory: (d: DatabaseHandle) => new LogRelayRepository(d.db), inject: [DATABASE] },
    { provide: LedgerRepository, useFactory: (d: DatabaseHandle) => new LedgerRepository(d.db), inject: [DATABASE] },
    { provide: PricesRepository, useFactory: (d: DatabaseHandle) => new PricesRepository(d.db), inject: [DATABASE] },
    { provide: APP_FILTER, useClass: ApiExceptionFilter },
  ],
  exports: [...SERVICES, AuthModule],
})
export class ApiModule {}

/** Only GET /healthz, for processes that do not run the `api` role. */
@Module({ controllers: [HealthController] })
export class HealthModule {}
