import { Module } from '@nestjs/common';
import { MetricsController } from './metrics.controller';

/** GET /metrics. The NuriMetrics instance itself is provided by CoreModule to every role. */
@Module({ controllers: [MetricsController] })
export class MetricsModule {}
