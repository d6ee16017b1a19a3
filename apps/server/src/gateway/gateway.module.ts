import { Module } from '@nestjs/common';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { FleetService } from './fleet.service';

/** The `gateway` role: the database side of agent connections (the WebSocket transport attaches at boot). */
@Module({ imports: [LifecycleModule], providers: [FleetService], exports: [FleetService] })
export class GatewayModule {}
