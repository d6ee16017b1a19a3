import { Controller, Get, Param, Query, Res } from '@nestjs/common';
import { JobParams, LogsQuery } from '@nuri/contracts';
import type { FastifyReply } from 'fastify';
import { Caller, Principal } from '../../auth/principal';
import { Zod } from '../common/zod-pipe';
import { LogsService } from './logs.service';

@Controller('v1/jobs')
export class LogsController {
  constructor(private readonly service: LogsService) {}

  /** One rank's output as text/plain, streamed (`follow`: until that rank's process ends). */
  @Get(':id/logs')
  logs(@Caller() me: Principal, @Param(new Zod(JobParams, 'path')) p: JobParams, @Query(new Zod(LogsQuery, 'query')) q: LogsQuery, @Res() reply: FastifyReply): Promise<void> {
    return this.service.stream(me, p.id, q, reply);
  }
}
