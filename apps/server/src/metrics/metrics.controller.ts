import { Controller, Get, Res } from '@nestjs/common';
import { NuriMetrics } from '@nuri/metrics';
import type { Response } from 'express';

/** Prometheus scrape endpoint, in every process (no token: scrapers sit on the operator network). */
@Controller()
export class MetricsController {
  constructor(private readonly metrics: NuriMetrics) {}

  @Get('metrics')
  async scrape(@Res() res: Response): Promise<void> {
    res.type(this.metrics.contentType).send(await this.metrics.metricsBuffer());
  }
}
