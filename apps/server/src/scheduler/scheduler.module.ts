import { Module } from '@nestjs/common';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { SchedulerService } from './scheduler.service';

/** The `scheduler` role: only the process holding the leader lock schedules. */
@Module({ imports: [LifecycleModule], providers: [SchedulerService], exports: [SchedulerService] })
export class SchedulerModule {}
