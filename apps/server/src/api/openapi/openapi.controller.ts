import { Controller, Get } from '@nestjs/common';
import { Public } from '../../auth/principal';
import { OpenApiService } from './openapi.service';

@Controller('v1')
export class OpenApiController {
  constructor(private readonly openapi: OpenApiService) {}

  @Get('openapi.json')
  @Public()
  document() {
    return this.openapi.document();
  }
}
