import { Body, Controller, Get, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import { CancelJobs, CancelJobsResult, JobParams, JobView, ListJobsQuery, SubmitJob } from '@nuri/contracts';
import type { FastifyReply } from 'fastify';
import { Caller, Principal } from '../../auth/principal';
import { Zod } from '../common/zod-pipe';
import { JobPage, JobsService } from './jobs.service';

@Controller('v1/jobs')
export class JobsController {
  constructor(private readonly jobs: JobsService) {}

  @Post()
  submit(@Caller() me: Principal, @Body(new Zod(SubmitJob, 'body')) body: SubmitJob): Promise<JobView> {
    return this.jobs.submit(me, body);
  }

  @Get()
  list(@Caller() me: Principal, @Query(new Zod(ListJobsQuery, 'query')) q: ListJobsQuery): Promise<JobPage> {
    return this.jobs.list(me, q);
  }

  @Post('cancel')
  @HttpCode(200)
  cancelMany(@Caller() me: Principal, @Body(new Zod(CancelJobs, 'body')) body: CancelJobs): Promise<CancelJobsResult> {
    return this.jobs.cancelMany(me, body);
  }

  @Get(':id')
  get(@Caller() me: Principal, @Param(new Zod(JobParams, 'path')) p: JobParams): Promise<JobView> {
    return this.jobs.get(me, p.id);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  async cancel(@Caller() me: Principal, @Param(new Zod(JobParams, 'path')) p: JobParams, @Res({ passthrough: true }) res: FastifyReply): Promise<JobView> {
    const r = await this.jobs.cancel(me, p.id);
    res.code(r.status);
    return r.job;
  }
}
