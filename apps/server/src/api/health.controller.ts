import { Controller, Get } from '@nestjs/common';
import { Public } from '../auth/principal';

@Controller()
export class HealthController {
  @Get('healthz')
  @Public()
  health() {
    return { status: 'ok' };
  }
}
