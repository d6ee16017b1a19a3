import { Controller, Get, Module } from '@nestjs/common';

@Controller()
class HealthController {
  @Get('healthz')
  health() {
    return { status: 'ok' };
  }
}

/** The REST API under /v1 (placeholder until the full API lands). */
@Module({ controllers: [HealthController] })
export class ApiModule {}
