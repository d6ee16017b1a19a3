import { Module } from '@nestjs/common';
import { HttpMetricsHooks } from './http-metrics';
import { MetricsController } from './metrics.controller';

/**
 * GET /metrics, and the HTTP request duration of every request by method, route template
 * and status. The NuriMetrics instance itself is provided by CoreModule to every role.
 */
@Module({ controllers: [MetricsController], providers: [HttpMetricsHooks] })
export class MetricsModule {}
