import { Module } from '@nestjs/common';
import { DatabaseHandle, LogRelayRepository } from '@nuri/db';
import { DATABASE } from '../core/core.module';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { FleetService } from './fleet.service';
import { LogRelay } from './log-relay';
import { LogRelayController } from './log-relay.controller';

/**
 * The `gateway` role: the database side of agent connections (the WebSocket transport attaches
 * at boot), and the relay of job output from its agents to api replicas (an internal endpoint).
 */
@Module({
  imports: [LifecycleModule],
  controllers: [LogRelayController],
  providers: [FleetService, LogRelay, { provide: LogRelayRepository, useFactory: (d: DatabaseHandle) => new LogRelayRepository(d.db), inject: [DATABASE] }],
  exports: [FleetService, LogRelay],
})
export class GatewayModule {}
