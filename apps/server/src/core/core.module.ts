import { DynamicModule, Global, Logger, Module } from '@nestjs/common';
import type { ServerConfig } from '@nuri/config';
import { DatabaseHandle, DependenciesRepository, IdentityRepository, JobsRepository, NodesRepository, TenantsRepository, UsageRepository } from '@nuri/db';
import { NuriMetrics } from '@nuri/metrics';
import { Clock, SystemClock } from './clock';
import { Wakeups } from '@nuri/db';

/** Injection tokens for values that are not classes. */
export const CONFIG = Symbol('CONFIG');
export const DATABASE = Symbol('DATABASE');
/**
 * The scheduler's own database handle: with other roles in the process on PostgreSQL, a small
 * pool of its own, so 4,000 agents saying hello at once (a gateway restart) cannot queue its
 * pass behind their queries; else the shared one.
 */
export const SCHEDULER_DATABASE = Symbol('SCHEDULER_DATABASE');

/**
 * What every role shares: configuration, the database handle, the repositories (the only
 * code that touches SQL), the clock, the wake-up signal and the metrics. Built once per process.
 */
@Global()
@Module({})
export class CoreModule {
  static forRoot(
    config: ServerConfig,
    database: DatabaseHandle,
    clock: Clock = new SystemClock(),
    wakeups?: Wakeups,
    metrics?: NuriMetrics,
    schedulerDatabase?: DatabaseHandle,
  ): DynamicModule {
    const db = database.db;
    return {
      module: CoreModule,
      providers: [
        { provide: CONFIG, useValue: config },
        { provide: DATABASE, useValue: database },
        { provide: SCHEDULER_DATABASE, useValue: schedulerDatabase ?? database },
        { provide: Clock, useValue: clock },
        { provide: Wakeups, useValue: wakeups ?? new Wakeups(new Logger('Wakeups')) },
        { provide: NuriMetrics, useValue: metrics ?? new NuriMetrics({ processMetrics: true, dcgmCompat: config.dcgmCompat, idle: config.idle, now: () => clock.now().getTime() }) },
        { provide: TenantsRepository, useValue: new TenantsRepository(db) },
        { provide: IdentityRepository, useValue: new IdentityRepository(db) },
        { provide: NodesRepository, useValue: new NodesRepository(db) },
        { provide: JobsRepository, useValue: new JobsRepository(db) },
        { provide: UsageRepository, useValue: new UsageRepository(db) },
        { provide: DependenciesRepository, useValue: new DependenciesRepository(db) },
      ],
      exports: [CONFIG, DATABASE, SCHEDULER_DATABASE, Clock, Wakeups, NuriMetrics, TenantsRepository, IdentityRepository, NodesRepository, JobsRepository, UsageRepository, DependenciesRepository],
    };
  }
}
