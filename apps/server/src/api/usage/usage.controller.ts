import { Body, Controller, Get, Headers, Param, Put, Query, Res } from '@nestjs/common';
import { HistoryItem, HistoryQuery, IdlePolicy, IdlePolicyView, IdleJobsQuery, IdleJobView, NameParams, QuotaQuery, QuotaView, StatementQuery, StatementView, UsageQuery, UsageView } from '@nuri/contracts';
import type { FastifyReply } from 'fastify';
import { Caller, Principal, Roles } from '../../auth/principal';
import { Zod } from '../common/zod-pipe';
import { historyCsv, negotiate, statementCsv, usageCsv } from './csv';
import { UsageService } from './usage.service';

@Controller('v1/usage')
export class UsageController {
  constructor(private readonly usage: UsageService) {}

  @Get()
  async get(@Caller() me: Principal, @Query(new Zod(UsageQuery, 'query')) q: UsageQuery, @Headers('accept') accept: string | undefined, @Res({ passthrough: true }) res: FastifyReply): Promise<UsageView | string> {
    return negotiate(res, accept, await this.usage.usage(me, q), usageCsv);
  }

  @Get('history')
  async history(@Caller() me: Principal, @Query(new Zod(HistoryQuery, 'query')) q: HistoryQuery, @Headers('accept') accept: string | undefined, @Res({ passthrough: true }) res: FastifyReply): Promise<HistoryItem[] | string> {
    return negotiate(res, accept, await this.usage.history(me, q), historyCsv);
  }

  @Get('quota')
  quota(@Caller() me: Principal, @Query(new Zod(QuotaQuery, 'query')) q: QuotaQuery): Promise<QuotaView> {
    return this.usage.quota(me, q);
  }

  @Get('idle-jobs')
  @Roles('operator', 'tenant-admin')
  idleJobs(@Caller() me: Principal, @Query(new Zod(IdleJobsQuery, 'query')) q: IdleJobsQuery): Promise<IdleJobView[]> {
    return this.usage.idleJobs(me, q);
  }
}

@Controller('v1/tenants')
export class StatementController {
  constructor(private readonly usage: UsageService) {}

  @Get(':name/statement')
  async statement(
    @Caller() me: Principal,
    @Param(new Zod(NameParams, 'path')) p: NameParams,
    @Query(new Zod(StatementQuery, 'query')) q: StatementQuery,
    @Headers('accept') accept: string | undefined,
    @Res({ passthrough: true }) res: FastifyReply,
  ): Promise<StatementView | string> {
    return negotiate(res, accept, await this.usage.statement(me, p.name, q.month), statementCsv);
  }

  @Get(':name/idle-policy')
  idlePolicy(@Caller() me: Principal, @Param(new Zod(NameParams, 'path')) p: NameParams): Promise<IdlePolicyView> {
    return this.usage.idlePolicy(me, p.name);
  }

  @Put(':name/idle-policy')
  @Roles('operator', 'tenant-admin')
  setIdlePolicy(@Caller() me: Principal, @Param(new Zod(NameParams, 'path')) p: NameParams, @Body(new Zod(IdlePolicy, 'body')) body: IdlePolicy): Promise<IdlePolicyView> {
    return this.usage.setIdlePolicy(me, p.name, body);
  }
}
