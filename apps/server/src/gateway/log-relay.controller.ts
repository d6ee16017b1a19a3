import { Controller, Get, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Public } from '../auth/principal';
import { LogRelay } from './log-relay';

/**
 * The gateway's internal endpoint for job output. Public to the user-token guard: it
 * authenticates by the single-use grant an api replica wrote (LogRelay.serve).
 */
@Controller('internal/v1/logs')
export class LogRelayController {
  constructor(private readonly relay: LogRelay) {}

  @Get()
  @Public()
  serve(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    return this.relay.serve(req, reply);
  }
}
